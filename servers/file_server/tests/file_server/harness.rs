//! A file_server on 127.0.0.1 port 0 with a temp data directory, a scripted msg_server link
//! and scripted TeamTalk file clients built on `ImClient`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
pub use file_server::Config;
use file_server::{Listeners, run};
use im_common::CancellationToken;
use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq, ServerStats};
use im_proto::base::ClientFileState;
use im_proto::client::{ClientConfig, Events, ImClient};
use im_proto::file::{ImFileLoginReq, ImFilePullDataReq, ImFilePullDataRsp, ImFileState};
use im_proto::server::{ImFileTransferReq, ImFileTransferRsp};
use im_proto::{Pdu, cid};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// Admin token of test servers.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Offline block size.
pub const BLOCK: usize = 32_768;

/// Online / offline `trans_mode`.
pub const ONLINE: i32 = 1;
/// Offline `trans_mode`.
pub const OFFLINE: i32 = 2;

/// Roles.
pub const SENDER: i32 = 1;
/// Online receiver.
pub const RECEIVER: i32 = 2;
/// Offline uploader.
pub const UPLOAD: i32 = 3;
/// Offline downloader.
pub const DOWNLOAD: i32 = 4;

/// A config for tests on `dir`: loopback, no db_proxy, default timers.
pub fn config(dir: &std::path::Path) -> Config {
    Config {
        name: "fs-test".into(),
        client_listen: "127.0.0.1:0".into(),
        msg_server_listen: "127.0.0.1:0".into(),
        data_dir: dir.join("offline_file"),
        db_proxy: Vec::new(),
        ..Config::default()
    }
}

/// A running file_server.
pub struct Fs {
    /// Client port.
    pub client: String,
    /// msg_server port.
    pub msg: String,
    /// Admin port.
    pub admin: String,
    /// Offline file directory.
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Fs {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Client settings: no automatic heartbeat.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        heartbeat_interval: None,
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

impl Fs {
    /// Starts one with `config` (listen addresses replaced by port 0).
    pub async fn start(mut config: Config) -> Fs {
        let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let msg = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [&client, &msg, &admin].map(|l| l.local_addr().unwrap().to_string());
        config.admin.listen = addrs[2].clone();
        config.admin.token = TOKEN.into();
        let data_dir = config.data_dir.clone();
        let shutdown = CancellationToken::new();
        let listeners = Listeners {
            msg_servers_tls: None,
            client,
            msg_servers: msg,
            admin: Some(admin),
            metrics: None,
        };
        let done = tokio::spawn(run(config, listeners, shutdown.clone()));
        let [client, msg, admin] = addrs;
        Fs {
            client,
            msg,
            admin,
            data_dir,
            shutdown,
            done: Some(done),
        }
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

    /// A scripted msg_server link.
    pub async fn link(&self) -> ImClient {
        let (c, _ev) = ImClient::connect(&self.msg, client_config()).await.unwrap();
        c
    }

    /// Creates a task through a msg_server link.
    pub async fn create(
        &self,
        link: &ImClient,
        from: u32,
        to: u32,
        mode: i32,
        size: u32,
    ) -> String {
        let rsp = create(link, from, to, mode, "file.bin", size).await;
        assert_eq!(rsp.result_code, 0, "{rsp:?}");
        rsp.task_id.unwrap()
    }

    /// A client connection logged in to `task` (panics when refused).
    pub async fn login(&self, user: u32, task: &str, role: i32) -> FileClient {
        let (c, code) = self.try_login(user, task, role).await;
        assert_eq!(code, 0, "login of user {user} as role {role} refused");
        c
    }

    /// A login attempt; returns the client and the result code.
    pub async fn try_login(&self, user: u32, task: &str, role: i32) -> (FileClient, u32) {
        let (c, ev) = ImClient::connect(&self.client, client_config())
            .await
            .unwrap();
        let rsp = c
            .request(&ImFileLoginReq {
                user_id: user,
                task_id: task.to_owned(),
                file_role: role,
            })
            .await
            .unwrap();
        assert_eq!(rsp.task_id, task);
        (
            FileClient {
                c,
                ev,
                user,
                task: task.to_owned(),
            },
            rsp.result_code,
        )
    }

    /// Asserts that the login is refused and the connection then closed.
    pub async fn refused(&self, user: u32, task: &str, role: i32) {
        let (mut c, code) = self.try_login(user, task, role).await;
        assert_eq!(code, 1, "user {user} role {role} should be refused");
        c.closed().await;
    }

    /// Admin stats.
    pub async fn stats(&self) -> ServerStats {
        let (c, _ev) = ImClient::connect(&self.admin, client_config())
            .await
            .unwrap();
        let rsp = c
            .request(&ImAdminAuthReq {
                token: Some(TOKEN.into()),
                client_name: Some("file_server tests".into()),
            })
            .await
            .unwrap();
        assert_eq!(rsp.result_code, Some(AdminResult::AdminOk as i32));
        assert_eq!(rsp.server_kind.as_deref(), Some("file_server"));
        c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap()
    }

    /// A named metric from the admin snapshot (`-1` when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let full = format!("im_file_server_{name}");
        self.stats()
            .await
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(&full))
            .and_then(|m| m.value)
            .unwrap_or(-1.0)
    }

    /// Path of an offline file.
    pub fn path(&self, task: &str) -> PathBuf {
        self.data_dir.join(&task[..2]).join(task)
    }
}

/// IMFileTransferReq on a msg_server link.
pub async fn create(
    link: &ImClient,
    from: u32,
    to: u32,
    mode: i32,
    name: &str,
    size: u32,
) -> ImFileTransferRsp {
    link.request(&ImFileTransferReq {
        from_user_id: from,
        to_user_id: to,
        file_name: name.into(),
        file_size: size,
        trans_mode: mode,
        attach_data: Some(Bytes::from_static(b"\0\0\0\x01\0\0\0\x07\0\0\0\0")),
    })
    .await
    .unwrap()
}

/// Deterministic test bytes (xorshift), different per seed.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// SHA-256.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// A client connection to the file port, logged in.
pub struct FileClient {
    /// The connection.
    pub c: ImClient,
    /// Unsolicited PDUs.
    pub ev: Events,
    /// Its user.
    pub user: u32,
    /// Its task.
    pub task: String,
}

impl FileClient {
    /// The next unsolicited PDU (panics on close or timeout).
    pub async fn next(&mut self) -> Pdu {
        match self.ev.recv_timeout(WAIT).await {
            Ok(Some(p)) => p,
            other => panic!("user {} expected a PDU, got {other:?}", self.user),
        }
    }

