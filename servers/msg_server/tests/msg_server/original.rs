//! Against a scripted route_server that behaves like the original: it relays frames with the
//! sender's seq and attach_data, never answers our locate extension, and lets the test see
//! what msg_server registers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve};
use im_proto::admin::ImAdminKickUserReq;
use im_proto::attach::AttachRecord;
use im_proto::base::{ClientType, KickReasonType, MsgType, UserStatType};
use im_proto::login::ImKickUser;
use im_proto::server::{ImOnlineUserInfo, ImRoleSet, ImServerKickUser, ImUserStatusUpdate};
use im_proto::{Pdu, cid};
use tokio::net::TcpListener;

use crate::fake_db::FakeDb;
use crate::harness::*;

/// What the scripted route_server saw, and its link to the msg_server.
#[derive(Default)]
struct Seen {
    pdus: Vec<Pdu>,
    link: Option<Conn>,
}

struct OldRoute {
    addr: String,
    seen: Arc<Mutex<Seen>>,
    shutdown: CancellationToken,
}

impl Drop for OldRoute {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct OldRouteConn {
    seen: Arc<Mutex<Seen>>,
}

impl Handler for OldRouteConn {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        let mut s = self.seen.lock().unwrap();
        s.link = Some(conn.clone());
        s.pdus.push(pdu);
    }
}

impl OldRoute {
    async fn start_on(listener: TcpListener) -> OldRoute {
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shutdown = CancellationToken::new();
        let s = seen.clone();
        tokio::spawn(serve(
            listener,
            ServeOptions::server("old_route"),
            ConnRegistry::new(),
            shutdown.clone(),
            move |_| OldRouteConn { seen: s.clone() },
        ));
        OldRoute {
            addr,
            seen,
            shutdown,
        }
    }

    fn pdus(&self, command: u16) -> Vec<Pdu> {
        let s = self.seen.lock().unwrap();
        s.pdus
            .iter()
            .filter(|p| p.command_id() == command)
            .cloned()
            .collect()
    }

    fn send(&self, pdu: &Pdu) {
        let s = self.seen.lock().unwrap();
        s.link.as_ref().unwrap().send_pdu(pdu).unwrap();
    }
}

