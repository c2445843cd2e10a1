//! The child's error report across the fork: `(stage, errno, detail)` over a close-on-exec
//! pipe. EOF without a record means `execve` succeeded.
//!
//! The encoding is fixed-size so that the child can write it from a stack buffer without
//! allocating.

use std::fmt;

/// The step of the child that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Signals = 1,
    Session,
    Stdio,
    Mkdir,
    CreateFile,
    Mount,
    Symlink,
    PivotRoot,
    Chdir,
    NoNewPrivs,
    Capabilities,
    Groups,
    Setgid,
    Setuid,
    Exec,
    ExecNotFound,
    DeathSignal,
    Cgroup,
    /// `setns` into a running container's namespaces (`podsup exec`).
    Namespaces,
    /// `chroot` into a running container's root (`podsup exec`).
    Root,
    /// Making the terminal the controlling one (`podsup exec -t`).
    Terminal,
}

impl Stage {
    fn from_u8(v: u8) -> Option<Stage> {
        use Stage::*;
        const ALL: [Stage; 21] = [
            Signals,
            Session,
            Stdio,
            Mkdir,
            CreateFile,
            Mount,
            Symlink,
            PivotRoot,
            Chdir,
            NoNewPrivs,
            Capabilities,
            Groups,
            Setgid,
            Setuid,
            Exec,
            ExecNotFound,
            DeathSignal,
            Cgroup,
            Namespaces,
            Root,
            Terminal,
        ];
        ALL.into_iter().find(|s| *s as u8 == v)
    }
}

pub const DETAIL_MAX: usize = 1024;
pub const RECORD_LEN: usize = 1 + 4 + 2 + DETAIL_MAX;

/// Fills `buf` with one record; used by the child, so it must not allocate.
pub fn encode(buf: &mut [u8; RECORD_LEN], stage: Stage, errno: i32, detail: &[u8]) -> usize {
    let n = detail.len().min(DETAIL_MAX);
    buf[0] = stage as u8;
    buf[1..5].copy_from_slice(&errno.to_le_bytes());
    buf[5..7].copy_from_slice(&(n as u16).to_le_bytes());
    buf[7..7 + n].copy_from_slice(&detail[..n]);
    7 + n
}

/// A failure before `execve`, as the parent received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    pub stage: Stage,
    pub errno: i32,
    pub detail: String,
}

pub fn decode(bytes: &[u8]) -> Option<ChildFailure> {
    if bytes.len() < 7 {
        return None;
    }
    let stage = Stage::from_u8(bytes[0])?;
    let errno = i32::from_le_bytes(bytes[1..5].try_into().ok()?);
    let n = u16::from_le_bytes(bytes[5..7].try_into().ok()?) as usize;
    let detail = String::from_utf8_lossy(bytes.get(7..7 + n)?).into_owned();
    Some(ChildFailure {
        stage,
        errno,
        detail,
    })
}

/// `strerror` text in the lowercase style of our messages.
pub fn errno_text(errno: i32) -> String {
    let desc = nix::errno::Errno::from_raw(errno).desc();
    let mut s = desc.to_string();
    if let Some(first) = s.get(0..1) {
        let lower = first.to_ascii_lowercase();
        s.replace_range(0..1, &lower);
    }
    s
}

impl fmt::Display for ChildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = errno_text(self.errno);
        match self.stage {
            Stage::Exec => write!(f, "exec {:?}: {err}", self.detail),
            Stage::ExecNotFound => {
                write!(
                    f,
                    "exec {:?}: executable file not found in $PATH",
                    self.detail
                )
            }
            s => write!(f, "{}: {}: {err}", stage_name(s), self.detail),
        }
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Signals => "reset signals",
        Stage::Session => "setsid",
        Stage::Stdio => "set up stdio",
        Stage::Mkdir => "mkdir",
        Stage::CreateFile => "create mount point",
        Stage::Mount => "mount",
        Stage::Symlink => "symlink",
        Stage::PivotRoot => "pivot_root",
        Stage::Chdir => "chdir",
        Stage::NoNewPrivs => "set no_new_privs",
        Stage::Capabilities => "set capabilities",
        Stage::Groups => "setgroups",
        Stage::Setgid => "setgid",
        Stage::Setuid => "setuid",
        Stage::Exec | Stage::ExecNotFound => "exec",
        Stage::DeathSignal => "set parent death signal",
        Stage::Cgroup => "join cgroup",
        Stage::Namespaces => "enter the container's namespaces",
        Stage::Root => "enter the container's root",
        Stage::Terminal => "set the controlling terminal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_messages() {
        let mut buf = [0u8; RECORD_LEN];
        let n = encode(&mut buf, Stage::Exec, libc::ENOENT, b"/bin/nginx");
        let f = decode(&buf[..n]).unwrap();
        assert_eq!(
            f.to_string(),
            "exec \"/bin/nginx\": no such file or directory"
        );
        let n = encode(&mut buf, Stage::ExecNotFound, libc::ENOENT, b"nginx");
        assert_eq!(
            decode(&buf[..n]).unwrap().to_string(),
            "exec \"nginx\": executable file not found in $PATH"
        );
        let n = encode(&mut buf, Stage::Mount, libc::EACCES, b"/data");
        assert_eq!(
            decode(&buf[..n]).unwrap().to_string(),
            "mount: /data: permission denied"
        );
        assert_eq!(decode(&buf[..3]), None);
    }
}
