//! The OCI and Docker image formats podsup reads: index, manifest, config, and the
//! `manifest.json` of a `docker save` archive, plus the choice of one manifest from an index.
//!
//! Pure: serde types and selection logic, no I/O. Only the fields podsup uses are modelled;
//! the config blob is kept as JSON so that unknown fields survive a `--env`/`--cmd` change.

use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `index.json` of a layout, or an image index / Docker manifest list blob.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Descriptor {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// The name a layout gives this manifest: containerd's full name annotation, else the
    /// OCI `ref.name` (often just a tag).
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get("io.containerd.image.name")
            .or_else(|| self.annotations.get("org.opencontainers.image.ref.name"))
            .map(String::as_str)
    }
}

/// The parts of an image config podsup reads. The config blob itself is kept verbatim.
#[derive(Debug, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The `config` object of an image config (Docker's capitalised names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

impl RunConfig {
    pub fn to_image_config(&self) -> super::ImageConfig {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        super::ImageConfig {
            env: self.env.clone().unwrap_or_default(),
            entrypoint: self.entrypoint.clone().unwrap_or_default(),
            cmd: self.cmd.clone().unwrap_or_default(),
            working_dir: nonempty(&self.working_dir),
            user: nonempty(&self.user),
            stop_signal: nonempty(&self.stop_signal),
        }
    }
}

/// One entry of a `docker save` archive's `manifest.json`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerSaveEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// True for a layer media type podsup can unpack (plain, gzip or zstd tar; OCI or Docker).
pub fn is_layer_type(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
    )
}

/// The host's platform in OCI words (GOARCH names): `amd64`, `arm64`, `arm` + `v7`...
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "riscv64" => ("riscv64", None),
        "s390x" => ("s390x", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.into(),
        os: "linux".into(),
        variant: variant.map(Into::into),
    }
}

/// Picks the entries of an index that run on `host`: os linux and the same architecture;
/// among several, the one whose variant matches (arm64's `v8` is the same as none).
/// Entries without a platform are candidates only when no entry has one (a single-image
/// layout). Returns the indices of the best candidates, in index order.
pub fn compute_platform_candidates(manifests: &[Descriptor], host: &Platform) -> Vec<usize> {
    if manifests.iter().all(|m| m.platform.is_none()) {
        return (0..manifests.len()).collect();
    }
    let norm = |p: &Platform| -> Option<String> {
        match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", Some("v8")) | (_, Some("")) | (_, None) => None,
            (_, Some(v)) => Some(v.to_string()),
        }
    };
    let matching: Vec<usize> = manifests
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
        })
        .map(|(i, _)| i)
        .collect();
    let exact: Vec<usize> = matching
        .iter()
        .copied()
        .filter(|&i| {
            norm(
                manifests[i]
                    .platform
                    .as_ref()
                    .unwrap_or(&Platform::default()),
            ) == norm(host)
        })
        .collect();
    if exact.is_empty() { matching } else { exact }
}

/// `os/arch[/variant]` for messages.
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{}", p.os, p.architecture, v),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(platform: Option<(&str, &str, Option<&str>)>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: "sha256:x".into(),
            size: 1,
            platform: platform.map(|(os, arch, variant)| Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            annotations: Default::default(),
        }
    }

    fn plat(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn picks_the_host_platform() {
        let multi = vec![
            desc(Some(("linux", "amd64", None))),
            desc(Some(("linux", "arm64", Some("v8")))),
            desc(Some(("linux", "arm", Some("v6")))),
            desc(Some(("linux", "arm", Some("v7")))),
            desc(Some(("windows", "amd64", None))),
            desc(Some(("unknown", "unknown", None))),
        ];
        let table: &[(&[Descriptor], Platform, &[usize])] = &[
            (&multi, plat("amd64", None), &[0]),
            (&multi, plat("arm64", None), &[1]),
            (&multi, plat("arm", Some("v7")), &[3]),
            (&multi, plat("arm", Some("v5")), &[2, 3]),
            (&multi, plat("riscv64", None), &[]),
            (&[desc(None)], plat("amd64", None), &[0]),
            (&[desc(None), desc(None)], plat("amd64", None), &[0, 1]),
            (
                &[desc(None), desc(Some(("linux", "arm64", None)))],
                plat("amd64", None),
                &[],
            ),
        ];
        for (i, (manifests, host, want)) in table.iter().enumerate() {
            assert_eq!(
                compute_platform_candidates(manifests, host),
                *want,
                "case {i}"
            );
        }
    }

    #[test]
    fn run_config_maps_empty_strings_to_none() {
        let rc: RunConfig = serde_json::from_str(
            r#"{"Env":["A=1"],"Cmd":["sh"],"WorkingDir":"","User":"1000","StopSignal":"SIGQUIT"}"#,
        )
        .unwrap();
        let c = rc.to_image_config();
        assert_eq!(c.env, vec!["A=1"]);
        assert_eq!(c.cmd, vec!["sh"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    }
}
