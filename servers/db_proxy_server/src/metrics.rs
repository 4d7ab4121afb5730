//! db_proxy's metrics: requests, errors and latency per command, storage read and write
//! latency, and counters for what was dropped. Exposed on `/metrics` and in the admin stats.

use std::collections::HashMap;
use std::time::Duration;

use im_common::metrics::{Counter, Gauge, Histogram, Registry};
use im_proto::admin::{CommandStat, Latency};
use im_proto::cid;
use im_proto::command::command_name;

/// Commands db_proxy answers or applies.
pub const HANDLED: &[u16] = &[
    cid::CID_OTHER_VALIDATE_REQ,
    cid::CID_LOGIN_REQ_DEVICETOKEN,
    cid::CID_LOGIN_REQ_PUSH_SHIELD,
    cid::CID_LOGIN_REQ_QUERY_PUSH_SHIELD,
    cid::CID_BUDDY_LIST_RECENT_CONTACT_SESSION_REQUEST,
    cid::CID_BUDDY_LIST_USER_INFO_REQUEST,
    cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ,
    cid::CID_BUDDY_LIST_ALL_USER_REQUEST,
    cid::CID_BUDDY_LIST_DEPARTMENT_REQUEST,
    cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST,
    cid::CID_MSG_DATA,
    cid::CID_MSG_READ_ACK,
    cid::CID_MSG_UNREAD_CNT_REQUEST,
    cid::CID_MSG_LIST_REQUEST,
    cid::CID_MSG_GET_LATEST_MSG_ID_REQ,
    cid::CID_MSG_GET_BY_MSG_ID_REQ,
    cid::CID_GROUP_NORMAL_LIST_REQUEST,
    cid::CID_GROUP_INFO_REQUEST,
    cid::CID_GROUP_CREATE_REQUEST,
    cid::CID_GROUP_CHANGE_MEMBER_REQUEST,
    cid::CID_GROUP_SHIELD_GROUP_REQUEST,
    cid::CID_FILE_HAS_OFFLINE_REQ,
    cid::CID_FILE_ADD_OFFLINE_REQ,
    cid::CID_FILE_DEL_OFFLINE_REQ,
    cid::CID_OTHER_GET_DEVICE_TOKEN_REQ,
    cid::CID_OTHER_GET_SHIELD_REQ,
    cid::CID_ADMIN_DISCOVERY_LIST_REQ,
    cid::CID_ADMIN_REMOVE_TOKEN_REQ,
];

/// Commands that write (their latency counts as storage write latency).
pub fn is_write(command_id: u16) -> bool {
    matches!(
        command_id,
        cid::CID_LOGIN_REQ_DEVICETOKEN
            | cid::CID_LOGIN_REQ_PUSH_SHIELD
            | cid::CID_BUDDY_LIST_REMOVE_SESSION_REQ
            | cid::CID_BUDDY_LIST_CHANGE_SIGN_INFO_REQUEST
            | cid::CID_MSG_DATA
            | cid::CID_MSG_READ_ACK
            | cid::CID_GROUP_CREATE_REQUEST
            | cid::CID_GROUP_CHANGE_MEMBER_REQUEST
            | cid::CID_GROUP_SHIELD_GROUP_REQUEST
            | cid::CID_FILE_ADD_OFFLINE_REQ
            | cid::CID_FILE_DEL_OFFLINE_REQ
            | cid::CID_ADMIN_REMOVE_TOKEN_REQ
    )
}

/// Counters of one command.
#[derive(Debug, Clone)]
pub struct CommandMetrics {
    /// Requests received.
    pub requests: Counter,
    /// Requests that failed (storage error, msfs error, refused store).
    pub errors: Counter,
    /// Arrival to reply (or to completion for commands without a reply).
    pub latency: Histogram,
}

