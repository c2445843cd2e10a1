//! Joining a group between fork and exec.
//!
//! A process must be in its group before it execs: v1 does not move memory charges made
//! before the move (`memory.move_charge_at_immigrate` is 0), and a limit applied late
//! lets the start-up run unlimited. The parent opens every `cgroup.procs` file before the
//! fork; the child writes "0" (= the writing process, cgroup(7)) into each with plain
//! `write(2)`: no allocation, no lock, nothing but async-signal-safe calls.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::layout::{MountInfo, ProcCgroup};
use super::{Cgroup, Error};

/// The open `cgroup.procs` files of one group, one per hierarchy. The fds are
/// close-on-exec: they never reach the container's program.
#[derive(Debug)]
pub struct JoinFds {
    fds: Vec<OwnedFd>,
    paths: Vec<PathBuf>,
}

/// What failed in the child: which file (index into [`JoinFds::paths`]) and the errno.
/// `Copy` and allocation-free, so it can cross the fork through the sync pipe as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinError {
    pub index: usize,
    pub errno: Errno,
}

impl JoinFds {
    pub(super) fn open(cg: &Cgroup) -> Result<JoinFds, Error> {
        JoinFds::open_dirs(&cg.dirs())
    }

    /// Opens `cgroup.procs` in each of `dirs` (one group per hierarchy, for example from
    /// [`compute_join_dirs`]).
    pub fn open_dirs(dirs: &[PathBuf]) -> Result<JoinFds, Error> {
        let mut fds = Vec::new();
        let mut paths = Vec::new();
        for d in dirs {
            let path = d.join("cgroup.procs");
            // std opens with O_CLOEXEC.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|err| Error::Open {
                    path: path.clone(),
                    err,
                })?;
            fds.push(OwnedFd::from(f));
            paths.push(path);
        }
        Ok(JoinFds { fds, paths })
    }

    /// Moves the calling process into the group in every hierarchy. Async-signal-safe:
    /// call it in the forked child before exec.
    pub fn join_self(&self) -> Result<(), JoinError> {
        for (index, fd) in self.fds.iter().enumerate() {
            loop {
                match nix::unistd::write(fd, b"0") {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(errno) => return Err(JoinError { index, errno }),
                }
            }
        }
        Ok(())
    }

    /// The files, in the order [`JoinError::index`] counts them.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The parent's view of a child's [`JoinError`]: which file, which errno.
    pub fn error(&self, e: JoinError) -> Error {
        Error::Write {
            path: self.paths.get(e.index).cloned().unwrap_or_default(),
            data: "0".into(),
            err: std::io::Error::from_raw_os_error(e.errno as i32),
        }
    }
}

/// The groups a new process must join to be where `target` (the `/proc/<pid>/cgroup` lines
/// of a container's PID 1) is in every hierarchy, when it starts where `own` (the caller's
/// lines) says: one directory per hierarchy whose path differs, under the hierarchy's mount
/// in `mounts` (the caller's mountinfo). Hierarchies that are not mounted are skipped (no
/// process can be moved there), as are paths the kernel marks `(deleted)`. Pure.
pub fn compute_join_dirs(
    mounts: &[MountInfo],
    target: &[ProcCgroup],
    own: &[ProcCgroup],
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for t in target {
        if t.path.ends_with(" (deleted)") {
            continue;
        }
        let same = own
            .iter()
            .any(|o| o.hierarchy_id == t.hierarchy_id && o.path == t.path);
        if same {
            continue;
        }
        let mount = mounts.iter().find(|m| {
            if t.hierarchy_id == 0 {
                m.fs_type == "cgroup2"
            } else {
                m.fs_type == "cgroup"
                    && !t.controllers.is_empty()
                    && t.controllers.iter().all(|c| m.super_options.contains(c))
            }
        });
        let Some(m) = mount else {
            continue;
        };
        // A mount of a subtree (root `/a`) holds the paths below `/a`.
        let Ok(rel) = Path::new(&t.path).strip_prefix(&m.root) else {
            continue;
        };
        let dir = m.mount_point.join(rel);
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::layout::{parse_mountinfo, parse_proc_cgroup};

    const MOUNTS: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:39 /sub /mnt/blkio rw,relatime - cgroup cgroup rw,blkio
";

    #[test]
    fn joins_every_hierarchy_that_differs() {
        let mounts = parse_mountinfo(MOUNTS);
        let target = parse_proc_cgroup(
            "9:name=systemd:/\n8:blkio:/sub/x\n5:devices:/pinned\n4:memory:/podsup/podu/app\n1:cpu:/podsup/podu/app\n0::/podsup/podu/app\n7:freezer:/unmounted\n",
        );
        let own = parse_proc_cgroup(
            "9:name=systemd:/\n8:blkio:/\n5:devices:/\n4:memory:/process_api/a\n1:cpu:/\n0::/\n7:freezer:/\n",
        );
        let p = PathBuf::from;
        assert_eq!(
            compute_join_dirs(&mounts, &target, &own),
            vec![
                p("/mnt/blkio/x"),
                p("/sys/fs/cgroup/devices/pinned"),
                p("/sys/fs/cgroup/memory/podsup/podu/app"),
                p("/sys/fs/cgroup/cpu/podsup/podu/app"),
                p("/sys/fs/cgroup/unified/podsup/podu/app"),
            ]
        );
        // Already there: nothing to join.
        assert!(compute_join_dirs(&mounts, &target, &target).is_empty());
    }
}
