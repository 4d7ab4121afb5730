//! Where the server binaries are: next to the test executable's profile directory, as
//! `cargo test --workspace` (or `cargo build --workspace --bins`) leaves them.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Overrides the directory the binaries are taken from (e.g. a release build).
pub const BIN_DIR_ENV: &str = "IM_E2E_BIN_DIR";

/// The directory holding the workspace's binaries: `$IM_E2E_BIN_DIR`, or
/// `target/<profile>` when the running executable is `target/<profile>/deps/<test>-<hash>`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let parent = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    let dir = if parent.ends_with("deps") {
        parent.parent().unwrap_or(parent)
    } else {
        parent
    };
    Ok(dir.to_path_buf())
}

/// The `target` directory (where the fault summary is written): the parent of [`bin_dir`].
pub fn target_dir() -> Option<PathBuf> {
    bin_dir().ok()?.parent().map(PathBuf::from)
}

/// The path of binary `name`, which must exist.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "server binary {} is missing: run `cargo build --workspace --bins` first (`cargo \
             test --workspace` builds every binary; `cargo test -p im-e2e` alone does not), or \
             point {BIN_DIR_ENV} at a directory holding the binaries",
            path.display()
        );
    }
    Ok(path)
}
