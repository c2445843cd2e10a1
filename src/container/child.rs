//! The container process between `clone3` and `execve`.
//!
//! It runs in a fresh mount namespace (and PID namespace unless the pod shares one), forked
//! from the single-threaded shim. Everything it needs was prepared before the fork
//! ([`Prepared`]): it only issues syscalls on prepared C strings, in this order:
//!
//! 1. signals: empty mask, default dispositions (the shim blocks signals for its signalfd, and
//!    Rust ignores SIGPIPE; both survive `execve`), parent-death signal SIGKILL
//! 2. `setsid`, stdio onto the container's pipes, every other fd close-on-exec
//! 3. join the container's cgroup (`Prepared::cgroup`, when the caller set one), before any exec
//! 4. `/` made a slave mount, the overlay root mounted
//! 5. `pivot_root` with the old root on a randomly named directory of the new root
//! 6. after the pivot, on container paths (so symlinks in the image resolve inside the
//!    container): /proc, /dev, /sys, /etc files, the termination log, volumes (bind sources
//!    are fds opened by the parent, mounted from `/proc/self/fd/N`), the read-only root, and
//!    Docker's masked and read-only /proc paths. The old root stays attached until the last
//!    bind mount (the kernel binds only from mounts in the caller's namespace), then goes.
//! 7. `chdir(workingDir)`, `no_new_privs`, bounding set, groups/gid/uid, capability sets,
//!    the parent-death signal once more (a uid change clears it)
//! 8. `execve` over each candidate path (a `$PATH` search), or report and `_exit`
//!
//! No allocation, no locks, no logging, no panics: a failure is written to the sync pipe as
//! `(stage, errno, detail)` and the child `_exit`s.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

use super::sync::{self, Stage};
use super::{Command, Credentials, Prepared, Step};

type Fail = (Stage, i32, *const libc::c_char);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(rc: libc::c_int, stage: Stage, detail: &CStr) -> Result<(), Fail> {
    if rc < 0 {
        Err((stage, errno(), detail.as_ptr()))
    } else {
        Ok(())
    }
}

/// Entry point of the container process. Never returns. With `park` (the read end of the
/// go pipe), the process stops after joining its cgroup, keeps only the fds it still needs,
/// and goes on when one byte arrives (EOF: the shim gave up on it, `_exit`).
pub fn child_main(p: &Prepared, sync_fd: RawFd, park: Option<RawFd>) -> ! {
    let failure = match run(p, sync_fd, park) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report(sync_fd, failure);
    // SAFETY: `_exit` ends the process without running atexit handlers or destructors that
    // belong to the parent's state; it is async-signal-safe.
    unsafe { libc::_exit(1) }
}

fn report(sync_fd: RawFd, (stage, err, detail): Fail) {
    let mut buf = [0u8; sync::RECORD_LEN];
    // SAFETY: every detail pointer comes from a `CStr` in `Prepared` (or a static one), which
    // outlives the child.
    let detail = unsafe { CStr::from_ptr(detail) }.to_bytes();
    let n = sync::encode(&mut buf, stage, err, detail);
    // SAFETY: writes `n` initialised bytes of `buf` to the sync pipe; a failed write leaves
    // the parent with EOF, which it cannot mistake for success because the child exits 1
    // before it could have exec'd.
    unsafe {
        libc::write(sync_fd, buf.as_ptr().cast(), n);
    }
}

enum Never {}

