//! `imctl top`: the live cluster dashboard.
//!
//! Three parts kept apart (as tokio-console does):
//! - [`state`]: what the servers said (stats snapshots, rates, up/down) and [`verdict`];
//! - [`app`]: the view state (selection, sort, filter, mode) and key handling, which returns
//!   an [`app::Action`] instead of doing I/O;
//! - this module: the loop. Pollers ([`poll`]) feed snapshots over a channel; the loop waits
//!   on `select! { biased; input, snapshots, drill-down answers, tick }`, applies what came,
//!   carries out actions, and draws once ([`view::render`], a pure function).
//!
//! `--once` polls every server twice, `--interval` apart (so rates are filled; `--interval 0`
//! polls once and leaves them out), prints the screen as text or, with `--json`, a
//! [`snapshot::Snapshot`], and exits 2 when the verdict is critical, 0 otherwise.

pub mod app;
pub mod poll;
pub mod rates;
pub mod snapshot;
pub mod state;
pub mod term;
pub mod verdict;
pub mod view;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use crossterm::event::Event;
use futures_util::future::join_all;
use futures_util::{Stream, StreamExt};
use im_proto::admin::{AdminResult, ImAdminConnListReq, ImAdminLocateUserReq};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use self::app::{Action, Mode, ViewState};
use self::poll::Pollers;
use self::state::{ConnsDetail, Detail, Endpoint, Kind, Located, PollUpdate, State};
use self::verdict::Level;
use crate::admin::{AdminClient, check};
use crate::config::Config;

/// Connections fetched for the drill-down: a screenful and then some.
const CONN_PAGE: u32 = 200;
/// Shortest interval the live screen accepts: faster polling measures imctl, not the cluster.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `imctl top`
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between polls (fractions allowed, e.g. 0.5).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// Poll once (twice, --interval apart, for rates), print the screen (or --json), exit:
    /// 2 when the verdict is critical, else 0.
    #[arg(long)]
    pub once: bool,
    /// Screen size for --once without --json, as WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "120x40", value_parser = parse_size)]
    pub size: (u16, u16),
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 1 or 0.5)"))?;
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{s} s: expected 0 to 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT, e.g. 120x40"))?;
    match (w.parse::<u16>(), h.parse::<u16>()) {
        (Ok(w @ 40..), Ok(h @ 12..)) => Ok((w, h)),
        _ => Err(format!("{s:?}: expected WIDTHxHEIGHT of at least 40x12")),
    }
}

/// The servers to watch, in config order.
pub fn endpoints(config: &Config) -> anyhow::Result<Vec<Endpoint>> {
    let all: Vec<Endpoint> = config
        .all_endpoints()
        .into_iter()
        .filter_map(|(kind, admin_addr)| {
            Some(Endpoint {
                kind: Kind::from_name(&kind)?,
                admin_addr,
            })
        })
        .collect();
    if all.is_empty() {
        bail!("no admin addresses configured (see `imctl --help`, section --admin)");
    }
    Ok(all)
}

/// `imctl top`.
pub async fn run(config: &Config, args: &TopArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let endpoints = endpoints(config)?;
    let token = config.require_token()?;
    if args.once {
        return once(&endpoints, token, args, as_json).await;
    }
    if as_json {
        bail!("--json needs --once: the live screen is for people, --once --json for scripts");
    }
    if args.interval < MIN_INTERVAL {
        bail!(
            "--interval {:?} is too short for the live screen: at least {MIN_INTERVAL:?}",
            args.interval
        );
    }
    let (mut terminal, guard) = term::enter()?;
    let input = crossterm::event::EventStream::new();
    let result = run_loop(&mut terminal, input, config, args.interval).await;
    drop(guard);
    result.map(|_| ExitCode::SUCCESS)
}

/// Drill-down requests in flight, so that ticks do not pile them up.
#[derive(Debug, Default)]
struct InFlight {
    conns: bool,
}

