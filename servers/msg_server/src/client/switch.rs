//! SID_SWITCH_SERVICE (FLOWS.md 13): opaque client-to-client commands (typing indicators).

use im_common::Conn;
use im_proto::Pdu;
use im_proto::switch_service::Imp2pCmdMsg;

use super::{Auth, ClientHandler};

/// Longest P2P command relayed. Clients send small JSON (typing, shake); a larger body is
/// dropped, logged and counted (IMP2PCmdMsg has no answer to carry an error) instead of
/// being copied to every connection of two users.
pub const MAX_P2P_CMD_BYTES: usize = 64 << 10;

/// `CID_SWITCH_P2P_CMD`: relayed to the sender's other connections, the receiver's
/// connections here and, through route_server, elsewhere. The sender is the authenticated
/// user, never the client's claim (WEAKNESSES 7).
pub(super) fn p2p_cmd(h: &mut ClientHandler, conn: &Conn, auth: &Auth, pdu: Pdu) {
    let Some(mut msg) = h.decode::<Imp2pCmdMsg>(conn, &pdu) else {
        return;
    };
    let len = msg.cmd_msg_data.len();
    if h.oversized(conn, &pdu, "p2p command bytes", len, MAX_P2P_CMD_BYTES) {
        return;
    }
    msg.from_user_id = auth.user_id;
    let frame = Pdu::from_msg(&msg, 0).to_frame();
    let s = &h.server;
    s.sessions
        .send_to_user(auth.user_id, &frame, Some(conn.id()));
    if msg.to_user_id != auth.user_id {
        s.sessions.send_to_user(msg.to_user_id, &frame, None);
    }
    // Ephemeral: not worth resending after a route_server restart.
    s.routes.send(frame, false);
}