fn run(p: &Prepared, sync_fd: RawFd, park: Option<RawFd>) -> Result<Never, Fail> {
    reset_signals()?;
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(rc, Stage::DeathSignal, c"PR_SET_PDEATHSIG")?;
    // Docker's and runc's default: files the container creates are not group/world writable
    // whatever umask podsup was started with.
    // SAFETY: umask takes and returns a plain integer.
    unsafe { libc::umask(0o022) };
    // SAFETY: plain syscall without pointers.
    let rc = unsafe { libc::setsid() };
    check(rc, Stage::Session, c"setsid")?;
    setup_stdio([p.stdin_fd, p.stdout_fd, p.stderr_fd], p.max_fd)?;

    // Join the container's cgroup before anything runs in the container (v1 does not move
    // charges made before the move). Filled in by the cgroup work; `None` until then.
    if let Some(cg) = &p.cgroup
        && let Err(e) = cg.join_self()
    {
        return Err((Stage::Cgroup, e.errno as i32, c"cgroup.procs".as_ptr()));
    }
    if let Some(go) = park {
        close_all_but(p, &[sync_fd, go]);
        wait_go(go);
    }

    for step in &p.steps {
        apply_step(step)?;
    }
    pivot(p)?;
    for step in &p.post_pivot {
        apply_step(step)?;
    }
    // SAFETY: `workdir` is a NUL-terminated string owned by `p`.
    let rc = unsafe { libc::chdir(p.workdir.as_ptr()) };
    check(rc, Stage::Chdir, &p.workdir)?;
    drop_privileges(&p.creds)?;
    // Again: a change of uid or gid clears the parent-death signal (commit_creds in
    // kernel/cred.c).
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(rc, Stage::DeathSignal, c"PR_SET_PDEATHSIG")?;
    exec(&p.command)
}

/// Closes every fd from 3 up except `keep` and the bind sources (a parked process must not
/// hold the shim's other pipes open for days). No allocation: a scan for the next kept fd.
fn close_all_but(p: &Prepared, keep: &[RawFd]) {
    let kept = || {
        keep.iter()
            .copied()
            .chain(p.source_fds.iter().map(|f| f.as_raw_fd()))
    };
    let mut next: RawFd = 3;
    loop {
        let upto = kept().filter(|&k| k >= next).min();
        let last = match upto {
            Some(k) => k - 1,
            None => RawFd::MAX,
        };
        if last >= next {
            // SAFETY: closes fd numbers only; none of them is used again in this process.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, next as u32, last as u32, 0) };
            if rc < 0 {
                // Before Linux 5.9: one by one up to what the parent had open.
                for fd in next..=last.min(p.max_fd) {
                    // SAFETY: as above.
                    unsafe { libc::close(fd) };
                }
            }
        }
        match upto {
            Some(k) => next = k + 1,
            None => break,
        }
    }
}

/// Blocks until the shim sends the go byte; `_exit`s quietly on EOF (the shim dropped it).
fn wait_go(go: RawFd) {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reads one byte into a local buffer.
        let n = unsafe { libc::read(go, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            // SAFETY: closes the fd this function owns.
            unsafe { libc::close(go) };
            return;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // SAFETY: see child_main.
        unsafe { libc::_exit(0) }
    }
}

fn reset_signals() -> Result<(), Fail> {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before use; resetting
    // dispositions to SIG_DFL installs no handler code.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let rc = libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
        check(rc, Stage::Signals, c"sigprocmask")?;
        // Every signal, including the two glibc keeps for itself (32, 33) and which its
        // signal() refuses: the raw rt_sigaction with an all-zero kernel sigaction is
        // SIG_DFL, no flags, empty mask. Ignored signals survive execve otherwise.
        let dfl = [0u64; 4];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
    }
    Ok(())
}

