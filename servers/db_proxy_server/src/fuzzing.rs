//! The properties the `db_proxy_server` fuzz target checks
//! (`fuzz/fuzz_targets/db_proxy_server.rs`), shared with the test that replays what it once
//! found (`tests/fuzz_regressions.rs`, `fixtures/fuzz/db_proxy_server/`).
//!
//! One input drives one msg_server link of the real [`Link`] and its driver (the request
//! dispatch of every handler) over an in-memory pipe (`im_common::fuzzing`), on a SQLite store
//! in a temp dir loaded with the demo data (`fixtures/seed/demo.toml`: users 1.. with password
//! 123456, departments, groups), so that valid requests reach real rows. The fuzz target keeps
//! one store for all inputs; the replay test opens its own. msfs is a closed port, so voice
//! messages fail to upload.
//!
//! The first byte's low bit picks the pace: odd waits for each request to be finished before
//! the next PDU is read (every answer is seen), even pipelines them as a msg_server does
//! (answers written after the link closed are lost). Besides "never panics, never hangs":
//! * the output is well-framed and no frame passes the server-link cap;
//! * every answer carries the seq of a request (PROTOCOL.md 2.2);
//! * every request taken is finished: nothing stays pending once the link is gone.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use im_common::fuzzing::{Driven, body, run_records, seed, sel};
use im_common::{Conn, Handler, ServeOptions};
use im_proto::base::{MsgType, SessionType};
use im_proto::buddy::{
    ImAllUserReq, ImChangeSignInfoReq, ImDepartmentReq, ImRecentContactSessionReq,
    ImRemoveSessionReq, ImUsersInfoReq,
};
use im_proto::file::{ImFileAddOfflineReq, ImFileHasOfflineReq};
use im_proto::group::{
    ImGroupChangeMemberReq, ImGroupCreateReq, ImGroupInfoListReq, ImGroupShieldReq,
    ImNormalGroupListReq,
};
use im_proto::login::{ImDeviceTokenReq, ImPushShieldReq, ImQueryPushShieldReq};
use im_proto::message::{
    ImGetLatestMsgIdReq, ImGetMsgByIdReq, ImGetMsgListReq, ImMsgData, ImMsgDataReadAck,
    ImUnreadMsgCntReq,
};
use im_proto::server::{ImGetDeviceTokenReq, ImGroupGetShieldReq, ImValidateReq};
use im_proto::{Pdu, cid};
use im_storage::SqliteStore;
use im_storage::config::{SqliteConfig, SqliteSync};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::server::{Link, Shared};

/// The commands a link dispatches, the fuzz input's command table.
pub const COMMANDS: &[u16] = &[
    cid::CID_OTHER_VALIDATE_REQ,
    cid::CID_LOGIN_REQ_DEVICETOKEN,
    cid::CID_LOGIN_REQ_PUSH_SHIELD,
    cid::CID_LOGIN_REQ_QUERY_PUSH_SHIELD,
    cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST,
    cid::CID_BUDDY_LIST_USER_INFO_REQUEST,
    cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ,
    cid::CID_BUDDY_LIST_ALL_USER_REQUEST,
    cid::CID_BUDDY_LIST_DEPARTMENT_REQUEST,
    cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST,
    cid::CID_MSG_DATA,
    cid::CID_MSG_READ_ACK,
    cid::CID_MSG_UNREAD_CNT_REQUEST,
    cid::CID_MSG_LIST_REQUEST,
    cid::CID_MSG_GET_BY_MSG_ID_REQ,
    cid::CID_MSG_GET_LATEST_MSG_ID_REQ,
    cid::CID_GROUP_NORMAL_LIST_REQUEST,
    cid::CID_GROUP_INFO_REQUEST,
    cid::CID_GROUP_CREATE_REQUEST,
    cid::CID_GROUP_CHANGE_MEMBER_REQUEST,
    cid::CID_GROUP_SHIELD_GROUP_REQUEST,
    cid::CID_FILE_HAS_OFFLINE_REQ,
    cid::CID_FILE_ADD_OFFLINE_REQ,
    cid::CID_FILE_DEL_OFFLINE_REQ,
    cid::CID_OTHER_GET_DEVICE_TOKEN_REQ,
    cid::CID_OTHER_GET_SHIELD_REQ,
    cid::CID_ADMIN_DISCOVERY_LIST_REQ,
    cid::CID_ADMIN_REMOVE_TOKEN_REQ,
    cid::CID_OTHER_HEARTBEAT,
];

