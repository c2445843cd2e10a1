//! Kubernetes' `PodStatus` as the shim publishes it, podsup's restart history, and the pure
//! rules that turn a status into `kubectl get pods` columns (READY, STATUS, RESTARTS).
//!
//! Field names are Kubernetes' own on the wire (`-o json` must read like `kubectl get -o
//! json`). Times are `metav1.Time` text: RFC 3339, seconds, UTC. Pure: no I/O, no clock;
//! `now` is an argument wherever "ago" is computed.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::time::{format_rfc3339, parse_rfc3339};
use super::{PodSpec, RestartPolicy};

/// Kubernetes reasons podsup reports (`state.waiting.reason`, `state.terminated.reason`,
/// `status.reason`), spelled as the kubelet spells them.
pub mod reason {
    /// Terminated with exit code 0.
    pub const COMPLETED: &str = "Completed";
    /// Terminated with a non-zero exit code or by a signal.
    pub const ERROR: &str = "Error";
    /// Killed by the kernel's OOM killer in the container's cgroup.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// The process could not be started (failure before exec).
    pub const START_ERROR: &str = "StartError";
    /// Waiting for its back-off before the next restart.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// Waiting while its sandbox/rootfs is being prepared.
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// An app container waiting for the init containers.
    pub const POD_INITIALIZING: &str = "PodInitializing";
    /// Pod reason: `activeDeadlineSeconds` passed.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// Pod reason at admission: requests exceed the machine's memory.
    pub const OUT_OF_MEMORY: &str = "OutOfmemory";
    /// Pod reason at admission: requests exceed the machine's CPUs.
    pub const OUT_OF_CPU: &str = "OutOfcpu";
    /// Condition reason: some containers are not ready.
    pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
    /// Condition reason: init containers have not all completed.
    pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
    /// Condition reason once the pod has terminated (Succeeded/Failed).
    pub const POD_COMPLETED: &str = "PodCompleted";
    /// Event: a probe failed.
    pub const UNHEALTHY: &str = "Unhealthy";
    /// Event: the container is being killed (probe failure, hook failure).
    pub const KILLING: &str = "Killing";
    /// Event: the postStart hook failed; the container is killed.
    pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
    /// Event: the preStop hook failed; the stop goes on.
    pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";
}

/// A `metav1.Time`: RFC 3339 text with seconds precision in UTC.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Time(pub String);

impl Time {
    pub fn from_system(t: SystemTime) -> Time {
        Time(format_rfc3339(t))
    }
    /// The time it names, `None` if the text is not RFC 3339.
    pub fn to_system(&self) -> Option<SystemTime> {
        parse_rfc3339(&self.0)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// Pod conditions the kubelet sets. podsup has no scheduler, so it never sets `PodScheduled`
/// itself, but keeps the type so that a status from elsewhere round-trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PodConditionType {
    PodReadyToStartContainers,
    Initialized,
    ContainersReady,
    Ready,
    PodScheduled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: PodConditionType,
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIp {
    pub ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: PodPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// e.g. `DeadlineExceeded`, `OutOfmemory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
}

impl PodStatus {
    pub fn condition(&self, t: PodConditionType) -> Option<&PodCondition> {
        self.conditions.iter().find(|c| c.type_ == t)
    }

    fn condition_true(&self, t: PodConditionType) -> bool {
        self.condition(t)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// Sets a condition; `lastTransitionTime` moves only when the status changes, as the
    /// kubelet does, so that publishing the same status twice changes nothing.
    pub fn set_condition(
        &mut self,
        t: PodConditionType,
        status: ConditionStatus,
        reason: Option<&str>,
        message: Option<&str>,
        now: SystemTime,
    ) {
        let reason = reason.map(str::to_owned);
        let message = message.map(str::to_owned);
        match self.conditions.iter_mut().find(|c| c.type_ == t) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(Time::from_system(now));
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => self.conditions.push(PodCondition {
                type_: t,
                status,
                last_probe_time: None,
                last_transition_time: Some(Time::from_system(now)),
                reason,
                message,
            }),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(default)]
    pub last_state: ContainerState,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i32,
    #[serde(default)]
    pub image: String,
    #[serde(default, rename = "imageID")]
    pub image_id: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// One of waiting, running, terminated is set (Kubernetes' shape: a struct of options; an
/// empty `lastState` is `{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

impl ContainerState {
    pub fn waiting(reason: &str, message: Option<String>) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message,
            }),
            ..Default::default()
        }
    }
    pub fn running(started_at: SystemTime) -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time::from_system(started_at)),
            }),
            ..Default::default()
        }
    }
    pub fn terminated(t: ContainerStateTerminated) -> ContainerState {
        ContainerState {
            terminated: Some(t),
            ..Default::default()
        }
    }
    pub fn is_empty(&self) -> bool {
        self.waiting.is_none() && self.running.is_none() && self.terminated.is_none()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateWaiting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateRunning {
    #[serde(default)]
    pub started_at: Option<Time>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signal: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub started_at: Option<Time>,
    #[serde(default)]
    pub finished_at: Option<Time>,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// The reason the kubelet gives a termination: OOMKilled if the kernel's OOM killer hit the
/// container, Completed for exit 0, Error otherwise (a signal included).
pub fn compute_termination_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        reason::OOM_KILLED
    } else if exit_code == 0 {
        reason::COMPLETED
    } else {
        reason::ERROR
    }
}

