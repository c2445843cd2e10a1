//! serde over a [`Node`] tree: typed structs with the position and field path of every error.
//!
//! Errors are created without a position by serde's derived code; the innermost
//! deserializer that sees one attaches its node's position and path, so the error points at
//! the offending node. An unknown field is reported at its key, with the name of the struct
//! that refused it, so that [`super::fields`] can tell "unsupported by podsup" from a typo.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::{Node, NodeKind, Pos, Scalar};

/// A deserialization error with where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub pos: Option<Pos>,
    /// Field path of the object that holds the offending node, e.g. `spec.containers[1]`.
    pub path: Option<String>,
    pub kind: DeErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeErrorKind {
    /// A key the struct does not have. `owner` is the serde struct name.
    UnknownField {
        field: String,
        owner: &'static str,
        expected: &'static [&'static str],
    },
    /// An enum value that is not one of the allowed ones.
    UnknownVariant {
        value: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    Message(String),
}

impl DeError {
    fn msg(m: impl Into<String>) -> DeError {
        DeError {
            pos: None,
            path: None,
            kind: DeErrorKind::Message(m.into()),
        }
    }

    /// Attaches position and path unless an inner node already did.
    fn at(mut self, pos: Pos, path: &str) -> DeError {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.path = Some(path.to_string());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::UnknownField { field, .. } => write!(f, "unknown field {field:?}"),
            DeErrorKind::UnknownVariant { value, expected } => {
                write!(f, "Unsupported value: {value:?}: supported values: ")?;
                for (i, e) in expected.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e:?}")?;
                }
                Ok(())
            }
            DeErrorKind::MissingField(name) => write!(f, "Required value: {name} is required"),
            DeErrorKind::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::msg(msg.to_string())
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            pos: None,
            path: None,
            kind: DeErrorKind::UnknownField {
                field: field.to_string(),
                owner: "",
                expected,
            },
        }
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            pos: None,
            path: None,
            kind: DeErrorKind::UnknownVariant {
                value: variant.to_string(),
                expected,
            },
        }
    }
    fn missing_field(field: &'static str) -> Self {
        DeError {
            pos: None,
            path: None,
            kind: DeErrorKind::MissingField(field),
        }
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::msg(format!("expected {exp}, got {}", unexpected_name(&unexp)))
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::msg(format!(
            "invalid value {}: expected {exp}",
            unexpected_name(&unexp)
        ))
    }
}

fn unexpected_name(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Bool(b) => format!("boolean {b}"),
        de::Unexpected::Unsigned(i) => format!("integer {i}"),
        de::Unexpected::Signed(i) => format!("integer {i}"),
        de::Unexpected::Float(x) => format!("number {x}"),
        de::Unexpected::Str(s) => format!("string {s:?}"),
        de::Unexpected::Unit => "null".into(),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "an object".into(),
        other => other.to_string(),
    }
}

/// Deserializes `T` from `node`, whose field path is `path` (empty for a document root).
pub fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_string(),
    })
}

/// A deserializer positioned on one node.
pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'a> NodeDe<'a> {
    fn type_error(&self, expected: &str) -> DeError {
        let got = match &self.node.kind {
            NodeKind::Scalar(Scalar::Bool(b)) => {
                format!("boolean {b} (quote it if you mean the text)")
            }
            NodeKind::Scalar(Scalar::Int(i)) => format!("integer {i}"),
            NodeKind::Scalar(Scalar::Float(x)) => format!("number {x}"),
            NodeKind::Scalar(Scalar::Str(s)) => format!("string {s:?}"),
            other => Node {
                kind: other.clone(),
                pos: self.node.pos,
            }
            .type_name()
            .to_string(),
        };
        DeError::msg(format!("expected {expected}, got {got}")).at(self.node.pos, &self.path)
    }

    fn int(&self) -> Result<i64, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Int(i)) => Ok(*i),
            NodeKind::Scalar(Scalar::Float(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => {
                Ok(*x as i64)
            }
            NodeKind::Scalar(Scalar::Null) => Ok(0),
            _ => Err(self.type_error("an integer")),
        }
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $t:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let i = self.int()?;
            let v = <$t>::try_from(i).map_err(|_| {
                DeError::msg(format!("{i} is out of range")).at(self.node.pos, &self.path)
            })?;
            visitor
                .$visit::<DeError>(v)
                .map_err(|e| e.at(self.node.pos, &self.path))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let path = self.path.clone();
        let r = match &self.node.kind {
            NodeKind::Scalar(Scalar::Null) => visitor.visit_unit(),
            NodeKind::Scalar(Scalar::Bool(b)) => visitor.visit_bool(*b),
            NodeKind::Scalar(Scalar::Int(i)) => visitor.visit_i64(*i),
            NodeKind::Scalar(Scalar::Float(x)) => visitor.visit_f64(*x),
            NodeKind::Scalar(Scalar::Str(s)) => visitor.visit_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                path: &self.path,
                idx: 0,
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
                owner: "",
                fields: &[],
            }),
        };
        r.map_err(|e| e.at(pos, &path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Bool(b)) => visitor.visit_bool(*b),
            NodeKind::Scalar(Scalar::Null) => visitor.visit_bool(false),
            _ => Err(self.type_error("a boolean (true or false)")),
        }
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Int(i)) => visitor.visit_f64(*i as f64),
            NodeKind::Scalar(Scalar::Float(x)) => visitor.visit_f64(*x),
            _ => Err(self.type_error("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Str(s)) => visitor
                .visit_str::<DeError>(s)
                .map_err(|e| e.at(self.node.pos, &self.path)),
            // A null string field is the empty string, as Go's JSON decoding leaves it.
            NodeKind::Scalar(Scalar::Null) => visitor.visit_str(""),
            _ => Err(self.type_error("a string")),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        Err(self.type_error("bytes"))
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        Err(self.type_error("bytes"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Null) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Null) => visitor.visit_unit(),
            _ => Err(self.type_error("null")),
        }
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match &self.node.kind {
            NodeKind::Seq(items) => visitor
                .visit_seq(SeqDe {
                    items: items.iter(),
                    path: &self.path,
                    idx: 0,
                })
                .map_err(|e| e.at(pos, &self.path)),
            // null is an empty list, as in Kubernetes.
            NodeKind::Scalar(Scalar::Null) => visitor.visit_seq(SeqDe {
                items: [].iter(),
                path: &self.path,
                idx: 0,
            }),
            _ => Err(self.type_error("a list")),
        }
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let empty: &[(Node, Node)] = &[];
        let entries = match &self.node.kind {
            NodeKind::Map(entries) => entries.as_slice(),
            NodeKind::Scalar(Scalar::Null) => empty,
            _ => return Err(self.type_error("an object")),
        };
        visitor
            .visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
                owner: name,
                fields,
            })
            .map_err(|e| e.at(pos, &self.path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(Scalar::Str(s)) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(self.node.pos, &self.path)),
            _ => Err(self.type_error("a string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    path: &'p str,
    idx: usize,
}

impl<'de> SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.idx);
        self.idx += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'p str,
    owner: &'static str,
    fields: &'static [&'static str],
}

