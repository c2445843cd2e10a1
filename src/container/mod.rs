//! One container: prepare in the parent | `child.rs` after the fork | the sync pipe.
//!
//! [`prepare`] turns a container spec, its image and the pod's sandbox into a [`Prepared`]:
//! every path, mount, argv and env entry as a C string, so that the child after `clone3`
//! only makes syscalls. [`spawn`] forks the child, waits on the close-on-exec sync pipe and
//! returns the pid, or the child's [`ChildFailure`] (a StartError). This module does not
//! supervise: restarts and exits belong to `shim`.

pub mod caps;
mod child;
pub mod env;
pub mod exec;
pub mod sync;
pub mod user;

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::model::{Container, HostPathType, Pod, VolumeMount};
use crate::sys;
pub use child::pause_main;
pub use sync::ChildFailure;

/// An image as the runtime needs it (filled from the image store's `ResolvedImage`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub id: String,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// A pod volume as seen from the host.
#[derive(Clone, Debug)]
pub enum VolumeSource {
    /// A directory podsup made for the pod (emptyDir on disk or on tmpfs).
    EmptyDir(PathBuf),
    HostPath {
        path: PathBuf,
        type_: HostPathType,
    },
}

/// What the pod's sandbox gives every container.
#[derive(Clone, Debug)]
pub struct Sandbox {
    pub hostname: String,
    /// `/dev/shm` of the pod (a tmpfs in the shim's mount namespace, or the host's).
    pub shm: PathBuf,
    pub etc_hostname: PathBuf,
    pub etc_hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub volumes: HashMap<String, VolumeSource>,
    /// Containers get their own PID namespace (false when the pod shares one or uses the host's).
    pub private_pid_ns: bool,
    pub fields: env::FieldValues,
    pub last_cap: u32,
    /// The shim's own permitted set: a container can get no capability beyond it (root on
    /// a hardened device may lack some, e.g. CAP_SYS_RESOURCE).
    pub available_caps: u64,
}

/// Where one run of a container keeps its files.
#[derive(Clone, Debug)]
pub struct ContainerDirs {
    /// Overlay mount point (under `--run/pods/<uid>/`).
    pub rootfs: PathBuf,
    /// Overlay upper and work dirs (under `--root/pods/<uid>/`); removed when the run ends.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The host side of `terminationMessagePath`.
    pub termination_log: PathBuf,
}

/// A failure to prepare a container, before any fork.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Env(#[from] env::EnvError),
    #[error("{0}")]
    User(#[from] user::UserError),
    #[error("{0}")]
    Caps(#[from] caps::UnknownCap),
    #[error("volume mount {mount:?}: no volume of that name in the pod")]
    NoVolume { mount: String },
    #[error("volume {volume:?}: hostPath {path}: {problem}")]
    HostPath {
        volume: String,
        path: PathBuf,
        problem: String,
    },
    #[error("volume mount {mount:?}: {problem}")]
    BadPath { mount: String, problem: String },
    #[error("no command: the manifest gives no command and the image no Entrypoint or Cmd")]
    NoCommand,
    #[error("container has runAsNonRoot and would run as root (uid 0)")]
    NonRoot,
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One root-filesystem step of the child, on prepared C strings.
pub enum Step {
    Mkdir {
        path: CString,
    },
    /// Lazily unmount the old root after pivot_root and remove its directory.
    DetachOldRoot {
        path: CString,
    },
    /// Re-open a bind source in the child's own mount namespace onto the fd number the
    /// parent holds for it (the kernel binds only from mounts of the caller's namespace, and
    /// the parent's fd points into the parent's). The new open must be the same file.
    ReopenSource {
        path: CString,
        fd: RawFd,
    },
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        /// A missing target (ENOENT) is not an error (masked paths the kernel lacks).
        optional: bool,
        /// What to name in an error, e.g. `/data (volume "cache")`.
        detail: CString,
    },
}

/// Everything the child needs, prepared before the fork.
pub struct Prepared {
    pub name: String,
    pub rootfs: CString,
    /// Where pivot_root puts the old root, relative to the new root.
    pub old_root: CString,
    pub steps: Vec<Step>,
    pub post_pivot: Vec<Step>,
    pub workdir: CString,
    /// Who the process runs as, with which capabilities.
    pub creds: Credentials,
    /// argv, envp and the `$PATH` candidates of the program.
    pub command: Command,
    pub stdin_fd: RawFd,
    pub stdout_fd: RawFd,
    pub stderr_fd: RawFd,
    pub private_pid_ns: bool,
    /// The signal that stops this container (image StopSignal or SIGTERM).
    pub stop_signal: nix::sys::signal::Signal,
    /// Bind-mount sources; closed in the parent when the start is over.
    pub source_fds: Vec<OwnedFd>,
    /// The highest fd the parent had open when preparing (for kernels without close_range).
    pub max_fd: RawFd,
    /// The container's cgroup, joined by the child before exec (set by the caller after
    /// [`prepare`]; `None` runs the container in the shim's cgroup).
    pub cgroup: Option<crate::cgroup::JoinFds>,
    /// Fds the child uses by number ([`Prepared::hold`]), closed in the parent with `self`.
    held: Vec<OwnedFd>,
}

impl Prepared {
    /// Keeps the stdio fds open as long as `self`: drop it after the fork so that the
    /// parent's copies of the pipes' write ends close.
    pub fn hold(&mut self, stdio: Stdio) {
        self.held.extend([stdio.stdin, stdio.stdout, stdio.stderr]);
    }
}

/// Who a container process runs as: uid, gids and capabilities, as the container's PID 1
/// gets them and as `podsup exec` gives them again (the same values, one code path in
/// `child.rs`). The capability set is the bounding, permitted and effective set alike;
/// inheritable and ambient are empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub caps: u64,
    /// The highest capability number of the kernel (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    pub no_new_privs: bool,
}

