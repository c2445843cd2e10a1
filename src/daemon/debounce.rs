//! Coalescing bursts of file events. Pure: the loop passes `now`.
//!
//! An editor's save is several events within a few milliseconds (vim: write `4913`, rename
//! the file to `x~`, write the new file, delete `x~`; `sed -i`: a temp file renamed over).
//! We apply a change once the directory has been quiet for [`QUIET`] (100 ms: longer than
//! any save sequence we measured, short enough to feel instant), but never later than
//! [`MAX_DELAY`] (1 s) after the first event of a burst, so that a file rewritten
//! continuously is still applied. Re-reading a file whose content did not change restarts
//! nothing (the reconcile compares pods), so an extra apply is harmless.
//!
//! One exception, the leading edge: a file renamed into place (`mv`, `sed -i`, an atomic
//! writer) is complete by construction, so when such a rename is the first event in a quiet
//! directory it is applied at once, without the quiet period; what follows it within the
//! burst is coalesced as usual. A plain write (`CLOSE_WRITE`) always waits: a writer may
//! close and reopen the file several times before it is whole.

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
    /// Records an event on `name`. `atomic`: the file was renamed into place. Returns true
    /// when the caller should apply `name` now (the leading edge); the name is then not kept
    /// for the batch, but the burst window starts, so that what follows is coalesced.
    pub fn note(&mut self, name: String, now: Instant, atomic: bool) -> bool {
        let now_please = atomic && self.first.is_none();
        if !now_please {
            self.names.insert(name);
        }
        self.touch(now);
        now_please
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
        } else if names.is_empty() {
            // Only a leading-edge apply in this window: nothing left to do.
            None
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
        d.note("a.yaml".into(), t0, false);
        assert_eq!(d.deadline(), Some(t0 + QUIET));
        assert_eq!(d.take(t0 + Duration::from_millis(50)), None);
        // Events every 50 ms keep pushing the apply back, up to the cap.
        let mut t = t0;
        for _ in 0..30 {
            t += Duration::from_millis(50);
            assert!(!d.note("a.yaml".into(), t, true));
        }
        assert_eq!(d.deadline(), Some(t0 + MAX_DELAY));
        d.note("b.yaml".into(), t, false);
        let batch = d.take(t0 + MAX_DELAY).unwrap();
        assert_eq!(
            batch,
            Batch::Files(["a.yaml".to_string(), "b.yaml".to_string()].into())
        );
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn a_rename_into_a_quiet_directory_applies_at_once() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert!(d.note("a.yaml".into(), t0, true));
        // The window started: the next rename waits for the quiet period.
        assert!(!d.note("a.yaml".into(), t0 + QUIET / 2, true));
        assert_eq!(d.deadline(), Some(t0 + QUIET / 2 + QUIET));
        assert_eq!(
            d.take(t0 + QUIET * 2),
            Some(Batch::Files(["a.yaml".to_string()].into()))
        );
        // Alone in its window, a leading-edge apply leaves nothing behind.
        assert!(d.note("b.yaml".into(), t0 + QUIET * 3, true));
        assert_eq!(d.take(t0 + QUIET * 5), None);
        assert_eq!(d.deadline(), None);
        // A write (not a rename) always waits.
        assert!(!d.note("c.yaml".into(), t0 + QUIET * 6, false));
    }

    #[test]
    fn overflow_means_one_rescan() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        d.note("a.yaml".into(), t0, false);
        d.note_rescan(t0);
        d.note_rescan(t0);
        assert_eq!(d.take(t0 + QUIET), Some(Batch::Rescan));
        assert_eq!(d.take(t0 + QUIET * 10), None);
    }
}
