//! The garbage collector and the namespace controller (src/controllers/garbagecollector/,
//! src/controllers/namespace.rs) driven by the real kubectl against a real server with its
//! controller manager: cascading deletes with each propagation policy, a namespace emptied
//! with its status conditions, and collection resumed after a restart. No node runs here, so
//! pods are never bound and go at once when deleted.

mod api_support;

use api_support::{eventually, raw::curl_args, Server};
use serde_json::Value;

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: main, image: nanokube/busybox:latest}
";

fn json(s: &Server, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.ok(&a)).unwrap()
}

fn names(s: &Server, kind: &str) -> Vec<String> {
    s.ok(&["get", kind, "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn exists(s: &Server, args: &[&str]) -> bool {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--ignore-not-found", "-o", "name"]);
    !s.ok(&a).trim().is_empty()
}

fn finalizers(v: &Value) -> Vec<&str> {
    v["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Creates the Deployment and waits for its ReplicaSet and two pods.
fn deployment_with_pods(s: &Server) -> (String, Vec<String>) {
    s.apply_ok(DEPLOY);
    eventually(60, || {
        let rs = names(s, "replicasets");
        let pods = names(s, "pods");
        (rs.len() == 1 && pods.len() == 2).then(|| (rs[0].clone(), pods))
    })
}

#[test]
fn background_deletes_the_owner_then_its_dependents() {
    let s = Server::start();
    let (rs, _) = deployment_with_pods(&s);
    // kubectl's default: --cascade=background.
    s.ok(&["delete", "deployment", "web"]);
    assert!(!exists(&s, &["deployment", "web"]));
    eventually(30, || {
        (!exists(&s, &[&rs]) && names(&s, "pods").is_empty()).then_some(())
    });
    // A dependent with a second, live owner only loses the reference to the dead one.
    s.configmap("a", "default", &[]);
    s.configmap("b", "default", &[]);
    let uid = |n: &str| s.ok(&["get", "configmap", n, "-o", "jsonpath={.metadata.uid}"]);
    let (ua, ub) = (uid("a"), uid("b"));
    s.apply_ok(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: a, uid: {ua}}}\n  - {{apiVersion: v1, kind: ConfigMap, name: b, uid: {ub}}}\n"
    ));
    s.ok(&["delete", "configmap", "a"]);
    let refs = eventually(30, || {
        let v = json(&s, &["secret", "shared"]);
        let refs: Vec<String> = v["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        (refs.len() == 1).then_some(refs)
    });
    assert_eq!(refs, ["b"]);
    s.ok(&["delete", "configmap", "b"]);
    eventually(30, || (!exists(&s, &["secret", "shared"])).then_some(()));
}

