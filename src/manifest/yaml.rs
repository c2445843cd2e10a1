//! YAML text → a tree of [`Node`]s that remember where they were written.
//!
//! Scalars are resolved as Kubernetes resolves them (YAML 1.1 through go-yaml): plain `yes`,
//! `no`, `on`, `off` are booleans, `0644` is octal, `1.0` is a float; quoted scalars are
//! always strings. Hostile input is bounded: nesting depth, node count (alias expansion
//! included) and the size of the text (checked by the caller).

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A resolved scalar value.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys are scalars, in the order written; duplicates are refused at parse time.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

impl Node {
    /// The value of key `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar(Scalar::Str(s)) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node's key position for key `key` in a mapping node.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar(Scalar::Str(s)) if s == key))
                .map(|(k, _)| k.pos),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(Scalar::Null) => "null",
            NodeKind::Scalar(Scalar::Bool(_)) => "boolean",
            NodeKind::Scalar(Scalar::Int(_)) => "integer",
            NodeKind::Scalar(Scalar::Float(_)) => "number",
            NodeKind::Scalar(Scalar::Str(_)) => "string",
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "object",
        }
    }
}

/// A YAML syntax error or a limit hit while building the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub msg: String,
}

/// Deepest nesting of collections we accept. Real Pod manifests stay under 15.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one file may produce, aliases expanded. A large real manifest has a few
/// thousand; an alias bomb hits this long before it costs time or memory.
pub const MAX_NODES: usize = 200_000;

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line() as u32,
        col: span.start.col() as u32 + 1,
    }
}

/// A collection being built.
enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        merged: Vec<(Node, Node)>,
        key: Option<Node>,
        pos: Pos,
        anchor: usize,
    },
}

/// Parses every document of `text`. Empty documents (only comments, or a trailing `---`)
/// are skipped, as Kubernetes tooling skips them.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut opts = granit_parser::Options::default();
    opts.flow_nesting_limit = MAX_DEPTH;
    opts.block_nesting_limit = MAX_DEPTH;
    let parser = Parser::new_from_str_with_options(text, opts);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes: usize = 0;

    for item in parser {
        let (event, span) = item.map_err(|e| YamlError {
            pos: Pos {
                line: e.marker().line() as u32,
                col: e.marker().col() as u32 + 1,
            },
            msg: e.info().to_string(),
        })?;
        let pos = pos_of(&span);
        let (node, anchor, weight) = match event {
            Event::StreamStart | Event::StreamEnd | Event::Anchor(..) => continue,
            Event::DocumentStart(..) => {
                anchors.clear();
                root = None;
                continue;
            }
            Event::DocumentEnd => {
                if let Some(n) = root.take()
                    && n.kind != NodeKind::Scalar(Scalar::Null)
                {
                    docs.push(n);
                }
                continue;
            }
            Event::UnresolvedAlias(name) => {
                return Err(YamlError {
                    pos,
                    msg: format!("unknown anchor {name:?}"),
                });
            }
            #[allow(unreachable_patterns)]
            Event::Alias(id) => {
                let Some((n, size)) = anchors.get(&id) else {
                    return Err(YamlError {
                        pos,
                        msg: "alias to an unknown anchor".into(),
                    });
                };
                let mut n = n.clone();
                n.pos = pos;
                (n, 0, *size)
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| t.suffix().to_string());
                let scalar = resolve_scalar(&value, style, tag.as_deref())
                    .map_err(|msg| YamlError { pos, msg })?;
                (
                    Node {
                        kind: NodeKind::Scalar(scalar),
                        pos,
                    },
                    anchor,
                    1,
                )
            }
            Event::SequenceStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        pos,
                        msg: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    pos,
                    anchor,
                });
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        pos,
                        msg: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    merged: Vec::new(),
                    key: None,
                    pos,
                    anchor,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = stack.pop().ok_or_else(|| YamlError {
                    pos,
                    msg: "unbalanced collection".into(),
                })?;
                match frame {
                    Frame::Seq { items, pos, anchor } => {
                        let w = 1 + items.len();
                        (
                            Node {
                                kind: NodeKind::Seq(items),
                                pos,
                            },
                            anchor,
                            w,
                        )
                    }
                    Frame::Map {
                        mut entries,
                        merged,
                        pos,
                        anchor,
                        ..
                    } => {
                        for (k, v) in merged {
                            if !entries.iter().any(|(e, _)| e.as_str() == k.as_str()) {
                                entries.push((k, v));
                            }
                        }
                        let w = 1 + entries.len() * 2;
                        (
                            Node {
                                kind: NodeKind::Map(entries),
                                pos,
                            },
                            anchor,
                            w,
                        )
                    }
                }
            }
            #[allow(unreachable_patterns)]
            _ => continue,
        };
        nodes = nodes.saturating_add(weight);
        if nodes > MAX_NODES {
            return Err(YamlError {
                pos,
                msg: format!("document expands to more than {MAX_NODES} nodes (an alias bomb?)"),
            });
        }
        if anchor != 0 {
            let size = subtree_size(&node);
            anchors.insert(anchor, (node.clone(), size));
        }
        push_node(&mut stack, &mut root, node)?;
    }
    Ok(docs)
}

