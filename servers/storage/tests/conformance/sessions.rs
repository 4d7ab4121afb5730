//! Unread counters and recent sessions.

use im_storage::{GroupKind, MemberChange, SessionSummary, SessionType, Store, UnreadSummary};

use super::{Ids, group_text, new_group, next_second, now, send, text};

fn count_of(list: &[UnreadSummary], session_type: SessionType, peer: u32) -> Option<u32> {
    list.iter()
        .find(|u| u.session_type == session_type && u.peer_id == peer)
        .map(|u| u.count)
}

fn peers(list: &[SessionSummary]) -> Vec<(SessionType, u32)> {
    list.iter().map(|s| (s.session_type, s.peer_id)).collect()
}

/// Unread: single sessions first, then groups; counts per sender; the newest message with
/// its real sender; totals; cleared by read acks and by removing the session.
pub async fn unread_counts<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c, stranger) = (ids.user(1), ids.user(2), ids.user(3), ids.user(4));
    for i in 0..3 {
        send(store, text(a, b, &format!("a{i}"))).await;
    }
    send(store, text(c, b, "c0")).await;
    send(store, text(b, a, "reply")).await;
    let g = new_group(store, a, GroupKind::Normal, &[a, b, c]).await;
    send(store, group_text(a, g, "g1")).await;
    send(store, group_text(a, g, "g2")).await;
    send(store, group_text(c, g, "g3")).await;

    let ub = store.unread(b).await.unwrap();
    assert_eq!(count_of(&ub, SessionType::Single, a), Some(3));
    assert_eq!(count_of(&ub, SessionType::Single, c), Some(1));
    assert_eq!(count_of(&ub, SessionType::Group, g), Some(3));
    assert_eq!(ub.len(), 3);
    let first_group = ub
        .iter()
        .position(|u| u.session_type == SessionType::Group)
        .unwrap();
    assert!(
        ub[..first_group]
            .iter()
            .all(|u| u.session_type == SessionType::Single)
    );
    let from_a = ub.iter().find(|u| u.peer_id == a).unwrap();
    assert_eq!(
        (from_a.last.msg_id, from_a.last.from_id),
        (4, b),
        "newest message, real sender"
    );
    let in_g = ub.iter().find(|u| u.peer_id == g).unwrap();
    assert_eq!((in_g.last.msg_id, in_g.last.from_id), (3, c));

    // Senders have read their own group messages; the reply is unread for a.
    let ua = store.unread(a).await.unwrap();
    assert_eq!(count_of(&ua, SessionType::Group, g), Some(1));
    assert_eq!(count_of(&ua, SessionType::Single, b), Some(1));
    assert!(store.unread(c).await.unwrap().is_empty());
    assert!(store.unread(stranger).await.unwrap().is_empty());
    let totals = store.unread_totals(&[b, a, c, stranger]).await.unwrap();
    assert_eq!(totals, vec![(b, 7), (a, 2), (c, 0), (stranger, 0)]);

    // Read acks.
    store.clear_unread(b, SessionType::Single, a).await.unwrap();
    assert_eq!(store.unread_totals(&[b]).await.unwrap(), vec![(b, 4)]);
    store.clear_unread(b, SessionType::Group, g).await.unwrap();
    let ub = store.unread(b).await.unwrap();
    assert_eq!(
        (ub.len(), count_of(&ub, SessionType::Single, c)),
        (1, Some(1))
    );
    // Removing the session clears it too.
    assert!(
        store
            .remove_session(b, SessionType::Single, c)
            .await
            .unwrap()
    );
    assert!(store.unread(b).await.unwrap().is_empty());
    assert_eq!(store.unread_totals(&[b]).await.unwrap(), vec![(b, 0)]);
    // New messages count from zero again.
    send(store, text(a, b, "again")).await;
    send(store, group_text(c, g, "g4")).await;
    let ub = store.unread(b).await.unwrap();
    assert_eq!(count_of(&ub, SessionType::Single, a), Some(1));
    assert_eq!(count_of(&ub, SessionType::Group, g), Some(1));
}

