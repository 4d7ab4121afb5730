//! Offline transfer (FLOWS.md 14.3): the upload is pulled by file_server in 32 KiB blocks
//! and written to disk as it comes (never buffered whole); the download serves whole blocks
//! from disk. Every disk operation runs off the async worker threads (tokio::fs and
//! spawn_blocking).
//!
//! Fixing WEAKNESSES 50: a block must be exactly the expected size at the expected offset,
//! or the upload fails (its partial file is deleted); the header carries the real file name.

use std::io::SeekFrom;
use std::sync::Arc;

use bytes::Bytes;
use im_common::Conn;
use im_common::conn::CloseReason;
use im_proto::Pdu;
use im_proto::base::{ClientFileState, TransferFileType};
use im_proto::file::{ImFilePullDataReq, ImFilePullDataRsp, ImFileState};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::disk::{BLOCK_SIZE, DiskError, HEADER_LEN, OfflineHeader, block_len};
use crate::state::Shared;
use crate::task::{Refusal, Task};

/// Runs a blocking disk operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DiskError> + Send + 'static,
) -> Result<T, DiskError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DiskError::Io(std::io::Error::other(e.to_string())))?
}

/// A task not in memory, reloaded from disk for a download (the original's files too).
pub(super) async fn load(s: &Shared, task_id: &str) -> Result<Arc<Task>, Refusal> {
    let store = s.store.clone();
    let id = task_id.to_owned();
    let loaded = blocking(move || {
        let (header, _file) = store.open(&id)?;
        let downloaded = store.is_downloaded(&id);
        Ok((header, downloaded))
    })
    .await;
    match loaded {
        Ok((header, downloaded)) => s
            .tasks
            .get_or_insert(Arc::new(Task::stored(header, downloaded)))
            .map_err(|_| Refusal::Gone),
        Err(e) => {
            tracing::debug!(task = Shared::short_id(task_id), error = %e, "no usable offline file");
            Err(Refusal::Gone)
        }
    }
}

/// The FLOWS.md 14.3 step 2 request for the block at `offset`.
fn pull_request(task: &Task, offset: u32) -> ImFilePullDataReq {
    ImFilePullDataReq {
        task_id: task.id.clone(),
        user_id: task.from,
        trans_mode: TransferFileType::FileTypeOffline as i32,
        offset,
        data_size: block_len(task.size, offset),
    }
}

fn done_state(task: &Task) -> ImFileState {
    ImFileState {
        state: ClientFileState::ClientFileDone as i32,
        task_id: task.id.clone(),
        user_id: task.from,
    }
}

/// An upload in progress.
pub(super) struct Upload {
    file: Option<tokio::fs::File>,
    next_offset: u32,
    committed: bool,
}

impl Upload {
    /// Creates `<task>.part` with its header.
    pub(super) async fn create(s: &Shared, task: &Task) -> Result<Upload, DiskError> {
        let header = OfflineHeader {
            task_id: task.id.clone(),
            from: task.from,
            to: task.to,
            create_time: task.created,
            file_name: task.file_name.clone(),
            file_size: task.size,
        };
        let store = s.store.clone();
        let (_, file) = blocking(move || store.create_part(&header)).await?;
        Ok(Upload {
            file: Some(tokio::fs::File::from_std(file)),
            next_offset: 0,
            committed: false,
        })
    }

    /// After the login answer: asks for the first block (an empty file is complete at once).
    pub(super) async fn begin(&mut self, s: &Shared, task: &Arc<Task>, conn: &Conn) {
        if task.size == 0 {
            self.commit(s, task, conn).await;
        } else {
            let _ = conn.send_msg(&pull_request(task, 0), 0);
        }
    }

