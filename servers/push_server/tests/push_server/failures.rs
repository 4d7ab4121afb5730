//! What goes wrong: dead tokens, provider errors and retries, a full queue, refused tokens,
//! and commands push_server does not take.

use std::time::Duration;

use im_proto::base::ClientType;
use im_proto::buddy::ImUsersStatReq;
use im_proto::{Header, Pdu, cid, sid};
use tokio::net::TcpListener;

use crate::fakes::{FakeDbProxy, FakeHttp};
use crate::harness::*;

const DATA: &str = r#"{"msg_type":1,"from_id":7}"#;
const UNREGISTERED: &str = r#"{"error":{"code":404,"message":"Requested entity was not found.",
    "status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError",
    "errorCode":"UNREGISTERED"}]}}"#;

#[tokio::test]
async fn dead_tokens_are_removed_but_never_a_newer_one() {
    let (apns, fcm, hook) = (
        FakeHttp::start().await,
        FakeHttp::start().await,
        FakeHttp::start().await,
    );
    let (old1, old2, new2) = (ios_token("a1"), ios_token("b2"), ios_token("c3"));
    // User 2 registered a new token after msg_server looked up the old one.
    let db = FakeDbProxy::start(&[(1, &old1), (2, &new2), (3, "fcm-3")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&apns.url, &fcm.url, &hook.url, dir.path());
    cfg.db_proxy.addresses = vec![db.addr.clone()];
    let ps = Ps::start(cfg).await;
    let (link, _ev) = ps.link().await;
    apns.answer(
        410,
        r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
    );
    apns.answer(
        410,
        r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
    );
    fcm.answer(404, UNREGISTERED);
    let codes = push(
        &link,
        "Ann:hi",
        DATA,
        vec![
            target(1, ClientType::Ios, &old1, 1, 1),
            target(2, ClientType::Ios, &old2, 1, 1),
            target(3, ClientType::Android, "fcm-3", 1, 1),
        ],
    )
    .await;
    assert_eq!(codes, vec![0, 0, 0], "accepted: the verdict comes later");
    wait_until("three removal requests", || async { db.asked().len() == 3 }).await;
    tokio::time::sleep(QUIET).await;
    let mut asked: Vec<(u32, String)> = db
        .asked()
        .into_iter()
        .map(|r| (r.user_id.unwrap(), r.token.unwrap()))
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        vec![
            (1, old1.clone()),
            (2, old2.clone()),
            (3, "fcm-3".to_owned())
        ]
    );
    assert_eq!(db.token(1), None, "dead token removed");
    assert_eq!(db.token(2), Some(new2), "the newer token is kept");
    assert_eq!(db.token(3), None);
    assert_eq!(apns.requests().len(), 2, "dead tokens are not retried");
    assert_eq!(ps.metric("dead_tokens_removed_total").await, 2.0);
    assert_eq!(ps.metric("dead_tokens_kept_total").await, 1.0);
    assert_eq!(ps.metric("dead_tokens_total{provider=\"apns\"}").await, 2.0);
    assert_eq!(ps.metric("dead_tokens_total{provider=\"fcm\"}").await, 1.0);

    // 400 BadDeviceToken also removes; a token handled a moment ago is not asked about
    // again when another queued push to it comes back dead.
    let tok4 = ios_token("d4");
    db.set_token(4, &tok4);
    apns.answer(400, r#"{"reason":"BadDeviceToken"}"#);
    apns.answer(410, r#"{"reason":"Unregistered"}"#);
    push(
        &link,
        "Ann:hi",
        DATA,
        vec![target(4, ClientType::Ios, &tok4, 1, 1)],
    )
    .await;
    wait_until("the fourth removal", || async { db.asked().len() == 4 }).await;
    assert_eq!(db.token(4), None);
    push(
        &link,
        "Ann:hi",
        DATA,
        vec![target(4, ClientType::Ios, &tok4, 1, 1)],
    )
    .await;
    wait_until("the fourth APNs request", || async {
        apns.requests().len() == 4
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(db.asked().len(), 4);
    assert_eq!(ps.metric("dead_tokens_total{provider=\"apns\"}").await, 4.0);
    ps.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let (apns, fcm, hook) = (
        FakeHttp::start().await,
        FakeHttp::start().await,
        FakeHttp::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let ps = Ps::start(config(&apns.url, &fcm.url, &hook.url, dir.path())).await;
    let (link, _ev) = ps.link().await;
    let ios = ios_token("ee");
    // 500 then 503 then 200: three attempts (the configured maximum), one delivery.
    apns.answer(500, r#"{"reason":"InternalServerError"}"#);
    apns.answer(503, r#"{"reason":"ServiceUnavailable"}"#);
    push(
        &link,
        "Ann:1",
        DATA,
        vec![target(5, ClientType::Ios, &ios, 1, 1)],
    )
    .await;
    wait_until("the delivery", || async {
        ps.metric("pushes_sent_total{provider=\"apns\"}").await == 1.0
    })
    .await;
    let reqs = apns.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.path == format!("/3/device/{ios}")));
    assert!(reqs.iter().all(|r| r.body == reqs[0].body), "same payload");
    assert_eq!(
        ps.metric("pushes_retried_total{provider=\"apns\"}").await,
        2.0
    );

    // A 4xx that is not about the token is final: one request, counted as failed.
    apns.answer(400, r#"{"reason":"BadTopic"}"#);
    push(
        &link,
        "Ann:2",
        DATA,
        vec![target(5, ClientType::Ios, &ios, 1, 1)],
    )
    .await;
    wait_until("the failure", || async {
        ps.metric("pushes_failed_total{provider=\"apns\"}").await == 1.0
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(apns.requests().len(), 4);

    // Attempts exhausted: three 500s, then given up.
    for _ in 0..3 {
        apns.answer(500, "");
    }
    push(
        &link,
        "Ann:3",
        DATA,
        vec![target(5, ClientType::Ios, &ios, 1, 1)],
    )
    .await;
    wait_until("giving up", || async {
        ps.metric("pushes_failed_total{provider=\"apns\"}").await == 2.0
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(apns.requests().len(), 7);

    // FCM: 429 is retried; a 401 fetches a new access token first.
    fcm.answer(429, r#"{"error":{"status":"RESOURCE_EXHAUSTED"}}"#);
    fcm.answer(401, r#"{"error":{"status":"UNAUTHENTICATED"}}"#);
    push(
        &link,
        "Ann:4",
        DATA,
        vec![target(6, ClientType::Android, "fcm-6", 1, 1)],
    )
    .await;
    wait_until("the FCM delivery", || async {
        ps.metric("pushes_sent_total{provider=\"fcm\"}").await == 1.0
    })
    .await;
    let auth: Vec<String> = fcm
        .requests()
        .iter()
        .map(|r| r.header("authorization"))
        .collect();
    assert_eq!(
        auth,
        vec!["Bearer access-1", "Bearer access-1", "Bearer access-2"]
    );
    ps.stop().await;
}

/// A port that accepts connections and never answers: a provider that hangs.
async fn black_hole() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    url
}

#[tokio::test]
async fn a_full_queue_and_unusable_tokens_answer_result_1() {
    let (fcm, hook) = (FakeHttp::start().await, FakeHttp::start().await);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&black_hole().await, &fcm.url, &hook.url, dir.path());
    cfg.queue_capacity = 1;
    cfg.workers = 1;
    cfg.request_timeout_ms = 30_000;
    cfg.shutdown_grace_ms = 100;
    cfg.fcm.enabled = false;
    let ps = Ps::start(cfg).await;
    let (link, _ev) = ps.link().await;
    // The only worker takes the first push and hangs on it.
    let codes = push(
        &link,
        "Ann:x",
        DATA,
        vec![target(5, ClientType::Ios, &ios_token("01"), 1, 1)],
    )
    .await;
    assert_eq!(codes, vec![0]);
    wait_until("the worker to be busy", || async {
        ps.metric("pushes_in_flight").await == 1.0
    })
    .await;
    // One more fits in the queue; the rest are refused.
    let targets: Vec<_> = ["02", "03", "04"]
        .iter()
        .map(|b| target(5, ClientType::Ios, &ios_token(b), 1, 1))
        .collect();
    let codes = push(&link, "Ann:x", DATA, targets).await;
    assert_eq!(codes, vec![0, 1, 1]);
    assert_eq!(
        ps.metric("pushes_refused_total{reason=\"queue_full\"}")
            .await,
        2.0
    );
    assert_eq!(ps.stats().await.outbound_queue_depth, Some(1));
    assert_eq!(ps.metric("queue_depth").await, 1.0);

    // Tokens no enabled provider serves (FCM is off), and tokens of the wrong shape.
    let codes = push(
        &link,
        "Ann:y",
        DATA,
        vec![
            target(6, ClientType::Android, "fcm-6", 1, 1),
            target(7, ClientType::Ios, "not-hex", 1, 1),
            target(7, ClientType::Ios, &"ab".repeat(31), 1, 1),
        ],
    )
    .await;
    assert_eq!(codes, vec![1, 1, 1]);
    assert_eq!(
        ps.metric("pushes_refused_total{reason=\"no_provider\"}")
            .await,
        1.0
    );
    assert_eq!(
        ps.metric("pushes_refused_total{reason=\"invalid_token\"}")
            .await,
        2.0
    );
    ps.stop().await;
}

#[tokio::test]
async fn any_other_command_closes_the_link() {
    let (apns, fcm, hook) = (
        FakeHttp::start().await,
        FakeHttp::start().await,
        FakeHttp::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let ps = Ps::start(config(&apns.url, &fcm.url, &hook.url, dir.path())).await;
    let (link, _ev) = ps.link().await;
    // Heartbeats are echoed.
    link.heartbeat().await.expect("heartbeat echoed");
    // A push request whose body lacks required fields is dropped; the link stays.
    let empty = Pdu::new(
        Header::new(sid::SID_OTHER, cid::CID_OTHER_PUSH_TO_USER_REQ, 9),
        bytes::Bytes::new(),
    );
    link.send_pdu(&empty).await.unwrap();
    link.heartbeat().await.expect("link kept after a bad body");
    assert_eq!(ps.metric("bad_bodies_total").await, 1.0);
    assert_eq!(ps.stats().await.connections[0].count, Some(1));
    // Anything else closes it (PROTOCOL.md 4.8).
    link.send(&ImUsersStatReq {
        user_id: 1,
        user_id_list: vec![2],
        attach_data: None,
    })
    .await
    .unwrap();
    tokio::time::timeout(WAIT, link.closed())
        .await
        .expect("push_server closes the link");
    assert_eq!(ps.metric("unknown_command_closes_total").await, 1.0);
    // Other links are not affected.
    let (other, _ev) = ps.link().await;
    let codes = push(
        &other,
        "Ann:z",
        DATA,
        vec![target(5, ClientType::Ios, &ios_token("0f"), 1, 1)],
    )
    .await;
    assert_eq!(codes, vec![0]);
    wait_until("the delivery", || async { apns.requests().len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ps.stop().await;
}
