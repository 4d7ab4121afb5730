//! `imctl top`: screens on fixed states (snapshots), the pure parts (units), and the real loop
//! against an in-process suite while two users chat.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "top/fixtures.rs"]
mod fixtures;
#[path = "top/screens.rs"]
mod screens;
#[path = "top/units.rs"]
mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use im_cluster::{Cluster, ClusterOptions, ServerId};
use im_proto::base::MsgType;
use im_proto::client::{ClientConfig, Events, ImClient, LoginParams};
use im_proto::message::ImMsgData;
use imctl::config::Config;
use imctl::top::run_loop;
use imctl::top::view::buffer_text;
use ratatui::Terminal;
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(20);
/// Poll interval of the loop under test: short, so the test takes seconds.
const INTERVAL: Duration = Duration::from_millis(200);

/// A TestBackend that publishes every flushed frame as text, so the test can wait for what
/// the operator would see.
struct Tap {
    inner: TestBackend,
    frames: watch::Sender<String>,
}

impl Backend for Tap {
    type Error = std::convert::Infallible;
    fn draw<'a, I: Iterator<Item = (u16, u16, &'a Cell)>>(
        &mut self,
        c: I,
    ) -> Result<(), Self::Error> {
        self.inner.draw(c)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, p: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(p)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.inner.clear()
    }
    fn clear_region(&mut self, t: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(t)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        self.inner.size()
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.inner.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.frames.send_replace(buffer_text(self.inner.buffer()));
        Ok(())
    }
}

/// Waits until the screen satisfies `pred`; fails with the last screen.
async fn wait_screen(
    frames: &mut watch::Receiver<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        {
            let s = frames.borrow_and_update();
            if pred(&s) {
                return s.clone();
            }
        }
        if tokio::time::timeout_at(deadline, frames.changed())
            .await
            .is_err()
        {
            panic!("screen never showed {what}:\n{}", *frames.borrow());
        }
    }
}

fn seed() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/seed/demo.toml"
    ))
}

fn config_of(cl: &Cluster) -> Config {
    let mut admin: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, addr) in cl.admin_endpoints() {
        admin.entry(kind.to_owned()).or_default().push(addr);
    }
    Config {
        token: cl.admin_token().to_owned(),
        login_url: cl.login_url().to_owned(),
        admin,
        ..Config::default()
    }
}

async fn login(addr: SocketAddr, name: &str) -> (ImClient, Events, u32) {
    let cfg = ClientConfig {
        request_timeout: WAIT,
        ..ClientConfig::default()
    };
    let (c, ev) = ImClient::connect(&addr.to_string(), cfg).await.unwrap();
    let res = c.login(&LoginParams::new(name, "123456")).await.unwrap();
    let id = res.user_info.unwrap().user_id;
    (c, ev, id)
}

fn text(from: u32, to: u32, body: &str) -> ImMsgData {
    ImMsgData {
        from_user_id: from,
        to_session_id: to,
        msg_id: 0,
        create_time: 0,
        msg_type: MsgType::SingleText as i32,
        msg_data: Bytes::from(
            im_proto::crypto::MessageCipher::default_key()
                .encrypt(body.as_bytes())
                .into_bytes(),
        ),
        attach_data: None,
    }
}

fn press(tx: &mpsc::UnboundedSender<std::io::Result<Event>>, code: KeyCode) {
    tx.send(Ok(Event::Key(KeyEvent::new(code, KeyModifiers::NONE))))
        .unwrap();
}

