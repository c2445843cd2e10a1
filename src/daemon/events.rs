//! The daemon's event list for `podsup events`: bounded (the oldest go first), and a
//! condition variable for followers.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::SystemTime;

use crate::api::Event;
use crate::model::Time;

/// How many events are kept (the kubelet's API server keeps an hour; a device keeps a few).
pub const KEEP: usize = 1000;

#[derive(Default)]
pub struct Events {
    inner: Mutex<(u64, VecDeque<Event>)>,
    changed: Condvar,
}

impl Events {
    pub fn push(&self, object: &str, warning: bool, reason: &str, message: &str) {
        let ev = Event {
            time: Time::from_system(SystemTime::now()).0,
            object: object.to_string(),
            type_: if warning { "Warning" } else { "Normal" }.into(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if warning {
            log::warn!("{object}: {reason}: {message}");
        } else {
            log::info!("{object}: {reason}: {message}");
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        g.1.push_back(ev);
        while g.1.len() > KEEP {
            g.1.pop_front();
        }
        drop(g);
        self.changed.notify_all();
    }

    /// The events after sequence number `after` (0: all kept), and the latest number.
    /// With `wait`, blocks until there is at least one.
    pub fn since(&self, after: u64, wait: bool) -> (Vec<Event>, u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while wait && g.0 <= after {
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        let (seq, list) = &*g;
        let first_seq = seq - list.len() as u64; // sequence number before list[0]
        let skip = after.saturating_sub(first_seq) as usize;
        (list.iter().skip(skip).cloned().collect(), *seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_resumable() {
        let e = Events::default();
        for i in 0..(KEEP + 5) {
            e.push("default/web", false, "Started", &i.to_string());
        }
        let (all, seq) = e.since(0, false);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].message, "5");
        e.push("default/web", true, "ManifestInvalid", "x");
        let (new, seq2) = e.since(seq, false);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].type_, "Warning");
        assert_eq!(seq2, seq + 1);
    }
}
