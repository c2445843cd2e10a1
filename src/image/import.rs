//! `podsup image import`: detects what SOURCE is (rootfs directory, rootfs tarball, OCI
//! layout directory or tar, `docker save` archive), reads and verifies it, unpacks the layers
//! the store does not have yet into a temp dir under the store, then moves everything into
//! place and records the names, all under the store's writer lock.
//!
//! A failed import removes its temp dir; a crashed one leaves only the temp dir, which the
//! next writer removes. Nothing outside `<root>/images` is written.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use serde_json::{Value, json};

use super::digest::{self, HashingReader};
use super::oci::{self, ConfigFile, Descriptor, DockerSaveEntry, Index as OciIndex, Manifest};
use super::reference::Reference;
use super::unpack::{UnpackError, unpack_layer};
use super::{ImageError, ImageRecord, Store, time};

/// Most JSON documents podsup reads from a source (index, manifest, config) are small; this
/// bounds what a hostile source can make it allocate.
const MAX_JSON: u64 = 16 << 20;

/// What the user asked for besides SOURCE.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// NAME[:TAG]; required for a root filesystem, optional when the source names its image.
    pub name: Option<String>,
    pub changes: ConfigChanges,
    /// The live-state dir (`--run`). When set, an image that this import takes the last
    /// name from is deleted, unless a pod uses it (see [`Store::remove`]); when None it
    /// stays in the store without a name.
    pub run: Option<PathBuf>,
}

/// Changes to the image config, as `podman import --change` makes them. For a root
/// filesystem they are the whole config (plus a default PATH).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigChanges {
    /// `KEY=VALUE`: replaces a variable of the same name or is appended.
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

impl ConfigChanges {
    pub fn is_empty(&self) -> bool {
        *self == ConfigChanges::default()
    }
}

/// What an import is doing, for a progress display.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// Another import or rm holds the store's lock.
    Waiting,
    /// Unpacking layer `index` (1-based) of `count` (its digest when known): `done` of
    /// `total` source bytes read.
    Layer {
        index: usize,
        count: usize,
        digest: Option<&'a str>,
        done: u64,
        total: Option<u64>,
    },
    /// The store has this layer already.
    LayerPresent {
        index: usize,
        count: usize,
        digest: &'a str,
    },
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    pub id: String,
    pub names: Vec<String>,
    /// "root filesystem directory", "OCI layout", ...
    pub kind: &'static str,
    pub layers: usize,
    pub new_layers: usize,
    pub size: u64,
    /// IDs of images deleted because this import took their last name.
    pub replaced: Vec<String>,
}

/// Why an import failed; [`ImageError::Import`] adds the source path.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Unpack(UnpackError),
    #[error("layer {layer}: {err}")]
    Layer { layer: String, err: UnpackError },
    #[error("{what}: digest mismatch: expected {expected}, got {got}")]
    Digest {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {got}")]
    Size {
        what: String,
        expected: u64,
        got: u64,
    },
    #[error("{step} {what}: {err}")]
    Io {
        step: &'static str,
        what: String,
        err: io::Error,
    },
    #[error("{what}: {why}")]
    Format { what: String, why: String },
    #[error("{0}")]
    Refused(String),
}

fn io_err(
    step: &'static str,
    what: impl std::fmt::Display,
) -> impl FnOnce(io::Error) -> ImportError {
    let what = what.to_string();
    move |err| ImportError::Io { step, what, err }
}

impl Store {
    /// Imports `source` (see the module docs for the kinds) and names it.
    pub fn import(
        &self,
        source: &Path,
        opts: &ImportOptions,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Imported, ImageError> {
        let wrap = |err: ImportError| ImageError::Import {
            path: source.to_path_buf(),
            err: Box::new(err),
        };
        // Check the name before any work.
        let name = match &opts.name {
            Some(n) => Some(Reference::parse(n).map_err(|why| ImageError::BadReference {
                reference: n.clone(),
                why,
            })?),
            None => None,
        };
        let _lock = self.lock(progress)?;
        // What an interrupted import left: its temp dir, and layers or blobs it moved into
        // place before it could record the image.
        self.clean_tmp()?;
        self.collect_garbage(&self.read_index()?)?;
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("import-{}", std::process::id()));
        fs::create_dir(&tmp).map_err(|err| ImageError::Store {
            step: "create directory",
            path: tmp.clone(),
            err,
        })?;
        let mut job = Job {
            store: self,
            tmp: tmp.clone(),
            privileged: rustix::process::geteuid().is_root(),
            progress,
            new_layers: Vec::new(),
            new_blobs: Vec::new(),
        };
        let result = job.run(source, name.as_ref(), &opts.changes).map_err(wrap);
        let result = result.and_then(|plan| job.commit(plan, opts.run.as_deref()));
        // The temp dir goes in every case; on success it is empty by now.
        let cleanup = super::remove_tree(&tmp);
        let imported = result?;
        cleanup.map_err(|err| ImageError::Store {
            step: "remove",
            path: tmp,
            err,
        })?;
        Ok(imported)
    }
}

