//! A msfs on 127.0.0.1 port 0 with its data in a temp dir, and a raw HTTP/1.1 client that
//! shows exactly what the server wrote.

use std::path::Path;
use std::time::Duration;

use im_common::CancellationToken;
use msfs::{Config, Listeners, run};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(20);

/// Admin token of test servers.
pub const ADMIN_TOKEN: &str = "msfs-test-admin-token";

/// A running msfs.
pub struct Msfs {
    /// Its HTTP address.
    pub addr: String,
    /// Its admin address.
    pub admin: String,
    shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Msfs {
    /// Starts one with `config` (addresses replaced by port 0, `data_dir` kept).
    pub async fn start(mut config: Config) -> Msfs {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap().to_string();
        let admin_addr = admin.local_addr().unwrap().to_string();
        config.listen = addr.clone();
        config.admin.listen = admin_addr.clone();
        config.admin.token = ADMIN_TOKEN.to_owned();
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(run(
            config,
            Listeners {
                https: None,
                http,
                admin: Some(admin),
                metrics: None,
            },
            shutdown.clone(),
        ));
        Msfs {
            addr,
            admin: admin_addr,
            shutdown,
            done: Some(done),
        }
    }

    /// Stops it and checks that `run` returned Ok.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(WAIT, done)
                .await
                .expect("run returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Msfs {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A config storing in `dir`.
pub fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// An answer as received.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Reads one answer: the head, then Content-Length bytes (or everything until EOF).
pub async fn read_answer(stream: &mut (impl AsyncReadExt + Unpin), head_request: bool) -> Answer {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a whole head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    match (head_request, len) {
        (true, _) => body.clear(),
        (false, Some(len)) => {
            while body.len() < len {
                let mut chunk = vec![0u8; 64 * 1024];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "body cut at {} of {len}", body.len());
                body.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(body.len(), len, "more bytes than Content-Length");
        }
        (false, None) => {
            stream.read_to_end(&mut body).await.unwrap();
        }
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends `head` (without the final blank line) and `body` on a new connection and reads the
/// answer.
pub async fn request(addr: &str, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{head}\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    let (mut r, mut w) = s.split();
    let write = async {
        // The server may answer before reading everything; a failed write is then fine.
        let _ = w.write_all(&req).await;
    };
    let (_, answer) = tokio::time::timeout(WAIT, async {
        tokio::join!(write, read_answer(&mut r, head.starts_with("HEAD ")))
    })
    .await
    .expect("an answer in time");
    answer
}

/// GET `path`, with extra header lines.
pub async fn get(addr: &str, path: &str, extra: &str) -> Answer {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close{extra}"),
        b"",
    )
    .await
}

/// A multipart body with one file part, as stock clients send it.
pub fn multipart(boundary: &str, file_name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// Boundary used by the tests.
pub const BOUNDARY: &str = "----TeamTalkTestBoundary0123456789";

/// Uploads `data` as `file_name` with Host `host` and extra header lines.
pub async fn upload_as(
    addr: &str,
    host: &str,
    file_name: &str,
    data: &[u8],
    extra: &str,
) -> Answer {
    let body = multipart(BOUNDARY, file_name, data);
    request(
        addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; \
             boundary={BOUNDARY}\r\nContent-Length: {}\r\nConnection: close{extra}",
            body.len()
        ),
        &body,
    )
    .await
}

/// Uploads `data` as `file_name`; returns the answer's `path` after checking success.
pub async fn upload(addr: &str, file_name: &str, data: &[u8]) -> String {
    let a = upload_as(addr, addr, file_name, data, "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["error_code"], 0, "{}", a.text());
    v["path"].as_str().unwrap().to_owned()
}

/// Deterministic bytes that do not compress into patterns a parser could trip on.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// SHA-256 as hex.
pub fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored files under `dir` (relative, sorted): everything but the counter's state file
/// and its temporary copy, which the background saver may be writing at any moment.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|f| f != "msfs.state" && f != ".msfs.state.tmp");
    out.sort();
    out
}
