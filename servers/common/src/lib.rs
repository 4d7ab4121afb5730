//! im-common: the kit every server of the suite is built from.
//!
//! * [`serve`]: the accept loop (connection limit, a task per connection, backoff on accept
//!   errors) and [`conn::Conn`], a connection with a bounded outbound queue, write
//!   coalescing, heartbeats and idle timeouts per link kind.
//! * [`upstream`]: reconnecting links to other servers (Decisions 3 backoff, failover over a
//!   list of peers, registration on every connect).
//! * [`config`]: TOML config with `IM_<SERVER>_*` environment overrides and errors that name the
//!   key and the valid values; shared config sections.
//! * [`telemetry`]: tracing set-up (text or JSON).
//! * [`metrics`] and [`http`]: per-server metrics, Prometheus `/metrics`, `/healthz`, `/readyz`.
//! * [`http1`]: the accept loop of the HTTP servers (msfs, http_msg_server) over hyper.
//! * [`admin`]: the admin port (token first, then `IM.Admin` commands).
//! * [`shutdown`]: signal handling and the shutdown token.
//! * [`tls`]: optional TLS listeners and `tls://` upstream links (`[tls]`, `[tls_client]`).
//!
//! Servers expose `run(config, listeners, shutdown)`; binaries stay thin.

pub mod admin;
pub mod backoff;
pub mod config;
pub mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod http1;
pub mod metrics;
pub mod net;
pub mod process;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use conn::{CloseReason, Conn, ConnRegistry, SendError};
pub use serve::{Handler, ServeOptions, serve, serve_plain_and_tls, serve_tls};
pub use shutdown::{Shutdown, shutdown_on_signals};
pub use tokio_util::sync::CancellationToken;
pub use upstream::{Upstream, UpstreamHandler, UpstreamOptions};

/// Version string reported by every server (Cargo package version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
