//! Restart back-off of one container: Kubernetes' CrashLoopBackOff curve, as a pure function.
//!
//! Owns the arithmetic only: given the history of a container (the curve it is on) and the
//! time it exited, say when it may start again. It never reads a clock and never sleeps; the
//! shim arms a timer for [`BackoffState::not_before`].
//!
//! The kubelet's rules (`pkg/kubelet/kuberuntime/kuberuntime_manager.go` `doBackOff`, over
//! `client-go/util/flowcontrol/backoff.go`), which this reproduces without jitter:
//! - the first restart of a curve is immediate;
//! - every later one waits `initial` (10 s), then twice as long each time, capped at `max`
//!   (300 s), measured from the container's exit;
//! - when the container exits more than `reset_after` (10 min) after the last step of its
//!   curve (it ran, or at least did not need a restart, that long), the curve starts over;
//! - the curve belongs to one container spec: a new spec (different [`BackoffKey`]) starts a
//!   fresh curve.
//!
//! Use: on each exit that the restart policy says to restart,
//! `st = compute_restart_after_exit(&settings, prev.as_ref(), compute_backoff_key(&spec), exited_at)`;
//! while `st.is_backing_off(now)` the container is Waiting/CrashLoopBackOff with
//! `st.compute_message(..)`; arm a timer for `st.not_before`; keep `st` as `prev`. Drop it
//! (pass `None`) after `podsup restart`.
//!
//! Times are `Instant`s (CLOCK_MONOTONIC): edge devices often boot without a real-time clock
//! and jump when NTP syncs; a wall-clock jump must neither release nor freeze a crash loop.

use std::time::{Duration, Instant};

/// Kubernetes' initial back-off (kubelet `backOffPeriod`).
pub const DEFAULT_INITIAL: Duration = Duration::from_secs(10);
/// Kubernetes' cap (kubelet `MaxContainerBackOff`).
pub const DEFAULT_MAX: Duration = Duration::from_secs(300);
/// Kubernetes resets a curve after twice the cap without a new step.
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(600);

/// The daemon's back-off settings (KEP-4603 made initial and cap tunable in Kubernetes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffSettings {
    /// Delay before the second restart of a curve; doubles at each further restart.
    /// Zero means "no back-off at all": every restart is immediate.
    pub initial: Duration,
    /// The delay never exceeds this.
    pub max: Duration,
    /// An exit this long after the last step starts a fresh curve.
    pub reset_after: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            initial: DEFAULT_INITIAL,
            max: DEFAULT_MAX,
            reset_after: DEFAULT_RESET_AFTER,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    #[error("back-off: initial delay {initial:?} is longer than the maximum {max:?}")]
    InitialAboveMax { initial: Duration, max: Duration },
    #[error("back-off: reset-after must be longer than zero")]
    ZeroResetAfter,
}

