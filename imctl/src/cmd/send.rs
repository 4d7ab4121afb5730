//! `imctl send --as USER --to USER|--group G TEXT`: a message on a user's behalf through a
//! msg_server's admin port. It is stored, acknowledged, delivered, routed and pushed exactly
//! like one the user sent from a client; nobody logs in as the user, whose own clients stay
//! connected and receive it as sent from another device.

use std::process::ExitCode;

use anyhow::{Context, bail};
use im_proto::admin::ImAdminSendMsgReq;
use im_proto::base::MsgType;
use im_proto::crypto::MessageCipher;
use serde::Serialize;

use super::lookup;
use crate::admin::{AdminClient, check};
use crate::cli::SendArgs;
use crate::config::Config;
use crate::output::json;

/// The message cipher of the config (`aes_key`; empty = the stock clients' key, FLOWS.md 18).
pub fn cipher(config: &Config) -> anyhow::Result<MessageCipher> {
    if config.aes_key.is_empty() {
        return Ok(MessageCipher::default_key());
    }
    MessageCipher::new(config.aes_key.as_bytes())
        .map_err(|e| anyhow::anyhow!("config key `aes_key` (IM_AES_KEY): {e}"))
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// The id the message got in its conversation.
    pub msg_id: u32,
    /// Sender.
    pub from_user_id: u32,
    /// Receiver (user) or group.
    pub to_session_id: u32,
    /// True for a group message.
    pub group: bool,
    /// The msg_server that took it.
    pub msg_server: String,
}

/// The first msg_server whose admin port answers.
async fn any_msg_server(config: &Config) -> anyhow::Result<AdminClient> {
    let token = config.require_token()?;
    config.require_one("msg_server")?;
    let mut last = None;
    for addr in config.endpoints("msg_server") {
        match AdminClient::connect(addr, token).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no msg_server configured")))
        .context("no msg_server answered")
}

/// `imctl send`
pub async fn run(config: &Config, a: &SendArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let cipher = cipher(config)?;
    let text = a.text.join(" ");
    if text.is_empty() {
        bail!("nothing to send: the text is empty");
    }
    let db = lookup::db_proxy(config).await?;
    let from = lookup::user_id(&db, &a.from).await?;
    let (to, group) = match (&a.target.to, &a.target.group) {
        (Some(u), None) => (lookup::user_id(&db, u).await?, false),
        (None, Some(g)) => (lookup::group_id(&db, g).await?, true),
        _ => bail!("say where the message goes: --to USER or --group GROUP"),
    };
    db.close();
    let msg_type = if group {
        MsgType::GroupText
    } else {
        MsgType::SingleText
    };
    let ms = any_msg_server(config).await?;
    let rsp = ms
        .call(&ImAdminSendMsgReq {
            from_user_id: Some(from),
            to_session_id: Some(to),
            msg_type: Some(msg_type as u32),
            msg_data: Some(cipher.encrypt(text.as_bytes()).into_bytes().into()),
        })
        .await?;
    check(
        rsp.result_code(),
        rsp.result_string.as_deref(),
        &format!("sending as {}", a.from),
    )?;
    let sent = Sent {
        msg_id: rsp.msg_id(),
        from_user_id: from,
        to_session_id: to,
        group,
        msg_server: ms.name.clone(),
    };
    if as_json {
        json(&sent)?;
    } else {
        println!(
            "sent as user {from} to {} {to}: msg_id {} (via {})",
            if group { "group" } else { "user" },
            sent.msg_id,
            sent.msg_server
        );
    }
    Ok(ExitCode::SUCCESS)
}
