//! The supervisor against the real kernel, as root, through `podsup run`: restart policies
//! and back-off, init and sidecar order, cgroups (OOM, cpu, pids), graceful stop, logs and
//! the published status. Each test has its own directories, pod name and cgroup parent
//! (`podsup-test-<random>`), and a leak check on drop (also after a failed assertion): no
//! process or mount mentioning the test's directory, no pod directory, no cgroup under the
//! test's parent (the parent itself is removed then).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{TestDirs, require_root};

struct Lc {
    dirs: TestDirs,
    image: String,
    parent: String,
}

impl Lc {
    fn new(test: &str) -> Option<Lc> {
        if !require_root(test) {
            return None;
        }
        let dirs = TestDirs::new();
        let image = common::busybox_image(&dirs, "busybox-lc", &[]);
        let rnd = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
        let parent = format!("podsup-test-{}", &rnd.trim()[..8]);
        Some(Lc {
            dirs,
            image,
            parent,
        })
    }

    /// Starts `podsup run` on `yaml` (IMAGE replaced) with `flags`; stdout and stderr piped.
    fn spawn(&self, yaml: &str, flags: &[&str], stdout: Stdio) -> Child {
        let path = self.dirs.manifests.join("pod.yaml");
        std::fs::write(&path, yaml.replace("IMAGE", &self.image)).unwrap();
        self.dirs
            .podsup_run(&path, &self.parent)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn podsup run")
    }

    /// The pod's run directory, once the shim has written its status.
    fn pod_dir(&self) -> Option<PathBuf> {
        self.dirs.pod_dir()
    }

