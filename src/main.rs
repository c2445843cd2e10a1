//! The `podsup` binary: parse flags, run the verb, print the error and pick the exit code.
//!
//! This is the only place that prints errors and chooses exit codes (ARCHITECTURE.md).

use std::process::ExitCode;

use clap::Parser;
use podsup::cli::{self, Cli, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose);
    match cli::run(cli) {
        Ok(code) => code,
        Err(Failure::User(msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(1)
        }
        Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Exit { code, message }) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
        Err(Failure::Internal(err)) => {
            eprintln!("podsup: {err:#}");
            ExitCode::from(3)
        }
    }
}
