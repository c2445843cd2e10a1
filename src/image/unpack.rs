//! Unpacks one layer tar into a directory that overlayfs can use as a lowerdir.
//!
//! Owns the safety of unpacking: every entry stays inside the layer directory (no `..`, no
//! absolute path, no write through a symlink that leaves the layer, no hard link to outside),
//! and OCI whiteouts become what overlayfs understands (`.wh.NAME` → a 0/0 character device
//! NAME; `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory). It preserves modes,
//! ownership (when root), mtimes, xattrs, device nodes, fifos, hard links and symlinks.
//! It must only ever write below the directory it is given, which is private to one import.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use tar::EntryType;

/// Why unpacking stopped. The entry is the name as written in the tar.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {entry:?} escapes the layer{how}")]
    Escapes { entry: String, how: String },
    #[error("entry {entry:?}: {step}: {err}")]
    Entry {
        entry: String,
        step: &'static str,
        err: io::Error,
    },
    #[error("read tar: {0}")]
    Tar(io::Error),
}

/// What a tar entry name means in a layer (after `./` prefixes are dropped).
#[derive(Debug, PartialEq, Eq)]
pub enum EntryName {
    /// `.` or `./`: the layer's root directory itself.
    Root,
    /// An ordinary path, as components below the root.
    Path(Vec<OsString>),
    /// `DIR/.wh.NAME`: NAME is deleted in this layer.
    Whiteout { dir: Vec<OsString>, name: OsString },
    /// `DIR/.wh..wh..opq`: DIR hides everything below it in lower layers.
    Opaque { dir: Vec<OsString> },
    /// Other `.wh..wh.*` names: aufs bookkeeping, skipped.
    Ignored,
}

/// Maps a tar entry name to its meaning in the layer, or says why it escapes the layer.
pub fn compute_entry_name(path: &Path) -> Result<EntryName, &'static str> {
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => comps.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(""),
            Component::RootDir | Component::Prefix(_) => return Err(" (absolute path)"),
        }
    }
    let Some(last) = comps.last() else {
        return Ok(EntryName::Root);
    };
    let bytes = last.as_bytes();
    let aufs = |c: &OsString| c.as_bytes().starts_with(b".wh..wh.");
    if bytes != b".wh..wh..opq" && comps.iter().any(aufs) {
        return Ok(EntryName::Ignored);
    }
    if bytes == b".wh..wh..opq" {
        comps.pop();
        return Ok(EntryName::Opaque { dir: comps });
    }
    if bytes.starts_with(b".wh..wh.") {
        return Ok(EntryName::Ignored);
    }
    if let Some(name) = bytes.strip_prefix(b".wh.") {
        if name.is_empty() || name == b"." || name == b".." {
            return Err(" (whiteout of an invalid name)");
        }
        let name = OsStr::from_bytes(name).to_os_string();
        comps.pop();
        return Ok(EntryName::Whiteout { dir: comps, name });
    }
    Ok(EntryName::Path(comps))
}

/// Unpacks the tar stream `tar` into `root` (an existing, empty directory) and returns the
/// size of the regular files written. `privileged` (root) enables chown and device nodes;
/// without it ownership is left to the importing user and device nodes are skipped.
/// `on_progress` is called after each entry and every MiB of file data (for a progress
/// display).
pub fn unpack_layer<R: Read>(
    tar: R,
    root: &Path,
    privileged: bool,
    on_progress: &mut dyn FnMut(),
) -> Result<u64, UnpackError> {
    let mut u = Unpacker {
        on_progress,
        root,
        privileged,
        dirs: Vec::new(),
        size: 0,
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        u.entry(&mut entry)?;
        (u.on_progress)();
    }
    u.finish()?;
    Ok(u.size)
}

