//! Scenario files (`fixtures/scenarios/*.toml`): users, phases, weighted behaviours made of
//! steps, limits and thresholds. [`load`] parses and checks a file; [`Scenario::plan`] turns
//! it into the [`Plan`] the load engine runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use im_proto::base::ClientType;
use serde::Deserialize;

use crate::loadgen::dial::client_type;
use crate::loadgen::plan::{
    Behaviour, GroupRef, GroupSetup, Pace, Pairing, Phases, Plan, SendStep, Step, Target, UserSlot,
};
use crate::loadgen::report::METRICS;
use crate::loadgen::users::{expand_pattern, parse_id_range};

/// Largest message text a scenario may ask for (its base64 cipher text stays far below the
/// 400 KiB a client frame may carry).
const MAX_SIZE: usize = 64 * 1024;

/// Smallest message text: the stamp needs room.
const MIN_SIZE: usize = 48;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (reports).
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: String,
    /// Who logs in.
    pub users: UsersSpec,
    /// Ramp-up, steady, cool-down.
    #[serde(default)]
    pub phases: PhasesSpec,
    /// Delivery matching.
    #[serde(default)]
    pub verify: VerifySpec,
    /// Global limits.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Groups made for the run.
    #[serde(default)]
    pub groups: GroupsSpec,
    /// Weighted behaviours.
    #[serde(rename = "behaviour")]
    pub behaviours: Vec<BehaviourSpec>,
    /// Metric limits that decide the exit code (`metric = max`, `min_metric = min`).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
}

/// `[users]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersSpec {
    /// Login names.
    #[serde(default)]
    pub names: Vec<String>,
    /// A name pattern, e.g. `user{0001..2000}`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// A user id range `FROM..TO` (names looked up on db_proxy_server's admin port).
    #[serde(default)]
    pub ids: Option<String>,
    /// Password of every user.
    #[serde(default = "default_password")]
    pub password: String,
    /// Create the users first (db_proxy_server admin port).
    #[serde(default)]
    pub create: bool,
    /// Weighted client types, e.g. `{ android = 3, windows = 1 }`.
    #[serde(default)]
    pub client_types: BTreeMap<String, u32>,
}

fn default_password() -> String {
    "123456".to_owned()
}

/// `[phases]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhasesSpec {
    /// Users started per second (0: all at once).
    pub ramp_up_per_sec: f64,
    /// Steps after the first wait for every user's login.
    pub together: bool,
    /// Seconds after the ramp-up before measuring.
    pub warmup_secs: f64,
    /// Measured seconds.
    pub steady_secs: f64,
    /// Seconds for the last messages to arrive.
    pub cool_down_secs: f64,
}

impl Default for PhasesSpec {
    fn default() -> Self {
        PhasesSpec {
            ramp_up_per_sec: 0.0,
            together: false,
            warmup_secs: 0.0,
            steady_secs: 10.0,
            cool_down_secs: 3.0,
        }
    }
}

/// `[verify]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySpec {
    /// A receiver must be online this long before a send (default 300 ms).
    pub settle_ms: Option<u64>,
    /// Time allowed for a delivery (default: the cool-down).
    pub window_ms: Option<u64>,
    /// Send delivery acks (default true).
    pub data_ack: Option<bool>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSpec {
    /// Most messages per second over all users (0: none).
    pub msgs_per_sec: f64,
    /// Logins in progress at once (default 200).
    pub login_concurrency: Option<usize>,
}

/// `[groups]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsSpec {
    /// Split the users into temporary groups of this size (`to = "group"` without a name).
    pub temporary_size: Option<usize>,
}

/// `[[behaviour]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourSpec {
    /// Name.
    pub name: String,
    /// Relative share of the users.
    #[serde(default = "one")]
    pub weight: u32,
    /// Steps.
    pub steps: Vec<StepSpec>,
}

fn one() -> u32 {
    1
}

