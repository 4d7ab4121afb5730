//! The host's local time, for the night-time push mute (FLOWS.md 15.2: iOS users with push
//! shield on get no push between 22:00 and 07:59 *server local time*, as in the original).
//!
//! The standard library has no time zones, and this is the only place that needs one, so the
//! zone is read here from the TZif file the C library would use (`TZ`, else `/etc/localtime`):
//! its transition table gives the UTC offset at any instant (Debian ships "fat" files with
//! transitions listed up to 2037). After the last transition the file's POSIX footer is used
//! when it has no daylight-saving rule; otherwise the last offset stays in force.
//!
//! TZif layout (RFC 8536): a 44-byte header ("TZif", version, 15 unused bytes, six u32 counts:
//! isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt), a data block with 4-byte times, and
//! for version 2 and later a second header and data block with 8-byte times, then
//! "\n<POSIX TZ>\n". Data block: timecnt times, timecnt type indices, typecnt 6-byte records
//! (i32 offset, u8 is-dst, u8 name index), charcnt name bytes, leapcnt leap records, isstdcnt
//! and isutcnt flags.

use std::path::PathBuf;

/// UTC offsets of the local zone over time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalZone {
    /// (transition time, offset in force from then on), ascending.
    transitions: Vec<(i64, i32)>,
    /// Offset before the first transition (or always, without transitions).
    initial: i32,
    /// Offset after the last transition when the footer has no daylight-saving rule.
    footer: Option<i32>,
}

impl LocalZone {
    /// UTC everywhere.
    pub fn utc() -> Self {
        LocalZone::default()
    }

    /// A fixed offset from UTC, in seconds.
    pub fn fixed(offset_secs: i32) -> Self {
        LocalZone {
            initial: offset_secs,
            ..LocalZone::default()
        }
    }

    /// The zone of this host (`TZ`, else `/etc/localtime`); UTC if neither can be read.
    pub fn from_host() -> Self {
        let tz = std::env::var("TZ").ok().filter(|v| !v.is_empty());
        let path = match tz.as_deref() {
            Some(v) => {
                let v = v.strip_prefix(':').unwrap_or(v);
                if v.starts_with('/') {
                    PathBuf::from(v)
                } else {
                    PathBuf::from("/usr/share/zoneinfo").join(v)
                }
            }
            None => PathBuf::from("/etc/localtime"),
        };
        if let Ok(bytes) = std::fs::read(&path)
            && let Some(zone) = LocalZone::parse(&bytes)
        {
            return zone;
        }
        // TZ may be a POSIX string itself ("CST-8").
        if let Some(offset) = tz.as_deref().and_then(posix_std_offset) {
            return LocalZone {
                initial: offset,
                ..LocalZone::default()
            };
        }
        tracing::info!(path = %path.display(), "no readable time zone file, using UTC for the night-time push mute");
        LocalZone::utc()
    }

    /// Parses a TZif file; `None` if it is not one.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let v1 = Header::parse(b)?;
        let v1_len = v1.data_len(4);
        let (header, data, time_size) = if v1.version >= b'2' {
            let rest = b.get(44 + v1_len..)?;
            let v2 = Header::parse(rest)?;
            (v2, rest.get(44..)?, 8)
        } else {
            (v1, b.get(44..)?, 4)
        };
        let times_len = header.timecnt * time_size;
        let times = data.get(..times_len)?;
        let idx = data.get(times_len..times_len + header.timecnt)?;
        let types_at = times_len + header.timecnt;
        let types = data.get(types_at..types_at + header.typecnt * 6)?;
        let offset_of = |i: usize| -> Option<i32> {
            let r = types.get(i * 6..i * 6 + 4)?;
            Some(i32::from_be_bytes([r[0], r[1], r[2], r[3]]))
        };
        let mut transitions = Vec::with_capacity(header.timecnt);
        for (k, &ty) in idx.iter().enumerate() {
            let t = &times[k * time_size..(k + 1) * time_size];
            let at = if time_size == 8 {
                i64::from_be_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
            } else {
                i64::from(i32::from_be_bytes([t[0], t[1], t[2], t[3]]))
            };
            transitions.push((at, offset_of(ty as usize)?));
        }
        // RFC 8536: before the first transition, the first type applies.
        let initial = offset_of(0)?;
        let footer = if time_size == 8 {
            let end = header.data_len(8);
            data.get(end..)
                .and_then(|f| std::str::from_utf8(f).ok())
                .map(|f| f.trim_matches('\n'))
                .and_then(posix_std_offset)
        } else {
            None
        };
        Some(LocalZone {
            transitions,
            initial,
            footer,
        })
    }

    /// Offset from UTC in seconds at unix time `t`.
    pub fn offset_at(&self, t: i64) -> i32 {
        match self.transitions.partition_point(|(at, _)| *at <= t) {
            0 => self.initial,
            n if n == self.transitions.len() => self
                .footer
                .unwrap_or_else(|| self.transitions.last().map_or(self.initial, |x| x.1)),
            n => self.transitions[n - 1].1,
        }
    }

    /// Local hour of the day (0..=23) at unix time `t`.
    pub fn hour_at(&self, t: i64) -> u32 {
        let local = t + i64::from(self.offset_at(t));
        (local.rem_euclid(86_400) / 3600) as u32
    }
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Header {
    fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < 44 || &b[..4] != b"TZif" {
            return None;
        }
        let n = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let h = Header {
            version: b[4],
            isutcnt: n(20),
            isstdcnt: n(24),
            leapcnt: n(28),
            timecnt: n(32),
            typecnt: n(36),
            charcnt: n(40),
        };
        // Real files have a few thousand entries at most; refuse absurd counts.
        (h.timecnt <= 100_000 && h.typecnt >= 1 && h.typecnt <= 256).then_some(h)
    }

    /// Length of the data block that follows the header.
    fn data_len(&self, time_size: usize) -> usize {
        self.timecnt * time_size
            + self.timecnt
            + self.typecnt * 6
            + self.charcnt
            + self.leapcnt * (time_size + 4)
            + self.isstdcnt
            + self.isutcnt
    }
}

