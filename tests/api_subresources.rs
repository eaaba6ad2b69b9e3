//! Write paths kubectl rarely exercises, as raw HTTPS requests: JSON patches (RFC 6902),
//! graceful pod deletes, the status subresource's split between spec and status, and the scale
//! subresource of the workloads that have one.

mod api_support;

use api_support::{raw::curl, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

static BODIES: AtomicUsize = AtomicUsize::new(0);

/// One request with the admin certificate; the body (if any) goes through a file of the test's own.
fn req(s: &Server, method: &str, path: &str, ctype: &str, body: Option<Value>) -> (u16, Value) {
    let file = body.map(|b| {
        let n = BODIES.fetch_add(1, Ordering::Relaxed);
        s.file(&format!("body-{n}.json"), &b.to_string())
    });
    let (code, text, _) = curl(s, "admin", method, path, ctype, file.as_deref());
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (code, v)
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    req(s, "GET", path, "application/json", None)
}

fn create(s: &Server, collection: &str, obj: Value) -> Value {
    let (code, v) = req(s, "POST", collection, "application/json", Some(obj));
    assert_eq!(code, 201, "create in {collection}: {v}");
    v
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE: &str = "application/merge-patch+json";

#[test]
fn json_patch_add_replace_remove_and_failed_tests() {
    let s = Server::start();
    create(
        &s,
        CMS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "jp"}, "data": {"a": "1", "b": "2"}}),
    );
    let path = format!("{CMS}/jp");

    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(json!([
            {"op": "add", "path": "/metadata/labels", "value": {"tier": "x"}},
            {"op": "replace", "path": "/data/a", "value": "one"},
            {"op": "remove", "path": "/data/b"},
            {"op": "add", "path": "/data/c", "value": "3"},
            {"op": "test", "path": "/data/c", "value": "3"}
        ])),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"], json!({"a": "one", "c": "3"}));
    assert_eq!(v["metadata"]["labels"]["tier"], "x");
    let rv = v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, stored) = get(&s, &path);
    assert_eq!(stored["data"], json!({"a": "one", "c": "3"}));

    // A failing test op, or a remove of a missing member, rejects the whole patch: 422 Invalid
    // (kube-apiserver answers a failed JSON patch with 422) and nothing changes.
    for bad in [
        json!([{"op": "replace", "path": "/data/a", "value": "never"},
               {"op": "test", "path": "/data/c", "value": "4"}]),
        json!([{"op": "remove", "path": "/data/missing"}]),
        json!([{"op": "replace", "path": "/data/nothere", "value": "v"}]),
    ] {
        let (code, v) = req(&s, "PATCH", &path, JSON_PATCH, Some(bad.clone()));
        assert_eq!(code, 422, "{bad} -> {v}");
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["reason"], "Invalid", "{v}");
        let (_, now) = get(&s, &path);
        assert_eq!(now["metadata"]["resourceVersion"], rv.as_str(), "{bad}");
        assert_eq!(now["data"], json!({"a": "one", "c": "3"}));
    }

    // A test op on the resourceVersion is the JSON-patch way to pin a version; replacing it with a
    // stale one is an optimistic-concurrency conflict.
    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(
            json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"},
                     {"op": "replace", "path": "/data/a", "value": "stale"}]),
        ),
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["reason"], "Conflict");
    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                     {"op": "replace", "path": "/data/a", "value": "pinned"}]),
        ),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["a"], "pinned");

    // Not a JSON patch document at all: 400.
    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(json!({"data": {"a": "x"}})),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["reason"], "BadRequest");
    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        JSON_PATCH,
        Some(json!([{"op": "frobnicate", "path": "/data/a"}])),
    );
    assert_eq!(code, 400, "{v}");
    // Missing object: 404.
    let (code, v) = req(
        &s,
        "PATCH",
        &format!("{CMS}/absent"),
        JSON_PATCH,
        Some(json!([{"op": "add", "path": "/data/x", "value": "1"}])),
    );
    assert_eq!(code, 404, "{v}");
}

