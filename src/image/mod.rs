//! The local image store under `<root>/images`: content-addressed blobs, unpacked layers
//! shared between images, the names that point at images, and the verbs on them (import,
//! resolve, list, remove).
//!
//! Layout (see docs/images.md):
//! ```text
//! <root>/images/lock                       flock: one writer (import, rm) at a time
//! <root>/images/store.json                 names -> image IDs, image records (atomic rename)
//! <root>/images/blobs/sha256/<hex>         image configs and manifests, verified
//! <root>/images/layers/<hex>/fs/           unpacked layer, keyed by its diff-id (overlayfs lowerdir)
//! <root>/images/layers/<hex>/size          bytes of regular files in the layer
//! <root>/images/tmp/                       imports in progress; cleaned by the next writer
//! ```
//! Readers ([`Store::resolve`], [`Store::list`]) take no lock: every change becomes visible by
//! one `rename`, and layers are in place before any name points at them.
//! This module must not mount anything or touch `--run` other than reading the
//! `<run>/pods/<uid>/images` files that protect images in use.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod digest;
mod import;
pub mod oci;
pub mod reference;
mod rootfs;
pub mod time;
pub mod unpack;

pub use import::{ConfigChanges, ImportOptions, Imported, Progress};
pub use reference::Reference;

/// How an image operation failed. Messages name the step and the path or entry.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("invalid image name {reference:?}: {why}")]
    BadReference { reference: String, why: String },
    #[error("image store {path}: {step}: {err}")]
    Store {
        step: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("image store {path}: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("import {path}: {err}")]
    Import {
        path: PathBuf,
        err: Box<import::ImportError>,
    },
    #[error("image {reference}: in use by pod {pod} ({file})")]
    InUse {
        reference: String,
        pod: String,
        file: PathBuf,
    },
}

/// An image found by [`Store::resolve`]: what the runtime needs to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedImage {
    /// Normalised reference (`docker.io/library/busybox:latest`), or the ID when the image
    /// was named by ID and has no name.
    pub name: String,
    /// `sha256:<hex of the config blob>`
    pub id: String,
    /// Unpacked layer directories, BOTTOM layer first (reverse for overlayfs `lowerdir=`).
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

/// The parts of an image config that decide how a container runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// One line of `podsup image ls`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSummary {
    /// None for an image that lost its last name to a newer import of that name.
    pub reference: Option<Reference>,
    pub id: String,
    pub size: u64,
    /// Seconds since the epoch: the config's `created`, else the import time.
    pub created: Option<i64>,
}

/// What `remove` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Removed {
    pub untagged: Vec<String>,
    pub deleted: Option<String>,
}

/// The store's index file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Normalised reference -> image ID.
    names: BTreeMap<String, String>,
    /// Image ID -> record.
    images: BTreeMap<String, ImageRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ImageRecord {
    /// Diff-ids, bottom layer first.
    layers: Vec<String>,
    /// Digest of the manifest the image came from, when it came from one.
    #[serde(default)]
    manifest: Option<String>,
    size: u64,
    /// Seconds since the epoch.
    created: Option<i64>,
    imported: i64,
}

