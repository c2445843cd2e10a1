//! `podsup daemon`: watch the manifest directory and run what it declares (docs/daemon.md).

use std::process::ExitCode;

use anyhow::Context;

use super::paths::Paths;
use super::{CliResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: Paths,

    /// The cgroup under each hierarchy's root that holds the pods' groups
    #[arg(long, value_name = "NAME", default_value = "podsup")]
    pub cgroup_parent: String,
}

pub fn run(args: Args) -> CliResult {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::User(
            "podsup daemon needs root (its pods get namespaces, mounts and cgroups)".into(),
        ));
    }
    let abs = |p: &std::path::Path| std::path::absolute(p).context("resolve path");
    let cfg = crate::daemon::Config {
        manifests: abs(&args.paths.manifests)?,
        root: abs(&args.paths.root)?,
        run: abs(&args.paths.run)?,
        log_dir: abs(&args.paths.log_dir)?,
        cgroup_parent: args.cgroup_parent,
    };
    if !cfg.manifests.is_dir() {
        return Err(Failure::User(format!(
            "podsup daemon: manifest directory {} does not exist (create it, or pass --manifests DIR)",
            cfg.manifests.display()
        )));
    }
    match crate::daemon::run(cfg) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.downcast_ref::<crate::daemon::Refused>().is_some() => {
            Err(Failure::User(format!("podsup daemon: {e:#}")))
        }
        Err(e) => Err(Failure::Internal(e)),
    }
}