/// A program to `execve`: argv and envp as C strings with their pointer arrays, and the
/// paths to try (a name without `/` is looked up in the `PATH` of `env`, inside whatever
/// root the process has when it execs). Built before a fork; the child only reads it.
pub struct Command {
    /// Own the strings that `argv_ptrs`/`envp_ptrs` point into (never read directly).
    _argv: Vec<CString>,
    envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    pub exec_candidates: Vec<CString>,
    pub exec_display: CString,
    pub search_path: bool,
}

impl Command {
    /// Prepares `argv` (non-empty) with the environment `env` (`NAME=value` strings).
    pub fn new(argv: &[String], env: &[String]) -> Result<Command, PrepareError> {
        let prog = argv.first().ok_or(PrepareError::NoCommand)?;
        let (exec_candidates, search_path) = if prog.contains('/') {
            (vec![cstr("command", prog)?], false)
        } else {
            let path_var = env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or("");
            let mut c = Vec::new();
            for dir in path_var.split(':').filter(|d| !d.is_empty()) {
                c.push(cstr("command", format!("{dir}/{prog}"))?);
            }
            (c, true)
        };
        let argv_c = argv
            .iter()
            .map(|a| cstr("argument", a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp_c = env
            .iter()
            .map(|e| cstr("env", e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp_c.iter().map(|c| c.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(Command {
            _argv: argv_c,
            envp: envp_c,
            argv_ptrs,
            envp_ptrs,
            exec_candidates,
            exec_display: cstr("command", prog)?,
            search_path,
        })
    }

    /// The environment, as `NAME=value` strings.
    pub fn env(&self) -> Vec<String> {
        self.envp
            .iter()
            .map(|e| e.to_string_lossy().into_owned())
            .collect()
    }

    /// The NULL-terminated argv array (pointers into this value).
    pub fn argv_ptrs(&self) -> &[*const libc::c_char] {
        &self.argv_ptrs
    }

    /// The NULL-terminated envp array (pointers into this value).
    pub fn envp_ptrs(&self) -> &[*const libc::c_char] {
        &self.envp_ptrs
    }
}

fn cstr(what: &str, s: impl AsRef<[u8]>) -> Result<CString, PrepareError> {
    CString::new(s.as_ref().to_vec()).map_err(|_| PrepareError::Nul {
        what: what.to_string(),
    })
}

fn cpath(p: &Path) -> Result<CString, PrepareError> {
    cstr(&format!("path {}", p.display()), p.as_os_str().as_bytes())
}

/// Joins an absolute container path onto the rootfs, refusing `..`.
fn in_root(rootfs: &Path, container_path: &str) -> Option<PathBuf> {
    let mut out = rootfs.to_path_buf();
    for c in Path::new(container_path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Steps that create every directory from below `rootfs` down to `path`.
fn mkdirs(steps: &mut Vec<Step>, rootfs: &Path, path: &Path) -> Result<(), PrepareError> {
    let rel = path.strip_prefix(rootfs).unwrap_or(path);
    let mut cur = rootfs.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        steps.push(Step::Mkdir { path: cpath(&cur)? });
    }
    Ok(())
}

struct MountSpec<'a> {
    src: Option<&'a str>,
    fstype: Option<&'a str>,
    flags: libc::c_ulong,
    data: Option<&'a str>,
}

fn mount_step(target: &Path, m: MountSpec<'_>, detail: &str) -> Result<Step, PrepareError> {
    Ok(Step::Mount {
        src: m.src.map(|s| cstr("mount source", s)).transpose()?,
        target: cpath(target)?,
        fstype: m.fstype.map(|s| cstr("fstype", s)).transpose()?,
        flags: m.flags,
        data: m.data.map(|s| cstr("mount data", s)).transpose()?,
        optional: false,
        detail: cstr("detail", detail)?,
    })
}

/// A bind mount of `src` (a `/proc/self/fd/N` path) at `target`, made read-only when asked
/// (a bind mount takes its flags only from a second remount, see mount(2) "MS_BIND").
fn bind(
    steps: &mut Vec<Step>,
    src: &str,
    target: &Path,
    read_only: bool,
    detail: &str,
) -> Result<(), PrepareError> {
    steps.push(mount_step(
        target,
        MountSpec {
            src: Some(src),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        },
        detail,
    )?);
    if read_only {
        steps.push(mount_step(
            target,
            MountSpec {
                src: None,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                data: None,
            },
            detail,
        )?);
    }
    Ok(())
}

/// Marks a mount step as allowed to find its target missing.
fn optional(mut step: Step) -> Step {
    if let Step::Mount { optional, .. } = &mut step {
        *optional = true;
    }
    step
}

/// Bind-mount sources, opened in the parent as O_PATH fds that the child inherits and
/// mounts from `/proc/self/fd/N`: the child resolves no host path after pivot_root.
#[derive(Default)]
struct Sources {
    fds: Vec<OwnedFd>,
    reopen: Vec<Step>,
}

impl Sources {
    /// Opens `path`; with `within`, refuses a path that resolved to outside that directory.
    /// Returns the `/proc/self/fd/N` path and whether it is a directory.
    fn open(&mut self, path: &Path, within: Option<&Path>) -> Result<(String, bool), PrepareError> {
        let io = |what: &'static str, source: std::io::Error| PrepareError::Io {
            what,
            path: path.to_path_buf(),
            source,
        };
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| io("open mount source", e.into()))?;
        let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        if let Some(base) = within {
            let real = std::fs::read_link(&proc_path).map_err(|e| io("resolve mount source", e))?;
            if !real.starts_with(base) {
                return Err(io(
                    "check mount source",
                    std::io::Error::other(format!(
                        "resolves to {} outside {}",
                        real.display(),
                        base.display()
                    )),
                ));
            }
        }
        let st = nix::sys::stat::fstat(&fd).map_err(|e| io("stat mount source", e.into()))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        // The child re-opens what the parent resolved (no symlink left to follow).
        let resolved = std::fs::read_link(&proc_path).map_err(|e| io("resolve mount source", e))?;
        self.reopen.push(Step::ReopenSource {
            path: cpath(&resolved)?,
            fd: fd.as_raw_fd(),
        });
        self.fds.push(fd);
        Ok((proc_path, is_dir))
    }
}

/// Docker's masked paths: hidden with /dev/null (files) or an empty read-only tmpfs (dirs).
const MASKED_FILES: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
];
const MASKED_DIRS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Docker's read-only /proc paths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Checks (and for `*OrCreate`, creates) a hostPath the way the kubelet does.
fn check_host_path(volume: &str, path: &Path, type_: HostPathType) -> Result<(), PrepareError> {
    let fail = |problem: String| PrepareError::HostPath {
        volume: volume.to_string(),
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path);
    let ft = meta.as_ref().map(|m| m.file_type());
    let ok = match type_ {
        HostPathType::Unset => return Ok(()),
        HostPathType::DirectoryOrCreate => {
            if ft.is_err() {
                // The kubelet's modes: 0755 for a directory, 0644 for a file.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|e| fail(format!("create: {e}")))?;
                // The umask applies to the mode above: set it exactly.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| fail(format!("chmod: {e}")))?;
                return Ok(());
            }
            ft.as_ref().is_ok_and(|t| t.is_dir())
        }
        HostPathType::FileOrCreate => {
            if ft.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| fail(format!("create: {e}")))?;
                }
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(path)
                    .map_err(|e| fail(format!("create: {e}")))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| fail(format!("chmod: {e}")))?;
                return Ok(());
            }
            ft.as_ref().is_ok_and(|t| t.is_file())
        }
        HostPathType::Directory => ft.as_ref().is_ok_and(|t| t.is_dir()),
        HostPathType::File => ft.as_ref().is_ok_and(|t| t.is_file()),
        HostPathType::Socket => ft.as_ref().is_ok_and(|t| t.is_socket()),
        HostPathType::CharDevice => ft.as_ref().is_ok_and(|t| t.is_char_device()),
        HostPathType::BlockDevice => ft.as_ref().is_ok_and(|t| t.is_block_device()),
    };
    if ok {
        Ok(())
    } else if let Err(e) = meta {
        Err(fail(match e.raw_os_error() {
            Some(errno) => sync::errno_text(errno),
            None => e.to_string(),
        }))
    } else {
        Err(fail(format!("is not a {type_:?}")))
    }
}

