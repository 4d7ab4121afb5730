//! Replays every input the msg_server fuzz target once found (`fixtures/fuzz/msg_server/`) and
//! the target's seed inputs through the same property checks, so a fixed bug stays fixed.
//! With `IM_FUZZ_SEED_DIR=<dir>` it also writes the seeds there (the fuzz corpus, see
//! `fuzz/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use futures_util::FutureExt;

async fn replay(name: &str, data: &[u8]) {
    let run = std::panic::AssertUnwindSafe(msg_server::fuzzing::check_client(data));
    assert!(
        run.catch_unwind().await.is_ok(),
        "{name} breaks a msg_server property again"
    );
}

#[tokio::test(start_paused = true)]
async fn fuzz_findings_stay_fixed() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/fuzz/msg_server"
    ));
    // The directory (with its README) always exists; it may hold no finding yet.
    for entry in std::fs::read_dir(dir).expect("fixtures/fuzz/msg_server") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        replay(&path.display().to_string(), &std::fs::read(&path).unwrap()).await;
    }
}

#[tokio::test(start_paused = true)]
async fn seeds_pass_the_checks() {
    let seeds = msg_server::fuzzing::seeds();
    if let Ok(dir) = std::env::var("IM_FUZZ_SEED_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(Path::new(&dir).join(format!("seed-{i}")), s).unwrap();
        }
    }
    for (i, s) in seeds.iter().enumerate() {
        replay(&format!("seed {i}"), s).await;
    }
}
