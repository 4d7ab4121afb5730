//! im-cluster: a whole suite in one process — db_proxy_server, route_server(s),
//! login_server, msg_server(s), and (optionally, on by default) file_server, push_server,
//! msfs and http_msg_server — on ephemeral or given ports, storage SQLite by default.
//!
//! End-to-end tests start one per test; `imctl demo` starts one for newcomers. Every server
//! runs its real `run(config, listeners, shutdown)` with real sockets on loopback, so what is
//! tested here is what the binaries do. Servers can be stopped and restarted one by one on the
//! same address (fault tests).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use im_common::CancellationToken;
use im_storage::StorageConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which server of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerId {
    /// The login_server.
    Login,
    /// The db_proxy_server.
    DbProxy,
    /// route_server number i.
    Route(usize),
    /// msg_server number i.
    Msg(usize),
    /// The file_server.
    File,
    /// The push_server.
    Push,
    /// msfs.
    Msfs,
    /// The http_msg_server.
    HttpMsg,
}

impl ServerId {
    /// The server kind, as imctl's config names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerId::Login => "login_server",
            ServerId::DbProxy => "db_proxy_server",
            ServerId::Route(_) => "route_server",
            ServerId::Msg(_) => "msg_server",
            ServerId::File => "file_server",
            ServerId::Push => "push_server",
            ServerId::Msfs => "msfs",
            ServerId::HttpMsg => "http_msg_server",
        }
    }
}

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerId::Login => f.write_str("login_server"),
            ServerId::DbProxy => f.write_str("db_proxy_server"),
            ServerId::Route(i) => write!(f, "route_server-{}", i + 1),
            ServerId::Msg(i) => write!(f, "msg_server-{}", i + 1),
            ServerId::File => f.write_str("file_server"),
            ServerId::Push => f.write_str("push_server"),
            ServerId::Msfs => f.write_str("msfs"),
            ServerId::HttpMsg => f.write_str("http_msg_server"),
        }
    }
}

/// Where the servers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// Every port chosen by the OS (tests).
    Ephemeral,
    /// The original TeamTalk ports: login HTTP 8080 and msg_server port 8100, route_server
    /// 8200.., db_proxy 10600, msg_servers 8000.., file_server 8600 (clients) and 8601
    /// (msg_servers), push_server 8500, msfs 8700, http_msg_server 8400; admin ports are the
    /// main port + 10000.
    Standard,
}

/// A function adjusting the server configs before start.
pub type Tune = Arc<dyn Fn(&mut ServerConfigs) + Send + Sync>;

/// How to build a cluster.
#[derive(Clone)]
pub struct ClusterOptions {
    /// Directory for the SQLite file (created if missing).
    pub data_dir: PathBuf,
    /// Number of msg_servers.
    pub msg_servers: usize,
    /// Number of route_servers.
    pub route_servers: usize,
    /// Storage; `None` = SQLite at `<data_dir>/teamtalk.db`.
    pub storage: Option<StorageConfig>,
    /// Demo data loaded into an empty store (fixtures/seed/demo.toml).
    pub seed: Option<PathBuf>,
    /// Admin token of every server; `None` = a random one.
    pub admin_token: Option<String>,
    /// Address every server binds (also handed to clients as the msg_server address).
    pub bind_ip: IpAddr,
    /// Ports.
    pub ports: Ports,
    /// Also start file_server, push_server (no provider enabled unless tuned), msfs and
    /// http_msg_server.
    pub extras: bool,
    /// Adjusts the configs before start (tests shorten timeouts this way).
    pub tune: Option<Tune>,
    /// TLS beside the plain ports (tests): `None` (the default) = plain only.
    pub tls: Option<ClusterTls>,
}

/// TLS in a cluster: every msg_server gets a TLS client port; db_proxy and the
/// route_servers get TLS ports that require a client certificate (mutual TLS), and the
/// msg_servers reach them, and login_server's TLS msg_server port, at `tls://` addresses;
/// login_server, msfs and http_msg_server also answer over HTTPS. file_server and
/// push_server stay plain.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The servers' certificate chain (PEM).
    pub cert_file: String,
    /// Its private key.
    pub key_file: String,
    /// The CA that signed both certificates: trusted by the msg_servers and required of
    /// them by db_proxy and the route_servers.
    pub ca_file: String,
    /// The msg_servers' client certificate.
    pub client_cert_file: String,
    /// Its private key.
    pub client_key_file: String,
}