/// The source of one volume mount on the host, after subPath.
/// With a subPath, also the volume's real directory, which the source must stay in.
fn mount_source(
    vm: &VolumeMount,
    sandbox: &Sandbox,
) -> Result<(PathBuf, Option<PathBuf>), PrepareError> {
    let vol = sandbox
        .volumes
        .get(&vm.name)
        .ok_or_else(|| PrepareError::NoVolume {
            mount: vm.name.clone(),
        })?;
    let base = match vol {
        VolumeSource::EmptyDir(p) => p.clone(),
        VolumeSource::HostPath { path, type_ } => {
            check_host_path(&vm.name, path, *type_)?;
            path.clone()
        }
    };
    let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) else {
        return Ok((base, None));
    };
    let bad = |problem: &str| PrepareError::BadPath {
        mount: vm.name.clone(),
        problem: problem.to_string(),
    };
    if Path::new(sub).is_absolute() {
        return Err(bad("subPath must be a relative path"));
    }
    // The kubelet creates a missing subPath as a directory. A container may have planted a
    // symlink in the shared volume: refuse any symlink on the way (stricter than the
    // kubelet, which allows symlinks that stay inside the volume), and check the opened
    // source again (Sources::open) against a swap after this walk.
    let real_base = base.canonicalize().map_err(|source| PrepareError::Io {
        what: "resolve volume",
        path: base.clone(),
        source,
    })?;
    let mut cur = real_base.clone();
    for c in Path::new(sub).components() {
        let Component::Normal(name) = c else {
            if c == Component::CurDir {
                continue;
            }
            return Err(bad("subPath must not contain \"..\""));
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad("subPath goes through a symlink"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|source| PrepareError::Io {
                    what: "create subPath",
                    path: cur.clone(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(PrepareError::Io {
                    what: "check subPath",
                    path: cur.clone(),
                    source,
                });
            }
        }
    }
    Ok((cur, Some(real_base)))
}

/// Reads `etc/<name>` from the topmost layer that has it.
fn read_image_file(image: &ImageInfo, name: &str) -> String {
    image
        .layers
        .iter()
        .rev()
        .find_map(|l| std::fs::read_to_string(l.join(name)).ok())
        .unwrap_or_default()
}

/// The stdio and sync fds of one container start.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Prepares one start of `container`.
pub fn prepare(
    pod: &Pod,
    container: &Container,
    image: &ImageInfo,
    sandbox: &Sandbox,
    dirs: &ContainerDirs,
    stdio: &Stdio,
) -> Result<Prepared, PrepareError> {
    let sc = container.security_context.as_ref();
    let psc = pod.spec.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged) == Some(true);

    // Identity, env, argv.
    let passwd = read_image_file(image, "etc/passwd");
    let group = read_image_file(image, "etc/group");
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group));
    let supplemental = psc.map(|s| s.supplemental_groups.as_slice()).unwrap_or(&[]);
    let id = user::compute_identity(
        run_as_user,
        run_as_group,
        supplemental,
        image.user.as_deref(),
        &passwd,
        &group,
    )?;
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root));
    if non_root == Some(true) && id.uid == 0 {
        return Err(PrepareError::NonRoot);
    }
    let mut envs = env::compute_env(
        pod,
        container,
        &image.env,
        &sandbox.hostname,
        &sandbox.fields,
    )?;
    if !envs.iter().any(|e| e.starts_with("HOME=")) {
        envs.push(format!("HOME={}", id.home));
    }
    let vars = env::manifest_lookup(&envs, container);
    let argv = env::compute_argv(container, &image.entrypoint, &image.cmd, &vars);
    if argv.is_empty() {
        return Err(PrepareError::NoCommand);
    }
    let workdir = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let command = Command::new(&argv, &envs)?;

    // The root filesystem. Before pivot_root only the overlay is mounted; everything else is
    // mounted after it, on container paths, so that symlinks in the image resolve inside the
    // container's root and never on the host. Bind sources are opened here as O_PATH fds
    // and mounted from /proc/self/fd/N (runc does the same).
    let r = &dirs.rootfs;
    let mut steps = Vec::new();
    let mut sources = Sources::default();
    steps.push(mount_step(
        Path::new("/"),
        MountSpec {
            src: None,
            fstype: None,
            flags: libc::MS_REC | libc::MS_SLAVE,
            data: None,
        },
        "make / a slave mount",
    )?);
    let lower: Vec<String> = image
        .layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    if lower.is_empty() {
        return Err(PrepareError::NoCommand);
    }
    let mut overlay = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    );
    // The writable layer is thrown away at every start, so overlayfs need not sync it: without
    // `volatile` the unmount when the container dies runs `sync_filesystem` on the filesystem
    // under `--root`, which waits for every dirty page on that disk (tens of ms on a busy
    // machine) before the shim even hears of the exit.
    if overlay_volatile() {
        overlay.push_str(",volatile");
    }
    steps.push(mount_step(
        r,
        MountSpec {
            src: Some("overlay"),
            fstype: Some("overlay"),
            flags: 0,
            data: Some(&overlay),
        },
        &format!("overlay root {}", r.display()),
    )?);

    // pivot_root puts the old root here; random, so no symlink in an image can aim at it.
    let old_root = format!(".podsup-old-root-{}", random_hex());
    steps.push(Step::Mkdir {
        path: cpath(&r.join(&old_root))?,
    });

    // After pivot_root: container paths.
    let root = Path::new("/");
    let mut post = Vec::new();
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let fs = |steps: &mut Vec<Step>,
              at: &str,
              fstype: &str,
              flags: libc::c_ulong,
              data: Option<&str>| {
        let target = Path::new(at);
        mkdirs(steps, root, target)?;
        steps.push(mount_step(
            target,
            MountSpec {
                src: Some(fstype),
                fstype: Some(fstype),
                flags,
                data,
            },
            at,
        )?);
        Ok::<(), PrepareError>(())
    };
    // /proc first: the bind mounts below take their sources from /proc/self/fd.
    fs(&mut post, "/proc", "proc", nosuid_nodev_noexec, None)?;
    if privileged {
        // All of the host's devices, as Kubernetes gives a privileged container; its own
        // /dev/pts, /dev/mqueue and /dev/shm are mounted over the host's below.
        mkdirs(&mut post, root, Path::new("/dev"))?;
        let (src, _) = sources.open(Path::new("/dev"), None)?;
        bind(
            &mut post,
            &src,
            Path::new("/dev"),
            false,
            "/dev (privileged)",
        )?;
    } else {
        fs(
            &mut post,
            "/dev",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?;
        for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
            let target = Path::new("/dev").join(dev);
            post.push(Step::Touch {
                path: cpath(&target)?,
            });
            let (src, _) = sources.open(&Path::new("/dev").join(dev), None)?;
            bind(&mut post, &src, &target, false, &format!("/dev/{dev}"))?;
        }
    }
    fs(
        &mut post,
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    fs(
        &mut post,
        "/dev/mqueue",
        "mqueue",
        nosuid_nodev_noexec,
        None,
    )?;
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ] {
        post.push(Step::Symlink {
            target: cstr("link", target)?,
            link: cpath(&Path::new("/dev").join(link))?,
        });
    }
    let shm = Path::new("/dev/shm");
    mkdirs(&mut post, root, shm)?;
    let (src, _) = sources.open(&sandbox.shm, None)?;
    bind(&mut post, &src, shm, false, "/dev/shm")?;
    let sys_flags = nosuid_nodev_noexec | if privileged { 0 } else { libc::MS_RDONLY };
    fs(&mut post, "/sys", "sysfs", sys_flags, None)?;

    // /etc files from the sandbox.
    mkdirs(&mut post, root, Path::new("/etc"))?;
    for (host, name) in [
        (&sandbox.etc_hostname, "hostname"),
        (&sandbox.etc_hosts, "hosts"),
        (&sandbox.resolv_conf, "resolv.conf"),
    ] {
        let target = Path::new("/etc").join(name);
        post.push(Step::Touch {
            path: cpath(&target)?,
        });
        let (src, _) = sources.open(host, None)?;
        bind(&mut post, &src, &target, false, &format!("/etc/{name}"))?;
    }

    // terminationMessagePath: a host file bound at the path, read back after exit.
    let tm_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let bad = |what: &str, p: &str| PrepareError::BadPath {
        mount: what.to_string(),
        problem: format!("{p:?} must be an absolute path without \"..\""),
    };
    if !tm_path.starts_with('/') {
        return Err(bad("terminationMessagePath", &tm_path));
    }
    let tm_target =
        in_root(root, &tm_path).ok_or_else(|| bad("terminationMessagePath", &tm_path))?;
    if let Some(parent) = tm_target.parent() {
        mkdirs(&mut post, root, parent)?;
    }
    post.push(Step::Touch {
        path: cpath(&tm_target)?,
    });
    let (src, _) = sources.open(&dirs.termination_log, None)?;
    bind(&mut post, &src, &tm_target, false, &tm_path)?;

    // Volumes, in manifest order (a later mount may sit inside an earlier one).
    for vm in &container.volume_mounts {
        if !vm.mount_path.starts_with('/') {
            return Err(bad(&vm.name, &vm.mount_path));
        }
        let target = in_root(root, &vm.mount_path).ok_or_else(|| bad(&vm.name, &vm.mount_path))?;
        let (path, within) = mount_source(vm, sandbox)?;
        let (src, is_dir) = sources.open(&path, within.as_deref())?;
        if is_dir {
            mkdirs(&mut post, root, &target)?;
        } else {
            if let Some(parent) = target.parent() {
                mkdirs(&mut post, root, parent)?;
            }
            post.push(Step::Touch {
                path: cpath(&target)?,
            });
        }
        let detail = format!("{} (volume {:?})", vm.mount_path, vm.name);
        bind(&mut post, &src, &target, vm.read_only, &detail)?;
    }
    let wd_target = in_root(root, &workdir).ok_or_else(|| bad("workingDir", &workdir))?;
    mkdirs(&mut post, root, &wd_target)?;

    // Bind sources are opened in the child before pivot_root.
    steps.append(&mut sources.reopen);
    post.push(Step::DetachOldRoot {
        path: cpath(&root.join(&old_root))?,
    });

    // Last: nothing may be created on the root after it turns read-only.
    if sc.and_then(|s| s.read_only_root_filesystem) == Some(true) {
        post.push(mount_step(
            Path::new("/"),
            MountSpec {
                src: None,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                data: None,
            },
            "read-only root filesystem",
        )?);
    }
    if !privileged {
        for f in MASKED_FILES {
            post.push(optional(mount_step(
                Path::new(f),
                MountSpec {
                    src: Some("/dev/null"),
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                },
                &format!("mask {f}"),
            )?));
        }
        for d in MASKED_DIRS {
            post.push(optional(mount_step(
                Path::new(d),
                MountSpec {
                    src: Some("tmpfs"),
                    fstype: Some("tmpfs"),
                    flags: libc::MS_RDONLY,
                    data: None,
                },
                &format!("mask {d}"),
            )?));
        }
        for p in READONLY_PATHS {
            for flags in [
                libc::MS_BIND | libc::MS_REC,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | nosuid_nodev_noexec,
            ] {
                post.push(optional(mount_step(
                    Path::new(p),
                    MountSpec {
                        src: Some(p),
                        fstype: None,
                        flags,
                        data: None,
                    },
                    &format!("read-only {p}"),
                )?));
            }
        }
    }

    let caps = caps::compute_caps(sc, sandbox.last_cap)? & sandbox.available_caps;
    let no_new_privs = !privileged && sc.and_then(|s| s.allow_privilege_escalation) != Some(true);
    let stop_name = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.clone())
        .or_else(|| image.stop_signal.clone());
    let stop_signal = stop_name
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(nix::sys::signal::Signal::SIGTERM);

    Ok(Prepared {
        name: container.name.clone(),
        rootfs: cpath(r)?,
        old_root: cstr("old root", &old_root)?,
        steps,
        post_pivot: post,
        workdir: cstr("workingDir", &workdir)?,
        creds: Credentials {
            uid: id.uid,
            gid: id.gid,
            groups: id.groups,
            caps,
            last_cap: sandbox.last_cap,
            no_new_privs,
        },
        command,
        stdin_fd: stdio.stdin.as_raw_fd(),
        stdout_fd: stdio.stdout.as_raw_fd(),
        stderr_fd: stdio.stderr.as_raw_fd(),
        private_pid_ns: sandbox.private_pid_ns,
        stop_signal,
        source_fds: sources.fds,
        max_fd: highest_open_fd() + 16,
        cgroup: None,
        held: Vec::new(),
    })
}

