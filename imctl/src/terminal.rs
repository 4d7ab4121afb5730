//! Passwords: from a flag, `IM_PASSWORD`, or typed on the terminal without echo.

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers, read};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode};

/// Restores the terminal however the prompt ends.
struct RawMode;

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
    }
}

/// The password given by `flag`, else `IM_PASSWORD`, else asked with `prompt` on the terminal
/// (blocking: call it from `spawn_blocking` or before the work starts).
pub fn password(flag: Option<&str>, prompt: &str) -> anyhow::Result<String> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    if let Ok(p) = std::env::var("IM_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password: pass --password or set IM_PASSWORD (standard input is not a \
             terminal to ask on)"
        );
    }
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    enable_raw_mode().context("switching the terminal to raw mode")?;
    let guard = RawMode;
    let mut typed = String::new();
    loop {
        let Event::Key(key) = read().context("reading the terminal")? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match key.code {
            KeyCode::Enter => break,
            KeyCode::Backspace => {
                typed.pop();
            }
            KeyCode::Char('c' | 'd') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                drop(guard);
                eprintln!();
                bail!("no password typed");
            }
            KeyCode::Char(c) => typed.push(c),
            _ => {}
        }
    }
    drop(guard);
    eprintln!();
    Ok(typed)
}

/// [`password`] off the async threads.
pub async fn ask_password(flag: Option<String>, prompt: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || password(flag.as_deref(), &prompt))
        .await
        .context("password prompt task")?
}
