//! Live updates from the daemon (SIGUSR1): re-read `spec.json` and the `restart` request
//! file, and restart only the containers whose spec changed or that were named. The pod's
//! namespaces and the other containers stay. The daemon only asks for this when the
//! containers keep their names and order (anything else recreates the pod), so indexes stay
//! valid.

use std::fs;
use std::time::Instant;

use super::state::Phase;
use super::{Shim, ShimSpec};

/// File under the pod's run dir that names the containers to restart, one per line.
pub const RESTART_FILE: &str = "restart";

/// The containers to restart: named in the request, or whose spec differs. Pure.
pub fn compute_restarts(old: &ShimSpec, new: &ShimSpec, requested: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, c) in new.pod.spec.all_containers() {
        let before = old
            .pod
            .spec
            .all_containers()
            .find(|(_, o)| o.name == c.name);
        let changed = before.is_none_or(|(_, o)| o != c)
            || old.images.get(&c.name).map(|i| &i.id) != new.images.get(&c.name).map(|i| &i.id);
        if changed || requested.contains(&c.name) {
            out.push(c.name.clone());
        }
    }
    out
}

impl Shim {
    pub(super) fn reload(&mut self) {
        let spec_path = ShimSpec::spec_path(&self.spec.run_dir);
        let new: ShimSpec = match fs::read(&spec_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                self.say(&format!("reload {}: {e}", spec_path.display()));
                return;
            }
        };
        let req_path = self.spec.run_dir.join(RESTART_FILE);
        let requested: Vec<String> = fs::read_to_string(&req_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
        let _ = fs::remove_file(&req_path);
        let same_layout = {
            let names = |s: &ShimSpec| -> Vec<String> {
                s.pod
                    .spec
                    .all_containers()
                    .map(|(_, c)| c.name.clone())
                    .collect()
            };
            names(&self.spec) == names(&new)
        };
        if !same_layout {
            self.say("reload: containers added or removed; the daemon must recreate the pod");
            return;
        }
        let restart = compute_restarts(&self.spec, &new, &requested);
        self.spec.pod = new.pod;
        self.spec.images = new.images;
        // A new spec starts a new back-off curve (the key is the spec's).
        for i in 0..self.ctrs.len() {
            self.ctrs[i].key = crate::plan::backoff::compute_backoff_key(self.container_spec(i));
        }
        // Parked processes were prepared from the old spec.
        for i in 0..self.ctrs.len() {
            self.drop_standby(i);
        }
        if self.stopping {
            return;
        }
        let grace = self.grace();
        for i in 0..self.ctrs.len() {
            if !restart.contains(&self.ctrs[i].name) {
                continue;
            }
            self.say(&format!(
                "container {:?}: restarting (new spec or request)",
                self.ctrs[i].name
            ));
            match self.ctrs[i].phase {
                Phase::Running => {
                    self.ctrs[i].restart_requested = true;
                    self.ctrs[i].restart_kill_at = Some(Instant::now() + grace);
                    // The preStop hook, then the stop signal.
                    self.stop_ctr(i);
                }
                // Not running: start with the new spec now, without back-off (the start
                // counts the restart).
                Phase::Waiting { .. } => {
                    let c = &mut self.ctrs[i];
                    c.phase = Phase::Waiting { not_before: None };
                    c.backoff = None;
                    c.next_restart_at = None;
                }
                Phase::Done { .. } => {
                    if self.ctrs[i].kind != crate::model::ContainerKind::Init {
                        let c = &mut self.ctrs[i];
                        c.phase = Phase::Waiting { not_before: None };
                        c.backoff = None;
                        c.next_restart_at = None;
                    }
                }
            }
        }
        for i in 0..self.ctrs.len() {
            if !restart.contains(&self.ctrs[i].name) {
                self.park_next(i);
            }
        }
        self.write_status();
    }

    /// Kills restarting containers whose grace period is over; the next deadline.
    pub(super) fn kill_overdue_restarts(&mut self, now: Instant) -> Option<Instant> {
        let mut next = None;
        for i in 0..self.ctrs.len() {
            match self.ctrs[i].restart_kill_at {
                Some(t) if t <= now => {
                    self.ctrs[i].restart_kill_at = None;
                    self.kill_ctr(i);
                }
                Some(t) => next = Some(next.map_or(t, |n: Instant| n.min(t))),
                None => {}
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ShimSpec {
        ShimSpec {
            uid: "u".into(),
            pod: crate::manifest::load_bytes("p.yaml", yaml.as_bytes())
                .unwrap()
                .remove(0),
            images: Default::default(),
            run_dir: "/r".into(),
            root_dir: "/x".into(),
            log_dir: None,
            settings: Default::default(),
        }
    }

    #[test]
    fn only_changed_or_requested_containers_restart() {
        let a = spec(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: i, command: [x]}\n  - {name: b, image: i}\n",
        );
        let b = spec(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {k: v}}\nspec:\n  containers:\n  - {name: a, image: i, command: [z]}\n  - {name: b, image: i}\n",
        );
        assert_eq!(compute_restarts(&a, &b, &[]), vec!["a"]);
        assert_eq!(compute_restarts(&a, &a, &[]), Vec::<String>::new());
        assert_eq!(compute_restarts(&a, &a, &["b".into()]), vec!["b"]);
    }
}
