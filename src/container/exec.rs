//! Starting a process inside a running container: `podsup exec`, exec probes, exec hooks.
//!
//! An [`ExecTarget`] says everything about a running container that a new process in it
//! needs besides its argv: the host pid of the container's PID 1 and that process's start
//! time (so that a reused pid is never mistaken for it), the credentials PID 1 got
//! (uid, gids, capability sets, no_new_privs), the environment computed at its start and
//! the working directory. The shim makes one at each start ([`ExecTarget::new`], from the
//! [`Prepared`] it started the container with) and publishes it as `exec.json` in the
//! container's run directory, which `podsup exec` gets through the daemon.
//!
//! [`spawn_in`] starts the process as a *direct child of the caller*: the caller can
//! `waitpid` it, time it out and kill it, and nothing is left as a zombie elsewhere. It
//! enters the container as runc's `exec` does, with a pidfd instead of `/proc/<pid>/ns/*`
//! paths: see `child.rs` (`exec_child_main`) for the steps after the fork.
//!
//! This module does not supervise: timeouts, relaying output and exit codes belong to the
//! caller.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::child::{ExecChild, exec_child_main};
use super::sync::{self, ChildFailure, Stage};
use super::{Command, Credentials, PrepareError, Prepared};
use crate::cgroup::{self, JoinFds};
use crate::sys;

/// The file name of a container's published [`ExecTarget`] in its run directory
/// (`--run/pods/<uid>/containers/<name>/exec.json`).
pub const DESCRIPTOR_NAME: &str = "exec.json";

/// A running container, as a new process inside it needs it. Serialized, it is the
/// container's exec descriptor (`exec.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecTarget {
    /// The container's name.
    pub container: String,
    /// Host pid of the container's PID 1.
    pub pid: i32,
    /// Its start time (`/proc/<pid>/stat` field 22, clock ticks after boot): a pid that
    /// has been reused by another process has another start time.
    pub start_time: u64,
    /// uid, gids and capabilities, exactly as PID 1 got them.
    pub creds: Credentials,
    /// The container's environment as computed when it started (`NAME=value`), which is
    /// what `kubectl exec` gives a command.
    pub env: Vec<String>,
    /// The working directory inside the container.
    pub cwd: String,
}

/// The stdio of a process started by [`spawn_in`]. The fds are closed in the caller once
/// the process has them; keep the other ends (pipe readers, a pty master).
pub struct ExecStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// `stdin` is a terminal (a pty slave): it becomes the controlling terminal of the
    /// process's new session.
    pub terminal: bool,
}

impl ExecStdio {
    /// stdin from /dev/null, stdout and stderr to the given fds (e.g. pipes of a probe).
    pub fn null_stdin(stdout: OwnedFd, stderr: OwnedFd) -> io::Result<ExecStdio> {
        Ok(ExecStdio {
            stdin: File::open("/dev/null")?.into(),
            stdout,
            stderr,
            terminal: false,
        })
    }
}

