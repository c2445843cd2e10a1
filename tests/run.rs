//! `podsup run` against the real kernel, as root: one test per behaviour of the pod sandbox
//! and its containers. Each test has its own `--root/--run`, a unique pod name, and a leak
//! check on drop (also after a failed assertion): no mount of the test's directory in our
//! mount namespace, no process anywhere whose mounts mention it (shim, pause, containers, and
//! so their namespaces), no pod directory left.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TestDirs, podsup, require_root};

/// One pod test: directories, an image, and the leak check.
struct PodTest {
    dirs: TestDirs,
    image: String,
    /// This test's own cgroup parent, `podsup-test-<random>`.
    parent: String,
}

impl PodTest {
    fn new(test: &str) -> Option<PodTest> {
        if !require_root(test) {
            return None;
        }
        let dirs = TestDirs::new();
        let image = common::busybox_image(&dirs, "busybox-test", &[]);
        let rnd = std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("uuid");
        let parent = format!("podsup-test-{}", &rnd.trim()[..8]);
        Some(PodTest {
            dirs,
            image,
            parent,
        })
    }

    fn tmp(&self) -> &Path {
        self.dirs.tmp.path()
    }

    fn manifest(&self, yaml: &str) -> PathBuf {
        let path = self.dirs.manifests.join("pod.yaml");
        std::fs::write(&path, yaml.replace("IMAGE", &self.image)).expect("write manifest");
        path
    }

    fn command(&self, manifest: &Path) -> std::process::Command {
        let mut cmd = podsup();
        cmd.arg("run")
            .arg(manifest)
            .arg("--root")
            .arg(&self.dirs.root)
            .arg("--run")
            .arg(&self.dirs.run)
            .arg("--cgroup-parent")
            .arg(&self.parent)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the pod to its end (at most 60 s) and returns what `podsup run` printed.
    fn run(&self, yaml: &str) -> Run {
        let manifest = self.manifest(yaml);
        let child = self.command(&manifest).spawn().expect("spawn podsup run");
        Run::wait(child, Duration::from_secs(60))
    }
}

struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn wait(mut child: Child, limit: Duration) -> Run {
        let start = Instant::now();
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait podsup run");
        let run = Run {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        assert!(
            start.elapsed() <= limit,
            "podsup run did not finish in {limit:?}: {run}"
        );
        run
    }

    /// The lines container `name` printed, without the prefix.
    fn lines_of(&self, name: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| {
                let (n, rest) = l.split_once(" | ")?;
                (n.trim_end() == name).then(|| rest.to_string())
            })
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// The test's cgroup parent in every hierarchy.
fn leaks(tmp: &Path, parent: &str) -> Vec<String> {
    let needle = tmp.display().to_string();
    let mut problems = Vec::new();
    for p in common::cgroup_parent_dirs(parent) {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                problems.push(format!("cgroup left: {}", e.path().display()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mounts.lines().filter(|l| l.contains(&needle)) {
        problems.push(format!("mount left: {l}"));
    }
    for pid in common::processes_mentioning(&needle) {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        problems.push(format!("process left: {pid} {}", comm.trim()));
    }
    for d in ["run/pods", "root/pods"] {
        let dir = tmp.join(d);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                problems.push(format!("pod directory left: {}", e.path().display()));
            }
        }
    }
    problems
}

impl Drop for PodTest {
    fn drop(&mut self) {
        let tmp = self.tmp().to_path_buf();
        // Exits and namespace teardown are asynchronous; give them a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        let parent = self.parent.clone();
        let mut problems = leaks(&tmp, &parent);
        while !problems.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            problems = leaks(&tmp, &parent);
        }
        if problems.is_empty() {
            for d in common::cgroup_parent_dirs(&parent) {
                let _ = std::fs::remove_dir(d);
            }
            return;
        }
        // Clean up what this test started, then fail.
        common::kill_and_unmount(&tmp);
        // The test's own cgroups (its processes are dead by now), deepest first.
        std::thread::sleep(Duration::from_millis(100));
        for d in common::cgroup_parent_dirs(&parent) {
            common::rmdir_tree(&d);
        }
        if !std::thread::panicking() {
            panic!("leak check failed:\n{}", problems.join("\n"));
        }
        eprintln!("leak check failed:\n{}", problems.join("\n"));
    }
}

/// Reads `podsup run`'s stdout on a thread until a line contains `needle` (at most 20 s;
/// then the run is killed and the test fails). The receiver yields the lines that follow.
fn wait_for_line(child: &mut Child, needle: &str) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return rx,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                let r = Run::wait(
                    std::mem::replace(child, dummy_child()),
                    Duration::from_secs(5),
                );
                panic!("no line with {needle:?} in time; saw {seen:?}\n{r}");
            }
        }
    }
}

