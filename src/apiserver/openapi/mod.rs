//! /openapi/v3: the root index and one document per group-version, enough for kubectl apply's
//! validation and `kubectl explain`.
//!
//! kubectl (1.27+) first reads the root (`paths` → `serverRelativeURL` with a content hash it
//! caches by), then the group-version document. For `apply`/`create` it looks for a PATCH
//! operation tagged with the kind's `x-kubernetes-group-version-kind` that takes a
//! `fieldValidation` query parameter: finding one, it leaves validation to the server
//! (`fieldValidation=Strict`). `kubectl explain` finds the schema carrying the same extension in
//! `components.schemas` and walks its `$ref`/`allOf` properties, printing their descriptions.
//! The schemas come from k8s-openapi (see `schemas`); documents are built once per registry
//! state and cached in its snapshot, so registering a kind changes the hashes kubectl caches by.

pub mod schemas;
pub mod v2;

use super::registry::{self, Snapshot};
use bytes::Bytes;
use schemas::{reachable, KindInfo};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A built group-version document, its serialized form and its hash.
struct Doc {
    value: Value,
    json: Bytes,
    hash: String,
    /// The schema names of its kinds: a later registry state with the same built-in kinds in
    /// this group-version has the same document.
    kinds: Vec<String>,
}

/// The v3 documents of one registry state, by "api/v1" / "apis/<group>/<version>".
pub struct Docs(BTreeMap<String, Arc<Doc>>);

/// "api/v1" or "apis/<group>/<version>": the key of a group-version in the root's `paths`.
fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The documents of a registry state, built on first use and kept with it: a changed registry
/// is a new snapshot, so its documents (and their hashes) are rebuilt.
fn docs(snap: &Snapshot) -> &Docs {
    snap.openapi_v3.get_or_init(|| {
        // Documents of group-versions holding only the built-in kinds come from the built-in
        // state (built once): registering a CRD rebuilds its own group-version's alone.
        let builtin = registry::builtin_snapshot();
        let reuse = (!std::ptr::eq(snap, &**builtin)).then(|| docs(builtin));
        let schemas = snap.schemas();
        let mut by_gv: BTreeMap<String, Vec<&KindInfo>> = BTreeMap::new();
        for k in &schemas.kinds {
            by_gv
                .entry(gv_key(&k.group, &k.version))
                .or_default()
                .push(k);
        }
        Docs(
            by_gv
                .into_iter()
                .map(|(key, kinds)| {
                    let names: Vec<String> = kinds.iter().map(|k| k.schema.clone()).collect();
                    if let Some(same) = reuse
                        .and_then(|b| b.0.get(&key))
                        .filter(|d| d.kinds == names)
                    {
                        return (key, same.clone());
                    }
                    let value = build_doc(&schemas.definitions, &kinds);
                    let json = value.to_string();
                    let hash = hex::encode_upper(Sha512::digest(json.as_bytes()));
                    let json = Bytes::from(json);
                    let doc = Doc {
                        value,
                        json,
                        hash,
                        kinds: names,
                    };
                    (key, Arc::new(doc))
                })
                .collect(),
        )
    })
}