    /// A block from the uploader: exactly the expected size at the expected offset, or the
    /// upload fails.
    pub(super) async fn block(
        &mut self,
        s: &Shared,
        task: &Arc<Task>,
        conn: &Conn,
        rsp: ImFilePullDataRsp,
    ) {
        let expected = block_len(task.size, self.next_offset);
        let why = if self.committed || expected == 0 {
            Some("data after the last block")
        } else if rsp.result_code != 0 {
            Some("uploader reported an error")
        } else if rsp.offset != self.next_offset {
            Some("block at an unexpected offset")
        } else if rsp.file_data.len() != expected as usize {
            Some("block of the wrong size")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::info!(
                conn_id = conn.id(),
                task = Shared::short_id(&task.id),
                reason = why,
                offset = rsp.offset,
                len = rsp.file_data.len(),
                expected_offset = self.next_offset,
                expected_len = expected,
                "offline upload failed"
            );
            conn.close_after_flush(CloseReason::Server(why));
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if let Err(e) = file.write_all(&rsp.file_data).await {
            tracing::warn!(task = Shared::short_id(&task.id), error = %e, "offline file write failed");
            conn.close_after_flush(CloseReason::Server("offline file write failed"));
            return;
        }
        s.metrics.bytes_in.add(u64::from(expected));
        self.next_offset += expected;
        task.touch();
        if self.next_offset >= task.size {
            self.commit(s, task, conn).await;
        } else {
            let _ = conn.send_msg(&pull_request(task, self.next_offset), 0);
        }
    }

    /// The last block is in: data synced, file renamed to its final name, DONE to the
    /// uploader, connection closed.
    async fn commit(&mut self, s: &Shared, task: &Arc<Task>, conn: &Conn) {
        let Some(mut file) = self.file.take() else {
            return;
        };
        let flushed = file.flush().await;
        let std_file = file.into_std().await;
        let store = s.store.clone();
        let id = task.id.clone();
        let committed = match flushed {
            Ok(()) => blocking(move || store.commit_part(&id, std_file)).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = committed {
            tracing::warn!(task = Shared::short_id(&task.id), error = %e, "offline file not stored");
            conn.close_after_flush(CloseReason::Server("offline file not stored"));
            return;
        }
        self.committed = true;
        let _ = conn.send_msg(&done_state(task), 0);
        s.end_task(task, None);
        s.metrics.uploads_done.inc();
        s.metrics.offline_files.add(1);
        tracing::debug!(
            task = Shared::short_id(&task.id),
            size = task.size,
            "offline file stored"
        );
    }

    /// The uploader's connection closed: an unfinished upload fails and its partial file
    /// goes.
    pub(super) async fn abandon(self, s: &Shared, task: &Arc<Task>, conn: &Conn) {
        if self.committed {
            return;
        }
        drop(self.file);
        if let Ok(part) = s.store.part_path(&task.id)
            && let Err(e) = tokio::fs::remove_file(&part).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(task = Shared::short_id(&task.id), error = %e, "partial upload not removed");
        }
        if s.end_task(task, Some(conn)) {
            s.metrics.transfers_failed.inc();
        }
    }
}

/// A download in progress.
pub(super) struct Download {
    file: tokio::fs::File,
    /// Data offset the file is positioned at.
    pos: u32,
    completed: bool,
}

impl Download {
    /// Opens the task's file, positioned after the header.
    pub(super) async fn open(s: &Shared, task: &Task) -> Result<Download, DiskError> {
        let store = s.store.clone();
        let id = task.id.clone();
        let (_, file) = blocking(move || store.open(&id)).await?;
        Ok(Download {
            file: tokio::fs::File::from_std(file),
            pos: 0,
            completed: false,
        })
    }

    async fn read_block(&mut self, offset: u32, len: u32) -> std::io::Result<Vec<u8>> {
        if offset != self.pos {
            self.file
                .seek(SeekFrom::Start(HEADER_LEN as u64 + u64::from(offset)))
                .await?;
        }
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact(&mut buf).await?;
        self.pos = offset + len;
        Ok(buf)
    }

    /// A pull request: the whole block at `offset` (a multiple of 32 KiB inside the file),
    /// answered with the request's seq; after the last block, DONE and close. Anything else
    /// closes the connection without an answer.
    pub(super) async fn serve(
        &mut self,
        s: &Shared,
        task: &Arc<Task>,
        conn: &Conn,
        pdu: &Pdu,
        req: &ImFilePullDataReq,
    ) {
        let offset = req.offset;
        let in_file = offset < task.size || (task.size == 0 && offset == 0);
        if self.completed || !offset.is_multiple_of(BLOCK_SIZE) || !in_file {
            tracing::info!(
                conn_id = conn.id(),
                task = Shared::short_id(&task.id),
                offset,
                size = task.size,
                "download request outside the file"
            );
            conn.close_after_flush(CloseReason::Server("download request outside the file"));
            return;
        }
        let len = block_len(task.size, offset);
        let data = match self.read_block(offset, len).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(task = Shared::short_id(&task.id), error = %e, "offline file read failed");
                conn.close_after_flush(CloseReason::Server("offline file read failed"));
                return;
            }
        };
        let rsp = ImFilePullDataRsp {
            result_code: 0,
            task_id: task.id.clone(),
            user_id: req.user_id,
            offset,
            file_data: Bytes::from(data),
        };
        if conn.reply(pdu, &rsp).is_err() {
            return;
        }
        s.metrics.bytes_out.add(u64::from(len));
        task.touch();
        if offset + len < task.size {
            return;
        }
        // The last block: the receiver's role is used up, here and on disk.
        self.completed = true;
        let was_active = task.leave_download(conn.id(), true);
        s.metrics.transfer_ended(was_active);
        let store = s.store.clone();
        let id = task.id.clone();
        if let Err(e) = blocking(move || store.mark_downloaded(&id)).await {
            tracing::warn!(task = Shared::short_id(&task.id), error = %e, "download marker not written");
        }
        s.tasks.remove_if_idle(task);
        s.metrics.downloads_done.inc();
        let _ = conn.send_msg(&done_state(task), 0);
        conn.close_after_flush(CloseReason::Server("offline download complete"));
    }

    /// The downloader's connection closed.
    pub(super) fn end(self, s: &Shared, task: &Arc<Task>, conn: &Conn) {
        let was_active = task.leave_download(conn.id(), self.completed);
        s.metrics.transfer_ended(was_active);
        if !self.completed {
            s.metrics.transfers_failed.inc();
        }
        s.tasks.remove_if_idle(task);
    }
}