/// overlayfs' `volatile` option exists from Linux 5.10.
fn overlay_volatile() -> bool {
    static VOLATILE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VOLATILE.get_or_init(|| {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        compute_kernel_at_least(&release, (5, 10))
    })
}

/// `"6.1.0-18-amd64"` ≥ (5, 10)?
fn compute_kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

fn highest_open_fd() -> RawFd {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .max()
                .unwrap_or(1024)
        })
        .unwrap_or(1024)
}

/// 16 random hex digits from the kernel.
fn random_hex() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    uuid.chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect()
}

/// Parses a stop signal as images and Kubernetes write it (`SIGQUIT`, `QUIT`, `3`).
pub fn parse_signal(s: &str) -> Option<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).ok()
}

/// Why a start failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("create sync pipe: {0}")]
    Pipe(nix::Error),
    #[error("clone3: {0}")]
    Clone(std::io::Error),
    #[error("{0}")]
    Child(ChildFailure),
    #[error("read sync pipe: {0}")]
    Sync(std::io::Error),
    #[error("the parked container process is gone: {0}")]
    Parked(nix::Error),
}

/// How long the child may take from fork to exec. Its steps are local syscalls; a hung
/// mount source (a dead NFS server behind a hostPath) must not freeze the shim's loop.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads the sync pipe to EOF, for at most [`SETUP_TIMEOUT`].
fn read_sync(rd: OwnedFd, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    let mut file = std::fs::File::from(rd);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("container setup took longer than {SETUP_TIMEOUT:?}"),
            ));
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match file.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Forks the container and waits until it has exec'd (or failed before).
///
/// The caller must be single-threaded (the shim) and put the returned pid in its table
/// before polling again. On a reported failure, the child has been reaped already.
pub fn spawn(p: &Prepared) -> Result<Pid, SpawnError> {
    spawn_begin(p)?.wait()
}