fn subtree_size(n: &Node) -> usize {
    // Iterative: depth is bounded, but keep it cheap and stack-safe anyway.
    let mut count = 0;
    let mut todo = vec![n];
    while let Some(n) = todo.pop() {
        count += 1;
        match &n.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => todo.extend(items.iter()),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    todo.push(k);
                    todo.push(v);
                }
            }
        }
    }
    count
}

fn push_node(stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), YamlError> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map {
            entries,
            merged,
            key,
            ..
        }) => match key.take() {
            None => {
                let NodeKind::Scalar(scalar) = &node.kind else {
                    return Err(YamlError {
                        pos: node.pos,
                        msg: "a mapping key must be a scalar".into(),
                    });
                };
                // Keys compare as text, the way Kubernetes' JSON conversion sees them.
                let text = scalar_key_text(scalar);
                if let Some((first, _)) = entries.iter().find(|(k, _)| k.as_str() == Some(&text)) {
                    return Err(YamlError {
                        pos: node.pos,
                        msg: format!("duplicate key {text:?} (first at {})", first.pos),
                    });
                }
                *key = Some(Node {
                    kind: NodeKind::Scalar(Scalar::Str(text)),
                    pos: node.pos,
                });
            }
            Some(k) => {
                if k.as_str() == Some("<<") {
                    merge_into(merged, node)?;
                } else {
                    entries.push((k, node));
                }
            }
        },
    }
    Ok(())
}

/// `<<: *base` merges the keys of `base` that the mapping does not set itself (the
/// mapping's own keys win when it is closed).
fn merge_into(entries: &mut Vec<(Node, Node)>, value: Node) -> Result<(), YamlError> {
    let pos = value.pos;
    let sources = match value.kind {
        NodeKind::Map(m) => vec![m],
        NodeKind::Seq(items) => {
            let mut maps = Vec::new();
            for item in items {
                match item.kind {
                    NodeKind::Map(m) => maps.push(m),
                    _ => {
                        return Err(YamlError {
                            pos: item.pos,
                            msg: "a merge key (<<) takes mappings only".into(),
                        });
                    }
                }
            }
            maps
        }
        _ => {
            return Err(YamlError {
                pos,
                msg: "a merge key (<<) takes a mapping or a list of mappings".into(),
            });
        }
    };
    for src in sources {
        for (k, v) in src {
            if !entries.iter().any(|(e, _)| e.as_str() == k.as_str()) {
                entries.push((k, v));
            }
        }
    }
    Ok(())
}

fn scalar_key_text(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Str(s) => s.clone(),
    }
}

/// Resolves a scalar the way go-yaml (YAML 1.1), and so Kubernetes, does.
pub fn resolve_scalar(
    value: &str,
    style: ScalarStyle,
    tag: Option<&str>,
) -> Result<Scalar, String> {
    if let Some(tag) = tag {
        return match tag {
            "str" => Ok(Scalar::Str(value.to_string())),
            "null" => Ok(Scalar::Null),
            "bool" => resolve_plain(value)
                .filter(|s| matches!(s, Scalar::Bool(_)))
                .ok_or_else(|| format!("{value:?} is not a boolean")),
            "int" => resolve_plain(value)
                .filter(|s| matches!(s, Scalar::Int(_)))
                .ok_or_else(|| format!("{value:?} is not an integer")),
            "float" => match resolve_plain(value) {
                Some(Scalar::Int(i)) => Ok(Scalar::Float(i as f64)),
                Some(f @ Scalar::Float(_)) => Ok(f),
                _ => Err(format!("{value:?} is not a number")),
            },
            other => Err(format!("unsupported YAML tag !!{other}")),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Scalar::Str(value.to_string()));
    }
    Ok(resolve_plain(value).unwrap_or_else(|| Scalar::Str(value.to_string())))
}

