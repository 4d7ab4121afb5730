//! Notifies across msg_servers, route_server failover, login_server registration, shutdown.

use std::time::Duration;

use im_proto::admin::{ImAdminAuthReq, ImAdminMsgServerListReq};
use im_proto::base::{ClientType, MsgType, SessionType};
use im_proto::buddy::{
    ImChangeSignInfoReq, ImRemoveSessionNotify, ImRemoveSessionReq, ImSignInfoChangedNotify,
    ImpcLoginStatusNotify,
};
use im_proto::cid;
use im_proto::client::{ClientError, ImClient, fetch_msg_server};
use im_proto::group::{ImGroupChangeMemberNotify, ImGroupChangeMemberReq};
use im_proto::login::ImLogoutReq;
use tokio::net::TcpListener;

use crate::fake_db::FakeDb;
use crate::harness::*;

async fn pair(db: &FakeDb, routes: &[&str]) -> (Ms, Ms) {
    let ms1 = Ms::start(config(&db.addr, routes)).await;
    let ms2 = Ms::start(config(&db.addr, routes)).await;
    ms1.wait_links("route_server", routes.len()).await;
    ms2.wait_links("route_server", routes.len()).await;
    (ms1, ms2)
}

#[tokio::test]
async fn member_changes_are_notified_and_refresh_the_member_cache() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &[&route.addr]).await;
    let mut alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms1.addr, "bob", ClientType::Windows).await;
    let mut carol = login(&ms2.addr, "carol", ClientType::Windows).await;
    let mut dave = login(&ms2.addr, "dave", ClientType::Windows).await;
    alice.send(&msg(1, 100, MsgType::GroupText, "before")).await;
    for c in [&mut bob, &mut carol] {
        check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
    }
    dave.nothing_of(cid::CID_MSG_DATA).await;

    let rsp = alice
        .c
        .request(&ImGroupChangeMemberReq {
            user_id: 0,
            change_type: 1,
            group_id: 100,
            member_id_list: vec![4],
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, 0);
    assert_eq!(rsp.attach_data, None);
    for c in [&mut bob, &mut carol, &mut dave] {
        let n = c.next::<ImGroupChangeMemberNotify>().await;
        assert_eq!((n.group_id, n.chg_user_id_list.clone()), (100, vec![4]));
        assert_eq!(n.cur_user_id_list, vec![1, 2, 3, 4]);
    }
    alice.nothing_of(cid::CID_GROUP_CHANGE_MEMBER_NOTIFY).await;

    alice
        .send(&msg(1, 100, MsgType::GroupText, "welcome"))
        .await;
    for c in [&mut bob, &mut carol, &mut dave] {
        let m = check_delivery(&c.next_pdu(cid::CID_MSG_DATA).await);
        assert_eq!(m.msg_id, 2);
    }
    assert_eq!(ms2.metric("group_fetches_total").await, 2.0);
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn signature_and_session_removal_reach_the_right_connections_once() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &[&route.addr]).await;
    let mut alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut alice_phone = login(&ms2.addr, "alice", ClientType::Android).await;
    let mut bob = login(&ms2.addr, "bob", ClientType::Ios).await;
    // The session-removal notify is targeted: route_server must know alice's phone.
    probe(&alice, &mut alice_phone).await;

    let rsp = alice
        .c
        .request(&ImChangeSignInfoReq {
            user_id: 0,
            sign_info: "busy".to_owned(),
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!((rsp.user_id, rsp.result_code), (1, 0));
    for c in [&mut alice, &mut alice_phone, &mut bob] {
        let n = c.next::<ImSignInfoChangedNotify>().await;
        assert_eq!((n.changed_user_id, n.sign_info.as_str()), (1, "busy"));
        c.nothing_of(cid::CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY)
            .await;
    }

    let rsp = alice
        .c
        .request(&ImRemoveSessionReq {
            user_id: 0,
            session_type: SessionType::Single as i32,
            session_id: 2,
            attach_data: None,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, 0);
    let n = alice_phone.next::<ImRemoveSessionNotify>().await;
    assert_eq!((n.user_id, n.session_type, n.session_id), (1, 1, 2));
    alice
        .nothing_of(cid::CID_BUDDY_LIST_REMOVE_SESSION_NOTIFY)
        .await;
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn mobile_clients_learn_when_the_pc_client_comes_and_goes() {
    let db = FakeDb::start().await;
    let route = Route::start().await;
    let (ms1, ms2) = pair(&db, &[&route.addr]).await;
    let mut phone = login(&ms2.addr, "bob", ClientType::Android).await;
    let pc = login(&ms1.addr, "bob", ClientType::Windows).await;
    let n = phone.next::<ImpcLoginStatusNotify>().await;
    assert_eq!((n.user_id, n.login_stat), (2, 1));
    pc.c.request(&ImLogoutReq {}).await.unwrap();
    let n = phone.next::<ImpcLoginStatusNotify>().await;
    assert_eq!((n.user_id, n.login_stat), (2, 2));
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn routing_survives_the_loss_of_one_route_server() {
    let db = FakeDb::start().await;
    let r1 = Route::start().await;
    let r2 = Route::start().await;
    let (ms1, ms2) = pair(&db, &[&r1.addr, &r2.addr]).await;
    let alice = login(&ms1.addr, "alice", ClientType::Windows).await;
    let mut bob = login(&ms2.addr, "bob", ClientType::Windows).await;
    probe(&alice, &mut bob).await;
    alice.send(&msg(1, 2, MsgType::SingleText, "one")).await;
    assert_eq!(
        check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await).msg_id,
        1
    );
    // Whichever was the routing target, one of them goes away.
    r1.stop().await;
    for i in 2..=3 {
        alice
            .send(&msg(1, 2, MsgType::SingleText, &format!("m{i}")))
            .await;
        assert_eq!(
            check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await).msg_id,
            i
        );
    }
    // The resends after the failover are dropped as duplicates.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    bob.nothing_of(cid::CID_MSG_DATA).await;
    ms1.stop().await;
    ms2.stop().await;
}

#[tokio::test]
async fn registers_with_login_server_and_reports_load_and_drain() {
    let db = FakeDb::start().await;
    let bind = || TcpListener::bind("127.0.0.1:0");
    let (http, msl, admin) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let http_addr = http.local_addr().unwrap();
    let ms_port = msl.local_addr().unwrap().to_string();
    let admin_addr = admin.local_addr().unwrap().to_string();
    let mut lcfg = login_server::Config::default();
    lcfg.admin.token = TOKEN.to_owned();
    let ls_shutdown = im_common::CancellationToken::new();
    let ls = tokio::spawn(login_server::run(
        lcfg,
        login_server::Listeners {
            msg_servers_tls: None,
            https: None,
            http,
            msg_servers: msl,
            legacy_client: None,
            admin: Some(admin),
            metrics: None,
        },
        ls_shutdown.clone(),
    ));
    let mut cfg = config(&db.addr, &[]);
    cfg.login_servers = vec![ms_port];
    cfg.ip1 = "192.0.2.7".to_owned();
    let ms = Ms::start(cfg).await;
    ms.wait_links("login_server", 1).await;
    let url = format!("http://{http_addr}/msg_server");
    let a = fetch_msg_server(&url).await.unwrap();
    assert_eq!(a.prior_ip, "192.0.2.7");
    assert_eq!(a.port.to_string(), ms.addr.rsplit(':').next().unwrap());

    let (lsa, _ev) = ImClient::connect(&admin_addr, client_config())
        .await
        .unwrap();
    lsa.request(&ImAdminAuthReq {
        token: Some(TOKEN.to_owned()),
        client_name: None,
    })
    .await
    .unwrap();
    let _alice = login(&ms.addr, "alice", ClientType::Windows).await;
    let _bob = login(&ms.addr, "bob", ClientType::Android).await;
    wait_until("login_server counts our two users", || async {
        let l = lsa.request(&ImAdminMsgServerListReq {}).await.unwrap();
        l.servers.first().and_then(|s| s.cur_conn_cnt) == Some(2)
    })
    .await;

    // Draining tells login_server we take nobody (capacity 0).
    ms.admin()
        .await
        .request(&im_proto::admin::ImAdminDrainReq {
            msg_server: None,
            undrain: None,
            close_per_sec: Some(1),
        })
        .await
        .unwrap();
    wait_until("login_server sees capacity 0", || async {
        let l = lsa.request(&ImAdminMsgServerListReq {}).await.unwrap();
        l.servers.first().and_then(|s| s.max_conn_cnt) == Some(0)
    })
    .await;
    match fetch_msg_server(&url).await {
        Err(ClientError::NoMsgServer { .. }) => {}
        other => panic!("a draining msg_server must not be offered: {other:?}"),
    }
    ms.stop().await;
    ls_shutdown.cancel();
    let _ = ls.await;
}

#[tokio::test]
async fn shutdown_still_acks_messages_being_stored() {
    let db = FakeDb::start().await;
    let ms = Ms::start(config(&db.addr, &[])).await;
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    db.with(|s| s.store_delay = Some(Duration::from_millis(400)));
    let c = alice.c.clone();
    let pending = tokio::spawn(async move {
        c.request(&msg(1, 2, MsgType::SingleText, "last words"))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    ms.stop().await;
    let ack = pending.await.unwrap().unwrap();
    assert_eq!(ack.msg_id, 1);
    tokio::time::timeout(WAIT, alice.c.closed()).await.unwrap();
}
