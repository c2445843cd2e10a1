//! Pod and container resources → cgroup values, with the kubelet's formulas.
//!
//! Pure: no I/O. The sources are the kubelet's `milliCPUToShares` / `milliCPUToQuota`
//! (`pkg/kubelet/cm/helpers_linux.go`), `ResourceConfigForPod` for the pod cgroup, and
//! runc's `ConvertCPUSharesToCgroupV2Value` for cgroup v2's `cpu.weight`.

use crate::model::{ContainerKind, PodSpec, Quantity, ResourceRequirements};

/// CFS period, as the kubelet uses it (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kubelet writes (1 ms per period).
pub const MIN_QUOTA_US: i64 = 1_000;
/// `cpu.shares` bounds (kernel and kubelet).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
/// Default per-pod pids limit: enough for any sane pod on a small machine (CRI-O's former
/// per-container default), low enough that a fork bomb stops long before the host's
/// `pid_max`. Kubernetes itself has none by default (`podPidsLimit: -1`).
pub const DEFAULT_PIDS_LIMIT: i64 = 1024;

/// The values podsup writes into one cgroup. `None` leaves the kernel's default (no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// v1 `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, same value: no swap);
    /// v2 `memory.max` (and `memory.swap.max` 0).
    pub memory_bytes: Option<i64>,
    /// CFS quota per [`CPU_PERIOD_US`]: v1 `cpu.cfs_quota_us`, v2 `cpu.max`.
    pub cpu_quota_us: Option<i64>,
    /// v1 `cpu.shares`; v2 `cpu.weight` is [`compute_cpu_weight`] of it.
    pub cpu_shares: Option<u64>,
    /// `pids.max`.
    pub pids_max: Option<i64>,
}

/// Kubernetes' `milliCPUToShares`: a request of 0 (none) gives the minimum, 2.
pub fn compute_cpu_shares(milli: i128) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    let shares = milli.saturating_mul(1024) / 1000;
    shares.clamp(MIN_SHARES as i128, MAX_SHARES as i128) as u64
}

/// Kubernetes' `milliCPUToQuota`: `None` (no quota) for 0, at least [`MIN_QUOTA_US`].
pub fn compute_cpu_quota(milli: i128, period_us: u64) -> Option<i64> {
    if milli <= 0 {
        return None;
    }
    let quota = milli.saturating_mul(period_us as i128) / 1000;
    Some(quota.clamp(MIN_QUOTA_US as i128, i64::MAX as i128) as i64)
}

/// runc's shares → `cpu.weight` mapping: [2, 262144] onto [1, 10000].
pub fn compute_cpu_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

fn milli(q: Option<&Quantity>) -> i128 {
    q.map(|q| q.milli()).unwrap_or(0).max(0)
}

fn bytes(q: Option<&Quantity>) -> Option<i64> {
    let b = q?.units();
    (b > 0).then(|| b.min(i64::MAX as i128) as i64)
}

/// A container's cgroup values. The cpu request defaults to the cpu limit (as the API
/// server does); no request at all gives the minimum shares, as the kubelet writes. The pids
/// limit is per pod, so containers get none.
pub fn compute_container_limits(r: &ResourceRequirements) -> Limits {
    let cpu_request = r.requests.get("cpu").or_else(|| r.limits.get("cpu"));
    Limits {
        memory_bytes: bytes(r.limits.get("memory")),
        cpu_quota_us: compute_cpu_quota(milli(r.limits.get("cpu")), CPU_PERIOD_US),
        cpu_shares: Some(compute_cpu_shares(milli(cpu_request))),
        pids_max: None,
    }
}

/// Kubernetes' effective pod value of one resource (KEP-753 with sidecars): the larger of
/// (all app containers + all sidecars) and, for each init container, itself plus the
/// sidecars started before it. `get` returns `None` when a container does not declare it.
fn effective(spec: &PodSpec, get: impl Fn(&ResourceRequirements) -> Option<i128>) -> i128 {
    let mut sidecars = 0i128;
    let mut init_peak = 0i128;
    let mut apps = 0i128;
    for (kind, c) in spec.all_containers() {
        let v = get(&c.resources).unwrap_or(0);
        match kind {
            ContainerKind::Sidecar => {
                sidecars += v;
                init_peak = init_peak.max(sidecars);
            }
            ContainerKind::Init => init_peak = init_peak.max(sidecars + v),
            ContainerKind::App => apps += v,
        }
    }
    (apps + sidecars).max(init_peak)
}