/// Puts `fds` on 0, 1, 2 and marks every other fd close-on-exec (`max_fd`: the highest fd
/// the parent may have had open, for kernels without close_range).
fn setup_stdio(fds: [RawFd; 3], max_fd: RawFd) -> Result<(), Fail> {
    for (from, to) in fds.into_iter().zip(0..) {
        // SAFETY: dup2 on fds that the parent opened for this child; dup2 clears CLOEXEC on
        // the new descriptor, as stdio needs.
        let rc = unsafe { libc::dup2(from, to) };
        check(rc, Stage::Stdio, c"dup2")?;
    }
    // Every inherited fd from 3 up is closed at exec (the sync pipe already is).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags; no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        // Before Linux 5.11: mark each fd the parent may have had open.
        for fd in 3..=max_fd {
            // SAFETY: F_SETFD on a number that may not be an open fd fails with EBADF only.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

fn opt_ptr(s: &Option<std::ffi::CString>) -> *const libc::c_char {
    s.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

fn apply_step(step: &Step) -> Result<(), Fail> {
    match step {
        Step::Mkdir { path } => {
            // SAFETY: NUL-terminated path owned by `Prepared`.
            let rc = unsafe { libc::mkdir(path.as_ptr(), 0o755) };
            if rc < 0 && errno() != libc::EEXIST {
                return Err((Stage::Mkdir, errno(), path.as_ptr()));
            }
            Ok(())
        }
        Step::Touch { path } => {
            // SAFETY: NUL-terminated path; the fd is closed right away.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd < 0 {
                let e = errno();
                // An existing directory or device node is a fine mount point too.
                if e != libc::EISDIR && e != libc::ENXIO {
                    return Err((Stage::CreateFile, e, path.as_ptr()));
                }
            } else {
                // SAFETY: `fd` was just opened by us.
                unsafe { libc::close(fd) };
            }
            Ok(())
        }
        Step::ReopenSource { path, fd } => {
            // SAFETY: open/fstat/dup3/close on a NUL-terminated path and fds of this process;
            // `st_old`/`st_new` are locals filled by fstat.
            unsafe {
                let new = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                check(new, Stage::Mount, path)?;
                let mut st_old: libc::stat = std::mem::zeroed();
                let mut st_new: libc::stat = std::mem::zeroed();
                check(libc::fstat(*fd, &mut st_old), Stage::Mount, path)?;
                check(libc::fstat(new, &mut st_new), Stage::Mount, path)?;
                if st_old.st_dev != st_new.st_dev || st_old.st_ino != st_new.st_ino {
                    return Err((Stage::Mount, libc::ESTALE, path.as_ptr()));
                }
                check(libc::dup3(new, *fd, libc::O_CLOEXEC), Stage::Mount, path)?;
                libc::close(new);
            }
            Ok(())
        }
        Step::DetachOldRoot { path } => {
            // SAFETY: umount2/rmdir on a NUL-terminated path owned by `Prepared`.
            unsafe {
                check(
                    libc::umount2(path.as_ptr(), libc::MNT_DETACH),
                    Stage::PivotRoot,
                    path,
                )?;
                check(libc::rmdir(path.as_ptr()), Stage::PivotRoot, path)?;
            }
            Ok(())
        }
        Step::Symlink { target, link } => {
            // SAFETY: both are NUL-terminated strings owned by `Prepared`.
            let rc = unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) };
            if rc < 0 && errno() != libc::EEXIST {
                return Err((Stage::Symlink, errno(), link.as_ptr()));
            }
            Ok(())
        }
        Step::Mount {
            src,
            target,
            fstype,
            flags,
            data,
            optional,
            detail,
        } => {
            // SAFETY: every pointer is either NULL or a NUL-terminated string owned by
            // `Prepared`; mount(2) does not keep them.
            let rc = unsafe {
                libc::mount(
                    opt_ptr(src),
                    target.as_ptr(),
                    opt_ptr(fstype),
                    *flags,
                    opt_ptr(data).cast(),
                )
            };
            if rc < 0 {
                let e = errno();
                if *optional && e == libc::ENOENT {
                    return Ok(());
                }
                return Err((Stage::Mount, e, detail.as_ptr()));
            }
            Ok(())
        }
    }
}

