//! The properties the `push_server` fuzz target checks (`fuzz/fuzz_targets/push_server.rs`),
//! shared with the test that replays what it once found (`tests/fuzz_regressions.rs`,
//! `fixtures/fuzz/push_server/`).
//!
//! One input drives one msg_server link of the real [`PushLink`] over an in-memory pipe
//! (`im_common::fuzzing`). Every client type is routed to the webhook provider (a closed
//! port); no delivery worker runs, so admitted pushes stay queued (a small queue: "queue
//! full" is reachable). Besides "never panics, never hangs":
//! * the output is well-framed and no frame passes the server-link cap;
//! * nothing is sent but heartbeats and IMPushToUserRsp; an answer carries the seq of a push
//!   request whose body decodes, with one result per token of it;
//! * anything but a heartbeat or a push request closes the link: nothing is answered to
//!   what came after it.

use std::sync::Arc;

use im_common::fuzzing::{Driven, body, run_records, seed, sel};
use im_common::metrics::Registry;
use im_common::{CancellationToken, ServeOptions};
use im_proto::base::UserTokenInfo;
use im_proto::cid;
use im_proto::server::{ImPushToUserReq, ImPushToUserRsp};
use tokio_util::task::TaskTracker;

use crate::config::{Config, ProviderKind};
use crate::link::{Intake, PushLink, decode};
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::tokens::DeadTokens;

/// The fuzz input's command table: a push request, a heartbeat, and one command the link
/// must close on.
pub const COMMANDS: &[u16] = &[
    cid::CID_OTHER_PUSH_TO_USER_REQ,
    cid::CID_OTHER_HEARTBEAT,
    cid::CID_OTHER_PUSH_TO_USER_RSP,
];

fn config() -> Config {
    let mut config = Config {
        queue_capacity: 8,
        workers: 0,
        ..Config::default()
    };
    config.webhook.enabled = true;
    config.webhook.url = "http://127.0.0.1:1/".into();
    config.providers.ios = ProviderKind::Webhook;
    config.providers.android = ProviderKind::Webhook;
    config.providers.other = ProviderKind::Webhook;
    config
}

/// The providers (built once: the HTTP client is not cheap).
pub async fn providers() -> Arc<Providers> {
    match Providers::new(&config()).await {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("webhook provider: {e}"),
    }
}

/// Runs `data` through one link with `providers` and checks the properties (module doc);
/// panics when one breaks. Run it on a current-thread runtime with paused time.
pub async fn check_with(providers: &Arc<Providers>, data: &[u8]) {
    let config = config();
    let metrics = Metrics::new(Registry::new("im_push_server"));
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let dead = DeadTokens::start(
        &config.db_proxy,
        config.backoff,
        metrics.clone(),
        &stop,
        &tasks,
    );
    let queue = crate::queue::start(
        &config,
        providers.clone(),
        metrics.clone(),
        dead,
        stop.clone(),
        &tasks,
    );
    let intake = Arc::new(Intake::new(&config, queue, providers.clone(), metrics));
    let mut opts = ServeOptions::server("msg_server");
    opts.echo_heartbeat = true;
    let registry = im_common::ConnRegistry::new();
    let driven = run_records(data, COMMANDS, &opts, &registry, |_| {
        PushLink::new(intake.clone())
    })
    .await;
    check_replies(&driven);
    stop.cancel();
    tasks.close();
    tasks.wait().await;
}

/// [`check_with`] on freshly built providers.
pub async fn check(data: &[u8]) {
    check_with(&providers().await, data).await;
}

fn check_replies(driven: &Driven) {
    // The requests the link may answer: push requests before the first unexpected command.
    let first_bad = driven.requests.iter().position(|r| {
        !matches!(
            r.command_id(),
            cid::CID_OTHER_PUSH_TO_USER_REQ | cid::CID_OTHER_HEARTBEAT
        )
    });
    let answerable = &driven.requests[..first_bad.unwrap_or(driven.requests.len())];
    for r in &driven.replies {
        match r.command_id() {
            cid::CID_OTHER_HEARTBEAT => {}
            cid::CID_OTHER_PUSH_TO_USER_RSP => {
                let rsp = r.decode::<ImPushToUserRsp>();
                let Ok(rsp) = rsp else {
                    panic!("IMPushToUserRsp does not decode: {rsp:?}");
                };
                let matched = answerable.iter().any(|q| {
                    q.command_id() == cid::CID_OTHER_PUSH_TO_USER_REQ
                        && q.seq_num() == r.seq_num()
                        && decode(q)
                            .is_ok_and(|m| m.user_token_list.len() == rsp.push_result_list.len())
                });
                assert!(
                    matched,
                    "IMPushToUserRsp seq {} with {} results answers no push request before the \
                     link closed",
                    r.seq_num(),
                    rsp.push_result_list.len()
                );
            }
            other => panic!("the push link sent command {other:#06x}"),
        }
    }
}

/// Seed inputs for the fuzzer's corpus: pushes to iOS, Android and PC tokens, an empty one,
/// an unexpected command.
pub fn seeds() -> Vec<Vec<u8>> {
    let s = |c| sel(COMMANDS, c);
    let token = |user_id, user_type, token: &str| UserTokenInfo {
        user_id,
        user_type,
        token: token.into(),
        push_count: 3,
        push_type: 1,
    };
    let push = ImPushToUserReq {
        flash: "你好, hello".into(),
        data: "{\"session_id\":1}".into(),
        user_token_list: vec![
            token(7, 0x11, &"ab".repeat(32)),
            token(8, 0x12, "fcm-token:1"),
            token(9, 1, "pc"),
            token(10, 0x11, ""),
        ],
    };
    let empty = ImPushToUserReq {
        flash: String::new(),
        data: String::new(),
        user_token_list: Vec::new(),
    };
    vec![
        seed(&[
            (s(cid::CID_OTHER_PUSH_TO_USER_REQ), 1, body(&push)),
            (s(cid::CID_OTHER_HEARTBEAT), 2, Vec::new()),
            (s(cid::CID_OTHER_PUSH_TO_USER_REQ), 3, body(&empty)),
            (s(cid::CID_OTHER_PUSH_TO_USER_REQ), 4, body(&push)),
            (s(cid::CID_OTHER_PUSH_TO_USER_REQ), 5, body(&push)),
        ]),
        seed(&[
            (s(cid::CID_OTHER_PUSH_TO_USER_RSP), 1, Vec::new()),
            (s(cid::CID_OTHER_PUSH_TO_USER_REQ), 2, body(&push)),
        ]),
    ]
}
