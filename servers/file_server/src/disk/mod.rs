//! Offline files on disk, in the original file_server's layout (STORAGE.md 7), so that an
//! original file_server can serve ours and we serve theirs.
//!
//! ```text
//! <data_dir>/<first 2 chars of task id>/<task id>     header (960 bytes) + file bytes
//!
//! header, fixed-width fields, NUL-padded ASCII:
//!   offset   0  task_id       128   the task id text
//!   offset 128  from_user_id   64   decimal
//!   offset 192  to_user_id     64   decimal
//!   offset 256  create_time   128   decimal unix seconds
//!   offset 384  file_name     512   the original writes it empty; we write the real name
//!   offset 896  file_size      64   decimal
//! ```
//!
//! A file is complete when its length minus 960 equals the header's size. Ours are written
//! as `<task id>.part` and renamed when the last block is on disk, so a partial upload never
//! looks complete to anyone; `<task id>.done` marks a file its receiver has downloaded in
//! full (the once-per-role rule survives a restart). An original file_server ignores both.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

mod header;

pub use header::{HEADER_LEN, OfflineHeader};

/// Offline transfers move in blocks of this size; the last one is the remainder
/// (FLOWS.md 14.3).
pub const BLOCK_SIZE: u32 = 32_768;

/// Longest task id accepted (the task_id field holds 127 characters and a NUL).
pub const MAX_TASK_ID_LEN: usize = 127;

/// Suffix of a file being uploaded.
const PART_SUFFIX: &str = ".part";
/// Suffix of the marker of a completed download.
const DONE_SUFFIX: &str = ".done";

