//! Where files live on disk (STORAGE.md 6) and the file counter that spreads them over
//! directories.
//!
//! ```text
//! <data_dir>/msfs.state                       file_cnt and bytes_stored (TOML), replaced atomically
//! <data_dir>/<first>/<second>/<usec>_<n>[_<W>x<H>][.<ext>]
//!     first  = (file_cnt / files_per_dir) / 255            three digits, as the original
//!     second = (file_cnt % (files_per_dir * 255)) / files_per_dir
//! URL path = g0/<first>/<second>/<name>
//! ```
//!
//! Differences from the original, on purpose: leaf directories are created when first used
//! instead of all 65 536 at start-up; the counter is kept in `msfs.state` (written atomically
//! in the background after every upload, and at shutdown) instead of being written back into
//! the config file at exit (WEAKNESSES 57); `<n>` is the counter value rather than a thread id,
//! so two uploads in the same microsecond still get different names. A file is written under
//! a hidden temporary name, synced, then linked to its final name, which never replaces an
//! existing file: a path handed out always names complete bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Notify;

/// The state file's name inside the data directory.
pub const STATE_FILE: &str = "msfs.state";

/// The first URL segment of every path handed out (ignored on download, as the original).
pub const GROUP: &str = "g0";

/// Longest file name accepted from an upload (the original's limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Longest extension accepted (the original's limit).
pub const MAX_EXT_BYTES: usize = 15;

/// Why an upload's file name is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the file name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_BYTES`].
    #[error("the file name has {0} bytes, more than {MAX_NAME_BYTES}")]
    TooLong(usize),
    /// The extension is longer than [`MAX_EXT_BYTES`] or not alphanumeric.
    #[error("the file extension {0:?} is not 1 to {MAX_EXT_BYTES} letters or digits")]
    BadExtension(String),
}

/// What a stored name keeps from the uploaded one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Suffix {
    /// `<W>x<H>` when the name ended `_<W>x<H>.<ext>` (clients put image sizes there).
    pub size: Option<String>,
    /// The extension, as given.
    pub ext: Option<String>,
}

impl Suffix {
    /// Reads the suffix from an uploaded file name (its last path component).
    pub fn from_file_name(name: &str) -> Result<Suffix, NameError> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        if base.is_empty() {
            return Err(NameError::Empty);
        }
        if base.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong(base.len()));
        }
        let (stem, ext) = match base.rsplit_once('.') {
            Some((stem, ext)) if !ext.is_empty() => (stem, Some(ext)),
            Some((stem, _)) => (stem, None),
            None => (base, None),
        };
        if let Some(ext) = ext
            && (ext.len() > MAX_EXT_BYTES || !ext.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(NameError::BadExtension(ext.to_owned()));
        }
        Ok(Suffix {
            size: size_hint(stem).map(str::to_owned),
            ext: ext.map(str::to_owned),
        })
    }
}

/// `<W>x<H>` at the end of `stem` after an underscore, W and H of 1 to 4 digits.
fn size_hint(stem: &str) -> Option<&str> {
    let (_, hint) = stem.rsplit_once('_')?;
    let (w, h) = hint.split_once('x')?;
    let digits = |s: &str| (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    (digits(w) && digits(h)).then_some(hint)
}

/// Why a download path names no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathRefusal {
    /// Not of the shape msfs hands out: nothing is stored there.
    #[error("no file is stored at this path")]
    NotFound,
    /// `..`, `.`, hidden names, backslashes or other characters msfs never hands out: a
    /// traversal attempt or garbage.
    #[error("the path is malformed")]
    Malformed,
}

/// A place reserved for one upload.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// The path handed out: `g0/<first>/<second>/<name>`.
    pub url_path: String,
    /// Its leaf directory.
    pub dir: PathBuf,
    /// The final file.
    pub file: PathBuf,
    /// The hidden temporary file written first.
    pub temp: PathBuf,
}

/// The persistent counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Counters {
    /// Files allocated so far (the original `FileCnt`); drives the directory choice.
    pub file_cnt: u64,
    /// Bytes of the files stored so far.
    pub bytes_stored: u64,
}

/// Why the state file could not be used.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The file is not ours or was damaged.
    #[error(
        "{path} is not a valid msfs state file ({message}); fix or remove it (removing restarts \
         the directory counter at 0, which is safe: names never collide)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
}

/// The data directory and its counters.
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    files_per_dir: u64,
    file_cnt: AtomicU64,
    bytes_stored: AtomicU64,
    files_stored: AtomicU64,
    dirty: Notify,
}

