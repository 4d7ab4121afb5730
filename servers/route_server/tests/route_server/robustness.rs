//! Malformed input harms only its own link (Decisions 1).

use std::time::Duration;

use bytes::Bytes;
use im_proto::base::ClientType;
use im_proto::message::ImMsgData;
use im_proto::pdu::Header;
use im_proto::{Pdu, cid, sid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Server, WAIT};

#[tokio::test]
async fn a_malformed_frame_closes_only_that_link() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (a, mut b) = (s.msg_server().await, s.msg_server().await);
    b.register(&[(2, ClientType::Windows)]).await;
    let mut raw = TcpStream::connect(&s.addr).await.unwrap();
    // length 8: shorter than the 16-byte header itself.
    raw.write_all(&[0, 0, 0, 8, 0, 1, 0, 0, 0, 3, 3, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
        .await
        .expect("route_server closes the link")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected EOF");
    // The others carry on.
    let sent = a
        .send(&ImMsgData {
            from_user_id: 1,
            to_session_id: 2,
            msg_id: 1,
            create_time: 1,
            msg_type: 1,
            msg_data: Bytes::from_static(b"still here"),
            attach_data: None,
        })
        .await;
    assert_eq!(b.next().await.to_frame(), sent);
    assert_eq!(a.wire_status(&[2]).await, vec![1]);
    let (_, metrics) = s.http_get("/metrics").await;
    assert!(
        metrics.contains("im_route_server_link_frame_errors_total 1"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn bodies_that_do_not_decode_are_dropped_and_the_link_stays() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b) = (s.msg_server().await, s.msg_server().await);
    b.register(&[(2, ClientType::Windows)]).await;
    let bad = |cid: u16, body: &'static [u8]| {
        Pdu::new(Header::new(sid::SID_MSG, cid, 1), Bytes::from_static(body)).to_frame()
    };
    // Garbage bytes.
    a.client
        .send_frame(bad(cid::CID_MSG_DATA, &[0xff, 0xff, 0xff]))
        .await
        .unwrap();
    // Valid protobuf lacking required fields (only from_user_id = 1, to_session_id = 2).
    a.client
        .send_frame(bad(cid::CID_MSG_DATA, &[0x08, 0x01, 0x10, 0x02]))
        .await
        .unwrap();
    // A status update with an undefined client type (99).
    a.client
        .send_frame(bad(
            cid::CID_OTHER_USER_STATUS_UPDATE,
            &[0x08, 0x01, 0x10, 0x02, 0x18, 99],
        ))
        .await
        .unwrap();
    // An unknown command: ignored.
    a.client.send_frame(bad(0x0999, &[1, 2, 3])).await.unwrap();
    // The link still works, and nothing reached B.
    assert_eq!(a.wire_status(&[2]).await, vec![1]);
    let f = a.fence().await;
    b.expect_nothing_before(f).await;
    a.expect_nothing_before(f).await;
    let (_, metrics) = s.http_get("/metrics").await;
    assert!(
        metrics.contains("im_route_server_decode_errors_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("im_route_server_unknown_commands_total 1"),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test]
async fn heartbeats_are_echoed() {
    let s = Server::start(Duration::from_secs(15)).await;
    let a = s.msg_server().await;
    let rtt = a.client.heartbeat().await.unwrap();
    assert!(rtt < WAIT);
    s.stop().await;
}
