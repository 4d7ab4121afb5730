//! Boxes drawn over the screen: the key list and the kick confirmation.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::title_style;

/// Every key, as `?` shows them.
pub const KEYS: &[(&str, &str)] = &[
    (
        "↑ ↓  j",
        "select a msg_server (a connection in the drill-down)",
    ),
    (
        "Enter",
        "connections of the selected msg_server, with top talkers",
    ),
    ("o", "sort by the next column"),
    ("r", "reverse the order (drill-down: refresh)"),
    ("/", "filter msg_servers by name, address or state"),
    ("u", "find a user: where they are connected"),
    ("k", "kick the selected user (asks first)"),
    ("Esc", "back / clear the message"),
    ("?", "this list"),
    ("q  Ctrl-C", "quit"),
];

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(v);
    h
}

/// The key list.
pub fn help(frame: &mut Frame, area: Rect) {
    let key = Style::default().add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<11}"), key),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " any key closes this",
        Style::default().fg(Color::DarkGray),
    ));
    let box_area = centered(area, 74, lines.len() as u16 + 2);
    frame.render_widget(Clear, box_area);
    let block = Block::bordered().title(Span::styled(" keys ", title_style()));
    frame.render_widget(Paragraph::new(lines).block(block), box_area);
}

/// "Kick user N? y/n".
pub fn confirm_kick(frame: &mut Frame, area: Rect, user: u32) {
    let lines = vec![
        Line::raw(format!(
            " Kick user {user} from every device, on every msg_server?"
        )),
        Line::raw(" Their clients are told \"logged in elsewhere\" and disconnected."),
        Line::raw(""),
        Line::from(vec![
            Span::styled(" y", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(" kick   "),
            Span::styled(
                "any other key",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(" cancel"),
        ]),
    ];
    let box_area = centered(area, 70, lines.len() as u16 + 2);
    frame.render_widget(Clear, box_area);
    let block = Block::bordered()
        .title(Span::styled(" kick ", title_style()))
        .border_style(Style::default().fg(Color::Red));
    frame.render_widget(Paragraph::new(lines).block(block), box_area);
}