/// One import in progress.
struct Job<'a, 'p> {
    store: &'a Store,
    tmp: PathBuf,
    privileged: bool,
    progress: &'p mut dyn FnMut(Progress<'_>),
    /// Hex diff-ids of layers unpacked into `tmp/<hex>` by this import.
    new_layers: Vec<String>,
    /// Small blobs (configs, manifests) to store, as (hex digest, bytes).
    new_blobs: Vec<(String, Vec<u8>)>,
}

/// What the import decided, ready to commit.
struct Plan {
    kind: &'static str,
    id: String,
    manifest: Option<String>,
    names: Vec<Reference>,
    layers: Vec<(String, u64)>,
    created: Option<i64>,
}

/// Where the files of an image source live: a directory, or an uncompressed tar read in place.
enum Blobs {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        files: HashMap<String, (u64, u64)>,
    },
}

impl<'a, 'p> Job<'a, 'p> {
    fn run(
        &mut self,
        source: &Path,
        name: Option<&Reference>,
        changes: &ConfigChanges,
    ) -> Result<Plan, ImportError> {
        let md = fs::metadata(source).map_err(io_err("read", source.display()))?;
        if md.is_dir() {
            if source.join("oci-layout").is_file() && source.join("index.json").is_file() {
                return self.oci(
                    &Blobs::Dir(source.to_path_buf()),
                    name,
                    changes,
                    "OCI layout",
                );
            }
            if source.join("manifest.json").is_file() && source.join("repositories").is_file() {
                return self.docker_save(&Blobs::Dir(source.to_path_buf()), name, changes);
            }
            return self.rootfs(RootfsSource::Dir(source), name, changes);
        }
        let mut head = [0u8; 512];
        let mut f = File::open(source).map_err(io_err("open", source.display()))?;
        let n = read_up_to(&mut f, &mut head).map_err(io_err("read", source.display()))?;
        let head = &head[..n];
        let mut tar_path = source.to_path_buf();
        if compression(head).is_some() {
            let first = first_entry_name(source)?;
            if !first.as_deref().is_some_and(looks_like_image_archive) {
                return self.rootfs(RootfsSource::Tar(source), name, changes);
            }
            // A compressed `docker save` or OCI archive (`docker save x | gzip`): its files
            // are read out of order, so decompress it into the temp dir first.
            tar_path = self.tmp.join("source.tar");
            let f = File::open(source).map_err(io_err("open", source.display()))?;
            let mut dec = decompress(f).map_err(io_err("decompress", source.display()))?;
            let mut out = File::create(&tar_path).map_err(io_err("create", tar_path.display()))?;
            io::copy(&mut dec, &mut out).map_err(io_err("decompress", source.display()))?;
        } else if n < 512 || &head[257..262] != b"ustar" {
            return Err(ImportError::Refused(
                "not a directory, tar archive, or gzip/zstd-compressed tar archive".into(),
            ));
        }
        let files = index_tar(&tar_path).map_err(io_err("read tar", source.display()))?;
        let blobs = Blobs::Tar {
            path: tar_path.clone(),
            files,
        };
        if blobs.exists("oci-layout") && blobs.exists("index.json") {
            return self.oci(&blobs, name, changes, "OCI archive");
        }
        if blobs.exists("manifest.json") {
            return self.docker_save(&blobs, name, changes);
        }
        self.rootfs(RootfsSource::Tar(source), name, changes)
    }

