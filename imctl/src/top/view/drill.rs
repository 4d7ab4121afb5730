//! Drill-downs: the connections of one server with its top talkers, and where a user is.

use std::collections::BTreeMap;
use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::{age, size, title_style};
use crate::cli::client_type_name;
use crate::top::app::ViewState;
use crate::top::state::State;

/// Users shown in the top-talkers list.
const TALKERS: usize = 10;

fn message(frame: &mut Frame, area: Rect, title: String, text: String) {
    let block = Block::bordered().title(Span::styled(title, title_style()));
    frame.render_widget(Paragraph::new(text).block(block), area);
}

/// Connections of server `index` (busiest first, as the server orders them) beside its top
/// talkers (users with the most messages in + out).
pub fn conns(frame: &mut Frame, area: Rect, state: &State, view: &ViewState, index: usize) {
    let name = state
        .servers
        .get(index)
        .map(|s| s.name())
        .unwrap_or_default();
    let detail = state.conns.as_ref().filter(|c| c.server == index);
    let rsp = match detail.map(|d| &d.result) {
        None => {
            return message(
                frame,
                area,
                format!(" connections of {name} "),
                "asking...".into(),
            );
        }
        Some(Err(e)) => {
            return message(
                frame,
                area,
                format!(" connections of {name} "),
                format!("no answer: {e}"),
            );
        }
        Some(Ok(r)) => r,
    };
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(29)]).areas(area);
    let header = Row::new([
        "CONN", "USER", "CLIENT", "PEER", "AGE", "RECV", "SENT", "MSG IN", "OUT", "QUEUE", "UNACK",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = rsp.conns.iter().map(|c| {
        Row::new(vec![
            Cell::from(c.conn_id().to_string()),
            Cell::from(match c.user_id() {
                0 => "-".to_owned(),
                u => u.to_string(),
            }),
            Cell::from(client_type_name(c.client_type())),
            Cell::from(c.peer_addr().to_owned()),
            Cell::from(age(Duration::from_millis(c.age_ms()))),
            Cell::from(size(c.bytes_in())),
            Cell::from(size(c.bytes_out())),
            Cell::from(c.msgs_in().to_string()),
            Cell::from(c.msgs_out().to_string()),
            Cell::from(c.queue_depth().to_string()),
            Cell::from(c.pending_acks.map_or("-".into(), |p| p.to_string())),
        ])
    });
    // PEER fits an IPv4 address with its port; the rest fit their values at demo scale.
    let widths = [
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(21),
        Constraint::Length(3),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(5),
    ];
    let title = format!(
        " connections of {name} · {} of {} · busiest first · UNACK: deliveries not acked ",
        rsp.conns.len(),
        rsp.total()
    );
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(Span::styled(title, title_style())))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("›")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let selected = (!rsp.conns.is_empty()).then(|| view.conn_row.min(rsp.conns.len() - 1));
    let mut ts = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, left, &mut ts);

    let mut by_user: BTreeMap<u32, (u64, u64, u32)> = BTreeMap::new();
    for c in rsp.conns.iter().filter(|c| c.user_id() != 0) {
        let e = by_user.entry(c.user_id()).or_default();
        e.0 += c.msgs_in();
        e.1 += c.msgs_out();
        e.2 += 1;
    }
    let mut talkers: Vec<_> = by_user.into_iter().collect();
    talkers.sort_by_key(|(u, (i, o, _))| (std::cmp::Reverse(i + o), *u));
    let mut lines = vec![Line::styled(
        format!(" {:<8}{:>7}{:>7}{:>4}", "USER", "IN", "OUT", "CON"),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    lines.extend(
        talkers
            .into_iter()
            .take(TALKERS)
            .map(|(u, (i, o, n))| Line::raw(format!(" {u:<8}{i:>7}{o:>7}{n:>4}"))),
    );
    let block = Block::bordered().title(Span::styled(" top talkers (msgs) ", title_style()));
    frame.render_widget(Paragraph::new(lines).block(block), right);
}

/// Where user `user` is connected: route_server's entry, then the user's connections as the
/// msg_servers list them.
pub fn user(frame: &mut Frame, area: Rect, state: &State, user: u32) {
    let title = format!(" user {user} ");
    let located = state.located.as_ref().filter(|l| l.user_id == user);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut text: Vec<Line> = match located.map(|l| &l.result) {
        None => vec![Line::raw("asking route_server and the msg_servers...")],
        Some(Err(e)) => vec![Line::styled(
            format!("route_server: no answer: {e}"),
            Style::default().fg(Color::Red),
        )],
        Some(Ok(None)) => vec![Line::raw(format!(
            "route_server: user {user} is not connected"
        ))],
        Some(Ok(Some(entry))) => {
            let mut lines = vec![
                Line::raw(format!(
                    "route_server: wire presence {} (PC clients only, as stock clients see it)",
                    if entry.wire_status() == 1 {
                        "online"
                    } else {
                        "offline"
                    }
                )),
                Line::styled(
                    format!(" {:<28}{:<10}{:>6}", "MSG_SERVER LINK", "CLIENT", "CONNS"),
                    bold,
                ),
            ];
            lines.extend(entry.locations.iter().map(|l| {
                Line::raw(format!(
                    " {:<28}{:<10}{:>6}",
                    l.msg_server(),
                    client_type_name(l.client_type() as u32),
                    l.connections()
                ))
            }));
            lines
        }
    };
    if let Some(l) = located {
        text.push(Line::raw(""));
        text.push(Line::raw("connections, as the msg_servers list them:"));
        text.push(Line::styled(
            format!(
                " {:<16}{:>6}  {:<9}{:<22}{:>5}{:>9}{:>9}{:>6}{:>8}",
                "MSG_SERVER", "CONN", "CLIENT", "PEER", "AGE", "MSGS IN", "OUT", "QUEUE", "PENDING"
            ),
            bold,
        ));
        if l.conns.is_empty() {
            text.push(Line::raw(" (none on the msg_servers that answer)"));
        }
        for (i, conns) in &l.conns {
            let server = state.servers.get(*i).map(|s| s.name()).unwrap_or_default();
            for c in conns {
                text.push(Line::raw(format!(
                    " {:<16}{:>6}  {:<9}{:<22}{:>5}{:>9}{:>9}{:>6}{:>8}",
                    server,
                    c.conn_id(),
                    client_type_name(c.client_type()),
                    c.peer_addr(),
                    age(Duration::from_millis(c.age_ms())),
                    c.msgs_in(),
                    c.msgs_out(),
                    c.queue_depth(),
                    c.pending_acks.map_or("-".into(), |p| p.to_string()),
                )));
            }
        }
    }
    let block = Block::bordered().title(Span::styled(title, title_style()));
    frame.render_widget(Paragraph::new(text).block(block), area);
}
