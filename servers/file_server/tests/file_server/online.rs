//! Online transfer relayed between two clients (FLOWS.md 14.2).

use im_proto::base::ClientFileState;

use crate::harness::*;

#[tokio::test]
async fn online_relay_is_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let data = bytes(300_000 + 17, 1);
    let task = fs.create(&link, 11, 22, ONLINE, data.len() as u32).await;

    // The receiver logs in first; PEER_READY goes to it when the sender arrives.
    let mut receiver = fs.login(22, &task, RECEIVER).await;
    let mut sender = fs.login(11, &task, SENDER).await;
    let ready = receiver.state().await;
    assert_eq!(ready.state, ClientFileState::ClientFilePeerReady as i32);
    assert_eq!(ready.user_id, 11);
    assert_eq!(ready.task_id, task);
    assert_eq!(fs.metric("transfers_active").await, 1.0);

    let sending = tokio::spawn(async move {
        let st = sender.serve_online(&data).await;
        (sender, data, st)
    });
    // The chunk size is the clients' choice.
    let got = receiver.pull_online(300_017, 20_000).await;
    receiver.send_state(ClientFileState::ClientFileDone).await;
    let (mut sender, data, st) = sending.await.unwrap();
    assert_eq!(sha256(&got), sha256(&data));
    let st = st.expect("DONE forwarded to the sender");
    assert_eq!(st.state, ClientFileState::ClientFileDone as i32);
    assert_eq!(st.user_id, 22);
    // Both sides are closed and the task is gone.
    receiver.closed().await;
    sender.closed().await;
    fs.refused(22, &task, RECEIVER).await;

    assert_eq!(
        fs.metric("transfers_completed_total{kind=\"online\"}")
            .await,
        1.0
    );
    assert_eq!(fs.metric("received_bytes_total").await, 300_017.0);
    assert_eq!(fs.metric("sent_bytes_total").await, 300_017.0);
    assert_eq!(fs.metric("transfers_active").await, 0.0);
    assert_eq!(fs.stats().await.table_size, Some(0));
    fs.stop().await;
}

#[tokio::test]
async fn one_side_dropping_closes_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let task = fs.create(&link, 11, 22, ONLINE, 100).await;
    let sender = fs.login(11, &task, SENDER).await;
    let mut receiver = fs.login(22, &task, RECEIVER).await;
    assert_eq!(
        receiver.state().await.state,
        ClientFileState::ClientFilePeerReady as i32
    );
    sender.c.close();
    receiver.closed().await;
    fs.refused(11, &task, SENDER).await;
    assert_eq!(fs.metric("transfers_failed_total").await, 1.0);
    assert_eq!(fs.metric("transfers_active").await, 0.0);

    // A CANCEL is forwarded, and both are closed.
    let task = fs.create(&link, 11, 22, ONLINE, 100).await;
    let mut sender = fs.login(11, &task, SENDER).await;
    let mut receiver = fs.login(22, &task, RECEIVER).await;
    receiver.state().await;
    receiver.send_state(ClientFileState::ClientFileRefuse).await;
    let st = sender.state().await;
    assert_eq!(st.state, ClientFileState::ClientFileRefuse as i32);
    sender.closed().await;
    receiver.closed().await;
    assert_eq!(fs.metric("transfers_failed_total").await, 2.0);
    fs.stop().await;
}
