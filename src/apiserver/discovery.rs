//! Discovery: what kubectl reads before anything else. The aggregated form (apidiscovery.k8s.io
//! v2, one request for all groups) when the Accept header asks for it, the legacy documents
//! (APIVersions, APIGroupList, APIGroup, APIResourceList) otherwise.

use super::encoding;
use super::registry::{ResourceInfo, Snapshot, VERBS};
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The aggregated documents of one registry state, serialized once, with their ETags: a
/// registry change makes a new snapshot, hence new bodies and ETags.
#[derive(Default)]
pub struct Aggregated {
    /// Indexed by `slot`: (core or named groups) x (v2 or v2beta1).
    bodies: [OnceLock<(Bytes, String)>; 4],
}

/// An ETag for a body: a hash of its bytes, quoted.
pub fn etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(body)))
}

/// The aggregated document and its ETag, from the snapshot's cache.
pub fn aggregated_cached(snap: &Snapshot, core: bool, version: &str) -> (Bytes, String) {
    let slot = usize::from(core) * 2 + usize::from(version == "v2");
    snap.discovery.bodies[slot]
        .get_or_init(|| {
            let body = encoding::json_bytes(&aggregated(snap, core, version));
            let tag = etag(&body);
            (body, tag)
        })
        .clone()
}

/// The Content-Type of an aggregated discovery answer (kubectl compares it exactly).
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated version the Accept header prefers, if any ("v2" or "v2beta1").
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
        if params
            .first()
            .is_some_and(|m| *m == "application/json" || *m == "*/*")
            && params.len() == 1
        {
            // Plain JSON listed before any aggregated range: the client prefers the legacy form.
            return None;
        }
    }
    None
}

fn scope(r: &ResourceInfo) -> &'static str {
    if r.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut subresources = Vec::new();
    if r.status {
        subresources.push(json!({"subresource": "status",
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "verbs": ["get", "patch", "update"]}));
    }
    if r.plural == "pods" && r.group.is_empty() {
        subresources.push(json!({"subresource": "binding",
            "responseKind": {"group": "", "version": "v1", "kind": "Binding"},
            "verbs": ["create"]}));
        subresources.push(json!({"subresource": "eviction",
            "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
            "verbs": ["create"]}));
        subresources.push(json!({"subresource": "ephemeralcontainers",
            "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
            "verbs": ["get", "patch", "update"]}));
    }
    if r.plural == "certificatesigningrequests" {
        subresources.push(json!({"subresource": "approval",
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "verbs": ["get", "patch", "update"]}));
    }
    if r.plural == "serviceaccounts" && r.group.is_empty() {
        subresources.push(json!({"subresource": "token",
            "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
            "verbs": ["create"]}));
    }
    if r.scale {
        subresources.push(json!({"subresource": "scale",
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]}));
    }
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope(r),
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        v["subresources"] = json!(subresources);
    }
    v
}

/// GET /api or /apis with the aggregated Accept: the core group, or every named group.
pub fn aggregated(snap: &Snapshot, core: bool, version: &str) -> Value {
    let items: Vec<Value> = snap
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = snap
                        .in_group_version(&g, v)
                        .iter()
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {}, "items": items})
}

/// GET /api (legacy).
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

/// GET /apis (legacy).
pub fn api_group_list(snap: &Snapshot) -> Value {
    let groups: Vec<Value> = snap
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_doc(&g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// GET /apis/<group>; None for an unknown group.
pub fn api_group(snap: &Snapshot, group: &str) -> Option<Value> {
    let (_, versions) = snap
        .groups()
        .into_iter()
        .find(|(g, _)| *g == group && !g.is_empty())?;
    let mut doc = group_doc(group, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// GET /api/v1 or /apis/<group>/<version>; None for an unknown group-version.
pub fn api_resource_list(snap: &Snapshot, group: &str, version: &str) -> Option<Value> {
    let rs = snap.in_group_version(group, version);
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in rs {
        let mut v = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS});
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        resources.push(v);
        if r.status {
            resources.push(
                json!({"name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if r.plural == "pods" && r.group.is_empty() {
            resources.push(
                json!({"name": "pods/binding", "singularName": "", "namespaced": true,
                "kind": "Binding", "verbs": ["create"]}),
            );
            resources.push(
                json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}),
            );
            resources.push(
                json!({"name": "pods/ephemeralcontainers", "singularName": "", "namespaced": true,
                "kind": "Pod", "verbs": ["get", "patch", "update"]}),
            );
        }
        if r.plural == "certificatesigningrequests" {
            resources.push(json!({"name": "certificatesigningrequests/approval",
                "singularName": "", "namespaced": false, "kind": r.kind,
                "verbs": ["get", "patch", "update"]}));
        }
        if r.plural == "serviceaccounts" && r.group.is_empty() {
            resources.push(json!({"name": "serviceaccounts/token", "singularName": "",
                "namespaced": true, "group": "authentication.k8s.io", "version": "v1",
                "kind": "TokenRequest", "verbs": ["create"]}));
        }
        if r.scale {
            resources.push(json!({"name": format!("{}/scale", r.plural), "singularName": "",
                "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// GET /version: the Kubernetes version whose API (k8s-openapi v1_33) is served.
pub fn version() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": concat!("v1.33.0+nanokube-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wants_aggregated(kubectl), Some("v2"));
        assert_eq!(wants_aggregated("application/json"), None);
        assert_eq!(wants_aggregated(""), None);
    }

    #[test]
    fn aggregated_apps_has_scale_and_short_names() {
        let snap = crate::apiserver::registry::builtin_snapshot();
        let doc = aggregated(snap, false, "v2");
        let apps = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deploy["shortNames"][0], "deploy");
        assert_eq!(deploy["subresources"][1]["subresource"], "scale");
        let core = aggregated(snap, true, "v2");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
    }
}