/// The pod cgroup's values, as the kubelet's `ResourceConfigForPod`: a memory or cpu limit
/// only when every container (init ones included) declares one; shares from the summed
/// requests. Pod-level `spec.resources` wins for each resource it names. `pids_limit` is
/// the daemon setting (`None`: no limit).
pub fn compute_pod_limits(spec: &PodSpec, pids_limit: Option<i64>) -> Limits {
    let all = || spec.init_containers.iter().chain(&spec.containers);
    let all_declare = |name: &str| all().all(|c| c.resources.limits.contains_key(name));

    let mem_limit = all_declare("memory")
        .then(|| effective(spec, |r| r.limits.get("memory").map(|q| q.units())));
    let cpu_limit_milli =
        all_declare("cpu").then(|| effective(spec, |r| r.limits.get("cpu").map(|q| q.milli())));
    let cpu_request_milli = effective(spec, |r| {
        r.requests
            .get("cpu")
            .or_else(|| r.limits.get("cpu"))
            .map(|q| q.milli())
    });

    let pod = spec.resources.as_ref();
    let pod_limit = |name: &str| pod.and_then(|p| p.limits.get(name));
    let pod_request =
        |name: &str| pod.and_then(|p| p.requests.get(name).or_else(|| p.limits.get(name)));

    let memory_bytes = match pod_limit("memory") {
        Some(q) => bytes(Some(q)),
        None => mem_limit
            .filter(|b| *b > 0)
            .map(|b| b.min(i64::MAX as i128) as i64),
    };
    let cpu_quota_us = match pod_limit("cpu") {
        Some(q) => compute_cpu_quota(q.milli(), CPU_PERIOD_US),
        None => cpu_limit_milli.and_then(|m| compute_cpu_quota(m, CPU_PERIOD_US)),
    };
    let cpu_shares = match pod_request("cpu") {
        Some(q) => compute_cpu_shares(q.milli()),
        None => compute_cpu_shares(cpu_request_milli),
    };
    Limits {
        memory_bytes,
        cpu_quota_us,
        cpu_shares: Some(cpu_shares),
        pids_max: pids_limit.filter(|n| *n > 0),
    }
}

