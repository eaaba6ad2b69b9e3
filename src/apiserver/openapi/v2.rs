//! /openapi/v2: the whole API as one Swagger 2.0 document, in JSON and in the gnostic protobuf
//! encoding kubectl asks for (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
//!
//! kubectl up to 1.27 validates `apply`/`create` and runs `explain` from this document (later
//! versions use /openapi/v3 and only try v2 in passing). Before leaving validation to the server
//! it looks for a PATCH operation whose `x-kubernetes-group-version-kind` extension (a YAML map)
//! names the kind and which takes a `fieldValidation` query parameter; `explain` reads the
//! definitions. The document is derived from the same schemas as v3: `allOf: [{$ref}]` back to
//! a `$ref` with siblings, `#/components/schemas/` to `#/definitions/`.

use super::schemas::{KindInfo, Schemas};
use crate::apiserver::registry::Snapshot;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

/// The content type of the protobuf form. kubectl asks with `...spec.v2@v1.0+protobuf`, a
/// spelling Go's mime parser rejects in a Content-Type; the answer uses the dotted form, as
/// kube-openapi does.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The v2 document of one registry state, in both encodings, and the hash of its JSON form.
pub struct V2 {
    json: Bytes,
    protobuf: Bytes,
    hash: String,
}

/// Built on first use and kept with the snapshot, so a registry change rebuilds it.
fn built(snap: &Snapshot) -> &V2 {
    snap.openapi_v2.get_or_init(|| {
        let doc = document(snap.schemas());
        let json = doc.to_string();
        V2 {
            hash: hex::encode_upper(Sha512::digest(json.as_bytes())),
            json: Bytes::from(json),
            protobuf: Bytes::from(encode_document(&doc)),
        }
    })
}

/// GET /openapi/v2 with a JSON Accept.
pub fn v2_json(snap: &Snapshot) -> Bytes {
    built(snap).json.clone()
}

/// GET /openapi/v2 with the protobuf Accept (what kubectl sends).
pub fn v2_protobuf(snap: &Snapshot) -> Bytes {
    built(snap).protobuf.clone()
}

/// The document's hash, for its ETag: kubectl caches the v2 document by it.
pub fn v2_hash(snap: &Snapshot) -> String {
    built(snap).hash.clone()
}

/// A v3 schema made v2: refs point into `definitions`, single-ref `allOf` collapses.
fn to_v2_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, child) in m {
                if k == "allOf" {
                    if let Some([one]) = child.as_array().map(Vec::as_slice) {
                        if let Some(r) = one.get("$ref") {
                            out.insert("$ref".into(), to_v2_schema(r));
                            continue;
                        }
                    }
                }
                out.insert(k.clone(), to_v2_schema(child));
            }
            if out.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
                out.entry("type").or_insert(json!("string"));
                out.entry("format").or_insert(json!("int-or-string"));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v2_schema).collect()),
        Value::String(s) => match s.strip_prefix("#/components/schemas/") {
            Some(name) => Value::String(format!("#/definitions/{name}")),
            None => v.clone(),
        },
        other => other.clone(),
    }
}

fn param(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "type": ty, "uniqueItems": true, "description": description})
}

fn gvk(k: &KindInfo) -> Value {
    json!({"group": k.group, "kind": k.kind, "version": k.version})
}

fn op(verb: &str, k: &KindInfo, params: Vec<Value>, response: &str) -> Value {
    json!({
        "description": format!("{verb} {}", k.kind),
        "consumes": ["*/*"],
        "produces": ["application/json", "application/yaml"],
        "schemes": ["https"],
        "tags": [if k.group.is_empty() { format!("core_{}", k.version) } else { format!("{}_{}", k.group, k.version) }],
        "operationId": format!("{verb}{}", k.kind),
        "parameters": params,
        "responses": {"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{response}")}},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": gvk(k),
    })
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        param("dryRun", "string", "When present, indicates that modifications should not be persisted."),
        param("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        param("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields: Ignore, Warn or Strict."),
    ];
    if patch {
        p.push(param(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests.",
        ));
    }
    p
}

fn body(schema: &str) -> Value {
    json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": format!("#/definitions/{schema}")}})
}

