//! The reading side, for `podsup logs`: which files make up a container instance's log, where
//! `--tail N` starts (found by reading backwards, across rotated files), and a reader that
//! prints entries as `kubectl logs` does and can be polled again for what is new (`-f`),
//! following rotations.
//!
//! Memory stays bounded whatever the files hold: blocks of [`BLOCK`] bytes, and at most
//! [`MAX_PENDING`] bytes of an unfinished entry.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::format::{Tag, parse_entry, peek_tag};
use super::{LogError, log_file_path};
use crate::model::time::format_rfc3339_nano;

const BLOCK: usize = 64 * 1024;
/// An entry longer than this (not written by podsup: a line is at most 16 KiB) is skipped.
const MAX_PENDING: usize = 1024 * 1024;
/// Enough of an entry's start to see its tag: a 35-byte timestamp, a stream, a tag.
const HEAD: usize = 64;

/// One file of a container instance's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    pub restart_count: u32,
    /// A rotated part (`N.log.<stamp>`), not the current `N.log`.
    pub rotated: bool,
    /// Sort key of a rotated part: (stamp, sequence on a same-second collision).
    order: (String, u32),
}

impl LogFile {
    /// (stamp, sequence) of a rotated part.
    pub(crate) fn rotation_order(&self) -> Option<(&str, u32)> {
        self.rotated
            .then_some((self.order.0.as_str(), self.order.1))
    }
}

/// `N.log` → (N, None); `N.log.<stamp>[.seq]` → (N, Some((stamp, seq))); anything else (a
/// compressed `.gz` left by other tools, temp files) → None.
pub(crate) fn parse_file_name(name: &str) -> Option<(u32, Option<(String, u32)>)> {
    let (n, rest) = name.split_once(".log")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = n.parse().ok()?;
    if rest.is_empty() {
        return Some((n, None));
    }
    let rest = rest.strip_prefix('.')?;
    let (stamp, seq) = match rest.split_once('.') {
        Some((stamp, seq)) => (stamp, seq.parse().ok()?),
        None => (rest, 0),
    };
    let ok = stamp.len() == 15
        && stamp.bytes().enumerate().all(|(i, b)| {
            if i == 8 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    ok.then(|| (n, Some((stamp.to_owned(), seq))))
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, LogError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(LogError::List {
                path: dir.to_owned(),
                err,
            });
        }
    };
    Ok(rd
        .flatten()
        .filter_map(|de| de.file_name().into_string().ok())
        .collect())
}

/// The files of instance `restart_count`, oldest first: rotated parts, then `N.log` if it
/// exists. A missing directory is an empty list.
pub fn list_files(container_dir: &Path, restart_count: u32) -> Result<Vec<LogFile>, LogError> {
    let mut files: Vec<LogFile> = Vec::new();
    let mut current = None;
    for name in read_dir_names(container_dir)? {
        match parse_file_name(&name) {
            Some((n, None)) if n == restart_count => current = Some(container_dir.join(&name)),
            Some((n, Some(order))) if n == restart_count => files.push(LogFile {
                path: container_dir.join(&name),
                restart_count,
                rotated: true,
                order,
            }),
            _ => {}
        }
    }
    files.sort_by(|a, b| a.order.cmp(&b.order));
    if let Some(path) = current {
        files.push(LogFile {
            path,
            restart_count,
            rotated: false,
            order: (String::new(), 0),
        });
    }
    Ok(files)
}

/// The restart counts that have log files, ascending.
pub fn list_instances(container_dir: &Path) -> Result<Vec<u32>, LogError> {
    let mut v: Vec<u32> = read_dir_names(container_dir)?
        .iter()
        .filter_map(|n| parse_file_name(n).map(|(n, _)| n))
        .collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Which instance `podsup logs` shows: the newest, or with `--previous` the one before it.
pub fn compute_instance(instances: &[u32], previous: bool) -> Option<u32> {
    let mut it = instances.iter().rev();
    let last = it.next()?;
    if previous {
        it.next().copied()
    } else {
        Some(*last)
    }
}

/// What `podsup logs` asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N lines (`--tail N`); a line split into P/F entries counts once.
    pub tail: Option<usize>,
    /// Only lines stamped at or after this time (`--since D` → now − D, computed by the CLI).
    pub since: Option<SystemTime>,
    /// Print each line's time first (`--timestamps`), RFC 3339 with 9 digits, as kubectl.
    pub timestamps: bool,
}

type FileId = (u64, u64);

