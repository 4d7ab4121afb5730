//! Presence: status queries (PC-only rule), the notifies of FLOWS.md 11, the offline grace
//! period and the warm-up after start.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use im_proto::admin::{AdminResult, ImAdminLocateUserReq, ImAdminStatsReq};
use im_proto::base::{ClientType, UserStatType};
use im_proto::buddy::{ImUserStatNotify, ImUsersStatReq, ImUsersStatRsp};
use im_proto::message::ImMsgData;
use im_proto::server::ImServerPcLoginStatusNotify;
use im_proto::{Pdu, cid};

use crate::harness::{FakeMs, Server, wait_until};

const ONLINE: i32 = UserStatType::UserStatusOnline as i32;
const OFFLINE: i32 = UserStatType::UserStatusOffline as i32;

/// A presence notify as (kind, user, value): ("login", user, login_status) or
/// ("buddy", user, status).
type Notice = (&'static str, u32, i32);

fn notices(pdus: &[Pdu]) -> Vec<Notice> {
    pdus.iter()
        .map(|p| match p.command_id() {
            cid::CID_OTHER_LOGIN_STATUS_NOTIFY => {
                let n = p.decode::<ImServerPcLoginStatusNotify>().unwrap();
                ("login", n.user_id, n.login_status as i32)
            }
            cid::CID_BUDDY_LIST_STATUS_NOTIFY => {
                let n = p.decode::<ImUserStatNotify>().unwrap();
                ("buddy", n.user_stat.user_id, n.user_stat.status)
            }
            other => panic!("unexpected command {other:#06x} ({})", p.command_name()),
        })
        .collect()
}

/// What `origin` and `observer` received before a fence from `origin`; both must agree.
async fn notices_seen(origin: &mut FakeMs, observer: &mut FakeMs) -> Vec<Notice> {
    let f = origin.fence().await;
    let at_origin = notices(&origin.until_fence(f).await);
    let at_observer = notices(&observer.until_fence(f).await);
    assert_eq!(
        at_origin, at_observer,
        "the originator hears the same notifies"
    );
    at_observer
}

#[tokio::test]
async fn status_request_answers_in_order_with_the_pc_only_rule() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (a, mut b) = (s.msg_server().await, s.msg_server().await);
    a.register(&[(1, ClientType::Windows), (2, ClientType::Android)])
        .await;
    b.register(&[(2, ClientType::Ios), (4, ClientType::Mac)])
        .await;
    let attach = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0]);
    let req = ImUsersStatReq {
        user_id: 99,
        user_id_list: vec![3, 1, 2, 4, 1],
        attach_data: Some(attach.clone()),
    };
    // Sent with a seq nobody waits for, so the answer shows up as an event.
    b.send_seq(&req, 4242).await;
    let p = b.next().await;
    assert_eq!(p.command_id(), cid::CID_BUDDY_LIST_USERS_STATUS_RESPONSE);
    assert_eq!(p.seq_num(), 4242);
    let rsp = p.decode::<ImUsersStatRsp>().unwrap();
    assert_eq!(rsp.user_id, 99);
    assert_eq!(rsp.attach_data, Some(attach));
    let got: Vec<(u32, i32)> = rsp
        .user_stat_list
        .iter()
        .map(|s| (s.user_id, s.status))
        .collect();
    // 2 has two mobile connections and no PC one: OFFLINE on the wire (Decisions 8).
    assert_eq!(
        got,
        vec![
            (3, OFFLINE),
            (1, ONLINE),
            (2, OFFLINE),
            (4, ONLINE),
            (1, ONLINE)
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn status_updates_send_the_pc_login_and_buddy_notifies() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (mut a, mut o) = (s.msg_server().await, s.msg_server().await);
    // PC online: login 1, buddy ONLINE, to every link.
    a.status(100, ClientType::Windows, true).await;
    assert_eq!(
        notices_seen(&mut a, &mut o).await,
        vec![("login", 100, 1), ("buddy", 100, ONLINE)]
    );
    // Mobile online while a PC is there: login 1 only (no buddy notify for mobile).
    a.status(100, ClientType::Android, true).await;
    assert_eq!(notices_seen(&mut a, &mut o).await, vec![("login", 100, 1)]);
    // A second PC client (on another msg_server): login 1, buddy ONLINE.
    o.status(100, ClientType::Mac, true).await;
    assert_eq!(
        notices_seen(&mut a, &mut o).await,
        vec![("login", 100, 1), ("buddy", 100, ONLINE)]
    );
    // A PC client leaves while another PC one remains: nothing at all.
    o.status(100, ClientType::Mac, false).await;
    assert_eq!(notices_seen(&mut a, &mut o).await, vec![]);
    assert_eq!(a.wire_status(&[100]).await, vec![ONLINE]);
    // The last PC client leaves: login 0, buddy OFFLINE (the mobile one is still there).
    a.status(100, ClientType::Windows, false).await;
    assert_eq!(
        notices_seen(&mut a, &mut o).await,
        vec![("login", 100, 0), ("buddy", 100, OFFLINE)]
    );
    assert_eq!(a.wire_status(&[100]).await, vec![OFFLINE]);
    // Mobile offline: nothing.
    a.status(100, ClientType::Android, false).await;
    assert_eq!(notices_seen(&mut a, &mut o).await, vec![]);
    // Mobile-only user: no PC, so neither notify, and OFFLINE on the wire.
    a.status(200, ClientType::Ios, true).await;
    assert_eq!(notices_seen(&mut a, &mut o).await, vec![]);
    assert_eq!(o.wire_status(&[200]).await, vec![OFFLINE]);
    // A mobile login of a user with a PC client: login 1 tells the mobile side.
    o.status(200, ClientType::Windows, true).await;
    notices_seen(&mut a, &mut o).await;
    a.status(200, ClientType::Android, true).await;
    assert_eq!(notices_seen(&mut a, &mut o).await, vec![("login", 200, 1)]);
    s.stop().await;
}

/// Waits until user `user` shows connections held in grace.
async fn wait_for_grace(s: &Server, user: u32) {
    let admin = s.admin().await;
    wait_until("the dropped link's users to be held in grace", || {
        let admin = admin.clone();
        async move {
            let rsp = admin
                .request(&ImAdminLocateUserReq {
                    user_id: Some(user),
                    user_ids: vec![],
                })
                .await
                .unwrap();
            rsp.entry.is_some_and(|e| {
                e.locations
                    .iter()
                    .any(|l| l.msg_server.as_deref() == Some("(offline grace)"))
            })
        }
    })
    .await;
}

#[tokio::test]
async fn users_re_registered_within_the_grace_period_are_never_announced_offline() {
    let grace = Duration::from_millis(1000);
    let s = Server::start(grace).await;
    // Past the warm-up, so that only the grace logic can keep the re-registration silent.
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    let mut o = s.msg_server().await;
    let mut a = s.msg_server().await;
    let users = [
        (1, ClientType::Windows),
        (2, ClientType::Mac),
        (2, ClientType::Android),
        (3, ClientType::Ios),
    ];
    let mut before = users.to_vec();
    before.extend([
        (5, ClientType::Windows),
        (5, ClientType::Android),
        (6, ClientType::Android),
    ]);
    a.register(&before).await;
    let announced: BTreeSet<Notice> = notices_seen(&mut a, &mut o).await.into_iter().collect();
    assert_eq!(
        announced,
        BTreeSet::from([
            ("buddy", 1, ONLINE),
            ("buddy", 2, ONLINE),
            ("buddy", 5, ONLINE),
            ("login", 1, 1),
            ("login", 2, 1),
            ("login", 5, 1),
        ])
    );
    a.client.close();
    wait_for_grace(&s, 1).await;
    // Held users still count as online (no offline was announced).
    assert_eq!(
        o.wire_status(&[1, 2, 3, 5, 6]).await,
        vec![ONLINE, ONLINE, OFFLINE, ONLINE, OFFLINE]
    );
    // The same msg_server reconnects and lists its users again. Meanwhile 5's PC client
    // left and 6 logged in from a PC: those changes of wire presence are news.
    let mut a2 = s.msg_server().await;
    let mut after = users.to_vec();
    after.extend([
        (5, ClientType::Android),
        (6, ClientType::Android),
        (6, ClientType::Mac),
    ]);
    a2.register(&after).await;
    let changed: BTreeSet<Notice> = notices_seen(&mut a2, &mut o).await.into_iter().collect();
    assert_eq!(
        changed,
        BTreeSet::from([
            ("buddy", 5, OFFLINE),
            ("buddy", 6, ONLINE),
            ("login", 5, 0),
            ("login", 6, 1),
        ])
    );
    // Well past the grace period: nothing else went out, to anybody.
    tokio::time::sleep(grace + Duration::from_millis(500)).await;
    let f = o.fence().await;
    o.expect_nothing_before(f).await;
    a2.expect_nothing_before(f).await;
    assert_eq!(
        o.wire_status(&[1, 2, 3, 5, 6]).await,
        vec![ONLINE, ONLINE, OFFLINE, OFFLINE, ONLINE]
    );
    // They are routed to the new link.
    let sent = o
        .send(&ImMsgData {
            from_user_id: 9,
            to_session_id: 1,
            msg_id: 1,
            create_time: 1,
            msg_type: 1,
            msg_data: Bytes::from_static(b"hi"),
            attach_data: None,
        })
        .await;
    assert_eq!(a2.next().await.to_frame(), sent);
    let admin = s.admin().await;
    let stats = admin
        .request(&ImAdminStatsReq {})
        .await
        .unwrap()
        .stats
        .unwrap();
    assert_eq!(stats.table_size, Some(5));
    let metric = |name: &str| {
        stats
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .and_then(|m| m.value)
    };
    assert_eq!(metric("im_route_server_grace_users"), Some(0.0));
    assert_eq!(
        metric("im_route_server_grace_recovered_users_total"),
        Some(5.0)
    );
    assert_eq!(
        metric("im_route_server_grace_expired_users_total"),
        Some(0.0)
    );
    s.stop().await;
}

#[tokio::test]
async fn users_not_back_within_the_grace_period_are_announced_offline() {
    let grace = Duration::from_millis(300);
    let s = Server::start(grace).await;
    let mut o = s.msg_server().await;
    let a = s.msg_server().await;
    o.register(&[(4, ClientType::Mac)]).await;
    a.register(&[
        (1, ClientType::Windows),
        (1, ClientType::Windows),
        (2, ClientType::Android),
        (3, ClientType::Mac),
        (3, ClientType::Ios),
        (4, ClientType::Windows),
    ])
    .await;
    let f = o.fence().await;
    o.until_fence(f).await;
    a.client.close();
    // Exactly as if every held connection had sent an offline update: 1 and 3 lose their
    // last PC client; 2 was mobile-only; 4 still has a PC client on O.
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(notices(&[o.next().await]));
    }
    let f = o.fence().await;
    assert_eq!(
        notices(&o.until_fence(f).await),
        vec![],
        "more than expected"
    );
    // Per user, the login notify comes first.
    for user in [1, 3] {
        let mine: Vec<Notice> = got.iter().copied().filter(|n| n.1 == user).collect();
        assert_eq!(mine, vec![("login", user, 0), ("buddy", user, OFFLINE)]);
    }
    assert_eq!(
        o.wire_status(&[1, 2, 3, 4]).await,
        vec![OFFLINE, OFFLINE, OFFLINE, ONLINE]
    );
    let admin = s.admin().await;
    let stats = admin
        .request(&ImAdminStatsReq {})
        .await
        .unwrap()
        .stats
        .unwrap();
    assert_eq!(stats.table_size, Some(1));
    let rsp = admin
        .request(&ImAdminLocateUserReq {
            user_id: Some(2),
            user_ids: vec![],
        })
        .await
        .unwrap();
    assert_eq!(rsp.result_code, Some(AdminResult::AdminNotFound as i32));
    s.stop().await;
}