/// Which v1 memory file to write first. The kernel keeps `memory.limit_in_bytes` ≤
/// `memory.memsw.limit_in_bytes`, so raising above the current memsw limit writes memsw
/// first, and anything else writes the memory limit first.
pub fn compute_memsw_first(new_limit: i64, current_memsw: i64) -> bool {
    new_limit > current_memsw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, RestartPolicy};
    use std::collections::BTreeMap;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn res(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> ResourceRequirements {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
            kv.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
        };
        ResourceRequirements {
            limits: m(limits),
            requests: m(requests),
        }
    }

    fn ctr(name: &str, r: ResourceRequirements) -> Container {
        Container {
            name: name.into(),
            resources: r,
            ..Default::default()
        }
    }

    #[test]
    fn shares() {
        for (m, want) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (100, 102),
            (250, 256),
            (1000, 1024),
            (2500, 2560),
            (256_000, 262_144),
            (1_000_000, 262_144),
            (-5, 2),
        ] {
            assert_eq!(compute_cpu_shares(m), want, "{m}m");
        }
    }

    #[test]
    fn quota() {
        for (m, want) in [
            (0, None),
            (1, Some(1000)),
            (9, Some(1000)),
            (10, Some(1000)),
            (11, Some(1100)),
            (100, Some(10_000)),
            (250, Some(25_000)),
            (1000, Some(100_000)),
            (1500, Some(150_000)),
        ] {
            assert_eq!(compute_cpu_quota(m, CPU_PERIOD_US), want, "{m}m");
        }
    }

    #[test]
    fn weight() {
        for (s, want) in [
            (0, 0),
            (2, 1),
            (102, 4),
            (1024, 39),
            (2048, 79),
            (262_144, 10_000),
            (1_000_000, 10_000),
        ] {
            assert_eq!(compute_cpu_weight(s), want, "{s}");
        }
    }

    #[test]
    fn container() {
        let cases = [
            (
                res(&[], &[]),
                Limits {
                    cpu_shares: Some(2),
                    ..Default::default()
                },
            ),
            (
                res(&[("memory", "32Mi"), ("cpu", "100m")], &[("cpu", "50m")]),
                Limits {
                    memory_bytes: Some(32 << 20),
                    cpu_quota_us: Some(10_000),
                    cpu_shares: Some(51),
                    pids_max: None,
                },
            ),
            (
                res(&[("cpu", "1")], &[]),
                Limits {
                    cpu_quota_us: Some(100_000),
                    cpu_shares: Some(1024),
                    ..Default::default()
                },
            ),
            (
                res(&[], &[("cpu", "250m"), ("memory", "64Mi")]),
                Limits {
                    cpu_shares: Some(256),
                    ..Default::default()
                },
            ),
            (
                res(&[("memory", "1G")], &[]),
                Limits {
                    memory_bytes: Some(1_000_000_000),
                    cpu_shares: Some(2),
                    ..Default::default()
                },
            ),
        ];
        for (i, (r, want)) in cases.into_iter().enumerate() {
            assert_eq!(compute_container_limits(&r), want, "case {i}");
        }
    }

    #[test]
    fn pod() {
        let a = || {
            ctr(
                "a",
                res(&[("memory", "32Mi"), ("cpu", "100m")], &[("cpu", "100m")]),
            )
        };
        let b = || {
            ctr(
                "b",
                res(&[("memory", "64Mi"), ("cpu", "200m")], &[("cpu", "50m")]),
            )
        };
        let nolimit = || ctr("n", res(&[], &[("cpu", "300m")]));
        let big_init = || {
            ctr(
                "i",
                res(&[("memory", "1Gi"), ("cpu", "2")], &[("cpu", "2")]),
            )
        };
        let mut sidecar = ctr(
            "s",
            res(&[("memory", "16Mi"), ("cpu", "10m")], &[("cpu", "10m")]),
        );
        sidecar.restart_policy = Some(RestartPolicy::Always);

        let spec = |init: Vec<Container>,
                    apps: Vec<Container>,
                    pod: Option<ResourceRequirements>| PodSpec {
            init_containers: init,
            containers: apps,
            resources: pod,
            ..Default::default()
        };
        let cases = [
            (
                "all limited: sums",
                spec(vec![], vec![a(), b()], None),
                Some(1024),
                Limits {
                    memory_bytes: Some(96 << 20),
                    cpu_quota_us: Some(30_000),
                    cpu_shares: Some(153),
                    pids_max: Some(1024),
                },
            ),
            (
                "one without limits: no pod limits",
                spec(vec![], vec![a(), nolimit()], None),
                None,
                Limits {
                    cpu_shares: Some(409),
                    ..Default::default()
                },
            ),
            (
                "an init container bigger than the apps",
                spec(vec![big_init()], vec![a(), b()], None),
                Some(0),
                Limits {
                    memory_bytes: Some(1 << 30),
                    cpu_quota_us: Some(200_000),
                    cpu_shares: Some(2048),
                    pids_max: None,
                },
            ),
            (
                "a sidecar adds to the apps",
                spec(vec![sidecar.clone()], vec![a()], None),
                None,
                Limits {
                    memory_bytes: Some(48 << 20),
                    cpu_quota_us: Some(11_000),
                    cpu_shares: Some(112),
                    pids_max: None,
                },
            ),
            (
                "pod-level resources win where given",
                spec(
                    vec![],
                    vec![a(), nolimit()],
                    Some(res(&[("memory", "256Mi")], &[("cpu", "1")])),
                ),
                Some(64),
                Limits {
                    memory_bytes: Some(256 << 20),
                    cpu_quota_us: None,
                    cpu_shares: Some(1024),
                    pids_max: Some(64),
                },
            ),
        ];
        for (name, s, pids, want) in cases {
            assert_eq!(compute_pod_limits(&s, pids), want, "{name}");
        }
    }

    #[test]
    fn memsw_order() {
        let unlimited = 9_223_372_036_854_771_712;
        assert!(!compute_memsw_first(32 << 20, unlimited));
        assert!(compute_memsw_first(64 << 20, 32 << 20));
        assert!(!compute_memsw_first(16 << 20, 32 << 20));
    }
}
