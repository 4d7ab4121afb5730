//! Logging a simulated user in as a stock client does: `GET /msg_server` on login_server,
//! then TCP to the msg_server it names and IMLoginReq. Sockets can be spread over several
//! loopback source addresses, because one source address has only ~28k ephemeral ports.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::bail;
use im_proto::base::ClientType;
use im_proto::client::{ClientConfig, ClientError, Events, ImClient, LoginHttp, LoginParams};

/// How long one login step (HTTP, connect, IMLoginReq) may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Heartbeat interval of simulated clients: within every idle timeout of msg_server (PC
/// 120 s) with margin, and rare enough to cost nothing at 50,000 connections.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Unsolicited PDUs a simulated client buffers before its reader waits (a group fan-out
/// burst fits).
const EVENT_BUFFER: usize = 4096;

/// A logged-in connection.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub client: ImClient,
    /// Unsolicited PDUs: deliveries, acks, kicks, notifies.
    pub events: Events,
    /// Our user id, from IMLoginRes.
    pub user_id: u32,
    /// The msg_server address we were sent to.
    pub server: String,
}

/// Opens logged-in connections.
#[derive(Debug)]
pub struct Dialer {
    http: LoginHttp,
    login_url: String,
    /// Skip the HTTP step and use this msg_server (`host:port`).
    direct: Option<String>,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
}

impl Dialer {
    /// A dialer for `login_url` (or straight to `direct`), binding sockets round-robin to
    /// `sources` (empty: let the OS choose).
    pub fn new(
        login_url: &str,
        direct: Option<String>,
        sources: Vec<IpAddr>,
    ) -> anyhow::Result<Self> {
        if login_url.is_empty() && direct.is_none() {
            bail!(
                "no login_server URL: set `login_url` in the imctl config, IM_LOGIN_URL or \
                 --login-url (or give --msg-server HOST:PORT)"
            );
        }
        Ok(Dialer {
            http: LoginHttp::new(LOGIN_TIMEOUT)?,
            login_url: login_url.to_owned(),
            direct,
            sources,
            next_source: AtomicUsize::new(0),
        })
    }

    fn source(&self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let i = self.next_source.fetch_add(1, Ordering::Relaxed);
        Some(self.sources[i % self.sources.len()])
    }

    /// Logs `name` in; the error says which step failed.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        client_type: ClientType,
    ) -> Result<Session, ClientError> {
        let server = match &self.direct {
            Some(d) => d.clone(),
            None => self.http.fetch(&self.login_url).await?.addr(),
        };
        let config = ClientConfig {
            connect_timeout: LOGIN_TIMEOUT,
            request_timeout: LOGIN_TIMEOUT,
            heartbeat_interval: Some(HEARTBEAT),
            event_buffer: EVENT_BUFFER,
            local_addr: self.source(),
            ..ClientConfig::default()
        };
        let (client, events) = ImClient::connect(&server, config).await?;
        let res = client
            .login(&LoginParams::new(name, password).with_client_type(client_type))
            .await?;
        let user_id = res.user_info.map(|u| u.user_id).unwrap_or(0);
        Ok(Session {
            client,
            events,
            user_id,
            server,
        })
    }
}

/// Source addresses 127.0.0.1 .. 127.0.0.n (n >= 1), for a loopback target.
pub fn loopback_sources(n: usize) -> Vec<IpAddr> {
    (1..=n.clamp(1, 254))
        .map(|i| IpAddr::from([127, 0, 0, i as u8]))
        .collect()
}

/// Connections one source address can hold to one server port (the ephemeral port range,
/// rounded down).
pub const PORTS_PER_SOURCE: usize = 25_000;

/// Source addresses needed for `connections` sockets (0 = bind none, the OS chooses).
pub fn sources_for(connections: usize) -> usize {
    if connections <= PORTS_PER_SOURCE {
        0
    } else {
        connections.div_ceil(PORTS_PER_SOURCE) + 1
    }
}

/// Parses a client type name (windows, mac, ios, android).
pub fn client_type(name: &str) -> anyhow::Result<ClientType> {
    Ok(match crate::cli::parse_client_type(name)? {
        0x01 => ClientType::Windows,
        0x02 => ClientType::Mac,
        0x11 => ClientType::Ios,
        _ => ClientType::Android,
    })
}
