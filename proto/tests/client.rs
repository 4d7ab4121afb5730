//! The async client against a scripted peer on a real loopback socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use im_proto::base::{ClientType, MsgType, ResultType};
use im_proto::client::{ClientConfig, ClientError, ImClient, LoginParams};
use im_proto::login::{ImLoginReq, ImLoginRes};
use im_proto::message::{ImClientTimeReq, ImMsgData, ImMsgDataAck};
use im_proto::{LinkKind, Pdu, PduCodec, cid};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;

/// A peer that answers like a msg_server would, plus a few tricks.
async fn scripted_peer() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut frames = FramedRead::new(read, PduCodec::new(LinkKind::Client));
        while let Some(Ok(pdu)) = frames.next().await {
            let mut out = BytesMut::new();
            match pdu.command_id() {
                cid::CID_OTHER_HEARTBEAT => pdu.encode_to(&mut out),
                cid::CID_LOGIN_REQ_USERLOGIN => {
                    let req: ImLoginReq = pdu.decode().unwrap();
                    let ok = req.password == im_proto::crypto::password_digest("secret");
                    let res = ImLoginRes {
                        server_time: 1,
                        result_code: if ok { 0 } else { 6 },
                        result_string: Some(
                            if ok {
                                "成功"
                            } else {
                                "用户名/密码错误"
                            }
                            .into(),
                        ),
                        ..Default::default()
                    };
                    pdu.reply(&res).encode_to(&mut out);
                }
                cid::CID_MSG_DATA => {
                    // First an unrelated IMMsgData carrying the same seq (what an original
                    // route_server relays), then the real ack.
                    let msg: ImMsgData = pdu.decode().unwrap();
                    let mut relayed = msg.clone();
                    relayed.from_user_id = 99;
                    Pdu::from_msg(&relayed, pdu.seq_num()).encode_to(&mut out);
                    let ack = ImMsgDataAck {
                        user_id: msg.from_user_id,
                        session_id: msg.to_session_id,
                        msg_id: 42,
                        session_type: 1,
                    };
                    pdu.reply(&ack).encode_to(&mut out);
                }
                cid::CID_MSG_TIME_REQUEST => {
                    // Never answered: the client must time out.
                }
                _ => {}
            }
            if !out.is_empty() {
                write.write_all(&out).await.unwrap();
            }
        }
    });
    addr
}

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(300),
        heartbeat_interval: None,
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn login_heartbeat_ack_matching_and_timeouts() {
    let addr = scripted_peer().await;
    let (client, mut events) = ImClient::connect(&addr, config()).await.unwrap();

    let rtt = client.heartbeat().await.unwrap();
    assert!(rtt < Duration::from_secs(1));
    assert!(client.last_rtt().is_some());

    let err = client
        .login(&LoginParams::new("alice", "wrong"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::LoginRefused { code: 6, .. }),
        "{err}"
    );
    let res = client
        .login(&LoginParams::new("alice", "secret").with_client_type(ClientType::Android))
        .await
        .unwrap();
    assert_eq!(res.result_code, ResultType::RefuseReasonNone as i32);

    let msg = ImMsgData {
        from_user_id: 1,
        to_session_id: 2,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: Bytes::from_static(b"hello"),
        attach_data: None,
    };
    let ack = client.request(&msg).await.unwrap();
    assert_eq!(ack.msg_id, 42);
    // The colliding IMMsgData went to the event stream, not to the waiter.
    let relayed: ImMsgData = events.next_of(Duration::from_secs(1)).await.unwrap();
    assert_eq!(relayed.from_user_id, 99);

    let err = client.request(&ImClientTimeReq {}).await.unwrap_err();
    assert!(matches!(
        err,
        ClientError::Timeout {
            command: "CID_MSG_TIME_REQUEST",
            ..
        }
    ));

    client.close();
    assert!(matches!(client.heartbeat().await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn peer_close_fails_pending_requests_and_ends_events() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stream);
    });
    let (client, mut events) = ImClient::connect(&addr, config()).await.unwrap();
    let cfg_timeout = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let r = client
        .request_timeout(&ImClientTimeReq {}, cfg_timeout)
        .await;
    assert!(matches!(r, Err(ClientError::Closed)), "{r:?}");
    assert!(started.elapsed() < cfg_timeout);
    assert!(events.recv().await.is_none());
    assert!(client.is_closed());
}

#[tokio::test]
async fn connect_errors_are_typed() {
    // Bind then drop to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = ImClient::connect(&format!("127.0.0.1:{port}"), config()).await;
    assert!(matches!(r, Err(ClientError::Connect { .. })));
}
