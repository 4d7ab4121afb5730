//! Accounts, departments, discovery and push tokens.

use im_storage::password::{md5_hex, verify_argon2, verify_legacy};
use im_storage::{StorageError, Store, TokenKind, UserPatch};

use super::{Ids, new_user, next_second, now};

/// `credentials`: by name, any status, the active row first; the legacy hash verifies the
/// client digest; the argon2 side table is returned once set.
pub async fn credentials_and_passwords<S: Store>(store: &S) {
    let ids = Ids::new();
    assert_eq!(store.credentials(&ids.name("nobody")).await.unwrap(), None);

    let user = new_user(&ids, "alice", "secret");
    let id = store.add_user(user.clone()).await.unwrap();
    let c = store.credentials(&user.name).await.unwrap().unwrap();
    assert_eq!(
        (c.user.id, c.user.status, c.argon2.as_deref()),
        (id, 0, None)
    );
    assert!(verify_legacy(&md5_hex("secret"), &c.salt, &c.legacy_hash));
    assert!(!verify_legacy(&md5_hex("wrong"), &c.salt, &c.legacy_hash));
    assert!(
        c.salt.parse::<u32>().is_ok_and(|s| s < 10_000),
        "salt {:?}",
        c.salt
    );
    // The user's row comes with them, as users_by_ids reads it (one query per login).
    let row = store.users_by_ids(&[id]).await.unwrap();
    assert_eq!(vec![c.user.clone()], row);
    assert_eq!((c.user.nick.as_str(), c.user.id), (user.nick.as_str(), id));

    // argon2 hardening: stored, replaced.
    let phc = im_storage::password::argon2_hash(&md5_hex("secret")).unwrap();
    store.set_argon2(id, &phc).await.unwrap();
    let c = store.credentials(&user.name).await.unwrap().unwrap();
    assert!(verify_argon2(
        &md5_hex("secret"),
        c.argon2.as_deref().unwrap()
    ));
    let phc2 = im_storage::password::argon2_hash(&md5_hex("other")).unwrap();
    store.set_argon2(id, &phc2).await.unwrap();
    let c = store.credentials(&user.name).await.unwrap().unwrap();
    assert_eq!(c.argon2.as_deref(), Some(phc2.as_str()));

    // A user who left (status 3) is still found, with its status, when alone...
    let patch = UserPatch {
        status: Some(3),
        ..UserPatch::default()
    };
    assert!(store.update_user(id, patch).await.unwrap());
    let c = store.credentials(&user.name).await.unwrap().unwrap();
    assert_eq!((c.user.id, c.user.status), (id, 3));
    // ...but an active namesake with a higher id wins.
    let newer = store
        .add_user(new_user(&ids, "alice", "pw2"))
        .await
        .unwrap();
    assert!(newer > id);
    let c = store.credentials(&user.name).await.unwrap().unwrap();
    assert_eq!(
        (c.user.id, c.user.status, c.user.name.as_str()),
        (newer, 0, user.name.as_str())
    );
    assert!(verify_legacy(&md5_hex("pw2"), &c.salt, &c.legacy_hash));
}

