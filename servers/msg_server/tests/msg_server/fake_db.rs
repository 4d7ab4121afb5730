//! A scripted db_proxy: an in-memory store that answers the commands msg_server sends, with
//! switches to make stores fail. It stands in until the real db_proxy_server is usable in
//! these tests; it is not a model of db_proxy's storage rules beyond what the tests check.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use im_common::{CancellationToken, Conn, ConnRegistry, Handler, ServeOptions, serve};
use im_proto::attach::RequestTag;
use im_proto::base::{GroupInfo, MsgInfo, ShieldStatus, UnreadInfo, UserInfo, UserTokenInfo};
use im_proto::buddy::{
    ImChangeSignInfoReq, ImChangeSignInfoRsp, ImRemoveSessionReq, ImRemoveSessionRsp,
    ImUsersInfoReq, ImUsersInfoRsp,
};
use im_proto::crypto::password_digest;
use im_proto::group::{
    ImGroupChangeMemberReq, ImGroupChangeMemberRsp, ImGroupInfoListReq, ImGroupInfoListRsp,
};
use im_proto::login::{ImDeviceTokenReq, ImDeviceTokenRsp};
use im_proto::message::{
    ImGetMsgListReq, ImGetMsgListRsp, ImMsgData, ImMsgDataReadAck, ImUnreadMsgCntReq,
    ImUnreadMsgCntRsp,
};
use im_proto::server::{
    ImGetDeviceTokenReq, ImGetDeviceTokenRsp, ImGroupGetShieldReq, ImGroupGetShieldRsp,
    ImStopReceivePacket, ImValidateReq, ImValidateRsp,
};
use im_proto::{Pdu, cid};
use tokio::net::TcpListener;

/// How stores are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Stored, msg_id assigned.
    Ok,
    /// Answered with msg_id 0 (a failed store, Decisions 4).
    Fail,
    /// Never answered.
    Silent,
}

/// The fake database.
#[derive(Debug)]
pub struct DbState {
    users: HashMap<String, UserInfo>,
    /// (group flag, a, b) -> last msg_id.
    counters: HashMap<(bool, u32, u32), u32>,
    /// Stored messages in order.
    pub messages: Vec<ImMsgData>,
    /// (user, peer or group) -> unread count.
    unread: HashMap<(u32, u32), u32>,
    groups: HashMap<u32, GroupInfo>,
    muted: HashSet<(u32, u32)>,
    /// user -> (client type, token).
    pub tokens: HashMap<u32, (i32, String)>,
    /// How stores are answered.
    pub store_mode: StoreMode,
    /// Stores are answered this much later.
    pub store_delay: Option<std::time::Duration>,
    /// Store requests received (retries included).
    pub store_requests: u32,
    /// Request tags seen, with the msg_id they got.
    tags: HashMap<RequestTag, u32>,
    /// Every command received, in order.
    pub commands: Vec<u16>,
}

/// The password of every fake user.
pub const PASSWORD: &str = "pw";

/// A running fake db_proxy.
pub struct FakeDb {
    /// Its address.
    pub addr: String,
    /// Its data.
    pub state: Arc<Mutex<DbState>>,
    conns: ConnRegistry,
    shutdown: CancellationToken,
}

impl Drop for FakeDb {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn user(id: u32, name: &str) -> UserInfo {
    UserInfo {
        user_id: id,
        user_gender: 1,
        user_nick_name: format!("{name}-nick"),
        avatar_url: String::new(),
        department_id: 1,
        email: format!("{name}@example.invalid"),
        user_real_name: name.to_owned(),
        user_tel: String::new(),
        user_domain: name.to_owned(),
        status: 0,
        sign_info: None,
    }
}

impl FakeDb {
    /// Users alice (1), bob (2), carol (3), dave (4); group 100 = {1, 2, 3}.
    pub async fn start() -> FakeDb {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener).await
    }

