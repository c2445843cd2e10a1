//! Writer and reader against real files in a temp dir.

use super::format::parse_entry;
use super::reader::parse_file_name;
use super::writer::rotation_stamp;
use super::*;
use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000 + secs, 123_456_789)
}

/// (stream, tag, content) of every entry of a file.
fn entries(path: &std::path::Path) -> Vec<(Stream, Tag, String)> {
    let text = fs::read(path).unwrap();
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let e = parse_entry(l).unwrap();
            (
                e.stream,
                e.tag,
                String::from_utf8(e.content.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn read_all(dir: &std::path::Path, restart: u32, opts: ReadOptions) -> String {
    let mut r = LogReader::open(dir, restart, opts).unwrap();
    let mut out = Vec::new();
    r.read_available(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn small() -> LogSettings {
    LogSettings {
        max_size: 200,
        max_files: 3,
    }
}

use Stream::{Stderr, Stdout};
use Tag::{Full, Partial};

#[test]
fn writes_cri_lines_per_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = container_log_dir(tmp.path(), "default", "web", "u1", "app");
    assert!(dir.ends_with("default_web_u1/app"));
    let mut w = LogWriter::new(&dir, 0, LogSettings::default(), t(0));
    w.write(Stdout, b"one\ntw", t(1));
    w.write(Stderr, b"oops\n", t(1));
    w.write(Stdout, b"o\n\nthree\n", t(2));
    assert_eq!(w.path(), dir.join("0.log"));
    let text = fs::read_to_string(dir.join("0.log")).unwrap();
    assert_eq!(
        text,
        "2023-11-14T22:13:21.123456789Z stdout F one\n\
         2023-11-14T22:13:21.123456789Z stderr F oops\n\
         2023-11-14T22:13:22.123456789Z stdout F two\n\
         2023-11-14T22:13:22.123456789Z stdout F \n\
         2023-11-14T22:13:22.123456789Z stdout F three\n"
    );
    assert_eq!(w.stats().lines_written, 5);
    assert_eq!(w.stats().lines_dropped, 0);
}

#[test]
fn long_lines_split_into_partials() {
    let big = |n: usize| "x".repeat(n);
    // (writes, want entries)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Vec<String>, Vec<(Tag, usize)>)> = vec![
        (vec![format!("{}\n", big(MAX_LINE))], vec![(Full, MAX_LINE)]),
        (
            vec![format!("{}\n", big(MAX_LINE + 10))],
            vec![(Partial, MAX_LINE), (Full, 10)],
        ),
        (vec![big(MAX_LINE), "\n".into()], vec![(Full, MAX_LINE)]),
        (
            // 40 000 bytes in chunks of 1 000, then the newline
            (0..40)
                .map(|_| big(1000))
                .chain(["\n".to_string()])
                .collect(),
            vec![
                (Partial, MAX_LINE),
                (Partial, MAX_LINE),
                (Full, 40_000 - 2 * MAX_LINE),
            ],
        ),
        (
            vec![format!("{}\n{}\n", big(3 * MAX_LINE), big(5))],
            vec![
                (Partial, MAX_LINE),
                (Partial, MAX_LINE),
                (Full, MAX_LINE),
                (Full, 5),
            ],
        ),
    ];
    for (i, (writes, want)) in cases.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
        for chunk in &writes {
            w.write(Stdout, chunk.as_bytes(), t(1));
        }
        let got: Vec<(Tag, usize)> = entries(&tmp.path().join("0.log"))
            .into_iter()
            .map(|(_, tag, c)| (tag, c.len()))
            .collect();
        assert_eq!(got, want, "case {i}");
        // The reader gives back exactly what was written.
        let text = read_all(tmp.path(), 0, ReadOptions::default());
        assert_eq!(text, writes.concat(), "case {i}");
    }
}

#[test]
fn flush_and_eof_write_partials() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    w.write(Stdout, b"prompt> ", t(1));
    w.flush(Stdout, t(1));
    w.flush(Stdout, t(1)); // nothing pending: nothing written
    w.write(Stdout, b"yes\nlast", t(2));
    w.close_stream(Stdout, t(3));
    assert_eq!(
        entries(&tmp.path().join("0.log")),
        vec![
            (Stdout, Partial, "prompt> ".into()),
            (Stdout, Full, "yes".into()),
            (Stdout, Partial, "last".into()),
        ]
    );
    // The line keeps the time of its first fragment; the unfinished last line has no newline.
    let text = read_all(
        tmp.path(),
        0,
        ReadOptions {
            timestamps: true,
            ..Default::default()
        },
    );
    assert_eq!(
        text,
        "2023-11-14T22:13:21.123456789Z prompt> yes\n2023-11-14T22:13:23.123456789Z last"
    );
}

#[test]
fn interleaved_streams_reassemble_separately() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    w.write(Stdout, b"out-", t(1));
    w.flush(Stdout, t(1));
    w.write(Stderr, b"err\n", t(2));
    w.write(Stdout, b"line\n", t(3));
    let ts = ReadOptions {
        timestamps: true,
        ..Default::default()
    };
    // Like kubectl, fragments print where they are; the time prints once per line.
    assert_eq!(
        read_all(tmp.path(), 0, ts),
        "2023-11-14T22:13:21.123456789Z out-2023-11-14T22:13:22.123456789Z err\nline\n"
    );
}

