//! The shared admin dispatch (`servers/common/src/admin.rs`) in front of route_server's admin service, one connection per input, checking the properties of `im_common::fuzzing::check_admin`.
//! Inputs that once broke one are kept in `fixtures/fuzz/admin/` and replayed by the server
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
    runtime().block_on(route_server::fuzzing::check_admin(data));
});
