//! `imctl`: see `imctl --help` and man/imctl.1.

/// mimalloc: far cheaper than glibc malloc for the many small, short-lived buffers of a
/// busy server (measured with scripts/bench.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

fn main() -> ExitCode {
    // `demo` and `migrate` open SQLite stores; the wrapper must come before any connection.
    im_storage::sqlite::install_page_cache();
    imctl::main()
}