#[tokio::test]
async fn a_connection_closing_while_held_is_removed_by_the_reconnected_link() {
    let grace = Duration::from_secs(10);
    let s = Server::start(grace).await;
    let mut o = s.msg_server().await;
    let a = s.msg_server().await;
    a.register(&[(1, ClientType::Windows), (2, ClientType::Windows)])
        .await;
    a.client.close();
    wait_for_grace(&s, 1).await;
    // The msg_server comes back; user 1 logged out meanwhile, and it says so.
    let mut a2 = s.msg_server().await;
    a2.status(1, ClientType::Windows, false).await;
    let f = a2.fence().await;
    assert_eq!(
        notices(&o.until_fence(f).await),
        vec![("login", 1, 0), ("buddy", 1, OFFLINE)]
    );
    a2.until_fence(f).await;
    assert_eq!(o.wire_status(&[1, 2]).await, vec![OFFLINE, ONLINE]);
    s.stop().await;
}

#[tokio::test]
async fn registration_during_the_warm_up_is_silent() {
    // A restarted route_server: msg_servers re-register users announced online long ago.
    let s = Server::start(Duration::from_secs(30)).await;
    let (mut a, mut o) = (s.msg_server().await, s.msg_server().await);
    a.register(&[(7, ClientType::Windows), (8, ClientType::Ios)])
        .await;
    assert_eq!(notices_seen(&mut a, &mut o).await, vec![]);
    // Status updates are news at any time.
    a.status(9, ClientType::Mac, true).await;
    assert_eq!(
        notices_seen(&mut a, &mut o).await,
        vec![("login", 9, 1), ("buddy", 9, ONLINE)]
    );
    s.stop().await;
}