/// A forked container process on its way to `execve` (see [`spawn_begin`]).
pub struct Spawning {
    pid: Pid,
    sync: OwnedFd,
}

impl Spawning {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Returns once the process has exec'd (or failed and was reaped).
    pub fn wait(self) -> Result<Pid, SpawnError> {
        wait_exec(self.pid, self.sync)
    }
}

/// Forks `p`'s process without waiting for its `execve`, so that several containers set up
/// in parallel (their cgroup moves then share one RCU grace period).
pub fn spawn_begin(p: &Prepared) -> Result<Spawning, SpawnError> {
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    match sys::clone_fork(clone_flags(p)).map_err(SpawnError::Clone)? {
        sys::Forked::Child => {
            drop(rd);
            child::child_main(p, wr.as_raw_fd(), None)
        }
        sys::Forked::Parent(pid) => {
            drop(wr);
            Ok(Spawning { pid, sync: rd })
        }
    }
}

fn clone_flags(p: &Prepared) -> u64 {
    let mut flags = libc::CLONE_NEWNS as u64;
    if p.private_pid_ns {
        flags |= libc::CLONE_NEWPID as u64;
    }
    flags
}

/// The parent's side of a start: the sync pipe reaches EOF at the child's `execve`, or
/// carries its failure.
fn wait_exec(pid: Pid, rd: OwnedFd) -> Result<Pid, SpawnError> {
    let mut buf = Vec::new();
    let read = read_sync(rd, &mut buf);
    if let Some(f) = sync::decode(&buf) {
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(SpawnError::Child(f));
    }
    if let Err(e) = read {
        // The child's state is unknown: kill it rather than leave it half set up.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(SpawnError::Sync(e));
    }
    Ok(pid)
}