/// True for `null`, `{}` and `[]`.
fn is_empty_value(n: &Node) -> bool {
    match &n.kind {
        NodeKind::Scalar(Scalar::Null) => true,
        NodeKind::Seq(items) => items.is_empty(),
        NodeKind::Map(entries) => entries.is_empty(),
        NodeKind::Scalar(_) => false,
    }
}

impl<'de> MapAccess<'de> for MapDe<'de, '_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let (k, v) = loop {
            let Some((k, v)) = self.entries.next() else {
                return Ok(None);
            };
            // `kubectl ... -o yaml` writes `creationTimestamp: null` and `status: {}`: a
            // Kubernetes field podsup does not model, left empty, says nothing to ignore.
            let key = k.as_str().unwrap_or_default();
            let skip = !self.owner.is_empty()
                && is_empty_value(v)
                && !self.fields.contains(&key)
                && super::fields::k8s_fields(self.owner).is_some_and(|f| f.contains(&key));
            if !skip {
                break (k, v);
            }
        };
        let key = k.as_str().unwrap_or_default();
        // Map keys of string maps (labels) are part of the path as ['key'], struct fields as .key
        let vpath = if self.owner.is_empty() {
            format!("{}[{key}]", self.path)
        } else {
            child_path(self.path, key)
        };
        self.value = Some((v, vpath));
        let r = seed.deserialize(NodeDe {
            node: k,
            path: self.path.to_string(),
        });
        r.map(Some).map_err(|mut e| {
            if let DeErrorKind::UnknownField { owner, .. } = &mut e.kind {
                *owner = self.owner;
            }
            // An unknown key is reported at the key, with the path of its object.
            if e.pos.is_none() {
                e.pos = Some(k.pos);
                e.path = Some(self.path.to_string());
            }
            e
        })
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .ok_or_else(|| DeError::msg("value without a key"))?;
        seed.deserialize(NodeDe { node, path })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse_documents;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<Inner>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
        #[serde(default)]
        enabled: bool,
    }

    fn de(text: &str) -> Result<Outer, DeError> {
        let docs = parse_documents(text).unwrap();
        from_node(&docs[0], "")
    }

    #[test]
    fn reads_typed_values() {
        let o = de("name: x\nitems:\n- port: 80\n  enabled: yes\n").unwrap();
        assert_eq!(
            o.items[0],
            Inner {
                port: 80,
                enabled: true
            }
        );
    }

    #[test]
    fn points_at_unknown_keys() {
        let e = de("name: x\nitems:\n- port: 80\n  prot: 1\n").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 4, col: 3 }));
        assert_eq!(e.path.as_deref(), Some("items[0]"));
        assert!(
            matches!(e.kind, DeErrorKind::UnknownField { ref field, owner: "Inner", .. } if field == "prot")
        );
    }

    #[test]
    fn points_at_wrong_types() {
        let e = de("name: x\nitems:\n- port: http\n").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 3, col: 9 }));
        assert_eq!(e.path.as_deref(), Some("items[0].port"));
        assert_eq!(e.to_string(), "expected an integer, got string \"http\"");
        let e = de("name: yes\n").unwrap_err();
        assert!(e.to_string().contains("boolean true"), "{e}");
        let e = de("name: x\nitems:\n- port: 70000\n").unwrap_err();
        assert_eq!(e.to_string(), "70000 is out of range");
    }

    #[test]
    fn points_at_missing_fields() {
        let e = de("name: x\nitems:\n- enabled: true\n").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 3, col: 3 }));
        assert_eq!(e.path.as_deref(), Some("items[0]"));
        assert_eq!(e.kind, DeErrorKind::MissingField("port"));
    }

    #[test]
    fn null_is_empty() {
        let o = de("name:\nitems: null\n").unwrap();
        assert_eq!(
            o,
            Outer {
                name: String::new(),
                items: vec![]
            }
        );
    }
}
