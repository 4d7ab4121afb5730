//! Throughput measurements (ignored: run with `--ignored --nocapture`; no timed assertions).

use std::time::Instant;

use im_proto::file::{ImFilePullDataReq, ImFilePullDataRsp};
use im_proto::{Pdu, cid};

use crate::harness::*;

/// Blocks the receiver keeps in flight.
const WINDOW: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn measure_online_and_offline_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let size = 64 << 20;
    let data = bytes(size, 9);

    // Online: 32 KiB blocks, WINDOW requests in flight.
    let task = fs.create(&link, 11, 22, ONLINE, size as u32).await;
    let mut receiver = fs.login(22, &task, RECEIVER).await;
    let mut sender = fs.login(11, &task, SENDER).await;
    receiver.state().await;
    let shared = std::sync::Arc::new(data);
    let d = shared.clone();
    let sending = tokio::spawn(async move { sender.serve_online(&d).await });
    let start = Instant::now();
    let mut got = 0usize;
    let mut offset = 0usize;
    let mut inflight = tokio::task::JoinSet::new();
    while got < size {
        while inflight.len() < WINDOW && offset < size {
            let c = receiver.c.clone();
            let req = ImFilePullDataReq {
                task_id: task.clone(),
                user_id: 22,
                trans_mode: ONLINE,
                offset: offset as u32,
                data_size: BLOCK as u32,
            };
            offset += BLOCK;
            inflight.spawn(async move {
                let p = c
                    .request_pdu(Pdu::from_msg(&req, 0), cid::CID_FILE_PULL_DATA_RSP, WAIT)
                    .await
                    .unwrap();
                p.decode::<ImFilePullDataRsp>().unwrap().file_data.len()
            });
        }
        got += inflight.join_next().await.unwrap().unwrap();
    }
    let online = start.elapsed();
    receiver
        .send_state(im_proto::base::ClientFileState::ClientFileDone)
        .await;
    sending.await.unwrap();

    // Offline: upload then download, one block at a time as the protocol does.
    let task = fs.create(&link, 11, 22, OFFLINE, size as u32).await;
    let mut up = fs.login(11, &task, UPLOAD).await;
    let start = Instant::now();
    up.upload(&shared).await;
    let upload = start.elapsed();
    let mut down = fs.login(22, &task, DOWNLOAD).await;
    let start = Instant::now();
    let back = down.download(size, 11).await;
    let download = start.elapsed();
    assert_eq!(sha256(&back), sha256(&shared));
    let mib = (size >> 20) as f64;
    println!(
        "64 MiB: online relay {:.0} MiB/s (window {WINDOW}), offline upload {:.0} MiB/s, \
         download {:.0} MiB/s",
        mib / online.as_secs_f64(),
        mib / upload.as_secs_f64(),
        mib / download.as_secs_f64()
    );
    fs.stop().await;
}