/// A container process forked ahead of its start: it has its namespaces, its stdio and its
/// cgroup, and waits before touching its root filesystem until [`Parked::release`].
///
/// Why: on cgroup v1 moving a task into a group (`cgroup.procs`) waits for an RCU grace
/// period (`cgroup_threadgroup_rwsem`), 8–15 ms on these machines; a container restarted from
/// a parked process has paid it long before it died. The process holds nothing but the fds
/// it needs (so no other pipe's EOF depends on it), dies with the shim (parent-death signal)
/// and, as PID 1 of an empty PID namespace, sees no signal but SIGKILL.
pub struct Parked {
    pid: Pid,
    go: OwnedFd,
    sync: OwnedFd,
}

impl Parked {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Lets the process set up its root and exec; returns when it has (or failed).
    pub fn release(self) -> Result<Pid, SpawnError> {
        self.release_begin()?.wait()
    }

    /// Lets the process go on without waiting for its `execve`.
    pub fn release_begin(self) -> Result<Spawning, SpawnError> {
        match nix::unistd::write(&self.go, b"g") {
            Ok(_) => {}
            Err(e) => {
                // EPIPE: it died while parked (the OOM killer, a cgroup kill).
                let _ =
                    nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                return Err(SpawnError::Parked(e));
            }
        }
        drop(self.go);
        Ok(Spawning {
            pid: self.pid,
            sync: self.sync,
        })
    }
}

