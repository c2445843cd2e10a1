//! Container logs in the CRI format, as the kubelet and `kubectl logs` know them.
//!
//! Owns the files under `<log-dir>/<namespace>_<pod>_<uid>/<container>/`: writing them for
//! the shim ([`LogWriter`]), rotating and pruning them, and reading them for `podsup logs`
//! ([`LogReader`]). It does not own the pipes: the shim reads each container's stdout and
//! stderr into its own fixed buffer and hands the bytes over, and it decides when a stream
//! ended. The line format itself ([`format`]) is pure.
//!
//! Layout (DESIGN.md "Paths"): one directory per container, one file per container instance,
//! named by the container's restartCount:
//! ```text
//! /var/log/pods/default_web_3f2a…/app/0.log
//! /var/log/pods/default_web_3f2a…/app/1.log                   current file of instance 1
//! /var/log/pods/default_web_3f2a…/app/1.log.20261125-023001   rotated part, oldest first
//! ```
//! Line format: `2016-10-06T00:17:09.669794202Z stdout F text` (`P` for a fragment of a
//! longer line). See docs/logs.md.

pub mod format;
mod reader;
mod writer;

use std::path::{Path, PathBuf};

pub use format::{Entry, FormatError, MAX_LINE, Stream, Tag};
pub use reader::{LogFile, LogReader, ReadOptions, compute_instance, list_files, list_instances};
pub use writer::{LogSettings, LogStats, LogWriter};

/// Errors of the reader and of settings; the writer never fails (it counts what it drops).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("list log directory {path}: {err}")]
    List {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("open log file {path}: {err}")]
    Open {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    #[error("read log file {path}: {err}")]
    Read {
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
    /// Writing to the caller's output failed (a closed pipe after `podsup logs | head` is
    /// this too: the CLI treats `BrokenPipe` as a normal end).
    #[error("write logs: {0}")]
    Output(#[source] std::io::Error),
    #[error("log settings: {0}")]
    Settings(String),
}

/// `<log-dir>/<namespace>_<pod>_<uid>`: the kubelet's pod log directory.
pub fn pod_log_dir(log_dir: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    log_dir.join(format!("{namespace}_{pod}_{uid}"))
}

/// `<log-dir>/<namespace>_<pod>_<uid>/<container>`.
pub fn container_log_dir(
    log_dir: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
) -> PathBuf {
    pod_log_dir(log_dir, namespace, pod, uid).join(container)
}

/// `<container-dir>/<restartCount>.log`: the current file of one container instance.
pub fn log_file_path(container_dir: &Path, restart_count: u32) -> PathBuf {
    container_dir.join(format!("{restart_count}.log"))
}

#[cfg(test)]
mod tests;
