//! Which cgroup hierarchies this machine has and where they are mounted.
//!
//! The parsers take the text of `/proc/self/mountinfo` and `/proc/<pid>/cgroup` and never
//! open a file themselves (crun's `get_cgroup_process_from_content` does the same), so the
//! layouts of other machines are table tests here. [`Layout::detect`] is the only I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Error;

/// The v1 controllers podsup uses, and the only v1 hierarchies it ever creates groups in.
/// Never `name=systemd`, devices, blkio, cpuset, net_cls…: those belong to the host.
pub const V1_CONTROLLERS: [V1Controller; 5] = [
    V1Controller::Memory,
    V1Controller::Cpu,
    V1Controller::Cpuacct,
    V1Controller::Pids,
    V1Controller::Freezer,
];

/// A cgroup v1 controller podsup uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum V1Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
    Freezer,
}

impl V1Controller {
    /// The controller's name as the kernel spells it in mount options and `/proc/*/cgroup`.
    pub fn name(self) -> &'static str {
        match self {
            V1Controller::Memory => "memory",
            V1Controller::Cpu => "cpu",
            V1Controller::Cpuacct => "cpuacct",
            V1Controller::Pids => "pids",
            V1Controller::Freezer => "freezer",
        }
    }

    fn from_name(name: &str) -> Option<V1Controller> {
        V1_CONTROLLERS.into_iter().find(|c| c.name() == name)
    }
}

/// How the machine mounts cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies (no cgroup2 mount at all).
    V1,
    /// v1 hierarchies for the controllers plus a cgroup2 mount (usually
    /// `/sys/fs/cgroup/unified`) used for process tracking, `cgroup.kill` and `cgroup.events`.
    Hybrid,
    /// One cgroup2 hierarchy with every controller.
    V2,
}

/// One line of `/proc/self/mountinfo`, the fields podsup needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// The path inside the filesystem that is mounted (field 4; `/` for a whole hierarchy).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

/// The cgroup mounts podsup works with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// Mount point of each v1 controller podsup uses (co-mounted controllers, such as
    /// `cpu,cpuacct`, share one mount point). Empty on pure v2.
    pub v1: BTreeMap<V1Controller, PathBuf>,
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
}

impl Layout {
    /// Reads `/proc/self/mountinfo` and decides the layout from it.
    pub fn detect() -> Result<Layout, Error> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|err| Error::Read {
            path: path.to_path_buf(),
            err,
        })?;
        compute_layout(&parse_mountinfo(&text))
    }

    /// Every directory that roots a hierarchy podsup uses, each once: the v1 controller
    /// mounts (deduplicated) and then the cgroup2 mount.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in self.v1.values() {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        if let Some(u) = &self.unified {
            out.push(u.clone());
        }
        out
    }
}

