//! Groups and messages through the API reach clients logged in on a real msg_server.

use im_proto::base::GroupVersionInfo;
use im_proto::base::{GroupModifyType, MsgType};
use im_proto::cid;
use im_proto::crypto::MessageCipher;
use im_proto::group::{ImGroupChangeMemberNotify, ImGroupInfoListReq};
use im_proto::message::ImMsgData;
use serde_json::json;

use crate::harness::*;

/// The suite, an http_msg_server linked to it, and alice, bob and carol logged in.
async fn setup() -> (Suite, Hm, Client, Client, Client) {
    let suite = Suite::start().await;
    let hm = Hm::start(&suite.db, &[&suite.route]).await;
    hm.wait_links("db_proxy_server", 2).await;
    hm.wait_links("route_server", 1).await;
    let alice = Client::login(&suite.ms, "alice").await;
    let bob = Client::login(&suite.ms, "bob").await;
    let carol = Client::login(&suite.ms, "carol").await;
    // route_server knows where each of them is before anything is routed to them.
    for u in [&bob, &carol] {
        alice.wait_online(u.id).await;
    }
    bob.wait_online(alice.id).await;
    (suite, hm, alice, bob, carol)
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

#[tokio::test]
async fn groups_created_and_changed_over_http_reach_the_members() {
    let (_suite, hm, mut alice, mut bob, mut carol) = setup().await;
    let a = query(
        &hm.addr,
        "/query/CreateGroup",
        &json!({"req_user_id": 0, "app_key": "ignored", "group_name": "ops", "group_type": 1,
            "group_avatar": "", "user_id_list": [alice.id, bob.id]}),
    )
    .await;
    let v = a.json();
    assert_eq!(v["error_code"], 0, "{}", a.body);
    let group_id = v["group_id"].as_u64().unwrap() as u32;
    assert!(group_id > 0);
    assert_eq!(
        a.body,
        format!(r#"{{"error_code":0,"error_msg":"成功","group_id":{group_id}}}"#)
    );
    // Both members are told (the original told no one); carol is not a member.
    for c in [&mut alice, &mut bob] {
        let n = c.next::<ImGroupChangeMemberNotify>().await;
        assert_eq!(n.group_id, group_id);
        assert_eq!(n.change_type, GroupModifyType::Add as i32);
        assert_eq!(sorted(n.cur_user_id_list.clone()), vec![1, 2]);
        assert_eq!(sorted(n.chg_user_id_list), vec![1, 2]);
    }
    carol.nothing_of(cid::CID_GROUP_CHANGE_MEMBER_NOTIFY).await;
    // The group exists for db_proxy, created by the system identity.
    let info = alice
        .c
        .request(&ImGroupInfoListReq {
            user_id: 0,
            group_version_list: vec![GroupVersionInfo {
                group_id,
                version: 0,
            }],
            attach_data: None,
        })
        .await
        .unwrap();
    let g = &info.group_info_list[0];
    assert_eq!((g.group_name.as_str(), g.group_creator_id), ("ops", 0));
    assert_eq!(sorted(g.group_member_list.clone()), vec![1, 2]);

    // Add carol: everyone now in the group hears of it, carol included.
    let a = query(
        &hm.addr,
        "/query/ChangeMembers",
        &json!({"req_user_id": 0, "group_id": group_id, "modify_type": 1,
            "user_id_list": [carol.id]}),
    )
    .await;
    assert_eq!(a.body, r#"{"error_code":0,"error_msg":"成功"}"#);
    for c in [&mut alice, &mut bob, &mut carol] {
        let n = c.next::<ImGroupChangeMemberNotify>().await;
        assert_eq!(n.change_type, GroupModifyType::Add as i32);
        assert_eq!(n.chg_user_id_list, vec![3]);
        assert_eq!(sorted(n.cur_user_id_list), vec![1, 2, 3]);
    }
    // Remove bob: the removed user is told too.
    let a = query(
        &hm.addr,
        "/query/ChangeMembers",
        &json!({"req_user_id": 0, "group_id": group_id, "modify_type": 2,
            "user_id_list": [bob.id]}),
    )
    .await;
    assert_eq!(a.json()["error_code"], 0);
    let n = bob.next::<ImGroupChangeMemberNotify>().await;
    assert_eq!(n.change_type, GroupModifyType::Del as i32);
    assert_eq!(sorted(n.cur_user_id_list), vec![1, 3]);
    // Failures keep the original's codes: an unknown group, a group without members.
    let a = query(
        &hm.addr,
        "/query/ChangeMembers",
        &json!({"req_user_id": 0, "group_id": 9999, "modify_type": 1, "user_id_list": [4]}),
    )
    .await;
    assert_eq!(a.body, r#"{"error_code":12,"error_msg":"更改群成员失败"}"#);
    let a = query(
        &hm.addr,
        "/query/CreateGroup",
        &json!({"req_user_id": 0, "group_name": "empty", "group_type": 1, "group_avatar": "",
            "user_id_list": []}),
    )
    .await;
    assert_eq!(
        a.body,
        r#"{"error_code":11,"error_msg":"创建群失败","group_id":0}"#
    );
    // A non-zero req_user_id acts as that user: dave cannot change a group he did not create.
    let a = query(
        &hm.addr,
        "/query/ChangeMembers",
        &json!({"req_user_id": 4, "group_id": group_id, "modify_type": 2,
            "user_id_list": [3]}),
    )
    .await;
    assert_eq!(a.json()["error_code"], 12);
    hm.stop().await;
}

#[tokio::test]
async fn send_message_reaches_a_connected_client_and_decrypts() {
    let (_suite, hm, mut alice, mut bob, mut carol) = setup().await;
    let text = "hello from the API, 你好";
    let a = query(
        &hm.addr,
        "/query/SendMessage",
        &json!({"from_user_id": alice.id, "to_session_id": bob.id, "msg_type": 1, "text": text}),
    )
    .await;
    assert_eq!(a.body, r#"{"error_code":0,"error_msg":"成功","msg_id":1}"#);
    // bob gets it as any routed message: seq 0, no attach_data, encrypted as a client would.
    for c in [&mut bob, &mut alice] {
        let p = c.next_pdu(cid::CID_MSG_DATA).await;
        assert_eq!(p.seq_num(), 0);
        let m = p.decode::<ImMsgData>().unwrap();
        assert_eq!(m.attach_data, None);
        assert_eq!((m.from_user_id, m.to_session_id, m.msg_id), (1, 2, 1));
        assert_eq!(m.msg_type, MsgType::SingleText as i32);
        let plain = MessageCipher::default_key().decrypt(&m.msg_data).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), text);
    }
    carol.nothing_of(cid::CID_MSG_DATA).await;
    // The next one in that conversation gets the next id; "single" works as a type name.
    let a = query(
        &hm.addr,
        "/query/SendMessage",
        &json!({"from_user_id": bob.id, "to_session_id": alice.id, "msg_type": "single",
            "text": "reply"}),
    )
    .await;
    assert_eq!(a.json()["msg_id"], 2);
    // The sender's own clients see what was sent in their name, as from another device.
    for c in [&mut alice, &mut bob] {
        let m = c.next::<ImMsgData>().await;
        assert_eq!((m.from_user_id, m.msg_id), (2, 2));
    }

    // A group message goes to every member.
    let g = query(
        &hm.addr,
        "/query/CreateGroup",
        &json!({"req_user_id": 0, "group_name": "team", "group_type": 1, "group_avatar": "",
            "user_id_list": [alice.id, bob.id, carol.id]}),
    )
    .await;
    let group_id = g.json()["group_id"].as_u64().unwrap() as u32;
    let a = query(
        &hm.addr,
        "/query/SendMessage",
        &json!({"from_user_id": carol.id, "to_session_id": group_id, "msg_type": "group",
            "text": "to all"}),
    )
    .await;
    assert_eq!(a.json()["error_code"], 0, "{}", a.body);
    for c in [&mut alice, &mut bob, &mut carol] {
        let m = c.next::<ImMsgData>().await;
        assert_eq!((m.to_session_id, m.from_user_id), (group_id, 3));
        assert_eq!(m.msg_type, MsgType::GroupText as i32);
        let plain = MessageCipher::default_key().decrypt(&m.msg_data).unwrap();
        assert_eq!(plain, b"to all");
    }
    // dave is not a member: not stored, and the answer says so.
    let a = query(
        &hm.addr,
        "/query/SendMessage",
        &json!({"from_user_id": 4, "to_session_id": group_id, "msg_type": 17, "text": "hi"}),
    )
    .await;
    assert_eq!(a.body, r#"{"error_code":13,"error_msg":"发送消息失败"}"#);
    hm.stop().await;
}
