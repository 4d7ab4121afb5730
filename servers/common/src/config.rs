//! Config loading: one TOML file per server, overridable by environment variables, with errors
//! that name the key and the valid values.
//!
//! Environment overrides use the server's prefix, e.g. for msg_server `IM_MSG_SERVER_`, and a
//! double underscore between nested keys: `IM_MSG_SERVER_LISTEN=0.0.0.0:8000`,
//! `IM_DB_PROXY_SERVER_STORAGE__KIND=mysql`. A value is read as a TOML value when it parses as
//! one (numbers, booleans, arrays, quoted strings) and as a plain string otherwise. Secrets (admin
//! tokens, database passwords) can therefore stay out of the file.
//!
//! Every server's config struct has the shared sections `[log]` ([`LogConfig`]), `[admin]`
//! ([`AdminConfig`]), `[http]` ([`HttpConfig`]) and, with upstream links, `[backoff]`
//! ([`crate::backoff::BackoffConfig`]) as plain fields (not flattened: serde cannot combine
//! flattening with `deny_unknown_fields`, and unknown keys must be errors).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// A config that could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read (the OS error is the source: `{:#}` prints it once).
    #[error("cannot read config file {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// File.
        path: PathBuf,
        /// Parser message (with line and column).
        message: String,
    },
    /// A key has a wrong type or value, or is unknown.
    #[error("config key `{key}`{origin}: {message}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// " (from environment variable X)" or " (in file F)".
        origin: String,
        /// What is wrong, including the valid values where serde knows them.
        message: String,
    },
    /// A value is syntactically fine but not acceptable (checked after parsing).
    #[error("config key `{key}`: {message}")]
    Value {
        /// Dotted key path.
        key: String,
        /// What is wrong and what is valid.
        message: String,
    },
}

impl ConfigError {
    /// A semantic error about `key`.
    pub fn value(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Value {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The environment prefix of a server: `msg_server` -> `IM_MSG_SERVER_`.
pub fn env_prefix(server: &str) -> String {
    format!("IM_{}_", server.to_ascii_uppercase().replace('-', "_"))
}

/// Loads `T` from an optional TOML file plus the environment variables starting with
/// `env_prefix` (see the module docs).
pub fn load<T: DeserializeOwned>(path: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError> {
    let vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(env_prefix))
        .collect();
    load_from(path, env_prefix, &vars)
}

/// [`load`] with explicit variables (tests, im-cluster).
pub fn load_from<T: DeserializeOwned>(
    path: Option<&Path>,
    env_prefix: &str,
    vars: &[(String, String)],
) -> Result<T, ConfigError> {
    let mut table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?
        }
        None => toml::Table::new(),
    };
    let mut from_env: Vec<(String, String)> = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(env_prefix) else {
            continue;
        };
        let keys: Vec<String> = rest
            .split("__")
            .map(|k| k.to_ascii_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            continue;
        }
        set_path(&mut table, &keys, env_value(raw));
        from_env.push((keys.join("."), name.clone()));
    }
    let value = toml::Value::Table(table);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let origin = from_env
            .iter()
            .find(|(k, _)| *k == key || key.starts_with(&format!("{k}.")))
            .map(|(_, var)| format!(" (from environment variable {var})"))
            .or_else(|| path.map(|p| format!(" (in {})", p.display())))
            .unwrap_or_default();
        ConfigError::Invalid {
            key: if key == "." {
                "(top level)".to_owned()
            } else {
                key
            },
            origin,
            message: e.into_inner().to_string(),
        }
    })
}

