//! One handler per msg_server link; one function per command, grouped by service:
//! [`presence`] (registration, status updates, status queries) and [`relay`] (everything
//! route_server forwards).

mod presence;
mod relay;

use std::collections::HashSet;
use std::sync::Arc;

use im_common::{Conn, Handler};
use im_proto::{Command, Pdu, cid};

use crate::grace;
use crate::links::Link;
use crate::state::RouteState;

/// The state of one msg_server (or http_msg_server) link.
pub struct LinkHandler {
    state: Arc<RouteState>,
    link: Arc<Link>,
    /// Users this link reported, so that its routes can be found when it drops without
    /// scanning the whole table. A superset: ids whose connections all left are pruned
    /// as they go.
    users: HashSet<u32>,
}

impl LinkHandler {
    /// A handler for a just-accepted link; the link takes part in broadcasts at once.
    pub fn new(state: Arc<RouteState>, conn: &Conn) -> Self {
        let link = Arc::new(Link::new(conn));
        state.links.insert(link.clone());
        tracing::info!(conn_id = link.id, peer = %link.name, "msg_server link up");
        LinkHandler {
            state,
            link,
            users: HashSet::new(),
        }
    }

    /// Decodes the body; a bad one is logged, counted and dropped (the link stays).
    fn decode<M: Command>(&self, pdu: &Pdu) -> Option<M> {
        match pdu.decode::<M>() {
            Ok(m) => Some(m),
            Err(e) => {
                self.state.metrics.decode_errors.inc();
                tracing::warn!(conn_id = self.link.id, peer = %self.link.name,
                    cmd = pdu.command_name(), error = %e, "dropping a PDU whose body does not decode");
                None
            }
        }
    }
}

impl Handler for LinkHandler {
    async fn on_pdu(&mut self, _conn: &Conn, pdu: Pdu) {
        match pdu.command_id() {
            cid::CID_OTHER_ROLE_SET => presence::role_set(self, &pdu),
            cid::CID_OTHER_ONLINE_USER_INFO => presence::online_user_info(self, &pdu),
            cid::CID_OTHER_USER_STATUS_UPDATE => presence::user_status_update(self, &pdu),
            cid::CID_BUDDY_LIST_USERS_STATUS_REQUEST => presence::users_status_request(self, &pdu),
            cid::CID_ADMIN_LOCATE_USER_REQ => presence::locate_users(self, &pdu),
            cid::CID_MSG_DATA => relay::msg_data(self, &pdu),
            cid::CID_MSG_READ_NOTIFY => relay::read_notify(self, &pdu),
            cid::CID_SWITCH_P2P_CMD => relay::p2p_cmd(self, &pdu),
            cid::CID_BUDDY_LIST_REMOVE_SESSION_NOTIFY => relay::remove_session_notify(self, &pdu),
            cid::CID_BUDDY_LIST_SIGN_INFO_CHANGED_NOTIFY => relay::sign_info_changed(self, &pdu),
            cid::CID_GROUP_CHANGE_MEMBER_NOTIFY => relay::group_change_member(self, &pdu),
            cid::CID_FILE_NOTIFY => relay::file_notify(self, &pdu),
            cid::CID_OTHER_SERVER_KICK_USER => relay::server_kick_user(self, &pdu),
            other => {
                // PROTOCOL.md 4.8: route_server logs and ignores unknown commands.
                self.state.metrics.unknown_commands.inc();
                tracing::debug!(conn_id = self.link.id, peer = %self.link.name, cmd = other,
                    name = pdu.command_name(), "ignoring a command route_server does not handle");
            }
        }
    }

    async fn on_close(&mut self, conn: &Conn) {
        self.state.links.remove(self.link.id);
        let reason = conn
            .close_reason()
            .map(|r| r.to_string())
            .unwrap_or_default();
        tracing::info!(conn_id = self.link.id, peer = %self.link.name, users = self.users.len(),
            %reason, "msg_server link closed");
        grace::hold(&self.state, &self.link, self.users.drain());
    }
}
