//! Snapshot tests: fixed states rendered with ratatui's TestBackend at 120x40 and compared
//! with fixtures/top/*.txt. `IM_BLESS=1 cargo test -p imctl --test top` rewrites them.

use std::path::PathBuf;

use imctl::top::app::{Mode, SortKey, ViewState};
use imctl::top::state::State;
use imctl::top::view::capture;

use super::fixtures;

const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/top")
        .join(format!("{name}.txt"))
}

/// Compares the screen with the snapshot file (or writes it under `IM_BLESS=1`).
fn check(name: &str, state: &State, view: &ViewState) -> String {
    let screen = capture(state, view, WIDTH, HEIGHT);
    let path = snapshot_path(name);
    if std::env::var_os("IM_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &screen).unwrap();
        return screen;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run IM_BLESS=1 cargo test -p imctl --test top to create it",
            path.display()
        )
    });
    if screen != expected {
        let first = screen
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "screen {name} differs from {} (first at line {}); IM_BLESS=1 rewrites it.\n\
             --- got ---\n{screen}",
            path.display(),
            first + 1
        );
    }
    screen
}

#[test]
fn healthy_cluster() {
    let s = check("healthy", &fixtures::healthy(), &ViewState::default());
    assert!(s.contains(" OK "), "{s}");
    assert!(s.contains("all 8 servers answering"), "{s}");
    assert!(
        s.contains("file_server-1 up  transfers 2  bytes/s 1.3M"),
        "{s}"
    );
    assert!(s.contains("msg_server-3"), "{s}");
    assert!(s.contains("push_server-1 up"), "{s}");
    // The README shows this screen.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(
        readme.contains(&format!("```\n{s}```")),
        "README.md's `imctl top` picture differs from fixtures/top/healthy.txt: paste it again"
    );
}

#[test]
fn one_msg_server_down() {
    let s = check("one_down", &fixtures::one_down(), &ViewState::default());
    assert!(s.contains("DEGRADED"), "{s}");
    assert!(s.contains("msg_server-2 down for 12s"), "{s}");
    assert!(s.contains("down 12s"), "{s}");
}

#[test]
fn slow_consumer() {
    let s = check(
        "slow_consumer",
        &fixtures::slow_consumer(),
        &ViewState::default(),
    );
    assert!(s.contains("1 slow consumer(s) on msg_server-1"), "{s}");
    assert!(s.contains("outbound queue 1500 deep"), "{s}");
}

#[test]
fn drill_down_connections_and_top_talkers() {
    let view = ViewState {
        mode: Mode::Conns(2),
        selected: Some(2),
        conn_row: 1,
        ..ViewState::default()
    };
    let s = check(
        "connections",
        &fixtures::with_conns(fixtures::healthy()),
        &view,
    );
    assert!(s.contains("connections of msg_server-1"), "{s}");
    assert!(s.contains("top talkers"), "{s}");
}

#[test]
fn user_location_and_kick_confirmation() {
    let state = fixtures::with_located(fixtures::healthy());
    let view = ViewState {
        mode: Mode::User(1001),
        ..ViewState::default()
    };
    let s = check("user", &state, &view);
    assert!(s.contains("user 1001"), "{s}");
    let confirm = ViewState {
        mode: Mode::ConfirmKick(1001),
        back: Mode::User(1001),
        ..ViewState::default()
    };
    let s = check("kick_confirm", &state, &confirm);
    assert!(s.contains("Kick user 1001"), "{s}");
}

#[test]
fn help_sorted_and_filtered() {
    let help = ViewState {
        mode: Mode::Help,
        ..ViewState::default()
    };
    let s = check("help", &fixtures::healthy(), &help);
    assert!(s.contains("kick the selected user"), "{s}");
    let sorted = ViewState {
        sort: SortKey::MsgsIn,
        filter: "msg_server-".into(),
        mode: Mode::Filter,
        ..ViewState::default()
    };
    let s = check("sorted_filtered", &fixtures::healthy(), &sorted);
    assert!(s.contains("filter \"msg_server-\""), "{s}");
}
