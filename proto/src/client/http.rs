//! The HTTP step of a client login: `GET /msg_server` on login_server (FLOWS.md 2).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use super::ClientError;

/// What login_server hands out: where to connect and the auxiliary URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgServerAssignment {
    /// Preferred msg_server address (IPv4 text).
    pub prior_ip: String,
    /// Backup address.
    pub backup_ip: String,
    /// msg_server client port.
    pub port: u16,
    /// msfs URL for uploads.
    pub msfs_prior: String,
    /// Backup msfs URL.
    pub msfs_backup: String,
    /// Discovery URL.
    pub discovery: String,
}

impl MsgServerAssignment {
    /// `prior_ip:port`, what stock clients dial.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.prior_ip, self.port)
    }
}

/// The JSON body; `port` is a string in the original but we also accept a number.
#[derive(Debug, Deserialize)]
struct Body {
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(rename = "priorIP", default)]
    prior_ip: String,
    #[serde(rename = "backupIP", default)]
    backup_ip: String,
    #[serde(default)]
    port: Option<serde_json::Value>,
    #[serde(rename = "msfsPrior", default)]
    msfs_prior: String,
    #[serde(rename = "msfsBackup", default)]
    msfs_backup: String,
    #[serde(default)]
    discovery: String,
}

/// A reusable HTTP client for the login step (a login storm should not build a TLS-capable
/// client per login).
#[derive(Debug, Clone)]
pub struct LoginHttp {
    client: reqwest::Client,
    timeout: Duration,
}

/// Installs the ring crypto provider once (reqwest is built without a default provider so that
/// the whole workspace uses ring, never aws-lc).
pub fn ensure_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // rustls deprecates its ring provider in favour of aws-lc-rs (post-quantum key
        // exchange); we keep ring on purpose: aws-lc's C build is slow on 2-core CI machines,
        // and this provider only secures our own optional TLS and the push providers' HTTPS.
        // Err means another provider was installed first, which is fine.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl LoginHttp {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, ClientError> {
        ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| ClientError::Http {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(LoginHttp { client, timeout })
    }

    /// `GET url` (e.g. `http://127.0.0.1:8080/msg_server`) and parse the answer.
    pub async fn fetch(&self, url: &str) -> Result<MsgServerAssignment, ClientError> {
        let http_err = |message: String| ClientError::Http {
            url: url.to_owned(),
            message,
        };
        let rsp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| http_err(format!("{e} (timeout {:?})", self.timeout)))?;
        let status = rsp.status();
        let text = rsp.text().await.map_err(|e| http_err(e.to_string()))?;
        if !status.is_success() {
            return Err(http_err(format!("HTTP status {status}")));
        }
        parse_body(&text).map_err(|e| match e {
            ParseError::Json(m) => http_err(m),
            ParseError::Refused(code, message) => ClientError::NoMsgServer { code, message },
        })
    }
}

enum ParseError {
    Json(String),
    Refused(i64, String),
}

fn parse_body(text: &str) -> Result<MsgServerAssignment, ParseError> {
    let body: Body = serde_json::from_str(text)
        .map_err(|e| ParseError::Json(format!("invalid JSON ({e}): {text:.200}")))?;
    if body.code != 0 {
        return Err(ParseError::Refused(body.code, body.msg));
    }
    let port = match &body.port {
        Some(serde_json::Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        _ => None,
    };
    let port = port.ok_or_else(|| ParseError::Json(format!("no valid port in: {text:.200}")))?;
    Ok(MsgServerAssignment {
        prior_ip: body.prior_ip,
        backup_ip: body.backup_ip,
        port,
        msfs_prior: body.msfs_prior,
        msfs_backup: body.msfs_backup,
        discovery: body.discovery,
    })
}

/// One-shot `GET /msg_server` with a shared client and a 5 s timeout.
pub async fn fetch_msg_server(url: &str) -> Result<MsgServerAssignment, ClientError> {
    static CLIENT: OnceLock<Arc<LoginHttp>> = OnceLock::new();
    let client = match CLIENT.get() {
        Some(c) => c.clone(),
        None => {
            let c = Arc::new(LoginHttp::new(Duration::from_secs(5))?);
            CLIENT.get_or_init(|| c).clone()
        }
    };
    client.fetch(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_answer() {
        // FLOWS.md 2: pretty-printed, keys sorted, port as a string.
        let body = r#"{
   "backupIP" : "10.0.0.5",
   "code" : 0,
   "discovery" : "http://10.0.0.9/api/discovery",
   "msfsBackup" : "http://10.0.0.7:8700/",
   "msfsPrior" : "http://10.0.0.7:8700/",
   "msg" : "",
   "port" : "8000",
   "priorIP" : "10.0.0.5"
}
"#;
        let a = parse_body(body).ok();
        assert_eq!(
            a,
            Some(MsgServerAssignment {
                prior_ip: "10.0.0.5".into(),
                backup_ip: "10.0.0.5".into(),
                port: 8000,
                msfs_prior: "http://10.0.0.7:8700/".into(),
                msfs_backup: "http://10.0.0.7:8700/".into(),
                discovery: "http://10.0.0.9/api/discovery".into(),
            })
        );
        assert_eq!(a.map(|a| a.addr()), Some("10.0.0.5:8000".to_owned()));
    }

    #[test]
    fn refusals_and_garbage() {
        assert!(matches!(
            parse_body(r#"{"code":1,"msg":"没有msg_server"}"#),
            Err(ParseError::Refused(1, m)) if m == "没有msg_server"
        ));
        assert!(matches!(parse_body("<html>"), Err(ParseError::Json(_))));
        assert!(matches!(
            parse_body(r#"{"code":0,"port":"x"}"#),
            Err(ParseError::Json(_))
        ));
        assert!(parse_body(r#"{"code":0,"port":8000,"priorIP":"1.2.3.4"}"#).is_ok());
    }
}
