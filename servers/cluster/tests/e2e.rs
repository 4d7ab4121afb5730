//! The messaging core end to end: a whole suite (db_proxy on SQLite, route_server,
//! login_server, two msg_servers) on loopback, driven by the im-proto client exactly as a stock
//! TeamTalk client would drive it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use im_cluster::{Cluster, ClusterOptions, ServerId};
use im_proto::base::{ClientType, KickReasonType, MsgType, SessionType};
use im_proto::client::{
    ClientConfig, ClientError, Events, ImClient, LoginParams, fetch_msg_server,
};
use im_proto::login::ImKickUser;
use im_proto::message::{
    ImGetMsgListReq, ImMsgData, ImMsgDataAck, ImMsgDataReadAck, ImMsgDataReadNotify,
    ImUnreadMsgCntReq,
};
use im_proto::other::ImHeartBeat;
use im_proto::{Pdu, cid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn seed() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/seed/demo.toml"
    ))
}

async fn cluster(dir: &tempfile::TempDir) -> Cluster {
    let mut opts = ClusterOptions::new(dir.path());
    opts.seed = Some(seed());
    Cluster::start(opts).await.expect("cluster starts")
}

fn cfg() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: Some(Duration::from_secs(30)),
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

struct User {
    c: ImClient,
    ev: Events,
    id: u32,
}

async fn login_at(addr: SocketAddr, name: &str, ct: ClientType) -> User {
    let (c, ev) = ImClient::connect(&addr.to_string(), cfg()).await.unwrap();
    let res = c
        .login(&LoginParams::new(name, "123456").with_client_type(ct))
        .await
        .unwrap_or_else(|e| panic!("login {name}: {e}"));
    let id = res.user_info.expect("user_info").user_id;
    User { c, ev, id }
}

fn text(from: u32, to: u32, body: &str, group: bool) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: if group {
            MsgType::GroupText
        } else {
            MsgType::SingleText
        } as i32,
        msg_data: Bytes::from(
            im_proto::crypto::MessageCipher::default_key()
                .encrypt(body.as_bytes())
                .into_bytes(),
        ),
        attach_data: None,
    }
}

/// The next IMMsgData on `ev`, with its header (delivery must carry seq 0).
async fn next_msg(ev: &mut Events) -> (Pdu, ImMsgData) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pdu = tokio::time::timeout_at(deadline, ev.recv())
            .await
            .expect("a message in time")
            .expect("connection open");
        if pdu.command_id() == cid::CID_MSG_DATA {
            let m = pdu.decode::<ImMsgData>().unwrap();
            return (pdu, m);
        }
    }
}

async fn no_msg_within(ev: &mut Events, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, ev.recv()).await {
        assert_ne!(
            p.command_id(),
            cid::CID_MSG_DATA,
            "unexpected message delivery"
        );
    }
}

