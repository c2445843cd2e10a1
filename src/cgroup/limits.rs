//! Writing [`Limits`] into a group, through cgroups-rs' controllers.
//!
//! The controllers are built directly on our directories (`MemController::new(dir, …)`),
//! not through `cgroups_rs::fs::Cgroup`, because cgroups-rs' own hierarchy detection
//! ignores the hybrid cgroup2 mount and assumes `/sys/fs/cgroup` for v2. Each failure is
//! turned into an [`Error`] that names the file and the value.

use std::path::{Path, PathBuf};

use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;

use super::resources::{CPU_PERIOD_US, compute_cpu_weight, compute_memsw_first};
use super::{Cgroup, Error, Limits, Mode, V1Controller, read_file, stats};

/// Wraps a cgroups-rs error with the file and value we asked it to write. The io error
/// underneath (cgroups-rs keeps it as the source) becomes ours, so the message ends in
/// the errno.
fn wrap(
    dir: &Path,
    file: &str,
    data: String,
) -> impl FnOnce(cgroups_rs::fs::error::Error) -> Error {
    let path = dir.join(file);
    move |e| {
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|io| io.raw_os_error())
            .map(std::io::Error::from_raw_os_error);
        match io {
            Some(err) => Error::Write { path, data, err },
            None => Error::Limit {
                path,
                data,
                detail: e.to_string(),
            },
        }
    }
}

fn need(cg: &Cgroup, c: V1Controller) -> Result<(PathBuf, PathBuf), Error> {
    let dir = cg
        .dir(c)
        .ok_or_else(|| Error::Unsupported(format!("cgroup controller {}", c.name())))?;
    let root = match cg.layout.mode {
        Mode::V2 => cg.layout.unified.clone(),
        _ => cg.layout.v1.get(&c).cloned(),
    }
    .unwrap_or_default();
    Ok((dir, root))
}

/// cgroups-rs opens files with `File::create` (O_CREAT): on cgroupfs a missing file then
/// fails with a misleading EACCES, elsewhere it would create a plain file. So check first.
fn check(dir: &Path, controller: &'static str, file: &'static str) -> Result<(), Error> {
    if dir.join(file).exists() {
        Ok(())
    } else {
        Err(Error::ControllerMissing {
            path: dir.to_path_buf(),
            controller,
            file,
        })
    }
}

pub(super) fn apply(cg: &Cgroup, l: &Limits) -> Result<(), Error> {
    let v2 = cg.layout.mode == Mode::V2;
    if let Some(bytes) = l.memory_bytes {
        let (dir, root) = need(cg, V1Controller::Memory)?;
        apply_memory(&dir, root, v2, bytes)?;
    }
    if l.cpu_quota_us.is_some() || l.cpu_shares.is_some() {
        let (dir, root) = need(cg, V1Controller::Cpu)?;
        apply_cpu(&dir, root, v2, l.cpu_quota_us, l.cpu_shares)?;
    }
    if let Some(n) = l.pids_max {
        let (dir, root) = need(cg, V1Controller::Pids)?;
        check(&dir, "pids", "pids.max")?;
        PidController::new(dir.clone(), root, v2)
            .set_pid_max(MaxValue::Value(n))
            .map_err(wrap(&dir, "pids.max", n.to_string()))?;
    }
    Ok(())
}

/// Memory limit and no swap, as the kubelet's `ConfigureNoSwap`: v1 memsw = the limit,
/// v2 `memory.swap.max` = 0. Either file exists only with swap accounting; without it
/// there is nothing to set.
pub(super) fn apply_memory(dir: &Path, root: PathBuf, v2: bool, bytes: i64) -> Result<(), Error> {
    let mem = MemController::new(dir.to_path_buf(), root, v2);
    let limit_file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    check(dir, "memory", limit_file)?;
    let set_limit = |mem: &MemController| {
        mem.set_limit(bytes)
            .map_err(wrap(dir, limit_file, bytes.to_string()))
    };
    if v2 {
        set_limit(&mem)?;
        if dir.join("memory.swap.max").exists() {
            mem.set_memswap_limit(0)
                .map_err(wrap(dir, "memory.swap.max", "0".into()))?;
        }
        return Ok(());
    }
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if !memsw.exists() {
        return set_limit(&mem);
    }
    let current = read_file(&memsw)?;
    let current: i64 = current.trim().parse().unwrap_or(i64::MAX);
    let set_memsw = |mem: &MemController| {
        mem.set_memswap_limit(bytes).map_err(wrap(
            dir,
            "memory.memsw.limit_in_bytes",
            bytes.to_string(),
        ))
    };
    if compute_memsw_first(bytes, current) {
        set_memsw(&mem)?;
        set_limit(&mem)
    } else {
        set_limit(&mem)?;
        set_memsw(&mem)
    }
}

