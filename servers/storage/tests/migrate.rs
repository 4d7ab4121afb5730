//! `imctl migrate` at the library level: SQLite -> MariaDB (+Redis) -> SQLite gives the same
//! rows and cache data and working stores; `schema up`; an original TeamTalk deployment
//! (MySQL + its Redis) imports into SQLite with its passwords, history, members and
//! counters. Interruptions and verification failures: tests/migrate_resume.rs.
//!
//! The MariaDB/Redis cases need `IM_TEST_MYSQL_URL` and `IM_TEST_REDIS_URL` (see
//! tests/migrate_support); each works in its own database and key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod migrate_support;

use std::path::{Path, PathBuf};

use im_storage::migrate::{CopyOptions, Quiet, copy, schema_up};
use im_storage::password::{md5_hex, verify_argon2, verify_legacy};
use im_storage::{
    MessageContent, MsgType, NewContent, NewMessage, SessionType, SqliteStore, Store, StoreOutcome,
    TokenKind,
};
use migrate_support::{
    Env, World, assert_same, assert_same_rows, assert_verified, snapshot, source_file,
    sqlite_config,
};

fn text(from: u32, to: u32, body: &str) -> NewMessage {
    NewMessage {
        from_id: from,
        to_id: to,
        msg_type: MsgType::SingleText,
        content: NewContent::Text(body.as_bytes().to_vec()),
        created: 1_800_000_000,
        request_id: None,
    }
}

fn stored(outcome: StoreOutcome) -> u32 {
    match outcome {
        StoreOutcome::Stored(id) => id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

/// The next ids of the first pair and the first group continue above the copied ones.
async fn ids_continue<S: Store>(store: &S, w: &World, what: &str) {
    let (a, b) = w.pairs[0];
    let last = store
        .latest_msg_id(a, SessionType::Single, b)
        .await
        .unwrap();
    let next = stored(store.store_message(text(b, a, "next")).await.unwrap());
    assert_eq!(next, last + 1, "{what}: single ids continue");
    let g = w.groups[0];
    let last = store.latest_msg_id(a, SessionType::Group, g).await.unwrap();
    let msg = NewMessage {
        msg_type: MsgType::GroupText,
        ..text(a, g, "next")
    };
    assert_eq!(
        stored(store.store_message(msg).await.unwrap()),
        last + 1,
        "{what}: group ids continue"
    );
}

/// SQLite -> MariaDB + Redis -> SQLite: identical rows table by table, identical cache tables,
/// and the Store API of all three stores reads the same; new messages continue the ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_mariadb_and_back() {
    let Some(env) = Env::new().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, world) = source_file(&dir, 0).await;
    let b = dir.path().join("back.db");
    let to_mysql = CopyOptions {
        batch: 7,
        to_redis: Some(env.redis()),
        ..CopyOptions::default()
    };
    let report = copy(a.to_str().unwrap(), &env.url, &to_mysql, &Quiet)
        .await
        .unwrap();
    assert_verified(&report);
    let cache = report.cache.as_ref().unwrap();
    assert!(
        cache.categories.iter().all(|c| c.equal == Some(true)),
        "{cache:?}"
    );
    let count = |name: &str| {
        cache
            .categories
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.source)
            .unwrap()
    };
    for name in ["unread", "msg_ids", "group_counters", "read_marks"] {
        assert!(count(name) > 0, "{name}: {cache:?}");
    }
    assert_eq!((count("device_tokens"), count("token_owners")), (4, 5));
    assert_eq!(count("group_settings"), 3);
    assert!(count("group_members") >= 36, "{cache:?}");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let messages: u64 = report
        .tables
        .iter()
        .filter(|t| t.table.contains("Message_"))
        .map(|t| t.copied)
        .sum();
    assert!(messages > 80, "{messages}");

    // Bytes that are not UTF-8, and a text that looks escaped, are stored the MySQL store's
    // way (escaped) and read back exactly (the snapshots below).
    let pool = env.pool().await;
    for table in ["IMMessage_1", "IMMessage_2", "IMGroupMessage_1"] {
        let escaped: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE content LIKE CONCAT(CHAR(1), 'b64:%')"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(escaped, 1, "{table}");
    }
    pool.close().await;

    let back = CopyOptions {
        batch: 5,
        from_redis: Some(env.redis()),
        ..CopyOptions::default()
    };
    let report = copy(&env.url, b.to_str().unwrap(), &back, &Quiet)
        .await
        .unwrap();
    assert_verified(&report);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(
        report
            .cache
            .as_ref()
            .unwrap()
            .member_hash_mismatches
            .is_empty()
    );

    let rows = assert_same_rows(&a, &b);
    assert!(rows > 200, "{rows} rows compared");
    // Not copied on purpose: request de-duplication entries.
    assert!(migrate_support::sqlite_count(&a, "SELECT COUNT(*) FROM IMRequestDedup") > 0);
    assert_eq!(
        migrate_support::sqlite_count(&b, "SELECT COUNT(*) FROM IMRequestDedup"),
        0
    );

    let original = SqliteStore::open(&sqlite_config(&a)).await.unwrap();
    let expected = snapshot(&original, &world).await;
    original.close().await;
    let mysql = env.store().await;
    assert_same("MariaDB copy", &expected, &snapshot(&mysql, &world).await);
    let returned = SqliteStore::open(&sqlite_config(&b)).await.unwrap();
    assert_same(
        "SQLite copy of the copy",
        &expected,
        &snapshot(&returned, &world).await,
    );
    // Passwords, legacy and argon2, still check out.
    let c = returned
        .credentials(&world.names[0])
        .await
        .unwrap()
        .unwrap();
    assert!(verify_legacy(&md5_hex("pw0"), &c.salt, &c.legacy_hash));
    assert!(verify_argon2(&md5_hex("pw0"), c.argon2.as_deref().unwrap()));
    ids_continue(&mysql, &world, "MariaDB").await;
    ids_continue(&returned, &world, "SQLite").await;
    mysql.close().await;
    returned.close().await;
}

