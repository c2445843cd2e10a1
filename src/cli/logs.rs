//! `podsup logs POD [-c C] [-f] [--tail N] [--previous] [--timestamps] [--since D]`: a
//! container's log, as the daemon reads it from the CRI files under `--log-dir`.

use std::process::ExitCode;

use super::paths::{Paths, client_failure};
use super::{CliResult, Failure};
use crate::api::{Client, LogsRequest, Op, Response};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pod's name
    pub pod: String,
    /// The container (needed when the pod has several)
    #[arg(short, long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// The pod's namespace
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Keep printing new lines
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// The previous instance of the container (before its last restart)
    #[arg(short, long)]
    pub previous: bool,
    /// Start each line with its time (RFC 3339)
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this (5s, 2m, 1h)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    #[command(flatten)]
    pub paths: Paths,
}

pub fn run(args: Args) -> CliResult {
    let since_ms = match &args.since {
        Some(s) => Some(
            crate::logs::parse_since(s)
                .map_err(|e| Failure::User(format!("podsup logs: --since: {e}")))?
                .as_millis() as u64,
        ),
        None => None,
    };
    // kubectl's --tail=-1 means everything.
    let mut c = Client::request(
        &args.paths.run,
        Op::Logs(LogsRequest {
            namespace: args.namespace,
            pod: args.pod,
            container: args.container,
            follow: args.follow,
            tail: args.tail,
            previous: args.previous,
            timestamps: args.timestamps,
            since_ms,
        }),
    )
    .map_err(client_failure)?;
    loop {
        match c.read().map_err(client_failure)? {
            Response::Log { data } => super::out(&data)?,
            Response::Done => return Ok(ExitCode::SUCCESS),
            Response::Error { message } => {
                return Err(Failure::User(format!("podsup logs: {message}")));
            }
            _ => {}
        }
    }
}
