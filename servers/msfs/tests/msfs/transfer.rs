//! Uploads and downloads: the original's answers, byte-exact round trips, ranges, 404,
//! traversal, concurrency and the counter across a restart.

use std::collections::HashSet;

use im_proto::admin::{AdminResult, ImAdminAuthReq, ImAdminStatsReq};
use im_proto::client::{ClientConfig, ImClient};
use msfs::Config;

use crate::harness::*;

#[tokio::test]
async fn a_3_mib_file_round_trips_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(config(dir.path())).await;
    let data = bytes(3 << 20, 1);
    let a = upload_as(
        &msfs.addr,
        "img.example:8700",
        "photo_640x480.jpg",
        &data,
        "",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("text/html;charset=utf-8"));
    assert_eq!(a.header("connection"), Some("close"));
    let v = a.json();
    let path = v["path"].as_str().unwrap().to_owned();
    // The original's exact text: key order, the space after "error_msg":, the url.
    assert_eq!(
        a.text(),
        format!(
            "{{\"error_code\":0,\"error_msg\": \"成功\",\"path\":\"{path}\",\"url\":\"http://img.example:8700/{path}\"}}"
        )
    );
    let parts: Vec<&str> = path.split('/').collect();
    assert_eq!(&parts[..3], ["g0", "000", "000"], "{path}");
    let name = parts[3];
    assert!(name.ends_with("_0_640x480.jpg"), "{name}");
    let usec: u64 = name.split('_').next().unwrap().parse().unwrap();
    assert!(
        usec > 1_600_000_000_000_000,
        "microseconds since the epoch: {usec}"
    );
    // Stored where STORAGE.md 6 says, complete, with no temporary file left.
    assert_eq!(files_under(dir.path()), vec![format!("000/000/{name}")]);

    let got = get(&msfs.addr, &format!("/{path}"), "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("image/jpg"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(got.header("accept-ranges"), Some("bytes"));
    assert_eq!(got.header("content-length"), Some("3145728"));
    assert_eq!(sha256(&got.body), sha256(&data));

    // HEAD: the same headers, no body.
    let head = request(
        &msfs.addr,
        &format!("HEAD /{path} HTTP/1.1\r\nHost: x\r\nConnection: close"),
        b"",
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("3145728"));

    // Any first segment is ignored, as the original does.
    let other_group = get(&msfs.addr, &format!("/g9/{}", parts[1..].join("/")), "").await;
    assert_eq!(sha256(&other_group.body), sha256(&data));
    msfs.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(config(dir.path())).await;
    for path in [
        "/g0/000/000/1410706133246550_1.jpg",
        "/",
        "/favicon.ico",
        "/g0/msfs.state",
    ] {
        let a = get(&msfs.addr, path, "").await;
        assert_eq!(a.status, 404, "{path}");
        assert!(a.body.is_empty());
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    }
    let a = request(
        &msfs.addr,
        "DELETE /g0/000/000/1_1.jpg HTTP/1.1\r\nHost: x\r\nConnection: close",
        b"",
    )
    .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, HEAD, POST"));
    msfs.stop().await;
}

#[tokio::test]
async fn path_traversal_is_refused() {
    let outer = tempfile::tempdir().unwrap();
    let data_dir = outer.path().join("data");
    std::fs::write(outer.path().join("secret.txt"), b"top secret").unwrap();
    let msfs = Msfs::start(config(&data_dir)).await;
    let path = upload(&msfs.addr, "a.png", b"png bytes").await;
    // The temporary-file shape and the state file cannot be named either.
    std::fs::write(data_dir.join("000/000/.hidden.part"), b"partial").unwrap();
    for bad in [
        "/g0/../secret.txt",
        "/g0/000/../../secret.txt",
        "/g0/000/000/../../../secret.txt",
        "/g0/000/000/..%2f..%2f..%2fsecret.txt",
        "/g0/000/000/.hidden.part",
        "/g0/./000/x.png",
        "/g0/000/000/a\\..\\b",
    ] {
        let a = get(&msfs.addr, bad, "").await;
        assert_eq!(a.status, 400, "{bad}");
        assert!(!a.text().contains("secret") && !a.text().contains("partial"));
    }
    for missing in ["/g0/msfs.state", "/secret.txt", "/g0/000/000/000/x.png"] {
        assert_eq!(get(&msfs.addr, missing, "").await.status, 404, "{missing}");
    }
    // An absolute URL as the request target names nothing either.
    let a = request(
        &msfs.addr,
        &format!("GET http://evil/{path} HTTP/1.1\r\nHost: evil\r\nConnection: close"),
        b"",
    )
    .await;
    assert_eq!(a.status, 200, "the path part of an absolute target is used");
    assert_eq!(a.body, b"png bytes");
    assert_eq!(a.header("content-type"), Some("image/png"));
    msfs.stop().await;
}

