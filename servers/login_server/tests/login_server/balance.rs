//! Choosing a msg_server: bursts spread, full/down servers skipped, pending logins, the
//! msg_server port's robustness.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use im_proto::{Header, Pdu, cid, sid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{info, login, msg_server, start, start_with, wait_for};

async fn burst(addr: &str, n: usize) -> HashMap<u32, usize> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let addr = addr.to_owned();
            tokio::spawn(async move { login(&addr).await })
        })
        .collect();
    let mut by_port = HashMap::new();
    for t in tasks {
        *by_port.entry(t.await.unwrap().unwrap()).or_insert(0) += 1;
    }
    by_port
}

#[tokio::test]
async fn a_burst_spreads_evenly_and_reports_consume_pending_logins() {
    let ts = start().await;
    let a = msg_server(&ts, "a", 8001, 0, 10_000).await;
    let _b = msg_server(&ts, "b", 8002, 0, 10_000).await;
    let got = burst(&ts.http, 200).await;
    let (na, nb) = (got[&8001], got[&8002]);
    eprintln!("burst of 200: a {na}, b {nb}");
    assert_eq!(na + nb, 200);
    assert!((80..=120).contains(&na), "a got {na} of 200");
    assert_eq!(ts.server.assignments_total(), 200);

    // a reports 30 of its logins: they move from pending to its count.
    a.report(1, 30).await;
    wait_for("reports", || {
        ts.status(8001).is_some_and(|s| s.cur_conn_cnt == 30)
    })
    .await;
    let s = ts.status(8001).unwrap();
    assert_eq!(s.pending_logins as usize, na - 30);
    assert_eq!(s.assignments_total as usize, na);
    // Logouts never take the count below zero.
    a.report(2, 40).await;
    wait_for("logouts", || {
        ts.status(8001).is_some_and(|s| s.cur_conn_cnt == 0)
    })
    .await;
    ts.stop().await;
}

#[tokio::test]
async fn the_least_loaded_server_is_chosen_and_a_full_one_skipped() {
    let ts = start().await;
    let _busy = msg_server(&ts, "busy", 8001, 100, 10_000).await;
    let _idle = msg_server(&ts, "idle", 8002, 0, 10_000).await;
    let got = burst(&ts.http, 150).await;
    // idle takes 100 to catch up, then they alternate.
    assert_eq!(got[&8002], 125, "{got:?}");
    ts.stop().await;

    let ts = start().await;
    let _small = msg_server(&ts, "small", 8003, 3, 10).await;
    let _big = msg_server(&ts, "big", 8004, 20, 1000).await;
    let got = burst(&ts.http, 50).await;
    assert_eq!(got[&8003], 7, "small has room for 7: {got:?}");
    assert_eq!(got[&8004], 43);
    ts.stop().await;
}

#[tokio::test]
async fn a_dropped_link_is_no_longer_offered() {
    let ts = start().await;
    let a = msg_server(&ts, "a", 8001, 0, 100).await;
    let b = msg_server(&ts, "b", 8002, 5, 100).await;
    assert_eq!(ts.login().await, Ok(8001));
    a.link.close();
    wait_for("a unregistered", || ts.status(8001).is_none()).await;
    for _ in 0..10 {
        assert_eq!(ts.login().await, Ok(8002));
    }
    b.link.close();
    wait_for("b unregistered", || ts.server.msg_servers().is_empty()).await;
    assert_eq!(ts.login().await, Err(1));
    ts.stop().await;
}

#[tokio::test]
async fn a_re_sent_msg_serv_info_replaces_the_record() {
    let ts = start().await;
    let a = msg_server(&ts, "a", 8001, 10, 100).await;
    a.link
        .send(&info("a", "127.0.0.1", 8001, 12, 100))
        .await
        .unwrap();
    wait_for("replacement", || {
        ts.status(8001).is_some_and(|s| s.cur_conn_cnt == 12)
    })
    .await;
    assert_eq!(ts.server.msg_servers().len(), 1);
    let users = ts
        .server
        .metrics()
        .values()
        .into_iter()
        .find(|(n, _, _)| n == "im_login_server_msg_server_users")
        .map(|v| v.1);
    assert_eq!(users, Some(12.0), "counted once");
    ts.stop().await;
}

#[tokio::test]
async fn pending_logins_expire() {
    let ts = start_with(|c| c.pending_login_ttl_secs = 1).await;
    // b registered first (wins ties), with 3 users; a is empty.
    let _b = msg_server(&ts, "b", 8002, 3, 100).await;
    let _a = msg_server(&ts, "a", 8001, 0, 100).await;
    for _ in 0..3 {
        assert_eq!(ts.login().await, Ok(8001));
    }
    assert_eq!(ts.status(8001).unwrap().pending_logins, 3);
    // a's three unreported logins expire; without that, the tie at 3 would go to b.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(ts.status(8001).unwrap().pending_logins, 0);
    assert_eq!(ts.login().await, Ok(8001));
    ts.stop().await;
}

#[tokio::test]
async fn bad_input_on_the_msg_server_port_harms_only_its_own_link() {
    let ts = start().await;
    let a = msg_server(&ts, "a", 8001, 0, 100).await;

    // Counts before registration are ignored, then the link registers normally.
    let mut raw = TcpStream::connect(&ts.msg).await.unwrap();
    let update = im_proto::server::ImUserCntUpdate {
        user_action: 1,
        user_id: 9,
    };
    raw.write_all(&Pdu::from_msg(&update, 0).to_frame())
        .await
        .unwrap();
    raw.write_all(&Pdu::from_msg(&info("raw", "127.0.0.1", 8009, 7, 100), 0).to_frame())
        .await
        .unwrap();
    wait_for("raw registered", || ts.status(8009).is_some()).await;
    assert_eq!(ts.status(8009).unwrap().cur_conn_cnt, 7);

    // A body that does not decode (required fields missing) is dropped; the link stays.
    let empty = Pdu::new(
        Header::new(sid::SID_OTHER, cid::CID_OTHER_USER_CNT_UPDATE, 0),
        Bytes::new(),
    );
    a.link.send_pdu(&empty).await.unwrap();
    a.report(1, 1).await;
    wait_for("a counted", || {
        ts.status(8001).is_some_and(|s| s.cur_conn_cnt == 1)
    })
    .await;

    // A framing error (length 5) closes that link only, and its record goes with it.
    raw.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the bad link is closed");
    wait_for("raw unregistered", || ts.status(8009).is_none()).await;
    a.report(1, 1).await;
    wait_for("a still counted", || {
        ts.status(8001).is_some_and(|s| s.cur_conn_cnt == 2)
    })
    .await;
    let bad = ts
        .server
        .metrics()
        .values()
        .into_iter()
        .find(|(n, _, _)| n == "im_login_server_bad_bodies_total")
        .map(|v| v.1);
    assert_eq!(bad, Some(1.0));
    ts.stop().await;
}
