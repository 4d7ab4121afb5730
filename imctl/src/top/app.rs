//! View state (what the operator chose to look at) and key handling. `update` never does I/O:
//! it changes the view and returns an [`Action`] that the loop carries out.

use std::cmp::Ordering;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::state::{Kind, Server, State};

/// What the loop should do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave top.
    Quit,
    /// Fetch the connections of server `index` (drill-down).
    FetchConns(usize),
    /// Ask route_server where a user is connected.
    Locate(u32),
    /// Kick a user (confirmed).
    Kick(u32),
}

/// Which screen has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The dashboard with the msg_server table.
    Table,
    /// Typing the table filter (`/`).
    Filter,
    /// Connections of one server (Enter).
    Conns(usize),
    /// Typing a user id (`u`).
    UserPrompt,
    /// Where a user is connected.
    User(u32),
    /// "Kick user N? y/n".
    ConfirmKick(u32),
    /// The key list (`?`).
    Help,
}

/// msg_server table columns the table can be sorted by (`o` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Server name.
    Name,
    /// Open connections.
    Conns,
    /// Messages in per second.
    MsgsIn,
    /// Messages out per second.
    MsgsOut,
    /// Ack p99.
    AckP99,
    /// Outbound queue depth.
    Queue,
    /// CPU use.
    Cpu,
    /// Resident memory.
    Rss,
}

impl SortKey {
    const ORDER: [SortKey; 8] = [
        SortKey::Name,
        SortKey::Conns,
        SortKey::MsgsIn,
        SortKey::MsgsOut,
        SortKey::AckP99,
        SortKey::Queue,
        SortKey::Cpu,
        SortKey::Rss,
    ];

    /// Column title as shown.
    pub fn title(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Conns => "conns",
            SortKey::MsgsIn => "in/s",
            SortKey::MsgsOut => "out/s",
            SortKey::AckP99 => "ack p99",
            SortKey::Queue => "outq",
            SortKey::Cpu => "cpu",
            SortKey::Rss => "rss",
        }
    }

    fn next(self) -> SortKey {
        let i = Self::ORDER.iter().position(|k| *k == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }

    /// Numeric value of the column for `s` (names sort separately).
    fn value(self, s: &Server) -> f64 {
        let st = s.stats().filter(|_| s.is_up());
        let r = s.rates.as_ref();
        match self {
            SortKey::Name => 0.0,
            SortKey::Conns => s.connections() as f64,
            SortKey::MsgsIn => r.map_or(0.0, |r| r.msgs_in),
            SortKey::MsgsOut => r.map_or(0.0, |r| r.msgs_out),
            SortKey::AckP99 => st
                .and_then(|s| s.ack_latency.as_ref())
                .map_or(0.0, |l| l.p99_micros() as f64),
            SortKey::Queue => st.map_or(0.0, |s| s.outbound_queue_depth() as f64),
            SortKey::Cpu => r.map_or(0.0, |r| r.cpu_percent),
            SortKey::Rss => st.map_or(0.0, |s| s.rss_bytes() as f64),
        }
    }
}

/// Everything about the screen that is not data from the servers.
#[derive(Debug, Clone)]
pub struct ViewState {
    /// Which screen has the keyboard.
    pub mode: Mode,
    /// Where Help, the prompt and the kick confirmation go back to.
    pub back: Mode,
    /// Selected msg_server (index into `State::servers`).
    pub selected: Option<usize>,
    /// Selected row of the connection list.
    pub conn_row: usize,
    /// Sort column of the msg_server table.
    pub sort: SortKey,
    /// Sort descending (`o` picks it for numbers, `r` flips it).
    pub descending: bool,
    /// Only msg_servers whose name, address or state contains this (case-insensitive).
    pub filter: String,
    /// What is being typed at the `u` prompt.
    pub prompt: String,
    /// One line of feedback (kick result, errors), shown in the footer.
    pub notice: Option<String>,
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            mode: Mode::Table,
            back: Mode::Table,
            selected: None,
            conn_row: 0,
            sort: SortKey::Name,
            descending: false,
            filter: String::new(),
            prompt: String::new(),
            notice: None,
        }
    }
}

/// The msg_servers the table shows, filtered and sorted, as indexes into `state.servers`.
pub fn msg_rows(state: &State, view: &ViewState) -> Vec<usize> {
    let needle = view.filter.to_lowercase();
    let mut rows: Vec<usize> = state
        .of_kind(Kind::MsgServer)
        .filter(|(_, s)| {
            needle.is_empty()
                || s.name().to_lowercase().contains(&needle)
                || s.address().to_lowercase().contains(&needle)
                || s.state_name().contains(&needle)
        })
        .map(|(i, _)| i)
        .collect();
    let key = view.sort;
    rows.sort_by(|&a, &b| {
        let (sa, sb) = (&state.servers[a], &state.servers[b]);
        let o = match key {
            SortKey::Name => sa.name().cmp(&sb.name()),
            _ => key
                .value(sa)
                .partial_cmp(&key.value(sb))
                .unwrap_or(Ordering::Equal)
                .then_with(|| sa.name().cmp(&sb.name())),
        };
        if view.descending { o.reverse() } else { o }
    });
    rows
}

