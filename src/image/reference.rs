//! Image references, normalised the way containerd and Docker do it
//! (`busybox` → `docker.io/library/busybox:latest`).
//!
//! Pure parsing: no I/O. The grammar follows distribution's `reference` package: an optional
//! registry (a first component with `.` or `:`, or `localhost`), a lowercase path, an optional
//! `:tag`, an optional `@sha256:<hex>` digest; `:latest` is added when neither is given.

use std::fmt;

use super::digest::is_hex64;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`...
    pub registry: String,
    /// `library/busybox`, `foo/bar`...
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Reference, String> {
        if s.is_empty() {
            return Err("empty name".into());
        }
        if is_hex64(s) {
            return Err("a 64-digit hex string is an image ID, not a name".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if super::digest::sha256_hex(d).is_none() {
                    return Err(format!(
                        "digest {d:?} is not sha256:<64 lowercase hex digits>"
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        let path = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        check_registry(&registry)?;
        check_path(&path)?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            path,
            tag,
            digest,
        })
    }

    /// `docker.io/library/busybox`
    pub fn repository(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    /// The familiar short form Docker prints: `busybox:latest`, `foo/bar:1`,
    /// `localhost:5000/x:latest`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let short = full.strip_prefix("docker.io/").unwrap_or(&full);
        short.strip_prefix("library/").unwrap_or(short).to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid tag {tag:?}"))
    }
}

/// Registry: host name labels and an optional port (IPv6 literals are not supported).
fn check_registry(reg: &str) -> Result<(), String> {
    let (host, port) = match reg.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (reg, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("invalid registry {reg:?}"))
    }
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`.
fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    for comp in path.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !b.is_empty()
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter().all(|&c| alnum(c) || b"._-".contains(&c))
            && !comp.contains("..")
            && !comp.contains("___")
            && !comp.contains("._")
            && !comp.contains("_.")
            && !comp.contains(".-")
            && !comp.contains("-.")
            && !comp.contains("_-")
            && !comp.contains("-_");
        if !ok {
            return Err(format!("invalid path component {comp:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_containerd() {
        let d = format!("busybox@{D}");
        let dd = format!("docker.io/library/busybox@{D}");
        let td = format!("busybox:1.36@{D}");
        let tdd = format!("docker.io/library/busybox:1.36@{D}");
        let table: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("foo/bar:1", "docker.io/foo/bar:1"),
            ("foo/bar/baz", "docker.io/foo/bar/baz:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:v2", "localhost:5000/x:v2"),
            ("ghcr.io/org/app:v1.2.3", "ghcr.io/org/app:v1.2.3"),
            (
                "registry.example.com:443/a/b_c-d.e",
                "registry.example.com:443/a/b_c-d.e:latest",
            ),
            (&d, &dd),
            (&td, &tdd),
        ];
        for (input, want) in table {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for input in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:abc",
            "foo//bar",
            "foo/bar/",
            "-foo",
            "foo..bar",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Reference::parse(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn familiar_forms() {
        for (input, want) in [
            ("busybox", "busybox:latest"),
            ("foo/bar:1", "foo/bar:1"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
        ] {
            assert_eq!(Reference::parse(input).unwrap().familiar(), want);
            assert_eq!(
                Reference::parse(input).unwrap().repository(),
                Reference::parse(input)
                    .unwrap()
                    .to_string()
                    .rsplit_once(':')
                    .unwrap()
                    .0
            );
        }
    }
}
