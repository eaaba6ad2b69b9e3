//! The scheduler's placement rules seen from kubectl on real clusters: required pod
//! anti-affinity and topology spread across two nodes, the Unschedulable message of a replica
//! that fits nowhere, and priority preemption on one node.

mod node_support;

use node_support::{Cluster, IMAGE};
use serde_json::Value;
use std::time::Duration;

fn deployment(name: &str, replicas: u32, placement: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
{placement}
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [sleep, '1000']
"
    )
}

fn pods_of(c: &Cluster, app: &str) -> Vec<Value> {
    let list = c
        .json(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"])
        .expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn condition<'a>(pod: &'a Value, type_: &str) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[test]
fn anti_affinity_and_topology_spread_place_replicas_across_nodes() {
    let c = Cluster::start_nodes(2);
    let anti = "      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: lonely}
            topologyKey: kubernetes.io/hostname";
    c.apply(&deployment("lonely", 3, anti));
    c.wait_for(
        "two lonely replicas running",
        Duration::from_secs(90),
        |c| {
            pods_of(c, "lonely")
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count()
                == 2
        },
    );
    let pods = pods_of(&c, "lonely");
    let mut nodes: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2"], "one per node: {pods:?}");
    let want = "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.";
    c.wait_for("the third replica's reason", Duration::from_secs(30), |c| {
        pods_of(c, "lonely").iter().any(|p| {
            p["spec"]["nodeName"].is_null()
                && condition(p, "PodScheduled").is_some_and(|cond| {
                    cond["status"] == "False"
                        && cond["reason"] == "Unschedulable"
                        && cond["message"] == want
                })
        })
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Scheduled",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events
            .lines()
            .any(|l| l.starts_with("Successfully assigned default/lonely-")
                && l.ends_with(" to node2")),
        "{events}"
    );

    // Room frees up: scaling down to two leaves no replica pending.
    c.ok(&["scale", "deployment", "lonely", "--replicas=2"]);
    c.wait_for("no pending lonely replica", Duration::from_secs(30), |c| {
        let pods = pods_of(c, "lonely");
        pods.len() == 2 && pods.iter().all(|p| p["spec"]["nodeName"].is_string())
    });

    let spread = "      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: even}";
    c.apply(&deployment("even", 4, spread));
    c.wait_for("four even replicas placed", Duration::from_secs(60), |c| {
        let pods = pods_of(c, "even");
        pods.len() == 4 && pods.iter().all(|p| p["spec"]["nodeName"].is_string())
    });
    let pods = pods_of(&c, "even");
    let on = |n: &str| pods.iter().filter(|p| p["spec"]["nodeName"] == n).count();
    assert_eq!((on("node1"), on("node2")), (2, 2), "{pods:?}");
    c.ok(&["delete", "deployment", "lonely", "even"]);
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    let c = Cluster::start();
    // The node lists the images it holds (ImageLocality scores by them).
    c.wait_for("the node's image list", Duration::from_secs(60), |c| {
        let node = c.json(&["get", "node", "node1", "-o", "json"]).unwrap();
        node["status"]["images"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| {
                i["sizeBytes"].as_i64().is_some_and(|s| s > 0)
                    && i["names"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|n| n == "docker.io/nanokube/busybox:latest")
            })
    });
    let node = c.json(&["get", "node", "node1", "-o", "json"]).unwrap();
    let cores: f64 = node["status"]["allocatable"]["cpu"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("allocatable cpu in whole cores");
    // Each pod asks for more than half the node, so the two cannot run together.
    let ask = format!("{}m", (cores * 1000.0 * 0.6) as i64);
    c.apply(
        "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
",
    );
    let pod = |name: &str, class: &str, grace: u32| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  priorityClassName: {class}
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, \"trap '' TERM; sleep 1000\"]
    resources:
      requests: {{cpu: {ask}}}
"
        )
    };
    // The pods ignore SIGTERM, so the victim lives out its 5 s grace period: long enough to
    // see it marked and the preemptor nominated.
    c.apply(&pod("filler", "low", 5));
    c.wait_phase("filler", "Running");
    c.apply(&pod("urgent", "high", 1));
    c.wait_for("the victim marked", Duration::from_secs(30), |c| {
        let p = c.pod("filler");
        p["metadata"]["deletionTimestamp"].is_string()
            && condition(&p, "DisruptionTarget").is_some_and(|d| {
                d["status"] == "True"
                    && d["reason"] == "PreemptionByScheduler"
                    && d["message"]
                        == "default-scheduler: preempting to accommodate a higher priority pod"
            })
    });
    // The nomination is written before the victim is deleted, and the victim takes 5 s to go:
    // the preemptor is still pending and nominated now.
    let p = c.pod("urgent");
    assert_eq!(p["status"]["nominatedNodeName"], "node1", "{p}");
    assert!(p["spec"]["nodeName"].is_null(), "{p}");
    let urgent = c.wait_phase("urgent", "Running");
    assert_eq!(urgent["spec"]["nodeName"], "node1");
    let uid = urgent["metadata"]["uid"].as_str().unwrap().to_string();
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=filler,reason=Preempted",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_eq!(events, format!("Preempted by pod {uid} on node node1"));
    let failed = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=urgent,reason=FailedScheduling",
        "-o",
        "jsonpath={.items[0].message}",
    ]);
    assert_eq!(failed, "0/1 nodes are available: 1 Insufficient cpu.");

    // A pod that may not preempt waits, and says so.
    c.apply(
        "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: polite}
value: 100000
preemptionPolicy: Never
",
    );
    c.apply(&pod("polite", "polite", 1));
    let want = "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.";
    c.wait_for("the polite pod's reason", Duration::from_secs(30), |c| {
        condition(&c.pod("polite"), "PodScheduled").is_some_and(|p| p["message"] == want)
    });
    assert_eq!(c.pod("urgent")["status"]["phase"], "Running");
    c.ok(&["delete", "pod", "urgent", "polite", "--wait=true"]);
}