/// Which TLS listener of a server (see [`ClusterTls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsPort {
    /// msg_server's TLS client port; db_proxy's and route_server's TLS link port;
    /// login_server's TLS msg_server port.
    Main,
    /// login_server's, msfs's and http_msg_server's HTTPS port.
    Https,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("data_dir", &self.data_dir)
            .field("msg_servers", &self.msg_servers)
            .field("route_servers", &self.route_servers)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// Two msg_servers, one route_server, SQLite in `data_dir`, ephemeral ports on 127.0.0.1.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            data_dir: data_dir.into(),
            msg_servers: 2,
            route_servers: 1,
            storage: None,
            seed: None,
            admin_token: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::Ephemeral,
            extras: true,
            tune: None,
            tls: None,
        }
    }
}

/// The configs of every server, as the cluster will start them (see [`ClusterOptions::tune`]).
#[derive(Debug, Clone)]
pub struct ServerConfigs {
    /// login_server.
    pub login: login_server::Config,
    /// db_proxy_server.
    pub db_proxy: db_proxy_server::Config,
    /// route_servers.
    pub route: Vec<route_server::Config>,
    /// msg_servers.
    pub msg: Vec<msg_server::Config>,
    /// file_server (with `extras`).
    pub file: Option<file_server::Config>,
    /// push_server (with `extras`).
    pub push: Option<push_server::Config>,
    /// msfs (with `extras`).
    pub msfs: Option<msfs::Config>,
    /// http_msg_server (with `extras`).
    pub http_msg: Option<http_msg_server::Config>,
}

/// Addresses of one server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Which server.
    pub id: ServerId,
    /// Main address (msg_server: the client port; login_server, msfs and http_msg_server:
    /// the HTTP port; route_server, db_proxy and push_server: the port servers link to;
    /// file_server: the client port).
    pub addr: SocketAddr,
    /// Admin port.
    pub admin: SocketAddr,
    /// login_server: the port msg_servers register on; file_server: the port msg_servers
    /// link to.
    pub extra: Option<SocketAddr>,
    /// The TLS twin of `addr` (login_server: of `extra`), with [`ClusterOptions::tls`].
    pub tls: Option<SocketAddr>,
}

struct Running {
    endpoint: Endpoint,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A running suite.
pub struct Cluster {
    configs: ServerConfigs,
    servers: Vec<Running>,
    shutdown: CancellationToken,
    token: String,
    api_token: String,
    login_url: String,
    seed: Option<PathBuf>,
    /// TLS listeners bound at start, taken by the first spawn of their server.
    tls_bound: HashMap<(ServerId, TlsPort), TcpListener>,
    /// Their addresses, bound again on a restart.
    tls_addrs: HashMap<(ServerId, TlsPort), SocketAddr>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("login_url", &self.login_url)
            .field("servers", &self.endpoints())
            .finish_non_exhaustive()
    }
}

/// Standard ports (see [`Ports::Standard`]).
const STD_LOGIN_HTTP: u16 = 8080;
const STD_LOGIN_MSG: u16 = 8100;
const STD_ROUTE: u16 = 8200;
const STD_DB_PROXY: u16 = 10600;
const STD_MSG: u16 = 8000;
const STD_FILE_CLIENT: u16 = 8600;
const STD_FILE_MSG: u16 = 8601;
const STD_PUSH: u16 = 8500;
const STD_MSFS: u16 = 8700;
const STD_HTTP_MSG: u16 = 8400;
const STD_ADMIN_OFFSET: u16 = 10000;

async fn bind(ip: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port))
        .await
        .with_context(|| format!("binding {what} on {ip}:{port}"))
}

fn addr_of(l: &TcpListener) -> anyhow::Result<SocketAddr> {
    l.local_addr().context("local address of a listener")
}

/// A fresh random admin token.
pub fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

struct Bound {
    login_http: TcpListener,
    login_msg: TcpListener,
    login_admin: TcpListener,
    db: TcpListener,
    db_admin: TcpListener,
    route: Vec<(TcpListener, TcpListener)>,
    msg: Vec<(TcpListener, TcpListener)>,
    /// (client, msg_servers, admin)
    file: Option<(TcpListener, TcpListener, TcpListener)>,
    push: Option<(TcpListener, TcpListener)>,
    msfs: Option<(TcpListener, TcpListener)>,
    http_msg: Option<(TcpListener, TcpListener)>,
}