fn resolve_plain(v: &str) -> Option<Scalar> {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Scalar::Null),
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Some(Scalar::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Some(Scalar::Bool(false));
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Scalar::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Scalar::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Scalar::Float(f64::NAN)),
        _ => {}
    }
    let first = v.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    if let Some(i) = resolve_int(v) {
        return Some(Scalar::Int(i));
    }
    if is_yaml_float(v) {
        return v.replace('_', "").parse::<f64>().ok().map(Scalar::Float);
    }
    None
}

fn resolve_int(v: &str) -> Option<i64> {
    let (neg, rest) = match v.as_bytes()[0] {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let plain: String = rest.chars().filter(|&c| c != '_').collect();
    if plain.is_empty() || plain.starts_with('_') {
        return None;
    }
    let (digits, radix) = if let Some(b) = plain.strip_prefix("0b") {
        (b, 2)
    } else if let Some(h) = plain.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = plain.strip_prefix("0o") {
        (o, 8)
    } else if plain.len() > 1 && plain.starts_with('0') {
        (&plain[1..], 8)
    } else {
        (plain.as_str(), 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = i128::from_str_radix(digits, radix).ok()?;
    let val = if neg { -mag } else { mag };
    i64::try_from(val).ok()
}

/// go-yaml's float pattern: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && (b[*i].is_ascii_digit() || b[*i] == b'_') {
            *i += 1;
        }
        *i > s
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    } else {
        if !digits(&mut i) {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(v: &str) -> Scalar {
        resolve_scalar(v, ScalarStyle::Plain, None).unwrap()
    }

    #[test]
    fn resolves_scalars_like_kubernetes() {
        assert_eq!(plain("yes"), Scalar::Bool(true));
        assert_eq!(plain("off"), Scalar::Bool(false));
        assert_eq!(plain("no"), Scalar::Bool(false));
        assert_eq!(plain("0644"), Scalar::Int(420));
        assert_eq!(plain("0x1F"), Scalar::Int(31));
        assert_eq!(plain("80"), Scalar::Int(80));
        assert_eq!(plain("-3"), Scalar::Int(-3));
        assert_eq!(plain("1.0"), Scalar::Float(1.0));
        assert_eq!(plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(plain("~"), Scalar::Null);
        // go-yaml: not an octal int, but it matches the float pattern.
        assert_eq!(plain("08"), Scalar::Float(8.0));
        assert_eq!(plain("128Mi"), Scalar::Str("128Mi".into()));
        assert_eq!(plain("500m"), Scalar::Str("500m".into()));
        assert_eq!(plain("1.2.3"), Scalar::Str("1.2.3".into()));
        assert_eq!(
            resolve_scalar("yes", ScalarStyle::DoubleQuoted, None).unwrap(),
            Scalar::Str("yes".into())
        );
        assert_eq!(
            resolve_scalar("80", ScalarStyle::Plain, Some("str")).unwrap(),
            Scalar::Str("80".into())
        );
    }

    #[test]
    fn keeps_positions() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - k: 2\n").unwrap();
        assert_eq!(docs.len(), 1);
        let b = docs[0].get("b").unwrap();
        let NodeKind::Seq(items) = &b.kind else {
            panic!()
        };
        assert_eq!(items[1].get("k").unwrap().pos, Pos { line: 4, col: 8 });
        assert_eq!(docs[0].key_pos("b"), Some(Pos { line: 2, col: 1 }));
    }

    #[test]
    fn skips_empty_documents() {
        let docs = parse_documents("# only a comment\n---\na: 1\n---\n").unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn refuses_duplicate_keys() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.msg.contains("duplicate key \"a\""), "{}", err.msg);
    }

    #[test]
    fn merges_keys() {
        let docs = parse_documents("base: &b {p: 1, q: 2}\nm:\n  <<: *b\n  q: 3\n").unwrap();
        let m = docs[0].get("m").unwrap();
        assert_eq!(m.get("p").unwrap().kind, NodeKind::Scalar(Scalar::Int(1)));
        assert_eq!(m.get("q").unwrap().kind, NodeKind::Scalar(Scalar::Int(3)));
    }

    #[test]
    fn stops_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = parse_documents(&text).unwrap_err();
        assert!(err.msg.contains("alias bomb"), "{}", err.msg);
    }

    #[test]
    fn stops_deep_nesting() {
        let text = "[".repeat(10_000);
        assert!(parse_documents(&text).is_err());
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&" ".repeat(i));
            text.push_str("a:\n");
        }
        assert!(parse_documents(&text).is_err());
    }
}
