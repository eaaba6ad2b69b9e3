//! Endpoints of real pods on a one-node cluster (in a network namespace of the test's own):
//! the EndpointSlice and Endpoints controllers follow readiness probes, resolve a named
//! targetPort per pod, mark a pod in its grace period terminating, drop deleted pods, and
//! kubectl prints both; the `kubernetes` service points at the node.

mod node_support;

use node_support::{Cluster, IMAGE, NODE_IP};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// An httpd pod whose port named `http` is `port`; ready while /www/ready exists. Its shell
/// ignores SIGTERM, so a delete keeps it terminating for its whole grace period.
fn web_pod(name: &str, port: u16, ready: bool) -> String {
    let touch = if ready { "touch /www/ready; " } else { "" };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 8
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap '' TERM; mkdir -p /www; {touch}httpd -f -p {port} -h /www & while true; do sleep 1; done"]
    ports: [{{name: http, containerPort: {port}}}]
    readinessProbe:
      httpGet: {{path: /ready, port: {port}}}
      periodSeconds: 1
      failureThreshold: 1
"#
    )
}

/// pod name -> (ready, serving, terminating, port) over the service's slices.
fn slice_view(c: &Cluster) -> BTreeMap<String, (bool, bool, bool, i64)> {
    let Some(list) = c.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for s in list["items"].as_array().into_iter().flatten() {
        let port = s["ports"][0]["port"].as_i64().unwrap_or(0);
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let cond = &e["conditions"];
            out.insert(
                e["targetRef"]["name"].as_str().unwrap_or("").to_string(),
                (
                    cond["ready"] == true,
                    cond["serving"] == true,
                    cond["terminating"] == true,
                    port,
                ),
            );
        }
    }
    out
}

/// (ready addresses, not-ready addresses) of the Endpoints, as "ip:port".
fn endpoints_view(c: &Cluster) -> (Vec<String>, Vec<String>) {
    let Some(ep) = c.json(&["get", "endpoints", "web"]) else {
        return Default::default();
    };
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for s in ep["subsets"].as_array().into_iter().flatten() {
        let port = s["ports"][0]["port"].as_i64().unwrap_or(0);
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{}:{port}", a["ip"].as_str().unwrap_or("")))
                .collect()
        };
        ready.extend(list(&s["addresses"]));
        not_ready.extend(list(&s["notReadyAddresses"]));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    c.pod(name)["status"]["podIP"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn endpoints_follow_readiness_named_ports_and_deletion() {
    let c = Cluster::start();
    let k = c.json(&["get", "endpoints", "kubernetes"]).unwrap();
    assert_eq!(k["subsets"][0]["addresses"][0]["ip"], NODE_IP);

    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    );
    c.apply(&web_pod("web-a", 8080, true));
    c.apply(&web_pod("web-b", 8081, false));
    c.wait_phase("web-a", "Running");
    c.wait_phase("web-b", "Running");
    let (a, b) = (pod_ip(&c, "web-a"), pod_ip(&c, "web-b"));

    // The named port resolves per pod: 8080 on web-a, 8081 on web-b; only web-a is ready.
    c.wait_for("web-a ready, web-b not", Duration::from_secs(30), |c| {
        let v = slice_view(c);
        v.get("web-a") == Some(&(true, true, false, 8080))
            && v.get("web-b") == Some(&(false, false, false, 8081))
    });
    c.wait_for("the Endpoints to agree", Duration::from_secs(10), |c| {
        endpoints_view(c) == (vec![format!("{a}:8080")], vec![format!("{b}:8081")])
    });

    // Readiness changes inside the pods move them.
    c.ok(&["exec", "web-b", "--", "touch", "/www/ready"]);
    c.ok(&["exec", "web-a", "--", "rm", "/www/ready"]);
    c.wait_for("web-b ready, web-a not", Duration::from_secs(30), |c| {
        let v = slice_view(c);
        v.get("web-a") == Some(&(false, false, false, 8080))
            && v.get("web-b") == Some(&(true, true, false, 8081))
    });
    c.wait_for("the Endpoints to agree", Duration::from_secs(10), |c| {
        endpoints_view(c) == (vec![format!("{b}:8081")], vec![format!("{a}:8080")])
    });
    let out = c.ok(&["get", "endpoints", "web"]);
    assert!(out.contains(&format!("{b}:8081")), "{out}");
    let out = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    assert!(
        out.lines()
            .any(|l| l.contains("IPv4") && l.contains("8081") && l.contains(&b)),
        "{out}"
    );

    // A deleted pod is terminating through its grace period: still serving in its slice,
    // not ready, gone from the Endpoints; then gone from both.
    let deleting = c
        .kubectl_command(node_support::KUBECTL)
        .args(["delete", "pod", "web-b", "--wait=false"])
        .output()
        .unwrap();
    assert!(deleting.status.success());
    c.wait_for("web-b terminating", Duration::from_secs(20), |c| {
        slice_view(c).get("web-b") == Some(&(false, true, true, 8081))
    });
    c.wait_for("web-b out of the Endpoints", Duration::from_secs(10), |c| {
        endpoints_view(c) == (vec![], vec![format!("{a}:8080")])
    });
    c.wait_for("web-b gone", Duration::from_secs(30), |c| {
        !slice_view(c).contains_key("web-b")
    });
    assert!(slice_view(&c).contains_key("web-a"));
}