impl Cluster {
    /// Binds every port, starts every server and waits until the suite can serve a login:
    /// every msg_server registered with login_server and linked to the route_servers.
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;
        let ip = opts.bind_ip;
        let std_port = |p: u16| if opts.ports == Ports::Standard { p } else { 0 };
        let std_admin = |p: u16| {
            if opts.ports == Ports::Standard {
                p + STD_ADMIN_OFFSET
            } else {
                0
            }
        };
        // Bind everything first, so that no server dials a port that is not listening yet.
        let mut bound = Bound {
            login_http: bind(ip, std_port(STD_LOGIN_HTTP), "login_server HTTP").await?,
            login_msg: bind(ip, std_port(STD_LOGIN_MSG), "login_server msg_server port").await?,
            login_admin: bind(ip, std_admin(STD_LOGIN_HTTP), "login_server admin").await?,
            db: bind(ip, std_port(STD_DB_PROXY), "db_proxy_server").await?,
            db_admin: bind(ip, std_admin(STD_DB_PROXY), "db_proxy_server admin").await?,
            route: Vec::new(),
            msg: Vec::new(),
            file: None,
            push: None,
            msfs: None,
            http_msg: None,
        };
        if opts.extras {
            bound.file = Some((
                bind(ip, std_port(STD_FILE_CLIENT), "file_server").await?,
                bind(ip, std_port(STD_FILE_MSG), "file_server msg_server port").await?,
                bind(ip, std_admin(STD_FILE_CLIENT), "file_server admin").await?,
            ));
            bound.push = Some((
                bind(ip, std_port(STD_PUSH), "push_server").await?,
                bind(ip, std_admin(STD_PUSH), "push_server admin").await?,
            ));
            bound.msfs = Some((
                bind(ip, std_port(STD_MSFS), "msfs").await?,
                bind(ip, std_admin(STD_MSFS), "msfs admin").await?,
            ));
            bound.http_msg = Some((
                bind(ip, std_port(STD_HTTP_MSG), "http_msg_server").await?,
                bind(ip, std_admin(STD_HTTP_MSG), "http_msg_server admin").await?,
            ));
        }
        for i in 0..opts.route_servers.max(1) {
            let p = STD_ROUTE + i as u16;
            bound.route.push((
                bind(ip, std_port(p), "route_server").await?,
                bind(ip, std_admin(p), "route_server admin").await?,
            ));
        }
        for i in 0..opts.msg_servers.max(1) {
            let p = STD_MSG + i as u16;
            bound.msg.push((
                bind(ip, std_port(p), "msg_server").await?,
                bind(ip, std_admin(p), "msg_server admin").await?,
            ));
        }
        let mut tls_bound = HashMap::new();
        if opts.tls.is_some() {
            let mut ids = vec![
                (ServerId::DbProxy, TlsPort::Main),
                (ServerId::Login, TlsPort::Main),
                (ServerId::Login, TlsPort::Https),
            ];
            ids.extend((0..bound.route.len()).map(|i| (ServerId::Route(i), TlsPort::Main)));
            ids.extend((0..bound.msg.len()).map(|i| (ServerId::Msg(i), TlsPort::Main)));
            if opts.extras {
                ids.push((ServerId::Msfs, TlsPort::Https));
                ids.push((ServerId::HttpMsg, TlsPort::Https));
            }
            for key in ids {
                let l = bind(ip, 0, &format!("{} TLS", key.0)).await?;
                tls_bound.insert(key, l);
            }
        }
        let mut tls_addrs = HashMap::new();
        for (k, l) in &tls_bound {
            tls_addrs.insert(*k, addr_of(l)?);
        }
        let token = opts.admin_token.clone().unwrap_or_else(random_token);
        let api_token = random_token();
        let mut configs = Self::build_configs(&opts, &bound, &token, &api_token)?;
        if let Some(tls) = &opts.tls {
            Self::tls_configs(&mut configs, tls, &tls_addrs);
        }
        if let Some(tune) = &opts.tune {
            tune(&mut configs);
        }
        let login_url = format!("http://{}/msg_server", addr_of(&bound.login_http)?);
        let mut cluster = Cluster {
            configs,
            servers: Vec::new(),
            shutdown: CancellationToken::new(),
            token,
            api_token,
            login_url,
            seed: opts.seed.clone(),
            tls_bound,
            tls_addrs,
        };
        cluster.spawn_all(bound)?;
        cluster
            .wait_ready(Duration::from_secs(30))
            .await
            .context("waiting for the cluster to be ready")?;
        Ok(cluster)
    }

    fn build_configs(
        opts: &ClusterOptions,
        b: &Bound,
        token: &str,
        api_token: &str,
    ) -> anyhow::Result<ServerConfigs> {
        let admin = |l: &TcpListener| -> anyhow::Result<im_common::config::AdminConfig> {
            Ok(im_common::config::AdminConfig {
                listen: addr_of(l)?.to_string(),
                token: token.to_owned(),
            })
        };
        let storage = match &opts.storage {
            Some(s) => s.clone(),
            None => {
                let mut s = StorageConfig::default();
                s.sqlite.path = opts.data_dir.join("teamtalk.db");
                s
            }
        };
        let db_proxy = db_proxy_server::Config {
            name: "db_proxy_server-1".into(),
            listen: addr_of(&b.db)?.to_string(),
            storage,
            admin: admin(&b.db_admin)?,
            ..db_proxy_server::Config::default()
        };
        let login = login_server::Config {
            name: "login_server-1".into(),
            http_listen: addr_of(&b.login_http)?.to_string(),
            msg_server_listen: addr_of(&b.login_msg)?.to_string(),
            legacy_client_listen: String::new(),
            admin: admin(&b.login_admin)?,
            ..login_server::Config::default()
        };
        let mut route = Vec::new();
        for (i, (l, a)) in b.route.iter().enumerate() {
            route.push(route_server::Config {
                name: format!("route_server-{}", i + 1),
                listen: addr_of(l)?.to_string(),
                admin: admin(a)?,
                ..route_server::Config::default()
            });
        }
        let route_addrs: Vec<String> = route.iter().map(|r| r.listen.clone()).collect();
        let mut msg = Vec::new();
        for (i, (l, a)) in b.msg.iter().enumerate() {
            msg.push(msg_server::Config {
                name: format!("msg_server-{}", i + 1),
                listen: addr_of(l)?.to_string(),
                ip1: opts.bind_ip.to_string(),
                db_proxy: vec![db_proxy.listen.clone()],
                route_servers: route_addrs.clone(),
                login_servers: vec![login.msg_server_listen.clone()],
                admin: admin(a)?,
                ..msg_server::Config::default()
            });
        }
        let mut configs = ServerConfigs {
            login,
            db_proxy,
            route,
            msg,
            file: None,
            push: None,
            msfs: None,
            http_msg: None,
        };
        let ip = opts.bind_ip;
        if let Some((http, admin_l)) = &b.msfs {
            let cfg = msfs::Config {
                name: "msfs-1".into(),
                listen: addr_of(http)?.to_string(),
                data_dir: opts.data_dir.join("msfs"),
                admin: admin(admin_l)?,
                ..msfs::Config::default()
            };
            let url = format!("http://{}/", cfg.listen);
            configs.login.msfs = url.clone();
            configs.db_proxy.msfs_url = url;
            configs.msfs = Some(cfg);
        }
        if let Some((http, admin_l)) = &b.http_msg {
            let cfg = http_msg_server::Config {
                name: "http_msg_server-1".into(),
                listen: addr_of(http)?.to_string(),
                api_token: api_token.to_owned(),
                db_proxy: vec![configs.db_proxy.listen.clone()],
                route_servers: route_addrs.clone(),
                admin: admin(admin_l)?,
                ..http_msg_server::Config::default()
            };
            configs.login.discovery = format!("http://{}/api/discovery", cfg.listen);
            configs.http_msg = Some(cfg);
        }
        if let Some((client, msg_l, admin_l)) = &b.file {
            let cfg = file_server::Config {
                name: "file_server-1".into(),
                client_listen: addr_of(client)?.to_string(),
                msg_server_listen: addr_of(msg_l)?.to_string(),
                advertise: vec![ip.to_string()],
                data_dir: opts.data_dir.join("offline_file"),
                db_proxy: vec![configs.db_proxy.listen.clone()],
                admin: admin(admin_l)?,
                ..file_server::Config::default()
            };
            for m in &mut configs.msg {
                m.file_servers = vec![cfg.msg_server_listen.clone()];
            }
            configs.file = Some(cfg);
        }
        if let Some((main, admin_l)) = &b.push {
            let mut cfg = push_server::Config {
                name: "push_server-1".into(),
                listen: addr_of(main)?.to_string(),
                admin: admin(admin_l)?,
                ..push_server::Config::default()
            };
            cfg.db_proxy.addresses = vec![configs.db_proxy.listen.clone()];
            for m in &mut configs.msg {
                m.push_servers = vec![cfg.listen.clone()];
            }
            configs.push = Some(cfg);
        }
        Ok(configs)
    }

    fn tls_configs(
        c: &mut ServerConfigs,
        tls: &ClusterTls,
        addrs: &HashMap<(ServerId, TlsPort), SocketAddr>,
    ) {
        use im_common::tls::{TlsClientConfig, TlsConfig};
        let at = |id: ServerId, p: TlsPort| addrs.get(&(id, p)).map(|a| a.to_string());
        let tls_url = |id: ServerId| at(id, TlsPort::Main).map(|a| format!("tls://{a}"));
        let server = TlsConfig {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            ..TlsConfig::default()
        };
        let mutual = TlsConfig {
            client_ca_file: tls.ca_file.clone(),
            ..server.clone()
        };
        c.db_proxy.tls_listen = at(ServerId::DbProxy, TlsPort::Main).unwrap_or_default();
        c.db_proxy.tls = mutual.clone();
        for (i, r) in c.route.iter_mut().enumerate() {
            r.tls_listen = at(ServerId::Route(i), TlsPort::Main).unwrap_or_default();
            r.tls = mutual.clone();
        }
        c.login.msg_server_tls_listen = at(ServerId::Login, TlsPort::Main).unwrap_or_default();
        c.login.https_listen = at(ServerId::Login, TlsPort::Https).unwrap_or_default();
        c.login.tls = server.clone();
        if let Some(m) = &mut c.msfs {
            m.https_listen = at(ServerId::Msfs, TlsPort::Https).unwrap_or_default();
            m.tls = server.clone();
        }
        if let Some(h) = &mut c.http_msg {
            h.https_listen = at(ServerId::HttpMsg, TlsPort::Https).unwrap_or_default();
            h.tls = server.clone();
        }
        let routes: Vec<String> = (0..c.route.len())
            .filter_map(|i| tls_url(ServerId::Route(i)))
            .collect();
        for (i, m) in c.msg.iter_mut().enumerate() {
            m.tls_listen = at(ServerId::Msg(i), TlsPort::Main).unwrap_or_default();
            m.tls = server.clone();
            m.db_proxy = tls_url(ServerId::DbProxy).into_iter().collect();
            m.route_servers = routes.clone();
            m.login_servers = tls_url(ServerId::Login).into_iter().collect();
            m.tls_client = TlsClientConfig {
                ca_file: tls.ca_file.clone(),
                server_name: String::new(),
                cert_file: tls.client_cert_file.clone(),
                key_file: tls.client_key_file.clone(),
            };
        }
    }

    /// The TLS listener of `id` with [`ClusterOptions::tls`]: the one bound at start, or
    /// the same address bound again (restart).
    fn take_tls(&mut self, id: ServerId, port: TlsPort) -> anyhow::Result<Option<TcpListener>> {
        if let Some(l) = self.tls_bound.remove(&(id, port)) {
            return Ok(Some(l));
        }
        let Some(addr) = self.tls_addrs.get(&(id, port)) else {
            return Ok(None);
        };
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding {id} TLS on {addr}"))?;
        l.set_nonblocking(true)?;
        Ok(Some(TcpListener::from_std(l)?))
    }

    /// The TLS client port of msg_server `i`, with [`ClusterOptions::tls`].
    pub fn msg_server_tls_addr(&self, i: usize) -> Option<SocketAddr> {
        self.tls_addrs
            .get(&(ServerId::Msg(i), TlsPort::Main))
            .copied()
    }

    /// The HTTPS port of login_server, msfs or http_msg_server, with
    /// [`ClusterOptions::tls`].
    pub fn https_addr(&self, id: ServerId) -> Option<SocketAddr> {
        self.tls_addrs.get(&(id, TlsPort::Https)).copied()
    }

    fn spawn_all(&mut self, b: Bound) -> anyhow::Result<()> {
        let Bound {
            login_http,
            login_msg,
            login_admin,
            db,
            db_admin,
            route,
            msg,
            file,
            push,
            msfs,
            http_msg,
        } = b;
        if let Some((http, admin)) = msfs {
            self.spawn_msfs(http, admin)?;
        }
        self.spawn_db_proxy(db, db_admin)?;
        for (i, (l, a)) in route.into_iter().enumerate() {
            self.spawn_route(i, l, a)?;
        }
        if let Some((client, msg_l, admin)) = file {
            self.spawn_file(client, msg_l, admin)?;
        }
        if let Some((main, admin)) = push {
            self.spawn_push(main, admin)?;
        }
        if let Some((http, admin)) = http_msg {
            self.spawn_http_msg(http, admin)?;
        }
        self.spawn_login(login_http, login_msg, login_admin)?;
        for (i, (l, a)) in msg.into_iter().enumerate() {
            self.spawn_msg(i, l, a)?;
        }
        Ok(())
    }

    fn spawn_file(
        &mut self,
        client: TcpListener,
        msg: TcpListener,
        admin: TcpListener,
    ) -> anyhow::Result<()> {
        let config = self.configs.file.clone().context("no file_server config")?;
        let endpoint = Endpoint {
            id: ServerId::File,
            addr: addr_of(&client)?,
            admin: addr_of(&admin)?,
            extra: Some(addr_of(&msg)?),
            tls: None,
        };
        let listeners = file_server::Listeners {
            client,
            msg_servers: msg,
            msg_servers_tls: None,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            file_server::run(config, listeners, s).await
        });
        Ok(())
    }

    fn spawn_push(&mut self, main: TcpListener, admin: TcpListener) -> anyhow::Result<()> {
        let config = self.configs.push.clone().context("no push_server config")?;
        let endpoint = Endpoint {
            id: ServerId::Push,
            addr: addr_of(&main)?,
            admin: addr_of(&admin)?,
            extra: None,
            tls: None,
        };
        let listeners = push_server::Listeners {
            msg_servers: main,
            msg_servers_tls: None,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            push_server::run(config, listeners, s).await
        });
        Ok(())
    }

    fn spawn_msfs(&mut self, http: TcpListener, admin: TcpListener) -> anyhow::Result<()> {
        let config = self.configs.msfs.clone().context("no msfs config")?;
        let endpoint = Endpoint {
            id: ServerId::Msfs,
            addr: addr_of(&http)?,
            admin: addr_of(&admin)?,
            extra: None,
            tls: None,
        };
        let https = self.take_tls(ServerId::Msfs, TlsPort::Https)?;
        let listeners = msfs::Listeners {
            http,
            https,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            msfs::run(config, listeners, s).await
        });
        Ok(())
    }

    fn spawn_http_msg(&mut self, http: TcpListener, admin: TcpListener) -> anyhow::Result<()> {
        let config = self
            .configs
            .http_msg
            .clone()
            .context("no http_msg_server config")?;
        let endpoint = Endpoint {
            id: ServerId::HttpMsg,
            addr: addr_of(&http)?,
            admin: addr_of(&admin)?,
            extra: None,
            tls: None,
        };
        let https = self.take_tls(ServerId::HttpMsg, TlsPort::Https)?;
        let listeners = http_msg_server::Listeners {
            http,
            https,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            http_msg_server::run(config, listeners, s).await
        });
        Ok(())
    }

    /// Spawns a server task under its own stop token (a child of the cluster's).
    fn launch<F, Fut>(&mut self, endpoint: Endpoint, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = self.child_token();
        let task = tokio::spawn(run(stop.clone()));
        self.put(Running {
            endpoint,
            stop,
            task: Some(task),
        });
    }

    fn child_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    fn put(&mut self, r: Running) {
        if let Some(slot) = self
            .servers
            .iter_mut()
            .find(|s| s.endpoint.id == r.endpoint.id)
        {
            *slot = r;
        } else {
            self.servers.push(r);
        }
    }

    fn spawn_db_proxy(&mut self, main: TcpListener, admin: TcpListener) -> anyhow::Result<()> {
        let main_tls = self.take_tls(ServerId::DbProxy, TlsPort::Main)?;
        let endpoint = Endpoint {
            id: ServerId::DbProxy,
            addr: addr_of(&main)?,
            admin: addr_of(&admin)?,
            extra: None,
            tls: main_tls.as_ref().map(addr_of).transpose()?,
        };
        let config = self.configs.db_proxy.clone();
        let seed = self.seed.clone();
        let listeners = db_proxy_server::Listeners {
            main,
            main_tls,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            db_proxy_server::run_seeded(config, listeners, s, seed.as_deref()).await
        });
        Ok(())
    }

    fn spawn_route(
        &mut self,
        i: usize,
        main: TcpListener,
        admin: TcpListener,
    ) -> anyhow::Result<()> {
        let tls = self.take_tls(ServerId::Route(i), TlsPort::Main)?;
        let endpoint = Endpoint {
            id: ServerId::Route(i),
            addr: addr_of(&main)?,
            admin: addr_of(&admin)?,
            extra: None,
            tls: tls.as_ref().map(addr_of).transpose()?,
        };
        let config = self.configs.route[i].clone();
        let listeners = route_server::Listeners {
            msg_servers: main,
            msg_servers_tls: tls,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            route_server::run(config, listeners, s).await
        });
        Ok(())
    }

    fn spawn_login(
        &mut self,
        http: TcpListener,
        msg: TcpListener,
        admin: TcpListener,
    ) -> anyhow::Result<()> {
        let msg_servers_tls = self.take_tls(ServerId::Login, TlsPort::Main)?;
        let https = self.take_tls(ServerId::Login, TlsPort::Https)?;
        let endpoint = Endpoint {
            id: ServerId::Login,
            addr: addr_of(&http)?,
            admin: addr_of(&admin)?,
            extra: Some(addr_of(&msg)?),
            tls: msg_servers_tls.as_ref().map(addr_of).transpose()?,
        };
        let config = self.configs.login.clone();
        let listeners = login_server::Listeners {
            http,
            msg_servers: msg,
            https,
            msg_servers_tls,
            legacy_client: None,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            login_server::run(config, listeners, s).await
        });
        Ok(())
    }

    fn spawn_msg(&mut self, i: usize, main: TcpListener, admin: TcpListener) -> anyhow::Result<()> {
        let tls = self.take_tls(ServerId::Msg(i), TlsPort::Main)?;
        let endpoint = Endpoint {
            id: ServerId::Msg(i),
            addr: addr_of(&main)?,
            admin: addr_of(&admin)?,
            extra: None,
            tls: tls.as_ref().map(addr_of).transpose()?,
        };
        let config = self.configs.msg[i].clone();
        let listeners = msg_server::Listeners {
            client: main,
            tls,
            admin: Some(admin),
            metrics: None,
        };
        self.launch(endpoint, move |s| async move {
            msg_server::run(config, listeners, s).await
        });
        Ok(())
    }

    /// `GET /msg_server` URL of the login_server.
    pub fn login_url(&self) -> &str {
        &self.login_url
    }

    /// The admin token of every server.
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// The API token of http_msg_server.
    pub fn http_api_token(&self) -> &str {
        &self.api_token
    }

    /// The configs the servers were started with.
    pub fn configs(&self) -> &ServerConfigs {
        &self.configs
    }

    /// Every server's addresses.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.servers.iter().map(|s| s.endpoint.clone()).collect()
    }

    /// One server's addresses.
    pub fn endpoint(&self, id: ServerId) -> Option<Endpoint> {
        self.servers
            .iter()
            .find(|s| s.endpoint.id == id)
            .map(|s| s.endpoint.clone())
    }

    /// Client address of msg_server `i`.
    pub fn msg_server_addr(&self, i: usize) -> Option<SocketAddr> {
        self.endpoint(ServerId::Msg(i)).map(|e| e.addr)
    }

    /// Admin addresses by server kind, for an imctl config.
    pub fn admin_endpoints(&self) -> Vec<(&'static str, String)> {
        self.servers
            .iter()
            .map(|s| (s.endpoint.id.kind(), s.endpoint.admin.to_string()))
            .collect()
    }

    /// The SQLite file, when the store is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        (self.configs.db_proxy.storage.backend == im_storage::config::Backend::Sqlite)
            .then_some(self.configs.db_proxy.storage.sqlite.path.as_path())
    }

    /// Waits until every msg_server is registered with login_server and linked to every
    /// route_server, polling the admin ports.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let want_msg = self.configs.msg.len();
        loop {
            let status = self.readiness().await;
            match status {
                Ok(true) => return Ok(()),
                Ok(false) | Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(false) => {
                    anyhow::bail!("not every one of {want_msg} msg_servers registered in time")
                }
                Err(e) => return Err(e.context("cluster not ready in time")),
            }
            // A server task that already ended (e.g. a bad config) will never be ready.
            for s in &self.servers {
                if s.task.as_ref().is_some_and(|t| t.is_finished()) {
                    anyhow::bail!("{} stopped during start-up (see its log)", s.endpoint.id);
                }
            }
        }
    }

    async fn readiness(&self) -> anyhow::Result<bool> {
        use im_proto::admin::{
            ImAdminMsgServerListReq, ImAdminRouteListReq, ImAdminStatsReq, LinkState,
        };
        // Every msg_server has every upstream link up (db_proxy pool, route_servers,
        // login_server, and file_server / push_server when present).
        for (i, _) in self.configs.msg.iter().enumerate() {
            let Some(m) = self.endpoint(ServerId::Msg(i)) else {
                continue;
            };
            let c = admin_client(&m.admin.to_string(), &self.token).await?;
            let stats = c.request(&ImAdminStatsReq {}).await?;
            c.close();
            let links = stats.stats.map(|s| s.upstreams).unwrap_or_default();
            if links.is_empty() || links.iter().any(|l| l.state() != LinkState::Connected) {
                return Ok(false);
            }
        }
        let want_msg = self.configs.msg.len();
        let login = self.endpoint(ServerId::Login).context("no login_server")?;
        let c = admin_client(&login.admin.to_string(), &self.token).await?;
        let list = c.request(&ImAdminMsgServerListReq {}).await?;
        c.close();
        if list.servers.len() < want_msg {
            return Ok(false);
        }
        for (i, _) in self.configs.route.iter().enumerate() {
            let Some(r) = self.endpoint(ServerId::Route(i)) else {
                continue;
            };
            let c = admin_client(&r.admin.to_string(), &self.token).await?;
            let page = c
                .request(&ImAdminRouteListReq {
                    after_user_id: Some(0),
                    limit: Some(1),
                })
                .await?;
            c.close();
            if (page.msg_server_links() as usize) < want_msg {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Stops one server (its shutdown runs as on SIGTERM) and waits for it to return.
    pub async fn stop(&mut self, id: ServerId) -> anyhow::Result<()> {
        let s = self
            .servers
            .iter_mut()
            .find(|s| s.endpoint.id == id)
            .with_context(|| format!("no {id} in this cluster"))?;
        s.stop.cancel();
        if let Some(t) = s.task.take() {
            t.await
                .with_context(|| format!("{id} panicked"))?
                .with_context(|| format!("{id} failed"))?;
        }
        Ok(())
    }

    /// Starts a stopped server again on the same addresses.
    pub async fn restart(&mut self, id: ServerId) -> anyhow::Result<()> {
        let e = self
            .endpoint(id)
            .with_context(|| format!("no {id} in this cluster"))?;
        let ip = e.addr.ip();
        let main = bind(ip, e.addr.port(), &id.to_string()).await?;
        let admin = bind(ip, e.admin.port(), &format!("{id} admin")).await?;
        match id {
            ServerId::DbProxy => self.spawn_db_proxy(main, admin),
            ServerId::Route(i) => self.spawn_route(i, main, admin),
            ServerId::Msg(i) => self.spawn_msg(i, main, admin),
            ServerId::Login => {
                let extra = e
                    .extra
                    .context("login_server without its msg_server port")?;
                let msg = bind(ip, extra.port(), "login_server msg_server port").await?;
                self.spawn_login(main, msg, admin)
            }
            ServerId::File => {
                let extra = e.extra.context("file_server without its msg_server port")?;
                let msg = bind(ip, extra.port(), "file_server msg_server port").await?;
                self.spawn_file(main, msg, admin)
            }
            ServerId::Push => self.spawn_push(main, admin),
            ServerId::Msfs => self.spawn_msfs(main, admin),
            ServerId::HttpMsg => self.spawn_http_msg(main, admin),
        }
    }

    /// Stops every server in order (msg_servers first, db_proxy last) and reports the first
    /// failure.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut order: Vec<ServerId> = self.servers.iter().map(|s| s.endpoint.id).collect();
        order.sort_by_key(|id| match id {
            ServerId::Msg(_) | ServerId::HttpMsg => 0,
            ServerId::Login | ServerId::File | ServerId::Push => 1,
            ServerId::Route(_) => 2,
            ServerId::DbProxy => 3,
            ServerId::Msfs => 4,
        });
        let mut first_err = None;
        for id in order {
            if let Err(e) = self.stop(id).await {
                first_err.get_or_insert(e);
            }
        }
        self.shutdown.cancel();
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

async fn admin_client(addr: &str, token: &str) -> anyhow::Result<im_proto::client::ImClient> {
    use im_proto::admin::{AdminResult, ImAdminAuthReq};
    use im_proto::client::{ClientConfig, ImClient};
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        heartbeat_interval: None,
        ..ClientConfig::default()
    };
    let (c, _events) = ImClient::connect(addr, config).await?;
    let rsp = c
        .request(&ImAdminAuthReq {
            token: Some(token.to_owned()),
            client_name: Some("im-cluster".into()),
        })
        .await?;
    anyhow::ensure!(
        rsp.result_code() == AdminResult::AdminOk,
        "admin token refused by {addr}"
    );
    Ok(c)
}
