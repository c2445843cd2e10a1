//! The image store end to end: `podsup image import | ls | rm` on real files, with OCI
//! layouts and `docker save` archives written by the test itself (tar + sha2 + flate2 +
//! ruzstd: no skopeo or umoci needed).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::TestDirs;
use podsup::image::{ImageError, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ---------- fixtures ----------

fn sha(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

/// One tar entry for a test layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Owned(&'a str, &'a [u8], u32, u64, u64),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
}

/// A tar stream with the names written raw (so that `../x` and `/x` can be written).
fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (n, b"")
            }
            E::File(n, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (n, d)
            }
            E::Owned(n, d, mode, uid, gid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                (n, d)
            }
            E::Sym(n, t) | E::Hard(n, t) => {
                let kind = if matches!(e, E::Sym(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_mode(0o777);
                h.set_link_name(t).unwrap_or_else(|_| {
                    let field = &mut h.as_gnu_mut().unwrap().linkname;
                    field[..t.len()].copy_from_slice(t.as_bytes());
                });
                (n, b"")
            }
            E::Char(n, maj, min) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                (n, b"")
            }
            E::Fifo(n) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (n, b"")
            }
        };
        h.set_size(data.len() as u64);
        let field = &mut h.as_gnu_mut().unwrap().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

#[derive(Clone, Copy)]
enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A layer: (blob as stored, media type, diff-id).
struct Layer {
    blob: Vec<u8>,
    media_type: &'static str,
    diff_id: String,
}

fn layer(entries: &[E], comp: Comp) -> Layer {
    let tar = tar_of(entries);
    let diff_id = sha(&tar);
    let (blob, media_type) = match comp {
        Comp::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip"),
        Comp::Zstd => (zstd(&tar), "application/vnd.oci.image.layer.v1.tar+zstd"),
    };
    Layer {
        blob,
        media_type,
        diff_id,
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn config_json(arch: &str, layers: &[&Layer], cfg: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    }))
    .unwrap()
}

/// Files of an OCI layout (path in layout -> bytes), built up blob by blob.
#[derive(Default)]
struct Layout {
    files: Vec<(String, Vec<u8>)>,
}

impl Layout {
    /// Adds a blob; returns its descriptor.
    fn blob(&mut self, media_type: &str, data: &[u8]) -> Value {
        let d = sha(data);
        let path = format!("blobs/sha256/{}", hex(&d));
        if !self.files.iter().any(|(p, _)| *p == path) {
            self.files.push((path, data.to_vec()));
        }
        json!({"mediaType": media_type, "digest": d, "size": data.len()})
    }

    /// Adds a manifest for `layers` + config; returns its descriptor.
    fn image(&mut self, arch: &str, layers: &[&Layer], cfg: Value) -> Value {
        let config = config_json(arch, layers, cfg);
        let config_desc = self.blob("application/vnd.oci.image.config.v1+json", &config);
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| self.blob(l.media_type, &l.blob))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": layer_descs,
        }))
        .unwrap();
        self.blob("application/vnd.oci.image.manifest.v1+json", &manifest)
    }

    fn finish(mut self, manifests: Vec<Value>) -> Layout {
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        self.files
            .push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
        self.files.push((
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ));
        self
    }

    fn write_dir(&self, dir: &Path) {
        for (p, data) in &self.files {
            let p = dir.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
    }
}

