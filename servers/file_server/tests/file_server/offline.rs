//! Offline transfer: upload pulled in exact blocks onto disk in the original's format,
//! download in blocks, files of an original file_server served (FLOWS.md 14.3, STORAGE.md 7,
//! WEAKNESSES 50).

use std::io::Write;

use crate::harness::*;

/// The header an original file_server writes: NUL-padded decimal fields, empty file name.
fn original_header(task: &str, from: u32, to: u32, created: u64, size: u32) -> Vec<u8> {
    let mut h = vec![0u8; 960];
    let mut put = |at: usize, s: &str| h[at..at + s.len()].copy_from_slice(s.as_bytes());
    put(0, task);
    put(128, &from.to_string());
    put(192, &to.to_string());
    put(256, &created.to_string());
    put(896, &size.to_string());
    h
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|x| *x == 0).unwrap_or(b.len());
    String::from_utf8(b[..end].to_vec()).unwrap()
}

#[tokio::test]
async fn offline_upload_and_download_are_byte_exact_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let data = bytes(5 * BLOCK + 1234, 2);
    let size = data.len() as u32;
    let rsp = create(&link, 11, 22, OFFLINE, "report ü.pdf", size).await;
    let task = rsp.task_id.unwrap();

    let mut up = fs.login(11, &task, UPLOAD).await;
    up.upload(&data).await;
    up.closed().await;

    // On disk in the original layout, with the real file name.
    let raw = std::fs::read(fs.path(&task)).unwrap();
    assert_eq!(raw.len(), 960 + data.len());
    assert_eq!(text(&raw[0..128]), task);
    assert_eq!(text(&raw[128..192]), "11");
    assert_eq!(text(&raw[192..256]), "22");
    let created: u64 = text(&raw[256..384]).parse().unwrap();
    assert!(created > 1_600_000_000);
    assert_eq!(text(&raw[384..896]), "report ü.pdf");
    assert_eq!(text(&raw[896..960]), size.to_string());
    assert_eq!(sha256(&raw[960..]), sha256(&data));
    assert_eq!(files_under(&fs.data_dir), vec![task.clone()]);
    assert_eq!(fs.metric("offline_files").await, 1.0);
    assert_eq!(
        fs.metric("transfers_completed_total{kind=\"upload\"}")
            .await,
        1.0
    );
    assert_eq!(fs.metric("received_bytes_total").await, f64::from(size));
    assert_eq!(
        fs.stats().await.table_size,
        Some(0),
        "stored files hold no task"
    );

    // A restart forgets every task; the download reloads it from disk.
    fs.stop().await;
    let fs = Fs::start(config(dir.path())).await;
    let mut down = fs.login(22, &task, DOWNLOAD).await;
    // One download at a time.
    fs.refused(22, &task, DOWNLOAD).await;
    let got = down.download(data.len(), 11).await;
    assert_eq!(sha256(&got), sha256(&data));
    assert_eq!(fs.metric("sent_bytes_total").await, f64::from(size));
    assert_eq!(
        fs.metric("transfers_completed_total{kind=\"download\"}")
            .await,
        1.0
    );
    assert_eq!(fs.metric("transfers_active").await, 0.0);
    // The receiver's role is used up, across a restart too.
    fs.refused(22, &task, DOWNLOAD).await;
    fs.stop().await;
    let fs = Fs::start(config(dir.path())).await;
    fs.refused(22, &task, DOWNLOAD).await;
    fs.stop().await;
}

#[tokio::test]
async fn an_interrupted_download_can_be_retried_and_empty_files_work() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let data = bytes(3 * BLOCK, 3);
    let task = fs.create(&link, 11, 22, OFFLINE, data.len() as u32).await;
    fs.login(11, &task, UPLOAD).await.upload(&data).await;

    // The first download stops after one block.
    let first = fs.login(22, &task, DOWNLOAD).await;
    let req = im_proto::file::ImFilePullDataReq {
        task_id: task.clone(),
        user_id: 22,
        trans_mode: OFFLINE,
        offset: 0,
        data_size: 100,
    };
    let p = first
        .c
        .request_pdu(
            im_proto::Pdu::from_msg(&req, 0),
            im_proto::cid::CID_FILE_PULL_DATA_RSP,
            WAIT,
        )
        .await
        .unwrap();
    let rsp: im_proto::file::ImFilePullDataRsp = p.decode().unwrap();
    assert_eq!(
        rsp.file_data.len(),
        BLOCK,
        "whole blocks whatever data_size says"
    );
    first.c.close();
    wait_until("the first download to end", || async {
        fs.metric("transfers_active").await == 0.0
    })
    .await;
    let got = fs
        .login(22, &task, DOWNLOAD)
        .await
        .download(data.len(), 11)
        .await;
    assert_eq!(sha256(&got), sha256(&data));

    // An empty file: stored at once, served as one empty block.
    let empty = fs.create(&link, 11, 22, OFFLINE, 0).await;
    let mut up = fs.login(11, &empty, UPLOAD).await;
    up.upload(&[]).await;
    assert_eq!(std::fs::metadata(fs.path(&empty)).unwrap().len(), 960);
    let got = fs.login(22, &empty, DOWNLOAD).await.download(0, 11).await;
    assert!(got.is_empty());
    fs.stop().await;
}