fn dummy_child() -> Child {
    std::process::Command::new("true")
        .spawn()
        .expect("spawn true")
}

fn one_container(name: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", {script:?}]
"#
    )
}

#[test]
fn hostname_is_the_pod_name() {
    let Some(t) = PodTest::new("hostname_is_the_pod_name") else {
        return;
    };
    let r = t.run(&one_container(
        "run-hostname",
        "hostname; cat /etc/hostname; echo HOSTNAME=$HOSTNAME; grep run-hostname /etc/hosts; umask",
    ));
    assert!(r.status.success(), "{r}");
    let out = r.lines_of("main");
    assert_eq!(out[0], "run-hostname", "{r}");
    assert_eq!(out[1], "run-hostname", "{r}");
    assert_eq!(out[2], "HOSTNAME=run-hostname", "{r}");
    assert!(out[3].ends_with("run-hostname"), "{r}");
    assert_eq!(out[4], "0022", "{r}");
}

#[test]
fn spec_hostname_and_host_aliases() {
    let Some(t) = PodTest::new("spec_hostname_and_host_aliases") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-aliases
spec:
  restartPolicy: Never
  hostname: custom-host
  hostAliases:
  - ip: "10.1.2.3"
    hostnames: ["foo.local", "bar.local"]
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", "hostname; grep foo.local /etc/hosts"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("main"),
        vec!["custom-host", "10.1.2.3\tfoo.local\tbar.local"],
        "{r}"
    );
}

#[test]
fn containers_talk_over_localhost() {
    let Some(t) = PodTest::new("containers_talk_over_localhost") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-localhost
spec:
  restartPolicy: Never
  containers:
  - name: server
    image: IMAGE
    command: ["sh", "-c", "echo hello-over-loopback | nc -l -p 7777 127.0.0.1"]
  - name: client
    image: IMAGE
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 7777 2>/dev/null && exit 0; sleep 0.3; done; exit 1"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("client"), vec!["hello-over-loopback"], "{r}");
}

#[test]
fn empty_dir_is_shared_between_containers() {
    let Some(t) = PodTest::new("empty_dir_is_shared_between_containers") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-emptydir
spec:
  restartPolicy: Never
  volumes:
  - name: disk
    emptyDir: {}
  - name: mem
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
  initContainers:
  - name: writer
    image: IMAGE
    command: ["sh", "-c", "echo on-disk > /a/f; echo in-memory > /b/f"]
    volumeMounts:
    - {name: disk, mountPath: /a}
    - {name: mem, mountPath: /b}
  containers:
  - name: reader
    image: IMAGE
    command: ["sh", "-c", "cat /x/f /y/f; grep ' /y ' /proc/mounts | cut -d' ' -f3"]
    volumeMounts:
    - {name: disk, mountPath: /x}
    - {name: mem, mountPath: /y}
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("reader"),
        vec!["on-disk", "in-memory", "tmpfs"],
        "{r}"
    );
}

#[test]
fn read_only_host_path_refuses_writes() {
    let Some(t) = PodTest::new("read_only_host_path_refuses_writes") else {
        return;
    };
    let host = t.tmp().join("hostdata");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("greeting"), "from-the-host\n").unwrap();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-hostpath
spec:
  restartPolicy: Never
  volumes:
  - name: h
    hostPath:
      path: {}
      type: Directory
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", "cat /h/greeting; if touch /h/new 2>/dev/null; then echo writable; else echo refused; fi"]
    volumeMounts:
    - name: h
      mountPath: /h
      readOnly: true
"#,
        host.display()
    );
    let r = t.run(&yaml);
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("main"), vec!["from-the-host", "refused"], "{r}");
    assert!(!host.join("new").exists());
}

#[test]
fn host_path_type_is_checked() {
    let Some(t) = PodTest::new("host_path_type_is_checked") else {
        return;
    };
    let missing = t.tmp().join("does-not-exist");
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-hostpath-type
spec:
  restartPolicy: Never
  volumes:
  - name: h
    hostPath:
      path: {}
      type: Directory
  containers:
  - name: main
    image: IMAGE
    command: ["true"]
    volumeMounts:
    - {{name: h, mountPath: /h}}
"#,
        missing.display()
    );
    let r = t.run(&yaml);
    assert_eq!(r.status.code(), Some(1), "{r}");
    let want = format!(
        "container \"main\": volume \"h\": hostPath {}: no such file or directory",
        missing.display()
    );
    assert!(r.stderr.contains(&want), "{r}");
}

