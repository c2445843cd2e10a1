//! `podsup daemon`: watches the manifest directory, reconciles desired pods with the shims
//! that run, serves the API socket.
//!
//! One loop on the main thread owns every decision and every shim: it polls a wake pipe
//! (file events from notify's thread, requests from the API threads), a signalfd, and one
//! pidfd per shim; its only deadline is the debounce's, so an idle daemon sleeps in `poll`
//! with no timeout. Policy lives in `plan::reconcile` (pure); [`Daemon::apply`] only executes
//! the actions. The daemon never forks: shims are started with `Command` and call `setsid`
//! themselves, so they outlive the daemon; a new daemon adopts them from `--run/pods/<uid>/`.
//! API connections each get a thread (they may block following logs or events); they read
//! a published snapshot and hand requests that change something to the loop.

pub mod debounce;
pub mod events;
pub mod safety;
pub mod server;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::api::Problem;
use crate::manifest;
use crate::model::{Pod, PodKey};
use crate::plan::reconcile::{PodAction, compute_actions};
use crate::shim::ShimSpec;
use debounce::{Batch, Debounce};
use events::Events;
use status::PodView;

/// Where the daemon keeps things (absolute paths).
#[derive(Clone, Debug)]
pub struct Config {
    pub manifests: PathBuf,
    pub root: PathBuf,
    pub run: PathBuf,
    pub log_dir: PathBuf,
    pub cgroup_parent: String,
    /// What each shim gets (back-off, pids limit, prefork); `cgroup_parent` wins over its own.
    pub settings: crate::shim::ShimSettings,
}

/// The daemon will not run as asked (unsafe directory, another daemon on the socket): the
/// user's to fix, not an internal failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// A request from an API thread that the loop must carry out.
pub enum LoopRequest {
    Restart {
        key: PodKey,
        container: Option<String>,
        reply: mpsc::Sender<std::result::Result<String, String>>,
    },
}

/// What the loop publishes for the API threads.
#[derive(Default)]
pub struct Snapshot {
    pub pods: Vec<PodView>,
    pub problems: Vec<Problem>,
}

/// State shared between the loop, notify's thread and the API threads.
pub struct Shared {
    pub snapshot: Mutex<Snapshot>,
    pub events: Events,
    fs_events: Mutex<FsEvents>,
    commands: Mutex<Vec<LoopRequest>>,
    wake: UnixStream,
}

#[derive(Default)]
struct FsEvents {
    /// File names, and whether the event was a rename into place.
    names: Vec<(String, bool)>,
    /// Pods (uids) whose shim published a new status.json.
    statuses: Vec<String>,
    rescan: bool,
}

impl Shared {
    fn wake(&self) {
        // A full pipe already means "wake up".
        let _ = (&self.wake).write(&[1]);
    }

    pub fn send(&self, c: LoopRequest) {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
        self.wake();
    }
}

/// One manifest file as last read.
#[derive(Debug, Default)]
struct FileState {
    /// The last good pods (kept while the file is invalid).
    pods: Vec<Pod>,
    /// Why the current content is not applied.
    error: Option<String>,
}

/// A shim the daemon started or adopted.
struct Entry {
    key: PodKey,
    uid: String,
    /// The pod as the shim runs it (what `spec.json` says).
    pod: Pod,
    file: String,
    pid: i32,
    /// None once the shim is gone (a finished pod).
    pidfd: Option<OwnedFd>,
    /// The pod ran to its end (restartPolicy Never/OnFailure) and its shim exited: kept
    /// for status until its file changes or goes.
    finished: bool,
    /// Set when this daemon started the shim (it must reap it).
    child: Option<Child>,
    started: SystemTime,
    run_dir: PathBuf,
    root_dir: PathBuf,
    stopping: bool,
}

pub struct Daemon {
    cfg: Config,
    shared: Arc<Shared>,
    wake_rx: UnixStream,
    files: BTreeMap<String, FileState>,
    /// Running (and stopping) pods by uid.
    entries: BTreeMap<String, Entry>,
    /// Pods that could not start, with the pod that failed (not retried until it changes).
    start_errors: BTreeMap<PodKey, (Pod, String, String)>,
    /// Duplicates already reported, so that each is reported once.
    reported_dups: BTreeSet<(PodKey, String)>,
    debounce: Debounce,
    cgroups: Option<crate::cgroup::Cgroups>,
    /// Pods whose shim died: deaths in a row, last death, no start before, woken for it.
    rebuilds: BTreeMap<PodKey, Rebuild>,
    /// A finished pod was removed during this reconcile: run it again.
    again: bool,
    /// Watches the manifest directory and each pod's run dir (for status.json).
    watcher: notify::RecommendedWatcher,
    /// The last status.json seen per pod uid, to turn changes into events.
    last_status: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Copy, Debug)]