    /// A root filesystem (directory or tarball) becomes a one-layer image with a config
    /// written here.
    fn rootfs(
        &mut self,
        src: RootfsSource<'_>,
        name: Option<&Reference>,
        changes: &ConfigChanges,
    ) -> Result<Plan, ImportError> {
        let name = name.ok_or_else(|| {
            ImportError::Refused(
                "a root filesystem has no name: give NAME[:TAG] after SOURCE".into(),
            )
        })?;
        let (kind, diff_id, size) = match src {
            RootfsSource::Dir(dir) => {
                let (reader, writer) = io::pipe().map_err(io_err("create pipe", dir.display()))?;
                let dir_owned = dir.to_path_buf();
                let writer_thread =
                    std::thread::spawn(move || super::rootfs::write_tar(&dir_owned, writer));
                let res = self.layer(1, 1, Box::new(reader), None, None, None);
                let wrote = writer_thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("tar writer panicked")));
                // The writer's error is the cause when both failed (the reader then saw a
                // truncated stream).
                wrote.map_err(io_err("read", dir.display()))?;
                let (d, s) = res?;
                ("root filesystem directory", d, s)
            }
            RootfsSource::Tar(path) => {
                let f = File::open(path).map_err(io_err("open", path.display()))?;
                let total = f.metadata().ok().map(|m| m.len());
                let (d, s) = self.layer(1, 1, Box::new(f), total, None, None)?;
                ("root filesystem tarball", d, s)
            }
        };
        let now = now();
        let host = oci::host_platform();
        let mut config = json!({
            "created": time::format_rfc3339(now),
            "architecture": host.architecture,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": time::format_rfc3339(now), "created_by": "podsup image import"}],
        });
        if let Some(v) = &host.variant {
            config["variant"] = json!(v);
        }
        compute_config_changes(&mut config, changes);
        let bytes = serde_json::to_vec(&config).expect("config serialises");
        let id = self.blob(&bytes);
        Ok(Plan {
            kind,
            id,
            manifest: None,
            names: vec![name.clone()],
            layers: vec![(diff_id, size)],
            created: Some(now),
        })
    }

    fn oci(
        &mut self,
        blobs: &Blobs,
        name: Option<&Reference>,
        changes: &ConfigChanges,
        kind: &'static str,
    ) -> Result<Plan, ImportError> {
        let layout: Value = blobs.read_json("oci-layout")?;
        if layout
            .get("imageLayoutVersion")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(ImportError::Format {
                what: "oci-layout".into(),
                why: "no imageLayoutVersion".into(),
            });
        }
        let index: OciIndex = blobs.read_json("index.json")?;
        // Several images in one layout: the one NAME names (by full name or by tag).
        let mut top: Vec<Descriptor> = index.manifests.clone();
        if top.len() > 1
            && top.iter().any(|d| d.ref_name().is_some())
            && let Some(name) = name
        {
            let hits: Vec<Descriptor> = top
                .iter()
                .filter(|d| {
                    d.ref_name().is_some_and(|r| {
                        Reference::parse(r).is_ok_and(|r| r == *name)
                            || Some(r) == name.tag.as_deref()
                    })
                })
                .cloned()
                .collect();
            if !hits.is_empty() {
                top = hits;
            }
        }
        let chosen = self.pick(blobs, &top, "index.json", 0)?;
        let source_name = top
            .iter()
            .find_map(|d| d.ref_name().filter(|r| r.contains('/')))
            .and_then(|r| Reference::parse(r).ok());
        let names = match (name, source_name) {
            (Some(n), _) => vec![n.clone()],
            (None, Some(n)) if top.len() == 1 => vec![n],
            _ => {
                return Err(ImportError::Refused(
                    "the layout does not name its image: give NAME[:TAG] after SOURCE".into(),
                ));
            }
        };
        let manifest_bytes = self.read_blob(blobs, &chosen, "manifest")?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| ImportError::Format {
                what: format!("manifest {}", chosen.digest),
                why: e.to_string(),
            })?;
        let config_bytes = self.read_blob(blobs, &manifest.config, "config")?;
        let config: ConfigFile = parse_config(&config_bytes, &manifest.config.digest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImportError::Format {
                what: format!("manifest {}", chosen.digest),
                why: format!(
                    "{} layers but the config lists {} diff-ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let count = manifest.layers.len();
        let mut layers = Vec::new();
        for (i, (desc, diff_id)) in manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .enumerate()
        {
            if !oci::is_layer_type(&desc.media_type) {
                return Err(ImportError::Refused(format!(
                    "layer {}: unsupported media type {:?}",
                    desc.digest, desc.media_type
                )));
            }
            let hex = digest::sha256_hex(&desc.digest).ok_or_else(|| bad_digest(&desc.digest))?;
            let open = || blobs.open(&format!("blobs/sha256/{hex}"));
            layers.push(self.layer_lazy(
                i + 1,
                count,
                open,
                Some(desc.size),
                Some(&desc.digest),
                diff_id,
            )?);
        }
        let (id, created) = self.final_config(&config_bytes, &config, changes)?;
        Ok(Plan {
            kind,
            id,
            manifest: Some(chosen.digest.clone()),
            names,
            layers,
            created,
        })
    }

    /// Chooses one image manifest among `descs`, descending into nested indexes.
    fn pick(
        &mut self,
        blobs: &Blobs,
        descs: &[Descriptor],
        what: &str,
        depth: u32,
    ) -> Result<Descriptor, ImportError> {
        let host = oci::host_platform();
        let cands = oci::compute_platform_candidates(descs, &host);
        let list = |descs: &[Descriptor]| {
            descs
                .iter()
                .map(|d| match (&d.platform, d.ref_name()) {
                    (Some(p), _) => oci::platform_string(p),
                    (None, Some(r)) => r.to_string(),
                    (None, None) => d.digest.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let d = match cands.as_slice() {
            [] if descs.is_empty() => {
                return Err(ImportError::Format {
                    what: what.into(),
                    why: "lists no manifests".into(),
                });
            }
            [] => {
                return Err(ImportError::Refused(format!(
                    "{what}: no image for {} (it has: {})",
                    oci::platform_string(&host),
                    list(descs)
                )));
            }
            [i] => descs[*i].clone(),
            _ => {
                return Err(ImportError::Refused(format!(
                    "{what}: several images ({}): give NAME[:TAG] to choose one",
                    list(descs)
                )));
            }
        };
        if !d.is_index() {
            return Ok(d);
        }
        if depth > 4 {
            return Err(ImportError::Format {
                what: what.into(),
                why: "indexes nested too deep".into(),
            });
        }
        let bytes = self.read_blob(blobs, &d, "index")?;
        let nested: OciIndex = serde_json::from_slice(&bytes).map_err(|e| ImportError::Format {
            what: format!("index {}", d.digest),
            why: e.to_string(),
        })?;
        self.pick(
            blobs,
            &nested.manifests,
            &format!("index {}", d.digest),
            depth + 1,
        )
    }

    fn docker_save(
        &mut self,
        blobs: &Blobs,
        name: Option<&Reference>,
        changes: &ConfigChanges,
    ) -> Result<Plan, ImportError> {
        let entries: Vec<DockerSaveEntry> = blobs.read_json("manifest.json")?;
        let tags = |e: &DockerSaveEntry| -> Vec<Reference> {
            e.repo_tags
                .iter()
                .flatten()
                .filter_map(|t| Reference::parse(t).ok())
                .collect()
        };
        let entry = match (entries.as_slice(), name) {
            ([], _) => {
                return Err(ImportError::Format {
                    what: "manifest.json".into(),
                    why: "lists no images".into(),
                });
            }
            ([one], _) => one,
            (many, Some(n)) => many.iter().find(|e| tags(e).contains(n)).ok_or_else(|| {
                ImportError::Refused(format!("the archive has no image named {n}"))
            })?,
            (many, None) => {
                let all: Vec<String> = many.iter().flat_map(&tags).map(|r| r.familiar()).collect();
                return Err(ImportError::Refused(format!(
                    "the archive has several images ({}): give NAME[:TAG] to choose one",
                    all.join(", ")
                )));
            }
        };
        let names = match name {
            Some(n) => vec![n.clone()],
            None if !tags(entry).is_empty() => tags(entry),
            None => {
                return Err(ImportError::Refused(
                    "the archive does not name its image: give NAME[:TAG] after SOURCE".into(),
                ));
            }
        };
        let config_bytes = blobs.read_all(&entry.config)?;
        let id = digest::sha256_of(&config_bytes);
        // The config's file name is its digest (`<hex>.json` or `blobs/sha256/<hex>`).
        let file_hex = Path::new(&entry.config)
            .file_name()
            .and_then(|f| f.to_str())
            .map(|f| f.trim_end_matches(".json"));
        if let Some(h) = file_hex.filter(|h| digest::is_hex64(h))
            && h != digest::hex_part(&id)
        {
            return Err(ImportError::Digest {
                what: entry.config.clone(),
                expected: format!("sha256:{h}"),
                got: id,
            });
        }
        let config = parse_config(&config_bytes, &id)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImportError::Format {
                what: "manifest.json".into(),
                why: format!(
                    "{} layers but the config lists {} diff-ids",
                    entry.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let count = entry.layers.len();
        let mut layers = Vec::new();
        for (i, (path, diff_id)) in entry.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
            // Newer archives name a layer by its digest: then check it too.
            let blob_digest = path
                .strip_prefix("blobs/sha256/")
                .filter(|h| digest::is_hex64(h))
                .map(|h| format!("sha256:{h}"));
            let open = || blobs.open(path);
            layers.push(self.layer_lazy(
                i + 1,
                count,
                open,
                None,
                blob_digest.as_deref(),
                diff_id,
            )?);
        }
        let (id, created) = self.final_config(&config_bytes, &config, changes)?;
        Ok(Plan {
            kind: "docker save archive",
            id,
            manifest: None,
            names,
            layers,
            created,
        })
    }

    /// The image's config blob: the source's own bytes when nothing changes (so the ID stays
    /// the one Docker shows), else the changed JSON.
    fn final_config(
        &mut self,
        bytes: &[u8],
        parsed: &ConfigFile,
        changes: &ConfigChanges,
    ) -> Result<(String, Option<i64>), ImportError> {
        let created = parsed.created.as_deref().and_then(time::parse_rfc3339);
        if parsed.os != "linux" && !parsed.os.is_empty() {
            return Err(ImportError::Refused(format!(
                "image is for os {:?}, not linux",
                parsed.os
            )));
        }
        if changes.is_empty() {
            return Ok((self.blob(bytes), created));
        }
        let mut v: Value = serde_json::from_slice(bytes).map_err(|e| ImportError::Format {
            what: "config".into(),
            why: e.to_string(),
        })?;
        compute_config_changes(&mut v, changes);
        Ok((
            self.blob(&serde_json::to_vec(&v).expect("config serialises")),
            created,
        ))
    }

    /// Reads a blob named by a descriptor, checking its size and digest.
    fn read_blob(
        &mut self,
        blobs: &Blobs,
        d: &Descriptor,
        what: &str,
    ) -> Result<Vec<u8>, ImportError> {
        let hex = digest::sha256_hex(&d.digest).ok_or_else(|| bad_digest(&d.digest))?;
        if d.size > MAX_JSON {
            return Err(ImportError::Refused(format!(
                "{what} {}: {} bytes is too large",
                d.digest, d.size
            )));
        }
        let bytes = blobs.read_all(&format!("blobs/sha256/{hex}"))?;
        let got = digest::sha256_of(&bytes);
        if got != d.digest {
            return Err(ImportError::Digest {
                what: format!("{what} {}", d.digest),
                expected: d.digest.clone(),
                got,
            });
        }
        if bytes.len() as u64 != d.size {
            return Err(ImportError::Size {
                what: format!("{what} {}", d.digest),
                expected: d.size,
                got: bytes.len() as u64,
            });
        }
        if what == "manifest" {
            self.blob(&bytes);
        }
        Ok(bytes)
    }

    /// Stages a small blob (config, manifest) in the temp dir; returns its digest.
    fn blob(&mut self, bytes: &[u8]) -> String {
        let d = digest::sha256_of(bytes);
        let hex = digest::hex_part(&d).to_string();
        if !self.new_blobs.iter().any(|(h, _)| *h == hex) {
            self.new_blobs.push((hex, bytes.to_vec()));
        }
        d
    }

    /// A layer whose diff-id is known: skipped when the store (or this import) has it.
    fn layer_lazy(
        &mut self,
        index: usize,
        count: usize,
        open: impl FnOnce() -> Result<(Box<dyn Read>, Option<u64>), ImportError>,
        size: Option<u64>,
        blob_digest: Option<&str>,
        diff_id: &str,
    ) -> Result<(String, u64), ImportError> {
        let hex = digest::sha256_hex(diff_id).ok_or_else(|| bad_digest(diff_id))?;
        for dir in [self.store.dir.join("layers").join(hex), self.tmp.join(hex)] {
            if let Ok(s) = fs::read_to_string(dir.join("size"))
                && dir.join("fs").is_dir()
            {
                (self.progress)(Progress::LayerPresent {
                    index,
                    count,
                    digest: diff_id,
                });
                return Ok((diff_id.to_string(), s.trim().parse().unwrap_or(0)));
            }
        }
        let (reader, len) = open()?;
        self.layer(
            index,
            count,
            reader,
            size.or(len),
            blob_digest,
            Some(diff_id),
        )
    }

    /// Unpacks one layer stream into `tmp/<diff-id hex>/fs`, checking the blob digest (of
    /// the stream as stored) and the diff-id (of the uncompressed tar) when they are known.
    fn layer(
        &mut self,
        index: usize,
        count: usize,
        reader: Box<dyn Read>,
        total: Option<u64>,
        blob_digest: Option<&str>,
        diff_id: Option<&str>,
    ) -> Result<(String, u64), ImportError> {
        let label = diff_id.or(blob_digest).map(str::to_string);
        let wrap = |err: UnpackError| match &label {
            Some(l) => ImportError::Layer {
                layer: l.clone(),
                err,
            },
            None => ImportError::Unpack(err),
        };
        let work = self.tmp.join(format!("layer-{index}"));
        let fs_dir = work.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io_err("create directory", fs_dir.display()))?;
        // The layer's root directory: 0755 whatever the umask (a tar may still set it).
        fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", fs_dir.display()))?;
        let read = Rc::new(Cell::new(0u64));
        let mut outer = HashingReader::new(Counting {
            inner: reader,
            count: read.clone(),
        });
        let shown = label.as_deref();
        let (got_diff, size) = {
            let dec = decompress(&mut outer).map_err(|e| wrap(UnpackError::Tar(e)))?;
            let mut inner = HashingReader::new(dec);
            let progress = &mut self.progress;
            let mut last: Option<std::time::Instant> = None;
            // At most ten redraws a second.
            let mut tick = || {
                if last.is_none_or(|t| t.elapsed().as_millis() >= 100) {
                    last = Some(std::time::Instant::now());
                    progress(Progress::Layer {
                        index,
                        count,
                        digest: shown,
                        done: read.get(),
                        total,
                    });
                }
            };
            tick();
            let size =
                unpack_layer(&mut inner, &fs_dir, self.privileged, &mut tick).map_err(wrap)?;
            let (d, _) = inner.finish().map_err(|e| wrap(UnpackError::Tar(e)))?;
            (d, size)
        };
        let (got_blob, blob_len) = outer.finish().map_err(|e| wrap(UnpackError::Tar(e)))?;
        (self.progress)(Progress::Layer {
            index,
            count,
            digest: shown,
            done: blob_len,
            total,
        });
        let what = label.clone().unwrap_or_else(|| "layer".into());
        if let Some(expected) = blob_digest
            && got_blob != expected
        {
            return Err(ImportError::Digest {
                what: format!("layer {what}"),
                expected: expected.into(),
                got: got_blob,
            });
        }
        if let (Some(expected), Some(total)) = (blob_digest, total)
            && blob_len != total
        {
            return Err(ImportError::Size {
                what: format!("layer {expected}"),
                expected: total,
                got: blob_len,
            });
        }
        if let Some(expected) = diff_id
            && got_diff != expected
        {
            return Err(ImportError::Digest {
                what: format!("layer {what} (uncompressed)"),
                expected: expected.into(),
                got: got_diff,
            });
        }
        let hex = digest::hex_part(&got_diff).to_string();
        fs::write(work.join("size"), size.to_string()).map_err(io_err("write", work.display()))?;
        let done = self.tmp.join(&hex);
        if done.exists() || self.store.dir.join("layers").join(&hex).exists() {
            super::remove_tree(&work).map_err(io_err("remove", work.display()))?;
        } else {
            fs::rename(&work, &done).map_err(io_err("rename", work.display()))?;
            self.new_layers.push(hex);
        }
        Ok((got_diff, size))
    }
}

enum RootfsSource<'a> {
    Dir(&'a Path),
    Tar(&'a Path),
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn bad_digest(d: &str) -> ImportError {
    ImportError::Format {
        what: format!("digest {d:?}"),
        why: "not sha256:<64 lowercase hex digits>".into(),
    }
}

fn parse_config(bytes: &[u8], digest: &str) -> Result<ConfigFile, ImportError> {
    let c: ConfigFile = serde_json::from_slice(bytes).map_err(|e| ImportError::Format {
        what: format!("config {digest}"),
        why: e.to_string(),
    })?;
    if c.rootfs.kind != "layers" {
        return Err(ImportError::Format {
            what: format!("config {digest}"),
            why: format!("rootfs type {:?}", c.rootfs.kind),
        });
    }
    Ok(c)
}

/// Applies `--env/--cmd/...` to an image config JSON (pure).
pub fn compute_config_changes(config: &mut Value, ch: &ConfigChanges) {
    if !config.get("config").is_some_and(Value::is_object) {
        config["config"] = json!({});
    }
    let c = &mut config["config"];
    if !ch.env.is_empty() {
        let mut env: Vec<String> = c
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for kv in &ch.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
            {
                Some(e) => *e = kv.clone(),
                None => env.push(kv.clone()),
            }
        }
        c["Env"] = json!(env);
    }
    if let Some(v) = &ch.entrypoint {
        c["Entrypoint"] = json!(v);
        // As Docker does: a new entrypoint resets an inherited Cmd unless one is given.
        if ch.cmd.is_none() {
            c["Cmd"] = Value::Null;
        }
    }
    if let Some(v) = &ch.cmd {
        c["Cmd"] = json!(v);
    }
    for (key, val) in [
        ("WorkingDir", &ch.working_dir),
        ("User", &ch.user),
        ("StopSignal", &ch.stop_signal),
    ] {
        if let Some(v) = val {
            c[key] = json!(v);
        }
    }
}

/// Reads into `buf` until it is full or the input ends.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compression {
    Gzip,
    Zstd,
}

fn compression(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// Wraps `r` in the decompressor its first bytes call for (gzip, zstd, or none).
fn decompress<'r>(r: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
    let mut br = BufReader::with_capacity(64 << 10, r);
    let head = br.fill_buf()?;
    if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(io::Error::other(
            "bzip2 and xz compression are not supported (gzip and zstd are)",
        ));
    }
    Ok(match compression(head) {
        Some(Compression::Gzip) => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Some(Compression::Zstd) => Box::new(Zstd::new(br)?),
        None => Box::new(br),
    })
}

/// zstd decoding over every frame of the stream (ruzstd's decoder stops after one).
struct Zstd<R: BufRead> {
    dec: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Zstd<R> {
    fn new(r: R) -> io::Result<Self> {
        let dec = ruzstd::decoding::StreamingDecoder::new(r).map_err(io::Error::other)?;
        Ok(Zstd { dec: Some(dec) })
    }
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(dec) = self.dec.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let mut src = self.dec.take().expect("decoder").into_inner();
            if src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.dec =
                Some(ruzstd::decoding::StreamingDecoder::new(src).map_err(io::Error::other)?);
        }
    }
}

/// Counts bytes read, shared with the progress display.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The first entry name of a (possibly compressed) tar file.
fn first_entry_name(path: &Path) -> Result<Option<String>, ImportError> {
    let f = File::open(path).map_err(io_err("open", path.display()))?;
    let dec = decompress(f).map_err(io_err("read", path.display()))?;
    let mut a = tar::Archive::new(dec);
    let mut entries = a.entries().map_err(io_err("read tar", path.display()))?;
    match entries.next() {
        Some(e) => {
            let e = e.map_err(io_err("read tar", path.display()))?;
            let p = e.path().map_err(io_err("read tar", path.display()))?;
            Ok(Some(normalize(&p)))
        }
        None => Ok(None),
    }
}

/// True for the names that start a `docker save` or OCI archive: its index files, `blobs/`
/// (OCI, Docker 25+), `<hex>/` and `<hex>.json` (older Docker), `<hex>.tar` (skopeo, podman).
fn looks_like_image_archive(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or("");
    matches!(
        first,
        "oci-layout" | "index.json" | "manifest.json" | "repositories" | "blobs"
    ) || [".json", ".tar", ""]
        .iter()
        .any(|ext| first.strip_suffix(ext).is_some_and(digest::is_hex64))
}

/// `./a/../b/` → `b`: lexical, never above the root.
fn normalize(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.join("/")
}

/// Name → (data offset, size) of the regular files of an uncompressed tar, with symlinks
/// and hard links resolved to their targets (legacy `docker save` links duplicate layers).
fn index_tar(path: &Path) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut a = tar::Archive::new(File::open(path)?);
    let mut files = HashMap::new();
    let mut links = Vec::new();
    for e in a.entries_with_seek()? {
        let e = e?;
        let name = normalize(&e.path()?);
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                files.insert(name, (e.raw_file_position(), e.size()));
            }
            tar::EntryType::Link => {
                if let Some(t) = e.link_name()? {
                    links.push((name, normalize(&t)));
                }
            }
            tar::EntryType::Symlink => {
                if let Some(t) = e.link_name()? {
                    let parent = Path::new(&name).parent().unwrap_or(Path::new("")).join(t);
                    links.push((name, normalize(&parent)));
                }
            }
            _ => {}
        }
    }
    for _ in 0..8 {
        for (name, target) in &links {
            if let Some(v) = files.get(target).copied() {
                files.entry(name.clone()).or_insert(v);
            }
        }
    }
    Ok(files)
}