/// Membership changes clear the changed members' group unread; non-members have none.
pub async fn unread_cleared_by_member_change<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, newcomer) = (ids.user(1), ids.user(2), ids.user(3));
    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    send(store, group_text(a, g, "1")).await;
    send(store, group_text(a, g, "2")).await;
    assert_eq!(store.unread_totals(&[b]).await.unwrap(), vec![(b, 2)]);
    store
        .change_members(a, g, MemberChange::Add, &[newcomer])
        .await
        .unwrap();
    assert!(
        store.unread(newcomer).await.unwrap().is_empty(),
        "older messages are not unread"
    );
    store
        .change_members(a, g, MemberChange::Remove, &[b])
        .await
        .unwrap();
    assert!(store.unread(b).await.unwrap().is_empty());
    assert_eq!(store.unread_totals(&[b]).await.unwrap(), vec![(b, 0)]);
    send(store, group_text(a, g, "3")).await;
    assert_eq!(
        store.unread_totals(&[b, newcomer]).await.unwrap(),
        vec![(b, 0), (newcomer, 1)]
    );
    // Re-added: what was sent while away is not unread.
    store
        .change_members(a, g, MemberChange::Add, &[b])
        .await
        .unwrap();
    assert!(store.unread(b).await.unwrap().is_empty());
    send(store, group_text(newcomer, g, "4")).await;
    let ub = store.unread(b).await.unwrap();
    assert_eq!(count_of(&ub, SessionType::Group, g), Some(1));
    assert_eq!(ub[0].last.from_id, newcomer);
}