#[test]
fn rotation_keeps_max_files_and_a_contiguous_suffix() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 2, small(), t(0));
    let lines: Vec<String> = (0..60).map(|i| format!("line {i:03}")).collect();
    for (i, l) in lines.iter().enumerate() {
        // two lines per second: rotations collide within a second now and then
        w.write(Stdout, format!("{l}\n").as_bytes(), t(i as u64 / 2));
    }
    let files = list_files(tmp.path(), 2).unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[..2].iter().all(|f| f.rotated) && !files[2].rotated);
    assert_eq!(files[2].path, tmp.path().join("2.log"));
    let mut kept = Vec::new();
    for f in &files {
        assert!(fs::metadata(&f.path).unwrap().len() <= 200, "{f:?}");
        kept.extend(entries(&f.path).into_iter().map(|(_, _, c)| c));
    }
    assert_eq!(kept, lines[lines.len() - kept.len()..].to_vec());
    assert!(w.stats().rotations > 10);
    assert_eq!(w.stats().lines_dropped, 0);
    // Everything the files hold, in order, across rotated parts.
    assert_eq!(
        read_all(tmp.path(), 2, ReadOptions::default()),
        kept.iter().map(|l| format!("{l}\n")).collect::<String>()
    );
}

#[test]
fn tail_across_rotated_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, small(), t(0));
    for i in 0..40 {
        w.write(Stdout, format!("l{i:02}\n").as_bytes(), t(i));
    }
    let all = read_all(tmp.path(), 0, ReadOptions::default());
    let all: Vec<&str> = all.lines().collect();
    assert!(all.len() > 8, "{all:?}"); // spread over the three files
    let want = |n: usize| {
        all[all.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    for n in [
        0,
        1,
        2,
        3,
        5,
        7,
        all.len() - 1,
        all.len(),
        all.len() + 5,
        1000,
    ] {
        let got = read_all(
            tmp.path(),
            0,
            ReadOptions {
                tail: Some(n),
                ..Default::default()
            },
        );
        assert_eq!(got, want(n), "tail {n}");
    }
}

#[test]
fn tail_counts_lines_not_fragments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    let long = "y".repeat(MAX_LINE * 2 + 3);
    w.write(Stdout, format!("a\n{long}\nb\nunfinished").as_bytes(), t(1));
    w.close_stream(Stdout, t(1));
    let tail = |n| {
        read_all(
            tmp.path(),
            0,
            ReadOptions {
                tail: Some(n),
                ..Default::default()
            },
        )
    };
    assert_eq!(tail(1), "unfinished");
    assert_eq!(tail(2), "b\nunfinished");
    assert_eq!(tail(3), format!("{long}\nb\nunfinished"));
    assert_eq!(tail(4), format!("a\n{long}\nb\nunfinished"));
    assert_eq!(tail(9), format!("a\n{long}\nb\nunfinished"));
}

