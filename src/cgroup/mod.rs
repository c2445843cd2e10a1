//! The pod's cgroups: one per pod under podsup's own parent, one child per container, on
//! cgroup v1, v2 and the hybrid layout (v1 controllers plus a cgroup2 mount for tracking).
//!
//! Owns: layout detection, creating and removing podsup's groups, limits (written through
//! cgroups-rs' controllers, pointed at our directories), joining a process before exec,
//! killing every process of a group, OOM notification as a pollable fd, and counters.
//!
//! Must not: touch any cgroup outside `<mount>/<parent>` (names are validated, handles can
//! only be made under the parent); create groups in v1 hierarchies other than memory, cpu,
//! cpuacct, pids and freezer; start threads (the shim is single-threaded and forks).
//! Resource math lives in [`resources`] and is pure.

mod join;
mod kill;
pub mod layout;
mod limits;
mod oom;
pub mod resources;
pub mod stats;

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use join::{JoinError, JoinFds, compute_join_dirs};
pub use layout::{Layout, Mode, V1Controller};
pub use oom::Watch;
pub use resources::{DEFAULT_PIDS_LIMIT, Limits, compute_container_limits, compute_pod_limits};
pub use stats::CpuStat;

/// How long [`Cgroup::remove`] waits by default for dying tasks to leave a group.
pub const DEFAULT_REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Cgroup::kill_all`] tries by default before giving up.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// What failed, on which file, with which value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Layout(String),
    #[error("invalid cgroup name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("read {}: {}", path.display(), errno_text(err))]
    Read { path: PathBuf, err: std::io::Error },
    #[error("write {}: {data:?}: {}", path.display(), errno_text(err))]
    Write {
        path: PathBuf,
        data: String,
        err: std::io::Error,
    },
    #[error("write {}: {data:?}: {detail}", path.display())]
    Limit {
        path: PathBuf,
        data: String,
        detail: String,
    },
    #[error("open {}: {}", path.display(), errno_text(err))]
    Open { path: PathBuf, err: std::io::Error },
    #[error("mkdir {}: {}", path.display(), errno_text(err))]
    Mkdir { path: PathBuf, err: std::io::Error },
    #[error("rmdir {}: {} (waited {waited:?})", path.display(), errno_text(err))]
    Rmdir {
        path: PathBuf,
        err: std::io::Error,
        waited: Duration,
    },
    #[error("parse {}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("freeze {}: still {state:?} after {waited:?}", path.display())]
    Freeze {
        path: PathBuf,
        state: String,
        waited: Duration,
    },
    #[error("kill all in {}: processes {pids:?} still there after {waited:?}", path.display())]
    KillTimeout {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("{step}: {err}")]
    Sys {
        step: &'static str,
        err: nix::errno::Errno,
    },
    #[error("{}: cgroup controller {controller} is not enabled there (no {file})", path.display())]
    ControllerMissing {
        path: PathBuf,
        controller: &'static str,
        file: &'static str,
    },
    #[error("{0} is not available on this machine")]
    Unsupported(String),
}

fn errno_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).to_string(),
        None => err.to_string(),
    }
}

/// Daemon settings for cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The group under each hierarchy's root that holds every pod (default `podsup`).
    pub parent: String,
    /// Per-pod `pids.max`; `None` disables it (default [`DEFAULT_PIDS_LIMIT`]).
    pub pids_limit: Option<i64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            parent: "podsup".into(),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

/// Checks one path component of a podsup cgroup. Only `[A-Za-z0-9_-]` is allowed: no `/`
/// or `..` to escape the parent, and no `.`, which every cgroup interface file name has.
pub fn compute_name_check(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > 128 {
        Some("longer than 128 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Some("only letters, digits, '-' and '_' are allowed")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::InvalidName {
            name: name.into(),
            why,
        }),
        None => Ok(()),
    }
}

/// Entry point: the machine's layout plus the daemon's settings. Hands out [`Cgroup`]
/// handles, all under the parent.
#[derive(Clone, Debug)]
pub struct Cgroups {
    layout: Layout,
    config: Config,
}

impl Cgroups {
    pub fn new(layout: Layout, config: Config) -> Result<Cgroups, Error> {
        compute_name_check(&config.parent)?;
        Ok(Cgroups { layout, config })
    }

    /// Detects the layout from `/proc/self/mountinfo`.
    pub fn detect(config: Config) -> Result<Cgroups, Error> {
        Cgroups::new(Layout::detect()?, config)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The parent group itself (`<mount>/<parent>`). Its `remove` takes every pod's
    /// group with it: for tests and a full teardown only.
    pub fn parent(&self) -> Cgroup {
        Cgroup {
            layout: self.layout.clone(),
            rel: PathBuf::from(&self.config.parent),
        }
    }

    /// The handle of a pod's group, `<parent>/pod<uid>` (the kubelet's name). No I/O.
    pub fn pod(&self, uid: &str) -> Result<Cgroup, Error> {
        self.parent().child(&format!("pod{uid}"))
    }

    /// Creates the pod's group with its limits (pids from the settings). On failure
    /// nothing is left behind.
    pub fn create_pod(&self, uid: &str, spec: &crate::model::PodSpec) -> Result<Cgroup, Error> {
        let cg = self.pod(uid)?;
        cg.create_with(&compute_pod_limits(spec, self.config.pids_limit))?;
        Ok(cg)
    }

    /// Kills every process of a pod's groups and removes them, from what is on disk
    /// alone (for a daemon cleaning up after a dead shim). A pod without groups is fine.
    pub fn cleanup_pod(&self, uid: &str, timeout: Duration) -> Result<(), Error> {
        let pod = self.pod(uid)?;
        let start = Instant::now();
        pod.kill_all(timeout)?;
        pod.remove(timeout.saturating_sub(start.elapsed()))
    }

    /// The uids of the pod groups that exist under the parent (in the first hierarchy),
    /// for a daemon that cleans up after a dead shim from what is on disk.
    pub fn pods(&self) -> Result<Vec<String>, Error> {
        let Some(dir) = self.parent().dirs().into_iter().next() else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::Read { path: dir, err }),
        };
        let mut out: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("pod")
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// One podsup cgroup (the parent, a pod or a container) in every hierarchy podsup uses.
/// A handle: making one does no I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    layout: Layout,
    /// Path below each hierarchy's mount point, starting with the parent's name.
    rel: PathBuf,
}

impl Cgroup {
    /// A child group (a container's, under a pod). The name is checked.
    pub fn child(&self, name: &str) -> Result<Cgroup, Error> {
        compute_name_check(name)?;
        Ok(Cgroup {
            layout: self.layout.clone(),
            rel: self.rel.join(name),
        })
    }

    /// The path below each mount point, e.g. `podsup/pod123/app`.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// This group's directory in every hierarchy podsup uses (v1 controller mounts,
    /// deduplicated, then the cgroup2 mount).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.layout
            .roots()
            .into_iter()
            .map(|r| r.join(&self.rel))
            .collect()
    }

    /// The directory that holds `controller`'s files for this group: the v1 controller's
    /// mount on v1 and hybrid, the cgroup2 directory on v2. `None` if not mounted.
    pub fn dir(&self, controller: V1Controller) -> Option<PathBuf> {
        match self.layout.mode {
            Mode::V2 => self.unified_dir(),
            Mode::V1 | Mode::Hybrid => self.layout.v1.get(&controller).map(|m| m.join(&self.rel)),
        }
    }

    /// The group's directory in the cgroup2 hierarchy (v2, or hybrid tracking).
    pub fn unified_dir(&self) -> Option<PathBuf> {
        self.layout.unified.as_ref().map(|u| u.join(&self.rel))
    }

    fn is_v2(&self) -> bool {
        self.layout.mode == Mode::V2
    }

    /// Creates the group (and its missing ancestors under the parent) in every hierarchy.
    /// On v2 it first enables cpu, memory and pids for the children of each ancestor, as
    /// far as the parent offers them (cgroup-v2.rst "Enabling and Disabling": only an
    /// ancestor's `cgroup.subtree_control` makes a child's controller files appear).
    pub fn create(&self) -> Result<(), Error> {
        for root in self.layout.roots() {
            let v2 = self.is_v2();
            let mut dir = root.clone();
            let n = self.rel.components().count();
            for (i, comp) in self.rel.components().enumerate() {
                dir.push(comp);
                mkdir(&dir)?;
                if v2 && i + 1 < n {
                    enable_v2_controllers(&dir)?;
                }
            }
        }
        Ok(())
    }

    /// Creates the group and writes its limits; if that fails, removes what it created
    /// (the original error is returned; a cleanup failure is logged).
    pub fn create_with(&self, limits: &Limits) -> Result<(), Error> {
        let existed = self.exists();
        let r = self.create().and_then(|()| self.apply_limits(limits));
        if let Err(e) = &r
            && !existed
            && let Err(c) = self.remove(Duration::from_millis(500))
        {
            log::warn!("after {e}: cleanup: {c}");
        }
        r
    }

    /// Creates a container's group under this pod group, with the container's limits.
    pub fn create_container(&self, c: &crate::model::Container) -> Result<Cgroup, Error> {
        let cg = self.child(&c.name)?;
        cg.create_with(&compute_container_limits(&c.resources))?;
        Ok(cg)
    }

    /// Whether any process is in this group or below, from the cgroup2 `cgroup.events`
    /// `populated` (v2, or the hybrid tracking group). `None` without a cgroup2 group.
    pub fn populated(&self) -> Result<Option<bool>, Error> {
        let Some(d) = self.unified_dir() else {
            return Ok(None);
        };
        let p = d.join("cgroup.events");
        let text = read_file(&p)?;
        match stats::parse_flat_keyed(&text, "populated") {
            Some(v) => Ok(Some(v == 1)),
            None => Err(Error::Parse {
                path: p,
                detail: "no populated line".into(),
            }),
        }
    }

    /// A pollable fd that becomes readable when `cgroup.events` changes (for example when
    /// the last process leaves: `populated 0`). Needs a cgroup2 group (v2 or hybrid).
    pub fn events_watch(&self) -> Result<Watch, Error> {
        let d = self
            .unified_dir()
            .ok_or_else(|| Error::Unsupported("cgroup2 (cgroup.events)".into()))?;
        Watch::inotify(&d.join("cgroup.events"))
    }

    /// Writes the limits (through cgroups-rs' controllers).
    pub fn apply_limits(&self, l: &Limits) -> Result<(), Error> {
        limits::apply(self, l)
    }

    /// Reads the limits back from the group's files (`None` = no limit). On v2,
    /// `cpu_shares` holds `cpu.weight`.
    pub fn read_limits(&self) -> Result<Limits, Error> {
        limits::read_limits(self)
    }

    /// Moves `pid` (a whole process) into this group in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<(), Error> {
        for d in self.dirs() {
            write_file(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Opens this group's `cgroup.procs` files before a fork, for [`JoinFds::join_self`]
    /// in the child.
    pub fn open_join(&self) -> Result<JoinFds, Error> {
        JoinFds::open(self)
    }

    /// The processes in this group itself (not its children), over every hierarchy.
    pub fn procs(&self) -> Result<Vec<i32>, Error> {
        let mut out = Vec::new();
        for d in self.dirs() {
            for pid in read_procs(&d)? {
                if !out.contains(&pid) {
                    out.push(pid);
                }
            }
        }
        Ok(out)
    }

    /// The processes in this group and every group below it, over every hierarchy.
    pub fn procs_recursive(&self) -> Result<Vec<i32>, Error> {
        let mut out = Vec::new();
        for d in self.dirs() {
            for sub in walk(&d)? {
                for pid in read_procs(&sub)? {
                    if !out.contains(&pid) {
                        out.push(pid);
                    }
                }
            }
        }
        Ok(out)
    }

    /// SIGKILLs every process in this group and below, until none is left or `timeout`
    /// passes. v2 (and hybrid, when the kernel has it): `cgroup.kill`. Otherwise freeze,
    /// kill each, thaw (a frozen task dies only once thawed), and repeat.
    pub fn kill_all(&self, timeout: Duration) -> Result<(), Error> {
        kill::kill_all(self, timeout)
    }

    /// One kill round without waiting (for a poll loop that then waits on
    /// [`Cgroup::events_watch`] or its pidfds): SIGKILL to every process in this group and
    /// below, by `cgroup.kill` or freeze/kill/thaw. Returns how many processes were there
    /// before (0: nothing to do).
    pub fn kill_once(&self) -> Result<usize, Error> {
        let n = self.procs_recursive()?.len();
        if n > 0 {
            kill::kill_round(self, false)?;
        }
        Ok(n)
    }

    /// [`Cgroup::kill_once`] through the freezer even where `cgroup.kill` exists: the path
    /// older kernels take, exposed so that the tests run it on new ones.
    #[doc(hidden)]
    pub fn kill_once_frozen(&self) -> Result<(), Error> {
        kill::kill_round(self, true)
    }

    /// Removes this group and every group below it, in every hierarchy, retrying `rmdir`
    /// on EBUSY until `timeout` (tasks linger briefly after SIGKILL). Missing is fine.
    pub fn remove(&self, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        let mut first_err = None;
        for d in self.dirs() {
            if let Err(e) = remove_tree(&d, start, timeout) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Whether the group exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// A pollable fd that becomes readable when the memory controller reports an OOM
    /// event for this group (v1 eventfd on `memory.oom_control`, v2 inotify on
    /// `memory.events`). A wakeup is a hint: compare [`Cgroup::oom_kill_count`].
    pub fn oom_watch(&self) -> Result<Watch, Error> {
        Watch::new(self)
    }

    /// How many processes the OOM killer killed in this group (v1 `memory.oom_control`
    /// `oom_kill`, v2 `memory.events` `oom_kill`, which counts the subtree).
    pub fn oom_kill_count(&self) -> Result<u64, Error> {
        let (file, key) = if self.is_v2() {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        self.read_key(V1Controller::Memory, file, key)
    }

    /// Memory in use, in bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub fn memory_usage(&self) -> Result<u64, Error> {
        let file = if self.is_v2() {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        self.read_u64(V1Controller::Memory, file)
    }

    /// CFS throttling counters (`cpu.stat`).
    pub fn cpu_stat(&self) -> Result<CpuStat, Error> {
        let p = self.file(V1Controller::Cpu, "cpu.stat")?;
        Ok(stats::parse_cpu_stat(&read_file(&p)?))
    }

    /// `pids.current`.
    pub fn pids_current(&self) -> Result<u64, Error> {
        self.read_u64(V1Controller::Pids, "pids.current")
    }

    /// How often a fork in this group or below failed at a `pids.max` (`pids.events`
    /// `max`). Kernels with `pids.events.local` (Linux ≥ 6.13 on v2) count hierarchically
    /// in the group whose limit was hit, and the group's own file is read; older kernels
    /// and v1 count in the forking task's group, so the subtree's counters are summed.
    pub fn pids_events_max(&self) -> Result<u64, Error> {
        let dir = self
            .dir(V1Controller::Pids)
            .ok_or_else(|| Error::Unsupported("cgroup controller pids".into()))?;
        if dir.join("pids.events.local").exists() {
            return self.read_key(V1Controller::Pids, "pids.events", "max");
        }
        let mut total = 0;
        for d in walk(&dir)? {
            let p = d.join("pids.events");
            let text = read_file(&p)?;
            total += stats::parse_flat_keyed(&text, "max").ok_or_else(|| Error::Parse {
                path: p,
                detail: "no max line".into(),
            })?;
        }
        Ok(total)
    }

    fn file(&self, c: V1Controller, name: &str) -> Result<PathBuf, Error> {
        self.dir(c)
            .map(|d| d.join(name))
            .ok_or_else(|| Error::Unsupported(format!("cgroup controller {}", c.name())))
    }

    fn read_u64(&self, c: V1Controller, name: &str) -> Result<u64, Error> {
        let p = self.file(c, name)?;
        let text = read_file(&p)?;
        text.trim().parse().map_err(|_| Error::Parse {
            path: p,
            detail: format!("not a number: {:?}", text.trim()),
        })
    }

    fn read_key(&self, c: V1Controller, name: &str, key: &str) -> Result<u64, Error> {
        let p = self.file(c, name)?;
        let text = read_file(&p)?;
        stats::parse_flat_keyed(&text, key).ok_or_else(|| Error::Parse {
            path: p,
            detail: format!("no {key} line"),
        })
    }
}

fn enable_v2_controllers(dir: &Path) -> Result<(), Error> {
    let available = read_file(&dir.join("cgroup.controllers"))?;
    let enabled = read_file(&dir.join("cgroup.subtree_control"))?;
    let want: Vec<String> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .filter(|c| !enabled.split_whitespace().any(|a| a == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if want.is_empty() {
        return Ok(());
    }
    write_file(&dir.join("cgroup.subtree_control"), &want.join(" "))
}

pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|err| Error::Read {
            path: path.to_path_buf(),
            err,
        })?;
    Ok(s)
}

/// One `write(2)` of `data` to an existing file (cgroup files take one value per write;
/// never O_CREAT, so a missing file is ENOENT, not a new regular file).
pub(crate) fn write_file(path: &Path, data: &str) -> Result<(), Error> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .map_err(|err| Error::Write {
            path: path.to_path_buf(),
            data: data.to_string(),
            err,
        })
}

fn read_procs(dir: &Path) -> Result<Vec<i32>, Error> {
    match read_file(&dir.join("cgroup.procs")) {
        Ok(t) => Ok(stats::parse_procs(&t)),
        Err(Error::Read { err, .. }) if err.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(Error::Mkdir {
            path: dir.to_path_buf(),
            err,
        }),
    }
}

/// `dir` and every directory below it, parents before children. A missing `dir` gives
/// an empty list.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(Error::Read { path: d, err }),
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// Removes children first, then `dir`, retrying EBUSY until `start + timeout`.
fn remove_tree(dir: &Path, start: Instant, timeout: Duration) -> Result<(), Error> {
    let mut dirs = walk(dir)?;
    // Deepest first: a parent's rmdir fails while it has children.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let mut pause = Duration::from_millis(5);
        loop {
            match std::fs::remove_dir(&d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc_ebusy()) && start.elapsed() < timeout => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(err) => {
                    return Err(Error::Rmdir {
                        path: d,
                        err,
                        waited: start.elapsed(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["podsup", "pod0b5a-11", "app", "a_b", "X9"] {
            assert!(compute_name_check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "memory.max",
            "cgroup.procs",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(compute_name_check(bad).is_err(), "{bad:?}");
        }
    }

    fn layout(mode: Mode, root: &Path) -> Layout {
        let mut v1 = std::collections::BTreeMap::new();
        if mode != Mode::V2 {
            v1.insert(V1Controller::Memory, root.join("memory"));
            v1.insert(V1Controller::Cpu, root.join("cpu,cpuacct"));
            v1.insert(V1Controller::Cpuacct, root.join("cpu,cpuacct"));
            v1.insert(V1Controller::Pids, root.join("pids"));
            v1.insert(V1Controller::Freezer, root.join("freezer"));
        }
        let unified = match mode {
            Mode::V1 => None,
            Mode::Hybrid => Some(root.join("unified")),
            Mode::V2 => Some(root.to_path_buf()),
        };
        Layout { mode, v1, unified }
    }

    #[test]
    fn handles_stay_under_the_parent() {
        let root = Path::new("/cg");
        let cgs = Cgroups::new(layout(Mode::Hybrid, root), Config::default()).unwrap();
        let c = cgs.pod("u1").unwrap().child("app").unwrap();
        assert_eq!(c.rel(), Path::new("podsup/podu1/app"));
        assert_eq!(
            c.dirs(),
            ["memory", "cpu,cpuacct", "pids", "freezer", "unified"]
                .iter()
                .map(|h| root.join(h).join("podsup/podu1/app"))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            c.dir(V1Controller::Cpuacct),
            Some(root.join("cpu,cpuacct/podsup/podu1/app"))
        );
        assert!(cgs.pod("../x").is_err());
        assert!(c.child("..").is_err());
        assert!(
            Cgroups::new(
                layout(Mode::V2, root),
                Config {
                    parent: "a/b".into(),
                    pids_limit: None
                }
            )
            .is_err()
        );
        let v2 = Cgroups::new(layout(Mode::V2, root), Config::default()).unwrap();
        let c = v2.pod("u1").unwrap();
        assert_eq!(c.dirs(), vec![root.join("podsup/podu1")]);
        assert_eq!(c.dir(V1Controller::Memory), Some(root.join("podsup/podu1")));
    }

    #[test]
    fn v2_create_enables_controllers_on_ancestors_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // A fake cgroup2 root: real mkdir does not make interface files, so pre-create them.
        let fake = |d: &Path, controllers: &str| {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("cgroup.controllers"), controllers).unwrap();
            std::fs::write(d.join("cgroup.subtree_control"), "").unwrap();
        };
        fake(&root.join("podsup"), "cpuset cpu io memory pids\n");
        fake(&root.join("podsup/podu1"), "cpu memory pids\n");
        let cgs = Cgroups::new(layout(Mode::V2, root), Config::default()).unwrap();
        let c = cgs.pod("u1").unwrap().child("app").unwrap();
        c.create().unwrap();
        assert!(root.join("podsup/podu1/app").is_dir());
        let sc =
            |p: &str| std::fs::read_to_string(root.join(p).join("cgroup.subtree_control")).unwrap();
        assert_eq!(sc("podsup"), "+cpu +memory +pids");
        assert_eq!(sc("podsup/podu1"), "+cpu +memory +pids");
        assert!(
            !root
                .join("podsup/podu1/app/cgroup.subtree_control")
                .exists()
        );
    }

    #[test]
    fn remove_tree_removes_children_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("podsup/podu1/a")).unwrap();
        std::fs::create_dir_all(root.join("podsup/podu1/b")).unwrap();
        let cgs = Cgroups::new(layout(Mode::V2, root), Config::default()).unwrap();
        let pod = cgs.pod("u1").unwrap();
        assert!(pod.exists());
        pod.remove(Duration::from_secs(1)).unwrap();
        assert!(!pod.exists());
        assert!(root.join("podsup").is_dir());
        // Removing again is fine.
        pod.remove(Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn join_writes_zero_into_every_procs_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let l = layout(Mode::Hybrid, root);
        let cgs = Cgroups::new(l, Config::default()).unwrap();
        let c = cgs.pod("u1").unwrap();
        for d in c.dirs() {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        let join = c.open_join().unwrap();
        assert_eq!(join.paths().len(), 5);
        join.join_self().unwrap();
        for d in c.dirs() {
            assert_eq!(
                std::fs::read_to_string(d.join("cgroup.procs")).unwrap(),
                "0"
            );
        }
        let e = join.error(JoinError {
            index: 4,
            errno: nix::errno::Errno::EBUSY,
        });
        assert_eq!(
            e.to_string(),
            format!(
                "write {}: \"0\": EBUSY: Device or resource busy",
                root.join("unified/podsup/podu1/cgroup.procs").display()
            )
        );
        // A missing group fails before the fork, naming the file.
        let missing = cgs.pod("u2").unwrap();
        assert!(
            missing
                .open_join()
                .unwrap_err()
                .to_string()
                .starts_with("open ")
        );
    }

    #[test]
    fn error_messages() {
        let e = Error::Write {
            path: "/sys/fs/cgroup/memory/podsup/x/memory.limit_in_bytes".into(),
            data: "33554432".into(),
            err: std::io::Error::from_raw_os_error(16),
        };
        assert_eq!(
            e.to_string(),
            "write /sys/fs/cgroup/memory/podsup/x/memory.limit_in_bytes: \"33554432\": EBUSY: Device or resource busy"
        );
    }
}