fn pivot(p: &Prepared) -> Result<(), Fail> {
    // SAFETY: chdir/pivot_root on NUL-terminated strings owned by `p`. The old root goes to
    // `p.old_root` (a fresh, randomly named directory in the new root) and stays attached
    // until the bind mounts from it are done; a later step unmounts and removes it.
    unsafe {
        check(libc::chdir(p.rootfs.as_ptr()), Stage::PivotRoot, &p.rootfs)?;
        let rc = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), p.old_root.as_ptr());
        check(rc as libc::c_int, Stage::PivotRoot, &p.rootfs)?;
        check(libc::chdir(c"/".as_ptr()), Stage::PivotRoot, c"/")?;
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn drop_privileges(p: &Credentials) -> Result<(), Fail> {
    // SAFETY: prctl/setgroups/setgid/setuid/capset with integer arguments or pointers to
    // locals and to `p.groups`, which outlives the calls.
    unsafe {
        if p.no_new_privs {
            let rc = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            check(rc, Stage::NoNewPrivs, c"PR_SET_NO_NEW_PRIVS")?;
        }
        // Bounding set first: dropping needs CAP_SETPCAP, which setuid may take away.
        for cap in 0..=p.last_cap {
            if p.caps & (1u64 << cap) == 0 {
                let rc = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                check(rc, Stage::Capabilities, c"PR_CAPBSET_DROP")?;
            }
        }
        // Keep the permitted set across setuid, so that capset below can choose it.
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            Stage::Capabilities,
            c"PR_SET_KEEPCAPS",
        )?;
        let rc = libc::setgroups(p.groups.len(), p.groups.as_ptr());
        check(rc, Stage::Groups, c"setgroups")?;
        check(libc::setgid(p.gid), Stage::Setgid, c"setgid")?;
        check(libc::setuid(p.uid), Stage::Setuid, c"setuid")?;
        let mut hdr = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let lo = p.caps as u32;
        let hi = (p.caps >> 32) as u32;
        let data = [
            CapData {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            CapData {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        let rc = libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr());
        check(rc as libc::c_int, Stage::Capabilities, c"capset")?;
        let rc = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        check(rc, Stage::Capabilities, c"PR_CAP_AMBIENT_CLEAR_ALL")?;
    }
    Ok(())
}

fn exec(p: &Command) -> Result<Never, Fail> {
    let mut last = libc::ENOENT;
    let mut denied = false;
    for path in &p.exec_candidates {
        // SAFETY: `argv_ptrs` and `envp_ptrs` are NULL-terminated arrays of pointers into
        // CStrings owned by `p`; execve only returns on failure.
        unsafe {
            libc::execve(
                path.as_ptr(),
                p.argv_ptrs().as_ptr(),
                p.envp_ptrs().as_ptr(),
            );
        }
        last = errno();
        if last == libc::EACCES {
            denied = true;
        }
        if last != libc::ENOENT && last != libc::ENOTDIR && last != libc::EACCES {
            break;
        }
    }
    if p.search_path && !denied && (last == libc::ENOENT || last == libc::ENOTDIR) {
        return Err((Stage::ExecNotFound, last, p.exec_display.as_ptr()));
    }
    if denied && last != libc::EACCES && (last == libc::ENOENT || last == libc::ENOTDIR) {
        last = libc::EACCES;
    }
    Err((Stage::Exec, last, p.exec_display.as_ptr()))
}

/// What the `podsup exec` child needs, prepared by [`super::exec::spawn_in`] before the fork.
pub(super) struct ExecChild<'a> {
    /// pidfd of the container's PID 1 (its namespaces are joined through it).
    pub pidfd: RawFd,
    /// O_PATH fd of the container's root (`/proc/<pid>/root`).
    pub root: RawFd,
    pub cwd: &'a CStr,
    pub creds: &'a Credentials,
    pub command: &'a Command,
    pub stdio: [RawFd; 3],
    /// stdin is a terminal to make the controlling one of the new session.
    pub terminal: bool,
    pub cgroup: &'a crate::cgroup::JoinFds,
    pub max_fd: RawFd,
}

/// The namespaces a process joins to be inside a running container. The PID namespace is not
/// among them: the parent entered it for its children before forking this process.
const EXEC_NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP;

