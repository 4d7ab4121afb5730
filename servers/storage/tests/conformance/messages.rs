//! Storing and reading messages: ids, de-duplication, history, voice, groups, concurrency.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use im_storage::{
    AudioRef, GroupKind, MemberChange, MessageContent, MsgId, MsgType, NewContent, NewMessage,
    SessionType, Store, StoreOutcome, StoredMessage,
};

use super::{
    Ids, group_text, group_text_at, new_group, next_second, now, request_id, send, stored, text,
    text_at,
};

fn ids_of(msgs: &[StoredMessage]) -> Vec<MsgId> {
    msgs.iter().map(|m| m.msg_id).collect()
}

fn body(m: &StoredMessage) -> &[u8] {
    match &m.content {
        MessageContent::Text(b) => b,
        MessageContent::Audio(a) => panic!("expected text, got audio {a:?}"),
    }
}

/// Ids count from 1 per conversation; both directions of a pair share one sequence; groups
/// have their own; a message to oneself is refused.
pub async fn single_message_ids<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c) = (ids.user(1), ids.user(2), ids.user(3));
    assert_eq!(send(store, text(a, b, "1")).await, 1);
    assert_eq!(send(store, text(a, b, "2")).await, 2);
    assert_eq!(
        send(store, text(b, a, "3")).await,
        3,
        "one sequence per pair"
    );
    assert_eq!(
        send(store, text(a, c, "1")).await,
        1,
        "another pair starts at 1"
    );
    assert_eq!(send(store, text(c, b, "1")).await, 1);
    let g = new_group(store, a, GroupKind::Temporary, &[a, b]).await;
    assert_eq!(
        send(store, group_text(a, g, "g1")).await,
        1,
        "groups have their own"
    );
    assert_eq!(send(store, group_text(b, g, "g2")).await, 2);
    assert_eq!(send(store, text(b, a, "4")).await, 4);

    assert_eq!(
        store
            .latest_msg_id(a, SessionType::Single, b)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .latest_msg_id(b, SessionType::Single, a)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .latest_msg_id(a, SessionType::Single, ids.user(50))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.latest_msg_id(a, SessionType::Group, g).await.unwrap(),
        2
    );

    assert!(
        store.store_message(text(a, a, "self")).await.is_err(),
        "no message to oneself"
    );
    assert_eq!(
        send(store, text(a, b, "5")).await,
        5,
        "a refused message uses no id"
    );
}

