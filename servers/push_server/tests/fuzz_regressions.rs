//! Replays every input the push_server fuzz target once found (`fixtures/fuzz/push_server/`) and the
//! target's seed inputs through the same property checks, so a fixed bug stays fixed.
//! With `IM_FUZZ_SEED_DIR=<dir>` it also writes the seeds there (the fuzz corpus, see
//! `fuzz/README.md`).

use im_common::fuzzing::{findings, write_seeds};

#[tokio::test(start_paused = true)]
async fn fuzz_findings_stay_fixed() {
    for (name, data) in findings(env!("CARGO_MANIFEST_DIR"), "push_server") {
        eprintln!("replaying {name}");
        push_server::fuzzing::check(&data).await;
    }
}

#[tokio::test(start_paused = true)]
async fn seeds_pass_the_checks() {
    let seeds = push_server::fuzzing::seeds();
    write_seeds(&seeds);
    for (i, s) in seeds.iter().enumerate() {
        eprintln!("seed {i}");
        push_server::fuzzing::check(s).await;
    }
}