/// `schema up` creates either backend's schema and is idempotent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_up_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/tt.db");
    let report = schema_up(path.to_str().unwrap()).await.unwrap();
    assert_eq!((report.backend, report.version), ("sqlite", 2));
    assert!(
        schema_up(&format!("sqlite://{}", path.display()))
            .await
            .is_ok()
    );
    assert!(migrate_support::sqlite_count(&path, "SELECT COUNT(*) FROM IMMessage_7") == 0);
    let Some(env) = Env::new().await else {
        return;
    };
    let report = schema_up(&env.url).await.unwrap();
    assert_eq!(report.backend, "mysql");
    assert!(
        report.unique_keys.iter().all(|k| k.state == "added"),
        "{report:?}"
    );
    let report = schema_up(&env.url).await.unwrap();
    assert!(
        report.unique_keys.iter().all(|k| k.state == "present"),
        "{report:?}"
    );
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sql")
}

/// An original deployment (its MySQL and Redis) into SQLite: original passwords log in,
/// history, members, unread counts, tokens and shields are there, duplicate rows of the
/// original schema are skipped and reported, and ids continue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_teamtalk_into_sqlite() {
    let Some(env) = Env::new().await else {
        return;
    };
    env.load_teamtalk(&fixtures()).await;
    // Duplicates the original schema allows (WEAKNESSES 26): a second relation row for the
    // pair (1, 2) and a second member row.
    let pool = env.pool().await;
    sqlx::raw_sql(
        "INSERT INTO IMRelationShip (id, smallId, bigId, status, created, updated) \
         VALUES (3, 1, 2, 0, 1427190500, 1427190500); \
         INSERT INTO IMGroupMember (id, groupId, userId, status, created, updated) \
         VALUES (7, 2, 3, 0, 1427190400, 1427190400);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("imported.db");
    let options = CopyOptions {
        from_redis: Some(env.redis()),
        teamtalk_import: true,
        ..CopyOptions::default()
    };
    let report = copy(&env.url, dest.to_str().unwrap(), &options, &Quiet)
        .await
        .unwrap();
    assert_verified(&report);
    let table = |name: &str| report.tables.iter().find(|t| t.table == name).unwrap();
    assert!(table("IMTransmitFile").absent_in_source);
    assert!(table("IMUserArgon2").absent_in_source);
    assert_eq!(table("IMRelationShip").skipped_ids, vec![3]);
    assert_eq!(table("IMGroupMember").skipped_ids, vec![7]);
    assert_eq!(table("IMUser").copied, 4);
    let warnings = report.warnings.join("\n");
    assert!(
        warnings.contains("IMTransmitFile") && warnings.contains("(ids [3])"),
        "{warnings}"
    );
    let cache = report.cache.as_ref().unwrap();
    assert!(cache.member_hash_mismatches.is_empty(), "{cache:?}");
    assert!(
        cache.categories.iter().all(|c| c.equal == Some(true)),
        "{cache:?}"
    );

    let store = SqliteStore::open(&sqlite_config(&dest)).await.unwrap();
    for (name, plain) in [
        ("zhangsan", "123456"),
        ("lisi", "teamtalk"),
        ("wangwu", "secret"),
    ] {
        let c = store.credentials(name).await.unwrap().unwrap();
        assert_eq!(c.user.status, 0);
        assert!(
            verify_legacy(&md5_hex(plain), &c.salt, &c.legacy_hash),
            "{name}"
        );
        assert!(
            !verify_legacy(&md5_hex("wrong"), &c.salt, &c.legacy_hash),
            "{name}"
        );
    }
    let h = store
        .history(1, SessionType::Single, 2, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        h.iter().map(|m| m.msg_id).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    assert!(matches!(&h[0].content, MessageContent::Audio(a) if a.duration == 3));
    assert_eq!(
        h[3].content,
        MessageContent::Text(b"aGVsbG8gbGlzaQ==".to_vec())
    );
    let mut members = store.group_members(1).await.unwrap().unwrap();
    members.sort_by_key(|m| m.user_id);
    let view: Vec<_> = members.iter().map(|m| (m.user_id, m.joined)).collect();
    assert_eq!(
        view,
        vec![(1, 1_427_190_000), (2, 1_427_190_000), (3, 1_427_190_150)]
    );
    let h = store
        .history(3, SessionType::Group, 1, 0, 10)
        .await
        .unwrap();
    assert_eq!(h.iter().map(|m| m.msg_id).collect::<Vec<_>>(), vec![3, 2]);
    // The original's Redis counters: user 1 has 2 unread from user 2 and 2 in group 1.
    assert_eq!(
        store.unread_totals(&[1, 3]).await.unwrap(),
        vec![(1, 4), (3, 1)]
    );
    let tokens = store.device_tokens(&[1, 2, 3]).await.unwrap();
    let kinds: Vec<_> = tokens.iter().map(|t| (t.user_id, t.kind)).collect();
    assert_eq!(kinds, vec![(2, TokenKind::Ios), (3, TokenKind::Android)]);
    assert_eq!(
        store.group_shields(1, &[1, 2]).await.unwrap(),
        Some(vec![(1, false), (2, true)])
    );
    assert_eq!(
        stored(store.store_message(text(2, 1, "new")).await.unwrap()),
        5
    );
    assert_eq!(
        stored(store.store_message(text(3, 1, "new")).await.unwrap()),
        3
    );
    store.close().await;
}
