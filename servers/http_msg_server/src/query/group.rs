//! `/query/CreateGroup` and `/query/ChangeMembers` (FLOWS.md 16, 12.3, 12.4).
//!
//! Both go to db_proxy as the original's requests (IMGroupCreateReq, IMGroupChangeMemberReq
//! with `user_id` = `req_user_id`). On success route_server gets IMGroupChangeMemberNotify, which
//! it broadcasts to every msg_server, where the members' connections get it and the cached
//! member list is dropped (Decisions 10). For a created group the notify says ADD with every
//! member as changed: the original told no one (WEAKNESSES 43), so members only saw the group
//! when its first message arrived; stock clients learn a group from this notify.

use im_proto::base::GroupModifyType;
use im_proto::group::{
    ImGroupChangeMemberNotify, ImGroupChangeMemberReq, ImGroupChangeMemberRsp, ImGroupCreateReq,
    ImGroupCreateRsp,
};
use im_proto::{Pdu, cid};
use serde_json::Value;

use super::{Answer, Code, string, uint, uint_list};
use crate::server::Server;
use crate::upstream::Key;

/// `/query/CreateGroup`: `{"req_user_id", "group_name", "group_type": 1|2, "group_avatar",
/// "user_id_list"}` -> `{"error_code":0|11,"error_msg":..,"group_id":n}` (0 on failure).
pub async fn create_group(s: &Server, q: &Value) -> Answer {
    match create(s, q).await {
        Ok(a) | Err(a) => a,
    }
}

async fn create(s: &Server, q: &Value) -> Result<Answer, Answer> {
    let req_user_id = uint(q, "req_user_id")?;
    let group_name = string(q, "group_name")?;
    let group_type = uint(q, "group_type")?;
    let group_avatar = string(q, "group_avatar")?;
    let members = uint_list(q, "user_id_list")?;
    if !(1..=2).contains(&group_type) {
        return Err(Code::BadParam.into());
    }
    let req = ImGroupCreateReq {
        user_id: req_user_id,
        group_type: group_type as i32,
        group_name,
        group_avatar,
        member_id_list: members,
        attach_data: None,
    };
    let failed = || Answer::code(Code::CreateGroupFailed).with("group_id", 0);
    let reply =
        s.db.request(
            Key::User(req_user_id),
            Pdu::from_msg(&req, 0),
            cid::CID_GROUP_CREATE_RESPONSE,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "group creation: no answer from db_proxy");
            Answer::code(Code::ServerError)
        })?;
    let rsp = reply.decode::<ImGroupCreateRsp>().map_err(|e| {
        tracing::warn!(error = %e, "group creation: db_proxy's answer does not decode");
        Answer::code(Code::ServerError)
    })?;
    let group_id = match (rsp.result_code, rsp.group_id) {
        (0, Some(id)) if id != 0 => id,
        _ => {
            tracing::info!(
                user_id = req_user_id,
                result = rsp.result_code,
                "db_proxy refused to create a group"
            );
            return Err(failed());
        }
    };
    s.metrics.groups_created.inc();
    let notify = ImGroupChangeMemberNotify {
        user_id: req_user_id,
        change_type: GroupModifyType::Add as i32,
        group_id,
        cur_user_id_list: rsp.user_id_list.clone(),
        chg_user_id_list: rsp.user_id_list,
    };
    s.route(&Pdu::from_msg(&notify, 0)).await;
    tracing::info!(
        user_id = req_user_id,
        group_id,
        "group created through the HTTP API"
    );
    Ok(Answer::code(Code::Ok).with("group_id", u64::from(group_id)))
}

/// `/query/ChangeMembers`: `{"req_user_id", "group_id", "modify_type": 1 add | 2 delete,
/// "user_id_list"}` -> `{"error_code":0|12,"error_msg":..}`.
pub async fn change_members(s: &Server, q: &Value) -> Answer {
    match change(s, q).await {
        Ok(a) | Err(a) => a,
    }
}

async fn change(s: &Server, q: &Value) -> Result<Answer, Answer> {
    let req_user_id = uint(q, "req_user_id")?;
    let group_id = uint(q, "group_id")?;
    let modify_type = uint(q, "modify_type")?;
    let members = uint_list(q, "user_id_list")?;
    let change_type = match modify_type {
        1 => GroupModifyType::Add,
        2 => GroupModifyType::Del,
        _ => return Err(Code::BadParam.into()),
    };
    let req = ImGroupChangeMemberReq {
        user_id: req_user_id,
        change_type: change_type as i32,
        group_id,
        member_id_list: members,
        attach_data: None,
    };
    let reply =
        s.db.request(
            Key::Group(group_id),
            Pdu::from_msg(&req, 0),
            cid::CID_GROUP_CHANGE_MEMBER_RESPONSE,
        )
        .await
        .map_err(|e| {
            tracing::warn!(group_id, error = %e, "member change: no answer from db_proxy");
            Answer::code(Code::ServerError)
        })?;
    let rsp = reply.decode::<ImGroupChangeMemberRsp>().map_err(|e| {
        tracing::warn!(group_id, error = %e, "member change: db_proxy's answer does not decode");
        Answer::code(Code::ServerError)
    })?;
    if rsp.result_code != 0 {
        tracing::info!(
            user_id = req_user_id,
            group_id,
            result = rsp.result_code,
            "db_proxy refused a member change"
        );
        return Err(Code::ChangeMembersFailed.into());
    }
    s.metrics.member_changes.inc();
    let notify = ImGroupChangeMemberNotify {
        user_id: req_user_id,
        change_type: change_type as i32,
        group_id,
        cur_user_id_list: rsp.cur_user_id_list,
        chg_user_id_list: rsp.chg_user_id_list,
    };
    s.route(&Pdu::from_msg(&notify, 0)).await;
    Ok(Code::Ok.into())
}
