//! The properties the `route_server` fuzz target checks (`fuzz/fuzz_targets/route_server.rs`),
//! shared with the test that replays what it once found (`tests/fuzz_regressions.rs`,
//! `fixtures/fuzz/route_server/`).
//!
//! One input drives one msg_server link of a real [`LinkHandler`] over an in-memory pipe
//! (`im_common::fuzzing`) on a fresh route_server state. Besides "never panics, never hangs":
//! * the output is well-framed and no frame passes the server-link cap;
//! * presence and locate answers carry the seq of a request of their kind;
//! * the link is gone from the registry once it closed, and once the offline grace period is
//!   over no user of it is left in the route table (none held, none online).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use im_common::fuzzing::{body, check_reply_seqs, run_records, seed, sel};
use im_common::metrics::Registry;
use im_common::{CancellationToken, ServeOptions};
use im_proto::admin::ImAdminLocateUserReq;
use im_proto::base::ServerUserStat;
use im_proto::buddy::ImUsersStatReq;
use im_proto::cid;
use im_proto::message::ImMsgData;
use im_proto::server::{ImOnlineUserInfo, ImRoleSet, ImServerKickUser, ImUserStatusUpdate};

use crate::handlers::LinkHandler;
use crate::metrics::RouteMetrics;
use crate::state::RouteState;

/// The commands a link dispatches, the fuzz input's command table.
pub const COMMANDS: &[u16] = &[
    cid::CID_OTHER_ROLE_SET,
    cid::CID_OTHER_ONLINE_USER_INFO,
    cid::CID_OTHER_USER_STATUS_UPDATE,
    cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST,
    cid::CID_ADMIN_LOCATE_USER_REQ,
    cid::CID_MSG_DATA,
    cid::CID_MSG_READ_NOTIFY,
    cid::CID_SWITCH_P2P_CMD,
    cid::CID_BUDDY_LIST_REMOVE_SESSION_NOTIFY,
    cid::CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY,
    cid::CID_GROUP_CHANGE_MEMBER_NOTIFY,
    cid::CID_FILE_NOTIFY,
    cid::CID_OTHER_SERVER_KICK_USER,
    cid::CID_OTHER_HEARTBEAT,
];

/// (request, answer) pairs whose answers must carry a request's seq.
const PAIRS: &[(u16, u16)] = &[
    (
        cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST,
        cid::CID_BUDDY_LIST_USERS_STATUS_RESPONSE,
    ),
    (
        cid::CID_ADMIN_LOCATE_USER_REQ,
        cid::CID_ADMIN_LOCATE_USER_RSP,
    ),
];

/// The offline grace period of the fuzzed state.
const GRACE: Duration = Duration::from_secs(2);

/// Runs `data` through one msg_server link and checks the properties (module doc); panics
/// when one breaks. Run it on a current-thread runtime with paused time.
pub async fn check(data: &[u8]) {
    let shutdown = CancellationToken::new();
    let state = Arc::new(RouteState::new(
        "fuzz".into(),
        SocketAddr::from(([127, 0, 0, 1], 8200)),
        GRACE,
        RouteMetrics::new(Registry::new("im_route_server")),
        shutdown.clone(),
    ));
    let mut opts = ServeOptions::server("msg_server");
    opts.echo_heartbeat = true;
    let registry = state.conns.clone();
    let driven = run_records(data, COMMANDS, &opts, &registry, |conn| {
        LinkHandler::new(state.clone(), conn)
    })
    .await;
    check_reply_seqs(&driven, PAIRS);
    assert_eq!(state.links.len(), 0, "a closed link is still registered");
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    assert_eq!(
        state.table.grace_len(),
        0,
        "users still held after the grace period"
    );
    assert_eq!(
        state.table.len(),
        0,
        "users of a closed link still in the route table"
    );
    shutdown.cancel();
}

