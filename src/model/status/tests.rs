use super::*;
use crate::model::Container;
use std::time::UNIX_EPOCH;

const NOW: u64 = 1_700_000_000;

fn at(secs_ago: u64) -> Time {
    Time::from_system(UNIX_EPOCH + Duration::from_secs(NOW - secs_ago))
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn ctr(name: &str, sidecar: bool) -> Container {
    Container {
        name: name.into(),
        image: "busybox".into(),
        restart_policy: sidecar.then_some(RestartPolicy::Always),
        ..Default::default()
    }
}

fn spec(init: &[(&str, bool)], app: &[&str]) -> PodSpec {
    PodSpec {
        init_containers: init.iter().map(|(n, s)| ctr(n, *s)).collect(),
        containers: app.iter().map(|n| ctr(n, false)).collect(),
        ..Default::default()
    }
}

/// A container status from a short description:
/// `run` / `run!` (ready) / `wait:Reason` / `term:code[:reason][:signal]`, and `started` for
/// sidecars; `restarts` with the last termination `ago` seconds before NOW.
fn cs(name: &str, state: &str, restarts: i32, ago: Option<u64>) -> ContainerStatus {
    let mut st = ContainerStatus {
        name: name.into(),
        restart_count: restarts,
        ..Default::default()
    };
    let parts: Vec<&str> = state.split(':').collect();
    match parts[0] {
        "run" | "run!" => {
            st.state = ContainerState::running(now());
            st.ready = parts[0] == "run!";
            st.started = Some(st.ready); // `run`: still in its startup
        }
        "wait" => st.state = ContainerState::waiting(parts[1], None),
        "term" => {
            st.state = ContainerState::terminated(ContainerStateTerminated {
                exit_code: parts[1].parse().unwrap(),
                reason: parts
                    .get(2)
                    .filter(|r| !r.is_empty())
                    .map(|r| r.to_string()),
                signal: parts.get(3).map_or(0, |s| s.parse().unwrap()),
                ..Default::default()
            })
        }
        other => panic!("bad state {other}"),
    }
    if let Some(ago) = ago {
        st.last_state = ContainerState::terminated(ContainerStateTerminated {
            exit_code: 1,
            reason: Some("Error".into()),
            finished_at: Some(at(ago)),
            ..Default::default()
        });
    }
    st
}

fn status(
    phase: PodPhase,
    init: Vec<ContainerStatus>,
    app: Vec<ContainerStatus>,
    conds: &[PodConditionType],
) -> PodStatus {
    PodStatus {
        phase,
        conditions: conds
            .iter()
            .map(|t| PodCondition {
                type_: *t,
                status: ConditionStatus::True,
                last_probe_time: None,
                last_transition_time: None,
                reason: None,
                message: None,
            })
            .collect(),
        init_container_statuses: init,
        container_statuses: app,
        ..Default::default()
    }
}

#[test]
fn kubectl_columns_table() {
    use PodConditionType::{Initialized, Ready};
    use PodPhase::*;
    let one = spec(&[], &["app"]);
    let two = spec(&[], &["a", "b"]);
    let inits = spec(&[("i1", false), ("i2", false)], &["app"]);
    let side = spec(&[("side", true)], &["app"]);
    let mut deadline = status(Failed, vec![], vec![], &[]);
    deadline.reason = Some("DeadlineExceeded".into());

    #[rustfmt::skip]
    let cases: Vec<(&str, &PodSpec, PodStatus, bool, [&str; 3])> = vec![
        ("pending, nothing yet", &one, status(Pending, vec![], vec![], &[]), false, ["0/1", "Pending", "0"]),
        ("creating", &one, status(Pending, vec![], vec![cs("app", "wait:ContainerCreating", 0, None)], &[]), false, ["0/1", "ContainerCreating", "0"]),
        ("running ready", &one, status(Running, vec![], vec![cs("app", "run!", 0, None)], &[Ready]), false, ["1/1", "Running", "0"]),
        ("running not ready", &one, status(Running, vec![], vec![cs("app", "run", 0, None)], &[]), false, ["0/1", "Running", "0"]),
        ("crash loop", &one, status(Running, vec![], vec![cs("app", "wait:CrashLoopBackOff", 3, Some(125))], &[]), false, ["0/1", "CrashLoopBackOff", "3 (2m5s ago)"]),
        ("restarted, running", &one, status(Running, vec![], vec![cs("app", "run!", 1, Some(3600 * 5))], &[Ready]), false, ["1/1", "Running", "1 (5h ago)"]),
        ("completed", &one, status(Succeeded, vec![], vec![cs("app", "term:0:Completed", 0, None)], &[]), false, ["0/1", "Completed", "0"]),
        ("error", &one, status(Failed, vec![], vec![cs("app", "term:1:Error", 0, None)], &[]), false, ["0/1", "Error", "0"]),
        ("oom", &one, status(Failed, vec![], vec![cs("app", "term:137:OOMKilled", 0, None)], &[]), false, ["0/1", "OOMKilled", "0"]),
        ("exit code without reason", &one, status(Failed, vec![], vec![cs("app", "term:2", 0, None)], &[]), false, ["0/1", "ExitCode:2", "0"]),
        ("signal without reason", &one, status(Failed, vec![], vec![cs("app", "term:137::9", 0, None)], &[]), false, ["0/1", "Signal:9", "0"]),
        ("first container decides", &two, status(Running, vec![], vec![cs("a", "wait:CrashLoopBackOff", 2, Some(30)), cs("b", "term:1:Error", 1, Some(60))], &[]), false, ["0/2", "CrashLoopBackOff", "3 (30s ago)"]),
        ("completed + running, ready", &two, status(Running, vec![], vec![cs("a", "term:0:Completed", 0, None), cs("b", "run!", 0, None)], &[Ready]), false, ["1/2", "Running", "0"]),
        ("completed + running, not ready", &two, status(Running, vec![], vec![cs("a", "term:0:Completed", 0, None), cs("b", "run!", 0, None)], &[]), false, ["1/2", "NotReady", "0"]),
        ("init 0/2", &inits, status(Pending, vec![cs("i1", "run", 0, None), cs("i2", "wait:PodInitializing", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)], &[]), false, ["0/1", "Init:0/2", "0"]),
        ("init 1/2", &inits, status(Pending, vec![cs("i1", "term:0:Completed", 0, None), cs("i2", "run", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)], &[]), false, ["0/1", "Init:1/2", "0"]),
        ("init crash loop", &inits, status(Pending, vec![cs("i1", "wait:CrashLoopBackOff", 4, Some(10)), cs("i2", "wait:PodInitializing", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)], &[]), false, ["0/1", "Init:CrashLoopBackOff", "4 (10s ago)"]),
        ("init error", &inits, status(Failed, vec![cs("i1", "term:1:Error", 0, None), cs("i2", "wait:PodInitializing", 0, None)], vec![], &[]), false, ["0/1", "Init:Error", "0"]),
        ("init exit code", &inits, status(Failed, vec![cs("i1", "term:3", 0, None)], vec![], &[]), false, ["0/1", "Init:ExitCode:3", "0"]),
        ("init signal", &inits, status(Failed, vec![cs("i1", "term:137::9", 0, None)], vec![], &[]), false, ["0/1", "Init:Signal:9", "0"]),
        ("init done, app waiting", &inits, status(Pending, vec![cs("i1", "term:0:Completed", 2, Some(100)), cs("i2", "term:0:Completed", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)], &[Initialized]), false, ["0/1", "PodInitializing", "0"]),
        ("sidecar not started", &side, status(Pending, vec![cs("side", "wait:ContainerCreating", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)], &[]), false, ["0/2", "Init:ContainerCreating", "0"]),
        ("sidecar + app running", &side, status(Running, vec![cs("side", "run!", 2, Some(600))], vec![cs("app", "run!", 1, Some(900))], &[Initialized, Ready]), false, ["2/2", "Running", "3 (10m ago)"]),
        ("terminating", &one, status(Running, vec![], vec![cs("app", "run!", 0, None)], &[Ready]), true, ["1/1", "Terminating", "0"]),
        ("deleted after success", &one, status(Succeeded, vec![], vec![cs("app", "term:0:Completed", 0, None)], &[]), true, ["0/1", "Completed", "0"]),
        ("pod reason", &one, deadline, false, ["0/1", "DeadlineExceeded", "0"]),
    ];
    for (name, spec, st, deleting, [ready, text, restarts]) in cases {
        let got = compute_pod_columns(spec, &st, deleting, now());
        assert_eq!(
            (
                got.ready.as_str(),
                got.status.as_str(),
                got.restarts.as_str()
            ),
            (ready, text, restarts),
            "{name}"
        );
    }
}

#[test]
fn human_duration_table() {
    let cases: &[(i64, &str)] = &[
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (3000 * 86400, "8y"),
    ];
    for (secs, want) in cases {
        let then = if *secs >= 0 {
            now() - Duration::from_secs(*secs as u64)
        } else {
            now() + Duration::from_secs(secs.unsigned_abs())
        };
        assert_eq!(compute_human_duration(now(), then), *want, "{secs}");
    }
}

#[test]
fn wire_names_are_kubernetes() {
    let mut st = status(
        PodPhase::Running,
        vec![],
        vec![cs("app", "run!", 1, Some(60))],
        &[],
    );
    st.pod_ip = Some("10.88.0.2".into());
    st.host_ip = Some("192.168.1.2".into());
    st.start_time = Some(at(120));
    st.container_statuses[0].image_id = "sha256:abc".into();
    st.container_statuses[0].container_id = Some("podsup://x".into());
    let v = serde_json::to_value(&st).unwrap();
    assert_eq!(v["phase"], "Running");
    assert_eq!(v["podIP"], "10.88.0.2");
    assert_eq!(v["hostIP"], "192.168.1.2");
    assert_eq!(v["startTime"], "2023-11-14T22:11:20Z");
    let c = &v["containerStatuses"][0];
    assert_eq!(c["restartCount"], 1);
    assert_eq!(c["imageID"], "sha256:abc");
    assert_eq!(c["containerID"], "podsup://x");
    assert_eq!(c["state"]["running"]["startedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert!(c["lastState"]["terminated"].get("signal").is_none());
    let back: PodStatus = serde_json::from_value(v).unwrap();
    assert_eq!(back, st);

    // An empty lastState is `{}`, as Kubernetes prints it.
    let fresh = cs("app", "wait:ContainerCreating", 0, None);
    let v = serde_json::to_value(&fresh).unwrap();
    assert_eq!(v["lastState"], serde_json::json!({}));
    assert_eq!(v["state"]["waiting"]["reason"], "ContainerCreating");
}

#[test]
fn conditions_move_only_on_change() {
    let mut st = PodStatus::default();
    let t1 = now();
    let t2 = now() + Duration::from_secs(5);
    let t3 = now() + Duration::from_secs(9);
    use ConditionStatus::{False, True};
    use PodConditionType::Ready;
    st.set_condition(Ready, False, Some("ContainersNotReady"), None, t1);
    st.set_condition(Ready, False, Some("ContainersNotReady"), None, t2);
    assert_eq!(st.conditions.len(), 1);
    assert_eq!(
        st.conditions[0].last_transition_time,
        Some(Time::from_system(t1))
    );
    st.set_condition(Ready, True, None, None, t3);
    assert_eq!(
        st.conditions[0].last_transition_time,
        Some(Time::from_system(t3))
    );
    assert!(st.condition_true(Ready));
    let v = serde_json::to_value(&st).unwrap();
    assert_eq!(v["conditions"][0]["type"], "Ready");
    assert_eq!(v["conditions"][0]["status"], "True");
}

#[test]
fn termination_reasons() {
    let cases = [
        (0, false, "Completed"),
        (1, false, "Error"),
        (137, false, "Error"),
        (137, true, "OOMKilled"),
        (0, true, "OOMKilled"),
    ];
    for (code, oom, want) in cases {
        assert_eq!(compute_termination_reason(code, oom), want);
    }
}

#[test]
fn history_keeps_the_last_n() {
    let mut h = RestartHistory {
        name: "app".into(),
        terminations: vec![],
        next_restart_at: None,
    };
    for i in 0..15 {
        h.record(
            Termination {
                restart_count: i,
                started_at: None,
                finished_at: at(100 - i as u64),
                exit_code: 1,
                signal: 0,
                reason: "Error".into(),
            },
            RESTART_HISTORY_LEN,
        );
    }
    assert_eq!(h.terminations.len(), RESTART_HISTORY_LEN);
    assert_eq!(h.terminations[0].restart_count, 5);
    assert_eq!(h.terminations[9].restart_count, 14);
    let v = serde_json::to_value(&h).unwrap();
    assert_eq!(v["terminations"][0]["finishedAt"], "2023-11-14T22:11:45Z");
}

fn with_policy(mut s: PodSpec, p: RestartPolicy) -> PodSpec {
    s.restart_policy = Some(p);
    s
}

#[test]
fn pod_phase_table() {
    use PodPhase::*;
    use RestartPolicy::{Always, Never, OnFailure};
    let one = |p| with_policy(spec(&[], &["app"]), p);
    let two = |p| with_policy(spec(&[], &["a", "b"]), p);
    let inits = |p| with_policy(spec(&[("i1", false)], &["app"]), p);
    let side = |p| with_policy(spec(&[("side", true)], &["app"]), p);
    let st = |init, app| status(Pending, init, app, &[]);

    #[rustfmt::skip]
    let cases: Vec<(&str, PodSpec, PodStatus, bool, PodPhase)> = vec![
        ("nothing yet", one(Always), st(vec![], vec![]), false, Pending),
        ("creating", one(Always), st(vec![], vec![cs("app", "wait:ContainerCreating", 0, None)]), false, Pending),
        ("running", one(Always), st(vec![], vec![cs("app", "run", 0, None)]), false, Running),
        ("crash loop under Always", one(Always), st(vec![], vec![cs("app", "wait:CrashLoopBackOff", 2, Some(5))]), false, Running),
        ("exited 0 under Always: restarting", one(Always), st(vec![], vec![cs("app", "term:0:Completed", 0, None)]), false, Running),
        ("exited 0 under OnFailure", one(OnFailure), st(vec![], vec![cs("app", "term:0:Completed", 0, None)]), false, Succeeded),
        ("failed under OnFailure: restarting", one(OnFailure), st(vec![], vec![cs("app", "term:1:Error", 0, None)]), false, Running),
        ("failed under Never", one(Never), st(vec![], vec![cs("app", "term:1:Error", 0, None)]), false, Failed),
        ("one done, one running", two(Never), st(vec![], vec![cs("a", "term:0:Completed", 0, None), cs("b", "run", 0, None)]), false, Running),
        ("both done, one failed, Never", two(Never), st(vec![], vec![cs("a", "term:0:Completed", 0, None), cs("b", "term:137:OOMKilled", 0, None)]), false, Failed),
        ("terminal pod under Always, all 0", one(Always), st(vec![], vec![cs("app", "term:0:Completed", 0, None)]), true, Succeeded),
        ("terminal pod under Always, failure", one(Always), st(vec![], vec![cs("app", "term:143:Error", 0, None)]), true, Failed),
        ("init running", inits(Always), st(vec![cs("i1", "run", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)]), false, Pending),
        ("init failed, Never", inits(Never), st(vec![cs("i1", "term:1:Error", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)]), false, Failed),
        ("init failed, retrying", inits(Always), st(vec![cs("i1", "wait:CrashLoopBackOff", 1, Some(3))], vec![cs("app", "wait:PodInitializing", 0, None)]), false, Pending),
        ("init done, app running", inits(Always), st(vec![cs("i1", "term:0:Completed", 0, None)], vec![cs("app", "run", 0, None)]), false, Running),
        ("sidecar not started yet", side(Always), st(vec![cs("side", "run", 0, None)], vec![cs("app", "wait:PodInitializing", 0, None)]), false, Pending),
        ("sidecar not started, no app status", side(Always), st(vec![cs("side", "run", 0, None)], vec![]), false, Pending),
        ("sidecar started, app running", side(Never), st(vec![cs("side", "run!", 0, None)], vec![cs("app", "run", 0, None)]), false, Running),
        ("app done, sidecar stopped", side(Never), st(vec![cs("side", "term:143:Error", 0, None)], vec![cs("app", "term:0:Completed", 0, None)]), false, Succeeded),
    ];
    for (name, spec, st, terminal, want) in cases {
        assert_eq!(compute_pod_phase(&spec, &st, terminal), want, "{name}");
    }
}

#[test]
fn conditions_from_containers() {
    use ConditionStatus::{False, True};
    use PodConditionType::*;
    let get = |st: &PodStatus, t| {
        let c = st.condition(t).unwrap();
        (c.status, c.reason.clone(), c.message.clone())
    };
    let sp = spec(&[("i1", false), ("side", true)], &["app"]);

    let mut st = status(
        PodPhase::Pending,
        vec![
            cs("i1", "run", 0, None),
            cs("side", "wait:PodInitializing", 0, None),
        ],
        vec![cs("app", "wait:PodInitializing", 0, None)],
        &[],
    );
    st.refresh_conditions(&sp, true, now());
    let order: Vec<PodConditionType> = st.conditions.iter().map(|c| c.type_).collect();
    assert_eq!(
        order,
        [
            PodReadyToStartContainers,
            Initialized,
            Ready,
            ContainersReady
        ]
    );
    assert_eq!(get(&st, PodReadyToStartContainers).0, True);
    assert_eq!(
        get(&st, Initialized),
        (
            False,
            Some("ContainersNotInitialized".into()),
            Some("containers with incomplete status: [i1 side]".into())
        )
    );
    assert_eq!(
        get(&st, Ready),
        (
            False,
            Some("ContainersNotReady".into()),
            Some("containers with unready status: [side app]".into())
        )
    );

    st.init_container_statuses = vec![
        cs("i1", "term:0:Completed", 0, None),
        cs("side", "run!", 0, None),
    ];
    st.container_statuses = vec![cs("app", "run!", 0, None)];
    st.phase = PodPhase::Running;
    st.refresh_conditions(&sp, true, now());
    for t in [Initialized, Ready, ContainersReady] {
        assert_eq!(get(&st, t), (True, None, None), "{t:?}");
    }

    st.phase = PodPhase::Succeeded;
    st.refresh_conditions(&sp, false, now());
    assert_eq!(get(&st, Ready), (False, Some("PodCompleted".into()), None));
    assert_eq!(get(&st, PodReadyToStartContainers).0, False);
    assert_eq!(get(&st, Initialized).0, True);
}