#[tokio::test]
async fn original_offline_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let task = "6f1a9c2e-3b4d-4e5f-8a7b-0c1d2e3f4a5b";
    let data = bytes(2 * BLOCK + 99, 4);
    let sub = cfg.data_dir.join(&task[..2]);
    std::fs::create_dir_all(&sub).unwrap();
    let mut f = std::fs::File::create(sub.join(task)).unwrap();
    f.write_all(&original_header(
        task,
        31,
        32,
        1_500_000_000,
        data.len() as u32,
    ))
    .unwrap();
    f.write_all(&data).unwrap();
    drop(f);
    // An original file cut short by a crash: not complete, not served.
    let cut = "77777777-3b4d-4e5f-8a7b-0c1d2e3f4a5b";
    let sub = cfg.data_dir.join(&cut[..2]);
    std::fs::create_dir_all(&sub).unwrap();
    let mut f = std::fs::File::create(sub.join(cut)).unwrap();
    f.write_all(&original_header(cut, 31, 32, 1_500_000_000, 1000))
        .unwrap();
    f.write_all(&data[..999]).unwrap();
    drop(f);

    let fs = Fs::start(Config {
        // Kept forever, as the original keeps them.
        offline_retention_days: 0.0,
        ..cfg
    })
    .await;
    // Only the receiver may download it.
    fs.refused(31, task, DOWNLOAD).await;
    fs.refused(33, task, DOWNLOAD).await;
    fs.refused(32, task, UPLOAD).await;
    fs.refused(32, cut, DOWNLOAD).await;
    let got = fs
        .login(32, task, DOWNLOAD)
        .await
        .download(data.len(), 31)
        .await;
    assert_eq!(sha256(&got), sha256(&data));
    wait_until("the sweep to count the files", || async {
        fs.metric("offline_files").await == 2.0
    })
    .await;
    fs.stop().await;
}

#[tokio::test]
async fn upload_blocks_must_be_exactly_the_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let data = bytes(BLOCK + 7232, 5);
    let size = data.len() as u32;

    // Short, long, misplaced, and an error result: each fails the upload.
    let cases: [(&str, u32, usize, u32); 4] = [
        ("short first block", 0, BLOCK - 1, 0),
        ("long last block", BLOCK as u32, 7233, 0),
        ("wrong offset", BLOCK as u32 + 1, 7232, 0),
        ("uploader error", 0, BLOCK, 1),
    ];
    for (what, offset, len, result) in cases {
        let task = fs.create(&link, 11, 22, OFFLINE, size).await;
        let mut up = fs.login(11, &task, UPLOAD).await;
        let first = up.next().await;
        assert_eq!(first.command_id(), im_proto::cid::CID_FILE_PULL_DATA_REQ);
        if offset > 0 {
            // A correct first block, then the bad one.
            up.send_block(0, &data[..BLOCK]).await;
            let next = up.next().await;
            let req: im_proto::file::ImFilePullDataReq = next.decode().unwrap();
            assert_eq!((req.offset, req.data_size), (BLOCK as u32, 7232));
        }
        let mut block = data.clone();
        block.resize(BLOCK + 7233, 0);
        let start = (offset as usize).min(BLOCK);
        up.c.send(&im_proto::file::ImFilePullDataRsp {
            result_code: result,
            task_id: task.clone(),
            user_id: 11,
            offset,
            file_data: bytes::Bytes::copy_from_slice(&block[start..start + len]),
        })
        .await
        .unwrap();
        up.closed().await;
        // Nothing stored, the task is gone.
        wait_until("the partial upload to go", || async {
            files_under(&fs.data_dir).is_empty()
        })
        .await;
        fs.refused(22, &task, DOWNLOAD).await;
        fs.refused(11, &task, UPLOAD).await;
        let _ = what;
    }
    assert_eq!(fs.metric("transfers_failed_total").await, 4.0);
    assert_eq!(fs.metric("transfers_active").await, 0.0);
    assert_eq!(fs.stats().await.table_size, Some(0));
    fs.stop().await;
}
