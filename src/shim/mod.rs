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
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::container::{self, ContainerDirs, ImageInfo, Sandbox, Stdio, VolumeSource};
use crate::logs::{self, LogSettings, LogWriter, Stream};
use crate::model::{ContainerKind, DnsPolicy, Pod, StorageMedium, TerminationMessagePolicy};
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

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Terminated {
    exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

struct Ctr {
    name: String,
    kind: ContainerKind,
    spec_idx: (bool, usize),
    phase: Phase,
    pid: Option<Pid>,
    restart_count: u32,
    last: Option<Terminated>,
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
}

/// Runs the shim until the pod is over; returns the exit status for `podsup run`.
/// `foreground`: stop the pod when the parent (`podsup run`) dies.
pub fn main(spec_path: &Path, foreground: bool) -> Result<i32> {
    nix::unistd::setsid().context("setsid")?;
    if foreground {
        nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("set parent death signal")?;
    }
    let _ = nix::sys::prctl::set_name(c"podsup-shim");
    nix::sys::prctl::set_child_subreaper(true).context("set child subreaper")?;
    let text = fs::read(spec_path).with_context(|| format!("read {}", spec_path.display()))?;
    let spec: ShimSpec =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", spec_path.display()))?;
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
                last: None,
                stop_signal: Signal::SIGTERM,
                stop_sent: false,
                prefix: String::new(),
                tail: VecDeque::new(),
                restart_requested: false,
                restart_kill_at: None,
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
        })
    }

    fn say(&self, msg: &str) {
        let _ = writeln!(io::stderr(), "podsup: {msg}");
    }

    fn run(&mut self, sigfd: &SignalFd) -> Result<i32> {
        loop {
            let now = Instant::now();
            let views: Vec<View> = self
                .ctrs
                .iter()
                .map(|c| View {
                    kind: c.kind,
                    phase: c.phase,
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
                return Ok(code);
            }
            let mut started = false;
            for i in plan.start {
                self.start(i);
                started = true;
            }
            if started {
                // A start may have failed at once: decide again before sleeping.
                continue;
            }
            if let Some(t) = self.kill_at
                && t <= now
            {
                self.kill_at = None;
                for i in 0..self.ctrs.len() {
                    self.signal_ctr(i, Signal::SIGKILL);
                }
            }
            let restart_kill = self.kill_overdue_restarts(now);
            let deadline = [plan.wake, self.kill_at, restart_kill]
                .into_iter()
                .flatten()
                .min();
            let timeout = match deadline {
                Some(t) => {
                    let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::NONE)
                }
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            for p in &self.pumps {
                fds.push(PollFd::new(p.fd.as_fd(), PollFlags::POLLIN));
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
            for (i, r) in ready.iter().enumerate().skip(1).rev() {
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
        for c in &mut self.ctrs {
            if let Phase::Waiting { .. } = c.phase {
                c.phase = Phase::Done {
                    exit_code: c.last.as_ref().map_or(0, |t| t.exit_code),
                };
            }
        }
        for i in 0..self.ctrs.len() {
            self.stop_ctr(i);
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.spec.pod.spec.termination_grace_period_seconds().max(0) as u64)
    }

    /// Sends the container its stop signal, once per start.
    fn stop_ctr(&mut self, i: usize) {
        if !self.ctrs[i].stop_sent && self.ctrs[i].phase == Phase::Running {
            self.signal_ctr(i, self.ctrs[i].stop_signal);
            self.ctrs[i].stop_sent = true;
        }
    }

    fn signal_ctr(&self, i: usize, sig: Signal) {
        if let (Phase::Running, Some(pid)) = (self.ctrs[i].phase, self.ctrs[i].pid) {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }

    fn start(&mut self, i: usize) {
        let now = Instant::now();
        match self.try_start(i) {
            Ok(pid) => {
                let c = &mut self.ctrs[i];
                c.pid = Some(pid);
                c.phase = Phase::Running;
                c.stop_sent = false;
            }
            Err(msg) => {
                let name = self.ctrs[i].name.clone();
                self.say(&format!("container {name:?}: {msg}"));
                let term = Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: msg,
                };
                self.finish(i, term, now);
            }
        }
        self.write_status();
    }

    fn try_start(&mut self, i: usize) -> std::result::Result<Pid, String> {
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
        // A (re)started container gets a fresh writable layer, as in Kubernetes.
        for d in [&dirs.upper, &dirs.work] {
            let _ = fs::remove_dir_all(d);
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
        let prepared = container::prepare(pod, cspec, image, &self.sandbox, &dirs, &stdio)
            .map_err(|e| e.to_string())?;
        self.ctrs[i].stop_signal = prepared.stop_signal;
        let pid = container::spawn(&prepared).map_err(|e| e.to_string())?;
        drop(stdio);
        let log = self.spec.log_dir.as_ref().map(|dir| {
            let meta = &pod.metadata;
            let namespace = meta.namespace.as_deref().unwrap_or("default");
            let dir =
                logs::container_log_dir(dir, namespace, &meta.name, &self.spec.uid, &cspec.name);
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
        Ok(pid)
    }

    /// Records a termination and decides the container's next phase.
    fn finish(&mut self, i: usize, term: Terminated, now: Instant) {
        let policy = self.spec.pod.spec.restart_policy();
        let c = &mut self.ctrs[i];
        let mut next =
            state::compute_after_exit(c.kind, policy, term.exit_code, self.stopping, now);
        if std::mem::take(&mut c.restart_requested) && !self.stopping {
            next = Phase::Waiting { not_before: None };
        }
        c.restart_kill_at = None;
        c.pid = None;
        if let Phase::Waiting { .. } = next {
            c.restart_count += 1;
        }
        c.phase = next;
        c.last = Some(term);
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
        if Some(pid) == self.pause {
            self.pause = None;
            if !self.stopping {
                self.say("the pod's pause process died: stopping the pod");
                self.begin_stop(Signal::SIGTERM);
            }
            return;
        }
        let Some(i) = self.ctrs.iter().position(|c| c.pid == Some(pid)) else {
            // A reparented orphan: reaped and forgotten.
            return;
        };
        self.drain_ctr(i);
        let (is_init, idx) = self.ctrs[i].spec_idx;
        let pod = &self.spec.pod;
        let cspec = if is_init {
            &pod.spec.init_containers[idx]
        } else {
            &pod.spec.containers[idx]
        };
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
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
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
        let term = Terminated {
            exit_code,
            signal,
            reason: reason.into(),
            message,
        };
        self.finish(i, term, Instant::now());
        if let Phase::Waiting { .. } = self.ctrs[i].phase {
            self.say(&format!(
                "container {name:?} will restart (restart {})",
                self.ctrs[i].restart_count
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
        loop {
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

    /// Rewrites `status.json` atomically with Kubernetes field names.
    fn write_status(&self) {
        let statuses: Vec<serde_json::Value> = self
            .ctrs
            .iter()
            .map(|c| {
                let state = match c.phase {
                    Phase::Running => serde_json::json!({"running": {}}),
                    Phase::Waiting { .. } if c.restart_count > 0 => {
                        serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}})
                    }
                    Phase::Waiting { .. } => serde_json::json!({"waiting": {"reason": "PodInitializing"}}),
                    Phase::Done { .. } => serde_json::json!({"terminated": c.last}),
                };
                serde_json::json!({
                    "name": c.name,
                    "state": state,
                    "lastState": match c.phase { Phase::Done { .. } => serde_json::Value::Null, _ => serde_json::json!({"terminated": c.last}) },
                    "restartCount": c.restart_count,
                    "init": c.kind != ContainerKind::App,
                })
            })
            .collect();
        let status = serde_json::json!({ "uid": self.spec.uid, "containerStatuses": statuses });
        let path = self.spec.run_dir.join("status.json");
        let tmp = self.spec.run_dir.join("status.json.tmp");
        if fs::write(&tmp, status.to_string()).is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }

    /// Kills what is left, reaps, unmounts the pod's tmpfs and removes the pod's dirs under
    /// `--root` and the container dirs under `--run`. Runs every step, keeps the first error.
    fn cleanup(&mut self) -> Result<()> {
        for i in 0..self.ctrs.len() {
            self.signal_ctr(i, Signal::SIGKILL);
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
