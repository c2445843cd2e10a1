//! Manifest files → validated, defaulted [`Pod`]s, or errors that name file:line:column.
//!
//! The pipeline: bytes (size-checked, UTF-8-checked) → [`yaml`] node trees with positions →
//! kind check → typed structs through [`de`] → [`validate::apply_defaults`] →
//! [`validate::validate`], whose field paths are mapped back to positions here. `.json`
//! files go through the same YAML parser (JSON is YAML). Pure except for [`load_file`] and
//! [`scan_dir`], which read files.

pub mod de;
pub mod fields;
pub mod files;
pub mod validate;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Pod;
use yaml::{Node, NodeKind, Pos};

pub use files::{is_manifest_name, select};

/// Largest manifest file podsup reads. Kubernetes objects are limited to about 1.5 MiB by
/// etcd; a hand-written Pod is a few KiB.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// One error in a manifest, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// Position of the offending node; 0:0 when the error concerns the whole file.
    pub pos: Pos,
    /// Field path, e.g. `spec.containers[1]`; empty for document-level errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.line > 0 {
            write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.col)?;
        } else {
            write!(f, "{}: ", self.file)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn file(file: &str, message: impl Into<String>) -> LoadError {
        LoadError {
            diagnostics: vec![Diagnostic {
                file: file.to_string(),
                pos: Pos::default(),
                path: String::new(),
                message: message.into(),
            }],
        }
    }
}

/// A loaded pod and where its name is written (for messages about the pod as a whole).
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub pod: Pod,
    pub pos: Pos,
}

/// Reads and loads one manifest file. The file is all or nothing: one bad document makes the
/// whole file invalid, so that a half-written file never changes what runs.
pub fn load_file(path: &Path) -> Result<Vec<Pod>, LoadError> {
    Ok(load_file_located(path)?
        .into_iter()
        .map(|l| l.pod)
        .collect())
}

