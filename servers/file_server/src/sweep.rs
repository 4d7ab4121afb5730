//! Expiry (fixing WEAKNESSES 49): unfinished tasks without activity for `task_timeout_secs`
//! end and their connections are closed; offline files older than
//! `offline_retention_days` are deleted, their IMTransmitFile records first (through
//! db_proxy), so that a receiver is never offered a file that is gone for good.

use std::sync::Arc;
use std::time::{Duration, Instant};

use im_common::conn::CloseReason;

use crate::state::Shared;
use crate::task::Phase;

/// Longest pause between two looks at the task table: a task expires at most this late.
const MAX_EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Shortest pause (very short timeouts in tests).
const MIN_EXPIRY_TICK: Duration = Duration::from_millis(10);

/// How long the first disk sweep waits for the db_proxy link before deleting (a file whose
/// record cannot be deleted is kept until the next sweep).
const DB_WAIT: Duration = Duration::from_secs(2);

/// Ends the tasks idle for the timeout until shutdown.
pub async fn run_expiry(s: Arc<Shared>) {
    let tick = (s.task_timeout / 4).clamp(MIN_EXPIRY_TICK, MAX_EXPIRY_TICK);
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            () = s.shutdown.cancelled() => return,
        }
        expire_tasks(&s);
    }
}

/// One pass over the task table.
pub fn expire_tasks(s: &Shared) -> usize {
    let now = Instant::now();
    let mut n = 0;
    for task in s.tasks.all() {
        if !task.idle_for(now, s.task_timeout) {
            continue;
        }
        if task.phase() == Phase::Stored {
            // A download that stalled: its connection goes, its handler cleans up; the file
            // stays for another attempt.
            for c in task.conns() {
                c.close(CloseReason::Server("file transfer idle"));
            }
            continue;
        }
        if s.end_task(&task, None) {
            n += 1;
            s.metrics.tasks_expired.inc();
            tracing::info!(
                task = Shared::short_id(&task.id),
                mode = task.mode.as_str(),
                from = task.from,
                to = task.to,
                "task expired"
            );
        }
    }
    n
}

/// Scans the data directory every `interval` until shutdown (the first scan at once, which
/// also counts the files an earlier run or an original file_server left).
pub async fn run_disk_sweep(s: Arc<Shared>, interval: Duration) {
    let mut first = true;
    loop {
        if first && let Some(db) = &s.db {
            db.wait_connected(DB_WAIT).await;
        }
        first = false;
        sweep_disk(&s).await;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = s.shutdown.cancelled() => return,
        }
    }
}

/// One scan: counts the files, removes leftovers, deletes the expired files.
pub async fn sweep_disk(s: &Arc<Shared>) {
    let store = s.store.clone();
    let retention = s.retention;
    let part_age = s.task_timeout;
    let shared = s.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        store.scan(retention, part_age, &|id| shared.tasks.contains(id))
    })
    .await;
    let report = match scanned {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(dir = %s.store.root().display(), error = %e, "offline directory scan failed");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "offline directory scan did not finish");
            return;
        }
    };
    let mut files = report.files;
    for expired in report.expired {
        match (&s.db, &expired.header) {
            (Some(db), Some(h)) => {
                if !db.delete_record(h.from, h.to, &h.task_id).await {
                    tracing::info!(
                        task = Shared::short_id(&h.task_id),
                        "db_proxy unreachable; expired offline file kept until the next sweep"
                    );
                    continue;
                }
            }
            (_, None) => {
                tracing::info!(path = %expired.path.display(),
                    "expired offline file without a readable header: its record (if any) stays");
            }
            (None, Some(_)) => {}
        }
        let store = s.store.clone();
        let path = expired.path.clone();
        match tokio::task::spawn_blocking(move || store.remove(&path)).await {
            Ok(Ok(())) => {
                files = files.saturating_sub(1);
                s.metrics.offline_files_deleted.inc();
                tracing::debug!(path = %expired.path.display(), "expired offline file deleted");
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %expired.path.display(), error = %e, "expired offline file not deleted");
            }
            Err(e) => tracing::warn!(error = %e, "offline file deletion did not finish"),
        }
    }
    if report.leftovers_removed > 0 {
        tracing::info!(
            count = report.leftovers_removed,
            "interrupted uploads and stale markers removed"
        );
    }
    s.metrics.offline_files.set(files as i64);
}
