//! What the shim does next: which containers start, whether an exited one restarts, when
//! the pod is done and with which result. Pure: no I/O, `now` is an argument.

use std::time::Instant;

use crate::model::{
    Container, ContainerKind, ExitCodeOperator, PodSpec, RestartPolicy, RestartRuleAction,
};

/// A container as the decisions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet, or waiting for a restart no earlier than `not_before`.
    Waiting {
        not_before: Option<Instant>,
    },
    Running,
    /// Exited and will not run again (`exit_code` 128 for a StartError).
    Done {
        exit_code: i32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub kind: ContainerKind,
    pub phase: Phase,
    /// The container has run at least once (a sidecar that has started no longer holds up
    /// the next init container while it restarts).
    pub started_once: bool,
}

/// Whether a container that just exited with `exit_code` runs again, as Kubernetes decides
/// it: the container's `restartPolicyRules` first (the first rule whose exit codes match
/// says Restart), then the container's own `restartPolicy`, then the pod's. Sidecars always
/// restart; an init container must succeed and is retried unless its policy is Never.
/// Nothing restarts while the pod stops.
pub fn compute_should_restart(
    kind: ContainerKind,
    pod_policy: RestartPolicy,
    container: Option<&Container>,
    exit_code: i32,
    stopping: bool,
) -> bool {
    if stopping {
        return false;
    }
    if kind == ContainerKind::Sidecar {
        return true;
    }
    if kind == ContainerKind::Init && exit_code == 0 {
        return false;
    }
    let rule_says_restart = container.is_some_and(|c| {
        c.restart_policy_rules
            .iter()
            .find(|r| match &r.exit_codes {
                Some(e) => {
                    let hit = e.values.contains(&i64::from(exit_code));
                    match e.operator {
                        ExitCodeOperator::In => hit,
                        ExitCodeOperator::NotIn => !hit,
                    }
                }
                None => true,
            })
            .is_some_and(|r| r.action == RestartRuleAction::Restart)
    });
    if rule_says_restart {
        return true;
    }
    let policy = container
        .and_then(|c| c.restart_policy)
        .unwrap_or(pod_policy);
    match kind {
        ContainerKind::Init => policy != RestartPolicy::Never,
        _ => match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        },
    }
}

/// Why the kubelet would not admit a pod on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `OutOfmemory` or `OutOfcpu` (the kubelet's spelling).
    pub reason: String,
    pub message: String,
}

/// A container's request for a resource: `requests`, defaulting to `limits` as the API
/// server defaults it. In milli-units for cpu, bytes for memory.
fn request(c: &Container, resource: &str) -> i128 {
    let q = c
        .resources
        .requests
        .get(resource)
        .or_else(|| c.resources.limits.get(resource));
    match (q, resource) {
        (Some(q), "cpu") => q.milli(),
        (Some(q), _) => q.units(),
        (None, _) => 0,
    }
}

/// The pod's effective request (the kubelet's `PodRequests`): the larger of what the app
/// containers and sidecars need together and what each init container needs alongside the
/// sidecars started before it. Pod-level `resources.requests` win when given.
pub fn compute_pod_request(spec: &PodSpec, resource: &str) -> i128 {
    if let Some(q) = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.get(resource).or_else(|| r.limits.get(resource)))
    {
        return if resource == "cpu" {
            q.milli()
        } else {
            q.units()
        };
    }
    let mut sidecars = 0i128;
    let mut init_peak = 0i128;
    for (kind, c) in spec.all_containers() {
        match kind {
            ContainerKind::Sidecar => {
                sidecars += request(c, resource);
                init_peak = init_peak.max(sidecars);
            }
            ContainerKind::Init => init_peak = init_peak.max(sidecars + request(c, resource)),
            ContainerKind::App => {}
        }
    }
    let apps: i128 = spec.containers.iter().map(|c| request(c, resource)).sum();
    (apps + sidecars).max(init_peak)
}