/// A retried request id returns the first id and stores nothing.
pub async fn request_dedup<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    let req = request_id(7);
    let first = NewMessage {
        request_id: Some(req),
        ..text(a, b, "once")
    };
    assert_eq!(
        store.store_message(first.clone()).await.unwrap(),
        StoreOutcome::Stored(1)
    );
    let again = store.store_message(first.clone()).await.unwrap();
    assert_eq!(again, StoreOutcome::Duplicate(1));
    let other = NewMessage {
        request_id: Some(im_storage::RequestId { seq: 8, ..req }),
        ..text(a, b, "twice")
    };
    assert_eq!(
        store.store_message(other).await.unwrap(),
        StoreOutcome::Stored(2)
    );
    let h = store
        .history(b, SessionType::Single, a, 0, 10)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![2, 1], "the duplicate was not stored");
    let unread = store.unread(b).await.unwrap();
    assert_eq!(unread.iter().find(|u| u.peer_id == a).unwrap().count, 2);

    // Two origins (msg_servers) using the same seqs, queued together so that one batch looks
    // both up: each resend gets its own message's id back.
    let (o1, o2) = (request_id(100), request_id(100));
    let mut sent = Vec::new();
    for seq in [100, 101] {
        for origin in [o1.origin, o2.origin] {
            let rid = im_storage::RequestId { origin, seq };
            let body = format!("{origin}/{seq}");
            sent.push(NewMessage {
                request_id: Some(rid),
                ..text(a, b, &body)
            });
        }
    }
    let first: Vec<StoreOutcome> = join_all(sent.iter().map(|m| store.store_message(m.clone())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut ids: Vec<MsgId> = first.iter().map(|o| stored(*o)).collect();
    let again: Vec<StoreOutcome> = join_all(sent.iter().map(|m| store.store_message(m.clone())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let dups: Vec<StoreOutcome> = ids.iter().map(|id| StoreOutcome::Duplicate(*id)).collect();
    assert_eq!(again, dups);
    ids.sort_unstable();
    assert_eq!(ids, vec![3, 4, 5, 6]);

    // Copies of one request queued back to back (the same batch, or one batch while the one
    // before commits): exactly one is stored, the others answer its id.
    let copy = NewMessage {
        request_id: Some(request_id(200)),
        ..text(a, b, "copies")
    };
    let mut outcomes: Vec<StoreOutcome> =
        join_all((0..3).map(|_| store.store_message(copy.clone())))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    outcomes.sort_by_key(|o| matches!(o, StoreOutcome::Duplicate(_)));
    assert_eq!(
        outcomes,
        vec![
            StoreOutcome::Stored(7),
            StoreOutcome::Duplicate(7),
            StoreOutcome::Duplicate(7)
        ]
    );

    // Groups too.
    let g = new_group(store, a, GroupKind::Temporary, &[a, b]).await;
    let gm = NewMessage {
        request_id: Some(request_id(1)),
        ..group_text(a, g, "g")
    };
    assert_eq!(
        store.store_message(gm.clone()).await.unwrap(),
        StoreOutcome::Stored(1)
    );
    assert_eq!(
        store.store_message(gm).await.unwrap(),
        StoreOutcome::Duplicate(1)
    );
    assert_eq!(
        store.latest_msg_id(a, SessionType::Group, g).await.unwrap(),
        1
    );
    let gu = store.unread(b).await.unwrap();
    assert_eq!(gu.iter().find(|u| u.peer_id == g).unwrap().count, 1);
}

/// Content bytes come back exactly (the client's base64 text, but any bytes must survive).
pub async fn content_round_trip<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    let bodies: Vec<Vec<u8>> = vec![
        b"U2FsdGVkX1+abc/def==".to_vec(),
        "emoji 😀 and 中文".as_bytes().to_vec(),
        vec![0, 1, 2, 0xff, 0xfe, b'\'', b'"', b'\\', 0],
        vec![b'x'; 4096],
        Vec::new(),
    ];
    for (i, bytes) in bodies.iter().enumerate() {
        let msg = NewMessage {
            content: NewContent::Text(bytes.clone()),
            created: 1_000 + i as u32,
            ..text(a, b, "")
        };
        send(store, msg).await;
    }
    let h = store
        .history(a, SessionType::Single, b, 0, 10)
        .await
        .unwrap();
    let mut got: Vec<Vec<u8>> = h.iter().rev().map(|m| body(m).to_vec()).collect();
    assert_eq!(got.len(), bodies.len());
    for (i, (g, want)) in got.iter_mut().zip(&bodies).enumerate() {
        assert_eq!(g, want, "body {i}");
    }
    let m = &h[0];
    assert_eq!(
        (m.from_id, m.created, m.msg_type),
        (a, 1_004, MsgType::SingleText)
    );
}

/// History: newest first, `count`, `msg_id_begin`, both users see the pair's messages, a pair
/// that never talked is empty.
pub async fn history_paging<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    let t = now() - 100;
    for i in 1..=10u32 {
        let (from, to) = if i % 3 == 0 { (b, a) } else { (a, b) };
        send(store, text_at(from, to, &format!("m{i}"), t + i)).await;
    }
    let h = store
        .history(a, SessionType::Single, b, 0, 3)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![10, 9, 8]);
    assert_eq!(body(&h[1]), b"m9");
    assert_eq!((h[1].from_id, h[1].created), (b, t + 9));
    let h = store
        .history(b, SessionType::Single, a, 5, 3)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![5, 4, 3], "msg_id_begin is inclusive");
    let h = store
        .history(b, SessionType::Single, a, 2, 10)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![2, 1]);
    let h = store
        .history(a, SessionType::Single, b, 0, 100)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), (1..=10).rev().collect::<Vec<_>>());
    assert!(
        store
            .history(a, SessionType::Single, b, 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let stranger = ids.user(3);
    assert!(
        store
            .history(a, SessionType::Single, stranger, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .history(stranger, SessionType::Single, a, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Reading did not create the pair: its first message still gets id 1.
    assert_eq!(send(store, text(a, stranger, "hi")).await, 1);
    // Where `created` and ids disagree the backends differ (see `Store::history`): each
    // backend's tests check its own order.
}

/// By ids: newest first, unknown ids skipped, at most 100.
pub async fn messages_by_ids<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    let t = now() - 1_000;
    for i in 1..=120u32 {
        send(store, text_at(a, b, &format!("m{i}"), t + i)).await;
    }
    let got = store
        .messages_by_ids(b, SessionType::Single, a, &[3, 77, 1, 500])
        .await
        .unwrap();
    assert_eq!(ids_of(&got), vec![77, 3, 1]);
    assert_eq!(body(&got[0]), b"m77");
    let all: Vec<MsgId> = (1..=120).collect();
    let got = store
        .messages_by_ids(a, SessionType::Single, b, &all)
        .await
        .unwrap();
    assert_eq!(
        ids_of(&got),
        (21..=120).rev().collect::<Vec<_>>(),
        "the 100 newest"
    );
    let none = store
        .messages_by_ids(a, SessionType::Single, ids.user(3), &[1])
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Voice: an `IMAudio` row, read back as a reference (history, by id, sessions, unread).
pub async fn audio_messages<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    let voice = |path: &str| NewContent::Audio {
        path: path.into(),
        size: 3_000,
        duration: 7,
    };
    send(store, text(a, b, "text first")).await;
    let id = send(
        store,
        NewMessage {
            msg_type: MsgType::SingleAudio,
            content: voice("http://msfs/g0/000/000/a.amr"),
            ..text(a, b, "")
        },
    )
    .await;
    assert_eq!(id, 2);
    let expect = |m: &StoredMessage, path: &str| match &m.content {
        MessageContent::Audio(AudioRef {
            path: p,
            size,
            duration,
            ..
        }) => assert_eq!((p.as_str(), *size, *duration), (path, 3_000, 7)),
        other => panic!("expected audio, got {other:?}"),
    };
    let h = store
        .history(b, SessionType::Single, a, 0, 10)
        .await
        .unwrap();
    assert_eq!(h[0].msg_type, MsgType::SingleAudio);
    expect(&h[0], "http://msfs/g0/000/000/a.amr");
    assert!(matches!(h[1].content, MessageContent::Text(_)));
    let by_id = store
        .messages_by_ids(b, SessionType::Single, a, &[2])
        .await
        .unwrap();
    expect(&by_id[0], "http://msfs/g0/000/000/a.amr");
    let sessions = store.recent_sessions(b, 0, 10).await.unwrap();
    expect(
        &sessions.iter().find(|s| s.peer_id == a).unwrap().last,
        "http://msfs/g0/000/000/a.amr",
    );
    let unread = store.unread(b).await.unwrap();
    expect(
        &unread.iter().find(|u| u.peer_id == a).unwrap().last,
        "http://msfs/g0/000/000/a.amr",
    );

    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    let gid = send(
        store,
        NewMessage {
            msg_type: MsgType::GroupAudio,
            content: voice("http://msfs/g.amr"),
            ..group_text(a, g, "")
        },
    )
    .await;
    let h = store
        .history(b, SessionType::Group, g, 0, 10)
        .await
        .unwrap();
    assert_eq!((h[0].msg_id, h[0].msg_type), (gid, MsgType::GroupAudio));
    expect(&h[0], "http://msfs/g.amr");
}

/// Group messages: the group must exist and the sender be a member.
pub async fn group_messages<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c) = (ids.user(1), ids.user(2), ids.user(3));
    let missing = store
        .store_message(group_text(a, u32::MAX - 3, "x"))
        .await
        .unwrap();
    assert_eq!(missing, StoreOutcome::NoSuchGroup);
    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    assert_eq!(
        store.store_message(group_text(c, g, "x")).await.unwrap(),
        StoreOutcome::NotMember
    );
    assert_eq!(send(store, group_text(b, g, "1")).await, 1);
    let out = store
        .change_members(a, g, MemberChange::Remove, &[b])
        .await
        .unwrap();
    assert!(matches!(out, im_storage::ChangeOutcome::Changed { .. }));
    assert_eq!(
        store.store_message(group_text(b, g, "x")).await.unwrap(),
        StoreOutcome::NotMember
    );
    assert_eq!(
        send(store, group_text(a, g, "2")).await,
        2,
        "refused messages use no id"
    );

    let h = store
        .history(a, SessionType::Group, g, 0, 10)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![2, 1]);
    assert_eq!((h[1].from_id, body(&h[1])), (b, b"1".as_slice()));
    assert_eq!(h[0].msg_type, MsgType::GroupText);
    // Non-members (a former member included) see nothing.
    assert!(
        store
            .history(b, SessionType::Group, g, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .history(c, SessionType::Group, g, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .messages_by_ids(c, SessionType::Group, g, &[1, 2])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.latest_msg_id(c, SessionType::Group, g).await.unwrap(),
        0
    );
    assert_eq!(
        store.latest_msg_id(a, SessionType::Group, g).await.unwrap(),
        2
    );
    let groups = store.groups(&[g]).await.unwrap();
    assert!(groups[0].last_chated >= now() - 5, "lastChated set");
}

/// A member added later sees only messages created at or after the join time.
pub async fn group_history_join_time<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, late) = (ids.user(1), ids.user(2), ids.user(3));
    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    // Messages created after the founders joined and before the newcomer does.
    next_second().await;
    send(store, group_text(a, g, "old 1")).await;
    send(store, group_text(b, g, "old 2")).await;
    next_second().await;
    let t = now();
    store
        .change_members(0, g, MemberChange::Add, &[late])
        .await
        .unwrap();
    let joined = store.group_members(g).await.unwrap().unwrap();
    let joined = joined.iter().find(|m| m.user_id == late).unwrap().joined;
    assert!(joined >= t, "join time is now");
    send(store, group_text_at(a, g, "new", joined)).await;

    let h = store
        .history(late, SessionType::Group, g, 0, 10)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![3]);
    let h = store
        .history(a, SessionType::Group, g, 0, 10)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![3, 2, 1]);
    let h = store
        .history(a, SessionType::Group, g, 2, 10)
        .await
        .unwrap();
    assert_eq!(ids_of(&h), vec![2, 1]);
    let got = store
        .messages_by_ids(late, SessionType::Group, g, &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(ids_of(&got), vec![3]);
    assert_eq!(
        store
            .latest_msg_id(late, SessionType::Group, g)
            .await
            .unwrap(),
        3
    );
}

