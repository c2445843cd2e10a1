//! One CRI log line: `<RFC 3339 nano time> <stdout|stderr> <P|F> <content>\n`.
//!
//! Pure: building and parsing lines, nothing else. The kubelet's reader
//! (`pkg/kubelet/kuberuntime/logs/logs.go`) and containerd's writer
//! (`internal/cri/io/logger.go`) define the format; this re-derives it.

use std::time::SystemTime;

use crate::model::time::{format_rfc3339_nano, parse_rfc3339};

/// The longest content of one line; longer lines are split into `P` fragments and a final
/// `F`, as the kubelet's runtimes do (16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// `F`: the content ends a line. `P`: the line continues in the next entry of this stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Partial,
    Full,
}

impl Tag {
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Partial => "P",
            Tag::Full => "F",
        }
    }
}

/// A parsed line (without its `\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub stream: Stream,
    pub tag: Tag,
    pub content: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("log line: no timestamp")]
    NoTimestamp,
    #[error("log line: bad timestamp {0:?}")]
    BadTimestamp(String),
    #[error("log line: bad stream {0:?}")]
    BadStream(String),
    #[error("log line: bad tag {0:?}")]
    BadTag(String),
}

/// Writes one entry, newline included, into `out` (cleared first).
pub fn encode_entry(out: &mut Vec<u8>, time: SystemTime, stream: Stream, tag: Tag, content: &[u8]) {
    out.clear();
    append_entry(
        out,
        format_rfc3339_nano(time).as_bytes(),
        stream,
        tag,
        content,
    );
}

/// The bytes an entry takes besides its content, with a 30-byte timestamp.
pub(crate) const ENTRY_OVERHEAD: usize = 30 + 1 + 6 + 1 + 1 + 1 + 1;

/// Appends one entry with an already formatted timestamp (the writer formats it once per
/// batch of lines read at the same time).
pub(crate) fn append_entry(
    out: &mut Vec<u8>,
    time: &[u8],
    stream: Stream,
    tag: Tag,
    content: &[u8],
) {
    out.extend_from_slice(time);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

fn split_space(b: &[u8]) -> (&[u8], Option<&[u8]>) {
    match b.iter().position(|c| *c == b' ') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    }
}

/// Parses one line (with or without its trailing `\n`). Tags may carry extra `:`-separated
/// fields after `P`/`F` (the CRI allows it); they are ignored.
pub fn parse_entry(line: &[u8]) -> Result<Entry<'_>, FormatError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (ts, rest) = split_space(line);
    let rest = rest.ok_or(FormatError::NoTimestamp)?;
    let bad_ts = || FormatError::BadTimestamp(String::from_utf8_lossy(ts).into_owned());
    let time = std::str::from_utf8(ts)
        .ok()
        .and_then(parse_rfc3339)
        .ok_or_else(bad_ts)?;
    let (stream, rest) = split_space(rest);
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(FormatError::BadStream(
                String::from_utf8_lossy(other).into(),
            ));
        }
    };
    let (tag, content) = split_space(rest.unwrap_or_default());
    let tag = match tag.split(|c| *c == b':').next().unwrap_or_default() {
        b"F" => Tag::Full,
        b"P" => Tag::Partial,
        _ => return Err(FormatError::BadTag(String::from_utf8_lossy(tag).into())),
    };
    Ok(Entry {
        time,
        stream,
        tag,
        content: content.unwrap_or_default(),
    })
}

/// The tag of a line from its first bytes only (the tail scan reads files backwards and sees
/// only the start of each line): `None` if they do not look like a CRI line.
pub(crate) fn peek_tag(head: &[u8]) -> Option<Tag> {
    let (_, rest) = split_space(head);
    let (_, rest) = split_space(rest?);
    match rest?.first()? {
        b'F' => Some(Tag::Full),
        b'P' => Some(Tag::Partial),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202)
    }

    #[test]
    fn encode_table() {
        let cases: &[(Stream, Tag, &[u8], &str)] = &[
            (
                Stream::Stdout,
                Tag::Full,
                b"hello",
                "2016-10-06T00:17:09.669794202Z stdout F hello\n",
            ),
            (
                Stream::Stderr,
                Tag::Partial,
                b"part",
                "2016-10-06T00:17:09.669794202Z stderr P part\n",
            ),
            (
                Stream::Stdout,
                Tag::Full,
                b"",
                "2016-10-06T00:17:09.669794202Z stdout F \n",
            ),
            (
                Stream::Stdout,
                Tag::Full,
                b"a b  c\r",
                "2016-10-06T00:17:09.669794202Z stdout F a b  c\r\n",
            ),
        ];
        let mut buf = Vec::new();
        for (stream, tag, content, want) in cases {
            encode_entry(&mut buf, t(), *stream, *tag, content);
            assert_eq!(String::from_utf8_lossy(&buf), *want);
            let e = parse_entry(&buf).unwrap();
            assert_eq!(
                (e.time, e.stream, e.tag, e.content),
                (t(), *stream, *tag, *content)
            );
            assert_eq!(peek_tag(&buf), Some(*tag));
        }
    }

    #[test]
    fn parse_table() {
        let ok: &[(&[u8], Stream, Tag, &[u8])] = &[
            (
                b"2016-10-06T00:17:09.669794202Z stdout F hi",
                Stream::Stdout,
                Tag::Full,
                b"hi",
            ),
            // containerd trims trailing zeros of the fraction
            (
                b"2016-10-06T00:17:09.6697942Z stderr P hi there",
                Stream::Stderr,
                Tag::Partial,
                b"hi there",
            ),
            (
                b"2016-10-06T00:17:09Z stdout F:x extra",
                Stream::Stdout,
                Tag::Full,
                b"extra",
            ),
            (
                b"2016-10-06T00:17:09Z stdout F",
                Stream::Stdout,
                Tag::Full,
                b"",
            ),
            (
                b"2016-10-06T02:17:09+02:00 stdout F x\n",
                Stream::Stdout,
                Tag::Full,
                b"x",
            ),
        ];
        for (line, stream, tag, content) in ok {
            let e = parse_entry(line).unwrap();
            assert_eq!((e.stream, e.tag, e.content), (*stream, *tag, *content));
        }
        let bad: &[(&[u8], FormatError)] = &[
            (b"garbage", FormatError::NoTimestamp),
            (
                b"2016-10-06 stdout F x",
                FormatError::BadTimestamp("2016-10-06".into()),
            ),
            (
                b"2016-10-06T00:17:09Z stdin F x",
                FormatError::BadStream("stdin".into()),
            ),
            (
                b"2016-10-06T00:17:09Z stdout X x",
                FormatError::BadTag("X".into()),
            ),
            (
                b"2016-10-06T00:17:09Z stdout",
                FormatError::BadTag("".into()),
            ),
        ];
        for (line, err) in bad {
            assert_eq!(
                parse_entry(line).unwrap_err(),
                *err,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(peek_tag(b"2016-10-06T00:17:09Z stdout"), None);
    }
}
