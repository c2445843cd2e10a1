//! Capability sets: Docker's default set, `capabilities.add/drop`, `privileged`. Pure.

use crate::model::SecurityContext;

use crate::model::capability_number;

/// Docker's (and containerd's CRI) default set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW
/// SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
pub const DEFAULT_SET: u64 = 0x0000_0000_a804_25fb;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown capability {0:?}")]
pub struct UnknownCap(pub String);

/// The bit of a capability named as Kubernetes allows (`NET_ADMIN` or `CAP_NET_ADMIN`, any case).
fn bit(name: &str) -> Result<u64, UnknownCap> {
    capability_number(name)
        .map(|i| 1u64 << i)
        .ok_or_else(|| UnknownCap(name.to_string()))
}

/// Every capability the running kernel knows (`last_cap` from /proc/sys/kernel/cap_last_cap).
pub fn all(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// The container's capability set (bounding = permitted = effective for root).
pub fn compute_caps(sc: Option<&SecurityContext>, last_cap: u32) -> Result<u64, UnknownCap> {
    let all = all(last_cap);
    let Some(sc) = sc else {
        return Ok(DEFAULT_SET & all);
    };
    if sc.privileged == Some(true) {
        return Ok(all);
    }
    let mut set = DEFAULT_SET;
    if let Some(c) = &sc.capabilities {
        for name in &c.add {
            set |= if name.eq_ignore_ascii_case("ALL") {
                all
            } else {
                bit(name)?
            };
        }
        for name in &c.drop {
            set &= !if name.eq_ignore_ascii_case("ALL") {
                u64::MAX
            } else {
                bit(name)?
            };
        }
    }
    Ok(set & all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Capabilities;

    fn sc(add: &[&str], drop: &[&str]) -> SecurityContext {
        SecurityContext {
            capabilities: Some(Capabilities {
                add: add.iter().map(|s| s.to_string()).collect(),
                drop: drop.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sets() {
        assert_eq!(compute_caps(None, 40), Ok(DEFAULT_SET));
        assert_eq!(
            compute_caps(Some(&sc(&[], &["NET_RAW"])), 40),
            Ok(DEFAULT_SET & !(1 << 13))
        );
        assert_eq!(
            compute_caps(Some(&sc(&["CAP_NET_ADMIN"], &[])), 40),
            Ok(DEFAULT_SET | (1 << 12))
        );
        assert_eq!(compute_caps(Some(&sc(&["NET_ADMIN"], &["ALL"])), 40), Ok(0));
        assert_eq!(compute_caps(Some(&sc(&["ALL"], &[])), 40), Ok(all(40)));
        assert_eq!(
            compute_caps(Some(&sc(&["chown"], &["kill"])), 40),
            Ok(DEFAULT_SET & !(1 << 5))
        );
        assert_eq!(
            compute_caps(Some(&sc(&["NOPE"], &[])), 40),
            Err(UnknownCap("NOPE".into()))
        );
        let privileged = SecurityContext {
            privileged: Some(true),
            ..Default::default()
        };
        assert_eq!(compute_caps(Some(&privileged), 40), Ok((1u64 << 41) - 1));
    }
}
