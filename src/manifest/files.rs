//! Which files of a manifest directory hold manifests, in which order. Pure.
//!
//! `.yaml`, `.yml` and `.json` files, sorted by name (the first file that declares a pod
//! wins). Hidden files and editor leftovers are skipped: an editor's swap or backup file
//! must never start a second copy of a pod.

/// True when `name` (a file name, no directory) is a manifest podsup reads.
pub fn is_manifest_name(name: &str) -> bool {
    if name.starts_with('.') // dotfiles, vim's .x.swp, emacs' .#x lock links
        || name.starts_with('#') // emacs auto-save #x#
        || name.ends_with('~') // backups
        || name == "4913"
    // vim's probe file
    {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

/// The manifest files among `names`, in the order they are applied (byte order of the name).
pub fn select<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = names.filter(|n| is_manifest_name(n)).collect();
    v.sort_unstable();
    v
}

/// A pod declared by a file that lost to an earlier file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate<K> {
    pub key: K,
    /// The file that declares it too, and loses.
    pub file: String,
    /// The file that wins.
    pub winner: String,
}

/// Decides which file owns each pod: the first file, in the order given (name order), wins;
/// every later declaration is returned as a [`Duplicate`] to report.
pub fn compute_owners<K: Ord + Clone>(
    files: &[(String, Vec<K>)],
) -> (std::collections::BTreeMap<K, String>, Vec<Duplicate<K>>) {
    let mut owners = std::collections::BTreeMap::new();
    let mut dups = Vec::new();
    for (file, keys) in files {
        for key in keys {
            match owners.get(key) {
                Some(winner) => dups.push(Duplicate {
                    key: key.clone(),
                    file: file.clone(),
                    winner: String::clone(winner),
                }),
                None => {
                    owners.insert(key.clone(), file.clone());
                }
            }
        }
    }
    (owners, dups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_wins() {
        let files = vec![
            ("a.yaml".to_string(), vec!["web", "db"]),
            ("b.yaml".to_string(), vec!["web"]),
            ("c.yaml".to_string(), vec!["cache", "db"]),
        ];
        let (owners, dups) = compute_owners(&files);
        assert_eq!(owners["web"], "a.yaml");
        assert_eq!(owners["cache"], "c.yaml");
        assert_eq!(
            dups,
            vec![
                Duplicate {
                    key: "web",
                    file: "b.yaml".into(),
                    winner: "a.yaml".into()
                },
                Duplicate {
                    key: "db",
                    file: "c.yaml".into(),
                    winner: "a.yaml".into()
                },
            ]
        );
    }

    #[test]
    fn selects_manifests_only() {
        let table = [
            ("web.yaml", true),
            ("web.yml", true),
            ("web.json", true),
            ("WEB.YAML", true),
            ("web.yaml~", false),
            (".web.yaml", false),
            (".web.yaml.swp", false),
            ("web.yaml.swp", false),
            (".#web.yaml", false),
            ("#web.yaml#", false),
            ("4913", false),
            ("web.txt", false),
            ("README.md", false),
            (".yaml", false),
            ("web.yaml.bak", false),
            ("web.yaml.dpkg-new", false),
        ];
        for (name, want) in table {
            assert_eq!(is_manifest_name(name), want, "{name}");
        }
    }

    #[test]
    fn orders_by_name() {
        let names = ["b.yaml", "a.yml", ".x.yaml", "c.json", "a.yaml~"];
        assert_eq!(select(names.into_iter()), vec!["a.yml", "b.yaml", "c.json"]);
    }
}
