//! Helpers shared by the kernel-facing tests: root check, per-test directories, a busybox
//! root filesystem built at test time.
#![allow(dead_code)]

pub mod daemon;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The podsup binary under test.
pub fn podsup() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podsup"))
}

/// True when the test may touch the kernel for real. Without root, prints why the test is
/// skipped (the way crun's tests return 77) and returns false.
pub fn require_root(test: &str) -> bool {
    if unsafe_geteuid() == 0 {
        return true;
    }
    eprintln!("skipped {test}: requires root privileges (CI runs as root)");
    false
}

fn unsafe_geteuid() -> u32 {
    // Read from /proc to keep the tests free of unsafe code.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Fresh `--root/--run/--manifests/--log-dir` directories for one test.
pub struct TestDirs {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub run: PathBuf,
    pub manifests: PathBuf,
    pub log_dir: PathBuf,
}

impl TestDirs {
    pub fn new() -> TestDirs {
        let tmp = tempfile::Builder::new()
            .prefix("podsup-test-")
            .tempdir()
            .expect("tempdir");
        let mk = |name: &str| {
            let p = tmp.path().join(name);
            std::fs::create_dir_all(&p).expect("mkdir");
            p
        };
        TestDirs {
            root: mk("root"),
            run: mk("run"),
            manifests: mk("manifests"),
            log_dir: mk("logs"),
            tmp,
        }
    }

    /// The path flags, to append after the verb.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.root.display().to_string(),
            "--run".into(),
            self.run.display().to_string(),
            "--manifests".into(),
            self.manifests.display().to_string(),
            "--log-dir".into(),
            self.log_dir.display().to_string(),
        ]
    }

    /// `podsup run FILE` with this test's directories and cgroup parent (add flags, stdio).
    pub fn podsup_run(&self, file: &Path, cgroup_parent: &str) -> Command {
        let mut c = podsup();
        c.arg("run")
            .arg(file)
            .arg("--root")
            .arg(&self.root)
            .arg("--run")
            .arg(&self.run)
            .arg("--log-dir")
            .arg(&self.log_dir)
            .arg("--cgroup-parent")
            .arg(cgroup_parent);
        c
    }

    /// The run directory of the pod whose shim has written its status (tests with one pod).
    pub fn pod_dir(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.run.join("pods"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("status.json").exists())
    }
}

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds a minimal root filesystem in `dir`: a static busybox with a symlink per applet,
/// plus the directories a container expects. Panics with a hint when busybox-static is
/// missing.
pub fn busybox_rootfs(dir: &Path) {
    let bb = Path::new(BUSYBOX);
    let out = Command::new(bb).arg("--list").output().unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e} (install busybox-static: apt-get install -y busybox-static)")
    });
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "home",
        "var",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy(bb, dir.join("bin/busybox")).expect("copy busybox");
    for applet in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if applet == "busybox" {
            continue;
        }
        let _ = symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
}