/// Why a process could not be started in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container's PID 1 is gone (or its pid now belongs to another process).
    #[error("container {container:?} is not running")]
    NotRunning { container: String },
    #[error("{what} {}: {source}", path.display())]
    Proc {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{0}")]
    Command(#[from] PrepareError),
    #[error("cgroup: {0}")]
    Cgroup(#[from] cgroup::Error),
    #[error("{step}: {err}")]
    Sys {
        step: &'static str,
        err: nix::errno::Errno,
    },
    #[error("fork: {0}")]
    Fork(io::Error),
    /// The process failed before `execve` (for example `ExecNotFound`).
    #[error("{0}")]
    Child(ChildFailure),
    #[error("read sync pipe: {0}")]
    Sync(io::Error),
}

impl ExecError {
    /// The exit status a shell (and `kubectl exec`, `runc exec`) gives this failure: 127 for
    /// a command that is not found (in `PATH`, or at the path given), 126 for one that
    /// cannot be executed, `None` when the
    /// process never got as far as `execve`.
    pub fn exit_status(&self) -> Option<u8> {
        match self {
            ExecError::Child(f) if f.stage == Stage::ExecNotFound => Some(127),
            ExecError::Child(f)
                if f.stage == Stage::Exec && [libc::ENOENT, libc::ENOTDIR].contains(&f.errno) =>
            {
                Some(127)
            }
            ExecError::Child(f) if f.stage == Stage::Exec => Some(126),
            _ => None,
        }
    }
}

/// The start time of `pid` (`/proc/<pid>/stat` field 22).
pub fn start_time(pid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    compute_start_time(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/<pid>/stat"))
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`. Pure.
fn compute_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field 22 is the 20th from there.
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl ExecTarget {
    /// The target for a container the caller just started from `p` as `pid` (the shim
    /// calls this right after `container::spawn`).
    pub fn new(p: &Prepared, pid: Pid) -> io::Result<ExecTarget> {
        Ok(ExecTarget {
            container: p.name.clone(),
            pid: pid.as_raw(),
            start_time: start_time(pid.as_raw())?,
            creds: p.creds.clone(),
            env: p.command.env(),
            cwd: p.workdir.to_string_lossy().into_owned(),
        })
    }

    /// Whether the container's PID 1 still runs (same pid, same start time).
    pub fn is_running(&self) -> bool {
        start_time(self.pid).is_ok_and(|t| t == self.start_time)
    }

    /// Writes the descriptor to `path` atomically (write + rename), mode 0600: it holds
    /// the container's environment.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_vec(self)?;
        let tmp = path.with_extension("json.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        drop(f);
        std::fs::rename(&tmp, path)
    }

    /// Reads a descriptor written by [`ExecTarget::write`].
    pub fn read(path: &Path) -> io::Result<ExecTarget> {
        let mut text = Vec::new();
        File::open(path)?.read_to_end(&mut text)?;
        serde_json::from_slice(&text).map_err(io::Error::other)
    }
}

/// The container's PID 1, pinned: a pidfd and its `/proc` directory, checked against the
/// target's start time (a pid reused by another process fails the check; once the pidfd
/// and the directory are open, the pid cannot be reused under us).
struct Pinned {
    pidfd: OwnedFd,
    proc_dir: OwnedFd,
}

impl Pinned {
    fn open(t: &ExecTarget) -> Result<Pinned, ExecError> {
        let not_running = || ExecError::NotRunning {
            container: t.container.clone(),
        };
        let pid = rustix::process::Pid::from_raw(t.pid).ok_or_else(not_running)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(|_| not_running())?;
        let path = PathBuf::from(format!("/proc/{}", t.pid));
        let proc_dir = nix::fcntl::open(
            &path,
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|_| not_running())?;
        let stat = read_at(&proc_dir, "stat").map_err(|_| not_running())?;
        if compute_start_time(&stat) != Some(t.start_time) {
            return Err(not_running());
        }
        Ok(Pinned { pidfd, proc_dir })
    }

    fn read(&self, name: &'static str) -> Result<String, ExecError> {
        read_at(&self.proc_dir, name).map_err(|source| ExecError::Proc {
            what: "read",
            path: PathBuf::from("/proc/<pid>").join(name),
            source,
        })
    }

    /// The container's root directory, as an O_PATH fd.
    fn root(&self) -> Result<OwnedFd, ExecError> {
        nix::fcntl::openat(
            &self.proc_dir,
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| ExecError::Proc {
            what: "open",
            path: PathBuf::from("/proc/<pid>/root"),
            source: e.into(),
        })
    }
}

fn read_at(dir: &OwnedFd, name: &str) -> io::Result<String> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut s = String::new();
    File::from(fd).read_to_string(&mut s)?;
    Ok(s)
}

/// The cgroup directories a process must join to be in every cgroup of the container's PID 1
/// (every hierarchy: podsup's own groups and, should PID 1 be elsewhere than the caller in
/// another hierarchy such as devices, that one too).
fn join_dirs(pinned: &Pinned) -> Result<Vec<PathBuf>, ExecError> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|source| ExecError::Proc {
        what: "read",
        path: "/proc/self/cgroup".into(),
        source,
    })?;
    let mounts =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| ExecError::Proc {
            what: "read",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    let target = pinned.read("cgroup")?;
    Ok(cgroup::compute_join_dirs(
        &cgroup::layout::parse_mountinfo(&mounts),
        &cgroup::layout::parse_proc_cgroup(&target),
        &cgroup::layout::parse_proc_cgroup(&own),
    ))
}

/// A copy of `fd` numbered 3 or higher (so that putting stdio on 0–2 never overwrites
/// another of the three), close-on-exec.
fn above_stdio(fd: &OwnedFd) -> Result<OwnedFd, ExecError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|err| ExecError::Sys {
        step: "dup stdio",
        err: nix::errno::Errno::from_raw(err.raw_os_error()),
    })
}

/// Starts `argv` inside the container `target` and returns its pid, a **direct child of
/// the caller**, once it has exec'd (or the reason it could not, after reaping it).
///
/// - Namespaces: the caller enters the container's PID namespace for its children only
///   (`setns(pidfd, CLONE_NEWPID)` changes `pid_for_children`, not the caller), forks, and
///   returns at once to its own `pid_for_children` (opened beforehand from
///   `/proc/self/ns/pid_for_children`, so a shim whose pod shares one PID namespace keeps
///   starting containers in it). The child joins mount, network, IPC, UTS and cgroup
///   namespaces through the pidfd and PID 1's root (`chroot`), then its working directory.
/// - cgroups: every group of PID 1, in every hierarchy, before it enters the namespaces.
/// - Credentials and environment: those of [`ExecTarget`] (PID 1's). A command without `/`
///   is looked up in the container's `PATH`, inside the container's root; images without
///   a shell work.
/// - The process leads a new session and process group (its pid): `killpg(pid, SIGKILL)`
///   kills what it started too. It gets SIGKILL when the caller dies (parent-death signal)
///   and is killed by the kernel when the container's PID 1 exits.
///
/// The caller must be single-threaded (the shim, the CLI): it forks, and it changes its
/// `pid_for_children` for the moment of the fork. Signals it blocks for a signalfd do not
/// matter: the child empties its signal mask and resets every disposition. The call blocks
/// only until the child has exec'd (a few syscalls; bounded by a 30 s setup timeout).
///
/// Afterwards the caller owns the pid: reap it with `waitpid` (a shim whose loop calls
/// `waitpid(-1)` must recognise it there); to end it early (a probe's timeout),
/// `killpg(pid, SIGKILL)` then `waitpid`. Errors: [`ExecError::NotRunning`] when PID 1 is
/// gone, [`ExecError::Child`] for a failure before `execve` (stage `ExecNotFound`: no such
/// command; see [`ExecError::exit_status`]); the child is reaped already then.
///
/// ```ignore
/// let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
/// let pid = spawn_in(&target, &["cat".into(), "/tmp/healthy".into()],
///                    ExecStdio::null_stdin(wr.try_clone()?, wr)?)?;
/// // poll `rd` and a deadline; at the deadline: killpg(pid, SIGKILL); then waitpid(pid)
/// ```
pub fn spawn_in(target: &ExecTarget, argv: &[String], stdio: ExecStdio) -> Result<Pid, ExecError> {
    let command = Command::new(argv, &target.env)?;
    let cwd = CString::new(target.cwd.as_bytes()).map_err(|_| PrepareError::Nul {
        what: "working directory".into(),
    })?;
    let pinned = Pinned::open(target)?;
    let root = pinned.root()?;
    let cgroup = JoinFds::open_dirs(&join_dirs(&pinned)?)?;
    let fds = [
        above_stdio(&stdio.stdin)?,
        above_stdio(&stdio.stdout)?,
        above_stdio(&stdio.stderr)?,
    ];
    drop(stdio.stdin);
    drop(stdio.stdout);
    drop(stdio.stderr);
    let own_pid_ns =
        File::open("/proc/self/ns/pid_for_children").map_err(|source| ExecError::Proc {
            what: "open",
            path: "/proc/self/ns/pid_for_children".into(),
            source,
        })?;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|err| ExecError::Sys {
        step: "create sync pipe",
        err,
    })?;
    let child = ExecChild {
        pidfd: pinned.pidfd.as_raw_fd(),
        root: root.as_raw_fd(),
        cwd: &cwd,
        creds: &target.creds,
        command: &command,
        stdio: [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()],
        terminal: stdio.terminal,
        cgroup: &cgroup,
        max_fd: super::highest_open_fd() + 16,
    };
    nix::sched::setns(pinned.pidfd.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|err| {
        if err == nix::errno::Errno::ESRCH {
            ExecError::NotRunning {
                container: target.container.clone(),
            }
        } else {
            ExecError::Sys {
                step: "setns(CLONE_NEWPID)",
                err,
            }
        }
    })?;
    let forked = sys::clone_fork(0);
    // Back to our own namespace for children at once, whatever the fork did.
    let restored = nix::sched::setns(own_pid_ns.as_fd(), CloneFlags::CLONE_NEWPID);
    let pid = match forked {
        Ok(sys::Forked::Child) => {
            drop(rd);
            exec_child_main(&child, wr.as_raw_fd())
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        // A PID namespace whose init is exiting refuses new members (ENOMEM from fork).
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
            restored.map_err(|err| ExecError::Sys {
                step: "setns back to our PID namespace",
                err,
            })?;
            return Err(ExecError::NotRunning {
                container: target.container.clone(),
            });
        }
        Err(e) => {
            restored.map_err(|err| ExecError::Sys {
                step: "setns back to our PID namespace",
                err,
            })?;
            return Err(ExecError::Fork(e));
        }
    };
    drop(wr);
    let reap = |pid: Pid| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    };
    if let Err(err) = restored {
        reap(pid);
        return Err(ExecError::Sys {
            step: "setns back to our PID namespace",
            err,
        });
    }
    let mut buf = Vec::new();
    let read = super::read_sync(rd, &mut buf);
    if let Some(f) = sync::decode(&buf) {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(ExecError::Child(f));
    }
    if let Err(e) = read {
        reap(pid);
        return Err(ExecError::Sync(e));
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_counts_fields_after_the_name() {
        let stat =
            "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(compute_start_time(stat), Some(987654));
        assert_eq!(compute_start_time("1 (x) S 0"), None);
    }

    #[test]
    fn our_own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(t > 0);
        assert_eq!(start_time(me).unwrap(), t);
    }
}
