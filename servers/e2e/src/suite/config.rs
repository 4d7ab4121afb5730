//! The TOML configs of a process suite and its seed file, written the way
//! scripts/cluster.sh writes them (the same keys an operator would set).

use std::fmt::Write as _;

/// Password of every seeded user.
pub const PASSWORD: &str = "e2e-password";

/// The group every fault test can use before and after a fault (members: the first
/// [`SMALL_GROUP_SIZE`] users).
pub const SMALL_GROUP: &str = "e2e-small";

/// A group nobody uses until a test needs one whose members no msg_server has cached yet.
pub const FRESH_GROUP: &str = "e2e-fresh";

/// Members of each of the two groups.
pub const SMALL_GROUP_SIZE: usize = 6;

/// Login name of user `i` (from 0).
pub fn user_name(i: usize) -> String {
    format!("e2e{:03}", i + 1)
}

/// The seed file: `users` users in one department and the two groups.
pub fn seed(users: usize) -> String {
    let mut s = String::from("[[department]]\nname = \"e2e\"\n\n");
    for i in 0..users {
        let name = user_name(i);
        let _ = write!(
            s,
            "[[user]]\nname = \"{name}\"\npassword = \"{PASSWORD}\"\nnick = \"{name}\"\n\
             department = \"e2e\"\n\n"
        );
    }
    let members: Vec<String> = (0..SMALL_GROUP_SIZE.min(users))
        .map(|i| format!("\"{}\"", user_name(i)))
        .collect();
    for group in [SMALL_GROUP, FRESH_GROUP] {
        let _ = write!(
            s,
            "[[group]]\nname = \"{group}\"\nkind = \"normal\"\nmembers = [{}]\n\n",
            members.join(", ")
        );
    }
    s
}

/// Storage section of db_proxy_server.
#[derive(Debug, Clone)]
pub enum StorageSection {
    /// The embedded default: one SQLite file.
    Sqlite(String),
    /// MariaDB + Redis.
    Mysql {
        /// sqlx URL.
        url: String,
        /// Redis URL.
        redis: String,
    },
}

fn admin(port: u16, token: &str) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{token}\"\n")
}

fn list(ports: &[u16]) -> String {
    let items: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// db_proxy_server.
pub fn db_proxy(
    port: u16,
    admin_port: u16,
    token: &str,
    msfs: u16,
    storage: &StorageSection,
) -> String {
    let storage = match storage {
        StorageSection::Sqlite(path) => format!(
            "[storage]\nbackend = \"sqlite\"\ncache = \"embedded\"\n[storage.sqlite]\npath = \"{path}\"\n"
        ),
        StorageSection::Mysql { url, redis } => format!(
            "[storage]\nbackend = \"mysql\"\ncache = \"redis\"\n[storage.mysql]\nurl = \"{url}\"\n\
             pool_size = 8\n[storage.redis]\nurl = \"{redis}\"\n"
        ),
    };
    format!(
        "name = \"db_proxy_server\"\nlisten = \"127.0.0.1:{port}\"\n\
         msfs_url = \"http://127.0.0.1:{msfs}/\"\n{storage}{}",
        admin(admin_port, token)
    )
}

/// route_server `n` (from 1).
pub fn route(n: usize, port: u16, admin_port: u16, token: &str) -> String {
    format!(
        "name = \"route_server-{n}\"\nlisten = \"127.0.0.1:{port}\"\n{}",
        admin(admin_port, token)
    )
}

/// login_server.
pub fn login(
    http: u16,
    msg: u16,
    admin_port: u16,
    token: &str,
    msfs: u16,
    http_msg: u16,
) -> String {
    format!(
        "name = \"login_server\"\nhttp_listen = \"127.0.0.1:{http}\"\n\
         msg_server_listen = \"127.0.0.1:{msg}\"\nlegacy_client_listen = \"\"\n\
         msfs = \"http://127.0.0.1:{msfs}/\"\n\
         discovery = \"http://127.0.0.1:{http_msg}/api/discovery\"\n{}",
        admin(admin_port, token)
    )
}

/// Where a msg_server links to.
#[derive(Debug, Clone, Default)]
pub struct MsgLinks {
    /// db_proxy_server port.
    pub db_proxy: u16,
    /// route_server ports.
    pub routes: Vec<u16>,
    /// login_server's msg_server port.
    pub login: u16,
    /// file_server's msg_server port, if any.
    pub file: Option<u16>,
    /// push_server port, if any.
    pub push: Option<u16>,
}

/// msg_server `n` (from 1).
pub fn msg(n: usize, port: u16, admin_port: u16, token: &str, links: &MsgLinks) -> String {
    let file: Vec<u16> = links.file.into_iter().collect();
    let push: Vec<u16> = links.push.into_iter().collect();
    format!(
        "name = \"msg_server-{n}\"\nlisten = \"127.0.0.1:{port}\"\nip1 = \"127.0.0.1\"\n\
         db_proxy = {}\nroute_servers = {}\nlogin_servers = {}\nfile_servers = {}\n\
         push_servers = {}\n{}",
        list(&[links.db_proxy]),
        list(&links.routes),
        list(&[links.login]),
        list(&file),
        list(&push),
        admin(admin_port, token)
    )
}

/// file_server (`data_dir` for offline files).
pub fn file(
    client: u16,
    msg: u16,
    admin_port: u16,
    token: &str,
    data_dir: &str,
    db: u16,
) -> String {
    format!(
        "name = \"file_server\"\nclient_listen = \"127.0.0.1:{client}\"\n\
         msg_server_listen = \"127.0.0.1:{msg}\"\nadvertise = [\"127.0.0.1\"]\n\
         data_dir = \"{data_dir}\"\ndb_proxy = {}\n{}",
        list(&[db]),
        admin(admin_port, token)
    )
}

/// push_server (no provider enabled).
pub fn push(port: u16, admin_port: u16, token: &str, db: u16) -> String {
    format!(
        "name = \"push_server\"\nlisten = \"127.0.0.1:{port}\"\n{}[db_proxy]\naddresses = {}\n",
        admin(admin_port, token),
        list(&[db])
    )
}

/// msfs (`data_dir` for files).
pub fn msfs(port: u16, admin_port: u16, token: &str, data_dir: &str) -> String {
    format!(
        "name = \"msfs\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{data_dir}\"\n{}",
        admin(admin_port, token)
    )
}

/// http_msg_server.
pub fn http_msg(
    port: u16,
    admin_port: u16,
    token: &str,
    api_token: &str,
    db: u16,
    routes: &[u16],
) -> String {
    format!(
        "name = \"http_msg_server\"\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{api_token}\"\n\
         db_proxy = {}\nroute_servers = {}\n{}",
        list(&[db]),
        list(routes),
        admin(admin_port, token)
    )
}
