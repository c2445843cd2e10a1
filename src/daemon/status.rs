//! A running pod as a Kubernetes Pod object: the spec as loaded, podsup's annotations and a
//! `status` derived from what the shim publishes (`status.json`). Pure.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::model::Pod;
use crate::model::{ContainerStatus, PodStatus, Time, compute_pod_phase};

/// The annotation naming the file a pod comes from.
pub const SOURCE_ANNOTATION: &str = "podsup.io/source";

/// What the daemon knows of one pod, for status.
#[derive(Clone, Debug)]
pub struct PodView {
    pub pod: Pod,
    pub uid: String,
    pub file: String,
    pub started: SystemTime,
    pub stopping: bool,
    pub run_dir: std::path::PathBuf,
    pub log_dir: Option<std::path::PathBuf>,
}

/// The shim's container statuses (its `status.json`) as Kubernetes `ContainerStatus`es:
/// `(init containers, containers)`. Unreadable entries are skipped.
pub fn compute_container_statuses(shim: &Value) -> (Vec<ContainerStatus>, Vec<ContainerStatus>) {
    let mut init = Vec::new();
    let mut app = Vec::new();
    let published = shim.get("status").is_some_and(Value::is_object);
    for mut c in all_statuses(shim) {
        let is_init = c.get("init").and_then(Value::as_bool).unwrap_or(false);
        if let Some(obj) = c.as_object_mut() {
            obj.remove("init");
            for k in ["state", "lastState"] {
                let fix = match obj.get(k) {
                    None | Some(Value::Null) => Some(json!({})),
                    Some(Value::Object(m)) => {
                        // {"terminated": null} from a container that never ended.
                        let m: serde_json::Map<_, _> = m
                            .iter()
                            .filter(|(_, v)| !v.is_null())
                            .map(|(a, b)| (a.clone(), b.clone()))
                            .collect();
                        Some(Value::Object(m))
                    }
                    _ => None,
                };
                if let Some(v) = fix {
                    obj.insert(k.into(), v);
                }
            }
        }
        let Ok(mut cs) = serde_json::from_value::<ContainerStatus>(c) else {
            continue;
        };
        if !published {
            // The first shim has no probes: a running container is ready, and started.
            cs.ready = cs.state.running.is_some();
            cs.started = Some(cs.state.running.is_some());
        }
        if is_init {
            init.push(cs);
        } else {
            app.push(cs);
        }
    }
    (init, app)
}

/// Every container status of a shim's `status.json`, each with an `init` flag. Two forms
/// are read: the first shim's (`containerStatuses` with `init`), and `PublishedStatus`
/// (`{"status": <Kubernetes PodStatus>, "restartHistory": …}`) of the lifecycle shim.
pub fn all_statuses(shim: &Value) -> Vec<Value> {
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match shim.get("status").filter(|s| s.is_object()) {
        Some(st) => {
            let mut out = Vec::new();
            for (key, init) in [
                ("initContainerStatuses", true),
                ("containerStatuses", false),
            ] {
                for mut c in list(st, key) {
                    if let Some(o) = c.as_object_mut() {
                        o.insert("init".into(), Value::Bool(init));
                    }
                    out.push(c);
                }
            }
            out
        }
        None => list(shim, "containerStatuses"),
    }
}

/// True when the shim's last status says the pod is over: every container terminated and
/// none waiting for a restart (a `restartPolicy: Never`/`OnFailure` pod that completed).
/// A shim that exits after that did its job; any other exit is a death.
pub fn compute_pod_finished(shim: &Value) -> bool {
    if let Some(phase) = shim.get("status").and_then(|s| s.get("phase")) {
        return phase == "Succeeded" || phase == "Failed";
    }
    let list = all_statuses(shim);
    !list.is_empty()
        && list.iter().all(|c| {
            c.get("state")
                .and_then(|s| s.get("terminated"))
                .is_some_and(|t| !t.is_null())
        })
}

/// One container event derived from two successive shim statuses: (warning, reason,
/// message).
pub type ContainerEvent = (bool, String, String);

