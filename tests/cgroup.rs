//! cgroups on the real kernel, as root: layout, limits, join before exec, OOM, throttling,
//! pids limit, kill_all, removal.
//!
//! Each test works under its own parent group (`podsup-test-<pid>-<n>`), never under a
//! real podsup's, kills only processes it started or that are in its own groups, and a
//! guard removes everything even when the test fails; `finish()` proves nothing is left.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podsup::cgroup::layout::{compute_proc_cgroup_path, parse_proc_cgroup};
use podsup::cgroup::{
    Cgroup, Cgroups, Config, Layout, Limits, Mode, V1Controller, compute_container_limits,
};
use podsup::model::{Container, PodSpec, Quantity, ResourceRequirements};

use common::{BUSYBOX, require_root};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A test's own cgroup parent and the processes it started. Drop tears everything down.
struct Guard {
    cgs: Cgroups,
    children: Vec<Child>,
}

impl Guard {
    fn new() -> Guard {
        Guard::with_layout(Layout::detect().expect("detect layout"))
    }

    fn with_layout(layout: Layout) -> Guard {
        let parent = format!(
            "podsup-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let cgs = Cgroups::new(
            layout,
            Config {
                parent,
                pids_limit: Some(64),
            },
        )
        .expect("cgroups");
        Guard {
            cgs,
            children: Vec::new(),
        }
    }

    fn parent_name(&self) -> String {
        self.cgs.config().parent.clone()
    }

