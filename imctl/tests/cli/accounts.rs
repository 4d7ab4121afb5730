//! Administration commands: users (one, CSV, list, edit, password, disable), departments,
//! groups (members on a msg_server are told of changes), discovery items.

use im_proto::base::ClientType;
use im_proto::client::{ClientConfig, ClientError, ImClient, LoginParams};
use im_proto::group::ImGroupChangeMemberNotify;
use im_proto::login::ImKickUser;

use crate::common::*;

async fn can_log_in(s: &Suite, name: &str, password: &str) -> bool {
    let (c, _ev) = ImClient::connect(&s.msg_server(0).to_string(), ClientConfig::default())
        .await
        .unwrap();
    match c.login(&LoginParams::new(name, password)).await {
        Ok(_) => true,
        Err(ClientError::LoginRefused { .. }) => false,
        Err(e) => panic!("login of {name}: {e}"),
    }
}

#[tokio::test]
async fn users_from_creation_to_disabling() {
    let s = Suite::start().await;
    let added = s
        .json(&[
            "user",
            "add",
            "amy",
            "--password",
            "amy-pw",
            "--nick",
            "Amy",
            "--dept",
            "2",
            "--email",
            "amy@example.com",
        ])
        .await;
    let amy = added[0]["user_id"].as_u64().unwrap();
    assert!(amy > 20, "{added}");
    assert!(can_log_in(&s, "amy", "amy-pw").await);

    // A CSV: a header, a quoted nick, one name already taken (reported, the rest created).
    let csv = s.dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "name,password,nick,dept\nbo,bo-pw,\"Bo, the second\",3\namy,x,dup,1\ncy,cy-pw,Cy,3\n",
    )
    .unwrap();
    let out = s
        .run(&["--json", "user", "add", "--csv", csv.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "one row failed");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(rows[0]["user_id"].as_u64().unwrap() > amy);
    assert_eq!(rows[1]["user_id"], 0);
    assert!(rows[1]["error"].as_str().unwrap().contains("amy"), "{rows}");
    assert!(can_log_in(&s, "cy", "cy-pw").await);

    let all = s.json(&["user", "ls", "--all", "--limit", "7"]).await;
    assert_eq!(all.as_array().unwrap().len(), 23, "20 seeded + amy, bo, cy");
    let bo = s.json(&["user", "ls", "--name", "bo"]).await;
    assert_eq!(bo[0]["nick"], "Bo, the second");
    assert_eq!(bo[0]["depart_id"], 3);
    let page = s.json(&["user", "ls", "--limit", "5"]).await;
    assert_eq!(page.as_array().unwrap().len(), 5);

    // Edit by name; `updated` moves on.
    let before = s.json(&["user", "ls", "--name", "amy"]).await[0]["updated"]
        .as_u64()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.json(&["user", "edit", "amy", "--nick", "Amy B.", "--phone", "555"])
        .await;
    let now = &s.json(&["user", "ls", "--name", "amy"]).await[0];
    assert_eq!(
        (now["nick"].as_str(), now["phone"].as_str()),
        (Some("Amy B."), Some("555"))
    );
    assert!(now["updated"].as_u64().unwrap() > before);

    // passwd, the password from the environment.
    let out = run(
        &s.config,
        &["user", "passwd", "amy"],
        "",
        &[("IM_PASSWORD", "second-pw")],
    )
    .await;
    ok(&out, &["user passwd"]);
    assert!(can_log_in(&s, "amy", "second-pw").await);
    assert!(!can_log_in(&s, "amy", "amy-pw").await);
    // Without a password and no terminal to ask on: a clear refusal.
    let out = s.run(&["user", "passwd", "amy"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("IM_PASSWORD"),
        "{}",
        text(&out.stderr)
    );

    // disable: the live sessions are kicked, no login any more, status 3.
    let mut live = login_with(s.msg_server(1), "amy", "second-pw", ClientType::Windows).await;
    let id = live.id.to_string();
    wait_until("route_server knows amy", || async {
        s.run(&["route", "who", &id]).await.status.success()
    })
    .await;
    let r = s.json(&["user", "disable", "amy"]).await;
    assert_eq!(r["kicked"], 1, "{r}");
    let (_, k) = live.next::<ImKickUser>().await;
    assert_eq!(k.kick_reason, 1);
    live.closed().await;
    assert!(!can_log_in(&s, "amy", "second-pw").await);
    assert_eq!(
        s.json(&["user", "ls", "--name", "amy"]).await[0]["status"],
        3
    );

    let bad = s.run(&["user", "edit", "amy", "--status", "9"]).await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("status 9"),
        "{}",
        text(&bad.stderr)
    );
}