#[test]
fn delete_with_grace_period() {
    let s = Server::start();
    create(
        &s,
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "grace-node"}}),
    );
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        create(&s, pods, p)
    };

    // A pod on a node: the delete only marks it; its kubelet (there is none here) would finish.
    pod("bound", Some("grace-node"));
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/bound?gracePeriodSeconds=45"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 45, "{v}");
    let ts = v["metadata"]["deletionTimestamp"]
        .as_str()
        .expect("deletionTimestamp");
    let when = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    let ahead = when.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!(
        (30..=46).contains(&ahead),
        "deletionTimestamp {ts} is {ahead}s ahead"
    );
    let (code, still) = get(&s, &format!("{pods}/bound"));
    assert_eq!(code, 200);
    assert_eq!(still["metadata"]["deletionGracePeriodSeconds"], 45);
    assert_eq!(still["metadata"]["deletionTimestamp"], ts);

    // A longer grace period cannot extend it; a shorter one shortens it.
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/bound"),
        "application/json",
        Some(json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 300})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 45, "{v}");
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/bound"),
        "application/json",
        Some(json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 10})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 10, "{v}");

    // Updates of a pod being deleted cannot clear the mark.
    let (code, v) = req(
        &s,
        "PATCH",
        &format!("{pods}/bound"),
        MERGE,
        Some(
            json!({"metadata": {"labels": {"x": "y"}, "deletionTimestamp": null, "deletionGracePeriodSeconds": null}}),
        ),
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 10);

    // gracePeriodSeconds=0 is the kubelet's final delete: gone at once.
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/bound?gracePeriodSeconds=0"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(get(&s, &format!("{pods}/bound")).0, 404);

    // No grace period given: the pod's terminationGracePeriodSeconds (defaulted to 30).
    let p = pod("default-grace", Some("grace-node"));
    assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/default-grace"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 30, "{v}");

    // An unscheduled pod has nothing to stop: deleted at once whatever the grace period.
    pod("unbound", None);
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/unbound?gracePeriodSeconds=60"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(get(&s, &format!("{pods}/unbound")).0, 404);

    // Kinds without graceful deletion ignore the grace period.
    create(
        &s,
        CMS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-grace"}}),
    );
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{CMS}/cm-grace?gracePeriodSeconds=60"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(get(&s, &format!("{CMS}/cm-grace")).0, 404);

    // A malformed grace period is a 400 and deletes nothing.
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{pods}/default-grace?gracePeriodSeconds=soon"),
        "application/json",
        None,
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(get(&s, &format!("{pods}/default-grace")).0, 200);
}

