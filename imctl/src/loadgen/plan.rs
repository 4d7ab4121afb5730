//! What a load run does, whether it came from a scenario file (`imctl sim`) or a preset
//! (`imctl bench`): who logs in, which steps each user runs, and the phases.

use std::time::Duration;

use im_proto::base::ClientType;

/// A whole run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenario or preset name (reports).
    pub name: String,
    /// One entry per simulated user.
    pub users: Vec<UserSlot>,
    /// The behaviours users are assigned to.
    pub behaviours: Vec<Behaviour>,
    /// Ramp-up, warm-up, steady, cool-down.
    pub phases: Phases,
    /// Who is whose peer.
    pub pairing: Pairing,
    /// Groups made for the run.
    pub groups: GroupSetup,
    /// Most messages per second over all users (`None`: no global limit).
    pub global_rate: Option<f64>,
    /// A receiver must have been online this long before a send for the message to be
    /// expected (route_server learns of a login asynchronously).
    pub settle: Duration,
    /// A message must arrive within this long to count as delivered.
    pub window: Duration,
    /// Logins in progress at once.
    pub login_concurrency: usize,
    /// Send a delivery ack (IMMsgDataAck) for every message received, as stock clients do.
    pub data_ack: bool,
}

/// One simulated user.
#[derive(Debug, Clone)]
pub struct UserSlot {
    /// Login name.
    pub name: String,
    /// Plain password.
    pub password: String,
    /// Client type it logs in with.
    pub client_type: ClientType,
    /// Index into [`Plan::behaviours`].
    pub behaviour: usize,
}

/// A named list of steps.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Name (reports).
    pub name: String,
    /// Steps, in order.
    pub steps: Vec<Step>,
}

/// The phases of a run.
#[derive(Debug, Clone)]
pub struct Phases {
    /// Users started per second (0: all at once, bounded by the login concurrency).
    pub ramp_per_sec: f64,
    /// Steps after the first (a login) wait until every user has logged in.
    pub together: bool,
    /// After the ramp-up, time before measuring starts.
    pub warmup: Duration,
    /// Measured time; sends without a count or duration stop at its end.
    pub steady: Duration,
    /// Time after the steady phase for the last messages to arrive before users leave.
    pub cool_down: Duration,
}

/// How peers are chosen for `to = "peer"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Users 0-1, 2-3, ... in list order.
    Neighbours,
    /// After every login, users on different msg_servers are paired first (cross-server
    /// traffic through route_server).
    CrossServer,
}

/// Groups the run makes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSetup {
    /// None (groups are named by the scenario, or not used).
    None,
    /// Users in list order are split into temporary groups of this size, created through the
    /// client protocol by their first member.
    Temporary {
        /// Members per group.
        size: usize,
    },
}

/// One step of a behaviour.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// HTTP + TCP login.
    Login,
    /// IMLogoutReq, then close.
    Logout,
    /// Close the socket abruptly, wait, log in again.
    Reconnect {
        /// Time offline.
        delay: Duration,
    },
    /// Log in a second connection of the same class and expect the first to be kicked.
    Kicked {
        /// How long the kick may take.
        within: Duration,
    },
    /// Send messages.
    Send(SendStep),
    /// Send P2P commands (typing indicators).
    P2p {
        /// To whom.
        to: Target,
        /// How many.
        count: u64,
        /// Pause between two.
        think: Duration,
    },
    /// Fetch history (IMGetMsgListReq).
    History {
        /// Which conversation.
        with: Target,
        /// Messages asked for.
        count: u32,
    },
    /// Wait until this many messages were received since the previous `expect`.
    Expect {
        /// Messages to wait for.
        messages: u64,
        /// Time allowed.
        within: Duration,
    },
    /// Change what the user does with messages it receives.
    Receive {
        /// Send IMMsgDataAck.
        data_ack: bool,
        /// Send IMMsgDataReadAck.
        read_ack: bool,
    },
    /// Do nothing (but receive) for a while.
    Sleep(Duration),
}

/// A `send` step.
#[derive(Debug, Clone, PartialEq)]
pub struct SendStep {
    /// To whom.
    pub to: Target,
    /// How fast.
    pub pace: Pace,
    /// Stop after this many (`None`: at the end of the steady phase).
    pub count: Option<u64>,
    /// Stop after this long (`None`: at the end of the steady phase).
    pub duration: Option<Duration>,
    /// Plain text size in bytes (the stamp included).
    pub size: usize,
}

/// How a sender paces itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open model: this many messages per second, whatever the server does.
    Rate(f64),
    /// A pause after each send.
    Think(Duration),
    /// Closed model: keep this many messages waiting for their ack.
    InFlight(u32),
}

/// A message target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The user's peer (see [`Pairing`]).
    Peer,
    /// Any other simulated user, chosen per message.
    Random,
    /// A group.
    Group(GroupRef),
}

/// Which group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    /// A group the user is a member of, by name.
    Named(String),
    /// By id.
    Id(u32),
    /// The group made for the run ([`GroupSetup::Temporary`]).
    Own,
}

impl Plan {
    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True without users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