impl Blobs {
    fn exists(&self, name: &str) -> bool {
        match self {
            Blobs::Dir(d) => safe_rel(name).is_some_and(|n| d.join(n).is_file()),
            Blobs::Tar { files, .. } => files.contains_key(name),
        }
    }

    /// Opens `name` (a path inside the source); returns the reader and its size.
    fn open(&self, name: &str) -> Result<(Box<dyn Read>, Option<u64>), ImportError> {
        let missing = || ImportError::Format {
            what: name.to_string(),
            why: "missing from the source".into(),
        };
        match self {
            Blobs::Dir(d) => {
                let rel = safe_rel(name).ok_or_else(missing)?;
                let p = d.join(rel);
                let f = File::open(&p).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        missing()
                    } else {
                        io_err("open", p.display())(e)
                    }
                })?;
                let len = f.metadata().ok().map(|m| m.len());
                Ok((Box::new(f), len))
            }
            Blobs::Tar { path, files } => {
                let &(off, len) = files.get(&normalize(Path::new(name))).ok_or_else(missing)?;
                let mut f = File::open(path).map_err(io_err("open", path.display()))?;
                f.seek(SeekFrom::Start(off))
                    .map_err(io_err("read", path.display()))?;
                Ok((Box::new(f.take(len)), Some(len)))
            }
        }
    }

    fn read_all(&self, name: &str) -> Result<Vec<u8>, ImportError> {
        let (r, len) = self.open(name)?;
        if len.is_some_and(|l| l > MAX_JSON) {
            return Err(ImportError::Refused(format!("{name}: too large")));
        }
        let mut buf = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(io_err("read", name))?;
        Ok(buf)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ImportError> {
        let bytes = self.read_all(name)?;
        serde_json::from_slice(&bytes).map_err(|e| ImportError::Format {
            what: name.to_string(),
            why: e.to_string(),
        })
    }
}