#[test]
fn run_as_user_1000() {
    let Some(t) = PodTest::new("run_as_user_1000") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-user
spec:
  restartPolicy: Never
  securityContext:
    supplementalGroups: [3000]
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", "id -u; id -g; id -G; grep CapEff /proc/self/status; cat /etc/hosts /etc/resolv.conf /etc/hostname > /dev/null && echo etc-readable; echo bye > /dev/termination-log && echo message-writable"]
    securityContext:
      runAsUser: 1000
      runAsGroup: 2000
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("main"),
        vec![
            "1000",
            "2000",
            "2000 3000",
            "CapEff:\t0000000000000000",
            "etc-readable",
            "message-writable"
        ],
        "{r}"
    );
}

#[test]
fn capabilities_default_set_and_drop() {
    let Some(t) = PodTest::new("capabilities_default_set_and_drop") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-caps
spec:
  restartPolicy: Never
  containers:
  - name: default
    image: IMAGE
    command: ["sh", "-c", "grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status"]
  - name: dropped
    image: IMAGE
    command: ["sh", "-c", "grep CapEff /proc/self/status"]
    securityContext:
      capabilities:
        drop: ["NET_RAW", "CHOWN"]
        add: ["NET_ADMIN"]
"#,
    );
    assert!(r.status.success(), "{r}");
    // Docker's default set: 0xa80425fb.
    assert_eq!(
        r.lines_of("default"),
        vec![
            "CapEff:\t00000000a80425fb",
            "CapBnd:\t00000000a80425fb",
            "NoNewPrivs:\t1"
        ],
        "{r}"
    );
    // - NET_RAW (bit 13) - CHOWN (bit 0) + NET_ADMIN (bit 12)
    assert_eq!(
        r.lines_of("dropped"),
        vec!["CapEff:\t00000000a80415fa"],
        "{r}"
    );
}

#[test]
fn sys_is_read_only_and_proc_is_masked() {
    let Some(t) = PodTest::new("sys_is_read_only_and_proc_is_masked") else {
        return;
    };
    let r = t.run(&one_container(
        "run-sys",
        "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
         if touch /sys/kernel/x 2>/dev/null; then echo sys-writable; else echo sys-refused; fi; \
         if (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null; then echo procsys-writable; else echo procsys-refused; fi; \
         wc -c < /proc/timer_list",
    ));
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("main"),
        vec!["ro", "sys-refused", "procsys-refused", "0"],
        "{r}"
    );
}

#[test]
fn read_only_root_filesystem() {
    let Some(t) = PodTest::new("read_only_root_filesystem") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-rofs
spec:
  restartPolicy: Never
  volumes:
  - name: scratch
    emptyDir: {}
  containers:
  - name: ro
    image: IMAGE
    command: ["sh", "-c", "if touch /x 2>/dev/null; then echo root-writable; else echo root-refused; fi; touch /scratch/ok && echo volume-writable; echo dev-ok > /dev/shm/f && cat /dev/shm/f"]
    securityContext:
      readOnlyRootFilesystem: true
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
  - name: rw
    image: IMAGE
    command: ["sh", "-c", "touch /x && echo root-writable"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("ro"),
        vec!["root-refused", "volume-writable", "dev-ok"],
        "{r}"
    );
    assert_eq!(r.lines_of("rw"), vec!["root-writable"], "{r}");
}

#[test]
fn env_var_expansion_and_field_refs() {
    let Some(t) = PodTest::new("env_var_expansion_and_field_refs") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-env
  labels:
    app: shop
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: IMAGE
    env:
    - name: GREETING
      value: hello
    - name: MESSAGE
      value: "$(GREETING) world $(UNDEFINED) $$(GREETING)"
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: APP
      valueFrom:
        fieldRef:
          fieldPath: metadata.labels['app']
    command: ["echo", "$(MESSAGE)", "from", "$(POD_NAME)/$(APP)"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("main"),
        vec!["hello world $(UNDEFINED) $(GREETING) from run-env/shop"],
        "{r}"
    );
}