/// Metadata of one entry, read from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Unpacker<'a> {
    on_progress: &'a mut dyn FnMut(),
    root: &'a Path,
    privileged: bool,
    /// Directory modes and mtimes are applied at the end: writing into a directory changes
    /// its mtime, and a read-only mode would stop an unprivileged unpack.
    dirs: Vec<(PathBuf, Meta)>,
    size: u64,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let path = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let name = path.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        let io_err = |step: &'static str| {
            let name = name.clone();
            move |err: io::Error| UnpackError::Entry {
                entry: name,
                step,
                err,
            }
        };
        let meta = read_meta(entry).map_err(io_err("read header"))?;
        let parsed = compute_entry_name(&path).map_err(|how| UnpackError::Escapes {
            entry: name.clone(),
            how: how.to_string(),
        })?;
        match parsed {
            EntryName::Ignored => Ok(()),
            EntryName::Root => {
                if kind == EntryType::Directory {
                    let root = self.root.to_path_buf();
                    self.apply_owner_xattrs(&root, &meta, &name)?;
                    self.dirs.push((root, meta));
                }
                Ok(())
            }
            EntryName::Opaque { dir } => {
                let dir = self.resolve_dir(&dir, &name, true)?;
                rustix::fs::lsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(io::Error::from)
                    .map_err(io_err("set opaque xattr (needs root)"))
            }
            EntryName::Whiteout { dir, name: victim } => {
                let dir = self.resolve_dir(&dir, &name, true)?;
                let target = dir.join(victim);
                remove_existing(&target).map_err(io_err("remove"))?;
                rustix::fs::mknodat(
                    CWD,
                    &target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(io::Error::from)
                .map_err(io_err("create whiteout device (needs root)"))
            }
            EntryName::Path(comps) => {
                let (last, parent) = comps.split_last().expect("non-empty path");
                let dir = self.resolve_dir(parent, &name, true)?;
                let target = dir.join(last);
                self.write(entry, kind, &target, meta, &name)
            }
        }
    }

    fn write<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        target: &Path,
        meta: Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        let io_err = |step: &'static str| {
            let name = name.to_string();
            move |err: io::Error| UnpackError::Entry {
                entry: name,
                step,
                err,
            }
        };
        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_existing(target).map_err(io_err("remove"))?;
                        mkdir(target).map_err(io_err("create directory"))?;
                    }
                    Err(_) => mkdir(target).map_err(io_err("create directory"))?,
                }
                self.apply_owner_xattrs(target, &meta, name)?;
                self.dirs.push((target.to_path_buf(), meta));
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_existing(target).map_err(io_err("remove"))?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(target)
                    .map_err(io_err("create file"))?;
                let n = self.copy(entry, &mut file).map_err(io_err("write file"))?;
                self.size += n;
                drop(file);
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| io::Error::other("symlink without a target"))
                    .map_err(io_err("read symlink"))?
                    .into_owned();
                remove_existing(target).map_err(io_err("remove"))?;
                std::os::unix::fs::symlink(&link, target).map_err(io_err("create symlink"))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| io::Error::other("hard link without a target"))
                    .map_err(io_err("read hard link"))?
                    .into_owned();
                let escapes = || UnpackError::Escapes {
                    entry: name.to_string(),
                    how: format!(" (hard link to {:?})", link.to_string_lossy()),
                };
                let Ok(EntryName::Path(comps)) = compute_entry_name(&link) else {
                    return Err(escapes());
                };
                let (last, parent) = comps.split_last().expect("non-empty path");
                let source = self.resolve_dir(parent, name, false)?.join(last);
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => {
                        return Err(io_err("hard link")(io::Error::other(
                            "target is a directory",
                        )));
                    }
                    Err(e) => return Err(io_err("hard link")(e)),
                }
                if source != target {
                    remove_existing(target).map_err(io_err("remove"))?;
                    fs::hard_link(&source, target).map_err(io_err("create hard link"))?;
                }
                // A hard link shares its inode: the metadata is the first name's.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if !self.privileged && ft != FileType::Fifo {
                    log::warn!("entry {name:?}: device node skipped (needs root)");
                    return Ok(());
                }
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(target).map_err(io_err("remove"))?;
                rustix::fs::mknodat(
                    CWD,
                    target,
                    ft,
                    Mode::from_raw_mode(meta.mode & 0o7777),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(io::Error::from)
                .map_err(io_err("create device node"))?;
            }
            other => {
                log::warn!("entry {name:?}: tar entry type {other:?} skipped");
                return Ok(());
            }
        }
        self.apply_owner_xattrs(target, &meta, name)?;
        if kind != EntryType::Symlink {
            // After chown, which clears setuid/setgid bits.
            fs::set_permissions(target, fs::Permissions::from_mode(meta.mode & 0o7777))
                .map_err(io_err("chmod"))?;
        }
        set_mtime(target, meta.mtime).map_err(io_err("set mtime"))
    }

    fn apply_owner_xattrs(&self, path: &Path, meta: &Meta, name: &str) -> Result<(), UnpackError> {
        let io_err = |step: &'static str| {
            let name = name.to_string();
            move |err: io::Error| UnpackError::Entry {
                entry: name,
                step,
                err,
            }
        };
        if self.privileged {
            let uid = u32::try_from(meta.uid).map_err(|_| io::Error::other("uid out of range"));
            let gid = u32::try_from(meta.gid).map_err(|_| io::Error::other("gid out of range"));
            let (uid, gid) = (uid.map_err(io_err("chown"))?, gid.map_err(io_err("chown"))?);
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err("chown"))?;
        }
        for (key, value) in &meta.xattrs {
            if let Err(e) = rustix::fs::lsetxattr(path, key.as_os_str(), value, XattrFlags::empty())
            {
                if self.privileged {
                    return Err(io_err("set xattr")(e.into()));
                }
                log::warn!("entry {name:?}: xattr {key:?} skipped: {e}");
            }
        }
        Ok(())
    }

    /// Finds (creating when `create`) the directory `comps` inside the layer. A symlink on
    /// the way is followed only while it stays inside the layer: an absolute target, or one
    /// that climbs above the root, makes the entry escape.
    fn resolve_dir(
        &self,
        comps: &[OsString],
        entry: &str,
        create: bool,
    ) -> Result<PathBuf, UnpackError> {
        let mut here: Vec<OsString> = Vec::new();
        let mut todo: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut links = 0;
        let escapes = |how: String| UnpackError::Escapes {
            entry: entry.to_string(),
            how,
        };
        let io_err = |step: &'static str, err: io::Error| UnpackError::Entry {
            entry: entry.to_string(),
            step,
            err,
        };
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                if here.pop().is_none() {
                    return Err(escapes(String::new()));
                }
                continue;
            }
            let mut p = self.root.to_path_buf();
            p.extend(&here);
            p.push(&c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => here.push(c),
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(&p).map_err(|e| io_err("read symlink", e))?;
                    let shown = || {
                        let rel = p.strip_prefix(self.root).unwrap_or(&p);
                        format!(
                            " (through symlink {:?} -> {:?})",
                            rel.to_string_lossy(),
                            target.to_string_lossy()
                        )
                    };
                    links += 1;
                    if links > 40 {
                        return Err(io_err(
                            "resolve",
                            io::Error::other("too many levels of symbolic links"),
                        ));
                    }
                    let mut parts = Vec::new();
                    for tc in target.components() {
                        match tc {
                            Component::Normal(n) => parts.push(n.to_os_string()),
                            Component::ParentDir => parts.push(OsString::from("..")),
                            Component::CurDir => {}
                            _ => return Err(escapes(shown())),
                        }
                    }
                    // Check the climb now, to name the symlink in the message.
                    let mut depth = here.len() as isize;
                    for part in &parts {
                        depth += if part == ".." { -1 } else { 1 };
                        if depth < 0 {
                            return Err(escapes(shown()));
                        }
                    }
                    for part in parts.into_iter().rev() {
                        todo.push_front(part);
                    }
                }
                Ok(_) => {
                    return Err(io_err(
                        "resolve",
                        io::Error::from(io::ErrorKind::NotADirectory),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    mkdir(&p).map_err(|e| io_err("create directory", e))?;
                    here.push(c);
                }
                Err(e) => return Err(io_err("resolve", e)),
            }
        }
        let mut p = self.root.to_path_buf();
        p.extend(&here);
        Ok(p)
    }

    /// `io::copy` that reports progress every MiB.
    fn copy(&mut self, from: &mut impl Read, to: &mut fs::File) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let n = io::copy(&mut from.take(1 << 20), to)?;
            total += n;
            if n < 1 << 20 {
                return Ok(total);
            }
            (self.on_progress)();
        }
    }

    /// Applies directory modes and mtimes, deepest first.
    fn finish(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, meta) in dirs {
            let entry = path
                .strip_prefix(self.root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let io_err = |step: &'static str| {
                let entry = entry.clone();
                move |err: io::Error| UnpackError::Entry { entry, step, err }
            };
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode & 0o7777))
                .map_err(io_err("chmod"))?;
            set_mtime(&path, meta.mtime).map_err(io_err("set mtime"))?;
        }
        Ok(())
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode()?,
        uid: h.uid()?,
        gid: h.gid()?,
        mtime: Timespec {
            tv_sec: h.mtime().unwrap_or(0) as i64,
            tv_nsec: 0,
        },
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext.key_bytes();
            if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs.push((
                    OsStr::from_bytes(xattr).to_os_string(),
                    ext.value_bytes().to_vec(),
                ));
            } else if key == b"mtime"
                && let Ok(v) = ext.value()
            {
                meta.mtime = parse_pax_time(v).unwrap_or(meta.mtime);
            }
        }
    }
    Ok(meta)
}

