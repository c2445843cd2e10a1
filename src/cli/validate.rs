//! `podsup validate PATH...`

use std::path::PathBuf;
use std::process::ExitCode;

use super::CliResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files or directories
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

pub fn run(_args: Args) -> CliResult {
    Ok(ExitCode::SUCCESS)
}
