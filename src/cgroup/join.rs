//! Joining a group between fork and exec.
//!
//! A process must be in its group before it execs: v1 does not move memory charges made
//! before the move (`memory.move_charge_at_immigrate` is 0), and a limit applied late
//! lets the start-up run unlimited. The parent opens every `cgroup.procs` file before the
//! fork; the child writes "0" (= the writing process, cgroup(7)) into each with plain
//! `write(2)`: no allocation, no lock, nothing but async-signal-safe calls.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;

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
        let mut fds = Vec::new();
        let mut paths = Vec::new();
        for d in cg.dirs() {
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
