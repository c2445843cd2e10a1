//! SIGKILL of every process in a group and below.
//!
//! With `cgroup.kill` (cgroup2, Linux ≥ 5.14; also in the hybrid layout's cgroup2
//! tracking group) one write kills the whole subtree, and new forks cannot escape it.
//! Without it, a fork between reading `cgroup.procs` and `kill(2)` could escape, so the
//! group is frozen first (v1 `freezer.state`, v2 `cgroup.freeze`), every listed process
//! gets SIGKILL, and the group is thawed: a frozen task only dies once thawed
//! (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst). Repeat until empty.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Cgroup, Error, Mode, V1Controller, read_file, stats, write_file};

/// How long `cgroup.kill` alone gets before the freezer path is tried too.
const KILL_FILE_GRACE: Duration = Duration::from_millis(200);
/// The longest one freeze may take before podsup kills anyway.
const FREEZE_WAIT: Duration = Duration::from_millis(500);

pub(super) fn kill_all(cg: &Cgroup, timeout: Duration) -> Result<(), Error> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut round = 0;
    loop {
        round += 1;
        let pids = cg.procs_recursive()?;
        if pids.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::KillTimeout {
                path: cg.dirs().into_iter().next().unwrap_or_default(),
                pids,
                waited: start.elapsed(),
            });
        }
        // If cgroup.kill has not emptied the group after a while, freeze and kill as
        // well: a process that is in the v1 groups but not in the cgroup2 one (hybrid)
        // is out of its reach. Not at once: killed tasks take some time to exit, and
        // freezing exiting tasks only slows things down.
        kill_round(cg, round > 1 && start.elapsed() > KILL_FILE_GRACE)?;
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One round, without waiting for the processes to be gone: `cgroup.kill` if the kernel
/// has it (unless `force_freezer`), else freeze, SIGKILL each, thaw.
pub(super) fn kill_round(cg: &Cgroup, force_freezer: bool) -> Result<(), Error> {
    let kill_file = cg
        .unified_dir()
        .map(|d| d.join("cgroup.kill"))
        .filter(|p| p.exists());
    match kill_file {
        Some(k) if !force_freezer => write_file(&k, "1"),
        _ => freeze_kill_thaw(cg),
    }
}

/// The freezer of this layout: (file to write, value to freeze, value to thaw).
fn freezer(cg: &Cgroup) -> Option<(PathBuf, &'static str, &'static str)> {
    match cg.layout.mode {
        Mode::V2 => cg
            .unified_dir()
            .map(|d| (d.join("cgroup.freeze"), "1", "0"))
            .filter(|(p, _, _)| p.exists()),
        Mode::V1 | Mode::Hybrid => cg
            .dir(V1Controller::Freezer)
            .map(|d| (d.join("freezer.state"), "FROZEN", "THAWED"))
            .filter(|(p, _, _)| p.exists()),
    }
}

/// Whether the freeze has completed: v1 `freezer.state` reads FROZEN; v2 `cgroup.events`
/// has `frozen 1`.
fn frozen(cg: &Cgroup, state_file: &Path) -> Result<(bool, String), Error> {
    if cg.layout.mode == Mode::V2 {
        let events = state_file.with_file_name("cgroup.events");
        let text = read_file(&events)?;
        let f = stats::parse_flat_keyed(&text, "frozen") == Some(1);
        Ok((f, text.trim().replace('\n', ", ")))
    } else {
        let text = read_file(state_file)?;
        Ok((text.trim() == "FROZEN", text.trim().to_string()))
    }
}

fn freeze_kill_thaw(cg: &Cgroup) -> Result<(), Error> {
    let Some((file, freeze, thaw)) = freezer(cg) else {
        // No freezer mounted: best effort, a fork may race the kill; the caller repeats.
        return kill_pids(&cg.procs_recursive()?);
    };
    write_file(&file, freeze)?;
    let result = (|| {
        let start = Instant::now();
        let mut pause = Duration::from_micros(500);
        loop {
            let (done, state) = frozen(cg, &file)?;
            if done {
                break;
            }
            if start.elapsed() >= FREEZE_WAIT {
                // A task stuck in the kernel can delay freezing; kill what is listed
                // anyway and let the caller loop.
                log::warn!(
                    "{}",
                    Error::Freeze {
                        path: file.clone(),
                        state,
                        waited: start.elapsed()
                    }
                );
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        kill_pids(&cg.procs_recursive()?)
    })();
    // Always thaw: a group left frozen keeps its processes alive forever.
    let thawed = write_file(&file, thaw);
    result.and(thawed)
}

fn kill_pids(pids: &[i32]) -> Result<(), Error> {
    for &pid in pids {
        if pid <= 0 {
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(err) => return Err(Error::Sys { step: "kill", err }),
        }
    }
    Ok(())
}
