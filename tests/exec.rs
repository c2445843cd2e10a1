//! `podsup exec` and the library function under it (`container::exec::spawn_in`), as root,
//! against a real daemon and real containers. Each test has its own directories, pod
//! names and cgroup parent; the daemon guard checks that nothing outlived the test.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use common::daemon::{DaemonTest, find};
use nix::sys::wait::{WaitStatus, waitpid};
use podsup::container::exec::{self, ExecStdio, ExecTarget};
use serde_json::Value;

/// A one-container pod whose container runs `command` (YAML flow list).
fn pod(name: &str, extra_spec: &str, container_extra: &str, command: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
{extra_spec}  containers:
  - name: main
    image: IMAGE
    command: {command}
{container_extra}"#
    )
}

fn uid_of(s: &Value, pod: &str) -> String {
    find(s, pod).expect("pod")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string()
}

/// The published exec descriptor of a running container.
fn target(t: &DaemonTest, pod: &str, container: &str) -> ExecTarget {
    let uid = uid_of(&t.status(), pod);
    let path: PathBuf = t
        .dirs
        .run
        .join("pods")
        .join(uid)
        .join("containers")
        .join(container)
        .join(exec::DESCRIPTOR_NAME);
    ExecTarget::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `argv` in the container through `spawn_in`, as the shim will for probes: returns
/// (exit code, stdout).
fn run_in(target: &ExecTarget, argv: &[&str]) -> (i32, String) {
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let err = OwnedFd::from(std::fs::File::create("/dev/null").unwrap());
    let stdio = ExecStdio::null_stdin(wr, err).unwrap();
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let pid = exec::spawn_in(target, &argv, stdio).expect("spawn_in");
    let mut out = String::new();
    std::fs::File::from(rd).read_to_string(&mut out).unwrap();
    let code = match waitpid(pid, None).expect("waitpid: a direct child") {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => panic!("{other:?}"),
    };
    (code, out)
}

/// stdin, stdout and stderr on /dev/null.
fn quiet() -> ExecStdio {
    let null = || OwnedFd::from(std::fs::File::create("/dev/null").unwrap());
    ExecStdio::null_stdin(null(), null()).unwrap()
}

fn ns_link(which: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/self/ns/{which}")).unwrap()
}

#[test]
fn spawn_in_starts_a_direct_child_inside_the_container() {
    let Some(t) = DaemonTest::new("spawn_in_starts_a_direct_child_inside_the_container") else {
        return;
    };
    t.write("lib.yaml", &pod("x-lib", "", "", r#"["sleep", "3601"]"#));
    t.wait_running("x-lib");
    let target = target(&t, "x-lib", "main");
    assert!(target.is_running());
    let before = (ns_link("pid_for_children"), ns_link("mnt"), ns_link("uts"));

    let (code, out) = run_in(&target, &["hostname"]);
    assert_eq!((code, out.trim()), (0, "x-lib"));
    // The container's own PID namespace: its PID 1 is the container's command, and the
    // process sees itself with a small pid there.
    let (code, out) = run_in(&target, &["cat", "/proc/1/cmdline"]);
    assert_eq!((code, out.replace('\0', " ").trim()), (0, "sleep 3601"));
    let (_, out) = run_in(&target, &["sh", "-c", "echo $$"]);
    let inner: i32 = out.trim().parse().unwrap();
    assert!(inner > 1 && inner < 100, "pid inside: {inner}");
    // The same cgroups (every hierarchy) and credentials as PID 1.
    let (_, own) = run_in(&target, &["cat", "/proc/self/cgroup"]);
    let (_, pid1) = run_in(&target, &["cat", "/proc/1/cgroup"]);
    assert_eq!(own, pid1);
    assert!(own.contains(&t.cgroup_parent), "{own}");
    let creds = r"grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs)' /proc/";
    let (_, own) = run_in(&target, &["sh", "-c", &format!("{creds}self/status")]);
    let (_, pid1) = run_in(&target, &["sh", "-c", &format!("{creds}1/status")]);
    assert_eq!(own, pid1);
    assert_eq!(own.lines().count(), 9, "{own}");
    // Exit codes come back through waitpid.
    assert_eq!(run_in(&target, &["sh", "-c", "exit 7"]).0, 7);
    // The caller's own namespaces (and the one for its children) are untouched.
    assert_eq!(
        (ns_link("pid_for_children"), ns_link("mnt"), ns_link("uts")),
        before
    );
    // A command that does not exist is an error before exec, with 127 as its status.
    let err = exec::spawn_in(&target, &["nosuchcmd".to_string()], quiet()).unwrap_err();
    assert_eq!(err.exit_status(), Some(127), "{err}");
    // A hanging command and what it started die with its process group at a timeout,
    // and the caller reaps it: nothing stays behind in the container.
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let err = OwnedFd::from(std::fs::File::create("/dev/null").unwrap());
    let argv = ["sh", "-c", "sleep 3700 & echo started; wait"].map(String::from);
    let pid = exec::spawn_in(&target, &argv, ExecStdio::null_stdin(wr, err).unwrap()).unwrap();
    let mut line = [0u8; 8];
    std::fs::File::from(rd).read_exact(&mut line).unwrap();
    assert_eq!(&line, b"started\n");
    nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(matches!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    // SIGKILL is delivered; the sleep may take a moment to finish dying.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, left) = run_in(&target, &["ps", "-o", "args"]);
        if !left.contains("sleep 3700") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A stale descriptor (another start time) is refused, never run in whatever has the pid.
    let mut stale = target.clone();
    stale.start_time += 1;
    assert!(!stale.is_running());
    let err = exec::spawn_in(&stale, &["true".to_string()], quiet()).unwrap_err();
    assert!(matches!(err, exec::ExecError::NotRunning { .. }), "{err}");
}

/// `podsup exec` with the test's flags; stdin from /dev/null unless the caller sets one.
fn podsup_exec(t: &DaemonTest, args: &[&str]) -> std::process::Command {
    let mut c = common::podsup();
    c.arg("exec")
        .args(t.flags())
        .args(args)
        .stdin(std::process::Stdio::null());
    c
}

fn output(mut c: std::process::Command) -> (i32, String, String) {
    let out = c.output().expect("run podsup exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn exec_out(t: &DaemonTest, args: &[&str]) -> (i32, String, String) {
    output(podsup_exec(t, args))
}

const SLEEPER: &str = r#"["sleep", "3602"]"#;

#[test]
fn exec_prints_the_hostname_and_returns_exit_codes() {
    let Some(t) = DaemonTest::new("exec_prints_the_hostname_and_returns_exit_codes") else {
        return;
    };
    t.write("a.yaml", &pod("x-host", "", "", SLEEPER));
    t.wait_running("x-host");
    assert_eq!(
        exec_out(&t, &["x-host", "--", "hostname"]),
        (0, "x-host\n".into(), String::new())
    );
    assert_eq!(exec_out(&t, &["x-host", "--", "sh", "-c", "exit 7"]).0, 7);
    // Killed by a signal: 128 + signal, as a shell reports it.
    assert_eq!(
        exec_out(&t, &["x-host", "--", "sh", "-c", "kill -9 $$"]).0,
        137
    );
    // The container's own PID namespace: PID 1 is its command.
    let (code, out, _) = exec_out(&t, &["x-host", "--", "cat", "/proc/1/cmdline"]);
    assert_eq!((code, out.replace('\0', " ").trim()), (0, "sleep 3602"));
    // No shell needed: the binary is exec'd directly, found in the container's PATH.
    let (code, out, _) = exec_out(&t, &["x-host", "--", "busybox", "echo", "direct"]);
    assert_eq!((code, out.as_str()), (0, "direct\n"));
    // Without -i the command's stdin is empty.
    assert_eq!(
        exec_out(&t, &["x-host", "--", "cat"]),
        (0, String::new(), String::new())
    );
    // A missing command: 127 and runc's words.
    let (code, _, err) = exec_out(&t, &["x-host", "--", "nosuchcmd"]);
    assert_eq!(code, 127, "{err}");
    assert!(
        err.contains("\"nosuchcmd\": executable file not found in $PATH"),
        "{err}"
    );
    // A path that does not exist: 127 too.
    assert_eq!(exec_out(&t, &["x-host", "--", "/no/such"]).0, 127);
    // Only one container: no "Defaulted container" note.
    assert!(
        !exec_out(&t, &["x-host", "--", "true"])
            .2
            .contains("Defaulted")
    );
}

#[test]
fn exec_runs_as_the_container_user_with_its_env_and_workdir() {
    let Some(t) = DaemonTest::new("exec_runs_as_the_container_user_with_its_env_and_workdir")
    else {
        return;
    };
    let extra = "    workingDir: /tmp\n    env:\n    - name: GREETING\n      value: hello-$(NAME)\n    - name: NAME\n      value: x\n    securityContext:\n      runAsUser: 1000\n      runAsGroup: 3000\n";
    t.write("u.yaml", &pod("x-user", "", extra, SLEEPER));
    t.wait_running("x-user");
    let (code, out, err) = exec_out(
        &t,
        &[
            "x-user",
            "--",
            "sh",
            "-c",
            "id -u; id -g; echo $GREETING; echo $HOSTNAME; pwd",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1000\n3000\nhello-$(NAME)\nx-user\n/tmp\n");
    // Exactly PID 1's credentials (uid/gid/groups, all five capability sets,
    // no_new_privs) and cgroups, compared inside the container.
    let creds = "grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs)' /proc/";
    let mine = exec_out(
        &t,
        &[
            "x-user",
            "--",
            "sh",
            "-c",
            &format!("{creds}self/status; cat /proc/self/cgroup"),
        ],
    );
    let pid1 = exec_out(
        &t,
        &[
            "x-user",
            "--",
            "sh",
            "-c",
            &format!("{creds}1/status; cat /proc/1/cgroup"),
        ],
    );
    assert_eq!(mine, pid1);
    assert!(mine.1.contains("NoNewPrivs:\t1"), "{}", mine.1);
    assert!(mine.1.contains(&t.cgroup_parent), "{}", mine.1);
}

#[test]
fn exec_forwards_stdin_and_signals() {
    let Some(t) = DaemonTest::new("exec_forwards_stdin_and_signals") else {
        return;
    };
    t.write("s.yaml", &pod("x-stdin", "", "", SLEEPER));
    t.wait_running("x-stdin");
    let mut c = podsup_exec(&t, &["-i", "x-stdin", "--", "cat"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hi\nthere\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "hi\nthere\n")
    );
    // SIGTERM to podsup reaches the command, whose exit status comes back.
    let mut c = podsup_exec(
        &t,
        &[
            "x-stdin",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    c.stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut line = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut line)
        .unwrap();
    assert_eq!(&line, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn exec_with_a_terminal_under_a_real_pty() {
    use rustix::pty::OpenptFlags;
    use rustix::termios::{LocalModes, Winsize, tcgetattr, tcsetwinsize};
    let Some(t) = DaemonTest::new("exec_with_a_terminal_under_a_real_pty") else {
        return;
    };
    t.write("t.yaml", &pod("x-tty", "", "", SLEEPER));
    t.wait_running("x-tty");
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    rustix::pty::unlockpt(&master).unwrap();
    let slave =
        rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    let ws = Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&slave, ws).unwrap();
    let before = tcgetattr(&slave).unwrap();
    assert!(
        before
            .local_modes
            .contains(LocalModes::ICANON | LocalModes::ECHO)
    );
    // What the pty shows, read on a thread (sent on as it comes) until the last slave fd
    // is closed.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = {
        let master = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rustix::io::read(&master, &mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        })
    };
    let mut shown = String::new();
    let wait_for = |shown: &mut String, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !shown.contains(what) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => shown.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {what:?} on the terminal; it shows: {shown:?}"),
            }
        }
    };
    let mut c = podsup_exec(
        &t,
        &[
            "-i",
            "-t",
            "x-tty",
            "--",
            "sh",
            "-c",
            "tty; echo $TERM; stty size; while read x; do stty size; done; exit 3",
        ],
    );
    c.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    let mut child = c.spawn().unwrap();
    drop(c);
    // The pty is the container's, with our window size from the start.
    wait_for(&mut shown, "33 101");
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert!(shown.contains("xterm"), "{shown}");
    // Raw mode while it runs.
    let during = tcgetattr(&slave).unwrap();
    assert!(!during.local_modes.contains(LocalModes::ICANON));
    // A resize: new size, then SIGWINCH (the kernel sends it to a terminal's foreground
    // group; podsup here is not in one, so the test sends it).
    let bigger = Winsize {
        ws_row: 40,
        ws_col: 120,
        ..ws
    };
    tcsetwinsize(&slave, bigger).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    // Each typed line makes the command print its size again, until the new one shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !shown.contains("40 120") {
        assert!(std::time::Instant::now() < deadline, "no resize: {shown:?}");
        rustix::io::write(&master, b"go\r").unwrap();
        if let Ok(b) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            shown.push_str(&String::from_utf8_lossy(&b));
        }
    }
    // Ctrl-D (raw mode passes it on): end of input for the command's `read`.
    rustix::io::write(&master, b"\x04").unwrap();
    let status = child.wait().unwrap();
    // Raw mode was set on our terminal and is restored.
    let after = tcgetattr(&slave).unwrap();
    assert_eq!(after.local_modes, before.local_modes);
    drop(slave);
    reader.join().unwrap();
    assert_eq!(status.code(), Some(3), "{shown}");
    drop(master);
}

#[test]
fn exec_refuses_what_does_not_run_and_defaults_like_kubectl() {
    let Some(t) = DaemonTest::new("exec_refuses_what_does_not_run_and_defaults_like_kubectl")
    else {
        return;
    };
    t.write(
        "done.yaml",
        &pod(
            "x-done",
            "  restartPolicy: Never\n",
            "",
            r#"["sh", "-c", "exit 0"]"#,
        ),
    );
    t.write(
        "two.yaml",
        &format!(
            "{}  - name: second\n    image: IMAGE\n    command: {SLEEPER}\n",
            pod("x-two", "", "", SLEEPER)
        ),
    );
    t.wait_running("x-two");
    t.wait_until("x-done terminated", |s| {
        find(s, "x-done")
            .is_some_and(|p| p["status"]["containerStatuses"][0]["state"]["terminated"].is_object())
    });
    let (code, out, err) = exec_out(&t, &["x-done", "--", "true"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(
        err.trim(),
        "podsup exec: cannot exec into container \"main\" of pod default/x-done: it is not running (terminated: Completed, exit code 0)"
    );
    let (code, _, err) = exec_out(&t, &["nope", "--", "true"]);
    assert_eq!(
        (code, err.trim()),
        (1, "podsup exec: pod default/nope not found")
    );
    let (code, _, err) = exec_out(&t, &["-n", "other", "x-two", "--", "true"]);
    assert_eq!(
        (code, err.trim()),
        (1, "podsup exec: pod other/x-two not found")
    );
    let (code, _, err) = exec_out(&t, &["x-two", "-c", "third", "--", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("container \"third\" is not in pod default/x-two"),
        "{err}"
    );
    // Several containers: the first is the default, with kubectl's note on stderr.
    let (code, out, err) = exec_out(&t, &["x-two", "--", "true"]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(err, "Defaulted container \"main\" out of: main, second\n");
    let (code, _, err) = exec_out(&t, &["x-two", "-c", "second", "--", "true"]);
    assert_eq!((code, err.as_str()), (0, ""));
}

#[test]
fn exec_into_a_pod_that_shares_its_process_namespace() {
    let Some(t) = DaemonTest::new("exec_into_a_pod_that_shares_its_process_namespace") else {
        return;
    };
    t.write(
        "sh.yaml",
        &pod("x-shared", "  shareProcessNamespace: true\n", "", SLEEPER),
    );
    t.wait_running("x-shared");
    // PID 1 is the pod's pause process; the container's command is a neighbour.
    let (code, out, err) = exec_out(
        &t,
        &[
            "x-shared",
            "--",
            "sh",
            "-c",
            "cat /proc/1/comm; hostname; ps -o args",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("podsup-pause\nx-shared\n"), "{out}");
    assert!(out.contains("sleep 3602"), "{out}");
}