/// Seed inputs for the fuzzer's corpus: registration, status updates, queries and relays.
pub fn seeds() -> Vec<Vec<u8>> {
    let s = |c| sel(COMMANDS, c);
    let stat = |user_id, client_type| ServerUserStat {
        user_id,
        status: 1,
        client_type,
    };
    let online = ImOnlineUserInfo {
        user_stat_list: vec![stat(7, 1), stat(8, 0x12), stat(7, 0x11)],
    };
    let update = |user_status, user_id, client_type| ImUserStatusUpdate {
        user_status,
        user_id,
        client_type,
    };
    let query = ImUsersStatReq {
        user_id: 7,
        user_id_list: vec![7, 8, 9],
        attach_data: None,
    };
    let locate = ImAdminLocateUserReq {
        user_id: Some(7),
        user_ids: vec![8, 9],
    };
    let msg = ImMsgData {
        from_user_id: 7,
        to_session_id: 8,
        msg_id: 1,
        create_time: 1,
        msg_type: 1,
        msg_data: bytes::Bytes::from_static(b"aGVsbG8="),
        attach_data: None,
    };
    let kick = ImServerKickUser {
        user_id: 8,
        client_type: 0x12,
        reason: 1,
    };
    let registration = seed(&[
        (
            s(cid::CID_OTHER_ROLE_SET),
            1,
            body(&ImRoleSet { master: 1 }),
        ),
        (s(cid::CID_OTHER_ONLINE_USER_INFO), 2, body(&online)),
        (
            s(cid::CID_OTHER_USER_STATUS_UPDATE),
            3,
            body(&update(1, 9, 1)),
        ),
        (s(cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST), 4, body(&query)),
        (s(cid::CID_ADMIN_LOCATE_USER_REQ), 5, body(&locate)),
        (s(cid::CID_MSG_DATA), 6, body(&msg)),
        (s(cid::CID_OTHER_SERVER_KICK_USER), 7, body(&kick)),
        (
            s(cid::CID_OTHER_USER_STATUS_UPDATE),
            8,
            body(&update(2, 7, 1)),
        ),
        (s(cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST), 9, body(&query)),
    ]);
    let relay_only = seed(&[
        (s(cid::CID_MSG_DATA), 1, body(&msg)),
        (s(cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST), 2, body(&query)),
    ]);
    vec![registration, relay_only]
}

/// The admin fuzz target (`fuzz/fuzz_targets/admin.rs`, findings in `fixtures/fuzz/admin/`):
/// the shared admin dispatch (`im_common::fuzzing::check_admin`) in front of route_server's
/// admin service, on a state where one link registered users 7 (PC and Android) and 8.
pub async fn check_admin(data: &[u8]) {
    let shutdown = CancellationToken::new();
    let state = Arc::new(RouteState::new(
        "fuzz".into(),
        SocketAddr::from(([127, 0, 0, 1], 8200)),
        GRACE,
        RouteMetrics::new(Registry::new("im_route_server")),
        shutdown.clone(),
    ));
    let opts = ServeOptions::server("msg_server");
    let link_conn = im_common::fuzzing::conn(&opts, &state.conns);
    let mut link = LinkHandler::new(state.clone(), &link_conn);
    let online = ImOnlineUserInfo {
        user_stat_list: vec![
            ServerUserStat {
                user_id: 7,
                status: 1,
                client_type: 1,
            },
            ServerUserStat {
                user_id: 7,
                status: 1,
                client_type: 0x12,
            },
            ServerUserStat {
                user_id: 8,
                status: 1,
                client_type: 0x11,
            },
        ],
    };
    im_common::Handler::on_pdu(&mut link, &link_conn, im_proto::Pdu::from_msg(&online, 1)).await;
    let service = Arc::new(crate::admin::RouteAdmin::new(state.clone()));
    im_common::fuzzing::check_admin(service, data).await;
    shutdown.cancel();
}

/// Seed inputs for the admin target: every admin request route_server answers, after a
/// valid authentication, and a wrong token.
pub fn admin_seeds() -> Vec<Vec<u8>> {
    use im_common::fuzzing::{ADMIN_COMMANDS, ADMIN_TOKEN};
    use im_proto::admin::{
        ImAdminAuthReq, ImAdminConnListReq, ImAdminKickUserReq, ImAdminRouteListReq,
        ImAdminStatsReq,
    };
    let s = |c| sel(ADMIN_COMMANDS, c);
    let requests = seed(&[
        (s(cid::CID_ADMIN_STATS_REQ), 2, body(&ImAdminStatsReq {})),
        (
            s(cid::CID_ADMIN_ROUTE_LIST_REQ),
            3,
            body(&ImAdminRouteListReq::default()),
        ),
        (
            s(cid::CID_ADMIN_LOCATE_USER_REQ),
            4,
            body(&ImAdminLocateUserReq {
                user_id: Some(7),
                user_ids: vec![8, 9],
            }),
        ),
        (
            s(cid::CID_ADMIN_CONN_LIST_REQ),
            5,
            body(&ImAdminConnListReq::default()),
        ),
        (
            s(cid::CID_ADMIN_KICK_USER_REQ),
            6,
            body(&ImAdminKickUserReq {
                user_id: Some(7),
                ..Default::default()
            }),
        ),
        (s(cid::CID_ADMIN_DRAIN_REQ), 7, Vec::new()),
    ]);
    let wrong = seed(&[(
        s(cid::CID_ADMIN_AUTH_REQ),
        1,
        body(&ImAdminAuthReq {
            token: Some(format!("{ADMIN_TOKEN}x")),
            client_name: None,
        }),
    )]);
    vec![
        [&[1u8][..], &requests].concat(),
        [&[0u8][..], &wrong].concat(),
        [&[0u8][..], &requests].concat(),
    ]
}