/// Admission as the kubelet does it for resources: a pod whose requests exceed what the
/// machine has (`memory_bytes` from MemTotal, `cpu_milli` from the online CPUs) is
/// rejected. Nothing else runs on a podsup device's books, so "used" is 0.
pub fn compute_admission(
    spec: &PodSpec,
    memory_bytes: i128,
    cpu_milli: i128,
) -> Result<(), Rejection> {
    for (resource, capacity) in [("cpu", cpu_milli), ("memory", memory_bytes)] {
        let want = compute_pod_request(spec, resource);
        if want > capacity {
            let (want_s, cap_s) = if resource == "cpu" {
                (format!("{want}m"), format!("{capacity}m"))
            } else {
                (format!("{want}"), format!("{capacity}"))
            };
            return Err(Rejection {
                reason: format!("OutOf{resource}"),
                message: format!(
                    "Pod was rejected: Node didn't have enough resource: {resource}, requested: {want_s}, used: 0, capacity: {cap_s}"
                ),
            });
        }
    }
    Ok(())
}

fn due(phase: Phase, now: Instant) -> bool {
    matches!(phase, Phase::Waiting { not_before } if not_before.is_none_or(|t| t <= now))
}

/// The pod's plan for this moment.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Containers to start now (indexes into the views).
    pub start: Vec<usize>,
    /// Sidecars to stop now: the app containers are done.
    pub stop: Vec<usize>,
    /// The next time something becomes due.
    pub wake: Option<Instant>,
    /// The pod is over: nothing runs and nothing will start. `Some(exit status of podsup run)`.
    pub result: Option<i32>,
}

