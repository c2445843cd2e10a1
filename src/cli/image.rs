//! `podsup image import | ls | rm`: thin wrappers over [`crate::image::Store`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::image::{self, ConfigChanges, ImageError, ImportOptions, Progress, Store};

use super::{CliResult, Failure, out};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Import an image from a file or directory (no network needed)
    ///
    /// SOURCE is one of:
    ///   - a root filesystem directory, or a tarball of one (.tar, .tar.gz, .tar.zst);
    ///   - an OCI image layout, as a directory or a tar (a multi-arch index gives the image
    ///     for this machine's architecture);
    ///   - a `docker save` archive.
    ///
    /// Tarballs and archives may be gzip- or zstd-compressed.
    ///
    /// NAME[:TAG] is normalised as Docker and containerd do (`busybox` means
    /// `docker.io/library/busybox:latest`). It is required for a root filesystem and
    /// replaces the names an archive carries. Digests and layers are verified; layers the
    /// store already has are not unpacked again. Root is needed for whiteouts and ownership.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
          podsup image import ./rootfs myapp:1.0 --cmd /bin/myapp --env MODE=prod\n  \
          podsup image import busybox.tar.zst busybox:1.36\n  \
          docker save nginx:1.27 | gzip > nginx.tar.gz; podsup image import nginx.tar.gz\n  \
          skopeo copy docker://alpine:3 oci:alpine:3; podsup image import alpine alpine:3"
    )]
    Import(Box<ImportArgs>),
    /// List images: NAME TAG ID SIZE CREATED
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove image names; an image goes with its last name (an ID removes all its names)
    ///
    /// Refused while a running pod uses the image. Layers that no other image shares are
    /// deleted.
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Directory for images and persistent state
    #[arg(long, value_name = "DIR", default_value = "/var/lib/podsup")]
    pub root: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Root filesystem directory or tarball, OCI layout (directory or tar), or docker save archive
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Name for the image (required for a root filesystem)
    #[arg(value_name = "NAME[:TAG]")]
    pub name: Option<String>,
    /// Set an environment variable in the image config (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Set the entrypoint: a JSON array ('["/bin/sh","-c"]') or words split on spaces
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Set the default command, in the same forms as --entrypoint
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,
    /// Set the working directory
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Set the user (`NAME`, `UID`, `UID:GID`)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Set the signal that stops the container (e.g. SIGQUIT)
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Directory of live state: an image that loses its last name to this import is
    /// deleted unless a running pod uses it
    #[arg(long, value_name = "DIR", default_value = "/run/podsup")]
    pub run: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print full image IDs
    #[arg(long)]
    pub no_trunc: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Image names or IDs
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Directory of live state (where running pods record the images they use)
    #[arg(long, value_name = "DIR", default_value = "/run/podsup")]
    pub run: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    match args.verb {
        Verb::Import(a) => import(*a),
        Verb::Ls(a) => ls(a),
        Verb::Rm(a) => rm(a),
    }
}

fn failure(err: ImageError) -> Failure {
    match err {
        ImageError::Store { .. } => Failure::Internal(err.into()),
        other => Failure::User(other.to_string()),
    }
}

fn parse_command(flag: &str, value: &str) -> Result<Vec<String>, Failure> {
    if value.trim_start().starts_with('[') {
        serde_json::from_str(value).map_err(|e| {
            Failure::User(format!(
                "--{flag} {value:?}: not a JSON array of strings: {e}"
            ))
        })
    } else {
        Ok(value.split_whitespace().map(str::to_string).collect())
    }
}