/// The loop: runs until `q` (or the input stream ends) and returns the final state and view.
/// Generic over the backend and the input so tests drive it with a `TestBackend` and a
/// channel of key events.
pub async fn run_loop<B, I>(
    terminal: &mut Terminal<B>,
    mut input: I,
    config: &Config,
    interval: Duration,
) -> anyhow::Result<(State, ViewState)>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    I: Stream<Item = std::io::Result<Event>> + Unpin,
{
    let endpoints = endpoints(config)?;
    let token = config.require_token()?;
    let mut pollers = poll::spawn(&endpoints, token, interval);
    let mut state = State::new(endpoints, interval, Instant::now());
    let mut view = ViewState::default();
    let (detail_tx, mut details) = mpsc::channel::<Detail>(16);
    let mut in_flight = InFlight::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        terminal
            .draw(|f| view::render(f, &state, &view))
            .context("drawing the screen")?;
        let action = tokio::select! {
            biased;
            ev = input.next() => match ev {
                None => break,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                Some(Ok(ev)) => view.update(&ev, &state),
            },
            Some(u) = pollers.updates.recv() => {
                state.apply(u);
                // Answers arrive in bursts (every server at each interval): one draw for all.
                while let Ok(u) = pollers.updates.try_recv() {
                    state.apply(u);
                }
                Action::None
            }
            Some(d) = details.recv() => on_detail(&mut state, &mut view, &mut in_flight, d),
            _ = tick.tick() => {
                state.now = Instant::now();
                match drilled(&view) {
                    Some(i) => Action::FetchConns(i),
                    None => Action::None,
                }
            }
        };
        match action {
            Action::None => {}
            Action::Quit => break,
            Action::FetchConns(i) => {
                if !in_flight.conns {
                    in_flight.conns = true;
                    fetch_conns(&pollers, i, detail_tx.clone());
                }
            }
            Action::Locate(user) => locate(&pollers, &state, user, detail_tx.clone()),
            Action::Kick(user) => kick(config.clone(), user, detail_tx.clone()),
        }
    }
    Ok((state, view))
}

/// The server whose connections are on screen (also under a popup).
fn drilled(view: &ViewState) -> Option<usize> {
    match (view.mode, view.back) {
        (Mode::Conns(i), _) => Some(i),
        (Mode::Help | Mode::ConfirmKick(_) | Mode::UserPrompt, Mode::Conns(i)) => Some(i),
        _ => None,
    }
}

fn on_detail(state: &mut State, view: &mut ViewState, f: &mut InFlight, d: Detail) -> Action {
    let follow_up = match &d {
        Detail::Conns(_) => {
            f.conns = false;
            Action::None
        }
        Detail::Located(_) => Action::None,
        Detail::Kicked { user_id, result } => {
            view.notice = Some(match result {
                Ok(Some(n)) => format!("kicked {n} connection(s) of user {user_id}"),
                Ok(None) => format!("user {user_id} has no connection to kick"),
                Err(e) => format!("kick of user {user_id} failed: {e}"),
            });
            // Show the result: the kicked connections disappear.
            match view.mode {
                Mode::User(u) => Action::Locate(u),
                _ => drilled(view).map_or(Action::None, Action::FetchConns),
            }
        }
    };
    state.apply_detail(d);
    follow_up
}

fn fetch_conns(pollers: &Pollers, index: usize, tx: mpsc::Sender<Detail>) {
    let client = pollers.client(index);
    tokio::spawn(async move {
        let result = match client {
            None => Err("the server is not answering".to_owned()),
            Some(c) => async {
                let rsp = c
                    .call(&ImAdminConnListReq {
                        offset: Some(0),
                        limit: Some(CONN_PAGE),
                        user_id: Some(0),
                    })
                    .await?;
                check(rsp.result_code(), None, "listing connections")?;
                anyhow::Ok(rsp)
            }
            .await
            .map_err(|e| format!("{e:#}")),
        };
        let d = Detail::Conns(ConnsDetail {
            server: index,
            at: Instant::now(),
            result,
        });
        let _ = tx.send(d).await;
    });
}

