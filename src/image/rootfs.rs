//! Turns a root filesystem directory into a layer tar stream, so that a directory import
//! goes through the same unpacker (and gets a real diff-id) as every other source.
//!
//! Reads only below the given directory and never follows a symlink; writes only to the
//! stream it is given.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Writes `dir` as a tar stream to `out`: entries sorted by name (the same tree gives the
/// same bytes), no entry for `dir` itself, hard links kept, xattrs as PAX records, sockets
/// skipped.
pub fn write_tar<W: Write>(dir: &Path, out: W) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let mut seen: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    walk(dir, Path::new(""), &mut b, &mut seen)?;
    b.into_inner()?.flush()
}

fn walk<W: Write>(
    base: &Path,
    rel: &Path,
    b: &mut tar::Builder<W>,
    seen: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> io::Result<()> {
    let dir = base.join(rel);
    let mut names: Vec<OsString> = fs::read_dir(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("read directory {}: {e}", dir.display())))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = base.join(&rel);
        let md = fs::symlink_metadata(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("stat {}: {e}", path.display())))?;
        let ft = md.file_type();
        if ft.is_socket() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(md.uid()));
        h.set_gid(u64::from(md.gid()));
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        let xattrs = read_xattrs(&path);
        if !xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &rel, io::empty())?;
            walk(base, &rel, b, seen)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &rel, fs::read_link(&path)?)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = seen.get(&(md.dev(), md.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &rel, first)?;
                    continue;
                }
                seen.insert((md.dev(), md.ino()), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
            b.append_data(&mut h, &rel, f)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            h.set_entry_type(kind);
            let rdev = md.rdev();
            h.set_device_major(rustix::fs::major(rdev))?;
            h.set_device_minor(rustix::fs::minor(rdev))?;
            b.append_data(&mut h, &rel, io::empty())?;
        }
    }
    Ok(())
}

/// The xattrs of `path` (not following a symlink), sorted by name. Errors (no support,
/// no permission) give an empty list: xattrs are kept where present and readable.
fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&c| c == 0).filter(|n| !n.is_empty()) {
        let name_os = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, name_os, &mut value) {
            value.truncate(len);
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    out
}
