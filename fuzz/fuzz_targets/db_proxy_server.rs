//! One db_proxy_server msg_server link per input, on one SQLite store with the demo data kept
//! for the whole run, checking the properties of `db_proxy_server::fuzzing::check_link`.
//! Inputs that once broke one are kept in `fixtures/fuzz/db_proxy_server/` and replayed by
//! `servers/db_proxy_server/tests/fuzz_regressions.rs` (each on a fresh store).

#![no_main]

use std::sync::OnceLock;

use db_proxy_server::fuzzing::{Fixture, check_link, fixture};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    static FX: OnceLock<Fixture> = OnceLock::new();
    let rt = runtime();
    let fx = FX.get_or_init(|| rt.block_on(fixture()));
    rt.block_on(check_link(fx, data));
});
