//! A container's health as the kubelet keeps it: one worker per probe (startup, liveness,
//! readiness) with its schedule and thresholds, the `started` and `ready` flags, and what a
//! probe result leads to (kill, status change). Also the pure halves of the checks: probe
//! timings with Kubernetes' defaults, the HTTP request and the response's status line.
//!
//! Pure: no I/O, no clock (`now` is an argument). The shim's `health.rs` runs the checks and
//! turns the effects into kills, events and status.

use std::time::{Duration, Instant};

use crate::model::{Container, ContainerKind, HttpGetAction, IntOrString, Probe, RestartPolicy};

/// The three probes, in the order the kubelet gates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As the kubelet prints it in events (`Liveness probe failed: …`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
    pub fn lower(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// A probe's schedule and thresholds with Kubernetes' defaults (`SetDefaults_Probe`: 0 or
/// unset means the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeTiming {
    pub fn compute(p: &Probe) -> ProbeTiming {
        let or = |v: Option<i64>, d: i64| match v {
            Some(v) if v > 0 => v,
            _ => d,
        };
        ProbeTiming {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: Duration::from_secs(or(p.period_seconds, 10) as u64),
            timeout: Duration::from_secs(or(p.timeout_seconds, 1) as u64),
            success_threshold: or(p.success_threshold, 1) as u32,
            failure_threshold: or(p.failure_threshold, 3) as u32,
        }
    }
}

/// One probe of one container (the kubelet's `worker`): schedule, run length of equal
/// results, and the latched result that the rest of the kubelet sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub kind: ProbeKind,
    pub timing: ProbeTiming,
    /// The latched result: `None` unknown (startup before its first verdict).
    pub result: Option<bool>,
    last: Option<bool>,
    run: u32,
    /// When the next check is due; `None`: not probing (not started, on hold, gated).
    pub next_at: Option<Instant>,
    /// A check is running.
    pub in_flight: bool,
}

impl Worker {
    fn new(kind: ProbeKind, timing: ProbeTiming) -> Worker {
        Worker {
            kind,
            timing,
            result: Self::initial(kind),
            last: None,
            run: 0,
            next_at: None,
            in_flight: false,
        }
    }

    /// The kubelet's initial values: liveness succeeds and readiness fails until told
    /// otherwise; startup is unknown.
    fn initial(kind: ProbeKind) -> Option<bool> {
        match kind {
            ProbeKind::Startup => None,
            ProbeKind::Liveness => Some(true),
            ProbeKind::Readiness => Some(false),
        }
    }

    fn reset(&mut self) {
        self.result = Self::initial(self.kind);
        self.last = None;
        self.run = 0;
        self.next_at = None;
        self.in_flight = false;
    }

    /// Records one check; returns the latched result when it changed (a run of
    /// `failureThreshold` failures or `successThreshold` successes).
    fn record(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let need = if ok {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if self.run < need {
            return None;
        }
        if !ok && self.kind != ProbeKind::Readiness {
            // Liveness and startup failures kill: stop probing until the next start, and
            // count afresh then (the kubelet's onHold).
            self.run = 0;
            self.next_at = None;
        }
        if self.result == Some(ok) {
            return None;
        }
        self.result = Some(ok);
        Some(ok)
    }
}

/// Why the shim kills a running container on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillCause {
    Liveness,
    Startup,
    PostStartHook,
}

/// What a probe result means for the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `started` or `ready` changed: publish.
    Changed,
    /// The container failed its liveness or startup probe: kill it.
    Kill(KillCause),
}

/// A container's probes and the flags they drive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub workers: Vec<Worker>,
    /// The process runs (since `running_since`).
    pub running_since: Option<Instant>,
    /// The postStart hook has not returned yet.
    pub post_start_pending: bool,
    /// Past postStart and the startup probe (`containerStatuses[].started`).
    pub started: bool,
    /// The container has been `started` at least once (a sidecar then no longer holds up
    /// the containers after it while it restarts).
    pub ever_started: bool,
    /// The shim killed it (probe or hook failure); decides the restart.
    pub killed_by: Option<KillCause>,
}

impl Health {
    pub fn new(c: &Container) -> Health {
        let mut workers = Vec::new();
        for (p, kind) in [
            (&c.startup_probe, ProbeKind::Startup),
            (&c.liveness_probe, ProbeKind::Liveness),
            (&c.readiness_probe, ProbeKind::Readiness),
        ] {
            if let Some(p) = p {
                workers.push(Worker::new(kind, ProbeTiming::compute(p)));
            }
        }
        Health {
            workers,
            ..Default::default()
        }
    }

