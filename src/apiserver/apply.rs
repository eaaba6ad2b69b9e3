//! Server-side apply (application/apply-patch+yaml): merge by field ownership, managedFields.
//!
//! Every writer of an object is a *manager* that owns a set of fields, recorded in
//! `metadata.managedFields` as FieldsV1: nested `f:<field>` for struct and map fields,
//! `k:{"name":"web"}` for an element of a keyed list, `v:"x"` for a member of a set, with `.`
//! marking that an element itself is owned. An apply:
//! 1. computes the field set of the applied configuration (walking the kind's schema to know
//!    which lists are keyed, sets, or atomic);
//! 2. finds conflicts: fields the applied config sets to a different value than the live one
//!    while another manager owns them. Without `force` that is a 409 listing them
//!    (`Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1:
//!    .spec.replicas`); with `force` the fields change hands;
//! 3. removes the fields this manager applied last time, does not apply now, and nobody else
//!    owns;
//! 4. merges the applied values in (maps and keyed lists merge, sets union, the rest replaces);
//! 5. records the manager's Apply entry with exactly the applied set.
//!
//! `track_update` records ordinary writes (create, update, patch) as Update entries, so applying
//! after `kubectl scale` or an edit reports the conflict like Kubernetes does.
//!
//! Limits: list keys follow the strategic-merge keys (plus protocol for ports); element order of
//! merged lists is the live order with new elements appended; ownership of a whole
//! struct-valued field is tracked through its leaves only; versions are not converted.

use crate::apiserver::strategic_merge::{child, kind_type, list_strategy, type_name, ListStrategy};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One step of a field path: `f:name`, `k:{"name":"x"}` or `v:"x"`, encoded as in FieldsV1.
type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409, reason Conflict); `causes` are
    /// (field, message) pairs for the Status' FieldManagerConflict causes.
    Conflict {
        message: String,
        causes: Vec<(String, String)>,
    },
    /// The applied configuration cannot be applied (HTTP 400/422).
    Invalid(String),
}

/// Result of a server-side apply: the new object (with managedFields) or a conflict message.
/// A conflict message starts with "Apply failed with"; use `server_side_apply_detailed` for
/// the kind of failure and the causes.
pub fn server_side_apply(
    group: &str,
    kind: &str,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, String> {
    server_side_apply_detailed(group, kind, current, applied, manager, force, None, None).map_err(
        |e| match e {
            ApplyError::Conflict { message, .. } => message,
            ApplyError::Invalid(m) => m,
        },
    )
}

/// What one managedFields entry says.
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Value,
    fields: FieldSet,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn read_entries(obj: Option<&Value>) -> Vec<Entry> {
    let Some(list) = obj.and_then(|o| o["metadata"]["managedFields"].as_array()) else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let mut fields = FieldSet::new();
            parse_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Entry {
                manager: e["manager"].as_str().unwrap_or("").into(),
                operation: e["operation"].as_str().unwrap_or("").into(),
                api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                subresource: e["subresource"].as_str().unwrap_or("").into(),
                time: e["time"].clone(),
                fields,
            }
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            if !e.time.is_null() {
                m.insert("time".into(), e.time.clone());
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), fields_v1(&e.fields));
            if !e.subresource.is_empty() {
                m.insert("subresource".into(), json!(e.subresource));
            }
            Value::Object(m)
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// FieldsV1 JSON of a field set.
pub fn fields_v1(set: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for path in set {
        let mut cur = &mut root;
        for step in path {
            cur = cur.children.entry(step.clone()).or_default();
        }
        cur.member = true;
    }
    fn render(n: &Node) -> Value {
        let mut m = Map::new();
        if n.member && !n.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &n.children {
            m.insert(k.clone(), render(c));
        }
        Value::Object(m)
    }
    render(&root)
}

fn parse_fields_v1(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    for (k, child) in m {
        if k == "." {
            out.insert(prefix.clone());
            continue;
        }
        prefix.push(k.clone());
        if child.as_object().is_none_or(|c| c.is_empty()) {
            out.insert(prefix.clone());
        } else {
            parse_fields_v1(child, prefix, out);
        }
        prefix.pop();
    }
}

/// The keys identifying elements of a keyed list, as server-side apply uses them.
pub(crate) fn list_keys(ty: Option<&str>, field: &str) -> Option<Vec<&'static str>> {
    match (ty, field) {
        (
            Some("io.k8s.api.core.v1.Container" | "io.k8s.api.core.v1.EphemeralContainer"),
            "ports",
        ) => Some(vec!["containerPort", "protocol"]),
        (Some("io.k8s.api.core.v1.ServiceSpec"), "ports") => Some(vec!["port", "protocol"]),
        _ => match list_strategy(ty, field) {
            ListStrategy::MergeByKey(k) => Some(vec![k]),
            _ => None,
        },
    }
}

