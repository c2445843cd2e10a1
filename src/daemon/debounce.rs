//! Coalescing bursts of file events. Pure: the loop passes `now`.
//!
//! An editor's save is several events within a few milliseconds (vim: write `4913`, rename
//! the file to `x~`, write the new file, delete `x~`; `sed -i`: a temp file renamed over).
//! We apply a change once the directory has been quiet for [`QUIET`] (100 ms: longer than
//! any save sequence we measured, short enough to feel instant), but never later than
//! [`MAX_DELAY`] (1 s) after the first event of a burst, so that a file rewritten
//! continuously is still applied. Re-reading a file whose content did not change restarts
//! nothing (the reconcile compares pods), so an extra apply is harmless.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub const QUIET: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Debounce {
    /// File names touched since the last apply.
    names: BTreeSet<String>,
    /// The whole directory must be read again (overflow, watcher error).
    rescan: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// What to apply when the deadline passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    Files(BTreeSet<String>),
    Rescan,
}

impl Debounce {
    pub fn note(&mut self, name: String, now: Instant) {
        self.names.insert(name);
        self.touch(now);
    }

    pub fn note_rescan(&mut self, now: Instant) {
        self.rescan = true;
        self.touch(now);
    }

    fn touch(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending batch is due; `None` when nothing is pending (sleep forever).
    pub fn deadline(&self) -> Option<Instant> {
        match (self.first, self.last) {
            (Some(f), Some(l)) => Some((l + QUIET).min(f + MAX_DELAY)),
            _ => None,
        }
    }

    /// The batch, if due at `now`.
    pub fn take(&mut self, now: Instant) -> Option<Batch> {
        if self.deadline()? > now {
            return None;
        }
        self.first = None;
        self.last = None;
        let names = std::mem::take(&mut self.names);
        if std::mem::take(&mut self.rescan) {
            Some(Batch::Rescan)
        } else {
            Some(Batch::Files(names))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_period_and_cap() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.deadline(), None);
        d.note("a.yaml".into(), t0);
        assert_eq!(d.deadline(), Some(t0 + QUIET));
        assert_eq!(d.take(t0 + Duration::from_millis(50)), None);
        // Events every 50 ms keep pushing the apply back, up to the cap.
        let mut t = t0;
        for _ in 0..30 {
            t += Duration::from_millis(50);
            d.note("a.yaml".into(), t);
        }
        assert_eq!(d.deadline(), Some(t0 + MAX_DELAY));
        d.note("b.yaml".into(), t);
        let batch = d.take(t0 + MAX_DELAY).unwrap();
        assert_eq!(
            batch,
            Batch::Files(["a.yaml".to_string(), "b.yaml".to_string()].into())
        );
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn overflow_means_one_rescan() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        d.note("a.yaml".into(), t0);
        d.note_rescan(t0);
        d.note_rescan(t0);
        assert_eq!(d.take(t0 + QUIET), Some(Batch::Rescan));
        assert_eq!(d.take(t0 + QUIET * 10), None);
    }
}