/// PAX time: `seconds[.fraction]`, possibly negative.
fn parse_pax_time(v: &str) -> Option<Timespec> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(Timespec { tv_sec, tv_nsec })
}

/// A directory the tar did not list (or lists later): 0755 whatever the umask.
fn mkdir(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
}

/// Removes whatever is at `p`, never following a symlink (a later entry replaces an earlier
/// one, as tar does).
fn remove_existing(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => super::remove_tree(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mtime(p: &Path, t: Timespec) -> io::Result<()> {
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, p, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn maps_entry_names() {
        use EntryName::*;
        let table: Vec<(&str, Result<EntryName, &str>)> = vec![
            (".", Ok(Root)),
            ("./", Ok(Root)),
            ("bin/sh", Ok(Path(os(&["bin", "sh"])))),
            ("./etc/passwd", Ok(Path(os(&["etc", "passwd"])))),
            (
                "etc/.wh.passwd",
                Ok(Whiteout {
                    dir: os(&["etc"]),
                    name: "passwd".into(),
                }),
            ),
            (
                ".wh.tmp",
                Ok(Whiteout {
                    dir: vec![],
                    name: "tmp".into(),
                }),
            ),
            (
                "var/cache/.wh..wh..opq",
                Ok(Opaque {
                    dir: os(&["var", "cache"]),
                }),
            ),
            (".wh..wh.plnk/123", Ok(Ignored)),
            (".wh..wh.aufs", Ok(Ignored)),
            ("etc/.whx", Ok(Path(os(&["etc", ".whx"])))),
            ("../etc/passwd", Err("")),
            ("a/../../b", Err("")),
            ("a/../b", Err("")),
            ("/etc/passwd", Err(" (absolute path)")),
            ("etc/.wh..", Err(" (whiteout of an invalid name)")),
        ];
        for (input, want) in table {
            assert_eq!(
                compute_entry_name(std::path::Path::new(input)),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn parses_pax_times() {
        for (input, want) in [
            ("12", Some((12, 0))),
            ("12.5", Some((12, 500_000_000))),
            (
                "1700000000.123456789123",
                Some((1_700_000_000, 123_456_789)),
            ),
            ("x", None),
        ] {
            assert_eq!(
                parse_pax_time(input).map(|t| (t.tv_sec, t.tv_nsec)),
                want,
                "{input}"
            );
        }
    }
}