fn type_text(tx: &mpsc::UnboundedSender<std::io::Result<Event>>, s: &str) {
    for c in s.chars() {
        press(tx, KeyCode::Char(c));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_watches_a_real_cluster_chat_drill_down_kick_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ClusterOptions::new(dir.path());
    opts.seed = Some(seed());
    let mut cl = Cluster::start(opts).await.expect("cluster starts");
    let config = config_of(&cl);
    // Every server the suite runs (more kinds join as they are written).
    let servers = config.all_endpoints().len();
    let all_answer = format!("all {servers} servers answering");

    let (keys, mut key_rx) = mpsc::unbounded_channel::<std::io::Result<Event>>();
    let input = futures_util::stream::poll_fn(move |cx| key_rx.poll_recv(cx));
    let (frames_tx, mut frames) = watch::channel(String::new());
    let loop_config = config.clone();
    let top = tokio::spawn(async move {
        let tap = Tap {
            inner: TestBackend::new(120, 40),
            frames: frames_tx,
        };
        let mut terminal = Terminal::new(tap).unwrap();
        run_loop(&mut terminal, input, &loop_config, INTERVAL).await
    });
    wait_screen(&mut frames, "every server answering", |s| {
        s.contains(&all_answer)
    })
    .await;

    // Two users on two msg_servers chat; every message is acked (stored) before the next.
    let (a, _a_ev, a_id) = login(cl.msg_server_addr(0).unwrap(), "zhangsan").await;
    let (b, mut b_ev, b_id) = login(cl.msg_server_addr(1).unwrap(), "lisi").await;
    for i in 0..30 {
        a.request(&text(a_id, b_id, &format!("ping {i}")))
            .await
            .unwrap();
        b.request(&text(b_id, a_id, &format!("pong {i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let screen = wait_screen(&mut frames, "messages per second above zero", |s| {
        s.lines()
            .any(|l| l.contains("msgs/s in ") && !l.contains("msgs/s in 0.0 "))
    })
    .await;
    assert!(screen.contains("msg_server-1") && screen.contains("msg_server-2"));

    // Enter: the connections of the selected (first) msg_server, zhangsan among them.
    press(&keys, KeyCode::Enter);
    wait_screen(&mut frames, "zhangsan's connection", |s| {
        s.contains("connections of msg_server-1") && s.contains(&format!(" {a_id} "))
    })
    .await;

    // `u` + lisi's id: where lisi is; then `k`, `y`: lisi is kicked.
    press(&keys, KeyCode::Char('u'));
    type_text(&keys, &b_id.to_string());
    press(&keys, KeyCode::Enter);
    wait_screen(&mut frames, "lisi's location", |s| {
        s.contains(&format!("user {b_id}")) && s.contains(" msg_server-2 ")
    })
    .await;
    press(&keys, KeyCode::Char('k'));
    wait_screen(&mut frames, "the kick confirmation", |s| {
        s.contains(&format!("Kick user {b_id}"))
    })
    .await;
    press(&keys, KeyCode::Char('y'));
    wait_screen(&mut frames, "the kick result", |s| {
        s.contains(&format!("kicked 1 connection(s) of user {b_id}"))
    })
    .await;
    let closed = tokio::time::timeout(WAIT, async { while b_ev.recv().await.is_some() {} }).await;
    assert!(
        closed.is_ok(),
        "lisi's connection was not closed by the kick"
    );
    press(&keys, KeyCode::Esc);

    // A msg_server that stops answering is shown down, and comes back by itself.
    cl.stop(ServerId::Msg(1)).await.unwrap();
    wait_screen(&mut frames, "msg_server-2 down", |s| {
        s.contains("DEGRADED")
            && s.lines()
                .any(|l| l.contains("msg_server-2") && l.contains("down"))
    })
    .await;
    cl.restart(ServerId::Msg(1)).await.unwrap();
    let started = tokio::time::Instant::now();
    wait_screen(&mut frames, "msg_server-2 back", |s| {
        s.contains(&all_answer)
    })
    .await;
    eprintln!(
        "msg_server-2 seen back {:?} after its restart",
        started.elapsed()
    );

    press(&keys, KeyCode::Char('q'));
    let (state, _view) = tokio::time::timeout(WAIT, top)
        .await
        .expect("top quits on q")
        .unwrap()
        .unwrap();
    let peak = state
        .of_kind(imctl::top::state::Kind::MsgServer)
        .flat_map(|(_, s)| s.history.iter().copied())
        .fold(0.0f64, f64::max);
    assert!(peak > 0.0, "msgs/s never rose above zero");
    eprintln!("peak msgs/s on one msg_server: {peak:.1}");

    // `imctl top --once [--json]`, the real binary, on the same cluster.
    let once = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_imctl"));
        cmd.args(["top", "--once", "--interval", "0.3"])
            .args(json.then_some("--json"))
            .args(["--token", &config.token])
            .args(
                config
                    .admin
                    .iter()
                    .flat_map(|(k, v)| ["--admin".to_owned(), format!("{k}={}", v.join(","))]),
            )
            .env_remove("IMCTL_CONFIG")
            .current_dir(dir.path());
        cmd
    };
    let out = once(false).output().await.unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("imctl top") && screen.contains("msg_server-2"),
        "{screen}"
    );
    let out = once(true).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("--once --json prints JSON");
    assert_eq!(v["servers"].as_array().unwrap().len(), servers, "{v}");
    assert!(v["verdict"]["level"].is_string(), "{v}");
    let msg = &v["servers"].as_array().unwrap()[2];
    assert_eq!(msg["kind"], "msg_server", "{v}");
    assert!(msg["rates"]["msgs_in"].is_number(), "{v}");

    drop((a, b));
    cl.shutdown().await.unwrap();
}
