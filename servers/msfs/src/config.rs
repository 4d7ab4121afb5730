//! msfs's configuration: one TOML file plus `IM_MSFS_*` environment overrides.
//!
//! The keys of the original `msfs.conf` (FLOWS.md 20.7) map onto these fields:
//! `ListenIP`/`ListenPort` -> `listen`, `BaseDir` -> `data_dir`, `FilesPerDir` ->
//! `files_per_dir`. `FileCnt` is not configuration: it lives in a state file in the data
//! directory (WEAKNESSES 57), and `GetThreadCount`/`PostThreadCount` have no equivalent (every
//! connection is a task; file I/O runs on tokio's blocking pool).

use std::path::PathBuf;

use im_common::config::{AdminConfig, ConfigError, HttpConfig, LogConfig};
use im_common::tls::{TlsConfig, check_listen_addr};
use serde::Deserialize;

/// The original's request limit: Content-Length above 10 MiB (0xA00000) is refused.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 << 20;

/// Shortest `upload_token` accepted (a guessable token is no token).
pub const MIN_UPLOAD_TOKEN_LEN: usize = 16;

/// The whole msfs configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name shown by imctl and in the admin handshake; empty = `msfs@<listen>`.
    pub name: String,
    /// HTTP address for uploads and downloads (the original `ListenIP:ListenPort`, 8700).
    /// Clients get `http://<host>:<port>/` as `msfsPrior` from login_server.
    pub listen: String,
    /// Where files are stored (the original `BaseDir`), created if missing. Files go to
    /// `<NNN>/<NNN>/` subdirectories, made when first used; the file counter is kept in
    /// `msfs.state` here.
    pub data_dir: PathBuf,
    /// Files per leaf directory (the original `FilesPerDir`): the counter moves to the next
    /// directory after this many, so no directory grows without bound.
    pub files_per_dir: u64,
    /// Largest upload request body (multipart framing included); larger ones are answered
    /// `{"error_code":1,"error_msg":"上传文件过大","url":""}`. This is the one size limit:
    /// every file that fits is stored (the original accepted 10 MiB requests, then silently
    /// stored nothing above 5 MiB and still answered success, WEAKNESSES 52).
    pub max_upload_bytes: u64,
    /// When set, uploads must carry `Authorization: Bearer <token>` or `?token=<token>`.
    /// Empty (the default) accepts any upload, as the original does: stock clients send no
    /// token. Downloads never need it (clients fetch image URLs as they are).
    pub upload_token: String,
    /// Base URL put in upload answers' `url` instead of `http://<Host header>/`, for a
    /// server behind a proxy or a public name; empty = the Host header, as the original.
    pub public_url: String,
    /// Most simultaneous connections; more are accepted and closed at once.
    pub max_connections: usize,
    /// Seconds without a byte in either direction before a connection is closed (the
    /// original's 30 s, FLOWS.md 1.1).
    pub idle_timeout_secs: u64,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[admin]`: the admin port for imctl (stats).
    pub admin: AdminConfig,
    /// `[http]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
    pub http: HttpConfig,
    /// The same service over HTTPS, beside `listen` (stock clients use plain HTTP). Empty = none
    /// (e.g. `0.0.0.0:8743`; needs `[tls]`).
    pub https_listen: String,
    /// `[tls]`: certificate and key of `https_listen`.
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            listen: "0.0.0.0:8700".to_owned(),
            data_dir: PathBuf::from("./msfs-data"),
            files_per_dir: 30_000,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            upload_token: String::new(),
            public_url: String::new(),
            max_connections: 10_000,
            idle_timeout_secs: 30,
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            http: HttpConfig::default(),
            https_listen: String::new(),
            tls: TlsConfig::default(),
        }
    }
}

impl Config {
    /// Checks values that parse but cannot work; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.trim().is_empty() {
            return Err(ConfigError::value(
                "listen",
                "must be a listen address such as 0.0.0.0:8700",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::value(
                "data_dir",
                "must name a directory, e.g. /var/lib/msfs",
            ));
        }
        if self.files_per_dir == 0 {
            return Err(ConfigError::value(
                "files_per_dir",
                "must be at least 1 (the original ships 30000)",
            ));
        }
        if self.max_upload_bytes < 1024 {
            return Err(ConfigError::value(
                "max_upload_bytes",
                format!(
                    "{} leaves no room for a file; the default is {DEFAULT_MAX_UPLOAD_BYTES}",
                    self.max_upload_bytes
                ),
            ));
        }
        if !self.upload_token.is_empty() && self.upload_token.len() < MIN_UPLOAD_TOKEN_LEN {
            return Err(ConfigError::value(
                "upload_token",
                format!(
                    "must be empty (no token) or at least {MIN_UPLOAD_TOKEN_LEN} characters (got {})",
                    self.upload_token.len()
                ),
            ));
        }
        let scheme_ok = ["http://", "https://"]
            .iter()
            .any(|p| self.public_url.starts_with(p));
        if !self.public_url.is_empty() && !scheme_ok {
            return Err(ConfigError::value(
                "public_url",
                format!(
                    "{:?} must start with http:// or https://, or be empty to use the Host header",
                    self.public_url
                ),
            ));
        }
        if self.public_url.chars().any(|c| c.is_control() || c == '"') {
            return Err(ConfigError::value(
                "public_url",
                "must not contain control characters or quotes",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::value("max_connections", "must be at least 1"));
        }
        if self.idle_timeout_secs == 0 {
            return Err(ConfigError::value(
                "idle_timeout_secs",
                "must be at least 1 (the original uses 30)",
            ));
        }
        check_listen_addr("https_listen", &self.https_listen)?;
        if !self.https_listen.is_empty() {
            self.tls.listen("tls", "https_listen")?;
        }
        self.admin.validate()
    }

    /// The configured name, or `msfs@<listen>`.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            format!("msfs@{}", self.listen)
        } else {
            self.name.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
        assert_eq!(Config::default().display_name(), "msfs@0.0.0.0:8700");
    }

    #[test]
    fn the_sample_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/config/msfs.toml");
        let c: Config = im_common::config::load_from(Some(&path), "IM_MSFS_", &[])
            .unwrap_or_else(|e| panic!("{e}"));
        c.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listen, "127.0.0.1:8700");
        assert_eq!(c.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
    }

    #[test]
    fn errors_name_the_key() {
        let check = |f: fn(&mut Config), key: &str| {
            let mut c = Config::default();
            f(&mut c);
            let e = c.validate().expect_err("must be refused");
            assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
        };
        check(|c| c.listen = String::new(), "listen");
        check(|c| c.data_dir = PathBuf::new(), "data_dir");
        check(|c| c.files_per_dir = 0, "files_per_dir");
        check(|c| c.max_upload_bytes = 10, "max_upload_bytes");
        check(|c| c.upload_token = "short".into(), "upload_token");
        check(|c| c.public_url = "img.example.com".into(), "public_url");
        check(|c| c.max_connections = 0, "max_connections");
        check(|c| c.idle_timeout_secs = 0, "idle_timeout_secs");
    }
}
