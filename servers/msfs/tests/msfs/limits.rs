//! What the original answers as errors: too large, format errors; and the upload token.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::*;

const SMALL_LIMIT: u64 = 64 * 1024;

fn small(dir: &std::path::Path) -> msfs::Config {
    msfs::Config {
        max_upload_bytes: SMALL_LIMIT,
        ..config(dir)
    }
}

/// Nothing was stored, and no temporary file was left behind.
fn nothing_stored(dir: &std::path::Path) {
    let files = files_under(dir);
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn too_large_by_content_length_is_the_original_error() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(small(dir.path())).await;
    // A body of the declared size: answered, and the connection ends cleanly.
    let a = upload_as(&msfs.addr, "h", "big.jpg", &bytes(100 * 1024, 3), "").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.text(),
        r#"{"error_code":1,"error_msg":"上传文件过大","url":""}"#
    );
    assert_eq!(a.header("content-type"), Some("text/html;charset=utf-8"));
    // Only the head sent: answered at once, without waiting for the body.
    let mut s = TcpStream::connect(&msfs.addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=B\r\n\
          Content-Length: 1073741824\r\n\r\n",
    )
    .await
    .unwrap();
    let a = tokio::time::timeout(WAIT, read_answer(&mut s, false))
        .await
        .unwrap();
    assert_eq!(a.json()["error_code"], 1);
    // A client waiting for "100 Continue" (curl above 1 MiB) gets the final answer instead.
    let mut s = TcpStream::connect(&msfs.addr).await.unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=B\r\n\
          Content-Length: 1048576\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let a = tokio::time::timeout(WAIT, read_answer(&mut s, false))
        .await
        .unwrap();
    assert_eq!((a.status, a.json()["error_code"].as_u64()), (200, Some(1)));
    nothing_stored(dir.path());
    msfs.stop().await;
}

#[tokio::test]
async fn too_large_without_content_length_is_caught_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(small(dir.path())).await;
    let body = multipart(BOUNDARY, "big.png", &bytes(200 * 1024, 4));
    let mut chunked = Vec::new();
    for piece in body.chunks(10_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let a = request(
        &msfs.addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close"
        ),
        &chunked,
    )
    .await;
    assert_eq!(a.json()["error_code"], 1, "{}", a.text());
    assert_eq!(a.json()["url"], "");
    nothing_stored(dir.path());
    // Under the limit, chunked uploads work.
    let body = multipart(BOUNDARY, "ok.png", b"fine");
    let a = request(
        &msfs.addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close"
        ),
        &[
            format!("{:x}\r\n", body.len()).into_bytes(),
            body,
            b"\r\n0\r\n\r\n".to_vec(),
        ]
        .concat(),
    )
    .await;
    assert_eq!(a.json()["error_code"], 0, "{}", a.text());
    msfs.stop().await;
}

#[tokio::test]
async fn format_errors_answer_codes_2_to_6() {
    let dir = tempfile::tempdir().unwrap();
    let msfs = Msfs::start(config(dir.path())).await;
    let post = |ct: String, body: Vec<u8>| {
        let addr = msfs.addr.clone();
        async move {
            let a = request(
                &addr,
                &format!(
                    "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\
                     Connection: close",
                    body.len()
                ),
                &body,
            )
            .await;
            assert_eq!(a.status, 200);
            let v = a.json();
            assert_eq!(v["error_msg"], "格式错误");
            assert_eq!(
                (v["path"].as_str(), v["url"].as_str()),
                (Some(""), Some(""))
            );
            v["error_code"].as_u64().unwrap()
        }
    };
    let mp = format!("multipart/form-data; boundary={BOUNDARY}");
    assert_eq!(post("image/png".into(), b"x".to_vec()).await, 2);
    let no_file = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--{BOUNDARY}--\r\n"
    );
    assert_eq!(post(mp.clone(), no_file.into_bytes()).await, 3);
    assert_eq!(
        post(mp.clone(), multipart(BOUNDARY, "x.j/p..g!", b"data")).await,
        4
    );
    assert_eq!(
        post(mp.clone(), multipart(BOUNDARY, &"n".repeat(300), b"data")).await,
        4
    );
    let mut cut = multipart(BOUNDARY, "x.jpg", &bytes(5000, 5));
    cut.truncate(3000);
    assert_eq!(post(mp.clone(), cut).await, 5);
    assert_eq!(post(mp, multipart(BOUNDARY, "x.jpg", b"")).await, 6);
    nothing_stored(dir.path());
    msfs.stop().await;
}

#[tokio::test]
async fn the_upload_token_is_off_by_default_and_enforced_when_set() {
    let dir = tempfile::tempdir().unwrap();
    // Off: stock clients upload with no token (every other test does too).
    let token = "upload-token-0123456789";
    let msfs = Msfs::start(msfs::Config {
        upload_token: token.to_owned(),
        ..config(dir.path())
    })
    .await;
    for extra in ["", "\r\nAuthorization: Bearer wrong-token-0123456789"] {
        let a = upload_as(&msfs.addr, "h", "a.jpg", b"data", extra).await;
        assert_eq!(a.status, 401, "{extra}");
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        assert_eq!(a.json()["error_code"], 20);
    }
    nothing_stored(dir.path());
    let a = upload_as(
        &msfs.addr,
        "h",
        "a.jpg",
        b"data",
        &format!("\r\nAuthorization: Bearer {token}"),
    )
    .await;
    assert_eq!(a.json()["error_code"], 0);
    // As a query parameter (for clients that cannot set headers), on any path.
    let body = multipart(BOUNDARY, "b.jpg", b"more");
    let a = request(
        &msfs.addr,
        &format!(
            "POST /up?x=1&token={token} HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; \
             boundary={BOUNDARY}\r\nContent-Length: {}\r\nConnection: close",
            body.len()
        ),
        &body,
    )
    .await;
    let path = a.json()["path"].as_str().unwrap().to_owned();
    // Downloads never need it.
    assert_eq!(get(&msfs.addr, &format!("/{path}"), "").await.body, b"more");
    msfs.stop().await;
}
