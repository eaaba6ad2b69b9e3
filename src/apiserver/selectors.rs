//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and field selectors
//! (`metadata.name=x,status.phase!=Running`) as list and watch filters.

use serde_json::Value;

/// Errors of selector parsing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The selector string is not in the grammar Kubernetes accepts.
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    /// A field selector names a field the resource cannot be filtered by.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Splits at commas outside parentheses.
fn split_terms(s: &str) -> Result<Vec<&str>, Error> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(Error::Syntax(s.to_string()));
        }
    }
    if depth != 0 {
        return Err(Error::Syntax(s.to_string()));
    }
    out.push(&s[start..]);
    Ok(out)
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for term in split_terms(s)? {
            let term = term.trim();
            let bad = || Error::Syntax(term.to_string());
            if let Some(key) = term.strip_prefix('!') {
                let key = key.trim();
                if !valid_key(key) {
                    return Err(bad());
                }
                reqs.push(Requirement::DoesNotExist(key.into()));
            } else if let Some(open) = term.find('(') {
                let close = term.rfind(')').ok_or_else(bad)?;
                if close != term.len() - 1 {
                    return Err(bad());
                }
                let head: Vec<&str> = term[..open].split_whitespace().collect();
                let values: Vec<String> = term[open + 1..close]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if head.len() != 2 || !valid_key(head[0]) || !values.iter().all(|v| valid_value(v))
                {
                    return Err(bad());
                }
                match head[1] {
                    "in" if !values.is_empty() => {
                        reqs.push(Requirement::In(head[0].into(), values))
                    }
                    "notin" if !values.is_empty() => {
                        reqs.push(Requirement::NotIn(head[0].into(), values))
                    }
                    _ => return Err(bad()),
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                let (k, v) = (k.trim(), v.trim());
                if !valid_key(k) || !valid_value(v) {
                    return Err(bad());
                }
                reqs.push(Requirement::NotEquals(k.into(), v.into()));
            } else if let Some((k, v)) = term.split_once('=') {
                let v = v.strip_prefix('=').unwrap_or(v);
                let (k, v) = (k.trim(), v.trim());
                if !valid_key(k) || !valid_value(v) {
                    return Err(bad());
                }
                reqs.push(Requirement::Equals(k.into(), v.into()));
            } else {
                if !valid_key(term) {
                    return Err(bad());
                }
                reqs.push(Requirement::Exists(term.into()));
            }
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector: (field path, wanted value, negated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, String, bool)>);

impl FieldSelector {
    /// Parses and checks every field against `supported`.
    pub fn parse(s: &str, supported: impl Fn(&str) -> bool) -> Result<Self, Error> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(out));
        }
        for term in s.split(',') {
            let term = term.trim();
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(Error::Syntax(term.to_string()));
            };
            let field = field.trim();
            if !supported(field) {
                return Err(Error::UnsupportedField(field.to_string()));
            }
            out.push((field.to_string(), value.trim().to_string(), negated));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The metadata.name this selector pins, if any (lets a list read one key).
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _, neg)| f == "metadata.name" && !neg)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(field, want, negated)| (field_value(obj, field) == *want) != *negated)
    }
}

/// The string form of a field for selection: strings as they are, booleans and numbers printed,
/// a missing field as "" (so `spec.nodeName=` selects unscheduled pods).
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_grammar() {
        let s =
            LabelSelector::parse("app=web,tier!=db,env in (prod, staging),x notin (1),ready,!old")
                .unwrap();
        assert_eq!(s.0.len(), 6);
        assert!(s.matches(&obj(json!({"app":"web","env":"prod","ready":"1"}))));
        assert!(!s.matches(&obj(json!({"app":"web","env":"dev","ready":"1"}))));
        assert!(!s.matches(&obj(
            json!({"app":"web","env":"prod","ready":"1","old":"y"})
        )));
        assert!(!s.matches(&obj(json!({"app":"web","env":"prod"}))));
        assert!(LabelSelector::parse("app==web")
            .unwrap()
            .matches(&obj(json!({"app":"web"}))));
        assert!(LabelSelector::parse("a in (x").is_err());
        assert!(LabelSelector::parse("a b").is_err());
        assert!(LabelSelector::parse("").unwrap().matches(&obj(json!(null))));
    }

    #[test]
    fn field_selectors() {
        let ok = |f: &str| matches!(f, "metadata.name" | "spec.nodeName" | "status.phase");
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Pending", ok).unwrap();
        assert!(s.matches(&obj(json!({}))));
        assert!(!FieldSelector::parse("spec.nodeName=", ok)
            .unwrap()
            .matches(&obj(json!({}))));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", ok),
            Err(Error::UnsupportedField("spec.foo".into()))
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=a", ok)
                .unwrap()
                .pinned_name(),
            Some("a")
        );
    }
}
