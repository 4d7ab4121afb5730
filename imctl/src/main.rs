//! `imctl`: see `imctl --help` and man/imctl.1.

use std::process::ExitCode;

fn main() -> ExitCode {
    imctl::main()
}
