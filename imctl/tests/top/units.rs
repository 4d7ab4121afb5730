//! Rates, verdict, sorting, filtering and keys: pure functions over fixed states.

use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use im_proto::admin::{ServerState, ServerStats, UpstreamLink};
use imctl::top::app::{Action, Mode, SortKey, ViewState, msg_rows};
use imctl::top::state::{Endpoint, Kind, PollUpdate, Polled, Sample, State, rates};
use imctl::top::verdict::{Level, verdict};

use super::fixtures;

fn sample(at: Instant, stats: ServerStats) -> Sample {
    Sample {
        at,
        polled: Polled {
            name: "m".into(),
            stats,
            msg_servers: None,
        },
    }
}

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(k: KeyCode) -> Event {
    Event::Key(KeyEvent::new(k, KeyModifiers::NONE))
}

#[test]
fn rates_come_from_counter_deltas_over_the_arrival_gap() {
    let t0 = Instant::now();
    let a = ServerStats {
        uptime_ms: Some(10_000),
        msgs_in_total: Some(1_000),
        msgs_out_total: Some(500),
        cpu_time_ms: Some(2_000),
        upstreams: vec![UpstreamLink {
            kind: Some("route_server".into()),
            addr: Some("r:1".into()),
            pdus_out_total: Some(90),
            ..UpstreamLink::default()
        }],
        ..ServerStats::default()
    };
    let mut b = a.clone();
    b.uptime_ms = Some(12_000);
    b.msgs_in_total = Some(1_200);
    b.msgs_out_total = Some(900);
    b.cpu_time_ms = Some(2_500);
    // The link reconnected: its per-connection counter starts again from 0.
    b.upstreams[0].pdus_out_total = Some(30);
    let r = rates(
        &sample(t0, a.clone()),
        &sample(t0 + Duration::from_secs(2), b),
    )
    .unwrap();
    assert_eq!(r.msgs_in, 100.0);
    assert_eq!(r.msgs_out, 200.0);
    assert_eq!(r.cpu_percent, 25.0);
    assert_eq!(r.links["route_server@r:1"].pdus_out, 15.0);
    // Not a db_proxy: no writer.
    assert_eq!(r.writer_busy_percent, None);

    // A db_proxy's writer: 1.5 s of commits in 2 s is 75% busy.
    let store = |busy: u64| {
        Some(im_proto::admin::StorageStats {
            writer_busy_micros_total: Some(busy),
            ..im_proto::admin::StorageStats::default()
        })
    };
    let (mut da, mut db) = (a.clone(), a.clone());
    da.storage = store(4_000_000);
    db.uptime_ms = Some(12_000);
    db.storage = store(5_500_000);
    let r = rates(&sample(t0, da), &sample(t0 + Duration::from_secs(2), db)).unwrap();
    assert_eq!(r.writer_busy_percent, Some(75.0));

    // A restarted server (uptime went backwards) has no rate until its next answer.
    let mut restarted = a.clone();
    restarted.uptime_ms = Some(1_000);
    restarted.msgs_in_total = Some(3);
    assert!(
        rates(
            &sample(t0, a.clone()),
            &sample(t0 + Duration::from_secs(1), restarted)
        )
        .is_none()
    );
    // Two answers at the same instant cannot give a rate.
    assert!(rates(&sample(t0, a.clone()), &sample(t0, a)).is_none());
}

#[test]
fn a_down_server_keeps_its_last_answer_and_restarts_its_rates() {
    let mut state = fixtures::one_down();
    let s = &state.servers[3];
    assert!(s.is_down());
    assert_eq!(s.state_name(), "down");
    assert!(s.rates.is_none());
    assert_eq!(s.down_for(state.now), Some(Duration::from_secs(12)));
    assert!(s.last.is_some(), "the last answer stays for the record");
    // It answers again: up at once, rates only from the answer after (no average over the gap).
    let at = state.now + Duration::from_secs(1);
    let polled = s.last.clone().unwrap().polled;
    state.apply(PollUpdate {
        index: 3,
        at,
        result: Ok(Box::new(polled.clone())),
    });
    assert!(state.servers[3].is_up());
    assert!(state.servers[3].rates.is_none());
    let mut next = polled;
    next.stats.uptime_ms = Some(next.stats.uptime_ms() + 1000);
    state.apply(PollUpdate {
        index: 3,
        at: at + Duration::from_secs(1),
        result: Ok(Box::new(next)),
    });
    assert!(state.servers[3].rates.is_some());
}