/// `users_by_ids`, `changed_users`, signature and push shield (FLOWS.md 10, 15.5).
pub async fn users_and_sync<S: Store>(store: &S) {
    let ids = Ids::new();
    let a = store.add_user(new_user(&ids, "a", "x")).await.unwrap();
    let b = store.add_user(new_user(&ids, "b", "x")).await.unwrap();
    let mut left = new_user(&ids, "left", "x");
    left.status = 3;
    let gone = store.add_user(left).await.unwrap();

    let mut got = store
        .users_by_ids(&[a, ids.user(9_999), b, gone])
        .await
        .unwrap();
    got.sort_by_key(|u| u.id);
    assert_eq!(
        got.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![a, b, gone]
    );
    let ua = &got[0];
    assert_eq!(ua.name, ids.name("a"));
    assert_eq!(
        (ua.nick.as_str(), ua.sex, ua.domain.as_str()),
        ("nick a", 1, "a")
    );
    assert_eq!(
        (ua.phone.as_str(), ua.depart_id, ua.status),
        ("13800000000", 1, 0)
    );
    assert_eq!(ua.email, "a@example.invalid");
    assert!(ua.created > 0 && ua.updated >= ua.created);
    assert!(!ua.push_shield);

    // Full sync: everyone but those who left.
    let all = store.changed_users(0).await.unwrap();
    assert!(all.iter().any(|u| u.id == a) && all.iter().any(|u| u.id == b));
    assert!(all.iter().all(|u| u.id != gone && u.status != 3));

    // Incremental: a signature change bumps `updated`, and every status is reported.
    next_second().await;
    let t = now();
    assert!(store.set_sign_info(a, "hello 世界").await.unwrap());
    let patch = UserPatch {
        nick: Some("b left".into()),
        status: Some(3),
        ..UserPatch::default()
    };
    assert!(store.update_user(b, patch).await.unwrap());
    let changed = store.changed_users(t).await.unwrap();
    let changed_a = changed.iter().find(|u| u.id == a).expect("a changed");
    assert_eq!(changed_a.sign_info, "hello 世界");
    assert!(changed_a.updated >= t);
    let changed_b = changed.iter().find(|u| u.id == b).expect("b changed");
    assert_eq!((changed_b.status, changed_b.nick.as_str()), (3, "b left"));
    assert!(
        changed.iter().all(|u| u.id != gone),
        "untouched users are not resent"
    );
    assert!(!store.set_sign_info(ids.user(9_999), "x").await.unwrap());

    // Push shield.
    assert_eq!(store.push_shield(a).await.unwrap(), Some(false));
    assert!(store.set_push_shield(a, true).await.unwrap());
    assert_eq!(store.push_shield(a).await.unwrap(), Some(true));
    assert!(store.set_push_shield(a, false).await.unwrap());
    assert_eq!(store.push_shield(a).await.unwrap(), Some(false));
    assert_eq!(store.push_shield(ids.user(9_999)).await.unwrap(), None);
    assert!(!store.set_push_shield(ids.user(9_999), true).await.unwrap());
}

/// Departments: add, list by id, incremental sync by `updated > since`.
pub async fn departments<S: Store>(store: &S) {
    let ids = Ids::new();
    let t0 = now().saturating_sub(1);
    let top = store.add_department(&ids.name("top"), 0, 1).await.unwrap();
    let sub = store
        .add_department(&ids.name("sub"), top, 2)
        .await
        .unwrap();
    assert!(sub > top);
    let all = store.list_departments().await.unwrap();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
    let d = all.iter().find(|d| d.id == sub).unwrap();
    assert_eq!(
        (d.name.clone(), d.parent_id, d.priority, d.status),
        (ids.name("sub"), top, 2, 0)
    );
    let changed = store.changed_departments(t0).await.unwrap();
    assert!(changed.iter().any(|d| d.id == top) && changed.iter().any(|d| d.id == sub));
    let later = store.changed_departments(now() + 10).await.unwrap();
    assert!(later.iter().all(|d| d.id != top && d.id != sub));
}

/// Admin user operations: conflicts, patches, password changes, paging.
pub async fn admin_users<S: Store>(store: &S) {
    let ids = Ids::new();
    let user = new_user(&ids, "carol", "pw");
    let id = store.add_user(user.clone()).await.unwrap();
    let dup = store.add_user(user.clone()).await;
    assert!(matches!(dup, Err(StorageError::Conflict(_))), "{dup:?}");
    let unnamed = im_storage::NewUser::default();
    assert!(matches!(
        store.add_user(unnamed).await,
        Err(StorageError::Invalid(_))
    ));

    let before = store.users_by_ids(&[id]).await.unwrap().remove(0);
    next_second().await;
    let patch = UserPatch {
        nick: Some("Carol".into()),
        avatar: Some("http://msfs/g0/000/000/1.png".into()),
        depart_id: Some(7),
        password: Some("new pw".into()),
        ..UserPatch::default()
    };
    assert!(store.update_user(id, patch).await.unwrap());
    let after = store.users_by_ids(&[id]).await.unwrap().remove(0);
    assert_eq!((after.nick.as_str(), after.depart_id), ("Carol", 7));
    assert_eq!(after.avatar, "http://msfs/g0/000/000/1.png");
    assert_eq!(
        (after.phone.as_str(), after.sex),
        (before.phone.as_str(), before.sex)
    );
    assert!(after.updated > before.updated, "update_user bumps updated");
    assert!(
        store
            .changed_users(after.updated)
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == id)
    );
    let c = store.credentials(&user.name).await.unwrap().unwrap();
    assert!(verify_legacy(&md5_hex("new pw"), &c.salt, &c.legacy_hash));
    assert!(!verify_legacy(&md5_hex("pw"), &c.salt, &c.legacy_hash));
    assert!(
        !store
            .update_user(ids.user(9_999), UserPatch::default())
            .await
            .unwrap()
    );

    // After the first user left, the name is free again.
    let leave = UserPatch {
        status: Some(3),
        ..UserPatch::default()
    };
    assert!(store.update_user(id, leave).await.unwrap());
    let again = store.add_user(user).await.unwrap();
    assert_ne!(again, id);

    // Paging by id.
    let mut mine = vec![id, again];
    for n in 0..3 {
        mine.push(
            store
                .add_user(new_user(&ids, &format!("p{n}"), "x"))
                .await
                .unwrap(),
        );
    }
    let mut seen = Vec::new();
    let mut after_id = id - 1;
    loop {
        let page = store.list_users(after_id, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        assert!(page.windows(2).all(|w| w[0].id < w[1].id));
        assert!(page[0].id > after_id);
        after_id = last.id;
        seen.extend(page.iter().map(|u| u.id));
    }
    assert!(
        mine.iter().all(|m| seen.contains(m)),
        "{mine:?} in {seen:?}"
    );
}