/// [`load_file`], keeping the position of each pod's `metadata.name`.
pub fn load_file_located(path: &Path) -> Result<Vec<Located>, LoadError> {
    use std::io::Read;
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| LoadError::file(&name, format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| LoadError::file(&name, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(LoadError::file(&name, "not a regular file"));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(too_big(&name, meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Read at most one byte past the limit: the file may grow while we read it.
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LoadError::file(&name, format!("cannot read: {e}")))?;
    load_bytes_located(&name, &bytes)
}

fn too_big(name: &str, len: u64) -> LoadError {
    LoadError::file(
        name,
        format!(
            "file is {len} bytes, more than the {MAX_FILE_SIZE} bytes podsup reads from a manifest"
        ),
    )
}

/// Loads the pods of one manifest's bytes; `name` is used in messages.
pub fn load_bytes(name: &str, bytes: &[u8]) -> Result<Vec<Pod>, LoadError> {
    Ok(load_bytes_located(name, bytes)?
        .into_iter()
        .map(|l| l.pod)
        .collect())
}

/// [`load_bytes`], keeping the position of each pod's `metadata.name`.
pub fn load_bytes_located(name: &str, bytes: &[u8]) -> Result<Vec<Located>, LoadError> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(too_big(name, bytes.len() as u64));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let pos = pos_of_offset(bytes, e.valid_up_to());
            return Err(LoadError {
                diagnostics: vec![Diagnostic {
                    file: name.into(),
                    pos,
                    path: String::new(),
                    message: "invalid UTF-8: a manifest must be UTF-8 text".into(),
                }],
            });
        }
    };
    if let Some(off) = text.find('\0') {
        return Err(LoadError {
            diagnostics: vec![Diagnostic {
                file: name.into(),
                pos: pos_of_offset(bytes, off),
                path: String::new(),
                message: "binary data (a NUL byte): a manifest must be YAML or JSON text".into(),
            }],
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = yaml::parse_documents(text).map_err(|e| LoadError {
        diagnostics: vec![Diagnostic {
            file: name.into(),
            pos: e.pos,
            path: String::new(),
            message: yaml_message(&e.msg, text, e.pos),
        }],
    })?;
    if docs.is_empty() {
        return Err(LoadError::file(
            name,
            "no Pod in this file (it is empty or has only comments)",
        ));
    }
    let mut pods = Vec::new();
    let mut diagnostics = Vec::new();
    for doc in &docs {
        match load_doc(name, doc) {
            Ok(pod) => {
                let pos = doc
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .map_or(doc.pos, |n| n.pos);
                if let Some(first) = pods.iter().find(|l: &&Located| l.pod.key() == pod.key()) {
                    diagnostics.push(Diagnostic {
                        file: name.into(),
                        pos,
                        path: "metadata.name".into(),
                        message: format!(
                            "pod {} is declared twice in this file (first at {})",
                            pod.key(),
                            first.pos
                        ),
                    });
                }
                pods.push(Located { pod, pos });
            }
            Err(mut d) => diagnostics.append(&mut d),
        }
    }
    if diagnostics.is_empty() {
        Ok(pods)
    } else {
        diagnostics.sort_by_key(|d| d.pos);
        Err(LoadError { diagnostics })
    }
}

/// Makes the parser's message friendlier for the mistakes people make by hand.
fn yaml_message(msg: &str, text: &str, pos: Pos) -> String {
    let line = text
        .lines()
        .nth(pos.line.saturating_sub(1) as usize)
        .unwrap_or("");
    let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
    if indent.contains('\t') || (msg.contains("tab") && !msg.contains("YAML")) {
        return format!("invalid YAML: {msg} (YAML indentation must use spaces, not tabs)");
    }
    format!("invalid YAML: {msg}")
}

fn pos_of_offset(bytes: &[u8], off: usize) -> Pos {
    let before = &bytes[..off.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
    Pos { line, col }
}

fn load_doc(name: &str, doc: &Node) -> Result<Pod, Vec<Diagnostic>> {
    let diag = |pos: Pos, path: &str, message: String| Diagnostic {
        file: name.into(),
        pos,
        path: path.into(),
        message,
    };
    if !matches!(doc.kind, NodeKind::Map(_)) {
        return Err(vec![diag(
            doc.pos,
            "",
            format!("expected a Pod object, got {}", doc.type_name()),
        )]);
    }
    // The kind first: a Deployment full of unknown Pod fields should say so, not list them.
    match doc.get("kind") {
        None => {
            return Err(vec![diag(
                doc.pos,
                "",
                "kind is required (kind: Pod)".into(),
            )]);
        }
        Some(k) => match k.as_str() {
            Some("Pod") => {}
            Some(other) => {
                let hint = match other {
                    "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job"
                    | "CronJob" => {
                        ": podsup runs Pods only; put the pod template's metadata and spec in a Pod"
                    }
                    _ => ": podsup runs Pods only (apiVersion: v1, kind: Pod)",
                };
                return Err(vec![diag(
                    k.pos,
                    "kind",
                    format!("kind {other:?} is not supported{hint}"),
                )]);
            }
            None => {
                return Err(vec![diag(
                    k.pos,
                    "kind",
                    format!("expected a string, got {}", k.type_name()),
                )]);
            }
        },
    }
    // serde stops at the first error. To report every schema error, drop the offending key
    // (or null the offending value) from a copy of the tree and try again, a bounded number
    // of times.
    let mut errors = Vec::new();
    let mut handled: Vec<String> = Vec::new();
    let mut quiet: Vec<String> = Vec::new();
    let mut work: Option<Node> = None;
    let mut pod: Option<Pod> = None;
    for _ in 0..MAX_SCHEMA_ERRORS {
        let tree = work.as_ref().unwrap_or(doc);
        match de::from_node::<Pod>(tree, "") {
            Ok(p) => {
                pod = Some(p);
                break;
            }
            Err(e) => {
                let path = e.path.clone().unwrap_or_default();
                // An error at a value we already dropped is an echo of the first one.
                if handled.iter().any(|h| path.starts_with(h.as_str())) {
                    break;
                }
                let message = match &e.kind {
                    de::DeErrorKind::UnknownField {
                        field,
                        owner,
                        expected,
                    } => fields::unknown_field_message(owner, field, expected),
                    _ => e.to_string(),
                };
                errors.push(diag(e.pos.unwrap_or(doc.pos), &path, message));
                let mut next = work.take().unwrap_or_else(|| doc.clone());
                let fixed = match &e.kind {
                    de::DeErrorKind::UnknownField { field, .. } => {
                        // Rules about the object that held it would only repeat this error.
                        quiet.push(path.clone());
                        remove_key(&mut next, &path, field)
                    }
                    de::DeErrorKind::MissingField(_) => false,
                    _ => {
                        handled.push(path.clone());
                        drop_value(&mut next, &path)
                    }
                };
                if !fixed {
                    break;
                }
                work = Some(next);
            }
        }
    }
    let Some(mut pod) = pod else {
        return Err(errors);
    };
    validate::apply_defaults(&mut pod);
    for fe in validate::validate(&pod) {
        // A value dropped above for its type would be reported again as missing.
        let echoes = handled.iter().any(|p| fe.path.starts_with(p.as_str()))
            || quiet.iter().any(|p| {
                fe.path == *p
                    || fe.path.strip_prefix(p.as_str()).is_some_and(|rest| {
                        rest.starts_with('.') && !rest[1..].contains(['.', '['])
                    })
            });
        if echoes {
            continue;
        }
        let (pos, path) = locate(doc, &fe.path);
        errors.push(diag(pos, &path, fe.msg));
    }
    if errors.is_empty() {
        Ok(pod)
    } else {
        Err(errors)
    }
}

/// Most schema errors reported per document.
const MAX_SCHEMA_ERRORS: usize = 50;

fn node_at_mut<'a>(mut node: &'a mut Node, path: &str) -> Option<&'a mut Node> {
    for seg in split_path(path) {
        node = match (seg, &mut node.kind) {
            (Seg::Key(k), NodeKind::Map(entries)) => entries
                .iter_mut()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)?,
            (Seg::Index(i), NodeKind::Seq(items)) => items.get_mut(i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn remove_key(doc: &mut Node, path: &str, key: &str) -> bool {
    match node_at_mut(doc, path).map(|n| &mut n.kind) {
        Some(NodeKind::Map(entries)) => {
            let before = entries.len();
            entries.retain(|(k, _)| k.as_str() != Some(key));
            entries.len() < before
        }
        _ => false,
    }
}

/// Drops the value at `path`: a map entry (`…[key]`) is removed, a field is set to null.
fn drop_value(doc: &mut Node, path: &str) -> bool {
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
    {
        let key = &path[open + 1..path.len() - 1];
        if key.parse::<usize>().is_err() {
            return remove_key(doc, &path[..open], key);
        }
    }
    if path.is_empty() {
        return false;
    }
    match node_at_mut(doc, path) {
        Some(n) if n.kind != NodeKind::Scalar(yaml::Scalar::Null) => {
            n.kind = NodeKind::Scalar(yaml::Scalar::Null);
            true
        }
        _ => false,
    }
}

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `spec.containers[1].resources.limits[cpu]` into segments. Bracketed parts that are
/// not numbers are map keys, and may contain dots (`labels[app.kubernetes.io/name]`).
fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut segs = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            let inner = &r[..end];
            segs.push(match inner.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(inner),
            });
            rest = r.get(end + 1..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segs.push(Seg::Key(&rest[..end]));
            rest = &rest[end..];
        }
    }
    segs
}

/// The position of the node at `path` (or of its nearest written ancestor, when the field
/// is missing or was defaulted), and the path to print: the path of the field's parent
/// object, as in `spec.containers[1]: …`, unless the field exists.
fn locate(doc: &Node, path: &str) -> (Pos, String) {
    let mut node = doc;
    for seg in split_path(path) {
        let next = match (&seg, &node.kind) {
            (Seg::Key(k), NodeKind::Map(_)) => node.get(k),
            (Seg::Index(i), NodeKind::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    (node.pos, path.to_string())
}

/// Checks one path (file or directory) the way `podsup validate` does: a directory is
/// scanned with the daemon's file selection. Returns each file and its result.
pub fn scan_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(files::select(names.iter().map(String::as_str))
        .into_iter()
        .map(|n| dir.join(n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(
            split_path("spec.containers[1].resources.limits[cpu]"),
            vec![
                Seg::Key("spec"),
                Seg::Key("containers"),
                Seg::Index(1),
                Seg::Key("resources"),
                Seg::Key("limits"),
                Seg::Key("cpu")
            ]
        );
        assert_eq!(
            split_path("metadata.labels[app.kubernetes.io/name]"),
            vec![
                Seg::Key("metadata"),
                Seg::Key("labels"),
                Seg::Key("app.kubernetes.io/name")
            ]
        );
    }

    const GOOD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: [sleep, '3600']
    resources:
      limits: {cpu: 500m, memory: 64Mi}
";

    #[test]
    fn loads_and_defaults_a_pod() {
        let pods = load_bytes("web.yaml", GOOD.as_bytes()).unwrap();
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!(p.key().to_string(), "default/web");
        assert_eq!(
            p.spec.restart_policy,
            Some(crate::model::RestartPolicy::Always)
        );
        assert_eq!(p.spec.termination_grace_period_seconds, Some(30));
        let c = &p.spec.containers[0];
        assert_eq!(
            c.image_pull_policy,
            Some(crate::model::PullPolicy::IfNotPresent)
        );
        assert_eq!(
            c.resources.requests["cpu"],
            crate::model::Quantity::parse("0.5").unwrap()
        );
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
    }

    #[test]
    fn equal_meaning_compares_equal() {
        let a = load_bytes("a", GOOD.as_bytes()).unwrap();
        let b_text = GOOD.replace("cpu: 500m", "cpu: \"0.5\"").replace(
            "labels: {app: web}",
            "labels: {app: web}\n  namespace: default",
        );
        let b = load_bytes("b", b_text.as_bytes()).unwrap();
        assert_eq!(a, b);
    }

    fn first_error(text: &str) -> String {
        load_bytes("t.yaml", text.as_bytes())
            .unwrap_err()
            .diagnostics[0]
            .to_string()
    }

    #[test]
    fn unknown_field_names_position_and_path() {
        let text = GOOD.replace("    image: busybox:1.36\n", "    imagee: busybox:1.36\n");
        let all = load_bytes("t.yaml", text.as_bytes())
            .unwrap_err()
            .to_string();
        // "image: Required value" would only repeat the typo, so it is not reported.
        assert_eq!(
            all,
            "t.yaml:9:5: spec.containers[0]: unknown field \"imagee\" (did you mean \"image\"?)"
        );
    }

    #[test]
    fn empty_kubernetes_fields_from_kubectl_are_accepted() {
        let text =
            GOOD.replace("metadata:\n", "metadata:\n  creationTimestamp: null\n") + "status: {}\n";
        assert!(load_bytes("t.yaml", text.as_bytes()).is_ok());
        let text = GOOD.to_string() + "status:\n  phase: Running\n";
        assert!(load_bytes("t.yaml", text.as_bytes()).is_err());
    }

    #[test]
    fn semantic_errors_name_position_and_path() {
        let text = GOOD.replace("name: app", "name: App");
        assert!(
            first_error(&text)
                .starts_with("t.yaml:8:11: spec.containers[0].name: Invalid value: \"App\""),
            "{}",
            first_error(&text)
        );
        let text = GOOD.replace("cpu: 500m", "cpu: 5x");
        assert_eq!(
            first_error(&text).split(": quantities").next().unwrap(),
            "t.yaml:12:21: spec.containers[0].resources.limits[cpu]: invalid quantity \"5x\""
        );
    }

    #[test]
    fn other_kinds_are_named() {
        assert_eq!(
            first_error("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"),
            "t.yaml:2:7: kind: kind \"Deployment\" is not supported: podsup runs Pods only; put the pod template's metadata and spec in a Pod"
        );
    }
}
