//! Replays every input the route_server fuzz target once found (`fixtures/fuzz/route_server/`) and the
//! target's seed inputs through the same property checks, so a fixed bug stays fixed.
//! With `IM_FUZZ_SEED_DIR=<dir>` it also writes the seeds there (the fuzz corpus, see
//! `fuzz/README.md`).

use im_common::fuzzing::{findings, write_seeds};

#[tokio::test(start_paused = true)]
async fn fuzz_findings_stay_fixed() {
    for (name, data) in findings(env!("CARGO_MANIFEST_DIR"), "route_server") {
        eprintln!("replaying {name}");
        route_server::fuzzing::check(&data).await;
    }
}

#[tokio::test(start_paused = true)]
async fn seeds_pass_the_checks() {
    let seeds = route_server::fuzzing::seeds();
    write_seeds(&seeds);
    for (i, s) in seeds.iter().enumerate() {
        eprintln!("seed {i}");
        route_server::fuzzing::check(s).await;
    }
}

// The admin target: the shared admin dispatch in front of route_server's admin service.

#[tokio::test(start_paused = true)]
async fn admin_fuzz_findings_stay_fixed() {
    for (name, data) in findings(env!("CARGO_MANIFEST_DIR"), "admin") {
        eprintln!("replaying {name}");
        route_server::fuzzing::check_admin(&data).await;
    }
}

#[tokio::test(start_paused = true)]
async fn admin_seeds_pass_the_checks() {
    let seeds = route_server::fuzzing::admin_seeds();
    if std::env::var_os("IM_FUZZ_ADMIN_SEED_DIR").is_some() {
        // SAFETY-free: a test-only switch, read before any other thread looks at the env.
        let dir = std::env::var("IM_FUZZ_ADMIN_SEED_DIR").unwrap_or_default();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::create_dir_all(&dir).expect("seed dir");
            std::fs::write(std::path::Path::new(&dir).join(format!("seed-{i}")), s)
                .expect("seed file");
        }
    }
    for (i, s) in seeds.iter().enumerate() {
        eprintln!("seed {i}");
        route_server::fuzzing::check_admin(s).await;
    }
}