/// A SQLite store with the demo data, in a temp dir removed on drop.
pub struct Fixture {
    /// The server state the links run on.
    pub shared: Arc<Shared<SqliteStore>>,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Opens a fresh store in a new temp dir and loads the demo data into it.
pub async fn fixture() -> Fixture {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "im-fuzz-db-proxy-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("{}: {e}", dir.display());
    }
    let mut config = Config {
        // A closed port: voice uploads fail at once.
        msfs_url: "http://127.0.0.1:1/".into(),
        msfs_timeout_secs: 1,
        night_mute_utc_offset_minutes: Some(0),
        ..Config::default()
    };
    config.storage.sqlite = SqliteConfig {
        path: dir.join("teamtalk.db"),
        synchronous: SqliteSync::Normal,
        ..SqliteConfig::default()
    };
    let store = match SqliteStore::open(&config.storage.sqlite).await {
        Ok(s) => s,
        Err(e) => panic!("opening SQLite in {}: {e}", dir.display()),
    };
    let demo = include_str!("../../../fixtures/seed/demo.toml");
    let parsed = crate::seed::parse(demo).unwrap_or_else(|e| panic!("demo seed: {e}"));
    if let Err(e) = crate::seed::load_parsed(&store, &parsed).await {
        panic!("loading the demo seed: {e}");
    }
    let shared = match Shared::new(&config, store) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("db_proxy state: {e}"),
    };
    Fixture { shared, dir }
}

/// The link handler, waiting for each request to finish when `paced`.
struct Paced {
    link: Link<SqliteStore>,
    shared: Arc<Shared<SqliteStore>>,
    paced: bool,
}

impl Handler for Paced {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        self.link.on_pdu(conn, pdu).await;
        if self.paced {
            settle(&self.shared).await;
        }
    }

    async fn on_close(&mut self, conn: &Conn) {
        self.link.on_close(conn).await;
    }
}