#[tokio::test]
async fn ranges_are_served_206_and_unsatisfiable_ones_416() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(config(dir.path())).await;
    let data = bytes(1000, 2);
    let path = format!("/{}", upload(&msfs.addr, "voice.audio", &data).await);
    let a = get(&msfs.addr, &path, "\r\nRange: bytes=10-19").await;
    assert_eq!(a.status, 206);
    assert_eq!(a.header("content-range"), Some("bytes 10-19/1000"));
    assert_eq!(a.header("content-length"), Some("10"));
    assert_eq!(a.body, &data[10..20]);
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    let a = get(&msfs.addr, &path, "\r\nRange: bytes=-5").await;
    assert_eq!((a.status, &a.body[..]), (206, &data[995..]));
    let a = get(&msfs.addr, &path, "\r\nRange: bytes=990-").await;
    assert_eq!(a.header("content-range"), Some("bytes 990-999/1000"));
    assert_eq!(a.body, &data[990..]);
    for unsatisfiable in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let a = get(&msfs.addr, &path, &format!("\r\nRange: {unsatisfiable}")).await;
        assert_eq!(a.status, 416, "{unsatisfiable}");
        assert_eq!(a.header("content-range"), Some("bytes */1000"));
    }
    // Several ranges or nonsense: the whole file.
    let a = get(&msfs.addr, &path, "\r\nRange: bytes=0-1,5-6").await;
    assert_eq!((a.status, a.body.len()), (200, 1000));
    msfs.stop().await;
}

#[tokio::test]
async fn concurrent_uploads_get_distinct_paths() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(Config {
        files_per_dir: 5,
        ..config(dir.path())
    })
    .await;
    let uploads = (0..24u64).map(|i| {
        let addr = msfs.addr.clone();
        tokio::spawn(async move {
            let data = bytes(20_000 + i as usize * 1000, 100 + i);
            let path = upload(&addr, &format!("f{i}.gif"), &data).await;
            (path, data)
        })
    });
    let mut seen = HashSet::new();
    let mut done = Vec::new();
    for u in uploads {
        let (path, data) = u.await.unwrap();
        assert!(seen.insert(path.clone()), "{path} handed out twice");
        done.push((path, data));
    }
    // 24 files over directories of 5: 000..004.
    let dirs: HashSet<&str> = done
        .iter()
        .map(|(p, _)| p.split('/').nth(2).unwrap())
        .collect();
    assert_eq!(dirs.len(), 5, "{dirs:?}");
    for (path, data) in &done {
        let a = get(&msfs.addr, &format!("/{path}"), "").await;
        assert_eq!(sha256(&a.body), sha256(data), "{path}");
    }
    msfs.stop().await;
}

#[tokio::test]
async fn the_counter_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        files_per_dir: 2,
        ..config(dir.path())
    };
    let msfs = Msfs::start(cfg.clone()).await;
    let mut paths = Vec::new();
    for i in 0..3 {
        paths.push(upload(&msfs.addr, "x.jpg", &bytes(100, i)).await);
    }
    msfs.stop().await;
    let state = std::fs::read_to_string(dir.path().join("msfs.state")).unwrap();
    assert!(state.contains("file_cnt = 3"), "{state}");
    assert!(state.contains("bytes_stored = 300"), "{state}");

    let msfs = Msfs::start(cfg).await;
    let fourth = upload(&msfs.addr, "x.jpg", &bytes(100, 9)).await;
    // File number 3 goes to the second directory, next to number 2.
    assert!(fourth.starts_with("g0/000/001/"), "{fourth}");
    assert!(fourth.ends_with("_3.jpg"), "{fourth}");
    assert_eq!(paths[2].split('/').nth(2), Some("001"));
    let fifth = upload(&msfs.addr, "x.jpg", &bytes(100, 10)).await;
    assert!(fifth.starts_with("g0/000/002/"), "{fifth}");
    // Files stored before the restart are still served.
    let a = get(&msfs.addr, &format!("/{}", paths[0]), "").await;
    assert_eq!(a.body, bytes(100, 0));
    // The admin port counts files and bytes.
    let (c, _ev) = ImClient::connect(&msfs.admin, ClientConfig::default())
        .await
        .unwrap();
    let auth = c
        .request(&ImAdminAuthReq {
            token: Some(ADMIN_TOKEN.to_owned()),
            client_name: Some("msfs tests".to_owned()),
        })
        .await
        .unwrap();
    assert_eq!(auth.result_code, Some(AdminResult::AdminOk as i32));
    assert_eq!(auth.server_kind.as_deref(), Some("msfs"));
    let stats = c.request(&ImAdminStatsReq {}).await.unwrap().stats.unwrap();
    assert_eq!(stats.table_size, Some(5));
    let metric = |name: &str| {
        stats
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(name))
            .and_then(|m| m.value)
    };
    assert_eq!(metric("im_msfs_stored_bytes"), Some(500.0));
    assert_eq!(metric("im_msfs_uploads_total"), Some(2.0));
    assert_eq!(metric("im_msfs_downloads_total"), Some(1.0));
    msfs.stop().await;
}

#[tokio::test]
async fn db_proxy_style_uploads_and_public_urls() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(Config {
        public_url: "https://img.example.com/msfs/".to_owned(),
        ..config(dir.path())
    })
    .await;
    // The original's uploader: no space after the part's Content-Type colon, a form field
    // before the file, no Host port.
    let body = "--B\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nvoice\r\n\
         --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"1.audio\"\r\n\
         Content-Type:audio/x-teamtalk\r\n\r\n\x00\x00\x00\x07voice\r\n--B--\r\n";
    let a = request(
        &msfs.addr,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: anything\r\nContent-Type: multipart/form-data; \
             boundary=B\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    )
    .await;
    let v = a.json();
    let path = v["path"].as_str().unwrap();
    assert!(path.ends_with(".audio"), "{path}");
    assert_eq!(
        v["url"].as_str().unwrap(),
        format!("https://img.example.com/msfs/{path}")
    );
    let got = get(&msfs.addr, &format!("/{path}"), "").await;
    assert_eq!(got.body, b"\x00\x00\x00\x07voice");
    msfs.stop().await;
}
