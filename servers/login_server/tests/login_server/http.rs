//! `GET /msg_server` (FLOWS.md 2): exact bytes, refusals, what is closed without an answer.

use im_proto::client::{ClientError, fetch_msg_server};

use crate::harness::{http, http_pieces, msg_server, start};

/// The FLOWS.md 2 example body, as an original login_server sends it.
const FLOWS_EXAMPLE_BODY: &str = r#"{
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

/// The original's response head around `body`.
fn response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nConnection:close\r\nContent-Length:{}\r\n\
         Content-Type:text/html;charset=utf-8\r\n\r\n{body}",
        body.len()
    )
}

const GET: &[u8] = b"GET /msg_server HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nAccept: */*\r\n\r\n";

#[tokio::test]
async fn the_success_answer_is_byte_exact() {
    let ts = start().await;
    // A msg_server registered with the example's addresses.
    let (link, _events) = im_proto::client::ImClient::connect(&ts.msg, Default::default())
        .await
        .unwrap();
    link.send(&crate::harness::info("ms1", "10.0.0.5", 8000, 0, 100))
        .await
        .unwrap();
    crate::harness::wait_for("registration", || ts.status(8000).is_some()).await;

    let got = String::from_utf8(http(&ts.http, GET).await).unwrap();
    assert_eq!(got, response(FLOWS_EXAMPLE_BODY));
    // The body's length in bytes, as the header says.
    assert!(got.contains(&format!("Content-Length:{}\r\n", FLOWS_EXAMPLE_BODY.len())));
    ts.stop().await;
}

#[tokio::test]
async fn both_refusals_are_byte_exact() {
    let ts = start().await;
    let none = "{\n   \"code\" : 1,\n   \"msg\" : \"没有msg_server\"\n}\n";
    let full = "{\n   \"code\" : 2,\n   \"msg\" : \"负载过高\"\n}\n";
    assert_eq!(
        String::from_utf8(http(&ts.http, GET).await).unwrap(),
        response(none)
    );
    // Content-Length counts bytes, not characters.
    assert_eq!((none.len(), none.chars().count()), (49, 45));

    let _full = msg_server(&ts, "full", 8001, 5, 5).await;
    assert_eq!(
        String::from_utf8(http(&ts.http, GET).await).unwrap(),
        response(full)
    );

    // A draining server with room is "full" too.
    let _drained = msg_server(&ts, "drained", 8002, 0, 100).await;
    assert_eq!(ts.login().await, Ok(8002));
    ts.server.drain("drained", false);
    assert_eq!(
        String::from_utf8(http(&ts.http, GET).await).unwrap(),
        response(full)
    );
    assert_eq!(ts.server.refusals_total(), 3);
    ts.stop().await;
}

#[tokio::test]
async fn other_paths_and_oversized_requests_are_closed_without_an_answer() {
    let ts = start().await;
    let _ms = msg_server(&ts, "ms", 8000, 0, 100).await;
    let mut padded = b"GET /msg_server HTTP/1.1\r\nX-Pad: ".to_vec();
    padded.resize(1100, b'a');
    padded.extend_from_slice(b"\r\n\r\n");
    let mut big_body = b"POST /msg_server HTTP/1.1\r\nContent-Length: 2000\r\n\r\n".to_vec();
    big_body.resize(600, b'b');
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET /msg HTTP/1.1\r\n\r\n",
        b"GET /favicon.ico HTTP/1.1\r\n\r\n",
        b"GET http://h/msg_server HTTP/1.1\r\n\r\n",
        &padded,
        &big_body,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET /msg_server SPDY/3\r\n\r\n",
    ] {
        let got = http(&ts.http, request).await;
        assert!(
            got.is_empty(),
            "{:?} got an answer",
            String::from_utf8_lossy(request)
        );
    }
    // A request of exactly 1024 bytes is still answered.
    let mut exact = b"GET /msg_server HTTP/1.1\r\nX-Pad: ".to_vec();
    exact.resize(1024 - 4, b'a');
    exact.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exact.len(), 1024);
    assert!(!http(&ts.http, &exact).await.is_empty());

    let values = ts.server.metrics().values();
    let closed = |reason: &str| {
        let name = format!("im_login_server_http_closed_total{{reason=\"{reason}\"}}");
        values.iter().find(|(n, _, _)| *n == name).map(|v| v.1)
    };
    assert_eq!(closed("bad_path"), Some(4.0));
    assert_eq!(closed("too_large"), Some(2.0));
    assert_eq!(closed("malformed"), Some(2.0));
    // None of these took a login.
    assert_eq!(ts.server.assignments_total(), 1);
    ts.stop().await;
}

#[tokio::test]
async fn any_method_queries_bodies_and_split_requests_are_answered() {
    let ts = start().await;
    let _ms = msg_server(&ts, "ms", 8000, 0, 100).await;
    for (request, pieces) in [
        (&b"POST /msg_server?user=a&x=1 HTTP/1.0\r\nContent-Length: 4\r\n\r\nabcd"[..], 1),
        (b"PUT /msg_server/anything HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 1),
        (b"GET /msg_server HTTP/1.1\nHost: x\n\n", 1),
        (b"GET /msg_server HTTP/1.1\r\nHost: slow.example\r\nUser-Agent: test\r\n\r\n", 5),
        (b"POST /msg_server HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", 3),
    ] {
        let got = String::from_utf8(http_pieces(&ts.http, request, pieces).await).unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("\"port\" : \"8000\""),
            "{:?} -> {got:?}",
            String::from_utf8_lossy(request)
        );
    }
    ts.stop().await;
}

#[tokio::test]
async fn the_protocol_client_parses_our_answer() {
    let ts = start().await;
    let url = format!("http://{}/msg_server", ts.http);
    match fetch_msg_server(&url).await {
        Err(ClientError::NoMsgServer { code, message }) => {
            assert_eq!((code, message.as_str()), (1, "没有msg_server"));
        }
        other => panic!("{other:?}"),
    }
    let _ms = msg_server(&ts, "ms", 8123, 0, 100).await;
    let a = fetch_msg_server(&url).await.unwrap();
    assert_eq!(a.addr(), "127.0.0.1:8123");
    assert_eq!(a.backup_ip, "127.0.0.1");
    assert_eq!(a.msfs_prior, "http://10.0.0.7:8700/");
    assert_eq!(a.msfs_backup, "http://10.0.0.7:8700/");
    assert_eq!(a.discovery, "http://10.0.0.9/api/discovery");
    ts.stop().await;
}
