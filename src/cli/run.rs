//! `podsup run FILE`: one pod in the foreground.
//!
//! Loads the manifest, resolves the images, lays out `--run/pods/<uid>/` and starts
//! `podsup shim` (a re-exec of this binary, in its own session) for the pod. The shim prints
//! every container's output prefixed by its name. Ctrl-C or SIGTERM here becomes SIGTERM to
//! the shim (a second Ctrl-C: SIGINT, which skips the grace period). When the shim is gone,
//! this removes whatever it left of the pod's directories, and exits with the pod's result.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::{CliResult, Failure};
use crate::container::ImageInfo;
use crate::image::{ImageError, Store};
use crate::manifest;
use crate::model::Pod;
use crate::shim::ShimSpec;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Pod manifest (one pod)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Images, volumes and writable container layers
    #[arg(long, value_name = "DIR", default_value = "/var/lib/podsup")]
    pub root: PathBuf,

    /// Live state of running pods
    #[arg(long, value_name = "DIR", default_value = "/run/podsup")]
    pub run: PathBuf,

    /// Also write each container's output as CRI log files under DIR
    /// (`DIR/<namespace>_<pod>_<uid>/<container>/<restart>.log`, what `podsup logs` reads)
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    #[command(flatten)]
    pub settings: super::SupervisorArgs,
}

/// A fresh pod UID (a random UUID, as the API server would assign).
fn new_uid() -> anyhow::Result<String> {
    let uid = fs::read_to_string("/proc/sys/kernel/random/uuid").context("read a random uuid")?;
    Ok(uid.trim().to_string())
}

/// Resolves every container's image through the local store (no pulls yet: an image that
/// is not in the store is an error that says how to import it).
pub(crate) fn resolve_images(
    root: &Path,
    pod: &Pod,
) -> Result<BTreeMap<String, ImageInfo>, String> {
    let store = Store::open(root).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (_, c) in pod.spec.all_containers() {
        let img = store.resolve(&c.image).map_err(|e| match e {
            ImageError::NotFound { .. } => format!(
                "container {:?}: image {:?} not found in {} (add it with `podsup image import`)",
                c.name,
                c.image,
                store.dir().display()
            ),
            e => format!("container {:?}: {e}", c.name),
        })?;
        let cfg = img.config;
        out.insert(
            c.name.clone(),
            ImageInfo {
                name: img.name,
                id: img.id,
                layers: img.layers,
                env: cfg.env,
                entrypoint: cfg.entrypoint,
                cmd: cfg.cmd,
                working_dir: cfg.working_dir,
                user: cfg.user,
                stop_signal: cfg.stop_signal,
            },
        );
    }
    Ok(out)
}

/// Features the manifest may hold that `podsup run` does not apply yet: said, not ignored.
pub(crate) fn not_yet_applied(pod: &Pod) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod.spec;
    let pod_seccomp = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    if pod_seccomp.is_some() {
        out.push("seccompProfile is not applied yet".to_string());
    }
    for (_, c) in spec.all_containers() {
        let mut missing = Vec::new();
        if c.ports.iter().any(|p| p.host_port.is_some()) {
            missing.push("hostPort");
        }
        if c.stdin || c.tty {
            missing.push("stdin/tty");
        }
        if c.security_context
            .as_ref()
            .is_some_and(|s| s.seccomp_profile.is_some())
        {
            missing.push("seccompProfile");
        }
        if !missing.is_empty() {
            out.push(format!(
                "container {:?}: not applied yet: {}",
                c.name,
                missing.join(", ")
            ));
        }
    }
    out
}