fn document(reg: &Schemas) -> Value {
    let mut paths = Map::new();
    for k in &reg.kinds {
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
        let list = format!("{}List", k.schema);
        let mut create_params = write_params(false);
        create_params.push(body(&k.schema));
        paths.insert(
            collection.clone(),
            json!({
                "get": op("list", k, vec![param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels.")], &list),
                "post": op("create", k, create_params.clone(), &k.schema),
            }),
        );
        let mut patch_params = write_params(true);
        patch_params.push(json!({"name": "body", "in": "body", "required": true,
            "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}));
        let mut item = json!({
            "get": op("read", k, vec![], &k.schema),
            "put": op("replace", k, create_params, &k.schema),
            "patch": op("patch", k, patch_params, &k.schema),
            "delete": op("delete", k, vec![], &k.schema),
        });
        item["patch"]["consumes"] = if k.strategic_merge {
            json!([
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml"
            ])
        } else {
            json!([
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml"
            ])
        };
        paths.insert(format!("{collection}/{{name}}"), item);
    }
    let mut definitions: Map<String, Value> = reg
        .definitions
        .iter()
        .map(|(name, s)| (name.clone(), to_v2_schema(s)))
        .collect();
    for k in &reg.kinds {
        definitions.insert(
            format!("{}List", k.schema),
            json!({"description": format!("{}List is a list of {} objects.", k.kind, k.kind),
                   "type": "object", "required": ["items"],
                   "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                  "items": {"type": "array", "items": {"$ref": format!("#/definitions/{}", k.schema)}},
                                  "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}},
                   "x-kubernetes-group-version-kind": [{"group": k.group, "kind": format!("{}List", k.kind), "version": k.version}]}),
        );
    }
    definitions.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta".into(),
        json!({"description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.", "type": "object",
               "properties": {"continue": {"type": "string"}, "remainingItemCount": {"type": "integer", "format": "int64"}, "resourceVersion": {"type": "string"}, "selfLink": {"type": "string"}}}),
    );
    definitions.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// Protobuf wire encoding, just what the gnostic messages need.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from((field << 3) | wire));
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, v: &Value) {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            self.bytes(field, s.as_bytes());
        }
    }

    fn strings(&mut self, field: u32, v: &Value) {
        for s in v.as_array().into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn boolean(&mut self, field: u32, v: &Value) {
        if v.as_bool() == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn message(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// `NamedAny` entries for the `x-` keys of an object: the value as YAML, as gnostic keeps it.
fn vendor_extensions(m: &mut Msg, field: u32, obj: &Value) {
    for (k, v) in obj.as_object().into_iter().flatten() {
        if !k.starts_with("x-") {
            continue;
        }
        let mut any = Msg::default();
        any.bytes(2, serde_yaml::to_string(v).unwrap_or_default().as_bytes());
        let mut named = Msg::default();
        named.bytes(1, k.as_bytes());
        named.message(2, any);
        m.message(field, named);
    }
}

fn encode_schema(s: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(1, &s["$ref"]);
    m.string(2, &s["format"]);
    m.string(3, &s["title"]);
    m.string(4, &s["description"]);
    m.boolean(16, &s["uniqueItems"]);
    m.strings(19, &s["required"]);
    match &s["additionalProperties"] {
        Value::Object(_) => {
            let mut item = Msg::default();
            item.message(1, encode_schema(&s["additionalProperties"]));
            m.message(21, item);
        }
        Value::Bool(b) => {
            let mut item = Msg::default();
            item.boolean(2, &json!(b));
            m.message(21, item);
        }
        _ => {}
    }
    if let Some(t) = s["type"].as_str() {
        let mut ty = Msg::default();
        ty.bytes(1, t.as_bytes());
        m.message(22, ty);
    }
    if s["items"].is_object() {
        let mut items = Msg::default();
        items.message(1, encode_schema(&s["items"]));
        m.message(23, items);
    }
    for sub in s["allOf"].as_array().into_iter().flatten() {
        m.message(24, encode_schema(sub));
    }
    if let Some(props) = s["properties"].as_object() {
        let mut p = Msg::default();
        for (name, schema) in props {
            let mut named = Msg::default();
            named.bytes(1, name.as_bytes());
            named.message(2, encode_schema(schema));
            p.message(1, named);
        }
        m.message(25, p);
    }
    m.boolean(27, &s["readOnly"]);
    vendor_extensions(&mut m, 31, s);
    m
}

fn encode_parameter(p: &Value) -> Msg {
    let mut param = Msg::default();
    if p["in"] == "body" {
        let mut b = Msg::default();
        b.string(1, &p["description"]);
        b.string(2, &p["name"]);
        b.string(3, &p["in"]);
        b.boolean(4, &p["required"]);
        b.message(5, encode_schema(&p["schema"]));
        param.message(1, b);
    } else {
        let mut non_body = Msg::default();
        if p["in"] == "path" {
            // NonBodyParameter's oneof: header 1, formData 2, query 3, path 4; the path and
            // query sub-schemas number their fields differently.
            let mut path = Msg::default();
            path.boolean(1, &p["required"]);
            path.string(2, &p["in"]);
            path.string(3, &p["description"]);
            path.string(4, &p["name"]);
            path.string(5, &p["type"]);
            non_body.message(4, path);
        } else {
            let mut q = Msg::default();
            q.boolean(1, &p["required"]);
            q.string(2, &p["in"]);
            q.string(3, &p["description"]);
            q.string(4, &p["name"]);
            q.string(6, &p["type"]);
            q.boolean(20, &p["uniqueItems"]);
            non_body.message(3, q);
        }
        param.message(2, non_body);
    }
    let mut item = Msg::default();
    item.message(1, param);
    item
}

fn encode_operation(o: &Value) -> Msg {
    let mut m = Msg::default();
    m.strings(1, &o["tags"]);
    m.string(3, &o["description"]);
    m.string(5, &o["operationId"]);
    m.strings(6, &o["produces"]);
    m.strings(7, &o["consumes"]);
    for p in o["parameters"].as_array().into_iter().flatten() {
        m.message(8, encode_parameter(p));
    }
    if let Some(responses) = o["responses"].as_object() {
        let mut rs = Msg::default();
        for (code, r) in responses {
            let mut resp = Msg::default();
            resp.string(1, &r["description"]);
            if r["schema"].is_object() {
                let mut item = Msg::default();
                item.message(1, encode_schema(&r["schema"]));
                resp.message(2, item);
            }
            let mut value = Msg::default();
            value.message(1, resp);
            let mut named = Msg::default();
            named.bytes(1, code.as_bytes());
            named.message(2, value);
            rs.message(1, named);
        }
        m.message(9, rs);
    }
    m.strings(10, &o["schemes"]);
    vendor_extensions(&mut m, 13, o);
    m
}

fn encode_document(doc: &Value) -> Vec<u8> {
    let mut d = Msg::default();
    d.string(1, &doc["swagger"]);
    let mut info = Msg::default();
    info.string(1, &doc["info"]["title"]);
    info.string(2, &doc["info"]["version"]);
    d.message(2, info);
    let mut paths = Msg::default();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut pi = Msg::default();
        for (field, verb) in [
            (2, "get"),
            (3, "put"),
            (4, "post"),
            (5, "delete"),
            (8, "patch"),
        ] {
            if item[verb].is_object() {
                pi.message(field, encode_operation(&item[verb]));
            }
        }
        let mut named = Msg::default();
        named.bytes(1, path.as_bytes());
        named.message(2, pi);
        paths.message(2, named);
    }
    d.message(8, paths);
    let mut defs = Msg::default();
    for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.bytes(1, name.as_bytes());
        named.message(2, encode_schema(schema));
        defs.message(1, named);
    }
    d.message(9, defs);
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::builtin_snapshot;

    /// Reads one length-delimited field's payloads out of a protobuf message.
    fn fields(buf: &[u8], want: u32) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut i = 0;
        let varint = |i: &mut usize| {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let b = buf[*i];
                *i += 1;
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return v;
                }
                shift += 7;
            }
        };
        while i < buf.len() {
            let key = varint(&mut i);
            match key & 7 {
                0 => {
                    varint(&mut i);
                }
                2 => {
                    let len = varint(&mut i) as usize;
                    if (key >> 3) as u32 == want {
                        out.push(&buf[i..i + len]);
                    }
                    i += len;
                }
                w => panic!("unexpected wire type {w}"),
            }
        }
        out
    }

    #[test]
    fn json_document_has_patch_operations_with_field_validation() {
        let doc: Value = serde_json::from_slice(&v2_json(builtin_snapshot())).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let spec = &doc["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
        assert!(spec["description"].is_string());
        let port =
            &doc["definitions"]["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"];
        assert_eq!(
            port["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
        );
    }

    #[test]
    fn protobuf_document_decodes_to_the_same_paths() {
        let pb = v2_protobuf(builtin_snapshot());
        assert_eq!(fields(&pb, 1), vec![b"2.0".as_slice()]);
        let paths = fields(&pb, 8);
        assert_eq!(paths.len(), 1);
        let named: Vec<&[u8]> = fields(paths[0], 2);
        let doc: Value = serde_json::from_slice(&v2_json(builtin_snapshot())).unwrap();
        assert_eq!(named.len(), doc["paths"].as_object().unwrap().len());
        // Find the deployment item and its PATCH operation's GVK extension.
        let item = named
            .iter()
            .find(|n| {
                fields(n, 1)
                    == vec![b"/apis/apps/v1/namespaces/{namespace}/deployments/{name}".as_slice()]
            })
            .expect("deployment path");
        let path_item = fields(item, 2)[0];
        let patch = fields(path_item, 8)[0];
        let ext = fields(patch, 13)
            .into_iter()
            .find(|e| fields(e, 1) == vec![b"x-kubernetes-group-version-kind".as_slice()])
            .expect("gvk extension");
        let yaml = std::str::from_utf8(fields(fields(ext, 2)[0], 2)[0]).unwrap();
        let gvk: Value = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(
            gvk,
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        let has_field_validation = fields(patch, 8).into_iter().any(|p| {
            let non_body = fields(fields(p, 1)[0], 2);
            non_body.first().is_some_and(|nb| {
                fields(nb, 3)
                    .first()
                    .is_some_and(|q| fields(q, 4) == vec![b"fieldValidation".as_slice()])
            })
        });
        assert!(has_field_validation);
    }
}
