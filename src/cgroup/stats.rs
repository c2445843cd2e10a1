//! Parsers for the counter files podsup reads (`memory.events`, `memory.oom_control`,
//! `cpu.stat`, `pids.events`, `cgroup.procs`). Pure: text in, values out.

/// Counters from `cpu.stat`, in the same units on v1 and v2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// Enforcement periods that have elapsed (`nr_periods`).
    pub nr_periods: u64,
    /// Periods in which the group was throttled (`nr_throttled`).
    pub nr_throttled: u64,
    /// Total time throttled, in microseconds (v1 `throttled_time` is in ns; v2
    /// `throttled_usec`).
    pub throttled_usec: u64,
}

/// The value of `key` in a flat-keyed file (`key value` per line; cgroup-v2.rst "Interface
/// Files"). v1's `memory.oom_control` and `cpu.stat` use the same shape.
pub fn parse_flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `cpu.stat` of either version.
pub fn parse_cpu_stat(text: &str) -> CpuStat {
    let get = |k| parse_flat_keyed(text, k);
    CpuStat {
        nr_periods: get("nr_periods").unwrap_or(0),
        nr_throttled: get("nr_throttled").unwrap_or(0),
        throttled_usec: get("throttled_usec")
            .or_else(|| get("throttled_time").map(|ns| ns / 1000))
            .unwrap_or(0),
    }
}

/// `cgroup.procs`: one pid per line.
pub fn parse_procs(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A single-value file such as `memory.max` or `pids.max`: `None` for `max`.
pub fn parse_max(text: &str) -> Option<i64> {
    let t = text.trim();
    if t == "max" { None } else { t.parse().ok() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed() {
        let v1_oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2_events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        let cases = [
            (v1_oom, "oom_kill", Some(3)),
            (v1_oom, "under_oom", Some(0)),
            (v2_events, "oom_kill", Some(1)),
            (v2_events, "oom", Some(2)),
            (v2_events, "max", Some(12)),
            ("max 5\n", "max", Some(5)),
            ("", "oom_kill", None),
            ("oom_kill x\n", "oom_kill", None),
            ("oom_killer 4\n", "oom_kill", None),
        ];
        for (text, key, want) in cases {
            assert_eq!(parse_flat_keyed(text, key), want, "{key} in {text:?}");
        }
    }

    #[test]
    fn cpu_stat() {
        let v1 = "nr_periods 10\nnr_throttled 4\nthrottled_time 2500000\n";
        let v2 = "usage_usec 100\nuser_usec 1\nsystem_usec 2\nnr_periods 7\nnr_throttled 3\nthrottled_usec 900\n";
        assert_eq!(
            parse_cpu_stat(v1),
            CpuStat {
                nr_periods: 10,
                nr_throttled: 4,
                throttled_usec: 2500
            }
        );
        assert_eq!(
            parse_cpu_stat(v2),
            CpuStat {
                nr_periods: 7,
                nr_throttled: 3,
                throttled_usec: 900
            }
        );
        assert_eq!(parse_cpu_stat(""), CpuStat::default());
    }

    #[test]
    fn procs_and_max() {
        assert_eq!(parse_procs("1\n23\n\n456\n"), vec![1, 23, 456]);
        assert_eq!(parse_procs(""), Vec::<i32>::new());
        assert_eq!(parse_max("max\n"), None);
        assert_eq!(parse_max("33554432\n"), Some(33554432));
    }
}
