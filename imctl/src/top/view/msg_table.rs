//! The msg_server table: one row per msg_server, sortable and filterable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

use super::{age, micros, rate, size, spark, state_style, title_style};
use crate::top::app::{Mode, SortKey, ViewState, msg_rows};
use crate::top::state::{Server, State};

const HEADERS: [&str; 14] = [
    "NAME", "ADDRESS", "STATE", "PC/MOB", "LOGIN/s", "IN/s", "OUT/s", "ROUTE/s", "ACK p99", "OUTQ",
    "SLOW", "RSS", "CPU", "MSGS/s",
];

const WIDTHS: [Constraint; 14] = [
    Constraint::Length(14),
    Constraint::Length(15),
    Constraint::Length(8),
    Constraint::Length(7),
    Constraint::Length(7),
    Constraint::Length(6),
    Constraint::Length(6),
    Constraint::Length(7),
    Constraint::Length(7),
    Constraint::Length(5),
    Constraint::Length(4),
    Constraint::Length(6),
    Constraint::Length(4),
    Constraint::Fill(1),
];

/// Column of each sort key, to mark it in the header.
fn sort_column(k: SortKey) -> usize {
    match k {
        SortKey::Name => 0,
        SortKey::Conns => 3,
        SortKey::MsgsIn => 5,
        SortKey::MsgsOut => 6,
        SortKey::AckP99 => 8,
        SortKey::Queue => 9,
        SortKey::Cpu => 12,
        SortKey::Rss => 11,
    }
}

fn row<'a>(s: &'a Server, state: &State, spark_width: usize) -> Row<'a> {
    let name = s.name();
    let state_word = s.state_name();
    if !s.is_up() {
        let what = match s.down_for(state.now) {
            Some(d) => format!("down {}", age(d)),
            None => state_word.to_owned(),
        };
        let mut cells = vec![
            Cell::from(name),
            Cell::from(s.address()),
            Cell::from(Span::styled(what, state_style(state_word))),
        ];
        cells.extend((3..13).map(|_| Cell::from("-")));
        cells.push(Cell::from(spark(&s.history, spark_width)));
        return Row::new(cells).style(Style::default().fg(Color::DarkGray));
    }
    let st = s.stats().cloned().unwrap_or_default();
    let r = s.rates.as_ref();
    let (pc, mobile) = s.clients();
    let slow = st.slow_consumers();
    let slow_cell = if slow > 0 {
        Cell::from(Span::styled(
            slow.to_string(),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        ))
    } else {
        Cell::from("0")
    };
    Row::new(vec![
        Cell::from(name),
        Cell::from(s.address()),
        Cell::from(Span::styled(state_word, state_style(state_word))),
        Cell::from(format!("{pc}/{mobile}")),
        Cell::from(rate(r.map(|r| r.logins))),
        Cell::from(rate(r.map(|r| r.msgs_in))),
        Cell::from(rate(r.map(|r| r.msgs_out))),
        Cell::from(rate(r.map(|r| r.routed_out + r.routed_in))),
        Cell::from(micros(
            st.ack_latency.as_ref().map_or(0, |l| l.p99_micros()),
        )),
        Cell::from(st.outbound_queue_depth().to_string()),
        slow_cell,
        Cell::from(size(st.rss_bytes())),
        Cell::from(r.map_or("-".into(), |r| format!("{:.0}%", r.cpu_percent))),
        Cell::from(Span::styled(
            spark(&s.history, spark_width),
            Style::default().fg(Color::Cyan),
        )),
    ])
}

/// Draws the table in `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State, view: &ViewState) {
    let rows = msg_rows(state, view);
    let fixed: u16 = WIDTHS[..13]
        .iter()
        .map(|c| match c {
            Constraint::Length(n) => *n + 1,
            _ => 0,
        })
        .sum();
    // Borders and the highlight column take 4 cells.
    let spark_width = area.width.saturating_sub(fixed + 4).max(1) as usize;
    let marked = sort_column(view.sort);
    let arrow = if view.descending { "▼" } else { "▲" };
    let header = Row::new(HEADERS.iter().enumerate().map(|(i, h)| {
        if i == marked {
            Cell::from(format!("{h}{arrow}"))
        } else {
            Cell::from(*h)
        }
    }))
    .style(Style::default().add_modifier(Modifier::BOLD));
    let total = state.of_kind(crate::top::state::Kind::MsgServer).count();
    let mut title = vec![Span::styled(" msg_servers ", title_style())];
    title.push(Span::raw(format!(
        "{}/{} shown · sort {} {} ",
        rows.len(),
        total,
        view.sort.title(),
        arrow
    )));
    if !view.filter.is_empty() || view.mode == Mode::Filter {
        title.push(Span::styled(
            format!("· filter \"{}\" ", view.filter),
            Style::default().fg(Color::Yellow),
        ));
    }
    let selected = view
        .selection(state)
        .and_then(|s| rows.iter().position(|r| *r == s));
    let table = Table::new(
        rows.iter()
            .map(|&i| row(&state.servers[i], state, spark_width)),
        WIDTHS,
    )
    .header(header)
    .block(Block::bordered().title(Line::from(title)))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("›")
    .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut ts = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut ts);
}
