//! One msg_server client connection per input, anonymous or logged in, checking the
//! properties of `msg_server::fuzzing::check_client`. Inputs that once broke one are kept in
//! `fixtures/fuzz/msg_server/` and replayed by `servers/msg_server/tests/fuzz_regressions.rs`.

#![no_main]

use std::sync::OnceLock;

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
    runtime().block_on(msg_server::fuzzing::check_client(data));
});
