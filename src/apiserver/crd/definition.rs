//! The CustomResourceDefinition kind itself: its registry entry, defaults, validation (names,
//! group, versions with one storage version, scope, structural schemas, name
//! `<plural>.<group>`), status (storedVersions) and the cleanup finalizer a delete adds.

use super::{schema, FINALIZER};
use crate::apiserver::kinds::{self, Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::resources::now_rfc3339;
use crate::apiserver::validation::{self, names, FieldError};
use serde_json::{json, Value};

pub fn info() -> ResourceInfo {
    kinds::entry::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(
        Facts {
            short: &["crd", "crds"],
            cats: &["api-extensions"],
            status: true,
            ..NONE
        },
        Kind,
    )
}

struct Kind;

/// The version objects are stored in: the one marked `storage`.
pub fn storage_version(crd: &Value) -> Option<&str> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
}

fn add_stored_version(obj: &mut Value) {
    let Some(storage) = storage_version(obj).map(str::to_string) else {
        return;
    };
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    let stored = &mut obj["status"]["storedVersions"];
    if !stored.is_array() {
        *stored = json!([]);
    }
    let list = stored.as_array_mut().expect("made an array above");
    if !list.iter().any(|v| v == storage.as_str()) {
        list.push(json!(storage));
    }
}

impl Strategy for Kind {
    fn defaults(&self, obj: &mut Value) {
        let spec = &mut obj["spec"];
        if !spec.is_object() {
            return;
        }
        let kind = spec["names"]["kind"].as_str().unwrap_or("").to_string();
        if !kind.is_empty() {
            if spec["names"]["singular"].as_str().is_none_or(str::is_empty) {
                spec["names"]["singular"] = json!(kind.to_lowercase());
            }
            if spec["names"]["listKind"].as_str().is_none_or(str::is_empty) {
                spec["names"]["listKind"] = json!(format!("{kind}List"));
            }
        }
        if spec["conversion"].is_null() {
            spec["conversion"] = json!({"strategy": "None"});
        }
        // As kube-apiserver's strategy: a new storage version is recorded on every write.
        add_stored_version(obj);
    }

    fn initial_status(&self, obj: &mut Value) {
        obj["status"] = json!({"acceptedNames": {"plural": "", "kind": ""}, "conditions": [], "storedVersions": []});
    }

    fn before_delete(&self, obj: &mut Value) {
        let fins = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !fins.iter().any(|f| f == FINALIZER) {
            let mut fins = fins;
            fins.push(json!(FINALIZER));
            obj["metadata"]["finalizers"] = json!(fins);
        }
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }

    fn validate(&self, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        check(obj, old, errs)
    }

    fn minimal(&self) -> Value {
        json!({"metadata": {"name": "mins.min.nanokube.io"},
            "spec": {"group": "min.nanokube.io", "scope": "Namespaced",
            "names": {"plural": "mins", "singular": "min", "kind": "Min"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }
}

/// Sets a condition, keeping lastTransitionTime when the status does not change.
pub fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    let conds = &mut obj["status"]["conditions"];
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("made an array above");
    let new = |since: Value| json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message});
    match list.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            let since = if c["status"] == status {
                c["lastTransitionTime"].clone()
            } else {
                json!(now_rfc3339())
            };
            *c = new(since);
        }
        None => list.push(new(json!(now_rfc3339()))),
    }
}

pub fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn label_errors(field: &str, v: &Value, errs: &mut Vec<FieldError>) {
    let s = v.as_str().unwrap_or("");
    let msgs = names::dns1035_label(s);
    if !msgs.is_empty() {
        errs.push(validation::invalid(field, v, &msgs.join(",")));
    }
}

fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if !name.is_empty() && name != format!("{plural}.{group}") {
        errs.push(validation::invalid(
            "metadata.name",
            &obj["metadata"]["name"],
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(validation::required("spec.group", ""));
    } else if !names::dns1123_subdomain(group).is_empty() {
        errs.push(validation::invalid(
            "spec.group",
            &spec["group"],
            &names::dns1123_subdomain(group).join(","),
        ));
    } else if !group.contains('.') {
        errs.push(validation::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    let scope = &spec["scope"];
    if scope.as_str().is_none_or(str::is_empty) {
        errs.push(validation::required("spec.scope", ""));
    } else if !matches!(scope.as_str(), Some("Namespaced" | "Cluster")) {
        errs.push(validation::not_supported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let names = &spec["names"];
    for f in ["plural", "singular", "kind", "listKind"] {
        if names[f].as_str().is_none_or(str::is_empty) {
            errs.push(validation::required(&format!("spec.names.{f}"), ""));
        }
    }
    for f in ["plural", "singular"] {
        if names[f].as_str().is_some_and(|s| !s.is_empty()) {
            label_errors(&format!("spec.names.{f}"), &names[f], errs);
        }
    }
    for f in ["kind", "listKind"] {
        if let Some(k) = names[f].as_str().filter(|s| !s.is_empty()) {
            let msgs = names::dns1035_label(&k.to_lowercase());
            if !msgs.is_empty() {
                errs.push(validation::invalid(
                    &format!("spec.names.{f}"),
                    &names[f],
                    &msgs.join(","),
                ));
            }
        }
    }
    if names["kind"].is_string() && names["kind"] == names["listKind"] {
        errs.push(validation::invalid(
            "status.acceptedNames.listKind",
            &names["listKind"],
            "kind and listKind may not be the same",
        ));
    }
    for (i, s) in names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        label_errors(&format!("spec.names.shortNames[{i}]"), s, errs);
    }
    api_approval(obj, old, errs);
    if spec["preserveUnknownFields"] == true {
        errs.push(validation::invalid(
            "spec.preserveUnknownFields",
            &spec["preserveUnknownFields"],
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    // Conversion webhooks are not implemented: a CRD that needs one would be served with its
    // versions' objects unconverted, so it is refused instead.
    let conversion = &spec["conversion"]["strategy"];
    if conversion.as_str().is_some_and(|c| c != "None") {
        errs.push(validation::forbidden(
            "spec.conversion.strategy",
            &format!(
                "{} is not supported by nanokube: only None (versions differ in apiVersion alone)",
                validation::render(conversion)
            ),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(validation::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let vname = v["name"].as_str().unwrap_or("");
        if vname.is_empty() {
            errs.push(validation::required(&format!("{path}.name"), ""));
        } else {
            label_errors(&format!("{path}.name"), &v["name"], errs);
        }
        if seen.contains(&vname) {
            errs.push(validation::invalid(
                "spec.versions",
                &spec["versions"],
                "must contain unique version names",
            ));
        }
        seen.push(vname);
        if v["storage"] == true {
            storage += 1;
        }
        let s = &v["schema"]["openAPIV3Schema"];
        if !s.is_object() {
            errs.push(validation::required(
                &format!("{path}.schema.openAPIV3Schema"),
                "",
            ));
        } else {
            let mut found = Vec::new();
            schema::structural_errors(
                s,
                &format!("{path}.schema.openAPIV3Schema"),
                true,
                &mut found,
            );
            default_errors(s, &format!("{path}.schema.openAPIV3Schema"), errs);
            super::cel::compile_errors(s, &format!("{path}.schema.openAPIV3Schema"), &mut found);
            for (field, message) in found {
                let reason = if message.starts_with("Required") {
                    "FieldValueRequired"
                } else if message.starts_with("Forbidden") {
                    "FieldValueForbidden"
                } else if message.starts_with("Unsupported") {
                    "FieldValueNotSupported"
                } else {
                    "FieldValueInvalid"
                };
                errs.push(FieldError {
                    reason: reason.into(),
                    field,
                    message,
                });
            }
        }
        for (j, c) in v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let cpath = format!("{path}.additionalPrinterColumns[{j}]");
            let jp = c["jsonPath"].as_str().unwrap_or("");
            if jp.is_empty() {
                errs.push(validation::required(&format!("{cpath}.jsonPath"), ""));
            } else if super::jsonpath::Path::parse(jp).is_err() {
                errs.push(validation::invalid(
                    &format!("{cpath}.jsonPath"),
                    &c["jsonPath"],
                    "must be a simple json path",
                ));
            }
            let ty = &c["type"];
            if !matches!(
                ty.as_str(),
                Some("integer" | "number" | "string" | "boolean" | "date")
            ) {
                errs.push(validation::not_supported(
                    &format!("{cpath}.type"),
                    ty,
                    &["boolean", "date", "integer", "number", "string"],
                ));
            }
        }
        let selectable = v["selectableFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if selectable.len() > 8 {
            errs.push(FieldError {
                reason: "FieldValueTooMany".into(),
                field: format!("{path}.selectableFields"),
                message: format!("Too many: {}: must have at most 8 items", selectable.len()),
            });
        }
        for (j, f) in selectable.iter().enumerate() {
            let jp = &f["jsonPath"];
            if super::strategy::field_path(jp.as_str().unwrap_or("")).is_none() {
                errs.push(validation::invalid(
                    &format!("{path}.selectableFields[{j}].jsonPath"),
                    jp,
                    "must be a simple json path",
                ));
            }
        }
        if let Some(scale) = v["subresources"]["scale"].as_object() {
            for f in ["specReplicasPath", "statusReplicasPath"] {
                let p = scale.get(f).and_then(Value::as_str).unwrap_or("");
                if super::strategy::field_path(p).is_none() {
                    errs.push(validation::invalid(
                        &format!("{path}.subresources.scale.{f}"),
                        &json!(p),
                        "should be a json path under either .spec or .status",
                    ));
                }
            }
        }
    }
    if !versions.is_empty() && storage != 1 {
        errs.push(validation::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    if let Some(old) = old {
        if !old["spec"]["scope"].is_null() && old["spec"]["scope"] != spec["scope"] {
            errs.push(validation::invalid(
                "spec.scope",
                scope,
                "field is immutable",
            ));
        }
        for (i, sv) in obj["status"]["storedVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !versions.iter().any(|v| &v["name"] == sv) {
                errs.push(validation::invalid(
                    &format!("status.storedVersions[{i}]"),
                    sv,
                    "must appear in spec.versions",
                ));
            }
        }
    }
}

const APPROVAL: &str = "api-approved.kubernetes.io";

#[derive(PartialEq)]
enum Approval {
    Missing,
    Bypassed,
    Approved,
    Invalid,
}

fn approval_of(crd: &Value) -> Approval {
    let a = crd["metadata"]["annotations"][APPROVAL]
        .as_str()
        .unwrap_or("");
    let url_like = a.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty() && !rest.is_empty() && !rest.starts_with('/')
    });
    if a.is_empty() {
        Approval::Missing
    } else if a.starts_with("unapproved") {
        Approval::Bypassed
    } else if url_like {
        Approval::Approved
    } else {
        Approval::Invalid
    }
}

/// Groups of the Kubernetes project (`*.k8s.io`, `*.kubernetes.io`) need the API review's
/// approval annotation, as upstream checks; an update that leaves its state alone passes.
fn api_approval(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let group = obj["spec"]["group"].as_str().unwrap_or("");
    let protected = ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|g| group == *g || group.ends_with(&format!(".{g}")));
    if !protected {
        return;
    }
    let state = approval_of(obj);
    if old.is_some_and(|o| approval_of(o) == state) {
        return;
    }
    let field = format!("metadata.annotations[{APPROVAL}]");
    match state {
        Approval::Missing => errs.push(validation::required(
            &field,
            &format!("protected groups must have approval annotation {APPROVAL:?}, see https://github.com/kubernetes/enhancements/pull/1111"),
        )),
        Approval::Invalid => errs.push(validation::invalid(
            &field,
            &obj["metadata"]["annotations"][APPROVAL],
            &format!("protected groups must have approval annotation {APPROVAL:?} with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"),
        )),
        Approval::Approved | Approval::Bypassed => {}
    }
}

/// Defaults must be valid values of their schema and hold no field it would prune, as upstream
/// requires of v1 CRDs (additionalProperties may hold no defaults: not followed).
fn default_errors(s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(d) = s.get("default") {
        let at = format!("{path}.default");
        if !super::prune::unknown(s, d).is_empty() {
            errs.push(validation::invalid(&at, d, "must not have unknown fields"));
        }
        let mut found = Vec::new();
        super::validate::validate(s, d, "", &mut found);
        // As kube-openapi reports a value validated at its own root: no name before "in body".
        for mut e in found {
            e.field = if e.field.is_empty() {
                at.clone()
            } else {
                schema::child(&at, &e.field)
            };
            errs.push(e);
        }
    }
    if let Some(props) = schema::properties(s) {
        for (name, p) in props {
            default_errors(p, &format!("{path}.properties[{name}]"), errs);
        }
    }
    if let Some(items) = schema::items(s) {
        default_errors(items, &format!("{path}.items"), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(obj: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        check(obj, None, &mut errs);
        errs.iter().map(FieldError::full).collect()
    }

    #[test]
    fn names_group_versions_and_schemas_are_checked() {
        let good = json!({"metadata": {"name": "dbs.example.com"}, "spec": {"group": "example.com",
            "scope": "Namespaced", "names": {"plural": "dbs", "singular": "db", "kind": "Db", "listKind": "DbList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        assert!(errors(&good).is_empty(), "{:?}", errors(&good));
        let mut bad = good.clone();
        bad["metadata"]["name"] = json!("db.example.com");
        bad["spec"]["group"] = json!("example");
        bad["spec"]["scope"] = json!("Global");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object",
            "properties": {"spec": {"properties": {}}, "code": {"type": "string", "pattern": "([a-z]"},
                "size": {"type": "integer", "default": "big"},
                "tags": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                "kind": {"type": "integer"},
                "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
                "opts": {"type": "object", "default": {"x": 1}, "properties": {"y": {"type": "integer"}}}}});
        let errs = errors(&bad);
        let prefix = "spec.versions[0].schema.openAPIV3Schema.properties";
        assert!(
            errs.iter().any(|e| e == &format!("{prefix}[tags].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|e| e
                == &format!("{prefix}[kind].type: Invalid value: \"integer\": must be string")),
            "{errs:#?}"
        );
        assert!(errs.iter().any(|e| e == &format!("{prefix}[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")), "{errs:#?}");
        assert!(
            errs.iter().any(|e| e.starts_with(&format!(
                "{prefix}[size].default: Invalid value: \"string\":"
            )) && e.ends_with("must be of type integer: \"string\"")),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|e| e
                == &format!(
                "{prefix}[opts].default: Invalid value: {{\"x\":1}}: must not have unknown fields"
            )),
            "{errs:#?}"
        );
        for want in [
            "metadata.name: Invalid value: \"db.example.com\": must be spec.names.plural+\".\"+spec.group",
            "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
            "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
        ] {
            assert!(errs.iter().any(|e| e == want), "missing {want:?} in {errs:#?}");
        }
        assert!(errs.iter().any(|e| e.starts_with(
            "spec.versions[0].schema.openAPIV3Schema.properties[code].pattern: Invalid value: \"([a-z]\": must be a valid regular expression, but isn't:"
        )), "{errs:#?}");
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.versions: Invalid value:")
                && e.ends_with("must have exactly one version marked as storage version")));
    }

    #[test]
    fn kubernetes_groups_need_the_approval_annotation() {
        let crd = |ann: Value| {
            json!({"metadata": {"name": "things.x.k8s.io", "annotations": ann}, "spec": {"group": "x.k8s.io",
                "scope": "Cluster", "names": {"plural": "things", "singular": "thing", "kind": "Thing", "listKind": "ThingList"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
        };
        assert_eq!(
            errors(&crd(json!({}))),
            vec!["metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111"]
        );
        assert!(errors(&crd(
            json!({"api-approved.kubernetes.io": "unapproved, testing"})
        ))
        .is_empty());
        assert!(errors(&crd(json!({"api-approved.kubernetes.io": "https://github.com/kubernetes/enhancements/pull/1111"}))).is_empty());
        assert!(
            errors(&crd(json!({"api-approved.kubernetes.io": "yes"})))[0]
                .contains("with either a URL")
        );
    }

    #[test]
    fn defaults_fill_names_and_record_the_storage_version() {
        let mut crd = json!({"spec": {"names": {"kind": "Db", "plural": "dbs"},
            "versions": [{"name": "v1", "storage": false}, {"name": "v2", "storage": true}]}});
        Kind.initial_status(&mut crd);
        Kind.defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "db");
        assert_eq!(crd["spec"]["names"]["listKind"], "DbList");
        assert_eq!(crd["status"]["storedVersions"], json!(["v2"]));
        Kind.before_delete(&mut crd);
        assert_eq!(crd["metadata"]["finalizers"], json!([FINALIZER]));
        assert_eq!(
            condition(&crd, "Terminating").unwrap()["reason"],
            "InstanceDeletionPending"
        );
    }
}
