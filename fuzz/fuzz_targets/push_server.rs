//! One push_server msg_server link per input, checking the properties of
//! `push_server::fuzzing::check_with` (the webhook provider is built once for the run).
//! Inputs that once broke one are kept in `fixtures/fuzz/push_server/` and replayed by
//! `servers/push_server/tests/fuzz_regressions.rs`.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use push_server::providers::Providers;

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
    static PROVIDERS: OnceLock<Arc<Providers>> = OnceLock::new();
    let rt = runtime();
    let providers = PROVIDERS.get_or_init(|| rt.block_on(push_server::fuzzing::providers()));
    rt.block_on(push_server::fuzzing::check_with(providers, data));
});
