//! Which uid, gid and supplementary groups a container runs as: `runAsUser`/`runAsGroup`,
//! the image's `User`, and the image's /etc/passwd and /etc/group. Parsing is pure; the
//! caller reads the files from the image's layers.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} not found in the image's /etc/passwd")]
    NoUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    NoGroup(String),
    #[error("{0} {1} is out of range")]
    Range(&'static str, i64),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

fn id_of(v: i64, what: &'static str) -> Result<u32, UserError> {
    u32::try_from(v).map_err(|_| UserError::Range(what, v))
}

/// Computes the identity. `run_as_user`/`run_as_group` come from the security contexts
/// (container over pod); `image_user` is the image config's `User` (`uid`, `name`,
/// `uid:gid`, `name:group`).
pub fn compute_identity(
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    supplemental: &[i64],
    image_user: Option<&str>,
    passwd: &str,
    group: &str,
) -> Result<Identity, UserError> {
    let (user_part, group_part) = match image_user.filter(|u| !u.is_empty()) {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Some(a), Some(b)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    // The uid: runAsUser wins over the image's User.
    let uid = match (run_as_user, user_part) {
        (Some(u), _) => id_of(u, "runAsUser")?,
        (None, Some(u)) => match u.parse::<u32>() {
            Ok(n) => n,
            Err(_) => passwd_entries(passwd)
                .find(|e| e.name == u)
                .map(|e| e.uid)
                .ok_or_else(|| UserError::NoUser(u.to_string()))?,
        },
        (None, None) => 0,
    };
    let entry = passwd_entries(passwd).find(|e| e.uid == uid);
    let gid = match (run_as_group, group_part) {
        (Some(g), _) => id_of(g, "runAsGroup")?,
        (None, Some(g)) if run_as_user.is_none() => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries(group)
                .find(|(n, _, _)| *n == g)
                .map(|(_, id, _)| id)
                .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
        },
        _ => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    let mut groups = Vec::new();
    if let Some(e) = &entry {
        for (_, id, members) in group_entries(group) {
            if members.contains(&e.name) && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    for g in supplemental {
        let id = id_of(*g, "supplementalGroups")?;
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    let home = entry
        .map(|e| e.home.to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok(Identity {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwebg:x:1001:\nextra:x:2000:web,other\n";

    #[test]
    fn identities() {
        let id = |u, g, s: &[i64], img| compute_identity(u, g, s, img, PASSWD, GROUP);
        assert_eq!(
            id(None, None, &[], None).unwrap(),
            Identity {
                uid: 0,
                gid: 0,
                groups: vec![],
                home: "/root".into()
            }
        );
        let web = id(Some(1000), None, &[], None).unwrap();
        assert_eq!(
            (web.uid, web.gid, web.groups, web.home.as_str()),
            (1000, 1001, vec![2000], "/home/web")
        );
        let named = id(None, None, &[5], Some("web")).unwrap();
        assert_eq!(
            (named.uid, named.gid, named.groups),
            (1000, 1001, vec![2000, 5])
        );
        let pair = id(None, None, &[], Some("web:root")).unwrap();
        assert_eq!((pair.uid, pair.gid), (1000, 0));
        let numeric = id(None, Some(7), &[], Some("4242")).unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (4242, 7, "/")
        );
        assert_eq!(
            id(None, None, &[], Some("ghost")),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            id(Some(-1), None, &[], None),
            Err(UserError::Range("runAsUser", -1))
        );
    }
}