/// Waits until no request is pending; panics after an hour of (paused, virtual) time.
async fn settle(shared: &Shared<SqliteStore>) {
    let mut waited = Duration::ZERO;
    while shared.pending() > 0 {
        assert!(
            waited < Duration::from_secs(3600),
            "{} requests still pending after an hour",
            shared.pending()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += Duration::from_millis(1);
    }
}

/// Runs `data` through one link on `fx` and checks the properties (module doc); panics when
/// one breaks; returns what went in and out. Run it on a current-thread runtime with paused
/// time.
pub async fn check_link(fx: &Fixture, data: &[u8]) -> Driven {
    let Some((&mode, rest)) = data.split_first() else {
        return Driven::default();
    };
    let shared = fx.shared.clone();
    let opts = ServeOptions::server("msg_server");
    let registry = shared.links.clone();
    let tasks = TaskTracker::new();
    let driven = run_records(rest, COMMANDS, &opts, &registry, |conn| Paced {
        link: Link::start(shared.clone(), conn, &tasks),
        shared: shared.clone(),
        paced: mode & 1 == 1,
    })
    .await;
    tasks.close();
    tasks.wait().await;
    settle(&shared).await;
    for r in &driven.replies {
        if matches!(
            r.command_id(),
            cid::CID_OTHER_HEARTBEAT | cid::CID_OTHER_STOP_RECV_PACKET
        ) {
            continue;
        }
        assert!(
            driven.requests.iter().any(|q| q.seq_num() == r.seq_num()),
            "{} with seq {} answers no request",
            r.command_name(),
            r.seq_num()
        );
    }
    driven
}

/// [`check_link`] on a fresh [`fixture`].
pub async fn check(data: &[u8]) {
    let fx = fixture().await;
    check_link(&fx, data).await;
}

/// Seed inputs for the fuzzer's corpus: valid requests of every kind about the demo users
/// (1 and 2) and groups.
pub fn seeds() -> Vec<Vec<u8>> {
    let s = |c| sel(COMMANDS, c);
    let single = SessionType::Single as i32;
    let msg = |from, to, msg_type: MsgType, data: &'static [u8]| ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 1_700_000_000,
        msg_type: msg_type as i32,
        msg_data: bytes::Bytes::from_static(data),
        attach_data: None,
    };
    let login = seed(&[
        (
            s(cid::CID_OTHER_VALIDATE_REQ),
            1,
            body(&ImValidateReq {
                user_name: "zhangsan".into(),
                password: "e10adc3949ba59abbe56e057f20f883e".into(),
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_OTHER_VALIDATE_REQ),
            2,
            body(&ImValidateReq {
                user_name: "lisi".into(),
                password: "wrong".into(),
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_LOGIN_REQ_DEVICETOKEN),
            3,
            body(&ImDeviceTokenReq {
                user_id: 1,
                device_token: "tok".into(),
                client_type: Some(0x11),
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_LOGIN_REQ_PUSH_SHIELD),
            4,
            body(&ImPushShieldReq {
                user_id: 1,
                shield_status: 1,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_LOGIN_REQ_QUERY_PUSH_SHIELD),
            5,
            body(&ImQueryPushShieldReq {
                user_id: 1,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_OTHER_GET_DEVICE_TOKEN_REQ),
            6,
            body(&ImGetDeviceTokenReq {
                user_id: vec![1, 2],
                attach_data: None,
            }),
        ),
    ]);
    let buddy = seed(&[
        (
            s(cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST),
            1,
            body(&ImRecentContactSessionReq {
                user_id: 1,
                latest_update_time: 0,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_BUDDY_LIST_USER_INFO_REQUEST),
            2,
            body(&ImUsersInfoReq {
                user_id: 1,
                user_id_list: vec![1, 2, 3, 999],
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_BUDDY_LIST_ALL_USER_REQUEST),
            3,
            body(&ImAllUserReq {
                user_id: 1,
                latest_update_time: 0,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_BUDDY_LIST_DEPARTMENT_REQUEST),
            4,
            body(&ImDepartmentReq {
                user_id: 1,
                latest_update_time: 0,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST),
            5,
            body(&ImChangeSignInfoReq {
                user_id: 1,
                sign_info: "hi".into(),
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ),
            6,
            body(&ImRemoveSessionReq {
                user_id: 1,
                session_type: single,
                session_id: 2,
                attach_data: None,
            }),
        ),
    ]);
    let messages = seed(&[
        (
            s(cid::CID_MSG_DATA),
            1,
            body(&msg(1, 2, MsgType::SingleText, b"aGVsbG8=")),
        ),
        (
            s(cid::CID_MSG_DATA),
            2,
            body(&msg(2, 1, MsgType::SingleText, b"aGk=")),
        ),
        (
            s(cid::CID_MSG_DATA),
            3,
            body(&msg(1, 2, MsgType::SingleAudio, &[0, 0, 0, 1, 9, 9, 9])),
        ),
        (
            s(cid::CID_MSG_UNREAD_CNT_REQUEST),
            4,
            body(&ImUnreadMsgCntReq {
                user_id: 2,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_MSG_LIST_REQUEST),
            5,
            body(&ImGetMsgListReq {
                user_id: 2,
                session_type: single,
                session_id: 1,
                msg_id_begin: 0,
                msg_cnt: 10,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_MSG_GET_BY_MSG_ID_REQ),
            6,
            body(&ImGetMsgByIdReq {
                user_id: 2,
                session_type: single,
                session_id: 1,
                msg_id_list: vec![1, 2],
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_MSG_GET_LATEST_MSG_ID_REQ),
            7,
            body(&ImGetLatestMsgIdReq {
                user_id: 2,
                session_type: single,
                session_id: 1,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_MSG_READ_ACK),
            8,
            body(&ImMsgDataReadAck {
                user_id: 2,
                session_id: 1,
                msg_id: 1,
                session_type: single,
            }),
        ),
    ]);
    let groups = seed(&[
        (
            s(cid::CID_GROUP_NORMAL_LIST_REQUEST),
            1,
            body(&ImNormalGroupListReq {
                user_id: 1,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_GROUP_INFO_REQUEST),
            2,
            body(&ImGroupInfoListReq {
                user_id: 1,
                group_version_list: vec![im_proto::base::GroupVersionInfo {
                    group_id: 1,
                    version: 0,
                }],
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_GROUP_CREATE_REQUEST),
            3,
            body(&ImGroupCreateReq {
                user_id: 1,
                group_type: 2,
                group_name: "g".into(),
                group_avatar: String::new(),
                member_id_list: vec![1, 2, 3],
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_GROUP_CHANGE_MEMBER_REQUEST),
            4,
            body(&ImGroupChangeMemberReq {
                user_id: 1,
                change_type: 1,
                group_id: 3,
                member_id_list: vec![5],
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_GROUP_SHIELD_GROUP_REQUEST),
            5,
            body(&ImGroupShieldReq {
                user_id: 1,
                group_id: 1,
                shield_status: 1,
                attach_data: None,
            }),
        ),
        (
            s(cid::CID_OTHER_GET_SHIELD_REQ),
            6,
            body(&ImGroupGetShieldReq {
                group_id: 1,
                user_id: vec![1, 2],
                attach_data: None,
            }),
        ),
    ]);
    let files = seed(&[
        (
            s(cid::CID_FILE_ADD_OFFLINE_REQ),
            1,
            body(&ImFileAddOfflineReq {
                from_user_id: 1,
                to_user_id: 2,
                task_id: "00000000-0000-4000-8000-000000000001".into(),
                file_name: "a.txt".into(),
                file_size: 3,
            }),
        ),
        (
            s(cid::CID_FILE_HAS_OFFLINE_REQ),
            2,
            body(&ImFileHasOfflineReq {
                user_id: 2,
                attach_data: None,
            }),
        ),
    ]);
    let mut out = Vec::new();
    for s in [login, buddy, messages, groups, files] {
        out.push([&[1u8][..], &s].concat());
        out.push([&[0u8][..], &s].concat());
    }
    out
}