/// A plain tar of named files (for OCI archives and docker save archives).
fn archive(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, p, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn podsup(args: &[&str], dirs: &TestDirs) -> Output {
    let mut cmd = common::podsup();
    cmd.args(args).arg("--root").arg(&dirs.root);
    if matches!(args.get(1), Some(&"rm") | Some(&"import")) {
        cmd.arg("--run").arg(&dirs.run);
    }
    cmd.output().expect("run podsup")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "podsup failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exit code 1 and the stderr text.
fn fails(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stderr: {err}");
    err
}

fn import(dirs: &TestDirs, source: &Path, name: Option<&str>, extra: &[&str]) -> Output {
    let src = source.to_str().unwrap();
    let mut args = vec!["image", "import", src];
    args.extend(name);
    args.extend(extra);
    podsup(&args, dirs)
}

fn store(dirs: &TestDirs) -> Store {
    Store::open(&dirs.root).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The store holds no layer, no blob, no name, and no temp dir.
fn assert_store_empty(dirs: &TestDirs) {
    let images = dirs.root.join("images");
    for sub in ["layers", "blobs/sha256", "tmp"] {
        assert_eq!(
            entries(&images.join(sub)),
            Vec::<String>::new(),
            "{sub} not empty"
        );
    }
    assert!(store(dirs).list().unwrap().is_empty());
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

// ---------- the four source kinds ----------

#[test]
fn import_rootfs_directory() {
    let dirs = TestDirs::new();
    let rootfs = dirs.tmp.path().join("rootfs");
    common::busybox_rootfs(&rootfs);
    fs::write(rootfs.join("etc/motd"), "hello\n").unwrap();
    fs::set_permissions(rootfs.join("etc/motd"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::hard_link(rootfs.join("etc/motd"), rootfs.join("etc/motd.link")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(rootfs.join("etc/motd"), Some(1000), Some(1001)).unwrap();
    }
    let out = ok(import(
        &dirs,
        &rootfs,
        Some("busybox"),
        &["--cmd", "sh -c true", "--env", "A=1"],
    ));
    assert!(
        out.contains("imported docker.io/library/busybox:latest sha256:"),
        "{out}"
    );
    assert!(out.contains("root filesystem directory"), "{out}");

    let img = store(&dirs).resolve("busybox").unwrap();
    assert_eq!(img.name, "docker.io/library/busybox:latest");
    assert_eq!(img.layers.len(), 1);
    let l = &img.layers[0];
    assert!(l.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(l.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let motd = fs::metadata(l.join("etc/motd")).unwrap();
    assert_eq!(motd.mode() & 0o7777, 0o640);
    assert_eq!(motd.nlink(), 2, "hard link kept");
    assert_eq!(
        motd.mtime(),
        fs::metadata(rootfs.join("etc/motd")).unwrap().mtime()
    );
    if is_root() {
        assert_eq!((motd.uid(), motd.gid()), (1000, 1001));
    }
    assert_eq!(
        img.config.env,
        vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=1"
        ]
    );
    assert_eq!(img.config.cmd, vec!["sh", "-c", "true"]);
    assert!(img.config.entrypoint.is_empty());
    // The ID is the digest of the stored config blob.
    let blob = dirs.root.join("images/blobs/sha256").join(hex(&img.id));
    assert_eq!(sha(&fs::read(blob).unwrap()), img.id);
}

#[test]
fn import_rootfs_tarballs() {
    let dirs = TestDirs::new();
    let mut tar_entries = vec![
        E::Dir("./", 0o755),
        E::Dir("./bin", 0o755),
        E::File("./bin/tool", b"#!/bin/sh\n", 0o4755),
        E::Sym("./bin/alias", "tool"),
        E::Hard("./bin/tool2", "./bin/tool"),
        E::Fifo("./run.fifo"),
        E::Dir("./ro", 0o555),
        E::File("./ro/file", b"x", 0o444),
    ];
    if is_root() {
        tar_entries.push(E::Char("./null", 1, 3));
        tar_entries.push(E::Owned("./owned", b"o", 0o600, 1234, 5678));
    }
    let tar = tar_of(&tar_entries);
    for (file, data, name) in [
        ("r.tar", tar.clone(), "plain"),
        ("r.tar.gz", gzip(&tar), "gz"),
        ("r.tar.zst", zstd(&tar), "zst"),
    ] {
        let path = dirs.tmp.path().join(file);
        fs::write(&path, data).unwrap();
        let out = ok(import(
            &dirs,
            &path,
            Some(&format!("tarball:{name}")),
            &["--workdir", "/bin"],
        ));
        assert!(out.contains("root filesystem tarball"), "{out}");
        let img = store(&dirs).resolve(&format!("tarball:{name}")).unwrap();
        let l = &img.layers[0];
        let tool = fs::metadata(l.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept ({file})");
        assert_eq!(tool.mtime(), 1_600_000_000);
        assert_eq!(tool.nlink(), 2);
        assert_eq!(
            fs::read_link(l.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        assert!(
            fs::symlink_metadata(l.join("run.fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(fs::metadata(l.join("ro")).unwrap().mode() & 0o7777, 0o555);
        if is_root() {
            let null = fs::symlink_metadata(l.join("null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
            let owned = fs::metadata(l.join("owned")).unwrap();
            assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
        }
        assert_eq!(img.config.working_dir.as_deref(), Some("/bin"));
    }
    // The same tar compressed three ways is one layer, stored once.
    assert_eq!(entries(&dirs.root.join("images/layers")).len(), 1);
    // rm deletes it again, read-only directories included (also without root).
    ok(podsup(
        &["image", "rm", "tarball:plain", "tarball:gz", "tarball:zst"],
        &dirs,
    ));
    assert_store_empty(&dirs);
}

#[test]
fn import_oci_layout_directory() {
    let dirs = TestDirs::new();
    let base = layer(
        &[E::Dir("bin", 0o755), E::File("bin/hello", b"hello", 0o755)],
        Comp::Gzip,
    );
    let top = layer(
        &[E::Dir("etc", 0o755), E::File("etc/conf", b"v2", 0o644)],
        Comp::Zstd,
    );
    let mut lay = Layout::default();
    let cfg = json!({
        "Env": ["PATH=/bin", "X=1"], "Entrypoint": ["/bin/hello"], "Cmd": ["--loud"],
        "WorkingDir": "/etc", "User": "1000:1000", "StopSignal": "SIGQUIT",
    });
    let m = lay.image(host_arch(), &[&base, &top], cfg);
    let lay = lay.finish(vec![m]);
    let src = dirs.tmp.path().join("layout");
    lay.write_dir(&src);

    let out = ok(import(&dirs, &src, Some("example.com/app:v1"), &[]));
    assert!(out.contains("OCI layout, 2 layers, 2 new"), "{out}");
    let img = store(&dirs).resolve("example.com/app:v1").unwrap();
    let config_blob = &lay
        .files
        .iter()
        .find(|(p, _)| p.ends_with(hex(&img.id)))
        .unwrap()
        .1;
    assert_eq!(
        sha(config_blob),
        img.id,
        "ID = digest of the source's config blob"
    );
    assert_eq!(img.layers.len(), 2);
    assert!(
        img.layers[0].join("bin/hello").is_file(),
        "bottom layer first"
    );
    assert_eq!(fs::read(img.layers[1].join("etc/conf")).unwrap(), b"v2");
    assert!(img.layers[0].ends_with(format!("{}/fs", hex(&base.diff_id))));
    let c = &img.config;
    assert_eq!(c.env, vec!["PATH=/bin", "X=1"]);
    assert_eq!(c.entrypoint, vec!["/bin/hello"]);
    assert_eq!(c.cmd, vec!["--loud"]);
    assert_eq!(c.working_dir.as_deref(), Some("/etc"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));

    // --env on an image changes the config, and so the ID.
    ok(import(
        &dirs,
        &src,
        Some("example.com/app:v2"),
        &["--env", "X=2"],
    ));
    let changed = store(&dirs).resolve("example.com/app:v2").unwrap();
    assert_ne!(changed.id, img.id);
    assert_eq!(changed.config.env, vec!["PATH=/bin", "X=2"]);
    assert_eq!(changed.layers, img.layers);
}

#[test]
fn import_oci_archive_takes_its_name_from_the_index() {
    let dirs = TestDirs::new();
    let l = layer(&[E::File("hello", b"hi", 0o644)], Comp::None);
    let mut lay = Layout::default();
    let mut m = lay.image(host_arch(), &[&l], json!({"Cmd": ["/hello"]}));
    m["annotations"] = json!({
        "io.containerd.image.name": "docker.io/acme/tool:2.0",
        "org.opencontainers.image.ref.name": "2.0",
    });
    let lay = lay.finish(vec![m]);
    let path = dirs.tmp.path().join("oci.tar");
    fs::write(&path, archive(&lay.files)).unwrap();

    let out = ok(import(&dirs, &path, None, &[]));
    assert!(out.contains("imported docker.io/acme/tool:2.0"), "{out}");
    assert!(out.contains("OCI archive"), "{out}");
    let img = store(&dirs).resolve("acme/tool:2.0").unwrap();
    assert_eq!(fs::read(img.layers[0].join("hello")).unwrap(), b"hi");
    assert_eq!(img.config.cmd, vec!["/hello"]);
}

#[test]
fn import_docker_save_archive() {
    let dirs = TestDirs::new();
    let l1 = layer(
        &[E::Dir("bin", 0o755), E::File("bin/a", b"a", 0o755)],
        Comp::None,
    );
    let l2 = layer(&[E::File("b", b"b", 0o644)], Comp::None);
    let config = config_json(
        host_arch(),
        &[&l1, &l2],
        json!({"Cmd": ["/bin/a"], "Env": ["PATH=/bin"]}),
    );
    let id = sha(&config);
    // The legacy layout Docker wrote before 25.0: <id>.json, <layer id>/layer.tar, and a
    // symlink for the second use of a layer blob.
    let files = vec![
        ("aaaa/layer.tar".to_string(), l1.blob.clone()),
        ("bbbb/layer.tar".to_string(), l2.blob.clone()),
        (format!("{}.json", hex(&id)), config.clone()),
        (
            "manifest.json".to_string(),
            serde_json::to_vec(&json!([{
                "Config": format!("{}.json", hex(&id)),
                "RepoTags": ["myapp:1.0", "myapp:latest"],
                "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"],
            }]))
            .unwrap(),
        ),
        (
            "repositories".to_string(),
            br#"{"myapp":{"1.0":"bbbb"}}"#.to_vec(),
        ),
    ];
    let path = dirs.tmp.path().join("saved.tar");
    fs::write(&path, archive(&files)).unwrap();

    let out = ok(import(&dirs, &path, None, &[]));
    assert!(
        out.contains("imported docker.io/library/myapp:1.0 "),
        "{out}"
    );
    assert!(
        out.contains("imported docker.io/library/myapp:latest "),
        "{out}"
    );
    assert!(out.contains("docker save archive"), "{out}");
    let img = store(&dirs).resolve("myapp:1.0").unwrap();
    assert_eq!(img.id, id, "same ID as Docker shows");
    assert_eq!(store(&dirs).resolve("myapp").unwrap().id, id);
    assert!(img.layers[0].join("bin/a").is_file());
    assert!(img.layers[1].join("b").is_file());
    assert_eq!(img.config.cmd, vec!["/bin/a"]);
}

// ---------- choosing, verifying, refusing ----------

#[test]
fn multi_arch_index_picks_the_host_architecture() {
    let dirs = TestDirs::new();
    let mine = layer(
        &[E::File("arch", host_arch().as_bytes(), 0o644)],
        Comp::Gzip,
    );
    let other = layer(&[E::File("arch", b"other", 0o644)], Comp::Gzip);
    let other_arch = if host_arch() == "s390x" {
        "amd64"
    } else {
        "s390x"
    };
    let mut lay = Layout::default();
    let mut m_other = lay.image(other_arch, &[&other], json!({}));
    m_other["platform"] = json!({"os": "linux", "architecture": other_arch});
    let mut m_mine = lay.image(host_arch(), &[&mine], json!({"Cmd": ["mine"]}));
    m_mine["platform"] = json!({"os": "linux", "architecture": host_arch()});
    let mut m_win = lay.image(host_arch(), &[&other], json!({}));
    m_win["platform"] = json!({"os": "windows", "architecture": host_arch()});
    // A nested index, as `skopeo copy --all` and buildx write it.
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [m_other, m_win, m_mine],
    }))
    .unwrap();
    let idx = lay.blob("application/vnd.oci.image.index.v1+json", &nested);
    let lay = lay.finish(vec![idx]);
    let src = dirs.tmp.path().join("multi");
    lay.write_dir(&src);

    ok(import(&dirs, &src, Some("multi"), &[]));
    let img = store(&dirs).resolve("multi").unwrap();
    assert_eq!(
        fs::read(img.layers[0].join("arch")).unwrap(),
        host_arch().as_bytes()
    );
    assert_eq!(img.config.cmd, vec!["mine"]);
    assert_eq!(
        entries(&dirs.root.join("images/layers")).len(),
        1,
        "only the chosen image is unpacked"
    );
}

#[test]
fn digest_mismatch_is_refused_and_leaves_nothing() {
    let dirs = TestDirs::new();
    let good = layer(&[E::File("ok", b"ok", 0o644)], Comp::None);
    let l = layer(&[E::File("f", b"original", 0o644)], Comp::Gzip);
    let mut lay = Layout::default();
    let m = lay.image(host_arch(), &[&good, &l], json!({}));
    let lay = lay.finish(vec![m]);
    let src = dirs.tmp.path().join("layout");
    lay.write_dir(&src);
    // Replace the second layer blob with other (valid) content.
    let tampered = gzip(&tar_of(&[E::File("f", b"evil!!!!", 0o644)]));
    fs::write(src.join("blobs/sha256").join(hex(&sha(&l.blob))), tampered).unwrap();

    let err = fails(import(&dirs, &src, Some("tampered"), &[]));
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(
        err.contains(&l.diff_id) || err.contains(&sha(&l.blob)),
        "names the layer: {err}"
    );
    assert_store_empty(&dirs);

    // A config that does not match its digest.
    let src2 = dirs.tmp.path().join("layout2");
    lay.write_dir(&src2);
    let index: Value = serde_json::from_slice(&fs::read(src2.join("index.json")).unwrap()).unwrap();
    let mhex = hex(index["manifests"][0]["digest"].as_str().unwrap()).to_string();
    let manifest: Value =
        serde_json::from_slice(&fs::read(src2.join("blobs/sha256").join(&mhex)).unwrap()).unwrap();
    let chex = hex(manifest["config"]["digest"].as_str().unwrap()).to_string();
    let mut cfg = fs::read(src2.join("blobs/sha256").join(&chex)).unwrap();
    cfg.push(b' ');
    fs::write(src2.join("blobs/sha256").join(&chex), cfg).unwrap();
    let err = fails(import(&dirs, &src2, Some("tampered"), &[]));
    assert!(
        err.contains(&format!("config sha256:{chex}: digest mismatch")),
        "{err}"
    );
    assert_store_empty(&dirs);
}

#[test]
fn path_traversal_is_refused_and_leaves_nothing() {
    let dirs = TestDirs::new();
    let outside = dirs.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "s").unwrap();
    let o = outside.to_str().unwrap().to_string();
    let abs = format!("{o}/abs");
    let secret = format!("{o}/secret");
    let cases: Vec<(&str, Vec<E>, &str)> = vec![
        (
            "dotdot",
            vec![
                E::File("ok", b"1", 0o644),
                E::File("../../evil", b"x", 0o644),
            ],
            r#"entry "../../evil" escapes the layer"#,
        ),
        (
            "inner-dotdot",
            vec![E::Dir("a", 0o755), E::File("a/../../evil", b"x", 0o644)],
            r#"entry "a/../../evil" escapes the layer"#,
        ),
        (
            "absolute",
            vec![E::File(&abs, b"x", 0o644)],
            "escapes the layer (absolute path)",
        ),
        (
            "symlink-absolute",
            vec![E::Sym("link", &o), E::File("link/evil", b"x", 0o644)],
            r#"entry "link/evil" escapes the layer (through symlink "link""#,
        ),
        (
            "symlink-relative",
            vec![
                E::Dir("d", 0o755),
                E::Sym("d/up", "../../../.."),
                E::File("d/up/evil", b"x", 0o644),
            ],
            r#"entry "d/up/evil" escapes the layer (through symlink "d/up""#,
        ),
        (
            "hardlink",
            vec![E::Hard("h", &secret)],
            r#"entry "h" escapes the layer (hard link to"#,
        ),
        (
            "hardlink-dotdot",
            vec![E::Hard("h", "../../outside/secret")],
            r#"entry "h" escapes the layer (hard link to "../../outside/secret")"#,
        ),
        (
            "whiteout-dotdot",
            vec![E::File("../.wh.x", b"", 0o644)],
            "escapes the layer",
        ),
    ];
    for (name, tar_entries, want) in cases {
        let path = dirs.tmp.path().join(format!("{name}.tar"));
        fs::write(&path, tar_of(&tar_entries)).unwrap();
        let err = fails(import(&dirs, &path, Some("evil"), &[]));
        assert!(
            err.starts_with(&format!("import {}: ", path.display())),
            "{name}: {err}"
        );
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(entries(&outside), vec!["secret"], "{name} wrote outside");
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"s");
        assert!(
            !dirs.tmp.path().join("evil").exists() && !dirs.root.join("evil").exists(),
            "{name}"
        );
        assert_store_empty(&dirs);
    }
    // A relative symlink that stays inside the layer may be written through.
    let path = dirs.tmp.path().join("inside.tar");
    fs::write(
        &path,
        tar_of(&[
            E::Dir("usr/lib", 0o755),
            E::Sym("lib", "usr/lib"),
            E::File("lib/x", b"x", 0o644),
        ]),
    )
    .unwrap();
    ok(import(&dirs, &path, Some("inside"), &[]));
    let img = store(&dirs).resolve("inside").unwrap();
    assert!(img.layers[0].join("usr/lib/x").is_file());
}

#[test]
fn whiteouts_are_respected_across_two_layers() {
    if !common::require_root("whiteouts_are_respected_across_two_layers") {
        return;
    }
    let dirs = TestDirs::new();
    let lower = layer(
        &[
            E::Dir("a", 0o755),
            E::File("a/deleted", b"gone", 0o644),
            E::File("a/kept", b"kept", 0o644),
            E::Dir("cache", 0o755),
            E::File("cache/old", b"old", 0o644),
        ],
        Comp::Gzip,
    );
    let upper = layer(
        &[
            E::Dir("a", 0o755),
            E::File("a/.wh.deleted", b"", 0o644),
            E::Dir("cache", 0o755),
            E::File("cache/.wh..wh..opq", b"", 0o644),
            E::File("cache/new", b"new", 0o644),
            E::File(".wh..wh.aufs", b"", 0o644),
        ],
        Comp::Zstd,
    );
    let mut lay = Layout::default();
    let m = lay.image(host_arch(), &[&lower, &upper], json!({}));
    let lay = lay.finish(vec![m]);
    let src = dirs.tmp.path().join("layout");
    lay.write_dir(&src);
    ok(import(&dirs, &src, Some("wh"), &[]));
    let img = store(&dirs).resolve("wh").unwrap();
    let (lo, up) = (&img.layers[0], &img.layers[1]);
    assert_eq!(
        fs::read(lo.join("a/deleted")).unwrap(),
        b"gone",
        "lower layer untouched"
    );
    // overlayfs whiteout: a 0/0 character device named like the deleted file.
    let wh = fs::symlink_metadata(up.join("a/deleted")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!up.join("a/.wh.deleted").exists());
    // Opaque directory: the xattr overlayfs reads, and no marker file.
    let v =
        rustix::fs::lgetxattr(up.join("cache"), "trusted.overlay.opaque", &mut [0u8; 8]).unwrap();
    assert_eq!(v, 1);
    let mut buf = [0u8; 8];
    rustix::fs::lgetxattr(up.join("cache"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..1], b"y");
    assert_eq!(entries(&up.join("cache")), vec!["new"]);
    assert!(!up.join(".wh..wh.aufs").exists());
}

#[test]
fn shared_layers_are_stored_once() {
    let dirs = TestDirs::new();
    let base = layer(
        &[E::Dir("usr", 0o755), E::File("usr/base", b"base", 0o644)],
        Comp::Gzip,
    );
    let one = layer(&[E::File("one", b"1", 0o644)], Comp::Gzip);
    let two = layer(&[E::File("two", b"2", 0o644)], Comp::Zstd);
    for (name, top) in [("one", &one), ("two", &two)] {
        let mut lay = Layout::default();
        let m = lay.image(host_arch(), &[&base, top], json!({"Cmd": [name]}));
        let lay = lay.finish(vec![m]);
        let src = dirs.tmp.path().join(name);
        lay.write_dir(&src);
        let out = ok(import(&dirs, &src, Some(name), &[]));
        let new = if name == "one" { "2 new" } else { "1 new" };
        assert!(out.contains(new), "{out}");
    }
    let layers = dirs.root.join("images/layers");
    assert_eq!(entries(&layers).len(), 3);
    let (a, b) = (
        store(&dirs).resolve("one").unwrap(),
        store(&dirs).resolve("two").unwrap(),
    );
    assert_eq!(
        a.layers[0], b.layers[0],
        "same directory for the shared layer"
    );
    // Removing one image keeps the shared layer for the other.
    ok(podsup(&["image", "rm", "one"], &dirs));
    assert_eq!(entries(&layers).len(), 2);
    assert!(
        store(&dirs)
            .resolve("two")
            .unwrap()
            .layers
            .iter()
            .all(|l| l.is_dir())
    );
    ok(podsup(&["image", "rm", "two"], &dirs));
    assert_store_empty(&dirs);
}

#[test]
fn ls_lists_name_tag_id_size_created() {
    let dirs = TestDirs::new();
    let out = ok(podsup(&["image", "ls"], &dirs));
    assert_eq!(out, "NAME   TAG   ID   SIZE   CREATED\n");
    let path = dirs.tmp.path().join("r.tar");
    fs::write(&path, tar_of(&[E::File("f", &[7u8; 2500], 0o644)])).unwrap();
    ok(import(
        &dirs,
        &path,
        Some("localhost:5000/team/app:1.2"),
        &[],
    ));
    ok(import(&dirs, &path, Some("busybox"), &[]));
    let out = ok(podsup(&["image", "ls"], &dirs));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(cols(lines[0]), ["NAME", "TAG", "ID", "SIZE", "CREATED"]);
    let busy = cols(lines[1]);
    assert_eq!(&busy[..2], ["docker.io/library/busybox", "latest"]);
    assert_eq!(busy[2].len(), 12);
    assert!(busy[2].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(busy[3], "2.50kB");
    assert!(
        lines[1].ends_with("just now") || lines[1].ends_with("ago"),
        "{out}"
    );
    assert_eq!(&cols(lines[2])[..2], ["localhost:5000/team/app", "1.2"]);
    assert!(lines.iter().all(|l| l.len() <= 80), "{out}");
    // The ID shown resolves.
    let id = &busy[2];
    assert!(
        store(&dirs)
            .resolve(id)
            .unwrap()
            .id
            .starts_with(&format!("sha256:{id}"))
    );
}

#[test]
fn rm_is_refused_while_a_pod_uses_the_image() {
    let dirs = TestDirs::new();
    let path = dirs.tmp.path().join("r.tar");
    fs::write(&path, tar_of(&[E::File("f", b"f", 0o644)])).unwrap();
    ok(import(&dirs, &path, Some("app:1"), &[]));
    // Another image (its config differs), which the pod uses too.
    ok(import(&dirs, &path, Some("other"), &["--cmd", "other"]));
    let id = store(&dirs).resolve("app:1").unwrap().id;
    let other = store(&dirs).resolve("other").unwrap().id;
    let pod = dirs.run.join("pods/0b5c6a7e-uid");
    fs::create_dir_all(&pod).unwrap();
    fs::write(pod.join("images"), format!("{other}\n{id}\n")).unwrap();

    let err = fails(podsup(&["image", "rm", "app:1"], &dirs));
    assert!(err.contains("in use by pod 0b5c6a7e-uid"), "{err}");
    let err = fails(podsup(&["image", "rm", hex(&id)], &dirs));
    assert!(err.contains("in use by pod"), "{err}");
    assert!(store(&dirs).resolve("app:1").is_ok());

    fs::write(pod.join("images"), format!("{other}\n")).unwrap();
    let out = ok(podsup(&["image", "rm", "app:1"], &dirs));
    assert_eq!(
        out,
        format!("untagged: docker.io/library/app:1\ndeleted: {id}\n")
    );
    assert!(matches!(
        store(&dirs).resolve("app:1"),
        Err(ImageError::NotFound { .. })
    ));
    let err = fails(podsup(&["image", "rm", "app:1"], &dirs));
    assert!(err.contains(r#"image "app:1" not found"#), "{err}");
}

#[test]
fn names_are_normalised_like_containerd() {
    let dirs = TestDirs::new();
    let path = dirs.tmp.path().join("r.tar");
    fs::write(&path, tar_of(&[E::File("f", b"f", 0o644)])).unwrap();
    ok(import(&dirs, &path, Some("busybox"), &[]));
    ok(import(&dirs, &path, Some("foo/bar:1"), &[]));
    ok(import(&dirs, &path, Some("localhost:5000/x"), &[]));
    let s = store(&dirs);
    for (reference, want) in [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:latest", "docker.io/library/busybox:latest"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        (
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:latest",
        ),
        (
            "index.docker.io/library/busybox",
            "docker.io/library/busybox:latest",
        ),
        ("foo/bar:1", "docker.io/foo/bar:1"),
        ("docker.io/foo/bar:1", "docker.io/foo/bar:1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("localhost:5000/x:latest", "localhost:5000/x:latest"),
    ] {
        assert_eq!(s.resolve(reference).unwrap().name, want, "{reference}");
    }
    for absent in ["busybox:1.36", "foo/bar", "localhost:5001/x", "docker.io/x"] {
        assert!(
            matches!(s.resolve(absent), Err(ImageError::NotFound { .. })),
            "{absent}"
        );
    }
    // By ID: full, without the prefix, and a short prefix.
    let id = s.resolve("busybox").unwrap().id;
    for r in [id.clone(), hex(&id).to_string(), hex(&id)[..12].to_string()] {
        assert_eq!(s.resolve(&r).unwrap().id, id, "{r}");
    }
    let err = fails(import(&dirs, &path, Some("Bad/Name"), &[]));
    assert!(
        err.contains(r#"invalid image name "Bad/Name": repository name must be lowercase"#),
        "{err}"
    );
    let err = fails(import(&dirs, &path, None, &[]));
    assert!(err.contains("give NAME[:TAG]"), "{err}");
}

#[test]
fn digest_references_resolve_to_the_manifest() {
    let dirs = TestDirs::new();
    let l = layer(&[E::File("f", b"f", 0o644)], Comp::None);
    let mut lay = Layout::default();
    let m = lay.image(host_arch(), &[&l], json!({}));
    let manifest = m["digest"].as_str().unwrap().to_string();
    let lay = lay.finish(vec![m]);
    let src = dirs.tmp.path().join("layout");
    lay.write_dir(&src);
    ok(import(&dirs, &src, Some("ghcr.io/org/app:v1"), &[]));
    let s = store(&dirs);
    let img = s.resolve(&format!("ghcr.io/org/app@{manifest}")).unwrap();
    assert_eq!(img.name, format!("ghcr.io/org/app@{manifest}"));
    assert_eq!(img.id, s.resolve("ghcr.io/org/app:v1").unwrap().id);
    let other = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        s.resolve(&format!("ghcr.io/org/app@{other}")),
        Err(ImageError::NotFound { .. })
    ));
}

#[test]
fn interrupted_imports_are_cleaned_and_concurrent_imports_are_safe() {
    let dirs = TestDirs::new();
    // What a crash mid-import leaves: a temp dir under the store.
    let s = store(&dirs);
    let leftover = dirs.root.join("images/tmp/import-999999/layer-1/fs/bin");
    fs::create_dir_all(&leftover).unwrap();
    fs::write(leftover.join("half"), "x").unwrap();

    let base = tar_of(&[
        E::Dir("bin", 0o755),
        E::File("bin/big", &vec![1u8; 1 << 20], 0o755),
    ]);
    let path = dirs.tmp.path().join("base.tar.gz");
    fs::write(&path, gzip(&base)).unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = common::podsup();
            cmd.args([
                "image",
                "import",
                path.to_str().unwrap(),
                &format!("app:{i}"),
            ])
            .arg("--root")
            .arg(&dirs.root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for c in children {
        ok(c.wait_with_output().unwrap());
    }
    assert_eq!(entries(&dirs.root.join("images/tmp")), Vec::<String>::new());
    assert_eq!(entries(&dirs.root.join("images/layers")).len(), 1);
    let list = s.list().unwrap();
    assert_eq!(list.len(), 4);
    for i in 0..4 {
        let img = s.resolve(&format!("app:{i}")).unwrap();
        assert_eq!(
            fs::metadata(img.layers[0].join("bin/big")).unwrap().len(),
            1 << 20
        );
    }
}

#[test]
fn garbage_input_is_refused_with_a_clear_message() {
    let dirs = TestDirs::new();
    let path = dirs.tmp.path().join("notatar.bin");
    fs::write(&path, vec![0x42u8; 2000]).unwrap();
    let err = fails(import(&dirs, &path, Some("x"), &[]));
    assert!(err.contains("not a directory, tar archive"), "{err}");
    let missing: PathBuf = dirs.tmp.path().join("missing");
    let err = fails(import(&dirs, &missing, Some("x"), &[]));
    assert!(err.contains("No such file"), "{err}");
    assert_store_empty(&dirs);
}

#[test]
fn compressed_image_archives_are_read() {
    let dirs = TestDirs::new();
    let l = layer(&[E::File("hello", b"hi", 0o644)], Comp::Gzip);
    let mut lay = Layout::default();
    let mut m = lay.image(host_arch(), &[&l], json!({"Cmd": ["/hello"]}));
    m["annotations"] = json!({"io.containerd.image.name": "docker.io/acme/zipped:1"});
    let lay = lay.finish(vec![m]);
    let path = dirs.tmp.path().join("oci.tar.gz");
    fs::write(&path, gzip(&archive(&lay.files))).unwrap();
    let out = ok(import(&dirs, &path, None, &[]));
    assert!(out.contains("imported docker.io/acme/zipped:1 "), "{out}");
    assert_eq!(entries(&dirs.root.join("images/tmp")), Vec::<String>::new());
}

#[test]
fn reimporting_a_name_replaces_the_unused_image() {
    let dirs = TestDirs::new();
    let path = dirs.tmp.path().join("r.tar");
    fs::write(&path, tar_of(&[E::File("v", b"1", 0o644)])).unwrap();
    ok(import(&dirs, &path, Some("app"), &[]));
    let first = store(&dirs).resolve("app").unwrap();
    // A pod uses the first image: the re-import keeps it, without a name.
    let pod = dirs.run.join("pods/uid-1");
    fs::create_dir_all(&pod).unwrap();
    fs::write(pod.join("images"), format!("{}\n", first.id)).unwrap();
    fs::write(&path, tar_of(&[E::File("v", b"2", 0o644)])).unwrap();
    let out = ok(import(&dirs, &path, Some("app"), &[]));
    assert!(!out.contains("deleted"), "{out}");
    assert!(first.layers[0].is_dir(), "the pod's layers stay");
    let ls = ok(podsup(&["image", "ls"], &dirs));
    assert!(ls.lines().any(|l| l.starts_with("<none>")), "{ls}");
    // Once the pod is gone, the next re-import of the name deletes the image it replaces.
    fs::remove_dir_all(&pod).unwrap();
    let second = store(&dirs).resolve("app").unwrap();
    fs::write(&path, tar_of(&[E::File("v", b"3", 0o644)])).unwrap();
    let out = ok(import(&dirs, &path, Some("app"), &[]));
    assert!(out.contains(&format!("deleted: {}", second.id)), "{out}");
    assert!(!second.layers[0].exists());
    // The nameless first image is removed by ID.
    let out = ok(podsup(&["image", "rm", &first.id], &dirs));
    assert_eq!(out, format!("deleted: {}\n", first.id));
    assert_eq!(store(&dirs).list().unwrap().len(), 1);
    assert_eq!(entries(&dirs.root.join("images/layers")).len(), 1);
}

#[test]
fn xattrs_are_kept() {
    if !common::require_root("xattrs_are_kept") {
        return;
    }
    let dirs = TestDirs::new();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.trusted.podsup", &b"yes"[..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(2);
    b.append_data(&mut h, "ping", &b"#!"[..]).unwrap();
    let path = dirs.tmp.path().join("x.tar");
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    ok(import(&dirs, &path, Some("xattr"), &[]));
    let img = store(&dirs).resolve("xattr").unwrap();
    let mut buf = [0u8; 16];
    let n = rustix::fs::lgetxattr(img.layers[0].join("ping"), "trusted.podsup", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"yes");

    // And a directory import writes them into its tar.
    let rootfs = dirs.tmp.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    fs::write(rootfs.join("f"), "f").unwrap();
    rustix::fs::lsetxattr(
        rootfs.join("f"),
        "trusted.podsup",
        b"dir",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    ok(import(&dirs, &rootfs, Some("xattr-dir"), &[]));
    let img = store(&dirs).resolve("xattr-dir").unwrap();
    let n = rustix::fs::lgetxattr(img.layers[0].join("f"), "trusted.podsup", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"dir");
}

#[test]
fn import_docker_save_archive_of_docker_25() {
    // Docker 25+ writes an OCI layout plus the old manifest.json and repositories.
    let dirs = TestDirs::new();
    let l = layer(&[E::File("new", b"n", 0o644)], Comp::None);
    let mut lay = Layout::default();
    let mut m = lay.image(host_arch(), &[&l], json!({"Cmd": ["/new"]}));
    m["annotations"] = json!({
        "io.containerd.image.name": "docker.io/library/newapp:2",
        "org.opencontainers.image.ref.name": "2",
    });
    let config_digest = lay.files[0].0.clone();
    let mut lay = lay.finish(vec![m]);
    lay.files.push((
        "manifest.json".into(),
        serde_json::to_vec(&json!([{
            "Config": config_digest,
            "RepoTags": ["newapp:2"],
            "Layers": [format!("blobs/sha256/{}", hex(&sha(&l.blob)))],
        }]))
        .unwrap(),
    ));
    lay.files.push(("repositories".into(), br#"{}"#.to_vec()));
    let path = dirs.tmp.path().join("saved25.tar");
    fs::write(&path, archive(&lay.files)).unwrap();
    let out = ok(import(&dirs, &path, None, &[]));
    assert!(
        out.contains("imported docker.io/library/newapp:2 "),
        "{out}"
    );
    let img = store(&dirs).resolve("newapp:2").unwrap();
    assert_eq!(
        img.id,
        format!("sha256:{}", config_digest.rsplit('/').next().unwrap())
    );
    assert_eq!(img.config.cmd, vec!["/new"]);
}

/// Runs a fixture tool; panics with its stderr on failure.
fn run_tool(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Interop with images the usual tools write. Optional: skips without `umoci` and `skopeo`
/// (Debian packages umoci, skopeo); the fixtures above cover the formats without them.
#[test]
fn import_images_made_by_umoci_and_skopeo() {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("umoci") && have("skopeo")) {
        eprintln!("skipped import_images_made_by_umoci_and_skopeo: needs umoci and skopeo");
        return;
    }
    if !common::require_root("import_images_made_by_umoci_and_skopeo") {
        return;
    }
    let dirs = TestDirs::new();
    let t = dirs.tmp.path();
    run_tool(t, &["umoci", "init", "--layout", "img"]);
    run_tool(t, &["umoci", "new", "--image", "img:v1"]);
    run_tool(t, &["umoci", "unpack", "--image", "img:v1", "b1"]);
    common::busybox_rootfs(&t.join("b1/rootfs"));
    fs::write(t.join("b1/rootfs/etc/remove-me"), "x").unwrap();
    run_tool(t, &["umoci", "repack", "--image", "img:v1", "b1"]);
    run_tool(
        t,
        &[
            "umoci",
            "config",
            "--image",
            "img:v1",
            "--config.cmd",
            "/bin/sh",
            "--config.env",
            "FOO=bar",
        ],
    );
    run_tool(t, &["umoci", "unpack", "--image", "img:v1", "b2"]);
    fs::remove_file(t.join("b2/rootfs/etc/remove-me")).unwrap();
    run_tool(t, &["umoci", "repack", "--image", "img:v1", "b2"]);
    run_tool(
        t,
        &[
            "skopeo",
            "copy",
            "-q",
            "oci:img:v1",
            "docker-archive:ds.tar:podsup/umoci:v1",
        ],
    );
    run_tool(
        t,
        &[
            "skopeo",
            "copy",
            "-q",
            "oci:img:v1",
            "oci-archive:oa.tar:v1",
        ],
    );
    run_tool(
        t,
        &[
            "skopeo",
            "copy",
            "-q",
            "--dest-compress",
            "--dest-compress-format",
            "zstd",
            "oci:img:v1",
            "oci:imgz:v1",
        ],
    );

    let mut ids = Vec::new();
    for (src, name) in [
        ("img", Some("umoci:dir")),
        ("oa.tar", Some("umoci:archive")),
        ("imgz", Some("umoci:zstd")),
        ("ds.tar", None),
    ] {
        ok(import(&dirs, &t.join(src), name, &[]));
        let img = store(&dirs)
            .resolve(name.unwrap_or("podsup/umoci:v1"))
            .unwrap();
        assert_eq!(img.config.cmd, vec!["/bin/sh"], "{src}");
        assert!(img.config.env.contains(&"FOO=bar".to_string()), "{src}");
        assert!(img.layers[0].join("bin/busybox").is_file(), "{src}");
        let wh = fs::symlink_metadata(img.layers.last().unwrap().join("etc/remove-me")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "{src}: whiteout"
        );
        ids.push(img.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one image whatever the transport");
    // Every transport has the same two diff-ids (zstd changes only the blobs).
    assert_eq!(entries(&dirs.root.join("images/layers")).len(), 2);
}