#[tokio::test]
async fn registration_status_updates_and_frames_from_an_original_route_server() {
    let db = FakeDb::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let route_addr = listener.local_addr().unwrap();
    let route = OldRoute::start_on(listener).await;
    let ms = Ms::start(config(&db.addr, &[&route.addr])).await;
    ms.wait_links("route_server", 1).await;
    // Registration: the (empty) user list, then the role.
    wait_until("registration", || async {
        !route.pdus(cid::CID_OTHER_ROLE_SET).is_empty()
    })
    .await;
    let first = route.seen.lock().unwrap().pdus[0].clone();
    assert_eq!(first.command_id(), cid::CID_OTHER_ONLINE_USER_INFO);
    let role = route.pdus(cid::CID_OTHER_ROLE_SET)[0]
        .decode::<ImRoleSet>()
        .unwrap();
    assert_eq!(role.master, 1);

    let mut bob = login(&ms.addr, "bob", ClientType::Windows).await;
    wait_until("bob's status update", || async {
        !route.pdus(cid::CID_OTHER_USER_STATUS_UPDATE).is_empty()
    })
    .await;
    let up = route.pdus(cid::CID_OTHER_USER_STATUS_UPDATE)[0]
        .decode::<ImUserStatusUpdate>()
        .unwrap();
    assert_eq!((up.user_status, up.user_id, up.client_type), (1, 2, 1));

    // An original msg_server's relayed message: sender's seq and handle attach.
    let mut m = msg(1, 2, MsgType::SingleText, "from the old world");
    m.msg_id = 9;
    m.attach_data = Some(AttachRecord::handle(1234).encode());
    route.send(&Pdu::from_msg(&m, 77));
    let got = check_delivery(&bob.next_pdu(cid::CID_MSG_DATA).await);
    assert_eq!(got.msg_id, 9);
    // The same message again (e.g. a resend): dropped.
    route.send(&Pdu::from_msg(&m, 78));
    bob.nothing_of(cid::CID_MSG_DATA).await;

    // A kick relayed from another msg_server: same class only.
    let kick = |ct: ClientType| {
        Pdu::from_msg(
            &ImServerKickUser {
                user_id: 2,
                client_type: ct as i32,
                reason: KickReasonType::KickReasonDuplicateUser as u32,
            },
            0,
        )
    };
    route.send(&kick(ClientType::Android));
    bob.nothing_of(cid::CID_LOGIN_KICK_USER).await;
    route.send(&kick(ClientType::Mac));
    let k = bob.next::<ImKickUser>().await;
    assert_eq!(k.kick_reason, 1);
    tokio::time::timeout(WAIT, bob.c.closed()).await.unwrap();
    wait_until("bob's offline update", || async {
        route
            .pdus(cid::CID_OTHER_USER_STATUS_UPDATE)
            .iter()
            .any(|p| p.decode::<ImUserStatusUpdate>().unwrap().user_status == 2)
    })
    .await;

    // The admin kick extension: every matching connection.
    let mut a1 = login(&ms.addr, "alice", ClientType::Windows).await;
    let mut a2 = login(&ms.addr, "alice", ClientType::Ios).await;
    route.send(&Pdu::from_msg(
        &ImAdminKickUserReq {
            user_id: Some(1),
            client_type: Some(0),
        },
        0,
    ));
    for c in [&mut a1, &mut a2] {
        c.next::<ImKickUser>().await;
        tokio::time::timeout(WAIT, c.c.closed()).await.unwrap();
    }

    // After a route_server restart the registration lists who is logged in now.
    let _carol = login(&ms.addr, "carol", ClientType::Ios).await;
    drop(route);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let route = OldRoute::start_on(TcpListener::bind(route_addr).await.unwrap()).await;
    wait_until("re-registration", || async {
        !route.pdus(cid::CID_OTHER_ONLINE_USER_INFO).is_empty()
    })
    .await;
    let info = route.pdus(cid::CID_OTHER_ONLINE_USER_INFO)[0]
        .decode::<ImOnlineUserInfo>()
        .unwrap();
    let users: Vec<(u32, i32, i32)> = info
        .user_stat_list
        .iter()
        .map(|u| (u.user_id, u.status, u.client_type))
        .collect();
    assert_eq!(
        users,
        vec![(
            3,
            UserStatType::UserStatusOnline as i32,
            ClientType::Ios as i32
        )]
    );
    ms.stop().await;
}

#[tokio::test]
async fn push_still_works_when_route_server_does_not_answer_locate() {
    let db = FakeDb::start().await;
    let route = OldRoute::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await;
    let push = FakePush::start().await;
    let mut cfg = config(&db.addr, &[&route.addr]);
    cfg.push_servers = vec![push.addr.clone()];
    let ms = Ms::start(cfg).await;
    ms.wait_links("route_server", 1).await;
    ms.wait_links("push_server", 1).await;
    db.with(|s| {
        s.tokens
            .insert(2, (ClientType::Android as i32, "tok-bob".into()))
    });
    let alice = login(&ms.addr, "alice", ClientType::Windows).await;
    alice.send(&msg(1, 2, MsgType::SingleAudio, "....")).await;
    wait_until("a push after the locate timeout", || async {
        push.requests().len() == 1
    })
    .await;
    let p = &push.requests()[0];
    assert_eq!(p.flash, "alice-nick给您发送了一条语音消息");
    assert_eq!(p.user_token_list[0].push_type, 1);
    assert!(!route.pdus(cid::CID_ADMIN_LOCATE_USER_REQ).is_empty());
    // A local mobile connection is known without asking anyone: no push.
    let _bob = login(&ms.addr, "bob", ClientType::Android).await;
    alice.send(&msg(1, 2, MsgType::SingleText, "hi")).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(push.requests().len(), 1);
    ms.stop().await;
}
