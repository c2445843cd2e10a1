//! `podsup exec POD [-c C] [-i] [-t] -- CMD [ARG...]`: run a command inside a running
//! container, as `kubectl exec` does.
//!
//! The daemon hands over the container's exec descriptor (or refuses); the process is then
//! started by this CLI itself with `container::exec::spawn_in` (no round trip through the
//! shim), as its direct child. Without `-t` the command gets our stdout and stderr (and
//! stdin with `-i`) as they are, and SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to us are
//! passed on to it. With `-t` it gets a pty of the container's own devpts; we relay
//! between it and our terminal (raw mode with `-i`, restored on every way out) and pass on
//! window size changes. The command's exit status is ours (128 + signal if it was killed).

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::ExitCode;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::paths::{Paths, client_failure};
use super::{CliResult, Failure};
use crate::api::{Client, Op, Response};
use crate::container::exec::{self, ExecStdio, ExecTarget};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  podsup exec web -- ls /\n  podsup exec -it web -c app -- sh\n  echo hi | podsup exec -i web -- cat\n\nSee docs/exec.md."
)]
pub struct Args {
    /// The pod's name
    pub pod: String,
    /// The container (default: the pod's `kubectl.kubernetes.io/default-container`
    /// annotation, else its first container)
    #[arg(short, long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// The pod's namespace
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Pass stdin to the command
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (stdin must be one)
    #[arg(short = 't', long)]
    pub tty: bool,
    #[command(flatten)]
    pub paths: Paths,
    /// The command and its arguments, after `--`; a name without `/` is looked up in the
    /// container's PATH
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The signals passed on to the command (without a terminal; with one, the terminal's
/// own keys make them).
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

pub fn run(args: Args) -> CliResult {
    let mut c = Client::request(
        &args.paths.run,
        Op::Exec {
            namespace: args.namespace.clone(),
            pod: args.pod.clone(),
            container: args.container.clone(),
        },
    )
    .map_err(client_failure)?;
    let (mut target, note) = match c.read().map_err(client_failure)? {
        Response::Exec { target, note } => (target, note),
        Response::Error { message } => {
            return Err(Failure::User(format!("podsup exec: {message}")));
        }
        other => {
            return Err(Failure::Internal(anyhow::anyhow!(
                "unexpected answer: {other:?}"
            )));
        }
    };
    drop(c);
    if let Some(note) = note {
        let _ = writeln!(io::stderr(), "{note}");
    }
    let tty =
        args.tty && (io::stdin().is_terminal() || (!args.stdin && io::stdout().is_terminal()));
    if args.tty && !tty {
        let _ = writeln!(
            io::stderr(),
            "Unable to use a TTY - input is not a terminal or the right kind of file"
        );
    }

    // Every signal we handle goes through a signalfd; the child empties its mask.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGWINCH);
    for s in FORWARDED {
        mask.add(s);
    }
    mask.thread_block()
        .map_err(|e| Failure::Internal(anyhow::Error::new(e).context("block signals")))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Failure::Internal(anyhow::Error::new(e).context("signalfd")))?;

    let (stdio, master) = if tty {
        if !target.env.iter().any(|e| e.starts_with("TERM=")) {
            // What docker and containerd give a command with a terminal.
            target.env.push("TERM=xterm".into());
        }
        let (master, slave) = open_pty(&target)?;
        copy_window_size(&master);
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| internal(e, "dup pty"));
        let stdio = ExecStdio {
            stdin: dup(&slave)?,
            stdout: dup(&slave)?,
            stderr: slave,
            terminal: true,
        };
        (stdio, Some(master))
    } else {
        let dup = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .map_err(|e| internal(e, "dup stdio"))
        };
        let stdin = if args.stdin {
            dup(io::stdin().as_fd())?
        } else {
            std::fs::File::open("/dev/null")
                .map_err(|e| internal(e, "open /dev/null"))?
                .into()
        };
        let stdio = ExecStdio {
            stdin,
            stdout: dup(io::stdout().as_fd())?,
            stderr: dup(io::stderr().as_fd())?,
            terminal: false,
        };
        (stdio, None)
    };

    let pid = exec::spawn_in(&target, &args.command, stdio).map_err(|e| {
        let message = format!("podsup exec: {e}");
        match e.exit_status() {
            Some(code) => Failure::Exit { code, message },
            // Not running any more, or the container refused (a working directory that is
            // gone): the user's to know, not an internal failure.
            None => match e {
                exec::ExecError::NotRunning { .. } | exec::ExecError::Child(_) => {
                    Failure::User(message)
                }
                _ => Failure::Internal(anyhow::anyhow!(message)),
            },
        }
    })?;
    let status = match &master {
        Some(m) => {
            // Raw mode only when our keys go to the command; restored when `_raw` drops.
            let _raw = if args.stdin {
                Some(RawMode::enter(io::stdin().as_fd())?)
            } else {
                None
            };
            relay(pid, &sigfd, m, args.stdin)?
        }
        None => wait(pid, &sigfd)?,
    };
    Ok(ExitCode::from(status))
}