/// GET /openapi/v3.
pub fn v3_root(snap: &Snapshot) -> Value {
    let paths: Map<String, Value> = docs(snap)
        .0
        .iter()
        .map(|(key, doc)| {
            (
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// GET /openapi/v3/api/v1 or /openapi/v3/apis/<group>/<version>; None when unknown.
pub fn v3_group_version(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    docs(snap)
        .0
        .get(&gv_key(group, version))
        .map(|d| d.value.clone())
}

/// The same document already serialized (it is large: the core one is about a megabyte), and
/// its hash, for answering without re-encoding and for ETag/caching.
pub fn v3_group_version_json(
    snap: &Snapshot,
    group: &str,
    version: &str,
) -> Option<(Bytes, String)> {
    docs(snap)
        .0
        .get(&gv_key(group, version))
        .map(|d| (d.json.clone(), d.hash.clone()))
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn bool_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": "boolean", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query_param("dryRun", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"),
        query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
        query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered."),
    ];
    if patch {
        p.push(bool_param("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."));
    }
    p
}

fn list_params() -> Vec<Value> {
    vec![
        bool_param("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        query_param("continue", "The continue option should be set when retrieving more results from the server."),
        query_param("fieldSelector", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        query_param("labelSelector", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        json!({"name": "limit", "in": "query", "description": "limit is a maximum number of responses to return for a list call.", "schema": {"type": "integer", "uniqueItems": true}}),
        query_param("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        query_param("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        json!({"name": "timeoutSeconds", "in": "query", "description": "Timeout for the list/watch call.", "schema": {"type": "integer", "uniqueItems": true}}),
        bool_param("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(name: &str) -> Value {
    json!({"content": {"application/json": {"schema": schema_ref(name)}}, "required": true})
}

fn ok(name: &str, codes: &[&str]) -> Value {
    let mut m = Map::new();
    for code in codes {
        m.insert(
            code.to_string(),
            json!({"description": if *code == "201" { "Created" } else { "OK" },
                   "content": {"application/json": {"schema": schema_ref(name)}}}),
        );
    }
    m.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(m)
}

/// `readCoreV1NamespacedPod`-style operation ids.
fn operation_id(verb: &str, k: &KindInfo, namespaced_path: bool, suffix: &str) -> String {
    let group: String = if k.group.is_empty() {
        "Core".into()
    } else {
        k.group
            .split('.')
            .next()
            .unwrap_or(&k.group)
            .split('-')
            .map(capitalize)
            .collect()
    };
    let scope = if namespaced_path { "Namespaced" } else { "" };
    format!(
        "{verb}{group}{}{scope}{}{suffix}",
        capitalize(&k.version),
        k.kind
    )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn operation(verb: &str, action: &str, k: &KindInfo, ns: bool, suffix: &str) -> Map<String, Value> {
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(operation_id(verb, k, ns, suffix)),
    );
    op.insert(
        "tags".into(),
        json!([if k.group.is_empty() {
            format!("core_{}", k.version)
        } else {
            format!("{}_{}", k.group, k.version)
        }]),
    );
    op.insert("x-kubernetes-action".into(), json!(action));
    op.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({"group": k.group, "version": k.version, "kind": k.kind}),
    );
    op
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn kind_paths(k: &KindInfo, paths: &mut Map<String, Value>) {
    let base = if k.group.is_empty() {
        format!("/api/{}", k.version)
    } else {
        format!("/apis/{}/{}", k.group, k.version)
    };
    let collection = if k.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", k.plural)
    } else {
        format!("{base}/{}", k.plural)
    };
    let mut common = vec![
        json!({"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty printed.", "schema": {"type": "string", "uniqueItems": true}}),
    ];
    if k.namespaced {
        common.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    let list_schema = format!("{}List", k.schema);

    let mut list = operation("list", "list", k, k.namespaced, "");
    list.insert(
        "description".into(),
        json!(format!("list or watch objects of kind {}", k.kind)),
    );
    list.insert("parameters".into(), json!(list_params()));
    list.insert("responses".into(), ok(&list_schema, &["200"]));
    let mut create = operation("create", "post", k, k.namespaced, "");
    create.insert("description".into(), json!(format!("create a {}", k.kind)));
    create.insert("parameters".into(), json!(write_params(false)));
    create.insert("requestBody".into(), json_body(&k.schema));
    create.insert("responses".into(), ok(&k.schema, &["200", "201"]));
    let mut delete_all = operation("deleteCollection", "deletecollection", k, k.namespaced, "");
    delete_all.insert(
        "description".into(),
        json!(format!("delete collection of {}", k.kind)),
    );
    delete_all.insert("parameters".into(), json!(list_params()));
    delete_all.insert("responses".into(), json!({"200": {"description": "OK"}}));
    paths.insert(
        collection.clone(),
        json!({"parameters": common, "get": list, "post": create, "delete": delete_all}),
    );

    let mut item_params = common.clone();
    item_params.insert(0, path_param("name", &format!("name of the {}", k.kind)));
    let mut read = operation("read", "get", k, k.namespaced, "");
    read.insert(
        "description".into(),
        json!(format!("read the specified {}", k.kind)),
    );
    read.insert("responses".into(), ok(&k.schema, &["200"]));
    let mut replace = operation("replace", "put", k, k.namespaced, "");
    replace.insert(
        "description".into(),
        json!(format!("replace the specified {}", k.kind)),
    );
    replace.insert("parameters".into(), json!(write_params(false)));
    replace.insert("requestBody".into(), json_body(&k.schema));
    replace.insert("responses".into(), ok(&k.schema, &["200", "201"]));
    let mut patch = operation("patch", "patch", k, k.namespaced, "");
    patch.insert(
        "description".into(),
        json!(format!("partially update the specified {}", k.kind)),
    );
    patch.insert("parameters".into(), json!(write_params(true)));
    let patch_schema = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    let mut patch_types = json!({
        "application/apply-patch+yaml": {"schema": patch_schema},
        "application/json-patch+json": {"schema": patch_schema},
        "application/merge-patch+json": {"schema": patch_schema},
    });
    if k.strategic_merge {
        patch_types["application/strategic-merge-patch+json"] = json!({"schema": patch_schema});
    }
    patch.insert(
        "requestBody".into(),
        json!({"content": patch_types, "required": true}),
    );
    patch.insert("responses".into(), ok(&k.schema, &["200", "201"]));
    let mut delete = operation("delete", "delete", k, k.namespaced, "");
    delete.insert("description".into(), json!(format!("delete a {}", k.kind)));
    delete.insert("parameters".into(), json!([query_param("dryRun", "When present, indicates that modifications should not be persisted."),
        json!({"name": "gracePeriodSeconds", "in": "query", "description": "The duration in seconds before the object should be deleted.", "schema": {"type": "integer", "uniqueItems": true}}),
        query_param("propagationPolicy", "Whether and how garbage collection will be performed.")]));
    delete.insert(
        "responses".into(),
        json!({"200": {"description": "OK"}, "202": {"description": "Accepted"}}),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({"parameters": item_params, "get": read, "put": replace, "patch": patch, "delete": delete}),
    );

    if k.namespaced {
        let mut all = operation("list", "list", k, false, "ForAllNamespaces");
        all.insert(
            "description".into(),
            json!(format!("list or watch objects of kind {}", k.kind)),
        );
        all.insert("parameters".into(), json!(list_params()));
        all.insert("responses".into(), ok(&list_schema, &["200"]));
        paths.insert(format!("{base}/{}", k.plural), json!({"get": all}));
    }
}

fn list_schema(k: &KindInfo) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", k.kind, k.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": {"type": "array", "description": format!("List of {} objects.", k.kind), "items": {"allOf": [schema_ref(&k.schema)], "default": {}}},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"allOf": [schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")], "default": {}, "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [{"group": k.group, "kind": format!("{}List", k.kind), "version": k.version}],
    })
}

fn build_doc(defs: &Map<String, Value>, kinds: &[&KindInfo]) -> Value {
    let mut paths = Map::new();
    for k in kinds {
        kind_paths(k, &mut paths);
    }
    let roots: Vec<&str> = kinds.iter().map(|k| k.schema.as_str()).collect();
    let mut schemas: Map<String, Value> = reachable(defs, &roots)
        .into_iter()
        .filter_map(|name| defs.get(&name).map(|s| (name, s.clone())))
        .collect();
    for k in kinds {
        schemas.insert(format!("{}List", k.schema), list_schema(k));
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta".into(),
        json!({"description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.",
               "type": "object",
               "properties": {
                   "continue": {"type": "string", "description": "continue may be set if the user set a limit on the number of items returned."},
                   "remainingItemCount": {"type": "integer", "format": "int64", "description": "remainingItemCount is the number of subsequent items in the list which are not included in this list response."},
                   "resourceVersion": {"type": "string", "description": "String that identifies the server's internal version of this object."},
                   "selfLink": {"type": "string", "description": "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."}}}),
    );
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::builtin_snapshot;

    #[test]
    fn a_registration_rebuilds_only_its_own_group_version() {
        let reg = registry::Registry::builtin();
        let mut extra = (*registry::builtin("", "v1", "configmaps")).clone();
        extra.group = "example.nanokube.io".into();
        extra.api_version = "example.nanokube.io/v1".into();
        reg.register(extra).unwrap();
        let snap = reg.snapshot();
        let (_, apps) = v3_group_version_json(&snap, "apps", "v1").unwrap();
        let (_, builtin_apps) = v3_group_version_json(builtin_snapshot(), "apps", "v1").unwrap();
        assert_eq!(
            apps, builtin_apps,
            "unchanged group-version, same document and hash"
        );
        assert!(Arc::ptr_eq(
            &docs(&snap).0["apis/apps/v1"],
            &docs(builtin_snapshot()).0["apis/apps/v1"]
        ));
        assert!(v3_group_version_json(&snap, "example.nanokube.io", "v1").is_some());
    }

    fn v3_root() -> Value {
        super::v3_root(builtin_snapshot())
    }

    fn v3_group_version(group: &str, version: &str) -> Option<Value> {
        super::v3_group_version(builtin_snapshot(), group, version)
    }

    #[test]
    fn root_lists_group_versions_with_stable_hashes() {
        let root = v3_root();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(root["paths"]["api/v1"].is_object());
        assert!(root["paths"]["apis/autoscaling/v2"].is_object());
        assert_eq!(v3_root(), root, "hashes are stable");
        assert!(v3_group_version("nope", "v1").is_none());
    }

    /// What kubectl's QueryParamVerifierV3 looks for before leaving validation to the server.
    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let doc = v3_group_version("apps", "v1").unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let found = paths.values().any(|p| {
            let op = &p["patch"];
            op["x-kubernetes-group-version-kind"]
                == json!({"group": "apps", "version": "v1", "kind": "Deployment"})
                && op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["name"] == "fieldValidation" && q["in"] == "query")
        });
        assert!(found);
        assert!(paths.contains_key("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"));
        assert!(paths.contains_key("/apis/apps/v1/deployments"));
    }

    #[test]
    fn documents_hold_the_schemas_explain_needs() {
        let doc = v3_group_version("", "v1").unwrap();
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        let container = &schemas["io.k8s.api.core.v1.Container"];
        assert!(container["properties"]["image"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Container image name"));
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(schemas.get("io.k8s.api.apps.v1.Deployment").is_none());
        let (text, hash) = v3_group_version_json(builtin_snapshot(), "", "v1").unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), doc);
        assert_eq!(hash.len(), 128);
    }
}