#[test]
fn private_pid_namespace_per_container() {
    let Some(t) = PodTest::new("private_pid_namespace_per_container") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-pid-private
spec:
  restartPolicy: Never
  containers:
  - name: sleeper
    image: IMAGE
    command: ["sleep", "2"]
  - name: looker
    image: IMAGE
    command: ["sh", "-c", "sleep 0.5; echo pid=$$$$; ps -o args | grep -c '^sleep 2$' || true"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("looker"), vec!["pid=1", "0"], "{r}");
}

#[test]
fn shared_pid_namespace() {
    let Some(t) = PodTest::new("shared_pid_namespace") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-pid-shared
spec:
  restartPolicy: Never
  shareProcessNamespace: true
  containers:
  - name: sleeper
    image: IMAGE
    command: ["sleep", "2"]
  - name: looker
    image: IMAGE
    command: ["sh", "-c", "sleep 0.5; cat /proc/1/comm; ps -o args | grep -c '^sleep 2$'"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("looker"), vec!["podsup-pause", "1"], "{r}");
}

#[test]
fn missing_binary_is_a_start_error() {
    let Some(t) = PodTest::new("missing_binary_is_a_start_error") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-missing
spec:
  restartPolicy: Never
  containers:
  - name: web
    image: IMAGE
    command: ["/bin/nginx"]
  - name: bare
    image: IMAGE
    command: ["nginx"]
"#,
    );
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(
        r.stderr
            .contains(r#"container "web": exec "/bin/nginx": no such file or directory"#),
        "{r}"
    );
    assert!(
        r.stderr
            .contains(r#"container "bare": exec "nginx": executable file not found in $PATH"#),
        "{r}"
    );
}

#[test]
fn init_containers_in_order_and_restart_on_failure() {
    let Some(t) = PodTest::new("init_containers_in_order_and_restart_on_failure") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-restart
spec:
  restartPolicy: OnFailure
  volumes:
  - name: state
    emptyDir: {}
  initContainers:
  - name: first
    image: IMAGE
    command: ["sh", "-c", "echo 1 >> /s/order"]
    volumeMounts: [{name: state, mountPath: /s}]
  - name: second
    image: IMAGE
    command: ["sh", "-c", "echo 2 >> /s/order"]
    volumeMounts: [{name: state, mountPath: /s}]
  containers:
  - name: app
    image: IMAGE
    command: ["sh", "-c", "if [ -e /s/tried ]; then cat /s/order; echo second-try; else touch /s/tried; echo failing; exit 3; fi"]
    volumeMounts: [{name: state, mountPath: /s}]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("app"),
        vec!["failing", "1", "2", "second-try"],
        "{r}"
    );
    assert!(
        r.stderr.contains("container \"app\" exited with code 3"),
        "{r}"
    );
}

#[test]
fn failing_container_fails_the_pod_with_its_termination_message() {
    let Some(t) = PodTest::new("failing_container_fails_the_pod_with_its_termination_message")
    else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-fail
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: IMAGE
    command: ["sh", "-c", "echo disk full > /dev/termination-log; exit 2"]
  - name: logs
    image: IMAGE
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo last words; exit 1"]
  - name: custom
    image: IMAGE
    terminationMessagePath: /var/run/msg
    command: ["sh", "-c", "echo all done > /var/run/msg"]
"#,
    );
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(
        r.stderr
            .contains("container \"file\" termination message: disk full"),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("container \"logs\" termination message: last words"),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("container \"custom\" termination message: all done"),
        "{r}"
    );
}

