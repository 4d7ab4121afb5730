//! imctl: how people meet and operate the suite. It speaks only the PDU protocol: TeamTalk's
//! client protocol to act as a user, and our `IM.Admin` extension on each server's admin port.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod csv;
pub mod loadgen;
pub mod output;
pub mod sim;
pub mod terminal;
pub mod top;

use std::process::ExitCode;

use clap::Parser;

/// Entry point of the binary: parse, run, print the error, exit code 1 on failure.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("imctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