#[test]
fn status_subresource_splits_spec_and_status() {
    // The API server's own semantics: no ReplicaSet controller writing these objects' status.
    let s = Server::start_with(&["--disable-controller-manager"]);
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let path = format!("{deps}/split");
    let mut d = deployment("split");
    d["status"] = json!({"replicas": 9, "observedGeneration": 9});
    let created = create(&s, deps, d);
    // A create cannot set status.
    assert!(created.get("status").is_none(), "{created}");
    assert_eq!(created["metadata"]["generation"], 1);

    // PUT on the main resource: spec changes bump generation; status changes are ignored.
    let mut put = created.clone();
    put["spec"]["replicas"] = json!(3);
    put["status"] = json!({"replicas": 7, "observedGeneration": 7});
    let (code, v) = req(&s, "PUT", &path, "application/json", Some(put));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 3);
    assert_eq!(v["metadata"]["generation"], 2);
    assert!(v.get("status").is_none(), "{v}");

    // PUT on /status: status as written (observedGeneration included); spec and labels kept.
    let mut put = v.clone();
    put["spec"]["replicas"] = json!(5);
    put["metadata"]["labels"] = json!({"app": "split", "sneaky": "yes"});
    put["metadata"]["generation"] = json!(40);
    put["status"] = json!({"replicas": 2, "readyReplicas": 1, "observedGeneration": 2});
    let (code, v) = req(
        &s,
        "PUT",
        &format!("{path}/status"),
        "application/json",
        Some(put),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 3, "{v}");
    assert_eq!(v["metadata"]["labels"], json!({"app": "split"}));
    assert_eq!(v["metadata"]["generation"], 2);
    assert_eq!(v["status"]["observedGeneration"], 2);
    assert_eq!(v["status"]["readyReplicas"], 1);

    // A merge patch of the main resource with a status part: only the spec part lands.
    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        MERGE,
        Some(json!({"spec": {"minReadySeconds": 4}, "status": {"replicas": 100}})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["minReadySeconds"], 4);
    assert_eq!(v["metadata"]["generation"], 3);
    assert_eq!(v["status"]["replicas"], 2, "{v}");
    assert_eq!(v["status"]["observedGeneration"], 2);

    // Metadata-only changes do not bump generation.
    let (code, v) = req(
        &s,
        "PATCH",
        &path,
        MERGE,
        Some(json!({"metadata": {"labels": {"more": "x"}, "annotations": {"a": "b"}}})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["generation"], 3);
    assert_eq!(v["metadata"]["labels"]["more"], "x");

    // A merge patch of /status: only the status part lands; an observedGeneration ahead of
    // generation is kept as written (the controller owns it).
    let (code, v) = req(
        &s,
        "PATCH",
        &format!("{path}/status"),
        MERGE,
        Some(
            json!({"spec": {"replicas": 50}, "metadata": {"labels": {"more": null}},
            "status": {"observedGeneration": 11, "availableReplicas": 1}}),
        ),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["spec"]["replicas"], 3);
    assert_eq!(v["metadata"]["labels"]["more"], "x");
    assert_eq!(v["metadata"]["generation"], 3);
    assert_eq!(v["status"]["observedGeneration"], 11);
    assert_eq!(v["status"]["availableReplicas"], 1);
    assert_eq!(v["status"]["replicas"], 2);

    // The status write is visible to a plain GET.
    let (_, got) = get(&s, &path);
    assert_eq!(got["status"]["observedGeneration"], 11);
    assert_eq!(got["spec"]["replicas"], 3);

    // A stale resourceVersion on /status is a conflict too.
    let mut stale = got.clone();
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    stale["status"]["replicas"] = json!(0);
    let (code, v) = req(
        &s,
        "PUT",
        &format!("{path}/status"),
        "application/json",
        Some(stale),
    );
    assert_eq!(code, 409, "{v}");

    // pods/status is looser: kubelets may change labels and annotations through it, but not
    // the spec or the ownerReferences.
    let pods = "/api/v1/namespaces/default/pods";
    // Without the serviceaccount controller, the account pods are admitted with is made here.
    create(
        &s,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    );
    let pod = create(
        &s,
        pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "st", "labels": {"a": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": "6b6f7a1e-0000-4000-8000-000000000001"}]},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}),
    );
    assert_eq!(pod["status"]["phase"], "Pending");
    let (code, v) = req(
        &s,
        "PATCH",
        &format!("{pods}/st/status"),
        MERGE,
        Some(
            json!({"metadata": {"labels": {"a": "2"}, "annotations": {"k": "v"}, "ownerReferences": null},
            "spec": {"activeDeadlineSeconds": 5},
            "status": {"phase": "Running", "podIP": "10.42.0.9"}}),
        ),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"]["phase"], "Running");
    assert_eq!(v["status"]["podIP"], "10.42.0.9");
    assert_eq!(v["metadata"]["labels"]["a"], "2");
    assert_eq!(v["metadata"]["annotations"]["k"], "v");
    assert_eq!(v["metadata"]["ownerReferences"][0]["name"], "rs", "{v}");
    assert!(v["spec"].get("activeDeadlineSeconds").is_none(), "{v}");

    // A kind without a status subresource has no /status path.
    create(
        &s,
        CMS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nostatus"}}),
    );
    let (code, _) = get(&s, &format!("{CMS}/nostatus/status"));
    assert_eq!(code, 404);
}

#[test]
fn scale_subresource_of_workloads() {
    // The API server's own semantics: no ReplicaSet controller writing these objects' status.
    let s = Server::start_with(&["--disable-controller-manager"]);
    let mut rs = deployment("sc-rs");
    rs["kind"] = json!("ReplicaSet");
    let mut sts = deployment("sc-sts");
    sts["kind"] = json!("StatefulSet");
    sts["spec"]["serviceName"] = json!("sc-sts");
    for (plural, obj) in [
        ("deployments", deployment("sc-dep")),
        ("replicasets", rs),
        ("statefulsets", sts),
    ] {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let coll = format!("/apis/apps/v1/namespaces/default/{plural}");
        let created = create(&s, &coll, obj);
        let scale = format!("{coll}/{name}/scale");

        let (code, v) = get(&s, &scale);
        assert_eq!(code, 200, "{plural}: {v}");
        assert_eq!(v["kind"], "Scale");
        assert_eq!(v["apiVersion"], "autoscaling/v1");
        assert_eq!(v["metadata"]["name"], name.as_str());
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(
            v["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["status"]["selector"], format!("app={name}"));

        // PUT a Scale: replicas land in the workload's spec (and bump its generation).
        let mut put = v.clone();
        put["spec"]["replicas"] = json!(4);
        let (code, v) = req(&s, "PUT", &scale, "application/json", Some(put.clone()));
        assert_eq!(code, 200, "{plural}: {v}");
        assert_eq!(v["kind"], "Scale");
        assert_eq!(v["spec"]["replicas"], 4);
        let (_, w) = get(&s, &format!("{coll}/{name}"));
        assert_eq!(w["spec"]["replicas"], 4, "{plural}");
        assert_eq!(w["metadata"]["generation"], 2, "{plural}");
        assert_eq!(
            v["metadata"]["resourceVersion"],
            w["metadata"]["resourceVersion"]
        );

        // The same Scale again carries a stale resourceVersion: conflict, nothing changes.
        put["spec"]["replicas"] = json!(9);
        let (code, v) = req(&s, "PUT", &scale, "application/json", Some(put));
        assert_eq!(code, 409, "{plural}: {v}");
        assert_eq!(v["reason"], "Conflict");

        // Merge and JSON patches, as kubectl scale and others send them.
        let (code, v) = req(
            &s,
            "PATCH",
            &scale,
            MERGE,
            Some(json!({"spec": {"replicas": 2}})),
        );
        assert_eq!(code, 200, "{plural}: {v}");
        assert_eq!(v["spec"]["replicas"], 2);
        let (code, v) = req(
            &s,
            "PATCH",
            &scale,
            JSON_PATCH,
            Some(json!([{"op": "replace", "path": "/spec/replicas", "value": 0}])),
        );
        assert_eq!(code, 200, "{plural}: {v}");
        assert_eq!(v["spec"]["replicas"], 0);
        let (_, w) = get(&s, &format!("{coll}/{name}"));
        assert_eq!(w["spec"]["replicas"], 0, "{plural}");

        // Replicas must be a non-negative integer.
        let (code, v) = req(
            &s,
            "PATCH",
            &scale,
            MERGE,
            Some(json!({"spec": {"replicas": -1}})),
        );
        assert_eq!(code, 422, "{plural}: {v}");
        let (code, v) = req(
            &s,
            "PATCH",
            &scale,
            MERGE,
            Some(json!({"spec": {"replicas": "many"}})),
        );
        assert_eq!(code, 400, "{plural}: {v}");
        let (_, w) = get(&s, &format!("{coll}/{name}"));
        assert_eq!(w["spec"]["replicas"], 0, "{plural}");
    }

    // kubectl scale goes through the same subresource.
    s.ok(&["scale", "deployment", "sc-dep", "--replicas=3"]);
    let (_, w) = get(&s, "/apis/apps/v1/namespaces/default/deployments/sc-dep");
    assert_eq!(w["spec"]["replicas"], 3);

    // A kind without a scale subresource, and a missing workload: 404.
    let (code, _) = get(&s, "/apis/apps/v1/namespaces/default/daemonsets/none/scale");
    assert_eq!(code, 404);
    let (code, _) = get(
        &s,
        "/apis/apps/v1/namespaces/default/deployments/none/scale",
    );
    assert_eq!(code, 404);
}
