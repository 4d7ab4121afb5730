//! route_server's counters (Prometheus `/metrics` and the admin stats snapshot).

use im_common::metrics::{Counter, Registry};

/// What kind of PDU was routed; one pair of in/out counters each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Single-chat IMMsgData.
    SingleMsg,
    /// Group IMMsgData (broadcast).
    GroupMsg,
    /// IMMsgDataReadNotify.
    ReadNotify,
    /// IMP2PCmdMsg.
    P2p,
    /// IMRemoveSessionNotify.
    RemoveSession,
    /// IMSignInfoChangedNotify (broadcast).
    SignInfo,
    /// IMGroupChangeMemberNotify (broadcast).
    GroupMember,
    /// IMFileNotify.
    FileNotify,
    /// IMServerKickUser, and admin kicks sent to msg_servers.
    Kick,
    /// In: IMUserStatusUpdate; out: IMServerPCLoginStatusNotify and IMUserStatNotify.
    Status,
    /// IMUsersStatReq / IMUsersStatRsp.
    UsersStat,
    /// IMOnlineUserInfo and IMRoleSet (nothing goes out).
    Registration,
}

impl Class {
    /// Every class, in counter order.
    pub const ALL: [Class; 12] = [
        Class::SingleMsg,
        Class::GroupMsg,
        Class::ReadNotify,
        Class::P2p,
        Class::RemoveSession,
        Class::SignInfo,
        Class::GroupMember,
        Class::FileNotify,
        Class::Kick,
        Class::Status,
        Class::UsersStat,
        Class::Registration,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::SingleMsg => "msg_data",
            Class::GroupMsg => "group_msg_data",
            Class::ReadNotify => "read_notify",
            Class::P2p => "p2p_cmd",
            Class::RemoveSession => "remove_session_notify",
            Class::SignInfo => "sign_info_notify",
            Class::GroupMember => "group_member_notify",
            Class::FileNotify => "file_notify",
            Class::Kick => "kick",
            Class::Status => "status",
            Class::UsersStat => "users_stat",
            Class::Registration => "registration",
        }
    }

    fn index(self) -> usize {
        Class::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// The counters, registered once at start.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    /// The registry they live in.
    pub registry: Registry,
    routed_in: Vec<Counter>,
    routed_out: Vec<Counter>,
    /// Bodies that did not decode (or lacked a required field); dropped.
    pub decode_errors: Counter,
    /// Commands route_server does not handle; ignored.
    pub unknown_commands: Counter,
    /// Targeted PDUs for users online nowhere else; dropped.
    pub unroutable: Counter,
    /// Frames that could not be queued on a link (closing or too slow).
    pub send_failures: Counter,
    /// Users announced offline when their grace period ended.
    pub grace_expired_users: Counter,
    /// Users who re-appeared during their grace period (nobody was told they left).
    pub grace_recovered_users: Counter,
}

impl RouteMetrics {
    /// Registers the counters in `registry`.
    pub fn new(registry: Registry) -> Self {
        let by_class = |name: &str, help: &str| -> Vec<Counter> {
            Class::ALL
                .iter()
                .map(|c| registry.counter_with(name, help, &[("class", c.as_str())]))
                .collect()
        };
        let routed_in = by_class(
            "routed_in_total",
            "PDUs received from msg_server links, by class.",
        );
        let routed_out = by_class(
            "routed_out_total",
            "PDUs queued toward msg_server links, by class.",
        );
        RouteMetrics {
            routed_in,
            routed_out,
            decode_errors: registry.counter(
                "decode_errors_total",
                "PDUs dropped because their body did not decode.",
            ),
            unknown_commands: registry.counter(
                "unknown_commands_total",
                "PDUs with a command route_server does not handle (ignored).",
            ),
            unroutable: registry.counter(
                "unroutable_total",
                "Targeted PDUs whose users are online on no other msg_server.",
            ),
            send_failures: registry.counter(
                "send_failures_total",
                "Frames that could not be queued on a link.",
            ),
            grace_expired_users: registry.counter(
                "grace_expired_users_total",
                "Users announced offline after the offline grace period.",
            ),
            grace_recovered_users: registry.counter(
                "grace_recovered_users_total",
                "Users who re-appeared within the offline grace period.",
            ),
            registry,
        }
    }

    /// One PDU of `class` received.
    pub fn routed_in(&self, class: Class) {
        self.routed_in[class.index()].inc();
    }

    /// `n` PDUs of `class` queued.
    pub fn routed_out(&self, class: Class, n: u64) {
        if n > 0 {
            self.routed_out[class.index()].add(n);
        }
    }

    /// PDUs received, all classes.
    pub fn routed_in_total(&self) -> u64 {
        self.routed_in.iter().map(Counter::get).sum()
    }

    /// PDUs queued, all classes.
    pub fn routed_out_total(&self) -> u64 {
        self.routed_out.iter().map(Counter::get).sum()
    }
}
