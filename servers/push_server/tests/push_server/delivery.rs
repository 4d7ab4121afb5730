//! Deliveries at the fake APNs, FCM and webhook: exactly one request per token with the
//! right token, headers, credentials and payload.

use axum::http::Version;
use im_proto::base::ClientType;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use crate::fakes::{FakeHttp, Recorded};
use crate::harness::*;

const DATA: &str = r#"{"msg_type":1,"from_id":7}"#;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Checks the APNs provider JWT: ES256, kid, iss, a fresh iat, signed by the test key.
fn check_apns_jwt(r: &Recorded) {
    let auth = r.header("authorization");
    let jwt = auth.strip_prefix("bearer ").expect("bearer scheme");
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    let pem = std::fs::read(key_file("apns-test-key.pub.pem")).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &DecodingKey::from_ec_pem(&pem).unwrap(),
        &v,
    )
    .expect("signature verifies with the test key's public half");
    assert_eq!(claims.claims["iss"], TEAM_ID);
    let iat = claims.claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(unix_now()) < 60, "iat {iat}");
}

/// Checks an FCM token request: the JWT-bearer grant with an RS256 assertion signed by the
/// service account's key.
fn check_fcm_grant(r: &Recorded, token_uri: &str) {
    assert_eq!(
        r.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    let assertion = body
        .strip_prefix("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=")
        .expect("JWT-bearer grant");
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some("sa-key-1"));
    let pem = std::fs::read(key_file("fcm-test-key.pub.pem")).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[token_uri]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        assertion,
        &DecodingKey::from_rsa_pem(&pem).unwrap(),
        &v,
    )
    .expect("assertion verifies with the service account's public key");
    let c = claims.claims;
    assert_eq!(c["iss"], SA_EMAIL);
    assert_eq!(
        c["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );
}

#[tokio::test]
async fn ios_and_android_tokens_each_get_exactly_one_request() {
    let (apns, fcm, hook) = (
        FakeHttp::start().await,
        FakeHttp::start().await,
        FakeHttp::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&apns.url, &fcm.url, &hook.url, dir.path());
    cfg.webhook.bearer_token = push_server::config::Secret("hook-secret".into());
    let ps = Ps::start(cfg).await;
    let (link, _ev) = ps.link().await;
    let ios = ios_token("ab");
    let codes = push(
        &link,
        "Ann:hello",
        DATA,
        vec![
            target(5, ClientType::Ios, &ios, 3, 1),
            target(6, ClientType::Android, "fcm-token-6", 4, 1),
        ],
    )
    .await;
    assert_eq!(codes, vec![0, 0]);
    wait_until("both deliveries", || async {
        apns.requests().len() == 1 && fcm.requests().len() == 1
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(apns.requests().len(), 1, "exactly one APNs request");
    assert_eq!(fcm.requests().len(), 1, "exactly one FCM request");
    assert!(hook.requests().is_empty());

    let a = &apns.requests()[0];
    assert_eq!(a.version, Version::HTTP_2);
    assert_eq!(a.path, format!("/3/device/{ios}"));
    assert_eq!(a.header("apns-topic"), TOPIC);
    assert_eq!(a.header("apns-push-type"), "alert");
    assert_eq!(a.header("apns-priority"), "10");
    let exp: u64 = a.header("apns-expiration").parse().unwrap();
    assert!(exp.abs_diff(unix_now() + 3600) < 60, "expiration {exp}");
    check_apns_jwt(a);
    assert_eq!(
        a.json(),
        json!({"aps": {"alert": {"body": "Ann:hello"}, "badge": 3, "sound": "bingbong.aiff"},
               "custom": DATA})
    );

    let grants = fcm.token_requests();
    assert_eq!(grants.len(), 1);
    check_fcm_grant(&grants[0], &format!("{}/token", fcm.url));
    let f = &fcm.requests()[0];
    assert_eq!(f.path, format!("/v1/projects/{PROJECT}/messages:send"));
    assert_eq!(f.header("authorization"), "Bearer access-1");
    assert_eq!(
        f.json(),
        json!({"message": {"token": "fcm-token-6", "notification": {"body": "Ann:hello"},
               "data": {"custom": DATA, "badge": "4"}, "android": {"priority": "high"}}})
    );

    // Silent pushes (the user has a PC client online): badge only; the access token and
    // the provider JWT are reused.
    let codes = push(
        &link,
        "Ann:again",
        DATA,
        vec![
            target(5, ClientType::Ios, &ios, 4, 2),
            target(6, ClientType::Android, "fcm-token-6", 5, 2),
        ],
    )
    .await;
    assert_eq!(codes, vec![0, 0]);
    wait_until("the silent deliveries", || async {
        apns.requests().len() == 2 && fcm.requests().len() == 2
    })
    .await;
    let a2 = &apns.requests()[1];
    assert_eq!(
        String::from_utf8(a2.body.to_vec()).unwrap(),
        r#"{"aps":{"badge":4},"custom":"{\"msg_type\":1,\"from_id\":7}"}"#,
        "the original's silent payload"
    );
    assert_eq!(a2.header("apns-priority"), "5");
    assert_eq!(a2.header("authorization"), a.header("authorization"));
    let f2 = fcm.requests()[1].json();
    assert!(f2["message"].get("notification").is_none());
    assert_eq!(f2["message"]["data"]["badge"], "5");
    assert_eq!(f2["message"]["android"]["priority"], "normal");
    assert_eq!(fcm.token_requests().len(), 1, "access token cached");

    // Any other client type goes to the webhook.
    let codes = push(
        &link,
        "Ann:pc",
        DATA,
        vec![target(8, ClientType::Windows, "pc-handle-8", 1, 1)],
    )
    .await;
    assert_eq!(codes, vec![0]);
    wait_until("the webhook", || async { hook.requests().len() == 1 }).await;
    let h = &hook.requests()[0];
    assert_eq!(h.path, "/push");
    assert_eq!(h.header("authorization"), "Bearer hook-secret");
    assert_eq!(
        h.json(),
        json!({"user_id": 8, "client_type": 1, "token": "pc-handle-8", "alert": "Ann:pc",
               "badge": 1, "silent": false, "data": DATA})
    );
    assert_eq!(ps.metric("pushes_sent_total{provider=\"apns\"}").await, 2.0);
    assert_eq!(ps.metric("pushes_sent_total{provider=\"fcm\"}").await, 2.0);
    assert_eq!(
        ps.metric("pushes_sent_total{provider=\"webhook\"}").await,
        1.0
    );
    assert_eq!(ps.metric("pushes_accepted_total").await, 5.0);
    ps.stop().await;
}

#[tokio::test]
async fn alert_texts_are_cut_on_characters_or_hidden() {
    let (apns, fcm, hook) = (
        FakeHttp::start().await,
        FakeHttp::start().await,
        FakeHttp::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&apns.url, &fcm.url, &hook.url, dir.path());
    cfg.alert_max_bytes = 20;
    let ps = Ps::start(cfg).await;
    let (link, _ev) = ps.link().await;
    let ios = ios_token("cd");
    // 4 + 3 * 7 = 25 bytes: cut to at most 20 with "...", never inside a character.
    push(
        &link,
        "Ann:一二三四五六七",
        DATA,
        vec![target(5, ClientType::Ios, &ios, 1, 1)],
    )
    .await;
    // An original msg_server cuts at 37 bytes and may split a character, which is not a
    // valid proto string: the broken tail is dropped instead of refusing the push.
    let mut body = prost::Message::encode_to_vec(&im_proto::server::ImPushToUserReq {
        flash: "Ann:AB".into(),
        data: DATA.into(),
        user_token_list: vec![target(5, ClientType::Ios, &ios, 2, 1)],
    });
    let at = body.windows(2).position(|w| w == b"AB").unwrap();
    body[at..at + 2].copy_from_slice(&[0xe4, 0xbd]);
    let pdu = im_proto::Pdu::new(
        im_proto::Header::new(
            im_proto::sid::SID_OTHER,
            im_proto::cid::CID_OTHER_PUSH_TO_USER_REQ,
            0,
        ),
        body.into(),
    );
    let rsp = link
        .request_pdu(pdu, im_proto::cid::CID_OTHER_PUSH_TO_USER_RSP, WAIT)
        .await
        .unwrap()
        .decode::<im_proto::server::ImPushToUserRsp>()
        .unwrap();
    assert_eq!(rsp.push_result_list[0].result_code, 0);
    wait_until("two deliveries", || async { apns.requests().len() == 2 }).await;
    let mut bodies: Vec<String> = apns
        .requests()
        .iter()
        .map(|r| {
            r.json()["aps"]["alert"]["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec!["Ann:", "Ann:一二三四..."]);
    ps.stop().await;

    // hide_message_text: the text never leaves.
    let (apns, fcm) = (FakeHttp::start().await, FakeHttp::start().await);
    let mut cfg = config(&apns.url, &fcm.url, &hook.url, dir.path());
    cfg.hide_message_text = true;
    let ps = Ps::start(cfg).await;
    let (link, _ev) = ps.link().await;
    push(
        &link,
        "Ann:the secret plan",
        DATA,
        vec![
            target(5, ClientType::Ios, &ios, 1, 1),
            target(6, ClientType::Android, "fcm-6", 1, 1),
        ],
    )
    .await;
    wait_until("both deliveries", || async {
        apns.requests().len() == 1 && fcm.requests().len() == 1
    })
    .await;
    assert_eq!(
        apns.requests()[0].json()["aps"]["alert"]["body"],
        "您收到了一条新消息"
    );
    assert_eq!(
        fcm.requests()[0].json()["message"]["notification"]["body"],
        "您收到了一条新消息"
    );
    for r in apns.requests().iter().chain(fcm.requests().iter()) {
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("secret"), "{text}");
    }
    ps.stop().await;
}
