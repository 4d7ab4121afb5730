//! Logins (password checks, throttle, argon2id), push settings and device tokens over a
//! real socket, with every reply's fields, attach_data and seq checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{WAIT, ask, handle_attach, start, start_with};
use im_proto::base::{ClientType, MsgType};
use im_proto::crypto::password_digest;
use im_proto::login::{
    ImDeviceTokenReq, ImDeviceTokenRsp, ImPushShieldReq, ImPushShieldRsp, ImQueryPushShieldReq,
    ImQueryPushShieldRsp,
};
use im_proto::message::ImMsgData;
use im_proto::server::{ImGetDeviceTokenReq, ImGetDeviceTokenRsp, ImValidateReq, ImValidateRsp};
use im_proto::{Pdu, cid};
use im_storage::{Store, UserPatch};

fn validate(name: &str, plain: &str, attach: Bytes) -> ImValidateReq {
    ImValidateReq {
        user_name: name.to_owned(),
        password: password_digest(plain),
        attach_data: Some(attach),
    }
}

#[tokio::test]
async fn validate_checks_the_password_for_real_and_throttles() {
    let s = start().await;
    let alice = s.user("alice", "s3cret").await;
    let carol = s.user("carol", "pw").await;
    s.store()
        .update_user(
            carol,
            UserPatch {
                status: Some(3),
                ..UserPatch::default()
            },
        )
        .await
        .unwrap();
    let (link, mut events) = s.link().await;
    let h = handle_attach(0x00aa_bbcc);

    let ok: ImValidateRsp = ask(&link, &validate("alice", "s3cret", h.clone())).await;
    assert_eq!(ok.result_code, 0);
    assert_eq!(ok.result_string.as_deref(), Some("成功"));
    assert_eq!(ok.user_name, "alice");
    assert_eq!(ok.attach_data.as_ref(), Some(&h));
    let info = ok.user_info.expect("user_info on success");
    assert_eq!(info.user_id, alice);
    assert_eq!(info.user_real_name, "alice");
    assert_eq!(info.user_nick_name, "nick-alice");
    assert_eq!(info.status, 0);

    for (name, pw) in [("alice", "wrong"), ("nobody", "s3cret"), ("carol", "pw")] {
        let r: ImValidateRsp = ask(&link, &validate(name, pw, h.clone())).await;
        assert_eq!(r.result_code, 1, "{name}/{pw} must be refused");
        assert_eq!(r.result_string.as_deref(), Some("用户名/密码错误"));
        assert!(r.user_info.is_none());
        assert_eq!(r.attach_data.as_ref(), Some(&h));
    }

    // More than 10 failures of one name: refused unchecked, even with the right password.
    let bob = s.user("bob", "right").await;
    for i in 0..11 {
        let r: ImValidateRsp = ask(&link, &validate("bob", "wrong", h.clone())).await;
        assert_eq!(r.result_code, 1, "failure #{}", i + 1);
    }
    let r: ImValidateRsp = ask(&link, &validate("bob", "right", h.clone())).await;
    assert_eq!(r.result_code, 6);
    assert_eq!(r.result_string.as_deref(), Some("用户名/密码错误次数太多"));
    // Other names are not affected.
    let r: ImValidateRsp = ask(&link, &validate("alice", "s3cret", h.clone())).await;
    assert_eq!(r.result_code, 0);
    let _ = bob;

    // An unparseable request (no user_name) is answered with result 2, attach echoed.
    let mut body = Vec::new();
    prost::encoding::string::encode(2, &password_digest("x"), &mut body);
    prost::encoding::bytes::encode(20, &h, &mut body);
    let pdu = Pdu::new(
        im_proto::Header::new(im_proto::sid::SID_OTHER, cid::CID_OTHER_VALIDATE_REQ, 99),
        Bytes::from(body),
    );
    link.send_pdu(&pdu).await.unwrap();
    let rsp = events.recv_timeout(WAIT).await.unwrap().unwrap();
    assert_eq!(rsp.seq_num(), 99);
    let rsp = rsp.decode::<ImValidateRsp>().unwrap();
    assert_eq!(rsp.result_code, 2);
    assert_eq!(rsp.result_string.as_deref(), Some("服务端内部错误"));
    assert_eq!(rsp.attach_data.as_ref(), Some(&h));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn argon2id_mode_upgrades_and_still_checks() {
    let s = start_with(|c| {
        c.storage.password_hash = im_storage::config::PasswordHashing::Argon2id;
    })
    .await;
    s.user("alice", "pw1").await;
    let (link, _events) = s.link().await;
    let h = handle_attach(1);
    let r: ImValidateRsp = ask(&link, &validate("alice", "pw1", h.clone())).await;
    assert_eq!(r.result_code, 0);
    let creds = s.store().credentials("alice").await.unwrap().unwrap();
    assert!(
        creds
            .argon2
            .as_deref()
            .is_some_and(|p| p.starts_with("$argon2id$"))
    );
    // Now checked against argon2id.
    let r: ImValidateRsp = ask(&link, &validate("alice", "pw1", h.clone())).await;
    assert_eq!(r.result_code, 0);
    let r: ImValidateRsp = ask(&link, &validate("alice", "pw2", h)).await;
    assert_eq!(r.result_code, 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn push_settings_and_device_tokens() {
    // A clock where it is now about 23:30: night.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut offset = (23 * 3600 + 1800 - now.rem_euclid(86_400)).rem_euclid(86_400);
    if offset > 12 * 3600 {
        offset -= 86_400;
    }
    let minutes = (offset / 60) as i32;
    let s = start_with(|c| c.night_mute_utc_offset_minutes = Some(minutes)).await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let c = s.user("carol", "pw").await;
    let d = s.user("dave", "pw").await;
    let (link, _events) = s.link().await;

    let set = |user, token: &str, ct: ClientType| ImDeviceTokenReq {
        user_id: user,
        device_token: token.into(),
        client_type: Some(ct as i32),
        attach_data: Some(handle_attach(user)),
    };
    for (u, t, ct) in [
        (a, "a".repeat(64), ClientType::Ios),
        (b, "android-token-b".to_owned(), ClientType::Android),
        (c, "c".repeat(64), ClientType::Ios),
    ] {
        let r: ImDeviceTokenRsp = ask(&link, &set(u, &t, ct)).await;
        assert_eq!(r.user_id, u);
        assert_eq!(r.attach_data, Some(handle_attach(u)));
    }
    // c mutes the night.
    let r: ImPushShieldRsp = ask(
        &link,
        &ImPushShieldReq {
            user_id: c,
            shield_status: 1,
            attach_data: Some(handle_attach(7)),
        },
    )
    .await;
    assert_eq!((r.user_id, r.result_code, r.shield_status), (c, 0, Some(1)));
    assert_eq!(r.attach_data, Some(handle_attach(7)));
    let q: ImQueryPushShieldRsp = ask(
        &link,
        &ImQueryPushShieldReq {
            user_id: c,
            attach_data: Some(handle_attach(8)),
        },
    )
    .await;
    assert_eq!((q.result_code, q.shield_status), (0, Some(1)));
    assert_eq!(q.attach_data, Some(handle_attach(8)));
    let q: ImQueryPushShieldRsp = ask(
        &link,
        &ImQueryPushShieldReq {
            user_id: 9999,
            attach_data: None,
        },
    )
    .await;
    assert_eq!(q.result_code, 1);

    // Two unread messages for a make its badge.
    for body in ["1", "2"] {
        let m = ImMsgData {
            from_user_id: b,
            to_session_id: a,
            msg_id: 0,
            create_time: 0,
            msg_type: MsgType::SingleText as i32,
            msg_data: Bytes::from(body),
            attach_data: None,
        };
        assert!(ask::<_, ImMsgData>(&link, &m).await.msg_id > 0);
    }
    let attach = Bytes::from(vec![7u8; 40]);
    let tokens: ImGetDeviceTokenRsp = ask(
        &link,
        &ImGetDeviceTokenReq {
            user_id: vec![a, b, c, d],
            attach_data: Some(attach.clone()),
        },
    )
    .await;
    assert_eq!(tokens.attach_data, Some(attach));
    let mut got: Vec<(u32, i32, u32, u32)> = tokens
        .user_token_info
        .iter()
        .map(|t| (t.user_id, t.user_type, t.push_count, t.push_type))
        .collect();
    got.sort_unstable();
    // c (iOS, night mute on) is left out at night; d has no token.
    assert_eq!(
        got,
        vec![
            (a, ClientType::Ios as i32, 2, 1),
            (b, ClientType::Android as i32, 0, 1)
        ]
    );
    assert_eq!(
        tokens
            .user_token_info
            .iter()
            .find(|t| t.user_id == a)
            .unwrap()
            .token,
        "a".repeat(64)
    );
    s.stop().await.unwrap();
}