fn file_id(m: &fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

struct Current {
    file: File,
    id: FileId,
    path: PathBuf,
}

/// Reads one container instance's log and prints it; call [`LogReader::read_available`]
/// again (from a poll loop, on a timer or an inotify event) to follow it.
pub struct LogReader {
    dir: PathBuf,
    restart_count: u32,
    opts: ReadOptions,
    cur: Option<Current>,
    pending: Vec<u8>,
    /// Dropping an over-long entry until its newline.
    discarding: bool,
    /// Per stream: inside a line whose P entries were seen; and whether that line is shown.
    mid_line: [bool; 2],
    show: [bool; 2],
    skipped: u64,
    block: Vec<u8>,
}

impl LogReader {
    /// Positions a reader on instance `restart_count` of the container whose log directory is
    /// `container_dir`, at the start of the last `opts.tail` lines (or of everything).
    pub fn open(
        container_dir: &Path,
        restart_count: u32,
        opts: ReadOptions,
    ) -> Result<LogReader, LogError> {
        let mut r = LogReader {
            dir: container_dir.to_owned(),
            restart_count,
            opts,
            cur: None,
            pending: Vec::new(),
            discarding: false,
            mid_line: [false; 2],
            show: [true; 2],
            skipped: 0,
            block: vec![0; BLOCK],
        };
        let files = list_files(container_dir, restart_count)?;
        if files.is_empty() {
            return Ok(r);
        }
        let (mut idx, mut offset) = match r.opts.tail {
            Some(n) => find_tail_start(&files, n)?,
            None => (0, 0),
        };
        if let Some(since) = r.opts.since {
            // Skip whole rotated parts whose last line is older than --since.
            let first = skip_older_parts(&files, since)?;
            if first > idx {
                (idx, offset) = (first, 0);
            }
        }
        r.open_file(&files[idx].path, offset)?;
        Ok(r)
    }

    /// The container instance this reader follows.
    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }

    /// Entries that could not be parsed and were skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn open_file(&mut self, path: &Path, offset: u64) -> Result<(), LogError> {
        let open_err = |err| LogError::Open {
            path: path.to_owned(),
            err,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let id = file_id(&file.metadata().map_err(open_err)?);
        file.seek(SeekFrom::Start(offset)).map_err(open_err)?;
        self.pending.clear();
        self.discarding = false;
        self.cur = Some(Current {
            file,
            id,
            path: path.to_owned(),
        });
        Ok(())
    }

    /// Prints every complete entry written since the last call, moving on to newer files when
    /// the current one was rotated. Returns how many entries were printed. An entry still
    /// being written (no newline yet) waits for the next call.
    pub fn read_available(&mut self, out: &mut dyn Write) -> Result<u64, LogError> {
        let live = log_file_path(&self.dir, self.restart_count);
        let mut printed = 0;
        loop {
            // Look at the live file's identity before draining: whatever was written to our
            // file before a rotation is then read before we move on.
            let live_id = fs::metadata(&live).ok().map(|m| file_id(&m));
            let Some(cur_id) = self.cur.as_ref().map(|c| c.id) else {
                let files = list_files(&self.dir, self.restart_count)?;
                match files.first() {
                    Some(f) => {
                        let path = f.path.clone();
                        self.open_file(&path, 0)?;
                        continue;
                    }
                    None => return Ok(printed),
                }
            };
            printed += self.drain(out)?;
            if live_id == Some(cur_id) {
                return Ok(printed);
            }
            // Our file is a rotated part (or gone): continue with the next newer file.
            let files = list_files(&self.dir, self.restart_count)?;
            let next = match self.find_in(&files, cur_id) {
                Some(i) => files.get(i + 1),
                // Deleted by retention: everything still there is newer.
                None => files.first(),
            };
            match next {
                Some(f) => {
                    let path = f.path.clone();
                    self.open_file(&path, 0)?;
                }
                None => return Ok(printed),
            }
        }
    }

    fn find_in(&self, files: &[LogFile], id: FileId) -> Option<usize> {
        files.iter().position(|f| {
            fs::metadata(&f.path)
                .map(|m| file_id(&m) == id)
                .unwrap_or(false)
        })
    }

    fn drain(&mut self, out: &mut dyn Write) -> Result<u64, LogError> {
        let mut printed = 0;
        loop {
            let cur = self.cur.as_mut().expect("drain with an open file");
            let n = match cur.file.read(&mut self.block) {
                Ok(0) => return Ok(printed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    return Err(LogError::Read {
                        path: cur.path.clone(),
                        err,
                    });
                }
            };
            let block = std::mem::take(&mut self.block);
            let mut data = &block[..n];
            let result = (|| {
                while let Some(p) = data.iter().position(|b| *b == b'\n') {
                    let (line, rest) = (&data[..p], &data[p + 1..]);
                    data = rest;
                    if self.discarding {
                        self.discarding = false;
                        self.pending.clear();
                        continue;
                    }
                    if self.pending.is_empty() {
                        printed += self.print(line, out)?;
                    } else {
                        let mut whole = std::mem::take(&mut self.pending);
                        whole.extend_from_slice(line);
                        printed += self.print(&whole, out)?;
                        whole.clear();
                        self.pending = whole;
                    }
                }
                if !self.discarding {
                    self.pending.extend_from_slice(data);
                    if self.pending.len() > MAX_PENDING {
                        self.pending.clear();
                        self.discarding = true;
                        self.skipped += 1;
                    }
                }
                Ok(())
            })();
            self.block = block;
            result?;
        }
    }

    fn print(&mut self, line: &[u8], out: &mut dyn Write) -> Result<u64, LogError> {
        let Ok(e) = parse_entry(line) else {
            self.skipped += 1;
            return Ok(0);
        };
        let s = e.stream.index();
        // A line split into P entries is shown or hidden as a whole, by its first entry.
        let starts_line = !self.mid_line[s];
        if starts_line {
            self.show[s] = self.opts.since.is_none_or(|t| e.time >= t);
        }
        self.mid_line[s] = e.tag == Tag::Partial;
        if !self.show[s] {
            return Ok(0);
        }
        let w = |out: &mut dyn Write, b: &[u8]| out.write_all(b).map_err(LogError::Output);
        if self.opts.timestamps && starts_line {
            w(out, format_rfc3339_nano(e.time).as_bytes())?;
            w(out, b" ")?;
        }
        w(out, e.content)?;
        if e.tag == Tag::Full {
            w(out, b"\n")?;
        }
        Ok(1)
    }
}

