//! Links and lifecycle: malformed input, unknown commands, the admin port, and the
//! stop-receive shutdown (FLOWS.md 1.5) with every taken request answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{WAIT, ask, expect_silence, start, start_with, tag_attach};
use im_proto::admin::{
    AdminResult, ImAdminAuthReq, ImAdminAuthRsp, ImAdminStatsReq, ImAdminStatsRsp,
};
use im_proto::base::MsgType;
use im_proto::message::{ImClientTimeReq, ImMsgData};
use im_proto::server::ImStopReceivePacket;
use im_proto::{Header, Pdu, cid, sid};
use im_storage::{SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn text(from: u32, to: u32, tag: u64) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: Bytes::from_static(b"hello"),
        attach_data: Some(tag_attach(5, tag)),
    }
}

#[tokio::test]
async fn a_malformed_frame_closes_only_its_link() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (good, _events) = s.link().await;
    let mut raw = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    // length 5 < 16: a framing error.
    raw.write_all(&[0, 0, 0, 5, 0, 1, 0, 0, 0, 3, 3, 1, 0, 1, 0, 0])
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
        .await
        .expect("the bad link is closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer on the bad link, just a close");
    let r: ImMsgData = ask(&good, &text(a, b, 1)).await;
    assert_eq!(r.msg_id, 1, "the other link is unaffected");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_bodies_and_unknown_commands_are_dropped_and_the_link_stays() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, mut events) = s.link().await;

    // IMMsgData without its required msg_data (field 6): dropped, no answer.
    let mut body = Vec::new();
    prost::encoding::uint32::encode(1, &a, &mut body);
    prost::encoding::uint32::encode(2, &b, &mut body);
    prost::encoding::uint32::encode(3, &0, &mut body);
    prost::encoding::uint32::encode(4, &0, &mut body);
    prost::encoding::int32::encode(5, &1, &mut body);
    let missing = Pdu::new(
        Header::new(sid::SID_MSG, cid::CID_MSG_DATA, 4242),
        Bytes::from(body),
    );
    link.send_pdu(&missing).await.unwrap();
    // Garbage bytes as a body.
    let garbage = Pdu::new(
        Header::new(sid::SID_MSG, cid::CID_MSG_LIST_REQUEST, 4242),
        Bytes::from_static(&[0xff, 0xff, 0xff]),
    );
    link.send_pdu(&garbage).await.unwrap();
    // A command db_proxy does not handle.
    expect_silence(
        &link,
        &mut events,
        &ImClientTimeReq {},
        Duration::from_millis(500),
    )
    .await;

    // The link still works, and nothing was stored by the dropped request.
    let r: ImMsgData = ask(&link, &text(a, b, 1)).await;
    assert_eq!(r.msg_id, 1);
    assert_eq!(s.shared.metrics.decode_errors.get(), 2);
    assert!(s.shared.metrics.unknown_commands.get() >= 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn admin_stats_report_commands_and_storage() {
    let s = start_with(|c| {
        c.admin.listen = "127.0.0.1:0".into();
        c.admin.token = "a-test-token-of-some-length".into();
    })
    .await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, _events) = s.link().await;
    for i in 0..5 {
        ask::<_, ImMsgData>(&link, &text(a, b, i)).await;
    }
    let (admin, _ev) = im_proto::client::ImClient::connect(
        s.admin_addr.as_deref().unwrap(),
        im_proto::client::ClientConfig::default(),
    )
    .await
    .unwrap();
    let auth: ImAdminAuthRsp = admin
        .request(&ImAdminAuthReq {
            token: Some("a-test-token-of-some-length".into()),
            client_name: Some("test".into()),
        })
        .await
        .unwrap();
    assert_eq!(auth.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(auth.server_kind.as_deref(), Some("db_proxy_server"));
    let stats: ImAdminStatsRsp = admin.request(&ImAdminStatsReq {}).await.unwrap();
    let st = stats.stats.unwrap();
    let msg = st
        .commands
        .iter()
        .find(|c| c.command_id == Some(u32::from(cid::CID_MSG_DATA)))
        .expect("CID_MSG_DATA counted");
    assert_eq!(msg.requests_total, Some(5));
    assert_eq!(msg.errors_total, Some(0));
    assert!(msg.latency.as_ref().and_then(|l| l.count) == Some(5));
    let storage = st.storage.unwrap();
    assert_eq!(storage.backend.as_deref(), Some("sqlite"));
    assert_eq!(storage.cache.as_deref(), Some("embedded"));
    assert!(storage.write_latency.and_then(|l| l.count).unwrap_or(0) >= 5);
    assert!(storage.writes_total.unwrap_or(0) >= 5);
    // The writer committed them (its time counted) and nothing is left in its queue.
    assert!(
        storage.writer_busy_micros_total.unwrap_or(0) > 0,
        "{storage:?}"
    );
    assert_eq!(storage.write_queue, Some(0));
    assert_eq!(st.connections[0].count, Some(1));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_announces_stop_receive_and_answers_what_it_took() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let db_path = s.dir.path().join("teamtalk.db");
    let (link, mut events) = s.link().await;
    const N: u16 = 300;
    for seq in 1..=N {
        link.send_pdu(&Pdu::from_msg(&text(a, b, u64::from(seq)), seq))
            .await
            .unwrap();
    }
    // Shut down while stores are in flight: once the first answer shows the link is
    // accepted and working (a connection still in the accept backlog at shutdown is simply
    // reset, which is not what this test is about).
    let mut answered = Vec::new();
    let first = loop {
        let pdu = events.recv_timeout(WAIT).await.unwrap().unwrap();
        if pdu.command_id() == cid::CID_MSG_DATA {
            break pdu.decode::<ImMsgData>().unwrap();
        }
    };
    assert!(first.msg_id > 0);
    answered.push(first.msg_id);
    s.shutdown.cancel();
    let mut stop_seen = false;
    while let Ok(Some(pdu)) = events.recv_timeout(WAIT).await {
        match pdu.command_id() {
            cid::CID_OTHER_STOP_RECV_PACKET => {
                assert_eq!(pdu.decode::<ImStopReceivePacket>().unwrap().result, 0);
                stop_seen = true;
            }
            cid::CID_MSG_DATA => {
                let m = pdu.decode::<ImMsgData>().unwrap();
                assert!(m.msg_id > 0, "a taken store is stored, not failed");
                answered.push(m.msg_id);
            }
            _ => {}
        }
    }
    assert!(stop_seen, "IMStopReceivePacket was sent");
    tokio::time::timeout(Duration::from_secs(30), s.done)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Every stored message was answered, and nothing answered is missing.
    let store = SqliteStore::open(&im_storage::config::SqliteConfig {
        path: db_path,
        ..Default::default()
    })
    .await
    .unwrap();
    let stored = store
        .history(a, im_storage::SessionType::Single, b, 0, 1000)
        .await
        .unwrap();
    answered.sort_unstable();
    let mut ids: Vec<u32> = stored.iter().map(|m| m.msg_id).collect();
    ids.sort_unstable();
    assert_eq!(answered, ids);
    store.close().await;
}

#[tokio::test]
async fn the_demo_seed_loads_once_and_its_passwords_work() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/seed/demo.toml"
    ));
    for round in 0..2 {
        let mut config = db_proxy_server::Config {
            listen: "127.0.0.1:0".into(),
            ..db_proxy_server::Config::default()
        };
        config.storage.sqlite.path = dir.path().join("demo.db");
        let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = main.local_addr().unwrap().to_string();
        let shutdown = im_common::CancellationToken::new();
        let server = {
            let (shutdown, seed) = (shutdown.clone(), seed.clone());
            tokio::spawn(async move {
                db_proxy_server::run_seeded(
                    config,
                    db_proxy_server::Listeners {
                        main_tls: None,
                        main,
                        admin: None,
                        metrics: None,
                    },
                    shutdown,
                    Some(&seed),
                )
                .await
            })
        };
        let (link, _events) =
            im_proto::client::ImClient::connect(&addr, im_proto::client::ClientConfig::default())
                .await
                .unwrap();
        let ok: im_proto::server::ImValidateRsp = ask(
            &link,
            &im_proto::server::ImValidateReq {
                user_name: "huangli".into(),
                password: im_proto::crypto::password_digest("123456"),
                attach_data: None,
            },
        )
        .await;
        assert_eq!(ok.result_code, 0, "round {round}");
        let all: im_proto::buddy::ImAllUserRsp = ask(
            &link,
            &im_proto::buddy::ImAllUserReq {
                user_id: 1,
                latest_update_time: 0,
                attach_data: None,
            },
        )
        .await;
        assert_eq!(all.user_list.len(), 20, "round {round}: loaded once");
        let depts: im_proto::buddy::ImDepartmentRsp = ask(
            &link,
            &im_proto::buddy::ImDepartmentReq {
                user_id: 1,
                latest_update_time: 0,
                attach_data: None,
            },
        )
        .await;
        assert_eq!(depts.dept_list.len(), 6);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