/// Forks `p`'s process parked (see [`Parked`]).
pub fn spawn_parked(p: &Prepared) -> Result<Parked, SpawnError> {
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    match sys::clone_fork(clone_flags(p)).map_err(SpawnError::Clone)? {
        sys::Forked::Child => {
            drop(rd);
            drop(go_w);
            child::child_main(p, wr.as_raw_fd(), Some(go_r.as_raw_fd()))
        }
        sys::Forked::Parent(pid) => {
            drop(wr);
            drop(go_r);
            Ok(Parked {
                pid,
                go: go_w,
                sync: rd,
            })
        }
    }
}

/// Forks the pause process (PID 1 of a shared PID namespace).
pub fn spawn_pause() -> std::io::Result<Pid> {
    match sys::clone_fork(0)? {
        sys::Forked::Child => pause_main(),
        sys::Forked::Parent(pid) => Ok(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(compute_kernel_at_least("6.18.44-fc-v669", (5, 10)));
        assert!(compute_kernel_at_least("5.10.0", (5, 10)));
        assert!(!compute_kernel_at_least("5.4.0-150-generic", (5, 10)));
        assert!(!compute_kernel_at_least("4.19.0", (5, 10)));
        assert!(!compute_kernel_at_least("weird", (5, 10)));
    }

    #[test]
    fn in_root_refuses_dotdot() {
        let r = Path::new("/r");
        assert_eq!(in_root(r, "/a/./b"), Some(PathBuf::from("/r/a/b")));
        assert_eq!(in_root(r, "/a/../b"), None);
        assert_eq!(in_root(r, "/"), Some(PathBuf::from("/r")));
    }

    #[test]
    fn signals() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("quit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("NOPE"), None);
    }
}

#[cfg(test)]
mod prepare_tests {
    use super::*;
    use crate::model::{SecurityContext, VolumeMount};

    fn describe(step: &Step) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match step {
            Step::Mkdir { path } => format!("mkdir {}", s(path)),
            Step::DetachOldRoot { .. } => "detach old root".into(),
            Step::ReopenSource { path, .. } => format!("reopen {}", s(path)),
            Step::Touch { path } => format!("touch {}", s(path)),
            Step::Symlink { link, .. } => format!("symlink {}", s(link)),
            Step::Mount { target, flags, .. } => {
                let ro = if flags & libc::MS_RDONLY != 0 {
                    " ro"
                } else {
                    ""
                };
                let remount = if flags & libc::MS_REMOUNT != 0 {
                    " remount"
                } else {
                    ""
                };
                format!("mount {}{remount}{ro}", s(target))
            }
        }
    }

    /// The order of the child's steps is data: check the parts that matter.
    #[test]
    fn steps_come_in_a_safe_order() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let layer = t.join("layer");
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(layer.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        for f in ["hostname", "hosts", "resolv.conf", "tlog"] {
            std::fs::write(t.join(f), "").unwrap();
        }
        std::fs::create_dir_all(t.join("shm")).unwrap();
        std::fs::create_dir_all(t.join("vol")).unwrap();
        let sandbox = Sandbox {
            hostname: "p".into(),
            shm: t.join("shm"),
            etc_hostname: t.join("hostname"),
            etc_hosts: t.join("hosts"),
            resolv_conf: t.join("resolv.conf"),
            volumes: [("v".to_string(), VolumeSource::EmptyDir(t.join("vol")))].into(),
            private_pid_ns: true,
            fields: Default::default(),
            last_cap: 40,
            available_caps: u64::MAX,
        };
        let dirs = ContainerDirs {
            rootfs: t.join("rootfs"),
            upper: t.join("upper"),
            work: t.join("work"),
            termination_log: t.join("tlog"),
        };
        let image = ImageInfo {
            layers: vec![layer],
            ..Default::default()
        };
        let pod = Pod {
            api_version: "v1".into(),
            kind: "Pod".into(),
            metadata: Default::default(),
            spec: Default::default(),
        };
        let c = Container {
            name: "c".into(),
            command: vec!["/bin/true".into()],
            volume_mounts: vec![VolumeMount {
                name: "v".into(),
                mount_path: "/data".into(),
                read_only: true,
                sub_path: None,
            }],
            security_context: Some(SecurityContext {
                read_only_root_filesystem: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let null = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let stdio = Stdio {
            stdin: null(),
            stdout: null(),
            stderr: null(),
        };
        let p = prepare(&pod, &c, &image, &sandbox, &dirs, &stdio).unwrap();
        let pre: Vec<String> = p.steps.iter().map(describe).collect();
        let post: Vec<String> = p.post_pivot.iter().map(describe).collect();
        let rootfs = t.join("rootfs").display().to_string();
        // Before pivot_root: only the overlay and the re-opened sources, nothing in the image.
        assert_eq!(pre[0], "mount /");
        assert_eq!(pre[1], format!("mount {rootfs}"));
        assert!(pre[2].starts_with(&format!("mkdir {rootfs}/.podsup-old-root-")));
        assert!(pre[3..].iter().all(|s| s.starts_with("reopen ")), "{pre:?}");
        // After: /proc first (binds come from /proc/self/fd), the read-only volume remounted,
        // the old root detached after the last bind, the read-only root after that, masks last.
        let at = |x: &str| {
            post.iter()
                .position(|s| s == x)
                .unwrap_or_else(|| panic!("{x} in {post:?}"))
        };
        assert_eq!(at("mount /proc"), 1);
        assert!(at("mount /data") < at("mount /data remount ro"));
        let last_bind = post
            .iter()
            .rposition(|s| s.starts_with("mount /data"))
            .unwrap();
        assert!(last_bind < at("detach old root"));
        assert!(at("detach old root") < at("mount / remount ro"));
        assert!(at("mount / remount ro") < at("mount /proc/kcore"));
        assert!(post.iter().all(|s| !s.contains(&rootfs)), "{post:?}");
        assert!(p.creds.no_new_privs);
        assert_eq!(p.creds.caps, caps::DEFAULT_SET);
        assert_eq!(p.source_fds.len(), pre.len() - 3);
    }
}