struct Rebuild {
    step: u32,
    last_death: Instant,
    not_before: Instant,
    fired: bool,
}

/// Runs the daemon until SIGTERM or SIGINT; the pods keep running after it.
pub fn run(cfg: Config) -> Result<()> {
    for (what, dir) in [
        ("--root", &cfg.root),
        ("--run", &cfg.run),
        ("--log-dir", &cfg.log_dir),
    ] {
        create_state_dir(dir).with_context(|| format!("{what} {}", dir.display()))?;
    }
    for dir in [&cfg.manifests, &cfg.root, &cfg.run, &cfg.log_dir] {
        safety::check_path(dir).map_err(|why| Refused(format!("refusing to run: {why}")))?;
    }
    fs::create_dir_all(cfg.run.join("pods")).context("mkdir --run/pods")?;

    // Block the signals before any thread exists, so that every thread inherits the mask
    // and only the signalfd sees them. `Command` resets the mask for the shims.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().context("block signals")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;

    let (wake_tx, wake_rx) = UnixStream::pair().context("socketpair")?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        snapshot: Mutex::new(Snapshot::default()),
        events: Events::default(),
        fs_events: Mutex::new(FsEvents::default()),
        commands: Mutex::new(Vec::new()),
        wake: wake_tx,
    });

    let listener = server::bind(&cfg.run).context("API socket")?;
    let watcher = watch(&cfg.manifests, shared.clone())?;
    let cgroups = crate::cgroup::Cgroups::detect(crate::cgroup::Config {
        parent: cfg.cgroup_parent.clone(),
        ..Default::default()
    })
    .map_err(|e| log::warn!("cgroups: {e} (a dead shim's groups will not be cleaned)"))
    .ok();
    let mut d = Daemon {
        cfg,
        shared: shared.clone(),
        wake_rx,
        files: BTreeMap::new(),
        entries: BTreeMap::new(),
        start_errors: BTreeMap::new(),
        reported_dups: BTreeSet::new(),
        debounce: Debounce::default(),
        cgroups,
        rebuilds: BTreeMap::new(),
        again: false,
        watcher,
        last_status: BTreeMap::new(),
    };
    d.adopt();
    d.read_all();
    d.reconcile();
    server::serve(listener, shared.clone(), d.cfg.clone());
    notify_systemd("READY=1");
    let r = d.run_loop(&sigfd);
    let _ = fs::remove_file(crate::api::socket_path(&d.cfg.run));
    d.remove_empty_cgroup_parent();
    r
}

fn create_state_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

/// Tells systemd (Type=notify) about our state through `$NOTIFY_SOCKET` (sd_notify(3)): one
/// datagram; an abstract socket is written `@name`.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    } else {
        SocketAddr::from_pathname(Path::new(&path))
    };
    let r = addr.and_then(|a| {
        let s = UnixDatagram::unbound()?;
        s.send_to_addr(state.as_bytes(), &a).map(|_| ())
    });
    if let Err(e) = r {
        log::warn!("sd_notify {state}: {e}");
    }
}

/// Starts notify's watcher on the directory; its callback only records names and wakes the
/// loop.
fn watch(dir: &Path, shared: Arc<Shared>) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let manifests = dir.to_path_buf();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        {
            let mut q = shared.fs_events.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                // Our own reads of a manifest are events too (open, access, close without
                // writing): without this filter, reading a file would trigger reading it.
                Ok(ev)
                    if matches!(
                        ev.kind,
                        notify::EventKind::Access(a)
                            if a != notify::event::AccessKind::Close(
                                notify::event::AccessMode::Write
                            )
                    ) => {}
                Ok(ev) => {
                    if ev.need_rescan() {
                        q.rescan = true;
                    }
                    use notify::event::{EventKind, ModifyKind, RenameMode};
                    let renamed_to =
                        matches!(ev.kind, EventKind::Modify(ModifyKind::Name(RenameMode::To)));
                    for p in ev.paths {
                        let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
                            continue;
                        };
                        if p.parent() == Some(manifests.as_path()) {
                            q.names.push((n.to_string(), renamed_to));
                        } else if n == "status.json" && renamed_to {
                            // A pod's run dir: the shim published a new status.
                            if let Some(uid) = p
                                .parent()
                                .and_then(|d| d.file_name())
                                .and_then(|u| u.to_str())
                            {
                                q.statuses.push(uid.to_string());
                            }
                        }
                    }
                }
                Err(_) => q.rescan = true,
            }
        }
        shared.wake();
    })
    .context("start the file watcher")?;
    w.watch(dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watch {}", dir.display()))?;
    Ok(w)
}

fn new_uid() -> Result<String> {
    let uid = fs::read_to_string("/proc/sys/kernel/random/uuid").context("read a random uuid")?;
    Ok(uid.trim().to_string())
}

