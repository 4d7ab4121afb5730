//! The admin port: route list paging, locate, kick, stats, token check.

use std::time::Duration;

use im_proto::admin::{
    AdminResult, ImAdminAuthReq, ImAdminAuthRsp, ImAdminKickUserReq, ImAdminLocateUserReq,
    ImAdminRouteListReq, ImAdminStatsReq,
};
use im_proto::base::ClientType;
use im_proto::client::ImClient;
use im_proto::{Pdu, cid, sid};

use crate::harness::{Server, WAIT, client_config};

#[tokio::test]
async fn route_list_pages_in_user_id_order() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (a, b) = (s.msg_server().await, s.msg_server().await);
    // 25 users: odd ids on A (Windows), even ids on B (Android), user 1 on both.
    let on_a: Vec<(u32, ClientType)> = (1..=25)
        .filter(|u| u % 2 == 1)
        .map(|u| (u * 10, ClientType::Windows))
        .collect();
    let mut on_b: Vec<(u32, ClientType)> = (1..=25)
        .filter(|u| u % 2 == 0)
        .map(|u| (u * 10, ClientType::Android))
        .collect();
    on_b.push((10, ClientType::Android));
    on_b.push((10, ClientType::Android));
    a.register(&on_a).await;
    b.register(&on_b).await;

    let admin = s.admin().await;
    let mut after = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let rsp = admin
            .request(&ImAdminRouteListReq {
                after_user_id: Some(after),
                limit: Some(10),
            })
            .await
            .unwrap();
        pages += 1;
        assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
        assert_eq!(rsp.total_users, Some(25));
        assert_eq!(rsp.msg_server_links, Some(2));
        assert!(rsp.entries.len() <= 10);
        for e in &rsp.entries {
            let user = e.user_id.unwrap();
            // PC-only rule: A's users (Windows) online, B's (Android) offline.
            let expect = if (user / 10) % 2 == 1 { 1 } else { 2 };
            assert_eq!(e.wire_status, Some(expect), "user {user}");
            seen.push(user);
            if user == 10 {
                let mut locs: Vec<(String, i32, u32)> = e
                    .locations
                    .iter()
                    .map(|l| {
                        (
                            l.msg_server.clone().unwrap(),
                            l.client_type.unwrap(),
                            l.connections.unwrap(),
                        )
                    })
                    .collect();
                locs.sort();
                let mut expect = vec![
                    (a.name(), ClientType::Windows as i32, 1),
                    (b.name(), ClientType::Android as i32, 2),
                ];
                expect.sort();
                assert_eq!(locs, expect);
            }
        }
        match rsp.next_after_user_id {
            Some(0) => break,
            Some(n) => {
                assert_eq!(Some(n), rsp.entries.last().and_then(|e| e.user_id));
                after = n;
            }
            None => panic!("next_after_user_id missing"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=25).map(|u| u * 10).collect::<Vec<_>>());

    // The page size is capped, and 0 means the default.
    let rsp = admin
        .request(&ImAdminRouteListReq {
            after_user_id: None,
            limit: Some(1_000_000),
        })
        .await
        .unwrap();
    assert_eq!(rsp.entries.len(), 25);
    assert_eq!(rsp.next_after_user_id, Some(0));
    s.stop().await;
}

