//! Tracing set-up for binaries: text or JSON lines on stderr, filter from config or RUST_LOG.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Call once, from `main`. Errors (a bad filter, or a
/// subscriber already installed) are returned, not panicked.
pub fn init(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(f)?,
        _ => EnvFilter::try_new(&log.level).map_err(|e| {
            anyhow::anyhow!(
                "config key `log.level`: invalid filter {:?}: {e}",
                log.level
            )
        })?,
    };
    // Colours only on a terminal: log files and journald should get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let result = match log.format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
