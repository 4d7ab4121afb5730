//! A logged-in client connection and the client requests the fake users make: login (direct
//! or through login_server's HTTP step, as stock clients do), history pages, group lookup.

use std::time::Duration;

use anyhow::{Context, bail};
use im_proto::base::{ClientType, GroupVersionInfo, MsgInfo, SessionType};
use im_proto::client::{ClientConfig, Events, ImClient, LoginParams, fetch_msg_server};
use im_proto::group::{ImGroupInfoListReq, ImNormalGroupListReq};
use im_proto::message::ImGetMsgListReq;

use crate::suite::config::PASSWORD;

/// Wait for any answer; generous, as servers under load run debug builds on 2 cores.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Most history pages read for one conversation (200 messages each).
const MAX_PAGES: usize = 1000;

/// One logged-in connection.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub client: ImClient,
    /// Its unsolicited PDUs.
    pub events: Events,
    /// The user's id.
    pub user_id: u32,
    /// msg_server address.
    pub addr: String,
}

fn client_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(3),
        request_timeout: REQUEST_TIMEOUT,
        heartbeat_interval: Some(Duration::from_secs(30)),
        ..ClientConfig::default()
    }
}

/// Connects to msg_server `addr` and logs in as `name` (a PC client unless told).
pub async fn login_at(addr: &str, name: &str, client_type: ClientType) -> anyhow::Result<Session> {
    let (client, events) = ImClient::connect(addr, client_config()).await?;
    let res = client
        .login(&LoginParams::new(name, PASSWORD).with_client_type(client_type))
        .await
        .with_context(|| format!("login of {name} at {addr}"))?;
    let user_id = res
        .user_info
        .map(|u| u.user_id)
        .with_context(|| format!("login of {name}: no user_info"))?;
    Ok(Session {
        client,
        events,
        user_id,
        addr: addr.to_owned(),
    })
}

/// The stock client's way in: `GET /msg_server` on login_server, then login there.
pub async fn login_via(url: &str, name: &str) -> anyhow::Result<Session> {
    let assignment = fetch_msg_server(url).await?;
    login_at(&assignment.addr(), name, ClientType::Windows).await
}

/// The whole history of a conversation, newest first, paging down with `msg_id_begin`.
pub async fn history(client: &ImClient, peer: u32, group: bool) -> anyhow::Result<Vec<MsgInfo>> {
    let mut all: Vec<MsgInfo> = Vec::new();
    let mut begin = 0u32;
    for _ in 0..MAX_PAGES {
        let rsp = client
            .request(&ImGetMsgListReq {
                user_id: 0,
                session_type: if group {
                    SessionType::Group
                } else {
                    SessionType::Single
                } as i32,
                session_id: peer,
                msg_id_begin: begin,
                msg_cnt: 200,
                attach_data: None,
            })
            .await
            .context("history page")?;
        let Some(oldest) = rsp.msg_list.iter().map(|m| m.msg_id).min() else {
            return Ok(all);
        };
        all.extend(rsp.msg_list);
        if oldest <= 1 {
            return Ok(all);
        }
        begin = oldest - 1;
    }
    bail!("history with {peer}: more than {MAX_PAGES} pages")
}

/// The id and members of the group called `name` that the session's user belongs to.
pub async fn find_group(s: &Session, name: &str) -> anyhow::Result<(u32, Vec<u32>)> {
    let list = s
        .client
        .request(&ImNormalGroupListReq {
            user_id: s.user_id,
            attach_data: None,
        })
        .await?;
    let versions: Vec<GroupVersionInfo> = list
        .group_version_list
        .into_iter()
        .map(|v| GroupVersionInfo {
            group_id: v.group_id,
            version: 0,
        })
        .collect();
    let info = s
        .client
        .request(&ImGroupInfoListReq {
            user_id: s.user_id,
            group_version_list: versions,
            attach_data: None,
        })
        .await?;
    let g = info
        .group_info_list
        .into_iter()
        .find(|g| g.group_name == name)
        .with_context(|| format!("user {} is in no group named {name}", s.user_id))?;
    Ok((g.group_id, g.group_member_list))
}
