//! A route_server on 127.0.0.1 port 0, fake msg_servers built on `ImClient`, and an admin
//! client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use im_common::CancellationToken;
use im_proto::admin::{AdminResult, ImAdminAuthReq};
use im_proto::base::{ClientType, ServerUserStat, UserStatType};
use im_proto::buddy::{ImSignInfoChangedNotify, ImUsersStatReq, ImUsersStatRsp};
use im_proto::client::{ClientConfig, Events, ImClient};
use im_proto::server::{ImOnlineUserInfo, ImUserStatusUpdate};
use im_proto::{Command, Pdu, cid};
use route_server::{Config, Listeners, run};
use tokio::net::TcpListener;

/// Admin token of test servers.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running route_server.
pub struct Server {
    /// msg_server port.
    pub addr: String,
    /// Admin port.
    pub admin: String,
    /// HTTP port.
    pub http: String,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// Starts a route_server with the given offline grace period.
    pub async fn start(grace: Duration) -> Server {
        let bind = || TcpListener::bind("127.0.0.1:0");
        let (ms, admin, http) = (
            bind().await.unwrap(),
            bind().await.unwrap(),
            bind().await.unwrap(),
        );
        let addr = ms.local_addr().unwrap().to_string();
        let admin_addr = admin.local_addr().unwrap().to_string();
        let http_addr = http.local_addr().unwrap().to_string();
        let mut config = Config {
            offline_grace_secs: grace.as_secs_f64(),
            ..Config::default()
        };
        config.admin.listen = admin_addr.clone();
        config.admin.token = TOKEN.to_owned();
        config.http.listen = http_addr.clone();
        let listeners = Listeners {
            msg_servers_tls: None,
            msg_servers: ms,
            admin: Some(admin),
            metrics: Some(http),
        };
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(run(config, listeners, shutdown.clone()));
        Server {
            addr,
            admin: admin_addr,
            http: http_addr,
            shutdown,
            done: Some(done),
        }
    }

    /// A fake msg_server linked to this route_server.
    pub async fn msg_server(&self) -> FakeMs {
        FakeMs::connect(&self.addr).await
    }

    /// An authenticated admin client.
    pub async fn admin(&self) -> ImClient {
        let (c, _events) = ImClient::connect(&self.admin, client_config())
            .await
            .unwrap();
        let rsp = c
            .request(&ImAdminAuthReq {
                token: Some(TOKEN.to_owned()),
                client_name: Some("route_server tests".to_owned()),
            })
            .await
            .unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
        assert_eq!(rsp.server_kind.as_deref(), Some("route_server"));
        c
    }

    /// GET `path` on the HTTP port; returns (status line, whole response).
    pub async fn http_get(&self, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.http).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(WAIT, s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        (out.lines().next().unwrap_or_default().to_owned(), out)
    }

    /// Stops the server and checks that `run` returned Ok.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(10), done)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The client settings of a server link: heartbeat after 5 s (FLOWS.md 1.1).
pub fn client_config() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: Some(Duration::from_secs(5)),
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

/// A fake msg_server: a link plus what route_server sent it unsolicited.
pub struct FakeMs {
    /// The link.
    pub client: ImClient,
    /// Unsolicited PDUs.
    pub events: Events,
    fences: u32,
}

/// The user id fence notifies carry (no test uses it for anything else).
const FENCE_USER: u32 = 0xFE_0000;

impl FakeMs {
    /// Connects to `addr`.
    pub async fn connect(addr: &str) -> FakeMs {
        let (client, events) = ImClient::connect(addr, client_config()).await.unwrap();
        FakeMs {
            client,
            events,
            fences: 0,
        }
    }

    /// The link's name on route_server (our local address).
    pub fn name(&self) -> String {
        self.client.local_addr().to_string()
    }

    /// Sends a message (seq 0) and returns the exact frame sent.
    pub async fn send<M: Command>(&self, msg: &M) -> Bytes {
        self.send_seq(msg, 0).await
    }

