//! The few unsafe wrappers the shim needs that nix lacks: `clone3` as a fork with namespace
//! flags, loopback up by ioctl, `_exit`.
//!
//! Each function documents what the caller must guarantee; callers stay safe code.

use std::io;

use nix::unistd::Pid;

/// What `clone_fork` returns in each process.
pub enum Forked {
    Parent(Pid),
    Child,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3` with no new stack: behaves like `fork(2)` but can create namespaces
/// (`CLONE_NEWNS`, `CLONE_NEWPID`, ...) for the child in one step. Later, `CLONE_INTO_CGROUP`
/// places the child in its cgroup before it runs (the cgroup seam).
///
/// The caller must be single-threaded (the shim is): the child gets a copy of the address
/// space in which no other thread can hold a lock. The child must end in `execve` or `_exit`.
pub fn clone_fork(flags: u64) -> io::Result<Forked> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM and with stack 0 duplicates the calling process like
    // fork(2); `args` is a valid clone_args of the size we pass. The caller is single-threaded
    // (see above), so the child starts from a consistent heap.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let rc = if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // Kernels before 5.3 have no clone3: the classic clone with a NULL stack is a fork
        // too (every other argument 0, so the per-architecture argument order is moot).
        // SAFETY: as above; no CLONE_VM, no new stack.
        unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0, 0, 0, 0) }
    } else {
        rc
    };
    match rc {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Ends the calling process at once, without atexit handlers or unwinding: for a forked child.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Sets `IFF_UP` on the loopback interface of the caller's network namespace.
pub fn loopback_up() -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) returns a new fd or -1; we own it through OwnedFd at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, a valid ifreq for "lo".
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Returns the allocator's free memory to the kernel (`malloc_trim(0)`): a long-lived,
/// mostly idle process (the shim) keeps its resident set at what it uses.
pub fn trim_heap() {
    // SAFETY: malloc_trim takes an integer and only touches the allocator's own state; the
    // shim is single-threaded.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The `poll` timeout that wakes a loop at `deadline` (never: `None`): rounded up to the next
/// millisecond so that the loop does not wake just before it and spin, and at most 60 s.
pub fn poll_timeout(deadline: Option<std::time::Instant>) -> nix::poll::PollTimeout {
    use nix::poll::PollTimeout;
    match deadline {
        Some(t) => {
            let ms = t
                .saturating_duration_since(std::time::Instant::now())
                .as_millis()
                + 1;
            PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::NONE)
        }
        None => PollTimeout::NONE,
    }
}