/// Init containers in order (each must finish with 0 before the next starts; sidecars start
/// in their place and keep running), then all app containers.
pub fn compute_plan(views: &[View], stopping: bool, now: Instant) -> Plan {
    let mut plan = Plan {
        start: Vec::new(),
        stop: Vec::new(),
        wake: None,
        result: None,
    };
    let wake = |plan: &mut Plan, phase: Phase| {
        if let Phase::Waiting {
            not_before: Some(t),
        } = phase
            && t > now
        {
            plan.wake = Some(plan.wake.map_or(t, |w: Instant| w.min(t)));
        }
    };
    let running = |v: &View| v.phase == Phase::Running;
    let mut init_failed = false;
    let mut inits_done = true;
    if !stopping {
        for (i, v) in views.iter().enumerate() {
            match v.kind {
                ContainerKind::App => continue,
                ContainerKind::Sidecar => {
                    if due(v.phase, now) {
                        plan.start.push(i);
                    }
                    wake(&mut plan, v.phase);
                    // The next init container (or sidecar) waits until this one started.
                    if !v.started_once {
                        inits_done = false;
                        break;
                    }
                }
                ContainerKind::Init => match v.phase {
                    Phase::Done { exit_code: 0 } => continue,
                    Phase::Done { .. } => {
                        init_failed = true;
                        inits_done = false;
                        break;
                    }
                    p => {
                        if due(p, now) {
                            plan.start.push(i);
                        }
                        wake(&mut plan, p);
                        inits_done = false;
                        break;
                    }
                },
            }
        }
        if inits_done {
            for (i, v) in views.iter().enumerate() {
                if v.kind == ContainerKind::App {
                    if due(v.phase, now) {
                        plan.start.push(i);
                    }
                    wake(&mut plan, v.phase);
                }
            }
        }
    }
    let apps_over = views
        .iter()
        .filter(|v| v.kind == ContainerKind::App)
        .all(|v| matches!(v.phase, Phase::Done { .. }));
    let main_over = stopping || init_failed || (inits_done && apps_over);
    if main_over {
        plan.start.clear();
        plan.wake = None;
        let others_running = views
            .iter()
            .any(|v| v.kind != ContainerKind::Sidecar && running(v));
        if !others_running {
            // Sidecars stop in reverse order, one after the other.
            plan.stop = views
                .iter()
                .enumerate()
                .rfind(|(_, v)| v.kind == ContainerKind::Sidecar && running(v))
                .map(|(i, _)| i)
                .into_iter()
                .collect();
        }
        if !views.iter().any(running) {
            let failed = init_failed
                || views.iter().any(|v| {
                    v.kind != ContainerKind::Sidecar
                        && matches!(v.phase, Phase::Done { exit_code } if exit_code != 0)
                })
                || (stopping && !apps_over);
            plan.result = Some(if failed { 1 } else { 0 });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerRestartRule, ContainerRestartRuleOnExitCodes, Quantity};
    use ContainerKind::*;
    use std::time::Duration;

    fn v(kind: ContainerKind, phase: Phase) -> View {
        View {
            kind,
            phase,
            started_once: phase != NEW,
        }
    }
    const NEW: Phase = Phase::Waiting { not_before: None };
    const DONE: Phase = Phase::Done { exit_code: 0 };

    #[test]
    fn init_containers_run_in_order_then_apps() {
        let now = Instant::now();
        let p = compute_plan(&[v(Init, NEW), v(Init, NEW), v(App, NEW)], false, now);
        assert_eq!(p.start, vec![0]);
        let p = compute_plan(&[v(Init, DONE), v(Init, NEW), v(App, NEW)], false, now);
        assert_eq!(p.start, vec![1]);
        let p = compute_plan(
            &[
                v(Init, DONE),
                v(Sidecar, Phase::Running),
                v(App, NEW),
                v(App, NEW),
            ],
            false,
            now,
        );
        assert_eq!(p.start, vec![2, 3]);
        assert_eq!(p.result, None);
    }

    #[test]
    fn sidecars_start_one_after_the_other() {
        let now = Instant::now();
        let views = [v(Sidecar, NEW), v(Sidecar, NEW), v(Init, NEW), v(App, NEW)];
        assert_eq!(compute_plan(&views, false, now).start, vec![0]);
        let views = [
            v(Sidecar, Phase::Running),
            v(Sidecar, NEW),
            v(Init, NEW),
            v(App, NEW),
        ];
        assert_eq!(compute_plan(&views, false, now).start, vec![1]);
        // A started sidecar waiting for its restart does not hold up the rest.
        let later = now + Duration::from_secs(5);
        let views = [
            v(
                Sidecar,
                Phase::Waiting {
                    not_before: Some(later),
                },
            ),
            v(Sidecar, Phase::Running),
            v(Init, DONE),
            v(App, NEW),
        ];
        let p = compute_plan(&views, false, now);
        assert_eq!((p.start, p.wake), (vec![3], Some(later)));
    }

    #[test]
    fn failed_init_ends_the_pod() {
        let now = Instant::now();
        let p = compute_plan(
            &[v(Init, Phase::Done { exit_code: 2 }), v(App, NEW)],
            false,
            now,
        );
        assert_eq!((p.start, p.result), (vec![], Some(1)));
    }

    fn ctr(policy: Option<RestartPolicy>, rules: Vec<ContainerRestartRule>) -> Container {
        let mut c: Container = serde_json::from_str(r#"{"name":"c","image":"i"}"#).unwrap();
        c.restart_policy = policy;
        c.restart_policy_rules = rules;
        c
    }

    #[test]
    fn restart_decisions_table() {
        use RestartPolicy::*;
        let rule = |op, values: Vec<i64>| ContainerRestartRule {
            action: RestartRuleAction::Restart,
            exit_codes: Some(ContainerRestartRuleOnExitCodes {
                operator: op,
                values,
            }),
        };
        let plain = ctr(None, vec![]);
        let never_but_42 = ctr(Some(Never), vec![rule(ExitCodeOperator::In, vec![42])]);
        let always_but = ctr(None, vec![rule(ExitCodeOperator::NotIn, vec![0])]);
        // (kind, pod policy, container, exit code, stopping) → restart
        let table: Vec<(ContainerKind, RestartPolicy, &Container, i32, bool, bool)> = vec![
            (App, Always, &plain, 0, false, true),
            (App, Always, &plain, 1, false, true),
            (App, OnFailure, &plain, 0, false, false),
            (App, OnFailure, &plain, 1, false, true),
            (App, Never, &plain, 1, false, false),
            (App, Always, &plain, 1, true, false),
            (Init, Always, &plain, 0, false, false),
            (Init, OnFailure, &plain, 1, false, true),
            (Init, Never, &plain, 1, false, false),
            (Sidecar, Never, &plain, 0, false, true),
            (Sidecar, Never, &plain, 0, true, false),
            (App, Always, &never_but_42, 1, false, false),
            (App, Always, &never_but_42, 42, false, true),
            (App, Never, &always_but, 3, false, true),
            (App, Never, &always_but, 0, false, false),
        ];
        for (kind, pol, c, code, stopping, want) in table {
            assert_eq!(
                compute_should_restart(kind, pol, Some(c), code, stopping),
                want,
                "{kind:?} {pol:?} {:?} exit {code} stopping {stopping}",
                c.restart_policy
            );
        }
    }

    #[test]
    fn waits_and_results() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let waiting = Phase::Waiting {
            not_before: Some(later),
        };
        let p = compute_plan(&[v(App, waiting)], false, now);
        assert_eq!((p.start.len(), p.wake), (0, Some(later)));
        let p = compute_plan(&[v(App, waiting)], false, later);
        assert_eq!(p.start, vec![0]);
        let p = compute_plan(&[v(App, DONE), v(App, DONE)], false, now);
        assert_eq!(p.result, Some(0));
        let p = compute_plan(
            &[v(App, DONE), v(App, Phase::Done { exit_code: 137 })],
            false,
            now,
        );
        assert_eq!(p.result, Some(1));
    }

    #[test]
    fn sidecars_stop_after_apps_in_reverse_order() {
        let now = Instant::now();
        let p = compute_plan(
            &[
                v(Sidecar, Phase::Running),
                v(Sidecar, Phase::Running),
                v(App, DONE),
            ],
            false,
            now,
        );
        assert_eq!((p.stop, p.result), (vec![1], None));
        let p = compute_plan(
            &[v(Sidecar, Phase::Running), v(Sidecar, DONE), v(App, DONE)],
            false,
            now,
        );
        assert_eq!(p.stop, vec![0]);
        // Stopping: nothing stops a sidecar while an app still runs.
        let p = compute_plan(
            &[v(Sidecar, Phase::Running), v(App, Phase::Running)],
            true,
            now,
        );
        assert_eq!((p.start.len(), p.stop.len(), p.result), (0, 0, None));
        let p = compute_plan(&[v(App, NEW)], true, now);
        assert_eq!((p.start.len(), p.result), (0, Some(1)));
    }

    #[test]
    fn admission_table() {
        let spec = |cpu: &str, mem: &str| {
            let mut s: PodSpec =
                serde_json::from_str(r#"{"containers":[{"name":"a","image":"i"}]}"#).unwrap();
            let r = &mut s.containers[0].resources;
            r.requests
                .insert("cpu".into(), Quantity::parse(cpu).unwrap());
            r.limits
                .insert("memory".into(), Quantity::parse(mem).unwrap());
            s
        };
        let gib = 1i128 << 30;
        assert_eq!(compute_admission(&spec("500m", "1Gi"), gib, 2000), Ok(()));
        let r = compute_admission(&spec("3", "1Gi"), gib, 2000).unwrap_err();
        assert_eq!(r.reason, "OutOfcpu");
        assert!(r.message.contains("requested: 3000m"), "{}", r.message);
        let r = compute_admission(&spec("1", "2Gi"), gib, 2000).unwrap_err();
        assert_eq!(r.reason, "OutOfmemory");
        // Init containers alongside earlier sidecars; apps alongside all sidecars.
        let mut s: PodSpec = serde_json::from_str(
            r#"{"initContainers":[{"name":"s","image":"i","restartPolicy":"Always","resources":{"requests":{"cpu":"1"}}},
                {"name":"i","image":"i","resources":{"requests":{"cpu":"1500m"}}}],
               "containers":[{"name":"a","image":"i","resources":{"requests":{"cpu":"200m"}}}]}"#,
        )
        .unwrap();
        assert_eq!(compute_pod_request(&s, "cpu"), 2500);
        s.init_containers[1].resources.requests.clear();
        assert_eq!(compute_pod_request(&s, "cpu"), 1200);
    }
}
