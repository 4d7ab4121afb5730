//! Online transfer (FLOWS.md 14.2): the receiver's pull requests go to the sender unchanged,
//! the sender's blocks go back to the receiver with the seq of the request they answer.
//! Frames are relayed as received (only the seq of a block is rewritten); chunk size and
//! pacing are the clients' business.

use std::sync::Arc;

use im_common::{Conn, SendError};
use im_proto::Pdu;
use im_proto::file::ImFilePullDataReq;

use crate::state::Shared;
use crate::task::Task;

/// `CID_FILE_PULL_DATA_REQ` from the receiver: remembered and forwarded to the sender.
pub(super) fn pull(task: &Arc<Task>, conn: &Conn, pdu: &Pdu, req: &ImFilePullDataReq) {
    match task.pull(req.offset, pdu.seq_num()) {
        Some(sender) => {
            if sender.send_frame(pdu.to_frame()).is_err() {
                // The sender is closing; its close ends the task.
                tracing::debug!(
                    conn_id = conn.id(),
                    "pull request for a closing sender dropped"
                );
            }
        }
        None => {
            // Before PEER_READY: the sender is not there yet.
            tracing::debug!(
                conn_id = conn.id(),
                task = Shared::short_id(&task.id),
                "pull request before both sides logged in; dropped"
            );
        }
    }
}

/// `CID_FILE_PULL_DATA_RSP` from the sender: relayed to the receiver with the seq of the
/// pull request it answers. A block too large for a client link ends the transfer.
pub(super) fn data(s: &Shared, task: &Arc<Task>, mut pdu: Pdu, offset: u32, len: usize) {
    s.metrics.bytes_in.add(len as u64);
    let Some((receiver, seq)) = task.data(offset) else {
        tracing::debug!(
            task = Shared::short_id(&task.id),
            "block before both sides logged in; dropped"
        );
        return;
    };
    pdu.header.seq_num = seq;
    match receiver.send_frame(pdu.to_frame()) {
        Ok(()) => s.metrics.bytes_out.add(len as u64),
        Err(e @ SendError::TooLarge { .. }) => {
            tracing::info!(task = Shared::short_id(&task.id), error = %e,
                "block too large for the receiver's link; transfer ended");
            if s.end_task(task, None) {
                s.metrics.transfers_failed.inc();
            }
        }
        // The receiver is closing (or too slow and closed); its close ends the task.
        Err(_) => {}
    }
}
