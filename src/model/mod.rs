//! The Pod model: the subset of Kubernetes `v1 Pod` that podsup runs, as typed structs.
//!
//! Field names and shapes are Kubernetes' own (camelCase on the wire), so a loaded pod can be
//! written back as a Kubernetes object. After [`crate::manifest`] has loaded a pod, its
//! defaults are applied (`Some` where Kubernetes would default), so two specs that mean the
//! same compare equal. Pure: no I/O, no clock.

mod pod;
mod quantity;
mod status;
pub mod time;

pub use pod::*;
pub use quantity::{Quantity, QuantityError};
pub use status::*;