/// `name` as a relative path that stays inside the source directory.
fn safe_rel(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| p.to_path_buf())
}

impl Job<'_, '_> {
    /// Moves the staged layers and blobs into the store and records the names.
    fn commit(&mut self, plan: Plan, run: Option<&Path>) -> Result<Imported, ImageError> {
        let dir = &self.store.dir;
        let store_err = |step: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |err| ImageError::Store { step, path, err }
        };
        for (hex, bytes) in &self.new_blobs {
            let dest = dir.join("blobs/sha256").join(hex);
            if dest.exists() {
                continue;
            }
            let staged = self.tmp.join(format!("blob-{hex}"));
            let mut f = File::create(&staged).map_err(store_err("write", &staged))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(store_err("write", &staged))?;
            fs::rename(&staged, &dest).map_err(store_err("rename", &staged))?;
        }
        for hex in &self.new_layers {
            let staged = self.tmp.join(hex);
            let dest = dir.join("layers").join(hex);
            fs::rename(&staged, &dest).map_err(store_err("rename", &staged))?;
        }
        let mut index = self.store.read_index()?;
        let size = plan.layers.iter().map(|(_, s)| s).sum();
        index.images.insert(
            plan.id.clone(),
            ImageRecord {
                layers: plan.layers.iter().map(|(d, _)| d.clone()).collect(),
                manifest: plan.manifest.clone(),
                size,
                created: plan.created,
                imported: now(),
            },
        );
        let names: Vec<String> = plan.names.iter().map(Reference::to_string).collect();
        let mut old_ids = Vec::new();
        for n in &names {
            if let Some(old) = index.names.insert(n.clone(), plan.id.clone())
                && old != plan.id
            {
                old_ids.push(old);
            }
        }
        let mut replaced = Vec::new();
        if let Some(run) = run {
            for old in old_ids {
                let named = index.names.values().any(|v| *v == old);
                if !named && super::image_user(run, &old)?.is_none() {
                    index.images.remove(&old);
                    replaced.push(old);
                }
            }
        }
        self.store.write_index(&index)?;
        if !replaced.is_empty() {
            self.store.collect_garbage(&index)?;
        }
        Ok(Imported {
            id: plan.id,
            names,
            kind: plan.kind,
            layers: plan.layers.len(),
            new_layers: self.new_layers.len(),
            size,
            replaced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_changes() {
        let mut v = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": null}, "x": 1});
        compute_config_changes(
            &mut v,
            &ConfigChanges {
                env: vec!["A=2".into(), "B=3".into()],
                entrypoint: Some(vec!["/init".into()]),
                user: Some("1000:1000".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            v,
            json!({"config": {"Env": ["PATH=/bin", "A=2", "B=3"], "Cmd": null, "Entrypoint": ["/init"], "User": "1000:1000"}, "x": 1})
        );
        let mut v = json!({});
        compute_config_changes(
            &mut v,
            &ConfigChanges {
                cmd: Some(vec!["true".into()]),
                working_dir: Some("/w".into()),
                stop_signal: Some("SIGINT".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            v,
            json!({"config": {"Cmd": ["true"], "WorkingDir": "/w", "StopSignal": "SIGINT"}})
        );
    }

    #[test]
    fn decompresses_every_frame_and_member() {
        use std::io::Write as _;
        let gz = |d: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(d).unwrap();
            e.finish().unwrap()
        };
        let zst = |d: &[u8]| {
            ruzstd::encoding::compress_to_vec(d, ruzstd::encoding::CompressionLevel::Fastest)
        };
        let table: Vec<(Vec<u8>, &[u8])> = vec![
            (b"plain".to_vec(), b"plain"),
            ([gz(b"one "), gz(b"two")].concat(), b"one two"),
            ([zst(b"one "), zst(b"two")].concat(), b"one two"),
            (zst(&[7u8; 300_000]), &[7u8; 300_000]),
        ];
        for (i, (input, want)) in table.into_iter().enumerate() {
            let mut out = Vec::new();
            decompress(&input[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, want, "case {i}");
        }
        assert!(decompress(&b"BZh91AY"[..]).is_err());
    }

    #[test]
    fn recognises_image_archives() {
        for (name, want) in [
            ("oci-layout", true),
            ("blobs/sha256/abc", true),
            ("manifest.json", true),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/layer.tar",
                true,
            ),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.json",
                true,
            ),
            (
                "6271585fe4f0ba0b6290681b0ab79c6e756cc5ca90f45459fc2363103418504b.tar",
                true,
            ),
            (
                "6271585fe4f0ba0b6290681b0ab79c6e756cc5ca90f45459fc2363103418504b.tgz",
                false,
            ),
            ("bin/sh", false),
            ("", false),
            ("etc", false),
        ] {
            assert_eq!(looks_like_image_archive(name), want, "{name}");
        }
    }
}