#[test]
fn tail_ignores_an_entry_being_written_and_big_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    // more than a few 64 KiB blocks
    for i in 0..20_000 {
        w.write(Stderr, format!("entry number {i}\n").as_bytes(), t(i / 100));
    }
    drop(w);
    let path = tmp.path().join("0.log");
    let mut raw = fs::read(&path).unwrap();
    raw.extend_from_slice(b"2023-11-14T22:13:21.123456789Z stdout F half-writ");
    fs::write(&path, raw).unwrap();
    let opts = ReadOptions {
        tail: Some(3),
        ..Default::default()
    };
    assert_eq!(
        read_all(tmp.path(), 0, opts),
        "entry number 19997\nentry number 19998\nentry number 19999\n"
    );
    let opts = ReadOptions {
        tail: Some(15_000),
        ..Default::default()
    };
    let got = read_all(tmp.path(), 0, opts);
    assert_eq!(got.lines().count(), 15_000);
    assert!(got.starts_with("entry number 5000\n"));
}

#[test]
fn since_filters_by_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    for i in 0..10 {
        w.write(Stdout, format!("at {i}\n").as_bytes(), t(i));
    }
    let since = |s: u64, tail: Option<usize>| {
        read_all(
            tmp.path(),
            0,
            ReadOptions {
                since: Some(t(s)),
                tail,
                ..Default::default()
            },
        )
    };
    assert_eq!(since(7, None), "at 7\nat 8\nat 9\n");
    assert_eq!(since(0, None).lines().count(), 10);
    assert_eq!(since(100, None), "");
    // as the kubelet: tail first, then since
    assert_eq!(since(5, Some(2)), "at 8\nat 9\n");
    assert_eq!(since(8, Some(5)), "at 8\nat 9\n");
}

#[test]
fn previous_instance_and_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    for n in 0..4u32 {
        let mut w = LogWriter::new(tmp.path(), n, small(), t(u64::from(n)));
        w.write(Stdout, format!("run {n}\n").as_bytes(), t(u64::from(n)));
    }
    // Only the current instance and the one before it stay.
    let instances = list_instances(tmp.path()).unwrap();
    assert_eq!(instances, vec![2, 3]);
    assert_eq!(compute_instance(&instances, false), Some(3));
    assert_eq!(compute_instance(&instances, true), Some(2));
    assert_eq!(compute_instance(&[3], true), None);
    assert_eq!(compute_instance(&[], false), None);
    assert_eq!(read_all(tmp.path(), 2, ReadOptions::default()), "run 2\n");
    assert!(
        list_instances(&tmp.path().join("missing"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn full_disk_drops_lines_and_keeps_going() {
    let tmp = tempfile::tempdir().unwrap();
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    std::os::unix::fs::symlink("/dev/full", tmp.path().join("0.log")).unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    for i in 0..1000 {
        w.write(Stdout, format!("line {i}\n").as_bytes(), t(1));
    }
    w.write(Stdout, &vec![b'z'; 100_000], t(2));
    let st = w.stats().clone();
    assert_eq!(st.lines_written, 0);
    assert_eq!(st.lines_dropped, 1000 + 6);
    assert!(st.bytes_dropped > 100_000);
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("No space left on device"),
        "{st:?}"
    );
}

#[test]
fn unopenable_file_is_retried_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    fs::write(&dir, b"in the way").unwrap(); // a file where the directory must go
    let mut w = LogWriter::new(&dir, 0, LogSettings::default(), t(0));
    w.write(Stdout, b"lost\n", t(0));
    assert_eq!(w.stats().lines_dropped, 1);
    assert!(
        w.stats()
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("open ")
    );
    fs::remove_file(&dir).unwrap();
    w.write(Stdout, b"also lost: retry not due yet\n", t(0));
    assert_eq!(w.stats().lines_dropped, 2);
    w.write(Stdout, b"kept\n", t(2));
    assert_eq!(w.stats().lines_written, 1);
    assert_eq!(read_all(&dir, 0, ReadOptions::default()), "kept\n");
}

#[test]
fn follow_reads_only_new_entries_across_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = LogReader::open(tmp.path(), 0, ReadOptions::default()).unwrap();
    let mut out = Vec::new();
    assert_eq!(r.read_available(&mut out).unwrap(), 0); // nothing yet

    let mut w = LogWriter::new(tmp.path(), 0, small(), t(0));
    let mut want = String::new();
    let mut n = 0;
    let mut batch = |w: &mut LogWriter, count: usize, want: &mut String| {
        for _ in 0..count {
            let l = format!("f{n:03}\n");
            w.write(Stdout, l.as_bytes(), t(n));
            want.push_str(&l);
            n += 1;
        }
    };
    batch(&mut w, 3, &mut want);
    r.read_available(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), want);
    // Two rotations between polls (3 files kept): nothing is lost.
    batch(&mut w, 8, &mut want);
    assert!(w.stats().rotations >= 2);
    r.read_available(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), want);
    // Polling again without news prints nothing.
    assert_eq!(r.read_available(&mut out).unwrap(), 0);
    // An entry being written shows once it is complete.
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join("0.log"))
        .unwrap();
    f.write_all(b"2023-11-14T22:13:21.123456789Z stdout F hal")
        .unwrap();
    assert_eq!(r.read_available(&mut out).unwrap(), 0);
    f.write_all(b"f\n").unwrap();
    want.push_str("half\n");
    r.read_available(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), want);
}

