//! `imctl chat USER [--to USER | --group G]`: a minimal line-based TeamTalk client for demos.
//! It does what a stock client does (HTTP to login_server, log in on the msg_server it names,
//! acknowledge what arrives, encrypt what it sends: FLOWS.md 2, 4, 6, 18), prints incoming
//! messages and sends every line typed on standard input. At the end of input it waits for the
//! acks of what it sent, then logs out.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use im_proto::base::{GroupVersionInfo, MsgType, SessionType};
use im_proto::buddy::{ImAllUserReq, ImUsersInfoReq};
use im_proto::client::{ClientConfig, ImClient, LoginParams, fetch_msg_server};
use im_proto::crypto::MessageCipher;
use im_proto::group::{ImGroupInfoListReq, ImNormalGroupListReq};
use im_proto::login::{ImKickUser, ImLogoutReq};
use im_proto::message::{ImMsgData, ImMsgDataAck};
use im_proto::{Pdu, cid};
use serde::Serialize;
use tokio::sync::mpsc;

use super::lookup::as_id;
use super::send::cipher;
use crate::cli::{ChatArgs, TargetArgs};
use crate::config::Config;
use crate::terminal::ask_password;

/// How long to wait for msg_server's answers (login, acks, lookups).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Heartbeat interval: what stock PC clients use is within 5 s..4 min; 30 s keeps an idle
/// session well inside msg_server's idle timeout.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// One line of `--json` output.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChatEvent {
    /// Logged in.
    LoggedIn {
        /// Our user id.
        user_id: u32,
        /// The msg_server (ip:port).
        msg_server: String,
    },
    /// A message arrived.
    Message {
        /// Id in its conversation.
        msg_id: u32,
        /// Sender id.
        from_user_id: u32,
        /// Sender login name (when known).
        from: String,
        /// Receiver (user) or group id.
        to_session_id: u32,
        /// True for a group message.
        group: bool,
        /// The decrypted text ("[voice]" for audio).
        text: String,
        /// Server time of the message (unix seconds).
        create_time: u32,
    },
    /// A line was stored and acknowledged.
    Sent {
        /// Its id.
        msg_id: u32,
        /// Receiver or group.
        to_session_id: u32,
    },
}

fn emit(e: &ChatEvent, as_json: bool) {
    if as_json {
        if let Ok(line) = serde_json::to_string(e) {
            println!("{line}");
        }
        return;
    }
    match e {
        ChatEvent::LoggedIn {
            user_id,
            msg_server,
        } => eprintln!(
            "logged in as user {user_id} on {msg_server}; type a line to send it, Ctrl-D to leave"
        ),
        ChatEvent::Message {
            from,
            group,
            to_session_id,
            text,
            ..
        } => {
            if *group {
                println!("[group {to_session_id}] {from}: {text}");
            } else {
                println!("{from}: {text}");
            }
        }
        ChatEvent::Sent { msg_id, .. } => eprintln!("(sent, msg_id {msg_id})"),
    }
}

/// A logged-in session.
struct Session {
    client: ImClient,
    me: u32,
    cipher: MessageCipher,
    names: HashMap<u32, String>,
}

impl Session {
    /// Finds the id of a user by login name through the client protocol (the full user
    /// list, as a stock client syncs it).
    async fn user_by_name(&self, name: &str) -> anyhow::Result<u32> {
        if let Some(id) = as_id(name) {
            return Ok(id);
        }
        let rsp = self
            .client
            .request_timeout(
                &ImAllUserReq {
                    user_id: self.me,
                    latest_update_time: 0,
                    attach_data: None,
                },
                REQUEST_TIMEOUT,
            )
            .await
            .context("fetching the user list")?;
        rsp.user_list
            .iter()
            .find(|u| u.user_real_name == name)
            .map(|u| u.user_id)
            .with_context(|| format!("no user named {name:?}"))
    }

    /// Finds the id of one of our normal groups by name (temporary groups: give the id).
    async fn group_by_name(&self, name: &str) -> anyhow::Result<u32> {
        if let Some(id) = as_id(name) {
            return Ok(id);
        }
        let list = self
            .client
            .request_timeout(
                &ImNormalGroupListReq {
                    user_id: self.me,
                    attach_data: None,
                },
                REQUEST_TIMEOUT,
            )
            .await
            .context("fetching the group list")?;
        let info = self
            .client
            .request_timeout(
                &ImGroupInfoListReq {
                    user_id: self.me,
                    group_version_list: list
                        .group_version_list
                        .iter()
                        .map(|g| GroupVersionInfo {
                            group_id: g.group_id,
                            version: 0,
                        })
                        .collect(),
                    attach_data: None,
                },
                REQUEST_TIMEOUT,
            )
            .await
            .context("fetching group names")?;
        info.group_info_list
            .iter()
            .find(|g| g.group_name == name)
            .map(|g| g.group_id)
            .with_context(|| {
                format!("you are in no normal group named {name:?} (give a group id instead)")
            })
    }

    /// The login name of a user, asked once and remembered.
    async fn name_of(&mut self, user: u32) -> String {
        if let Some(n) = self.names.get(&user) {
            return n.clone();
        }
        let asked = self
            .client
            .request_timeout(
                &ImUsersInfoReq {
                    user_id: self.me,
                    user_id_list: vec![user],
                    attach_data: None,
                },
                REQUEST_TIMEOUT,
            )
            .await;
        let name = asked
            .ok()
            .and_then(|r| r.user_info_list.into_iter().find(|u| u.user_id == user))
            .map_or_else(|| format!("user {user}"), |u| u.user_real_name);
        self.names.insert(user, name.clone());
        name
    }