/// True when `pid` is a `podsup shim` for this spec (not a recycled pid).
fn is_our_shim(pid: i32, spec_path: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    use std::os::unix::ffi::OsStrExt;
    args.contains(&&b"shim"[..]) && args.contains(&spec_path.as_os_str().as_bytes())
}

fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid).ok_or(io::ErrorKind::InvalidInput)?;
    Ok(rustix::process::pidfd_open(
        p,
        rustix::process::PidfdFlags::empty(),
    )?)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

impl Daemon {
    fn event(&self, object: &str, warning: bool, reason: &str, message: &str) {
        self.shared.events.push(object, warning, reason, message);
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.cfg.manifests.join(name)
    }

    /// Adopts the shims found under `--run/pods/`; cleans what dead ones left.
    fn adopt(&mut self) {
        let Ok(dirs) = fs::read_dir(self.cfg.run.join("pods")) else {
            return;
        };
        for d in dirs.flatten() {
            let run_dir = d.path();
            let spec_path = ShimSpec::spec_path(&run_dir);
            let spec: Option<ShimSpec> = fs::read(&spec_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let pid: Option<i32> = fs::read_to_string(run_dir.join("shim.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let uid = d.file_name().to_string_lossy().into_owned();
            let file = fs::read_to_string(run_dir.join("source"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let finished = fs::read(run_dir.join("status.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| status::compute_pod_finished(&v));
            let alive = |pid: i32| is_our_shim(pid, &spec_path);
            // A live shim is adopted with a pidfd; a finished pod's (its shim exited on its
            // own) is kept for status. Anything else is cleaned up below.
            let adopted = match (spec, pid) {
                (Some(spec), Some(pid)) if !alive(pid) && finished => Some((spec, pid, None)),
                (Some(spec), Some(pid)) if alive(pid) => match pidfd(pid) {
                    Ok(fd) => Some((spec, pid, Some(fd))),
                    Err(e) => {
                        log::warn!("pidfd of shim {pid}: {e}");
                        None
                    }
                },
                _ => None,
            };
            if let Some((spec, pid, pidfd)) = adopted {
                let key = spec.pod.key();
                let started = fs::metadata(run_dir.join("shim.pid"))
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| SystemTime::now());
                if pidfd.is_some() {
                    self.event(
                        &key.to_string(),
                        false,
                        "Adopted",
                        &format!("shim pid {pid}"),
                    );
                    self.watch_pod(&run_dir);
                    // Events are changes from here on, not the history so far.
                    if let Some(v) = fs::read(run_dir.join("status.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                    {
                        self.last_status.insert(uid.clone(), v);
                    }
                }
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        key,
                        uid,
                        pod: spec.pod,
                        file,
                        pid,
                        finished: pidfd.is_none(),
                        pidfd,
                        child: None,
                        started,
                        run_dir,
                        root_dir: spec.root_dir,
                        stopping: false,
                    },
                );
                continue;
            }
            let root_dir = self.cfg.root.join("pods").join(&uid);
            self.cleanup_dead(&uid, &run_dir, &root_dir);
        }
    }

    /// When no pod is left, removes podsup's cgroup parent too, so that nothing podsup made
    /// stays behind. `rmdir` refuses a parent that still holds a pod's group (pods outlive
    /// the daemon), so this never touches a running pod.
    fn remove_empty_cgroup_parent(&self) {
        let Some(cg) = &self.cgroups else { return };
        // A pod that finished has no group left; a live one keeps the parent anyway.
        if self.entries.values().any(|e| !e.finished) {
            return;
        }
        for dir in cg.parent().dirs() {
            match fs::remove_dir(&dir) {
                Ok(()) => log::debug!("removed cgroup {}", dir.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::debug!("cgroup {} stays: {e}", dir.display()),
            }
        }
    }

    /// Removes what a dead shim left: its processes (in its cgroup), mounts under its
    /// directories, its cgroups and its directories. Every step runs.
    fn cleanup_dead(&self, uid: &str, run_dir: &Path, root_dir: &Path) {
        if let Some(cg) = &self.cgroups
            && let Err(e) = cg.cleanup_pod(uid, Duration::from_secs(5))
        {
            log::warn!("pod {uid}: cgroup cleanup: {e}");
        }
        // Mounts of the pod in our namespace (the shim's own vanish with its namespace).
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(run_dir) || p.starts_with(root_dir))
            .collect();
        points.sort();
        for p in points.iter().rev() {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
        for dir in [root_dir, run_dir] {
            if let Err(e) = fs::remove_dir_all(dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                log::warn!("remove {}: {e}", dir.display());
            }
        }
    }

    /// Reads every manifest file (start, SIGHUP, inotify overflow).
    fn read_all(&mut self) {
        let mut names: BTreeSet<String> = self.files.keys().cloned().collect();
        match fs::read_dir(&self.cfg.manifests) {
            Ok(rd) => {
                for e in rd.flatten() {
                    if let Some(n) = e.file_name().to_str() {
                        names.insert(n.to_string());
                    }
                }
            }
            Err(e) => self.event(
                &self.cfg.manifests.display().to_string(),
                true,
                "ReadFailed",
                &e.to_string(),
            ),
        }
        for n in names {
            self.read_file(&n);
        }
    }

    /// Reads one file again: gone → forgotten; invalid → last good pods kept.
    fn read_file(&mut self, name: &str) {
        if !manifest::is_manifest_name(name) {
            return;
        }
        let path = self.file_path(name);
        let shown = path.display().to_string();
        if fs::metadata(&path).is_err() && fs::symlink_metadata(&path).is_err() {
            if self.files.remove(name).is_some() {
                self.event(&shown, false, "Removed", "manifest file removed");
            }
            return;
        }
        let result = safety::check_manifest(&path)
            .map_err(|why| format!("{shown}: refused: {why}"))
            .and_then(|()| manifest::load_file(&path).map_err(|e| e.to_string()));
        let state = self.files.entry(name.to_string()).or_default();
        match result {
            Ok(pods) if pods.is_empty() && !state.pods.is_empty() => {
                // A truncated file mid-save, or emptied by hand: never a reason to tear pods
                // down. Removing the file stops them.
                let msg = format!(
                    "{shown}: declares no pod; keeping the pods it declared (remove the file to stop them)"
                );
                if state.error.as_deref() != Some(msg.as_str()) {
                    state.error = Some(msg.clone());
                    self.event(&shown, true, "ManifestEmpty", &msg);
                }
            }
            Ok(pods) => {
                state.error = None;
                state.pods = pods;
            }
            Err(msg) => {
                if state.error.as_deref() != Some(msg.as_str()) {
                    state.error = Some(msg.clone());
                    let kept = if state.pods.is_empty() {
                        ""
                    } else {
                        " (the last good version keeps running)"
                    };
                    self.event(&shown, true, "ManifestInvalid", &format!("{msg}{kept}"));
                }
            }
        }
    }

    /// Desired pods: from the files in name order, the first file declaring a pod wins.
    fn compute_desired(&mut self) -> BTreeMap<PodKey, (Pod, String)> {
        let list: Vec<(String, Vec<PodKey>)> = self
            .files
            .iter()
            .map(|(n, f)| (n.clone(), f.pods.iter().map(Pod::key).collect()))
            .collect();
        let (owners, dups) = manifest::files::compute_owners(&list);
        for d in dups {
            if self.reported_dups.insert((d.key.clone(), d.file.clone())) {
                self.event(
                    &d.key.to_string(),
                    true,
                    "DuplicatePod",
                    &format!(
                        "{} declares it too; {} wins (the first file by name)",
                        self.file_path(&d.file).display(),
                        self.file_path(&d.winner).display()
                    ),
                );
            }
        }
        let mut out = BTreeMap::new();
        for (key, file) in owners {
            if let Some(p) = self.files[&file].pods.iter().find(|p| p.key() == key) {
                out.insert(key, (p.clone(), file));
            }
        }
        out
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (name, f) in &self.files {
            if let Some(e) = &f.error {
                out.push(Problem {
                    file: self.file_path(name).display().to_string(),
                    pod: None,
                    reason: "ManifestInvalid".into(),
                    message: e.clone(),
                });
            }
        }
        let list: Vec<(String, Vec<PodKey>)> = self
            .files
            .iter()
            .map(|(n, f)| (n.clone(), f.pods.iter().map(Pod::key).collect()))
            .collect();
        for d in manifest::files::compute_owners(&list).1 {
            out.push(Problem {
                file: self.file_path(&d.file).display().to_string(),
                pod: Some(d.key.to_string()),
                reason: "DuplicatePod".into(),
                message: format!(
                    "pod {} is declared by {} too, which wins",
                    d.key,
                    self.file_path(&d.winner).display()
                ),
            });
        }
        for (key, (_, file, msg)) in &self.start_errors {
            out.push(Problem {
                file: self.file_path(file).display().to_string(),
                pod: Some(key.to_string()),
                reason: "FailedToStart".into(),
                message: msg.clone(),
            });
        }
        out
    }

    /// Decide (plan::reconcile), then do.
    fn reconcile(&mut self) {
        let desired = self.compute_desired();
        self.start_errors
            .retain(|k, (p, _, _)| desired.get(k).is_some_and(|(d, _)| d == p));
        let running: BTreeMap<PodKey, Pod> = self
            .entries
            .values()
            .filter(|e| !e.stopping)
            .map(|e| (e.key.clone(), e.pod.clone()))
            .collect();
        let busy: BTreeSet<PodKey> = self
            .entries
            .values()
            .filter(|e| e.stopping)
            .map(|e| e.key.clone())
            .collect();
        let want: BTreeMap<PodKey, Pod> = desired
            .iter()
            .map(|(k, (p, _))| (k.clone(), p.clone()))
            .collect();
        let now = Instant::now();
        for a in compute_actions(&want, &running) {
            if busy.contains(&a.key) && a.action == PodAction::Start {
                // The old copy is still stopping; its exit runs the reconcile again.
                continue;
            }
            if a.action == PodAction::Start
                && self
                    .rebuilds
                    .get(&a.key)
                    .is_some_and(|r| r.not_before > now)
            {
                // A shim that died is rebuilt with back-off; the loop wakes up for it.
                continue;
            }
            let desired_pod = desired.get(&a.key).cloned();
            self.apply(a.key, a.action, desired_pod);
        }
        // The owning file may have changed (first file removed, second wins).
        for e in self.entries.values_mut() {
            if let Some((_, f)) = desired.get(&e.key)
                && !e.stopping
                && e.file != *f
            {
                e.file = f.clone();
                let _ = fs::write(e.run_dir.join("source"), f);
            }
        }
        if std::mem::take(&mut self.again) {
            self.reconcile();
            return;
        }
        self.publish();
    }

    /// When the next delayed rebuild is due.
    fn next_rebuild(&self) -> Option<Instant> {
        self.rebuilds
            .values()
            .filter(|r| !r.fired)
            .map(|r| r.not_before)
            .min()
    }

    fn uid_of(&self, key: &PodKey) -> Option<String> {
        self.entries
            .values()
            .find(|e| !e.stopping && e.key == *key)
            .map(|e| e.uid.clone())
    }

    /// Executes one action.
    fn apply(&mut self, key: PodKey, action: PodAction, desired: Option<(Pod, String)>) {
        let k = key.to_string();
        match action {
            PodAction::Start => {
                let Some((pod, file)) = desired else { return };
                if self.start_errors.contains_key(&key) {
                    return;
                }
                match self.start(pod.clone(), &file) {
                    Ok(()) => {}
                    Err(e) => {
                        let msg = format!("{e:#}");
                        self.event(&k, true, "FailedToStart", &msg);
                        self.start_errors.insert(key, (pod, file, msg));
                    }
                }
            }
            PodAction::Stop => {
                if let Some(uid) = self.uid_of(&key) {
                    self.event(
                        &k,
                        false,
                        "Killing",
                        "no manifest declares the pod any more",
                    );
                    self.stop(&uid);
                }
            }
            PodAction::Recreate { reason } => {
                if !self.images_ready(&key, desired.as_ref()) {
                    return;
                }
                if let Some(uid) = self.uid_of(&key) {
                    self.event(
                        &k,
                        false,
                        "Killing",
                        &format!("recreating the pod: {reason}"),
                    );
                    self.stop(&uid);
                }
            }
            PodAction::UpdateContainers {
                restart,
                start,
                stop,
            } => {
                if !self.images_ready(&key, desired.as_ref()) {
                    return;
                }
                let Some((pod, _)) = desired else { return };
                let Some(uid) = self.uid_of(&key) else { return };
                let (same_layout, finished) = {
                    let e = &self.entries[&uid];
                    (names(&e.pod) == names(&pod), e.finished)
                };
                if finished {
                    self.event(
                        &k,
                        false,
                        "Killing",
                        "the finished pod changed: running it again",
                    );
                    self.stop(&uid);
                    return;
                }
                if !start.is_empty() || !stop.is_empty() || !same_layout {
                    self.event(
                        &k,
                        false,
                        "Killing",
                        "recreating the pod: containers added, removed or reordered",
                    );
                    self.stop(&uid);
                    return;
                }
                match self.update_in_place(&uid, pod, &restart) {
                    Ok(()) => self.event(
                        &k,
                        false,
                        "Applied",
                        &format!("restarting changed containers: {}", restart.join(", ")),
                    ),
                    Err(e) => {
                        self.event(&k, true, "UpdateFailed", &format!("{e:#}; recreating"));
                        self.stop(&uid);
                    }
                }
            }
            PodAction::UpdateMetadata => {
                let Some((pod, _)) = desired else { return };
                let Some(uid) = self.uid_of(&key) else { return };
                let e = self.entries.get_mut(&uid).expect("entry");
                e.pod = pod;
                let r = rewrite_spec(e);
                if let Err(err) = r {
                    log::warn!("pod {k}: {err:#}");
                }
                self.event(&k, false, "Applied", "metadata changed; nothing restarts");
            }
        }
    }

    /// Before a running pod is disturbed for a new spec: are its images all there? If not,
    /// the running version stays and the problem is reported (once per desired spec).
    fn images_ready(&mut self, key: &PodKey, desired: Option<&(Pod, String)>) -> bool {
        let Some((pod, file)) = desired else {
            return true;
        };
        if self.start_errors.get(key).is_some_and(|(p, _, _)| p == pod) {
            return false;
        }
        match crate::cli::run::resolve_images(&self.cfg.root, pod) {
            Ok(_) => true,
            Err(e) => {
                let msg = format!("{e}; the running version keeps running");
                self.event(&key.to_string(), true, "FailedToApply", &msg);
                self.start_errors
                    .insert(key.clone(), (pod.clone(), file.clone(), msg));
                false
            }
        }
    }

    /// Hands a new spec to a running shim; it restarts the containers named in `restart`
    /// (their spec changed) and nothing else.
    fn update_in_place(&mut self, uid: &str, pod: Pod, restart: &[String]) -> Result<()> {
        let images = crate::cli::run::resolve_images(&self.cfg.root, &pod)
            .map_err(|e| anyhow::anyhow!(e))?;
        let e = self.entries.get_mut(uid).expect("entry");
        let spec_path = ShimSpec::spec_path(&e.run_dir);
        let mut spec: ShimSpec = serde_json::from_slice(
            &fs::read(&spec_path).with_context(|| format!("read {}", spec_path.display()))?,
        )
        .context("parse spec.json")?;
        spec.pod = pod.clone();
        spec.images = images;
        write_atomic(&spec_path, &serde_json::to_vec(&spec)?).context("write spec.json")?;
        write_atomic(&e.run_dir.join("restart"), restart.join("\n").as_bytes())
            .context("write restart request")?;
        nix::sys::signal::kill(Pid::from_raw(e.pid), Signal::SIGUSR1).context("signal the shim")?;
        e.pod = pod;
        Ok(())
    }

    /// Asks the shim to restart containers (all app containers and sidecars when `None`).
    fn restart(
        &mut self,
        key: &PodKey,
        container: Option<String>,
    ) -> std::result::Result<String, String> {
        let uid = self
            .uid_of(key)
            .ok_or_else(|| format!("pod {key} is not running"))?;
        if self.entries[&uid].finished {
            let msg = "the pod had finished: running it again".to_string();
            self.event(&key.to_string(), false, "Restarting", &msg);
            self.stop(&uid);
            self.reconcile();
            return Ok(msg);
        }
        let e = &self.entries[&uid];
        let list: Vec<String> = match container {
            Some(c) => {
                if !e.pod.spec.all_containers().any(|(_, x)| x.name == c) {
                    return Err(format!("pod {key} has no container {c:?}"));
                }
                vec![c]
            }
            None => e
                .pod
                .spec
                .all_containers()
                .filter(|(k, _)| *k != crate::model::ContainerKind::Init)
                .map(|(_, c)| c.name.clone())
                .collect(),
        };
        write_atomic(&e.run_dir.join("restart"), list.join("\n").as_bytes())
            .map_err(|err| format!("write restart request: {err}"))?;
        nix::sys::signal::kill(Pid::from_raw(e.pid), Signal::SIGUSR1)
            .map_err(|err| format!("signal the shim: {err}"))?;
        let msg = format!("restarting {}", list.join(", "));
        self.event(&key.to_string(), false, "Restarting", &msg);
        Ok(msg)
    }

    /// Lays out the pod's directories, writes spec.json and starts `podsup shim`.
    fn start(&mut self, pod: Pod, file: &str) -> Result<()> {
        let key = pod.key();
        let images = crate::cli::run::resolve_images(&self.cfg.root, &pod)
            .map_err(|e| anyhow::anyhow!(e))?;
        let uid = new_uid()?;
        let run_dir = self.cfg.run.join("pods").join(&uid);
        let root_dir = self.cfg.root.join("pods").join(&uid);
        let r = (|| -> Result<(i32, OwnedFd, Child)> {
            fs::create_dir_all(&run_dir).with_context(|| format!("mkdir {}", run_dir.display()))?;
            fs::create_dir_all(&root_dir)
                .with_context(|| format!("mkdir {}", root_dir.display()))?;
            let mut ids: Vec<&str> = images.values().map(|i| i.id.as_str()).collect();
            ids.sort();
            ids.dedup();
            fs::write(run_dir.join("images"), format!("{}\n", ids.join("\n")))
                .context("write images")?;
            fs::write(run_dir.join("source"), file).context("write source")?;
            let spec = ShimSpec {
                uid: uid.clone(),
                pod: pod.clone(),
                images,
                run_dir: run_dir.clone(),
                root_dir: root_dir.clone(),
                log_dir: Some(self.cfg.log_dir.clone()),
                settings: crate::shim::ShimSettings {
                    cgroup_parent: Some(self.cfg.cgroup_parent.clone()),
                    ..self.cfg.settings.clone()
                },
            };
            let spec_path = ShimSpec::spec_path(&run_dir);
            write_atomic(&spec_path, &serde_json::to_vec(&spec)?).context("write spec.json")?;
            let log = fs::File::create(run_dir.join("shim.log")).context("create shim.log")?;
            let exe = std::env::current_exe().context("find the podsup binary")?;
            let child = Command::new(exe)
                .arg("shim")
                .arg("--spec")
                .arg(&spec_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start podsup shim")?;
            let pid = child.id() as i32;
            let fd = pidfd(pid).context("pidfd_open")?;
            Ok((pid, fd, child))
        })();
        match r {
            Ok((pid, pidfd, child)) => {
                self.watch_pod(&run_dir);
                self.event(
                    &key.to_string(),
                    false,
                    "Created",
                    &format!("from {} (shim pid {pid})", self.file_path(file).display()),
                );
                // Said, not ignored: what the manifest asks and podsup does not do yet.
                for w in crate::cli::run::not_yet_applied(&pod) {
                    self.event(&key.to_string(), true, "NotApplied", &w);
                }
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        key,
                        uid,
                        pod,
                        file: file.to_string(),
                        pid,
                        pidfd: Some(pidfd),
                        finished: false,
                        child: Some(child),
                        started: SystemTime::now(),
                        run_dir,
                        root_dir,
                        stopping: false,
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.cleanup_dead(&uid, &run_dir, &root_dir);
                Err(e)
            }
        }
    }

    /// Graceful stop: SIGTERM to the shim, which runs the grace periods; its exit (pidfd)
    /// finishes the job.
    fn stop(&mut self, uid: &str) {
        if self.entries.get(uid).is_some_and(|e| e.finished) {
            let e = self.entries.remove(uid).expect("entry");
            self.remove_pod_files(&e);
            self.again = true;
            return;
        }
        if let Some(e) = self.entries.get_mut(uid)
            && !e.stopping
        {
            e.stopping = true;
            let _ = nix::sys::signal::kill(Pid::from_raw(e.pid), Signal::SIGTERM);
        }
    }

    /// A shim exited: reap, clean, and reconcile (a stopped pod may have a successor; a dead
    /// one is rebuilt, with back-off when it keeps dying; a finished one stays as it ended).
    fn shim_exited(&mut self, uid: &str) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if let Some(c) = &mut e.child {
            let _ = c.wait();
        }
        e.child = None;
        e.pidfd = None;
        let finished = !e.stopping
            && fs::read(e.run_dir.join("status.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| status::compute_pod_finished(&v));
        if finished {
            e.finished = true;
            let k = e.key.to_string();
            self.event(
                &k,
                false,
                "Finished",
                "every container ended; the pod stays as it ended until its file changes",
            );
            return;
        }
        let e = self.entries.remove(uid).expect("entry");
        self.remove_pod_files(&e);
        let k = e.key.to_string();
        if e.stopping {
            self.event(&k, false, "Stopped", "pod stopped and cleaned up");
            return;
        }
        // Deaths in a row back off on the CrashLoopBackOff curve (0 s, 10 s, 20 s … 5 min);
        // ten quiet minutes start a fresh curve.
        let now = Instant::now();
        let settings = crate::plan::backoff::BackoffSettings::default();
        let step = match self.rebuilds.get(&e.key) {
            Some(r) if now.duration_since(r.last_death) < settings.reset_after => r.step + 1,
            _ => 0,
        };
        let delay = settings.compute_delay(step);
        self.rebuilds.insert(
            e.key.clone(),
            Rebuild {
                step,
                last_death: now,
                not_before: now + delay,
                fired: delay.is_zero(),
            },
        );
        let when = if delay.is_zero() {
            String::new()
        } else {
            format!(" in {}s", delay.as_secs())
        };
        self.event(
            &k,
            true,
            "ShimDied",
            &format!(
                "shim pid {} died; cleaned up, rebuilding the pod{when}",
                e.pid
            ),
        );
    }

    /// Follows the shim's status.json (its container events) through the watcher.
    fn watch_pod(&mut self, run_dir: &Path) {
        use notify::Watcher;
        if let Err(e) = self
            .watcher
            .watch(run_dir, notify::RecursiveMode::NonRecursive)
        {
            log::warn!("watch {}: {e}", run_dir.display());
        }
    }

    /// Turns a new status.json into container events.
    fn status_changed(&mut self, uid: &str) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let Some(new) = fs::read(e.run_dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            return;
        };
        let k = e.key.to_string();
        for (warning, reason, msg) in
            status::compute_container_events(self.last_status.get(uid), &new)
        {
            self.event(&k, warning, &reason, &msg);
        }
        self.last_status.insert(uid.to_string(), new);
    }

    /// Cleans a gone pod's processes, cgroups, mounts, directories and logs.
    fn remove_pod_files(&mut self, e: &Entry) {
        use notify::Watcher;
        let _ = self.watcher.unwatch(&e.run_dir);
        self.last_status.remove(&e.uid);
        self.cleanup_dead(&e.uid, &e.run_dir, &e.root_dir);
        // The pod object is gone (a successor gets a new uid): its logs go with it, as the
        // kubelet removes a deleted pod's logs.
        let logs =
            crate::logs::pod_log_dir(&self.cfg.log_dir, &e.key.namespace, &e.key.name, &e.uid);
        if let Err(err) = fs::remove_dir_all(&logs)
            && err.kind() != io::ErrorKind::NotFound
        {
            log::warn!("remove {}: {err}", logs.display());
        }
    }

    /// Publishes the snapshot for the API threads.
    fn publish(&self) {
        let pods = self
            .entries
            .values()
            .map(|e| PodView {
                pod: e.pod.clone(),
                uid: e.uid.clone(),
                file: self.file_path(&e.file).display().to_string(),
                started: e.started,
                stopping: e.stopping,
                run_dir: e.run_dir.clone(),
                log_dir: Some(self.cfg.log_dir.clone()),
            })
            .collect();
        let mut s = self
            .shared
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.pods = pods;
        s.problems = self.problems();
    }

    fn run_loop(&mut self, sigfd: &SignalFd) -> Result<()> {
        loop {
            let deadline = [self.debounce.deadline(), self.next_rebuild()]
                .into_iter()
                .flatten()
                .min();
            let timeout = crate::sys::poll_timeout(deadline);
            let uids: Vec<String> = self
                .entries
                .iter()
                .filter(|(_, e)| e.pidfd.is_some())
                .map(|(u, _)| u.clone())
                .collect();
            let mut fds = vec![
                PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            ];
            for u in &uids {
                if let Some(fd) = &self.entries[u].pidfd {
                    fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                }
            }
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let mut changed = false;
            if ready[1] {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGHUP) => {
                            // Read everything again; retry pods that failed to start.
                            self.start_errors.clear();
                            self.debounce.note_rescan(Instant::now());
                        }
                        Ok(s) => {
                            log::info!("{s}: exiting; the pods keep running");
                            return Ok(());
                        }
                        Err(_) => {}
                    }
                }
            }
            if ready[0] {
                let mut buf = [0u8; 256];
                while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
                let ev = std::mem::take(
                    &mut *self
                        .shared
                        .fs_events
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                );
                let now = Instant::now();
                if ev.rescan {
                    self.debounce.note_rescan(now);
                }
                for uid in ev.statuses {
                    self.status_changed(&uid);
                }
                for (n, atomic) in ev.names {
                    if manifest::is_manifest_name(&n) && self.debounce.note(n.clone(), now, atomic)
                    {
                        self.read_file(&n);
                        changed = true;
                    }
                }
                let cmds = std::mem::take(
                    &mut *self
                        .shared
                        .commands
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()),
                );
                for c in cmds {
                    match c {
                        LoopRequest::Restart {
                            key,
                            container,
                            reply,
                        } => {
                            let _ = reply.send(self.restart(&key, container));
                        }
                    }
                }
            }
            for (i, u) in uids.iter().enumerate() {
                if ready[i + 2] {
                    self.shim_exited(u);
                    changed = true;
                }
            }
            let now = Instant::now();
            for r in self.rebuilds.values_mut() {
                if !r.fired && r.not_before <= now {
                    // A delayed rebuild is due.
                    r.fired = true;
                    changed = true;
                }
            }
            match self.debounce.take(Instant::now()) {
                Some(Batch::Rescan) => {
                    self.read_all();
                    changed = true;
                }
                Some(Batch::Files(names)) => {
                    for n in names {
                        self.read_file(&n);
                    }
                    changed = true;
                }
                None => {}
            }
            if changed {
                self.reconcile();
            } else {
                self.publish();
            }
        }
    }
}

fn names(p: &Pod) -> Vec<String> {
    p.spec
        .all_containers()
        .map(|(_, c)| c.name.clone())
        .collect()
}

/// Rewrites the pod's spec.json with the entry's pod (metadata changes), so that a daemon
/// that adopts the shim later sees what runs.
fn rewrite_spec(e: &Entry) -> Result<()> {
    let spec_path = ShimSpec::spec_path(&e.run_dir);
    let mut spec: ShimSpec = serde_json::from_slice(&fs::read(&spec_path)?)?;
    spec.pod = e.pod.clone();
    write_atomic(&spec_path, &serde_json::to_vec(&spec)?)?;
    Ok(())
}
