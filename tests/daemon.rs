//! `podsup daemon` and its CLI against the real kernel, as root: real daemon processes, the
//! real binary for every CLI call. Each test has its own directories, unique pod names, a
//! cgroup parent of its own, and a guard that (even after a failed assertion) removes the
//! manifests, stops the daemon and every shim it started by PID, and fails the test if a
//! mount, process or pod directory outlived it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::daemon::{DaemonTest, find, restarts};
use common::{TestDirs, podsup, require_root};
use serde_json::Value;

/// A pod of two containers whose command lines carry `mark_a` / `mark_b`; they stop at
/// once on SIGTERM.
fn two_containers(name: &str, mark_a: &str, mark_b: &str, labels: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: a
    image: IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; echo {mark_a}; while :; do sleep 0.1; done"]
  - name: b
    image: IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; echo {mark_b}; while :; do sleep 0.1; done"]
"#
    )
}

#[test]
fn dropped_file_runs_and_removed_file_stops_and_cleans() {
    let Some(t) = DaemonTest::new("dropped_file_runs_and_removed_file_stops_and_cleans") else {
        return;
    };
    let path = t.write("drop.yaml", &two_containers("d-drop", "A1", "B1", ""));
    let s = t.wait_running("d-drop");
    let pod = find(&s, "d-drop").unwrap();
    assert_eq!(
        pod["metadata"]["annotations"]["podsup.io/source"],
        path.display().to_string()
    );
    let table = t.cli(&["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("d-drop") && l.contains("2/2") && l.contains("Running")),
        "{text}"
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    // Idle means idle: no read of anything while nothing changes (no polling, and the
    // daemon's own reads of a manifest do not wake it up again).
    std::thread::sleep(Duration::from_millis(300));
    let reads = || {
        let pid = t.daemon.as_ref().unwrap().id();
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("syscr: ").map(|v| v.parse::<u64>().unwrap()))
            .unwrap()
    };
    let before = reads();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(reads(), before, "the idle daemon read something");
    std::fs::remove_file(&path).unwrap();
    t.wait_until("the pod gone", |s| find(s, "d-drop").is_none());
    assert!(!t.dirs.run.join("pods").join(&uid).exists());
    assert!(!t.dirs.root.join("pods").join(&uid).exists());
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    for reason in ["Created", "Started", "Killing", "Stopped"] {
        assert!(ev.contains(reason), "{ev}");
    }
    // With no pod left, a stopped daemon leaves no cgroup of podsup behind, parent included.
    let mut t = t;
    t.kill_daemon("-TERM");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for mp in mounts
        .lines()
        .filter(|l| l.contains(" - cgroup"))
        .filter_map(|l| l.split(' ').nth(4))
    {
        let dir = Path::new(mp).join(&t.cgroup_parent);
        assert!(
            !dir.exists(),
            "{} left after the daemon stopped",
            dir.display()
        );
    }
}

#[test]
fn edits_apply_with_the_smallest_disruption() {
    let Some(t) = DaemonTest::new("edits_apply_with_the_smallest_disruption") else {
        return;
    };
    t.write("edit.yaml", &two_containers("d-edit", "A1", "B1", ""));
    t.wait_running("d-edit");
    let shim = t.shim_pid("d-edit");
    let a1 = t.container_pid("d-edit", "A1").expect("container a");
    let b1 = t.container_pid("d-edit", "B1").expect("container b");

    // Labels only: nothing restarts.
    t.write(
        "edit.yaml",
        &two_containers("d-edit", "A1", "B1", "tier: web"),
    );
    t.wait_until("the label applied", |s| {
        find(s, "d-edit").is_some_and(|p| p["metadata"]["labels"]["tier"] == "web")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.container_pid("d-edit", "A1"), Some(a1));
    assert_eq!(t.container_pid("d-edit", "B1"), Some(b1));

    // One container's command: only it restarts; the pod (shim) and b stay.
    t.write(
        "edit.yaml",
        &two_containers("d-edit", "A2", "B1", "tier: web"),
    );
    let s = t.wait_until("a restarted with its new command", |s| {
        find(s, "d-edit").is_some_and(|_| restarts(s, "d-edit", "a") == 1)
            && t.container_pid("d-edit", "A2").is_some()
    });
    assert_eq!(restarts(&s, "d-edit", "b"), 0);
    assert_eq!(t.shim_pid("d-edit"), shim);
    assert_eq!(t.container_pid("d-edit", "B1"), Some(b1));
    assert_eq!(t.container_pid("d-edit", "A1"), None);
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    assert_eq!(ev.matches("container a started").count(), 2, "{ev}");
    assert_eq!(ev.matches("container b started").count(), 1, "{ev}");
    assert_eq!(
        ev.matches("Created").count(),
        1,
        "one pod, never recreated: {ev}"
    );
}

#[test]
fn a_crashing_container_shows_crash_loop_back_off_and_events() {
    let Some(t) = DaemonTest::new("a_crashing_container_shows_crash_loop_back_off_and_events")
    else {
        return;
    };
    t.write(
        "crash.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: d-crash
spec:
  containers:
  - name: crash
    image: IMAGE
    command: ["sh", "-c", "echo oops; exit 3"]
"#,
    );
    t.wait_until("a restart", |s| {
        find(s, "d-crash").is_some_and(|_| restarts(s, "d-crash", "crash") >= 1)
    });
    let text = String::from_utf8_lossy(&t.cli(&["status"]).stdout).into_owned();
    assert!(
        text.lines().any(|l| l.starts_with("d-crash")
            && (l.contains("CrashLoopBackOff") || l.contains("Error") || l.contains("Running"))),
        "{text}"
    );
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    assert!(
        ev.contains("container crash exited with code 3 (Error)"),
        "{ev}"
    );
    assert!(ev.contains("BackOff"), "{ev}");
    let s = t.status();
    let cs = &find(&s, "d-crash").unwrap()["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
}

/// The daemon's back-off flags reach its pods: with `--backoff-initial 0` a crash loop
/// restarts at once every time (the default curve would wait 10 s before the second).
#[test]
fn daemon_back_off_flags_reach_the_pods() {
    let Some(t) = DaemonTest::with_flags(
        "daemon_back_off_flags_reach_the_pods",
        &["--backoff-initial", "0", "--backoff-max", "1s"],
    ) else {
        return;
    };
    t.write(
        "fast.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: d-fast
spec:
  containers:
  - name: crash
    image: IMAGE
    command: ["sh", "-c", "sleep 0.1; exit 3"]
"#,
    );
    let start = std::time::Instant::now();
    t.wait_until("three restarts", |s| {
        find(s, "d-fast").is_some_and(|_| restarts(s, "d-fast", "crash") >= 3)
    });
    assert!(
        start.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    // A daemon cannot do without cgroups: refused in one line.
    let out = podsup()
        .arg("daemon")
        .args(t.flags())
        .arg("--no-cgroups")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--no-cgroups"),
        "{out:?}"
    );
}

#[test]
fn invalid_edit_keeps_the_pod_and_the_fix_applies() {
    let Some(t) = DaemonTest::new("invalid_edit_keeps_the_pod_and_the_fix_applies") else {
        return;
    };
    let path = t.write("bad.yaml", &two_containers("d-bad", "A1", "B1", ""));
    t.wait_running("d-bad");
    let a1 = t.container_pid("d-bad", "A1").unwrap();
    let broken = two_containers("d-bad", "A2", "B1", "").replace(
        "    image: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo B1",
        "    imagee: IMAGE\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; echo B1",
    );
    t.write("bad.yaml", &broken);
    let s = t.wait_until("the error reported", |s| {
        s["problems"].as_array().is_some_and(|p| !p.is_empty())
    });
    let msg = s["problems"][0]["message"].as_str().unwrap();
    let expected = format!("{}:13:5:", path.display());
    assert!(msg.contains(&expected), "{msg}");
    assert!(msg.contains("imagee"), "{msg}");
    // Human output shows it too.
    let text = String::from_utf8_lossy(&t.cli(&["status"]).stdout).into_owned();
    assert!(text.contains(&expected), "{text}");
    assert_eq!(t.container_pid("d-bad", "A1"), Some(a1));
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    assert!(ev.contains("ManifestInvalid"), "{ev}");

    // The fix applies (a's command changed meanwhile).
    t.write("bad.yaml", &two_containers("d-bad", "A2", "B1", ""));
    t.wait_until("the fix applied", |s| {
        s["problems"].as_array().is_some_and(|p| p.is_empty())
            && t.container_pid("d-bad", "A2").is_some()
    });
}

#[test]
fn editor_saves_of_the_same_content_restart_nothing() {
    let Some(t) = DaemonTest::new("editor_saves_of_the_same_content_restart_nothing") else {
        return;
    };
    let text = two_containers("d-editor", "A1", "B1", "").replace("IMAGE", &t.image);
    let path = t.write("ed.yaml", &text);
    t.wait_running("d-editor");
    let shim = t.shim_pid("d-editor");
    let (a1, b1) = (
        t.container_pid("d-editor", "A1").unwrap(),
        t.container_pid("d-editor", "B1").unwrap(),
    );
    let dir = &t.dirs.manifests;
    let sh = |script: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    };
    let copy = t.tmp().join("copy.yaml");
    std::fs::write(&copy, &text).unwrap();
    let c = copy.display();
    // vim with a backup copy (backupcopy=no): rename to x~, write a new file, delete x~.
    sh(&format!(
        "mv ed.yaml ed.yaml~ && cp {c} ed.yaml && rm ed.yaml~"
    ));
    // vim writing its probe file 4913 and a swap file next to it.
    sh(&format!(
        "touch 4913 && rm 4913 && touch .ed.yaml.swp && cat {c} > ed.yaml && rm .ed.yaml.swp"
    ));
    // sed -i (a temp file renamed over).
    sh("sed -i 's/A1/A1/' ed.yaml");
    // cp over, mv into place.
    sh(&format!("cp {c} ed.yaml"));
    sh(&format!("cp {c} .ed.tmp && mv .ed.tmp ed.yaml"));
    // Truncate, pause (an editor mid-save), then write.
    sh(&format!(": > ed.yaml && sleep 0.3 && cat {c} > ed.yaml"));
    std::thread::sleep(Duration::from_millis(1500));
    let s = t.status();
    assert_eq!(restarts(&s, "d-editor", "a"), 0);
    assert_eq!(restarts(&s, "d-editor", "b"), 0);
    assert_eq!(t.shim_pid("d-editor"), shim);
    assert_eq!(t.container_pid("d-editor", "A1"), Some(a1));
    assert_eq!(t.container_pid("d-editor", "B1"), Some(b1));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn killed_daemon_leaves_pods_running_and_a_new_one_adopts_them() {
    let Some(mut t) =
        DaemonTest::new("killed_daemon_leaves_pods_running_and_a_new_one_adopts_them")
    else {
        return;
    };
    t.write("adopt.yaml", &two_containers("d-adopt", "A1", "B1", ""));
    t.wait_running("d-adopt");
    // A restart count to keep: restart container a through the CLI.
    let out = t.cli(&["restart", "d-adopt", "-c", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_until("a restarted", |s| restarts(s, "d-adopt", "a") == 1);
    t.wait_running("d-adopt");
    let shim = t.shim_pid("d-adopt");
    let b1 = t.container_pid("d-adopt", "B1").unwrap();

    t.kill_daemon("-KILL");
    let out = t.cli(&["status"]);
    assert!(!out.status.success());
    assert!(
        Path::new(&format!("/proc/{shim}")).exists(),
        "the shim died with the daemon"
    );

    t.start_daemon();
    let s = t.wait_running("d-adopt");
    assert_eq!(restarts(&s, "d-adopt", "a"), 1);
    assert_eq!(restarts(&s, "d-adopt", "b"), 0);
    assert_eq!(t.shim_pid("d-adopt"), shim);
    assert_eq!(t.container_pid("d-adopt", "B1"), Some(b1));
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    assert!(ev.contains("Adopted"), "{ev}");
}

#[test]
fn killed_shim_is_cleaned_and_the_pod_rebuilt() {
    let Some(t) = DaemonTest::new("killed_shim_is_cleaned_and_the_pod_rebuilt") else {
        return;
    };
    t.write("shim.yaml", &two_containers("d-shim", "A1", "B1", ""));
    let s = t.wait_running("d-shim");
    let uid = find(&s, "d-shim").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let shim = t.shim_pid("d-shim");
    let a1 = t.container_pid("d-shim", "A1").unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &shim.to_string()])
        .status()
        .unwrap();
    let s = t.wait_until("a new copy of the pod", |s| {
        find(s, "d-shim").is_some_and(|p| p["metadata"]["uid"] != uid.as_str())
    });
    let _ = s;
    t.wait_running("d-shim");
    assert!(!t.dirs.run.join("pods").join(&uid).exists());
    assert!(!t.dirs.root.join("pods").join(&uid).exists());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{a1}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{a1}")).exists(),
        "the old container survived"
    );
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    assert!(ev.contains("ShimDied"), "{ev}");
}

#[test]
fn a_burst_of_edits_ends_in_the_final_state_with_few_restarts() {
    let Some(t) = DaemonTest::new("a_burst_of_edits_ends_in_the_final_state_with_few_restarts")
    else {
        return;
    };
    t.write("burst.yaml", &two_containers("d-burst", "A0", "B0", ""));
    t.wait_running("d-burst");
    let b0 = t.container_pid("d-burst", "B0").unwrap();
    let path = t.dirs.manifests.join("burst.yaml");
    let start = Instant::now();
    for i in 1..=200 {
        let text =
            two_containers("d-burst", &format!("A{i}x"), "B0", "").replace("IMAGE", &t.image);
        std::fs::write(&path, text).unwrap();
        std::thread::sleep(Duration::from_millis(4));
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    let s = t.wait_until("the last edit applied", |_| {
        t.container_pid("d-burst", "A200x").is_some()
    });
    let _ = s;
    let s = t.wait_running("d-burst");
    let n = restarts(&s, "d-burst", "a");
    assert!((1..=4).contains(&n), "container a restarted {n} times");
    assert_eq!(restarts(&s, "d-burst", "b"), 0);
    assert_eq!(t.container_pid("d-burst", "B0"), Some(b0));
}

#[test]
fn the_same_pod_in_two_files_runs_once_and_the_second_is_reported() {
    let Some(t) = DaemonTest::new("the_same_pod_in_two_files_runs_once_and_the_second_is_reported")
    else {
        return;
    };
    let first = t.write("a-first.yaml", &two_containers("d-dup", "A1", "B1", ""));
    let second = t.write("b-second.yaml", &two_containers("d-dup", "A9", "B9", ""));
    let s = t.wait_until("the duplicate reported", |s| {
        find(s, "d-dup").is_some() && s["problems"].as_array().is_some_and(|p| !p.is_empty())
    });
    let p = &s["problems"][0];
    assert_eq!(p["reason"], "DuplicatePod");
    assert_eq!(p["file"], second.display().to_string());
    assert_eq!(
        find(&s, "d-dup").unwrap()["metadata"]["annotations"]["podsup.io/source"],
        first.display().to_string()
    );
    t.wait_running("d-dup");
    assert!(t.container_pid("d-dup", "A1").is_some());
    assert!(t.container_pid("d-dup", "A9").is_none());
    let items = s["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
}

#[test]
fn unsafe_directories_are_refused() {
    if !require_root("unsafe_directories_are_refused") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dirs = TestDirs::new();
    std::fs::set_permissions(&dirs.manifests, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = podsup().arg("daemon").args(dirs.flags()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing to run"), "{err}");
    assert!(err.contains("writable by others"), "{err}");
    assert!(err.contains(&dirs.manifests.display().to_string()), "{err}");
    std::fs::set_permissions(&dirs.manifests, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix_chown(&dirs.run, 1000);
    let out = podsup().arg("daemon").args(dirs.flags()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("owned by uid 1000"), "{err}");
    assert!(!dirs.run.join("podsup.sock").exists());
}

fn nix_chown(path: &Path, uid: u32) {
    let st = std::process::Command::new("chown")
        .arg(uid.to_string())
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn cli_without_a_daemon_says_so_in_one_line() {
    let dirs = TestDirs::new();
    for verb in [
        vec!["status"],
        vec!["events"],
        vec!["logs", "web"],
        vec!["restart", "web"],
    ] {
        let out = podsup().args(&verb).args(dirs.flags()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{verb:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{verb:?}: {err}");
        assert!(err.contains("cannot reach the podsup daemon"), "{err}");
        assert!(err.contains("podsup daemon"), "{err}");
        assert!(err.contains(&dirs.run.display().to_string()), "{err}");
    }
}

#[test]
fn systemd_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/podsup.service");
    let text = std::fs::read_to_string(&unit).expect("packaging/podsup.service");
    for line in ["Type=notify", "KillMode=process", "Restart=always"] {
        assert!(text.lines().any(|l| l.trim() == line), "missing {line}");
    }
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
    else {
        eprintln!("skipped systemd-analyze verify: systemd-analyze not installed");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    // The unit names /usr/bin/podsup, which need not exist on a build machine.
    let real: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("/usr/bin/podsup") && !l.trim().is_empty())
        .collect();
    assert!(real.is_empty(), "systemd-analyze verify:\n{err}");
}

#[test]
fn logs_restart_and_previous() {
    let Some(t) = DaemonTest::new("logs_restart_and_previous") else {
        return;
    };
    t.write("logs.yaml", &two_containers("d-logs", "A1", "B1", ""));
    t.wait_running("d-logs");
    let logs = |args: &[&str]| {
        let mut v = vec!["logs", "d-logs"];
        v.extend(args);
        let out = t.cli(&v);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs(&["-c", "a"]).1 != "A1\n" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(logs(&["-c", "a"]).1, "A1\n");
    // Two containers: -c is required, and the message names them.
    let (code, _, err) = logs(&[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("-c") && err.contains("a, b"), "{err}");
    let (_, ts, _) = logs(&["-c", "b", "--timestamps"]);
    assert!(ts.ends_with(" B1\n") && ts.starts_with("20"), "{ts}");

    let out = t.cli(&["restart", "d-logs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_until("both restarted", |s| {
        restarts(s, "d-logs", "a") == 1 && restarts(s, "d-logs", "b") == 1
    });
    t.wait_running("d-logs");
    assert_eq!(logs(&["-c", "a", "--previous"]).1, "A1\n");
    let (code, _, err) = logs(&["-c", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("\"nope\""), "{err}");

    // -f prints what comes and ends when the pod goes away.
    let mut follow = podsup()
        .args(["logs", "d-logs", "-c", "a", "-f"])
        .args(t.flags())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(t.dirs.manifests.join("logs.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = follow.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        if Instant::now() > deadline {
            let _ = follow.kill();
            let _ = follow.wait();
            panic!("logs -f did not end with the pod");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut text = String::new();
    use std::io::Read;
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.starts_with("A1\n"), "{text}");
}

#[test]
fn ready_is_sent_to_systemd_after_the_first_reconcile() {
    if !require_root("ready_is_sent_to_systemd_after_the_first_reconcile") {
        return;
    }
    let dirs = TestDirs::new();
    let image = common::busybox_image(&dirs, "busybox-test", &[]);
    std::fs::write(
        dirs.manifests.join("r.yaml"),
        two_containers("d-ready", "A1", "B1", "").replace("IMAGE", &image),
    )
    .unwrap();
    let sock_path = dirs.tmp.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut t = DaemonTest {
        dirs,
        image,
        daemon: None,
        cgroup_parent: common::unique_cgroup_parent(),
        log_no: 1,
        extra: Vec::new(),
    };
    let log = std::fs::File::create(t.tmp().join("daemon1.log")).unwrap();
    t.daemon = Some(
        podsup()
            .arg("daemon")
            .args(t.flags())
            .args(["--cgroup-parent", &t.cgroup_parent])
            .env("NOTIFY_SOCKET", &sock_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // By then the pod was started.
    let s = t.status();
    assert!(find(&s, "d-ready").is_some());
    t.wait_running("d-ready");
}

#[test]
fn a_finished_pod_stays_finished_across_daemon_restarts() {
    let Some(mut t) = DaemonTest::new("a_finished_pod_stays_finished_across_daemon_restarts")
    else {
        return;
    };
    t.write(
        "once.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: d-once
spec:
  restartPolicy: Never
  containers:
  - name: once
    image: IMAGE
    command: ["sh", "-c", "echo done once"]
"#,
    );
    let finished =
        |s: &Value| find(s, "d-once").is_some_and(|p| p["status"]["phase"] == "Succeeded");
    let s = t.wait_until("the pod completed", finished);
    let uid = find(&s, "d-once").unwrap()["metadata"]["uid"].clone();
    std::thread::sleep(Duration::from_millis(500));
    let text = String::from_utf8_lossy(&t.cli(&["status"]).stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("d-once") && l.contains("Completed")),
        "{text}"
    );
    let ev = String::from_utf8_lossy(&t.cli(&["events"]).stdout).into_owned();
    assert!(!ev.contains("ShimDied"), "{ev}");
    // Created once: the finished pod was not run again. (Container events come from
    // status snapshots; a container that ends within one snapshot shows no "Started".)
    assert_eq!(ev.matches("Created").count(), 1, "{ev}");
    let out = t.cli(&["logs", "d-once"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done once\n");

    t.kill_daemon("-KILL");
    t.start_daemon();
    let s = t.wait_until("the pod still completed", finished);
    assert_eq!(find(&s, "d-once").unwrap()["metadata"]["uid"], uid);

    // restart runs it again.
    let out = t.cli(&["restart", "d-once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_until("a new run", |s| {
        find(s, "d-once").is_some_and(|p| p["metadata"]["uid"] != uid)
    });
}

#[test]
fn unsafe_files_and_missing_images_are_reported_and_sighup_retries() {
    let Some(t) =
        DaemonTest::new("unsafe_files_and_missing_images_are_reported_and_sighup_retries")
    else {
        return;
    };
    // A manifest owned by a user is not applied.
    let staged = t.tmp().join("foreign.yaml");
    std::fs::write(
        &staged,
        two_containers("d-foreign", "A1", "B1", "").replace("IMAGE", &t.image),
    )
    .unwrap();
    nix_chown(&staged, 1000);
    let foreign = t.dirs.manifests.join("foreign.yaml");
    std::fs::rename(&staged, &foreign).unwrap();
    // An image that is not in the store: reported, with how to add it.
    let missing = two_containers("d-noimage", "A1", "B1", "")
        .replace("IMAGE", "docker.io/library/not-here:1");
    std::fs::write(t.dirs.manifests.join("noimage.yaml"), missing).unwrap();
    let s = t.wait_until("both reported", |s| {
        s["problems"].as_array().is_some_and(|p| p.len() == 2)
    });
    let problems = s["problems"].as_array().unwrap();
    let text = serde_json::to_string(problems).unwrap();
    assert!(text.contains("owned by uid 1000"), "{text}");
    assert!(
        text.contains("FailedToStart") && text.contains("podsup image import"),
        "{text}"
    );
    assert!(find(&s, "d-foreign").is_none() && find(&s, "d-noimage").is_none());

    // Fixed by hand; SIGHUP makes the daemon read everything again and retry.
    nix_chown(&foreign, 0);
    common::busybox_image(&t.dirs, "docker.io/library/not-here:1", &[]);
    let pid = t.daemon.as_ref().unwrap().id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    t.wait_running("d-foreign");
    t.wait_running("d-noimage");
    let s = t.status();
    assert_eq!(s["problems"].as_array().unwrap().len(), 0, "{s}");
}

#[test]
fn namespaces_select_pods_like_kubectl() {
    let Some(t) = DaemonTest::new("namespaces_select_pods_like_kubectl") else {
        return;
    };
    let yaml = two_containers("d-ns", "A1", "B1", "")
        .replace("  name: d-ns\n", "  name: d-ns\n  namespace: team\n");
    t.write("ns.yaml", &yaml);
    t.wait_running("d-ns");
    let text = |args: &[&str]| {
        let out = t.cli(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, default_ns, _) = text(&["status"]);
    assert!(!default_ns.contains("d-ns"), "{default_ns}");
    let (_, team, _) = text(&["status", "-n", "team"]);
    assert!(team.lines().any(|l| l.starts_with("d-ns ")), "{team}");
    let (_, all, _) = text(&["status", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.lines().any(|l| l.starts_with("team ")), "{all}");
    assert!(all.lines().all(|l| l.chars().count() <= 80), "{all}");
    let (code, _, err) = text(&["status", "d-ns"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("default/d-ns not found"), "{err}");
    let (code, one, _) = text(&["status", "d-ns", "-n", "team", "-o", "yaml"]);
    assert_eq!(code, Some(0));
    assert!(one.starts_with("apiVersion: v1\n"), "{one}");
    assert!(one.contains("\n  namespace: team\n"), "{one}");
    let (code, _, err) = text(&["restart", "d-ns", "-c", "a"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("default/d-ns is not running"), "{err}");
    let (code, _, err) = text(&["restart", "d-ns", "-n", "team", "-c", "a"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_second_daemon_on_the_same_run_dir_is_refused() {
    let Some(t) = DaemonTest::new("a_second_daemon_on_the_same_run_dir_is_refused") else {
        return;
    };
    let out = podsup()
        .arg("daemon")
        .args(t.flags())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another podsup daemon already serves"),
        "{err}"
    );
    // The first one still answers.
    assert!(t.cli(&["status"]).status.success());
}

#[test]
fn logs_follow_prints_new_lines_as_they_come() {
    let Some(t) = DaemonTest::new("logs_follow_prints_new_lines_as_they_come") else {
        return;
    };
    t.write(
        "tick.yaml",
        r#"apiVersion: v1
kind: Pod
metadata:
  name: d-tick
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: tick
    image: IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done"]
"#,
    );
    t.wait_running("d-tick");
    let mut follow = podsup()
        .args(["logs", "d-tick", "-f", "--tail", "1"])
        .args(t.flags())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 5 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            got.push(l);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(got.len() >= 5, "{got:?}");
    let n: Vec<u64> = got
        .iter()
        .map(|l| l.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
}

#[test]
fn an_edit_to_a_missing_image_keeps_the_running_version() {
    let Some(t) = DaemonTest::new("an_edit_to_a_missing_image_keeps_the_running_version") else {
        return;
    };
    t.write("img.yaml", &two_containers("d-img", "A1", "B1", ""));
    t.wait_running("d-img");
    let (a1, b1) = (
        t.container_pid("d-img", "A1").unwrap(),
        t.container_pid("d-img", "B1").unwrap(),
    );
    let missing = two_containers("d-img", "A2", "B1", "").replacen(
        "image: IMAGE",
        "image: docker.io/library/not-here:2",
        1,
    );
    t.write("img.yaml", &missing);
    let s = t.wait_until("the problem reported", |s| {
        s["problems"].as_array().is_some_and(|p| !p.is_empty())
    });
    let text = serde_json::to_string(&s["problems"]).unwrap();
    assert!(
        text.contains("not-here") && text.contains("keeps running"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.container_pid("d-img", "A1"), Some(a1));
    assert_eq!(t.container_pid("d-img", "B1"), Some(b1));
    // Back to an image that exists: applied, the problem gone.
    t.write("img.yaml", &two_containers("d-img", "A2", "B1", ""));
    t.wait_until("the edit applied", |s| {
        s["problems"].as_array().is_some_and(|p| p.is_empty())
            && t.container_pid("d-img", "A2").is_some()
    });
    assert_eq!(t.container_pid("d-img", "B1"), Some(b1));
}

#[test]
fn events_follow_and_the_socket_is_root_only() {
    let Some(t) = DaemonTest::new("events_follow_and_the_socket_is_root_only") else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(t.dirs.run.join("podsup.sock")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(m.uid(), 0);
    let mut follow = podsup()
        .args(["events", "-f", "-o", "json"])
        .args(t.flags())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    t.write("ev.yaml", &two_containers("d-ev", "A1", "B1", ""));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&l).unwrap();
            seen.push(format!("{} {}", v["reason"], v["message"]));
            if v["reason"] == "Started" && v["message"] == "container b started" {
                break;
            }
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.iter().any(|l| l.starts_with("\"Created\"")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("container b started")),
        "{seen:?}"
    );
}
