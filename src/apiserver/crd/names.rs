//! The naming step of a CRD, as apiextensions-apiserver's NamingConditionController: which of
//! the names it asks for it gets, and its NamesAccepted condition.

use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Names a CRD asks for or holds (spec.names or status.acceptedNames).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Names {
    pub plural: String,
    pub singular: String,
    pub short: Vec<String>,
    pub kind: String,
    pub list_kind: String,
    pub categories: Vec<String>,
}

impl Names {
    pub fn of(v: &Value) -> Names {
        let s = |f: &str| v[f].as_str().unwrap_or("").to_string();
        let list = |f: &str| -> Vec<String> {
            v[f].as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        Names {
            plural: s("plural"),
            singular: s("singular"),
            short: list("shortNames"),
            kind: s("kind"),
            list_kind: s("listKind"),
            categories: list("categories"),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"plural": self.plural, "kind": self.kind});
        if !self.singular.is_empty() {
            v["singular"] = json!(self.singular);
        }
        if !self.short.is_empty() {
            v["shortNames"] = json!(self.short);
        }
        if !self.list_kind.is_empty() {
            v["listKind"] = json!(self.list_kind);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

/// `equalToAcceptedOrFresh`.
fn fresh(requested: &str, accepted: &str, used: &BTreeSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// The naming step: the names this CRD gets and its NamesAccepted (status, reason, message).
pub(crate) fn accept_names(
    requested: &Names,
    accepted: &Names,
    resources: &BTreeSet<String>,
    kinds: &BTreeSet<String>,
) -> (Names, (&'static str, &'static str, String)) {
    let mut out = accepted.clone();
    let mut cond: Option<(&'static str, String)> = None;
    match fresh(&requested.plural, &accepted.plural, resources) {
        Ok(()) => out.plural = requested.plural.clone(),
        Err(e) => cond = Some(("PluralConflict", e)),
    }
    match fresh(&requested.singular, &accepted.singular, resources) {
        Ok(()) => out.singular = requested.singular.clone(),
        Err(e) => cond = Some(("SingularConflict", e)),
    }
    if requested.short != accepted.short {
        let errs: Vec<String> = requested
            .short
            .iter()
            .filter(|s| !accepted.short.contains(s))
            .filter_map(|s| fresh(s, "", resources).err())
            .collect();
        if errs.is_empty() {
            out.short = requested.short.clone();
        } else if errs.len() == 1 {
            cond = Some(("ShortNamesConflict", errs[0].clone()));
        } else {
            // utilerrors.NewAggregate's text for several errors.
            cond = Some(("ShortNamesConflict", format!("[{}]", errs.join(", "))));
        }
    }
    match fresh(&requested.kind, &accepted.kind, kinds) {
        Ok(()) => out.kind = requested.kind.clone(),
        Err(e) => cond = Some(("KindConflict", e)),
    }
    match fresh(&requested.list_kind, &accepted.list_kind, kinds) {
        Ok(()) => out.list_kind = requested.list_kind.clone(),
        Err(e) => cond = Some(("ListKindConflict", e)),
    }
    out.categories = requested.categories.clone();
    let cond = match cond {
        None => ("True", "NoConflicts", "no conflicts found".to_string()),
        Some((reason, message)) => ("False", reason, message),
    };
    (out, cond)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_in_use_are_refused_with_upstreams_reasons() {
        let req = Names {
            plural: "dbs".into(),
            singular: "db".into(),
            short: vec!["d".into()],
            kind: "Db".into(),
            list_kind: "DbList".into(),
            categories: vec!["all".into()],
        };
        let (names, cond) = accept_names(&req, &Names::default(), &set(&[]), &set(&[]));
        assert_eq!(names, req);
        assert_eq!(cond, ("True", "NoConflicts", "no conflicts found".into()));
        let (names, cond) = accept_names(&req, &Names::default(), &set(&["dbs"]), &set(&[]));
        assert_eq!(
            cond,
            (
                "False",
                "PluralConflict",
                "\"dbs\" is already in use".into()
            )
        );
        assert_eq!(names.plural, "");
        let (_, cond) = accept_names(&req, &Names::default(), &set(&["d"]), &set(&[]));
        assert_eq!(cond.1, "ShortNamesConflict");
        let (_, cond) = accept_names(&req, &Names::default(), &set(&[]), &set(&["Db"]));
        assert_eq!(
            cond,
            ("False", "KindConflict", "\"Db\" is already in use".into())
        );
        // Its own accepted names are no conflict.
        let (_, cond) = accept_names(
            &req,
            &req,
            &set(&["dbs", "db", "d"]),
            &set(&["Db", "DbList"]),
        );
        assert_eq!(cond.0, "True");
    }
}
