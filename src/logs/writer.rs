//! The shim's side: container output → CRI lines in rotated files.
//!
//! Must never stop the pod and never grow without bound: it holds at most one partial line
//! (≤ [`MAX_LINE`]) per stream and one batch of encoded entries (≤ 32 KiB), written with one
//! `write(2)` per call; a failed write (full disk, EIO) drops those lines, counts them and
//! carries on; a file that cannot be opened is retried at most once per [`RETRY_OPEN`]. It
//! writes synchronously to a regular file, as conmon does: no thread, no queue. Every method
//! takes `now` (the wall-clock time the caller read once per batch) for timestamps, rotation
//! names and retries.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::format::{ENTRY_OVERHEAD, MAX_LINE, Stream, Tag, append_entry};
use super::reader::{list_files, parse_file_name};
use super::{LogError, log_file_path};
use crate::model::time::format_rfc3339_nano;

/// Kubernetes' `containerLogMaxSize` default.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Kubernetes' `containerLogMaxFiles` default.
pub const DEFAULT_MAX_FILES: usize = 5;
/// How often a log file that cannot be opened (or rotated) is tried again.
pub const RETRY_OPEN: Duration = Duration::from_secs(1);
/// Entries are gathered up to this many bytes and written with one `write(2)`: a read of
/// short lines costs one system call, not one per line.
const BATCH: usize = 32 * 1024;

/// Rotation settings (daemon flags): a container instance's current file is rotated before
/// it would grow past `max_size`; at most `max_files` files (current + rotated) are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub max_size: u64,
    pub max_files: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

impl LogSettings {
    /// The kubelet requires at least 2 files (the current one and one rotated); a size below
    /// one full line would rotate at every line.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.max_files < 2 {
            return Err(LogError::Settings(format!(
                "max files must be at least 2, not {}",
                self.max_files
            )));
        }
        let min = (MAX_LINE + 64) as u64;
        if self.max_size < min {
            return Err(LogError::Settings(format!(
                "max size must be at least {min} bytes, not {}",
                self.max_size
            )));
        }
        Ok(())
    }
}

/// Counters the shim can publish (and tests check).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub lines_written: u64,
    pub bytes_written: u64,
    /// Lines (entries) lost to write or open errors.
    pub lines_dropped: u64,
    pub bytes_dropped: u64,
    pub rotations: u64,
    /// The last error, as text (`write /var/log/…/0.log: No space left on device`).
    pub last_error: Option<String>,
}

/// Writes one container instance's stdout and stderr to `<dir>/<restartCount>.log`.
pub struct LogWriter {
    dir: PathBuf,
    path: PathBuf,
    restart_count: u32,
    settings: LogSettings,
    file: Option<File>,
    /// Bytes in the current file: where the next entry starts.
    size: u64,
    /// No open/rotate attempt before this time (after a failure).
    retry_at: Option<SystemTime>,
    partial: [Vec<u8>; 2],
    /// Encoded entries not yet written (≤ BATCH bytes), and how many.
    batch: Vec<u8>,
    batch_lines: u64,
    /// The formatted timestamp of `stamp_of`, reused for every entry of a batch.
    stamp: String,
    stamp_of: Option<SystemTime>,
    stats: LogStats,
}

