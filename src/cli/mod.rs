//! The command line: one thin file per verb over the library.
//!
//! Verbs validate their flags and call into the library; they never print errors themselves
//! (they return [`Failure`]) and never pick exit codes (that is `main.rs`).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod daemon;
mod events;
mod exec;
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

    /// Run a command in a running container (like `kubectl exec`)
    ///
    /// The command runs in the container's namespaces, cgroups, user, capabilities and
    /// environment, with podsup's stdout and stderr (-i: stdin too; -t: a terminal). Exit
    /// status: the command's (128 + signal if it was killed), 127 when it is not found, 1
    /// when the pod or container does not exist or is not running.
    Exec(exec::Args),

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
    /// A failure with its own exit code (`podsup exec`: 127 for a command not found, 126
    /// for one that cannot run, as a shell and `kubectl exec` give them).
    Exit { code: u8, message: String },
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
        Command::Exec(args) => exec::run(args),
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

/// A duration flag: `0`, `250ms`, `10s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like 250ms, 10s or 5m"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" | "" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too long"))
}

/// Back-off and cgroup flags, shared by `podsup run` and `podsup shim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SupervisorArgs {
    /// Restart back-off: delay before the second restart of a crash loop, doubling after
    /// (0: restart at once every time)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backoff_initial: Option<std::time::Duration>,

    /// Restart back-off: the longest delay
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backoff_max: Option<std::time::Duration>,

    /// Restart back-off: a container that ran this long starts a fresh curve
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backoff_reset: Option<std::time::Duration>,

    /// The cgroup (under each hierarchy's root) that holds podsup's pods [default: podsup]
    #[arg(long, value_name = "NAME")]
    pub cgroup_parent: Option<String>,

    /// Run without cgroups (no limits, no OOM detection)
    #[arg(long, conflicts_with = "cgroup_parent")]
    pub no_cgroups: bool,

    /// Per-pod limit on processes (0: none) [default: 1024]
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,

    /// Do not fork a restartable container's next process ahead of time. By default each
    /// one waits, parked in the container's cgroup, so that a restart skips the cgroup move
    /// (a kernel RCU wait of ~10 ms on cgroup v1); it costs one small process per container
    #[arg(long)]
    pub no_prefork: bool,
}

impl SupervisorArgs {
    /// Applies the flags given over `settings`.
    pub fn apply(&self, settings: &mut crate::shim::ShimSettings) -> Result<(), String> {
        if let Some(d) = self.backoff_initial {
            settings.backoff_initial_ms = d.as_millis() as u64;
        }
        if let Some(d) = self.backoff_max {
            settings.backoff_max_ms = d.as_millis() as u64;
        }
        if let Some(d) = self.backoff_reset {
            settings.backoff_reset_ms = d.as_millis() as u64;
        }
        if let Some(p) = &self.cgroup_parent {
            crate::cgroup::compute_name_check(p).map_err(|e| e.to_string())?;
            settings.cgroup_parent = Some(p.clone());
        }
        if self.no_cgroups {
            settings.cgroup_parent = None;
        }
        if let Some(n) = self.pids_limit {
            settings.pids_limit = (n > 0).then_some(n);
        }
        if self.no_prefork {
            settings.prefork = false;
        }
        settings.backoff().validate().map_err(|e| e.to_string())
    }
}