/// The image store under `<root>/images`.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store under `<root>/images`.
    /// The store's paths are absolute (overlayfs needs absolute lowerdirs), even when
    /// `root` is relative.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        let root = std::path::absolute(root).map_err(|err| ImageError::Store {
            step: "resolve path",
            path: root.to_path_buf(),
            err,
        })?;
        let dir = root.join("images");
        for sub in ["blobs/sha256", "layers", "tmp"] {
            let p = dir.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|err| ImageError::Store {
                    step: "create directory",
                    path: p,
                    err,
                })?;
        }
        Ok(Store { dir })
    }

    /// The store's directory (`<root>/images`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks up an image by any reference form (normalised as containerd does) or by ID
    /// (`sha256:<hex>`, `<hex>`, or a unique prefix of at least 4 hex digits).
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage, ImageError> {
        let index = self.read_index()?;
        let (name, id) = self.find(&index, reference)?;
        let record = &index.images[&id];
        let config = self.read_config(&id)?;
        let layers = record
            .layers
            .iter()
            .map(|d| self.layer_dir(d).join("fs"))
            .collect::<Vec<_>>();
        if let Some(missing) = layers.iter().find(|p| !p.is_dir()) {
            return Err(ImageError::Corrupt {
                path: missing.clone(),
                why: format!("layer of image {id} is missing"),
            });
        }
        Ok(ResolvedImage {
            name: name.unwrap_or_else(|| id.clone()),
            id,
            layers,
            config,
        })
    }

    /// Every name (and every image without one), sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        let mut named = BTreeSet::new();
        for (name, id) in &index.names {
            let Some(rec) = index.images.get(id) else {
                continue;
            };
            named.insert(id.clone());
            out.push(ImageSummary {
                reference: Reference::parse(name).ok(),
                id: id.clone(),
                size: rec.size,
                created: rec.created.or(Some(rec.imported)),
            });
        }
        for (id, rec) in &index.images {
            if !named.contains(id) {
                out.push(ImageSummary {
                    reference: None,
                    id: id.clone(),
                    size: rec.size,
                    created: rec.created.or(Some(rec.imported)),
                });
            }
        }
        Ok(out)
    }

    /// Removes a name; the image itself (and the layers no other image shares) goes with its
    /// last name. Naming an image by ID removes all its names. Refused while a pod uses the
    /// image: a running pod lists its image IDs in `<run>/pods/<uid>/images`.
    pub fn remove(&self, reference: &str, run: &Path) -> Result<Removed, ImageError> {
        let _lock = self.lock(&mut |_| {})?;
        self.clean_tmp()?;
        let mut index = self.read_index()?;
        let (name, id) = self.find(&index, reference)?;
        if let Some((pod, file)) = image_user(run, &id)? {
            return Err(ImageError::InUse {
                reference: reference.to_string(),
                pod,
                file,
            });
        }
        let mut removed = Removed::default();
        let names: Vec<String> = match name {
            Some(n) => vec![n],
            None => index
                .names
                .iter()
                .filter(|(_, v)| **v == id)
                .map(|(k, _)| k.clone())
                .collect(),
        };
        for n in names {
            index.names.remove(&n);
            removed.untagged.push(n);
        }
        if !index.names.values().any(|v| *v == id) {
            index.images.remove(&id);
            removed.deleted = Some(id);
        }
        self.write_index(&index)?;
        self.collect_garbage(&index)?;
        Ok(removed)
    }

    /// Finds `reference` in the index: a name first, then an ID or ID prefix. Returns the
    /// matched name (None when found by ID) and the ID.
    fn find(&self, index: &Index, reference: &str) -> Result<(Option<String>, String), ImageError> {
        let not_found = || ImageError::NotFound {
            reference: reference.to_string(),
        };
        let r = reference.trim();
        if let Ok(parsed) = Reference::parse(r) {
            let full = parsed.to_string();
            if let Some(id) = index.names.get(&full) {
                return Ok((Some(full), id.clone()));
            }
            // `name@sha256:<manifest>`: any name of that repository whose image came from
            // that manifest.
            if let Some(d) = &parsed.digest {
                let repo = parsed.repository();
                for (name, id) in &index.names {
                    let same_repo = Reference::parse(name).is_ok_and(|n| n.repository() == repo);
                    let rec = index.images.get(id);
                    if same_repo && rec.is_some_and(|r| r.manifest.as_deref() == Some(d.as_str())) {
                        return Ok((Some(full), id.clone()));
                    }
                }
            }
        }
        let hex = r.strip_prefix("sha256:").unwrap_or(r);
        let is_hex = hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            if let Err(why) = Reference::parse(r) {
                return Err(ImageError::BadReference {
                    reference: r.to_string(),
                    why,
                });
            }
            return Err(not_found());
        }
        let hex = hex.to_ascii_lowercase();
        let mut hits = index.images.keys().filter(|id| id[7..].starts_with(&hex));
        match (hits.next(), hits.next()) {
            (Some(id), None) => Ok((None, id.clone())),
            (Some(_), Some(_)) => Err(ImageError::BadReference {
                reference: r.to_string(),
                why: "ID prefix matches several images".into(),
            }),
            _ => Err(not_found()),
        }
    }

    fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.dir.join("layers").join(digest::hex_part(diff_id))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest::hex_part(digest))
    }

    fn read_config(&self, id: &str) -> Result<ImageConfig, ImageError> {
        let path = self.blob_path(id);
        let data = fs::read(&path).map_err(|err| ImageError::Store {
            step: "read image config",
            path: path.clone(),
            err,
        })?;
        let cfg: oci::ConfigFile =
            serde_json::from_slice(&data).map_err(|e| ImageError::Corrupt {
                path: path.clone(),
                why: format!("image config: {e}"),
            })?;
        Ok(cfg.config.unwrap_or_default().to_image_config())
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("store.json")
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| ImageError::Corrupt {
                path,
                why: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(err) => Err(ImageError::Store {
                step: "read",
                path,
                err,
            }),
        }
    }

    /// Replaces store.json atomically (write, fsync, rename).
    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        let path = self.index_path();
        let tmp = self.dir.join("store.json.new");
        let data = serde_json::to_vec_pretty(index).expect("index serialises");
        let err = |err| ImageError::Store {
            step: "write",
            path: tmp.clone(),
            err,
        };
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&data).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(|err| ImageError::Store {
            step: "rename",
            path,
            err,
        })
    }

    /// Takes the store's writer lock (blocking; `on_wait` hears when it has to wait).
    fn lock(&self, on_wait: &mut dyn FnMut(Progress<'_>)) -> Result<File, ImageError> {
        let path = self.dir.join("lock");
        let err = |step, err| ImageError::Store {
            step,
            path: path.clone(),
            err,
        };
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| err("open lock", e))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait(Progress::Waiting);
                f.lock().map_err(|e| err("lock", e))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(err("lock", e)),
        }
        Ok(f)
    }

    /// Removes the temp dirs of earlier, interrupted imports. Caller holds the lock.
    fn clean_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.dir.join("tmp");
        let entries = fs::read_dir(&tmp).map_err(|err| ImageError::Store {
            step: "read directory",
            path: tmp.clone(),
            err,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let res = if p.is_dir() && !p.is_symlink() {
                remove_tree(&p)
            } else {
                fs::remove_file(&p)
            };
            res.map_err(|err| ImageError::Store {
                step: "remove leftover",
                path: p,
                err,
            })?;
        }
        Ok(())
    }

    /// Deletes layers and blobs that no image in `index` refers to. Caller holds the lock.
    fn collect_garbage(&self, index: &Index) -> Result<(), ImageError> {
        let mut layers = BTreeSet::new();
        let mut blobs = BTreeSet::new();
        for (id, rec) in &index.images {
            blobs.insert(digest::hex_part(id).to_string());
            if let Some(m) = &rec.manifest {
                blobs.insert(digest::hex_part(m).to_string());
            }
            layers.extend(rec.layers.iter().map(|d| digest::hex_part(d).to_string()));
        }
        for (sub, keep) in [("layers", &layers), ("blobs/sha256", &blobs)] {
            let dir = self.dir.join(sub);
            let entries = fs::read_dir(&dir).map_err(|err| ImageError::Store {
                step: "read directory",
                path: dir.clone(),
                err,
            })?;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let p = e.path();
                // Move out of sight first, so that nothing ever sees half a layer.
                let gone = self.dir.join("tmp").join(format!("gc-{name}"));
                fs::rename(&p, &gone).map_err(|err| ImageError::Store {
                    step: "remove",
                    path: p.clone(),
                    err,
                })?;
                let res = if gone.is_dir() {
                    remove_tree(&gone)
                } else {
                    fs::remove_file(&gone)
                };
                res.map_err(|err| ImageError::Store {
                    step: "remove",
                    path: gone,
                    err,
                })?;
            }
        }
        Ok(())
    }
}

