//! The properties the `msg_server` fuzz target checks (`fuzz/fuzz_targets/msg_server.rs`),
//! shared with the test that replays what it once found (`tests/fuzz_regressions.rs`,
//! `fixtures/fuzz/msg_server/`).
//!
//! One input drives one client connection of a real [`ClientHandler`] over an in-memory pipe
//! (`im_common::fuzzing`). The server has no upstream link (no db_proxy, route_server...), so
//! every request that needs one fails the way a down link fails. The first byte chooses
//! whether the connection is still anonymous (even) or already logged in (odd; the client type
//! then comes from that byte). Besides "never panics, never hangs":
//! * the output is well-framed and no frame passes the client cap (Decisions 2);
//! * an anonymous connection gets nothing but login answers and heartbeats (FLOWS.md 1.6);
//! * with no db_proxy nothing is stored, so no message is ever acked (Decisions 4);
//! * every answer carries the seq of a request of its kind.

use std::net::SocketAddr;
use std::sync::Arc;

use im_common::fuzzing::{Driven, check_reply_seqs, run_records};
use im_common::metrics::Registry;
use im_common::{CancellationToken, ServeOptions};
use im_proto::cid;

use crate::client::ClientHandler;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::Server;

/// The commands a client connection dispatches, the fuzz input's command table.
pub const COMMANDS: &[u16] = &[
    cid::CID_LOGIN_REQ_USERLOGIN,
    cid::CID_LOGIN_REQ_LOGINOUT,
    cid::CID_LOGIN_REQ_DEVICETOKEN,
    cid::CID_LOGIN_REQ_KICKPCCLIENT,
    cid::CID_LOGIN_REQ_PUSH_SHIELD,
    cid::CID_LOGIN_REQ_QUERY_PUSH_SHIELD,
    cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST,
    cid::CID_BUDDY_LIST_USER_INFO_REQUEST,
    cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ,
    cid::CID_BUDDY_LIST_ALL_USER_REQUEST,
    cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST,
    cid::CID_BUDDY_LIST_CHANGE_AVATAR_REQUEST,
    cid::CID_BUDDY_LIST_DEPARTMENT_REQUEST,
    cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST,
    cid::CID_MSG_DATA,
    cid::CID_MSG_DATA_ACK,
    cid::CID_MSG_READ_ACK,
    cid::CID_MSG_TIME_REQUEST,
    cid::CID_MSG_UNREAD_CNT_REQUEST,
    cid::CID_MSG_LIST_REQUEST,
    cid::CID_MSG_GET_LATEST_MSG_ID_REQ,
    cid::CID_MSG_GET_BY_MSG_ID_REQ,
    cid::CID_GROUP_NORMAL_LIST_REQUEST,
    cid::CID_GROUP_INFO_REQUEST,
    cid::CID_GROUP_CREATE_REQUEST,
    cid::CID_GROUP_CHANGE_MEMBER_REQUEST,
    cid::CID_GROUP_SHIELD_GROUP_REQUEST,
    cid::CID_SWITCH_P2P_CMD,
    cid::CID_FILE_REQUEST,
    cid::CID_FILE_HAS_OFFLINE_REQ,
    cid::CID_FILE_ADD_OFFLINE_REQ,
    cid::CID_FILE_DEL_OFFLINE_REQ,
    cid::CID_OTHER_HEARTBEAT,
];

/// (request, answer) pairs whose answers must carry a request's seq.
const PAIRS: &[(u16, u16)] = &[
    (cid::CID_LOGIN_REQ_USERLOGIN, cid::CID_LOGIN_RES_USERLOGIN),
    (cid::CID_LOGIN_REQ_LOGINOUT, cid::CID_LOGIN_RES_LOGINOUT),
    (
        cid::CID_LOGIN_REQ_DEVICETOKEN,
        cid::CID_LOGIN_RES_DEVICETOKEN,
    ),
    (
        cid::CID_LOGIN_REQ_KICKPCCLIENT,
        cid::CID_LOGIN_RES_KICKPCCLIENT,
    ),
    (
        cid::CID_LOGIN_REQ_PUSH_SHIELD,
        cid::CID_LOGIN_RES_PUSH_SHIELD,
    ),
    (cid::CID_MSG_TIME_REQUEST, cid::CID_MSG_TIME_RESPONSE),
    (cid::CID_MSG_DATA, cid::CID_MSG_DATA_ACK),
    (cid::CID_FILE_REQUEST, cid::CID_FILE_RESPONSE),
    (
        cid::CID_GROUP_CREATE_REQUEST,
        cid::CID_GROUP_CREATE_RESPONSE,
    ),
    (
        cid::CID_GROUP_CHANGE_MEMBER_REQUEST,
        cid::CID_GROUP_CHANGE_MEMBER_RESPONSE,
    ),
    (
        cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST,
        cid::CID_BUDDY_LIST_USERS_STATUS_RESPONSE,
    ),
    (cid::CID_OTHER_HEARTBEAT, cid::CID_OTHER_HEARTBEAT),
];

/// A server with no upstream link at all (every request to another server fails at once).
pub fn unlinked_server() -> Arc<Server> {
    let config = Config {
        db_proxy: Vec::new(),
        route_servers: Vec::new(),
        login_servers: Vec::new(),
        push_servers: Vec::new(),
        file_servers: Vec::new(),
        ..Config::default()
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], 8000));
    let metrics = Metrics::new(Registry::new("im_msg_server"));
    match Server::start(&config, listen, metrics, &CancellationToken::new()) {
        Ok(s) => s,
        Err(e) => panic!("the default config builds a server: {e}"),
    }
}