impl FileStore {
    /// Opens (creating if needed) `root` and reads its state file.
    pub fn open(root: &Path, files_per_dir: u64) -> Result<FileStore, StateError> {
        std::fs::create_dir_all(root).map_err(|source| StateError::Io {
            action: "cannot create the data directory",
            path: root.to_path_buf(),
            source,
        })?;
        let path = root.join(STATE_FILE);
        let counters = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Counters>(&text).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                message: e.message().to_owned(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %path.display(), "no state file yet; the file counter starts at 0");
                Counters::default()
            }
            Err(source) => {
                return Err(StateError::Io {
                    action: "cannot read",
                    path,
                    source,
                });
            }
        };
        Ok(FileStore {
            root: root.to_path_buf(),
            files_per_dir: files_per_dir.max(1),
            file_cnt: AtomicU64::new(counters.file_cnt),
            bytes_stored: AtomicU64::new(counters.bytes_stored),
            files_stored: AtomicU64::new(0),
            dirty: Notify::new(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            file_cnt: self.file_cnt.load(Ordering::Relaxed),
            bytes_stored: self.bytes_stored.load(Ordering::Relaxed),
        }
    }

    /// Files stored by this process since it started.
    pub fn files_stored_since_start(&self) -> u64 {
        self.files_stored.load(Ordering::Relaxed)
    }

    /// Reserves a name for a new file (the counter moves even if the upload fails later).
    pub fn allocate(&self, suffix: &Suffix, usec: u64) -> Allocation {
        let n = self.file_cnt.fetch_add(1, Ordering::Relaxed);
        self.dirty.notify_one();
        let fpd = self.files_per_dir;
        let first = (n / fpd) / 255;
        let second = (n % fpd.saturating_mul(255)) / fpd;
        let mut name = format!("{usec}_{n}");
        if let Some(size) = &suffix.size {
            name.push('_');
            name.push_str(size);
        }
        if let Some(ext) = &suffix.ext {
            name.push('.');
            name.push_str(ext);
        }
        let first = format!("{first:03}");
        let second = format!("{second:03}");
        let dir = self.root.join(&first).join(&second);
        Allocation {
            url_path: format!("{GROUP}/{first}/{second}/{name}"),
            file: dir.join(&name),
            temp: dir.join(format!(".{name}.part")),
            dir,
        }
    }

    /// Records a stored file of `bytes` bytes.
    pub fn stored(&self, bytes: u64) {
        self.bytes_stored.fetch_add(bytes, Ordering::Relaxed);
        self.files_stored.fetch_add(1, Ordering::Relaxed);
        self.dirty.notify_one();
    }

    /// Resolves a request path (`/<group>/<first>/<second>/<name>`) to a file under the data
    /// directory. Only the shape msfs hands out is accepted, so nothing else under the
    /// directory (the state file, temporary files) and nothing outside it can be named.
    pub fn resolve(&self, request_path: &str) -> Result<PathBuf, PathRefusal> {
        let rest = request_path
            .strip_prefix('/')
            .ok_or(PathRefusal::Malformed)?;
        let segments: Vec<&str> = rest.split('/').collect();
        for s in &segments {
            let bad = s.starts_with('.')
                || s.bytes()
                    .any(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'));
            if bad {
                return Err(PathRefusal::Malformed);
            }
        }
        // The first segment (g0) is ignored, as the original does.
        let [_group, first, second, name] = segments.as_slice() else {
            return Err(PathRefusal::NotFound);
        };
        let dir_ok = |d: &str| (1..=10).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit());
        if !dir_ok(first) || !dir_ok(second) || name.is_empty() {
            return Err(PathRefusal::NotFound);
        }
        Ok(self.root.join(first).join(second).join(name))
    }

    /// Waits until the counters changed since the last call.
    pub async fn changed(&self) {
        self.dirty.notified().await;
    }

    /// Writes the counters to the state file atomically (temporary file, sync, rename).
    pub fn save(&self) -> Result<(), StateError> {
        let counters = self.counters();
        let text = format!(
            "# Written by msfs; do not edit while it runs.\n{}",
            toml::to_string(&counters).unwrap_or_default()
        );
        let path = self.root.join(STATE_FILE);
        let temp = self.root.join(format!(".{STATE_FILE}.tmp"));
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&temp).map_err(io("cannot create", &temp))?;
            f.write_all(text.as_bytes())
                .map_err(io("cannot write", &temp))?;
            f.sync_all().map_err(io("cannot sync", &temp))?;
        }
        std::fs::rename(&temp, &path).map_err(io("cannot rename onto", &path))?;
        // The rename itself must survive a crash too.
        if let Ok(d) = std::fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// The content type of a stored file: the original's `image/<ext>` for jpg, jpeg, png and gif