/// A step: `{ send = { to = "peer", rate = 2 } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    /// `{ login = {} }`
    Login(Empty),
    /// `{ logout = {} }`
    Logout(Empty),
    /// `{ reconnect = { delay_ms = 500 } }`
    Reconnect(ReconnectSpec),
    /// `{ kicked = { within_ms = 2000 } }`
    Kicked(WithinSpec),
    /// `{ send = { ... } }`
    Send(SendSpec),
    /// `{ p2p = { to = "peer", count = 3, think_ms = 100 } }`
    P2p(P2pSpec),
    /// `{ history = { with = "peer", count = 20 } }`
    History(HistorySpec),
    /// `{ expect = { messages = 10, within_ms = 3000 } }`
    Expect(ExpectSpec),
    /// `{ receive = { data_ack = true, read_ack = true } }`
    Receive(ReceiveSpec),
    /// `{ sleep = { ms = 1000 } }`
    Sleep(SleepSpec),
}

/// A step without settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `reconnect`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectSpec {
    /// Time offline.
    pub delay_ms: u64,
}

/// `kicked`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithinSpec {
    /// Time allowed.
    #[serde(default = "default_within")]
    pub within_ms: u64,
}

fn default_within() -> u64 {
    5000
}

/// `send`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSpec {
    /// `peer`, `random` or `group`.
    pub to: String,
    /// With `to = "group"`: a group the user belongs to, by name.
    #[serde(default)]
    pub group: Option<String>,
    /// With `to = "group"`: by id.
    #[serde(default)]
    pub group_id: Option<u32>,
    /// Messages per second (open model).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Or a pause after each send.
    #[serde(default)]
    pub think_ms: Option<u64>,
    /// Or keep this many unacked (closed model).
    #[serde(default)]
    pub in_flight: Option<u32>,
    /// Stop after this many.
    #[serde(default)]
    pub count: Option<u64>,
    /// Stop after this long.
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// Plain text bytes.
    #[serde(default = "default_size")]
    pub size: usize,
}

fn default_size() -> usize {
    100
}

/// `p2p`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSpec {
    /// `peer` or `random`.
    pub to: String,
    /// How many.
    #[serde(default = "one_u64")]
    pub count: u64,
    /// Pause between two.
    #[serde(default)]
    pub think_ms: u64,
}

fn one_u64() -> u64 {
    1
}

/// `history`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySpec {
    /// `peer` or `group` (with `group`/`group_id`).
    pub with: String,
    /// A group by name.
    #[serde(default)]
    pub group: Option<String>,
    /// A group by id.
    #[serde(default)]
    pub group_id: Option<u32>,
    /// Messages asked for.
    #[serde(default = "default_history")]
    pub count: u32,
}

fn default_history() -> u32 {
    20
}

/// `expect`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// Messages to receive since the previous `expect`.
    pub messages: u64,
    /// Time allowed.
    #[serde(default = "default_within")]
    pub within_ms: u64,
}

/// `receive`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveSpec {
    /// Send IMMsgDataAck for each message.
    #[serde(default = "yes")]
    pub data_ack: bool,
    /// Send IMMsgDataReadAck for each message.
    #[serde(default)]
    pub read_ack: bool,
}

fn yes() -> bool {
    true
}

/// `sleep`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepSpec {
    /// Milliseconds.
    pub ms: u64,
}

/// Reads and checks a scenario file; the error names the file and the bad key.
pub fn load(path: &Path) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading scenario {}", path.display()))?;
    parse(&text).with_context(|| format!("scenario {}", path.display()))
}

/// Parses and checks scenario text.
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let s: Scenario = toml::from_str(text)?;
    s.check()?;
    Ok(s)
}

fn secs(key: &str, v: f64) -> anyhow::Result<Duration> {
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        bail!("{key} = {v}: expected seconds between 0 and 86400");
    }
    Ok(Duration::from_secs_f64(v))
}

