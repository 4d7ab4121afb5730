//! The offline grace period (Decisions 7, WEAKNESSES 39).
//!
//! When a msg_server link drops, its users are neither forgotten silently (the original) nor
//! announced offline at once: their connections there are held for the grace period. They
//! still count for presence but receive nothing (their link is gone). A user who re-appears
//! meanwhile (the msg_server re-registering after a reconnect, or a login elsewhere) is
//! simply moved, and nobody is told anything unless the user's wire presence changed
//! meanwhile (see [`crate::table::RouteTable::update`]). When the period ends, what is still held is
//! removed as if every held connection had sent IMUserStatusUpdate offline, with the
//! notifies of FLOWS.md 11.

use std::sync::Arc;

use crate::links::Link;
use crate::state::RouteState;

/// Moves the connections `link` held for `users` into a new grace batch and schedules its
/// expiry.
pub fn hold(state: &Arc<RouteState>, link: &Link, users: impl IntoIterator<Item = u32>) {
    let batch = state.next_batch();
    let held: Vec<u32> = users
        .into_iter()
        .filter(|&u| state.table.hold_for_grace(u, link.id, batch))
        .collect();
    if held.is_empty() {
        return;
    }
    tracing::info!(conn_id = link.id, peer = %link.name, users = held.len(),
        grace_secs = state.grace.as_secs_f64(), "holding the users of a dropped link");
    let state = state.clone();
    let peer = link.name.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(state.grace) => {}
            // The process is going away; nobody is left to tell.
            () = state.shutdown.cancelled() => return,
        }
        let mut announced = 0u64;
        for user in held {
            if state.table.expire_grace(user, batch, |user, notices| {
                state.emit_notices(user, notices);
            }) {
                announced += 1;
            }
        }
        state.metrics.grace_expired_users.add(announced);
        if announced > 0 {
            tracing::info!(%peer, users = announced,
                "offline grace period over: users of the dropped link are offline");
        }
    });
}
