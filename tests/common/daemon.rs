//! A real `podsup daemon` for one test: its own directories, busybox image and cgroup
//! parent, CLI helpers, and a guard that (even after a failed assertion) removes the
//! manifests, stops the daemon and every shim it started by PID, and fails the test if a
//! mount, process, pod directory or cgroup outlived it.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{TestDirs, podsup, require_root};

pub struct DaemonTest {
    pub dirs: TestDirs,
    pub image: String,
    pub daemon: Option<Child>,
    pub cgroup_parent: String,
    pub log_no: u32,
    /// More `podsup daemon` flags.
    pub extra: Vec<String>,
}

impl DaemonTest {
    pub fn new(test: &str) -> Option<DaemonTest> {
        DaemonTest::with_flags(test, &[])
    }

    /// A daemon started with `extra` flags as well.
    pub fn with_flags(test: &str, extra: &[&str]) -> Option<DaemonTest> {
        if !require_root(test) {
            return None;
        }
        let dirs = TestDirs::new();
        let image = super::busybox_image(&dirs, "busybox-test", &[]);
        let cgroup_parent = super::unique_cgroup_parent();
        let mut t = DaemonTest {
            dirs,
            image,
            daemon: None,
            cgroup_parent,
            log_no: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        t.start_daemon();
        Some(t)
    }

    pub fn tmp(&self) -> &Path {
        self.dirs.tmp.path()
    }

    pub fn flags(&self) -> Vec<String> {
        self.dirs.flags()
    }

    pub fn start_daemon(&mut self) {
        self.log_no += 1;
        let log = std::fs::File::create(self.tmp().join(format!("daemon{}.log", self.log_no)))
            .expect("daemon log");
        let child = podsup()
            .arg("daemon")
            .args(self.flags())
            .args(["--cgroup-parent", &self.cgroup_parent, "-v"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn podsup daemon");
        self.daemon = Some(child);
        // Ready once the socket answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not come up:\n{}", self.daemon_log());
    }

    pub fn kill_daemon(&mut self, signal: &str) {
        if let Some(mut c) = self.daemon.take() {
            let _ = std::process::Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub fn daemon_log(&self) -> String {
        let mut s = String::new();
        for i in 1..=self.log_no {
            s.push_str(
                &std::fs::read_to_string(self.tmp().join(format!("daemon{i}.log")))
                    .unwrap_or_default(),
            );
        }
        s
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        podsup()
            .args(args)
            .args(self.flags())
            .stdin(Stdio::null())
            .output()
            .expect("run podsup")
    }

    pub fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dirs.manifests.join(name);
        // Written elsewhere and renamed in: the test itself is not an editor mid-save.
        let tmp = self.tmp().join(format!(".{name}.new"));
        std::fs::write(&tmp, yaml.replace("IMAGE", &self.image)).expect("write manifest");
        std::fs::rename(&tmp, &path).expect("rename manifest");
        path
    }

    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "-A", "-o", "json"]);
        assert!(
            out.status.success(),
            "podsup status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// Polls `podsup status -o json` until `f` holds (at most 30 s).
    pub fn wait_until(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; status:\n{}\ndaemon log:\n{}",
                    serde_json::to_string_pretty(&s).unwrap(),
                    self.daemon_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_running(&self, pod: &str) -> Value {
        self.wait_until(&format!("{pod} running"), |s| {
            find(s, pod).is_some_and(|p| {
                let cs = p["status"]["containerStatuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                !cs.is_empty() && cs.iter().all(|c| c["state"]["running"].is_object())
            })
        })
    }

    pub fn shim_pid(&self, pod: &str) -> i32 {
        let s = self.status();
        let uid = find(&s, pod).expect("pod")["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::read_to_string(self.dirs.run.join("pods").join(uid).join("shim.pid"))
            .expect("shim.pid")
            .trim()
            .parse()
            .unwrap()
    }

    /// The pid of the container whose command line holds `mark`, among the shim's children.
    pub fn container_pid(&self, pod: &str, mark: &str) -> Option<i32> {
        let shim = self.shim_pid(pod);
        let children = std::fs::read_to_string(format!("/proc/{shim}/task/{shim}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&c).contains(mark)
            })
    }
}

pub fn find<'a>(s: &'a Value, pod: &str) -> Option<&'a Value> {
    s["items"]
        .as_array()?
        .iter()
        .find(|i| i["metadata"]["name"] == pod)
}

pub fn restarts(s: &Value, pod: &str, container: &str) -> i64 {
    find(s, pod).expect("pod")["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == container)
        .expect("container")["restartCount"]
        .as_i64()
        .unwrap()
}

pub fn leaks(tmp: &Path, cgroup_parent: &str) -> Vec<String> {
    let needle = tmp.display().to_string();
    let mut problems = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains(&needle)) {
        problems.push(format!("mount left: {l}"));
    }
    for pid in super::processes_mentioning(&needle) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        problems.push(format!("process left: {pid} {}", comm.trim()));
    }
    for d in ["run/pods", "root/pods", "logs"] {
        if let Ok(entries) = std::fs::read_dir(tmp.join(d)) {
            for e in entries.flatten() {
                problems.push(format!("pod directory left: {}", e.path().display()));
            }
        }
    }
    for l in mounts.lines() {
        if let Some(mp) = l.split(' ').nth(4)
            && l.contains(" - cgroup")
            && Path::new(mp).join(cgroup_parent).exists()
        {
            let pods: Vec<_> = std::fs::read_dir(Path::new(mp).join(cgroup_parent))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pod"))
                .collect();
            if !pods.is_empty() {
                problems.push(format!("cgroup left under {mp}/{cgroup_parent}"));
            }
        }
    }
    problems
}

impl Drop for DaemonTest {
    fn drop(&mut self) {
        // Let a live daemon stop its pods: remove every manifest.
        if let Ok(entries) = std::fs::read_dir(&self.dirs.manifests) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if self.daemon.is_some() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                let out = self.cli(&["status", "-A", "-o", "json"]);
                let empty = serde_json::from_slice::<Value>(&out.stdout)
                    .ok()
                    .is_some_and(|s| s["items"].as_array().is_some_and(|a| a.is_empty()));
                if empty || !out.status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.kill_daemon("-TERM");
        // Shims the daemon left (it was killed, or a stop hung): ours, by their pid files.
        if let Ok(entries) = std::fs::read_dir(self.dirs.run.join("pods")) {
            for e in entries.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path().join("shim.pid")) {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", pid.trim()])
                        .status();
                }
                let _ = std::fs::remove_dir_all(e.path());
                let _ = std::fs::remove_dir_all(self.dirs.root.join("pods").join(e.file_name()));
            }
        }
        let tmp = self.tmp().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut problems = leaks(&tmp, &self.cgroup_parent);
        while !problems.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            problems = leaks(&tmp, &self.cgroup_parent);
        }
        if problems.is_empty() {
            // The test's own cgroup parent goes too; what cannot be removed is a leak.
            let left = super::remove_cgroup_parent(&self.cgroup_parent);
            if left.is_empty() || std::thread::panicking() {
                return;
            }
            panic!("leak check failed: cgroup parent left: {left:?}");
        }
        super::kill_and_unmount(&tmp);
        let msg = format!(
            "leak check failed:\n{}\ndaemon log:\n{}",
            problems.join("\n"),
            self.daemon_log()
        );
        if !std::thread::panicking() {
            panic!("{msg}");
        }
        eprintln!("{msg}");
    }
}
