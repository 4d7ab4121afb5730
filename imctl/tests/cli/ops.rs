//! Operating commands: status, servers, route ls/who, kick, drain, send, chat, completions,
//! and a wrong token.

use im_proto::base::{ClientType, KickReasonType, MsgType};
use im_proto::client::fetch_msg_server;
use im_proto::crypto::MessageCipher;
use im_proto::login::ImKickUser;
use im_proto::message::ImMsgData;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

fn decrypt(m: &ImMsgData) -> String {
    let plain = MessageCipher::default_key().decrypt(&m.msg_data).unwrap();
    String::from_utf8(plain).unwrap()
}

#[tokio::test]
async fn status_servers_and_routes() {
    let s = Suite::start().await;
    let status = s.json(&["status"]).await;
    let servers = status.as_array().unwrap();
    assert_eq!(servers.len(), s.cluster.endpoints().len(), "{status}");
    assert!(servers.iter().all(|x| x["state"] == "up"), "{status}");

    let list = s.json(&["servers"]).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["host_name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    assert!(names.contains(&"msg_server-1") && names.contains(&"msg_server-2"));

    let zhang = login(s.msg_server(0), "zhangsan", ClientType::Windows).await;
    let _li = login(s.msg_server(1), "lisi", ClientType::Android).await;
    wait_until("route_server lists both users", || async {
        let page = s.json(&["route", "ls"]).await;
        page["total_users"] == 2
    })
    .await;
    let page = s.json(&["route", "ls", "--limit", "1"]).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_after"], zhang.id);
    let who = s.json(&["route", "who", &zhang.id.to_string()]).await;
    assert_eq!(who["wire_status"], "online");
    assert_eq!(who["locations"][0]["client_type"], "windows");
    let offline = s.run(&["route", "who", "20"]).await;
    assert_eq!(offline.status.code(), Some(3));
}

#[tokio::test]
async fn kick_closes_the_user_on_every_msg_server() {
    let s = Suite::start().await;
    let mut a = login(s.msg_server(0), "zhangsan", ClientType::Windows).await;
    let mut b = login(s.msg_server(1), "zhangsan", ClientType::Android).await;
    let id = a.id.to_string();
    wait_until("route_server knows both connections", || async {
        let who = s.json(&["route", "who", &id]).await;
        who["locations"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    let r = s.json(&["kick", &id]).await;
    assert_eq!(r["kicked"], 2, "{r}");
    for u in [&mut a, &mut b] {
        let (_, k) = u.next::<ImKickUser>().await;
        assert_eq!(
            k.kick_reason,
            KickReasonType::KickReasonDuplicateUser as i32
        );
        assert_eq!(k.kick_reason, 1);
        u.closed().await;
    }
    let again = s.run(&["kick", &id]).await;
    assert_eq!(again.status.code(), Some(3), "nobody left to kick");
}

#[tokio::test]
async fn drain_moves_new_logins_away() {
    let s = Suite::start().await;
    let r = s.json(&["drain", "msg_server-1"]).await;
    assert_eq!(r["draining"], true);
    assert_eq!(r["msg_server"], true, "{r}");
    let second = s.msg_server(1).port();
    for _ in 0..20 {
        let a = fetch_msg_server(s.cluster.login_url()).await.unwrap();
        assert_eq!(a.port, second, "a drained msg_server was handed out");
    }
    let status = s.json(&["status"]).await;
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "msg_server-1" && x["state"] == "draining"),
        "{status}"
    );
}

#[tokio::test]
async fn send_as_a_user_reaches_the_receiver_and_the_senders_devices() {
    let s = Suite::start().await;
    let mut li = login(s.msg_server(1), "lisi", ClientType::Windows).await;
    let mut zhang = login(s.msg_server(0), "zhangsan", ClientType::Windows).await;
    let r = s
        .json(&[
            "send", "--as", "zhangsan", "--to", "lisi", "hello", "from", "imctl",
        ])
        .await;
    assert!(r["msg_id"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["group"], false);
    let (pdu, got) = li.next::<ImMsgData>().await;
    assert_eq!(pdu.seq_num(), 0);
    assert_eq!((got.from_user_id, got.to_session_id), (zhang.id, li.id));
    assert_eq!(decrypt(&got), "hello from imctl");
    // The sender's own client stays and sees the copy as another device.
    let (_, copy) = zhang.next::<ImMsgData>().await;
    assert_eq!(copy.msg_id, got.msg_id);
    assert!(!zhang.c.is_closed());
    zhang.c.heartbeat().await.unwrap();

    // A group: the seed's 研发部 holds both.
    let r = s
        .json(&["send", "--as", "lisi", "--group", "研发部", "group hello"])
        .await;
    assert_eq!(r["group"], true);
    let (_, g) = zhang.next::<ImMsgData>().await;
    assert_eq!(g.msg_type, MsgType::GroupText as i32);
    assert_eq!(decrypt(&g), "group hello");

    let bad = s
        .run(&["send", "--as", "nobody-here", "--to", "lisi", "x"])
        .await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("nobody-here"),
        "{}",
        text(&bad.stderr)
    );
}

#[tokio::test]
async fn chat_sends_typed_lines_and_prints_what_arrives() {
    let s = Suite::start().await;
    let mut li = login(s.msg_server(1), "lisi", ClientType::Windows).await;
    let out = s
        .run_with_stdin(
            &[
                "--json",
                "chat",
                "zhangsan",
                "--password",
                PASSWORD,
                "--to",
                "lisi",
            ],
            "first line\n\nsecond line\n",
        )
        .await;
    ok(&out, &["chat"]);
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "logged_in");
    let sent: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "sent").collect();
    assert_eq!(sent.len(), 2, "{events:?}");
    for want in ["first line", "second line"] {
        let (_, m) = li.next::<ImMsgData>().await;
        assert_eq!(decrypt(&m), want);
    }

    // And the other way: a chat session prints (decrypted) what arrives, then leaves at the
    // end of its input.
    let mut child = tokio::process::Command::new(IMCTL)
        .arg("--config")
        .arg(&s.config)
        .args(["--json", "chat", "zhangsan", "--to", "lisi"])
        .env("IM_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_event = async || -> serde_json::Value {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("chat printed in time")
            .unwrap()
            .expect("chat still running");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next_event().await["event"], "logged_in");
    let zhang_id = s.json(&["user", "ls", "--name", "zhangsan"]).await[0]["user_id"]
        .as_u64()
        .unwrap() as u32;
    let msg = ImMsgData {
        from_user_id: li.id,
        to_session_id: zhang_id,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: MessageCipher::default_key()
            .encrypt("你好, zhangsan".as_bytes())
            .into_bytes()
            .into(),
        attach_data: None,
    };
    li.c.request(&msg).await.unwrap();
    let e = next_event().await;
    assert_eq!(e["event"], "message", "{e}");
    assert_eq!(e["text"], "你好, zhangsan");
    assert_eq!(e["from"], "lisi");
    drop(child.stdin.take());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let wrong = s
        .run(&["chat", "zhangsan", "--password", "nope", "--to", "lisi"])
        .await;
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("login refused"),
        "{}",
        text(&wrong.stderr)
    );
}

#[tokio::test]
async fn completions_and_a_wrong_token() {
    let s = Suite::start().await;
    let out = s.run(&["completions", "bash"]).await;
    ok(&out, &["completions"]);
    assert!(text(&out.stdout).contains("_imctl"));
    let out = s.run(&["--token", "not-the-admin-token", "servers"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("refused the admin token"), "{err}");
}
