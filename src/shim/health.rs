//! Probes and lifecycle hooks in the shim's loop: starts checks when they are due, feeds
//! their fds to poll, reaps their processes, and turns results into the kubelet's effects:
//! `started`/`ready`, kills for failed liveness/startup probes and postStart hooks (with
//! `Unhealthy`, `Killing`, `FailedPostStartHook` events), and the preStop hook that runs
//! before the stop signal within the grace period (plus the kubelet's one-off 2 s).
//!
//! Decisions are `probe.rs`'s (pure); the I/O of one check is `check.rs`'s. Nothing here
//! blocks or sleeps: every wait is an fd in the poll set or a deadline in the loop's
//! timeout, so a pod without probes has no timer at all.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::PollFd;
use nix::unistd::Pid;

use super::Shim;
use super::check::{self, Check, Outcome, Purpose};
use super::probe::{self, Effect, KillCause, ProbeKind};
use super::state::Phase;
use crate::container::exec::{ExecStdio, spawn_in};
use crate::model::{
    ContainerState, ContainerStatus, LifecycleHandler, SHIM_EVENTS_LEN, ShimEvent, Time,
    reason as reasons,
};

/// The kubelet's minimum time between the stop signal and SIGKILL after a preStop hook
/// that used up the grace period (`minimumGracePeriodInSeconds`).
const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// `User-Agent` of probes and hooks (the kubelet sends its version; podsup claims the
/// Kubernetes release whose semantics it follows).
const PROBE_AGENT: &str = "kube-probe/1.34";
const HOOK_AGENT: &str = "kube-lifecycle/1.34";