#[test]
fn history_is_msgs_in_per_second_and_bounded() {
    let state = fixtures::healthy();
    let h = &state.servers[2].history;
    assert_eq!(h.len() as u64, fixtures::STEPS - 1);
    assert!(h.iter().all(|v| *v >= 40.0), "{h:?}");
    let t = state.totals();
    assert_eq!(t.users_online, Some(1_630));
    assert!(t.msgs_in_per_sec >= 75.0, "{t:?}");
}

#[test]
fn verdict_rules() {
    let v = verdict(&fixtures::healthy());
    assert_eq!(v.level, Level::Ok, "{v}");

    let v = verdict(&fixtures::one_down());
    assert_eq!(v.level, Level::Degraded, "{v}");
    assert_eq!(v.reasons, ["msg_server-2 down for 12s"]);

    let v = verdict(&fixtures::slow_consumer());
    assert_eq!(v.level, Level::Degraded, "{v}");
    assert_eq!(v.reasons[0], "1 slow consumer(s) on msg_server-1");
    assert!(v.reasons.iter().any(|r| r.contains("1500 deep")), "{v}");

    // Two of three msg_servers down: critical, said once (not also as "degraded").
    let v = verdict(&fixtures::build(&[2, 3], 25, |_, _, _| {}));
    assert_eq!(v.level, Level::Critical, "{v}");
    assert_eq!(v.reasons, ["2 of 3 msg_servers down"]);

    // The only route_server, the db_proxy or the login_server down: critical.
    for (index, why) in [
        (1, "route_server down"),
        (5, "db_proxy_server-1 down"),
        (0, "login_server down"),
    ] {
        let v = verdict(&fixtures::build(&[index], 25, |_, _, _| {}));
        assert_eq!(v.level, Level::Critical, "{v}");
        assert_eq!(v.reasons, [why]);
    }

    // Busy: CPU above the mark; degraded: a slow store, a link down, a server stopping.
    let v = verdict(&fixtures::build(&[], 0, |i, step, s| {
        if i == 4 {
            s.cpu_time_ms = Some(step * 950);
        }
    }));
    assert_eq!(v.level, Level::Busy, "{v}");
    assert_eq!(v.reasons, ["msg_server-3 CPU 95%"]);
    // Busy: the storage writer committing 95% of the time with 1,800 writes waiting (the
    // fixture's commits 40-70% of the time); committing all the time with a short queue
    // is a group commit keeping up, not busy.
    for (queue, level) in [(1_800, Level::Busy), (40, Level::Ok)] {
        let v = verdict(&fixtures::build(&[], 0, |i, step, s| {
            if i == 5 {
                let st = s.storage.as_mut().unwrap();
                st.writer_busy_micros_total = Some(step * 950_000);
                st.write_queue = Some(queue);
            }
        }));
        assert_eq!(v.level, level, "{v}");
        if level == Level::Busy {
            assert_eq!(
                v.reasons,
                ["db_proxy_server-1: storage writer busy 95% (1800 writes queued)"]
            );
        }
    }
    let v = verdict(&fixtures::build(&[], 0, |i, _, s| {
        if i == 5 {
            s.storage
                .as_mut()
                .unwrap()
                .write_latency
                .as_mut()
                .unwrap()
                .p99_micros = Some(900_000);
        }
        if i == 3 {
            s.upstreams[1].state = Some(im_proto::admin::LinkState::Connecting as i32);
        }
        if i == 6 {
            s.state = Some(ServerState::Stopping as i32);
        }
    }));
    assert_eq!(v.level, Level::Degraded, "{v}");
    assert_eq!(
        v.reasons,
        [
            "msg_server-2: route_server link 127.0.0.1:8200 down",
            "db_proxy_server-1: storage write p99 900 ms",
            "push_server-1 stopping",
        ]
    );

    // Nothing heard yet: ok, waiting.
    let fresh = State::new(
        fixtures::endpoints(),
        Duration::from_secs(1),
        Instant::now(),
    );
    let v = verdict(&fresh);
    assert_eq!(v.level, Level::Ok);
    assert_eq!(v.reasons, ["0 servers answering, waiting for 8"]);
}