#[test]
fn follow_after_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
    w.write(Stdout, b"a\nb\nc\n", t(0));
    let mut r = LogReader::open(
        tmp.path(),
        0,
        ReadOptions {
            tail: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let mut out = Vec::new();
    r.read_available(&mut out).unwrap();
    w.write(Stdout, b"d\n", t(1));
    r.read_available(&mut out).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "c\nd\n");
}

#[test]
fn garbage_lines_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("0.log"),
        "not a log line\n2023-11-14T22:13:21Z stdout F ok\n\n",
    )
    .unwrap();
    let mut r = LogReader::open(tmp.path(), 0, ReadOptions::default()).unwrap();
    let mut out = Vec::new();
    assert_eq!(r.read_available(&mut out).unwrap(), 1);
    assert_eq!(out, b"ok\n");
    assert_eq!(r.skipped(), 2);
}

#[test]
#[allow(clippy::type_complexity)]
fn file_names() {
    let cases: &[(&str, Option<(u32, Option<(&str, u32)>)>)] = &[
        ("0.log", Some((0, None))),
        ("12.log", Some((12, None))),
        (
            "3.log.20261125-023001",
            Some((3, Some(("20261125-023001", 0)))),
        ),
        (
            "3.log.20261125-023001.2",
            Some((3, Some(("20261125-023001", 2)))),
        ),
        ("3.log.20261125-023001.gz", None),
        ("3.log.tmp", None),
        ("x.log", None),
        (".log", None),
        ("3.logs", None),
    ];
    for (name, want) in cases {
        let want = want.map(|(n, r)| (n, r.map(|(s, q)| (s.to_string(), q))));
        assert_eq!(parse_file_name(name), want, "{name}");
    }
    assert_eq!(rotation_stamp(t(0)), "20231114-221320");
}

#[test]
fn settings_validation() {
    assert!(LogSettings::default().validate().is_ok());
    assert!(small().validate().is_err());
    assert!(
        LogSettings {
            max_files: 1,
            ..Default::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn rotations_within_one_second_keep_their_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, small(), t(0));
    for i in 0..40 {
        w.write(Stdout, format!("same second {i:02}\n").as_bytes(), t(0));
    }
    let files = list_files(tmp.path(), 0).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names[0].starts_with("0.log.20231114-221320."), "{names:?}");
    assert!(names[1].starts_with("0.log.20231114-221320."), "{names:?}");
    let all = read_all(tmp.path(), 0, ReadOptions::default());
    let nums: Vec<u32> = all
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(nums.windows(2).all(|p| p[1] == p[0] + 1), "{nums:?}");
    assert_eq!(*nums.last().unwrap(), 39);
}

#[test]
fn since_durations() {
    let ok: &[(&str, Duration)] = &[
        ("0", Duration::ZERO),
        ("30s", Duration::from_secs(30)),
        ("10m", Duration::from_secs(600)),
        ("1h30m", Duration::from_secs(5400)),
        ("1.5h", Duration::from_secs(5400)),
        (".5s", Duration::from_millis(500)),
        ("250ms", Duration::from_millis(250)),
        ("3us", Duration::from_micros(3)),
        ("3µs", Duration::from_micros(3)),
        ("7ns", Duration::from_nanos(7)),
        ("2h45m10.5s", Duration::from_millis(9_910_500)),
    ];
    for (text, want) in ok {
        assert_eq!(parse_since(text).unwrap(), *want, "{text}");
    }
    for bad in [
        "",
        "10",
        "-5m",
        "5 m",
        "1d",
        "m",
        ".s",
        "1.2.3s",
        "99999999999999999999999h",
    ] {
        assert!(parse_since(bad).is_err(), "{bad}");
    }
}

