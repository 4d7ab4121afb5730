//! Resident memory and CPU time of this process, from /proc (Linux).

/// Clock ticks per second of /proc/self/stat times. 100 on every Linux this runs on; reading
/// it properly needs `sysconf`, i.e. unsafe code, which the workspace forbids.
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// Resident set size in bytes (0 if unknown).
pub fn rss_bytes() -> u64 {
    // statm: size resident shared text lib data dt, in pages.
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // /proc/self/smaps would tell, but it is 4 KiB on x86_64 and aarch64 Linux defaults.
    4096
}

/// User + system CPU time of the whole process, in milliseconds (0 if unknown).
pub fn cpu_time_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is index 0, so utime (field 14) is index 11 and stime index 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 1000 / CLOCK_TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_something_plausible() {
        let rss = rss_bytes();
        assert!(rss > 1 << 20 && rss < 64 << 30, "rss {rss}");
        // Burn a little CPU so the counter is not stuck at 0.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_time_ms() > 0);
    }
}
