//! Group checks: a few members logged in on their own connections, a group message from one
//! of them, and every other member must receive it live.

use std::time::Duration;

use anyhow::{Context, bail};
use im_proto::base::ClientType;
use im_proto::cid;
use im_proto::crypto::MessageCipher;
use im_proto::message::ImMsgData;
use tokio::time::Instant;

use crate::session::{Session, find_group, login_at};
use crate::stamp::Stamp;
use crate::suite::Suite;
use crate::suite::config::user_name;

/// How long a member may wait for a group message.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// Members of the seeded groups, logged in alternately on each msg_server.
#[derive(Debug)]
pub struct Members {
    sessions: Vec<Session>,
    cipher: MessageCipher,
    run: u32,
    seq: u32,
}

/// One group message and who got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRound {
    /// The group's id.
    pub group_id: u32,
    /// The id the message was acked with.
    pub msg_id: u32,
    /// Members other than the sender.
    pub expected: usize,
    /// Of those, how many received it.
    pub received: usize,
}

impl Members {
    /// Logs in the first `n` seeded users (the seeded groups' members).
    pub async fn login(suite: &Suite, n: usize) -> anyhow::Result<Members> {
        let mut sessions = Vec::with_capacity(n);
        for i in 0..n {
            let addr = suite.msg_addr(i % suite.msg_server_count().max(1))?;
            sessions.push(login_at(&addr, &user_name(i), ClientType::Windows).await?);
        }
        Ok(Members {
            sessions,
            cipher: MessageCipher::default_key(),
            run: rand::random(),
            seq: 0,
        })
    }

    /// Member `sender` sends one text to group `name`; waits for the ack and for every other
    /// member's copy.
    pub async fn round(&mut self, name: &str, sender: usize) -> anyhow::Result<GroupRound> {
        let from = self.sessions.get(sender).context("no such member")?;
        let (group_id, members) = find_group(from, name).await?;
        let stamp = Stamp {
            run: self.run,
            from: from.user_id,
            to: group_id,
            seq: self.seq,
        };
        self.seq += 1;
        let ack = from
            .client
            .request(&stamp.message(&self.cipher, 64, true))
            .await
            .with_context(|| format!("group message to {name}"))?;
        if ack.msg_id == 0 {
            bail!("group message to {name} acked with msg_id 0");
        }
        let mut round = GroupRound {
            group_id,
            msg_id: ack.msg_id,
            expected: 0,
            received: 0,
        };
        let deadline = Instant::now() + DELIVERY_WAIT;
        for (i, s) in self.sessions.iter_mut().enumerate() {
            if i == sender || !members.contains(&s.user_id) {
                continue;
            }
            round.expected += 1;
            if wait_for(&mut *s, &self.cipher, stamp, deadline).await {
                round.received += 1;
            }
        }
        Ok(round)
    }
}

async fn wait_for(s: &mut Session, cipher: &MessageCipher, want: Stamp, deadline: Instant) -> bool {
    while let Ok(Some(pdu)) = tokio::time::timeout_at(deadline, s.events.recv()).await {
        if pdu.command_id() != cid::CID_MSG_DATA {
            continue;
        }
        if let Ok(m) = pdu.decode::<ImMsgData>()
            && Stamp::of_body(cipher, &m.msg_data) == Some(want)
        {
            return true;
        }
    }
    false
}
