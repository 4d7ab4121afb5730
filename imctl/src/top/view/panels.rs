//! The panels under the msg_server table: route_server, db_proxy, and the file / push / msfs
//! / http_msg_server services.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{age, micros, rate, size, state_style, title_style};
use crate::top::state::{Kind, Server, State};
use im_proto::admin::LinkState;

/// Draws route_server and db_proxy side by side, the services under them, in `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let services = service_lines(state);
    // Borders take 2 lines; the route and db panels keep at least 6.
    let services_height = (services.len() as u16 + 2).min(area.height.saturating_sub(6).max(3));
    let [top, bottom] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(services_height)]).areas(area);
    let [route, db] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
    panel(frame, route, " route_server ", route_lines(state));
    panel(frame, db, " db_proxy ", db_lines(state));
    panel(
        frame,
        bottom,
        " file_server · push_server · msfs · http_msg_server ",
        services,
    );
}

fn panel(frame: &mut Frame, area: Rect, title: &str, lines: Vec<Line<'static>>) {
    let block = Block::bordered().title(Span::styled(title.to_owned(), title_style()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// `name state` (with "down 12s: why" for a server that does not answer).
fn server_line(s: &Server, state: &State, extra: String) -> Line<'static> {
    let word = s.state_name();
    let mut spans = vec![
        Span::styled(s.name(), Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(" "),
    ];
    match s.down_for(state.now) {
        Some(d) => {
            spans.push(Span::styled(format!("down {}", age(d)), state_style(word)));
            if let crate::top::state::Health::Down { error, .. } = &s.health {
                spans.push(Span::styled(format!(" {error}"), dim()));
            }
        }
        None => {
            spans.push(Span::styled(word, state_style(word)));
            spans.push(Span::raw(format!("  {extra}")));
        }
    }
    Line::from(spans)
}

fn none_configured(kinds: &str) -> Vec<Line<'static>> {
    vec![Line::styled(format!("no {kinds} configured"), dim())]
}

/// Per route_server: users and links; then per msg_server link (as the msg_servers measure
/// it): PDUs/s each way and heartbeat RTT.
fn route_lines(state: &State) -> Vec<Line<'static>> {
    let routes: Vec<_> = state.of_kind(Kind::RouteServer).collect();
    if routes.is_empty() {
        return none_configured("route_server");
    }
    let mut lines = Vec::new();
    for (_, r) in routes {
        let extra = r
            .stats()
            .map(|st| {
                format!(
                    "users {}  links {}  queue {}",
                    st.table_size(),
                    r.connections(),
                    st.outbound_queue_depth()
                )
            })
            .unwrap_or_default();
        lines.push(server_line(r, state, extra));
        if !r.is_up() {
            continue;
        }
        for (_, m) in state.of_kind(Kind::MsgServer) {
            let Some(st) = m.stats().filter(|_| m.is_up()) else {
                continue;
            };
            for l in st.upstreams.iter().filter(|l| l.kind() == "route_server") {
                let same = state
                    .route_server_at(l.addr())
                    .is_some_and(|x| std::ptr::eq(x, r));
                if !same {
                    continue;
                }
                let key = format!("{}@{}", l.kind(), l.addr());
                let lr = m.rates.as_ref().and_then(|x| x.links.get(&key));
                let text = if l.state() == LinkState::Connected {
                    format!(
                        " {:<13} →{:>6} ←{:>6}  rtt {}",
                        m.name(),
                        rate(lr.map(|x| x.pdus_out)),
                        rate(lr.map(|x| x.pdus_in)),
                        micros(l.rtt_micros())
                    )
                } else {
                    format!(" {:<13} link {:?}", m.name(), l.state())
                };
                lines.push(Line::raw(text));
            }
        }
    }
    lines.push(Line::styled(" →/← PDUs/s msg_server to/from route", dim()));
    lines
}

/// Per db_proxy: storage, pool, latencies; then the busiest commands.
fn db_lines(state: &State) -> Vec<Line<'static>> {
    let dbs: Vec<_> = state.of_kind(Kind::DbProxyServer).collect();
    if dbs.is_empty() {
        return none_configured("db_proxy_server");
    }
    let mut lines = Vec::new();
    for (_, d) in dbs {
        let st = d.stats().cloned().unwrap_or_default();
        let storage = st.storage.clone().unwrap_or_default();
        let mut extra = format!("{}/{}", storage.backend(), storage.cache());
        if storage.pool_size() > 0 {
            extra.push_str(&format!(
                "  pool {}/{}",
                storage.pool_in_use(),
                storage.pool_size()
            ));
        }
        extra.push_str(&format!("  links {}", d.connections()));
        lines.push(server_line(d, state, extra));
        if !d.is_up() {
            continue;
        }
        let w = storage.write_latency.unwrap_or_default();
        let r = storage.read_latency.unwrap_or_default();
        let stored = d.rates.as_ref().map(|x| x.msgs_in);
        lines.push(Line::raw(format!(
            " write p50 {} p99 {}  read p99 {}  stored/s {}",
            micros(w.p50_micros()),
            micros(w.p99_micros()),
            micros(r.p99_micros()),
            rate(stored)
        )));
        if let Some(p) = d.rates.as_ref().and_then(|x| x.writer_busy_percent) {
            lines.push(Line::raw(format!(
                " writer busy {p:.0}%  queued writes {}",
                storage.write_queue()
            )));
        }
        lines.push(Line::styled(
            format!(
                " {:<26}{:>8}{:>8}{:>8}{:>7}",
                "COMMAND", "req/s", "p50", "p99", "err"
            ),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        let mut cmds: Vec<_> = st.commands.iter().collect();
        let rate_of = |name: &str| {
            d.rates
                .as_ref()
                .and_then(|x| x.commands.get(name))
                .map(|c| c.requests)
        };
        cmds.sort_by(|a, b| {
            let (ra, rb) = (
                rate_of(a.name()).unwrap_or(0.0),
                rate_of(b.name()).unwrap_or(0.0),
            );
            rb.partial_cmp(&ra)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.requests_total().cmp(&a.requests_total()))
        });
        for c in cmds.into_iter().take(8) {
            let lat = c.latency.unwrap_or_default();
            let name: String = c
                .name()
                .trim_start_matches("CID_")
                .chars()
                .take(25)
                .collect();
            lines.push(Line::raw(format!(
                " {:<26}{:>8}{:>8}{:>8}{:>7}",
                name,
                rate(rate_of(c.name())),
                micros(lat.p50_micros()),
                micros(lat.p99_micros()),
                c.errors_total()
            )));
        }
    }
    lines
}

/// The service figures of `s` as `label value` pairs (only those the server reports).
fn service_figures(s: &Server) -> Vec<String> {
    let f = s.service_figures();
    let mut out = Vec::new();
    if let Some(t) = f.transfers {
        out.push(format!("transfers {t:.0}"));
    }
    if let Some(b) = f.bytes_per_sec {
        // `size` shows nothing as "-"; here 0 is a measured value.
        out.push(format!(
            "bytes/s {}",
            if b < 1.0 { "0".into() } else { size(b as u64) }
        ));
    }
    if f.pushes_sent_per_sec.is_some() || f.pushes_failed_per_sec.is_some() {
        out.push(format!("sent/s {}", rate(f.pushes_sent_per_sec)));
        out.push(format!("failed/s {}", rate(f.pushes_failed_per_sec)));
    }
    if let Some(r) = f.requests_per_sec {
        out.push(format!("req/s {}", rate(Some(r))));
    }
    out.push(format!("queue {}", f.queue));
    out
}

fn service_lines(state: &State) -> Vec<Line<'static>> {
    let kinds = [
        Kind::FileServer,
        Kind::PushServer,
        Kind::Msfs,
        Kind::HttpMsgServer,
    ];
    let mut lines = Vec::new();
    for kind in kinds {
        for (_, s) in state.of_kind(kind) {
            lines.push(server_line(s, state, service_figures(s).join("  ")));
        }
    }
    if lines.is_empty() {
        return none_configured("file_server, push_server, msfs or http_msg_server");
    }
    lines
}
