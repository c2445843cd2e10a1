//! `podsup validate PATH...`: load manifests exactly as the daemon would and report every error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliResult, Failure, out};
use crate::manifest::{self, Diagnostic};
use crate::model::PodKey;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files, or directories of them
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Print nothing for valid files
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> CliResult {
    let mut files = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            match manifest::scan_dir(path) {
                Ok(found) if found.is_empty() => errors.push(format!(
                    "{}: no manifest files (.yaml, .yml, .json) in this directory",
                    path.display()
                )),
                Ok(found) => files.extend(found),
                Err(e) => errors.push(format!("{}: cannot read directory: {e}", path.display())),
            }
        } else {
            files.push(path.clone());
        }
    }

    let mut report = String::new();
    let mut loaded = Vec::new();
    for file in &files {
        match manifest::load_file_located(file) {
            Ok(pods) => loaded.push((file.display().to_string(), pods)),
            Err(e) => errors.extend(e.diagnostics.iter().map(ToString::to_string)),
        }
    }
    // The first file (in the order given, directories sorted by name) that declares a pod wins.
    let keys: Vec<(String, Vec<PodKey>)> = loaded
        .iter()
        .map(|(f, pods)| (f.clone(), pods.iter().map(|l| l.pod.key()).collect()))
        .collect();
    let (_, dups) = manifest::files::compute_owners(&keys);
    for (file, pods) in &loaded {
        let mut names = Vec::new();
        for l in pods {
            let key = l.pod.key();
            match dups.iter().find(|d| d.key == key && d.file == *file) {
                Some(d) => errors.push(
                    Diagnostic {
                        file: file.clone(),
                        pos: l.pos,
                        path: "metadata.name".into(),
                        message: format!("pod {key} is already declared in {}, which wins (the first file by name)", d.winner),
                    }
                    .to_string(),
                ),
                None => names.push(key.to_string()),
            }
        }
        if !args.quiet && !names.is_empty() {
            let _ = writeln!(report, "{file}: ok ({})", names.join(", "));
        }
    }
    out(&report)?;
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::User(errors.join("\n")))
    }
}