    /// Sends a message with a given seq; returns the exact frame.
    pub async fn send_seq<M: Command>(&self, msg: &M, seq: u16) -> Bytes {
        let frame = Pdu::from_msg(msg, seq).to_frame();
        self.client.send_frame(frame.clone()).await.unwrap();
        frame
    }

    /// IMOnlineUserInfo with these connections (all online), then waits until processed.
    pub async fn register(&self, conns: &[(u32, ClientType)]) {
        let msg = ImOnlineUserInfo {
            user_stat_list: conns
                .iter()
                .map(|(u, ct)| ServerUserStat {
                    user_id: *u,
                    status: UserStatType::UserStatusOnline as i32,
                    client_type: *ct as i32,
                })
                .collect(),
        };
        self.send(&msg).await;
        self.sync().await;
    }

    /// IMUserStatusUpdate for one connection, then waits until processed.
    pub async fn status(&self, user: u32, ct: ClientType, online: bool) {
        let status = if online {
            UserStatType::UserStatusOnline
        } else {
            UserStatType::UserStatusOffline
        };
        self.send(&ImUserStatusUpdate {
            user_status: status as u32,
            user_id: user,
            client_type: ct as i32,
        })
        .await;
        self.sync().await;
    }

    /// IMUsersStatReq round trip.
    pub async fn users_stat(&self, ids: &[u32]) -> ImUsersStatRsp {
        self.client
            .request(&ImUsersStatReq {
                user_id: 1,
                user_id_list: ids.to_vec(),
                attach_data: None,
            })
            .await
            .unwrap()
    }

    /// Wire status (1 online, 2 offline) per id.
    pub async fn wire_status(&self, ids: &[u32]) -> Vec<i32> {
        let rsp = self.users_stat(ids).await;
        rsp.user_stat_list.iter().map(|s| s.status).collect()
    }

    /// Returns once route_server has handled everything this link sent before: it answers a
    /// link's PDUs in order, so the answer to a status request comes after all of them.
    pub async fn sync(&self) {
        self.users_stat(&[]).await;
    }

    /// The next unsolicited PDU (fails the test after [`WAIT`]).
    pub async fn next(&mut self) -> Pdu {
        match self.events.recv_timeout(WAIT).await {
            Ok(Some(p)) => p,
            other => panic!("expected a PDU on link {}, got {other:?}", self.name()),
        }
    }

    /// Broadcasts a fence (a signature notify, which route_server sends to every link
    /// including ours) and returns its user id; pass it to [`FakeMs::until_fence`] on each
    /// link. Since route_server handles one link's PDUs in order and every link's outbound
    /// queue is FIFO, anything our earlier PDUs caused arrives before the fence.
    pub async fn fence(&mut self) -> u32 {
        self.fences += 1;
        let id = FENCE_USER + self.fences;
        self.send(&ImSignInfoChangedNotify {
            changed_user_id: id,
            sign_info: "fence".to_owned(),
        })
        .await;
        id
    }

    /// Everything received before fence `id`.
    pub async fn until_fence(&mut self, id: u32) -> Vec<Pdu> {
        let mut before = Vec::new();
        loop {
            let p = self.next().await;
            if p.command_id() == cid::CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY
                && p.decode::<ImSignInfoChangedNotify>()
                    .is_ok_and(|n| n.changed_user_id == id)
            {
                return before;
            }
            before.push(p);
        }
    }

    /// Asserts that nothing but the fence arrives.
    pub async fn expect_nothing_before(&mut self, fence: u32) {
        let got = self.until_fence(fence).await;
        let names: Vec<&str> = got.iter().map(Pdu::command_name).collect();
        assert!(got.is_empty(), "link {} received {names:?}", self.name());
    }
}

/// Polls `f` until it is true (fails the test after [`WAIT`]).
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
