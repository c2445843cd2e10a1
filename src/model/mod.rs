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

/// Linux capability names without the `CAP_` prefix, in kernel order (the index is the
/// capability's number, `include/uapi/linux/capability.h`).
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability number of a name as Kubernetes accepts it (`NET_ADMIN`, `CAP_NET_ADMIN`,
/// any case); `None` for an unknown name.
pub fn capability_number(name: &str) -> Option<usize> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.iter().position(|c| *c == bare)
}