impl LogWriter {
    /// A writer for instance `restart_count` of the container whose log directory is `dir`.
    /// It creates the directory and file on first use and removes the files of instances
    /// older than the previous one (`--previous` needs only that). It never fails: a problem
    /// shows in [`LogWriter::stats`] and is retried.
    pub fn new(dir: &Path, restart_count: u32, settings: LogSettings, now: SystemTime) -> Self {
        let mut w = LogWriter {
            dir: dir.to_owned(),
            path: log_file_path(dir, restart_count),
            restart_count,
            settings,
            file: None,
            size: 0,
            retry_at: None,
            partial: [Vec::new(), Vec::new()],
            batch: Vec::new(),
            batch_lines: 0,
            stamp: String::new(),
            stamp_of: None,
            stats: LogStats::default(),
        };
        w.prune_old_instances();
        w.open(now);
        w
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes bytes read from a container's pipe. Complete lines are written at once; an
    /// unfinished line waits (up to [`MAX_LINE`]) for its end, for [`LogWriter::flush`] or
    /// for [`LogWriter::close_stream`].
    pub fn write(&mut self, stream: Stream, mut data: &[u8], now: SystemTime) {
        let s = stream.index();
        while !data.is_empty() {
            let nl = data.iter().position(|b| *b == b'\n');
            let mut seg = &data[..nl.unwrap_or(data.len())];
            data = match nl {
                Some(i) => &data[i + 1..],
                None => &[],
            };
            if nl.is_some() && self.partial[s].is_empty() && seg.len() <= MAX_LINE {
                // The common case: a whole line in one read, no copy.
                self.emit(stream, Tag::Full, seg, now);
                continue;
            }
            // Fill the partial buffer; a full buffer becomes a P entry only when more bytes
            // of the same line follow, so a line of exactly MAX_LINE stays one F entry.
            if self.partial[s].capacity() < MAX_LINE {
                // Exactly one line's worth, never the doubling growth of a Vec.
                let len = self.partial[s].len();
                self.partial[s].reserve_exact(MAX_LINE - len);
            }
            loop {
                let room = MAX_LINE - self.partial[s].len();
                if seg.len() <= room {
                    self.partial[s].extend_from_slice(seg);
                    break;
                }
                if room == 0 {
                    self.emit_partial(stream, Tag::Partial, now);
                    continue;
                }
                self.partial[s].extend_from_slice(&seg[..room]);
                seg = &seg[room..];
            }
            if nl.is_some() {
                self.emit_partial(stream, Tag::Full, now);
            }
        }
        self.write_batch(now);
    }

    /// Writes an unfinished line as a `P` entry now (its end will follow as `F`). For callers
    /// that want a prompt without a newline to show up, e.g. after a quiet second.
    pub fn flush(&mut self, stream: Stream, now: SystemTime) {
        if !self.partial[stream.index()].is_empty() {
            self.emit_partial(stream, Tag::Partial, now);
        }
        self.write_batch(now);
    }

    /// The stream ended (EOF on its pipe): an unfinished last line is written as `P`, as
    /// containerd does, so that readers show it without inventing a newline.
    pub fn close_stream(&mut self, stream: Stream, now: SystemTime) {
        self.flush(stream, now);
    }

    /// Both streams ended (the container exited): see [`LogWriter::close_stream`].
    pub fn close(&mut self, now: SystemTime) {
        self.close_stream(Stream::Stdout, now);
        self.close_stream(Stream::Stderr, now);
    }

    fn emit_partial(&mut self, stream: Stream, tag: Tag, now: SystemTime) {
        let buf = std::mem::take(&mut self.partial[stream.index()]);
        self.emit(stream, tag, &buf, now);
        self.partial[stream.index()] = buf;
        self.partial[stream.index()].clear();
    }

    fn emit(&mut self, stream: Stream, tag: Tag, content: &[u8], now: SystemTime) {
        if self.stamp_of != Some(now) {
            self.stamp = format_rfc3339_nano(now);
            self.stamp_of = Some(now);
        }
        let len = (ENTRY_OVERHEAD - 30 + self.stamp.len() + content.len()) as u64;
        let pending = self.size + self.batch.len() as u64;
        if self.file.is_some() && pending > 0 && pending + len > self.settings.max_size {
            self.write_batch(now);
            self.rotate(now);
        }
        if self.batch.len() as u64 + len > BATCH as u64 {
            self.write_batch(now);
        }
        if self.batch.capacity() < BATCH {
            self.batch.reserve_exact(BATCH - self.batch.len());
        }
        append_entry(&mut self.batch, self.stamp.as_bytes(), stream, tag, content);
        self.batch_lines += 1;
    }

    /// Writes the gathered entries; on failure they are dropped and counted.
    fn write_batch(&mut self, now: SystemTime) {
        if self.batch.is_empty() {
            return;
        }
        let (len, lines) = (self.batch.len() as u64, self.batch_lines);
        self.batch_lines = 0;
        if self.file.is_none() {
            self.open(now);
        }
        let Some(file) = self.file.as_mut() else {
            self.drop_entries(lines, len);
            self.batch.clear();
            return;
        };
        match write_whole(file, &self.batch) {
            Ok(()) => {
                self.size += len;
                self.stats.lines_written += lines;
                self.stats.bytes_written += len;
            }
            Err(err) => {
                // Undo a torn write so the next line does not glue onto half of this one.
                let _ = file.set_len(self.size);
                let transient = matches!(err.raw_os_error(), Some(ENOSPC | EDQUOT));
                self.stats.last_error = Some(format!("write {}: {err}", self.path.display()));
                if !transient {
                    // EIO, EBADF, a vanished file system: reopen later.
                    self.file = None;
                    self.retry_at = Some(now + RETRY_OPEN);
                }
                self.drop_entries(lines, len);
            }
        }
        self.batch.clear();
    }

    fn drop_entries(&mut self, lines: u64, len: u64) {
        self.stats.lines_dropped += lines;
        self.stats.bytes_dropped += len;
    }

    fn may_retry(&self, now: SystemTime) -> bool {
        // A clock that went backwards must not postpone the retry for that long.
        self.retry_at
            .is_none_or(|at| now >= at || at > now + RETRY_OPEN)
    }

    fn open(&mut self, now: SystemTime) {
        if !self.may_retry(now) {
            return;
        }
        let opened = fs::create_dir_all(&self.dir).and_then(|()| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640) // std opens with O_CLOEXEC: containers never inherit it
                .open(&self.path)
        });
        match opened.and_then(|f| f.metadata().map(|m| (f, m.len()))) {
            Ok((f, len)) => {
                self.file = Some(f);
                self.size = len;
                self.retry_at = None;
            }
            Err(err) => {
                self.stats.last_error = Some(format!("open {}: {err}", self.path.display()));
                self.file = None;
                self.retry_at = Some(now + RETRY_OPEN);
            }
        }
    }

    /// `N.log` → `N.log.<YYYYMMDD-hhmmss>` (the kubelet's name; `.1`, `.2`… on a collision in
    /// the same second), then a fresh `N.log`, then the oldest rotated files go.
    fn rotate(&mut self, now: SystemTime) {
        if !self.may_retry(now) {
            return;
        }
        let stamp = rotation_stamp(now);
        // A second rotation within the same second gets the next sequence number, one above
        // any part of that second still there (the oldest may be pruned already).
        let seq = list_files(&self.dir, self.restart_count)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f.rotation_order())
            .filter(|(s, _)| *s == stamp)
            .map(|(_, q)| q + 1)
            .max()
            .unwrap_or(0);
        let target = match seq {
            0 => self.dir.join(format!("{}.log.{stamp}", self.restart_count)),
            q => self
                .dir
                .join(format!("{}.log.{stamp}.{q}", self.restart_count)),
        };
        if let Err(err) = fs::rename(&self.path, &target) {
            // Keep writing to the big file rather than lose lines; try again later.
            self.stats.last_error = Some(format!("rotate {}: {err}", self.path.display()));
            self.retry_at = Some(now + RETRY_OPEN);
            return;
        }
        self.stats.rotations += 1;
        self.file = None;
        self.size = 0;
        self.open(now);
        self.prune_rotated();
    }

    /// Keeps the newest `max_files - 1` rotated files of this instance.
    fn prune_rotated(&mut self) {
        let Ok(files) = list_files(&self.dir, self.restart_count) else {
            return;
        };
        let rotated: Vec<_> = files.iter().filter(|f| f.rotated).collect();
        let keep = self.settings.max_files.saturating_sub(1);
        if rotated.len() > keep {
            for f in &rotated[..rotated.len() - keep] {
                let _ = fs::remove_file(&f.path);
            }
        }
    }

    /// Removes the files of instances before the previous one.
    fn prune_old_instances(&mut self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for de in rd.flatten() {
            let name = de.file_name();
            if let Some((n, _)) = name.to_str().and_then(parse_file_name)
                && n.saturating_add(1) < self.restart_count
            {
                let _ = fs::remove_file(de.path());
            }
        }
    }
}

