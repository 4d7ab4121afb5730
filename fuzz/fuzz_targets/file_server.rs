//! One file_server connection per input (client port or msg_server port), checking the properties of `file_server::fuzzing::check`.
//! Inputs that once broke one are kept in `fixtures/fuzz/file_server/` and replayed by the server
//! crate's `tests/fuzz_regressions.rs`.

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
    runtime().block_on(file_server::fuzzing::check(data));
});