impl Scenario {
    /// The checks serde cannot make.
    pub fn check(&self) -> anyhow::Result<()> {
        let u = &self.users;
        let sources = usize::from(!u.names.is_empty())
            + usize::from(u.pattern.is_some())
            + usize::from(u.ids.is_some());
        if sources != 1 {
            bail!("users: give exactly one of `names`, `pattern` or `ids` (got {sources})");
        }
        if let Some(p) = &u.pattern {
            expand_pattern(p).context("users.pattern")?;
        }
        if let Some(r) = &u.ids {
            parse_id_range(r).context("users.ids")?;
        }
        for (t, w) in &u.client_types {
            client_type(t).with_context(|| format!("users.client_types.{t}"))?;
            if *w == 0 {
                bail!("users.client_types.{t} = 0: weights must be at least 1");
            }
        }
        let p = &self.phases;
        for (k, v) in [
            ("phases.warmup_secs", p.warmup_secs),
            ("phases.steady_secs", p.steady_secs),
            ("phases.cool_down_secs", p.cool_down_secs),
        ] {
            secs(k, v)?;
        }
        if !p.ramp_up_per_sec.is_finite() || p.ramp_up_per_sec < 0.0 {
            bail!(
                "phases.ramp_up_per_sec = {}: expected 0 or more",
                p.ramp_up_per_sec
            );
        }
        if self.limits.msgs_per_sec < 0.0 || !self.limits.msgs_per_sec.is_finite() {
            bail!(
                "limits.msgs_per_sec = {}: expected 0 or more",
                self.limits.msgs_per_sec
            );
        }
        if self.limits.login_concurrency == Some(0) {
            bail!("limits.login_concurrency = 0: expected at least 1");
        }
        if self.groups.temporary_size.is_some_and(|s| s < 2) {
            bail!("groups.temporary_size: a group needs at least 2 members");
        }
        if self.behaviours.is_empty() {
            bail!("no [[behaviour]]: a scenario needs at least one");
        }
        for b in &self.behaviours {
            if b.weight == 0 {
                bail!(
                    "behaviour {:?}: weight 0; weights must be at least 1",
                    b.name
                );
            }
            self.steps_of(b)
                .with_context(|| format!("behaviour {:?}", b.name))?;
        }
        for key in self.thresholds.keys() {
            let metric = key.strip_prefix("min_").unwrap_or(key);
            if !METRICS.contains(&metric) {
                bail!(
                    "thresholds.{key}: unknown metric; valid metrics (prefix min_ for a lower \
                     bound): {}",
                    METRICS.join(", ")
                );
            }
        }
        Ok(())
    }

    fn target(
        &self,
        key: &str,
        to: &str,
        group: &Option<String>,
        id: Option<u32>,
    ) -> anyhow::Result<Target> {
        Ok(match to {
            "peer" => Target::Peer,
            "random" => Target::Random,
            "group" => match (group, id) {
                (Some(n), None) => Target::Group(GroupRef::Named(n.clone())),
                (None, Some(i)) => Target::Group(GroupRef::Id(i)),
                (None, None) if self.groups.temporary_size.is_some() => {
                    Target::Group(GroupRef::Own)
                }
                (None, None) => bail!(
                    "{key}: `to = \"group\"` needs `group` (a name), `group_id`, or \
                     [groups] temporary_size"
                ),
                (Some(_), Some(_)) => bail!("{key}: give `group` or `group_id`, not both"),
            },
            other => bail!("{key}: {other:?} is not a target; expected peer, random or group"),
        })
    }