const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

fn write_whole(file: &mut File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `20261125-023001` in UTC: Go's `20060102-150405`, the kubelet's rotation suffix.
pub(crate) fn rotation_stamp(t: SystemTime) -> String {
    let text = crate::model::time::format_rfc3339(t); // 2026-11-25T02:30:01Z
    let b = text.as_bytes();
    let pick = |r: std::ops::Range<usize>| &text[r];
    if b.len() != 20 {
        // Years beyond 9999 do not happen on a device; keep a valid name anyway.
        return text.replace([':', '-'], "");
    }
    format!(
        "{}{}{}-{}{}{}",
        pick(0..4),
        pick(5..7),
        pick(8..10),
        pick(11..13),
        pick(14..16),
        pick(17..19)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn memory_stays_bounded_whatever_the_output() {
        let tmp = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), now);
        let chunk = [b'q'; 8192];
        for i in 0..200 {
            // 1.6 MiB without a newline on stdout, short lines on stderr
            w.write(Stream::Stdout, &chunk[..(i % 7 + 1) * 1000], now);
            w.write(Stream::Stderr, b"tick\n", now);
        }
        w.write(Stream::Stdout, b"\n", now);
        for p in &w.partial {
            assert!(p.capacity() <= MAX_LINE, "{}", p.capacity());
        }
        assert!(w.batch.capacity() <= BATCH, "{}", w.batch.capacity());
        assert_eq!(w.stats().lines_dropped, 0);
    }
}
