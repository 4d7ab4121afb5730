//! The header: the verdict, the cluster's single points (login_server, route_servers,
//! db_proxy) and the totals.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Padding, Paragraph};

use super::{micros, rate, title_style};
use crate::top::state::{Kind, State};
use crate::top::verdict::{Level, verdict};

/// Lines the header takes, borders included.
pub const HEIGHT: u16 = 6;

fn level_style(level: Level) -> Style {
    let bg = match level {
        Level::Ok => Color::Green,
        Level::Busy => Color::Yellow,
        Level::Degraded => Color::LightRed,
        Level::Critical => Color::Red,
    };
    Style::default()
        .fg(Color::Black)
        .bg(bg)
        .add_modifier(Modifier::BOLD)
}

/// `n/m up` for one kind, or `None` when none is configured.
fn up_of(state: &State, kind: Kind) -> Option<(usize, usize)> {
    let all: Vec<_> = state.of_kind(kind).collect();
    (!all.is_empty()).then(|| (all.iter().filter(|(_, s)| s.is_up()).count(), all.len()))
}

fn login_part(state: &State) -> String {
    let Some((up, n)) = up_of(state, Kind::LoginServer) else {
        return "login_server: not configured".into();
    };
    let mut s = format!("login {up}/{n} up");
    let assign: f64 = state
        .of_kind(Kind::LoginServer)
        .filter_map(|(_, s)| s.rates.as_ref().map(|r| r.logins))
        .sum();
    if up > 0 {
        s.push_str(&format!(" · {} assign/s", rate(Some(assign))));
    }
    let list = state
        .of_kind(Kind::LoginServer)
        .filter(|(_, s)| s.is_up())
        .find_map(|(_, s)| s.last.as_ref()?.polled.msg_servers.as_ref());
    if let Some(list) = list {
        let draining = list.servers.iter().filter(|m| m.draining()).count();
        s.push_str(&format!(" · {} msg_servers", list.servers.len()));
        if draining > 0 {
            s.push_str(&format!(" ({draining} draining)"));
        }
    }
    s
}

fn route_part(state: &State) -> String {
    let Some((up, n)) = up_of(state, Kind::RouteServer) else {
        return "route_server: not configured".into();
    };
    let links: u64 = state
        .of_kind(Kind::RouteServer)
        .filter(|(_, s)| s.is_up())
        .map(|(_, s)| s.connections())
        .sum();
    // Every msg_server and http_msg_server links to every route_server.
    let linking =
        state.of_kind(Kind::MsgServer).count() + state.of_kind(Kind::HttpMsgServer).count();
    format!("route {up}/{n} up · links {links}/{}", linking * up)
}

fn db_part(state: &State) -> String {
    let Some((up, n)) = up_of(state, Kind::DbProxyServer) else {
        return "db_proxy: not configured".into();
    };
    let mut s = format!("db_proxy {up}/{n} up");
    let storages: Vec<_> = state
        .of_kind(Kind::DbProxyServer)
        .filter(|(_, s)| s.is_up())
        .filter_map(|(_, s)| s.stats()?.storage.as_ref())
        .collect();
    if let Some(first) = storages.first() {
        s.push_str(&format!(" · {}/{}", first.backend(), first.cache()));
    }
    let (used, size) = storages.iter().fold((0u32, 0u32), |(u, t), st| {
        (u + st.pool_in_use(), t + st.pool_size())
    });
    if size > 0 {
        s.push_str(&format!(" · pool {used}/{size}"));
    }
    let p99 = storages
        .iter()
        .filter_map(|st| st.write_latency.as_ref().map(|l| l.p99_micros()))
        .max()
        .filter(|p| *p > 0);
    if let Some(p99) = p99 {
        s.push_str(&format!(" · store p99 {}", micros(p99)));
    }
    let stored: Option<f64> = state
        .of_kind(Kind::DbProxyServer)
        .filter_map(|(_, s)| s.rates.as_ref().map(|r| r.msgs_in))
        .reduce(|a, b| a + b);
    if stored.is_some() {
        s.push_str(&format!(" · stored/s {}", rate(stored)));
    }
    s
}

/// Draws the header in `area`.
pub fn render(frame: &mut Frame, area: Rect, state: &State) {
    let v = verdict(state);
    let t = state.totals();
    let up = state.servers.iter().filter(|s| s.is_up()).count();
    let sep = Span::styled(" │ ", Style::default().fg(Color::DarkGray));
    let lines = vec![
        Line::from(vec![
            Span::styled(format!(" {} ", v.level.word()), level_style(v.level)),
            Span::raw(format!(" {}", v.reasons.join("; "))),
        ]),
        Line::from(vec![
            Span::raw(login_part(state)),
            sep.clone(),
            Span::raw(route_part(state)),
        ]),
        Line::raw(db_part(state)),
        Line::from(vec![
            Span::raw(format!(
                "users online {}",
                t.users_online.map_or("-".into(), |u| u.to_string())
            )),
            Span::raw(format!(
                " · connections PC {} mobile {}",
                t.users_pc, t.users_mobile
            )),
            sep.clone(),
            Span::raw(format!(
                "msgs/s in {} out {}",
                rate(Some(t.msgs_in_per_sec)),
                rate(Some(t.msgs_out_per_sec))
            )),
            sep.clone(),
            Span::raw(format!("logins/s {}", rate(Some(t.logins_per_sec)))),
            sep,
            Span::raw(format!("servers {up}/{} up", state.servers.len())),
        ]),
    ];
    let title = format!(
        " imctl top · every {} ",
        humanize_interval(state.interval.as_millis())
    );
    let block = Block::bordered()
        .title(Span::styled(title, title_style()))
        .padding(Padding::horizontal(1));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn humanize_interval(ms: u128) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