#[test]
fn ctrl_c_stops_the_pod_and_leaves_nothing() {
    let Some(t) = PodTest::new("ctrl_c_stops_the_pod_and_leaves_nothing") else {
        return;
    };
    let manifest = t.manifest(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-ctrl-c
spec:
  terminationGracePeriodSeconds: 3
  shareProcessNamespace: false
  volumes:
  - name: mem
    emptyDir: {medium: Memory}
  containers:
  - name: polite
    image: IMAGE
    command: ["sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]
    volumeMounts: [{name: mem, mountPath: /m}]
  - name: stubborn
    image: IMAGE
    command: ["sleep", "1000"]
"#,
    );
    let mut child = t.command(&manifest).spawn().expect("spawn podsup run");
    let lines = wait_for_line(&mut child, "ready");
    let netns = shim_namespaces(&t);
    let pid = child.id().to_string();
    let start = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let r = Run::wait(child, Duration::from_secs(20));
    let rest: Vec<String> = lines.iter().collect();
    let elapsed = start.elapsed();
    let out = rest.join("\n");
    assert!(out.contains("polite   | got-term"), "{out}\n{r}");
    // `sleep` as PID 1 of its namespace ignores SIGTERM: SIGKILL after the grace period.
    assert!(
        r.stderr
            .contains("container \"stubborn\" terminated by signal 9"),
        "{r}"
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "grace period not honoured: {elapsed:?}"
    );
    assert_eq!(r.status.code(), Some(1), "{r}");
    for ns in netns {
        assert_eq!(processes_in(&ns), Vec::<i32>::new(), "{ns} is still in use");
    }
}

/// The pod's net, ipc and uts namespaces (as `/proc/<shim>/ns/*` links) while it runs.
fn shim_namespaces(t: &PodTest) -> Vec<String> {
    let pods: Vec<_> = std::fs::read_dir(t.dirs.run.join("pods"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(pods.len(), 1);
    let shim = std::fs::read_to_string(pods[0].path().join("shim.pid")).unwrap();
    let mut out = Vec::new();
    for ns in ["net", "ipc", "uts"] {
        let link = std::fs::read_link(format!("/proc/{}/ns/{ns}", shim.trim())).unwrap();
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(link, mine, "the pod has no {ns} namespace of its own");
        out.push(link.display().to_string());
    }
    out
}

/// Pids of processes in the namespace `ns` (e.g. `net:[4026532281]`).
fn processes_in(ns: &str) -> Vec<i32> {
    let kind = ns.split(':').next().unwrap_or_default();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(link) = std::fs::read_link(entry.path().join("ns").join(kind))
            && link.display().to_string() == ns
        {
            found.push(pid);
        }
    }
    found
}

#[test]
fn image_config_is_combined_with_the_manifest() {
    let Some(t) = PodTest::new("image_config_is_combined_with_the_manifest") else {
        return;
    };
    let img = common::busybox_image(
        &t.dirs,
        "example.com/cfg:v1",
        &[
            "--env",
            "FROM_IMG=img",
            "--env",
            "OVERRIDE=img",
            "--entrypoint",
            r#"["/bin/sh","-c"]"#,
            "--cmd",
            r#"["echo default-cmd"]"#,
            "--workdir",
            "/work/dir",
            "--user",
            "nobody",
        ],
    );
    let r = t.run(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-imgcfg
spec:
  restartPolicy: Never
  containers:
  - name: defaults
    image: {img}
  - name: args
    image: {img}
    env:
    - {{name: OVERRIDE, value: manifest}}
    args: ["echo $FROM_IMG $OVERRIDE; pwd; id -u; echo $HOME"]
  - name: root
    image: {img}
    command: ["id", "-u"]
    securityContext:
      runAsUser: 0
"#
    ));
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("defaults"), vec!["default-cmd"], "{r}");
    assert_eq!(
        r.lines_of("args"),
        vec!["img manifest", "/work/dir", "65534", "/"],
        "{r}"
    );
    assert_eq!(r.lines_of("root"), vec!["0"], "{r}");
}

#[test]
fn image_in_use_cannot_be_removed() {
    let Some(t) = PodTest::new("image_in_use_cannot_be_removed") else {
        return;
    };
    let manifest = t.manifest(&one_container(
        "run-inuse",
        "trap 'exit 0' TERM; echo ready; sleep 30 & wait",
    ));
    let mut child = t.command(&manifest).spawn().expect("spawn podsup run");
    let _lines = wait_for_line(&mut child, "ready");
    let rm = podsup()
        .args(["image", "rm", &t.image, "--root"])
        .arg(&t.dirs.root)
        .arg("--run")
        .arg(&t.dirs.run)
        .output()
        .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let r = Run::wait(child, Duration::from_secs(40));
    assert!(
        !rm.status.success(),
        "image rm of a running pod's image succeeded: {r}"
    );
    assert!(
        String::from_utf8_lossy(&rm.stderr).contains("in use"),
        "{rm:?}"
    );
}

#[test]
fn unknown_image_is_refused_before_anything_starts() {
    let Some(t) = PodTest::new("unknown_image_is_refused_before_anything_starts") else {
        return;
    };
    let r = t.run(&one_container("run-noimage", "true").replace("IMAGE", "nosuch/image:v9"));
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(
        r.stderr.contains("image \"nosuch/image:v9\" not found"),
        "{r}"
    );
}