/// The user of the selected connection in the drill-down.
pub fn selected_conn_user(state: &State, view: &ViewState) -> Option<u32> {
    let c = state.conns.as_ref()?.result.as_ref().ok()?;
    c.conns
        .get(view.conn_row)
        .map(|c| c.user_id())
        .filter(|u| *u != 0)
}

impl ViewState {
    /// The selected msg_server, kept valid against the rows on screen.
    pub fn selection(&self, state: &State) -> Option<usize> {
        let rows = msg_rows(state, self);
        match self.selected {
            Some(s) if rows.contains(&s) => Some(s),
            _ => rows.first().copied(),
        }
    }

    /// Handles one terminal event.
    pub fn update(&mut self, event: &Event, state: &State) -> Action {
        match event {
            Event::Key(k) if k.kind != KeyEventKind::Release => self.key(*k, state),
            _ => Action::None,
        }
    }

    fn key(&mut self, k: KeyEvent, state: &State) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match self.mode {
            Mode::Help => {
                self.mode = self.back;
                Action::None
            }
            Mode::Filter => {
                match k.code {
                    KeyCode::Enter => self.mode = Mode::Table,
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Table;
                    }
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) => self.filter.push(c),
                    _ => {}
                }
                Action::None
            }
            Mode::UserPrompt => match k.code {
                KeyCode::Enter => match self.prompt.trim().parse::<u32>() {
                    Ok(user) if user > 0 => {
                        self.mode = Mode::User(user);
                        Action::Locate(user)
                    }
                    _ => {
                        self.notice = Some(format!("{:?} is not a user id", self.prompt));
                        self.mode = self.back;
                        Action::None
                    }
                },
                KeyCode::Esc => {
                    self.mode = self.back;
                    Action::None
                }
                KeyCode::Backspace => {
                    self.prompt.pop();
                    Action::None
                }
                KeyCode::Char(c) if c.is_ascii_digit() => {
                    self.prompt.push(c);
                    Action::None
                }
                _ => Action::None,
            },
            Mode::ConfirmKick(user) => match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.mode = self.back;
                    self.notice = Some(format!("kicking user {user}..."));
                    Action::Kick(user)
                }
                _ => {
                    self.mode = self.back;
                    self.notice = Some(format!("kick of user {user} cancelled"));
                    Action::None
                }
            },
            Mode::Table | Mode::Conns(_) | Mode::User(_) => self.browse(k, state),
        }
    }

    /// Keys of the three browsing screens.
    fn browse(&mut self, k: KeyEvent, state: &State) -> Action {
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => {
                self.back = self.mode;
                self.mode = Mode::Help;
            }
            KeyCode::Char('u') => {
                self.back = self.mode;
                self.prompt.clear();
                self.mode = Mode::UserPrompt;
            }
            KeyCode::Char('k') => {
                let user = match self.mode {
                    Mode::Conns(_) => selected_conn_user(state, self),
                    Mode::User(u) => Some(u),
                    _ => None,
                };
                match user {
                    Some(u) => {
                        self.back = self.mode;
                        self.mode = Mode::ConfirmKick(u);
                    }
                    None => {
                        self.notice = Some(
                            "no user selected: Enter on a msg_server and pick a connection, \
                             or `u` to find a user"
                                .into(),
                        );
                    }
                }
            }
            _ => {
                return match self.mode {
                    Mode::Table => self.table_key(k, state),
                    Mode::Conns(i) => self.conns_key(k, state, i),
                    _ => {
                        if matches!(k.code, KeyCode::Esc | KeyCode::Backspace) {
                            self.mode = Mode::Table;
                        }
                        Action::None
                    }
                };
            }
        }
        Action::None
    }

    fn table_key(&mut self, k: KeyEvent, state: &State) -> Action {
        match k.code {
            KeyCode::Esc => {
                self.notice = None;
            }
            KeyCode::Char('o') => {
                self.sort = self.sort.next();
                // Names read best A to Z; numbers biggest first.
                self.descending = self.sort != SortKey::Name;
            }
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Down | KeyCode::Char('j') => self.step(state, 1),
            KeyCode::Up => self.step(state, -1),
            KeyCode::Enter => {
                if let Some(i) = self.selection(state) {
                    self.selected = Some(i);
                    self.mode = Mode::Conns(i);
                    self.conn_row = 0;
                    return Action::FetchConns(i);
                }
            }
            _ => {}
        }
        Action::None
    }

    fn conns_key(&mut self, k: KeyEvent, state: &State, server: usize) -> Action {
        let rows = state
            .conns
            .as_ref()
            .filter(|c| c.server == server)
            .and_then(|c| c.result.as_ref().ok())
            .map_or(0, |c| c.conns.len());
        match k.code {
            KeyCode::Esc | KeyCode::Backspace => self.mode = Mode::Table,
            KeyCode::Down | KeyCode::Char('j') => {
                self.conn_row = (self.conn_row + 1).min(rows.saturating_sub(1));
            }
            KeyCode::Up => self.conn_row = self.conn_row.saturating_sub(1),
            KeyCode::Char('r') => return Action::FetchConns(server),
            _ => {}
        }
        Action::None
    }

    fn step(&mut self, state: &State, by: isize) {
        let rows = msg_rows(state, self);
        if rows.is_empty() {
            return;
        }
        let at = self
            .selection(state)
            .and_then(|s| rows.iter().position(|r| *r == s))
            .unwrap_or(0);
        let next = (at as isize + by).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[next]);
    }
}
