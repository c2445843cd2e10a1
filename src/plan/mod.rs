//! Pure decisions: desired × observed → what to do, and when.
//!
//! Nothing here does I/O or reads a clock: `now` is always an argument, so every decision is
//! a table-driven unit test (STYLE.md §2).

pub mod backoff;
pub mod reconcile;

pub use backoff::{
    BackoffError, BackoffKey, BackoffSettings, BackoffState, compute_backoff_key,
    compute_restart_after_exit,
};
