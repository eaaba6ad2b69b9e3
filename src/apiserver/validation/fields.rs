//! Unknown and duplicate fields of a request body, for `fieldValidation=Strict|Warn`.
//!
//! serde_json keeps only the last of duplicated keys, so the raw body is read with a small
//! parser of its own that keeps every key in order. The tree is then walked against the kind's
//! schema (see `openapi::schemas`): a key an object schema does not declare is unknown; maps
//! (`additionalProperties`) and free-form objects accept any key.

use crate::apiserver::openapi::schemas::{builtin, find_kind, resolve};
use serde_json::Value;

/// A JSON value that remembers every key of its objects, duplicates included.
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<Node> {
        if depth > 512 {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(Node::Object(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    fields.push((key, v));
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Node::Object(fields));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(Node::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Node::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| Node::Scalar),
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.i += 1;
                }
                (self.i > start).then_some(Node::Scalar)
            }
        }
    }

    /// A JSON string starting at the current quote; escapes decoded by serde_json.
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i;
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return serde_json::from_slice(&self.b[start..self.i]).ok();
                }
                _ => self.i += 1,
            }
        }
        None
    }
}

fn from_value(v: &Value) -> Node {
    match v {
        Value::Object(m) => {
            Node::Object(m.iter().map(|(k, v)| (k.clone(), from_value(v))).collect())
        }
        Value::Array(a) => Node::Array(a.iter().map(from_value).collect()),
        _ => Node::Scalar,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(node: &Node, schema: Option<&Value>, path: &str, out: &mut Vec<String>) {
    let schema = schema.map(resolve);
    match node {
        Node::Object(fields) => {
            let props = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            let additional = schema.and_then(|s| s.get("additionalProperties"));
            let preserve = schema
                .and_then(|s| s.get("x-kubernetes-preserve-unknown-fields"))
                .is_some_and(|v| v == true);
            let mut seen: Vec<&str> = Vec::new();
            for (key, child) in fields {
                let child_path = join(path, key);
                if seen.contains(&key.as_str()) {
                    out.push(format!("duplicate field {child_path:?}"));
                }
                seen.push(key);
                let child_schema = match (props, additional) {
                    (Some(p), _) => match p.get(key) {
                        Some(s) => Some(s),
                        None if preserve => None,
                        None => {
                            out.push(format!("unknown field {child_path:?}"));
                            continue;
                        }
                    },
                    (None, Some(a)) if a.is_object() => Some(a),
                    _ => None,
                };
                walk(child, child_schema, &child_path, out);
            }
        }
        Node::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            for (i, item) in items.iter().enumerate() {
                walk(item, item_schema, &format!("{path}[{i}]"), out);
            }
        }
        Node::Scalar => {}
    }
}

/// Fields of the raw request body that the kind's schema does not know, and duplicated keys,
/// used for fieldValidation=Strict|Warn. Each entry is worded as the real server words it,
/// `unknown field "spec.containers[0].imagee"` or `duplicate field "spec.replicas"`: joined with
/// ", " after `strict decoding error: ` they make the Strict 400 message, one per Warning header
/// in Warn mode. The version is read from the body's apiVersion. A body that is not JSON is read
/// as YAML (duplicates are then YAML errors, reported by the parser). Unknown kinds yield
/// nothing, as does a body that does not parse (the decoder reports that).
pub fn unknown_or_duplicate_fields(group: &str, kind: &str, raw: &[u8]) -> Vec<String> {
    let mut p = Parser { b: raw, i: 0 };
    let parsed = p.value(0).filter(|_| {
        p.ws();
        p.i == raw.len()
    });
    let node = match parsed {
        Some(n) => n,
        None => match serde_yaml::from_slice::<Value>(raw) {
            Ok(v) => from_value(&v),
            Err(_) => return Vec::new(),
        },
    };
    let version = match &node {
        Node::Object(fields) => fields
            .iter()
            .rev()
            .find(|(k, _)| k == "apiVersion")
            .and_then(|_| api_version_of(raw))
            .and_then(|av| av.rsplit('/').next().map(str::to_string)),
        _ => None,
    };
    let info = find_kind(group, version.as_deref(), kind).or_else(|| find_kind(group, None, kind));
    let Some(info) = info else {
        return Vec::new();
    };
    let schema = builtin().definitions.get(&info.schema);
    let mut out = Vec::new();
    walk(&node, schema, "", &mut out);
    // As the Go decoder: each distinct error once, at most 100 of them.
    let mut seen = std::collections::HashSet::new();
    out.retain(|e| seen.insert(e.clone()));
    out.truncate(MAX_STRICT_ERRORS);
    out
}

const MAX_STRICT_ERRORS: usize = 100;

fn api_version_of(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "apiVersion")]
        api_version: Option<String>,
    }
    serde_json::from_slice::<Head>(raw)
        .ok()
        .or_else(|| serde_yaml::from_slice::<Head>(raw).ok())
        .and_then(|h| h.api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_with_paths() {
        let raw = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"any":"x"}},
            "spec":{"containers":[{"name":"c","image":"nginx"},{"name":"d","imagee":"x","resources":{"limits":{"cpu":"1"}}}],
                    "bogus":{"deep":1}}}"#;
        assert_eq!(
            unknown_or_duplicate_fields("", "Pod", raw),
            vec![
                r#"unknown field "spec.containers[1].imagee""#.to_string(),
                r#"unknown field "spec.bogus""#.to_string()
            ]
        );
    }

    #[test]
    fn duplicate_fields_are_reported() {
        let raw = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"replicas":1,"replicas":2,"template":{"metadata":{"labels":{"a":"b","a":"c"}}}}}"#;
        assert_eq!(
            unknown_or_duplicate_fields("apps", "Deployment", raw),
            vec![
                r#"duplicate field "spec.replicas""#.to_string(),
                r#"duplicate field "spec.template.metadata.labels.a""#.to_string()
            ]
        );
    }

    #[test]
    fn repeated_errors_are_reported_once() {
        let raw = br#"{"apiVersion":"v1","kind":"ConfigMap","x":1,"x":2,"x":3}"#;
        assert_eq!(
            unknown_or_duplicate_fields("", "ConfigMap", raw),
            vec![
                r#"unknown field "x""#.to_string(),
                r#"duplicate field "x""#.to_string()
            ]
        );
    }

    #[test]
    fn valid_bodies_and_yaml() {
        let raw = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"x/y":"z"}},"data":{"k":"v"}}"#;
        assert!(unknown_or_duplicate_fields("", "ConfigMap", raw).is_empty());
        let yaml = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n    prot: TCP\n";
        assert_eq!(
            unknown_or_duplicate_fields("", "Service", yaml),
            vec![r#"unknown field "spec.ports[0].prot""#.to_string()]
        );
        let hpa_v1 = br#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","spec":{"targetCPUUtilizationPercentage":5}}"#;
        assert!(
            unknown_or_duplicate_fields("autoscaling", "HorizontalPodAutoscaler", hpa_v1)
                .is_empty()
        );
        let hpa_v2 = br#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","spec":{"targetCPUUtilizationPercentage":5}}"#;
        assert_eq!(
            unknown_or_duplicate_fields("autoscaling", "HorizontalPodAutoscaler", hpa_v2).len(),
            1
        );
        assert!(unknown_or_duplicate_fields("", "Pod", b"{not json").is_empty());
    }
}
