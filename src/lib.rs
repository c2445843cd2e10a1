//! podsup: a declarative pod supervisor for small Linux machines.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.

pub mod api;
pub mod cgroup;
pub mod cli;
pub mod container;
pub mod daemon;
pub mod image;
pub mod logs;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod shim;
pub mod sys;
