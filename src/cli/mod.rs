//! The command line: one thin file per verb over the library.
//!
//! Verbs validate their flags and call into the library; they never print errors themselves
//! (they return [`Failure`]) and never pick exit codes (that is `main.rs`).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod daemon;
mod events;
mod image;
mod logs;
mod paths;
mod restart;
pub(crate) mod run;
mod shim;
mod status;
mod validate;

/// A declarative pod supervisor: runs Kubernetes `v1 Pod` manifests on one Linux machine.
///
/// Drop a Pod manifest into the manifest directory and podsup runs it the way a kubelet runs a
/// static pod. The same files run unchanged on Kubernetes or k3s.
#[derive(Debug, Parser)]
#[command(
    name = "podsup",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check Pod manifests and print every error with file:line:column
    ///
    /// PATH is a manifest file or a directory of them (`.yaml`, `.yml`, `.json`; hidden files
    /// and editor leftovers are skipped, as the daemon skips them). Exit status: 0 when every
    /// manifest is valid, 1 when any is not.
    Validate(validate::Args),

    /// Run one pod in the foreground; Ctrl-C stops it
    ///
    /// Init containers run in order, then the containers; their output is printed prefixed
    /// by the container's name. Exit status: 0 when the pod succeeded, 1 when a container
    /// failed (or the manifest is invalid).
    Run(run::Args),

    /// Watch the manifest directory and run every pod it declares
    ///
    /// New files start, edits apply live with the smallest disruption, removed files stop.
    /// Pods keep running when the daemon stops; a new daemon adopts them. See docs/daemon.md.
    Daemon(daemon::Args),

    /// Show the pods the daemon runs (like `kubectl get pods`) and manifest errors
    Status(status::Args),

    /// Print a container's log
    Logs(logs::Args),

    /// Show what the daemon did: started, stopped, applied, refused manifests
    Events(events::Args),

    /// Restart a pod's containers (or one, with -c) in place
    Restart(restart::Args),

    /// The pod's infra process (internal)
    #[command(hide = true)]
    Shim(shim::Args),
    /// Manage the local image store: import, ls, rm
    ///
    /// Images live under --root (default /var/lib/podsup). See docs/images.md.
    Image(image::Args),
}

/// How a verb failed. `main` turns this into a message and an exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad input or a refused request: the message is printed as is, exit code 1.
    /// An empty message means the verb already reported everything.
    User(String),
    /// Something broke that the user did not cause: exit code 3.
    Internal(anyhow::Error),
    /// The reader of our output went away (`podsup ... | head`): a normal end, exit code 0.
    BrokenPipe,
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Internal(err)
    }
}

pub type CliResult = Result<ExitCode, Failure>;

/// Runs the verb that the command line names.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Run(args) => run::run(args),
        Command::Shim(args) => shim::run(args),
        Command::Image(args) => image::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Status(args) => status::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Events(args) => events::run(args),
        Command::Restart(args) => restart::run(args),
    }
}

/// Sets up `log` through env_logger: warnings by default, `-v` for debug, `-vv` for trace,
/// `RUST_LOG` (module prefixes) when set.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(default);
    env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .format_target(false)
        .init();
}

/// Writes to stdout; a closed pipe (`podsup ... | head`) is a normal end, not an error.
pub(crate) fn out(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Failure::Internal(
            anyhow::Error::new(e).context("write to stdout"),
        )),
    }
}
