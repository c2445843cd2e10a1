//! `podsup daemon`: watch the manifest directory and run what it declares (docs/daemon.md).

use std::process::ExitCode;

use anyhow::Context;

use super::paths::Paths;
use super::{CliResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: Paths,

    /// Settings every pod's supervisor gets (back-off, cgroup parent, pids limit, …)
    #[command(flatten)]
    pub supervisor: super::SupervisorArgs,
}

pub fn run(args: Args) -> CliResult {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::User(
            "podsup daemon needs root (its pods get namespaces, mounts and cgroups)".into(),
        ));
    }
    if args.supervisor.no_cgroups {
        return Err(Failure::User(
            "podsup daemon: --no-cgroups is for `podsup run`; the daemon needs cgroups to clean up what a dead pod leaves".into(),
        ));
    }
    let mut settings = crate::shim::ShimSettings::default();
    args.supervisor
        .apply(&mut settings)
        .map_err(|e| Failure::User(format!("podsup daemon: {e}")))?;
    let cgroup_parent = settings
        .cgroup_parent
        .clone()
        .unwrap_or_else(|| crate::cgroup::Config::default().parent);
    let abs = |p: &std::path::Path| std::path::absolute(p).context("resolve path");
    let cfg = crate::daemon::Config {
        manifests: abs(&args.paths.manifests)?,
        root: abs(&args.paths.root)?,
        run: abs(&args.paths.run)?,
        log_dir: abs(&args.paths.log_dir)?,
        cgroup_parent,
        settings,
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
