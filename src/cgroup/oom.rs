//! OOM notification (and `cgroup.events` changes) as one pollable fd, without a thread.
//!
//! v1: an eventfd registered with `cgroup.event_control` for `memory.oom_control`
//! (cgroup-v1/memory.rst "Memory thresholds" / "OOM Control"); the kernel also signals it
//! when the group is removed. v2: inotify `IN_MODIFY` on `memory.events`, which the kernel
//! raises on every change of that file (cgroup-v2.rst: "a value change in this file
//! generates a file modified event"), not only on OOM kills.
//!
//! So a wakeup is only a hint. The caller reads [`Cgroup::oom_kill_count`] and compares it
//! with the last value it saw, as conmon-rs' `oom_watcher` does.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{Cgroup, Error, Mode, V1Controller, write_file};

enum Source {
    EventFd {
        efd: EventFd,
        /// Kept open for as long as the registration lives.
        _control: File,
    },
    Inotify(Inotify),
}

/// A pollable notification for one group: OOM events ([`Cgroup::oom_watch`]) or changes
/// of `cgroup.events` ([`Cgroup::events_watch`]). Poll [`AsFd::as_fd`] for `POLLIN`, then
/// call [`Watch::drain`] and read the counter or the file.
pub struct Watch {
    source: Source,
}

impl Watch {
    pub(super) fn new(cg: &Cgroup) -> Result<Watch, Error> {
        let dir = cg
            .dir(V1Controller::Memory)
            .ok_or_else(|| Error::Unsupported("cgroup controller memory".into()))?;
        if cg.layout.mode == Mode::V2 {
            return Watch::inotify(&dir.join("memory.events"));
        }
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(|err| Error::Open {
            path: control_path,
            err,
        })?;
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|err| Error::Sys {
                step: "eventfd",
                err,
            })?;
        // "<event_fd> <fd of memory.oom_control>" (cgroup-v1/memory.rst §10 OOM Control).
        write_file(
            &dir.join("cgroup.event_control"),
            &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()),
        )?;
        Ok(Watch {
            source: Source::EventFd {
                efd,
                _control: control,
            },
        })
    }

    /// inotify `IN_MODIFY` on one cgroup2 interface file (`memory.events`,
    /// `cgroup.events`): the kernel's `cgroup_file_notify` raises it on each change.
    pub(super) fn inotify(path: &Path) -> Result<Watch, Error> {
        let inotify =
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(|err| {
                Error::Sys {
                    step: "inotify_init",
                    err,
                }
            })?;
        inotify
            .add_watch(path, AddWatchFlags::IN_MODIFY)
            .map_err(|err| Error::Open {
                path: path.to_path_buf(),
                err: err.into(),
            })?;
        Ok(Watch {
            source: Source::Inotify(inotify),
        })
    }

    /// Consumes pending notifications without blocking. Returns whether there were any.
    pub fn drain(&self) -> Result<bool, Error> {
        match &self.source {
            Source::EventFd { efd, .. } => match efd.read() {
                Ok(n) => Ok(n > 0),
                Err(Errno::EAGAIN) => Ok(false),
                Err(err) => Err(Error::Sys {
                    step: "read eventfd",
                    err,
                }),
            },
            Source::Inotify(inotify) => match inotify.read_events() {
                Ok(ev) => Ok(!ev.is_empty()),
                Err(Errno::EAGAIN) => Ok(false),
                Err(err) => Err(Error::Sys {
                    step: "read inotify",
                    err,
                }),
            },
        }
    }

    /// Waits up to `timeout` for the fd to become readable (for tests and simple callers;
    /// the shim polls the fd in its own loop instead).
    pub fn wait(&self, timeout: Duration) -> Result<bool, Error> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
        loop {
            match poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(Error::Sys { step: "poll", err }),
            }
        }
    }
}

impl AsFd for Watch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::EventFd { efd, .. } => efd.as_fd(),
            Source::Inotify(inotify) => inotify.as_fd(),
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::EventFd { .. } => "eventfd",
            Source::Inotify(_) => "inotify",
        };
        write!(f, "cgroup::Watch({kind} fd {})", self.as_fd().as_raw_fd())
    }
}