pub fn run(args: Args) -> CliResult {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::User(
            "podsup run needs root (it creates namespaces and mounts)".into(),
        ));
    }
    let pods = manifest::load_file(&args.file).map_err(|e| Failure::User(e.to_string()))?;
    let pod = match <[Pod; 1]>::try_from(pods) {
        Ok([pod]) => pod,
        Err(pods) => {
            return Err(Failure::User(format!(
                "{}: holds {} pods; podsup run runs exactly one",
                args.file.display(),
                pods.len()
            )));
        }
    };
    let images = resolve_images(&args.root, &pod).map_err(Failure::User)?;
    let mut settings = crate::shim::ShimSettings::default();
    args.settings.apply(&mut settings).map_err(Failure::User)?;
    for w in not_yet_applied(&pod) {
        log::warn!("{w}");
    }
    let uid = new_uid()?;
    // The shim and the containers' mounts need absolute paths.
    let run = std::path::absolute(&args.run).context("resolve --run")?;
    let root = std::path::absolute(&args.root).context("resolve --root")?;
    let run_dir = run.join("pods").join(&uid);
    let root_dir = root.join("pods").join(&uid);
    let cgroup_config = settings
        .cgroup_parent
        .clone()
        .map(|parent| crate::cgroup::Config {
            parent,
            pids_limit: settings.pids_limit,
        });
    let result = run_pod(
        pod,
        images,
        &uid,
        &run_dir,
        &root_dir,
        args.log_dir.as_deref(),
        settings,
    );
    // The shim removes the pod's cgroups; this catches what a killed shim left.
    if let Some(config) = cgroup_config
        && let Err(e) = crate::cgroup::Cgroups::detect(config)
            .and_then(|c| c.cleanup_pod(&uid, std::time::Duration::from_secs(10)))
    {
        log::warn!("remove the pod's cgroups: {e}");
    }
    // The shim removes its dirs; this catches what a crashed shim left.
    for d in [&run_dir, &root_dir] {
        if let Err(e) = fs::remove_dir_all(d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("remove {}: {e}", d.display());
        }
    }
    result
}

fn run_pod(
    pod: Pod,
    images: BTreeMap<String, ImageInfo>,
    uid: &str,
    run_dir: &Path,
    root_dir: &Path,
    log_dir: Option<&Path>,
    settings: crate::shim::ShimSettings,
) -> CliResult {
    fs::create_dir_all(run_dir).with_context(|| format!("mkdir {}", run_dir.display()))?;
    fs::create_dir_all(root_dir).with_context(|| format!("mkdir {}", root_dir.display()))?;
    // `podsup image rm` reads this to refuse removing an image in use.
    let mut ids: Vec<&str> = images.values().map(|i| i.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    let mut list = ids.join("\n");
    list.push('\n');
    fs::write(run_dir.join("images"), list).context("write images")?;
    let spec = ShimSpec {
        uid: uid.to_string(),
        pod,
        images,
        run_dir: run_dir.to_path_buf(),
        root_dir: root_dir.to_path_buf(),
        log_dir: match log_dir {
            Some(d) => Some(std::path::absolute(d).context("resolve --log-dir")?),
            None => None,
        },
        settings,
    };
    let spec_path = ShimSpec::spec_path(run_dir);
    fs::write(
        &spec_path,
        serde_json::to_vec(&spec).context("encode spec")?,
    )
    .context("write spec.json")?;

    // Block the signals we forward before the shim exists, so none is lost in between.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    mask.thread_block().context("block signals")?;
    let exe = std::env::current_exe().context("find the podsup binary")?;
    // std resets the signal mask and SIGPIPE in the child before exec.
    let mut shim = Command::new(exe)
        .arg("shim")
        .arg("--spec")
        .arg(&spec_path)
        .arg("--foreground")
        .stdin(Stdio::null())
        .spawn()
        .context("start podsup shim")?;
    let shim_pid = Pid::from_raw(shim.id() as i32);
    let mut forwarded = 0;
    let status = loop {
        if let Some(status) = shim.try_wait().context("wait for the shim")? {
            break status;
        }
        match mask.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(_) => {
                // First signal: graceful stop; the next one: no more grace.
                let sig = if forwarded == 0 {
                    Signal::SIGTERM
                } else {
                    Signal::SIGINT
                };
                let _ = nix::sys::signal::kill(shim_pid, sig);
                forwarded += 1;
            }
        }
    };
    let _ = mask.thread_unblock();
    match status.code() {
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(1) => Err(Failure::User(String::new())),
        Some(c) => Err(Failure::Internal(anyhow::anyhow!(
            "podsup shim failed (exit status {c})"
        ))),
        None => Err(Failure::Internal(anyhow::anyhow!(
            "podsup shim was killed: {status}"
        ))),
    }
}