fn env_value(raw: &str) -> toml::Value {
    // Parse as the right-hand side of a TOML assignment; fall back to a plain string.
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut cur = table;
    for k in parents {
        let entry = cur
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(t) = entry else {
            return;
        };
        cur = t;
    }
    cur.insert(last.clone(), value);
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,msg_server=debug` (RUST_LOG overrides it).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `[admin]`: the admin port (IM.Admin PDUs for imctl).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address; empty = no admin port. Keep it on loopback unless the network is
    /// trusted: the token travels in clear text like the rest of the protocol.
    pub listen: String,
    /// Shared secret imctl must present first. Required when `listen` is set; at least 16
    /// characters. Prefer the environment variable (`IM_<SERVER>_ADMIN__TOKEN`).
    pub token: String,
}

/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl AdminConfig {
    /// Checks that a token is set when the port is enabled.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() && self.token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(ConfigError::value(
                "admin.token",
                format!(
                    "must be at least {MIN_ADMIN_TOKEN_LEN} characters when admin.listen is set \
                     (got {}); set it in the file or in the environment",
                    self.token.len()
                ),
            ));
        }
        Ok(())
    }
}

/// `[http]`: Prometheus `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address; empty = no metrics endpoint.
    pub listen: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        listen: String,
        #[serde(default)]
        max_connections: u32,
        storage: Storage,
        #[serde(default)]
        peers: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Storage {
        kind: Kind,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Sqlite,
        Mysql,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        f
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn file_plus_environment() {
        let f = write("listen = \"0.0.0.0:8000\"\n[storage]\nkind = \"sqlite\"\n");
        let cfg: Sample = load_from(
            Some(f.path()),
            "IM_T_",
            &vars(&[
                ("IM_T_MAX_CONNECTIONS", "5"),
                ("IM_T_STORAGE__KIND", "mysql"),
                ("IM_T_PEERS", r#"["a:1", "b:2"]"#),
                ("IM_OTHER_X", "ignored"),
            ]),
        )
        .expect("load");
        assert_eq!(
            cfg,
            Sample {
                listen: "0.0.0.0:8000".into(),
                max_connections: 5,
                storage: Storage { kind: Kind::Mysql },
                peers: vec!["a:1".into(), "b:2".into()],
            }
        );
    }

    #[test]
    fn errors_name_the_key_and_the_choices() {
        let f = write("listen = \"x\"\n[storage]\nkind = \"mongo\"\n");
        let e = load_from::<Sample>(Some(f.path()), "IM_T_", &[]).expect_err("must fail");
        let msg = e.to_string();
        assert!(msg.contains("`storage.kind`"), "{msg}");
        assert!(msg.contains("sqlite") && msg.contains("mysql"), "{msg}");

        let e = load_from::<Sample>(
            Some(f.path()),
            "IM_T_",
            &vars(&[("IM_T_STORAGE__KIND", "postgres")]),
        )
        .expect_err("must fail");
        assert!(e.to_string().contains("IM_T_STORAGE__KIND"), "{e}");

        let f = write("listen = \"x\"\nlisten_typo = 1\n[storage]\nkind = \"sqlite\"\n");
        let e = load_from::<Sample>(Some(f.path()), "IM_T_", &[]).expect_err("must fail");
        assert!(e.to_string().contains("listen_typo"), "{e}");

        let f = write("listen = \"x\"\nmax_connections = \"many\"\n[storage]\nkind = \"sqlite\"\n");
        let e = load_from::<Sample>(Some(f.path()), "IM_T_", &[]).expect_err("must fail");
        assert!(e.to_string().contains("`max_connections`"), "{e}");

        let f = write("listen = ");
        assert!(matches!(
            load_from::<Sample>(Some(f.path()), "IM_T_", &[]),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(
            load_from::<Sample>(Some(Path::new("/nonexistent/x.toml")), "IM_T_", &[]),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn admin_token_is_required_with_a_port() {
        let a = AdminConfig {
            listen: "127.0.0.1:0".into(),
            token: "short".into(),
        };
        assert!(
            a.validate()
                .is_err_and(|e| e.to_string().contains("admin.token"))
        );
        assert!(AdminConfig::default().validate().is_ok());
    }

    #[test]
    fn prefixes() {
        assert_eq!(env_prefix("msg_server"), "IM_MSG_SERVER_");
        assert_eq!(env_prefix("db_proxy_server"), "IM_DB_PROXY_SERVER_");
    }
}