/// CFS bandwidth (period 100 ms) and the relative weight: v1 `cpu.cfs_period_us`,
/// `cpu.cfs_quota_us`, `cpu.shares`; v2 `cpu.max` ("quota period") and `cpu.weight`.
pub(super) fn apply_cpu(
    dir: &Path,
    root: PathBuf,
    v2: bool,
    quota: Option<i64>,
    shares: Option<u64>,
) -> Result<(), Error> {
    let cpu = CpuController::new(dir.to_path_buf(), root, v2);
    check(dir, "cpu", if v2 { "cpu.weight" } else { "cpu.shares" })?;
    if let Some(q) = quota {
        if v2 {
            cpu.set_cfs_quota_and_period(Some(q), Some(CPU_PERIOD_US))
                .map_err(wrap(dir, "cpu.max", format!("{q} {CPU_PERIOD_US}")))?;
        } else {
            // The period first: a quota is checked against the period in force.
            cpu.set_cfs_period(CPU_PERIOD_US).map_err(wrap(
                dir,
                "cpu.cfs_period_us",
                CPU_PERIOD_US.to_string(),
            ))?;
            cpu.set_cfs_quota(q)
                .map_err(wrap(dir, "cpu.cfs_quota_us", q.to_string()))?;
        }
    }
    if let Some(s) = shares {
        let (file, value) = if v2 {
            ("cpu.weight", compute_cpu_weight(s))
        } else {
            ("cpu.shares", s)
        };
        cpu.set_shares(value)
            .map_err(wrap(dir, file, value.to_string()))?;
    }
    Ok(())
}

/// Reads back what [`apply`] wrote, for tests and `status`: (memory limit, cpu quota,
/// cpu shares or weight, pids max); `None` = no limit.
pub fn read_limits(cg: &Cgroup) -> Result<Limits, Error> {
    let v2 = cg.layout.mode == Mode::V2;
    let read = |c: V1Controller, f: &str| -> Result<String, Error> {
        match cg.dir(c) {
            Some(d) => read_file(&d.join(f)),
            None => Err(Error::Unsupported(format!(
                "cgroup controller {}",
                c.name()
            ))),
        }
    };
    // v1 shows "no limit" as PAGE_COUNTER_MAX pages, i.e. about 2^63 whatever the page size.
    let unlimited_v1 = |v: Option<i64>| v.filter(|b| (0..1 << 62).contains(b));
    let memory_bytes = if v2 {
        stats::parse_max(&read(V1Controller::Memory, "memory.max")?)
    } else {
        unlimited_v1(stats::parse_max(&read(
            V1Controller::Memory,
            "memory.limit_in_bytes",
        )?))
    };
    let cpu_quota_us = if v2 {
        let t = read(V1Controller::Cpu, "cpu.max")?;
        t.split_whitespace().next().and_then(stats::parse_max)
    } else {
        stats::parse_max(&read(V1Controller::Cpu, "cpu.cfs_quota_us")?).filter(|q| *q > 0)
    };
    let cpu_shares = if v2 {
        stats::parse_max(&read(V1Controller::Cpu, "cpu.weight")?)
    } else {
        stats::parse_max(&read(V1Controller::Cpu, "cpu.shares")?)
    }
    .map(|s| s as u64);
    let pids_max = match cg.dir(V1Controller::Pids) {
        Some(d) if d.join("pids.max").exists() => {
            stats::parse_max(&read_file(&d.join("pids.max"))?)
        }
        _ => None,
    };
    Ok(Limits {
        memory_bytes,
        cpu_quota_us,
        cpu_shares,
        pids_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, kv: &[(&str, &str)]) {
        for (k, v) in kv {
            std::fs::write(dir.join(k), v).unwrap();
        }
    }
    fn get(dir: &Path, f: &str) -> String {
        std::fs::read_to_string(dir.join(f)).unwrap()
    }

    #[test]
    fn v2_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        files(
            d,
            &[
                ("memory.max", "max\n"),
                ("memory.swap.max", "max\n"),
                ("cpu.max", "max 100000\n"),
                ("cpu.weight", "100\n"),
                ("pids.max", "max\n"),
            ],
        );
        apply_memory(d, d.to_path_buf(), true, 32 << 20).unwrap();
        apply_cpu(d, d.to_path_buf(), true, Some(10_000), Some(1024)).unwrap();
        assert_eq!(get(d, "memory.max"), "33554432");
        assert_eq!(get(d, "memory.swap.max"), "0");
        assert_eq!(get(d, "cpu.max"), "10000 100000");
        assert_eq!(get(d, "cpu.weight"), "39");
    }

    #[test]
    fn v2_without_swap_accounting() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        files(d, &[("memory.max", "max\n")]);
        apply_memory(d, d.to_path_buf(), true, 1 << 20).unwrap();
        assert_eq!(get(d, "memory.max"), "1048576");
        assert!(!d.join("memory.swap.max").exists());
    }

    #[test]
    fn v1_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        files(
            d,
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.shares", "1024\n"),
            ],
        );
        apply_memory(d, d.to_path_buf(), false, 32 << 20).unwrap();
        apply_cpu(d, d.to_path_buf(), false, Some(1000), Some(2)).unwrap();
        assert_eq!(get(d, "memory.limit_in_bytes"), "33554432");
        assert_eq!(get(d, "memory.memsw.limit_in_bytes"), "33554432");
        assert_eq!(get(d, "cpu.cfs_period_us"), "100000");
        assert_eq!(get(d, "cpu.cfs_quota_us"), "1000");
        assert_eq!(get(d, "cpu.shares"), "2");
    }

    #[test]
    fn errors_name_the_missing_controller() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("gone");
        let e = apply_cpu(&d, d.clone(), false, None, Some(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cgroup controller cpu is not enabled there (no cpu.shares)",
                d.display()
            )
        );
        assert!(!d.exists());
    }

    #[test]
    fn errors_name_file_and_value() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        // A directory where the file should be: open for writing fails with EISDIR.
        std::fs::create_dir(d.join("pids.max")).unwrap();
        let e = PidController::new(d.to_path_buf(), d.to_path_buf(), false)
            .set_pid_max(MaxValue::Value(7))
            .map_err(wrap(d, "pids.max", "7".into()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "write {}: \"7\": EISDIR: Is a directory",
                d.join("pids.max").display()
            )
        );
    }
}