/// Parses `/proc/<pid>/mountinfo` text (proc(5)). Lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let _dev = l.next()?;
    let root = unescape(l.next()?);
    let mount_point = PathBuf::from(unescape(l.next()?));
    let mut r = right.split(' ');
    let fs_type = r.next()?.to_string();
    let _source = r.next()?;
    let super_options = r
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    Some(MountInfo {
        root,
        mount_point,
        fs_type,
        super_options,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decides the layout from the mounts: v1 controller mounts (fs type `cgroup`, controller
/// named in the super options) and the first cgroup2 mount. The first mount of a hierarchy
/// wins (later ones are usually bind mounts of the same).
pub fn compute_layout(mounts: &[MountInfo]) -> Result<Layout, Error> {
    let mut v1 = BTreeMap::new();
    let mut unified = None;
    for m in mounts {
        match m.fs_type.as_str() {
            "cgroup" => {
                for opt in &m.super_options {
                    if let Some(c) = V1Controller::from_name(opt) {
                        v1.entry(c).or_insert_with(|| m.mount_point.clone());
                    }
                }
            }
            "cgroup2" if unified.is_none() => unified = Some(m.mount_point.clone()),
            _ => {}
        }
    }
    // A v1 mount of some controller next to a cgroup2 root that has the memory
    // controller (a v2 host where someone mounted, say, a v1 freezer) is still v2: the
    // hybrid layout is v1 for the controllers, memory first among them.
    if unified.is_some() && !v1.contains_key(&V1Controller::Memory) {
        v1.clear();
    }
    let mode = match (v1.is_empty(), unified.is_some()) {
        (false, false) => Mode::V1,
        (false, true) => Mode::Hybrid,
        (true, true) => Mode::V2,
        (true, false) => {
            return Err(Error::Layout(
                "no cgroup mount for memory, cpu, cpuacct, pids or freezer and no cgroup2 mount in /proc/self/mountinfo".into(),
            ));
        }
    };
    Ok(Layout { mode, v1, unified })
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:cgroup-path` (cgroups(7)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCgroup {
    pub hierarchy_id: u32,
    /// Empty for the cgroup2 hierarchy (`0::/path`).
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup` text. Lines that do not parse are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let hierarchy_id = it.next()?.parse().ok()?;
            let controllers = it
                .next()?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let path = it.next()?.to_string();
            Some(ProcCgroup {
                hierarchy_id,
                controllers,
                path,
            })
        })
        .collect()
}

/// The cgroup path of a v1 controller (`Some("cpu")`) or of the cgroup2 hierarchy (`None`)
/// in parsed `/proc/<pid>/cgroup` lines. Co-mounted lists such as `cpu,cpuacct` match both.
pub fn compute_proc_cgroup_path<'a>(
    lines: &'a [ProcCgroup],
    controller: Option<&str>,
) -> Option<&'a str> {
    lines
        .iter()
        .find(|l| match controller {
            Some(c) => l.controllers.iter().any(|x| x == c),
            None => l.hierarchy_id == 0 && l.controllers.is_empty(),
        })
        .map(|l| l.path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development machine: separate v1 mounts plus a cgroup2 mount with hugetlb.
    const HYBRID_SEPARATE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// systemd's classic hybrid: cpu and cpuacct co-mounted, optional fields present.
    const HYBRID_SYSTEMD: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
";

    const PURE_V2: &str = "\
24 18 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const V2_STRAY_V1: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw
40 30 0:40 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
";

    const V1_ONLY: &str = "\
20 1 0:18 / /cg/mem rw - cgroup none rw,memory
21 1 0:19 / /cg/cpu\\040x rw - cgroup none rw,cpu,cpuacct
";

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn layouts() {
        struct Case {
            name: &'static str,
            text: &'static str,
            mode: Mode,
            v1: Vec<(V1Controller, &'static str)>,
            unified: Option<&'static str>,
        }
        use V1Controller::*;
        let cases = [
            Case {
                name: "hybrid, separate mounts",
                text: HYBRID_SEPARATE,
                mode: Mode::Hybrid,
                v1: vec![
                    (Memory, "/sys/fs/cgroup/memory"),
                    (Cpu, "/sys/fs/cgroup/cpu"),
                    (Cpuacct, "/sys/fs/cgroup/cpuacct"),
                    (Pids, "/sys/fs/cgroup/pids"),
                    (Freezer, "/sys/fs/cgroup/freezer"),
                ],
                unified: Some("/sys/fs/cgroup/unified"),
            },
            Case {
                name: "hybrid, systemd co-mount",
                text: HYBRID_SYSTEMD,
                mode: Mode::Hybrid,
                v1: vec![
                    (Memory, "/sys/fs/cgroup/memory"),
                    (Cpu, "/sys/fs/cgroup/cpu,cpuacct"),
                    (Cpuacct, "/sys/fs/cgroup/cpu,cpuacct"),
                    (Pids, "/sys/fs/cgroup/pids"),
                    (Freezer, "/sys/fs/cgroup/freezer"),
                ],
                unified: Some("/sys/fs/cgroup/unified"),
            },
            Case {
                name: "pure v2",
                text: PURE_V2,
                mode: Mode::V2,
                v1: vec![],
                unified: Some("/sys/fs/cgroup"),
            },
            Case {
                name: "v1 only, escaped mount point",
                text: V1_ONLY,
                mode: Mode::V1,
                v1: vec![
                    (Memory, "/cg/mem"),
                    (Cpu, "/cg/cpu x"),
                    (Cpuacct, "/cg/cpu x"),
                ],
                unified: None,
            },
            Case {
                name: "v2 with a stray v1 freezer mount",
                text: V2_STRAY_V1,
                mode: Mode::V2,
                v1: vec![],
                unified: Some("/sys/fs/cgroup"),
            },
        ];
        for c in cases {
            let l = compute_layout(&parse_mountinfo(c.text)).expect(c.name);
            assert_eq!(l.mode, c.mode, "{}", c.name);
            let want: BTreeMap<_, _> = c.v1.iter().map(|(k, v)| (*k, p(v))).collect();
            assert_eq!(l.v1, want, "{}", c.name);
            assert_eq!(l.unified, c.unified.map(p), "{}", c.name);
        }
    }

    #[test]
    fn roots_are_deduplicated() {
        let l = compute_layout(&parse_mountinfo(HYBRID_SYSTEMD)).unwrap();
        assert_eq!(
            l.roots(),
            vec![
                p("/sys/fs/cgroup/memory"),
                p("/sys/fs/cgroup/cpu,cpuacct"),
                p("/sys/fs/cgroup/pids"),
                p("/sys/fs/cgroup/freezer"),
                p("/sys/fs/cgroup/unified"),
            ]
        );
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let text = "24 18 0:21 / /sys rw - sysfs sysfs rw\ngarbage\n";
        let e = compute_layout(&parse_mountinfo(text)).unwrap_err();
        assert!(e.to_string().starts_with("no cgroup mount"), "{e}");
    }

    #[test]
    fn mountinfo_fields() {
        let m = parse_mountinfo(
            "26 25 0:23 /sub /a\\134b\\011c rw shared:10 master:3 - cgroup2 none rw,nsdelegate\n",
        );
        assert_eq!(
            m,
            vec![MountInfo {
                root: "/sub".into(),
                mount_point: p("/a\\b\tc"),
                fs_type: "cgroup2".into(),
                super_options: vec!["rw".into(), "nsdelegate".into()],
            }]
        );
    }

    #[test]
    fn proc_cgroup() {
        let text = "\
9:name=systemd:/
4:memory:/process_api/da1e
2:cpu,cpuacct:/podsup/pod1/app
0::/podsup/pod1/app
bad line
";
        let lines = parse_proc_cgroup(text);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].controllers, vec!["name=systemd".to_string()]);
        let cases = [
            (Some("memory"), Some("/process_api/da1e")),
            (Some("cpuacct"), Some("/podsup/pod1/app")),
            (Some("cpu"), Some("/podsup/pod1/app")),
            (None, Some("/podsup/pod1/app")),
            (Some("pids"), None),
        ];
        for (c, want) in cases {
            assert_eq!(compute_proc_cgroup_path(&lines, c), want, "{c:?}");
        }
        // A path may itself contain ':'.
        let l = parse_proc_cgroup("0::/a:b\n");
        assert_eq!(l[0].path, "/a:b");
    }
}
