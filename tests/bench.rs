//! The benchmark (bench/bench.py, docs/benchmark.md) in its `--quick` mode against the binary
//! under test, so that the bench cannot rot: every row runs through the real daemon, the raw
//! file holds sane samples, and nothing is left behind (processes, mounts, cgroups).
//! Root only; skipped without python3. The full bench (podman side by side) is not run here.

mod common;

use std::path::Path;
use std::process::Command;

use common::require_root;
use serde_json::Value;

fn have_python3() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The samples of `row` for `system` as numbers (seconds, counts).
fn samples(raw: &Value, row: &str, system: &str) -> Vec<f64> {
    raw["rows"][row][system]
        .as_array()
        .unwrap_or_else(|| panic!("row {row}: no {system} samples in {raw}"))
        .iter()
        .map(|v| {
            v.as_f64()
                .unwrap_or_else(|| panic!("row {row}: {v} is not a number"))
        })
        .collect()
}

#[test]
fn quick_bench_runs_every_row_and_cleans_up() {
    if !require_root("quick_bench_runs_every_row_and_cleans_up") {
        return;
    }
    if !have_python3() {
        eprintln!("skipped quick_bench_runs_every_row_and_cleans_up: python3 not found");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("podsup-test-bench-")
        .tempdir()
        .expect("tempdir");
    let parent = common::unique_cgroup_parent();
    let out_file = tmp.path().join("raw.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--quick",
            "--no-install",
            "--podsup",
            env!("CARGO_BIN_EXE_podsup"),
        ])
        .arg("--out")
        .arg(&out_file)
        .arg("--tmpdir")
        .arg(tmp.path())
        .args(["--cgroup-parent", &parent])
        .output()
        .expect("run python3 bench/bench.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left = common::remove_cgroup_parent(&parent);
    let procs = common::processes_mentioning(&tmp.path().display().to_string());
    assert!(
        out.status.success(),
        "bench --quick failed:\n{stdout}\n{stderr}"
    );
    assert!(left.is_empty(), "bench left cgroups: {left:?}\n{stderr}");
    assert!(procs.is_empty(), "bench left processes: {procs:?}");
    assert!(
        stdout.contains("| 1 manifest dropped") && stdout.contains("| 8 10 pods removed"),
        "no table:\n{stdout}"
    );

    let raw: Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("raw file")).expect("json");
    assert_eq!(raw["config"]["quick"], true);
    // Timed rows: three samples each, every one a real duration (the bench waits for the
    // processes in /proc, so a sample can be neither zero nor the 120 s timeout).
    for row in ["1", "2", "2b", "4", "5", "8up", "8down"] {
        let xs = samples(&raw, row, "podsup");
        let n = if row.starts_with('8') { 1 } else { 3 };
        assert_eq!(xs.len(), n, "row {row}: {xs:?}");
        assert!(xs.iter().all(|&x| x > 0.0 && x < 60.0), "row {row}: {xs:?}");
    }
    // Editing one container leaves the other one's process alone.
    let kept = raw["rows"]["4kept"]["podsup"].as_array().expect("4kept");
    assert!(
        kept.iter().all(|k| k == true),
        "other container restarted: {kept:?}"
    );
    // A crash loop starts at least twice (the first restart of the curve is immediate).
    assert!(
        samples(&raw, "3", "podsup")[0] >= 2.0,
        "{}",
        raw["rows"]["3"]
    );
    // Memory: the daemon, one shim per pod and one parked process per container (the pods
    // restart by default), with real figures.
    for (size, helpers) in [(1, 4), (5, 11), (10, 21)] {
        let m = &raw["rows"][format!("6-{size}")]["podsup"][0];
        assert_eq!(m["helpers"], helpers, "row 6, {size} pods: {m}");
        assert!(m["pss_kb"].as_f64().unwrap_or(0.0) > 100.0, "{m}");
        assert!(m["rss_kb"].as_f64() >= m["pss_kb"].as_f64(), "{m}");
    }
    let idle = &raw["rows"]["7"]["podsup"][0];
    assert_eq!(idle["helpers"], 21, "{idle}");
    assert!(idle["ticks"].is_number(), "{idle}");
}