#[test]
fn sorting_and_filtering_the_msg_server_table() {
    let state = fixtures::healthy();
    let mut view = ViewState::default();
    assert_eq!(msg_rows(&state, &view), [2, 3, 4]);
    // `o` twice: conns, then in/s (biggest first); `r` reverses.
    view.update(&key('o'), &state);
    assert_eq!(view.sort, SortKey::Conns);
    view.update(&key('o'), &state);
    assert_eq!(view.sort, SortKey::MsgsIn);
    assert_eq!(msg_rows(&state, &view), [2, 3, 4]);
    view.update(&key('r'), &state);
    assert_eq!(msg_rows(&state, &view), [4, 3, 2]);
    // `/` then typing filters by name, address or state; Esc clears.
    view.update(&key('/'), &state);
    for c in "10.0.0.12".chars() {
        view.update(&key(c), &state);
    }
    assert_eq!(view.mode, Mode::Filter);
    assert_eq!(msg_rows(&state, &view), [3]);
    view.update(&code(KeyCode::Enter), &state);
    assert_eq!(view.mode, Mode::Table);
    assert_eq!(view.filter, "10.0.0.12");
    view.update(&key('/'), &state);
    view.update(&code(KeyCode::Esc), &state);
    assert_eq!(msg_rows(&state, &view).len(), 3);
    // Down servers filter by state.
    let down = fixtures::one_down();
    view.filter = "down".into();
    assert_eq!(msg_rows(&down, &view), [3]);
}

#[test]
fn keys_drive_modes_and_ask_for_actions() {
    let state = fixtures::with_conns(fixtures::healthy());
    let mut view = ViewState::default();
    assert_eq!(view.update(&code(KeyCode::Down), &state), Action::None);
    assert_eq!(view.selection(&state), Some(3));
    view.update(&code(KeyCode::Up), &state);
    // Enter drills into the selected msg_server.
    assert_eq!(
        view.update(&code(KeyCode::Enter), &state),
        Action::FetchConns(2)
    );
    assert_eq!(view.mode, Mode::Conns(2));
    // `k` asks to confirm the kick of the selected connection's user; `n` cancels.
    view.update(&code(KeyCode::Down), &state);
    assert_eq!(view.update(&key('k'), &state), Action::None);
    assert_eq!(view.mode, Mode::ConfirmKick(1002));
    assert_eq!(view.update(&key('n'), &state), Action::None);
    assert_eq!(view.mode, Mode::Conns(2));
    view.update(&key('k'), &state);
    assert_eq!(view.update(&key('y'), &state), Action::Kick(1002));
    // `u` prompts for a user; only digits are taken.
    view.update(&key('u'), &state);
    for c in "10x01".chars() {
        view.update(&key(c), &state);
    }
    assert_eq!(view.prompt, "1001");
    assert_eq!(
        view.update(&code(KeyCode::Enter), &state),
        Action::Locate(1001)
    );
    assert_eq!(view.mode, Mode::User(1001));
    // `?` shows the keys, any key goes back; Esc leaves the drill-down; `q` quits.
    view.update(&key('?'), &state);
    assert_eq!(view.mode, Mode::Help);
    view.update(&key('x'), &state);
    assert_eq!(view.mode, Mode::User(1001));
    view.update(&code(KeyCode::Esc), &state);
    assert_eq!(view.mode, Mode::Table);
    // `k` with no user selected explains instead of kicking.
    assert_eq!(view.update(&key('k'), &state), Action::None);
    assert!(view.notice.as_deref().unwrap().contains("no user selected"));
    assert_eq!(view.update(&key('q'), &state), Action::Quit);
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    view.mode = Mode::Filter;
    assert_eq!(view.update(&ctrl_c, &state), Action::Quit);
}

#[test]
fn kinds_round_trip_their_names() {
    for k in Kind::ALL {
        assert_eq!(Kind::from_name(k.name()), Some(k));
    }
    assert_eq!(Kind::from_name("mongo"), None);
    let e = Endpoint {
        kind: Kind::Msfs,
        admin_addr: "127.0.0.1:1".into(),
    };
    let s = imctl::top::state::Server::new(e);
    assert_eq!(s.name(), "msfs@127.0.0.1:1");
    assert_eq!(s.state_name(), "pending");
}