/// Discovery items: visible ones in ascending priority; hiding.
pub async fn discovery_items<S: Store>(store: &S) {
    let ids = Ids::new();
    let b = store
        .add_discovery(&ids.name("b"), "http://b", 20)
        .await
        .unwrap();
    let a = store
        .add_discovery(&ids.name("a"), "http://a", 10)
        .await
        .unwrap();
    let items = store.discovery().await.unwrap();
    let pos = |id| items.iter().position(|i| i.id == id).unwrap();
    assert!(pos(a) < pos(b), "ascending priority");
    assert!(items.windows(2).all(|w| w[0].priority <= w[1].priority));
    let ia = &items[pos(a)];
    assert_eq!(
        (ia.name.clone(), ia.url.as_str(), ia.priority, ia.status),
        (ids.name("a"), "http://a", 10, 0)
    );
    assert!(store.remove_discovery(a).await.unwrap());
    assert!(store.discovery().await.unwrap().iter().all(|i| i.id != a));
    assert!(!store.remove_discovery(u32::MAX - 7).await.unwrap());
}

/// Device tokens (STORAGE.md 5.2, FLOWS.md 15.4): kinds from the client type, replacement,
/// logout, and compare-and-delete that never removes a newer token.
pub async fn device_tokens<S: Store>(store: &S) {
    let ids = Ids::new();
    let (ios, android, pc, none) = (ids.user(1), ids.user(2), ids.user(3), ids.user(4));
    store.set_device_token(ios, 0x11, "aabbcc").await.unwrap();
    store
        .set_device_token(android, 0x12, "fcm-1")
        .await
        .unwrap();
    store.set_device_token(pc, 0x01, "bare").await.unwrap();
    let mut got = store
        .device_tokens(&[ios, android, pc, none])
        .await
        .unwrap();
    got.sort_by_key(|t| t.user_id);
    let view: Vec<_> = got
        .iter()
        .map(|t| (t.user_id, t.kind, t.token.as_str()))
        .collect();
    assert_eq!(
        view,
        vec![
            (ios, TokenKind::Ios, "aabbcc"),
            (android, TokenKind::Android, "fcm-1"),
            (pc, TokenKind::Other, "bare"),
        ]
    );

    // A new token replaces the old one; a dead-token report for the old one changes nothing.
    store.set_device_token(ios, 0x11, "ddeeff").await.unwrap();
    assert!(!store.remove_device_token_if(ios, "aabbcc").await.unwrap());
    let got = store.device_tokens(&[ios]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].kind, got[0].token.as_str()),
        (TokenKind::Ios, "ddeeff")
    );
    // The current token is removed.
    assert!(store.remove_device_token_if(ios, "ddeeff").await.unwrap());
    assert!(store.device_tokens(&[ios]).await.unwrap().is_empty());
    assert!(!store.remove_device_token_if(ios, "ddeeff").await.unwrap());
    assert!(!store.remove_device_token_if(none, "x").await.unwrap());

    // Logout: an empty token clears.
    store.set_device_token(android, 0x12, "").await.unwrap();
    assert!(store.device_tokens(&[android]).await.unwrap().is_empty());
    // Re-registering works after a clear.
    store
        .set_device_token(android, 0x12, "fcm-2")
        .await
        .unwrap();
    let got = store.device_tokens(&[android]).await.unwrap();
    assert_eq!(got[0].token, "fcm-2");
}
