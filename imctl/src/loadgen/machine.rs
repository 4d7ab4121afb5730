//! How busy the machine was while a run measured: a latency figure taken on a saturated
//! machine says more about the machine than about the servers, and `imctl bench` usually
//! shares the box with the cluster it drives. Read from Linux's `/proc/stat` (every core)
//! and `/proc/self/stat` (this process) at the start and at the end of the measured window;
//! elsewhere the report has no such section.

use serde::Serialize;

/// CPU time counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every core, all states.
    pub total: u64,
    /// Every core, neither idle nor waiting for I/O.
    pub busy: u64,
    /// Every core, idle while I/O was outstanding.
    pub iowait: u64,
    /// This process (user + system).
    pub own: u64,
}

/// The machine's load over the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MachineLoad {
    /// Cores counted in `/proc/stat`.
    pub cores: usize,
    /// Share of every core's time spent busy, percent (100 = every core saturated).
    pub cpu_busy_pct: f64,
    /// Share spent idle while waiting for I/O (fsyncs), percent.
    pub cpu_iowait_pct: f64,
    /// Share of the machine used by this process (the load generator), percent.
    pub imctl_pct: f64,
}

/// Reads the counters now; `None` where `/proc` is missing or unreadable.
pub fn sample() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut t = parse_stat(&stat)?;
    t.own = parse_own(&own)?;
    Some(t)
}

/// Cores listed in `/proc/stat` (`cpu0`, `cpu1`, ...).
pub fn cores() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|s| count_cores(&s))
        .unwrap_or(0)
}

/// The load between two samples; `None` if no tick passed.
pub fn between(a: CpuTimes, b: CpuTimes, cores: usize) -> Option<MachineLoad> {
    let total = b.total.checked_sub(a.total).filter(|&t| t > 0)? as f64;
    let pct = |x: u64, y: u64| (y.saturating_sub(x) as f64 / total * 1000.0).round() / 10.0;
    Some(MachineLoad {
        cores,
        cpu_busy_pct: pct(a.busy, b.busy),
        cpu_iowait_pct: pct(a.iowait, b.iowait),
        // The process's ticks are per core, the total is over every core: same unit.
        imctl_pct: pct(a.own, b.own),
    })
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal (guest time is
/// already inside user and nice).
fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = v.try_into().ok()?;
    Some(CpuTimes {
        total: user + nice + system + idle + iowait + irq + softirq + steal,
        busy: user + nice + system + irq + softirq + steal,
        iowait,
        own: 0,
    })
}

/// utime + stime of `/proc/self/stat`: fields 14 and 15, counted after the command name,
/// which is in parentheses and may itself hold spaces.
fn parse_own(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

fn count_cores(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 10 0 0\n\
                        cpu0 50 2 25 400 10 1 1 5 0 0\n\
                        cpu1 50 3 25 400 10 2 1 5 0 0\n\
                        intr 12345\n";

    #[test]
    fn parses_the_aggregate_line() {
        let t = parse_stat(STAT).unwrap();
        assert_eq!(t.total, 990);
        assert_eq!(t.busy, 170);
        assert_eq!(t.iowait, 20);
        assert_eq!(count_cores(STAT), 2);
    }

    #[test]
    fn own_ticks_skip_a_command_name_with_spaces() {
        let own = "4242 (im ctl) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 11 0 0 20 0 3 0";
        assert_eq!(parse_own(own), Some(48));
    }

    #[test]
    fn load_is_the_share_of_the_window() {
        let a = CpuTimes {
            total: 1000,
            busy: 100,
            iowait: 10,
            own: 20,
        };
        let b = CpuTimes {
            total: 1400,
            busy: 490,
            iowait: 14,
            own: 120,
        };
        let l = between(a, b, 2).unwrap();
        assert_eq!(l.cores, 2);
        assert_eq!(l.cpu_busy_pct, 97.5);
        assert_eq!(l.cpu_iowait_pct, 1.0);
        assert_eq!(l.imctl_pct, 25.0);
        assert_eq!(between(a, a, 2), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_can_be_sampled() {
        let t = sample().expect("/proc/stat on Linux");
        assert!(t.total >= t.busy + t.iowait, "{t:?}");
        assert!(cores() >= 1);
    }
}
