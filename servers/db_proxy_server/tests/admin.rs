//! The admin port's administration commands (users, departments, groups, discovery, tokens)
//! and the two IM.Admin requests answered on the main port, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{TestServer, WAIT, ask, handle_attach, start_with};
use im_proto::admin::*;
use im_proto::base::ClientType;
use im_proto::client::{ClientConfig, ImClient};
use im_proto::crypto::password_digest;
use im_proto::login::{ImDeviceTokenReq, ImDeviceTokenRsp};
use im_proto::server::{ImValidateReq, ImValidateRsp};
use im_proto::{Pdu, Request};
use im_storage::Store;
use im_storage::config::PasswordHashing;

const TOKEN: &str = "a-test-token-of-some-length";

async fn server(hash: PasswordHashing) -> TestServer {
    start_with(|c| {
        c.admin.listen = "127.0.0.1:0".into();
        c.admin.token = TOKEN.into();
        c.storage.password_hash = hash;
    })
    .await
}

async fn admin(s: &TestServer) -> ImClient {
    let (c, _ev) = ImClient::connect(
        s.admin_addr.as_deref().unwrap(),
        ClientConfig {
            request_timeout: WAIT,
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    let auth = c
        .request(&ImAdminAuthReq {
            token: Some(TOKEN.into()),
            client_name: Some("db_proxy tests".into()),
        })
        .await
        .unwrap();
    assert_eq!(auth.result_code(), AdminResult::AdminOk);
    c
}

async fn call<M: Request>(c: &ImClient, m: &M) -> M::Response {
    c.request(m).await.unwrap()
}

async fn password_ok(s: &TestServer, name: &str, plain: &str) -> bool {
    let (link, _ev) = s.link().await;
    let r: ImValidateRsp = ask(
        &link,
        &ImValidateReq {
            user_name: name.into(),
            password: password_digest(plain),
            attach_data: Some(handle_attach(1)),
        },
    )
    .await;
    r.result_code == 0
}

fn spec(name: &str) -> NewUserSpec {
    NewUserSpec {
        name: Some(name.into()),
        password: Some("pw-1".into()),
        nick: Some(format!("Nick {name}")),
        depart_id: Some(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn users_are_added_listed_edited_and_disabled() {
    let s = server(PasswordHashing::Legacy).await;
    let existing = s.user("taken", "pw").await;
    let a = admin(&s).await;

    // Bulk add: one bad row (a taken name, an empty password) does not stop the others.
    let bad_pw = NewUserSpec {
        password: None,
        ..spec("nopw")
    };
    let rsp = call(
        &a,
        &ImAdminUserAddReq {
            users: vec![spec("amy"), spec("taken"), bad_pw, spec("ben")],
        },
    )
    .await;
    assert_eq!(rsp.result_code(), AdminResult::AdminFailed);
    assert_eq!(rsp.user_ids.len(), 4);
    assert!(rsp.user_ids[0] > existing && rsp.user_ids[3] > rsp.user_ids[0]);
    assert_eq!((rsp.user_ids[1], rsp.user_ids[2]), (0, 0));
    assert!(rsp.errors[1].contains("taken"), "{:?}", rsp.errors);
    assert!(rsp.errors[2].contains("password"), "{:?}", rsp.errors);
    assert!(rsp.errors[0].is_empty() && rsp.errors[3].is_empty());
    let (amy, ben) = (rsp.user_ids[0], rsp.user_ids[3]);
    assert!(password_ok(&s, "amy", "pw-1").await);

    // Pages by id, and the name filter.
    let page = call(
        &a,
        &ImAdminUserListReq {
            after_user_id: Some(0),
            limit: Some(2),
            name: None,
        },
    )
    .await;
    assert_eq!(page.result_code(), AdminResult::AdminOk);
    let ids: Vec<u32> = page.users.iter().map(|u| u.user_id()).collect();
    assert_eq!(ids, vec![existing, amy]);
    assert_eq!(page.next_after_user_id(), amy);
    let rest = call(
        &a,
        &ImAdminUserListReq {
            after_user_id: Some(amy),
            limit: Some(2),
            name: None,
        },
    )
    .await;
    assert_eq!(rest.users.len(), 1);
    assert_eq!(rest.next_after_user_id(), 0, "last page");
    let by_name = call(
        &a,
        &ImAdminUserListReq {
            name: Some("ben".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_name.users.len(), 1);
    let b = &by_name.users[0];
    assert_eq!((b.user_id(), b.nick(), b.depart_id()), (ben, "Nick ben", 1));
    let nobody = call(
        &a,
        &ImAdminUserListReq {
            name: Some("nobody".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(nobody.users.is_empty());

    // Edit: a new password (hashed with the existing salt), a nick; `updated` moves on.
    let before = s.store().users_by_ids(&[amy]).await.unwrap()[0].clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let e = call(
        &a,
        &ImAdminUserEditReq {
            user_id: Some(amy),
            nick: Some("Amy A.".into()),
            password: Some("new-pw".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(e.result_code(), AdminResult::AdminOk, "{e:?}");
    let after = s.store().users_by_ids(&[amy]).await.unwrap()[0].clone();
    assert_eq!(after.nick, "Amy A.");
    assert!(after.updated > before.updated);
    assert!(password_ok(&s, "amy", "new-pw").await);
    assert!(!password_ok(&s, "amy", "pw-1").await);

    // Disable: status 3, and the password no longer logs in.
    let d = call(
        &a,
        &ImAdminUserEditReq {
            user_id: Some(amy),
            status: Some(3),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(d.result_code(), AdminResult::AdminOk);
    assert!(!password_ok(&s, "amy", "new-pw").await);

    // Refusals name the problem.
    let missing = call(
        &a,
        &ImAdminUserEditReq {
            user_id: Some(99_999),
            nick: Some("x".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(missing.result_code(), AdminResult::AdminNotFound);
    let bad = call(
        &a,
        &ImAdminUserEditReq {
            user_id: Some(ben),
            status: Some(7),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bad.result_code(), AdminResult::AdminBadRequest);
    assert!(bad.result_string().contains("status 7"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_new_password_replaces_the_argon2id_hash() {
    let s = server(PasswordHashing::Argon2id).await;
    let u = s.user("zed", "old").await;
    // The first login upgrades the row to argon2id.
    assert!(password_ok(&s, "zed", "old").await);
    let a = admin(&s).await;
    let e = call(
        &a,
        &ImAdminUserEditReq {
            user_id: Some(u),
            password: Some("fresh".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(e.result_code(), AdminResult::AdminOk, "{e:?}");
    assert!(password_ok(&s, "zed", "fresh").await);
    assert!(!password_ok(&s, "zed", "old").await);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn departments_and_groups() {
    let s = server(PasswordHashing::Legacy).await;
    let (u1, u2, u3) = (
        s.user("u1", "pw").await,
        s.user("u2", "pw").await,
        s.user("u3", "pw").await,
    );
    let a = admin(&s).await;

    let top = call(
        &a,
        &ImAdminDeptAddReq {
            name: Some("HQ".into()),
            parent_id: Some(0),
            priority: Some(1),
        },
    )
    .await;
    assert_eq!(top.result_code(), AdminResult::AdminOk);
    let sub = call(
        &a,
        &ImAdminDeptAddReq {
            name: Some("R&D".into()),
            parent_id: top.dept_id,
            priority: Some(2),
        },
    )
    .await;
    let depts = call(&a, &ImAdminDeptListReq {}).await;
    let got: Vec<(u32, &str, u32)> = depts
        .depts
        .iter()
        .map(|d| (d.dept_id(), d.name(), d.parent_id()))
        .collect();
    assert_eq!(
        got,
        vec![
            (top.dept_id(), "HQ", 0),
            (sub.dept_id(), "R&D", top.dept_id())
        ]
    );
    let empty = call(
        &a,
        &ImAdminDeptAddReq {
            name: Some(String::new()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(empty.result_code(), AdminResult::AdminBadRequest);

    // A normal group by default, creator 0.
    let g = call(
        &a,
        &ImAdminGroupCreateReq {
            name: Some("all".into()),
            member_ids: vec![u1, u2],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(g.result_code(), AdminResult::AdminOk, "{g:?}");
    let gid = g.group_id();
    let list = call(&a, &ImAdminGroupListReq::default()).await;
    assert_eq!(list.groups.len(), 1);
    let info = &list.groups[0];
    assert_eq!(
        (
            info.name(),
            info.group_type(),
            info.creator(),
            info.version()
        ),
        ("all", 1, 0, 1)
    );
    assert_eq!(info.member_ids, vec![u1, u2]);

    let add = call(
        &a,
        &ImAdminGroupMembersReq {
            group_id: Some(gid),
            change_type: Some(1),
            user_ids: vec![u3, u1],
        },
    )
    .await;
    assert_eq!(add.result_code(), AdminResult::AdminOk, "{add:?}");
    let mut cur = add.cur_user_ids.clone();
    cur.sort_unstable();
    assert_eq!(cur, vec![u1, u2, u3]);
    assert_eq!(add.chg_user_ids, vec![u3]);
    assert_eq!(add.version(), 2);
    let again = call(
        &a,
        &ImAdminGroupMembersReq {
            group_id: Some(gid),
            change_type: Some(1),
            user_ids: vec![u3],
        },
    )
    .await;
    assert_eq!(again.result_code(), AdminResult::AdminFailed);
    let rm = call(
        &a,
        &ImAdminGroupMembersReq {
            group_id: Some(gid),
            change_type: Some(2),
            user_ids: vec![u1],
        },
    )
    .await;
    assert_eq!(rm.result_code(), AdminResult::AdminOk);
    assert_eq!(rm.chg_user_ids, vec![u1]);
    assert!(!rm.cur_user_ids.contains(&u1));
    let unknown = call(
        &a,
        &ImAdminGroupMembersReq {
            group_id: Some(4242),
            change_type: Some(1),
            user_ids: vec![u1],
        },
    )
    .await;
    assert_eq!(unknown.result_code(), AdminResult::AdminNotFound);
    let bad_type = call(
        &a,
        &ImAdminGroupCreateReq {
            name: Some("x".into()),
            group_type: Some(5),
            member_ids: vec![u1],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bad_type.result_code(), AdminResult::AdminBadRequest);
    assert!(bad_type.result_string().contains("group_type 5"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn discovery_and_tokens_on_both_ports() {
    let s = server(PasswordHashing::Legacy).await;
    let u = s.user("tok", "pw").await;
    let a = admin(&s).await;

    let add = call(
        &a,
        &ImAdminDiscoveryAddReq {
            name: Some("wiki".into()),
            url: Some("http://wiki.example/".into()),
            priority: Some(2),
        },
    )
    .await;
    assert_eq!(add.result_code(), AdminResult::AdminOk);
    let list = call(&a, &ImAdminDiscoveryListReq {}).await;
    assert!(
        list.items
            .iter()
            .any(|d| d.id() == add.id() && d.url() == "http://wiki.example/")
    );

    // The main port answers the same read, with the request's seq (a push_server or
    // http_msg_server link, not authenticated as admin).
    let (link, _ev) = s.link().await;
    let pdu = link
        .request_pdu(
            Pdu::from_msg(&ImAdminDiscoveryListReq {}, 0),
            im_proto::cid::CID_ADMIN_DISCOVERY_LIST_RSP,
            WAIT,
        )
        .await
        .unwrap();
    let on_link = pdu.decode::<ImAdminDiscoveryListRsp>().unwrap();
    assert_eq!(on_link, list);

    let rm = call(&a, &ImAdminDiscoveryRemoveReq { id: add.id }).await;
    assert_eq!(rm.result_code(), AdminResult::AdminOk);
    let list = call(&a, &ImAdminDiscoveryListReq {}).await;
    assert!(list.items.iter().all(|d| d.id() != add.id()));
    let rm = call(&a, &ImAdminDiscoveryRemoveReq { id: Some(99_999) }).await;
    assert_eq!(rm.result_code(), AdminResult::AdminNotFound);

    // Compare-and-delete of a device token, on the main port.
    let r: ImDeviceTokenRsp = ask(
        &link,
        &ImDeviceTokenReq {
            user_id: u,
            device_token: "t".repeat(64),
            client_type: Some(ClientType::Ios as i32),
            attach_data: Some(Bytes::from_static(b"x")),
        },
    )
    .await;
    assert_eq!(r.user_id, u);
    let stale: ImAdminRemoveTokenRsp = link
        .request(&ImAdminRemoveTokenReq {
            user_id: Some(u),
            token: Some("an older token".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        (stale.result_code(), stale.removed()),
        (AdminResult::AdminOk, false)
    );
    assert_eq!(s.store().device_tokens(&[u]).await.unwrap().len(), 1);
    let dead: ImAdminRemoveTokenRsp = link
        .request(&ImAdminRemoveTokenReq {
            user_id: Some(u),
            token: Some("t".repeat(64)),
        })
        .await
        .unwrap();
    assert!(dead.removed());
    assert!(
        s.store()
            .device_tokens(&[u])
            .await
            .unwrap()
            .iter()
            .all(|t| t.token.is_empty())
    );
    // And on the admin port, a missing token is a bad request.
    let bad = call(
        &a,
        &ImAdminRemoveTokenReq {
            user_id: Some(u),
            token: None,
        },
    )
    .await;
    assert_eq!(bad.result_code(), AdminResult::AdminBadRequest);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_wrong_admin_token_is_refused() {
    let s = server(PasswordHashing::Legacy).await;
    let (c, _ev) = ImClient::connect(s.admin_addr.as_deref().unwrap(), ClientConfig::default())
        .await
        .unwrap();
    let auth = c
        .request(&ImAdminAuthReq {
            token: Some("not-the-token".into()),
            client_name: None,
        })
        .await
        .unwrap();
    assert_eq!(auth.result_code(), AdminResult::AdminAuthFailed);
    tokio::time::timeout(WAIT, c.closed()).await.unwrap();
    s.stop().await.unwrap();
}
