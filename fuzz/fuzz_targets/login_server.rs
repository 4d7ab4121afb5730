//! login_server's msg_server port, legacy client port and `GET /msg_server` responder, one per
//! input, checking the properties of `login_server::fuzzing::check`. Inputs that once broke
//! one are kept in `fixtures/fuzz/login_server/` and replayed by
//! `servers/login_server/tests/fuzz_regressions.rs`.

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
    runtime().block_on(login_server::fuzzing::check(data));
});
