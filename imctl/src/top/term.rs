//! The real terminal: raw mode and the alternate screen while top runs, restored by a drop
//! guard on every way out (return, `?`, panic unwinding) and by a panic hook (which runs
//! before unwinding, so the panic message lands on a sane screen).

use std::io::{Stdout, stdout};
use std::sync::Once;

use anyhow::Context;
use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal top draws on.
pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct TerminalGuard {
    _private: (),
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal in raw mode on the alternate screen and installs the panic hook.
pub fn enter() -> anyhow::Result<(Tui, TerminalGuard)> {
    install_panic_hook();
    enable_raw_mode().context("switching the terminal to raw mode")?;
    // From here on the guard undoes whatever succeeded.
    let guard = TerminalGuard { _private: () };
    execute!(stdout(), EnterAlternateScreen, Hide).context("entering the alternate screen")?;
    let terminal =
        Terminal::new(CrosstermBackend::new(stdout())).context("initialising the terminal")?;
    Ok((terminal, guard))
}

/// Leaves raw mode and the alternate screen; harmless when they were never entered.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, Show);
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