    fn status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.pod_dir()?.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Polls status.json until `pred` holds (at most `limit`); returns it.
    fn wait_status(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status()
                && pred(&s)
            {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "status never matched; last: {:#?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The container's cgroup directory for `controller`.
    fn cgroup_dir(&self, controller: &str, container: &str) -> PathBuf {
        let uid = self
            .pod_dir()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.parent)
            .join(format!("pod{uid}"))
            .join(container)
    }
}

/// Ends `podsup run` with SIGTERM (the Ctrl-C path) and collects its output.
fn stop(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    finish(&mut child, limit)
}

fn finish(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("podsup run did not end in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let read = |r: Option<&mut dyn std::io::Read>| {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    };
    let out = read(child.stdout.as_mut().map(|r| r as &mut dyn std::io::Read));
    let err = read(child.stderr.as_mut().map(|r| r as &mut dyn std::io::Read));
    (status, out, err)
}

impl Drop for Lc {
    fn drop(&mut self) {
        common::finish_leak_check(self.dirs.tmp.path(), &self.parent, Duration::from_secs(3));
    }
}

fn pod(name: &str, policy: &str, extra_spec: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 3\n{extra_spec}  containers:\n{containers}"
    )
}

fn ctr(name: &str, script: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: IMAGE\n    command: [\"sh\", \"-c\", {script:?}]\n{extra}"
    )
}

/// Seconds of the day of a CRI log line's timestamp.
fn cri_time(line: &str) -> f64 {
    let ts = line.split(' ').next().unwrap();
    let t = ts.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut it = t.split(':');
    let h: f64 = it.next().unwrap().parse().unwrap();
    let m: f64 = it.next().unwrap().parse().unwrap();
    let s: f64 = it.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

fn ctr_status<'a>(s: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    s["status"][list]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn restarts_follow_the_backoff_curve() {
    let Some(lc) = Lc::new("restarts_follow_the_backoff_curve") else {
        return;
    };
    let yaml = pod(
        "lc-curve",
        "Always",
        "",
        &ctr("main", "echo start; exit 3", ""),
    );
    let child = lc.spawn(
        &yaml,
        &["--backoff-initial", "100ms", "--backoff-max", "400ms"],
        Stdio::null(),
    );
    // Only the current and the previous instance's logs are kept: read each as it comes.
    let mut starts = [None::<f64>; 6];
    let begin = Instant::now();
    while starts.iter().any(|s| s.is_none()) {
        assert!(begin.elapsed() < Duration::from_secs(20), "{starts:?}");
        if let Some(Ok(pod_dir)) = std::fs::read_dir(&lc.dirs.log_dir)
            .ok()
            .and_then(|mut d| d.next())
        {
            for (n, slot) in starts.iter_mut().enumerate() {
                if slot.is_none()
                    && let Ok(text) = std::fs::read_to_string(
                        pod_dir.path().join("main").join(format!("{n}.log")),
                    )
                    && let Some(line) = text.lines().next()
                {
                    *slot = Some(cri_time(line));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = lc.status().unwrap();
    let (_, _, err) = stop(child, Duration::from_secs(10));
    assert!(err.contains("restarts in 400ms"), "{err}");
    let main = ctr_status(&s, "containerStatuses", "main");
    assert_eq!(main["lastState"]["terminated"]["exitCode"], 3, "{s:#}");
    assert_eq!(main["lastState"]["terminated"]["reason"], "Error");
    let starts: Vec<f64> = starts.iter().map(|s| s.unwrap()).collect();
    // Delay before restart k: 0, 100, 200, 400, 400 ms, plus the container's own start.
    let curve = [0.0, 0.1, 0.2, 0.4, 0.4];
    for (k, want) in curve.iter().enumerate() {
        let gap = starts[k + 1] - starts[k];
        assert!(
            gap >= *want && gap < want + 0.3,
            "restart {k}: {gap:.3}s apart, curve says {want}s; starts {starts:?}"
        );
    }
}

#[test]
fn crash_loop_back_off_is_in_the_status() {
    let Some(lc) = Lc::new("crash_loop_back_off_is_in_the_status") else {
        return;
    };
    let yaml = pod("lc-clbo", "OnFailure", "", &ctr("main", "exit 1", ""));
    let child = lc.spawn(&yaml, &["--backoff-initial", "5s"], Stdio::null());
    let s = lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "containerStatuses", "main")["state"]["waiting"]["reason"]
            == "CrashLoopBackOff"
    });
    let main = ctr_status(&s, "containerStatuses", "main");
    let msg = main["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("back-off 5s restarting failed container=main pod=lc-clbo_default("),
        "{msg}"
    );
    assert!(s["restartHistory"][0]["nextRestartAt"].is_string(), "{s:#}");
    assert_eq!(s["status"]["phase"], "Running");
    stop(child, Duration::from_secs(10));
}

#[test]
fn never_on_failure_always() {
    let Some(lc) = Lc::new("never_on_failure_always") else {
        return;
    };
    let fast = ["--backoff-initial", "0"];
    // Never: one run, the pod fails.
    let mut c = lc.spawn(
        &pod("lc-never", "Never", "", &ctr("main", "exit 3", "")),
        &fast,
        Stdio::piped(),
    );
    let (st, _, err) = finish(&mut c, Duration::from_secs(20));
    assert!(!st.success());
    assert!(!err.contains("restarts in"), "{err}");
    // OnFailure: restarts until it succeeds.
    let script =
        "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; [ $n -ge 3 ]";
    let vol = "  volumes:\n  - name: data\n    emptyDir: {}\n";
    let mount = "    volumeMounts:\n    - name: data\n      mountPath: /data\n";
    let mut c = lc.spawn(
        &(pod("lc-onfail", "OnFailure", "", &ctr("main", script, mount)) + vol),
        &fast,
        Stdio::piped(),
    );
    let (st, _, err) = finish(&mut c, Duration::from_secs(20));
    assert!(st.success(), "{err}");
    assert_eq!(err.matches("restarts in").count(), 2, "{err}");
    // Always: a container that exits 0 restarts too.
    let script = "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo run $n; [ $n -ge 3 ] && exec sleep 1000; exit 0";
    let mut c = lc.spawn(
        &(pod("lc-always", "Always", "", &ctr("main", script, mount)) + vol),
        &fast,
        Stdio::null(),
    );
    lc.wait_status(Duration::from_secs(20), |s| {
        let m = ctr_status(s, "containerStatuses", "main");
        m["restartCount"] == 2 && m["state"]["running"].is_object()
    });
    let _ = &mut c;
    stop(c, Duration::from_secs(10));
}

#[test]
fn init_order_and_init_failure() {
    let Some(lc) = Lc::new("init_order_and_init_failure") else {
        return;
    };
    let inits = format!(
        "  initContainers:\n{}{}",
        ctr("one", "echo one", ""),
        ctr("two", "echo two; exit 2", "")
    );
    let mut c = lc.spawn(
        &pod("lc-init", "Never", &inits, &ctr("main", "echo main", "")),
        &[],
        Stdio::piped(),
    );
    let (st, out, err) = finish(&mut c, Duration::from_secs(20));
    assert!(!st.success());
    let one = out.find("| one").expect(&out);
    let two = out.find("| two").expect(&out);
    assert!(one < two, "{out}");
    assert!(!out.contains("| main"), "{out}\n{err}");
}

#[test]
fn sidecars_start_in_order_and_stop_in_reverse() {
    let Some(lc) = Lc::new("sidecars_start_in_order_and_stop_in_reverse") else {
        return;
    };
    let side = |n: &str| {
        ctr(
            n,
            &format!(
                "trap 'echo {n} stopping; sleep 0.3; exit 0' TERM; echo {n} started; while :; do sleep 0.1; done"
            ),
            "    restartPolicy: Always\n",
        )
    };
    let inits = format!("  initContainers:\n{}{}", side("s1"), side("s2"));
    let mut c = lc.spawn(
        &pod(
            "lc-side",
            "Never",
            &inits,
            &ctr("main", "sleep 0.5; echo main done", ""),
        ),
        &[],
        Stdio::piped(),
    );
    let (st, out, err) = finish(&mut c, Duration::from_secs(20));
    assert!(st.success(), "{out}{err}");
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in {out}"));
    // (Start order: s2 starts once s1 runs, which says nothing about when each prints;
    // compute_plan's table tests cover it.)
    at("s1 started");
    at("s2 started");
    assert!(at("main done") < at("s2 stopping"));
    assert!(at("s2 stopping") < at("s1 stopping"), "{out}");
    // A sidecar stopped after the apps is not restarted.
    assert!(!err.contains("restarts in"), "{err}");
}

#[test]
fn memory_hog_is_oom_killed() {
    let Some(lc) = Lc::new("memory_hog_is_oom_killed") else {
        return;
    };
    let limit = "    resources:\n      limits:\n        memory: 32Mi\n";
    let yaml = pod(
        "lc-oom",
        "Never",
        "",
        &(ctr("hog", "dd if=/dev/zero of=/dev/null bs=100M count=1", limit)
            + &ctr("keep", "sleep 1000", "")),
    );
    let child = lc.spawn(&yaml, &[], Stdio::null());
    let s = lc.wait_status(Duration::from_secs(20), |s| {
        ctr_status(s, "containerStatuses", "hog")["state"]["terminated"].is_object()
    });
    let t = &ctr_status(&s, "containerStatuses", "hog")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{s:#}");
    assert_eq!(t["exitCode"], 137);
    stop(child, Duration::from_secs(10));
}

#[test]
fn cpu_limit_throttles() {
    let Some(lc) = Lc::new("cpu_limit_throttles") else {
        return;
    };
    let limit = "    resources:\n      limits:\n        cpu: 100m\n";
    let yaml = pod(
        "lc-cpu",
        "Never",
        "",
        &ctr("spin", "while :; do :; done", limit),
    );
    let child = lc.spawn(&yaml, &[], Stdio::null());
    lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "containerStatuses", "spin")["state"]["running"].is_object()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let dir = lc.cgroup_dir("cpu", "spin");
    let stat = std::fs::read_to_string(dir.join("cpu.stat"))
        .or_else(|_| std::fs::read_to_string(lc.cgroup_dir("unified", "spin").join("cpu.stat")))
        .unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(throttled >= 5, "{stat}");
    stop(child, Duration::from_secs(10));
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let Some(lc) = Lc::new("fork_bomb_stops_at_the_pids_limit") else {
        return;
    };
    let bomb = "i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; echo bombed; wait";
    let yaml = pod(
        "lc-bomb",
        "Never",
        "",
        &(ctr("bomb", bomb, "") + &ctr("keep", "sleep 1000", "")),
    );
    let child = lc.spawn(&yaml, &["--pids-limit", "30"], Stdio::piped());
    std::thread::sleep(Duration::from_millis(300));
    let s = lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "containerStatuses", "keep")["state"]["running"].is_object()
    });
    assert_eq!(s["status"]["phase"], "Running");
    let uid = lc.pod_dir().unwrap();
    let uid = uid.file_name().unwrap().to_string_lossy();
    let pod_pids = Path::new("/sys/fs/cgroup/pids")
        .join(&lc.parent)
        .join(format!("pod{uid}"));
    let start = Instant::now();
    loop {
        // Older kernels count the event in the forking task's group, newer ones (also) in
        // the group whose limit was hit.
        let ev = std::fs::read_to_string(pod_pids.join("pids.events")).unwrap()
            + &std::fs::read_to_string(pod_pids.join("bomb").join("pids.events"))
                .unwrap_or_default();
        if ev.lines().any(|l| l.starts_with("max ") && l != "max 0") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{ev}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let current: u64 = std::fs::read_to_string(pod_pids.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 30);
    // The pod lives on.
    let s = lc.status().unwrap();
    assert!(ctr_status(&s, "containerStatuses", "keep")["state"]["running"].is_object());
    stop(child, Duration::from_secs(10));
}

#[test]
fn grace_period_then_sigkill() {
    let Some(lc) = Lc::new("grace_period_then_sigkill") else {
        return;
    };
    let yaml = pod(
        "lc-grace",
        "Never",
        "",
        &ctr("stubborn", "trap '' TERM; while :; do sleep 0.1; done", ""),
    );
    let child = lc.spawn(&yaml, &[], Stdio::null());
    lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "containerStatuses", "stubborn")["state"]["running"].is_object()
    });
    let t = Instant::now();
    let (_, _, err) = stop(child, Duration::from_secs(15));
    let took = t.elapsed();
    // terminationGracePeriodSeconds: 3
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "{took:?} {err}"
    );
    assert!(err.contains("terminated by signal 9"), "{err}");
}

