//! An ad-hoc throughput measurement (not an assertion): single-chat IMMsgData from one fake
//! msg_server to another through route_server. Run with
//! `cargo test -p route_server --release --test route_server -- --ignored --nocapture bench`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use im_proto::Pdu;
use im_proto::base::{ClientType, MsgType};
use im_proto::message::ImMsgData;

use crate::harness::Server;

const MESSAGES: u32 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn bench_single_chat_throughput() {
    let s = Server::start(Duration::from_secs(15)).await;
    let (a, mut b) = (s.msg_server().await, s.msg_server().await);
    a.register(&[(1, ClientType::Windows)]).await;
    b.register(&[(2, ClientType::Windows)]).await;
    let frames: Vec<Bytes> = (0..MESSAGES)
        .map(|i| {
            let msg = ImMsgData {
                from_user_id: 1,
                to_session_id: 2,
                msg_id: i + 1,
                create_time: 1_700_000_000,
                msg_type: MsgType::SingleText as i32,
                msg_data: Bytes::from_static(b"a typical short chat message, 40 bytes.."),
                attach_data: Some(Bytes::from_static(&[0; 12])),
            };
            Pdu::from_msg(&msg, (i % 60_000) as u16 + 1).to_frame()
        })
        .collect();
    let receiver = tokio::spawn(async move {
        let mut n = 0u32;
        while n < MESSAGES {
            match b.events.recv_timeout(Duration::from_secs(30)).await {
                Ok(Some(_)) => n += 1,
                other => panic!("after {n} messages: {other:?}"),
            }
        }
        Instant::now()
    });
    let start = Instant::now();
    for f in frames {
        a.client.send_frame(f).await.unwrap();
    }
    let sent = start.elapsed();
    let done = receiver.await.unwrap();
    let total = done - start;
    println!(
        "route_server: {MESSAGES} single-chat IMMsgData routed in {total:?} \
         ({:.0} msgs/s end to end; queued by the sender in {sent:?})",
        f64::from(MESSAGES) / total.as_secs_f64()
    );
    s.stop().await;
}
