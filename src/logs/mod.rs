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
//!
//! How the shim uses it (one writer per container instance; `buf` is the shim's own fixed
//! buffer, the pipes are non-blocking):
//! ```text
//! let mut w = LogWriter::new(&container_log_dir(..), restart_count, settings, SystemTime::now());
//! on POLLIN of stdout: n = read(fd, &mut buf)  →  w.write(Stream::Stdout, &buf[..n], now)
//! on EOF of a pipe:                               w.close_stream(stream, now)
//! w.stats() → dropped lines/bytes, last error, for status and events
//! ```
//! And `podsup logs` (or the daemon serving it):
//! ```text
//! let n = compute_instance(&list_instances(&dir)?, previous).ok_or(..)?;
//! let mut r = LogReader::open(&dir, n, ReadOptions { tail, since, timestamps })?;
//! r.read_available(&mut stdout)?;            // everything asked for
//! loop { wait (inotify/timer); r.read_available(&mut stdout)?; }   // -f
//! ```

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

/// Parses a `--since` duration in Go's syntax, as kubectl takes it: `30s`, `10m`, `1h30m`,
/// `1.5h`, `250ms` (units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`).
pub fn parse_since(text: &str) -> Result<std::time::Duration, LogError> {
    let bad = || LogError::Settings(format!("invalid duration {text:?} (like 30s, 10m, 1h30m)"));
    let mut rest = text.as_bytes();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == b"0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix(b".") {
            Some(a) => {
                let n = a.iter().take_while(|b| b.is_ascii_digit()).count();
                a.split_at(n)
            }
            None => (&after[..0], after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .iter()
            .take_while(|b| !b.is_ascii_digit() && **b != b'.')
            .count();
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            b"ns" => 1,
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000, // us, µs (micro sign), μs (mu)
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let digits = |d: &[u8]| {
            d.iter().try_fold(0u128, |a, c| {
                a.checked_mul(10)?.checked_add(u128::from(c - b'0'))
            })
        };
        let whole = digits(int).ok_or_else(bad)?;
        total = whole
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        // Fractions: at most 18 digits matter at nanosecond scale.
        let frac = &frac[..frac.len().min(18)];
        if !frac.is_empty() {
            let f = digits(frac).ok_or_else(bad)?;
            total += f * scale / 10u128.pow(frac.len() as u32);
        }
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
    Ok(std::time::Duration::new(
        secs,
        (total % 1_000_000_000) as u32,
    ))
}

#[cfg(test)]
mod tests;
