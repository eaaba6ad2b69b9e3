use super::*;
use serde_json::json;

fn node(v: serde_json::Value) -> Node {
    let mut base = json!({"metadata": {"name": "node1", "labels": {"zone": "a", "size": "4"}},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn pod(v: serde_json::Value) -> Pod {
    let mut base = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn cpu(q: &str) -> serde_json::Value {
    json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": q}}}]}})
}

fn info(n: Node, pods: Vec<Pod>) -> NodeInfo {
    NodeInfo { node: n, pods }
}

#[test]
fn resources_fit_counts_pods_already_there() {
    let n = node(json!({}));
    assert!(filters::resources::filter(&pod(cpu("1500m")), &info(n.clone(), vec![])).is_ok());
    let r = filters::resources::filter(&pod(cpu("1")), &info(n.clone(), vec![pod(cpu("1500m"))]))
        .unwrap_err();
    assert_eq!(r.reasons, vec!["Insufficient cpu"]);
    assert!(r.resolvable);
    let full = node(json!({"status": {"allocatable": {"pods": "1"}}}));
    let r =
        filters::resources::filter(&pod(json!({})), &info(full, vec![pod(json!({}))])).unwrap_err();
    assert_eq!(r.reasons, vec!["Too many pods"]);
}

#[test]
fn node_name_and_selector() {
    let n = info(node(json!({})), vec![]);
    assert!(filters::nodename::filter(&pod(json!({"spec": {"nodeName": "node2"}})), &n).is_err());
    assert!(filters::nodename::filter(&pod(json!({"spec": {"nodeName": "node1"}})), &n).is_ok());
    assert!(filters::nodeaffinity::filter(
        &pod(json!({"spec": {"nodeSelector": {"zone": "a"}}})),
        &n
    )
    .is_ok());
    assert!(filters::nodeaffinity::filter(
        &pod(json!({"spec": {"nodeSelector": {"zone": "b"}}})),
        &n
    )
    .is_err());
}

#[test]
fn required_node_affinity_operators() {
    let n = info(node(json!({})), vec![]);
    let with = |op: &str, key: &str, values: serde_json::Value| {
        pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]}}}}}),
        )
    };
    let ok = |p: Pod| filters::nodeaffinity::filter(&p, &n).is_ok();
    assert!(ok(with("In", "zone", json!(["a", "b"]))));
    assert!(!ok(with("NotIn", "zone", json!(["a"]))));
    assert!(ok(with("Exists", "zone", json!(null))));
    assert!(!ok(with("DoesNotExist", "zone", json!(null))));
    assert!(ok(with("Gt", "size", json!(["3"]))));
    assert!(!ok(with("Lt", "size", json!(["3"]))));
    assert!(!ok(with("Gt", "zone", json!(["3"]))));
}

#[test]
fn required_node_affinity_match_fields_name_the_node() {
    let n = info(node(json!({})), vec![]);
    let on = |name: &str| {
        pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]}}}}}),
        )
    };
    assert!(filters::nodeaffinity::filter(&on("node1"), &n).is_ok());
    assert!(filters::nodeaffinity::filter(&on("node2"), &n).is_err());
}

#[test]
fn taints_and_cordon() {
    let tainted = info(
        node(json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}})),
        vec![],
    );
    let r = filters::taints::filter(&pod(json!({})), &tainted).unwrap_err();
    assert_eq!(r.reasons, vec!["node(s) had untolerated taint {k: v}"]);
    let tol = pod(
        json!({"spec": {"tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]}}),
    );
    assert!(filters::taints::filter(&tol, &tainted).is_ok());
    let exists = pod(json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
    assert!(filters::taints::filter(&exists, &tainted).is_ok());
    let cordoned = info(node(json!({"spec": {"unschedulable": true}})), vec![]);
    assert_eq!(
        filters::unschedulable::filter(&pod(json!({})), &cordoned)
            .unwrap_err()
            .reasons,
        vec!["node(s) were unschedulable"]
    );
}

#[test]
fn host_ports_conflict() {
    let hp = |port: i32| {
        pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
        "ports": [{"containerPort": 80, "hostPort": port}]}]}}))
    };
    let n = info(node(json!({})), vec![hp(8080)]);
    assert!(filters::hostports::filter(&hp(8080), &n).is_err());
    assert!(filters::hostports::filter(&hp(8081), &n).is_ok());
}

#[test]
fn scores_prefer_free_and_spread() {
    let owned = |uid: &str| {
        pod(
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
        "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]}}),
        )
    };
    let empty = info(node(json!({})), vec![]);
    let busy = info(node(json!({})), vec![owned("rs1"), pod(cpu("1"))]);
    assert!(
        scores::least_allocated(&pod(cpu("100m")), &empty)
            > scores::least_allocated(&pod(cpu("100m")), &busy)
    );
    assert!(
        scores::owner_spread(&owned("rs1"), &empty) > scores::owner_spread(&owned("rs1"), &busy)
    );
    assert_eq!(scores::balanced_allocation(&pod(json!({})), &empty), 100);
}

#[test]
fn unschedulable_message_matches_upstream() {
    let n = info(node(json!({})), vec![]);
    assert_eq!(schedule(&pod(cpu("3")), std::slice::from_ref(&n)).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.");
    let m = schedule(
        &pod(json!({"spec": {"nodeSelector": {"zone": "b"}}})),
        std::slice::from_ref(&n),
    )
    .unwrap_err();
    assert_eq!(m, "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.");
    assert_eq!(schedule(&pod(cpu("1")), &[n]).unwrap(), "node1");
}

#[test]
fn queue_backoff_doubles_to_ten_seconds() {
    assert_eq!(queue::backoff(1).as_secs(), 1);
    assert_eq!(queue::backoff(3).as_secs(), 4);
    assert_eq!(queue::backoff(9).as_secs(), 10);
}