/// Entry point of a process started inside a running container (`podsup exec`, exec
/// probes and hooks). It is already in the container's PID namespace (forked after the
/// parent's `setns(CLONE_NEWPID)`). In order:
///
/// 1. signals reset, parent-death signal SIGKILL, umask 022, `setsid` (the process leads
///    its own group, so the caller can kill everything it starts with `killpg`), stdio,
///    every other fd close-on-exec; with a terminal, `TIOCSCTTY` on it
/// 2. join the container's cgroups (before any namespace: the v2 migration rule checks the
///    common ancestor in the writer's cgroup namespace)
/// 3. `setns(pidfd, NEWNS|NEWNET|NEWIPC|NEWUTS|NEWCGROUP)` (Linux ≥ 5.8: several namespaces
///    at once through a pidfd, atomically), then `fchdir` + `chroot` onto PID 1's root and
///    `chdir` to the working directory
/// 4. the same credentials as PID 1 (`drop_privileges`, shared with the container start),
///    parent-death signal again, `execve` over the `$PATH` candidates
///
/// Like [`child_main`], no allocation, no locks: a failure goes to the sync pipe.
pub(super) fn exec_child_main(e: &ExecChild<'_>, sync_fd: RawFd) -> ! {
    let failure = match exec_run(e) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let not_found = failure.0 == Stage::ExecNotFound
        || (failure.0 == Stage::Exec && (failure.1 == libc::ENOENT || failure.1 == libc::ENOTDIR));
    let code = if not_found { 127 } else { 126 };
    report(sync_fd, failure);
    // SAFETY: as in `child_main`.
    unsafe { libc::_exit(code) }
}

fn set_death_signal() -> Result<(), Fail> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(rc, Stage::DeathSignal, c"PR_SET_PDEATHSIG")
}

fn exec_run(e: &ExecChild<'_>) -> Result<Never, Fail> {
    reset_signals()?;
    set_death_signal()?;
    // SAFETY: umask takes and returns a plain integer; setsid has no arguments.
    unsafe { libc::umask(0o022) };
    // SAFETY: as above.
    let rc = unsafe { libc::setsid() };
    check(rc, Stage::Session, c"setsid")?;
    setup_stdio(e.stdio, e.max_fd)?;
    if e.terminal {
        // SAFETY: ioctl TIOCSCTTY on fd 0 with an integer argument.
        let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        check(rc, Stage::Terminal, c"TIOCSCTTY")?;
    }
    if let Err(err) = e.cgroup.join_self() {
        return Err((Stage::Cgroup, err.errno as i32, c"cgroup.procs".as_ptr()));
    }
    // SAFETY: setns/fchdir/chroot/chdir on fds the parent opened for us and NUL-terminated
    // strings that outlive the calls.
    unsafe {
        let rc = libc::setns(e.pidfd, EXEC_NAMESPACES);
        check(rc, Stage::Namespaces, c"setns")?;
        check(libc::fchdir(e.root), Stage::Root, c"fchdir")?;
        check(libc::chroot(c".".as_ptr()), Stage::Root, c"chroot")?;
        check(libc::chdir(e.cwd.as_ptr()), Stage::Chdir, e.cwd)?;
    }
    drop_privileges(e.creds)?;
    // A change of uid or gid cleared it (see `run`).
    set_death_signal()?;
    exec(e.command)
}

/// The pause process: PID 1 of a pod's shared PID namespace. Reaps orphans and waits for
/// SIGKILL from the shim (or its parent-death signal). Never returns.
pub fn pause_main() -> ! {
    // SAFETY: prctl/sigprocmask/sigwait/waitpid on locals; no allocation.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::prctl(
            libc::PR_SET_NAME,
            c"podsup-pause".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut());
        loop {
            while libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG) > 0 {}
            let mut sig: libc::c_int = 0;
            libc::sigwait(&set, &mut sig);
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                libc::_exit(0);
            }
        }
    }
}
