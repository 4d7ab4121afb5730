//! The admin port: statistics (per-command requests, errors and latency; storage read and
//! write latency; links), and the administration of users and departments ([`accounts`]),
//! groups, discovery items and push tokens ([`groups`]) for imctl. The connection list is
//! the generic one every server gives.
//!
//! Discovery listing and the token compare-and-delete are also answered on the main port, for
//! http_msg_server and push_server links (handlers::other), by the same functions.

pub mod accounts;
pub mod groups;

use std::sync::Arc;

use im_common::admin::{AdminService, conn_list, unsupported};
use im_proto::admin::{
    AdminResult, ClientTypeCount, ImAdminConnListReq, Metric, ServerState, ServerStats,
    StorageStats,
};
use im_proto::{Command, Pdu, cid};
use im_storage::StorageError;

use crate::backend::Backend;
use crate::metrics::latency;
use crate::server::Shared;

pub use groups::{discovery_list, remove_token};

/// db_proxy's [`AdminService`].
pub struct Admin<S> {
    /// Shared state.
    pub shared: Arc<Shared<S>>,
    /// Configured name.
    pub name: String,
    /// Main listen address.
    pub listen_addr: String,
}

/// The reply to a request whose body does not decode: just `result_code` =
/// `ADMIN_BAD_REQUEST` (field 1 of every admin response, see [`unsupported`]).
fn bad_request(req: &Pdu) -> Option<Pdu> {
    let rsp_cid = req.command_id().checked_add(1)?;
    let body = bytes::Bytes::from(vec![0x08, AdminResult::AdminBadRequest as u8]);
    Some(Pdu::new(
        im_proto::Header::new(im_proto::sid::SID_ADMIN, rsp_cid, req.seq_num()),
        body,
    ))
}

/// The admin result for a storage error: the caller's fault, a conflict, or ours.
pub fn storage_result(e: &StorageError) -> AdminResult {
    match e {
        StorageError::Invalid(_) => AdminResult::AdminBadRequest,
        StorageError::Closed | StorageError::Cache(_) => AdminResult::AdminUnavailable,
        StorageError::Conflict(_) | StorageError::Database(_) | StorageError::Open(_) => {
            AdminResult::AdminFailed
        }
    }
}

/// Decodes `pdu` as `Req`, runs `f` on it and replies; a body that does not decode is
/// answered `ADMIN_BAD_REQUEST` (imctl waits for an answer; the link is ours, not a client's).
async fn answer<Req, Rsp, F, Fut>(pdu: &Pdu, f: F) -> Option<Pdu>
where
    Req: Command,
    Rsp: Command,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Rsp>,
{
    match pdu.decode::<Req>() {
        Ok(req) => Some(pdu.reply(&f(req).await)),
        Err(e) => {
            tracing::warn!(cmd = Req::NAME, error = %e, "admin request does not decode");
            bad_request(pdu)
        }
    }
}

impl<S: Backend> AdminService for Admin<S> {
    fn kind(&self) -> &'static str {
        "db_proxy_server"
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn stats(&self) -> ServerStats {
        let sh = &self.shared;
        let m = &sh.metrics;
        let b = sh.store.backend_stats();
        ServerStats {
            state: Some(if sh.is_stopping() {
                ServerState::Stopping as i32
            } else {
                ServerState::Up as i32
            }),
            listen_addr: Some(self.listen_addr.clone()),
            // Links are msg_servers and http_msg_servers, not clients: client type 0.
            connections: vec![ClientTypeCount {
                client_type: Some(0),
                count: Some(sh.links.len() as u32),
            }],
            logins_total: Some(m.logins.get()),
            login_failures_total: Some(m.login_failures.get()),
            msgs_in_total: Some(m.messages_stored.get()),
            slow_consumer_disconnects_total: Some(
                sh.links
                    .stats()
                    .slow_consumers
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            storage: Some(StorageStats {
                backend: Some(S::BACKEND.to_owned()),
                cache: Some(S::CACHE.to_owned()),
                write_latency: Some(latency(&m.write_latency)),
                read_latency: Some(latency(&m.read_latency)),
                pool_in_use: b.pool_in_use,
                pool_size: b.pool_size,
                group_commits_total: Some(b.group_commits),
                writes_total: Some(b.writes),
                writer_busy_micros_total: Some(b.writer_busy_us),
                write_queue: Some(b.write_queue),
            }),
            commands: m.command_stats(),
            metrics: m
                .registry
                .values()
                .into_iter()
                .map(|(name, value, monotonic)| Metric {
                    name: Some(name),
                    value: Some(value),
                    monotonic: Some(monotonic),
                })
                .collect(),
            ..ServerStats::default()
        }
    }

    async fn handle(&self, pdu: &Pdu) -> Option<Pdu> {
        let sh = &*self.shared;
        let store = &sh.store;
        match pdu.command_id() {
            cid::CID_ADMIN_CONN_LIST_REQ => {
                let req = pdu.decode::<ImAdminConnListReq>().unwrap_or_default();
                Some(pdu.reply(&conn_list(&sh.links, &req)))
            }
            cid::CID_ADMIN_USER_ADD_REQ => answer(pdu, |r| accounts::user_add(store, r)).await,
            cid::CID_ADMIN_USER_LIST_REQ => answer(pdu, |r| accounts::user_list(store, r)).await,
            cid::CID_ADMIN_USER_EDIT_REQ => answer(pdu, |r| accounts::user_edit(sh, r)).await,
            cid::CID_ADMIN_DEPT_ADD_REQ => answer(pdu, |r| accounts::dept_add(store, r)).await,
            cid::CID_ADMIN_DEPT_LIST_REQ => answer(pdu, |r| accounts::dept_list(store, r)).await,
            cid::CID_ADMIN_GROUP_CREATE_REQ => {
                answer(pdu, |r| groups::group_create(store, r)).await
            }
            cid::CID_ADMIN_GROUP_LIST_REQ => answer(pdu, |r| groups::group_list(store, r)).await,
            cid::CID_ADMIN_GROUP_MEMBERS_REQ => {
                answer(pdu, |r| groups::group_members(store, r)).await
            }
            cid::CID_ADMIN_DISCOVERY_LIST_REQ => {
                answer(pdu, |r| groups::discovery_list(store, r)).await
            }
            cid::CID_ADMIN_DISCOVERY_ADD_REQ => {
                answer(pdu, |r| groups::discovery_add(store, r)).await
            }
            cid::CID_ADMIN_DISCOVERY_REMOVE_REQ => {
                answer(pdu, |r| groups::discovery_remove(store, r)).await
            }
            cid::CID_ADMIN_REMOVE_TOKEN_REQ => {
                answer(pdu, |r| groups::remove_token(store, r)).await
            }
            _ => unsupported(pdu),
        }
    }
}
