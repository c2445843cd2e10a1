//! Probes and lifecycle hooks against the real kernel, as root, through `podsup run` (and
//! one daemon for `podsup events` and the READY column): liveness kills and restarts,
//! readiness toggles, startup gating, postStart/preStop hooks, timeouts, and the shim's
//! wake-ups. Servers in the pods are busybox's httpd/nc; the test steers them through a
//! hostPath directory it owns. Each test has its own directories, pod name and cgroup
//! parent, and a leak check on drop.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{TestDirs, require_root};
use serde_json::Value;

struct P {
    dirs: TestDirs,
    image: String,
    parent: String,
    /// A directory the test controls, mounted into pods as a hostPath volume.
    www: PathBuf,
}

impl P {
    fn new(test: &str) -> Option<P> {
        if !require_root(test) {
            return None;
        }
        let dirs = TestDirs::new();
        let image = common::busybox_image(&dirs, "busybox-probes", &[]);
        let parent = common::unique_cgroup_parent();
        let www = dirs.tmp.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        Some(P {
            dirs,
            image,
            parent,
            www,
        })
    }

    /// Starts `podsup run` on `yaml` (IMAGE and WWW replaced); stdout and stderr piped.
    fn spawn(&self, yaml: &str) -> Child {
        let path = self.dirs.manifests.join("pod.yaml");
        std::fs::write(&path, self.fill(yaml)).unwrap();
        self.dirs
            .podsup_run(&path, &self.parent)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn podsup run")
    }

    fn fill(&self, yaml: &str) -> String {
        yaml.replace("IMAGE", &self.image)
            .replace("WWW", &self.www.display().to_string())
    }

    fn pod_dir(&self) -> Option<PathBuf> {
        self.dirs.pod_dir()
    }

    fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.pod_dir()?.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Polls status.json until `pred` holds (at most `limit`).
    fn wait(&self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status()
                && pred(&s)
            {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; last status: {:#}",
                self.status().unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn shim_pid(&self) -> i32 {
        std::fs::read_to_string(self.pod_dir().unwrap().join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The container's CRI log (restart `n`).
    fn log(&self, container: &str, n: u32) -> String {
        let mut out = String::new();
        for pod in std::fs::read_dir(&self.dirs.log_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let f = pod.path().join(container).join(format!("{n}.log"));
            out.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        }
        out
    }
}

fn ctr<'a>(s: &'a Value, name: &str) -> &'a Value {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|l| s["status"][l].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or(&Value::Null)
}

fn events<'a>(s: &'a Value, reason: &str) -> Vec<&'a Value> {
    s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason)
        .collect()
}