#[test]
fn symlinks_in_the_image_do_not_reach_the_host() {
    let Some(t) = PodTest::new("symlinks_in_the_image_do_not_reach_the_host") else {
        return;
    };
    let outside = t.tmp().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let rootfs = t.tmp().join("evil-rootfs");
    common::busybox_rootfs(&rootfs);
    std::os::unix::fs::symlink(&outside, rootfs.join("evil")).unwrap();
    let out = podsup()
        .args(["image", "import"])
        .arg(&rootfs)
        .arg("evil:1")
        .arg("--root")
        .arg(&t.dirs.root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-evil
spec:
  restartPolicy: Never
  volumes:
  - name: v
    emptyDir: {}
  containers:
  - name: main
    image: evil:1
    command: ["sh", "-c", "echo started"]
    volumeMounts:
    - {name: v, mountPath: /evil/sub}
"#,
    );
    // Inside the container, /evil points at a path that does not exist there: the mount
    // point cannot be made, and nothing is created on the host.
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(r.stderr.contains("container \"main\": mkdir"), "{r}");
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "created on the host: {left:?}");
}

#[test]
fn sub_path_through_a_symlink_is_refused() {
    let Some(t) = PodTest::new("sub_path_through_a_symlink_is_refused") else {
        return;
    };
    let host = t.tmp().join("vol");
    std::fs::create_dir_all(host.join("ok")).unwrap();
    std::fs::write(host.join("ok/file"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/etc", host.join("link")).unwrap();
    let pod = |sub: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: run-subpath
spec:
  restartPolicy: Never
  volumes:
  - name: v
    hostPath: {{path: {}}}
  containers:
  - name: main
    image: IMAGE
    command: ["cat", "/m/file"]
    volumeMounts:
    - {{name: v, mountPath: /m, subPath: {sub}}}
"#,
            host.display()
        )
    };
    let r = t.run(&pod("ok"));
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("main"), vec!["inside"], "{r}");
    let r = t.run(&pod("link"));
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(r.stderr.contains("subPath goes through a symlink"), "{r}");
}

#[test]
fn privileged_and_allow_privilege_escalation() {
    let Some(t) = PodTest::new("privileged_and_allow_privilege_escalation") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-privileged
spec:
  restartPolicy: Never
  containers:
  - name: privileged
    image: IMAGE
    command: ["sh", "-c", "grep -E 'CapEff|NoNewPrivs' /proc/self/status; grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; test -c /dev/loop-control && echo host-devices"]
    securityContext:
      privileged: true
  - name: escalate
    image: IMAGE
    command: ["sh", "-c", "grep NoNewPrivs /proc/self/status"]
    securityContext:
      allowPrivilegeEscalation: true
"#,
    );
    assert!(r.status.success(), "{r}");
    // All that podsup itself has (root may lack some capabilities on hardened machines).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = status
        .lines()
        .find_map(|l| l.strip_prefix("CapPrm:\t"))
        .unwrap()
        .to_string();
    assert_eq!(
        r.lines_of("privileged"),
        vec![
            format!("CapEff:\t{all}"),
            "NoNewPrivs:\t0".into(),
            "rw".into(),
            "host-devices".into(),
        ],
        "{r}"
    );
    assert_eq!(r.lines_of("escalate"), vec!["NoNewPrivs:\t0"], "{r}");
}

#[test]
fn host_network_uses_the_host_hostname() {
    let Some(t) = PodTest::new("host_network_uses_the_host_hostname") else {
        return;
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-hostnet
spec:
  restartPolicy: Never
  hostNetwork: true
  containers:
  - name: main
    image: IMAGE
    command: ["hostname"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("main"), vec![host.trim().to_string()], "{r}");
}

#[test]
fn a_killed_shim_takes_its_containers_along() {
    let Some(t) = PodTest::new("a_killed_shim_takes_its_containers_along") else {
        return;
    };
    let manifest = t.manifest(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-shim-dies
spec:
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", "echo ready; exec sleep 1000"]
    securityContext:
      runAsUser: 1000
"#,
    );
    let mut child = t.command(&manifest).spawn().expect("spawn podsup run");
    let _lines = wait_for_line(&mut child, "ready");
    let pods: Vec<_> = std::fs::read_dir(t.dirs.run.join("pods"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(pods.len(), 1);
    let shim = std::fs::read_to_string(pods[0].path().join("shim.pid")).unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", shim.trim()])
            .status()
            .unwrap()
            .success()
    );
    let r = Run::wait(child, Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(3), "{r}");
    assert!(r.stderr.contains("podsup shim was killed"), "{r}");
}

#[test]
fn sidecar_runs_beside_the_app_and_stops_after_it() {
    let Some(t) = PodTest::new("sidecar_runs_beside_the_app_and_stops_after_it") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-sidecar
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes:
  - name: data
    emptyDir: {}
  initContainers:
  - name: shipper
    image: IMAGE
    restartPolicy: Always
    command: ["sh", "-c", "touch /data/log; exec tail -F /data/log"]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: app
    image: IMAGE
    command: ["sh", "-c", "sleep 0.5; echo shipped-line >> /data/log; sleep 0.5"]
    volumeMounts: [{name: data, mountPath: /data}]
"#,
    );
    // The sidecar (PID 1, deaf to SIGTERM) is killed after the grace period; it does not
    // make the pod fail.
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("shipper"), vec!["shipped-line"], "{r}");
    assert!(
        r.stderr
            .contains("container \"shipper\" terminated by signal 9"),
        "{r}"
    );
}

