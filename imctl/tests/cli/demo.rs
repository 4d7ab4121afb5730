//! `imctl demo` as a child process: it becomes ready, serves HTTP login and chat to the seeded
//! users, writes an imctl.toml that other commands use, logs refused admin tokens, and exits 0
//! on SIGINT.

use std::process::Stdio;

use im_proto::base::ClientType;
use im_proto::client::fetch_msg_server;
use im_proto::crypto::MessageCipher;
use im_proto::message::ImMsgData;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::common::*;

#[tokio::test]
async fn demo_serves_the_seeded_users_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut child = tokio::process::Command::new(IMCTL)
        .args([
            "--json",
            "demo",
            "--ephemeral",
            "--log",
            "warn",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let line = tokio::time::timeout(WAIT * 3, stdout.next_line())
        .await
        .expect("demo ready in time")
        .unwrap()
        .expect("demo printed its ready line");
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["event"], "ready");
    let login_url = ready["login_url"].as_str().unwrap().to_owned();
    assert!(
        ready["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "zhangsan")
    );

    // HTTP login, then two seeded users chat.
    let a = fetch_msg_server(&login_url).await.unwrap();
    let addr = a.addr().parse().unwrap();
    let zhang = login(addr, "zhangsan", ClientType::Windows).await;
    let b = fetch_msg_server(&login_url).await.unwrap();
    let mut li = login(b.addr().parse().unwrap(), "lisi", ClientType::Windows).await;
    let cipher = MessageCipher::default_key();
    let m = ImMsgData {
        from_user_id: zhang.id,
        to_session_id: li.id,
        msg_id: 0,
        create_time: 0,
        msg_type: im_proto::base::MsgType::SingleText as i32,
        msg_data: cipher.encrypt("hi lisi".as_bytes()).into_bytes().into(),
        attach_data: None,
    };
    zhang.c.request(&m).await.unwrap();
    let (_, got) = li.next::<ImMsgData>().await;
    assert_eq!(cipher.decrypt(&got.msg_data).unwrap(), b"hi lisi");

    // The written config drives other commands; a wrong token is refused and logged.
    let config = data.join("imctl.toml");
    assert_eq!(ready["config"].as_str().unwrap(), config.to_str().unwrap());
    let status = run(&config, &["--json", "status"], "", &[]).await;
    ok(&status, &["status"]);
    let out = run(
        &config,
        &["--token", "wrong-token-0123456789", "user", "ls"],
        "",
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("refused the admin token"),
        "{}",
        text(&out.stderr)
    );

    // SIGINT: a clean stop, exit code 0.
    let pid = child.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let code = tokio::time::timeout(WAIT * 2, child.wait())
        .await
        .expect("demo stops after SIGINT")
        .unwrap();
    let mut log = String::new();
    stderr.read_to_string(&mut log).await.unwrap();
    assert!(code.success(), "demo exited with {code}; its log:\n{log}");
    assert!(
        log.contains("admin authentication failed"),
        "the refused token is logged:\n{log}"
    );

    // A second start keeps the data and the token (the saved config still works).
    let token = std::fs::read_to_string(&config).unwrap();
    let mut again = tokio::process::Command::new(IMCTL)
        .args(["--json", "demo", "--ephemeral", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(again.stdout.take().unwrap()).lines();
    tokio::time::timeout(WAIT * 3, stdout.next_line())
        .await
        .expect("ready again")
        .unwrap()
        .expect("a ready line");
    let users = run(&config, &["--json", "user", "ls", "--all"], "", &[]).await;
    ok(&users, &["user ls"]);
    let users: serde_json::Value = serde_json::from_slice(&users.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 20, "seeded once");
    let token_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("token"))
            .map(str::to_owned)
    };
    assert_eq!(
        token_line(&std::fs::read_to_string(&config).unwrap()),
        token_line(&token)
    );
    again.kill().await.unwrap();
}