    /// Waits until the server closes the connection (PDUs on the way are dropped).
    pub async fn closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ev.recv_timeout(left).await {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(_) => panic!("user {}: connection not closed", self.user),
            }
        }
    }

    /// The next IMFileState.
    pub async fn state(&mut self) -> ImFileState {
        let p = self.next().await;
        assert_eq!(p.command_id(), cid::CID_FILE_STATE, "{p:?}");
        p.decode().unwrap()
    }

    /// Sends IMFileState `state` as this user.
    pub async fn send_state(&self, state: ClientFileState) {
        self.c
            .send(&ImFileState {
                state: state as i32,
                task_id: self.task.clone(),
                user_id: self.user,
            })
            .await
            .unwrap();
    }

    /// Online sender: answers forwarded pull requests from `data` until a state arrives
    /// (returned) or the connection closes (`None`).
    pub async fn serve_online(&mut self, data: &[u8]) -> Option<ImFileState> {
        loop {
            let p = match self.ev.recv_timeout(WAIT).await {
                Ok(Some(p)) => p,
                Ok(None) => return None,
                Err(e) => panic!("sender idle: {e}"),
            };
            match p.command_id() {
                cid::CID_FILE_PULL_DATA_REQ => {
                    let req: ImFilePullDataReq = p.decode().unwrap();
                    let start = req.offset as usize;
                    let end = (start + req.data_size as usize).min(data.len());
                    let rsp = ImFilePullDataRsp {
                        result_code: 0,
                        task_id: self.task.clone(),
                        user_id: self.user,
                        offset: req.offset,
                        file_data: Bytes::copy_from_slice(&data[start..end]),
                    };
                    self.c.send_pdu(&p.reply(&rsp)).await.unwrap();
                }
                cid::CID_FILE_STATE => return Some(p.decode().unwrap()),
                other => panic!("sender got {other:#06x}"),
            }
        }
    }

    /// Online receiver: pulls `size` bytes in chunks of `chunk`.
    pub async fn pull_online(&self, size: usize, chunk: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let want = chunk.min(size - out.len());
            let req = ImFilePullDataReq {
                task_id: self.task.clone(),
                user_id: self.user,
                trans_mode: ONLINE,
                offset: out.len() as u32,
                data_size: want as u32,
            };
            let p = self
                .c
                .request_pdu(Pdu::from_msg(&req, 0), cid::CID_FILE_PULL_DATA_RSP, WAIT)
                .await
                .unwrap();
            let rsp: ImFilePullDataRsp = p.decode().unwrap();
            assert_eq!(rsp.offset as usize, out.len());
            assert_eq!(rsp.file_data.len(), want);
            out.extend_from_slice(&rsp.file_data);
        }
        out
    }

    /// Offline uploader: answers file_server's pull requests with exactly the blocks asked
    /// for, checking their offsets, sizes and seq 0, until DONE.
    pub async fn upload(&mut self, data: &[u8]) {
        let mut expect = 0usize;
        loop {
            let p = self.next().await;
            match p.command_id() {
                cid::CID_FILE_PULL_DATA_REQ => {
                    assert_eq!(p.seq_num(), 0);
                    let req: ImFilePullDataReq = p.decode().unwrap();
                    assert_eq!(req.offset as usize, expect);
                    assert_eq!(req.trans_mode, OFFLINE);
                    assert_eq!(req.user_id, self.user);
                    assert_eq!(req.task_id, self.task);
                    let len = BLOCK.min(data.len() - expect);
                    assert_eq!(req.data_size as usize, len);
                    self.send_block(req.offset, &data[expect..expect + len])
                        .await;
                    expect += len;
                }
                cid::CID_FILE_STATE => {
                    let st: ImFileState = p.decode().unwrap();
                    assert_eq!(st.state, ClientFileState::ClientFileDone as i32);
                    assert_eq!(st.user_id, self.user);
                    assert_eq!(expect, data.len(), "DONE before every block was sent");
                    return;
                }
                other => panic!("uploader got {other:#06x}"),
            }
        }
    }

    /// Sends one upload block.
    pub async fn send_block(&self, offset: u32, data: &[u8]) {
        self.c
            .send(&ImFilePullDataRsp {
                result_code: 0,
                task_id: self.task.clone(),
                user_id: self.user,
                offset,
                file_data: Bytes::copy_from_slice(data),
            })
            .await
            .unwrap();
    }

    /// Offline downloader: pulls every block in order, then expects DONE (naming `from`)
    /// and the close.
    pub async fn download(&mut self, size: usize, from: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(size);
        loop {
            let req = ImFilePullDataReq {
                task_id: self.task.clone(),
                user_id: self.user,
                trans_mode: OFFLINE,
                offset: out.len() as u32,
                // Ignored by file_server: it always serves whole blocks.
                data_size: 1,
            };
            let p = self
                .c
                .request_pdu(Pdu::from_msg(&req, 0), cid::CID_FILE_PULL_DATA_RSP, WAIT)
                .await
                .unwrap();
            let rsp: ImFilePullDataRsp = p.decode().unwrap();
            assert_eq!(rsp.result_code, 0);
            assert_eq!(rsp.offset as usize, out.len());
            assert_eq!(rsp.user_id, self.user);
            assert_eq!(rsp.file_data.len(), BLOCK.min(size - out.len()));
            out.extend_from_slice(&rsp.file_data);
            if out.len() >= size {
                break;
            }
        }
        let st = self.state().await;
        assert_eq!(st.state, ClientFileState::ClientFileDone as i32);
        assert_eq!(st.user_id, from);
        self.closed().await;
        out
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The files under a directory tree (relative names), sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(top) = std::fs::read_dir(dir) else {
        return out;
    };
    for sub in top.flatten() {
        if let Ok(entries) = std::fs::read_dir(sub.path()) {
            for e in entries.flatten() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
