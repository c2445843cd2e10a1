//! Wall-clock formats the image store needs: RFC 3339 in image configs, and the
//! "3 days ago" of `podsup image ls`. Pure: the current time is always an argument.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2024-05-01T12:00:00Z`
pub fn format_rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Seconds since the epoch of an RFC 3339 time (fractions ignored), None when malformed.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let v = rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60;
            if rest.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// Docker's style, coarse and short enough for an 80-column table: `just now`,
/// `45 seconds ago`, `3 hours ago`, `2 weeks ago`.
pub fn format_age(then: i64, now: i64) -> String {
    let secs = (now - then).max(0);
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match secs {
        0..=1 => "just now".into(),
        2..=59 => plural(secs, "second"),
        60..=3599 => plural(secs / 60, "minute"),
        3600..=172_799 => plural(secs / 3600, "hour"),
        172_800..=1_209_599 => plural(secs / 86_400, "day"),
        1_209_600..=5_183_999 => plural(secs / 604_800, "week"),
        5_184_000..=63_071_999 => plural(secs / 2_592_000, "month"),
        _ => plural(secs / 31_536_000, "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2026-11-25T02:17:14Z", 1_795_573_034),
        ] {
            assert_eq!(parse_rfc3339(text), Some(secs), "{text}");
            assert_eq!(format_rfc3339(secs), text);
        }
        assert_eq!(
            parse_rfc3339("2026-11-25T02:17:14.123456789Z"),
            Some(1_795_573_034)
        );
        assert_eq!(
            parse_rfc3339("2026-11-25T03:17:14+01:00"),
            Some(1_795_573_034)
        );
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T02:17:14",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ages() {
        for (delta, want) in [
            (0, "just now"),
            (30, "30 seconds ago"),
            (60, "1 minute ago"),
            (7200, "2 hours ago"),
            (3 * 86_400, "3 days ago"),
            (15 * 86_400, "2 weeks ago"),
            (90 * 86_400, "3 months ago"),
            (800 * 86_400, "2 years ago"),
        ] {
            assert_eq!(format_age(1000, 1000 + delta), want, "{delta}");
        }
    }
}