/// The standard offset (seconds east of UTC) of a POSIX TZ string without a daylight-saving
/// part, e.g. `CST-8` -> +8 h, `<+0530>-5:30` -> +5:30, `UTC0` -> 0. `None` when the string
/// has a daylight-saving zone or does not parse.
fn posix_std_offset(s: &str) -> Option<i32> {
    let rest = if let Some(r) = s.strip_prefix('<') {
        &r[r.find('>')? + 1..]
    } else {
        let name_len = s.find(|c: char| !c.is_ascii_alphabetic())?;
        if name_len < 3 {
            return None;
        }
        &s[name_len..]
    };
    let (sign, digits) = match rest.as_bytes().first()? {
        b'-' => (1, &rest[1..]),
        b'+' => (-1, &rest[1..]),
        _ => (-1, rest),
    };
    let mut secs = 0i32;
    let mut parts = digits.split(':');
    for (i, unit) in [3600, 60, 1].iter().enumerate() {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && p.len() <= 3 => {
                secs += p.parse::<i32>().ok()? * unit;
            }
            Some(_) => return None,
            None if i > 0 => break,
            None => return None,
        }
    }
    // Anything after the offset is a daylight-saving zone: not handled here.
    if parts.next().is_some() {
        return None;
    }
    Some(sign * secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-2 TZif file with the given transitions and footer.
    fn tzif(types: &[i32], transitions: &[(i64, u8)], footer: &str) -> Vec<u8> {
        fn header(out: &mut Vec<u8>, timecnt: usize, typecnt: usize) {
            out.extend_from_slice(b"TZif2");
            out.extend_from_slice(&[0; 15]);
            for n in [0, 0, 0, timecnt, typecnt, 4] {
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
        fn data(out: &mut Vec<u8>, types: &[i32], tr: &[(i64, u8)], wide: bool) {
            for (t, _) in tr {
                if wide {
                    out.extend_from_slice(&t.to_be_bytes());
                } else {
                    out.extend_from_slice(&(*t as i32).to_be_bytes());
                }
            }
            out.extend(tr.iter().map(|(_, i)| *i));
            for off in types {
                out.extend_from_slice(&off.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            out.extend_from_slice(b"XYZ\0");
        }
        let mut out = Vec::new();
        header(&mut out, transitions.len(), types.len());
        data(&mut out, types, transitions, false);
        header(&mut out, transitions.len(), types.len());
        data(&mut out, types, transitions, true);
        out.extend_from_slice(format!("\n{footer}\n").as_bytes());
        out
    }

    #[test]
    fn transitions_then_footer() {
        // +1 h until t=1000, +2 h until t=2000, then the footer's +8 h.
        let z = LocalZone::parse(&tzif(&[3600, 7200], &[(1000, 1), (2000, 0)], "CST-8"))
            .expect("parses");
        assert_eq!(z.offset_at(0), 3600);
        assert_eq!(z.offset_at(1000), 7200);
        assert_eq!(z.offset_at(1999), 7200);
        assert_eq!(z.offset_at(2000), 8 * 3600);
        // A footer with daylight saving: the last offset stays in force.
        let z = LocalZone::parse(&tzif(&[3600, 7200], &[(1000, 1)], "EST5EDT,M3.2.0,M11.1.0"))
            .expect("parses");
        assert_eq!(z.offset_at(5000), 7200);
        assert!(LocalZone::parse(b"not a tz file at all, clearly not").is_none());
    }

    #[test]
    fn hours() {
        let z = LocalZone {
            initial: 8 * 3600,
            ..LocalZone::default()
        };
        // 1970-01-01 15:00 UTC is 23:00 at +8.
        assert_eq!(z.hour_at(15 * 3600), 23);
        assert_eq!(LocalZone::utc().hour_at(15 * 3600), 15);
        assert_eq!(LocalZone::utc().hour_at(-3600), 23);
    }

    #[test]
    fn posix_strings() {
        assert_eq!(posix_std_offset("CST-8"), Some(8 * 3600));
        assert_eq!(posix_std_offset("UTC0"), Some(0));
        assert_eq!(posix_std_offset("EST5"), Some(-5 * 3600));
        assert_eq!(posix_std_offset("<+0530>-5:30"), Some(5 * 3600 + 1800));
        assert_eq!(posix_std_offset("EST5EDT,M3.2.0,M11.1.0"), None);
        assert_eq!(posix_std_offset(""), None);
    }

    #[test]
    fn the_host_zone_file_parses_if_present() {
        if let Ok(b) = std::fs::read("/usr/share/zoneinfo/Asia/Shanghai") {
            let z = LocalZone::parse(&b).expect("Shanghai parses");
            // 2024-01-01 00:00 UTC.
            assert_eq!(z.offset_at(1_704_067_200), 8 * 3600);
        }
        if let Ok(b) = std::fs::read("/usr/share/zoneinfo/America/New_York") {
            let z = LocalZone::parse(&b).expect("New York parses");
            assert_eq!(z.offset_at(1_704_067_200), -5 * 3600);
            // 2024-07-01 00:00 UTC: daylight saving.
            assert_eq!(z.offset_at(1_719_792_000), -4 * 3600);
        }
    }
}
