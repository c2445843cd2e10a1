//! `podsup shim`: the pod's infra process.
//!
//! It leads its own session, is a child subreaper and holds the pod's namespaces by being in
//! them: it unshares mount (private, so the pod's tmpfs mounts vanish with it), network
//! (loopback up), IPC and UTS, and a PID namespace for `shareProcessNamespace` (whose PID 1 is
//! a forked pause process). It forks the containers and supervises them in one
//! single-threaded poll loop: a signalfd (SIGCHLD, SIGTERM, SIGINT, SIGHUP), the containers'
//! output pipes and one deadline. Because it is single-threaded, `fork` in it is safe.
//!
//! Everything needed to clean up lives under `--run/pods/<uid>/` and `--root/pods/<uid>/`.
//! The shim must not parse manifests or resolve images: its caller hands it a [`ShimSpec`].

mod check;
mod health;
pub mod probe;
pub mod state;
mod update;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Cgroup, Cgroups, Watch};
use crate::container::exec::{self as exec, ExecTarget};
use crate::container::{self, ContainerDirs, ImageInfo, Sandbox, Stdio, VolumeSource};
use crate::logs::{self, LogSettings, LogWriter, Stream};
use crate::model::{
    ContainerKind, ContainerState, ContainerStateTerminated, ContainerStatus, DnsPolicy, Pod,
    PodPhase, PodStatus, PublishedStatus, RESTART_HISTORY_LEN, RestartHistory, StorageMedium,
    Termination, TerminationMessagePolicy, Time, reason as reasons,
};
use crate::plan::backoff::{
    BackoffKey, BackoffSettings, BackoffState, compute_backoff_key, compute_restart_after_exit,
};
use state::{Phase, View};

/// What the shim is told to run; written by `podsup run` (later the daemon) to
/// `--run/pods/<uid>/spec.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShimSpec {
    pub uid: String,
    pub pod: Pod,
    /// Container name → its resolved image.
    pub images: BTreeMap<String, ImageInfo>,
    /// `--run/pods/<uid>`
    pub run_dir: PathBuf,
    /// `--root/pods/<uid>`
    pub root_dir: PathBuf,
    /// Where to write container logs in the CRI format, if anywhere.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// Back-off and cgroup settings (the daemon's, or `podsup run`'s flags).
    #[serde(default)]
    pub settings: ShimSettings,
}

/// The supervisor's settings that are not in the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ShimSettings {
    /// Back-off before the second restart of a crash loop, doubling after (ms; 0: none).
    pub backoff_initial_ms: u64,
    /// The back-off's cap (ms).
    pub backoff_max_ms: u64,
    /// A curve starts over after this long without a new step (ms).
    pub backoff_reset_ms: u64,
    /// The cgroup under each hierarchy's root that holds the pods; `None`: no cgroups.
    pub cgroup_parent: Option<String>,
    /// Per-pod `pids.max`; `None`: no pids limit.
    pub pids_limit: Option<i64>,
    /// Fork each restartable container's next process ahead and park it in its cgroup.
    pub prefork: bool,
}

impl Default for ShimSettings {
    fn default() -> Self {
        let b = BackoffSettings::default();
        ShimSettings {
            backoff_initial_ms: b.initial.as_millis() as u64,
            backoff_max_ms: b.max.as_millis() as u64,
            backoff_reset_ms: b.reset_after.as_millis() as u64,
            cgroup_parent: Some(cgroup::Config::default().parent),
            pids_limit: Some(cgroup::DEFAULT_PIDS_LIMIT),
            prefork: true,
        }
    }
}

impl ShimSettings {
    pub fn backoff(&self) -> BackoffSettings {
        BackoffSettings {
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
            reset_after: Duration::from_millis(self.backoff_reset_ms),
        }
    }
}

impl ShimSpec {
    pub fn spec_path(run_dir: &Path) -> PathBuf {
        run_dir.join("spec.json")
    }
}

/// Bytes of output kept per container for `FallbackToLogsOnError` (the kubelet keeps 80 lines
/// or 2048 bytes, whichever is less).
const TAIL_BYTES: usize = 2048;
const TAIL_LINES: usize = 80;
/// The kubelet reads at most 4096 bytes of a termination message file.
const MESSAGE_MAX: u64 = 4096;

struct Ctr {
    name: String,
    kind: ContainerKind,
    spec_idx: (bool, usize),
    phase: Phase,
    pid: Option<Pid>,
    restart_count: u32,
    /// A start was attempted (the next one is a restart).
    attempted: bool,
    /// It ran at least once.
    started_once: bool,
    started_at: Option<SystemTime>,
    /// The last termination and the one before it (`state` / `lastState`).
    last: Option<ContainerStateTerminated>,
    prev: Option<ContainerStateTerminated>,
    history: RestartHistory,
    key: BackoffKey,
    backoff: Option<BackoffState>,
    /// When the pending restart is due, for the status.
    next_restart_at: Option<Time>,
    cgroup: Option<Cgroup>,
    /// OOM kills counted in the container's and the pod's groups when it started.
    oom_base: (u64, u64),
    oom_watch: Option<Watch>,
    oom_seen: bool,
    stop_signal: Signal,
    /// `name | ` as printed before each output line.
    prefix: String,
    /// The stop signal went out for the current start.
    stop_sent: bool,
    tail: VecDeque<u8>,
    dirs: ContainerDirs,
    /// The daemon asked for a restart (new spec): restart after the exit whatever the policy.
    restart_requested: bool,
    /// When a restarting container gets SIGKILL.
    restart_kill_at: Option<Instant>,
    /// Probes, postStart/started, readiness (health.rs).
    health: probe::Health,
    /// The next start's process, forked and parked in the container's cgroup ahead of time.
    standby: Option<Standby>,
    /// Old writable layers renamed away at a start, removed once the new process runs.
    trash: Vec<PathBuf>,
    /// While it runs: how to start a process inside it (exec probes, hooks), also
    /// published as its `exec.json` for `podsup exec`.
    exec: Option<ExecTarget>,
}

/// A parked process for a container's next start (see [`container::Parked`]) and the read
/// ends of its output pipes.
struct Standby {
    parked: container::Parked,
    out_r: OwnedFd,
    err_r: OwnedFd,
    stop_signal: Signal,
    /// How to enter it once it runs (its pid and start time do not change at `execve`).
    exec: Option<ExecTarget>,
}

/// A start between fork and exec.
struct Pending {
    spawning: container::Spawning,
    /// Read ends of the container's stdout and stderr.
    out: (OwnedFd, OwnedFd),
    target: Option<ExecTarget>,
    started_at: SystemTime,
}

struct Pump {
    ctr: usize,
    fd: OwnedFd,
    buf: Vec<u8>,
    stream: Stream,
    /// The CRI log of this container instance, shared by its two pipes.
    log: Option<Rc<RefCell<LogWriter>>>,
}