fn condition(s: &Value, t: &str) -> Value {
    s["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == t).cloned())
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

/// Ends `podsup run` with SIGTERM (unless it ended on its own) and collects its output.
fn stop(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String, String) {
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill_with_term();
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("podsup run did not end in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(o) = child.stdout.as_mut() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(e) = child.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    (status, out, err)
}

trait Term {
    fn kill_with_term(&mut self) -> std::io::Result<()>;
}

impl Term for Child {
    /// SIGTERM, by pid (the Ctrl-C path of `podsup run`).
    fn kill_with_term(&mut self) -> std::io::Result<()> {
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.id().to_string())
            .status()
            .map(|_| ())
    }
}

impl Drop for P {
    fn drop(&mut self) {
        common::finish_leak_check(self.dirs.tmp.path(), &self.parent, Duration::from_secs(5));
    }
}

/// A pod named `name` with `containers` (YAML list items), the test's www directory as
/// volume `www`, grace period 3 s.
fn pod(name: &str, policy: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 3\n  volumes:\n  - name: www\n    hostPath: {{path: WWW, type: Directory}}\n  containers:\n{containers}"
    )
}

/// busybox httpd serving /www (the test's directory) on `port`, verbose (requests logged
/// on stderr); it stops on SIGTERM.
fn httpd(name: &str, port: u16, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: IMAGE\n    command: [\"httpd\", \"-f\", \"-v\", \"-p\", \"{port}\", \"-h\", \"/www\"]\n    volumeMounts: [{{name: www, mountPath: /www}}]\n{extra}"
    )
}

#[test]
fn liveness_failure_restarts_with_unhealthy() {
    let Some(p) = P::new("liveness_failure_restarts_with_unhealthy") else {
        return;
    };
    // Healthy while /www/healthz exists.
    std::fs::write(p.www.join("healthz"), "ok\n").unwrap();
    let yaml = pod(
        "pr-live",
        "Always",
        &httpd(
            "web",
            8080,
            "    livenessProbe:\n      httpGet: {path: /healthz, port: 8080}\n      periodSeconds: 1\n      failureThreshold: 2\n      terminationGracePeriodSeconds: 1\n",
        ),
    );
    let child = p.spawn(&yaml);
    p.wait(Duration::from_secs(10), "web running", |s| {
        ctr(s, "web")["state"]["running"].is_object()
    });
    // Probes pass for a while: no restart. (A first probe that came before httpd listened
    // may have failed once.)
    std::thread::sleep(Duration::from_millis(2500));
    let s = p.status().unwrap();
    assert_eq!(ctr(&s, "web")["restartCount"], 0, "{s:#}");
    assert!(events(&s, "Killing").is_empty(), "{s:#}");
    std::fs::remove_file(p.www.join("healthz")).unwrap();
    let s = p.wait(Duration::from_secs(15), "a restart", |s| {
        ctr(s, "web")["restartCount"] == 1
    });
    let unhealthy: Vec<&Value> = events(&s, "Unhealthy")
        .into_iter()
        .filter(|e| e["message"].as_str().unwrap().contains("statuscode"))
        .collect();
    assert!(unhealthy.len() >= 2, "{s:#}");
    assert_eq!(
        unhealthy[0]["message"],
        "Liveness probe failed: HTTP probe failed with statuscode: 404"
    );
    assert_eq!(unhealthy[0]["warning"], true);
    let killing = events(&s, "Killing");
    assert_eq!(
        killing[0]["message"],
        "Container web failed liveness probe, will be restarted"
    );
    // httpd ends on SIGTERM: exit code of a signal (143) or 0; either way a restart.
    assert!(
        ctr(&s, "web")["lastState"]["terminated"].is_object(),
        "{s:#}"
    );
    // Healed: with the file back, it stays up.
    std::fs::write(p.www.join("healthz"), "ok\n").unwrap();
    p.wait(Duration::from_secs(20), "web running again", |s| {
        ctr(s, "web")["state"]["running"].is_object()
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ctr(&p.status().unwrap(), "web")["restartCount"], 1);
    let (_, _, err) = stop(child, Duration::from_secs(10));
    assert!(
        err.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{err}"
    );
}

#[test]
fn readiness_toggles_ready_both_ways() {
    let Some(p) = P::new("readiness_toggles_ready_both_ways") else {
        return;
    };
    let yaml = pod(
        "pr-ready",
        "Always",
        &format!(
            "{}{}",
            httpd(
                "web",
                8081,
                "    readinessProbe:\n      httpGet: {path: /ready, port: http}\n      periodSeconds: 1\n    ports: [{name: http, containerPort: 8081}]\n",
            ),
            // A second container without probes: ready when running.
            "  - name: plain\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n",
        ),
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "both running", |s| {
        ctr(s, "web")["state"]["running"].is_object()
            && ctr(s, "plain")["state"]["running"].is_object()
    });
    assert_eq!(ctr(&s, "web")["ready"], false, "{s:#}");
    assert_eq!(ctr(&s, "web")["started"], true, "{s:#}");
    assert_eq!(ctr(&s, "plain")["ready"], true, "{s:#}");
    assert_eq!(condition(&s, "Ready"), "False");
    std::fs::write(p.www.join("ready"), "yes\n").unwrap();
    let s = p.wait(Duration::from_secs(5), "web ready", |s| {
        ctr(s, "web")["ready"] == true
    });
    assert_eq!(condition(&s, "Ready"), "True", "{s:#}");
    assert_eq!(condition(&s, "ContainersReady"), "True", "{s:#}");
    std::fs::remove_file(p.www.join("ready")).unwrap();
    // failureThreshold 3 × periodSeconds 1.
    let s = p.wait(Duration::from_secs(8), "web unready", |s| {
        ctr(s, "web")["ready"] == false
    });
    assert_eq!(condition(&s, "Ready"), "False", "{s:#}");
    assert_eq!(ctr(&s, "web")["restartCount"], 0, "readiness never kills");
    assert!(
        events(&s, "Unhealthy")
            .iter()
            .any(|e| e["message"]
                == "Readiness probe failed: HTTP probe failed with statuscode: 404"),
        "{s:#}"
    );
    stop(child, Duration::from_secs(10));
}

#[test]
fn tcp_socket_probe_follows_the_listener() {
    let Some(p) = P::new("tcp_socket_probe_follows_the_listener") else {
        return;
    };
    // Listens on 8082 only once the test creates /www/go.
    let yaml = pod(
        "pr-tcp",
        "Always",
        "  - name: late\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"while [ ! -e /www/go ]; do sleep 0.1; done; exec httpd -f -p 8082 -h /www\"]\n    volumeMounts: [{name: www, mountPath: /www}]\n    readinessProbe:\n      tcpSocket: {port: 8082}\n      periodSeconds: 1\n",
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "a failed tcp probe", |s| {
        !events(s, "Unhealthy").is_empty()
    });
    assert_eq!(
        events(&s, "Unhealthy")[0]["message"],
        "Readiness probe failed: dial tcp 127.0.0.1:8082: connect: connection refused"
    );
    assert_eq!(ctr(&s, "late")["ready"], false);
    std::fs::write(p.www.join("go"), "").unwrap();
    p.wait(Duration::from_secs(5), "late ready", |s| {
        ctr(s, "late")["ready"] == true
    });
    stop(child, Duration::from_secs(10));
}

#[test]
fn startup_probe_holds_off_liveness() {
    let Some(p) = P::new("startup_probe_holds_off_liveness") else {
        return;
    };
    // The liveness probe would kill at its first failure; the startup probe takes ~2 s to
    // pass. If liveness ran before startup succeeded, the container would restart.
    let yaml = pod(
        "pr-startup",
        "Always",
        &httpd(
            "slow",
            8083,
            concat!(
                "    startupProbe:\n      httpGet: {path: /started, port: 8083}\n      periodSeconds: 1\n      failureThreshold: 30\n",
                "    livenessProbe:\n      httpGet: {path: /started, port: 8083}\n      periodSeconds: 1\n      failureThreshold: 1\n",
            ),
        ),
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "slow running", |s| {
        ctr(s, "slow")["state"]["running"].is_object()
    });
    assert_eq!(ctr(&s, "slow")["started"], false);
    assert_eq!(ctr(&s, "slow")["ready"], false);
    p.wait(Duration::from_secs(10), "startup failures", |s| {
        events(s, "Unhealthy").len() >= 2
    });
    std::fs::write(p.www.join("started"), "").unwrap();
    let s = p.wait(Duration::from_secs(5), "slow started", |s| {
        ctr(s, "slow")["started"] == true
    });
    assert_eq!(ctr(&s, "slow")["ready"], true, "{s:#}");
    std::thread::sleep(Duration::from_millis(1500));
    let s = p.status().unwrap();
    assert_eq!(ctr(&s, "slow")["restartCount"], 0, "{s:#}");
    for e in events(&s, "Unhealthy") {
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("Startup probe failed"),
            "{e}"
        );
    }
    assert!(events(&s, "Killing").is_empty());
    stop(child, Duration::from_secs(10));
}

#[test]
fn post_start_failure_kills_and_sleep_holds_running() {
    let Some(p) = P::new("post_start_failure_kills_and_sleep_holds_running") else {
        return;
    };
    let yaml = pod(
        "pr-poststart",
        "Always",
        concat!(
            // Nothing listens on port 9: the hook fails, the container is killed.
            "  - name: bad\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n",
            "    lifecycle:\n      postStart:\n        httpGet: {path: /hook, port: 9}\n",
            // A 2 s sleep hook: Waiting until it returns.
            "  - name: slow\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n",
            "    lifecycle:\n      postStart:\n        sleep: {seconds: 2}\n",
        ),
    );
    let t0 = Instant::now();
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "the hook failure", |s| {
        !events(s, "FailedPostStartHook").is_empty() && ctr(s, "bad")["restartCount"] == 1
    });
    let ev = &events(&s, "FailedPostStartHook")[0];
    let msg = ev["message"].as_str().unwrap();
    assert!(
        msg.starts_with("HTTP lifecycle hook (/hook) for Container \"bad\" in Pod \"pr-poststart_default(")
            && msg.ends_with("failed - error: Get \"http://127.0.0.1:9/hook\": dial tcp 127.0.0.1:9: connect: connection refused"),
        "{msg}"
    );
    assert_eq!(events(&s, "Killing")[0]["message"], "FailedPostStartHook");
    // The sleeping one shows Waiting, then Running after ~2 s.
    let s = p.wait(Duration::from_secs(10), "slow running", |s| {
        ctr(s, "slow")["state"]["running"].is_object()
    });
    assert!(t0.elapsed() >= Duration::from_secs(2));
    assert_eq!(ctr(&s, "slow")["started"], true);
    stop(child, Duration::from_secs(10));
}