/// Recent sessions: both sides get one, newest first, `since` (exclusive), `limit`, the
/// conversation's newest message.
pub async fn recent_sessions<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c, d) = (ids.user(1), ids.user(2), ids.user(3), ids.user(4));
    send(store, text(a, b, "to b")).await;
    next_second().await;
    send(store, text(a, c, "to c")).await;
    next_second().await;
    send(store, text(d, a, "from d")).await;

    let all = store.recent_sessions(a, 0, 10).await.unwrap();
    let single = |p| (SessionType::Single, p);
    assert_eq!(peers(&all), vec![single(d), single(c), single(b)]);
    assert!(all.windows(2).all(|w| w[0].updated > w[1].updated));
    assert_eq!((all[0].last.from_id, all[0].last.msg_id), (d, 1));
    assert_eq!(
        all[2].last.content,
        im_storage::MessageContent::Text(b"to b".to_vec())
    );
    let top2 = store.recent_sessions(a, 0, 2).await.unwrap();
    assert_eq!(peers(&top2), vec![single(d), single(c)]);
    let newer = store.recent_sessions(a, all[1].updated, 10).await.unwrap();
    assert_eq!(peers(&newer), vec![single(d)], "updated > since");
    assert!(
        store
            .recent_sessions(a, all[0].updated, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        peers(&store.recent_sessions(b, 0, 10).await.unwrap()),
        vec![single(a)]
    );
    assert!(
        store
            .recent_sessions(ids.user(9), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A reply moves the session up for both; a group message puts the sender's group
    // session on top.
    next_second().await;
    send(store, text(b, a, "reply")).await;
    let all = store.recent_sessions(a, 0, 10).await.unwrap();
    assert_eq!(peers(&all)[0], single(b));
    assert_eq!((all[0].last.from_id, all[0].last.msg_id), (b, 2));
    let g = new_group(store, a, GroupKind::Temporary, &[a, b]).await;
    next_second().await;
    send(store, group_text(a, g, "hi all")).await;
    let all = store.recent_sessions(a, 0, 10).await.unwrap();
    assert_eq!(peers(&all)[0], (SessionType::Group, g));
    assert_eq!((all[0].last.from_id, all[0].last.msg_id), (a, 1));
}

/// Removing a session hides it until the next message, and says whether one was active.
pub async fn remove_session<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    send(store, text(a, b, "x")).await;
    assert!(
        store
            .remove_session(b, SessionType::Single, a)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_session(b, SessionType::Single, a)
            .await
            .unwrap()
    );
    assert!(store.recent_sessions(b, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        store.recent_sessions(a, 0, 10).await.unwrap().len(),
        1,
        "only b's side"
    );
    assert!(
        !store
            .remove_session(b, SessionType::Single, ids.user(5))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_session(b, SessionType::Group, u32::MAX - 1)
            .await
            .unwrap()
    );
    send(store, text(a, b, "y")).await;
    let back = store.recent_sessions(b, 0, 10).await.unwrap();
    assert_eq!(
        peers(&back),
        vec![(SessionType::Single, a)],
        "a new message brings it back"
    );
    assert_eq!(back[0].last.msg_id, 2);

    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    send(store, group_text(a, g, "g")).await;
    assert!(
        store
            .remove_session(a, SessionType::Group, g)
            .await
            .unwrap()
    );
    assert!(
        store
            .recent_sessions(a, 0, 10)
            .await
            .unwrap()
            .iter()
            .all(|s| s.peer_id != g)
    );
    // Within the same second as the removal: the writer must not take the session for
    // already touched (the SQLite writer remembers what it touched per second).
    send(store, group_text(a, g, "h")).await;
    assert!(
        store
            .recent_sessions(a, 0, 10)
            .await
            .unwrap()
            .iter()
            .any(|s| s.peer_id == g),
        "a new group message brings the group session back"
    );
}

/// The periodic group-session sync: members get (or keep) a group session touched to
/// `lastChated`; a removed one stays removed; removed members get none.
pub async fn sync_group_sessions<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c, gone) = (ids.user(1), ids.user(2), ids.user(3), ids.user(4));
    let g = new_group(store, a, GroupKind::Normal, &[a, b, c, gone]).await;
    store
        .change_members(a, g, MemberChange::Remove, &[gone])
        .await
        .unwrap();
    let t = now() - 2;
    send(store, group_text(a, g, "1")).await;
    let has_g = |list: Vec<SessionSummary>| {
        list.into_iter()
            .find(|s| s.peer_id == g && s.session_type == SessionType::Group)
    };
    assert!(
        has_g(store.recent_sessions(b, 0, 10).await.unwrap()).is_none(),
        "not before the sync"
    );

    let w1 = store.sync_group_sessions(t).await.unwrap();
    assert!(w1 >= t && w1 <= now() + 1, "watermark {w1} is about now");
    let last_chated = store.groups(&[g]).await.unwrap()[0].last_chated;
    for user in [b, c] {
        let s = has_g(store.recent_sessions(user, 0, 10).await.unwrap()).expect("session created");
        assert_eq!(s.updated, last_chated);
        assert_eq!(s.last.msg_id, 1);
    }
    assert!(has_g(store.recent_sessions(gone, 0, 10).await.unwrap()).is_none());

    assert!(
        store
            .remove_session(c, SessionType::Group, g)
            .await
            .unwrap()
    );
    next_second().await;
    send(store, group_text(a, g, "2")).await;
    let w2 = store.sync_group_sessions(w1).await.unwrap();
    assert!(w2 >= w1);
    let last_chated2 = store.groups(&[g]).await.unwrap()[0].last_chated;
    assert!(last_chated2 > last_chated);
    let sb = has_g(store.recent_sessions(b, 0, 10).await.unwrap()).unwrap();
    assert_eq!((sb.updated, sb.last.msg_id), (last_chated2, 2));
    assert!(
        has_g(store.recent_sessions(c, 0, 10).await.unwrap()).is_none(),
        "stays removed"
    );
    assert!(has_g(store.recent_sessions(gone, 0, 10).await.unwrap()).is_none());
}
