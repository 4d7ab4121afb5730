//! Shared by the migration tests of im-storage (tests/migrate.rs) and imctl
//! (imctl/tests/migrate.rs, which includes this file by path): a store filled through the
//! Store API with every kind of data, a snapshot of what the Store API reads back, a
//! row-by-row comparison of two SQLite files, and a MariaDB database + Redis key prefix per
//! test.
//!
//! The services come from `IM_TEST_MYSQL_URL` and `IM_TEST_REDIS_URL` (as in
//! tests/mysql_support); without them a test fails when `CI` is set and is skipped, loudly,
//! otherwise.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod env;
mod source;

pub use env::Env;
// Each test crate uses a different part.
#[allow(unused_imports)]
pub use source::{assert_verified, source_file, sqlite_config};

use std::path::Path;

use im_storage::password::{argon2_hash, md5_hex};
use im_storage::{
    GroupId, GroupKind, MemberChange, MsgType, NewContent, NewGroup, NewMessage, NewUser,
    RequestId, SessionType, Store, StoreOutcome, UserId, UserPatch,
};
use rusqlite::types::Value as SqlValue;

/// The SQLite tables compared row by row: every copied table and every cache table.
pub const COMPARED: &[&str] = &[
    "IMAdmin",
    "IMDepart",
    "IMUser",
    "IMUserArgon2",
    "IMDiscovery",
    "IMGroup",
    "IMGroupMember",
    "IMRelationShip",
    "IMRecentSession",
    "IMAudio",
    "IMMessage_0",
    "IMMessage_1",
    "IMMessage_2",
    "IMMessage_3",
    "IMMessage_4",
    "IMMessage_5",
    "IMMessage_6",
    "IMMessage_7",
    "IMGroupMessage_0",
    "IMGroupMessage_1",
    "IMGroupMessage_2",
    "IMGroupMessage_3",
    "IMGroupMessage_4",
    "IMGroupMessage_5",
    "IMGroupMessage_6",
    "IMGroupMessage_7",
    "IMTransmitFile",
    "IMCacheUnread",
    "IMCacheMsgId",
    "IMCacheGroupCounter",
    "IMCacheUserGroupRead",
    "IMCacheDeviceToken",
    "IMCacheTokenOwner",
    "IMCacheGroupSet",
];

/// What [`populate`] created.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Users, in creation order.
    pub users: Vec<UserId>,
    /// Their login names.
    pub names: Vec<String>,
    /// Plain passwords.
    pub passwords: Vec<String>,
    /// Groups.
    pub groups: Vec<GroupId>,
    /// User pairs that talked.
    pub pairs: Vec<(UserId, UserId)>,
}

fn content(text: &str) -> NewContent {
    NewContent::Text(text.as_bytes().to_vec())
}

/// Message times start at the test's clock: the SQLite store shows a member only the group
/// messages created after joining, and join times are the store's clock.
fn message(from: UserId, to: u32, msg_type: MsgType, content: NewContent, n: u32) -> NewMessage {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    NewMessage {
        from_id: from,
        to_id: to,
        msg_type,
        content,
        created: now + n,
        request_id: None,
    }
}