/// Where list semantics come from while walking an object: a built-in kind's schema type (a
/// definition name; lists as the strategic-merge table says), or a node of a custom resource's
/// structural schema (lists as its `x-kubernetes-list-type` and `-list-map-keys` say; atomic
/// when it says nothing, as upstream).
#[derive(Clone)]
enum Ty<'s> {
    Named(Option<String>),
    Schema(&'s Value),
}

impl<'s> Ty<'s> {
    /// The root of an object: `schema` (a custom resource's), or the kind's built-in type.
    fn root(group: &str, kind: &str, obj: &Value, schema: Option<&'s Value>) -> Ty<'s> {
        match schema {
            Some(s) => Ty::Schema(s),
            None => Ty::Named(kind_type(group, kind, obj)),
        }
    }

    fn field_schema(s: &'s Value, field: &str) -> Option<&'s Value> {
        s.get("properties")
            .and_then(|p| p.get(field))
            .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
    }

    /// The type of `field`'s value (of its elements, for a list).
    fn child(&self, field: &str) -> Ty<'s> {
        match self {
            Ty::Named(t) => Ty::Named(child(t.as_deref(), field)),
            Ty::Schema(s) => match Ty::field_schema(s, field) {
                // metadata and other built-in types inside a custom resource.
                Some(f) if type_name(f).is_some() => Ty::Named(type_name(f)),
                Some(f) => match f.get("items").filter(|i| i.is_object()) {
                    Some(items) => Ty::Schema(items),
                    None => Ty::Schema(f),
                },
                None => Ty::Named(None),
            },
        }
    }

    /// The keys of the keyed list `field`, if it is one.
    fn list_keys(&self, field: &str) -> Option<Vec<String>> {
        match self {
            Ty::Named(t) => {
                list_keys(t.as_deref(), field).map(|k| k.iter().map(|s| s.to_string()).collect())
            }
            Ty::Schema(s) => {
                let f = Ty::field_schema(s, field)?;
                if f.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
                    return None;
                }
                let keys: Vec<String> = f
                    .get("x-kubernetes-list-map-keys")?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                (!keys.is_empty()).then_some(keys)
            }
        }
    }

    /// Whether `field` is a set of primitives (merged as a union).
    fn is_set(&self, field: &str) -> bool {
        match self {
            Ty::Named(t) => list_strategy(t.as_deref(), field) == ListStrategy::MergePrimitives,
            Ty::Schema(s) => {
                Ty::field_schema(s, field)
                    .and_then(|f| f.get("x-kubernetes-list-type"))
                    .and_then(Value::as_str)
                    == Some("set")
            }
        }
    }
}

/// `k:{...}` of an element: its key fields in sorted order, protocol defaulting to TCP.
fn element_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut parts = Vec::new();
    for k in sorted {
        let v = match item.get(k) {
            Some(v) if !v.is_null() => v.clone(),
            _ if k == "protocol" => json!("TCP"),
            _ => return None,
        };
        parts.push(format!("{}:{}", Value::String(k.to_string()), v));
    }
    Some(format!("k:{{{}}}", parts.join(",")))
}

