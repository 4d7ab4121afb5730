//! Groups, membership rules, push mute, offline files.

use im_storage::{
    ChangeOutcome, GroupKind, MemberChange, NewGroup, SessionType, ShieldOutcome, StorageError,
    Store,
};

use super::{Ids, group_text, new_group, now, send, sorted};

fn changed(outcome: ChangeOutcome) -> (Vec<u32>, Vec<u32>, u32) {
    match outcome {
        ChangeOutcome::Changed {
            current,
            changed,
            version,
        } => (sorted(current), sorted(changed), version),
        other => panic!("expected Changed, got {other:?}"),
    }
}

/// Create, read back, list normal groups, page through groups.
pub async fn groups_and_members<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c) = (ids.user(1), ids.user(2), ids.user(3));
    let empty_name = NewGroup {
        creator: a,
        name: String::new(),
        avatar: String::new(),
        kind: GroupKind::Temporary,
        members: vec![a],
    };
    assert!(matches!(
        store.create_group(empty_name.clone()).await,
        Err(StorageError::Invalid(_))
    ));
    let no_members = NewGroup {
        name: "x".into(),
        members: Vec::new(),
        ..empty_name.clone()
    };
    assert!(matches!(
        store.create_group(no_members).await,
        Err(StorageError::Invalid(_))
    ));

    let t = now();
    let temp = store
        .create_group(NewGroup {
            creator: a,
            name: "temp 群".into(),
            avatar: "http://msfs/avatar.png".into(),
            kind: GroupKind::Temporary,
            // The creator is a member only when listed; duplicates are ignored.
            members: vec![b, c, b],
        })
        .await
        .unwrap();
    let normal = new_group(store, 0, GroupKind::Normal, &[a, b]).await;
    assert_ne!(temp, normal);

    let got = store.groups(&[temp, u32::MAX - 5, normal]).await.unwrap();
    assert_eq!(got.len(), 2, "unknown ids skipped");
    assert!(
        got.windows(2).all(|w| w[0].updated >= w[1].updated),
        "updated desc"
    );
    let gt = got.iter().find(|g| g.id == temp).unwrap();
    assert_eq!(
        (gt.name.as_str(), gt.avatar.as_str()),
        ("temp 群", "http://msfs/avatar.png")
    );
    assert_eq!(
        (gt.creator, gt.kind, gt.version, gt.status),
        (a, GroupKind::Temporary, 1, 0)
    );
    assert_eq!(gt.last_chated, 0);
    assert!(gt.created >= t && gt.updated >= t);
    assert_eq!(
        sorted(gt.members.iter().map(|m| m.user_id).collect()),
        sorted(vec![b, c])
    );
    assert!(gt.members.iter().all(|m| m.joined >= t));
    let gn = got.iter().find(|g| g.id == normal).unwrap();
    assert_eq!((gn.creator, gn.kind), (0, GroupKind::Normal));

    let members = store.group_members(temp).await.unwrap().unwrap();
    assert_eq!(
        sorted(members.iter().map(|m| m.user_id).collect()),
        sorted(vec![b, c])
    );
    assert_eq!(store.group_members(u32::MAX - 5).await.unwrap(), None);

    // Normal groups only, active membership only.
    let second = new_group(store, 0, GroupKind::Normal, &[b]).await;
    assert_eq!(store.normal_groups(a).await.unwrap(), vec![(normal, 1)]);
    let of_b = store.normal_groups(b).await.unwrap();
    assert_eq!(
        sorted(of_b.iter().map(|g| g.0).collect()),
        sorted(vec![normal, second])
    );
    assert!(
        store.normal_groups(c).await.unwrap().is_empty(),
        "temporary groups are not listed"
    );
    store
        .change_members(0, normal, MemberChange::Remove, &[a])
        .await
        .unwrap();
    assert!(store.normal_groups(a).await.unwrap().is_empty());
    assert_eq!(
        store
            .normal_groups(b)
            .await
            .unwrap()
            .iter()
            .find(|g| g.0 == normal)
            .unwrap()
            .1,
        2,
        "with the current version"
    );

    // Admin paging by id.
    let mut seen = Vec::new();
    let mut after = temp - 1;
    loop {
        let page = store.list_groups(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2 && page.windows(2).all(|w| w[0].id < w[1].id));
        after = last.id;
        seen.extend(page.into_iter().map(|g| (g.id, g.members.len())));
    }
    for (id, n) in [(temp, 2), (normal, 1), (second, 1)] {
        assert!(seen.contains(&(id, n)), "{id} with {n} members in {seen:?}");
    }
}

