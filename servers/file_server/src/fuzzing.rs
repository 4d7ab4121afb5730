//! The properties the `file_server` fuzz target checks (`fuzz/fuzz_targets/file_server.rs`),
//! shared with the test that replays what it once found (`tests/fuzz_regressions.rs`,
//! `fixtures/fuzz/file_server/`).
//!
//! The first byte's low bit picks the port; the rest drives one connection of its real
//! handler over an in-memory pipe (`im_common::fuzzing`) on a fresh state whose offline files
//! live in a temp dir:
//! * even: a msg_server link ([`MsgLinkHandler`]): address lists and task creation. Every
//!   answer carries the seq of a request of its kind, and every task created has a valid id;
//! * odd: a client connection ([`ClientHandler`]), with two tasks from user 7 to user 8
//!   already created (ids [`ONLINE_TASK`] and [`OFFLINE_TASK`]) so that logins can succeed.
//!   Before login nothing is answered but the login (and heartbeats); a login answer carries
//!   the seq of a login request; once the connection is gone, no task keeps it attached.
//!
//! Besides: never panics, never hangs, the output is well-framed and within the caps.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use im_common::fuzzing::{Driven, body, check_reply_seqs, run_records, seed, sel};
use im_common::metrics::Registry;
use im_common::{CancellationToken, ConnRegistry, ServeOptions};
use im_proto::base::IpAddr;
use im_proto::cid;
use im_proto::file::{ImFileLoginReq, ImFileLoginRsp, ImFilePullDataRsp, ImFileState};
use im_proto::server::{ImFileServerIpReq, ImFileTransferReq};

use crate::client::ClientHandler;
use crate::disk::{OfflineStore, valid_task_id};
use crate::metrics::FileMetrics;
use crate::msg_link::MsgLinkHandler;
use crate::state::Shared;
use crate::table::TaskTable;
use crate::task::{Mode, Task};

/// The online task ready for client logins (user 7 sends to user 8).
pub const ONLINE_TASK: &str = "00000000-0000-4000-8000-000000000001";
/// The offline task ready for client logins (user 7 uploads for user 8), 70000 bytes.
pub const OFFLINE_TASK: &str = "00000000-0000-4000-8000-000000000002";

/// The commands of the msg_server port.
pub const LINK_COMMANDS: &[u16] = &[
    cid::CID_OTHER_FILE_SERVER_IP_REQ,
    cid::CID_OTHER_FILE_TRANSFER_REQ,
    cid::CID_OTHER_HEARTBEAT,
];

/// The commands of the client port.
pub const CLIENT_COMMANDS: &[u16] = &[
    cid::CID_FILE_LOGIN_REQ,
    cid::CID_FILE_STATE,
    cid::CID_FILE_PULL_DATA_REQ,
    cid::CID_FILE_PULL_DATA_RSP,
    cid::CID_OTHER_HEARTBEAT,
];

fn data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("im-fuzz-file-server-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    })
    .clone()
}

fn shared() -> Arc<Shared> {
    let store = OfflineStore::new(data_dir());
    if let Err(e) = store.create_root() {
        panic!("creating {}: {e}", data_dir().display());
    }
    let client_addr = SocketAddr::from(([127, 0, 0, 1], 8600));
    Arc::new(Shared {
        name: "fuzz".into(),
        client_addr,
        advertise: vec![IpAddr {
            ip: "127.0.0.1".into(),
            port: 8600,
        }],
        tasks: TaskTable::new(16),
        store,
        metrics: FileMetrics::new(Registry::new("im_file_server")),
        clients: ConnRegistry::new(),
        msg_links: ConnRegistry::new(),
        db: None,
        task_timeout: Duration::from_secs(3600),
        retention: None,
        shutdown: CancellationToken::new(),
    })
}

/// Runs `data` through one connection (module doc) and checks the properties; panics when
/// one breaks. Run it on a current-thread runtime with paused time.
pub async fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = shared();
    if mode & 1 == 0 {
        check_link(&s, rest).await;
    } else {
        check_client(&s, rest).await;
    }
}

async fn check_link(s: &Arc<Shared>, data: &[u8]) {
    let mut opts = ServeOptions::server("msg_server");
    opts.echo_heartbeat = true;
    let registry = s.msg_links.clone();
    let driven = run_records(data, LINK_COMMANDS, &opts, &registry, |_| {
        MsgLinkHandler::new(s.clone())
    })
    .await;
    check_reply_seqs(
        &driven,
        &[
            (
                cid::CID_OTHER_FILE_SERVER_IP_REQ,
                cid::CID_OTHER_FILE_SERVER_IP_RSP,
            ),
            (
                cid::CID_OTHER_FILE_TRANSFER_REQ,
                cid::CID_OTHER_FILE_TRANSFER_RSP,
            ),
        ],
    );
    for t in s.tasks.all() {
        assert!(valid_task_id(&t.id), "task created with id {:?}", t.id);
    }
}