/// What changed for each container between two of the shim's `status.json`: started,
/// terminated (with its reason: Completed, Error, OOMKilled, StartError → Failed), waiting
/// in CrashLoopBackOff; and the shim's own events (`events`: Unhealthy, Killing,
/// FailedPostStartHook…) numbered after the last one seen. Pure; the daemon turns them into
/// events.
pub fn compute_container_events(old: Option<&Value>, new: &Value) -> Vec<ContainerEvent> {
    let list = |v: Option<&Value>| -> Vec<Value> { v.map(all_statuses).unwrap_or_default() };
    let before = list(old);
    let kind = |c: &Value| -> &'static str {
        let st = &c["state"];
        if st.get("running").is_some_and(|v| !v.is_null()) {
            "running"
        } else if st.get("terminated").is_some_and(|v| !v.is_null()) {
            "terminated"
        } else {
            "waiting"
        }
    };
    // The latest termination and what identifies it (restart count, state or lastState).
    let termination = |c: &Value| -> Option<(Value, (i64, String, bool))> {
        let rc = c["restartCount"].as_i64().unwrap_or(0);
        let (t, in_state) = match c["state"].get("terminated").filter(|v| !v.is_null()) {
            Some(t) => (t.clone(), true),
            None => (
                c.get("lastState")
                    .and_then(|l| l.get("terminated"))
                    .filter(|v| !v.is_null())?
                    .clone(),
                false,
            ),
        };
        let id = (rc, t.to_string(), in_state);
        Some((t, id))
    };
    let mut out = Vec::new();
    // The shim's own events (probe and hook failures, kills) it has not reported yet.
    let seq = |e: &Value| e["seq"].as_u64().unwrap_or(0);
    let seen = old
        .and_then(|o| o["events"].as_array())
        .and_then(|l| l.iter().map(seq).max())
        .unwrap_or(0);
    // A new shim for the same pod numbers from 1 again.
    let latest = new["events"]
        .as_array()
        .and_then(|l| l.iter().map(seq).max())
        .unwrap_or(0);
    let seen = if latest < seen { 0 } else { seen };
    let mut shim_events = Vec::new();
    for e in new["events"].as_array().into_iter().flatten() {
        if seq(e) > seen {
            shim_events.push((
                e["warning"].as_bool().unwrap_or(false),
                e["reason"].as_str().unwrap_or("").to_string(),
                format!(
                    "container {}: {}",
                    e["container"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    for c in list(Some(new)) {
        let Some(name) = c["name"].as_str() else {
            continue;
        };
        let o = before.iter().find(|b| b["name"] == name);
        let rc = c["restartCount"].as_i64();
        let restarted = o.is_some_and(|o| o["restartCount"].as_i64() != rc);
        if let Some((t, id)) = termination(&c)
            && o.and_then(termination).map(|x| x.1) != Some(id)
        {
            let code = t["exitCode"].as_i64().unwrap_or(0);
            let reason = t["reason"].as_str().unwrap_or("Error").to_string();
            let mut msg = format!("container {name} exited with code {code} ({reason})");
            if let Some(m) = t["message"].as_str().filter(|m| !m.is_empty()) {
                msg.push_str(&format!(": {}", m.trim_end()));
            }
            let reason = if reason == "StartError" {
                "Failed".to_string()
            } else {
                reason
            };
            out.push((code != 0, reason, msg));
        }
        let k = kind(&c);
        if k == "running" && (o.is_none_or(|o| kind(o) != "running") || restarted) {
            out.push((false, "Started".into(), format!("container {name} started")));
        }
        // Kubernetes' BackOff is "back-off restarting failed container": a restart after
        // a success (a requested restart, OnFailure…) is not one.
        let backoff = |c: &Value| {
            c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                && c["lastState"]["terminated"]["exitCode"]
                    .as_i64()
                    .is_some_and(|code| code != 0)
        };
        if backoff(&c) && (o.is_none_or(|o| !backoff(o)) || restarted) {
            out.push((
                true,
                "BackOff".into(),
                format!("back-off restarting failed container {name}"),
            ));
        }
    }
    // Shim events first: a probe failure and the kill happen before the exit they cause.
    shim_events.extend(out);
    shim_events
}

/// The Pod object of `podsup status -o json`.
pub fn compute_pod_object(view: &PodView, shim: Option<&Value>, now: SystemTime) -> Value {
    // The lifecycle shim publishes a whole Kubernetes PodStatus: phase, conditions, reason.
    let published: Option<PodStatus> = shim
        .and_then(|s| s.get("status"))
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut status = published.clone().unwrap_or_default();
    if let Some(s) = shim {
        let (init, app) = compute_container_statuses(s);
        status.init_container_statuses = init;
        status.container_statuses = app;
    }
    for (i, c) in view.pod.spec.containers.iter().enumerate() {
        if !status.container_statuses.iter().any(|s| s.name == c.name) {
            status.container_statuses.insert(
                i.min(status.container_statuses.len()),
                ContainerStatus {
                    name: c.name.clone(),
                    state: crate::model::ContainerState::waiting("ContainerCreating", None),
                    image: c.image.clone(),
                    ..Default::default()
                },
            );
        }
    }
    for cs in status
        .container_statuses
        .iter_mut()
        .chain(status.init_container_statuses.iter_mut())
    {
        if let Some(c) = view
            .pod
            .spec
            .all_containers()
            .find(|(_, c)| c.name == cs.name)
        {
            cs.image = c.1.image.clone();
        }
    }
    if published.is_none() {
        status.phase = compute_pod_phase(&view.pod.spec, &status, view.stopping);
        status.refresh_conditions(&view.pod.spec, shim.is_some(), now);
    }
    status
        .start_time
        .get_or_insert_with(|| Time::from_system(view.started));
    status.host_ip.get_or_insert_with(|| "127.0.0.1".into());
    status.pod_ip.get_or_insert_with(|| "127.0.0.1".into());
    let mut obj = serde_json::to_value(&view.pod).unwrap_or_else(|_| json!({}));
    let meta = obj
        .as_object_mut()
        .and_then(|o| {
            o.entry("metadata")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        })
        .map(|m| {
            m.insert("uid".into(), json!(view.uid));
            m.insert("namespace".into(), json!(view.pod.key().namespace));
            m.insert(
                "creationTimestamp".into(),
                json!(Time::from_system(view.started).0),
            );
            if view.stopping {
                m.insert("deletionTimestamp".into(), json!(Time::from_system(now).0));
            }
            let ann = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = ann.as_object_mut() {
                a.insert(SOURCE_ANNOTATION.into(), json!(view.file));
            }
        });
    let _ = meta;
    if let Some(o) = obj.as_object_mut() {
        o.insert(
            "status".into(),
            serde_json::to_value(&status).unwrap_or_else(|_| json!({})),
        );
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        crate::manifest::load_bytes(
            "web.yaml",
            b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n",
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn shim_status_becomes_a_kubernetes_status() {
        let shim = json!({"uid": "u", "containerStatuses": [
            {"name": "a", "state": {"running": {}}, "lastState": {"terminated": null}, "restartCount": 0, "init": false},
            {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": ""}}, "restartCount": 3, "init": false},
        ]});
        let view = PodView {
            pod: pod(),
            uid: "u".into(),
            file: "/etc/pods/web.yaml".into(),
            started: SystemTime::UNIX_EPOCH,
            stopping: false,
            run_dir: "/run/podsup/pods/u".into(),
            log_dir: None,
        };
        let obj = compute_pod_object(&view, Some(&shim), SystemTime::UNIX_EPOCH);
        assert_eq!(
            obj["metadata"]["annotations"][SOURCE_ANNOTATION],
            "/etc/pods/web.yaml"
        );
        assert_eq!(obj["metadata"]["uid"], "u");
        assert_eq!(obj["status"]["phase"], "Running");
        let cs = &obj["status"]["containerStatuses"];
        assert_eq!(cs[0]["ready"], true);
        assert_eq!(cs[1]["restartCount"], 3);
        assert_eq!(cs[1]["lastState"]["terminated"]["exitCode"], 1);
        let spec: crate::model::PodSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        let st: PodStatus = serde_json::from_value(obj["status"].clone()).unwrap();
        let cols = crate::model::compute_pod_columns(&spec, &st, false, SystemTime::UNIX_EPOCH);
        assert_eq!(cols.ready, "1/2");
        assert_eq!(cols.status, "CrashLoopBackOff");
    }

    #[test]
    fn container_events_from_status_changes() {
        let st = |a: Value, rc: i64, last: Value| {
            json!({"containerStatuses": [
                {"name": "a", "state": a, "lastState": last, "restartCount": rc},
            ]})
        };
        let waiting = json!({"waiting": {"reason": "PodInitializing"}});
        let running = json!({"running": {}});
        let err = json!({"terminated": {"exitCode": 1, "reason": "Error", "message": ""}});
        let s0 = st(waiting.clone(), 0, json!({"terminated": null}));
        let s1 = st(running.clone(), 0, json!({"terminated": null}));
        let ev = compute_container_events(Some(&s0), &s1);
        assert_eq!(
            ev,
            vec![(false, "Started".into(), "container a started".into())]
        );
        assert!(compute_container_events(Some(&s1), &s1).is_empty());
        // It fails and waits: one termination, one back-off.
        let s2 = st(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            1,
            err.clone(),
        );
        let ev = compute_container_events(Some(&s1), &s2);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0].1, "Error");
        assert!(ev[0].0);
        assert_eq!(ev[1].1, "BackOff");
        // A restart after a success (asked for) is no back-off.
        let ok = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        let s2b = st(json!({"waiting": {"reason": "CrashLoopBackOff"}}), 1, ok);
        let ev = compute_container_events(Some(&s1), &s2b);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].1, "Completed");
        // Runs again: started, the old termination is not reported twice.
        let s3 = st(running.clone(), 1, err.clone());
        let ev = compute_container_events(Some(&s2), &s3);
        assert_eq!(
            ev,
            vec![(false, "Started".into(), "container a started".into())]
        );
        // The same failure again is a new termination (the restart count moved).
        let s4 = st(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            2,
            err.clone(),
        );
        assert_eq!(compute_container_events(Some(&s3), &s4).len(), 2);
        // Done for good.
        let done = st(
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
            0,
            json!(null),
        );
        let ev = compute_container_events(Some(&s1), &done);
        assert_eq!(
            ev,
            vec![(
                false,
                "Completed".into(),
                "container a exited with code 0 (Completed)".into()
            )]
        );
    }

    #[test]
    fn published_status_of_the_lifecycle_shim_is_read_too() {
        let shim = json!({"status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                 "lastState": {}, "ready": false, "restartCount": 0, "image": "", "imageID": ""}],
            "containerStatuses": [
                {"name": "a", "state": {"running": {"startedAt": "2026-11-25T03:00:00Z"}},
                 "lastState": {}, "ready": false, "restartCount": 2, "image": "", "imageID": "", "started": true},
                {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-25T03:01:00Z"}},
                 "ready": false, "restartCount": 5, "image": "", "imageID": ""}]},
            "restartHistory": []});
        let (init, app) = compute_container_statuses(&shim);
        assert_eq!(init.len(), 1);
        assert_eq!(app.len(), 2);
        // Readiness is the shim's (probes), not "running".
        assert!(!app[0].ready);
        let view = PodView {
            pod: pod(),
            uid: "u".into(),
            file: "web.yaml".into(),
            started: SystemTime::UNIX_EPOCH,
            stopping: false,
            run_dir: "/x".into(),
            log_dir: None,
        };
        let obj = compute_pod_object(&view, Some(&shim), SystemTime::UNIX_EPOCH);
        assert_eq!(obj["status"]["phase"], "Running");
        assert_eq!(obj["status"]["conditions"][0]["status"], "False");
        assert_eq!(obj["status"]["containerStatuses"][1]["restartCount"], 5);
        assert!(!compute_pod_finished(&shim));
        let mut done = shim.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(compute_pod_finished(&done));
        let ev = compute_container_events(None, &shim);
        assert!(ev.iter().any(|e| e.1 == "BackOff"), "{ev:?}");
    }

    #[test]
    fn shim_events_are_reported_once() {
        let ev = |seq: u64, reason: &str| {
            json!({"seq": seq, "time": "t", "container": "web", "warning": true,
                   "reason": reason, "message": "Liveness probe failed: HTTP probe failed with statuscode: 500"})
        };
        let s1 = json!({"status": {"containerStatuses": []}, "events": [ev(1, "Unhealthy")]});
        let s2 = json!({"status": {"containerStatuses": []},
                        "events": [ev(1, "Unhealthy"), ev(2, "Unhealthy"), ev(3, "Killing")]});
        let got = compute_container_events(None, &s1);
        assert_eq!(
            got,
            vec![(
                true,
                "Unhealthy".into(),
                "container web: Liveness probe failed: HTTP probe failed with statuscode: 500"
                    .into()
            )]
        );
        let got = compute_container_events(Some(&s1), &s2);
        assert_eq!(
            got.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
            vec!["Unhealthy", "Killing"]
        );
        assert!(compute_container_events(Some(&s2), &s2).is_empty());
    }

    #[test]
    fn finished_pods() {
        let done = json!({"containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        ]});
        assert!(compute_pod_finished(&done));
        let restarting = json!({"containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0}}},
            {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        ]});
        assert!(!compute_pod_finished(&restarting));
        assert!(!compute_pod_finished(&json!({"containerStatuses": []})));
        assert!(!compute_pod_finished(&json!({})));
    }

    #[test]
    fn a_pod_without_shim_status_is_creating() {
        let view = PodView {
            pod: pod(),
            uid: "u".into(),
            file: "web.yaml".into(),
            started: SystemTime::UNIX_EPOCH,
            stopping: true,
            run_dir: "/x".into(),
            log_dir: None,
        };
        let obj = compute_pod_object(&view, None, SystemTime::UNIX_EPOCH);
        assert_eq!(
            obj["status"]["containerStatuses"][1]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
    }
}