#[test]
fn foreground_keeps_the_owner_until_its_blocking_dependents_are_gone() {
    let s = Server::start();
    let (rs, pods) = deployment_with_pods(&s);
    // One pod is held by a finalizer of ours, so the chain stops at it.
    let held = pods[0].clone();
    s.ok(&[
        "patch",
        &held,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    s.ok(&[
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    // Owner, set and held pod all still there, each marked; the free pod gone.
    eventually(30, || {
        let pod = json(&s, &[&held]);
        (pod["metadata"]["deletionTimestamp"].is_string() && names(&s, "pods").len() == 1)
            .then_some(())
    });
    let d = json(&s, &["deployment", "web"]);
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(finalizers(&d), ["foregroundDeletion"]);
    // The set has dependents of its own, so the collector deleted it in foreground too.
    let set = json(&s, &[&rs]);
    assert!(set["metadata"]["deletionTimestamp"].is_string(), "{set}");
    assert_eq!(finalizers(&set), ["foregroundDeletion"]);
    assert_eq!(
        set["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );
    // Nothing moves while the pod is held.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(exists(&s, &["deployment", "web"]) && exists(&s, &[&rs]));
    // Let the pod go: then the set, then the Deployment.
    s.ok(&[
        "patch",
        &held,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually(30, || {
        (!exists(&s, &["deployment", "web"]) && !exists(&s, &[&rs]) && !exists(&s, &[&held]))
            .then_some(())
    });
    // kubectl's own wait (the default --wait=true) returns once the owner is gone.
    deployment_with_pods(&s);
    s.ok(&[
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(names(&s, "replicasets").is_empty());
    assert!(names(&s, "pods").is_empty());
}

#[test]
fn orphan_leaves_the_dependents_without_the_reference() {
    let s = Server::start();
    let (rs, pods) = deployment_with_pods(&s);
    s.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    assert!(!exists(&s, &["deployment", "web"]));
    let set = json(&s, &[&rs]);
    assert!(set["metadata"]["deletionTimestamp"].is_null(), "{set}");
    assert!(
        set["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{set}"
    );
    // The set's own pods keep their owner (the set) and stay.
    for p in &pods {
        let pod = json(&s, &[p]);
        assert!(pod["metadata"]["deletionTimestamp"].is_null(), "{pod}");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(names(&s, "pods").len(), 2);
    // The set can still be deleted with its pods.
    s.ok(&["delete", &rs]);
    eventually(30, || names(&s, "pods").is_empty().then_some(()));
}

fn condition<'a>(ns: &'a Value, ty: &str) -> &'a Value {
    ns["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

#[test]
fn a_namespace_delete_empties_it_reports_what_remains_then_goes() {
    let s = Server::start();
    s.namespace("team");
    s.configmap("free", "team", &[]);
    s.apply_ok("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: team\n  finalizers: [example.com/hold]\n");
    s.apply_ok(&DEPLOY.replace("  name: web\n", "  name: web\n  namespace: team\n"));
    eventually(60, || {
        (s.ok(&["get", "pods", "-n", "team", "-o", "name"])
            .lines()
            .count()
            == 2)
            .then_some(())
    });
    let ns = json(&s, &["namespace", "team"]);
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    s.ok(&["delete", "namespace", "team", "--wait=false"]);
    let ns = eventually(30, || {
        let ns = json(&s, &["namespace", "team"]);
        (condition(&ns, "NamespaceFinalizersRemaining")["status"] == "True").then_some(ns)
    });
    assert_eq!(ns["status"]["phase"], "Terminating");
    let c = condition(&ns, "NamespaceContentRemaining");
    assert_eq!(c["status"], "True", "{ns}");
    assert_eq!(c["reason"], "SomeResourcesRemain");
    assert_eq!(
        c["message"],
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    let c = condition(&ns, "NamespaceFinalizersRemaining");
    assert_eq!(c["reason"], "SomeFinalizersRemain");
    assert_eq!(
        c["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    for (ty, reason, message) in [
        (
            "NamespaceDeletionDiscoveryFailure",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        (
            "NamespaceDeletionContentFailure",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
    ] {
        let c = condition(&ns, ty);
        assert_eq!(
            (
                c["status"].as_str(),
                c["reason"].as_str(),
                c["message"].as_str()
            ),
            (Some("False"), Some(reason), Some(message)),
            "{ns}"
        );
    }
    // Everything else went, the Deployment's pods included; kubectl describe shows the story.
    let left = s.ok(&[
        "get",
        "all,configmaps,serviceaccounts",
        "-n",
        "team",
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "configmap/held");
    assert!(finalizers(&ns).is_empty());
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    let described = s.ok(&["describe", "namespace", "team"]);
    assert!(described.contains("SomeFinalizersRemain"), "{described}");
    // Release the last object: the controller takes its finalizer off, the namespace goes.
    s.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually(30, || (!exists(&s, &["namespace", "team"])).then_some(()));
}

#[test]
fn finalize_removes_a_namespace_once_no_finalizer_is_left() {
    // Without the controller manager nothing empties a namespace: it stays Terminating until
    // someone finalizes it through namespaces/finalize, which then removes it.
    let s = Server::start_with(&["--disable-controller-manager"]);
    s.namespace("manual");
    s.ok(&["delete", "namespace", "manual", "--wait=false"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut ns = json(&s, &["namespace", "manual"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    ns["spec"]["finalizers"] = serde_json::json!([]);
    let file = s.file("ns.json", &ns.to_string());
    s.ok(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/manual/finalize",
        "-f",
        file.to_str().unwrap(),
    ]);
    assert!(!exists(&s, &["namespace", "manual"]));
}

#[test]
fn a_restart_resumes_collection() {
    // An owner deleted while no collector runs leaves its dependent; the collector started
    // later finds the dependent's owner gone after its first listing and collects it.
    let mut s = Server::start_with(&["--disable-controller-manager"]);
    s.configmap("gone", "default", &[]);
    let uid = s.ok(&["get", "configmap", "gone", "-o", "jsonpath={.metadata.uid}"]);
    s.apply_ok(&format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: left\n  namespace: default\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: gone, uid: {uid}}}\n"));
    s.ok(&["delete", "configmap", "gone"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(exists(&s, &["secret", "left"]));
    s.stop();
    s.start_again_with(&[]);
    eventually(60, || (!exists(&s, &["secret", "left"])).then_some(()));

    // A foreground delete interrupted by a kill -9 finishes after the restart.
    s.configmap("boss", "default", &[]);
    let uid = s.ok(&["get", "configmap", "boss", "-o", "jsonpath={.metadata.uid}"]);
    s.apply_ok(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: worker\n  namespace: default\n  finalizers: [example.com/hold]\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: boss, uid: {uid}, blockOwnerDeletion: true}}\n"));
    s.ok(&[
        "delete",
        "configmap",
        "boss",
        "--cascade=foreground",
        "--wait=false",
    ]);
    eventually(30, || {
        json(&s, &["configmap", "worker"])["metadata"]["deletionTimestamp"]
            .is_string()
            .then_some(())
    });
    assert_eq!(
        finalizers(&json(&s, &["configmap", "boss"])),
        ["foregroundDeletion"]
    );
    s.kill9();
    s.start_again();
    eventually(60, || {
        s.kubectl(&["get", "configmap", "boss"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(
        finalizers(&json(&s, &["configmap", "boss"])),
        ["foregroundDeletion"]
    );
    s.ok(&[
        "patch",
        "configmap",
        "worker",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually(60, || {
        (!exists(&s, &["configmap", "worker"]) && !exists(&s, &["configmap", "boss"])).then_some(())
    });
}

#[test]
fn metadata_only_lists_gets_and_watches_for_the_collectors_watchers() {
    let s = Server::start_with(&["--disable-controller-manager"]);
    s.configmap("big", "default", &[("payload", "not in the metadata")]);
    let get = |path: &str, accept: &str| {
        let extra = vec!["-H".to_string(), format!("Accept: {accept}")];
        let (code, body, _) = curl_args(&s, "admin", "GET", path, &extra);
        assert_eq!(code, 200, "{body}");
        body
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    // As kube's metadata watchers ask: the metadata form first, JSON as the fallback.
    let list: Value = serde_json::from_str(&get(
        cms,
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    ))
    .unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert!(list["metadata"]["resourceVersion"].is_string());
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "big")
        .expect("big listed");
    assert_eq!(item["kind"], "PartialObjectMetadata");
    assert!(
        item["metadata"]["uid"].is_string() && item.get("data").is_none(),
        "{item}"
    );
    let one: Value = serde_json::from_str(&get(
        &format!("{cms}/big"),
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
    ))
    .unwrap();
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert!(
        one.get("data").is_none() && one["metadata"]["name"] == "big",
        "{one}"
    );
    // A watch from the listed revision (timeoutSeconds ends it) sends metadata too.
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    s.configmap("later", "default", &[("payload", "x")]);
    let events = get(
        &format!("{cms}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
    );
    let added: Value = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["object"]["metadata"]["name"] == "later")
        .expect("the new ConfigMap in the watch");
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["kind"], "PartialObjectMetadata");
    assert!(added["object"].get("data").is_none(), "{added}");
    // Plain JSON still gets whole objects.
    let full: Value =
        serde_json::from_str(&get(&format!("{cms}/big"), "application/json")).unwrap();
    assert_eq!(full["data"]["payload"], "not in the metadata");
}