#[tokio::test]
async fn locate_finds_online_users_only() {
    let s = Server::start(Duration::from_secs(15)).await;
    let a = s.msg_server().await;
    a.register(&[(3, ClientType::Ios)]).await;
    let admin = s.admin().await;
    let rsp = admin
        .request(&ImAdminLocateUserReq {
            user_id: Some(3),
            user_ids: vec![],
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
    let e = rsp.entry.unwrap();
    assert_eq!(e.user_id, Some(3));
    assert_eq!(e.wire_status, Some(2), "mobile-only is offline on the wire");
    assert_eq!(e.locations.len(), 1);
    assert_eq!(e.locations[0].msg_server.as_deref(), Some(&*a.name()));
    let rsp = admin
        .request(&ImAdminLocateUserReq {
            user_id: Some(4),
            user_ids: vec![],
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminNotFound as i32));
    assert!(rsp.entry.is_none());
    s.stop().await;
}

#[tokio::test]
async fn several_users_are_located_at_once_on_the_admin_port_and_on_msg_server_links() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (a, b) = (s.msg_server().await, s.msg_server().await);
    a.register(&[(1, ClientType::Android), (2, ClientType::Mac)])
        .await;
    b.register(&[(1, ClientType::Windows)]).await;
    let req = ImAdminLocateUserReq {
        user_id: None,
        user_ids: vec![3, 2, 1],
    };
    let admin = s.admin().await;
    // Our msg_servers ask on their link, to learn mobile presence before a push.
    for rsp in [
        admin.request(&req).await.unwrap(),
        b.client.request(&req).await.unwrap(),
    ] {
        assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
        assert!(rsp.entry.is_none());
        let users: Vec<u32> = rsp.entries.iter().map(|e| e.user_id.unwrap()).collect();
        assert_eq!(users, vec![2, 1], "online ones, in request order");
        let mut types: Vec<i32> = rsp.entries[1]
            .locations
            .iter()
            .map(|l| l.client_type.unwrap())
            .collect();
        types.sort();
        assert_eq!(
            types,
            vec![ClientType::Windows as i32, ClientType::Android as i32]
        );
    }
    // Other admin commands are not accepted on a msg_server link.
    let kick = b
        .client
        .request_timeout(
            &ImAdminKickUserReq {
                user_id: Some(1),
                client_type: None,
            },
            Duration::from_millis(300),
        )
        .await;
    assert!(kick.is_err(), "{kick:?}");
    assert_eq!(a.wire_status(&[1]).await, vec![1]);
    s.stop().await;
}

#[tokio::test]
async fn kick_goes_to_the_msg_servers_holding_matching_connections() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b, mut c) = (
        s.msg_server().await,
        s.msg_server().await,
        s.msg_server().await,
    );
    a.register(&[(5, ClientType::Windows), (5, ClientType::Windows)])
        .await;
    b.register(&[(5, ClientType::Android)]).await;
    c.register(&[(6, ClientType::Windows)]).await;
    let admin = s.admin().await;

    let check_kick = |p: Pdu, ct: u32| {
        assert_eq!(p.header.service_id, sid::SID_ADMIN);
        assert_eq!(p.command_id(), cid::CID_ADMIN_KICK_USER_REQ);
        let k = p.decode::<ImAdminKickUserReq>().unwrap();
        assert_eq!((k.user_id, k.client_type), (Some(5), Some(ct)));
    };

    // Every client type: A and B, 3 connections.
    let rsp = admin
        .request(&ImAdminKickUserReq {
            user_id: Some(5),
            client_type: Some(0),
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(rsp.kicked, Some(3));
    check_kick(a.next().await, 0);
    check_kick(b.next().await, 0);

    // Windows only: A alone, 2 connections.
    let rsp = admin
        .request(&ImAdminKickUserReq {
            user_id: Some(5),
            client_type: Some(ClientType::Windows as u32),
        })
        .await
        .unwrap();
    assert_eq!(rsp.kicked, Some(2));
    check_kick(a.next().await, ClientType::Windows as u32);
    let f = c.fence().await;
    for l in [&mut a, &mut b, &mut c] {
        l.expect_nothing_before(f).await;
    }

    // No matching connection: not found, nothing sent.
    for (user, ct) in [(5, ClientType::Mac as u32), (7, 0)] {
        let rsp = admin
            .request(&ImAdminKickUserReq {
                user_id: Some(user),
                client_type: Some(ct),
            })
            .await
            .unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminNotFound as i32));
        assert_eq!(rsp.kicked, Some(0));
    }
    // Bad requests.
    for req in [
        ImAdminKickUserReq {
            user_id: None,
            client_type: None,
        },
        ImAdminKickUserReq {
            user_id: Some(5),
            client_type: Some(3),
        },
    ] {
        let rsp = admin.request(&req).await.unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminBadRequest as i32));
    }
    let f = c.fence().await;
    for l in [&mut a, &mut b, &mut c] {
        l.expect_nothing_before(f).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_connection_closed() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (c, _events) = ImClient::connect(&s.admin, client_config()).await.unwrap();
    let rsp: ImAdminAuthRsp = c
        .request(&ImAdminAuthReq {
            token: Some("not-the-right-token-at-all".into()),
            client_name: None,
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminAuthFailed as i32));
    tokio::time::timeout(WAIT, c.closed()).await.unwrap();
    // Nothing but authentication is looked at first.
    let (c, _events) = ImClient::connect(&s.admin, client_config()).await.unwrap();
    let rsp = c
        .request(&ImAdminKickUserReq {
            user_id: Some(1),
            client_type: None,
        })
        .await;
    assert!(
        rsp.is_err(),
        "an unauthenticated kick must not be answered: {rsp:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn stats_and_metrics_report_the_table_and_the_traffic() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (a, mut b) = (s.msg_server().await, s.msg_server().await);
    a.register(&[(1, ClientType::Windows)]).await;
    b.register(&[(2, ClientType::Windows), (3, ClientType::Ios)])
        .await;
    let sent = a
        .send(&im_proto::message::ImMsgData {
            from_user_id: 1,
            to_session_id: 2,
            msg_id: 1,
            create_time: 1,
            msg_type: 1,
            msg_data: bytes::Bytes::from_static(b"x"),
            attach_data: None,
        })
        .await;
    assert_eq!(b.next().await.to_frame(), sent);
    a.sync().await;

    let admin = s.admin().await;
    let stats = admin
        .request(&ImAdminStatsReq {})
        .await
        .unwrap()
        .stats
        .unwrap();
    assert_eq!(stats.server_kind.as_deref(), Some("route_server"));
    assert_eq!(stats.table_size, Some(3));
    assert_eq!(stats.connections.len(), 1);
    assert_eq!(stats.connections[0].count, Some(2));
    assert_eq!(stats.listen_addr.as_deref(), Some(&*s.addr));
    let metric = |name: &str| {
        stats
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .and_then(|m| m.value)
    };
    assert_eq!(
        metric(r#"im_route_server_routed_in_total{class="msg_data"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(r#"im_route_server_routed_out_total{class="msg_data"}"#),
        Some(1.0)
    );
    assert_eq!(metric("im_route_server_grace_users"), Some(0.0));
    assert_eq!(metric("im_route_server_users_online"), Some(3.0));

    let (status, body) = s.http_get("/readyz").await;
    assert!(status.contains("200"), "{status}");
    let (status, body2) = s.http_get("/metrics").await;
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(
        body2.contains("im_route_server_routed_in_total{class=\"msg_data\"} 1"),
        "{body2}"
    );
    assert!(
        body2.contains("im_route_server_msg_server_links 2"),
        "{body2}"
    );
    s.stop().await;
}

#[tokio::test]
async fn admin_group_notify_is_broadcast_to_every_msg_server() {
    use im_proto::admin::ImAdminGroupNotifyReq;
    use im_proto::group::ImGroupChangeMemberNotify;

    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut b) = (s.msg_server().await, s.msg_server().await);
    a.sync().await;
    b.sync().await;
    let admin = s.admin().await;
    let rsp = admin
        .request(&ImAdminGroupNotifyReq {
            change_type: Some(1),
            group_id: Some(42),
            cur_user_ids: vec![1, 2, 3],
            chg_user_ids: vec![3],
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(rsp.msg_servers, Some(2));
    for l in [&mut a, &mut b] {
        let p = l.next().await;
        assert_eq!(p.command_id(), cid::CID_GROUP_CHANGE_MEMBER_NOTIFY);
        assert_eq!(p.seq_num(), 0);
        let n = p.decode::<ImGroupChangeMemberNotify>().unwrap();
        assert_eq!(
            n,
            ImGroupChangeMemberNotify {
                user_id: 0,
                change_type: 1,
                group_id: 42,
                cur_user_id_list: vec![1, 2, 3],
                chg_user_id_list: vec![3],
            }
        );
    }
    // An invalid change type or a missing group is refused and nothing is sent.
    for (ct, g) in [(Some(7), Some(42)), (Some(2), None)] {
        let rsp = admin
            .request(&ImAdminGroupNotifyReq {
                change_type: ct,
                group_id: g,
                cur_user_ids: vec![],
                chg_user_ids: vec![1],
            })
            .await
            .unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminBadRequest as i32));
    }
    let f = a.fence().await;
    for l in [&mut a, &mut b] {
        l.expect_nothing_before(f).await;
    }
    s.stop().await;
}