#[test]
fn post_start_sleep_shows_waiting() {
    let Some(p) = P::new("post_start_sleep_shows_waiting") else {
        return;
    };
    let yaml = pod(
        "pr-wait",
        "Always",
        "  - name: slow\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n    lifecycle:\n      postStart:\n        sleep: {seconds: 2}\n",
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "status", |s| {
        ctr(s, "slow").is_object()
    });
    assert_eq!(
        ctr(&s, "slow")["state"]["waiting"]["reason"],
        "ContainerCreating",
        "{s:#}"
    );
    assert_eq!(ctr(&s, "slow")["ready"], false);
    p.wait(Duration::from_secs(10), "slow running", |s| {
        ctr(s, "slow")["state"]["running"].is_object() && ctr(s, "slow")["ready"] == true
    });
    stop(child, Duration::from_secs(10));
}

#[test]
fn pre_stop_http_runs_before_the_stop_signal() {
    let Some(p) = P::new("pre_stop_http_runs_before_the_stop_signal") else {
        return;
    };
    std::fs::write(p.www.join("bye"), "bye\n").unwrap();
    // httpd logs each request on stderr; the shell says when SIGTERM arrives.
    let yaml = pod(
        "pr-prestop",
        "Never",
        "  - name: web\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"httpd -f -v -p 8084 -h /www & trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done\"]\n    volumeMounts: [{name: www, mountPath: /www}]\n    lifecycle:\n      preStop:\n        httpGet: {path: /bye, port: 8084}\n    readinessProbe:\n      tcpSocket: {port: 8084}\n      periodSeconds: 1\n",
    );
    let child = p.spawn(&yaml);
    // Ready: httpd listens (the preStop would otherwise be refused).
    p.wait(Duration::from_secs(10), "web ready", |s| {
        ctr(s, "web")["ready"] == true
    });
    let (st, _, err) = stop(child, Duration::from_secs(10));
    assert!(st.success(), "{err}");
    assert!(!err.contains("FailedPreStopHook"), "{err}");
    let log = p.log("web", 0);
    // busybox httpd -v logs `ip:port: response:200` per request.
    let hook = log.lines().position(|l| l.contains("response:200"));
    let term = log.lines().position(|l| l.contains("got TERM"));
    assert!(
        hook.is_some() && term.is_some() && hook < term,
        "the hook's request comes before SIGTERM:\n{log}"
    );
}

