//! One summary line per fault: printed, and collected in `target/e2e-faults.md` (rewritten
//! by the first fault of each test run) so the figures can go into a closing note.

use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::verify::Verdict;

/// Header of the table in `target/e2e-faults.md`.
const HEADER: &str = "| fault | load | sent | acked | delivered (live + after reconnect) | lost | \
false acks | duplicates | notes |\n|---|---|---|---|---|---|---|---|---|\n";

static STARTED: Mutex<bool> = Mutex::new(false);

/// A fault's figures.
#[derive(Debug, Clone)]
pub struct FaultReport {
    /// What was done, e.g. "kill -9 msg_server-1".
    pub fault: String,
    /// The load it ran under.
    pub load: String,
    /// The counts.
    pub verdict: Verdict,
    /// Anything else measured (reconnect times, exit codes, ...).
    pub notes: Vec<String>,
}

impl FaultReport {
    /// A report for `fault` under `load`.
    pub fn new(fault: impl Into<String>, load: impl Into<String>, verdict: &Verdict) -> Self {
        FaultReport {
            fault: fault.into(),
            load: load.into(),
            verdict: verdict.clone(),
            notes: Vec::new(),
        }
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The table row.
    pub fn row(&self) -> String {
        let v = &self.verdict;
        format!(
            "| {} | {} | {} | {} | {} ({} + {}) | {} | {} | {} | {} |",
            self.fault,
            self.load,
            v.sent,
            v.acked,
            v.delivered(),
            v.live,
            v.synced,
            v.lost,
            v.false_acks,
            v.duplicates,
            self.notes.join("; ")
        )
    }

    /// Prints the row and appends it to `target/e2e-faults.md`.
    pub fn publish(&self) {
        let row = self.row();
        println!("E2E-FAULT {row}");
        let Some(dir) = crate::bins::target_dir() else {
            return;
        };
        let path = dir.join("e2e-faults.md");
        let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
        let file = if *started {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
        } else {
            std::fs::File::create(&path)
        };
        let Ok(mut f) = file else { return };
        if !*started {
            let _ = f.write_all(HEADER.as_bytes());
            *started = true;
        }
        let _ = writeln!(f, "{row}");
    }
}

/// `1.234 s` / `87 ms`.
pub fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
