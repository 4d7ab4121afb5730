//! Where the cluster is: one config file naming the endpoints and the admin token, overridable
//! by `IM_*` environment variables and by flags (flags win).
//!
//! ```toml
//! token = "the admin token of every server"
//! login_url = "http://127.0.0.1:8080/msg_server"
//! aes_key = "12345678901234567890123456789012"   # message cipher key (send, chat)
//!
//! [admin]                      # admin ports, by server kind
//! login_server = ["127.0.0.1:18080"]
//! route_server = ["127.0.0.1:18200"]
//! msg_server = ["127.0.0.1:18000", "127.0.0.1:18001"]
//! db_proxy_server = ["127.0.0.1:20600"]
//! ```
//!
//! The file is `--config FILE`, else `$IMCTL_CONFIG`, else `./imctl.toml` if it exists.
//! Environment: `IM_ADMIN_TOKEN`, `IM_LOGIN_URL`, `IM_AES_KEY`, and `IM_ADMIN_<KIND>` (a
//! comma-separated address list, e.g. `IM_ADMIN_MSG_SERVER=127.0.0.1:18000,127.0.0.1:18001`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Server kinds imctl knows, in display order.
pub const SERVER_KINDS: &[&str] = &[
    "login_server",
    "route_server",
    "msg_server",
    "db_proxy_server",
    "file_server",
    "push_server",
    "msfs",
    "http_msg_server",
];

/// The resolved configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Admin token presented to every server.
    pub token: String,
    /// login_server's `GET /msg_server` URL, for commands that act as a user.
    pub login_url: String,
    /// Message cipher key (32 characters); empty = the stock client key.
    pub aes_key: String,
    /// Admin addresses by server kind.
    pub admin: BTreeMap<String, Vec<String>>,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub path: Option<PathBuf>,
    /// `--token`.
    pub token: Option<String>,
    /// `--login-url`.
    pub login_url: Option<String>,
    /// `--admin KIND=ADDR[,ADDR...]`, repeatable.
    pub admin: Vec<String>,
}

impl Config {
    /// Loads the file (if any), then environment, then flags.
    pub fn load(over: &Overrides) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with(over, &env)
    }

    /// [`Config::load`] with explicit environment (tests).
    pub fn load_with(over: &Overrides, env: &[(String, String)]) -> anyhow::Result<Config> {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let path = over
            .path
            .clone()
            .or_else(|| get("IMCTL_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let p = PathBuf::from("imctl.toml");
                p.exists().then_some(p)
            });
        let mut cfg = match &path {
            Some(p) => Self::read(p)?,
            None => Config::default(),
        };
        if let Some(t) = get("IM_ADMIN_TOKEN") {
            cfg.token = t;
        }
        if let Some(u) = get("IM_LOGIN_URL") {
            cfg.login_url = u;
        }
        if let Some(k) = get("IM_AES_KEY") {
            cfg.aes_key = k;
        }
        for kind in SERVER_KINDS {
            if let Some(list) = get(&format!("IM_ADMIN_{}", kind.to_ascii_uppercase())) {
                cfg.admin.insert((*kind).to_owned(), split_list(&list));
            }
        }
        if let Some(t) = &over.token {
            cfg.token = t.clone();
        }
        if let Some(u) = &over.login_url {
            cfg.login_url = u.clone();
        }
        let mut from_flags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in &over.admin {
            let Some((kind, addrs)) = a.split_once('=') else {
                bail!(
                    "--admin {a:?}: expected KIND=ADDR[,ADDR...], e.g. msg_server=127.0.0.1:18000"
                );
            };
            check_kind(kind)?;
            from_flags
                .entry(kind.to_owned())
                .or_default()
                .extend(split_list(addrs));
        }
        cfg.admin.extend(from_flags);
        for kind in cfg.admin.keys() {
            check_kind(kind)?;
        }
        Ok(cfg)
    }

    fn read(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading imctl config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("imctl config {}", path.display()))
    }

    /// Writes the config as TOML (used by `imctl demo`).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self).context("serializing imctl config")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Admin addresses of one kind.
    pub fn endpoints(&self, kind: &str) -> &[String] {
        self.admin.get(kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every (kind, address), in display order.
    pub fn all_endpoints(&self) -> Vec<(String, String)> {
        SERVER_KINDS
            .iter()
            .flat_map(|k| {
                self.endpoints(k)
                    .iter()
                    .map(move |a| ((*k).to_owned(), a.clone()))
            })
            .collect()
    }

    /// The admin token, or an error telling where to set it.
    pub fn require_token(&self) -> anyhow::Result<&str> {
        if self.token.is_empty() {
            bail!("no admin token: set `token` in the imctl config, IM_ADMIN_TOKEN, or --token");
        }
        Ok(&self.token)
    }

    /// The admin address of one kind, or an error naming how to configure it.
    pub fn require_one(&self, kind: &str) -> anyhow::Result<&str> {
        match self.endpoints(kind).first() {
            Some(a) => Ok(a),
            None => bail!(
                "no {kind} admin address: add it under [admin] in the imctl config, \
                 IM_ADMIN_{} or --admin {kind}=HOST:PORT",
                kind.to_ascii_uppercase()
            ),
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_kind(kind: &str) -> anyhow::Result<()> {
    if !SERVER_KINDS.contains(&kind) {
        bail!(
            "unknown server kind {kind:?}; valid kinds: {}",
            SERVER_KINDS.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("imctl.toml");
        std::fs::write(
            &path,
            "token = \"file-token-0123456789\"\nlogin_url = \"http://a/msg_server\"\n\
             [admin]\nmsg_server = [\"127.0.0.1:1\"]\nroute_server = [\"127.0.0.1:2\"]\n",
        )
        .expect("write");
        let env = vec![
            (
                "IM_ADMIN_TOKEN".to_owned(),
                "env-token-0123456789".to_owned(),
            ),
            (
                "IM_ADMIN_MSG_SERVER".to_owned(),
                "127.0.0.1:3, 127.0.0.1:4".to_owned(),
            ),
        ];
        let over = Overrides {
            path: Some(path.clone()),
            admin: vec!["route_server=127.0.0.1:5".into()],
            ..Overrides::default()
        };
        let c = Config::load_with(&over, &env).expect("load");
        assert_eq!(c.token, "env-token-0123456789");
        assert_eq!(c.login_url, "http://a/msg_server");
        assert_eq!(c.endpoints("msg_server"), ["127.0.0.1:3", "127.0.0.1:4"]);
        assert_eq!(c.endpoints("route_server"), ["127.0.0.1:5"]);
        let over = Overrides {
            path: Some(path),
            token: Some("flag-token-0123456789".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load_with(&over, &env).expect("load").token,
            "flag-token-0123456789"
        );
    }

    #[test]
    fn bad_kinds_name_the_valid_ones() {
        let over = Overrides {
            admin: vec!["mongo=1.2.3.4:5".into()],
            ..Overrides::default()
        };
        let e = Config::load_with(&over, &[])
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("msg_server") && e.contains("mongo"), "{e}");
        let e = Config::default()
            .require_token()
            .expect_err("no token")
            .to_string();
        assert!(e.contains("IM_ADMIN_TOKEN"), "{e}");
    }
}