    /// Same, on a given listener (restarts on the same port).
    pub async fn start_on(listener: TcpListener) -> FakeDb {
        let addr = listener.local_addr().unwrap().to_string();
        let mut users = HashMap::new();
        for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol"), (4, "dave")] {
            users.insert(name.to_owned(), user(id, name));
        }
        let mut groups = HashMap::new();
        groups.insert(
            100,
            GroupInfo {
                group_id: 100,
                version: 1,
                group_name: "team".to_owned(),
                group_avatar: String::new(),
                group_creator_id: 1,
                group_type: 1,
                shield_status: 0,
                group_member_list: vec![1, 2, 3],
            },
        );
        let state = Arc::new(Mutex::new(DbState {
            users,
            counters: HashMap::new(),
            messages: Vec::new(),
            unread: HashMap::new(),
            groups,
            muted: HashSet::new(),
            tokens: HashMap::new(),
            store_mode: StoreMode::Ok,
            store_delay: None,
            store_requests: 0,
            tags: HashMap::new(),
            commands: Vec::new(),
        }));
        let shutdown = CancellationToken::new();
        let conns = ConnRegistry::new();
        let st = state.clone();
        let mut opts = ServeOptions::server("fake_db");
        opts.echo_heartbeat = true;
        tokio::spawn(serve(
            listener,
            opts,
            conns.clone(),
            shutdown.clone(),
            move |_| DbConn { state: st.clone() },
        ));
        FakeDb {
            addr,
            state,
            conns,
            shutdown,
        }
    }

    /// Locks the state.
    pub fn with<T>(&self, f: impl FnOnce(&mut DbState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Sends IMStopReceivePacket on every link (db_proxy's SIGTERM, FLOWS.md 1.5).
    pub fn stop_receiving(&self) {
        for c in self.conns.all() {
            let _ = c.send_msg(&ImStopReceivePacket { result: 0 }, 0);
        }
    }

    /// Stops the fake (links close).
    pub fn stop(&self) {
        self.shutdown.cancel();
        for c in self.conns.all() {
            c.close(im_common::CloseReason::Shutdown);
        }
    }
}

struct DbConn {
    state: Arc<Mutex<DbState>>,
}

fn conv(m: &ImMsgData) -> (bool, u32, u32) {
    if m.msg_type & 0x10 != 0 {
        (true, m.to_session_id, 0)
    } else {
        let (a, b) = (m.from_user_id, m.to_session_id);
        (false, a.min(b), a.max(b))
    }
}

impl Handler for DbConn {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        let (reply, delay) = {
            let mut st = self.state.lock().unwrap();
            st.commands.push(pdu.command_id());
            let delay = st
                .store_delay
                .filter(|_| pdu.command_id() == cid::CID_MSG_DATA);
            (answer(&mut st, &pdu), delay)
        };
        let Some(r) = reply else { return };
        match delay {
            None => {
                let _ = conn.send_pdu(&r);
            }
            Some(d) => {
                let conn = conn.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = conn.send_pdu(&r);
                });
            }
        }
    }
}