/// Many tasks storing to many conversations at once: per conversation the ids are exactly
/// 1..=n, and every stored message is readable.
pub async fn concurrent_ids<S: Store>(store: &S) {
    let ids = Ids::new();
    let users: Vec<_> = (1..=8).map(|n| ids.user(n)).collect();
    let g = new_group(store, users[0], GroupKind::Normal, &users).await;
    const TASKS: usize = 32;
    const EACH: usize = 25;
    let results = join_all((0..TASKS).map(|t| {
        let users = users.clone();
        async move {
            let mut got = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let from = users[(t + i) % users.len()];
                let to = users[(t + 2 * i + 1) % users.len()];
                let (conv, msg) = if from == to {
                    ((0, g), group_text(from, g, &format!("{t}/{i}")))
                } else {
                    (
                        (from.min(to), from.max(to)),
                        text(from, to, &format!("{t}/{i}")),
                    )
                };
                got.push((conv, send(store, msg).await));
            }
            got
        }
    }))
    .await;
    let mut per_conv: BTreeMap<(u32, u32), Vec<MsgId>> = BTreeMap::new();
    for (conv, id) in results.into_iter().flatten() {
        per_conv.entry(conv).or_default().push(id);
    }
    assert!(per_conv.len() > 5);
    for (conv, mut got) in per_conv {
        got.sort_unstable();
        let n = got.len() as MsgId;
        assert_eq!(got, (1..=n).collect::<Vec<_>>(), "conversation {conv:?}");
        let h = if conv.0 == 0 {
            store
                .history(users[0], SessionType::Group, g, 0, 1_000)
                .await
                .unwrap()
        } else {
            store
                .history(conv.0, SessionType::Single, conv.1, 0, 1_000)
                .await
                .unwrap()
        };
        let mut stored_ids = ids_of(&h);
        stored_ids.sort_unstable();
        assert_eq!(stored_ids, (1..=n).collect::<Vec<_>>(), "stored {conv:?}");
    }
}

