//! One running check of a probe or hook, driven by the shim's poll loop and never blocking
//! it: a non-blocking TCP connect, an HTTP/1.1 GET over a non-blocking socket, a process
//! run in the container with its output on a non-blocking pipe, or a plain wait (sleep).
//!
//! The loop asks [`Check::interest`] what to poll, calls [`Check::on_ready`] when the fd is
//! ready, [`Check::on_exit`] when the process was reaped and [`Check::on_timeout`] at the
//! deadline. Failure texts follow the kubelet's (Go's) wording.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::probe::{self, ProbeKind};

/// The kubelet reads at most 10 KiB of a probe's output or an HTTP body.
pub const MAX_OUTPUT: usize = 10 * 1024;

/// How a check ended: success or failure, with the text the kubelet would report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success(String),
    Failure(String),
    /// The check could not run at all (the kubelet's "probe errored": a process that could
    /// not be started in the container); counts as a failure.
    Error(String),
}

/// What the check is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Probe(ProbeKind),
    PostStart,
    PreStop,
}

pub enum Io {
    Tcp {
        sock: OwnedFd,
        addr: SocketAddr,
    },
    Http {
        sock: OwnedFd,
        url: String,
        connected: bool,
        req: Vec<u8>,
        sent: usize,
        resp: Vec<u8>,
    },
    Exec {
        pid: Pid,
        out: Option<OwnedFd>,
        buf: Vec<u8>,
        /// `command "…"` as the kubelet quotes it in a timeout.
        cmd: String,
    },
    /// A sleep hook: only the deadline ends it.
    Sleep,
    /// Decided when it started (a refused connect, an unknown port…).
    Done(Outcome),
}

pub struct Check {
    pub ctr: usize,
    pub purpose: Purpose,
    pub io: Io,
    /// When it times out (probes: timeoutSeconds; sleep: its end; preStop: the grace
    /// period's end); `None`: never (postStart).
    pub deadline: Option<Instant>,
    /// The exit code of its process, once reaped.
    pub exit_code: Option<i32>,
}

/// Go's text for an errno: lower case, no "(os error N)".
fn errno_text(e: Errno) -> String {
    let s = std::io::Error::from_raw_os_error(e.raw_os_error()).to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// Starts a non-blocking connect; `Ok(None)`: in progress.
fn connect(addr: &SocketAddr) -> Result<(OwnedFd, bool), String> {
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let sock = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("dial tcp {addr}: socket: {}", errno_text(e)))?;
    match rustix::net::connect(&sock, addr) {
        Ok(()) => Ok((sock, true)),
        Err(Errno::INPROGRESS) | Err(Errno::INTR) => Ok((sock, false)),
        Err(e) => Err(format!("dial tcp {addr}: connect: {}", errno_text(e))),
    }
}

impl Check {
    pub fn done(ctr: usize, purpose: Purpose, outcome: Outcome) -> Check {
        Check {
            ctr,
            purpose,
            io: Io::Done(outcome),
            deadline: None,
            exit_code: None,
        }
    }

    /// A tcpSocket probe: succeeds once the connection is established.
    pub fn tcp(ctr: usize, purpose: Purpose, addr: SocketAddr, deadline: Instant) -> Check {
        let io = match connect(&addr) {
            Ok((_, true)) => Io::Done(Outcome::Success(String::new())),
            Ok((sock, false)) => Io::Tcp { sock, addr },
            Err(e) => Io::Done(Outcome::Failure(e)),
        };
        Check {
            ctr,
            purpose,
            io,
            deadline: Some(deadline),
            exit_code: None,
        }
    }

    /// An HTTP GET of `req` to `addr`.
    pub fn http(
        ctr: usize,
        purpose: Purpose,
        addr: SocketAddr,
        url: String,
        req: Vec<u8>,
        deadline: Option<Instant>,
    ) -> Check {
        let io = match connect(&addr) {
            Ok((sock, connected)) => Io::Http {
                sock,
                url,
                connected,
                req,
                sent: 0,
                resp: Vec::new(),
            },
            Err(e) => Io::Done(Outcome::Failure(format!("Get {url:?}: {e}"))),
        };
        Check {
            ctr,
            purpose,
            io,
            deadline,
            exit_code: None,
        }
    }