impl Shim {
    /// After a start attempt: a container that now runs begins its postStart hook or its
    /// probes.
    pub(super) fn health_after_start(&mut self, i: usize) {
        if self.ctrs[i].phase != Phase::Running || self.ctrs[i].health.running_since.is_some() {
            return;
        }
        let now = Instant::now();
        // The probes of the spec it runs now (a live update may have changed them).
        let mut health = probe::Health::new(self.container_spec(i));
        health.ever_started = self.ctrs[i].health.ever_started;
        self.ctrs[i].health = health;
        let post_start = self
            .container_spec(i)
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.clone());
        self.ctrs[i].health.on_running(post_start.is_some(), now);
        if let Some(h) = post_start {
            self.start_hook(i, Purpose::PostStart, &h, None);
        }
        self.settle_checks();
    }

    /// The container's process is gone (or never started): its checks end, its health
    /// resets. Returns why the shim killed it, if it did.
    pub(super) fn health_on_exit(&mut self, i: usize) -> Option<KillCause> {
        let mut k = 0;
        while k < self.checks.len() {
            if self.checks[k].ctr == i {
                // Its process (if any) is killed; the reap loop collects it later.
                self.checks.remove(k).on_timeout();
            } else {
                k += 1;
            }
        }
        let h = &mut self.ctrs[i].health;
        let cause = h.killed_by.take();
        h.on_exit();
        cause
    }

    /// The container is told to stop (pod stop, restart, kill): probes end; a preStop hook
    /// starts if it has one. True: the hook runs and sends the stop signal when it ends.
    pub(super) fn health_on_stop(&mut self, i: usize) -> bool {
        self.ctrs[i].health.hold();
        // A postStart still running is abandoned (the container goes away anyway).
        let mut k = 0;
        while k < self.checks.len() {
            let c = &self.checks[k];
            if c.ctr == i && c.purpose != Purpose::PreStop {
                self.checks.remove(k).on_timeout();
            } else {
                k += 1;
            }
        }
        if self.ctrs[i].health.post_start_pending {
            self.ctrs[i].health.post_start_pending = false;
        }
        let Some(h) = self
            .container_spec(i)
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.clone())
        else {
            return false;
        };
        let now = Instant::now();
        let deadline = self.ctrs[i]
            .restart_kill_at
            .or(self.kill_at)
            .unwrap_or(now + self.grace());
        self.start_hook(i, Purpose::PreStop, &h, Some(deadline));
        // A hook that ended at once (refused connection, no such command) is over: the
        // caller sends the signal itself.
        let last = self.checks.len() - 1;
        match self.checks[last].settled() {
            None => true,
            Some(o) => {
                let c = self.checks.remove(last);
                if let Outcome::Failure(out) | Outcome::Error(out) = o {
                    let msg = self.hook_failure_text(i, Purpose::PreStop, &c, &out);
                    self.shim_event(i, true, reasons::FAILED_PRE_STOP_HOOK, &msg);
                }
                false
            }
        }
    }

    /// The earliest deadline of probes and checks.
    pub(super) fn health_deadline(&self) -> Option<Instant> {
        let probes = self
            .ctrs
            .iter()
            .filter(|c| c.phase == Phase::Running)
            .filter_map(|c| c.health.next_due());
        let checks = self.checks.iter().filter_map(|c| c.deadline);
        probes.chain(checks).min()
    }

    /// Poll entries of the running checks, in `self.checks` order with their indexes.
    pub(super) fn health_poll_fds(&self) -> (Vec<PollFd<'_>>, Vec<usize>) {
        let mut fds = Vec::new();
        let mut idx = Vec::new();
        for (k, c) in self.checks.iter().enumerate() {
            if let Some((fd, flags)) = c.interest() {
                fds.push(PollFd::new(fd, flags));
                idx.push(k);
            }
        }
        (fds, idx)
    }

    /// The checks whose fds poll reported (indexes from [`Shim::health_poll_fds`]).
    pub(super) fn health_ready(&mut self, ready: &[usize]) {
        let mut done = Vec::new();
        for &k in ready {
            if let Some(c) = self.checks.get_mut(k)
                && let Some(o) = c.on_ready()
            {
                done.push((k, o));
            }
        }
        self.complete(done);
    }

    /// A reaped pid: true if it was a running check's process (its result is handled).
    /// A check process killed earlier is an unknown pid to the caller, reaped and forgotten.
    pub(super) fn health_exited(&mut self, pid: Pid, exit_code: i32) -> bool {
        let Some(k) = self.checks.iter().position(|c| c.pid() == Some(pid)) else {
            return false;
        };
        if let Some(o) = self.checks[k].on_exit(exit_code) {
            self.complete(vec![(k, o)]);
        }
        true
    }

    /// Time-driven work: checks past their deadline end, due probes start. Runs before the
    /// loop's own kills, so that a preStop hook cut by the grace period sends its stop
    /// signal and gets its 2 s first.
    pub(super) fn run_health(&mut self, now: Instant) {
        let mut done = Vec::new();
        for (k, c) in self.checks.iter_mut().enumerate() {
            let cut = c.purpose == Purpose::PreStop
                && self.kill_at.is_some_and(|t| t <= now)
                && self.ctrs[c.ctr].restart_kill_at.is_none();
            if c.deadline.is_some_and(|d| d <= now) || cut {
                let o = c.on_timeout();
                if c.purpose == Purpose::PreStop && !matches!(c.io, check::Io::Sleep) {
                    // As the kubelet: the grace period ended the wait for the hook, which
                    // is no failure of its own.
                    let name = &self.ctrs[c.ctr].name;
                    let _ = writeln!(
                        std::io::stderr(),
                        "podsup: container {name:?}: the preStop hook did not complete in the grace period"
                    );
                    done.push((k, Outcome::Success(String::new())));
                } else {
                    done.push((k, o));
                }
            }
        }
        self.complete(done);
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].phase != Phase::Running || self.ctrs[i].stop_sent {
                continue;
            }
            for kind in self.ctrs[i].health.take_due(now) {
                self.start_probe(i, kind, now);
            }
        }
        self.settle_checks();
    }

    /// Handles checks that were decided when they started.
    fn settle_checks(&mut self) {
        loop {
            let done: Vec<(usize, Outcome)> = self
                .checks
                .iter()
                .enumerate()
                .filter_map(|(k, c)| c.settled().map(|o| (k, o)))
                .collect();
            if done.is_empty() {
                return;
            }
            self.complete(done);
        }
    }

    /// Removes finished checks (indexes into `self.checks`) and acts on their outcomes.
    fn complete(&mut self, mut done: Vec<(usize, Outcome)>) {
        done.sort_by_key(|(k, _)| std::cmp::Reverse(*k));
        done.dedup_by_key(|(k, _)| *k);
        let finished: Vec<(Check, Outcome)> = done
            .into_iter()
            .map(|(k, o)| (self.checks.remove(k), o))
            .collect();
        for (c, o) in finished.into_iter().rev() {
            match c.purpose {
                Purpose::Probe(kind) => self.probe_done(c.ctr, kind, o),
                Purpose::PostStart | Purpose::PreStop => {
                    let o = match o {
                        Outcome::Failure(out) | Outcome::Error(out) => {
                            Outcome::Failure(self.hook_failure_text(c.ctr, c.purpose, &c, &out))
                        }
                        ok => ok,
                    };
                    if c.purpose == Purpose::PostStart {
                        self.post_start_done(c.ctr, o)
                    } else {
                        self.pre_stop_done(c.ctr, o)
                    }
                }
            }
        }
    }

    /// A hook's failure in the kubelet's words (`handlers.go`): `Exec lifecycle hook ([cmd])
    /// for Container "c" in Pod "p_ns(uid)" failed - error: …, message: "…"`.
    fn hook_failure_text(&self, i: usize, purpose: Purpose, c: &Check, out: &str) -> String {
        let meta = &self.spec.pod.metadata;
        let pod_id = format!(
            "{}_{}({})",
            meta.name,
            meta.namespace.as_deref().unwrap_or("default"),
            self.spec.uid
        );
        let name = &self.ctrs[i].name;
        let h = self.container_spec(i).lifecycle.as_ref().and_then(|l| {
            if purpose == Purpose::PostStart {
                l.post_start.as_ref()
            } else {
                l.pre_stop.as_ref()
            }
        });
        match h {
            Some(LifecycleHandler { exec: Some(e), .. }) => {
                let cmd = e.command.join(" ");
                let err = match c.exit_code {
                    Some(code) => format!("command '{cmd}' exited with {code}: "),
                    None => out.to_string(),
                };
                let message = if c.exit_code.is_some() { out } else { "" };
                format!(
                    "Exec lifecycle hook ([{cmd}]) for Container {name:?} in Pod {pod_id:?} failed - error: {err}, message: {message:?}"
                )
            }
            Some(LifecycleHandler {
                http_get: Some(hg), ..
            }) => format!(
                "HTTP lifecycle hook ({}) for Container {name:?} in Pod {pod_id:?} failed - error: {out}",
                hg.path.as_deref().unwrap_or("/")
            ),
            _ => out.to_string(),
        }
    }

    fn probe_done(&mut self, i: usize, kind: ProbeKind, o: Outcome) {
        let ok = matches!(o, Outcome::Success(_));
        let failure = match &o {
            Outcome::Success(_) => None,
            Outcome::Failure(text) => Some(format!(
                "{} probe failed: {}",
                kind.title(),
                text.trim_end()
            )),
            Outcome::Error(text) => Some(format!(
                "{} probe errored: {}",
                kind.title(),
                text.trim_end()
            )),
        };
        if let Some(msg) = failure
            && self.ctrs[i].phase == Phase::Running
            && !self.ctrs[i].stop_sent
        {
            self.shim_event(i, true, reasons::UNHEALTHY, &msg);
        }
        match self.ctrs[i].health.on_result(kind, ok, Instant::now()) {
            Some(Effect::Changed) => self.write_status(),
            Some(Effect::Kill(cause)) => self.kill_unhealthy(i, cause),
            None => {}
        }
    }

    fn post_start_done(&mut self, i: usize, o: Outcome) {
        if self.ctrs[i].phase != Phase::Running || !self.ctrs[i].health.post_start_pending {
            return;
        }
        match o {
            Outcome::Success(_) => {
                self.ctrs[i].health.post_start_done(Instant::now());
                self.write_status();
            }
            Outcome::Failure(msg) | Outcome::Error(msg) => {
                self.shim_event(i, true, reasons::FAILED_POST_START_HOOK, &msg);
                self.ctrs[i].health.post_start_pending = false;
                self.kill_unhealthy(i, KillCause::PostStartHook);
            }
        }
    }

    fn pre_stop_done(&mut self, i: usize, o: Outcome) {
        if let Outcome::Failure(msg) | Outcome::Error(msg) = o {
            self.shim_event(i, true, reasons::FAILED_PRE_STOP_HOOK, &msg);
        }
        if self.ctrs[i].phase != Phase::Running {
            return;
        }
        self.signal_ctr(i, self.ctrs[i].stop_signal);
        // The kubelet gives the stop signal at least 2 s, even past the grace period.
        let floor = Instant::now() + MIN_GRACE_AFTER_HOOK;
        if let Some(t) = &mut self.ctrs[i].restart_kill_at {
            *t = (*t).max(floor);
        } else if let Some(t) = &mut self.kill_at {
            *t = (*t).max(floor);
        }
    }

    /// Kills a container that failed its liveness or startup probe or its postStart hook,
    /// as the kubelet does: the probe's terminationGracePeriodSeconds (else the pod's),
    /// the preStop hook, the stop signal; it then restarts by policy with back-off.
    fn kill_unhealthy(&mut self, i: usize, cause: KillCause) {
        if self.ctrs[i].phase != Phase::Running || self.ctrs[i].stop_sent {
            return;
        }
        let spec = self.container_spec(i);
        let probe_grace = match cause {
            KillCause::Liveness => spec.liveness_probe.as_ref(),
            KillCause::Startup => spec.startup_probe.as_ref(),
            KillCause::PostStartHook => None,
        }
        .and_then(|p| p.termination_grace_period_seconds);
        let grace = match probe_grace {
            Some(s) => Duration::from_secs(s.max(0) as u64),
            None => self.grace(),
        };
        let policy = self.spec.pod.spec.restart_policy();
        let restarts =
            probe::compute_restart_after_kill(Some(cause), self.ctrs[i].kind, policy, spec)
                .unwrap_or(true);
        let name = self.ctrs[i].name.clone();
        let msg = match cause {
            KillCause::Liveness | KillCause::Startup => {
                let what = if cause == KillCause::Liveness {
                    "liveness"
                } else {
                    "startup"
                };
                let mut m = format!("Container {name} failed {what} probe");
                if restarts {
                    m.push_str(", will be restarted");
                }
                m
            }
            KillCause::PostStartHook => reasons::FAILED_POST_START_HOOK.to_string(),
        };
        self.shim_event(i, false, reasons::KILLING, &msg);
        self.ctrs[i].health.killed_by = Some(cause);
        let now = Instant::now();
        let t = now + grace;
        self.ctrs[i].restart_kill_at = Some(self.ctrs[i].restart_kill_at.map_or(t, |k| k.min(t)));
        self.stop_ctr(i);
        self.write_status();
    }

    /// Starts one probe check of container `i`.
    fn start_probe(&mut self, i: usize, kind: ProbeKind, now: Instant) {
        let spec = self.container_spec(i);
        let probe = match kind {
            ProbeKind::Startup => spec.startup_probe.as_ref(),
            ProbeKind::Liveness => spec.liveness_probe.as_ref(),
            ProbeKind::Readiness => spec.readiness_probe.as_ref(),
        };
        let Some(p) = probe.cloned() else {
            return;
        };
        let timeout = probe::ProbeTiming::compute(&p).timeout;
        let deadline = now + timeout;
        let purpose = Purpose::Probe(kind);
        let check = if let Some(h) = &p.http_get {
            match probe::compute_port(&h.port, spec)
                .and_then(|port| probe::compute_addr(h.host.as_deref(), port))
            {
                Ok(addr) => {
                    let url = probe::compute_url(&addr, h.path.as_deref().unwrap_or("/"));
                    let req = probe::compute_http_request(h, &addr, PROBE_AGENT);
                    Check::http(i, purpose, addr, url, req, Some(deadline))
                }
                Err(e) => Check::done(i, purpose, Outcome::Failure(e)),
            }
        } else if let Some(t) = &p.tcp_socket {
            match probe::compute_port(&t.port, spec)
                .and_then(|port| probe::compute_addr(t.host.as_deref(), port))
            {
                Ok(addr) => Check::tcp(i, purpose, addr, deadline),
                Err(e) => Check::done(i, purpose, Outcome::Failure(e)),
            }
        } else if let Some(e) = &p.exec {
            match self.spawn_exec(i, &e.command) {
                Ok((pid, out)) => Check::exec(i, purpose, pid, out, &e.command, Some(deadline)),
                Err(e) => Check::done(i, purpose, Outcome::Error(e)),
            }
        } else {
            Check::done(
                i,
                purpose,
                Outcome::Failure("probe has no handler podsup supports".into()),
            )
        };
        self.checks.push(check);
    }

    /// Starts container `i`'s hook `h`; `deadline` ends it (preStop: the grace period).
    fn start_hook(
        &mut self,
        i: usize,
        purpose: Purpose,
        h: &LifecycleHandler,
        deadline: Option<Instant>,
    ) {
        let now = Instant::now();
        let check = if let Some(s) = &h.sleep {
            let until = now + Duration::from_secs(s.seconds.max(0) as u64);
            // The sleep ends early if the grace period does.
            Check::sleep(i, purpose, deadline.map_or(until, |d| d.min(until)))
        } else if let Some(hg) = &h.http_get {
            let spec = self.container_spec(i);
            match probe::compute_port(&hg.port, spec)
                .and_then(|port| probe::compute_addr(hg.host.as_deref(), port))
            {
                Ok(addr) => {
                    let url = probe::compute_url(&addr, hg.path.as_deref().unwrap_or("/"));
                    let req = probe::compute_http_request(hg, &addr, HOOK_AGENT);
                    Check::http(i, purpose, addr, url, req, deadline)
                }
                Err(e) => Check::done(i, purpose, Outcome::Failure(e)),
            }
        } else if let Some(e) = &h.exec {
            match self.spawn_exec(i, &e.command) {
                Ok((pid, out)) => Check::exec(i, purpose, pid, out, &e.command, deadline),
                Err(e) => Check::done(i, purpose, Outcome::Failure(e)),
            }
        } else {
            Check::done(
                i,
                purpose,
                Outcome::Failure("hook has no handler podsup supports".into()),
            )
        };
        self.checks.push(check);
    }

    /// Records an event of container `i` for `podsup events` and says it on stderr.
    pub(super) fn shim_event(&mut self, i: usize, warning: bool, reason: &str, message: &str) {
        let name = self.ctrs[i].name.clone();
        self.say(&format!("container {name:?}: {reason}: {message}"));
        self.event_seq += 1;
        self.events.push_back(ShimEvent {
            seq: self.event_seq,
            time: Time::from_system(SystemTime::now()),
            container: name,
            warning,
            reason: reason.to_string(),
            message: message.to_string(),
        });
        while self.events.len() > SHIM_EVENTS_LEN {
            self.events.pop_front();
        }
    }

    /// Adjusts a container's published status for its health: `ready`, `started`, and
    /// Waiting while postStart runs.
    pub(super) fn apply_health(&self, i: usize, st: &mut ContainerStatus) {
        let c = &self.ctrs[i];
        if c.phase != Phase::Running {
            return;
        }
        st.ready = c.health.ready();
        st.started = Some(c.health.started);
        if c.health.post_start_pending {
            st.state = ContainerState::waiting(reasons::CONTAINER_CREATING, None);
        }
    }

    /// Runs `argv` inside container `i` as a direct child of the shim, in its own process
    /// group, output on a pipe.
    fn spawn_exec(&mut self, i: usize, argv: &[String]) -> Result<(Pid, OwnedFd), String> {
        let Some(target) = &self.ctrs[i].exec else {
            return Err(format!("container {:?} is not running", self.ctrs[i].name));
        };
        // stdout and stderr on one pipe: the kubelet reports the combined output.
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let w2 = w.try_clone().map_err(|e| format!("dup: {e}"))?;
        let stdio = ExecStdio::null_stdin(w, w2).map_err(|e| format!("open /dev/null: {e}"))?;
        let pid = spawn_in(target, argv, stdio).map_err(|e| e.to_string())?;
        Ok((pid, r))
    }
}
