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
    // A stale descriptor (another start time) is refused, never run in whatever has the pid.
    let mut stale = target.clone();
    stale.start_time += 1;
    assert!(!stale.is_running());
    let err = exec::spawn_in(&stale, &["true".to_string()], quiet()).unwrap_err();
    assert!(matches!(err, exec::ExecError::NotRunning { .. }), "{err}");
}