/// The index of the first file that may hold a line at or after `since`: rotated parts
/// whose last entry is older are skipped (the current file never is).
pub(super) fn skip_older_parts(files: &[LogFile], since: SystemTime) -> Result<usize, LogError> {
    for (idx, f) in files.iter().enumerate() {
        if !f.rotated {
            return Ok(idx);
        }
        let read_err = |err| LogError::Read {
            path: f.path.clone(),
            err,
        };
        let file = File::open(&f.path).map_err(|err| LogError::Open {
            path: f.path.clone(),
            err,
        })?;
        let len = file.metadata().map_err(read_err)?.len();
        let lo = len.saturating_sub(BLOCK as u64);
        let mut buf = vec![0u8; (len - lo) as usize];
        file.read_exact_at(&mut buf, lo).map_err(read_err)?;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let last = match body.iter().rposition(|b| *b == b'\n') {
            Some(p) => &body[p + 1..],
            None if lo == 0 => body,
            None => return Ok(idx), // an entry longer than a block: not ours, read it
        };
        match parse_entry(last) {
            Ok(e) if e.time < since => continue,
            _ => return Ok(idx),
        }
    }
    Ok(files.len().saturating_sub(1))
}

/// Where the last `n` lines of these files (oldest first) start: (file index, offset).
fn find_tail_start(files: &[LogFile], n: usize) -> Result<(usize, u64), LogError> {
    let mut scan = TailScan {
        need: n,
        found: 0,
        newest_entry: true,
    };
    for (idx, f) in files.iter().enumerate().rev() {
        let file = File::open(&f.path).map_err(|err| LogError::Open {
            path: f.path.clone(),
            err,
        })?;
        let read_err = |err| LogError::Read {
            path: f.path.clone(),
            err,
        };
        let len = file.metadata().map_err(read_err)?.len();
        if n == 0 {
            return Ok((idx, len));
        }
        if let Some(off) = scan.scan(&file, len).map_err(read_err)? {
            return Ok((idx, off));
        }
    }
    Ok((0, 0))
}

struct TailScan {
    need: usize,
    found: usize,
    /// The next entry seen is the last one of the newest file: a trailing P there is a line
    /// still being written, and counts as one.
    newest_entry: bool,
}

impl TailScan {
    /// Visits the entry that starts at `start` (its first bytes are `head`), whose successor
    /// starts at `next`. Returns the start offset once `need` lines lie after it.
    fn visit(&mut self, head: &[u8], next: u64) -> Option<u64> {
        let tag = peek_tag(head);
        let ends_line = tag == Some(Tag::Full) || (self.newest_entry && tag == Some(Tag::Partial));
        self.newest_entry = false;
        if ends_line {
            if self.found == self.need {
                return Some(next);
            }
            self.found += 1;
        }
        None
    }

    /// Scans one file backwards in blocks. Bytes after its last newline (an entry being
    /// written) are ignored.
    fn scan(&mut self, file: &File, len: u64) -> io::Result<Option<u64>> {
        let mut hi = len;
        let mut after: Vec<u8> = Vec::new();
        let mut next: Option<u64> = None; // start of the entry after the one being visited
        let mut block = vec![0u8; BLOCK];
        while hi > 0 {
            let lo = hi.saturating_sub(BLOCK as u64);
            let buf = &mut block[..(hi - lo) as usize];
            file.read_exact_at(buf, lo)?;
            let mut end = buf.len();
            while let Some(p) = buf[..end].iter().rposition(|b| *b == b'\n') {
                end = p;
                let start = lo + p as u64 + 1;
                if let Some(nx) = next {
                    let mut head = buf[p + 1..].iter().take(HEAD).copied().collect::<Vec<u8>>();
                    head.extend(after.iter().take(HEAD.saturating_sub(head.len())));
                    if let Some(off) = self.visit(&head, nx) {
                        return Ok(Some(off));
                    }
                }
                next = Some(start);
            }
            after = buf[..buf.len().min(HEAD)].to_vec();
            hi = lo;
        }
        // The first entry of the file, at offset 0.
        if let Some(nx) = next
            && nx > 0
            && let Some(off) = self.visit(&after, nx)
        {
            return Ok(Some(off));
        }
        Ok(None)
    }
}