#[test]
fn container_logs_in_cri_format_with_log_dir() {
    let Some(t) = PodTest::new("container_logs_in_cri_format_with_log_dir") else {
        return;
    };
    let manifest = t.manifest(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-logs
spec:
  restartPolicy: OnFailure
  volumes:
  - name: s
    emptyDir: {}
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", "echo out-line; echo err-line >&2; if [ ! -e /s/again ]; then touch /s/again; exit 1; fi"]
    volumeMounts: [{name: s, mountPath: /s}]
"#,
    );
    let child = t
        .command(&manifest)
        .arg("--log-dir")
        .arg(&t.dirs.log_dir)
        .spawn()
        .unwrap();
    let r = Run::wait(child, Duration::from_secs(30));
    assert!(r.status.success(), "{r}");
    let pods: Vec<_> = std::fs::read_dir(&t.dirs.log_dir)
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(pods.len(), 1);
    let name = pods[0].file_name().to_string_lossy().into_owned();
    assert!(name.starts_with("default_run-logs_"), "{name}");
    for restart in ["0.log", "1.log"] {
        let text = std::fs::read_to_string(pods[0].path().join("main").join(restart)).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert!(lines.contains(&"stdout F out-line"), "{restart}: {text}");
        assert!(lines.contains(&"stderr F err-line"), "{restart}: {text}");
    }
}

#[test]
fn image_stop_signal_is_used_to_stop() {
    let Some(t) = PodTest::new("image_stop_signal_is_used_to_stop") else {
        return;
    };
    let img = common::busybox_image(&t.dirs, "stopsig:1", &["--stop-signal", "SIGUSR1"]);
    let manifest = t.manifest(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-stopsig
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: main
    image: {img}
    command: ["sh", "-c", "trap 'echo got-usr1; exit 0' USR1; trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]
"#
    ));
    let mut child = t.command(&manifest).spawn().expect("spawn podsup run");
    let lines = wait_for_line(&mut child, "ready");
    let start = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let r = Run::wait(child, Duration::from_secs(20));
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(rest, vec!["main | got-usr1"], "{r}");
    assert!(start.elapsed() < Duration::from_secs(5), "{r}");
    assert!(r.status.success(), "{r}");
}

#[test]
fn invalid_manifests_are_refused_with_positions() {
    let Some(t) = PodTest::new("invalid_manifests_are_refused_with_positions") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-bad
spec:
  containers:
  - name: main
    imagee: IMAGE
"#,
    );
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(r.stderr.contains("pod.yaml:8:5:"), "{r}");
    assert!(r.stderr.contains("unknown field \"imagee\""), "{r}");
    let two = format!(
        "{}---\n{}",
        one_container("run-one", "true"),
        one_container("run-two", "true")
    );
    let r = t.run(&two);
    assert_eq!(r.status.code(), Some(1), "{r}");
    assert!(
        r.stderr
            .contains("holds 2 pods; podsup run runs exactly one"),
        "{r}"
    );
}

#[test]
fn dev_shm_and_ipc_are_shared_by_the_pod() {
    let Some(t) = PodTest::new("dev_shm_and_ipc_are_shared_by_the_pod") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-ipc
spec:
  restartPolicy: Never
  initContainers:
  - name: writer
    image: IMAGE
    command: ["sh", "-c", "echo shared-memory > /dev/shm/token; readlink /proc/self/ns/ipc > /dev/shm/ipc"]
  containers:
  - name: reader
    image: IMAGE
    command: ["sh", "-c", "cat /dev/shm/token; [ $(readlink /proc/self/ns/ipc) = $(cat /dev/shm/ipc) ] && echo same-ipc"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("reader"),
        vec!["shared-memory", "same-ipc"],
        "{r}"
    );
    // Not the host's /dev/shm.
    assert!(!Path::new("/dev/shm/token").exists());
}