/// Everything db_proxy counts.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry rendered on `/metrics`.
    pub registry: Registry,
    /// Per command; built once, read without locks.
    commands: HashMap<u16, CommandMetrics>,
    /// Latency of write commands.
    pub write_latency: Histogram,
    /// Latency of read commands.
    pub read_latency: Histogram,
    /// Writes completed.
    pub writes: Counter,
    /// Bodies that did not decode (incl. missing required fields); dropped.
    pub decode_errors: Counter,
    /// PDUs with a command db_proxy does not handle; ignored.
    pub unknown_commands: Counter,
    /// Requests refused after the stop-receive announcement.
    pub refused_stopping: Counter,
    /// Messages stored.
    pub messages_stored: Counter,
    /// Store requests answered with the id of an earlier identical request.
    pub duplicates: Counter,
    /// Successful logins.
    pub logins: Counter,
    /// Refused logins (wrong password, unknown user, throttled).
    pub login_failures: Counter,
    /// Group-session sync runs that failed.
    pub sync_errors: Counter,
    /// Requests whose id list was longer than one answer covers (answered in part, logged).
    pub lists_cut: Counter,
    /// Requests accepted and not finished, over all connections.
    pub in_flight: Gauge,
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Self {
        let registry = Registry::new("im_db_proxy");
        let mut commands = HashMap::new();
        for &id in HANDLED {
            let name = command_name(id).unwrap_or("unknown");
            let labels = [("command", name)];
            commands.insert(
                id,
                CommandMetrics {
                    requests: registry.counter_with(
                        "requests_total",
                        "Requests received, by command.",
                        &labels,
                    ),
                    errors: registry.counter_with(
                        "errors_total",
                        "Requests that failed, by command.",
                        &labels,
                    ),
                    latency: registry.histogram_with(
                        "request_seconds",
                        "Time from a request's arrival to its reply, by command.",
                        &labels,
                    ),
                },
            );
        }
        Metrics {
            commands,
            write_latency: registry
                .histogram("storage_write_seconds", "Latency of write requests."),
            read_latency: registry.histogram("storage_read_seconds", "Latency of read requests."),
            writes: registry.counter("storage_writes_total", "Write requests completed."),
            decode_errors: registry.counter(
                "decode_errors_total",
                "Request bodies that did not decode (dropped, link kept).",
            ),
            unknown_commands: registry.counter(
                "unknown_commands_total",
                "PDUs with a command db_proxy does not handle (ignored).",
            ),
            refused_stopping: registry.counter(
                "refused_stopping_total",
                "Requests that arrived after the stop-receive announcement (dropped).",
            ),
            messages_stored: registry.counter("messages_stored_total", "Messages stored."),
            duplicates: registry.counter(
                "duplicate_stores_total",
                "Retried store requests answered with the first id (nothing stored).",
            ),
            logins: registry.counter("logins_total", "Successful password checks."),
            login_failures: registry.counter(
                "login_failures_total",
                "Refused logins (wrong password, unknown user, throttled).",
            ),
            lists_cut: registry.counter(
                "request_lists_cut_total",
                "Requests whose id list was longer than one answer covers (answered in part).",
            ),
            sync_errors: registry.counter(
                "group_session_sync_errors_total",
                "Failed runs of the group-session sync.",
            ),
            in_flight: registry.gauge("in_flight", "Requests being worked on."),
            registry,
        }
    }

    /// The counters of a handled command.
    pub fn command(&self, id: u16) -> Option<&CommandMetrics> {
        self.commands.get(&id)
    }

    /// Counts a request's arrival.
    pub fn request(&self, id: u16) {
        if let Some(c) = self.commands.get(&id) {
            c.requests.inc();
        }
    }

    /// Records a finished request.
    pub fn finish(&self, id: u16, elapsed: Duration, ok: bool) {
        let Some(c) = self.commands.get(&id) else {
            return;
        };
        c.latency.record(elapsed);
        if !ok {
            c.errors.inc();
        }
        if is_write(id) {
            self.write_latency.record(elapsed);
            self.writes.inc();
        } else {
            self.read_latency.record(elapsed);
        }
    }

    /// Per-command statistics for the admin snapshot (commands seen at least once).
    pub fn command_stats(&self) -> Vec<CommandStat> {
        let mut out: Vec<CommandStat> = HANDLED
            .iter()
            .filter_map(|&id| {
                let c = self.commands.get(&id)?;
                let requests = c.requests.get();
                (requests > 0).then(|| CommandStat {
                    command_id: Some(u32::from(id)),
                    name: command_name(id).map(str::to_owned),
                    requests_total: Some(requests),
                    errors_total: Some(c.errors.get()),
                    latency: Some(latency(&c.latency)),
                })
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.requests_total));
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A histogram as the admin `Latency` message.
pub fn latency(h: &Histogram) -> Latency {
    let s = h.summary();
    Latency {
        p50_micros: Some(s.p50_us),
        p99_micros: Some(s.p99_us),
        max_micros: Some(s.max_us),
        count: Some(s.count),
    }
}
