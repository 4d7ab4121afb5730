//! The properties the `login_server` fuzz target checks (`fuzz/fuzz_targets/login_server.rs`),
//! shared with the test that replays what it once found (`tests/fuzz_regressions.rs`,
//! `fixtures/fuzz/login_server/`).
//!
//! The first byte of an input picks the service (`% 3`), the rest drives it:
//! * 0: one msg_server link of the real [`MsgServerLink`] (records, `im_common::fuzzing`),
//!   with a login assignment and a table snapshot after every PDU, as client logins would
//!   interleave. The port answers nothing, so only heartbeats come back; the registration
//!   is gone once the link closes;
//! * 1: one legacy client connection ([`LegacyClient`]) with a msg_server registered: at most
//!   one IMMsgServRsp, carrying the seq of an IMMsgServReq, and nothing else but heartbeat
//!   echoes;
//! * 2: the rest of the input as one HTTP request to the `GET /msg_server` responder, with a
//!   msg_server registered: no answer, or exactly the original's answer for an assignment,
//!   and an answer only to a complete request for `/msg_server` within 1024 bytes.
//!
//! Besides: never panics, never hangs, the output is well-framed and within the caps.

use std::sync::Arc;
use std::time::Instant;

use im_common::fuzzing::{Driven, body, check_reply_seqs, run_records, seed, sel};
use im_common::{CancellationToken, Conn, Handler, ServeOptions};
use im_proto::login::{ImMsgServReq, ImMsgServRsp};
use im_proto::server::{ImMsgServInfo, ImUserCntUpdate};
use im_proto::{Pdu, cid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::http::{Outcome, handle};
use crate::legacy::LegacyClient;
use crate::msg_servers::MsgServerLink;
use crate::request::{MAX_REQUEST_LEN, Parse, parse_request};
use crate::server::{LoginServer, Shared};

/// The commands of the msg_server port (and a heartbeat).
pub const LINK_COMMANDS: &[u16] = &[
    cid::CID_OTHER_MSG_SERV_INFO,
    cid::CID_OTHER_USER_CNT_UPDATE,
    cid::CID_OTHER_HEARTBEAT,
];

/// The commands of the legacy client port.
pub const LEGACY_COMMANDS: &[u16] = &[cid::CID_LOGIN_REQ_MSGSERVER, cid::CID_OTHER_HEARTBEAT];

fn shared() -> Arc<Shared> {
    match LoginServer::new(Config::default()) {
        Ok(s) => s.shared,
        Err(e) => panic!("the default config builds a login_server: {e}"),
    }
}

fn info() -> ImMsgServInfo {
    ImMsgServInfo {
        ip1: "10.0.0.1".into(),
        ip2: "10.0.0.2".into(),
        port: 8000,
        max_conn_cnt: 100,
        cur_conn_cnt: 3,
        host_name: "ms1".into(),
    }
}

/// A msg_server link that also hands out a login and reads the table after every PDU.
struct Interleaved(MsgServerLink);

impl Handler for Interleaved {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        self.0.on_pdu(conn, pdu).await;
        let sh = &self.0.shared;
        let _ = sh.assign();
        let snap = sh.table.snapshot(Instant::now());
        assert!(
            snap.len() <= 1,
            "one link registered {} servers",
            snap.len()
        );
        let _ = sh.table.totals();
    }

    async fn on_close(&mut self, conn: &Conn) {
        self.0.on_close(conn).await;
    }
}

/// Runs `data` through one service (module doc) and checks the properties; panics when one
/// breaks. Run it on a current-thread runtime with paused time.
pub async fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sh = shared();
    match mode % 3 {
        0 => check_link(&sh, rest).await,
        1 => check_legacy(&sh, rest).await,
        _ => check_http(&sh, rest).await,
    }
}

async fn check_link(sh: &Arc<Shared>, data: &[u8]) {
    let opts = ServeOptions::server("msg_server");
    let registry = sh.msg_server_links.clone();
    let driven = run_records(data, LINK_COMMANDS, &opts, &registry, |_| {
        Interleaved(MsgServerLink { shared: sh.clone() })
    })
    .await;
    for r in &driven.replies {
        assert_eq!(
            r.command_id(),
            cid::CID_OTHER_HEARTBEAT,
            "the msg_server port answered {}",
            r.command_name()
        );
    }
    assert!(
        sh.table.is_empty(),
        "a closed msg_server link left its registration"
    );
}