    /// The steps of a behaviour, checked: the first is a login, and nothing that needs a
    /// connection runs while logged out.
    fn steps_of(&self, b: &BehaviourSpec) -> anyhow::Result<Vec<Step>> {
        let mut out = Vec::new();
        let mut online = false;
        for (i, spec) in b.steps.iter().enumerate() {
            let key = format!("steps[{i}]");
            let needs_online = !matches!(
                spec,
                StepSpec::Login(_) | StepSpec::Sleep(_) | StepSpec::Receive(_)
            );
            if i == 0 && !matches!(spec, StepSpec::Login(_)) {
                bail!("{key}: the first step must be `login`");
            }
            if needs_online && !online {
                bail!("{key}: needs a logged-in user; add a `login` step before it");
            }
            let ms = Duration::from_millis;
            let step = match spec {
                StepSpec::Login(_) => {
                    if online {
                        bail!("{key}: `login` while already logged in (use `reconnect`)");
                    }
                    online = true;
                    Step::Login
                }
                StepSpec::Logout(_) => {
                    online = false;
                    Step::Logout
                }
                StepSpec::Reconnect(r) => Step::Reconnect {
                    delay: ms(r.delay_ms),
                },
                StepSpec::Kicked(k) => Step::Kicked {
                    within: ms(k.within_ms),
                },
                StepSpec::Send(s) => {
                    let key = format!("{key}.send");
                    let pace = match (s.rate, s.think_ms, s.in_flight) {
                        (Some(r), None, None) if r > 0.0 && r.is_finite() => Pace::Rate(r),
                        (Some(r), None, None) => bail!("{key}.rate = {r}: expected more than 0"),
                        (None, Some(t), None) => Pace::Think(ms(t)),
                        (None, None, Some(k)) if k > 0 => Pace::InFlight(k),
                        (None, None, Some(_)) => bail!("{key}.in_flight: expected at least 1"),
                        _ => bail!("{key}: give exactly one of `rate`, `think_ms` or `in_flight`"),
                    };
                    if !(MIN_SIZE..=MAX_SIZE).contains(&s.size) {
                        bail!(
                            "{key}.size = {}: expected {MIN_SIZE} to {MAX_SIZE} bytes",
                            s.size
                        );
                    }
                    let duration = s
                        .duration_secs
                        .map(|d| secs(&format!("{key}.duration_secs"), d))
                        .transpose()?;
                    Step::Send(SendStep {
                        to: self.target(&format!("{key}.to"), &s.to, &s.group, s.group_id)?,
                        pace,
                        count: s.count,
                        duration,
                        size: s.size,
                    })
                }
                StepSpec::P2p(p) => {
                    let to = self.target(&format!("{key}.p2p.to"), &p.to, &None, None)?;
                    if matches!(to, Target::Group(_)) {
                        bail!("{key}.p2p.to: P2P commands go to a user (peer or random)");
                    }
                    Step::P2p {
                        to,
                        count: p.count,
                        think: ms(p.think_ms),
                    }
                }
                StepSpec::History(h) => {
                    let with = self.target(
                        &format!("{key}.history.with"),
                        &h.with,
                        &h.group,
                        h.group_id,
                    )?;
                    if with == Target::Random {
                        bail!("{key}.history.with: expected peer or group");
                    }
                    Step::History {
                        with,
                        count: h.count,
                    }
                }
                StepSpec::Expect(e) => Step::Expect {
                    messages: e.messages,
                    within: ms(e.within_ms),
                },
                StepSpec::Receive(r) => Step::Receive {
                    data_ack: r.data_ack,
                    read_ack: r.read_ack,
                },
                StepSpec::Sleep(s) => Step::Sleep(ms(s.ms)),
            };
            out.push(step);
        }
        Ok(out)
    }

    /// Login names, expanding the pattern (ids are resolved by the caller).
    pub fn static_names(&self) -> anyhow::Result<Option<Vec<String>>> {
        if !self.users.names.is_empty() {
            return Ok(Some(self.users.names.clone()));
        }
        match &self.users.pattern {
            Some(p) => Ok(Some(expand_pattern(p)?)),
            None => Ok(None),
        }
    }

