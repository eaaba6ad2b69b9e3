//! The JSONPath subset of additionalPrinterColumns (kubectl's `{.spec.replicas}` form without
//! braces): fields, `[n]` indexes, `[*]`, and `[?(@.field=="value")]` filters. A column shows
//! the first match, as upstream's table convertor does.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, value: String },
}

/// A parsed column path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(Vec<Step>);

impl Path {
    pub fn parse(src: &str) -> Result<Path, String> {
        let s = src.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let s = s.strip_prefix('$').unwrap_or(s);
        let mut steps = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                        j += 1;
                    }
                    if j == start {
                        return Err(format!("unrecognized column definition {src:?}"));
                    }
                    steps.push(Step::Field(s[start..j].to_string()));
                    i = j;
                }
                b'[' => {
                    let end = s[i..]
                        .find(']')
                        .map(|e| e + i)
                        .ok_or_else(|| format!("unrecognized column definition {src:?}"))?;
                    let inner = s[i + 1..end].trim();
                    if inner == "*" {
                        steps.push(Step::All);
                    } else if let Some(f) =
                        inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')'))
                    {
                        let (lhs, rhs) = f
                            .split_once("==")
                            .ok_or_else(|| format!("unrecognized column definition {src:?}"))?;
                        let lhs = lhs
                            .trim()
                            .strip_prefix("@.")
                            .ok_or_else(|| format!("unrecognized column definition {src:?}"))?;
                        let rhs = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
                        steps.push(Step::Filter {
                            path: lhs.split('.').map(str::to_string).collect(),
                            value: rhs.to_string(),
                        });
                    } else if let Ok(n) = inner.parse::<i64>() {
                        steps.push(Step::Index(n));
                    } else {
                        let name = inner.trim_matches(|c| c == '"' || c == '\'');
                        steps.push(Step::Field(name.to_string()));
                    }
                    i = end + 1;
                }
                _ => return Err(format!("unrecognized column definition {src:?}")),
            }
        }
        Ok(Path(steps))
    }

    /// The first value the path reaches in `obj`.
    pub fn first<'a>(&self, obj: &'a Value) -> Option<&'a Value> {
        find(&self.0, obj)
    }
}

fn find<'a>(steps: &[Step], v: &'a Value) -> Option<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(v);
    };
    match step {
        Step::Field(f) => find(rest, v.get(f)?),
        Step::Index(n) => {
            let a = v.as_array()?;
            let at = if *n < 0 { a.len() as i64 + n } else { *n };
            find(rest, a.get(usize::try_from(at).ok()?)?)
        }
        Step::All => v.as_array()?.iter().find_map(|x| find(rest, x)),
        Step::Filter { path, value } => v.as_array()?.iter().find_map(|x| {
            let got = path.iter().try_fold(x, |cur, f| cur.get(f))?;
            let text = match got {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if text == *value {
                find(rest, x)
            } else {
                None
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_paths() {
        let obj = json!({"spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let at = |p: &str| Path::parse(p).unwrap().first(&obj).cloned();
        assert_eq!(at(".spec.replicas"), Some(json!(3)));
        assert_eq!(at(".spec.items[1].name"), Some(json!("b")));
        assert_eq!(at(".spec.items[*].name"), Some(json!("a")));
        assert_eq!(
            at(r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(json!("True"))
        );
        assert_eq!(at(".spec.missing"), None);
        assert!(Path::parse("spec").is_err());
    }
}
