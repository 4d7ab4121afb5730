//! Task creation over the msg_server port (FLOWS.md 1.4, 14.1 step 4; WEAKNESSES 51).

use im_proto::other::ImHeartBeat;
use im_proto::server::ImFileServerIpReq;

use crate::harness::*;

#[tokio::test]
async fn address_list_and_task_creation() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(Config {
        advertise: vec!["192.0.2.7".into(), "127.0.0.1".into()],
        max_tasks: 3,
        ..config(dir.path())
    })
    .await;
    let link = fs.link().await;
    let ips = link.request(&ImFileServerIpReq {}).await.unwrap();
    let port: u32 = fs.client.rsplit(':').next().unwrap().parse().unwrap();
    let got: Vec<(String, u32)> = ips
        .ip_addr_list
        .iter()
        .map(|a| (a.ip.clone(), a.port))
        .collect();
    assert_eq!(
        got,
        vec![("192.0.2.7".into(), port), ("127.0.0.1".into(), port)]
    );

    let rsp = create(&link, 11, 22, ONLINE, "photo.jpg", 1234).await;
    assert_eq!(rsp.result_code, 0);
    assert_eq!((rsp.from_user_id, rsp.to_user_id), (11, 22));
    assert_eq!(rsp.file_name.as_deref(), Some("photo.jpg"));
    assert_eq!(rsp.file_size, Some(1234));
    assert_eq!(rsp.trans_mode, Some(ONLINE));
    assert_eq!(
        rsp.attach_data.as_deref(),
        Some(&b"\0\0\0\x01\0\0\0\x07\0\0\0\0"[..])
    );
    // A random UUID v4 in the original's 36-character text form.
    let id = rsp.task_id.unwrap();
    let u = uuid_parts(&id);
    assert_eq!(
        u.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![8, 4, 4, 4, 12],
        "{id}"
    );
    assert!(u[2].starts_with('4'), "version 4: {id}");
    assert!(
        id.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let other = fs.create(&link, 11, 22, OFFLINE, 10).await;
    assert_ne!(other, id);

    // An undefined trans_mode is a body a proto2 parser refuses: dropped, link kept.
    let bad = link
        .request_timeout(
            &im_proto::server::ImFileTransferReq {
                from_user_id: 11,
                to_user_id: 22,
                file_name: "bad mode".into(),
                file_size: 1,
                trans_mode: 9,
                attach_data: None,
            },
            std::time::Duration::from_millis(300),
        )
        .await;
    assert!(bad.is_err(), "{bad:?}");
    // Failures answer result 1 and keep the link (the original closed it).
    for (from, to, mode, name) in [
        (0, 22, ONLINE, "no sender".to_owned()),
        (11, 0, OFFLINE, "no receiver".to_owned()),
        (11, 22, ONLINE, "n".repeat(513)),
    ] {
        let rsp = create(&link, from, to, mode, &name, 1).await;
        assert_eq!(rsp.result_code, 1, "{name}");
        assert_eq!(rsp.task_id.as_deref(), Some(""));
        assert_eq!(rsp.trans_mode, Some(mode));
        assert!(!link.is_closed());
    }
    fs.create(&link, 11, 22, ONLINE, 1).await;
    // max_tasks = 3: the table is full.
    assert_eq!(create(&link, 11, 22, ONLINE, "x", 1).await.result_code, 1);
    // The link echoes heartbeats (FLOWS.md 1.1) and is still usable.
    link.request(&ImHeartBeat {}).await.unwrap();
    assert!(link.request(&ImFileServerIpReq {}).await.is_ok());

    let st = fs.stats().await;
    assert_eq!(st.table_size, Some(3));
    assert_eq!(fs.metric("tasks_created_total{mode=\"online\"}").await, 2.0);
    assert_eq!(
        fs.metric("tasks_created_total{mode=\"offline\"}").await,
        1.0
    );
    assert_eq!(fs.metric("task_create_failures_total").await, 4.0);
    assert_eq!(fs.metric("decode_errors_total").await, 1.0);
    assert_eq!(fs.metric("msg_server_links").await, 1.0);
    fs.stop().await;
}

fn uuid_parts(id: &str) -> Vec<&str> {
    id.split('-').collect()
}