    /// Acknowledges a delivery (as stock clients do) and turns it into an event.
    async fn received(&mut self, m: ImMsgData) -> ChatEvent {
        let group =
            m.msg_type == MsgType::GroupText as i32 || m.msg_type == MsgType::GroupAudio as i32;
        let ack = ImMsgDataAck {
            user_id: self.me,
            session_id: if group {
                m.to_session_id
            } else {
                m.from_user_id
            },
            msg_id: m.msg_id,
            session_type: if group {
                SessionType::Group
            } else {
                SessionType::Single
            } as i32,
        };
        let _ = self.client.send(&ack).await;
        let text = if m.msg_type == MsgType::SingleAudio as i32
            || m.msg_type == MsgType::GroupAudio as i32
        {
            "[voice]".to_owned()
        } else {
            match self.cipher.decrypt(&m.msg_data) {
                Ok(plain) => String::from_utf8_lossy(&plain).into_owned(),
                Err(_) => "[a message this key cannot decrypt]".to_owned(),
            }
        };
        let from = if m.from_user_id == self.me {
            "you (another device)".to_owned()
        } else {
            self.name_of(m.from_user_id).await
        };
        ChatEvent::Message {
            msg_id: m.msg_id,
            from_user_id: m.from_user_id,
            from,
            to_session_id: m.to_session_id,
            group,
            text,
            create_time: m.create_time,
        }
    }

    /// Sends one line and waits for its ack (the message is stored once acknowledged).
    async fn send_line(&self, to: u32, group: bool, line: &str) -> anyhow::Result<ChatEvent> {
        let msg = ImMsgData {
            from_user_id: self.me,
            to_session_id: to,
            msg_id: 0,
            create_time: 0,
            msg_type: if group {
                MsgType::GroupText
            } else {
                MsgType::SingleText
            } as i32,
            msg_data: self.cipher.encrypt(line.as_bytes()).into_bytes().into(),
            attach_data: None,
        };
        let ack = self
            .client
            .request_timeout(&msg, REQUEST_TIMEOUT)
            .await
            .context("no ack: the message may not be stored")?;
        Ok(ChatEvent::Sent {
            msg_id: ack.msg_id,
            to_session_id: to,
        })
    }
}

/// Standard input, line by line, on its own thread: a blocking read must not hold a runtime
/// thread or keep the runtime from shutting down.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn target(s: &Session, t: &TargetArgs) -> anyhow::Result<Option<(u32, bool)>> {
    Ok(match (&t.to, &t.group) {
        (Some(u), None) => Some((s.user_by_name(u).await?, false)),
        (None, Some(g)) => Some((s.group_by_name(g).await?, true)),
        _ => None,
    })
}

/// `imctl chat`
pub async fn run(config: &Config, a: &ChatArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    if config.login_url.is_empty() {
        bail!("no login URL: set `login_url` in the imctl config, IM_LOGIN_URL or --login-url");
    }
    let cipher = cipher(config)?;
    let password = ask_password(a.password.clone(), format!("password for {}: ", a.user)).await?;
    let assigned = fetch_msg_server(&config.login_url)
        .await
        .with_context(|| format!("asking {} for a msg_server", config.login_url))?;
    let (client, mut events) = ImClient::connect(
        &assigned.addr(),
        ClientConfig {
            request_timeout: REQUEST_TIMEOUT,
            heartbeat_interval: Some(HEARTBEAT),
            ..ClientConfig::default()
        },
    )
    .await
    .with_context(|| format!("connecting to msg_server {}", assigned.addr()))?;
    let res = client
        .login(&LoginParams::new(a.user.clone(), password))
        .await
        .with_context(|| format!("logging in as {}", a.user))?;
    let me = res.user_info.as_ref().map_or(0, |u| u.user_id);
    let mut s = Session {
        client,
        me,
        cipher,
        names: HashMap::new(),
    };
    s.names.insert(me, a.user.clone());
    let to = target(&s, &a.target).await?;
    emit(
        &ChatEvent::LoggedIn {
            user_id: me,
            msg_server: assigned.addr(),
        },
        as_json,
    );
    let mut lines = stdin_lines();
    loop {
        tokio::select! {
            pdu = events.recv() => {
                let Some(pdu) = pdu else {
                    bail!("the msg_server closed the connection");
                };
                on_pdu(&mut s, pdu, as_json).await?;
            }
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim_end();
                if line.is_empty() {
                    continue;
                }
                if line == "/quit" {
                    break;
                }
                match to {
                    Some((id, group)) => emit(&s.send_line(id, group, line).await?, as_json),
                    None => eprintln!("not sent: start chat with --to USER or --group GROUP to send"),
                }
            }
        }
    }
    let _ = s
        .client
        .request_timeout(&ImLogoutReq {}, Duration::from_secs(2))
        .await;
    s.client.close();
    Ok(ExitCode::SUCCESS)
}

async fn on_pdu(s: &mut Session, pdu: Pdu, as_json: bool) -> anyhow::Result<()> {
    match pdu.command_id() {
        cid::CID_MSG_DATA => {
            if let Ok(m) = pdu.decode::<ImMsgData>() {
                let e = s.received(m).await;
                emit(&e, as_json);
            }
        }
        cid::CID_LOGIN_KICK_USER => {
            let reason = pdu.decode::<ImKickUser>().map_or(0, |k| k.kick_reason);
            bail!("the server ended this session (kick reason {reason})");
        }
        _ => {}
    }
    Ok(())
}
