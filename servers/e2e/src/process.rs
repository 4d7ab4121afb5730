//! One child process: started with its arguments, output appended to a log file, killed
//! (SIGKILL) or terminated (SIGTERM) on purpose, started again with the same arguments, and
//! killed when dropped.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How long [`ChildProcess::terminate`] waits by default for a process to exit.
pub const EXIT_WAIT: Duration = Duration::from_secs(20);

/// A child process that can be stopped and started again.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ChildProcess {
    /// A process named `name` (for messages), not started yet; its output goes to `log`.
    pub fn new(name: &str, program: &Path, cwd: &Path, log: &Path) -> Self {
        ChildProcess {
            name: name.to_owned(),
            program: program.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: cwd.to_path_buf(),
            log: log.to_path_buf(),
            child: None,
            starts: 0,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, k: &str, v: &str) -> &mut Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the process (again); a previous instance must have been stopped.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.starts += 1;
        {
            use std::io::Write as _;
            let mut l = &log;
            let _ = writeln!(
                l,
                "===== im-e2e: start #{} of {} =====",
                self.starts, self.name
            );
        }
        let err = log.try_clone().context("duplicating a log file handle")?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status if the process already exited (and forgets it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        c.kill()
            .await
            .with_context(|| format!("killing {}", self.name))?;
        Ok(())
    }

    /// Sends `signal` (e.g. "TERM") with the `kill` command (no unsafe code here).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.name))?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} ({}) failed: {status}", self.name);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its status and how
    /// long the wait took. On timeout the process is killed and an error returned.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, Duration)> {
        let start = Instant::now();
        let Some(c) = self.child.as_mut() else {
            bail!("{} is not running", self.name);
        };
        match tokio::time::timeout(timeout, c.wait()).await {
            Ok(status) => {
                let status = status.with_context(|| format!("waiting for {}", self.name))?;
                self.child = None;
                Ok((status, start.elapsed()))
            }
            Err(_) => {
                let _ = self.kill9().await;
                bail!("{} did not exit within {timeout:?}; killed", self.name)
            }
        }
    }

    /// SIGTERM, then [`ChildProcess::wait_exit`].
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, Duration)> {
        self.signal("TERM")?;
        self.wait_exit(timeout).await
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
            // Reap it (briefly) so that a database's files are closed before its directory is
            // removed.
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Polls until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_port(port: u16, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