    pub fn worker(&self, kind: ProbeKind) -> Option<&Worker> {
        self.workers.iter().find(|w| w.kind == kind)
    }

    fn worker_mut(&mut self, kind: ProbeKind) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.kind == kind)
    }

    /// `containerStatuses[].ready`: started, and its readiness probe (if any) succeeded.
    pub fn ready(&self) -> bool {
        self.running_since.is_some()
            && self.started
            && self
                .worker(ProbeKind::Readiness)
                .is_none_or(|w| w.result == Some(true))
    }

    /// The container's process started. With `post_start`, nothing is probed until
    /// [`Health::post_start_done`].
    pub fn on_running(&mut self, post_start: bool, now: Instant) {
        for w in &mut self.workers {
            w.reset();
        }
        self.running_since = Some(now);
        self.started = false;
        self.killed_by = None;
        self.post_start_pending = post_start;
        if !post_start {
            self.post_start_done(now);
        }
    }

    /// postStart returned (or there was none): the startup probe begins, or, without one,
    /// the container is started and liveness and readiness begin.
    pub fn post_start_done(&mut self, now: Instant) {
        self.post_start_pending = false;
        let since = self.running_since.unwrap_or(now);
        match self.worker_mut(ProbeKind::Startup) {
            Some(w) => w.next_at = Some((since + w.timing.initial_delay).max(now)),
            None => self.become_started(now),
        }
    }

    fn become_started(&mut self, now: Instant) {
        self.started = true;
        self.ever_started = true;
        let since = self.running_since.unwrap_or(now);
        for w in &mut self.workers {
            if w.kind != ProbeKind::Startup {
                w.next_at = Some((since + w.timing.initial_delay).max(now));
            }
        }
    }

    /// The container's process is gone: no more probing, not ready, not started.
    pub fn on_exit(&mut self) {
        for w in &mut self.workers {
            w.reset();
        }
        self.running_since = None;
        self.post_start_pending = false;
        self.started = false;
    }

    /// Stop probing (the container is being stopped or killed).
    pub fn hold(&mut self) {
        for w in &mut self.workers {
            w.next_at = None;
        }
    }

    /// The probes due now; each is marked in flight and its next run scheduled one period
    /// after this one starts (a ticker, as the kubelet's worker).
    pub fn take_due(&mut self, now: Instant) -> Vec<ProbeKind> {
        let mut out = Vec::new();
        for w in &mut self.workers {
            if !w.in_flight
                && let Some(t) = w.next_at
                && t <= now
            {
                w.in_flight = true;
                // Never in the past: a late wake-up does not cause a burst.
                let next = t + w.timing.period;
                w.next_at = Some(if next <= now {
                    now + w.timing.period
                } else {
                    next
                });
                out.push(w.kind);
            }
        }
        out
    }

    /// When the next probe is due (none while one of a kind runs).
    pub fn next_due(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter(|w| !w.in_flight)
            .filter_map(|w| w.next_at)
            .min()
    }

    /// A check of `kind` finished with `ok`; what follows.
    pub fn on_result(&mut self, kind: ProbeKind, ok: bool, now: Instant) -> Option<Effect> {
        self.running_since?;
        let w = self.worker_mut(kind)?;
        w.in_flight = false;
        // On hold (killed, stopping) or no longer needed: a late result counts for nothing.
        w.next_at?;
        let changed = w.record(ok)?;
        match (kind, changed) {
            (ProbeKind::Startup, true) => {
                if let Some(w) = self.worker_mut(ProbeKind::Startup) {
                    w.next_at = None;
                }
                self.become_started(now);
                Some(Effect::Changed)
            }
            (ProbeKind::Startup, false) => {
                self.hold();
                self.killed_by = Some(KillCause::Startup);
                Some(Effect::Kill(KillCause::Startup))
            }
            (ProbeKind::Liveness, false) => {
                self.hold();
                self.killed_by = Some(KillCause::Liveness);
                Some(Effect::Kill(KillCause::Liveness))
            }
            (ProbeKind::Liveness, true) => None,
            (ProbeKind::Readiness, _) => Some(Effect::Changed),
        }
    }
}