#[test]
fn pre_stop_past_the_grace_period_gets_two_more_seconds() {
    let Some(p) = P::new("pre_stop_past_the_grace_period_gets_two_more_seconds") else {
        return;
    };
    // The preStop request is accepted and never answered (nc, its input a pipe that stays
    // open); the container ignores
    // SIGTERM. Grace 3 s: the hook is cut at 3 s, SIGTERM, then 2 s more, then SIGKILL.
    let yaml = pod(
        "pr-grace",
        "Never",
        "  - name: stubborn\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap '' TERM; sleep 1000 | nc -l -p 8085 >/dev/null & while :; do sleep 0.1; done\"]\n    lifecycle:\n      preStop:\n        httpGet: {path: /, port: 8085}\n",
    );
    let child = p.spawn(&yaml);
    p.wait(Duration::from_secs(10), "running", |s| {
        ctr(s, "stubborn")["state"]["running"].is_object()
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (_, _, err) = stop(child, Duration::from_secs(15));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(4800) && took < Duration::from_secs(8),
        "{took:?}\n{err}"
    );
    assert!(err.contains("terminated by signal 9"), "{err}");
}

/// Voluntary context switches of a process, from /proc/PID/status.
fn voluntary_switches(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_shim_wakes_only_for_its_probes() {
    let Some(p) = P::new("the_shim_wakes_only_for_its_probes") else {
        return;
    };
    let yaml = pod(
        "pr-wakeups",
        "Always",
        "  - name: idle\n    image: IMAGE\n    command: [\"sleep\", \"1000\"]\n",
    );
    let child = p.spawn(&yaml);
    p.wait(Duration::from_secs(10), "idle running", |s| {
        ctr(s, "idle")["state"]["running"].is_object()
    });
    std::thread::sleep(Duration::from_millis(300));
    let shim = p.shim_pid();
    let before = voluntary_switches(shim);
    std::thread::sleep(Duration::from_secs(3));
    let idle = voluntary_switches(shim) - before;
    assert_eq!(idle, 0, "an idle shim without probes must not wake up");
    stop(child, Duration::from_secs(10));

    // A 1 s tcpSocket probe on a listener: a handful of wake-ups per probe, no more.
    let yaml = pod(
        "pr-wakeups2",
        "Always",
        &httpd(
            "web",
            8086,
            "    livenessProbe:\n      tcpSocket: {port: 8086}\n      periodSeconds: 1\n",
        ),
    );
    let child = p.spawn(&yaml);
    p.wait(Duration::from_secs(10), "web running", |s| {
        ctr(s, "web")["state"]["running"].is_object()
    });
    std::thread::sleep(Duration::from_millis(500));
    let shim = p.shim_pid();
    let failures = events(&p.status().unwrap(), "Unhealthy").len();
    let before = voluntary_switches(shim);
    std::thread::sleep(Duration::from_secs(4));
    let probing = voluntary_switches(shim) - before;
    assert!(
        (3..=20).contains(&probing),
        "4 probes in 4 s should cost a few wake-ups each, got {probing}"
    );
    // (The first probe may have come before httpd listened; none failed meanwhile.)
    let s = p.status().unwrap();
    assert_eq!(events(&s, "Unhealthy").len(), failures, "{s:#}");
    stop(child, Duration::from_secs(10));
}

#[test]
fn a_sidecar_startup_probe_gates_the_next_container() {
    let Some(p) = P::new("a_sidecar_startup_probe_gates_the_next_container") else {
        return;
    };
    // The sidecar serves /www; its startup probe passes once the test creates /www/up.
    let yaml = pod(
        "pr-sidecar",
        "Always",
        "  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n",
    )
    .replace(
        "  containers:\n",
        &format!(
            "  initContainers:\n{}    restartPolicy: Always\n  containers:\n",
            httpd(
                "side",
                8087,
                "    startupProbe:\n      httpGet: {path: /up, port: 8087}\n      periodSeconds: 1\n      failureThreshold: 60\n",
            )
        ),
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "side running", |s| {
        ctr(s, "side")["state"]["running"].is_object()
    });
    assert_eq!(ctr(&s, "side")["started"], false);
    std::thread::sleep(Duration::from_millis(1500));
    let s = p.status().unwrap();
    assert_eq!(
        ctr(&s, "app")["state"]["waiting"]["reason"],
        "PodInitializing",
        "the app waits for the sidecar's startup probe: {s:#}"
    );
    assert_eq!(condition(&s, "Initialized"), "False", "{s:#}");
    std::fs::write(p.www.join("up"), "").unwrap();
    let s = p.wait(Duration::from_secs(5), "app running", |s| {
        ctr(s, "app")["state"]["running"].is_object()
    });
    assert_eq!(ctr(&s, "side")["started"], true);
    assert_eq!(condition(&s, "Initialized"), "True", "{s:#}");
    stop(child, Duration::from_secs(10));
}

#[test]
fn exec_readiness_probe_on_a_file() {
    let Some(p) = P::new("exec_readiness_probe_on_a_file") else {
        return;
    };
    let yaml = pod(
        "pr-exec-ready",
        "Always",
        "  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n    volumeMounts: [{name: www, mountPath: /www}]\n    readinessProbe:\n      exec: {command: [\"cat\", \"/www/ready\"]}\n      periodSeconds: 1\n      failureThreshold: 1\n  - name: nocmd\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n    readinessProbe:\n      exec: {command: [\"no-such-probe\"]}\n      periodSeconds: 1\n",
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "a failed exec probe", |s| {
        events(s, "Unhealthy")
            .iter()
            .any(|e| e["container"] == "app")
    });
    assert_eq!(ctr(&s, "app")["ready"], false);
    let msg = |c: &str| {
        events(&s, "Unhealthy")
            .iter()
            .find(|e| e["container"] == c)
            .map(|e| e["message"].as_str().unwrap().to_string())
    };
    assert_eq!(
        msg("app").as_deref(),
        Some("Readiness probe failed: cat: can't open '/www/ready': No such file or directory")
    );
    let s = p.wait(Duration::from_secs(10), "nocmd's probe", |s| {
        events(s, "Unhealthy")
            .iter()
            .any(|e| e["container"] == "nocmd")
    });
    let nocmd = events(&s, "Unhealthy")
        .iter()
        .find(|e| e["container"] == "nocmd")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        nocmd.starts_with("Readiness probe errored: ") && nocmd.contains("no-such-probe"),
        "{nocmd}"
    );
    std::fs::write(p.www.join("ready"), "").unwrap();
    p.wait(Duration::from_secs(5), "ready", |s| {
        ctr(s, "app")["ready"] == true
    });
    std::fs::remove_file(p.www.join("ready")).unwrap();
    p.wait(Duration::from_secs(5), "unready", |s| {
        ctr(s, "app")["ready"] == false
    });
    stop(child, Duration::from_secs(10));
}

/// Zombies whose parent is one of `parents`.
fn zombies_of(parents: &[i32]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| {
            st.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let ppid: i32 = field("PPid:").parse().unwrap_or(0);
        if field("State:").starts_with('Z') && parents.contains(&ppid) {
            out.push(format!("{pid} {}", field("Name:")));
        }
    }
    out
}

/// Live processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<i32> {
    let want = argv.join("\0") + "\0";
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() == want.as_bytes() {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_hanging_exec_probe_times_out_and_leaves_nothing() {
    let Some(p) = P::new("a_hanging_exec_probe_times_out_and_leaves_nothing") else {
        return;
    };
    // The probe's shell starts `sleep 100` as its child: both must go at the timeout.
    let yaml = pod(
        "pr-hang",
        "Always",
        "  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n    livenessProbe:\n      exec: {command: [\"sh\", \"-c\", \"sleep 100; true\"]}\n      periodSeconds: 1\n      timeoutSeconds: 1\n      failureThreshold: 100\n",
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(15), "two timeouts", |s| {
        events(s, "Unhealthy").len() >= 2
    });
    assert_eq!(
        events(&s, "Unhealthy")[0]["message"],
        "Liveness probe failed: command \"sh -c sleep 100; true\" timed out"
    );
    let shim = p.shim_pid();
    let exec: Value = serde_json::from_str(
        &std::fs::read_to_string(p.pod_dir().unwrap().join("containers/app/exec.json")).unwrap(),
    )
    .unwrap();
    let init = exec["pid"].as_i64().unwrap() as i32;
    // Between probes (one is always running: 1 s timeout, 1 s period), at most the current
    // probe's two processes exist.
    let start = Instant::now();
    let mut most = 0;
    while start.elapsed() < Duration::from_secs(3) {
        let n = processes_running(&["sleep", "100"]).len();
        most = most.max(n);
        let z = zombies_of(&[shim, init]);
        assert!(z.len() <= 2, "zombies pile up: {z:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(most <= 1, "old probes left sleep 100 behind ({most})");
    let (_, _, err) = stop(child, Duration::from_secs(10));
    assert!(err.contains("timed out"), "{err}");
    assert!(processes_running(&["sleep", "100"]).is_empty());
}

#[test]
fn pre_stop_exec_output_is_in_the_log_before_sigterm() {
    let Some(p) = P::new("pre_stop_exec_output_is_in_the_log_before_sigterm") else {
        return;
    };
    let yaml = pod(
        "pr-prestop-exec",
        "Never",
        "  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.1; done\"]\n    lifecycle:\n      preStop:\n        exec: {command: [\"sh\", \"-c\", \"echo bye from preStop > /proc/1/fd/1\"]}\n",
    );
    let child = p.spawn(&yaml);
    p.wait(Duration::from_secs(10), "app running", |s| {
        ctr(s, "app")["state"]["running"].is_object()
    });
    let (st, out, err) = stop(child, Duration::from_secs(10));
    assert!(st.success(), "{err}");
    let log = p.log("app", 0);
    let bye = log.lines().position(|l| l.ends_with("bye from preStop"));
    let term = log.lines().position(|l| l.ends_with("got TERM"));
    assert!(
        bye.is_some() && term.is_some() && bye < term,
        "preStop output, then SIGTERM:\n{log}\n{out}"
    );
}

#[test]
fn post_start_exec_failure_kills_the_container() {
    let Some(p) = P::new("post_start_exec_failure_kills_the_container") else {
        return;
    };
    let yaml = pod(
        "pr-poststart-exec",
        "OnFailure",
        "  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n    lifecycle:\n      postStart:\n        exec: {command: [\"sh\", \"-c\", \"echo no way; exit 3\"]}\n  - name: keep\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n",
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "the hook failure", |s| {
        !events(s, "FailedPostStartHook").is_empty() && !events(s, "Killing").is_empty()
    });
    let msg = events(&s, "FailedPostStartHook")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("Exec lifecycle hook ([sh -c echo no way; exit 3]) for Container \"app\" in Pod \"pr-poststart-exec_default(")
            && msg.ends_with("failed - error: command 'sh -c echo no way; exit 3' exited with 3: , message: \"no way\\n\""),
        "{msg}"
    );
    // It exits 0 on SIGTERM: under OnFailure a postStart failure is an ordinary exit, no
    // restart (the kubelet decides by the exit as usual).
    let s = p.wait(Duration::from_secs(10), "app terminated", |s| {
        ctr(s, "app")["state"]["terminated"].is_object()
    });
    assert_eq!(ctr(&s, "app")["restartCount"], 0, "{s:#}");
    std::thread::sleep(Duration::from_millis(500));
    let s = p.status().unwrap();
    assert!(ctr(&s, "app")["state"]["terminated"].is_object(), "{s:#}");
    stop(child, Duration::from_secs(10));
}

/// The READY column of `podsup status` for `pod`.
fn ready_column(t: &common::daemon::DaemonTest, pod: &str) -> String {
    let out = t.cli(&["status"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pod))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string()
}

#[test]
fn daemon_shows_ready_and_unhealthy_events() {
    let Some(t) = common::daemon::DaemonTest::new("daemon_shows_ready_and_unhealthy_events") else {
        return;
    };
    let www = t.tmp().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("alive"), "").unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pr-daemon\nspec:\n  terminationGracePeriodSeconds: 2\n  volumes:\n  - name: www\n    hostPath: {{path: {}, type: Directory}}\n  containers:\n{}",
        www.display(),
        httpd(
            "web",
            8088,
            "    readinessProbe:\n      httpGet: {path: /ready, port: 8088}\n      periodSeconds: 1\n      failureThreshold: 1\n    livenessProbe:\n      httpGet: {path: /alive, port: 8088}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 2\n",
        )
    );
    t.write("pod.yaml", &yaml);
    t.wait_running("pr-daemon");
    let wait_ready = |want: &str| {
        let start = Instant::now();
        loop {
            let got = ready_column(&t, "pr-daemon");
            if got == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "READY stays {got:?}, want {want:?}\n{}",
                t.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_ready("0/1");
    std::fs::write(www.join("ready"), "").unwrap();
    wait_ready("1/1");
    std::fs::remove_file(www.join("ready")).unwrap();
    wait_ready("0/1");
    std::fs::remove_file(www.join("alive")).unwrap();
    t.wait_until("a restart", |s| {
        common::daemon::find(s, "pr-daemon").is_some()
            && common::daemon::restarts(s, "pr-daemon", "web") >= 1
    });
    // Healthy again (the new container's liveness needs 2 failures in a row to kill).
    std::fs::write(www.join("alive"), "").unwrap();
    let out = t.cli(&["events", "-o", "json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let evs: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["object"] == "default/pr-daemon")
        .collect();
    let has = |reason: &str, msg: &str| {
        evs.iter()
            .any(|e| e["reason"] == reason && e["message"] == msg)
    };
    assert!(
        has(
            "Unhealthy",
            "container web: Readiness probe failed: HTTP probe failed with statuscode: 404"
        ),
        "{text}"
    );
    assert!(
        has(
            "Unhealthy",
            "container web: Liveness probe failed: HTTP probe failed with statuscode: 404"
        ),
        "{text}"
    );
    assert!(
        has(
            "Killing",
            "container web: Container web failed liveness probe, will be restarted"
        ),
        "{text}"
    );
    // Each shim event is reported once.
    let kills = evs.iter().filter(|e| e["reason"] == "Killing").count();
    assert_eq!(kills, 1, "{text}");
}

#[test]
fn a_failed_startup_probe_kills_and_never_means_no_restart() {
    let Some(p) = P::new("a_failed_startup_probe_kills_and_never_means_no_restart") else {
        return;
    };
    // Nothing listens on 8089; the container would run forever. restartPolicy Never: killed
    // once, not restarted. (`keep` keeps the pod, and its status, there.)
    let yaml = pod(
        "pr-startup-fail",
        "Never",
        "  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n    startupProbe:\n      tcpSocket: {port: 8089}\n      periodSeconds: 1\n      failureThreshold: 2\n  - name: keep\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.1; done\"]\n",
    );
    let child = p.spawn(&yaml);
    let s = p.wait(Duration::from_secs(10), "app terminated", |s| {
        ctr(s, "app")["state"]["terminated"].is_object()
    });
    assert_eq!(
        events(&s, "Killing")[0]["message"],
        "Container app failed startup probe"
    );
    assert_eq!(events(&s, "Unhealthy").len(), 2, "{s:#}");
    assert_eq!(ctr(&s, "app")["restartCount"], 0);
    assert_eq!(ctr(&s, "app")["started"], false);
    let (_, _, err) = stop(child, Duration::from_secs(10));
    assert!(
        err.contains("Startup probe failed: dial tcp 127.0.0.1:8089: connect: connection refused"),
        "{err}"
    );
}

#[test]
fn pre_stop_runs_when_the_daemon_restarts_a_container() {
    let Some(t) =
        common::daemon::DaemonTest::new("pre_stop_runs_when_the_daemon_restarts_a_container")
    else {
        return;
    };
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pr-restart\nspec:\n  terminationGracePeriodSeconds: 3\n  containers:\n  - name: app\n    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.1; done\"]\n    lifecycle:\n      preStop:\n        exec: {command: [\"sh\", \"-c\", \"echo bye from preStop > /proc/1/fd/1\"]}\n";
    t.write("pod.yaml", &yaml.replace("IMAGE", &t.image));
    t.wait_running("pr-restart");
    let out = t.cli(&["restart", "pr-restart"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_until("a restart", |s| {
        common::daemon::restarts(s, "pr-restart", "app") == 1
    });
    let out = t.cli(&["logs", "pr-restart", "--previous"]);
    let log = String::from_utf8_lossy(&out.stdout);
    let bye = log.lines().position(|l| l == "bye from preStop");
    let term = log.lines().position(|l| l == "got TERM");
    assert!(
        bye.is_some() && term.is_some() && bye < term,
        "preStop, then SIGTERM:\n{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