struct Shim {
    spec: ShimSpec,
    sandbox: Sandbox,
    ctrs: Vec<Ctr>,
    pumps: Vec<Pump>,
    pause: Option<Pid>,
    stopping: bool,
    kill_at: Option<Instant>,
    devnull: OwnedFd,
    pod_mounts: Vec<PathBuf>,
    backoff: BackoffSettings,
    pod_cgroup: Option<Cgroup>,
    start_time: SystemTime,
    /// `activeDeadlineSeconds` from the start.
    deadline: Option<Instant>,
    /// The pod's reason and message once it failed as a whole (DeadlineExceeded).
    pod_failure: Option<(String, String)>,
    /// The pod will not run anything any more.
    over: bool,
    status: PodStatus,
    published: String,
    /// Running probe and hook checks (health.rs).
    checks: Vec<check::Check>,
    /// The latest container events, published for the daemon.
    events: VecDeque<crate::model::ShimEvent>,
    event_seq: u64,
}

/// Runs the shim until the pod is over; returns the exit status for `podsup run`.
/// `foreground`: stop the pod when the parent (`podsup run`) dies.
pub fn main(
    spec_path: &Path,
    foreground: bool,
    overrides: &crate::cli::SupervisorArgs,
) -> Result<i32> {
    nix::unistd::setsid().context("setsid")?;
    if foreground {
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("set parent death signal")?;
    }
    let _ = nix::sys::prctl::set_name(c"podsup-shim");
    nix::sys::prctl::set_child_subreaper(true).context("set child subreaper")?;
    let text = fs::read(spec_path).with_context(|| format!("read {}", spec_path.display()))?;
    let mut spec: ShimSpec =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", spec_path.display()))?;
    overrides
        .apply(&mut spec.settings)
        .map_err(|e| anyhow::anyhow!(e))?;
    // Do not keep the caller's working directory busy for the pod's lifetime.
    std::env::set_current_dir("/").context("chdir /")?;

    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        mask.add(s);
    }
    mask.thread_block().context("block signals")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    fs::write(
        spec.run_dir.join("shim.pid"),
        format!("{}\n", std::process::id()),
    )
    .context("write shim.pid")?;

    let run_dir = spec.run_dir.clone();
    if let Err(r) = state::compute_admission(&spec.pod.spec, mem_total(), online_cpus() * 1000) {
        // Not admitted: nothing is created, the pod is Failed.
        let _ = writeln!(
            io::stderr(),
            "podsup: pod not admitted: {}: {}",
            r.reason,
            r.message
        );
        let published = PublishedStatus {
            status: PodStatus {
                phase: PodPhase::Failed,
                reason: Some(r.reason),
                message: Some(r.message),
                start_time: Some(Time::from_system(SystemTime::now())),
                ..Default::default()
            },
            restart_history: Vec::new(),
            events: Vec::new(),
        };
        let text = serde_json::to_string_pretty(&published).context("encode status")?;
        publish(&run_dir, &text).context("write status.json")?;
        if foreground {
            let _ = fs::remove_dir_all(&run_dir);
        }
        return Ok(1);
    }
    let mut shim = Shim::new(spec)?;
    let result = shim.run(&sigfd);
    let mut cleanup = shim.cleanup();
    drop(shim);
    if foreground && cleanup.is_ok() {
        // Nobody will read the pod's live state after a foreground run.
        cleanup =
            fs::remove_dir_all(&run_dir).with_context(|| format!("remove {}", run_dir.display()));
    }
    let code = result?;
    cleanup?;
    Ok(code)
}

/// The machine's memory (MemTotal of /proc/meminfo), in bytes.
fn mem_total() -> i128 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i128>().ok())
        })
        .map_or(i128::MAX, |kb| kb * 1024)
}

/// The online CPUs (/sys/devices/system/cpu/online, e.g. `0-3,6`).
fn online_cpus() -> i128 {
    fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| compute_cpu_list_len(s.trim()))
        .unwrap_or(i128::MAX / 1000)
}

/// How many CPUs a kernel CPU list (`0-3,6`) names. Pure.
fn compute_cpu_list_len(list: &str) -> Option<i128> {
    let mut n = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<i128>().ok()? - a.parse::<i128>().ok()? + 1,
            None => {
                part.parse::<i128>().ok()?;
                1
            }
        };
    }
    Some(n)
}

fn last_cap() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// CapPrm of this process, from /proc/self/status.
fn own_permitted_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapPrm:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn host_resolv_conf(pod: &Pod) -> String {
    let host = if pod.spec.dns_policy.unwrap_or_default() == DnsPolicy::None {
        String::new()
    } else {
        fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    };
    compute_resolv_conf(&host, pod)
}

/// The pod's resolv.conf: the host's (unless `dnsPolicy: None`; ClusterFirst falls back to
/// it too, as the kubelet does without cluster DNS) merged with `dnsConfig`. Pure.
fn compute_resolv_conf(host: &str, pod: &Pod) -> String {
    let mut nameservers = Vec::new();
    let mut searches = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => nameservers.extend(words.map(String::from)),
            Some("search") | Some("domain") => searches.extend(words.map(String::from)),
            Some("options") => options.extend(words.map(String::from)),
            _ => {}
        }
    }
    if let Some(c) = &pod.spec.dns_config {
        nameservers.extend(c.nameservers.iter().cloned());
        searches.extend(c.searches.iter().cloned());
        for o in &c.options {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            };
            options.retain(|x| x.split(':').next() != Some(o.name.as_str()));
            options.push(opt);
        }
    }
    let mut out = String::new();
    // The resolver reads at most 3 nameservers (resolv.conf(5), MAXNS).
    for n in nameservers.iter().take(3) {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn hosts_file(pod: &Pod, hostname: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (podsup).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    // Until the pod network lands, the pod's address is its loopback.
    s.push_str(&format!("127.0.0.1\t{hostname}\n"));
    if !pod.spec.host_aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in &pod.spec.host_aliases {
            s.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
        }
    }
    s
}

fn mount_tmpfs(target: &Path, data: &str) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("mkdir {}", target.display()))?;
    nix::mount::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data),
    )
    .with_context(|| format!("mount tmpfs at {}", target.display()))
}