/// (any case; clients rely on it to show images), `application/octet-stream` for the rest (the
/// original sent `multipart/form-data`, which describes no response body; nothing reads it, and
/// with `nosniff` a browser then downloads an uploaded page or script instead of running it).
pub fn content_type(path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "gif" => format!("image/{ext}"),
        _ => "application/octet-stream".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_keep_size_hints_and_extensions() {
        let s = |n: &str| Suffix::from_file_name(n);
        assert_eq!(
            s("photo_640x480.jpg"),
            Ok(Suffix {
                size: Some("640x480".into()),
                ext: Some("jpg".into())
            })
        );
        assert_eq!(
            s("C:\\Users\\x\\a_1x1.PNG"),
            Ok(Suffix {
                size: Some("1x1".into()),
                ext: Some("PNG".into())
            })
        );
        assert_eq!(
            s("a_12345x1.jpg").map(|x| x.size),
            Ok(None),
            "5 digits are not a size"
        );
        assert_eq!(
            s("noext"),
            Ok(Suffix {
                size: None,
                ext: None
            })
        );
        assert_eq!(s("1.audio").map(|x| x.ext), Ok(Some("audio".into())));
        assert_eq!(s(""), Err(NameError::Empty));
        assert_eq!(s("dir/"), Err(NameError::Empty));
        assert!(s("x.jp/g").is_ok(), "the last component counts");
        assert!(matches!(s("x.a-b"), Err(NameError::BadExtension(_))));
        assert!(matches!(
            s("x.abcdefghijklmnop"),
            Err(NameError::BadExtension(_))
        ));
        assert!(matches!(s(&"a".repeat(256)), Err(NameError::TooLong(256))));
    }

    #[test]
    fn directories_follow_the_original_formula() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::open(dir.path(), 2).unwrap_or_else(|e| panic!("{e}"));
        let suffix = Suffix {
            size: None,
            ext: Some("jpg".into()),
        };
        let paths: Vec<String> = (0..5)
            .map(|_| store.allocate(&suffix, 7).url_path)
            .collect();
        assert_eq!(
            paths,
            [
                "g0/000/000/7_0.jpg",
                "g0/000/000/7_1.jpg",
                "g0/000/001/7_2.jpg",
                "g0/000/001/7_3.jpg",
                "g0/000/002/7_4.jpg",
            ]
        );
        // After 255 directories of the second level, the first level moves on.
        store.file_cnt.store(2 * 255, Ordering::Relaxed);
        assert_eq!(store.allocate(&suffix, 7).url_path, "g0/001/000/7_510.jpg");
    }

    #[test]
    fn only_handed_out_shapes_resolve() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::open(dir.path(), 30_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.resolve("/g0/000/001/1_2.jpg"),
            Ok(dir.path().join("000/001/1_2.jpg"))
        );
        for bad in [
            "/g0/../../etc/passwd",
            "/g0/000/000/..",
            "/g0/000/./x",
            "/g0/000/000/.x.part",
            "/g0/000/000/a\\b",
            "/g0/000/000/a%2e",
            "g0/000/000/x",
        ] {
            assert_eq!(store.resolve(bad), Err(PathRefusal::Malformed), "{bad}");
        }
        for missing in [
            "/",
            "/g0",
            "/g0/msfs.state",
            "/g0/000/x",
            "/g0/a/000/x",
            "/g0/000/000/",
        ] {
            assert_eq!(
                store.resolve(missing),
                Err(PathRefusal::NotFound),
                "{missing}"
            );
        }
    }

    #[test]
    fn counters_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::open(dir.path(), 30_000).unwrap_or_else(|e| panic!("{e}"));
        store.allocate(&Suffix::default(), 1);
        store.stored(10);
        store.save().unwrap_or_else(|e| panic!("{e}"));
        let again = FileStore::open(dir.path(), 30_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.counters(),
            Counters {
                file_cnt: 1,
                bytes_stored: 10
            }
        );
        std::fs::write(dir.path().join(STATE_FILE), "file_cnt = \"x\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = FileStore::open(dir.path(), 30_000).expect_err("corrupt state refused");
        assert!(e.to_string().contains(STATE_FILE), "{e}");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a/b.JPG")), "image/jpg");
        assert_eq!(content_type(Path::new("b.gif")), "image/gif");
        assert_eq!(
            content_type(Path::new("b.html")),
            "application/octet-stream"
        );
        assert_eq!(content_type(Path::new("b")), "application/octet-stream");
    }
}