/// Asks the first answering route_server where `user` is, and every answering msg_server for
/// the user's connections, each on its poller's connection.
fn locate(pollers: &Pollers, state: &State, user: u32, tx: mpsc::Sender<Detail>) {
    let route = state
        .of_kind(Kind::RouteServer)
        .find_map(|(i, s)| s.is_up().then(|| pollers.client(i)).flatten());
    let msg: Vec<(usize, AdminClient)> = state
        .of_kind(Kind::MsgServer)
        .filter_map(|(i, s)| Some((i, pollers.client(i).filter(|_| s.is_up())?)))
        .collect();
    tokio::spawn(async move {
        let located = async {
            let c = route.context("no route_server is answering")?;
            let rsp = c
                .call(&ImAdminLocateUserReq {
                    user_id: Some(user),
                    user_ids: Vec::new(),
                })
                .await?;
            if rsp.result_code() == AdminResult::AdminNotFound {
                return Ok(None);
            }
            check(rsp.result_code(), None, "locating the user")?;
            anyhow::Ok(rsp.entry)
        };
        let lists = join_all(msg.into_iter().map(|(i, c)| async move {
            let rsp = c
                .call(&ImAdminConnListReq {
                    offset: Some(0),
                    limit: Some(CONN_PAGE),
                    user_id: Some(user),
                })
                .await
                .ok()?;
            // A server that does not filter by user would list everyone: keep the user's.
            let mine: Vec<_> = rsp
                .conns
                .into_iter()
                .filter(|c| c.user_id() == user)
                .collect();
            (!mine.is_empty()).then_some((i, mine))
        }));
        let (result, conns) = tokio::join!(located, lists);
        let _ = tx
            .send(Detail::Located(Located {
                user_id: user,
                result: result.map_err(|e| format!("{e:#}")),
                conns: conns.into_iter().flatten().collect(),
            }))
            .await;
    });
}

/// `imctl kick USER`'s code path (every client type).
fn kick(config: Config, user: u32, tx: mpsc::Sender<Detail>) {
    tokio::spawn(async move {
        let result = crate::cmd::kick::kick(&config, user, 0)
            .await
            .map_err(|e| format!("{e:#}"));
        let _ = tx
            .send(Detail::Kicked {
                user_id: user,
                result,
            })
            .await;
    });
}

/// `--once`: every server polled (twice, `--interval` apart, when the interval is not 0).
async fn once(
    endpoints: &[Endpoint],
    token: &str,
    args: &TopArgs,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let interval = args.interval;
    let rounds = if interval.is_zero() { 1 } else { 2 };
    let polls = endpoints.iter().enumerate().map(|(index, e)| async move {
        let mut out = Vec::new();
        let report = |result| PollUpdate {
            index,
            at: Instant::now(),
            result,
        };
        match poll::connect(e, token).await {
            Err(err) => out.push(report(Err(format!("{err:#}")))),
            Ok(c) => {
                for round in 0..rounds {
                    if round > 0 {
                        tokio::time::sleep(interval).await;
                    }
                    let timeout = poll::poll_timeout(interval);
                    let r = tokio::time::timeout(timeout, poll::sample(&c, e.kind)).await;
                    let r = match r {
                        Ok(Ok(p)) => Ok(Box::new(p)),
                        Ok(Err(err)) => Err(format!("{err:#}")),
                        Err(_) => Err(format!("no answer within {timeout:?}")),
                    };
                    out.push(report(r));
                }
                c.close();
            }
        }
        out
    });
    let mut state = State::new(endpoints.to_vec(), interval, Instant::now());
    for u in join_all(polls).await.into_iter().flatten() {
        state.apply(u);
    }
    state.now = Instant::now();
    if as_json {
        crate::output::json(&snapshot::Snapshot::of(&state))?;
    } else {
        let (w, h) = args.size;
        print!("{}", view::capture(&state, &ViewState::default(), w, h));
    }
    Ok(if verdict::verdict(&state).level == Level::Critical {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_and_size_flags() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").unwrap_err().contains("soon"));
        assert_eq!(parse_size("100x30"), Ok((100, 30)));
        assert!(parse_size("10x3").is_err());
        assert!(parse_size("wide").is_err());
    }
}