#[test]
fn admission_refuses_a_pod_larger_than_the_machine() {
    let Some(lc) = Lc::new("admission_refuses_a_pod_larger_than_the_machine") else {
        return;
    };
    let big = "    resources:\n      requests:\n        cpu: \"4096\"\n";
    let mut c = lc.spawn(
        &pod("lc-admit", "Never", "", &ctr("main", "echo hi", big)),
        &[],
        Stdio::piped(),
    );
    let (st, out, err) = finish(&mut c, Duration::from_secs(10));
    assert!(!st.success());
    assert!(err.contains("OutOfcpu"), "{err}");
    assert!(!out.contains("hi"));
}

#[test]
fn active_deadline_ends_the_pod() {
    let Some(lc) = Lc::new("active_deadline_ends_the_pod") else {
        return;
    };
    let yaml = pod(
        "lc-deadline",
        "Always",
        "  activeDeadlineSeconds: 1\n",
        &ctr("main", "sleep 1000", ""),
    );
    let child = lc.spawn(&yaml, &[], Stdio::piped());
    let s = lc.wait_status(Duration::from_secs(10), |s| {
        s["status"]["reason"] == "DeadlineExceeded"
    });
    assert_eq!(s["status"]["phase"], "Failed");
    let mut child = child;
    let (st, _, err) = finish(&mut child, Duration::from_secs(10));
    assert!(!st.success());
    assert!(err.contains("activeDeadlineSeconds"), "{err}");
}