    /// A process already spawned (a direct child of the shim), its output on `out`.
    pub fn exec(
        ctr: usize,
        purpose: Purpose,
        pid: Pid,
        out: OwnedFd,
        argv: &[String],
        deadline: Option<Instant>,
    ) -> Check {
        let _ = nix::fcntl::fcntl(
            &out,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        Check {
            ctr,
            purpose,
            io: Io::Exec {
                pid,
                out: Some(out),
                buf: Vec::new(),
                cmd: argv.join(" "),
            },
            deadline,
            exit_code: None,
        }
    }

    pub fn sleep(ctr: usize, purpose: Purpose, until: Instant) -> Check {
        Check {
            ctr,
            purpose,
            io: Io::Sleep,
            deadline: Some(until),
            exit_code: None,
        }
    }

    /// The outcome known without polling (decided at start).
    pub fn settled(&self) -> Option<Outcome> {
        match &self.io {
            Io::Done(o) => Some(o.clone()),
            _ => None,
        }
    }

    /// The process this check runs, if any.
    pub fn pid(&self) -> Option<Pid> {
        match &self.io {
            Io::Exec { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// The fd to poll and for what.
    pub fn interest(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        match &self.io {
            Io::Tcp { sock, .. } => Some((sock.as_fd(), PollFlags::POLLOUT)),
            Io::Http {
                sock,
                connected,
                req,
                sent,
                ..
            } => {
                let flags = if !*connected || *sent < req.len() {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                Some((sock.as_fd(), flags))
            }
            Io::Exec { out: Some(fd), .. } => Some((fd.as_fd(), PollFlags::POLLIN)),
            _ => None,
        }
    }

    /// Progress after poll said the fd is ready; the outcome once there is one.
    pub fn on_ready(&mut self) -> Option<Outcome> {
        match &mut self.io {
            Io::Tcp { sock, addr } => Some(match rustix::net::sockopt::socket_error(&*sock) {
                Ok(Ok(())) => Outcome::Success(String::new()),
                Ok(Err(e)) | Err(e) => {
                    Outcome::Failure(format!("dial tcp {addr}: connect: {}", errno_text(e)))
                }
            }),
            Io::Http {
                sock,
                url,
                connected,
                req,
                sent,
                resp,
            } => {
                if !*connected {
                    match rustix::net::sockopt::socket_error(&*sock) {
                        Ok(Ok(())) => *connected = true,
                        Ok(Err(e)) | Err(e) => {
                            return Some(Outcome::Failure(format!(
                                "Get {url:?}: dial tcp {}: connect: {}",
                                url.trim_start_matches("http://")
                                    .split('/')
                                    .next()
                                    .unwrap_or(""),
                                errno_text(e)
                            )));
                        }
                    }
                }
                while *sent < req.len() {
                    match rustix::net::send(&*sock, &req[*sent..], rustix::net::SendFlags::NOSIGNAL)
                    {
                        Ok(n) => *sent += n,
                        Err(Errno::AGAIN) | Err(Errno::INTR) => return None,
                        Err(e) => {
                            return Some(Outcome::Failure(format!(
                                "Get {url:?}: write: {}",
                                errno_text(e)
                            )));
                        }
                    }
                }
                let mut chunk = [0u8; 4096];
                loop {
                    match rustix::io::read(&*sock, &mut chunk) {
                        Ok(0) => {
                            return Some(compute_http_outcome(url, resp, true));
                        }
                        Ok(n) => {
                            resp.extend_from_slice(&chunk[..n]);
                            if resp.len() > MAX_OUTPUT || resp.windows(4).any(|w| w == b"\r\n\r\n")
                            {
                                return Some(compute_http_outcome(url, resp, true));
                            }
                        }
                        Err(Errno::AGAIN) | Err(Errno::INTR) => return None,
                        Err(e) => {
                            return Some(Outcome::Failure(format!(
                                "Get {url:?}: read: {}",
                                errno_text(e)
                            )));
                        }
                    }
                }
            }
            Io::Exec { out, buf, .. } => {
                if let Some(fd) = out
                    && drain(fd, buf)
                {
                    *out = None;
                }
                None
            }
            Io::Sleep | Io::Done(_) => None,
        }
    }

    /// The check's process was reaped: the result is its exit status and output.
    pub fn on_exit(&mut self, exit_code: i32) -> Option<Outcome> {
        let Io::Exec { out, buf, .. } = &mut self.io else {
            return None;
        };
        self.exit_code = Some(exit_code);
        // What the process wrote before it ended (a child it left may keep the pipe open:
        // no waiting for EOF).
        if let Some(fd) = out.take() {
            drain(&fd, buf);
        }
        let text = String::from_utf8_lossy(buf).into_owned();
        Some(if exit_code == 0 {
            Outcome::Success(text)
        } else {
            Outcome::Failure(text)
        })
    }

    /// The deadline passed: a process is killed with its process group (its children
    /// with it), a socket closed (on drop). A sleep succeeds.
    pub fn on_timeout(&mut self) -> Outcome {
        match &self.io {
            Io::Sleep => Outcome::Success(String::new()),
            Io::Done(o) => o.clone(),
            Io::Tcp { addr, .. } => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
            Io::Http { url, .. } => Outcome::Failure(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Io::Exec { pid, cmd, .. } => {
                kill_tree(*pid);
                Outcome::Failure(format!("command {cmd:?} timed out"))
            }
        }
    }
}

/// SIGKILL to a check's process and its process group (the spawn makes it a group leader).
pub fn kill_tree(pid: Pid) {
    let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
}

/// Reads what the pipe has (up to [`MAX_OUTPUT`] kept); true at EOF.
fn drain(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    for _ in 0..64 {
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return false,
            Err(_) => return true,
        }
    }
    false
}

/// The kubelet's verdict on a response: 200–399 succeeds, else `HTTP probe failed with
/// statuscode: N`. Pure.
pub fn compute_http_outcome(url: &str, resp: &[u8], complete: bool) -> Outcome {
    match probe::compute_status_code(resp) {
        Ok(Some(code)) if probe::compute_http_ok(code) => Outcome::Success(String::new()),
        Ok(Some(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(None) if complete => Outcome::Failure(format!("Get {url:?}: EOF")),
        Ok(None) => Outcome::Failure(format!("Get {url:?}: no response")),
        Err(e) => Outcome::Failure(format!("Get {url:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_outcomes_read_like_the_kubelet() {
        let url = "http://127.0.0.1:8080/";
        assert_eq!(
            compute_http_outcome(url, b"HTTP/1.1 500 Oops\r\n\r\n", true),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            compute_http_outcome(url, b"HTTP/1.1 301 Moved\r\n\r\n", true),
            Outcome::Success(String::new())
        );
        assert_eq!(
            compute_http_outcome(url, b"", true),
            Outcome::Failure("Get \"http://127.0.0.1:8080/\": EOF".into())
        );
    }

    #[test]
    fn refused_connections_fail_at_once_or_on_ready() {
        // Port 1 on loopback: nothing listens (connect fails with ECONNREFUSED, either
        // immediately or when poll reports the socket).
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut c = Check::tcp(0, Purpose::Probe(ProbeKind::Liveness), addr, Instant::now());
        let out = match c.settled() {
            Some(o) => o,
            None => {
                let (fd, _) = c.interest().unwrap();
                let mut fds = [nix::poll::PollFd::new(fd, PollFlags::POLLOUT)];
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)).unwrap();
                c.on_ready().unwrap()
            }
        };
        assert_eq!(
            out,
            Outcome::Failure("dial tcp 127.0.0.1:1: connect: connection refused".into())
        );
    }
}
