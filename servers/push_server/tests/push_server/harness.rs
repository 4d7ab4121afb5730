//! push_server on 127.0.0.1 port 0 against the fakes, and a msg_server's side of the link.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use im_common::CancellationToken;
use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq, ServerStats};
use im_proto::base::{ClientType, UserTokenInfo};
use im_proto::client::{ClientConfig, Events, ImClient};
use im_proto::server::{ImPushToUserReq, ImPushToUserRsp};
use push_server::config::RetryConfig;
use push_server::{Config, Listeners, run};
use tokio::net::TcpListener;

/// Admin token of test servers.
pub const TOKEN: &str = "test-admin-token-0123456789";
/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits to be sure something does not happen.
pub const QUIET: Duration = Duration::from_millis(500);
/// Team and key ids of the test APNs key.
pub const TEAM_ID: &str = "TEAM123456";
/// Key id of the test APNs key.
pub const KEY_ID: &str = "KEY1234567";
/// Bundle id used as apns-topic.
pub const TOPIC: &str = "com.example.teamtalk";
/// Project of the test service account.
pub const PROJECT: &str = "test-project";
/// Service account e-mail.
pub const SA_EMAIL: &str = "push@test-project.iam.gserviceaccount.com";

/// A file under tests/keys (test-only keys).
pub fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// A 64-hex APNs token made of `byte`.
pub fn ios_token(byte: &str) -> String {
    byte.repeat(32)
}

/// Config: APNs at `apns`, FCM (token endpoint and sender) at `fcm`, webhook at `webhook`,
/// fast retries, no db_proxy. The service-account file goes to `dir`.
pub fn config(apns: &str, fcm: &str, webhook: &str, dir: &Path) -> Config {
    let sa = dir.join("service-account.json");
    let key = std::fs::read_to_string(key_file("fcm-test-key.pem")).unwrap();
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "sa-key-1",
        "private_key": key,
        "client_email": SA_EMAIL,
        "token_uri": format!("{fcm}/token"),
    });
    std::fs::write(&sa, json.to_string()).unwrap();
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        retry: RetryConfig {
            attempts: 3,
            initial_ms: 20,
            max_ms: 100,
            jitter: 0.0,
        },
        request_timeout_ms: 3_000,
        ..Config::default()
    };
    c.apns.enabled = true;
    c.apns.key_path = key_file("apns-test-key.p8");
    c.apns.key_id = KEY_ID.into();
    c.apns.team_id = TEAM_ID.into();
    c.apns.topic = TOPIC.into();
    c.apns.endpoint = apns.into();
    c.fcm.enabled = true;
    c.fcm.service_account_path = sa;
    c.fcm.endpoint = fcm.into();
    c.webhook.enabled = true;
    c.webhook.url = format!("{webhook}/push");
    c
}

/// A running push_server.
pub struct Ps {
    /// msg_server port.
    pub addr: String,
    /// Admin port.
    pub admin: String,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Ps {
    /// Starts one with `config` (listen addresses replaced by port 0).
    pub async fn start(mut config: Config) -> Ps {
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = main.local_addr().unwrap().to_string();
        let admin_addr = admin.local_addr().unwrap().to_string();
        config.admin.listen = admin_addr.clone();
        config.admin.token = TOKEN.into();
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(run(
            config,
            Listeners {
                msg_servers_tls: None,
                msg_servers: main,
                admin: Some(admin),
                metrics: None,
            },
            shutdown.clone(),
        ));
        Ps {
            addr,
            admin: admin_addr,
            shutdown,
            done: Some(done),
        }
    }

    /// A link as a msg_server opens it (no heartbeats of its own: tests send them).
    pub async fn link(&self) -> (ImClient, Events) {
        let cfg = ClientConfig {
            heartbeat_interval: None,
            request_timeout: WAIT,
            ..ClientConfig::default()
        };
        ImClient::connect(&self.addr, cfg).await.unwrap()
    }

    /// Admin stats.
    pub async fn stats(&self) -> ServerStats {
        let (c, _ev) = ImClient::connect(&self.admin, ClientConfig::default())
            .await
            .unwrap();
        let rsp = c
            .request(&ImAdminAuthReq {
                token: Some(TOKEN.into()),
                client_name: Some("push_server tests".into()),
            })
            .await
            .unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
        assert_eq!(rsp.server_kind.as_deref(), Some("push_server"));
        c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap()
    }

    /// A metric of the admin snapshot (`name` without the prefix, labels included).
    pub async fn metric(&self, name: &str) -> f64 {
        let full = format!("im_push_server_{name}");
        self.stats()
            .await
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(&full))
            .and_then(|m| m.value)
            .unwrap_or(-1.0)
    }

    /// Stops it and checks that `run` returned Ok.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(15), done)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Ps {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A UserTokenInfo.
pub fn target(
    user_id: u32,
    ct: ClientType,
    token: &str,
    badge: u32,
    push_type: u32,
) -> UserTokenInfo {
    UserTokenInfo {
        user_id,
        user_type: ct as i32,
        token: token.into(),
        push_count: badge,
        push_type,
    }
}

/// Sends one push request and returns the result codes in order.
pub async fn push(
    link: &ImClient,
    flash: &str,
    data: &str,
    targets: Vec<UserTokenInfo>,
) -> Vec<u32> {
    let rsp: ImPushToUserRsp = link
        .request(&ImPushToUserReq {
            flash: flash.into(),
            data: data.into(),
            user_token_list: targets.clone(),
        })
        .await
        .unwrap();
    let tokens: Vec<&str> = rsp
        .push_result_list
        .iter()
        .map(|r| r.user_token.as_str())
        .collect();
    let sent: Vec<&str> = targets.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(tokens, sent, "one result per token, in order");
    rsp.push_result_list.iter().map(|r| r.result_code).collect()
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
