//! Rendering: a pure function of the servers' state and the view state. Nothing here changes
//! either, so a screen is fully determined by the two (the snapshot tests rely on it).

mod drill;
mod header;
mod msg_table;
mod panels;
mod popup;

use std::collections::VecDeque;
use std::time::Duration;

use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{Mode, ViewState, msg_rows};
use super::state::State;

/// Draws the whole screen.
pub fn render(frame: &mut Frame, state: &State, view: &ViewState) {
    let [top, body, footer] = Layout::vertical([
        Constraint::Length(header::HEIGHT),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    header::render(frame, top, state);
    match view.mode {
        Mode::Conns(i) => drill::conns(frame, body, state, view, i),
        Mode::User(u) => drill::user(frame, body, state, u),
        Mode::Help | Mode::ConfirmKick(_) | Mode::UserPrompt => match view.back {
            Mode::Conns(i) => drill::conns(frame, body, state, view, i),
            Mode::User(u) => drill::user(frame, body, state, u),
            _ => dashboard(frame, body, state, view),
        },
        Mode::Table | Mode::Filter => dashboard(frame, body, state, view),
    }
    render_footer(frame, footer, view);
    match view.mode {
        Mode::Help => popup::help(frame, frame.area()),
        Mode::ConfirmKick(u) => popup::confirm_kick(frame, frame.area(), u),
        _ => {}
    }
}

/// msg_server table above the route_server, db_proxy and service panels.
fn dashboard(frame: &mut Frame, area: Rect, state: &State, view: &ViewState) {
    let rows = msg_rows(state, view).len() as u16;
    // Table borders and header take 3 lines; leave the panels at least 8.
    let table_height = (rows + 3).max(5).min(area.height.saturating_sub(8).max(5));
    let [table, panels] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(area);
    msg_table::render(frame, table, state, view);
    panels::render(frame, panels, state);
}

fn render_footer(frame: &mut Frame, area: Rect, view: &ViewState) {
    let key = Style::default().add_modifier(Modifier::BOLD);
    let line = match view.mode {
        Mode::Filter => Line::from(vec![
            Span::styled("filter: ", key),
            Span::raw(format!("{}_", view.filter)),
            Span::raw("   Enter keep  Esc clear"),
        ]),
        Mode::UserPrompt => Line::from(vec![
            Span::styled("user id: ", key),
            Span::raw(format!("{}_", view.prompt)),
            Span::raw("   Enter locate  Esc cancel"),
        ]),
        _ => match &view.notice {
            Some(n) => Line::from(Span::styled(n.clone(), Style::default().fg(Color::Yellow))),
            None => {
                let hints: &[(&str, &str)] = match view.mode {
                    Mode::Conns(_) => &[
                        ("Esc", "back"),
                        ("↑↓", "select"),
                        ("k", "kick user"),
                        ("r", "refresh"),
                        ("u", "find user"),
                        ("?", "keys"),
                        ("q", "quit"),
                    ],
                    Mode::User(_) => &[
                        ("Esc", "back"),
                        ("k", "kick user"),
                        ("u", "find user"),
                        ("?", "keys"),
                        ("q", "quit"),
                    ],
                    _ => &[
                        ("↑↓", "select"),
                        ("Enter", "connections"),
                        ("o", "sort"),
                        ("r", "reverse"),
                        ("/", "filter"),
                        ("u", "find user"),
                        ("?", "keys"),
                        ("q", "quit"),
                    ],
                };
                Line::from(
                    hints
                        .iter()
                        .flat_map(|(k, what)| {
                            [Span::styled(*k, key), Span::raw(format!(" {what}  "))]
                        })
                        .collect::<Vec<_>>(),
                )
            }
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// Renders one frame of `state` and `view` at `width` x `height` and returns it as text, one
/// line per row, trailing blanks trimmed (`--once` without `--json`, the snapshot tests and the
/// README picture).
pub fn capture(state: &State, view: &ViewState, width: u16, height: u16) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(never) => match never {},
    };
    if let Err(never) = terminal.draw(|f| render(f, state, view)) {
        match never {}
    }
    buffer_text(terminal.backend().buffer())
}

/// The symbols of a buffer as lines of text, trailing blanks trimmed.
pub fn buffer_text(buf: &ratatui::buffer::Buffer) -> String {
    let width = buf.area.width as usize;
    let mut out = String::new();
    for row in buf.content.chunks(width.max(1)) {
        let mut line = String::new();
        let mut skip = 0usize;
        for cell in row {
            // A wide character occupies two cells; the second holds an empty symbol.
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let sym = cell.symbol();
            line.push_str(sym);
            skip = unicode_cells(sym).saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn unicode_cells(sym: &str) -> usize {
    // CJK and other wide characters take two cells; everything we draw ourselves is narrow.
    sym.chars()
        .map(|c| {
            if (c as u32) >= 0x1100 && is_wide(c) {
                2
            } else {
                1
            }
        })
        .sum::<usize>()
        .max(1)
}

fn is_wide(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF |
        0x4E00..=0x9FFF | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF |
        0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6)
}

/// `12.3`, `1.2k`, `3.4M` per second; `-` when unknown.
pub fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 999_950.0 => format!("{:.1}M", v / 1e6),
        Some(v) if v >= 9_999.5 => format!("{:.1}k", v / 1e3),
        Some(v) if v >= 99.95 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// A latency in microseconds: `850µs`, `2.1ms`, `1.20s`; `-` for 0 (nothing measured).
pub fn micros(us: u64) -> String {
    match us {
        0 => "-".into(),
        1..1000 => format!("{us}µs"),
        1000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// A size in bytes, short: `812K`, `35.2M`, `1.1G`.
pub fn size(n: u64) -> String {
    match n {
        0 => "-".into(),
        1..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{}K", n / 1024),
        1_048_576..1_073_741_824 => format!("{:.1}M", n as f64 / 1_048_576.0),
        _ => format!("{:.1}G", n as f64 / 1_073_741_824.0),
    }
}

/// `42s`, `5m`, `3h`, `2d`: an age, as coarse as a glance needs.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a one-line bar chart scaled to their maximum; zero is the
/// lowest bar so a quiet server still shows a baseline.
pub fn spark(values: &VecDeque<f64>, width: usize) -> String {
    let skip = values.len().saturating_sub(width);
    let shown: Vec<f64> = values.iter().skip(skip).copied().collect();
    let max = shown.iter().copied().fold(0.0f64, f64::max);
    shown
        .iter()
        .map(|&v| {
            if max <= 0.0 || v <= 0.0 {
                BARS[0]
            } else {
                let i = ((v / max) * 7.0).ceil() as usize;
                BARS[i.clamp(1, 7)]
            }
        })
        .collect()
}

/// Style of a server state word.
pub fn state_style(state: &str) -> Style {
    match state {
        "up" => Style::default().fg(Color::Green),
        "draining" | "stopping" | "pending" => Style::default().fg(Color::Yellow),
        _ => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// Style of a panel title.
pub fn title_style() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(0.0)), "0.0");
        assert_eq!(rate(Some(12.34)), "12.3");
        assert_eq!(rate(Some(250.0)), "250");
        assert_eq!(rate(Some(12_345.0)), "12.3k");
        assert_eq!(rate(Some(2_500_000.0)), "2.5M");
        assert_eq!(micros(0), "-");
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(2_100), "2.1ms");
        assert_eq!(micros(1_200_000), "1.20s");
        assert_eq!(size(36_909_875), "35.2M");
        assert_eq!(size(831_488), "812K");
        assert_eq!(age(Duration::from_secs(75)), "1m");
    }

    #[test]
    fn sparkline_scales_to_the_window_max() {
        let v: VecDeque<f64> = [0.0, 1.0, 2.0, 4.0, 8.0].into_iter().collect();
        assert_eq!(spark(&v, 5), "▁▂▃▅█");
        assert_eq!(spark(&v, 2), "▅█");
        let quiet: VecDeque<f64> = [0.0, 0.0].into_iter().collect();
        assert_eq!(spark(&quiet, 8), "▁▁");
    }
}
