//! `podsup restart POD [-c CONTAINER]`: restart one container, or all of the pod's
//! containers, in place (the pod's namespaces and other containers stay).

use std::process::ExitCode;

use super::paths::{Paths, client_failure};
use super::{CliResult, Failure};
use crate::api::{Client, Op, Response};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pod's name
    pub pod: String,
    /// Only this container
    #[arg(short, long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// The pod's namespace
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub paths: Paths,
}

pub fn run(args: Args) -> CliResult {
    let mut c = Client::request(
        &args.paths.run,
        Op::Restart {
            namespace: args.namespace,
            pod: args.pod,
            container: args.container,
        },
    )
    .map_err(client_failure)?;
    match c.read().map_err(client_failure)? {
        Response::Ok { message } => {
            super::out(&format!("{message}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } => Err(Failure::User(format!("podsup restart: {message}"))),
        other => Err(Failure::Internal(anyhow::anyhow!(
            "unexpected answer: {other:?}"
        ))),
    }
}
