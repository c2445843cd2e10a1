//! Wall-clock text formats: RFC 3339 with seconds (Kubernetes' `metav1.Time` in JSON) and
//! with 9 fractional digits (CRI log lines, `podsup logs --timestamps`), both in UTC.
//!
//! Pure: times are arguments, never read here. No chrono: the calendar is Howard Hinnant's
//! `days_from_civil` / `civil_from_days` (proleptic Gregorian, any year).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a date (month 1–12, day 1–31).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01: (year, month 1–12, day 1–31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds (floored) and nanoseconds since the epoch; negative seconds before 1970.
pub fn unix_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

fn from_unix_parts(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn write_date_time(out: &mut String, secs: i64) {
    use std::fmt::Write;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
}

/// `2016-10-06T00:17:09Z`: Kubernetes' `metav1.Time` (seconds precision, UTC).
pub fn format_rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(20);
    write_date_time(&mut out, unix_parts(t).0);
    out.push('Z');
    out
}

/// `2016-10-06T00:17:09.669794202Z`: RFC 3339 with exactly 9 fractional digits, UTC (the
/// kubelet's `RFC3339NanoFixed`), so that lines sort as text.
pub fn format_rfc3339_nano(t: SystemTime) -> String {
    use std::fmt::Write;
    let (secs, nanos) = unix_parts(t);
    let mut out = String::with_capacity(30);
    write_date_time(&mut out, secs);
    let _ = write!(out, ".{nanos:09}Z");
    out
}

/// Parses RFC 3339 (`Z` or `±hh:mm`, 0–9 fractional digits; `t`/`z` accepted).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &b[r];
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0, |a, c| a * 10 + u32::from(c - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = num(20..20 + n)? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let at = b.len() - 5;
            let (oh, om) = (num(at..at + 2)?, num(at + 3..at + 5)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let v = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec.min(59)) - offset;
    from_unix_parts(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, nanos: u32) -> SystemTime {
        from_unix_parts(secs, nanos).unwrap()
    }

    #[test]
    fn known_dates() {
        // (unix seconds, nanos, seconds text, nano text)
        let cases: &[(i64, u32, &str, &str)] = &[
            (
                0,
                0,
                "1970-01-01T00:00:00Z",
                "1970-01-01T00:00:00.000000000Z",
            ),
            (
                1_475_713_029,
                669_794_202,
                "2016-10-06T00:17:09Z",
                "2016-10-06T00:17:09.669794202Z",
            ),
            // leap days: 2000 (divisible by 400), 2024; 1900 and 2100 are not leap years
            (
                951_782_400,
                1,
                "2000-02-29T00:00:00Z",
                "2000-02-29T00:00:00.000000001Z",
            ),
            (
                951_868_800,
                0,
                "2000-03-01T00:00:00Z",
                "2000-03-01T00:00:00.000000000Z",
            ),
            (
                1_709_164_800,
                0,
                "2024-02-29T00:00:00Z",
                "2024-02-29T00:00:00.000000000Z",
            ),
            (
                4_107_542_400,
                0,
                "2100-03-01T00:00:00Z",
                "2100-03-01T00:00:00.000000000Z",
            ),
            (
                1_735_689_599,
                999_999_999,
                "2024-12-31T23:59:59Z",
                "2024-12-31T23:59:59.999999999Z",
            ),
            (
                -1,
                500_000_000,
                "1969-12-31T23:59:59Z",
                "1969-12-31T23:59:59.500000000Z",
            ),
            (
                -2_208_988_800,
                0,
                "1900-01-01T00:00:00Z",
                "1900-01-01T00:00:00.000000000Z",
            ),
            (
                253_402_300_799,
                0,
                "9999-12-31T23:59:59Z",
                "9999-12-31T23:59:59.000000000Z",
            ),
        ];
        for (secs, nanos, text, nano_text) in cases {
            let t = at(*secs, *nanos);
            assert_eq!(format_rfc3339(t), *text, "{secs}");
            assert_eq!(format_rfc3339_nano(t), *nano_text, "{secs}");
            assert_eq!(parse_rfc3339(nano_text), Some(t), "{nano_text}");
            assert_eq!(unix_parts(t), (*secs, *nanos));
        }
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            civil_from_days(days_from_civil(1900, 2, 28) + 1),
            (1900, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2100, 2, 28) + 1),
            (2100, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2400, 2, 28) + 1),
            (2400, 2, 29)
        );
    }

    #[test]
    fn parse_table() {
        let base = 1_475_713_029;
        let cases: &[(&str, Option<(i64, u32)>)] = &[
            ("2016-10-06T00:17:09Z", Some((base, 0))),
            ("2016-10-06t00:17:09z", Some((base, 0))),
            ("2016-10-06T00:17:09.6697942Z", Some((base, 669_794_200))),
            ("2016-10-06T00:17:09.5Z", Some((base, 500_000_000))),
            ("2016-10-06T02:17:09+02:00", Some((base, 0))),
            ("2016-10-05T23:47:09.1-00:30", Some((base, 100_000_000))),
            ("2016-10-06T00:17:09", None),
            ("2016-10-06T00:17:09.Z", None),
            ("2016-10-06T00:17:09.1234567890Z", None),
            ("2016-13-06T00:17:09Z", None),
            ("2023-02-29T00:00:00Z", None),
            ("2016-10-06T24:00:00Z", None),
            ("2016-10-06 00:17:09Z", None),
            ("2016-1a-06T00:17:09Z", None),
            ("2016-10-06T00:17:09+0200", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339(text), want.map(|(s, n)| at(s, n)), "{text}");
        }
    }
}