#[test]
fn only_stdio_and_default_signals_reach_the_container() {
    let Some(t) = PodTest::new("only_stdio_and_default_signals_reach_the_container") else {
        return;
    };
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-fds
spec:
  restartPolicy: Never
  containers:
  - name: fds
    image: IMAGE
    # ls itself as PID 1 (a shell holds fds of its own: pipe ends, saved stdio); fd 3 is
    # the directory ls reads, so a leaked fd would show as a 4.
    command: ["ls", "/proc/self/fd"]
  - name: signals
    image: IMAGE
    command: ["grep", "-E", "SigBlk|SigIgn", "/proc/self/status"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(r.lines_of("fds"), vec!["0", "1", "2", "3"], "{r}");
    // Nothing blocked or ignored (Rust ignores SIGPIPE, the shim blocks what its signalfd
    // reads, glibc keeps signals 32 and 33): all reset before exec.
    assert_eq!(
        r.lines_of("signals"),
        vec!["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"],
        "{r}"
    );
}

#[test]
fn a_killed_podsup_run_still_stops_its_pod() {
    let Some(t) = PodTest::new("a_killed_podsup_run_still_stops_its_pod") else {
        return;
    };
    let manifest = t.manifest(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-parent-dies
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: mem
    emptyDir: {medium: Memory}
  containers:
  - name: main
    image: IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"]
    volumeMounts: [{name: mem, mountPath: /m}]
"#,
    );
    let mut child = t.command(&manifest).spawn().expect("spawn podsup run");
    let _lines = wait_for_line(&mut child, "ready");
    let pods: Vec<_> = std::fs::read_dir(t.dirs.run.join("pods"))
        .unwrap()
        .flatten()
        .collect();
    let shim: i32 = std::fs::read_to_string(pods[0].path().join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    // The shim gets SIGTERM as its parent-death signal and stops the pod by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{shim}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{shim}")).exists(),
        "the shim outlived podsup run"
    );
}

/// A two-layer image made by umoci: the upper layer's file wins and its whiteout hides a
/// file of the lower one, through overlayfs. Optional: skips without umoci (Debian package).
#[test]
fn layers_stack_in_order_with_whiteouts() {
    let Some(t) = PodTest::new("layers_stack_in_order_with_whiteouts") else {
        return;
    };
    let have_umoci = std::process::Command::new("umoci")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_umoci {
        eprintln!(
            "skipped layers_stack_in_order_with_whiteouts: needs umoci (apt-get install umoci)"
        );
        return;
    }
    let umoci = |args: &[&str]| {
        let out = std::process::Command::new("umoci")
            .args(args)
            .current_dir(t.tmp())
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci {args:?}: {out:?}");
    };
    umoci(&["init", "--layout", "oci"]);
    umoci(&["new", "--image", "oci:v1"]);
    umoci(&["unpack", "--image", "oci:v1", "bundle"]);
    let rootfs = t.tmp().join("bundle/rootfs");
    common::busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("etc/which"), "lower\n").unwrap();
    std::fs::write(rootfs.join("etc/doomed"), "lower\n").unwrap();
    umoci(&["repack", "--refresh-bundle", "--image", "oci:v1", "bundle"]);
    std::fs::write(rootfs.join("etc/which"), "upper\n").unwrap();
    std::fs::remove_file(rootfs.join("etc/doomed")).unwrap();
    umoci(&["repack", "--image", "oci:v1", "bundle"]);
    let out = podsup()
        .args(["image", "import"])
        .arg(t.tmp().join("oci"))
        .arg("layered:v1")
        .arg("--root")
        .arg(&t.dirs.root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = t.run(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: run-layers
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: layered:v1
    command: ["sh", "-c", "cat /etc/which; test -e /etc/doomed || echo doomed-is-gone; grep -o 'lowerdir=[^,]*' /proc/mounts | tr ':' '\\n' | wc -l"]
"#,
    );
    assert!(r.status.success(), "{r}");
    assert_eq!(
        r.lines_of("main"),
        vec!["upper", "doomed-is-gone", "2"],
        "{r}"
    );
}