/// How many terminations per container the restart history keeps.
pub const RESTART_HISTORY_LEN: usize = 10;

/// One termination of a container, for podsup's restart history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Termination {
    /// The container's restartCount while it ran (its log file is `<restartCount>.log`).
    pub restart_count: i32,
    #[serde(default)]
    pub started_at: Option<Time>,
    pub finished_at: Time,
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signal: i32,
    pub reason: String,
}

/// podsup's own record of one container's last terminations, oldest first. Kubernetes keeps
/// only `lastState`; this is published next to the `PodStatus`, not inside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartHistory {
    pub name: String,
    #[serde(default)]
    pub terminations: Vec<Termination>,
    /// While the container waits in CrashLoopBackOff: when its next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_at: Option<Time>,
}

impl RestartHistory {
    /// Appends a termination, dropping the oldest beyond `keep`.
    pub fn record(&mut self, t: Termination, keep: usize) {
        self.terminations.push(t);
        if self.terminations.len() > keep {
            let extra = self.terminations.len() - keep;
            self.terminations.drain(..extra);
        }
    }
}

/// What the shim publishes (`status.json` under `--run/pods/<uid>/`): the Kubernetes status
/// and podsup's history, side by side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedStatus {
    pub status: PodStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_history: Vec<RestartHistory>,
    /// The shim's latest container events (probe failures, hook failures, kills), oldest
    /// first, numbered: the daemon reports those it has not seen yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ShimEvent>,
}

/// How many events the shim keeps in its published status.
pub const SHIM_EVENTS_LEN: usize = 32;