#[test]
fn a_gib_of_output_leaves_the_shim_flat() {
    let Some(lc) = Lc::new("a_gib_of_output_leaves_the_shim_flat") else {
        return;
    };
    let yaml = pod(
        "lc-flood",
        "Never",
        "",
        &ctr(
            "flood",
            "sleep 0.5; yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 1073741824",
            "",
        ),
    );
    let mut child = lc.spawn(&yaml, &[], Stdio::null());
    lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "containerStatuses", "flood")["state"]["running"].is_object()
    });
    let pid = std::fs::read_to_string(lc.pod_dir().unwrap().join("shim.pid")).unwrap();
    let rss = || -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    let before = rss().unwrap();
    let mut peak = before;
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if let Some(r) = rss() {
            peak = peak.max(r);
        }
        assert!(start.elapsed() < Duration::from_secs(120), "flood too slow");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, _, err) = finish(&mut child, Duration::from_secs(5));
    assert!(st.success(), "{err}");
    assert!(
        peak < before + 4096,
        "shim RSS grew from {before} kB to {peak} kB"
    );
    // Rotated CRI logs: at most 5 files of about 10 MiB.
    let dir = std::fs::read_dir(&lc.dirs.log_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("flood");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(files.len() <= 6, "{files:?}");
    let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(total < 70 << 20, "{total}");
    let text = std::fs::read_to_string(dir.join("0.log")).unwrap();
    let line = text.lines().next().unwrap();
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(parts[1], "stdout");
    assert_eq!(parts[2], "F");
    assert!(parts[0].ends_with('Z') && parts[0].len() == 30, "{line}");
}