/// `remove_dir_all` that also works without root on a tree with read-only directories
/// (a layer may have some): on a permission error it makes the directories writable for
/// their owner and tries again. Never follows a symlink.
pub(crate) fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(p)?;
            fs::remove_dir_all(p)
        }
        other => other,
    }
}

fn make_writable(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = fs::symlink_metadata(p)?;
    if md.is_dir() {
        fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
        for e in fs::read_dir(p)? {
            make_writable(&e?.path())?;
        }
    }
    Ok(())
}

/// The first pod that lists `id` in `<run>/pods/<uid>/images`, as (uid, file).
fn image_user(run: &Path, id: &str) -> Result<Option<(String, PathBuf)>, ImageError> {
    let pods = run.join("pods");
    let entries = match fs::read_dir(&pods) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(ImageError::Store {
                step: "read directory",
                path: pods,
                err,
            });
        }
    };
    for e in entries.flatten() {
        let file = e.path().join("images");
        match fs::read_to_string(&file) {
            Ok(text) => {
                if text.lines().any(|l| l.trim() == id) {
                    return Ok(Some((e.file_name().to_string_lossy().into_owned(), file)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(ImageError::Store {
                    step: "read",
                    path: file,
                    err,
                });
            }
        }
    }
    Ok(None)
}