/// Whether a container the shim killed for a failed liveness or startup probe runs again:
/// the kubelet restarts it unless the policy is Never (`shouldRestartOnFailure`), whatever
/// its exit code; a sidecar always. A postStart failure is an ordinary exit (`None`: decide
/// by the policy and the exit code).
pub fn compute_restart_after_kill(
    cause: Option<KillCause>,
    kind: ContainerKind,
    pod_policy: RestartPolicy,
    container: &Container,
) -> Option<bool> {
    match cause? {
        KillCause::PostStartHook => None,
        KillCause::Liveness | KillCause::Startup => Some(
            kind == ContainerKind::Sidecar
                || container.restart_policy.unwrap_or(pod_policy) != RestartPolicy::Never,
        ),
    }
}

/// A port by number or by the name of one of the container's ports.
pub fn compute_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} is not a port of container {:?}", c.name)),
    }
}

/// The address a probe or hook connects to: `host` (an IP address or `localhost`) or the
/// pod's own address, 127.0.0.1 (the shim lives in the pod's network namespace).
pub fn compute_addr(host: Option<&str>, port: u16) -> Result<std::net::SocketAddr, String> {
    let ip = match host.map(str::trim).filter(|h| !h.is_empty()) {
        None | Some("localhost") => std::net::IpAddr::from([127, 0, 0, 1]),
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("host {h:?}: podsup probes an IP address or localhost"))?,
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// The URL as Go prints it in the kubelet's messages (`http://127.0.0.1:8080/healthz`).
pub fn compute_url(addr: &std::net::SocketAddr, path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("http://{addr}{path}")
}

/// The HTTP/1.1 request of an httpGet probe or hook, as the kubelet sends it: `Host`
/// (overridable by a `Host` header), `User-Agent: kube-probe/…` (or `kube-lifecycle/…` for
/// hooks), `Accept: */*`, `Connection: close`, then the user's headers.
pub fn compute_http_request(
    h: &HttpGetAction,
    addr: &std::net::SocketAddr,
    agent: &str,
) -> Vec<u8> {
    let path = h.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let has = |name: &str| {
        h.http_headers
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(name))
    };
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("user-agent") {
        req.push_str(&format!("User-Agent: {agent}\r\n"));
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    req.push_str("Connection: close\r\n");
    for x in &h.http_headers {
        // A header value cannot carry a line break into the request.
        let value: String = x
            .value
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        req.push_str(&format!("{}: {value}\r\n", x.name));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// The status code of an HTTP response once its status line is complete: `Ok(None)` until
/// then, an error for something that is not HTTP.
pub fn compute_status_code(resp: &[u8]) -> Result<Option<u16>, String> {
    let Some(end) = resp.windows(2).position(|w| w == b"\r\n").or_else(|| {
        // A bare LF ends the line too (tolerated by Go).
        resp.iter().position(|b| *b == b'\n')
    }) else {
        if resp.len() > 4096 {
            return Err("malformed HTTP response: status line too long".into());
        }
        if !resp.is_empty() && !b"HTTP/".starts_with(&resp[..resp.len().min(5)]) {
            return Err(format!(
                "malformed HTTP response {:?}",
                String::from_utf8_lossy(&resp[..resp.len().min(40)])
            ));
        }
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&resp[..end]);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("malformed HTTP response {:?}", line.trim_end()));
    }
    code.parse::<u16>()
        .map(Some)
        .map_err(|_| format!("malformed HTTP status code {code:?}"))
}

/// An httpGet probe succeeds on 200–399 (the kubelet's `probe/http`).
pub fn compute_http_ok(code: u16) -> bool {
    (200..400).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(yaml: &str) -> Container {
        let pod = crate::manifest::load_bytes(
            "p.yaml",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    image: i\n{yaml}"
            )
            .as_bytes(),
        )
        .unwrap()
        .remove(0);
        pod.spec.containers[0].clone()
    }

    #[test]
    fn timings_default_as_kubernetes() {
        let t = ProbeTiming::compute(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        assert_eq!(t.initial_delay, Duration::ZERO);
        let p = Probe {
            period_seconds: Some(0),
            failure_threshold: Some(0),
            initial_delay_seconds: Some(4),
            ..Default::default()
        };
        let t = ProbeTiming::compute(&p);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.failure_threshold, 3);
        assert_eq!(t.initial_delay, Duration::from_secs(4));
    }

    #[test]
    fn liveness_kills_after_failure_threshold_consecutive_failures() {
        let c = ctr(
            "    livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 1, failureThreshold: 3}\n",
        );
        let mut h = Health::new(&c);
        let t0 = Instant::now();
        h.on_running(false, t0);
        assert!(
            h.started && h.ready(),
            "no startup/readiness probe: started and ready"
        );
        assert_eq!(h.next_due(), Some(t0));
        let l = ProbeKind::Liveness;
        // fail, fail, success: the run starts over.
        for (ok, want) in [(false, None), (false, None), (true, None)] {
            assert_eq!(h.take_due(h.next_due().unwrap()), vec![l]);
            assert_eq!(h.on_result(l, ok, t0), want);
        }
        assert_eq!(h.take_due(h.next_due().unwrap()), vec![l]);
        assert_eq!(h.on_result(l, false, t0), None);
        assert_eq!(h.take_due(h.next_due().unwrap()), vec![l]);
        assert_eq!(h.on_result(l, false, t0), None);
        assert_eq!(h.take_due(h.next_due().unwrap()), vec![l]);
        assert_eq!(
            h.on_result(l, false, t0),
            Some(Effect::Kill(KillCause::Liveness))
        );
        // On hold until the next start.
        assert_eq!(h.next_due(), None);
        assert_eq!(h.killed_by, Some(KillCause::Liveness));
        h.on_exit();
        assert!(!h.ready());
        h.on_running(false, t0);
        assert_eq!(h.killed_by, None);
        assert!(h.next_due().is_some());
    }

    #[test]
    fn schedule_is_a_ticker_with_initial_delay() {
        let c = ctr(
            "    livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 10, initialDelaySeconds: 5}\n",
        );
        let mut h = Health::new(&c);
        let t0 = Instant::now();
        h.on_running(false, t0);
        assert_eq!(h.next_due(), Some(t0 + Duration::from_secs(5)));
        assert!(h.take_due(t0 + Duration::from_secs(4)).is_empty());
        let t = t0 + Duration::from_secs(5);
        assert_eq!(h.take_due(t), vec![ProbeKind::Liveness]);
        // In flight: nothing due, no wake-up for it.
        assert_eq!(h.next_due(), None);
        h.on_result(ProbeKind::Liveness, true, t + Duration::from_millis(30));
        assert_eq!(h.next_due(), Some(t + Duration::from_secs(10)));
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let c = ctr(concat!(
            "    startupProbe: {tcpSocket: {port: 80}, periodSeconds: 1, failureThreshold: 2}\n",
            "    livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}\n",
            "    readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1, successThreshold: 2}\n",
        ));
        let mut h = Health::new(&c);
        let t0 = Instant::now();
        h.on_running(false, t0);
        assert!(!h.started && !h.ready());
        assert_eq!(h.take_due(t0), vec![ProbeKind::Startup]);
        assert_eq!(h.on_result(ProbeKind::Startup, false, t0), None);
        let t1 = t0 + Duration::from_secs(1);
        // Only the startup probe runs meanwhile.
        assert_eq!(h.take_due(t1), vec![ProbeKind::Startup]);
        assert_eq!(
            h.on_result(ProbeKind::Startup, true, t1),
            Some(Effect::Changed)
        );
        assert!(h.started && h.ever_started);
        assert!(!h.ready(), "readiness starts failed");
        let mut due = h.take_due(t1);
        due.sort_by_key(|k| *k as u8);
        assert_eq!(due, vec![ProbeKind::Liveness, ProbeKind::Readiness]);
        assert_eq!(h.on_result(ProbeKind::Liveness, true, t1), None);
        // successThreshold 2 for readiness.
        assert_eq!(h.on_result(ProbeKind::Readiness, true, t1), None);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            h.take_due(t2),
            vec![ProbeKind::Liveness, ProbeKind::Readiness]
        );
        assert_eq!(
            h.on_result(ProbeKind::Readiness, true, t2),
            Some(Effect::Changed)
        );
        assert!(h.ready());
        // Readiness failing flips it back, without a kill.
        h.on_result(ProbeKind::Liveness, true, t2);
        let t3 = t2 + Duration::from_secs(1);
        h.take_due(t3);
        assert_eq!(h.on_result(ProbeKind::Readiness, false, t3), None);
        let t4 = t3 + Duration::from_secs(1);
        h.on_result(ProbeKind::Liveness, true, t3);
        h.take_due(t4);
        h.on_result(ProbeKind::Readiness, false, t4);
        let t5 = t4 + Duration::from_secs(1);
        h.on_result(ProbeKind::Liveness, true, t4);
        h.take_due(t5);
        assert_eq!(
            h.on_result(ProbeKind::Readiness, false, t5),
            Some(Effect::Changed)
        );
        assert!(!h.ready());
    }

    #[test]
    fn startup_failure_kills() {
        let c = ctr(
            "    startupProbe: {tcpSocket: {port: 80}, periodSeconds: 1, failureThreshold: 1}\n",
        );
        let mut h = Health::new(&c);
        let t0 = Instant::now();
        h.on_running(false, t0);
        h.take_due(t0);
        assert_eq!(
            h.on_result(ProbeKind::Startup, false, t0),
            Some(Effect::Kill(KillCause::Startup))
        );
        assert!(!h.started && !h.ever_started);
    }

    #[test]
    fn post_start_holds_everything() {
        let c = ctr("    livenessProbe: {tcpSocket: {port: 80}}\n");
        let mut h = Health::new(&c);
        let t0 = Instant::now();
        h.on_running(true, t0);
        assert!(!h.started && !h.ready());
        assert_eq!(h.next_due(), None);
        h.post_start_done(t0 + Duration::from_secs(2));
        assert!(h.started && h.ready());
        assert_eq!(h.next_due(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn restart_after_probe_kill() {
        use RestartPolicy::*;
        let c = ctr("");
        let live = Some(KillCause::Liveness);
        assert_eq!(
            compute_restart_after_kill(live, ContainerKind::App, Always, &c),
            Some(true)
        );
        assert_eq!(
            compute_restart_after_kill(live, ContainerKind::App, OnFailure, &c),
            Some(true)
        );
        assert_eq!(
            compute_restart_after_kill(live, ContainerKind::App, Never, &c),
            Some(false)
        );
        assert_eq!(
            compute_restart_after_kill(live, ContainerKind::Sidecar, Never, &c),
            Some(true)
        );
        assert_eq!(
            compute_restart_after_kill(
                Some(KillCause::PostStartHook),
                ContainerKind::App,
                Always,
                &c
            ),
            None
        );
        assert_eq!(
            compute_restart_after_kill(None, ContainerKind::App, Always, &c),
            None
        );
    }

    #[test]
    fn http_status_lines() {
        assert_eq!(compute_status_code(b""), Ok(None));
        assert_eq!(compute_status_code(b"HTTP/1.1 2"), Ok(None));
        assert_eq!(compute_status_code(b"HTTP/1.1 200 OK\r\n"), Ok(Some(200)));
        assert_eq!(
            compute_status_code(b"HTTP/1.0 500 Internal Server Error\r\nX: y\r\n\r\n"),
            Ok(Some(500))
        );
        assert_eq!(compute_status_code(b"HTTP/1.1 302\n"), Ok(Some(302)));
        assert!(compute_status_code(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(compute_status_code(b"SSH-2.0").is_err());
        assert!(compute_status_code(b"HTTP/1.1 2x0 OK\r\n").is_err());
        assert!(compute_http_ok(200) && compute_http_ok(399));
        assert!(!compute_http_ok(199) && !compute_http_ok(400) && !compute_http_ok(500));
    }

    #[test]
    fn http_requests() {
        let c = ctr(concat!(
            "    ports: [{name: web, containerPort: 8080}]\n",
            "    readinessProbe:\n",
            "      httpGet: {path: healthz, port: web, httpHeaders: [{name: X-Probe, value: \"a\\r\\nb\"}, {name: host, value: example.org}]}\n",
        ));
        let h = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        let port = compute_port(&h.port, &c).unwrap();
        assert_eq!(port, 8080);
        let addr = compute_addr(h.host.as_deref(), port).unwrap();
        assert_eq!(
            compute_url(&addr, "healthz"),
            "http://127.0.0.1:8080/healthz"
        );
        let req = String::from_utf8(compute_http_request(h, &addr, "kube-probe/1.34")).unwrap();
        assert_eq!(
            req,
            "GET /healthz HTTP/1.1\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\nX-Probe: ab\r\nhost: example.org\r\n\r\n"
        );
        assert!(compute_port(&IntOrString::String("nope".into()), &c).is_err());
        assert!(compute_addr(Some("example.org"), 80).is_err());
        assert_eq!(
            compute_addr(Some("::1"), 80).unwrap().to_string(),
            "[::1]:80"
        );
    }
}