impl Shim {
    /// Creates the pod's namespaces and shared files.
    fn new(spec: ShimSpec) -> Result<Shim> {
        let pod = &spec.pod;
        let ps = &pod.spec;
        let mut flags = CloneFlags::CLONE_NEWNS;
        if !ps.host_network {
            flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
        }
        if !ps.host_ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        let shared_pid = ps.share_process_namespace() && !ps.host_pid;
        if shared_pid {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        nix::sched::unshare(flags).context("unshare pod namespaces")?;
        // Mounts of the pod (its /dev/shm, memory emptyDirs) stay inside the shim's namespace
        // and die with it; host mounts still propagate in.
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .context("make / a slave mount")?;
        let hostname = if ps.host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            let mut h = ps
                .hostname
                .clone()
                .unwrap_or_else(|| pod.metadata.name.clone());
            h.truncate(63);
            crate::sys::loopback_up().context("set loopback up")?;
            nix::unistd::sethostname(&h).context("sethostname")?;
            h
        };

        let run = &spec.run_dir;
        let mut pod_mounts = Vec::new();
        let etc = run.join("etc");
        fs::create_dir_all(&etc).context("mkdir etc")?;
        let etc_hostname = etc.join("hostname");
        fs::write(&etc_hostname, format!("{hostname}\n")).context("write hostname")?;
        let etc_hosts = etc.join("hosts");
        if ps.host_network {
            fs::copy("/etc/hosts", &etc_hosts).context("copy /etc/hosts")?;
        } else {
            fs::write(&etc_hosts, hosts_file(pod, &hostname)).context("write hosts")?;
        }
        let resolv_conf = etc.join("resolv.conf");
        fs::write(&resolv_conf, host_resolv_conf(pod)).context("write resolv.conf")?;
        // Readable by every container user whatever podsup's umask is.
        for f in [&etc_hostname, &etc_hosts, &resolv_conf] {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(f, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("chmod {}", f.display()))?;
        }
        let shm = if ps.host_ipc {
            PathBuf::from("/dev/shm")
        } else {
            let shm = run.join("shm");
            mount_tmpfs(&shm, "mode=1777,size=65536k")?;
            pod_mounts.push(shm.clone());
            shm
        };
        let mut volumes = HashMap::new();
        for v in &ps.volumes {
            let src = if let Some(e) = &v.empty_dir {
                if e.medium == Some(StorageMedium::Memory) {
                    let dir = run.join("volumes").join(&v.name);
                    let data = match &e.size_limit {
                        Some(q) => format!("mode=0777,size={}", q.units().max(4096)),
                        None => "mode=0777".to_string(),
                    };
                    mount_tmpfs(&dir, &data)?;
                    pod_mounts.push(dir.clone());
                    VolumeSource::EmptyDir(dir)
                } else {
                    let dir = spec.root_dir.join("volumes").join(&v.name);
                    fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
                    VolumeSource::EmptyDir(dir)
                }
            } else if let Some(h) = &v.host_path {
                VolumeSource::HostPath {
                    path: PathBuf::from(&h.path),
                    type_: h.type_.unwrap_or_default(),
                }
            } else {
                anyhow::bail!("volume {:?}: no supported source", v.name);
            };
            volumes.insert(v.name.clone(), src);
        }
        let pause = if shared_pid {
            Some(container::spawn_pause().context("fork pause process")?)
        } else {
            None
        };
        let sandbox = Sandbox {
            hostname,
            shm,
            etc_hostname,
            etc_hosts,
            resolv_conf,
            volumes,
            private_pid_ns: !ps.share_process_namespace() && !ps.host_pid,
            fields: container::env::FieldValues {
                uid: spec.uid.clone(),
                pod_ip: "127.0.0.1".into(),
                host_ip: "127.0.0.1".into(),
                node_name: nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
            last_cap: last_cap(),
            available_caps: own_permitted_caps(),
        };
        let mut ctrs = Vec::new();
        let inits = ps.init_containers.len();
        for (i, (kind, c)) in ps.all_containers().enumerate() {
            let spec_idx = if i < inits {
                (true, i)
            } else {
                (false, i - inits)
            };
            let cdir_run = run.join("containers").join(&c.name);
            let cdir_root = spec.root_dir.join("containers").join(&c.name);
            ctrs.push(Ctr {
                name: c.name.clone(),
                kind,
                spec_idx,
                phase: Phase::Waiting { not_before: None },
                pid: None,
                restart_count: 0,
                attempted: false,
                started_once: false,
                started_at: None,
                last: None,
                prev: None,
                history: RestartHistory {
                    name: c.name.clone(),
                    ..Default::default()
                },
                key: compute_backoff_key(c),
                backoff: None,
                next_restart_at: None,
                cgroup: None,
                oom_base: (0, 0),
                oom_watch: None,
                oom_seen: false,
                stop_signal: Signal::SIGTERM,
                stop_sent: false,
                prefix: String::new(),
                tail: VecDeque::new(),
                restart_requested: false,
                restart_kill_at: None,
                health: probe::Health::new(c),
                standby: None,
                trash: Vec::new(),
                exec: None,
                dirs: ContainerDirs {
                    rootfs: cdir_run.join("rootfs"),
                    upper: cdir_root.join("upper"),
                    work: cdir_root.join("work"),
                    termination_log: cdir_run.join("termination-log"),
                },
            });
        }
        let names: Vec<String> = ctrs.iter().map(|c| c.name.clone()).collect();
        let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        for (c, p) in ctrs.iter_mut().zip(compute_prefixes(&names, color)) {
            c.prefix = p;
        }
        let devnull = OwnedFd::from(fs::File::open("/dev/null").context("open /dev/null")?);
        let backoff = spec.settings.backoff();
        backoff.validate()?;
        let deadline = ps
            .active_deadline_seconds
            .map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
        // Last, so that nothing is left behind when an earlier step fails.
        let pod_cgroup = match &spec.settings.cgroup_parent {
            Some(parent) => {
                let cgs = Cgroups::detect(cgroup::Config {
                    parent: parent.clone(),
                    pids_limit: spec.settings.pids_limit,
                })
                .context("cgroups")?;
                Some(
                    cgs.create_pod(&spec.uid, ps)
                        .context("create the pod's cgroup")?,
                )
            }
            None => None,
        };
        let status = PodStatus {
            host_ip: Some("127.0.0.1".into()),
            pod_ip: Some("127.0.0.1".into()),
            pod_ips: vec![crate::model::PodIp {
                ip: "127.0.0.1".into(),
            }],
            start_time: Some(Time::from_system(SystemTime::now())),
            ..Default::default()
        };
        Ok(Shim {
            spec,
            sandbox,
            ctrs,
            pumps: Vec::new(),
            pause,
            stopping: false,
            kill_at: None,
            devnull,
            pod_mounts,
            backoff,
            pod_cgroup,
            start_time: SystemTime::now(),
            deadline,
            pod_failure: None,
            over: false,
            status,
            published: String::new(),
            checks: Vec::new(),
            events: VecDeque::new(),
            event_seq: 0,
        })
    }

    fn say(&self, msg: &str) {
        let _ = writeln!(io::stderr(), "podsup: {msg}");
    }

    fn run(&mut self, sigfd: &SignalFd) -> Result<i32> {
        loop {
            let now = Instant::now();
            if let Some(d) = self.deadline
                && d <= now
                && !self.stopping
            {
                self.deadline = None;
                let secs = self.spec.pod.spec.active_deadline_seconds.unwrap_or(0);
                self.say(&format!(
                    "the pod ran longer than activeDeadlineSeconds ({secs} s): stopping it"
                ));
                self.pod_failure = Some((
                    reasons::DEADLINE_EXCEEDED.into(),
                    "Pod was active on the node longer than the specified deadline".into(),
                ));
                self.begin_stop(Signal::SIGTERM);
            }
            let views: Vec<View> = self
                .ctrs
                .iter()
                .map(|c| View {
                    kind: c.kind,
                    phase: c.phase,
                    // A sidecar lets the next container start once it is `started`
                    // (postStart returned, startup probe passed).
                    started_once: c.health.ever_started,
                })
                .collect();
            let plan = state::compute_plan(&views, self.stopping, now);
            if !plan.stop.is_empty() && self.kill_at.is_none() {
                // Sidecars get the same grace period as a stopping pod.
                self.kill_at = Some(now + self.grace());
            }
            for i in plan.stop {
                self.stop_ctr(i);
            }
            if let Some(code) = plan.result {
                // Read what is still buffered in the pipes before leaving.
                self.drain_all();
                self.over = true;
                self.write_status();
                return Ok(code);
            }
            if !plan.start.is_empty() {
                self.start_all(&plan.start);
                // A start may have failed at once: decide again before sleeping.
                continue;
            }
            self.run_health(now);
            if let Some(t) = self.kill_at
                && t <= now
            {
                self.kill_at = None;
                for i in 0..self.ctrs.len() {
                    self.kill_ctr(i);
                }
            }
            self.write_status();
            let restart_kill = self.kill_overdue_restarts(now);
            let deadline = [
                plan.wake,
                self.kill_at,
                self.deadline,
                restart_kill,
                self.health_deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = crate::sys::poll_timeout(deadline);
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            for p in &self.pumps {
                fds.push(PollFd::new(p.fd.as_fd(), PollFlags::POLLIN));
            }
            let watched: Vec<usize> = (0..self.ctrs.len())
                .filter(|i| self.ctrs[*i].oom_watch.is_some())
                .collect();
            for i in &watched {
                if let Some(w) = &self.ctrs[*i].oom_watch {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
                }
            }
            let health_at = fds.len();
            let (health_fds, health_idx) = self.health_poll_fds();
            fds.extend(health_fds);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let health_ready: Vec<usize> = (0..health_idx.len())
                .filter(|k| ready[health_at + k])
                .map(|k| health_idx[k])
                .collect();
            self.health_ready(&health_ready);
            let npumps = self.pumps.len();
            for (k, i) in watched.iter().enumerate() {
                if ready[1 + npumps + k] {
                    self.oom_event(*i);
                }
            }
            for (i, r) in ready.iter().enumerate().take(1 + npumps).skip(1).rev() {
                if *r {
                    self.pump(i - 1);
                }
            }
            if ready[0] {
                while let Ok(Some(info)) = sigfd.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGCHLD) => {}
                        Ok(Signal::SIGUSR1) => self.reload(),
                        Ok(s) => self.begin_stop(s),
                        Err(_) => {}
                    }
                }
            }
            self.reap();
        }
    }

    /// The kernel reported an OOM event in a container's group: note it if its counter
    /// moved (the exit that follows is then OOMKilled).
    fn oom_event(&mut self, i: usize) {
        let c = &mut self.ctrs[i];
        if let Some(w) = &c.oom_watch {
            let _ = w.drain();
        }
        if let Some(cg) = &c.cgroup
            && cg.oom_kill_count().unwrap_or(0) > c.oom_base.0
            && !c.oom_seen
        {
            c.oom_seen = true;
            let name = c.name.clone();
            self.say(&format!(
                "container {name:?}: the kernel's OOM killer hit its cgroup"
            ));
        }
    }

    fn begin_stop(&mut self, why: Signal) {
        if self.stopping {
            // A second Ctrl-C does not wait for the grace period.
            if why == Signal::SIGINT {
                self.kill_at = Some(Instant::now());
            }
            return;
        }
        self.stopping = true;
        self.kill_at = Some(Instant::now() + self.grace());
        for i in 0..self.ctrs.len() {
            self.drop_standby(i);
        }
        for c in &mut self.ctrs {
            if let Phase::Waiting { .. } = c.phase {
                c.phase = Phase::Done {
                    exit_code: c.last.as_ref().map_or(0, |t| t.exit_code),
                };
                c.next_restart_at = None;
            }
        }
        // Sidecars stop after the others, in reverse order (compute_plan says when).
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].kind != ContainerKind::Sidecar {
                self.stop_ctr(i);
            }
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.spec.pod.spec.termination_grace_period_seconds().max(0) as u64)
    }

    /// Sends the container its stop signal, once per start; with a preStop hook, the hook
    /// runs first and sends it when it ends (health.rs).
    fn stop_ctr(&mut self, i: usize) {
        if !self.ctrs[i].stop_sent && self.ctrs[i].phase == Phase::Running {
            self.ctrs[i].stop_sent = true;
            if !self.health_on_stop(i) {
                self.signal_ctr(i, self.ctrs[i].stop_signal);
            }
        }
    }

    fn signal_ctr(&self, i: usize, sig: Signal) {
        if let (Phase::Running, Some(pid)) = (self.ctrs[i].phase, self.ctrs[i].pid) {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }

    /// SIGKILL to every process of a running container: its whole cgroup (`cgroup.kill`, or
    /// freeze/kill/thaw on v1) without waiting; the reap loop sees PID 1 go.
    fn kill_ctr(&self, i: usize) {
        if self.ctrs[i].phase != Phase::Running {
            return;
        }
        if let Some(cg) = &self.ctrs[i].cgroup
            && let Err(e) = cg.kill_once()
        {
            self.say(&format!("container {:?}: kill: {e}", self.ctrs[i].name));
        }
        self.signal_ctr(i, Signal::SIGKILL);
    }

    /// Begins container `i`'s start: forked (or a parked process released), not yet exec'd.
    /// A start that fails here is recorded (StartError) and gives `None`.
    fn start_begin(&mut self, i: usize) -> Option<Pending> {
        let c = &mut self.ctrs[i];
        if c.attempted {
            c.restart_count += 1;
        }
        c.attempted = true;
        c.next_restart_at = None;
        c.oom_seen = false;
        let started_at = SystemTime::now();
        match self.try_begin(i) {
            Ok((spawning, out, target)) => Some(Pending {
                spawning,
                out,
                target,
                started_at,
            }),
            Err(msg) => {
                self.start_failed(i, msg, started_at);
                None
            }
        }
    }

    /// Completes a start once the process has exec'd.
    fn start_done(&mut self, i: usize, p: Pending) {
        match p.spawning.wait() {
            Ok(pid) => {
                self.attach_output(i, p.out.0, p.out.1);
                self.publish_exec(i, p.target);
                let c = &mut self.ctrs[i];
                c.pid = Some(pid);
                c.phase = Phase::Running;
                c.stop_sent = false;
                c.started_once = true;
                c.started_at = Some(p.started_at);
            }
            Err(e) => self.start_failed(i, e.to_string(), p.started_at),
        }
    }

    fn start_failed(&mut self, i: usize, msg: String, started_at: SystemTime) {
        let name = self.ctrs[i].name.clone();
        self.say(&format!("container {name:?}: {msg}"));
        let now = SystemTime::now();
        let term = ContainerStateTerminated {
            exit_code: 128,
            reason: Some(reasons::START_ERROR.into()),
            message: Some(msg),
            started_at: Some(Time::from_system(started_at)),
            finished_at: Some(Time::from_system(now)),
            ..Default::default()
        };
        self.finish(i, term, Instant::now());
    }

    /// Starts the containers `which` in parallel: all forked first, then each waited for
    /// until it exec'd; then each running one gets its parked next process.
    fn start_all(&mut self, which: &[usize]) {
        let pending: Vec<(usize, Pending)> = which
            .iter()
            .filter_map(|&i| self.start_begin(i).map(|p| (i, p)))
            .collect();
        for (i, p) in pending {
            self.start_done(i, p);
            // Its postStart hook or probes begin (health.rs), before the status says it runs.
            self.health_after_start(i);
        }
        self.write_status();
        for &i in which {
            if self.ctrs[i].phase == Phase::Running {
                self.park_next(i);
                self.empty_trash(i);
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_begin(
        &mut self,
        i: usize,
    ) -> std::result::Result<(container::Spawning, (OwnedFd, OwnedFd), Option<ExecTarget>), String>
    {
        self.fresh_layer(i)?;
        if let Some(sb) = self.ctrs[i].standby.take() {
            self.read_oom_base(i);
            self.ctrs[i].stop_signal = sb.stop_signal;
            let spawning = sb.parked.release_begin().map_err(|e| e.to_string())?;
            return Ok((spawning, (sb.out_r, sb.err_r), sb.exec));
        }
        let (prepared, out_r, err_r) = self.prepare_ctr(i)?;
        self.read_oom_base(i);
        self.ctrs[i].stop_signal = prepared.stop_signal;
        let spawning = container::spawn_begin(&prepared).map_err(|e| e.to_string())?;
        let target = ExecTarget::new(&prepared, spawning.pid()).ok();
        // Closes the parent's copies of the pipes' write ends (and the bind sources).
        drop(prepared);
        Ok((spawning, (out_r, err_r), target))
    }

    /// A (re)started container gets a fresh writable layer, as in Kubernetes. The old one is
    /// renamed away (removing it can wait: on a filesystem mounted with `discard` every freed
    /// block is a synchronous discard) and removed by [`Shim::empty_trash`].
    fn fresh_layer(&mut self, i: usize) -> std::result::Result<(), String> {
        let dirs = self.ctrs[i].dirs.clone();
        let n = self.ctrs[i].restart_count;
        for d in [&dirs.upper, &dirs.work] {
            if fs::symlink_metadata(d).is_ok() {
                let mut name = d.file_name().unwrap_or_default().to_os_string();
                name.push(format!(".old-{n}"));
                let trash = d.with_file_name(name);
                let _ = fs::remove_dir_all(&trash);
                match fs::rename(d, &trash) {
                    Ok(()) => self.ctrs[i].trash.push(trash),
                    Err(_) => {
                        let _ = fs::remove_dir_all(d);
                    }
                }
            }
            fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        }
        // The upper dir's root is the container's `/`: 0755 whatever podsup's umask is (with
        // umask 077 a non-root container could not even look up /bin).
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dirs.upper, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {}: {e}", dirs.upper.display()))?;
        }
        fs::create_dir_all(&dirs.rootfs)
            .map_err(|e| format!("mkdir {}: {e}", dirs.rootfs.display()))?;
        fs::write(&dirs.termination_log, b"")
            .map_err(|e| format!("create {}: {e}", dirs.termination_log.display()))?;
        // Writable by the container whatever its user, as the kubelet makes it (0666).
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dirs.termination_log, fs::Permissions::from_mode(0o666))
                .map_err(|e| format!("chmod {}: {e}", dirs.termination_log.display()))?;
        }
        Ok(())
    }

    fn empty_trash(&mut self, i: usize) {
        for d in std::mem::take(&mut self.ctrs[i].trash) {
            let _ = fs::remove_dir_all(&d);
        }
    }

    /// Everything the child needs, its output pipes (read ends) and its cgroup.
    fn prepare_ctr(
        &mut self,
        i: usize,
    ) -> std::result::Result<(container::Prepared, OwnedFd, OwnedFd), String> {
        let (is_init, idx) = self.ctrs[i].spec_idx;
        let pod = &self.spec.pod;
        let cspec = if is_init {
            &pod.spec.init_containers[idx]
        } else {
            &pod.spec.containers[idx]
        };
        let image = self
            .spec
            .images
            .get(&cspec.name)
            .ok_or_else(|| format!("image {:?} was not resolved", cspec.image))?;
        let dirs = self.ctrs[i].dirs.clone();
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdin = self
            .devnull
            .try_clone()
            .map_err(|e| format!("dup /dev/null: {e}"))?;
        let stdio = Stdio {
            stdin,
            stdout: out_w,
            stderr: err_w,
        };
        let mut prepared = container::prepare(pod, cspec, image, &self.sandbox, &dirs, &stdio)
            .map_err(|e| e.to_string())?;
        // The fds stay open in `prepared` (by number) until the fork; the parent's copies of
        // the write ends must close right after it so that the pipes see EOF.
        prepared.hold(stdio);
        if let Some(pod_cg) = &self.pod_cgroup {
            // Again at every start: a new spec may bring new limits.
            let cg = pod_cg
                .create_container(cspec)
                .map_err(|e| format!("cgroup: {e}"))?;
            prepared.cgroup = Some(cg.open_join().map_err(|e| format!("cgroup: {e}"))?);
            let c = &mut self.ctrs[i];
            if c.oom_watch.is_none() {
                c.oom_watch = cg.oom_watch().ok();
            }
            c.cgroup = Some(cg);
        }
        Ok((prepared, out_r, err_r))
    }

    /// The OOM counters when a start begins (an exit after them moving is OOMKilled).
    fn read_oom_base(&mut self, i: usize) {
        if let (Some(pod_cg), Some(cg)) = (&self.pod_cgroup, &self.ctrs[i].cgroup) {
            self.ctrs[i].oom_base = (
                cg.oom_kill_count().unwrap_or(0),
                pod_cg.oom_kill_count().unwrap_or(0),
            );
        }
    }

    /// The log of this container instance and the pumps that feed it.
    fn attach_output(&mut self, i: usize, out_r: OwnedFd, err_r: OwnedFd) {
        let pod = &self.spec.pod;
        let name = &self.ctrs[i].name;
        let log = self.spec.log_dir.as_ref().map(|dir| {
            let meta = &pod.metadata;
            let namespace = meta.namespace.as_deref().unwrap_or("default");
            let dir = logs::container_log_dir(dir, namespace, &meta.name, &self.spec.uid, name);
            Rc::new(RefCell::new(LogWriter::new(
                &dir,
                self.ctrs[i].restart_count,
                LogSettings::default(),
                SystemTime::now(),
            )))
        });
        for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
            let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
            self.pumps.push(Pump {
                ctr: i,
                fd,
                buf: Vec::new(),
                stream,
                log: log.clone(),
            });
        }
    }

    /// Forks container `i`'s next process and parks it, when a restart is possible and its
    /// PID namespace is its own (a parked process in a shared one would be visible there).
    fn park_next(&mut self, i: usize) {
        self.drop_standby(i);
        let c = &self.ctrs[i];
        let may_restart = c.kind == ContainerKind::Sidecar
            || self.spec.pod.spec.restart_policy() != crate::model::RestartPolicy::Never;
        if self.stopping
            || !may_restart
            || !self.sandbox.private_pid_ns
            || c.phase != Phase::Running
            || !self.spec.settings.prefork
        {
            return;
        }
        let (prepared, out_r, err_r) = match self.prepare_ctr(i) {
            Ok(p) => p,
            Err(e) => {
                log::debug!("container {:?}: no parked process: {e}", self.ctrs[i].name);
                return;
            }
        };
        // Give freed heap back to the kernel first: what the fork shares is then only what
        // is in use, and the pages the shim writes later are not copied for a process that
        // never reads them.
        crate::sys::trim_heap();
        match container::spawn_parked(&prepared) {
            Ok(parked) => {
                self.ctrs[i].standby = Some(Standby {
                    exec: ExecTarget::new(&prepared, parked.pid()).ok(),
                    parked,
                    out_r,
                    err_r,
                    stop_signal: prepared.stop_signal,
                })
            }
            Err(e) => log::debug!("container {:?}: no parked process: {e}", self.ctrs[i].name),
        }
    }

    /// Kills container `i`'s parked process, if any (reaped by the loop like any child).
    fn drop_standby(&mut self, i: usize) {
        if let Some(sb) = self.ctrs[i].standby.take() {
            let _ = nix::sys::signal::kill(sb.parked.pid(), Signal::SIGKILL);
        }
    }

    /// Keeps (or forgets) how to start processes in container `i` and publishes it as its
    /// `exec.json` (0600, atomic), or removes that file: `podsup exec` refuses a container
    /// without one.
    fn publish_exec(&mut self, i: usize, target: Option<ExecTarget>) {
        let path = self
            .spec
            .run_dir
            .join("containers")
            .join(&self.ctrs[i].name)
            .join(exec::DESCRIPTOR_NAME);
        let written = match &target {
            Some(t) => t.write(&path),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = written {
            let name = self.ctrs[i].name.clone();
            self.say(&format!("container {name:?}: {}: {e}", path.display()));
        }
        self.ctrs[i].exec = target;
    }

    fn container_spec(&self, i: usize) -> &crate::model::Container {
        let (is_init, idx) = self.ctrs[i].spec_idx;
        let pod = &self.spec.pod;
        if is_init {
            &pod.spec.init_containers[idx]
        } else {
            &pod.spec.containers[idx]
        }
    }

    /// Records a termination and decides the container's next phase and, for a restart,
    /// when it is due on the back-off curve (measured from the exit).
    fn finish(&mut self, i: usize, term: ContainerStateTerminated, now: Instant) {
        let policy = self.spec.pod.spec.restart_policy();
        // Killed by the shim for a failed probe or postStart hook: restarts as the kubelet
        // decides it (probe.rs), not as a container told to stop.
        let killed_by = self.health_on_exit(i);
        let restart = probe::compute_restart_after_kill(
            killed_by,
            self.ctrs[i].kind,
            policy,
            self.container_spec(i),
        )
        .map(|r| r && !self.stopping)
        .unwrap_or_else(|| {
            state::compute_should_restart(
                self.ctrs[i].kind,
                policy,
                Some(self.container_spec(i)),
                term.exit_code,
                // A container told to stop (a sidecar after the apps) is not restarted.
                self.stopping || (self.ctrs[i].stop_sent && killed_by.is_none()),
            )
        });
        let backoff = self.backoff;
        let c = &mut self.ctrs[i];
        // The daemon asked for this restart (new spec, `podsup restart`): at once, on a
        // fresh back-off curve, whatever the policy.
        let requested = std::mem::take(&mut c.restart_requested) && !self.stopping;
        c.restart_kill_at = None;
        c.pid = None;
        c.history.record(
            Termination {
                restart_count: c.restart_count as i32,
                started_at: term.started_at.clone(),
                finished_at: term.finished_at.clone().unwrap_or_default(),
                exit_code: term.exit_code,
                signal: term.signal,
                reason: term.reason.clone().unwrap_or_default(),
            },
            RESTART_HISTORY_LEN,
        );
        c.prev = c.last.replace(term);
        if requested {
            c.backoff = None;
            c.next_restart_at = None;
            c.phase = Phase::Waiting { not_before: None };
        } else if restart {
            let st = compute_restart_after_exit(&backoff, c.backoff.as_ref(), c.key, now);
            c.backoff = Some(st);
            c.next_restart_at = Some(Time::from_system(SystemTime::now() + st.delay));
            c.phase = Phase::Waiting {
                not_before: Some(st.not_before),
            };
        } else {
            c.phase = Phase::Done {
                exit_code: c.last.as_ref().map_or(0, |t| t.exit_code),
            };
            self.drop_standby(i);
        }
    }

    fn reap(&mut self) {
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid, code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid, 128 + sig as i32, Some(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, pid: Pid, exit_code: i32, signal: Option<i32>) {
        if self.health_exited(pid, exit_code) {
            return;
        }
        if Some(pid) == self.pause {
            self.pause = None;
            if !self.stopping {
                self.say("the pod's pause process died: stopping the pod");
                self.begin_stop(Signal::SIGTERM);
            }
            return;
        }
        if let Some(c) = self
            .ctrs
            .iter_mut()
            .find(|c| c.standby.as_ref().is_some_and(|s| s.parked.pid() == pid))
        {
            // A parked process died (a cgroup kill, the OOM killer): the next start forks.
            c.standby = None;
            return;
        }
        let Some(i) = self.ctrs.iter().position(|c| c.pid == Some(pid)) else {
            // A reparented orphan, or a parked process given up: reaped and forgotten.
            return;
        };
        self.publish_exec(i, None);
        let finished_at = SystemTime::now();
        self.drain_ctr(i);
        // OOM: the kernel's counters moved while it ran (v1 counts an OOM of the pod-level
        // limit in the pod group).
        let mut oom = self.ctrs[i].oom_seen;
        if let Some(cg) = &self.ctrs[i].cgroup {
            let base = self.ctrs[i].oom_base;
            oom |= cg.oom_kill_count().unwrap_or(0) > base.0;
            if signal == Some(Signal::SIGKILL as i32)
                && let Some(pod_cg) = &self.pod_cgroup
                && pod_cg.layout().mode != cgroup::Mode::V2
            {
                oom |= pod_cg.oom_kill_count().unwrap_or(0) > base.1;
            }
            // Whatever PID 1 left behind dies with it, as in a container runtime. In a PID
            // namespace of its own the kernel has done that already (everything podsup puts
            // in the cgroup, `exec` and probes included, enters that namespace), and the
            // cgroup holds the parked process of the next start.
            if !self.sandbox.private_pid_ns {
                let _ = cg.kill_once();
            }
        }
        let cspec = self.container_spec(i);
        let mut message = fs::File::open(&self.ctrs[i].dirs.termination_log)
            .and_then(|f| {
                let mut s = String::new();
                f.take(MESSAGE_MAX).read_to_string(&mut s).map(|_| s)
            })
            .unwrap_or_default();
        if message.is_empty()
            && exit_code != 0
            && cspec.termination_message_policy
                == Some(TerminationMessagePolicy::FallbackToLogsOnError)
        {
            message = tail_message(&self.ctrs[i].tail);
        }
        let reason = crate::model::compute_termination_reason(exit_code, oom);
        let name = self.ctrs[i].name.clone();
        match signal {
            Some(s) => self.say(&format!(
                "container {name:?} terminated by signal {s} (exit code {exit_code}, {reason})"
            )),
            None => self.say(&format!(
                "container {name:?} exited with code {exit_code} ({reason})"
            )),
        }
        if !message.is_empty() {
            self.say(&format!(
                "container {name:?} termination message: {}",
                message.trim_end()
            ));
        }
        let term = ContainerStateTerminated {
            exit_code,
            signal: signal.unwrap_or(0),
            reason: Some(reason.into()),
            message: (!message.is_empty()).then_some(message),
            started_at: self.ctrs[i].started_at.map(Time::from_system),
            finished_at: Some(Time::from_system(finished_at)),
            ..Default::default()
        };
        self.finish(i, term, Instant::now());
        if let (Phase::Waiting { .. }, Some(st)) = (self.ctrs[i].phase, self.ctrs[i].backoff) {
            self.say(&format!(
                "container {name:?} restarts in {:?} (restart {})",
                st.delay,
                self.ctrs[i].restart_count + 1
            ));
        }
        self.write_status();
    }

    fn drain_all(&mut self) {
        for i in (0..self.pumps.len()).rev() {
            self.pump(i);
        }
        for p in &mut self.pumps {
            if !p.buf.is_empty() {
                let line = std::mem::take(&mut p.buf);
                emit(&self.ctrs[p.ctr].prefix, &line);
            }
        }
    }

    fn drain_ctr(&mut self, ctr: usize) {
        for i in (0..self.pumps.len()).rev() {
            if self.pumps[i].ctr == ctr {
                self.pump(i);
            }
        }
    }

    /// Reads what a pipe has, prints complete lines with the container's name, and drops the
    /// pipe at EOF.
    fn pump(&mut self, i: usize) {
        let mut chunk = [0u8; 8192];
        let mut eof = false;
        // At most 256 KiB per wake-up: a container that floods its output must not starve
        // the signals, the timers and the other containers.
        for _ in 0..32 {
            match nix::unistd::read(&self.pumps[i].fd, &mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if let Some(log) = &self.pumps[i].log {
                        log.borrow_mut().write(
                            self.pumps[i].stream,
                            &chunk[..n],
                            SystemTime::now(),
                        );
                    }
                    let ctr = self.pumps[i].ctr;
                    let tail = &mut self.ctrs[ctr].tail;
                    tail.extend(&chunk[..n]);
                    while tail.len() > TAIL_BYTES {
                        tail.pop_front();
                    }
                    let p = &mut self.pumps[i];
                    p.buf.extend_from_slice(&chunk[..n]);
                    while let Some(pos) = p.buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = p.buf.drain(..=pos).collect();
                        emit(&self.ctrs[ctr].prefix, &line[..line.len() - 1]);
                    }
                    // Very long lines are cut, as the CRI log format does at 16 KiB.
                    if p.buf.len() >= 16 * 1024 {
                        let line = std::mem::take(&mut p.buf);
                        emit(&self.ctrs[ctr].prefix, &line);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if eof {
            let p = self.pumps.remove(i);
            if let Some(log) = &p.log {
                log.borrow_mut().close_stream(p.stream, SystemTime::now());
            }
            if !p.buf.is_empty() {
                emit(&self.ctrs[p.ctr].prefix, &p.buf);
            }
        }
    }

    /// A container's Kubernetes status.
    fn container_status(&self, i: usize, inits_done: bool) -> ContainerStatus {
        let c = &self.ctrs[i];
        let image = self.spec.images.get(&c.name);
        let terminated = |t: &Option<ContainerStateTerminated>| {
            t.clone()
                .map(ContainerState::terminated)
                .unwrap_or_default()
        };
        let (state, last_state) = match c.phase {
            Phase::Running => (
                ContainerState::running(c.started_at.unwrap_or(self.start_time)),
                terminated(&c.last),
            ),
            Phase::Done { .. } => (terminated(&c.last), terminated(&c.prev)),
            Phase::Waiting { .. } => {
                let waiting = match (&c.backoff, &c.next_restart_at) {
                    (Some(st), Some(_)) if !st.delay.is_zero() => {
                        let meta = &self.spec.pod.metadata;
                        let msg = st.compute_message(
                            &c.name,
                            &meta.name,
                            meta.namespace.as_deref().unwrap_or("default"),
                            &self.spec.uid,
                        );
                        ContainerState::waiting(reasons::CRASH_LOOP_BACK_OFF, Some(msg))
                    }
                    // The kubelet's reason for a container whose turn has not come yet.
                    _ if !c.attempted && (c.kind != ContainerKind::App || !inits_done) => {
                        ContainerState::waiting(reasons::POD_INITIALIZING, None)
                    }
                    _ => ContainerState::waiting(reasons::CONTAINER_CREATING, None),
                };
                (waiting, terminated(&c.last))
            }
        };
        let running = c.phase == Phase::Running;
        let mut st = ContainerStatus {
            name: c.name.clone(),
            state,
            last_state,
            ready: running,
            restart_count: c.restart_count as i32,
            image: image.map(|i| i.name.clone()).unwrap_or_default(),
            image_id: image.map(|i| i.id.clone()).unwrap_or_default(),
            container_id: None,
            started: Some(running),
        };
        self.apply_health(i, &mut st);
        st
    }

    /// Rewrites `status.json` (a [`PublishedStatus`]) atomically when it changed.
    fn write_status(&mut self) {
        let inits_done = self.ctrs.iter().all(|c| match c.kind {
            ContainerKind::Init => c.phase == Phase::Done { exit_code: 0 },
            ContainerKind::Sidecar => c.health.ever_started,
            ContainerKind::App => true,
        });
        let mut inits = Vec::new();
        let mut apps = Vec::new();
        for i in 0..self.ctrs.len() {
            let st = self.container_status(i, inits_done);
            if self.ctrs[i].kind == ContainerKind::App {
                apps.push(st);
            } else {
                inits.push(st);
            }
        }
        self.status.init_container_statuses = inits;
        self.status.container_statuses = apps;
        let spec = &self.spec.pod.spec;
        let terminal = self.over || self.stopping;
        self.status.phase = crate::model::compute_pod_phase(spec, &self.status, terminal);
        if self.over && !self.status.phase.is_terminal() {
            self.status.phase = PodPhase::Failed;
        }
        match &self.pod_failure {
            Some((r, m)) => {
                self.status.phase = PodPhase::Failed;
                self.status.reason = Some(r.clone());
                self.status.message = Some(m.clone());
            }
            None => {
                self.status.reason = None;
                self.status.message = None;
            }
        }
        self.status
            .refresh_conditions(spec, true, SystemTime::now());
        let history = self
            .ctrs
            .iter()
            .filter(|c| !c.history.terminations.is_empty())
            .map(|c| {
                let mut h = c.history.clone();
                h.next_restart_at = c.next_restart_at.clone();
                h
            })
            .collect();
        let published = PublishedStatus {
            status: self.status.clone(),
            restart_history: history,
            events: self.events.iter().cloned().collect(),
        };
        let Ok(text) = serde_json::to_string_pretty(&published) else {
            return;
        };
        if text == self.published {
            return;
        }
        if publish(&self.spec.run_dir, &text).is_ok() {
            self.published = text;
        }
    }

    /// Kills what is left, reaps, unmounts the pod's tmpfs and removes the pod's dirs under
    /// `--root` and the container dirs under `--run`. Runs every step, keeps the first error.
    fn cleanup(&mut self) -> Result<()> {
        for i in 0..self.ctrs.len() {
            self.kill_ctr(i);
        }
        if let Some(p) = self.pause.take() {
            let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
        }
        // Anything else that was reparented to us (the subreaper).
        for pid in children() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        while nix::sys::wait::waitpid(Pid::from_raw(-1), None).is_ok() {}
        let mut first: Option<anyhow::Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        // Every cgroup of the pod, after whatever escaped the reaping (waits for dying tasks).
        if let Some(cg) = &self.pod_cgroup {
            keep(
                cg.kill_all(Duration::from_secs(10))
                    .and_then(|()| cg.remove(Duration::from_secs(10)))
                    .context("remove the pod's cgroups"),
            );
        }
        for m in &self.pod_mounts {
            keep(
                nix::mount::umount2(m, MntFlags::MNT_DETACH)
                    .with_context(|| format!("unmount {}", m.display())),
            );
        }
        for d in [
            self.spec.root_dir.clone(),
            self.spec.run_dir.join("containers"),
        ] {
            match fs::remove_dir_all(&d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    keep(Err(e).with_context(|| format!("remove {}", d.display())))
                }
                _ => {}
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Writes `status.json` under `run_dir` atomically (write + rename).
pub fn publish(run_dir: &Path, text: &str) -> io::Result<()> {
    let path = run_dir.join("status.json");
    let tmp = run_dir.join("status.json.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &path)
}

/// The shim's direct children, from /proc (for the final kill of reparented orphans).
fn children() -> Vec<Pid> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(
                    s.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .map(Pid::from_raw),
                );
            }
        }
    }
    out
}

fn tail_message(tail: &VecDeque<u8>) -> String {
    let bytes: Vec<u8> = tail.iter().copied().collect();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join("\n")
}

/// The `name | ` prefix of each container, names padded to one width and, on a terminal
/// (unless NO_COLOR is set), coloured one colour per container as `docker compose up` does.
fn compute_prefixes(names: &[String], color: bool) -> Vec<String> {
    const COLORS: [u8; 6] = [36, 33, 32, 35, 34, 31];
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if color {
                format!("\x1b[{}m{n:<width$} |\x1b[0m ", COLORS[i % COLORS.len()])
            } else {
                format!("{n:<width$} | ")
            }
        })
        .collect()
}

/// Prints one line of a container's output as `name | line`, like `docker compose up`.
fn emit(prefix: &str, line: &[u8]) {
    let mut out = Vec::with_capacity(line.len() + prefix.len() + 1);
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(line);
    out.push(b'\n');
    // A closed terminal must not stop the pod.
    let _ = io::stdout().lock().write_all(&out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PodDnsConfig, PodDnsConfigOption};

    #[test]
    fn cpu_lists() {
        assert_eq!(compute_cpu_list_len("0-3,6"), Some(5));
        assert_eq!(compute_cpu_list_len("0"), Some(1));
        assert_eq!(compute_cpu_list_len("x"), None);
    }

    #[test]
    fn prefixes_are_padded_and_coloured_on_request() {
        let names = vec!["web".to_string(), "sidecar".to_string()];
        assert_eq!(
            compute_prefixes(&names, false),
            vec!["web     | ", "sidecar | "]
        );
        assert_eq!(
            compute_prefixes(&names, true)[1],
            "\x1b[33msidecar |\x1b[0m "
        );
    }

    #[test]
    fn resolv_conf_merges_dns_config() {
        let mut pod = Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Default::default(),
            spec: Default::default(),
        };
        let host = "# comment\nnameserver 10.0.0.1\nsearch lan\noptions ndots:1 edns0\n";
        assert_eq!(
            compute_resolv_conf(host, &pod),
            "nameserver 10.0.0.1\nsearch lan\noptions ndots:1 edns0\n"
        );
        pod.spec.dns_config = Some(PodDnsConfig {
            nameservers: vec!["1.1.1.1".into()],
            searches: vec!["svc.local".into()],
            options: vec![PodDnsConfigOption {
                name: "ndots".into(),
                value: Some("5".into()),
            }],
        });
        assert_eq!(
            compute_resolv_conf(host, &pod),
            "nameserver 10.0.0.1\nnameserver 1.1.1.1\nsearch lan svc.local\noptions edns0 ndots:5\n"
        );
        assert_eq!(
            compute_resolv_conf("", &pod),
            "nameserver 1.1.1.1\nsearch svc.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_file_has_localhost_hostname_and_aliases() {
        let mut pod = Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Default::default(),
            spec: Default::default(),
        };
        pod.spec.host_aliases = vec![crate::model::HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: vec!["a".into(), "b".into()],
        }];
        let h = hosts_file(&pod, "web");
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("127.0.0.1\tweb\n"));
        assert!(h.ends_with("10.1.2.3\ta\tb\n"));
    }
}