#[tokio::test]
async fn departments_and_discovery() {
    let s = Suite::start().await;
    let d = s
        .json(&["dept", "add", "QA", "--parent", "1", "--priority", "9"])
        .await;
    let id = d["dept_id"].as_u64().unwrap();
    let list = s.json(&["dept", "ls"]).await;
    let qa = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["dept_id"] == id)
        .expect("listed");
    assert_eq!(
        (qa["name"].as_str(), qa["parent_id"].as_u64()),
        (Some("QA"), Some(1))
    );
    assert_eq!(list.as_array().unwrap().len(), 7, "6 seeded + QA");

    let empty = s.json(&["discovery", "ls"]).await;
    let before = empty.as_array().unwrap().len();
    let a = s
        .json(&[
            "discovery",
            "add",
            "Wiki",
            "http://wiki.example/",
            "--priority",
            "3",
        ])
        .await;
    let item = a["id"].as_u64().unwrap();
    let list = s.json(&["discovery", "ls"]).await;
    assert_eq!(list.as_array().unwrap().len(), before + 1);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == item && x["url"] == "http://wiki.example/")
    );
    s.json(&["discovery", "rm", &item.to_string()]).await;
    let list = s.json(&["discovery", "ls"]).await;
    assert_eq!(list.as_array().unwrap().len(), before);
    let missing = s.run(&["discovery", "rm", "9999"]).await;
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("not found"),
        "{}",
        text(&missing.stderr)
    );
}

#[tokio::test]
async fn groups_and_member_change_notifies() {
    let s = Suite::start().await;
    let mut zhang = login(s.msg_server(0), "zhangsan", ClientType::Windows).await;
    let mut wang = login(s.msg_server(1), "wangwu", ClientType::Windows).await;
    let g = s
        .json(&["group", "create", "launch", "--members", "zhangsan,lisi"])
        .await;
    let gid = g["group_id"].as_u64().unwrap() as u32;
    let list = s.json(&["group", "ls"]).await;
    let launch = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["group_id"] == gid)
        .expect("listed");
    assert_eq!(launch["kind"], "normal");
    assert_eq!(launch["members"], serde_json::json!([zhang.id, 2]));

    // Add wangwu (on the other msg_server): both msg_servers tell their members.
    let r = s.json(&["group", "add", "launch", "wangwu"]).await;
    assert_eq!(r["changed"], serde_json::json!([wang.id]));
    // route_server sends it on every server link: both msg_servers and http_msg_server
    // (which ignores it, as the original does).
    assert_eq!(r["notified_msg_servers"], 3);
    assert_eq!(r["version"], 2);
    let (zid, wid) = (zhang.id, wang.id);
    for u in [&mut zhang, &mut wang] {
        let (_, n) = u.next::<ImGroupChangeMemberNotify>().await;
        assert_eq!((n.group_id, n.change_type, n.user_id), (gid, 1, 0));
        assert_eq!(n.chg_user_id_list, vec![wid]);
        let mut cur = n.cur_user_id_list.clone();
        cur.sort_unstable();
        assert_eq!(cur, vec![zid, 2, wid]);
    }
    // Remove by group id: the removed member is told too.
    let r = s.json(&["group", "rm", &gid.to_string(), "wangwu"]).await;
    assert_eq!(r["members"], serde_json::json!([zhang.id, 2]));
    for u in [&mut zhang, &mut wang] {
        let (_, n) = u.next::<ImGroupChangeMemberNotify>().await;
        assert_eq!((n.group_id, n.change_type), (gid, 2));
    }
    let again = s.run(&["group", "rm", "launch", "wangwu", "--json"]).await;
    assert!(
        again.status.success(),
        "removing a non-member is accepted: {}",
        text(&again.stderr)
    );
    let dup = s.run(&["group", "add", "launch", "zhangsan"]).await;
    assert!(!dup.status.success());
    assert!(
        text(&dup.stderr).contains("member"),
        "{}",
        text(&dup.stderr)
    );
    let unknown = s.run(&["group", "add", "no-such-group", "zhangsan"]).await;
    assert!(
        text(&unknown.stderr).contains("no group named"),
        "{}",
        text(&unknown.stderr)
    );
}
