//! Who may change what the daemon runs: the manifest directory, the state directories and
//! the socket must be root-owned and not writable by group or others, and so must every
//! directory above them (a world-writable directory with the sticky bit, like `/tmp`, is fine
//! above: nobody else can rename a root-owned entry in it). A symlinked manifest is read only
//! when its target is safe too. `compute_*` is pure; `check_*` reads metadata.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The facts the rule needs about one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub uid: u32,
    /// `st_mode` permission bits (with the sticky bit).
    pub mode: u32,
}

/// Why `path` is unsafe, if it is. `above`: an ancestor of the checked path (the sticky
/// bit excuses group/other write there).
pub fn compute_unsafe(path: &Path, f: Facts, above: bool) -> Option<String> {
    if f.uid != 0 {
        return Some(format!(
            "{} is owned by uid {}, not root: anyone who can write it decides what runs as root",
            path.display(),
            f.uid
        ));
    }
    let sticky = f.mode & 0o1000 != 0;
    if f.mode & 0o022 != 0 && !(above && sticky) {
        let who = if f.mode & 0o002 != 0 {
            "others"
        } else {
            "its group"
        };
        return Some(format!(
            "{} is writable by {who} (mode {:04o}): chmod go-w {}",
            path.display(),
            f.mode & 0o7777,
            path.display()
        ));
    }
    None
}

fn facts(path: &Path) -> Result<Facts, String> {
    let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Facts {
        uid: m.uid(),
        mode: m.mode(),
    })
}

/// Checks a directory (or the socket) and every directory above it, after resolving
/// symlinks.
pub fn check_path(path: &Path) -> Result<(), String> {
    let real: PathBuf =
        std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(why) = compute_unsafe(&real, facts(&real)?, false) {
        return Err(why);
    }
    for dir in real.ancestors().skip(1) {
        if let Some(why) = compute_unsafe(dir, facts(dir)?, true) {
            return Err(why);
        }
    }
    Ok(())
}

/// Checks one manifest file: the file (a symlink's target) must be safe, and when it is a
/// symlink, so must the directories that hold the target.
pub fn check_manifest(path: &Path) -> Result<(), String> {
    let link = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if link.file_type().is_symlink() {
        check_path(path)
    } else {
        match compute_unsafe(path, facts(path)?, false) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_rule() {
        let p = Path::new("/etc/pods");
        let ok = Facts {
            uid: 0,
            mode: 0o755,
        };
        assert_eq!(compute_unsafe(p, ok, false), None);
        let user = Facts {
            uid: 1000,
            mode: 0o755,
        };
        assert!(compute_unsafe(p, user, false).unwrap().contains("uid 1000"));
        let group = Facts {
            uid: 0,
            mode: 0o775,
        };
        assert!(
            compute_unsafe(p, group, false)
                .unwrap()
                .contains("its group")
        );
        let world = Facts {
            uid: 0,
            mode: 0o777,
        };
        assert!(
            compute_unsafe(p, world, false)
                .unwrap()
                .contains("chmod go-w")
        );
        let tmp = Facts {
            uid: 0,
            mode: 0o1777,
        };
        assert_eq!(compute_unsafe(p, tmp, true), None);
        assert!(compute_unsafe(p, tmp, false).is_some());
    }

    #[test]
    fn temp_dirs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("pods");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        assert_eq!(check_path(&d).is_ok(), root);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_path(&d).unwrap_err();
        assert!(!root || err.contains("writable by others"), "{err}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlinked manifest whose target lives in a world-writable directory.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(open.join("x.yaml"), "").unwrap();
        std::os::unix::fs::symlink(open.join("x.yaml"), d.join("x.yaml")).unwrap();
        assert!(check_manifest(&d.join("x.yaml")).is_err());
        std::fs::write(d.join("y.yaml"), "").unwrap();
        std::fs::set_permissions(d.join("y.yaml"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check_manifest(&d.join("y.yaml")).is_ok(), root);
    }
}