#[test]
fn since_across_rotated_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = LogWriter::new(tmp.path(), 0, small(), t(0));
    for i in 0..40 {
        w.write(Stdout, format!("s{i:02}\n").as_bytes(), t(i));
    }
    assert!(list_files(tmp.path(), 0).unwrap().len() == 3);
    let all = read_all(tmp.path(), 0, ReadOptions::default());
    let first: u64 = all[1..3].parse().unwrap();
    let files = list_files(tmp.path(), 0).unwrap();
    let skip = |from| super::reader::skip_older_parts(&files, t(from)).unwrap();
    assert_eq!((skip(0), skip(first), skip(39), skip(100)), (0, 0, 2, 2));
    for from in [0, first, first + 1, first + 5, 36, 39, 40] {
        let want: String = (from.max(first)..40)
            .map(|i| format!("s{i:02}\n"))
            .collect();
        let got = read_all(
            tmp.path(),
            0,
            ReadOptions {
                since: Some(t(from)),
                ..Default::default()
            },
        );
        assert_eq!(got, want, "since {from}");
        let tail2 = read_all(
            tmp.path(),
            0,
            ReadOptions {
                since: Some(t(from)),
                tail: Some(2),
                ..Default::default()
            },
        );
        let want2: String = (from.max(38)..40).map(|i| format!("s{i:02}\n")).collect();
        assert_eq!(tail2, want2, "since {from} tail 2");
    }
}

/// Random line lengths (empty to 3 × MAX_LINE), random read sizes, random flushes: the
/// reader gives back exactly the bytes written, for each stream.
#[test]
fn random_round_trip() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for round in 0..4 {
        let mut input = Vec::new();
        while input.len() < 400_000 {
            let len = match rnd(4) {
                0 => 0,
                1 => rnd(100),
                2 => rnd(MAX_LINE as u64 + 2),
                _ => rnd(3 * MAX_LINE as u64),
            };
            input.extend((0..len).map(|i| b'a' + ((i + round) % 26) as u8));
            input.push(b'\n');
        }
        if round % 2 == 1 {
            input.extend_from_slice(b"no newline at the end");
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut w = LogWriter::new(tmp.path(), 0, LogSettings::default(), t(0));
        let mut rest = &input[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = (rnd(70_000) as usize + 1).min(rest.len());
            w.write(Stdout, &rest[..n], t(i));
            if rnd(10) == 0 {
                w.flush(Stdout, t(i));
            }
            rest = &rest[n..];
            i += 1;
        }
        w.close(t(i));
        assert_eq!(w.stats().lines_dropped, 0);
        let mut r = LogReader::open(tmp.path(), 0, ReadOptions::default()).unwrap();
        let mut out = Vec::new();
        r.read_available(&mut out).unwrap();
        assert_eq!(out.len(), input.len(), "round {round}");
        assert!(out == input, "round {round}");
        assert_eq!(r.skipped(), 0);
        if round % 2 == 0 {
            for n in [1usize, 5, 50] {
                let want: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
                // `input` ends with a newline: the last split piece is empty
                let want = want[(want.len() - 1).saturating_sub(n)..want.len() - 1].join(&b'\n');
                let opts = ReadOptions {
                    tail: Some(n),
                    ..Default::default()
                };
                let mut out = Vec::new();
                LogReader::open(tmp.path(), 0, opts)
                    .unwrap()
                    .read_available(&mut out)
                    .unwrap();
                assert!(
                    out.strip_suffix(b"\n").unwrap() == want,
                    "round {round} tail {n}"
                );
            }
        }
        // every entry respects the 16 KiB limit
        for (_, _, content) in entries(&tmp.path().join("0.log")) {
            assert!(content.len() <= MAX_LINE);
        }
    }
}