impl BackoffSettings {
    /// Checks the settings the daemon was given.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.initial > self.max {
            return Err(BackoffError::InitialAboveMax {
                initial: self.initial,
                max: self.max,
            });
        }
        if self.reset_after.is_zero() {
            return Err(BackoffError::ZeroResetAfter);
        }
        Ok(())
    }

    /// The delay of the `step`-th restart of a curve (0-based): 0, initial, 2×initial, … ≤ max.
    pub fn compute_delay(&self, step: u32) -> Duration {
        if step == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(step - 1).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Identifies the curve: the same container with the same spec. Kubernetes keys by pod,
/// container name and a hash of the container spec (`getStableKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackoffKey(pub u64);

/// The key of a container spec: FNV-1a over its canonical JSON (stable across runs and
/// releases, unlike `DefaultHasher`). Any change to the spec gives another key.
pub fn compute_backoff_key(container: &crate::model::Container) -> BackoffKey {
    // Serializing plain data structs cannot fail; an empty vec would only merge keys.
    let bytes = serde_json::to_vec(container).unwrap_or_default();
    BackoffKey(fnv1a64(&bytes))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where a container is on its curve, after a restart decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffState {
    /// The spec the curve belongs to.
    pub key: BackoffKey,
    /// Restarts decided on this curve before this one (0 for the first restart of a curve).
    pub step: u32,
    /// The delay of this restart, counted from `exited_at`.
    pub delay: Duration,
    /// When the container exited.
    pub exited_at: Instant,
    /// When the container may start again: `exited_at + delay`. This is also the time of the
    /// step, from which `reset_after` is counted.
    pub not_before: Instant,
}

impl BackoffState {
    /// True while a restart must still wait: the container is in CrashLoopBackOff.
    pub fn is_backing_off(&self, now: Instant) -> bool {
        now < self.not_before
    }

    /// How long until the restart is due (zero when it is).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.not_before.saturating_duration_since(now)
    }

    /// The kubelet's waiting message, e.g. `back-off 40s restarting failed container=app
    /// pod=web_default(uid)`.
    pub fn compute_message(
        &self,
        container: &str,
        pod: &str,
        namespace: &str,
        uid: &str,
    ) -> String {
        format!(
            "back-off {} restarting failed container={container} pod={pod}_{namespace}({uid})",
            format_go_duration(self.delay)
        )
    }
}

/// Decides the restart of a container that exited at `exited_at`, given the state of its
/// previous restart (`None` if it never restarted, or after `podsup restart`).
///
/// The caller has already decided, by restart policy, that the container restarts; this only
/// says when. It returns the new state, whose `not_before` is the earliest start.
pub fn compute_restart_after_exit(
    settings: &BackoffSettings,
    prev: Option<&BackoffState>,
    key: BackoffKey,
    exited_at: Instant,
) -> BackoffState {
    let step = match prev {
        Some(p)
            if p.key == key
                && exited_at.saturating_duration_since(p.not_before) <= settings.reset_after =>
        {
            p.step.saturating_add(1)
        }
        _ => 0,
    };
    let delay = settings.compute_delay(step);
    BackoffState {
        key,
        step,
        delay,
        exited_at,
        not_before: exited_at + delay,
    }
}

/// Go's `time.Duration.String` for whole seconds and above (`40s`, `5m0s`), as the kubelet's
/// messages show it.
fn format_go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms % 60_000);
    let secs = if s % 1000 == 0 {
        format!("{}s", s / 1000)
    } else {
        let frac = format!("{:03}", s % 1000);
        format!("{}.{}s", s / 1000, frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: BackoffKey = BackoffKey(1);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// Runs a crash loop: the container runs `ran[i]` after each start and exits.
    /// Returns the delay chosen after each exit.
    fn simulate(settings: &BackoffSettings, ran: &[u64]) -> Vec<u64> {
        let t0 = Instant::now();
        let mut start = t0;
        let mut prev: Option<BackoffState> = None;
        let mut out = Vec::new();
        for r in ran {
            let exit = start + s(*r);
            let st = compute_restart_after_exit(settings, prev.as_ref(), K, exit);
            out.push(st.delay.as_secs());
            start = st.not_before;
            prev = Some(st);
        }
        out
    }

    #[test]
    fn curve_table() {
        let k8s = BackoffSettings::default();
        let edge = BackoffSettings {
            initial: s(1),
            max: s(30),
            reset_after: s(60),
        };
        let none = BackoffSettings {
            initial: Duration::ZERO,
            ..k8s
        };
        let cases: &[(&str, &BackoffSettings, &[u64], &[u64])] = &[
            (
                "crash at once: 0,10,20,40,80,160,300,300",
                &k8s,
                &[0, 0, 0, 0, 0, 0, 0, 0, 0],
                &[0, 10, 20, 40, 80, 160, 300, 300, 300],
            ),
            (
                "running 5 min each time keeps the curve",
                &k8s,
                &[300, 300, 300, 300],
                &[0, 10, 20, 40],
            ),
            (
                "exactly reset_after after the step keeps the curve",
                &k8s,
                &[0, 0, 600],
                &[0, 10, 20],
            ),
            (
                "running past reset_after starts over",
                &k8s,
                &[0, 0, 0, 601, 0, 0],
                &[0, 10, 20, 0, 10, 20],
            ),
            (
                "edge settings",
                &edge,
                &[0, 0, 0, 0, 0, 0, 0, 0, 61, 0],
                &[0, 1, 2, 4, 8, 16, 30, 30, 0, 1],
            ),
            (
                "initial zero: no back-off",
                &none,
                &[0, 0, 0, 0],
                &[0, 0, 0, 0],
            ),
        ];
        for (name, settings, ran, want) in cases {
            assert_eq!(&simulate(settings, ran), want, "{name}");
        }
    }

    #[test]
    fn delay_is_measured_from_exit() {
        let t0 = Instant::now();
        let st = BackoffState {
            key: K,
            step: 0,
            delay: Duration::ZERO,
            exited_at: t0,
            not_before: t0,
        };
        let exit = t0 + s(3);
        let next = compute_restart_after_exit(&BackoffSettings::default(), Some(&st), K, exit);
        assert_eq!(next.not_before, exit + s(10));
        assert!(next.is_backing_off(exit + s(9)));
        assert!(!next.is_backing_off(exit + s(10)));
        assert_eq!(next.remaining(exit + s(4)), s(6));
        assert_eq!(next.remaining(exit + s(40)), Duration::ZERO);
    }

    #[test]
    fn spec_change_starts_a_fresh_curve() {
        let t0 = Instant::now();
        let set = BackoffSettings::default();
        let a = compute_restart_after_exit(&set, None, K, t0);
        let b = compute_restart_after_exit(&set, Some(&a), K, t0 + s(1));
        assert_eq!(b.delay, s(10));
        let c = compute_restart_after_exit(&set, Some(&b), BackoffKey(2), t0 + s(12));
        assert_eq!((c.step, c.delay), (0, Duration::ZERO));
    }

    #[test]
    fn key_follows_the_spec() {
        let mut c = crate::model::Container {
            name: "app".into(),
            image: "busybox".into(),
            ..Default::default()
        };
        let k1 = compute_backoff_key(&c);
        assert_eq!(k1, compute_backoff_key(&c.clone()));
        c.args = vec!["sleep".into(), "1".into()];
        assert_ne!(k1, compute_backoff_key(&c));
    }

    #[test]
    fn delay_never_overflows() {
        let set = BackoffSettings::default();
        for step in [31, 32, 64, u32::MAX] {
            assert_eq!(set.compute_delay(step), s(300));
        }
        let huge = BackoffSettings {
            initial: Duration::MAX,
            max: Duration::MAX,
            reset_after: s(1),
        };
        assert_eq!(huge.compute_delay(5), Duration::MAX);
    }

    #[test]
    fn validate_table() {
        let cases = [
            (BackoffSettings::default(), Ok(())),
            (
                BackoffSettings {
                    initial: s(20),
                    max: s(10),
                    reset_after: s(1),
                },
                Err(BackoffError::InitialAboveMax {
                    initial: s(20),
                    max: s(10),
                }),
            ),
            (
                BackoffSettings {
                    reset_after: Duration::ZERO,
                    ..Default::default()
                },
                Err(BackoffError::ZeroResetAfter),
            ),
        ];
        for (settings, want) in cases {
            assert_eq!(settings.validate(), want, "{settings:?}");
        }
    }

    #[test]
    fn message_like_the_kubelet() {
        let t0 = Instant::now();
        let cases = [(0, "0s"), (40, "40s"), (300, "5m0s"), (90, "1m30s")];
        for (secs, text) in cases {
            let st = BackoffState {
                key: K,
                step: 1,
                delay: s(secs),
                exited_at: t0,
                not_before: t0 + s(secs),
            };
            assert_eq!(
                st.compute_message("app", "web", "default", "u1"),
                format!("back-off {text} restarting failed container=app pod=web_default(u1)")
            );
        }
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
