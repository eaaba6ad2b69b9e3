//! Cascading deletes with real pods on a one-node cluster (tests/node_support): the pods stop
//! gracefully through their kubelet, so a foreground delete has to wait for them, and the
//! order the collector keeps shows. The API-only cases are in tests/garbage_collection.rs.

mod node_support;

use node_support::{Cluster, IMAGE};
use serde_json::Value;
use std::time::Duration;

/// Pods that ignore SIGTERM, so each takes its whole (short) grace period to stop.
fn deploy(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
      - name: main
        image: {IMAGE}:latest
        command: [sh, -c, \"trap '' TERM; while true; do sleep 1; done\"]
"
    )
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// One look at the chain, owner first: a dependent seen after its owner was seen missing
/// existed when the owner was already gone.
fn chain(c: &Cluster, app: &str) -> (Option<Value>, Vec<Value>, Vec<Value>) {
    let d = c.json(&["get", "deployment", app]);
    let sets = items(
        &c.json(&["get", "replicasets", "-l", &format!("app={app}")])
            .unwrap(),
    );
    let pods = items(
        &c.json(&["get", "pods", "-l", &format!("app={app}")])
            .unwrap(),
    );
    (d, sets, pods)
}

fn ready(c: &Cluster, app: &str) {
    c.wait_for(&format!("{app} ready"), Duration::from_secs(120), |c| {
        let d = c.json(&["get", "deployment", app]).unwrap();
        d["status"]["readyReplicas"] == 2
    });
}

#[test]
fn foreground_waits_for_terminating_pods_and_background_does_not() {
    let c = Cluster::start();
    c.apply(&deploy("fg"));
    ready(&c, "fg");
    c.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let mut saw_terminating_pods_under_a_marked_owner = false;
    c.wait_for("the foreground chain gone", Duration::from_secs(90), |c| {
        let (d, sets, pods) = chain(c, "fg");
        if let Some(d) = &d {
            let terminating = pods
                .iter()
                .any(|p| p["metadata"]["deletionTimestamp"].is_string());
            if terminating && d["metadata"]["deletionTimestamp"].is_string() {
                saw_terminating_pods_under_a_marked_owner = true;
            }
        } else {
            assert!(
                sets.is_empty() && pods.is_empty(),
                "the Deployment went before its dependents: {sets:?} {pods:?}"
            );
        }
        if sets.is_empty() {
            assert!(
                pods.is_empty(),
                "the ReplicaSet went before its pods: {pods:?}"
            );
        }
        d.is_none()
    });
    assert!(saw_terminating_pods_under_a_marked_owner);

    c.apply(&deploy("bg"));
    ready(&c, "bg");
    c.ok(&["delete", "deployment", "bg", "--wait=false"]);
    let mut saw_pods_after_the_owner = false;
    c.wait_for("the background chain gone", Duration::from_secs(90), |c| {
        let (d, sets, pods) = chain(c, "bg");
        if d.is_none() && !pods.is_empty() {
            saw_pods_after_the_owner = true;
        }
        d.is_none() && sets.is_empty() && pods.is_empty()
    });
    assert!(saw_pods_after_the_owner);
}
