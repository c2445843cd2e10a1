//! `podsup validate PATH...`: load manifests exactly as the daemon would and report every error.

use std::collections::BTreeMap;
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
    // The first file (in the order given, directories sorted by name) that declares a pod wins.
    let mut owners: BTreeMap<PodKey, String> = BTreeMap::new();
    for file in &files {
        match manifest::load_file_located(file) {
            Ok(pods) => {
                let mut names = Vec::new();
                for l in pods {
                    let key = l.pod.key();
                    if let Some(first) = owners.get(&key) {
                        let d = Diagnostic {
                            file: file.display().to_string(),
                            pos: l.pos,
                            path: "metadata.name".into(),
                            message: format!(
                                "pod {key} is already declared in {first}, which wins (the first file by name)"
                            ),
                        };
                        errors.push(d.to_string());
                    } else {
                        owners.insert(key.clone(), file.display().to_string());
                        names.push(key.to_string());
                    }
                }
                if !args.quiet && !names.is_empty() {
                    let _ = writeln!(report, "{}: ok ({})", file.display(), names.join(", "));
                }
            }
            Err(e) => errors.extend(e.diagnostics.iter().map(ToString::to_string)),
        }
    }
    out(&report)?;
    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::User(errors.join("\n")))
    }
}