#[tokio::test]
async fn registration_after_the_warm_up_announces_new_users_and_gone_ones() {
    let grace = Duration::from_millis(300);
    let s = Server::start(grace).await;
    tokio::time::sleep(grace + Duration::from_millis(100)).await;
    let (mut a, mut o) = (s.msg_server().await, s.msg_server().await);
    a.register(&[(7, ClientType::Windows), (8, ClientType::Ios)])
        .await;
    let got: BTreeSet<Notice> = notices_seen(&mut a, &mut o).await.into_iter().collect();
    // 7: a PC client came (login 1, buddy ONLINE); 8 is mobile-only: nothing.
    assert_eq!(got, BTreeSet::from([("buddy", 7, ONLINE), ("login", 7, 1)]));
    // A second snapshot on the same link replaces the first: 7 is gone, 8 got a PC client.
    a.register(&[(8, ClientType::Ios), (8, ClientType::Mac)])
        .await;
    let got: BTreeSet<Notice> = notices_seen(&mut a, &mut o).await.into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from([
            ("buddy", 7, OFFLINE),
            ("login", 7, 0),
            ("buddy", 8, ONLINE),
            ("login", 8, 1),
        ])
    );
    assert_eq!(o.wire_status(&[7, 8]).await, vec![OFFLINE, ONLINE]);
    s.stop().await;
}