#[tokio::test]
async fn http_login_then_auth_and_heartbeat_echo_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let a = fetch_msg_server(cl.login_url()).await.unwrap();
    assert!(a.port > 0);
    let (c, _ev) = ImClient::connect(&a.addr(), cfg()).await.unwrap();
    let res = c
        .login(&LoginParams::new("zhangsan", "123456"))
        .await
        .unwrap();
    let info = res.user_info.unwrap();
    assert_eq!(info.user_real_name, "zhangsan");
    assert!(c.heartbeat().await.unwrap() < WAIT);
    // The echo is the same PDU (same seq), requested explicitly.
    assert_eq!(c.request(&ImHeartBeat {}).await.unwrap(), ImHeartBeat {});

    for (name, pass) in [("zhangsan", "wrong"), ("nobody", "123456")] {
        let (c, _ev) = ImClient::connect(&a.addr(), cfg()).await.unwrap();
        let e = c.login(&LoginParams::new(name, pass)).await.unwrap_err();
        assert!(
            matches!(e, ClientError::LoginRefused { code: 6, .. }),
            "{name}: {e}"
        );
        // And the connection is closed after the refusal.
        tokio::time::timeout(WAIT, c.closed()).await.unwrap();
    }
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn chat_across_msg_servers_with_ack_delivery_and_data_ack() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Windows,
    )
    .await;
    let mut b = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Windows).await;
    for i in 1..=3u32 {
        let ack: ImMsgDataAck =
            a.c.request(&text(a.id, b.id, &format!("hi {i}"), false))
                .await
                .unwrap();
        assert_eq!((ack.user_id, ack.session_id, ack.msg_id), (a.id, b.id, i));
        assert_eq!(ack.session_type, SessionType::Single as i32);
        let (pdu, m) = next_msg(&mut b.ev).await;
        assert_eq!(pdu.seq_num(), 0, "receivers get seq 0");
        assert_eq!(
            m.attach_data, None,
            "no internal attach_data toward clients"
        );
        assert_eq!((m.from_user_id, m.to_session_id, m.msg_id), (a.id, b.id, i));
        let plain = im_proto::crypto::MessageCipher::default_key()
            .decrypt(&m.msg_data)
            .unwrap();
        assert_eq!(plain, format!("hi {i}").as_bytes());
        // The receiver's delivery ack is accepted (nothing comes back for it).
        b.c.send(&ImMsgDataAck {
            user_id: b.id,
            session_id: a.id,
            msg_id: i,
            session_type: SessionType::Single as i32,
        })
        .await
        .unwrap();
    }
    cl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_messages_are_acked_and_delivered_in_send_order() {
    // Decisions 6: one conversation's messages keep their order end to end, even when the
    // client does not wait for each ack and the servers run on several threads.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ClusterOptions::new(dir.path());
    opts.seed = Some(seed());
    // Far above the default 100/s per connection: this client does not pace itself.
    opts.tune = Some(std::sync::Arc::new(|c: &mut im_cluster::ServerConfigs| {
        for m in &mut c.msg {
            m.msg_rate_limit_per_sec = 1_000_000;
        }
    }));
    let cl = Cluster::start(opts).await.unwrap();
    let mut a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Android,
    )
    .await;
    let mut b = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Android).await;
    const N: u32 = 1500;
    let mut seqs = Vec::new();
    for i in 0..N {
        seqs.push(
            a.c.send(&text(a.id, b.id, &format!("m{i}"), false))
                .await
                .unwrap(),
        );
    }
    // Acks come back in send order (seq order) with consecutive ids.
    let mut acks = Vec::new();
    while acks.len() < N as usize {
        let p = tokio::time::timeout(WAIT, a.ev.recv())
            .await
            .unwrap()
            .unwrap();
        if p.command_id() == cid::CID_MSG_DATA_ACK {
            acks.push((p.seq_num(), p.decode::<ImMsgDataAck>().unwrap().msg_id));
        }
    }
    let expected: Vec<(u16, u32)> = seqs.iter().copied().zip(1..=N).collect();
    assert_eq!(acks, expected, "acks out of send order");
    // Deliveries arrive in id order and carry the matching text.
    let cipher = im_proto::crypto::MessageCipher::default_key();
    for i in 0..N {
        let (_, m) = next_msg(&mut b.ev).await;
        assert_eq!(m.msg_id, i + 1, "delivery out of order");
        assert_eq!(
            cipher.decrypt(&m.msg_data).unwrap(),
            format!("m{i}").as_bytes()
        );
    }
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn offline_receiver_gets_unread_history_and_read_ack_notifies_other_devices() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Windows,
    )
    .await;
    let b_id = {
        // Learn lisi's id, then go offline.
        let b = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Windows).await;
        let id = b.id;
        b.c.close();
        id
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 1..=2 {
        let ack =
            a.c.request(&text(a.id, b_id, &format!("while away {i}"), false))
                .await
                .unwrap();
        assert_eq!(ack.msg_id, i);
    }
    // lisi comes back on both a PC and a phone, on different msg_servers.
    let pc = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Windows).await;
    let mut phone = login_at(cl.msg_server_addr(0).unwrap(), "lisi", ClientType::Android).await;
    let unread =
        pc.c.request(&ImUnreadMsgCntReq {
            user_id: 0,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(unread.total_cnt, 2);
    let entry = unread
        .unreadinfo_list
        .iter()
        .find(|u| u.session_id == a.id)
        .unwrap();
    assert_eq!((entry.unread_cnt, entry.latest_msg_id), (2, 2));
    let hist =
        pc.c.request(&ImGetMsgListReq {
            user_id: 0,
            session_type: SessionType::Single as i32,
            session_id: a.id,
            msg_id_begin: 0,
            msg_cnt: 10,
            attach_data: None,
        })
        .await
        .unwrap();
    let ids: Vec<u32> = hist.msg_list.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids, vec![2, 1], "newest first");
    pc.c.send(&ImMsgDataReadAck {
        user_id: 0,
        session_id: a.id,
        msg_id: 2,
        session_type: SessionType::Single as i32,
    })
    .await
    .unwrap();
    // The reader's other device (the phone, on the other msg_server) is told.
    let n: ImMsgDataReadNotify = phone.ev.next_of(WAIT).await.unwrap();
    assert_eq!((n.user_id, n.session_id, n.msg_id), (pc.id, a.id, 2));
    // The read ack travels to db_proxy on the conversation's link, the unread query on the
    // user's: they are not ordered with each other, so poll until the clear is visible.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let unread =
            pc.c.request(&ImUnreadMsgCntReq {
                user_id: 0,
                attach_data: None,
            })
            .await
            .unwrap();
        if unread.total_cnt == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unread never cleared: {unread:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_group_of_three_over_two_msg_servers_gets_one_copy_each() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    // 周末聚餐: zhangsan (creator), lisi, wangwu, huangli — the seed's temporary group.
    let a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Windows,
    )
    .await;
    let mut b = login_at(cl.msg_server_addr(0).unwrap(), "lisi", ClientType::Windows).await;
    let mut c = login_at(
        cl.msg_server_addr(1).unwrap(),
        "wangwu",
        ClientType::Windows,
    )
    .await;
    let groups =
        a.c.request(&im_proto::group::ImGroupCreateReq {
            user_id: 0,
            group_type: im_proto::base::GroupType::Tmp as i32,
            group_name: "e2e".into(),
            group_avatar: String::new(),
            member_id_list: vec![a.id, b.id, c.id],
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(groups.result_code, 0);
    let gid = groups.group_id.unwrap();
    let ack =
        a.c.request(&text(a.id, gid, "hello group", true))
            .await
            .unwrap();
    assert_eq!((ack.session_id, ack.msg_id), (gid, 1));
    for ev in [&mut b.ev, &mut c.ev] {
        let (pdu, m) = next_msg(ev).await;
        assert_eq!(pdu.seq_num(), 0);
        assert_eq!((m.to_session_id, m.msg_id, m.from_user_id), (gid, 1, a.id));
        no_msg_within(ev, Duration::from_millis(500)).await;
    }
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn duplicate_login_kicks_and_closes_the_old_connection_per_class() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let ms0 = cl.msg_server_addr(0).unwrap();
    let ms1 = cl.msg_server_addr(1).unwrap();
    let mut old_pc = login_at(ms0, "wangwu", ClientType::Windows).await;
    let mut phone = login_at(ms1, "wangwu", ClientType::Ios).await;
    // PC and mobile coexist.
    no_kick_within(&mut old_pc.ev, Duration::from_millis(500)).await;
    // A second PC login, on the other msg_server, kicks the first PC across route_server.
    let new_pc = login_at(ms1, "wangwu", ClientType::Mac).await;
    let kick: ImKickUser = old_pc.ev.next_of(WAIT).await.unwrap();
    assert_eq!(kick.user_id, old_pc.id);
    assert_eq!(
        kick.kick_reason,
        KickReasonType::KickReasonDuplicateUser as i32
    );
    tokio::time::timeout(WAIT, old_pc.c.closed())
        .await
        .expect("old PC connection closed");
    // The phone and the new PC are untouched.
    assert!(phone.c.heartbeat().await.is_ok());
    assert!(new_pc.c.heartbeat().await.is_ok());
    no_kick_within(&mut phone.ev, Duration::from_millis(300)).await;
    // A second phone kicks the first phone.
    let _phone2 = login_at(ms0, "wangwu", ClientType::Android).await;
    let kick: ImKickUser = phone.ev.next_of(WAIT).await.unwrap();
    assert_eq!(
        kick.kick_reason,
        KickReasonType::KickReasonDuplicateUser as i32
    );
    tokio::time::timeout(WAIT, phone.c.closed())
        .await
        .expect("old phone closed");
    cl.shutdown().await.unwrap();
}

async fn no_kick_within(ev: &mut Events, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(p)) = tokio::time::timeout_at(deadline, ev.recv()).await {
        assert_ne!(p.command_id(), cid::CID_LOGIN_KICK_USER, "unexpected kick");
    }
}

#[tokio::test]
async fn route_server_restart_reregisters_and_messages_flow_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cl = cluster(&dir).await;
    let a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Windows,
    )
    .await;
    let mut b = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Windows).await;
    a.c.request(&text(a.id, b.id, "before", false))
        .await
        .unwrap();
    next_msg(&mut b.ev).await;

    cl.stop(ServerId::Route(0)).await.unwrap();
    // Sent while route_server is down: acked (stored), delivered once it is back.
    let ack =
        a.c.request(&text(a.id, b.id, "during", false))
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cl.restart(ServerId::Route(0)).await.unwrap();
    cl.wait_ready(WAIT).await.unwrap();
    let (_, m) = next_msg(&mut b.ev).await;
    assert_eq!(m.msg_id, ack.msg_id);
    let ack =
        a.c.request(&text(a.id, b.id, "after", false))
            .await
            .unwrap();
    let (_, m) = next_msg(&mut b.ev).await;
    assert_eq!(m.msg_id, ack.msg_id);
    // Exactly once: the resend of the window is de-duplicated by the receiver's msg_server.
    no_msg_within(&mut b.ev, Duration::from_millis(500)).await;
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_input_on_every_listener_leaves_other_clients_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Windows,
    )
    .await;
    let mut b = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Windows).await;
    let mut targets: Vec<SocketAddr> = Vec::new();
    for e in cl.endpoints() {
        targets.push(e.addr);
        targets.push(e.admin);
        if let Some(x) = e.extra {
            targets.push(x);
        }
    }
    for addr in targets {
        for bad in [
            &[0u8, 0, 0, 3][..],
            &[0x7f, 0xff, 0xff, 0xff],
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(bad).await;
            let mut buf = [0u8; 256];
            let r = tokio::time::timeout(WAIT, s.read(&mut buf)).await;
            assert!(r.is_ok(), "{addr} did not close after {bad:?}");
        }
        // A well-framed PDU whose body is garbage is dropped; the connection stays.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let garbage = Pdu::new(
            im_proto::Header::new(im_proto::sid::SID_MSG, cid::CID_MSG_DATA, 1),
            Bytes::from_static(&[0xff, 0xff, 0xff]),
        );
        let _ = s.write_all(&garbage.to_frame()).await;
    }
    // Everyone else is fine.
    let ack =
        a.c.request(&text(a.id, b.id, "still here", false))
            .await
            .unwrap();
    let (_, m) = next_msg(&mut b.ev).await;
    assert_eq!(m.msg_id, ack.msg_id);
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_login_answer_points_at_a_working_msfs_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let a = fetch_msg_server(cl.login_url()).await.unwrap();
    im_proto::client::ensure_crypto_provider();
    let http = reqwest::Client::new();
    // Upload an image the way stock clients do: one multipart part with a file name.
    let body = b"\x89PNG fake image bytes".to_vec();
    let boundary = "----e2eboundary";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"photo_20x10.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    form.extend_from_slice(&body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let rsp: serde_json::Value = http
        .post(&a.msfs_prior)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rsp["error_code"], 0, "{rsp}");
    let url = rsp["url"].as_str().unwrap();
    assert!(url.ends_with("_20x10.png"), "{url}");
    let got = http.get(url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"].to_str().unwrap(), "image/png");
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);
    // The discovery URL answers a JSON array (empty in the demo data).
    let d: serde_json::Value = http
        .get(&a.discovery)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(d.is_array(), "{d}");
    cl.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_login_burst_spreads_over_both_msg_servers() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let mut per_port: HashMap<u16, usize> = HashMap::new();
    for _ in 0..100 {
        let a = fetch_msg_server(cl.login_url()).await.unwrap();
        *per_port.entry(a.port).or_default() += 1;
    }
    assert_eq!(per_port.len(), 2, "{per_port:?}");
    for (port, n) in &per_port {
        assert!(
            (35..=65).contains(n),
            "msg_server port {port} got {n} of 100: {per_port:?}"
        );
    }
    cl.shutdown().await.unwrap();
}