/// The ordering contract: writes are applied in call order even when their futures are
/// awaited later (or together).
pub async fn call_order<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b) = (ids.user(1), ids.user(2));
    let mut futures = Vec::new();
    for i in 0..40 {
        futures.push(store.store_message(text(a, b, &format!("{i}"))));
    }
    let got: Vec<MsgId> = join_all(futures)
        .await
        .into_iter()
        .map(|r| stored(r.unwrap()))
        .collect();
    assert_eq!(
        got,
        (1..=40).collect::<Vec<_>>(),
        "ids follow the call order"
    );
    let h = store
        .history(a, SessionType::Single, b, 0, 1)
        .await
        .unwrap();
    assert_eq!(body(&h[0]), b"39");

    // Different kinds of writes keep their relative order too: 3 messages, a read ack, 2 more.
    let (c, d) = (ids.user(3), ids.user(4));
    let f1: Vec<_> = (0..3)
        .map(|_| store.store_message(text(c, d, "x")))
        .collect();
    let ack = store.clear_unread(d, SessionType::Single, c);
    let f2: Vec<_> = (0..2)
        .map(|_| store.store_message(text(c, d, "y")))
        .collect();
    let (r2, ra, r1) = (join_all(f2).await, ack.await, join_all(f1).await);
    ra.unwrap();
    assert!(
        r1.into_iter()
            .chain(r2)
            .all(|r| matches!(r, Ok(StoreOutcome::Stored(_))))
    );
    let unread = store.unread(d).await.unwrap();
    assert_eq!(unread.iter().find(|u| u.peer_id == c).unwrap().count, 2);
}
