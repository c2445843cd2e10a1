//! Desired pods (from the manifest files) × running pods → what the daemon must do.
//!
//! The rules of DESIGN.md "Applying changes", as pure functions:
//! - a pod in a file and not running starts; a running pod that no file declares stops;
//! - a pod-level change (volumes, namespaces, network, restart policy, init containers…)
//!   recreates the pod;
//! - a change in one app container or sidecar restarts only that container; an added
//!   container starts, a removed one stops;
//! - a change of metadata only (labels, annotations) restarts nothing;
//! - a file that fails to load keeps its last good pods: the caller passes them as desired.
//!
//! The daemon only executes the returned list (STYLE.md §2).

use std::collections::BTreeMap;

use crate::model::{Container, Pod, PodKey, PodSpec, RestartPolicy};

/// What to do with one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAction {
    /// Not running: start it.
    Start,
    /// No longer declared: stop it gracefully and clean up.
    Stop,
    /// A pod-level change: stop the pod and start the new spec.
    Recreate { reason: String },
    /// Container-level changes: the pod keeps running.
    UpdateContainers {
        /// Containers whose spec changed: stop the old one, start the new one.
        restart: Vec<String>,
        /// New containers to start.
        start: Vec<String>,
        /// Containers to stop and forget.
        stop: Vec<String>,
    },
    /// Only metadata changed: hand the new spec to the pod, restart nothing.
    UpdateMetadata,
}

/// One decision for the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub key: PodKey,
    pub action: PodAction,
}

/// Compares every desired pod with what runs. Pods are identified by `namespace/name`.
pub fn compute_actions(
    desired: &BTreeMap<PodKey, Pod>,
    running: &BTreeMap<PodKey, Pod>,
) -> Vec<Action> {
    let mut out = Vec::new();
    for (key, want) in desired {
        let action = match running.get(key) {
            None => Some(PodAction::Start),
            Some(have) => compute_pod_action(want, have),
        };
        if let Some(action) = action {
            out.push(Action {
                key: key.clone(),
                action,
            });
        }
    }
    for key in running.keys() {
        if !desired.contains_key(key) {
            out.push(Action {
                key: key.clone(),
                action: PodAction::Stop,
            });
        }
    }
    out
}

/// The smallest change that makes a pod running `have` match `want`; `None` when they match.
pub fn compute_pod_action(want: &Pod, have: &Pod) -> Option<PodAction> {
    if want == have {
        return None;
    }
    if let Some(reason) = pod_level_change(&want.spec, &have.spec) {
        return Some(PodAction::Recreate { reason });
    }
    let mut restart = Vec::new();
    let mut start = Vec::new();
    let mut stop = Vec::new();
    // Sidecars and app containers: by name.
    let sidecars = |s: &PodSpec| -> Vec<Container> {
        s.init_containers
            .iter()
            .filter(|c| is_sidecar(c))
            .cloned()
            .collect()
    };
    let (want_sc, have_sc) = (sidecars(&want.spec), sidecars(&have.spec));
    for (wants, haves) in [
        (&want_sc, &have_sc),
        (&want.spec.containers, &have.spec.containers),
    ] {
        for w in wants.iter() {
            match haves.iter().find(|h| h.name == w.name) {
                None => start.push(w.name.clone()),
                Some(h) if h != w => restart.push(w.name.clone()),
                Some(_) => {}
            }
        }
        for h in haves.iter() {
            if !wants.iter().any(|w| w.name == h.name) {
                stop.push(h.name.clone());
            }
        }
    }
    if restart.is_empty() && start.is_empty() && stop.is_empty() {
        return Some(PodAction::UpdateMetadata);
    }
    Some(PodAction::UpdateContainers {
        restart,
        start,
        stop,
    })
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy == Some(RestartPolicy::Always)
}

/// Why a change needs a new pod, if it does.
fn pod_level_change(want: &PodSpec, have: &PodSpec) -> Option<String> {
    // Everything but the container lists is pod-level.
    let strip = |s: &PodSpec| PodSpec {
        init_containers: Vec::new(),
        containers: Vec::new(),
        ..s.clone()
    };
    if strip(want) != strip(have) {
        return Some(format!(
            "pod-level fields changed ({})",
            changed_pod_fields(want, have).join(", ")
        ));
    }
    // Init containers that run to completion define how the pod starts: any change to them,
    // and any change of the init order, needs a new pod.
    let inits = |s: &PodSpec| -> Vec<Container> {
        s.init_containers
            .iter()
            .filter(|c| !is_sidecar(c))
            .cloned()
            .collect()
    };
    if inits(want) != inits(have) {
        return Some("init containers changed".into());
    }
    let order =
        |s: &PodSpec| -> Vec<String> { s.init_containers.iter().map(|c| c.name.clone()).collect() };
    if order(want)
        .iter()
        .filter(|n| order(have).contains(n))
        .collect::<Vec<_>>()
        != order(have)
            .iter()
            .filter(|n| order(want).contains(n))
            .collect::<Vec<_>>()
    {
        return Some("init container order changed".into());
    }
    None
}

