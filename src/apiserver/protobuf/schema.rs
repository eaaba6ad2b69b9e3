//! The Kubernetes protobuf schema as a table: schema.txt, written by
//! scripts/gen-protobuf-schema.py from the descriptors compiled into kubectl, parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A protobuf scalar type; it fixes both the wire type and the JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
}

impl Scalar {
    fn parse(s: &str) -> Option<Scalar> {
        Some(match s {
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            "int32" | "enum" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "bool" => Scalar::Bool,
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            _ => return None,
        })
    }
}

/// What one field (or one map key or value) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Scalar(Scalar),
    /// A message, by full name (`k8s.io.api.core.v1.Container`).
    Message(&'static str),
}

impl Type {
    fn parse(s: &'static str) -> Type {
        Scalar::parse(s).map_or(Type::Message(s), Type::Scalar)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Repeated,
    /// `map<key, value>`: on the wire, repeated entry messages {1: key, 2: value}.
    Map(Type),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The JSON name.
    pub name: &'static str,
    pub shape: Shape,
    /// The element type (the value type for maps).
    pub ty: Type,
    /// A Go struct embedded with `json:",inline"`: its fields go into the parent object.
    pub inline: bool,
}

pub type Message = HashMap<u32, Field>;

const SCHEMA: &str = include_str!("schema.txt");

/// Every message of the table by full name.
pub fn messages() -> &'static HashMap<&'static str, Message> {
    static TABLE: OnceLock<HashMap<&'static str, Message>> = OnceLock::new();
    TABLE.get_or_init(|| parse(SCHEMA))
}

pub fn message(name: &str) -> Option<&'static Message> {
    messages().get(name)
}

/// Parses the table; it is generated and checked in, so a malformed line is a build defect
/// (caught by the unit test below), not an input error.
fn parse(text: &'static str) -> HashMap<&'static str, Message> {
    let mut out: HashMap<&'static str, Message> = HashMap::new();
    let mut current: Option<&'static str> = None;
    for line in text.lines() {
        let words: Vec<&'static str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["message", name] => {
                out.entry(name).or_default();
                current = Some(name);
            }
            [num, name, rest @ ..] => {
                let (Some(msg), Ok(num)) = (current, num.parse::<u32>()) else {
                    panic!("schema.txt: bad line {line:?}");
                };
                let (shape, ty, inline) = match rest {
                    ["map", key, value] => {
                        (Shape::Map(Type::parse(key)), Type::parse(value), false)
                    }
                    ["repeated", "inline", t] => (Shape::Repeated, Type::parse(t), true),
                    ["repeated", t] => (Shape::Repeated, Type::parse(t), false),
                    ["inline", t] => (Shape::Single, Type::parse(t), true),
                    [t] => (Shape::Single, Type::parse(t), false),
                    _ => panic!("schema.txt: bad line {line:?}"),
                };
                out.get_mut(msg).unwrap().insert(
                    num,
                    Field {
                        name,
                        shape,
                        ty,
                        inline,
                    },
                );
            }
            _ => panic!("schema.txt: bad line {line:?}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_every_named_message_is_defined() {
        let all = messages();
        assert!(all.len() > 500, "{}", all.len());
        for (name, msg) in all {
            for f in msg.values() {
                for t in [
                    Some(f.ty),
                    if let Shape::Map(k) = f.shape {
                        Some(k)
                    } else {
                        None
                    },
                ]
                .into_iter()
                .flatten()
                {
                    if let Type::Message(m) = t {
                        assert!(all.contains_key(m), "{name}.{} names unknown {m}", f.name);
                    }
                }
            }
        }
        let spec = message("k8s.io.api.apps.v1.DeploymentSpec").unwrap();
        assert_eq!(spec[&1].name, "replicas");
        assert_eq!(spec[&1].ty, Type::Scalar(Scalar::Int32));
        let vol = message("k8s.io.api.core.v1.Volume").unwrap();
        assert!(vol[&2].inline);
        let secret = message("k8s.io.api.core.v1.Secret").unwrap();
        assert_eq!(secret[&2].shape, Shape::Map(Type::Scalar(Scalar::String)));
        assert_eq!(secret[&2].ty, Type::Scalar(Scalar::Bytes));
    }

    /// Decoding recurses once per nested message; with no cycles among message types, a body
    /// cannot drive it deeper than the schema itself goes.
    #[test]
    fn message_types_have_no_cycles() {
        fn depth(
            name: &'static str,
            on_path: &mut Vec<&'static str>,
            done: &mut HashMap<&'static str, usize>,
        ) -> usize {
            if let Some(d) = done.get(name) {
                return *d;
            }
            assert!(!on_path.contains(&name), "cycle: {on_path:?} -> {name}");
            on_path.push(name);
            let mut deepest = 0;
            for f in messages()[name].values() {
                if let Type::Message(m) = f.ty {
                    deepest = deepest.max(depth(m, on_path, done));
                }
            }
            on_path.pop();
            done.insert(name, deepest + 1);
            deepest + 1
        }
        let mut done = HashMap::new();
        let deepest = messages()
            .keys()
            .map(|name| depth(name, &mut Vec::new(), &mut done))
            .max()
            .unwrap();
        assert!(deepest < 64, "{deepest}");
    }
}