/// Metadata fields the server owns; never part of anyone's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The field set an object (or applied configuration) sets.
fn field_set(
    group: &str,
    kind: &str,
    obj: &Value,
    schema: Option<&Value>,
) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    let ty = Ty::root(group, kind, obj, schema);
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let mut path = vec![format!("f:{k}")];
            if k == "metadata" {
                let Some(meta) = v.as_object() else { continue };
                let meta_ty = ty.child("metadata");
                for (mk, mv) in meta {
                    if SERVER_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(format!("f:{mk}"));
                    walk_set(mv, &meta_ty, mk, &mut path, &mut out)?;
                    path.pop();
                }
                continue;
            }
            walk_set(v, &ty, k, &mut path, &mut out)?;
        }
    }
    Ok(out)
}

/// Adds the paths under `v`, which is field `field` of an object of type `parent_ty`.
fn walk_set(
    v: &Value,
    parent_ty: &Ty,
    field: &str,
    path: &mut Path,
    out: &mut FieldSet,
) -> Result<(), String> {
    let ty = parent_ty.child(field);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, cv) in m {
                path.push(format!("f:{k}"));
                walk_set(cv, &ty, k, path, out)?;
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(keys) = parent_ty.list_keys(field) {
                for (i, item) in items.iter().enumerate() {
                    let key = element_key(item, &keys).ok_or_else(|| {
                        format!(
                            "{}: element {i}: associative list with keys has an element that omits key field {:?} (and doesn't have default value)",
                            path_string(path),
                            keys.iter().find(|k| item.get(k.as_str()).is_none()).unwrap_or(&keys[0])
                        )
                    })?;
                    path.push(key);
                    out.insert(path.clone());
                    if let Some(m) = item.as_object() {
                        for (k, cv) in m {
                            path.push(format!("f:{k}"));
                            walk_set(cv, &ty, k, path, out)?;
                            path.pop();
                        }
                    }
                    path.pop();
                }
            } else if parent_ty.is_set(field) {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            } else {
                out.insert(path.clone());
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
    Ok(())
}

/// `.spec.containers[name="web"].image`, as structured-merge-diff prints paths.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            pairs.sort();
            s.push_str(&format!("[{}]", pairs.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

fn matches_key(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    want.iter().all(|(k, v)| match item.get(k) {
        Some(x) if !x.is_null() => x == v,
        _ => k == "protocol" && v == "TCP",
    })
}

/// The value at a path, if present.
fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for step in path {
        cur = if let Some(f) = step.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = step.strip_prefix("k:") {
            cur.as_array()?.iter().find(|i| matches_key(i, k))?
        } else if let Some(v) = step.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur.as_array()?.iter().find(|i| **i == want)?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// Removes the field or element at a path.
fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for step in parents {
        let next = if let Some(f) = step.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = step.strip_prefix("k:") {
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| matches_key(i, k)))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let Some(a) = cur.as_array_mut() {
            a.retain(|i| !matches_key(i, k));
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        if let (Some(a), Ok(want)) = (cur.as_array_mut(), serde_json::from_str::<Value>(v)) {
            a.retain(|i| *i != want);
        }
    }
}

/// Merges applied values into the live value of field `field` of an object of type `parent_ty`.
fn merge(live: &mut Value, applied: &Value, parent_ty: &Ty, field: &str) {
    let ty = parent_ty.child(field);
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => merge_object(l, a, &ty),
        (Value::Array(l), Value::Array(a)) => {
            if let Some(keys) = parent_ty.list_keys(field) {
                for item in a {
                    let Some(key) = element_key(item, &keys) else {
                        continue;
                    };
                    let key = key.trim_start_matches("k:").to_string();
                    match l.iter_mut().find(|i| matches_key(i, &key)) {
                        Some(Value::Object(li)) => {
                            if let Value::Object(ai) = item {
                                merge_object(li, ai, &ty);
                            }
                        }
                        Some(other) => *other = item.clone(),
                        None => l.push(item.clone()),
                    }
                }
            } else if parent_ty.is_set(field) {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            } else {
                *l = a.clone();
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Merges the keys of an applied object of schema type `ty` into the live one.
fn merge_object(live: &mut Map<String, Value>, applied: &Map<String, Value>, ty: &Ty) {
    for (k, av) in applied {
        match live.get_mut(k) {
            Some(lv) => merge(lv, av, ty, k),
            None => {
                live.insert(k.clone(), av.clone());
            }
        }
    }
}

fn manager_label(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        s = format!("{s} with subresource {:?}", e.subresource);
    }
    if e.operation == "Update" {
        match e.time.as_str() {
            Some(t) => format!("{s} using {} at {t}", e.api_version),
            None => format!("{s} using {}", e.api_version),
        }
    } else {
        s
    }
}

/// Server-side apply with the failure kind and conflict causes. `subresource` is "status" when
/// applying to /status (the entry records it). `schema` is a custom resource's structural
/// schema (its lists' semantics); built-in kinds pass None.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply_detailed(
    group: &str,
    kind: &str,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    schema: Option<&Value>,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let subresource = subresource.unwrap_or("");
    let applied_set = field_set(group, kind, applied, schema).map_err(ApplyError::Invalid)?;
    let mut entries = read_entries(current);
    let mut live = current.cloned().unwrap_or_else(|| json!({}));

    // Conflicts: another manager owns a field whose value the apply would change.
    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.manager == manager && e.operation == "Apply" && e.subresource == subresource {
            continue;
        }
        for p in e.fields.intersection(&applied_set) {
            let (a, l) = (get(applied, p), get(&live, p));
            let is_element = p
                .last()
                .is_some_and(|s| s.starts_with("k:") || s.starts_with("v:"));
            if !is_element && a != l {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&entries, &conflicts));
        }
        for (i, p) in &conflicts {
            entries[*i].fields.remove(p);
        }
    }

    // Fields this manager applied before and no longer applies, owned by nobody else, go away.
    let previous: FieldSet = entries
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = entries
        .iter()
        .filter(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        })
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied_set.contains(*p) && !others.contains(*p))
        .filter(|p| {
            !others.iter().any(|o| o.starts_with(p))
                && !applied_set.iter().any(|a| a.starts_with(p))
        })
        .collect();
    // Shallowest first: a dropped list element goes whole (its key fields still identify it),
    // and what was under it needs no separate removal.
    dropped.sort_by_key(|p| p.len());
    let mut removed: Vec<&Path> = Vec::new();
    for p in dropped {
        if removed.iter().any(|r| p.starts_with(r)) {
            continue;
        }
        remove(&mut live, p);
        removed.push(p);
    }

    let ty = Ty::root(group, kind, applied, schema);
    if let (Value::Object(l), Value::Object(a)) = (&mut live, applied) {
        for (k, av) in a {
            if k == "metadata" {
                let meta = l.entry("metadata").or_insert_with(|| json!({}));
                let meta_ty = ty.child("metadata");
                if let (Value::Object(lm), Value::Object(am)) = (meta, av) {
                    for (mk, mv) in am {
                        if mk == "managedFields" || mk == "resourceVersion" {
                            continue;
                        }
                        match lm.get_mut(mk) {
                            Some(lv) => merge(lv, mv, &meta_ty, mk),
                            None => {
                                lm.insert(mk.clone(), mv.clone());
                            }
                        }
                    }
                }
                continue;
            }
            match l.get_mut(k) {
                Some(lv) => merge(lv, av, &ty, k),
                None => {
                    l.insert(k.clone(), av.clone());
                }
            }
        }
    }

    let api_version = applied["apiVersion"].as_str().unwrap_or("").to_string();
    entries.retain(|e| {
        !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
    });
    entries.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version,
        subresource: subresource.into(),
        time: json!(now()),
        fields: applied_set,
    });
    write_entries(&mut live, &entries);
    Ok(live)
}