/// The names of the pod-level fields that differ, for messages.
fn changed_pod_fields(want: &PodSpec, have: &PodSpec) -> Vec<&'static str> {
    let w = serde_json::to_value(want).unwrap_or_default();
    let h = serde_json::to_value(have).unwrap_or_default();
    let mut out = Vec::new();
    if let (Some(w), Some(h)) = (w.as_object(), h.as_object()) {
        for (k, v) in w.iter().chain(h.iter()) {
            if k == "containers" || k == "initContainers" {
                continue;
            }
            if w.get(k) != h.get(k)
                && let Some(name) = crate::manifest::fields::k8s_fields("PodSpec")
                    .and_then(|f| f.iter().find(|f| **f == k.as_str()))
                && !out.contains(name)
            {
                out.push(*name);
            }
            let _ = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::load_bytes;

    const BASE: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  initContainers:
  - name: setup
    image: busybox
    command: ['true']
  - name: proxy
    image: busybox
    restartPolicy: Always
    command: [sleep, '1000']
  containers:
  - name: a
    image: busybox
    command: [sleep, '1000']
  - name: b
    image: busybox
    command: [sleep, '2000']
";

    fn pod(text: &str) -> Pod {
        load_bytes("t.yaml", text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0)
    }

    fn action(edit: impl Fn(&str) -> String) -> Option<PodAction> {
        compute_pod_action(&pod(&edit(BASE)), &pod(BASE))
    }

    type Edit = Box<dyn Fn(&str) -> String>;

    #[test]
    fn smallest_disruption() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let table: Vec<(&str, Edit, Option<PodAction>)> = vec![
            ("same text", Box::new(|s: &str| s.to_string()), None),
            (
                "same meaning",
                Box::new(|s: &str| s.replace("metadata:\n", "metadata:\n  namespace: default\n")),
                None,
            ),
            (
                "label only",
                Box::new(|s: &str| s.replace("app: web", "app: web2")),
                Some(PodAction::UpdateMetadata),
            ),
            (
                "one app container",
                Box::new(|s: &str| s.replace("'2000'", "'3000'")),
                Some(PodAction::UpdateContainers {
                    restart: names(&["b"]),
                    start: vec![],
                    stop: vec![],
                }),
            ),
            (
                "a sidecar",
                Box::new(|s: &str| {
                    s.replace(
                        "sleep, '1000']\n  containers",
                        "sleep, '999']\n  containers",
                    )
                }),
                Some(PodAction::UpdateContainers {
                    restart: names(&["proxy"]),
                    start: vec![],
                    stop: vec![],
                }),
            ),
            (
                "container added",
                Box::new(|s: &str| format!("{s}  - name: c\n    image: busybox\n")),
                Some(PodAction::UpdateContainers {
                    restart: vec![],
                    start: names(&["c"]),
                    stop: vec![],
                }),
            ),
            (
                "container removed",
                Box::new(|s: &str| {
                    s.replace(
                        "  - name: b\n    image: busybox\n    command: [sleep, '2000']\n",
                        "",
                    )
                }),
                Some(PodAction::UpdateContainers {
                    restart: vec![],
                    start: vec![],
                    stop: names(&["b"]),
                }),
            ),
            (
                "restart policy",
                Box::new(|s: &str| s.replace("spec:\n", "spec:\n  restartPolicy: Never\n")),
                Some(PodAction::Recreate {
                    reason: "pod-level fields changed (restartPolicy)".into(),
                }),
            ),
            (
                "volumes",
                Box::new(|s: &str| {
                    s.replace(
                        "spec:\n",
                        "spec:\n  volumes:\n  - name: v\n    emptyDir: {}\n",
                    )
                }),
                Some(PodAction::Recreate {
                    reason: "pod-level fields changed (volumes)".into(),
                }),
            ),
            (
                "host network",
                Box::new(|s: &str| s.replace("spec:\n", "spec:\n  hostNetwork: true\n")),
                Some(PodAction::Recreate {
                    reason: "pod-level fields changed (hostNetwork)".into(),
                }),
            ),
            (
                "an init container",
                Box::new(|s: &str| s.replace("command: ['true']", "command: ['false']")),
                Some(PodAction::Recreate {
                    reason: "init containers changed".into(),
                }),
            ),
        ];
        for (name, edit, want) in table {
            assert_eq!(action(edit), want, "{name}");
        }
    }

    #[test]
    fn files_and_running_pods() {
        let web = pod(BASE);
        let other = pod(&BASE.replace("name: web", "name: db"));
        let key = |p: &Pod| p.key();
        let desired: BTreeMap<_, _> = [(key(&web), web.clone())].into();
        let running: BTreeMap<_, _> = [(key(&other), other.clone())].into();
        assert_eq!(
            compute_actions(&desired, &running),
            vec![
                Action {
                    key: key(&web),
                    action: PodAction::Start
                },
                Action {
                    key: key(&other),
                    action: PodAction::Stop
                },
            ]
        );
        assert_eq!(compute_actions(&desired, &desired), vec![]);
    }
}