/// Imports a busybox root filesystem into the test's store as `name` (plus `extra` import
/// flags, e.g. `--env K=V`) and returns the name to write as `image:` in a manifest.
pub fn busybox_image(dirs: &TestDirs, name: &str, extra: &[&str]) -> String {
    let rootfs = dirs
        .tmp
        .path()
        .join(format!("rootfs-{}", name.replace(['/', ':'], "_")));
    busybox_rootfs(&rootfs);
    // Whatever the umask of the test run, non-root containers must be able to use the image.
    use std::os::unix::fs::PermissionsExt;
    for entry in [
        "", "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root", "home", "var",
        "dev", "proc", "sys",
    ] {
        let _ =
            std::fs::set_permissions(rootfs.join(entry), std::fs::Permissions::from_mode(0o755));
    }
    for file in ["etc/passwd", "etc/group"] {
        let _ = std::fs::set_permissions(rootfs.join(file), std::fs::Permissions::from_mode(0o644));
    }
    let out = podsup()
        .args(["image", "import"])
        .arg(&rootfs)
        .arg(name)
        .args(extra)
        .arg("--root")
        .arg(&dirs.root)
        .output()
        .expect("run podsup image import");
    assert!(
        out.status.success(),
        "podsup image import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    name.to_string()
}

/// Removes a test's own cgroup parent `name` from every cgroup hierarchy it was made in
/// (only empty directories go: `rmdir` refuses a group that still has children or tasks, and
/// a leak check reports those). Returns the directories that could not be removed.
pub fn remove_cgroup_parent(name: &str) -> Vec<PathBuf> {
    assert!(
        name.starts_with("podsup-test-"),
        "only a test's own parent: {name}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut left = Vec::new();
    for l in mounts.lines().filter(|l| l.contains(" - cgroup")) {
        if let Some(mp) = l.split(' ').nth(4) {
            let dir = Path::new(mp).join(name);
            if dir.exists() && std::fs::remove_dir(&dir).is_err() {
                left.push(dir);
            }
        }
    }
    left
}

/// A cgroup parent name no other test uses.
pub fn unique_cgroup_parent() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("podsup-test-{}-{n}", std::process::id())
}

/// Every pid (but ours) whose command line or mount table mentions `needle`: a test's shim,
/// pause process and containers all do, since their paths are under the test's temp dir.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let mounts = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) || mounts.contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// The cgroup parent `name` in every hierarchy where it exists.
pub fn cgroup_parent_dirs(name: &str) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts
        .lines()
        .filter(|l| l.contains(" - cgroup"))
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| Path::new(mp).join(name))
        .filter(|d| d.is_dir())
        .collect()
}

/// What a `podsup run` test left: processes and mounts mentioning its temp dir, pod
/// directories, cgroups under its parent.
pub fn run_leaks(tmp: &Path, parent: &str) -> Vec<String> {
    let needle = tmp.display().to_string();
    let mut problems = Vec::new();
    for pid in processes_mentioning(&needle) {
        problems.push(format!("process left: {pid}"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains(&needle)) {
        problems.push(format!("mount left: {l}"));
    }
    for d in ["run/pods", "root/pods"] {
        for e in std::fs::read_dir(tmp.join(d))
            .into_iter()
            .flatten()
            .flatten()
        {
            problems.push(format!("pod directory left: {}", e.path().display()));
        }
    }
    for p in cgroup_parent_dirs(parent) {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                problems.push(format!("cgroup left: {}", e.path().display()));
            }
        }
    }
    problems
}

/// The end of a `podsup run` test (call it from `Drop`, also after a failed assertion): waits
/// up to `grace` for the leak check to pass, then removes whatever is left (processes of the
/// test's directory by pid, the groups under its own parent and the parent itself) and fails
/// the test if anything was left (or only says so when it is already failing).
pub fn finish_leak_check(tmp: &Path, parent: &str, grace: std::time::Duration) {
    let deadline = std::time::Instant::now() + grace;
    let mut problems = run_leaks(tmp, parent);
    while !problems.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        problems = run_leaks(tmp, parent);
    }
    kill_and_unmount(tmp);
    // Processes of our groups only (the parent is this test's own).
    for p in cgroup_parent_dirs(parent) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        rmdir_tree(&p);
    }
    if problems.is_empty() {
        return;
    }
    if !std::thread::panicking() {
        panic!("leak check failed:\n{}", problems.join("\n"));
    }
    eprintln!("leak check failed:\n{}", problems.join("\n"));
}

/// Removes `dir` and the groups below it, deepest first.
pub fn rmdir_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            rmdir_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// After a failed leak check: SIGKILLs the processes that mention `tmp` (by pid) and lazily
/// unmounts what is mounted under it, deepest first.
pub fn kill_and_unmount(tmp: &Path) {
    let needle = tmp.display().to_string();
    for pid in processes_mentioning(&needle) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines().rev() {
        if let Some(mp) = l.split(' ').nth(4).filter(|m| m.contains(&needle)) {
            let _ = Command::new("umount").args(["-l", mp]).status();
        }
    }
}
