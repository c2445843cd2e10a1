//! Wall-clock formats the image store needs: RFC 3339 in image configs, and the
//! "3 days ago" of `podsup image ls`. Pure: the current time is always an argument.

use std::time::{Duration, UNIX_EPOCH};

use crate::model::time as model_time;

/// `2026-11-25T02:17:14Z` for seconds since the epoch (the OCI config's `created`).
pub fn format_rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    model_time::format_rfc3339(t)
}

/// Seconds since the epoch of an RFC 3339 time (fractions dropped, offsets applied).
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let st = model_time::parse_rfc3339(t)?;
    Some(match st.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
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