    /// Starts `busybox args…`, joined to `cg` before exec through the fd API.
    fn spawn_joined(&mut self, cg: &Cgroup, args: &[&str]) -> u32 {
        let join = cg.open_join().expect("open cgroup.procs");
        let mut cmd = Command::new(BUSYBOX);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the hook runs in the forked child before exec; join_self only calls
        // write(2) on fds opened before the fork and builds its error without allocating.
        unsafe {
            cmd.pre_exec(move || {
                join.join_self()
                    .map_err(|e| std::io::Error::from_raw_os_error(e.errno as i32))
            });
        }
        let child = cmd.spawn().expect("spawn busybox");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts `busybox args…` and moves it into `cg` from the parent side.
    fn spawn_added(&mut self, cg: &Cgroup, args: &[&str]) -> u32 {
        let child = Command::new(BUSYBOX)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn busybox");
        let pid = child.id();
        self.children.push(child);
        cg.add_pid(pid as i32).expect("add_pid");
        pid
    }

    fn child(&mut self, pid: u32) -> &mut Child {
        self.children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("known child")
    }

    fn cleanup(&mut self) -> Result<(), String> {
        for c in &mut self.children {
            // Only our own children, by pid (Child::kill), then reap.
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        let parent = self.cgs.parent();
        let mut errs = Vec::new();
        if let Err(e) = parent.kill_all(Duration::from_secs(5)) {
            errs.push(e.to_string());
        }
        if let Err(e) = parent.remove(Duration::from_secs(5)) {
            errs.push(e.to_string());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Tears down and fails the test if any directory named like our parent is left in
    /// any hierarchy mounted under /sys/fs/cgroup (not only the ones podsup uses: this
    /// also proves nothing was created in name=systemd, devices, blkio, cpuset…).
    fn finish(mut self) {
        let name = self.parent_name();
        self.cleanup().expect("cleanup");
        let left = leftovers(&name);
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("cleanup of {}: {e}", self.parent_name());
        }
    }
}

fn leftovers(name: &str) -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    roots
        .into_iter()
        .map(|r| r.join(name))
        .filter(|p| p.exists())
        .collect()
}

/// On cgroup v2 the limits need cpu, memory and pids enabled in the root's
/// `cgroup.subtree_control` (systemd does it; a bare init may not). Without them, say so
/// and skip, as for root.
fn require_controllers(test: &str) -> bool {
    let l = Layout::detect().expect("detect layout");
    if l.mode != Mode::V2 {
        return true;
    }
    let root = l.unified.unwrap();
    let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<&str> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if missing.is_empty() {
        return true;
    }
    eprintln!(
        "skipped {test}: cgroup v2 controllers {missing:?} are not enabled in {}/cgroup.subtree_control",
        root.display()
    );
    false
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap()
}

fn resources(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> ResourceRequirements {
    ResourceRequirements {
        limits: limits.iter().map(|(k, v)| (k.to_string(), q(v))).collect(),
        requests: requests
            .iter()
            .map(|(k, v)| (k.to_string(), q(v)))
            .collect(),
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn layout_matches_this_host() {
    if !require_root("layout_matches_this_host") {
        return;
    }
    let l = Layout::detect().unwrap();
    eprintln!("layout: {l:?}");
    let own = parse_proc_cgroup(&read(Path::new("/proc/self/cgroup")));
    match l.mode {
        Mode::V2 => {
            assert!(l.v1.is_empty());
            assert!(compute_proc_cgroup_path(&own, None).is_some());
        }
        Mode::V1 | Mode::Hybrid => {
            for c in l.v1.keys() {
                assert!(
                    compute_proc_cgroup_path(&own, Some(c.name())).is_some(),
                    "{c:?} mounted but not in /proc/self/cgroup"
                );
            }
            assert_eq!(l.mode == Mode::Hybrid, l.unified.is_some());
        }
    }
    for r in l.roots() {
        assert!(r.is_dir(), "{}", r.display());
    }
}

#[test]
fn limits_are_written_and_read_back() {
    if !require_root("limits_are_written_and_read_back")
        || !require_controllers("limits_are_written_and_read_back")
    {
        return;
    }
    let g = Guard::new();
    let app = Container {
        name: "app".into(),
        resources: resources(&[("memory", "32Mi"), ("cpu", "100m")], &[("cpu", "50m")]),
        ..Default::default()
    };
    let side = Container {
        name: "side".into(),
        resources: resources(&[("memory", "16Mi"), ("cpu", "250m")], &[("cpu", "250m")]),
        ..Default::default()
    };
    let spec = PodSpec {
        containers: vec![app.clone(), side],
        ..Default::default()
    };
    let pod = g.cgs.create_pod("uid1", &spec).unwrap();
    let ctr = pod.child("app").unwrap();
    ctr.create().unwrap();
    let want = compute_container_limits(&app.resources);
    ctr.apply_limits(&want).unwrap();

    let v2 = g.cgs.layout().mode == Mode::V2;
    let got = ctr.read_limits().unwrap();
    assert_eq!(got.memory_bytes, Some(32 << 20));
    assert_eq!(got.cpu_quota_us, Some(10_000));
    assert_eq!(got.cpu_shares, Some(if v2 { 2 } else { 51 }));
    assert_eq!(got.pids_max, None);

    let got = pod.read_limits().unwrap();
    assert_eq!(
        got,
        Limits {
            memory_bytes: Some(48 << 20),
            cpu_quota_us: Some(35_000),
            cpu_shares: Some(if v2 { 12 } else { 307 }),
            pids_max: Some(64),
        }
    );

    // From the outside: the files themselves, and no swap beyond the limit.
    let mem = ctr.dir(V1Controller::Memory).unwrap();
    if v2 {
        assert_eq!(read(&mem.join("memory.max")).trim(), "33554432");
        if mem.join("memory.swap.max").exists() {
            assert_eq!(read(&mem.join("memory.swap.max")).trim(), "0");
        }
    } else {
        assert_eq!(read(&mem.join("memory.limit_in_bytes")).trim(), "33554432");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(&mem.join("memory.memsw.limit_in_bytes")).trim(),
                "33554432"
            );
        }
        let cpu = ctr.dir(V1Controller::Cpu).unwrap();
        assert_eq!(read(&cpu.join("cpu.cfs_period_us")).trim(), "100000");
    }
    // Only our five v1 controllers (plus the cgroup2 tracking group) got directories.
    for d in pod.dirs() {
        assert!(d.is_dir(), "{}", d.display());
    }
    g.finish();
}

#[test]
fn join_before_exec_and_add_pid() {
    if !require_root("join_before_exec_and_add_pid") {
        return;
    }
    let mut g = Guard::new();
    let pod = g.cgs.pod("uid2").unwrap();
    let a = pod.child("a").unwrap();
    let b = pod.child("b").unwrap();
    a.create().unwrap();
    b.create().unwrap();
    let pa = g.spawn_joined(&a, &["sleep", "300"]);
    let pb = g.spawn_added(&b, &["sleep", "301"]);
    for (pid, cg) in [(pa, &a), (pb, &b)] {
        let lines = parse_proc_cgroup(&read(Path::new(&format!("/proc/{pid}/cgroup"))));
        let want = format!("/{}", cg.rel().display());
        for c in g.cgs.layout().v1.keys() {
            assert_eq!(
                compute_proc_cgroup_path(&lines, Some(c.name())),
                Some(want.as_str()),
                "{c:?}"
            );
        }
        if g.cgs.layout().unified.is_some() {
            assert_eq!(compute_proc_cgroup_path(&lines, None), Some(want.as_str()));
        }
        assert_eq!(cg.procs().unwrap(), vec![pid as i32]);
    }
    let mut all = pod.procs_recursive().unwrap();
    all.sort();
    let mut want = vec![pa as i32, pb as i32];
    want.sort();
    assert_eq!(all, want);
    assert!(pod.procs().unwrap().is_empty());
    g.finish();
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    if !require_root("memory_hog_is_oom_killed_and_reported")
        || !require_controllers("memory_hog_is_oom_killed_and_reported")
    {
        return;
    }
    let mut g = Guard::new();
    let pod = g.cgs.pod("uid3").unwrap();
    let ctr = pod.child("hog").unwrap();
    ctr.create().unwrap();
    ctr.apply_limits(&compute_container_limits(&resources(
        &[("memory", "32Mi")],
        &[],
    )))
    .unwrap();
    let watch = ctr.oom_watch().unwrap();
    let before = ctr.oom_kill_count().unwrap();
    assert!(
        !watch.wait(Duration::ZERO).unwrap(),
        "no event before the hog"
    );

    let pid = g.spawn_joined(
        &ctr,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"],
    );
    let status = g.child(pid).wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "dd should be SIGKILLed: {status:?}"
    );
    assert!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        "OOM fd never became readable"
    );
    assert!(watch.drain().unwrap());
    let after = ctr.oom_kill_count().unwrap();
    assert!(after > before, "oom_kill {before} -> {after}");
    g.finish();
}

#[test]
fn cpu_limit_throttles() {
    if !require_root("cpu_limit_throttles") || !require_controllers("cpu_limit_throttles") {
        return;
    }
    let mut g = Guard::new();
    let pod = g.cgs.pod("uid4").unwrap();
    let ctr = pod.child("spin").unwrap();
    ctr.create().unwrap();
    ctr.apply_limits(&compute_container_limits(&resources(
        &[("cpu", "100m")],
        &[],
    )))
    .unwrap();
    let before = ctr.cpu_stat().unwrap();
    g.spawn_added(&ctr, &["sh", "-c", "while :; do :; done"]);
    let throttled = wait_until(Duration::from_secs(5), || {
        let s = ctr.cpu_stat().unwrap();
        s.nr_throttled > before.nr_throttled + 2 && s.throttled_usec > before.throttled_usec
    });
    let after = ctr.cpu_stat().unwrap();
    assert!(throttled, "no throttling: {before:?} -> {after:?}");
    assert!(after.nr_periods > before.nr_periods);
    ctr.kill_all(Duration::from_secs(5)).unwrap();
    assert!(ctr.procs().unwrap().is_empty());
    g.finish();
}

#[test]
fn fork_bomb_stops_at_pids_limit() {
    if !require_root("fork_bomb_stops_at_pids_limit")
        || !require_controllers("fork_bomb_stops_at_pids_limit")
    {
        return;
    }
    let mut g = Guard::new();
    let spec = PodSpec {
        containers: vec![Container {
            name: "bomb".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let pod = g.cgs.create_pod("uid5", &spec).unwrap();
    let ctr = pod.child("bomb").unwrap();
    ctr.create().unwrap();
    g.spawn_joined(
        &ctr,
        &["sh", "-c", "while :; do /bin/busybox sleep 300 & done"],
    );
    // The pod's counter covers the container's, whichever way the kernel counts.
    let hit = wait_until(Duration::from_secs(10), || {
        pod.pids_events_max().unwrap_or(0) > 0
    });
    eprintln!(
        "pids.events max: pod {:?}, container {:?}; pids.current {:?}",
        pod.pids_events_max(),
        ctr.pids_events_max(),
        pod.pids_current()
    );
    assert!(hit, "pids.events max stayed 0");
    let current = pod.pids_current().unwrap();
    assert!(current <= 64, "pids.current {current} over the limit");
    pod.kill_all(Duration::from_secs(10)).unwrap();
    assert!(pod.procs_recursive().unwrap().is_empty());
    g.finish();
}

/// kill_all on a pod whose containers have several processes, one of which ignores
/// SIGTERM. `mode` V1 runs the freezer path on this host by leaving out the cgroup2
/// tracking hierarchy.
fn kill_all_case(test: &str, v1_only: bool) {
    if !require_root(test) {
        return;
    }
    let mut layout = Layout::detect().unwrap();
    if v1_only {
        if layout.mode != Mode::Hybrid {
            eprintln!("skipped {test}: needs the hybrid layout to test the v1 freezer path");
            return;
        }
        layout.mode = Mode::V1;
        layout.unified = None;
    }
    let mut g = Guard::with_layout(layout);
    let pod = g.cgs.pod("uid6").unwrap();
    let a = pod.child("a").unwrap();
    let b = pod.child("b").unwrap();
    a.create().unwrap();
    b.create().unwrap();
    let sh = g.spawn_joined(
        &a,
        &[
            "sh",
            "-c",
            "trap '' TERM; /bin/busybox sleep 300 & /bin/busybox sleep 301 & while :; do /bin/busybox sleep 1; done",
        ],
    );
    g.spawn_joined(&b, &["sleep", "302"]);
    assert!(
        wait_until(Duration::from_secs(5), || pod
            .procs_recursive()
            .unwrap()
            .len()
            >= 4),
        "processes did not start: {:?}",
        pod.procs_recursive()
    );
    // The shell ignores SIGTERM (sent to our own child, by pid).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sh as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        a.procs().unwrap().contains(&(sh as i32)),
        "sh should ignore SIGTERM"
    );

    pod.kill_all(Duration::from_secs(5)).unwrap();
    assert!(pod.procs_recursive().unwrap().is_empty());
    let status = g.child(sh).wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    if v1_only {
        let f = pod.dir(V1Controller::Freezer).unwrap();
        assert_eq!(read(&f.join("freezer.state")).trim(), "THAWED");
    }
    pod.remove(Duration::from_secs(5)).unwrap();
    assert!(!pod.exists());
    for d in pod.dirs() {
        assert!(!d.exists(), "{}", d.display());
    }
    g.finish();
}

#[test]
fn kill_all_empties_the_pod() {
    kill_all_case("kill_all_empties_the_pod", false);
}

#[test]
fn kill_all_v1_freezer_path() {
    kill_all_case("kill_all_v1_freezer_path", true);
}

#[test]
fn remove_waits_and_removes_everything() {
    if !require_root("remove_waits_and_removes_everything") {
        return;
    }
    let mut g = Guard::new();
    let pod = g.cgs.pod("uid7").unwrap();
    let ctr = pod.child("c").unwrap();
    ctr.create().unwrap();
    let pid = g.spawn_joined(&ctr, &["sleep", "300"]);
    // A populated group cannot go.
    let e = pod.remove(Duration::from_millis(50)).unwrap_err();
    assert!(e.to_string().contains("EBUSY"), "{e}");
    // SIGKILL, then remove at once: rmdir retries while the task is dying.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    pod.remove(Duration::from_secs(5)).unwrap();
    assert!(!pod.exists());
    g.finish();
}

/// The cgroup2 code paths on the real kernel: on a hybrid host, the cgroup2 mount (with no
/// controllers of ours) is used as if it were a pure v2 machine: create, join, populated,
/// `cgroup.events` watch, `cgroup.kill`, remove; limits fail cleanly without controllers.
#[test]
fn v2_paths_on_the_cgroup2_mount() {
    if !require_root("v2_paths_on_the_cgroup2_mount") {
        return;
    }
    let host = Layout::detect().unwrap();
    let Some(unified) = host.unified.clone() else {
        eprintln!("skipped v2_paths_on_the_cgroup2_mount: no cgroup2 mount");
        return;
    };
    let layout = Layout {
        mode: Mode::V2,
        v1: Default::default(),
        unified: Some(unified.clone()),
    };
    let mut g = Guard::with_layout(layout);
    let pod = g.cgs.pod("uid8").unwrap();
    let ctr = pod.child("c").unwrap();
    ctr.create().unwrap();
    assert_eq!(g.cgs.pods().unwrap(), vec!["uid8".to_string()]);
    assert_eq!(ctr.populated().unwrap(), Some(false));
    let watch = ctr.events_watch().unwrap();

    let pid = g.spawn_joined(&ctr, &["sleep", "300"]);
    assert!(
        watch.wait(Duration::from_secs(5)).unwrap(),
        "no cgroup.events change"
    );
    watch.drain().unwrap();
    assert_eq!(ctr.populated().unwrap(), Some(true));
    assert_eq!(pod.populated().unwrap(), Some(true));
    let lines = parse_proc_cgroup(&read(Path::new(&format!("/proc/{pid}/cgroup"))));
    assert_eq!(
        compute_proc_cgroup_path(&lines, None),
        Some(format!("/{}", ctr.rel().display()).as_str())
    );

    assert_eq!(pod.kill_once().unwrap(), 1);
    assert_eq!(g.child(pid).wait().unwrap().signal(), Some(9));
    assert!(watch.wait(Duration::from_secs(5)).unwrap());
    assert!(wait_until(Duration::from_secs(2), || ctr
        .populated()
        .unwrap()
        == Some(false)));

    // The v2 freezer path (kernels without cgroup.kill): cgroup.freeze, kill, thaw.
    if ctr.unified_dir().unwrap().join("cgroup.freeze").exists() {
        let sh = g.spawn_joined(
            &ctr,
            &[
                "sh",
                "-c",
                "trap '' TERM; /bin/busybox sleep 300 & /bin/busybox sleep 301 & wait",
            ],
        );
        assert!(wait_until(Duration::from_secs(5), || ctr
            .procs()
            .unwrap()
            .len()
            >= 3));
        pod.kill_once_frozen().unwrap();
        assert_eq!(g.child(sh).wait().unwrap().signal(), Some(9));
        assert!(wait_until(Duration::from_secs(5), || ctr
            .procs()
            .unwrap()
            .is_empty()));
        let freeze = ctr.unified_dir().unwrap().join("cgroup.freeze");
        assert_eq!(read(&freeze).trim(), "0", "left frozen");
        assert_eq!(
            read(&pod.unified_dir().unwrap().join("cgroup.freeze")).trim(),
            "0"
        );
    }

    if !unified.join("cgroup.controllers").exists()
        || !read(&unified.join("cgroup.subtree_control")).contains("memory")
    {
        // No memory controller in this cgroup2 hierarchy: the error names the file and
        // the value, and create_with leaves nothing behind.
        let other = pod.child("limited").unwrap();
        let e = other
            .create_with(&Limits {
                memory_bytes: Some(1 << 25),
                ..Default::default()
            })
            .unwrap_err();
        let msg = e.to_string();
        eprintln!("expected error: {msg}");
        assert!(
            msg.contains("controller memory") && msg.contains("memory.max"),
            "{msg}"
        );
        assert!(!other.exists());
    }
    g.finish();
}

#[test]
fn create_container_and_list_pods() {
    if !require_root("create_container_and_list_pods")
        || !require_controllers("create_container_and_list_pods")
    {
        return;
    }
    let g = Guard::new();
    assert!(g.cgs.pods().unwrap().is_empty());
    let spec = PodSpec::default();
    let p1 = g.cgs.create_pod("b-2", &spec).unwrap();
    g.cgs.create_pod("a-1", &spec).unwrap();
    assert_eq!(
        g.cgs.pods().unwrap(),
        vec!["a-1".to_string(), "b-2".to_string()]
    );
    let c = p1
        .create_container(&Container {
            name: "web".into(),
            resources: resources(&[("memory", "64Mi")], &[]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.read_limits().unwrap().memory_bytes, Some(64 << 20));
    // A daemon cleaning up after a dead shim: from the uid alone.
    let mut g = g;
    let pid = g.spawn_joined(&c, &["sleep", "300"]);
    g.cgs.cleanup_pod("b-2", Duration::from_secs(5)).unwrap();
    assert_eq!(g.child(pid).wait().unwrap().signal(), Some(9));
    assert!(!p1.exists());
    assert_eq!(g.cgs.pods().unwrap(), vec!["a-1".to_string()]);
    g.cgs
        .cleanup_pod("never-existed", Duration::from_secs(1))
        .unwrap();
    // A bad name never reaches the filesystem.
    assert!(
        p1.create_container(&Container {
            name: "../x".into(),
            ..Default::default()
        })
        .is_err()
    );
    g.finish();
}