#[test]
fn status_json_follows_the_pod() {
    let Some(lc) = Lc::new("status_json_follows_the_pod") else {
        return;
    };
    let inits = format!("  initContainers:\n{}", ctr("setup", "sleep 1", ""));
    let yaml = pod(
        "lc-status",
        "Never",
        &inits,
        &ctr(
            "main",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
            "",
        ),
    );
    let child = lc.spawn(&yaml, &[], Stdio::null());
    let s = lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "initContainerStatuses", "setup")["state"]["running"].is_object()
    });
    assert_eq!(s["status"]["phase"], "Pending", "{s:#}");
    let main = ctr_status(&s, "containerStatuses", "main");
    assert_eq!(main["state"]["waiting"]["reason"], "PodInitializing");
    let cond = |s: &serde_json::Value, t: &str| {
        s["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == t).cloned())
            .map(|c| c["status"].clone())
    };
    assert_eq!(cond(&s, "Initialized"), Some("False".into()), "{s:#}");
    let s = lc.wait_status(Duration::from_secs(10), |s| {
        ctr_status(s, "containerStatuses", "main")["state"]["running"].is_object()
    });
    assert_eq!(s["status"]["phase"], "Running", "{s:#}");
    assert_eq!(cond(&s, "Ready"), Some("True".into()), "{s:#}");
    let setup = ctr_status(&s, "initContainerStatuses", "setup");
    assert_eq!(setup["state"]["terminated"]["reason"], "Completed");
    assert_eq!(ctr_status(&s, "containerStatuses", "main")["started"], true);
    // It exits 0 on SIGTERM: the pod (restartPolicy Never) succeeded.
    let (st, _, err) = stop(child, Duration::from_secs(10));
    assert!(st.success(), "{err}");
}