fn import(a: ImportArgs) -> CliResult {
    for kv in &a.env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(Failure::User(format!("--env {kv:?}: expected KEY=VALUE")));
        }
    }
    let changes = ConfigChanges {
        env: a.env.clone(),
        entrypoint: a
            .entrypoint
            .as_deref()
            .map(|v| parse_command("entrypoint", v))
            .transpose()?,
        cmd: a
            .cmd
            .as_deref()
            .map(|v| parse_command("cmd", v))
            .transpose()?,
        working_dir: a.workdir.clone(),
        user: a.user.clone(),
        stop_signal: a.stop_signal.clone(),
    };
    let store = Store::open(&a.store.root).map_err(failure)?;
    let opts = ImportOptions {
        name: a.name.clone(),
        changes,
        run: Some(a.run.clone()),
    };
    let tty = std::io::stderr().is_terminal();
    let mut shown = false;
    let mut progress = |p: Progress<'_>| {
        if !tty {
            return;
        }
        let line = match p {
            Progress::Waiting => "waiting for another import or rm to finish".to_string(),
            Progress::LayerPresent {
                index,
                count,
                digest,
            } => {
                let d = image::digest::short(digest);
                format!("layer {index}/{count} {d}: already present")
            }
            Progress::Layer {
                index,
                count,
                digest,
                done,
                total,
            } => {
                let of = total
                    .map(|t| format!(" / {}", format_size(t)))
                    .unwrap_or_default();
                let d = digest.map(|d| format!(" {}", image::digest::short(d)));
                let done = format_size(done);
                format!("layer {index}/{count}{}: {done}{of}", d.unwrap_or_default())
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        shown = true;
    };
    let res = store.import(&a.source, &opts, &mut progress);
    if shown {
        eprint!("\r\x1b[K");
    }
    let done = res.map_err(failure)?;
    let mut text = String::new();
    for name in &done.names {
        text.push_str(&format!(
            "imported {name} {} ({}, {} layer{}, {} new, {})\n",
            done.id,
            done.kind,
            done.layers,
            if done.layers == 1 { "" } else { "s" },
            done.new_layers,
            format_size(done.size)
        ));
    }
    for id in &done.replaced {
        text.push_str(&format!(
            "deleted: {id} (its last name went to the new image)\n"
        ));
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn ls(a: LsArgs) -> CliResult {
    let store = Store::open(&a.store.root).map_err(failure)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut rows = vec![["NAME", "TAG", "ID", "SIZE", "CREATED"].map(String::from)];
    for img in store.list().map_err(failure)? {
        let (name, tag) = match &img.reference {
            Some(r) => (
                r.repository(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
            ),
            None => ("<none>".into(), "<none>".into()),
        };
        let id = if a.no_trunc {
            img.id.clone()
        } else {
            image::digest::short(&img.id).to_string()
        };
        let created = img
            .created
            .map_or_else(|| "-".into(), |t| image::time::format_age(t, now));
        rows.push([name, tag, id, format_size(img.size), created]);
    }
    out(&format_table(&rows))?;
    Ok(ExitCode::SUCCESS)
}

fn rm(a: RmArgs) -> CliResult {
    let store = Store::open(&a.store.root).map_err(failure)?;
    let mut text = String::new();
    let mut errors = Vec::new();
    for name in &a.names {
        match store.remove(name, &a.run) {
            Ok(r) => {
                for u in r.untagged {
                    text.push_str(&format!("untagged: {u}\n"));
                }
                if let Some(d) = r.deleted {
                    text.push_str(&format!("deleted: {d}\n"));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    out(&text)?;
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::User(errors.join("\n")))
    }
}

/// Columns separated by three spaces, the last one unpadded.
fn format_table(rows: &[[String; 5]]) -> String {
    let mut widths = [0usize; 5];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// Docker's sizes: decimal units, three significant digits (`4.26MB`, `512B`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else if v < 10.0 {
        format!("{v:.2}{}", UNITS[u])
    } else if v < 100.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (n, want) in [
            (0, "0B"),
            (999, "999B"),
            (4_260_000, "4.26MB"),
            (12_345_678, "12.3MB"),
            (123_456_789, "123MB"),
        ] {
            assert_eq!(format_size(n), want);
        }
    }

    #[test]
    fn commands() {
        let table: &[(&str, &[&str])] = &[
            ("/bin/sh -c true", &["/bin/sh", "-c", "true"]),
            (
                r#"["/bin/sh","-c","echo a b"]"#,
                &["/bin/sh", "-c", "echo a b"],
            ),
        ];
        for (input, want) in table {
            assert_eq!(parse_command("cmd", input).ok().unwrap(), *want);
        }
        assert!(parse_command("cmd", "[1]").is_err());
    }

    #[test]
    fn table_fits() {
        let rows = vec![
            ["NAME", "TAG", "ID", "SIZE", "CREATED"].map(String::from),
            [
                "docker.io/library/busybox",
                "latest",
                "0123456789ab",
                "4.26MB",
                "2 weeks ago",
            ]
            .map(String::from),
        ];
        let t = format_table(&rows);
        assert_eq!(
            t,
            "NAME                        TAG      ID             SIZE     CREATED\n\
             docker.io/library/busybox   latest   0123456789ab   4.26MB   2 weeks ago\n"
        );
        assert!(t.lines().all(|l| l.len() <= 80));
    }
}