/// FLOWS.md 12.4 with our fix of WEAKNESSES 11: admin (0) always; temporary group + add:
/// members only; everything else: the creator. Existing members are dropped from an add.
pub async fn change_members_rules<S: Store>(store: &S) {
    let ids = Ids::new();
    let (creator, member, outsider, x, y) = (
        ids.user(1),
        ids.user(2),
        ids.user(3),
        ids.user(4),
        ids.user(5),
    );
    let temp = new_group(store, creator, GroupKind::Temporary, &[creator, member]).await;
    let normal = new_group(store, creator, GroupKind::Normal, &[creator, member]).await;
    let missing = u32::MAX - 9;

    let denied = |o: ChangeOutcome| assert_eq!(o, ChangeOutcome::Denied);
    let add = MemberChange::Add;
    let del = MemberChange::Remove;
    assert_eq!(
        store
            .change_members(creator, missing, add, &[x])
            .await
            .unwrap(),
        ChangeOutcome::NoSuchGroup
    );
    denied(
        store
            .change_members(outsider, temp, add, &[x])
            .await
            .unwrap(),
    );
    denied(
        store
            .change_members(outsider, normal, add, &[x])
            .await
            .unwrap(),
    );
    denied(
        store
            .change_members(member, normal, add, &[x])
            .await
            .unwrap(),
    );
    denied(
        store
            .change_members(member, temp, del, &[creator])
            .await
            .unwrap(),
    );
    denied(
        store
            .change_members(outsider, temp, del, &[member])
            .await
            .unwrap(),
    );

    // A member adds to a temporary group (and x's existing membership is not duplicated).
    let (cur, chg, v) = changed(
        store
            .change_members(member, temp, add, &[x, member])
            .await
            .unwrap(),
    );
    assert_eq!(
        (cur, chg, v),
        (sorted(vec![creator, member, x]), vec![x], 2)
    );
    assert_eq!(
        store
            .change_members(member, temp, add, &[x, member])
            .await
            .unwrap(),
        ChangeOutcome::NothingToChange
    );
    assert_eq!(
        store.groups(&[temp]).await.unwrap()[0].version,
        2,
        "no change, no bump"
    );

    // The creator adds and removes in a normal group; the admin too.
    let (cur, chg, v) = changed(
        store
            .change_members(creator, normal, add, &[x, y])
            .await
            .unwrap(),
    );
    assert_eq!(
        (cur, chg, v),
        (sorted(vec![creator, member, x, y]), sorted(vec![x, y]), 2)
    );
    send(store, group_text(x, normal, "hello")).await;
    assert!(
        store
            .recent_sessions(x, 0, 10)
            .await
            .unwrap()
            .iter()
            .any(|s| s.peer_id == normal)
    );
    let (cur, chg, v) = changed(
        store
            .change_members(creator, normal, del, &[x])
            .await
            .unwrap(),
    );
    assert_eq!(
        (cur, chg, v),
        (sorted(vec![creator, member, y]), vec![x], 3)
    );
    let hidden = store.recent_sessions(x, 0, 10).await.unwrap();
    assert!(
        hidden
            .iter()
            .all(|s| s.peer_id != normal || s.session_type != SessionType::Group),
        "removed member's group session hidden"
    );
    let (cur, _, v) = changed(
        store
            .change_members(0, normal, del, &[y, member])
            .await
            .unwrap(),
    );
    assert_eq!((cur, v), (vec![creator], 4));
    // Re-adding a removed member reactivates it with a new join time.
    let before = now();
    let (cur, chg, v) = changed(store.change_members(0, normal, add, &[x]).await.unwrap());
    assert_eq!((cur, chg, v), (sorted(vec![creator, x]), vec![x], 5));
    let members = store.group_members(normal).await.unwrap().unwrap();
    assert_eq!(members.len(), 2, "one row per member");
    assert!(members.iter().find(|m| m.user_id == x).unwrap().joined >= before);
    // The creator may remove in a temporary group; a removed member may no longer add.
    changed(
        store
            .change_members(creator, temp, del, &[member])
            .await
            .unwrap(),
    );
    denied(store.change_members(member, temp, add, &[y]).await.unwrap());
    assert_eq!(
        store.change_members(0, temp, add, &[]).await.unwrap(),
        ChangeOutcome::NothingToChange
    );
}