/// Why a header or an offline file is not usable.
#[derive(Debug, Error)]
pub enum DiskError {
    /// The task id cannot name a file (path characters, too short or too long).
    #[error("task id is not 2..={MAX_TASK_ID_LEN} characters of [A-Za-z0-9-]")]
    BadTaskId,
    /// A numeric header field does not hold a number.
    #[error("header field {field} holds {value:?}, not a decimal number")]
    BadNumber {
        /// Field name.
        field: &'static str,
        /// What it holds.
        value: String,
    },
    /// The header names another task than the file's name.
    #[error("header task id {found:?} does not match the file name")]
    WrongTask {
        /// Task id in the header.
        found: String,
    },
    /// Length minus header is not the header's size (an interrupted upload).
    #[error("file holds {on_disk} bytes after the header but the header says {expected}")]
    Incomplete {
        /// Bytes after the header.
        on_disk: u64,
        /// Header's size.
        expected: u32,
    },
    /// File system error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// True when `id` can name an offline file: 2..=127 characters of `[A-Za-z0-9-]` (UUID text
/// is; nothing that walks the file system is).
pub fn valid_task_id(id: &str) -> bool {
    (2..=MAX_TASK_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Size of block `index` of a file of `size` bytes (0 past the end).
pub fn block_len(size: u32, offset: u32) -> u32 {
    size.saturating_sub(offset).min(BLOCK_SIZE)
}

/// Unix time in seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The offline file directory.
#[derive(Debug, Clone)]
pub struct OfflineStore {
    root: PathBuf,
}

/// An offline file past its retention, found by [`OfflineStore::scan`].
#[derive(Debug, Clone)]
pub struct Expired {
    /// The data file.
    pub path: PathBuf,
    /// Its header, when readable (needed to delete the db_proxy record).
    pub header: Option<OfflineHeader>,
}

/// What a scan of the directory found.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Complete or original offline files on disk (expired ones included).
    pub files: usize,
    /// Files past the retention.
    pub expired: Vec<Expired>,
    /// Leftovers removed at once: `.part` files of no live upload older than the task
    /// timeout, `.done` markers without their file.
    pub leftovers_removed: usize,
}

impl OfflineStore {
    /// The store rooted at `root` (created by [`OfflineStore::create_root`]).
    pub fn new(root: PathBuf) -> Self {
        OfflineStore { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the root directory if needed (blocking; called at start-up).
    pub fn create_root(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)
    }

    fn dir_of(&self, task_id: &str) -> Result<PathBuf, DiskError> {
        if !valid_task_id(task_id) {
            return Err(DiskError::BadTaskId);
        }
        Ok(self.root.join(&task_id[..2]))
    }

    /// Path of the complete file of `task_id`.
    pub fn path(&self, task_id: &str) -> Result<PathBuf, DiskError> {
        Ok(self.dir_of(task_id)?.join(task_id))
    }

    /// Path of the file being uploaded.
    pub fn part_path(&self, task_id: &str) -> Result<PathBuf, DiskError> {
        Ok(self
            .dir_of(task_id)?
            .join(format!("{task_id}{PART_SUFFIX}")))
    }

    /// Path of the downloaded-in-full marker.
    pub fn done_path(&self, task_id: &str) -> Result<PathBuf, DiskError> {
        Ok(self
            .dir_of(task_id)?
            .join(format!("{task_id}{DONE_SUFFIX}")))
    }

    /// Creates `<task>.part` with its header and returns it open for writing (blocking:
    /// call from a blocking thread).
    pub fn create_part(
        &self,
        header: &OfflineHeader,
    ) -> Result<(PathBuf, std::fs::File), DiskError> {
        let dir = self.dir_of(&header.task_id)?;
        std::fs::create_dir_all(&dir)?;
        let path = self.part_path(&header.task_id)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(&header.encode())?;
        Ok((path, f))
    }

    /// Makes an uploaded file visible: data synced, renamed to its final name, directory
    /// synced (blocking).
    pub fn commit_part(&self, task_id: &str, file: std::fs::File) -> Result<(), DiskError> {
        file.sync_all()?;
        drop(file);
        let part = self.part_path(task_id)?;
        let done = self.path(task_id)?;
        std::fs::rename(&part, &done)?;
        if let Some(dir) = done.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Opens a complete offline file and reads its header (blocking). The file is complete
    /// when its length minus the header equals the header's size, and its header names
    /// the same task.
    pub fn open(&self, task_id: &str) -> Result<(OfflineHeader, std::fs::File), DiskError> {
        let path = self.path(task_id)?;
        let mut f = std::fs::File::open(&path)?;
        let mut buf = [0u8; HEADER_LEN];
        f.read_exact(&mut buf)?;
        let header = OfflineHeader::decode(&buf)?;
        if header.task_id != task_id {
            return Err(DiskError::WrongTask {
                found: header.task_id,
            });
        }
        let on_disk = f.metadata()?.len().saturating_sub(HEADER_LEN as u64);
        if on_disk != u64::from(header.file_size) {
            return Err(DiskError::Incomplete {
                on_disk,
                expected: header.file_size,
            });
        }
        f.seek(SeekFrom::Start(HEADER_LEN as u64))?;
        Ok((header, f))
    }

    /// True when the receiver has downloaded the file in full (blocking).
    pub fn is_downloaded(&self, task_id: &str) -> bool {
        self.done_path(task_id).is_ok_and(|p| p.exists())
    }

    /// Marks the file as downloaded in full (blocking).
    pub fn mark_downloaded(&self, task_id: &str) -> Result<(), DiskError> {
        let p = self.done_path(task_id)?;
        std::fs::File::create(&p)?.sync_all()?;
        Ok(())
    }

    /// Deletes a data file and its marker (blocking); a missing file is not an error.
    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut marker = path.as_os_str().to_owned();
        marker.push(DONE_SUFFIX);
        for p in [path.to_path_buf(), PathBuf::from(marker)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Walks the directory (blocking): counts the offline files, lists those created more
    /// than `retention` ago, and removes leftovers (`.part` files older than `part_age` whose
    /// task `is_live` does not claim, `.done` markers without their file).
    pub fn scan(
        &self,
        retention: Option<Duration>,
        part_age: Duration,
        is_live: &dyn Fn(&str) -> bool,
    ) -> std::io::Result<ScanReport> {
        let mut report = ScanReport::default();
        let now = SystemTime::now();
        let now_secs = now_unix();
        let top = match std::fs::read_dir(&self.root) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(e),
        };
        for sub in top.flatten() {
            if !sub.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(sub.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if let Some(task) = name.strip_suffix(PART_SUFFIX) {
                    if age > part_age && !is_live(task) && std::fs::remove_file(&path).is_ok() {
                        report.leftovers_removed += 1;
                    }
                    continue;
                }
                if let Some(task) = name.strip_suffix(DONE_SUFFIX) {
                    if !path.with_file_name(task).exists() && std::fs::remove_file(&path).is_ok() {
                        report.leftovers_removed += 1;
                    }
                    continue;
                }
                if !valid_task_id(&name) {
                    continue;
                }
                report.files += 1;
                let Some(retention) = retention else { continue };
                let header = read_header(&path).ok();
                // The header's time is the upload's; the file's time is a fallback for a
                // header that does not parse.
                let age_secs = match &header {
                    Some(h) => now_secs.saturating_sub(h.create_time),
                    None => age.as_secs(),
                };
                if Duration::from_secs(age_secs) >= retention {
                    report.expired.push(Expired { path, header });
                }
            }
        }
        Ok(report)
    }
}

fn read_header(path: &Path) -> Result<OfflineHeader, DiskError> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = [0u8; HEADER_LEN];
    f.read_exact(&mut buf)?;
    OfflineHeader::decode(&buf)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn header() -> OfflineHeader {
        OfflineHeader {
            task_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            from: 7,
            to: 4_000_000_000,
            create_time: 1_700_000_000,
            file_name: "report.pdf".into(),
            file_size: 70_000,
        }
    }

    #[test]
    fn task_ids_cannot_walk_the_file_system() {
        assert!(valid_task_id("0f8fad5b-d9cb-469f-a165-70867728950e"));
        for bad in ["", "a", "../etc", "ab/cd", "a.b", &"a".repeat(128), "ab\0"] {
            assert!(!valid_task_id(bad), "{bad:?}");
        }
        let s = OfflineStore::new(PathBuf::from("/data"));
        assert_eq!(s.path("abcdef").unwrap(), PathBuf::from("/data/ab/abcdef"));
        assert!(s.path("../../x").is_err());
    }

    #[test]
    fn blocks() {
        assert_eq!(block_len(70_000, 0), 32_768);
        assert_eq!(block_len(70_000, 65_536), 4_464);
        assert_eq!(block_len(70_000, 70_000), 0);
        assert_eq!(block_len(0, 0), 0);
    }

    #[test]
    fn write_commit_open_scan() {
        let dir = tempfile::tempdir().unwrap();
        let store = OfflineStore::new(dir.path().join("offline_file"));
        store.create_root().unwrap();
        let h = OfflineHeader {
            file_size: 5,
            ..header()
        };
        let (_, mut f) = store.create_part(&h).unwrap();
        f.write_all(b"hello").unwrap();
        // Not visible before the commit.
        assert!(store.open(&h.task_id).is_err());
        store.commit_part(&h.task_id, f).unwrap();
        let (back, mut f) = store.open(&h.task_id).unwrap();
        assert_eq!(back, h);
        let mut data = String::new();
        f.read_to_string(&mut data).unwrap();
        assert_eq!(data, "hello");

        // Created long ago: expired under a one-day retention, not without retention.
        let day = Duration::from_secs(86_400);
        let r = store.scan(Some(day), day, &|_| false).unwrap();
        assert_eq!(r.files, 1);
        assert_eq!(r.expired.len(), 1);
        assert_eq!(r.expired[0].header.as_ref().unwrap().to, h.to);
        let r = store.scan(None, day, &|_| false).unwrap();
        assert!(r.expired.is_empty());

        store.mark_downloaded(&h.task_id).unwrap();
        assert!(store.is_downloaded(&h.task_id));
        store.remove(&store.path(&h.task_id).unwrap()).unwrap();
        assert!(!store.is_downloaded(&h.task_id));
        assert!(store.open(&h.task_id).is_err());
    }
}