async fn send<S: Store>(store: &S, msg: NewMessage) -> u32 {
    match store.store_message(msg).await.unwrap() {
        StoreOutcome::Stored(id) => id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

/// Fills `store` with every kind of data through the Store API: departments, users (one with
/// an argon2 hash, one left, signatures, push shields), discovery items, single messages in
/// every shard (text, bytes that are not UTF-8, a text that looks escaped, voice), groups of
/// both kinds with member changes and messages in several shards (voice too), read acks, a
/// removed session, device tokens (re-registered and cleared), group shields, offline files
/// and the group-session sync. `extra` more single messages make it bigger.
pub async fn populate<S: Store>(store: &S, extra: u32) -> World {
    let mut w = World::default();
    let d1 = store.add_department("研发部", 0, 1).await.unwrap();
    let d2 = store.add_department("产品部 😀", d1, 2).await.unwrap();
    for i in 0..12u32 {
        let name = format!("user{i}");
        let password = format!("pw{i}");
        let user = NewUser {
            name: name.clone(),
            password: password.clone(),
            nick: format!("昵称{i} 😀"),
            sex: (i % 3) as u8,
            domain: format!("yonghu{i}"),
            phone: format!("1380000{i:04}"),
            email: format!("u{i}@example.invalid"),
            avatar: if i % 2 == 0 {
                format!("http://msfs/g0/000/000/{i}.png")
            } else {
                String::new()
            },
            depart_id: if i % 2 == 0 { d1 } else { d2 },
            status: 0,
        };
        w.users.push(store.add_user(user).await.unwrap());
        w.names.push(name);
        w.passwords.push(password);
    }
    let u = w.users.clone();
    store
        .set_argon2(u[0], &argon2_hash(&md5_hex("pw0")).unwrap())
        .await
        .unwrap();
    assert!(store.set_sign_info(u[1], "签名 ✍").await.unwrap());
    assert!(store.set_push_shield(u[2], true).await.unwrap());
    let left = UserPatch {
        status: Some(3),
        ..UserPatch::default()
    };
    assert!(store.update_user(u[11], left).await.unwrap());
    store
        .add_discovery("TeamTalk", "http://example.invalid", 1)
        .await
        .unwrap();
    let hidden = store
        .add_discovery("hidden", "http://example.invalid/h", 2)
        .await
        .unwrap();
    assert!(store.remove_discovery(hidden).await.unwrap());

    // Single messages: pairs (0, k) get relation ids 1..=10, every shard at least once.
    let mut n = 0;
    for k in 1..=10usize {
        let (a, b) = (u[0], u[k]);
        w.pairs.push((a, b));
        for j in 0..(k as u32 + 1) {
            n += 1;
            let (from, to) = if j % 2 == 0 { (a, b) } else { (b, a) };
            let mut msg = message(
                from,
                to,
                MsgType::SingleText,
                content(&format!("m{k}.{j}")),
                n,
            );
            if j == 1 {
                msg.request_id = Some(RequestId {
                    origin: 42,
                    seq: u64::from(n),
                });
            }
            send(store, msg).await;
        }
    }
    let odd: Vec<u8> = vec![0, 0xff, 0xfe, b'\'', b'"', b'\\', 0x80, 1];
    send(
        store,
        message(u[1], u[0], MsgType::SingleText, NewContent::Text(odd), 900),
    )
    .await;
    send(
        store,
        message(
            u[0],
            u[2],
            MsgType::SingleText,
            content("\u{1}b64:AAAA"),
            901,
        ),
    )
    .await;
    let voice = NewContent::Audio {
        path: "http://msfs/g0/000/000/1_140.amr".into(),
        size: 2000,
        duration: 3,
    };
    send(store, message(u[3], u[0], MsgType::SingleAudio, voice, 902)).await;
    for i in 0..extra {
        let k = 1 + (i as usize % 10);
        send(
            store,
            message(
                u[0],
                u[k],
                MsgType::SingleText,
                content(&format!("x{i}")),
                1000 + i,
            ),
        )
        .await;
    }

    // Groups: ids 1..=9, all shards but one; member changes; messages.
    let creators = [0usize, 1, 2, 3, 4, 5, 6, 7, 8];
    for (i, &c) in creators.iter().enumerate() {
        let kind = if i % 3 == 1 {
            GroupKind::Temporary
        } else {
            GroupKind::Normal
        };
        let members: Vec<UserId> = (0..4).map(|m| u[(c + m) % 10]).collect();
        let g = store
            .create_group(NewGroup {
                creator: u[c],
                name: format!("群{i} 😀"),
                avatar: format!("http://msfs/g{i}.png"),
                kind,
                members,
            })
            .await
            .unwrap();
        w.groups.push(g);
    }
    let g = w.groups.clone();
    store
        .change_members(u[0], g[0], MemberChange::Add, &[u[6], u[7]])
        .await
        .unwrap();
    store
        .change_members(u[0], g[0], MemberChange::Remove, &[u[3]])
        .await
        .unwrap();
    for (i, &group) in g.iter().enumerate() {
        let sender = u[creators[i]];
        for j in 0..(i as u32 + 2) {
            n += 1;
            let body = content(&format!("g{i}.{j}"));
            send(
                store,
                message(sender, group, MsgType::GroupText, body, 2000 + n),
            )
            .await;
        }
    }
    let odd: Vec<u8> = vec![0xc3, 0x28, 0, 9];
    send(
        store,
        message(u[1], g[0], MsgType::GroupText, NewContent::Text(odd), 3000),
    )
    .await;
    let voice = NewContent::Audio {
        path: "http://msfs/g0/000/000/2_140.amr".into(),
        size: 4000,
        duration: 6,
    };
    send(store, message(u[2], g[0], MsgType::GroupAudio, voice, 3001)).await;

    // Read acks, a removed session, tokens, shields, offline files, group sessions.
    store
        .clear_unread(u[1], SessionType::Single, u[0])
        .await
        .unwrap();
    store
        .clear_unread(u[2], SessionType::Group, g[0])
        .await
        .unwrap();
    assert!(
        store
            .remove_session(u[3], SessionType::Single, u[0])
            .await
            .unwrap()
    );
    store
        .set_device_token(u[1], 0x11, "aabbccdd")
        .await
        .unwrap();
    store
        .set_device_token(u[1], 0x11, "eeff0011")
        .await
        .unwrap();
    store
        .set_device_token(u[2], 0x12, "fcm-token-2")
        .await
        .unwrap();
    store
        .set_device_token(u[3], 0x01, "pc-token-3")
        .await
        .unwrap();
    store
        .set_device_token(u[4], 0x12, "fcm-token-4")
        .await
        .unwrap();
    store.set_device_token(u[4], 0x12, "").await.unwrap();
    store.set_group_shield(u[2], g[0], true).await.unwrap();
    store.set_group_shield(u[1], g[0], false).await.unwrap();
    store.set_group_shield(u[4], g[3], true).await.unwrap();
    store
        .add_offline_file(u[0], u[1], "task-0001", "文件.txt", 1234)
        .await
        .unwrap();
    store
        .add_offline_file(u[2], u[1], "task-0002", "b.bin", 99)
        .await
        .unwrap();
    store.sync_group_sessions(0).await.unwrap();
    w
}

/// Everything the Store API reads back for `w`, as labelled lines (order-free results
/// sorted), to compare two stores line by line.
pub async fn snapshot<S: Store>(store: &S, w: &World) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut put = |label: String, value: String| out.push((label, value));
    let mut users = store.changed_users(0).await.unwrap();
    users.sort_by_key(|u| u.id);
    put("changed_users".into(), format!("{users:?}"));
    let mut users = store.users_by_ids(&w.users).await.unwrap();
    users.sort_by_key(|u| u.id);
    put("users_by_ids".into(), format!("{users:?}"));
    for name in &w.names {
        put(
            format!("credentials {name}"),
            format!("{:?}", store.credentials(name).await.unwrap()),
        );
    }
    put(
        "departments".into(),
        format!("{:?}", store.list_departments().await.unwrap()),
    );
    put(
        "discovery".into(),
        format!("{:?}", store.discovery().await.unwrap()),
    );
    put(
        "totals".into(),
        format!("{:?}", store.unread_totals(&w.users).await.unwrap()),
    );
    let mut tokens = store.device_tokens(&w.users).await.unwrap();
    tokens.sort_by_key(|t| t.user_id);
    put("tokens".into(), format!("{tokens:?}"));
    for &user in &w.users {
        put(
            format!("unread {user}"),
            format!("{:?}", store.unread(user).await.unwrap()),
        );
        let sessions = store.recent_sessions(user, 0, 100).await.unwrap();
        put(format!("sessions {user}"), format!("{sessions:?}"));
        put(
            format!("shield {user}"),
            format!("{:?}", store.push_shield(user).await.unwrap()),
        );
        put(
            format!("groups {user}"),
            format!("{:?}", store.normal_groups(user).await.unwrap()),
        );
        put(
            format!("files {user}"),
            format!("{:?}", store.offline_files(user).await.unwrap()),
        );
    }
    for &(a, b) in &w.pairs {
        let history = store
            .history(a, SessionType::Single, b, 0, 100)
            .await
            .unwrap();
        put(format!("history {a}-{b}"), format!("{history:?}"));
        let latest = store
            .latest_msg_id(b, SessionType::Single, a)
            .await
            .unwrap();
        put(format!("latest {a}-{b}"), latest.to_string());
    }
    for &g in &w.groups {
        let mut members = store.group_members(g).await.unwrap().unwrap();
        members.sort_by_key(|m| m.user_id);
        let reader = members[0].user_id;
        let history = store
            .history(reader, SessionType::Group, g, 0, 100)
            .await
            .unwrap();
        put(format!("group history {g}"), format!("{history:?}"));
        put(format!("members {g}"), format!("{members:?}"));
        let mut info = store.groups(&[g]).await.unwrap();
        for group in &mut info {
            group.members.sort_by_key(|m| m.user_id);
        }
        put(format!("group {g}"), format!("{info:?}"));
        let shields = store.group_shields(g, &w.users).await.unwrap();
        put(format!("shields {g}"), format!("{shields:?}"));
    }
    out
}

/// Asserts two snapshots are equal, naming the first line that differs.
pub fn assert_same(what: &str, a: &[(String, String)], b: &[(String, String)]) {
    assert_eq!(a.len(), b.len(), "{what}: snapshot sizes");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "{what}: first difference at {:?}", x.0);
    }
}

/// Every row of `table` in a SQLite file, in primary-key order, as stored (storage classes
/// included).
pub fn sqlite_rows(path: &Path, table: &str) -> Vec<Vec<SqlValue>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1, 2"))
        .unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, SqlValue>(i)).collect())
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
}

/// Asserts that every compared table holds the same rows in both files; returns the number
/// of rows compared.
pub fn assert_same_rows(a: &Path, b: &Path) -> usize {
    let mut rows = 0;
    for table in COMPARED {
        let (x, y) = (sqlite_rows(a, table), sqlite_rows(b, table));
        assert_eq!(x.len(), y.len(), "{table}: row counts");
        for (rx, ry) in x.iter().zip(&y) {
            assert_eq!(rx, ry, "{table}: rows differ");
        }
        rows += x.len();
    }
    rows
}

/// Rows of a SQL query on a SQLite file, as one integer.
pub fn sqlite_count(path: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}