async fn check_legacy(sh: &Arc<Shared>, data: &[u8]) {
    sh.table.register(u64::MAX, info(), Instant::now());
    let opts = ServeOptions::client("legacy_client");
    let registry = sh.legacy_links.clone();
    let driven: Driven = run_records(data, LEGACY_COMMANDS, &opts, &registry, |_| LegacyClient {
        shared: sh.clone(),
    })
    .await;
    check_reply_seqs(
        &driven,
        &[(cid::CID_LOGIN_REQ_MSGSERVER, cid::CID_LOGIN_RES_MSGSERVER)],
    );
    let answers = driven.replies_of(cid::CID_LOGIN_RES_MSGSERVER).count();
    assert!(
        answers <= 1,
        "{answers} IMMsgServRsp on one legacy connection"
    );
    for r in &driven.replies {
        match r.command_id() {
            cid::CID_OTHER_HEARTBEAT => {}
            cid::CID_LOGIN_RES_MSGSERVER => {
                let rsp = r.decode::<ImMsgServRsp>();
                assert!(rsp.is_ok(), "IMMsgServRsp does not decode: {rsp:?}");
            }
            other => panic!("the legacy port answered command {other:#06x}"),
        }
    }
    // An answer needs a request that decodes.
    let asked = driven.requests.iter().any(|r| {
        r.command_id() == cid::CID_LOGIN_REQ_MSGSERVER && r.decode::<ImMsgServReq>().is_ok()
    });
    assert!(
        answers == 0 || asked,
        "IMMsgServRsp to no valid IMMsgServReq"
    );
}

async fn check_http(sh: &Arc<Shared>, data: &[u8]) {
    sh.table.register(u64::MAX, info(), Instant::now());
    let data = &data[..data.len().min(4 * MAX_REQUEST_LEN)];
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let _ = client.write_all(data).await;
    let _ = client.shutdown().await;
    let outcome = handle(&mut server, sh, &CancellationToken::new()).await;
    drop(server);
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out).await;
    // All of it is in the pipe, so the responder's first read takes up to 1025 bytes: more
    // than 1024 is too large, anything else is parsed as a whole.
    let expected = if data.len() > MAX_REQUEST_LEN {
        Parse::TooLarge
    } else {
        parse_request(data)
    };
    let want_answer = expected == Parse::Complete { msg_server: true };
    assert_eq!(
        outcome == Outcome::Answered,
        want_answer,
        "{outcome:?} for a request parsed as {expected:?}"
    );
    match outcome {
        Outcome::Answered => {
            let text = String::from_utf8(out).unwrap_or_default();
            assert!(
                text.starts_with("HTTP/1.1 200 OK\r\n"),
                "not the original's answer: {text:?}"
            );
            let (head, json) = text.split_once("\r\n\r\n").unwrap_or_default();
            assert!(
                head.contains(&format!("Content-Length:{}", json.len())),
                "Content-Length does not match the body: {text:?}"
            );
            assert!(
                json.contains("\"priorIP\"") && json.contains("10.0.0.1"),
                "the registered msg_server was not handed out: {json:?}"
            );
        }
        _ => assert!(
            out.is_empty(),
            "{outcome:?} but {} bytes written",
            out.len()
        ),
    }
}

/// Seed inputs for the fuzzer's corpus: registration and load reports, a legacy request, an
/// HTTP request.
pub fn seeds() -> Vec<Vec<u8>> {
    let l = |c| sel(LINK_COMMANDS, c);
    let update = |action| ImUserCntUpdate {
        user_action: action,
        user_id: 7,
    };
    let link = seed(&[
        (l(cid::CID_OTHER_MSG_SERV_INFO), 1, body(&info())),
        (l(cid::CID_OTHER_USER_CNT_UPDATE), 2, body(&update(1))),
        (l(cid::CID_OTHER_USER_CNT_UPDATE), 3, body(&update(2))),
        (l(cid::CID_OTHER_MSG_SERV_INFO), 4, body(&info())),
    ]);
    let legacy = seed(&[(
        sel(LEGACY_COMMANDS, cid::CID_LOGIN_REQ_MSGSERVER),
        9,
        body(&ImMsgServReq {}),
    )]);
    vec![
        [&[0u8][..], &link].concat(),
        [&[1u8][..], &legacy].concat(),
        [&[2u8][..], b"GET /msg_server HTTP/1.1\r\nHost: x\r\n\r\n"].concat(),
        [
            &[2u8][..],
            b"POST /msg_server?a=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ]
        .concat(),
    ]
}