fn conflict_error(entries: &[Entry], conflicts: &[(usize, Path)]) -> ApplyError {
    let causes: Vec<(String, String)> = conflicts
        .iter()
        .map(|(i, p)| {
            (
                path_string(p),
                format!("conflict with {}", manager_label(&entries[*i])),
            )
        })
        .collect();
    let message = if let [(i, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            manager_label(&entries[*i]),
            path_string(p)
        )
    } else {
        let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, p) in conflicts {
            by_manager
                .entry(manager_label(&entries[*i]))
                .or_default()
                .push(path_string(p));
        }
        let mut lines = Vec::new();
        for (m, paths) in by_manager {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApplyError::Conflict { message, causes }
}

/// Records an ordinary write (create, update, any non-apply patch) in `new`'s managedFields:
/// the fields whose values it set or changed join `manager`'s Update entry and leave everyone
/// else's. `subresource` is "status" for writes to /status; `schema` as for
/// `server_side_apply_detailed`.
pub fn track_update(
    group: &str,
    kind: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    schema: Option<&Value>,
) {
    let subresource = subresource.unwrap_or("");
    let Ok(new_set) = field_set(group, kind, new, schema) else {
        return;
    };
    let mut entries = read_entries(old.or(Some(&*new)));
    if old.is_none() {
        entries.clear();
    }
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| old.is_none_or(|o| get(o, p) != get(new, p)))
        .cloned()
        .collect();
    // Fields removed by this write are owned by nobody any more.
    let gone: Vec<Path> = entries
        .iter()
        .flat_map(|e| e.fields.iter())
        .filter(|p| get(new, p).is_none())
        .cloned()
        .collect();
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !changed.contains(p) && !gone.contains(p));
    }
    if !changed.is_empty() {
        let api_version = new["apiVersion"].as_str().unwrap_or("").to_string();
        match entries.iter_mut().find(|e| {
            e.manager == manager
                && e.operation == "Update"
                && e.subresource == subresource
                && e.api_version == api_version
        }) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = json!(now());
            }
            None => entries.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                api_version,
                subresource: subresource.into(),
                time: json!(now()),
                fields: changed,
            }),
        }
    }
    write_entries(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .unwrap()
    }

    #[test]
    fn create_records_fields_v1_like_kubernetes() {
        let out = server_side_apply(
            "apps",
            "Deployment",
            None,
            &deploy(2, "nginx:1"),
            "kubectl",
            false,
        )
        .unwrap();
        let e = entry(&out, "kubectl");
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["fieldsType"], "FieldsV1");
        let f = &e["fieldsV1"];
        assert_eq!(f["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(f["f:spec"]["f:replicas"], json!({}));
        let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert!(f.get("f:apiVersion").is_none());
        assert_eq!(out["spec"]["replicas"], 2);
    }

    #[test]
    fn reapply_merges_and_removes_dropped_fields() {
        let first = server_side_apply(
            "apps",
            "Deployment",
            None,
            &deploy(2, "nginx:1"),
            "kubectl",
            false,
        )
        .unwrap();
        let mut live = first.clone();
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        let mut second = deploy(2, "nginx:2");
        second["metadata"]["labels"] = json!({"tier": "fe"});
        let out = server_side_apply("apps", "Deployment", Some(&live), &second, "kubectl", false)
            .unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"tier": "fe"}),
            "app label was dropped"
        );
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:2");
        assert_eq!(
            c["imagePullPolicy"], "IfNotPresent",
            "fields nobody applied stay"
        );
        assert_eq!(
            out["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn conflicts_with_another_manager_unless_forced() {
        let created = server_side_apply(
            "apps",
            "Deployment",
            None,
            &deploy(2, "nginx:1"),
            "kubectl",
            false,
        )
        .unwrap();
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(
            "apps",
            "Deployment",
            Some(&created),
            &mut scaled,
            "kubectl-scale",
            None,
            None,
        );
        assert_eq!(
            entry(&scaled, "kubectl-scale")["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(entry(&scaled, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none());

        let other = server_side_apply_detailed(
            "apps",
            "Deployment",
            Some(&scaled),
            &deploy(3, "nginx:1"),
            "ci",
            false,
            None,
            None,
        );
        let Err(ApplyError::Conflict { message, causes }) = other else {
            panic!("expected a conflict, got {other:?}");
        };
        assert!(
            message.starts_with(
                "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1 at "
            ),
            "{message}"
        );
        assert!(message.ends_with(": .spec.replicas"));
        assert_eq!(causes[0].0, ".spec.replicas");

        let same = server_side_apply(
            "apps",
            "Deployment",
            Some(&scaled),
            &deploy(5, "nginx:1"),
            "ci",
            false,
        );
        assert!(
            same.is_ok(),
            "same value is shared ownership, not a conflict"
        );

        let forced = server_side_apply(
            "apps",
            "Deployment",
            Some(&scaled),
            &deploy(3, "nginx:1"),
            "ci",
            true,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert!(!managers.contains(&"kubectl-scale"), "{managers:?}");
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let created = server_side_apply(
            "apps",
            "Deployment",
            None,
            &deploy(2, "nginx:1"),
            "a",
            false,
        )
        .unwrap();
        let err = server_side_apply(
            "apps",
            "Deployment",
            Some(&created),
            &deploy(3, "nginx:9"),
            "b",
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn dropping_a_container_and_a_finalizer_removes_them() {
        let mut first = deploy(1, "nginx:1");
        first["metadata"]["finalizers"] = json!(["a.example/x", "a.example/y"]);
        first["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "busybox"}));
        let live = server_side_apply("apps", "Deployment", None, &first, "kubectl", false).unwrap();
        assert_eq!(
            entry(&live, "kubectl")["fieldsV1"]["f:metadata"]["f:finalizers"],
            json!({"v:\"a.example/x\"": {}, "v:\"a.example/y\"": {}})
        );
        let mut second = deploy(1, "nginx:1");
        second["metadata"]["finalizers"] = json!(["a.example/x"]);
        let out = server_side_apply("apps", "Deployment", Some(&live), &second, "kubectl", false)
            .unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web"]);
        assert_eq!(out["metadata"]["finalizers"], json!(["a.example/x"]));
    }

    #[test]
    fn missing_keys_are_rejected() {
        let mut bad = deploy(1, "x");
        bad["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
        let err =
            server_side_apply("apps", "Deployment", None, &bad, "kubectl", false).unwrap_err();
        assert!(err.contains("omits key field \"name\""), "{err}");
    }

    #[test]
    fn custom_resource_lists_follow_their_schema() {
        let schema = json!({"type": "object", "properties": {
            "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"type": "object", "properties": {
                "users": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"},
                        "roles": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}}}}}});
        let obj = |users: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Db", "metadata": {"name": "x", "labels": {"a": "b"}},
                "spec": {"users": users}})
        };
        let apply = |cur: Option<&Value>, users: Value, manager: &str, schema: Option<&Value>| {
            server_side_apply_detailed(
                "example.com",
                "Db",
                cur,
                &obj(users),
                manager,
                false,
                None,
                schema,
            )
        };
        let live = apply(
            None,
            json!([{"name": "a", "roles": ["r1"]}]),
            "one",
            Some(&schema),
        )
        .unwrap();
        let live = apply(
            Some(&live),
            json!([{"name": "b"}, {"name": "a", "roles": ["r2"]}]),
            "two",
            Some(&schema),
        )
        .unwrap();
        assert_eq!(
            live["spec"]["users"],
            json!([{"name": "a", "roles": ["r1", "r2"]}, {"name": "b"}]),
            "map list merged by name, set merged as a union"
        );
        let two = &entry(&live, "two")["fieldsV1"]["f:spec"]["f:users"];
        assert!(two.get("k:{\"name\":\"b\"}").is_some(), "{two}");
        assert!(
            two["k:{\"name\":\"a\"}"]["f:roles"]
                .get("v:\"r2\"")
                .is_some(),
            "{two}"
        );
        assert!(entry(&live, "one")["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:a")
            .is_some());
        // Without the schema the list is atomic: the second manager's list conflicts.
        let live = apply(None, json!([{"name": "a"}]), "one", None).unwrap();
        assert!(matches!(
            apply(Some(&live), json!([{"name": "b"}]), "two", None),
            Err(ApplyError::Conflict { .. })
        ));
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = field_set("apps", "Deployment", &deploy(1, "x"), None).unwrap();
        let mut back = FieldSet::new();
        parse_fields_v1(&fields_v1(&set), &mut Vec::new(), &mut back);
        assert_eq!(set, back);
    }
}