/// The children of `pid` (its own threads' `children` files).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn parent_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A restartable container's next process waits, forked ahead, in the container's cgroup
/// with nothing but its stdio and its two sync pipes open; a kill -9 restarts the container
/// from it; a pod with `restartPolicy: Never` or `--no-prefork` has none; stopping leaves
/// nothing (the leak check).
#[test]
fn a_parked_process_takes_the_next_start() {
    let Some(lc) = Lc::new("a_parked_process_takes_the_next_start") else {
        return;
    };
    let yaml = pod(
        "parked",
        "Always",
        "",
        &ctr("main", "trap 'exit 0' TERM; sleep 3700 & wait", ""),
    );
    let child = lc.spawn(&yaml, &["--backoff-initial", "0"], Stdio::null());
    let s = lc.wait_status(Duration::from_secs(20), |s| {
        ctr_status(s, "containerStatuses", "main")["state"]["running"].is_object()
    });
    assert_eq!(s["status"]["phase"], "Running");
    let cmd = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let sleeper = || {
        common::processes_mentioning("3700")
            .into_iter()
            .find(|p| cmd(*p as u32).starts_with(b"sh\0"))
    };
    let start = Instant::now();
    let (sh, parked) = loop {
        // The shim is the parent of the container's sh; the parked process is its other
        // child that has not exec'd (it still has the shim's name).
        if let Some(sh) = sleeper() {
            let shim = parent_of(sh as u32);
            if let Some(p) = children_of(shim)
                .into_iter()
                .find(|&c| c != sh as u32 && comm(c) == comm(shim))
            {
                break (sh as u32, p);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no parked process"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // In the container's cgroup (every hierarchy), once the move is done.
    let want = lc.cgroup_dir("memory", "main");
    let procs = want.join("cgroup.procs");
    let start = Instant::now();
    while !std::fs::read_to_string(&procs)
        .unwrap()
        .lines()
        .any(|l| l == parked.to_string())
    {
        assert!(start.elapsed() < Duration::from_secs(5), "not in {procs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its stdio, its two pipes to the shim and its bind sources (O_PATH files): no other
    // pipe's EOF depends on it, no signalfd or socket of the shim's.
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{parked}/fd"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()).unwrap().display().to_string())
        .collect();
    let pipes = fds.iter().filter(|f| f.starts_with("pipe:")).count();
    assert_eq!(pipes, 4, "fds of the parked process: {fds:?}");
    assert!(
        !fds.iter()
            .any(|f| f.starts_with("anon_inode") || f.starts_with("socket")),
        "fds of the parked process: {fds:?}"
    );
    // Its own PID namespace: invisible to the running container.
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(ns(parked), ns(sh));

    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(sh.to_string())
        .status();
    let s = lc.wait_status(Duration::from_secs(20), |s| {
        let c = ctr_status(s, "containerStatuses", "main");
        c["restartCount"] == 1 && c["state"]["running"].is_object()
    });
    assert_eq!(
        ctr_status(&s, "containerStatuses", "main")["lastState"]["terminated"]["signal"],
        9
    );
    let start = Instant::now();
    let new_sh = loop {
        if let Some(p) = sleeper()
            && p as u32 != sh
        {
            break p as u32;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no new container process"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(new_sh, parked, "the restart did not use the parked process");
    let (status, _, err) = stop(child, Duration::from_secs(20));
    assert!(status.success(), "{err}");

    // restartPolicy Never: nothing to park. --no-prefork: nothing parked.
    for (policy, flags) in [("Never", &[][..]), ("Always", &["--no-prefork"][..])] {
        let yaml = pod(
            "unparked",
            policy,
            "",
            &ctr("main", "trap 'exit 0' TERM; sleep 3701 & wait", ""),
        );
        let child = lc.spawn(&yaml, flags, Stdio::null());
        lc.wait_status(Duration::from_secs(20), |s| {
            ctr_status(s, "containerStatuses", "main")["state"]["running"].is_object()
        });
        let sh = loop {
            if let Some(p) = common::processes_mentioning("3701")
                .into_iter()
                .find(|p| cmd(*p as u32).starts_with(b"sh\0"))
            {
                break p as u32;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(200));
        let shim = parent_of(sh);
        assert_eq!(children_of(shim), vec![sh], "{policy} {flags:?}");
        let (status, _, err) = stop(child, Duration::from_secs(20));
        assert!(status.success(), "{err}");
    }
}
