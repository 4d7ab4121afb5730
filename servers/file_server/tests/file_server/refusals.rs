//! The task id is the secret, and each of the task's two users logs in once in its own role
//! (WEAKNESSES 9).

use crate::harness::*;

#[tokio::test]
async fn strangers_wrong_roles_and_second_logins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(config(dir.path())).await;
    let link = fs.link().await;
    let task = fs.create(&link, 11, 22, ONLINE, 10).await;

    // Not part of the task, or the other user's role, or an offline role.
    fs.refused(33, &task, SENDER).await;
    fs.refused(33, &task, RECEIVER).await;
    fs.refused(22, &task, SENDER).await;
    fs.refused(11, &task, RECEIVER).await;
    fs.refused(11, &task, UPLOAD).await;
    fs.refused(22, &task, DOWNLOAD).await;
    // An undefined role is a body a proto2 parser refuses: no answer at all.
    let (c, _ev) = im_proto::client::ImClient::connect(&fs.client, client_config())
        .await
        .unwrap();
    let none = c
        .request_timeout(
            &im_proto::file::ImFileLoginReq {
                user_id: 11,
                task_id: task.clone(),
                file_role: 7,
            },
            std::time::Duration::from_millis(300),
        )
        .await;
    assert!(none.is_err(), "{none:?}");
    // Unknown ids, including ones that try to walk the file system.
    fs.refused(11, "0f8fad5b-d9cb-469f-a165-70867728950e", SENDER)
        .await;
    fs.refused(22, "../../../../etc/passwd", DOWNLOAD).await;
    fs.refused(22, "", DOWNLOAD).await;

    // The right user in the right role, once.
    let _sender = fs.login(11, &task, SENDER).await;
    fs.refused(11, &task, SENDER).await;
    let _receiver = fs.login(22, &task, RECEIVER).await;
    fs.refused(22, &task, RECEIVER).await;

    // Offline: no download before the upload, one upload, downloads only for the receiver.
    let data = bytes(1000, 6);
    let off = fs.create(&link, 11, 22, OFFLINE, 1000).await;
    fs.refused(22, &off, DOWNLOAD).await;
    fs.refused(22, &off, UPLOAD).await;
    fs.refused(11, &off, SENDER).await;
    let mut up = fs.login(11, &off, UPLOAD).await;
    fs.refused(11, &off, UPLOAD).await;
    up.upload(&data).await;
    fs.refused(11, &off, UPLOAD).await;
    fs.refused(11, &off, DOWNLOAD).await;
    fs.refused(33, &off, DOWNLOAD).await;
    let got = fs.login(22, &off, DOWNLOAD).await.download(1000, 11).await;
    assert_eq!(got, data);
    fs.refused(22, &off, DOWNLOAD).await;

    // Commands before a login do nothing; the connection stays until its deadline.
    let (c, mut ev) = im_proto::client::ImClient::connect(&fs.client, client_config())
        .await
        .unwrap();
    c.send(&im_proto::file::ImFilePullDataReq {
        task_id: off.clone(),
        user_id: 22,
        trans_mode: OFFLINE,
        offset: 0,
        data_size: 10,
    })
    .await
    .unwrap();
    c.request(&im_proto::other::ImHeartBeat {}).await.unwrap();
    assert!(ev.try_recv().is_none());

    // 9 refusals for the online task, 2 second logins, 8 offline ones.
    assert_eq!(fs.metric("login_refusals_total").await, 19.0);
    assert_eq!(fs.metric("decode_errors_total").await, 1.0);
    fs.stop().await;
}
