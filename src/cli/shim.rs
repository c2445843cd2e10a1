//! `podsup shim` (hidden): the pod's infra process; started by `podsup run` and the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use super::CliResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pod's spec.json under --run/pods/<uid>/
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,

    /// Stop the pod when the parent process dies (podsup run)
    #[arg(long)]
    pub foreground: bool,

    /// Overrides of the settings in the spec
    #[command(flatten)]
    pub settings: super::SupervisorArgs,
}

pub fn run(args: Args) -> CliResult {
    let code = crate::shim::main(&args.spec, args.foreground, &args.settings)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