fn internal(e: impl Into<anyhow::Error>, what: &'static str) -> Failure {
    Failure::Internal(e.into().context(what))
}

/// A pty of the container's own devpts (`/dev/pts/ptmx` under PID 1's root, resolved
/// inside that root), so that `tty` in the container names it; the slave belongs to the
/// command's user.
fn open_pty(target: &ExecTarget) -> Result<(OwnedFd, OwnedFd), Failure> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::pty::OpenptFlags;
    let root = rustix::fs::open(
        format!("/proc/{}/root", target.pid),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| {
        Failure::User(format!(
            "podsup exec: container {:?} is not running",
            target.container
        ))
    })?;
    let master = rustix::fs::openat2(
        &root,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| internal(e, "open the container's /dev/pts/ptmx"))?;
    if !target.is_running() {
        return Err(Failure::User(format!(
            "podsup exec: container {:?} is not running",
            target.container
        )));
    }
    rustix::pty::unlockpt(&master).map_err(|e| internal(e, "unlock pty"))?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
    .map_err(|e| internal(e, "open pty slave"))?;
    rustix::fs::fchown(
        &slave,
        Some(rustix::fs::Uid::from_raw(target.creds.uid)),
        None,
    )
    .map_err(|e| internal(e, "chown pty slave"))?;
    Ok((master, slave))
}

/// Sets the pty's window size to our terminal's (stdin's, else stdout's).
fn copy_window_size(master: &OwnedFd) {
    let size = rustix::termios::tcgetwinsize(io::stdin())
        .or_else(|_| rustix::termios::tcgetwinsize(io::stdout()));
    if let Ok(ws) = size {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

/// Our terminal in raw mode until dropped (on every return path, errors included).
struct RawMode {
    fd: OwnedFd,
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Result<RawMode, Failure> {
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| internal(e, "dup stdin"))?;
        let saved = rustix::termios::tcgetattr(&fd).map_err(|e| internal(e, "tcgetattr"))?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &raw)
            .map_err(|e| internal(e, "tcsetattr"))?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.fd,
            rustix::termios::OptionalActions::Drain,
            &self.saved,
        );
    }
}

/// The exit status of a finished child: its code, or 128 + the signal that killed it.
fn compute_status(ws: WaitStatus) -> Option<u8> {
    match ws {
        WaitStatus::Exited(_, code) => Some(code as u8),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32) as u8),
        _ => None,
    }
}

/// Handles what the signalfd has: passes signals on, and returns the exit status once the
/// child is reaped. `winch`: the window changed.
fn on_signals(pid: Pid, sigfd: &SignalFd, pass_on: bool, winch: &mut bool) -> Option<u8> {
    let mut done = None;
    while let Ok(Some(info)) = sigfd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => {}
            Ok(Signal::SIGWINCH) => *winch = true,
            Ok(s) if pass_on => {
                let _ = nix::sys::signal::kill(pid, s);
            }
            _ => {}
        }
    }
    if let Ok(ws) = nix::sys::wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        done = compute_status(ws);
    }
    done
}

/// Waits for the child, passing our signals on.
fn wait(pid: Pid, sigfd: &SignalFd) -> Result<u8, Failure> {
    let mut winch = false;
    loop {
        if let Some(code) = on_signals(pid, sigfd, true, &mut winch) {
            return Ok(code);
        }
        let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(internal(e, "poll")),
        }
    }
}

/// Copies between our terminal and the pty until the child has exited and the pty has no
/// more output.
fn relay(pid: Pid, sigfd: &SignalFd, master: &OwnedFd, input: bool) -> Result<u8, Failure> {
    let mut stdin_open = input;
    let mut master_open = true;
    let mut buf = [0u8; 16 * 1024];
    let mut out = io::stdout().lock();
    let stdin = io::stdin();
    loop {
        let mut winch = false;
        let status = on_signals(pid, sigfd, true, &mut winch);
        if winch {
            copy_window_size(master);
        }
        if let Some(code) = status {
            // What is still in the pty, without waiting for writers the command left behind.
            let _ = nix::fcntl::fcntl(
                master,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            while master_open {
                match nix::unistd::read(master, &mut buf) {
                    Ok(n) if n > 0 && out.write_all(&buf[..n]).is_ok() => {}
                    _ => master_open = false,
                }
            }
            let _ = out.flush();
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(internal(e, "poll")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut at = 1;
        if master_open {
            if ready[at] {
                match nix::unistd::read(master, &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    // EIO: no slave fd is open any more; the child's exit follows (or the
                    // child goes on without a terminal: keep waiting for it).
                    _ => master_open = false,
                }
            }
            at += 1;
        }
        if stdin_open && ready[at] {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => write_all_fd(master, &buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                _ => stdin_open = false,
            }
        }
    }
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        let p = Pid::from_raw(1);
        assert_eq!(compute_status(WaitStatus::Exited(p, 7)), Some(7));
        assert_eq!(
            compute_status(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(compute_status(WaitStatus::StillAlive), None);
    }
}