/// Runs `data` through one client connection and checks the properties (module doc); panics
/// when one breaks. Run it on a current-thread runtime with paused time.
pub async fn check_client(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let server = unlinked_server();
    let mut opts = ServeOptions::client("client");
    opts.idle_timeout = Some(server.cfg.idle_pc);
    let logged_in = mode & 1 == 1;
    // PC (1), Android (0x12) or iOS (0x11): the PC and mobile rules differ.
    let client_type = [1, 0x12, 0x11, 2][usize::from(mode >> 1) % 4];
    let registry = server.registry.clone();
    let driven = run_records(rest, COMMANDS, &opts, &registry, |conn| {
        if logged_in {
            ClientHandler::logged_in(server.clone(), conn, 7, client_type)
        } else {
            ClientHandler::new(server.clone(), conn)
        }
    })
    .await;
    check(&driven, logged_in);
    server.inflight.close();
    server.inflight.wait().await;
    assert_eq!(
        server.sessions.count(),
        0,
        "a closed connection left a session behind"
    );
}

fn check(driven: &Driven, logged_in: bool) {
    check_reply_seqs(driven, PAIRS);
    assert_eq!(
        driven.replies_of(cid::CID_MSG_DATA_ACK).count(),
        0,
        "a message was acked with no db_proxy to store it"
    );
    if !logged_in {
        for r in &driven.replies {
            assert!(
                matches!(
                    r.command_id(),
                    cid::CID_LOGIN_RES_USERLOGIN | cid::CID_OTHER_HEARTBEAT
                ),
                "an anonymous connection got {}",
                r.command_name()
            );
        }
    }
}

/// Seed inputs for the fuzzer's corpus: a few well-formed requests of each kind.
pub fn seeds() -> Vec<Vec<u8>> {
    use im_proto::base::{MsgType, SessionType};
    use im_proto::buddy::{ImUsersInfoReq, ImUsersStatReq};
    use im_proto::group::{ImGroupChangeMemberReq, ImGroupCreateReq};
    use im_proto::login::ImLoginReq;
    use im_proto::message::{ImGetMsgByIdReq, ImMsgData, ImMsgDataReadAck};
    use im_proto::switch_service::Imp2pCmdMsg;
    use prost::Message;

    let sel = |c: u16| COMMANDS.iter().position(|&x| x == c).unwrap_or(0) as u8;
    let login = ImLoginReq {
        user_name: "alice".into(),
        password: "0123456789abcdef0123456789abcdef".into(),
        online_status: 1,
        client_type: 1,
        client_version: Some("fuzz".into()),
    };
    let msg = ImMsgData {
        from_user_id: 7,
        to_session_id: 8,
        msg_id: 0,
        create_time: 1,
        msg_type: MsgType::SingleText as i32,
        msg_data: bytes::Bytes::from_static(b"aGVsbG8="),
        attach_data: None,
    };
    let users = ImUsersInfoReq {
        user_id: 7,
        user_id_list: vec![1, 2, 3],
        attach_data: None,
    };
    let stat = ImUsersStatReq {
        user_id: 7,
        user_id_list: vec![7, 8],
        attach_data: None,
    };
    let by_id = ImGetMsgByIdReq {
        user_id: 7,
        session_type: SessionType::Single as i32,
        session_id: 8,
        msg_id_list: vec![1, 2],
        attach_data: None,
    };
    let read = ImMsgDataReadAck {
        user_id: 7,
        session_id: 8,
        msg_id: 1,
        session_type: SessionType::Single as i32,
    };
    let create = ImGroupCreateReq {
        user_id: 7,
        group_type: 2,
        group_name: "g".into(),
        group_avatar: String::new(),
        member_id_list: vec![7, 8],
        attach_data: None,
    };
    let change = ImGroupChangeMemberReq {
        user_id: 7,
        change_type: 1,
        group_id: 1,
        member_id_list: vec![9],
        attach_data: None,
    };
    let p2p = Imp2pCmdMsg {
        from_user_id: 7,
        to_user_id: 8,
        cmd_msg_data: "{}".into(),
    };
    let one = |c: u16, body: Vec<u8>| (sel(c), 3u16, body);
    let anonymous = im_common::fuzzing::seed(&[
        one(cid::CID_MSG_TIME_REQUEST, Vec::new()),
        one(cid::CID_LOGIN_REQ_USERLOGIN, login.encode_to_vec()),
    ]);
    let session = im_common::fuzzing::seed(&[
        one(cid::CID_MSG_DATA, msg.encode_to_vec()),
        one(cid::CID_MSG_TIME_REQUEST, Vec::new()),
        one(cid::CID_BUDDY_LIST_USER_INFO_REQUEST, users.encode_to_vec()),
        one(
            cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST,
            stat.encode_to_vec(),
        ),
        one(cid::CID_MSG_GET_BY_MSG_ID_REQ, by_id.encode_to_vec()),
        one(cid::CID_MSG_READ_ACK, read.encode_to_vec()),
        one(cid::CID_GROUP_CREATE_REQUEST, create.encode_to_vec()),
        one(cid::CID_GROUP_CHANGE_MEMBER_REQUEST, change.encode_to_vec()),
        one(cid::CID_SWITCH_P2P_CMD, p2p.encode_to_vec()),
    ]);
    vec![
        [&[0u8][..], &anonymous].concat(),
        [&[1u8][..], &session].concat(),
        [&[3u8][..], &session].concat(),
    ]
}