/// One event the shim saw itself (the kubelet's `Unhealthy`, `Killing`,
/// `FailedPostStartHook`, `FailedPreStopHook`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimEvent {
    /// Increases by one per event for the shim's lifetime.
    pub seq: u64,
    pub time: Time,
    pub container: String,
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The kubelet's pod phase from the containers' statuses (`getPhase` in
/// `pkg/kubelet/kubelet_pods.go`), re-derived: Pending while an init container has not
/// completed or an app container has not started; Running while one runs (or, under
/// `Always`, is restarting); Succeeded/Failed once all have stopped for good.
/// `pod_is_terminal`: the pod will not restart anything any more (deleted, deadline).
pub fn compute_pod_phase(spec: &PodSpec, status: &PodStatus, pod_is_terminal: bool) -> PodPhase {
    let find = |list: &'_ [ContainerStatus], name: &str| -> Option<ContainerStatus> {
        list.iter().find(|c| c.name == name).cloned()
    };
    let last_failed =
        |cs: &ContainerStatus| cs.last_state.terminated.as_ref().map(|t| t.exit_code != 0);
    let (mut pending_init, mut failed_init) = (0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in &spec.init_containers {
        let Some(cs) = find(&status.init_container_statuses, &c.name) else {
            if c.restart_policy == Some(RestartPolicy::Always) {
                unknown += 1;
            }
            pending_init += 1;
            continue;
        };
        if c.restart_policy == Some(RestartPolicy::Always) {
            // A sidecar counts as started once it runs and its startup finished.
            if cs.state.running.is_some() {
                if cs.started != Some(true) {
                    pending_init += 1;
                }
                running += 1;
            } else if cs.state.terminated.is_none() && cs.last_state.terminated.is_none() {
                pending_init += 1;
                waiting += 1;
            }
            continue;
        }
        if cs.state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &cs.state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else {
            match last_failed(&cs) {
                Some(true) => failed_init += 1,
                Some(false) => {}
                None => pending_init += 1,
            }
        }
    }
    for c in &spec.containers {
        let Some(cs) = find(&status.container_statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        if cs.state.running.is_some() {
            running += 1;
        } else if let Some(t) = &cs.state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if cs.state.waiting.is_some() {
            if cs.last_state.terminated.is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = spec.restart_policy();
    if failed_init > 0 && policy == RestartPolicy::Never {
        return PodPhase::Failed;
    }
    if pending_init > 0 || waiting > 0 {
        return PodPhase::Pending;
    }
    if running > 0 && unknown == 0 {
        return PodPhase::Running;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal || policy != RestartPolicy::Always {
            if stopped == succeeded {
                return PodPhase::Succeeded;
            }
            if pod_is_terminal || policy == RestartPolicy::Never {
                return PodPhase::Failed;
            }
        }
        // Always: restarting; OnFailure with a failure: restarting.
        return PodPhase::Running;
    }
    PodPhase::Pending
}

impl PodStatus {
    /// Sets the four conditions the kubelet maintains from the container statuses and the
    /// phase (`pkg/kubelet/status/generate.go`), re-derived. `sandbox_ready`: the pod's
    /// namespaces (and network, when there is one) are set up. No readiness gates.
    pub fn refresh_conditions(&mut self, spec: &PodSpec, sandbox_ready: bool, now: SystemTime) {
        use ConditionStatus::{False, True};
        let done = self.phase == PodPhase::Succeeded;
        let bool_status = |b: bool| if b { True } else { False };
        self.set_condition(
            PodConditionType::PodReadyToStartContainers,
            bool_status(sandbox_ready),
            None,
            None,
            now,
        );

        // Initialized: every init container completed (sidecars: started), or an app
        // container already started once.
        let any_app_started = self.container_statuses.iter().any(|c| {
            c.state.running.is_some() || c.state.terminated.is_some() || c.restart_count > 0
        });
        let mut incomplete = Vec::new();
        for c in &spec.init_containers {
            let cs = self
                .init_container_statuses
                .iter()
                .find(|s| s.name == c.name);
            let complete = match (cs, c.restart_policy == Some(RestartPolicy::Always)) {
                (None, _) => false,
                (Some(cs), true) => cs.started == Some(true),
                (Some(cs), false) => cs
                    .state
                    .terminated
                    .as_ref()
                    .is_some_and(|t| t.exit_code == 0),
            };
            if !complete {
                incomplete.push(c.name.as_str());
            }
        }
        let (st, why, msg) = if any_app_started || incomplete.is_empty() {
            (True, None, None)
        } else if done {
            (False, Some(reason::POD_COMPLETED), None)
        } else {
            let m = format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            );
            (False, Some(reason::CONTAINERS_NOT_INITIALIZED), Some(m))
        };
        self.set_condition(PodConditionType::Initialized, st, why, msg.as_deref(), now);

        // ContainersReady and Ready: every sidecar and app container ready.
        let mut unready = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .filter(|c| c.restart_policy == Some(RestartPolicy::Always))
            .map(|c| (c, &self.init_container_statuses));
        let apps = spec
            .containers
            .iter()
            .map(|c| (c, &self.container_statuses));
        for (c, list) in sidecars.chain(apps) {
            if !list.iter().any(|s| s.name == c.name && s.ready) {
                unready.push(c.name.as_str());
            }
        }
        let (st, why, msg) = if done {
            (False, Some(reason::POD_COMPLETED), None)
        } else if unready.is_empty() {
            (True, None, None)
        } else {
            let m = format!("containers with unready status: [{}]", unready.join(" "));
            (False, Some(reason::CONTAINERS_NOT_READY), Some(m))
        };
        // Kubernetes lists Ready before ContainersReady.
        self.set_condition(PodConditionType::Ready, st, why, msg.as_deref(), now);
        self.set_condition(
            PodConditionType::ContainersReady,
            st,
            why,
            msg.as_deref(),
            now,
        );
    }
}

/// The READY, STATUS and RESTARTS cells of `kubectl get pods`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodColumns {
    /// `1/2`
    pub ready: String,
    /// `Running`, `Init:0/2`, `CrashLoopBackOff`, …
    pub status: String,
    /// `3 (2m ago)` or `0`
    pub restarts: String,
}

/// kubectl's rules for a pod row (`printPod` in kubernetes `pkg/printers/internalversion`),
/// re-derived: `deleting` stands for a deletion timestamp (the pod is being stopped).
pub fn compute_pod_columns(
    spec: &PodSpec,
    status: &PodStatus,
    deleting: bool,
    now: SystemTime,
) -> PodColumns {
    let sidecar = |name: &str| {
        spec.init_containers
            .iter()
            .any(|c| c.name == name && c.restart_policy == Some(RestartPolicy::Always))
    };
    let total = spec.containers.len()
        + spec
            .init_containers
            .iter()
            .filter(|c| sidecar(&c.name))
            .count();
    let mut ready = 0usize;
    let mut text = status
        .reason
        .clone()
        .unwrap_or_else(|| status.phase.as_str().to_owned());

    // RESTARTS: all restarts while initializing; once initialized only sidecars' and app
    // containers' (finished init containers no longer count), with the latest lastState end.
    let mut restarts: i64 = 0;
    let mut last_restart: Option<SystemTime> = None;
    let mut sidecar_restarts: i64 = 0;
    let mut sidecar_last: Option<SystemTime> = None;
    let finished = |cs: &ContainerStatus| {
        cs.last_state
            .terminated
            .as_ref()
            .and_then(|t| t.finished_at.as_ref())
            .and_then(Time::to_system)
    };

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().enumerate() {
        restarts += i64::from(cs.restart_count);
        last_restart = last_restart.max(finished(cs));
        let is_sidecar = sidecar(&cs.name);
        if is_sidecar {
            sidecar_restarts += i64::from(cs.restart_count);
            sidecar_last = sidecar_last.max(finished(cs));
        }
        if cs
            .state
            .terminated
            .as_ref()
            .is_some_and(|t| t.exit_code == 0)
        {
            continue;
        }
        if is_sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        initializing = true;
        text = if let Some(t) = &cs.state.terminated {
            match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ if t.signal != 0 => format!("Init:Signal:{}", t.signal),
                _ => format!("Init:ExitCode:{}", t.exit_code),
            }
        } else if let Some(r) = cs
            .state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != reason::POD_INITIALIZING)
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", spec.init_containers.len())
        };
        break;
    }

    if !initializing || status.condition_true(PodConditionType::Initialized) {
        restarts = sidecar_restarts;
        last_restart = sidecar_last;
        let mut has_running = false;
        for cs in status.container_statuses.iter().rev() {
            restarts += i64::from(cs.restart_count);
            last_restart = last_restart.max(finished(cs));
            let waiting = cs.state.waiting.as_ref().and_then(|w| w.reason.as_deref());
            let term = cs.state.terminated.as_ref();
            if let Some(r) = waiting.filter(|r| !r.is_empty()) {
                text = r.to_owned();
            } else if let Some(t) = term {
                text = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_owned(),
                    _ if t.signal != 0 => format!("Signal:{}", t.signal),
                    _ => format!("ExitCode:{}", t.exit_code),
                };
            } else if cs.ready && cs.state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if text == reason::COMPLETED && has_running {
            text = if status.condition_true(PodConditionType::Ready) {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if deleting && !status.phase.is_terminal() {
        text = "Terminating".into();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", compute_human_duration(now, t))
        }
        _ => restarts.to_string(),
    };
    PodColumns {
        ready: format!("{ready}/{total}"),
        status: text,
        restarts,
    }
}

/// The AGE text of a time relative to `now` (`apimachinery`'s `HumanDuration`): `45s`,
/// `2m30s`, `15m`, `5h3m`, `3d4h`, `2y3d`; `0s` for up to a second in the future and
/// `<invalid>` beyond.
pub fn compute_human_duration(now: SystemTime, then: SystemTime) -> String {
    let secs: i64 = match now.duration_since(then) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - i64::from(e.duration().subsec_nanos() > 0),
    };
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    human_duration(Duration::from_secs(secs as u64))
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            dy => format!("{}y{dy}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests;