/// Group push mute: false by default, per member, group and membership checked.
pub async fn group_shields<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, outsider) = (ids.user(1), ids.user(2), ids.user(3));
    let g = new_group(store, a, GroupKind::Normal, &[a, b]).await;
    let missing = u32::MAX - 11;
    let both = store
        .group_shields(g, &[a, b, outsider])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(both, vec![(a, false), (b, false), (outsider, false)]);
    assert_eq!(
        store.set_group_shield(b, g, true).await.unwrap(),
        ShieldOutcome::Done
    );
    assert_eq!(
        store.set_group_shield(outsider, g, true).await.unwrap(),
        ShieldOutcome::NotMember
    );
    assert_eq!(
        store.set_group_shield(a, missing, true).await.unwrap(),
        ShieldOutcome::NoSuchGroup
    );
    let got = store.group_shields(g, &[a, b]).await.unwrap().unwrap();
    assert_eq!(got, vec![(a, false), (b, true)]);
    assert_eq!(
        store.set_group_shield(b, g, false).await.unwrap(),
        ShieldOutcome::Done
    );
    assert_eq!(
        store.group_shields(g, &[b]).await.unwrap().unwrap(),
        vec![(b, false)]
    );
    assert_eq!(store.group_shields(missing, &[a]).await.unwrap(), None);
}

/// Offline files: add, list oldest first, delete once, expire.
pub async fn offline_files<S: Store>(store: &S) {
    let ids = Ids::new();
    let (a, b, c) = (ids.user(1), ids.user(2), ids.user(3));
    let t = now();
    store
        .add_offline_file(a, b, "task-1", "report.pdf", 1_000)
        .await
        .unwrap();
    store
        .add_offline_file(c, b, "task-2", "照片.jpg", 2_000)
        .await
        .unwrap();
    store
        .add_offline_file(a, c, "task-3", "other", 3)
        .await
        .unwrap();
    let files = store.offline_files(b).await.unwrap();
    let view: Vec<_> = files
        .iter()
        .map(|f| {
            (
                f.from_id,
                f.to_id,
                f.task_id.as_str(),
                f.file_name.as_str(),
                f.size,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (a, b, "task-1", "report.pdf", 1_000),
            (c, b, "task-2", "照片.jpg", 2_000)
        ]
    );
    assert!(files.iter().all(|f| f.created >= t && f.created <= now()));
    assert!(files[0].id != files[1].id);

    assert!(
        !store.delete_offline_file(c, b, "task-1").await.unwrap(),
        "wrong sender"
    );
    assert!(store.delete_offline_file(a, b, "task-1").await.unwrap());
    assert!(!store.delete_offline_file(a, b, "task-1").await.unwrap());
    assert_eq!(store.offline_files(b).await.unwrap().len(), 1);

    // Expiry takes only older records (ours are from now, so a past cut-off keeps them).
    let kept = store
        .expire_offline_files(t.saturating_sub(3_600))
        .await
        .unwrap();
    assert!(kept.iter().all(|f| f.to_id != b && f.to_id != c));
    assert_eq!(store.offline_files(b).await.unwrap().len(), 1);
    let expired = store.expire_offline_files(now() + 1).await.unwrap();
    let mine: Vec<_> = expired
        .iter()
        .filter(|f| f.to_id == b || f.to_id == c)
        .map(|f| f.task_id.as_str())
        .collect();
    assert_eq!(mine, vec!["task-2", "task-3"], "oldest first");
    assert!(store.offline_files(b).await.unwrap().is_empty());
    assert!(store.offline_files(c).await.unwrap().is_empty());
}