async fn check_client(s: &Arc<Shared>, data: &[u8]) {
    let tasks = [
        Task::new(ONLINE_TASK.into(), 7, 8, Mode::Online, "a.txt".into(), 5),
        Task::new(
            OFFLINE_TASK.into(),
            7,
            8,
            Mode::Offline,
            "b.bin".into(),
            70_000,
        ),
    ];
    for t in tasks {
        if let Err(e) = s.tasks.insert(Arc::new(t)) {
            panic!("{e}");
        }
    }
    let opts = ServeOptions::client("client");
    let registry = s.clients.clone();
    let driven: Driven = run_records(data, CLIENT_COMMANDS, &opts, &registry, |conn| {
        ClientHandler::new(s.clone(), conn)
    })
    .await;
    check_reply_seqs(
        &driven,
        &[(cid::CID_FILE_LOGIN_REQ, cid::CID_FILE_LOGIN_RES)],
    );
    let logged_in = driven.replies_of(cid::CID_FILE_LOGIN_RES).any(|r| {
        r.decode::<ImFileLoginRsp>()
            .is_ok_and(|l| l.result_code == 0)
    });
    if !logged_in {
        for r in &driven.replies {
            assert!(
                matches!(
                    r.command_id(),
                    cid::CID_FILE_LOGIN_RES | cid::CID_OTHER_HEARTBEAT
                ),
                "a connection that never logged in got {}",
                r.command_name()
            );
        }
    }
    for t in s.tasks.all() {
        assert!(
            t.conns().is_empty(),
            "task {} keeps a closed connection attached",
            t.id
        );
    }
}

/// Seed inputs for the fuzzer's corpus: task creation; logins in every role, state changes,
/// an upload's first block.
pub fn seeds() -> Vec<Vec<u8>> {
    let l = |c| sel(LINK_COMMANDS, c);
    let c = |cmd| sel(CLIENT_COMMANDS, cmd);
    let transfer = |mode| ImFileTransferReq {
        from_user_id: 7,
        to_user_id: 8,
        file_name: "a.txt".into(),
        file_size: 5,
        trans_mode: mode,
        attach_data: None,
    };
    let link = seed(&[
        (
            l(cid::CID_OTHER_FILE_SERVER_IP_REQ),
            1,
            body(&ImFileServerIpReq {}),
        ),
        (l(cid::CID_OTHER_FILE_TRANSFER_REQ), 2, body(&transfer(1))),
        (l(cid::CID_OTHER_FILE_TRANSFER_REQ), 3, body(&transfer(2))),
        (l(cid::CID_OTHER_FILE_TRANSFER_REQ), 4, body(&transfer(9))),
    ]);
    let login = |task: &str, user, role| ImFileLoginReq {
        user_id: user,
        task_id: task.into(),
        file_role: role,
    };
    let mut out = vec![[&[0u8][..], &link].concat()];
    for (task, user, role) in [
        (ONLINE_TASK, 7, 1),
        (ONLINE_TASK, 8, 2),
        (OFFLINE_TASK, 8, 4),
        (OFFLINE_TASK, 9, 3),
    ] {
        let s = seed(&[
            (
                c(cid::CID_FILE_LOGIN_REQ),
                1,
                body(&login(task, user, role)),
            ),
            (
                c(cid::CID_FILE_STATE),
                2,
                body(&ImFileState {
                    state: 1,
                    task_id: task.into(),
                    user_id: user,
                }),
            ),
        ]);
        out.push([&[1u8][..], &s].concat());
    }
    let upload = seed(&[
        (
            c(cid::CID_FILE_LOGIN_REQ),
            1,
            body(&login(OFFLINE_TASK, 7, 3)),
        ),
        (
            c(cid::CID_FILE_PULL_DATA_RSP),
            2,
            body(&ImFilePullDataRsp {
                result_code: 0,
                task_id: OFFLINE_TASK.into(),
                user_id: 7,
                offset: 0,
                file_data: bytes::Bytes::from(vec![7u8; 32 * 1024]),
            }),
        ),
    ]);
    out.push([&[1u8][..], &upload].concat());
    out
}
