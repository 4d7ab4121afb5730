//! Voice message bytes live in msfs (STORAGE.md 2.2, FLOWS.md 17): a voice message is
//! uploaded before it is stored (`IMAudio.path` = the `url` msfs answers) and downloaded again
//! when history is read.
//!
//! The upload is the original's: one multipart/form-data POST with a single part carrying a
//! file name, the part's `Content-Type:` header written without a space (msfs looks for that
//! exact text), and the answer's JSON `url` taken when `error_code` is 0. A download must be
//! answered 200 with exactly the stored size, as the original checks.

use std::time::Duration;

use thiserror::Error;

/// msfs refuses to store files larger than this (5 MiB); larger voice messages are refused
/// before uploading.
pub const MAX_AUDIO_BYTES: usize = 5 << 20;

/// Boundary of the upload body; never appears in the text parts.
const BOUNDARY: &str = "ImDbProxyAudioBoundary7f3a9c2e41d8b605";

/// Why an upload or download failed.
#[derive(Debug, Error)]
pub enum MsfsError {
    /// Connecting, sending or receiving failed (includes timeouts).
    #[error("msfs request to {url} failed: {message}")]
    Http {
        /// URL requested.
        url: String,
        /// reqwest's message.
        message: String,
    },
    /// msfs answered with a non-200 status.
    #[error("msfs answered {url} with HTTP {status}")]
    Status {
        /// URL requested.
        url: String,
        /// Status code.
        status: u16,
    },
    /// The upload answer is not the expected JSON, or reports an error.
    #[error("msfs refused the upload: {0}")]
    Refused(String),
    /// The downloaded file does not have the stored size.
    #[error("msfs returned {got} bytes for {url}, expected {expected}")]
    Size {
        /// URL requested.
        url: String,
        /// Bytes received (so far).
        got: usize,
        /// Stored size.
        expected: usize,
    },
}

/// A client of msfs.
#[derive(Debug, Clone)]
pub struct Msfs {
    client: reqwest::Client,
    /// Base URL with a trailing slash (the original always appends one).
    base: String,
}

impl Msfs {
    /// A client for the msfs at `base_url`, each request limited to `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        im_proto::client::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("building the msfs HTTP client: {e}"))?;
        let mut base = base_url.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Msfs { client, base })
    }

    /// The base URL uploads go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Uploads voice bytes; returns the URL to store in `IMAudio.path`.
    pub async fn upload(&self, audio: &[u8]) -> Result<String, MsfsError> {
        let url = self.base.clone();
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"1.audio\"\r\nContent-Type:audio/x-teamtalk\r\n\r\n"
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let mut body = Vec::with_capacity(head.len() + audio.len() + tail.len());
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(audio);
        body.extend_from_slice(tail.as_bytes());
        let http = |e: reqwest::Error| MsfsError::Http {
            url: url.clone(),
            message: e.to_string(),
        };
        let rsp = self
            .client
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .map_err(http)?;
        let status = rsp.status().as_u16();
        if status != 200 {
            return Err(MsfsError::Status { url, status });
        }
        // The answer is a short JSON object; anything large is not msfs.
        let text = read_capped(rsp, 64 * 1024, &url).await?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| MsfsError::Refused(format!("answer is not JSON: {e}")))?;
        match v.get("error_code").and_then(serde_json::Value::as_u64) {
            Some(0) => {}
            Some(code) => {
                let msg = v.get("error_msg").and_then(|m| m.as_str()).unwrap_or("");
                return Err(MsfsError::Refused(format!("error_code {code} ({msg})")));
            }
            None => return Err(MsfsError::Refused("answer has no error_code".into())),
        }
        match v.get("url").and_then(|u| u.as_str()) {
            Some(u) if !u.is_empty() => Ok(u.to_owned()),
            _ => Err(MsfsError::Refused("answer has no url".into())),
        }
    }

    /// Downloads the bytes stored at `path` (a full URL, or a path under the base URL);
    /// `expected` is the stored size (0 = not known, anything up to the cap is accepted).
    pub async fn download(&self, path: &str, expected: u32) -> Result<Vec<u8>, MsfsError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path.trim_start_matches('/'))
        };
        let rsp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| MsfsError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = rsp.status().as_u16();
        if status != 200 {
            return Err(MsfsError::Status { url, status });
        }
        let cap = if expected == 0 {
            MAX_AUDIO_BYTES
        } else {
            expected as usize
        };
        let bytes = read_capped(rsp, cap, &url).await?;
        if expected != 0 && bytes.len() != expected as usize {
            return Err(MsfsError::Size {
                url,
                got: bytes.len(),
                expected: expected as usize,
            });
        }
        Ok(bytes)
    }
}

/// Reads a body, failing once it exceeds `cap` bytes.
async fn read_capped(
    mut rsp: reqwest::Response,
    cap: usize,
    url: &str,
) -> Result<Vec<u8>, MsfsError> {
    let mut out = Vec::new();
    loop {
        let chunk = rsp.chunk().await.map_err(|e| MsfsError::Http {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        let Some(chunk) = chunk else {
            return Ok(out);
        };
        if out.len() + chunk.len() > cap {
            return Err(MsfsError::Size {
                url: url.to_owned(),
                got: out.len() + chunk.len(),
                expected: cap,
            });
        }
        out.extend_from_slice(&chunk);
    }
}