    /// The plan for these login names.
    pub fn plan(&self, names: Vec<String>) -> anyhow::Result<Plan> {
        let behaviours: Vec<Behaviour> = self
            .behaviours
            .iter()
            .map(|b| {
                Ok(Behaviour {
                    name: b.name.clone(),
                    steps: self.steps_of(b)?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let weights: Vec<u32> = self.behaviours.iter().map(|b| b.weight).collect();
        let types: Vec<(ClientType, u32)> = if self.users.client_types.is_empty() {
            vec![(ClientType::Android, 1)]
        } else {
            self.users
                .client_types
                .iter()
                .map(|(t, w)| Ok((client_type(t)?, *w)))
                .collect::<anyhow::Result<_>>()?
        };
        let type_weights: Vec<u32> = types.iter().map(|t| t.1).collect();
        let mut pick_b = SmoothRoundRobin::new(&weights);
        let mut pick_t = SmoothRoundRobin::new(&type_weights);
        let users = names
            .into_iter()
            .map(|name| UserSlot {
                name,
                password: self.users.password.clone(),
                client_type: types[pick_t.next()].0,
                behaviour: pick_b.next(),
            })
            .collect();
        let p = &self.phases;
        let cool_down = Duration::from_secs_f64(p.cool_down_secs);
        Ok(Plan {
            name: self.name.clone(),
            users,
            behaviours,
            phases: Phases {
                ramp_per_sec: p.ramp_up_per_sec,
                together: p.together,
                warmup: Duration::from_secs_f64(p.warmup_secs),
                steady: Duration::from_secs_f64(p.steady_secs),
                cool_down,
            },
            pairing: Pairing::Neighbours,
            groups: match self.groups.temporary_size {
                Some(size) => GroupSetup::Temporary { size },
                None => GroupSetup::None,
            },
            global_rate: (self.limits.msgs_per_sec > 0.0).then_some(self.limits.msgs_per_sec),
            settle: Duration::from_millis(self.verify.settle_ms.unwrap_or(300)),
            window: self
                .verify
                .window_ms
                .map_or(cool_down, Duration::from_millis),
            login_concurrency: self.limits.login_concurrency.unwrap_or(200),
            data_ack: self.verify.data_ack.unwrap_or(true),
        })
    }
}

/// Deterministic weighted choice (nginx's smooth weighted round robin): with weights 3 and
/// 1, four picks give a, a, b, a.
struct SmoothRoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothRoundRobin {
    fn new(weights: &[u32]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(*w)).collect();
        SmoothRoundRobin {
            total: weights.iter().sum(),
            current: vec![0; weights.len()],
            weights,
        }
    }

    fn next(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        if let Some(c) = self.current.get_mut(best) {
            *c -= self.total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[users]
names = ["a", "b", "c", "d"]
client_types = { android = 1, windows = 1 }
[[behaviour]]
name = "talk"
weight = 3
steps = [{ login = {} }, { send = { to = "peer", rate = 2.0, count = 3 } }]
[[behaviour]]
name = "quiet"
steps = [{ login = {} }, { sleep = { ms = 10 } }]
[thresholds]
lost = 0
min_delivered = 1
"#;

    #[test]
    fn parses_and_mixes() {
        let s = parse(MINIMAL).expect("valid");
        let plan = s
            .plan(s.static_names().expect("names").expect("some"))
            .expect("plan");
        let b: Vec<usize> = plan.users.iter().map(|u| u.behaviour).collect();
        assert_eq!(b, [0, 0, 1, 0]);
        let t: Vec<ClientType> = plan.users.iter().map(|u| u.client_type).collect();
        assert_eq!(t[0], ClientType::Android);
        assert_eq!(t[1], ClientType::Windows);
        assert_eq!(plan.window, Duration::from_secs(3));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (MINIMAL.replace("rate = 2.0", "rat = 2.0"), "rat"),
            (MINIMAL.replace("lost = 0", "lots = 0"), "thresholds.lots"),
            (
                MINIMAL.replace("to = \"peer\"", "to = \"moon\""),
                "steps[1].send.to",
            ),
            (
                MINIMAL.replace("[{ login = {} }, { send", "[{ send"),
                "steps[0]",
            ),
            (
                MINIMAL.replace("rate = 2.0", "rate = 2.0, think_ms = 5"),
                "exactly one",
            ),
            (
                MINIMAL.replace("android = 1", "nokia = 1"),
                "client_types.nokia",
            ),
        ];
        for (text, want) in cases {
            let e = format!("{:#}", parse(&text).expect_err(want));
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