fn answer(st: &mut DbState, pdu: &Pdu) -> Option<Pdu> {
    match pdu.command_id() {
        cid::CID_OTHER_VALIDATE_REQ => {
            let req = pdu.decode::<ImValidateReq>().ok()?;
            let found = st.users.get(&req.user_name).cloned();
            let ok = found.is_some() && req.password == password_digest(PASSWORD);
            Some(
                pdu.reply(&ImValidateRsp {
                    user_name: req.user_name,
                    result_code: u32::from(!ok),
                    result_string: Some(
                        if ok {
                            "成功"
                        } else {
                            "用户名/密码错误"
                        }
                        .to_owned(),
                    ),
                    user_info: if ok { found } else { None },
                    attach_data: req.attach_data,
                }),
            )
        }
        cid::CID_MSG_DATA => {
            let mut m = pdu.decode::<ImMsgData>().ok()?;
            st.store_requests += 1;
            match st.store_mode {
                StoreMode::Silent => return None,
                StoreMode::Fail => {
                    m.msg_id = 0;
                    return Some(pdu.reply(&m));
                }
                StoreMode::Ok => {}
            }
            let tag = m.attach_data.as_deref().and_then(RequestTag::decode);
            if let Some(id) = tag.and_then(|t| st.tags.get(&t).copied()) {
                m.msg_id = id;
                return Some(pdu.reply(&m));
            }
            let key = conv(&m);
            let id = {
                let c = st.counters.entry(key).or_insert(0);
                *c += 1;
                *c
            };
            m.msg_id = id;
            if let Some(t) = tag {
                st.tags.insert(t, id);
            }
            if key.0 {
                let members = st
                    .groups
                    .get(&m.to_session_id)
                    .map(|g| g.group_member_list.clone())
                    .unwrap_or_default();
                for u in members.into_iter().filter(|u| *u != m.from_user_id) {
                    *st.unread.entry((u, m.to_session_id)).or_default() += 1;
                }
            } else {
                *st.unread
                    .entry((m.to_session_id, m.from_user_id))
                    .or_default() += 1;
            }
            st.messages.push(m.clone());
            Some(pdu.reply(&m))
        }
        cid::CID_MSG_READ_ACK => {
            let a = pdu.decode::<ImMsgDataReadAck>().ok()?;
            st.unread.remove(&(a.user_id, a.session_id));
            None
        }
        cid::CID_MSG_UNREAD_CNT_REQUEST => {
            let req = pdu.decode::<ImUnreadMsgCntReq>().ok()?;
            let list: Vec<UnreadInfo> = st
                .unread
                .iter()
                .filter(|((u, _), n)| *u == req.user_id && **n > 0)
                .map(|((_, peer), n)| UnreadInfo {
                    session_id: *peer,
                    session_type: if st.groups.contains_key(peer) { 2 } else { 1 },
                    unread_cnt: *n,
                    latest_msg_id: 0,
                    latest_msg_data: Bytes::new(),
                    latest_msg_type: 1,
                    latest_msg_from_user_id: *peer,
                })
                .collect();
            Some(pdu.reply(&ImUnreadMsgCntRsp {
                user_id: req.user_id,
                total_cnt: list.iter().map(|u| u.unread_cnt).sum(),
                unreadinfo_list: list,
                attach_data: req.attach_data,
            }))
        }
        cid::CID_MSG_LIST_REQUEST => {
            let req = pdu.decode::<ImGetMsgListReq>().ok()?;
            let group = req.session_type == 2;
            let msg_list = st
                .messages
                .iter()
                .rev()
                .filter(|m| {
                    if group {
                        m.to_session_id == req.session_id && m.msg_type & 0x10 != 0
                    } else {
                        conv(m)
                            == (
                                false,
                                req.user_id.min(req.session_id),
                                req.user_id.max(req.session_id),
                            )
                    }
                })
                .take(req.msg_cnt as usize)
                .map(|m| MsgInfo {
                    msg_id: m.msg_id,
                    from_session_id: m.from_user_id,
                    create_time: m.create_time,
                    msg_type: m.msg_type,
                    msg_data: m.msg_data.clone(),
                })
                .collect();
            Some(pdu.reply(&ImGetMsgListRsp {
                user_id: req.user_id,
                session_type: req.session_type,
                session_id: req.session_id,
                msg_id_begin: req.msg_id_begin,
                msg_list,
                attach_data: req.attach_data,
            }))
        }
        cid::CID_GROUP_INFO_REQUEST => {
            let req = pdu.decode::<ImGroupInfoListReq>().ok()?;
            let group_info_list = req
                .group_version_list
                .iter()
                .filter_map(|v| st.groups.get(&v.group_id).filter(|g| g.version > v.version))
                .cloned()
                .collect();
            Some(pdu.reply(&ImGroupInfoListRsp {
                user_id: req.user_id,
                group_info_list,
                attach_data: req.attach_data,
            }))
        }
        cid::CID_OTHER_GET_SHIELD_REQ => {
            let req = pdu.decode::<ImGroupGetShieldReq>().ok()?;
            let shield_status_list = req
                .user_id
                .iter()
                .map(|u| ShieldStatus {
                    user_id: *u,
                    group_id: req.group_id,
                    shield_status: u32::from(st.muted.contains(&(req.group_id, *u))),
                })
                .collect();
            Some(pdu.reply(&ImGroupGetShieldRsp {
                group_id: req.group_id,
                shield_status_list,
                attach_data: req.attach_data,
            }))
        }
        cid::CID_OTHER_GET_DEVICE_TOKEN_REQ => {
            let req = pdu.decode::<ImGetDeviceTokenReq>().ok()?;
            let user_token_info = req
                .user_id
                .iter()
                .filter_map(|u| {
                    st.tokens.get(u).map(|(ct, token)| UserTokenInfo {
                        user_id: *u,
                        user_type: *ct,
                        token: token.clone(),
                        push_count: st
                            .unread
                            .iter()
                            .filter(|((x, _), _)| x == u)
                            .map(|(_, n)| *n)
                            .sum(),
                        push_type: 1,
                    })
                })
                .collect();
            Some(pdu.reply(&ImGetDeviceTokenRsp {
                user_token_info,
                attach_data: req.attach_data,
            }))
        }
        cid::CID_LOGIN_REQ_DEVICETOKEN => {
            let req = pdu.decode::<ImDeviceTokenReq>().ok()?;
            if req.device_token.is_empty() {
                st.tokens.remove(&req.user_id);
            } else {
                st.tokens.insert(
                    req.user_id,
                    (req.client_type.unwrap_or(0), req.device_token.clone()),
                );
            }
            Some(pdu.reply(&ImDeviceTokenRsp {
                user_id: req.user_id,
                attach_data: req.attach_data,
            }))
        }
        cid::CID_BUDDY_LIST_USER_INFO_REQUEST => {
            let req = pdu.decode::<ImUsersInfoReq>().ok()?;
            let user_info_list = st
                .users
                .values()
                .filter(|u| req.user_id_list.contains(&u.user_id))
                .cloned()
                .collect();
            Some(pdu.reply(&ImUsersInfoRsp {
                user_id: req.user_id,
                user_info_list,
                // Echoed so that a test can check msg_server strips it toward the client.
                attach_data: Some(Bytes::from_static(b"db-private")),
            }))
        }
        cid::CID_GROUP_CHANGE_MEMBER_REQUEST => {
            let req = pdu.decode::<ImGroupChangeMemberReq>().ok()?;
            let g = st.groups.get_mut(&req.group_id)?;
            let ok = req.user_id == g.group_creator_id;
            if ok {
                for u in &req.member_id_list {
                    if req.change_type == 1 {
                        if !g.group_member_list.contains(u) {
                            g.group_member_list.push(*u);
                        }
                    } else {
                        g.group_member_list.retain(|m| m != u);
                    }
                }
                g.version += 1;
            }
            Some(pdu.reply(&ImGroupChangeMemberRsp {
                user_id: req.user_id,
                change_type: req.change_type,
                result_code: u32::from(!ok),
                group_id: req.group_id,
                cur_user_id_list: if ok {
                    g.group_member_list.clone()
                } else {
                    vec![]
                },
                chg_user_id_list: if ok { req.member_id_list } else { vec![] },
                attach_data: req.attach_data,
            }))
        }
        cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST => {
            let req = pdu.decode::<ImChangeSignInfoReq>().ok()?;
            Some(pdu.reply(&ImChangeSignInfoRsp {
                user_id: req.user_id,
                result_code: 0,
                sign_info: Some(req.sign_info),
                attach_data: req.attach_data,
            }))
        }
        cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ => {
            let req = pdu.decode::<ImRemoveSessionReq>().ok()?;
            st.unread.remove(&(req.user_id, req.session_id));
            Some(pdu.reply(&ImRemoveSessionRsp {
                user_id: req.user_id,
                result_code: 0,
                session_type: req.session_type,
                session_id: req.session_id,
                attach_data: req.attach_data,
            }))
        }
        _ => None,
    }
}

impl DbState {
    /// Mutes group push for a member.
    pub fn mute(&mut self, group: u32, user: u32) {
        self.muted.insert((group, user));
    }

    /// Unread count of `user` for `peer`.
    pub fn unread(&self, user: u32, peer: u32) -> u32 {
        self.unread.get(&(user, peer)).copied().unwrap_or(0)
    }
}
