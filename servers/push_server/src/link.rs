//! The msg_server links (FLOWS.md 15.6, PROTOCOL.md 4.8).
//!
//! A link carries heartbeats (echoed by the serve loop; a link idle for 30 s is closed,
//! FLOWS.md 1.1) and `CID_OTHER_PUSH_TO_USER_REQ`. Anything else closes the link, as the
//! original does. Each IMPushToUserReq is answered at once with one PushResult per token: 0
//! when the push was queued, 1 when it was refused (no enabled provider for the client
//! type, a token that is not one of its provider's, a `data` text too large, or a full
//! queue).
//!
//! Push shield (group mute) and night-time mute are not decided here: as in the original,
//! msg_server leaves muted group members out and db_proxy leaves out iOS users with night
//! mute on between 22:00 and 08:00 (FLOWS.md 15.1, 15.2), so every token that arrives here
//! is meant to be pushed.

use std::sync::Arc;

use im_common::{CloseReason, Conn, Handler};
use im_proto::base::{ClientType, PushResult, UserTokenInfo};
use im_proto::server::{ImPushToUserReq, ImPushToUserRsp};
use im_proto::{BodyError, Pdu, cid};

use crate::config::{Config, ProviderKind, ProvidersConfig};
use crate::metrics::{Metrics, Refusal};
use crate::payload::{MAX_DATA_BYTES, cut_alert, repair_utf8};
use crate::providers::{Providers, token_is_valid};
use crate::queue::{Content, Job, Queue};

/// Result code of a queued push.
pub const RESULT_QUEUED: u32 = 0;
/// Result code of a refused push.
pub const RESULT_REFUSED: u32 = 1;
/// push_type of a silent (badge-only) push: the user has a PC client online.
const PUSH_TYPE_SILENT: u32 = 2;

/// What the links share.
#[derive(Debug)]
pub struct Intake {
    /// The queue.
    pub queue: Arc<Queue>,
    /// Providers that can deliver.
    pub providers: Arc<Providers>,
    /// Counters.
    pub metrics: Metrics,
    routes: ProvidersConfig,
    hide_message_text: bool,
    hidden_alert_text: String,
    alert_max_bytes: usize,
}

impl Intake {
    /// The intake of `config`.
    pub fn new(
        config: &Config,
        queue: Arc<Queue>,
        providers: Arc<Providers>,
        metrics: Metrics,
    ) -> Self {
        Intake {
            queue,
            providers,
            metrics,
            routes: config.providers,
            hide_message_text: config.hide_message_text,
            hidden_alert_text: config.hidden_alert_text.clone(),
            alert_max_bytes: config.alert_max_bytes,
        }
    }

    /// The provider serving `client_type`.
    pub fn provider_for(&self, client_type: i32) -> ProviderKind {
        match ClientType::try_from(client_type) {
            Ok(ClientType::Ios) => self.routes.ios,
            Ok(ClientType::Android) => self.routes.android,
            _ => self.routes.other,
        }
    }

    /// Queues one job per token and says what became of each.
    pub fn accept(&self, req: ImPushToUserReq) -> ImPushToUserRsp {
        self.metrics.requests.inc();
        let too_large = req.data.len() > MAX_DATA_BYTES;
        let content = Arc::new(Content {
            alert: if self.hide_message_text {
                self.hidden_alert_text.clone()
            } else {
                cut_alert(&req.flash, self.alert_max_bytes)
            },
            data: req.data,
        });
        let push_result_list = req
            .user_token_list
            .into_iter()
            .map(|t| {
                let user_token = t.token.clone();
                let result_code = match self.admit(t, &content, too_large) {
                    Ok(()) => {
                        self.metrics.accepted.inc();
                        RESULT_QUEUED
                    }
                    Err(why) => {
                        self.metrics.refused(why);
                        RESULT_REFUSED
                    }
                };
                PushResult {
                    user_token,
                    result_code,
                }
            })
            .collect();
        ImPushToUserRsp { push_result_list }
    }

    fn admit(
        &self,
        t: UserTokenInfo,
        content: &Arc<Content>,
        too_large: bool,
    ) -> Result<(), Refusal> {
        let provider = self.provider_for(t.user_type);
        if !self.providers.has(provider) {
            return Err(Refusal::NoProvider);
        }
        if !token_is_valid(provider, &t.token) {
            return Err(Refusal::InvalidToken);
        }
        if too_large {
            return Err(Refusal::TooLarge);
        }
        let job = Job {
            provider,
            user_id: t.user_id,
            client_type: t.user_type,
            token: t.token,
            badge: t.push_count,
            silent: t.push_type == PUSH_TYPE_SILENT,
            content: content.clone(),
            attempts: 0,
        };
        self.queue.try_push(job).map_err(|_| Refusal::QueueFull)
    }
}

/// The handler of one msg_server link.
#[derive(Debug)]
pub struct PushLink {
    intake: Arc<Intake>,
}

impl PushLink {
    /// A handler over `intake`.
    pub fn new(intake: Arc<Intake>) -> Self {
        PushLink { intake }
    }
}

impl Handler for PushLink {
    async fn on_pdu(&mut self, conn: &Conn, pdu: Pdu) {
        if pdu.command_id() != cid::CID_OTHER_PUSH_TO_USER_REQ {
            self.intake.metrics.unknown_commands.inc();
            tracing::info!(conn_id = conn.id(), peer = %conn.peer(), cmd = pdu.command_name(),
                command_id = pdu.command_id(), "closing msg_server link: unexpected command");
            conn.close(CloseReason::Server("unexpected command"));
            return;
        }
        let req = match decode(&pdu) {
            Ok(r) => r,
            Err(e) => {
                self.intake.metrics.bad_bodies.inc();
                tracing::info!(conn_id = conn.id(), peer = %conn.peer(), error = %e,
                    "undecodable IMPushToUserReq dropped");
                return;
            }
        };
        let targets = req.user_token_list.len();
        let rsp = self.intake.accept(req);
        tracing::debug!(conn_id = conn.id(), targets, "push request answered");
        let _ = conn.send_pdu(&pdu.reply(&rsp));
    }
}

/// IMPushToUserReq as prost would decode it, but with the texts as bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct LenientPushReq {
    #[prost(bytes = "vec", required, tag = "1")]
    flash: Vec<u8>,
    #[prost(bytes = "vec", required, tag = "2")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    user_token_list: Vec<UserTokenInfo>,
}

/// Decodes an IMPushToUserReq. An original msg_server cuts the flash at 37 bytes, possibly
/// inside a UTF-8 character (WEAKNESSES 53), which a strict string decode refuses; such a
/// body is decoded again with the broken bytes dropped.
pub fn decode(pdu: &Pdu) -> Result<ImPushToUserReq, BodyError> {
    match pdu.decode::<ImPushToUserReq>() {
        Err(e @ BodyError::Decode { .. }) => {
            let Ok(l) = <LenientPushReq as prost::Message>::decode(pdu.body.clone()) else {
                return Err(e);
            };
            Ok(ImPushToUserReq {
                flash: repair_utf8(&l.flash),
                data: repair_utf8(&l.data),
                user_token_list: l.user_token_list,
            })
        }
        other => other,
    }
}
