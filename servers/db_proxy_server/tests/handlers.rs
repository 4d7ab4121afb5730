//! Users, departments, signatures, recent-session cuts, groups and offline files over a real socket,
//! with every reply's fields, attach_data and seq checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{WAIT, ask, expect_silence, handle_attach, start, tag_attach};
use im_proto::base::{GroupModifyType, GroupType, GroupVersionInfo, MsgType, SessionType};
use im_proto::buddy::{
    ImAllUserReq, ImAllUserRsp, ImChangeSignInfoReq, ImChangeSignInfoRsp, ImDepartmentReq,
    ImDepartmentRsp, ImRecentContactSessionReq, ImRecentContactSessionRsp, ImUsersInfoReq,
    ImUsersInfoRsp,
};
use im_proto::file::{
    ImFileAddOfflineReq, ImFileDelOfflineReq, ImFileHasOfflineReq, ImFileHasOfflineRsp,
};
use im_proto::group::{
    ImGroupChangeMemberReq, ImGroupChangeMemberRsp, ImGroupCreateReq, ImGroupCreateRsp,
    ImGroupInfoListReq, ImGroupInfoListRsp, ImGroupShieldReq, ImGroupShieldRsp,
    ImNormalGroupListReq, ImNormalGroupListRsp,
};
use im_proto::message::{ImMsgData, ImUnreadMsgCntReq, ImUnreadMsgCntRsp};
use im_proto::server::{ImGroupGetShieldReq, ImGroupGetShieldRsp};
use im_proto::{Pdu, cid};
use im_storage::Store;