/// How many IMGetDeviceTokenReq db_proxy has handled, from its admin stats.
async fn device_token_lookups(cl: &Cluster) -> u64 {
    use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq};
    let addr = cl.endpoint(ServerId::DbProxy).expect("db_proxy").admin;
    let (c, _ev) = ImClient::connect(&addr.to_string(), cfg()).await.unwrap();
    let auth = c
        .request(&ImAdminAuthReq {
            token: Some(cl.admin_token().to_owned()),
            client_name: Some("e2e".into()),
        })
        .await
        .unwrap();
    assert_eq!(auth.result_code(), AdminResult::AdminOk);
    let stats = c.request(&ImAdminStatsReq {}).await.unwrap();
    c.close();
    stats
        .stats
        .expect("stats")
        .commands
        .iter()
        .find(|s| s.command_id == Some(u32::from(cid::CID_OTHER_GET_DEVICE_TOKEN_REQ)))
        .and_then(|s| s.requests_total)
        .unwrap_or(0)
}

/// The push round asks route_server where the receiver is before db_proxy: a receiver
/// online on a phone at another msg_server costs db_proxy no device-token read, while an
/// offline one still gets its lookup (and so, with a token, its push).
#[tokio::test]
async fn no_device_token_lookup_for_a_receiver_online_on_a_phone_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let cl = cluster(&dir).await;
    let a = login_at(
        cl.msg_server_addr(0).unwrap(),
        "zhangsan",
        ClientType::Android,
    )
    .await;
    let mut b = login_at(cl.msg_server_addr(1).unwrap(), "lisi", ClientType::Android).await;
    let before = device_token_lookups(&cl).await;
    for i in 1..=3u32 {
        let _: ImMsgDataAck =
            a.c.request(&text(a.id, b.id, &format!("m{i}"), false))
                .await
                .unwrap();
        next_msg(&mut b.ev).await;
    }
    // Push rounds run after delivery; give them time to reach db_proxy if they would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(device_token_lookups(&cl).await, before);

    // Once b is gone, a message to it is looked up (eventually: route_server must first
    // hear that b went offline).
    let b_id = b.id;
    b.c.close();
    drop(b);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut n = 0u32;
    loop {
        n += 1;
        let _: ImMsgDataAck =
            a.c.request(&text(a.id, b_id, &format!("offline {n}"), false))
                .await
                .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if device_token_lookups(&cl).await > before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no device-token lookup for an offline receiver"
        );
    }
    cl.shutdown().await.unwrap();
}
