//! What the shim does next: which containers start, whether an exited one restarts, when
//! the pod is done and with which result. Pure: no I/O, `now` is an argument.

use std::time::{Duration, Instant};

use crate::model::{ContainerKind, RestartPolicy};

/// Simple restart delay until the lifecycle issue brings Kubernetes' back-off: restarts of
/// one container are at least this far apart (s6 does the same).
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

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
}

/// What happens to a container that just exited.
pub fn compute_after_exit(
    kind: ContainerKind,
    policy: RestartPolicy,
    exit_code: i32,
    stopping: bool,
    now: Instant,
) -> Phase {
    let restart = !stopping
        && match kind {
            ContainerKind::Sidecar => true,
            // An init container must succeed; it is retried unless the pod never restarts.
            ContainerKind::Init => exit_code != 0 && policy != RestartPolicy::Never,
            ContainerKind::App => match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => exit_code != 0,
                RestartPolicy::Never => false,
            },
        };
    if restart {
        Phase::Waiting {
            not_before: Some(now + RESTART_DELAY),
        }
    } else {
        Phase::Done { exit_code }
    }
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
            plan.stop = views
                .iter()
                .enumerate()
                .filter(|(_, v)| v.kind == ContainerKind::Sidecar && running(v))
                .map(|(i, _)| i)
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
    use ContainerKind::*;

    fn v(kind: ContainerKind, phase: Phase) -> View {
        View { kind, phase }
    }
    const NEW: Phase = Phase::Waiting { not_before: None };

    #[test]
    fn init_containers_run_in_order_then_apps() {
        let now = Instant::now();
        let p = compute_plan(&[v(Init, NEW), v(Init, NEW), v(App, NEW)], false, now);
        assert_eq!(p.start, vec![0]);
        let p = compute_plan(
            &[
                v(Init, Phase::Done { exit_code: 0 }),
                v(Init, NEW),
                v(App, NEW),
            ],
            false,
            now,
        );
        assert_eq!(p.start, vec![1]);
        let done = Phase::Done { exit_code: 0 };
        let p = compute_plan(
            &[v(Init, done), v(Sidecar, NEW), v(App, NEW), v(App, NEW)],
            false,
            now,
        );
        assert_eq!(p.start, vec![1, 2, 3]);
        assert_eq!(p.result, None);
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

    #[test]
    fn restarts_wait_and_results() {
        let now = Instant::now();
        let later = now + RESTART_DELAY;
        assert_eq!(
            compute_after_exit(App, RestartPolicy::OnFailure, 1, false, now),
            Phase::Waiting {
                not_before: Some(later)
            }
        );
        assert_eq!(
            compute_after_exit(App, RestartPolicy::OnFailure, 0, false, now),
            Phase::Done { exit_code: 0 }
        );
        assert_eq!(
            compute_after_exit(App, RestartPolicy::Always, 0, true, now),
            Phase::Done { exit_code: 0 }
        );
        assert_eq!(
            compute_after_exit(Init, RestartPolicy::Never, 1, false, now),
            Phase::Done { exit_code: 1 }
        );
        let p = compute_plan(
            &[v(
                App,
                Phase::Waiting {
                    not_before: Some(later),
                },
            )],
            false,
            now,
        );
        assert_eq!((p.start.len(), p.wake), (0, Some(later)));
        let p = compute_plan(
            &[v(
                App,
                Phase::Waiting {
                    not_before: Some(later),
                },
            )],
            false,
            later,
        );
        assert_eq!(p.start, vec![0]);
        let p = compute_plan(
            &[
                v(App, Phase::Done { exit_code: 0 }),
                v(App, Phase::Done { exit_code: 0 }),
            ],
            false,
            now,
        );
        assert_eq!(p.result, Some(0));
        let p = compute_plan(
            &[
                v(App, Phase::Done { exit_code: 0 }),
                v(App, Phase::Done { exit_code: 137 }),
            ],
            false,
            now,
        );
        assert_eq!(p.result, Some(1));
    }

    #[test]
    fn sidecars_stop_after_apps_and_stopping_starts_nothing() {
        let now = Instant::now();
        let done = Phase::Done { exit_code: 0 };
        let p = compute_plan(&[v(Sidecar, Phase::Running), v(App, done)], false, now);
        assert_eq!((p.stop, p.result), (vec![0], None));
        let p = compute_plan(
            &[v(Sidecar, Phase::Running), v(App, Phase::Running)],
            true,
            now,
        );
        assert_eq!((p.start.len(), p.stop.len(), p.result), (0, 0, None));
        let p = compute_plan(&[v(App, NEW)], true, now);
        assert_eq!((p.start.len(), p.result), (0, Some(1)));
    }
}