#[tokio::test]
async fn users_departments_and_signature() {
    let s = start().await;
    let hq = s.store().add_department("总部", 0, 1).await.unwrap();
    let rd = s.store().add_department("研发部", hq, 2).await.unwrap();
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, _events) = s.link().await;

    let all: ImAllUserRsp = ask(
        &link,
        &ImAllUserReq {
            user_id: a,
            latest_update_time: 0,
            attach_data: Some(handle_attach(1)),
        },
    )
    .await;
    assert_eq!(all.user_id, a);
    assert_eq!(all.attach_data, Some(handle_attach(1)));
    let mut ids: Vec<u32> = all.user_list.iter().map(|u| u.user_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![a, b]);
    assert!(all.latest_update_time > 0);

    let info: ImUsersInfoRsp = ask(
        &link,
        &ImUsersInfoReq {
            user_id: a,
            user_id_list: vec![b, 9999],
            attach_data: Some(tag_attach(1, 1)),
        },
    )
    .await;
    assert_eq!(info.user_info_list.len(), 1);
    assert_eq!(info.user_info_list[0].user_id, b);
    assert_eq!(info.user_info_list[0].user_nick_name, "nick-bob");
    assert_eq!(info.attach_data, Some(tag_attach(1, 1)));

    let depts: ImDepartmentRsp = ask(
        &link,
        &ImDepartmentReq {
            user_id: a,
            latest_update_time: 0,
            attach_data: Some(handle_attach(2)),
        },
    )
    .await;
    assert_eq!(depts.attach_data, Some(handle_attach(2)));
    let mut got: Vec<(u32, u32, &str)> = depts
        .dept_list
        .iter()
        .map(|d| (d.dept_id, d.parent_dept_id, d.dept_name.as_str()))
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![(hq, 0, "总部"), (rd, hq, "研发部")]);
    let again: ImDepartmentRsp = ask(
        &link,
        &ImDepartmentReq {
            user_id: a,
            latest_update_time: depts.latest_update_time,
            attach_data: None,
        },
    )
    .await;
    assert!(again.dept_list.is_empty(), "nothing changed since");
    assert_eq!(again.latest_update_time, depts.latest_update_time);

    let sign: ImChangeSignInfoRsp = ask(
        &link,
        &ImChangeSignInfoReq {
            user_id: a,
            sign_info: "你好".into(),
            attach_data: Some(handle_attach(3)),
        },
    )
    .await;
    assert_eq!((sign.user_id, sign.result_code), (a, 0));
    assert_eq!(sign.sign_info.as_deref(), Some("你好"));
    assert_eq!(sign.attach_data, Some(handle_attach(3)));
    let too_long: ImChangeSignInfoRsp = ask(
        &link,
        &ImChangeSignInfoReq {
            user_id: a,
            sign_info: "x".repeat(129),
            attach_data: None,
        },
    )
    .await;
    assert_eq!(too_long.result_code, 1);
    assert_eq!(too_long.sign_info, None);
    // The change shows in the incremental user list (no in-memory gate).
    let changed: ImAllUserRsp = ask(
        &link,
        &ImAllUserReq {
            user_id: b,
            latest_update_time: all.latest_update_time,
            attach_data: None,
        },
    )
    .await;
    let me = changed
        .user_list
        .iter()
        .find(|u| u.user_id == a)
        .expect("alice changed");
    assert_eq!(me.sign_info.as_deref(), Some("你好"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_user_list_is_cut_below_400_kib_and_continues() {
    let s = start().await;
    let (link, _events) = s.link().await;
    // 2,800 users with long nicknames (over 400 KiB in all), created over four seconds so
    // that they do not all share one `updated` second.
    let mut expected = Vec::new();
    for batch in 0..4 {
        let futs = (0..700).map(|i| {
            s.store().add_user(im_storage::NewUser {
                name: format!("user{batch}_{i}"),
                password: "pw".into(),
                nick: format!("{batch}-{i}-{}", "n".repeat(150)),
                ..im_storage::NewUser::default()
            })
        });
        for id in futures_util::future::join_all(futs).await {
            expected.push(id.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut since = 0;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 20, "the list never completes");
        let pdu = link
            .request_pdu(
                Pdu::from_msg(
                    &ImAllUserReq {
                        user_id: 1,
                        latest_update_time: since,
                        attach_data: Some(handle_attach(1)),
                    },
                    0,
                ),
                cid::CID_BUDDY_LIST_ALL_USER_RESPONSE,
                WAIT,
            )
            .await
            .unwrap();
        assert!(pdu.len() < 400 * 1024, "reply of {} bytes", pdu.len());
        let rsp = pdu.decode::<ImAllUserRsp>().unwrap();
        let before = seen.len();
        seen.extend(rsp.user_list.iter().map(|u| u.user_id));
        if rounds == 1 {
            assert!(
                rsp.user_list.len() < expected.len(),
                "the first answer must be cut"
            );
            let newest = rsp.user_list.iter().map(|u| u.user_id).max().unwrap_or(0);
            assert!(newest < *expected.last().unwrap());
        }
        if seen.len() == before && rsp.latest_update_time == since {
            break;
        }
        since = rsp.latest_update_time;
    }
    for id in &expected {
        assert!(seen.contains(id), "user {id} never sent");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn groups_lists_info_members_shield_and_messages() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let c = s.user("carol", "pw").await;
    let d = s.user("dave", "pw").await;
    let (link, mut events) = s.link().await;

    // http_msg_server creates a normal group as user 0.
    let created: ImGroupCreateRsp = ask(
        &link,
        &ImGroupCreateReq {
            user_id: 0,
            group_type: GroupType::Normal as i32,
            group_name: "全体".into(),
            group_avatar: "http://x/a.png".into(),
            member_id_list: vec![a, b, c, b],
            attach_data: Some(handle_attach(30)),
        },
    )
    .await;
    assert_eq!(created.result_code, 0);
    assert_eq!(created.user_id_list, vec![a, b, c]);
    assert_eq!(created.group_name, "全体");
    assert_eq!(created.attach_data, Some(handle_attach(30)));
    let g = created.group_id.expect("group id on success");
    let tmp: ImGroupCreateRsp = ask(
        &link,
        &ImGroupCreateReq {
            user_id: a,
            group_type: GroupType::Tmp as i32,
            group_name: "tmp".into(),
            group_avatar: String::new(),
            member_id_list: vec![a, b],
            attach_data: None,
        },
    )
    .await;
    let t = tmp.group_id.unwrap();
    let unnamed = ImGroupCreateReq {
        user_id: a,
        group_type: GroupType::Tmp as i32,
        group_name: String::new(),
        group_avatar: String::new(),
        member_id_list: vec![a],
        attach_data: Some(handle_attach(36)),
    };
    let nobody = ImGroupCreateReq {
        group_name: "x".into(),
        member_id_list: Vec::new(),
        ..unnamed.clone()
    };
    for bad in [unnamed, nobody] {
        let r: ImGroupCreateRsp = ask(&link, &bad).await;
        assert_eq!(r.result_code, 1);
        assert_eq!(r.group_id, None);
        assert_eq!(r.attach_data, Some(handle_attach(36)));
    }

    let list: ImNormalGroupListRsp = ask(
        &link,
        &ImNormalGroupListReq {
            user_id: a,
            attach_data: Some(handle_attach(31)),
        },
    )
    .await;
    assert_eq!(
        list.group_version_list,
        vec![GroupVersionInfo {
            group_id: g,
            version: 1
        }]
    );
    assert_eq!(list.attach_data, Some(handle_attach(31)));

    let info: ImGroupInfoListRsp = ask(
        &link,
        &ImGroupInfoListReq {
            user_id: a,
            group_version_list: vec![
                GroupVersionInfo {
                    group_id: g,
                    version: 0,
                },
                GroupVersionInfo {
                    group_id: t,
                    version: 1,
                },
            ],
            attach_data: Some(handle_attach(32)),
        },
    )
    .await;
    assert_eq!(info.attach_data, Some(handle_attach(32)));
    assert_eq!(
        info.group_info_list.len(),
        1,
        "t's version is not newer than 1"
    );
    let gi = &info.group_info_list[0];
    assert_eq!((gi.group_id, gi.version, gi.group_creator_id), (g, 1, 0));
    assert_eq!(gi.group_type, GroupType::Normal as i32);
    assert_eq!(gi.group_member_list, vec![a, b, c]);
    assert_eq!(gi.group_avatar, "http://x/a.png");

    // Permissions: only the creator (here the admin, 0) changes a normal group.
    let change = |user, kind: GroupModifyType, group, members: Vec<u32>| ImGroupChangeMemberReq {
        user_id: user,
        change_type: kind as i32,
        group_id: group,
        member_id_list: members,
        attach_data: Some(handle_attach(33)),
    };
    let denied: ImGroupChangeMemberRsp =
        ask(&link, &change(a, GroupModifyType::Add, g, vec![d])).await;
    assert_eq!(denied.result_code, 1);
    assert!(denied.cur_user_id_list.is_empty());
    let added: ImGroupChangeMemberRsp =
        ask(&link, &change(0, GroupModifyType::Add, g, vec![d])).await;
    assert_eq!(added.result_code, 0);
    assert_eq!((added.user_id, added.group_id), (0, g));
    assert_eq!(added.change_type, GroupModifyType::Add as i32);
    assert_eq!(added.cur_user_id_list, vec![a, b, c, d]);
    assert_eq!(added.chg_user_id_list, vec![d]);
    assert_eq!(added.attach_data, Some(handle_attach(33)));
    let removed: ImGroupChangeMemberRsp =
        ask(&link, &change(a, GroupModifyType::Del, t, vec![b])).await;
    assert_eq!(removed.result_code, 0);
    assert_eq!(removed.cur_user_id_list, vec![a]);
    // An undefined change_type makes the body unparseable for a proto2 peer (the required
    // enum counts as missing), and no valid answer could echo it: dropped (Decisions 1).
    let mut bad = change(0, GroupModifyType::Add, g, vec![d]);
    bad.change_type = 9;
    let errors = s.shared.metrics.decode_errors.get();
    expect_silence(&link, &mut events, &bad, Duration::from_millis(300)).await;
    assert_eq!(s.shared.metrics.decode_errors.get(), errors + 1);
    let r: ImGroupChangeMemberRsp =
        ask(&link, &change(0, GroupModifyType::Add, 9999, vec![d])).await;
    assert_eq!(r.result_code, 1);
    let info: ImGroupInfoListRsp = ask(
        &link,
        &ImGroupInfoListReq {
            user_id: a,
            group_version_list: vec![GroupVersionInfo {
                group_id: g,
                version: 1,
            }],
            attach_data: None,
        },
    )
    .await;
    assert_eq!(info.group_info_list[0].version, 2);

    // Push mute per member.
    let shield = |user, group| ImGroupShieldReq {
        user_id: user,
        group_id: group,
        shield_status: 1,
        attach_data: Some(handle_attach(34)),
    };
    let r: ImGroupShieldRsp = ask(&link, &shield(a, g)).await;
    assert_eq!((r.user_id, r.group_id, r.result_code), (a, g, 0));
    assert_eq!(r.attach_data, Some(handle_attach(34)));
    assert_eq!(
        ask::<_, ImGroupShieldRsp>(&link, &shield(b, t))
            .await
            .result_code,
        1,
        "b left t"
    );
    assert_eq!(
        ask::<_, ImGroupShieldRsp>(&link, &shield(a, 9999))
            .await
            .result_code,
        1
    );
    let shields: ImGroupGetShieldRsp = ask(
        &link,
        &ImGroupGetShieldReq {
            group_id: g,
            user_id: vec![a, b],
            attach_data: Some(Bytes::from_static(b"body")),
        },
    )
    .await;
    let got: Vec<(u32, u32, u32)> = shields
        .shield_status_list
        .iter()
        .map(|x| (x.user_id, x.group_id, x.shield_status))
        .collect();
    assert_eq!(got, vec![(a, g, 1), (b, g, 0)]);
    assert_eq!(shields.attach_data, Some(Bytes::from_static(b"body")));

    // Group messages: members get ids, others 0.
    let gmsg = |from, to| ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::GroupText as i32,
        msg_data: Bytes::from_static(b"hi all"),
        attach_data: Some(handle_attach(35)),
    };
    let r: ImMsgData = ask(&link, &gmsg(a, g)).await;
    assert_eq!(r.msg_id, 1);
    assert_eq!(r.attach_data, Some(handle_attach(35)));
    assert_eq!(
        ask::<_, ImMsgData>(&link, &gmsg(b, t)).await.msg_id,
        0,
        "b is no member of t"
    );
    assert_eq!(
        ask::<_, ImMsgData>(&link, &gmsg(a, 9999)).await.msg_id,
        0,
        "no such group"
    );
    assert_eq!(ask::<_, ImMsgData>(&link, &gmsg(b, g)).await.msg_id, 2);

    // Unread for c: two group messages, the last one from b.
    let unread: ImUnreadMsgCntRsp = ask(
        &link,
        &ImUnreadMsgCntReq {
            user_id: c,
            attach_data: None,
        },
    )
    .await;
    let e = unread
        .unreadinfo_list
        .iter()
        .find(|e| e.session_id == g)
        .expect("group unread");
    assert_eq!(
        (e.unread_cnt, e.latest_msg_id, e.latest_msg_from_user_id),
        (2, 2, b)
    );
    assert_eq!(e.session_type, SessionType::Group as i32);

    // The background sync brings the group up in c's recent sessions.
    let synced = common::eventually(Duration::from_secs(15), || async {
        let r: ImRecentContactSessionRsp = ask(
            &link,
            &ImRecentContactSessionReq {
                user_id: c,
                latest_update_time: 0,
                attach_data: None,
            },
        )
        .await;
        r.contact_session_list.iter().any(|x| {
            x.session_id == g
                && x.session_type == SessionType::Group as i32
                && x.latest_msg_id == 2
                && x.latest_msg_from_user_id == b
        })
    })
    .await;
    assert!(synced, "group session never appeared for a member");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn offline_file_records() {
    let s = start().await;
    let a = s.user("alice", "pw").await;
    let b = s.user("bob", "pw").await;
    let (link, mut events) = s.link().await;
    let task = "0f8fad5b-d9cb-469f-a165-70867728950e";
    expect_silence(
        &link,
        &mut events,
        &ImFileAddOfflineReq {
            from_user_id: a,
            to_user_id: b,
            task_id: task.into(),
            file_name: "报告.pdf".into(),
            file_size: 12345,
        },
        Duration::from_millis(200),
    )
    .await;
    let listed = common::eventually(WAIT, || async {
        let r: ImFileHasOfflineRsp = ask(
            &link,
            &ImFileHasOfflineReq {
                user_id: b,
                attach_data: Some(handle_attach(40)),
            },
        )
        .await;
        assert_eq!(r.attach_data, Some(handle_attach(40)));
        assert_eq!(r.user_id, b);
        r.offline_file_list.len() == 1
            && r.offline_file_list[0].task_id == task
            && r.offline_file_list[0].from_user_id == a
            && r.offline_file_list[0].file_name == "报告.pdf"
            && r.offline_file_list[0].file_size == 12345
    })
    .await;
    assert!(listed);
    expect_silence(
        &link,
        &mut events,
        &ImFileDelOfflineReq {
            from_user_id: a,
            to_user_id: b,
            task_id: task.into(),
        },
        Duration::from_millis(200),
    )
    .await;
    let gone = common::eventually(WAIT, || async {
        let r: ImFileHasOfflineRsp = ask(
            &link,
            &ImFileHasOfflineReq {
                user_id: b,
                attach_data: None,
            },
        )
        .await;
        r.offline_file_list.is_empty()
    })
    .await;
    assert!(gone);
    s.stop().await.unwrap();
}
