use super::*;
use serde_json::json;

fn node(name: &str, extra: serde_json::Value) -> Node {
    let mut v = json!({"metadata": {"name": name, "labels": {"disk": "ssd"}}, "spec": {}});
    for (k, val) in extra.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn spec(v: serde_json::Value) -> PodSpec {
    let mut s = json!({"containers": [{"name": "c", "image": "i"}]});
    for (k, val) in v.as_object().unwrap() {
        s[k] = val.clone();
    }
    serde_json::from_value(s).unwrap()
}

fn ds(strategy: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "d", "namespace": "default", "uid": "du", "generation": 2},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "updateStrategy": strategy,
                 "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }))
    .unwrap()
}

fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
    let conds = if ready {
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-03T06:00:00Z"}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "d", REVISION_LABEL: hash}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "conditions": conds}
    }))
    .unwrap()
}

fn now() -> Timestamp {
    "2026-12-03T06:10:00Z".parse().unwrap()
}

#[test]
fn which_nodes_run_a_daemon() {
    let plain = node("n1", json!({}));
    assert!(should_run(&spec(json!({})), &plain));
    assert!(should_run(
        &spec(json!({"nodeSelector": {"disk": "ssd"}})),
        &plain
    ));
    assert!(!should_run(
        &spec(json!({"nodeSelector": {"disk": "hdd"}})),
        &plain
    ));
    let only_n2 = spec(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
    );
    assert!(!should_run(&only_n2, &plain));
    assert!(should_run(&only_n2, &node("n2", json!({}))));
    // A user taint keeps daemons off unless tolerated; the automatic ones do not.
    let tainted = node(
        "n1",
        json!({"taints": [{"key": "gpu", "effect": "NoSchedule"}]}),
    );
    assert!(!should_run(&spec(json!({})), &tainted));
    assert!(should_run(
        &spec(json!({"tolerations": [{"key": "gpu", "operator": "Exists"}]})),
        &tainted
    ));
    let cordoned = node(
        "n1",
        json!({"unschedulable": true,
        "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}),
    );
    assert!(should_run(&spec(json!({})), &cordoned));
    // PreferNoSchedule does not keep a daemon away.
    let soft = node(
        "n1",
        json!({"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}),
    );
    assert!(should_run(&spec(json!({})), &soft));
}

#[test]
fn pinned_pods_name_their_node() {
    let mut s = spec(json!({}));
    pin_to_node(&mut s, "n7");
    let p = Pod {
        spec: Some(s),
        ..Default::default()
    };
    assert_eq!(node_of(&p).as_deref(), Some("n7"));
}

#[test]
fn one_pod_per_node_and_misscheduled_ones_go() {
    let nodes = [
        node("n1", json!({})),
        node(
            "n2",
            json!({"taints": [{"key": "k", "effect": "NoExecute"}]}),
        ),
        node("n3", json!({})),
    ];
    let pods = [pod("a", "n1", "h1", true), pod("b", "n2", "h1", true)];
    let p = decide(
        &ds(json!({"type": "RollingUpdate"})),
        "h1",
        &nodes,
        &pods,
        now(),
    );
    assert_eq!(p.create, ["n3"]);
    assert_eq!(p.delete, ["b"]);
    let st = p.status;
    assert_eq!(st.desired_number_scheduled, 2);
    assert_eq!(st.current_number_scheduled, 1);
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.updated_number_scheduled, Some(1));
    assert_eq!(st.number_unavailable, Some(1));
    assert_eq!(st.observed_generation, Some(2));
}

#[test]
fn rolling_update_stays_within_max_unavailable() {
    let nodes = [
        node("n1", json!({})),
        node("n2", json!({})),
        node("n3", json!({})),
    ];
    let old = [
        pod("a", "n1", "h1", true),
        pod("b", "n2", "h1", true),
        pod("c", "n3", "h1", true),
    ];
    let p = decide(
        &ds(json!({"type": "RollingUpdate"})),
        "h2",
        &nodes,
        &old,
        now(),
    );
    assert_eq!(p.delete.len(), 1, "maxUnavailable defaults to 1");
    assert!(p.create.is_empty());
    // One node is already down (its new pod not ready): nothing else may go.
    let mid = [
        pod("a2", "n1", "h2", false),
        pod("b", "n2", "h1", true),
        pod("c", "n3", "h1", true),
    ];
    let p = decide(
        &ds(json!({"type": "RollingUpdate"})),
        "h2",
        &nodes,
        &mid,
        now(),
    );
    assert!(p.delete.is_empty() && p.create.is_empty());
    let p = decide(
        &ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}})),
        "h2",
        &nodes,
        &old,
        now(),
    );
    assert_eq!(p.delete.len(), 3);
}

#[test]
fn surge_starts_the_new_pod_before_the_old_goes() {
    let nodes = [node("n1", json!({}))];
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    let p = decide(
        &ds(strategy.clone()),
        "h2",
        &nodes,
        &[pod("a", "n1", "h1", true)],
        now(),
    );
    assert_eq!(p.create, ["n1"]);
    assert!(p.delete.is_empty());
    let both = [pod("a", "n1", "h1", true), pod("a2", "n1", "h2", true)];
    let p = decide(&ds(strategy), "h2", &nodes, &both, now());
    assert_eq!(p.delete, ["a"]);
}

#[test]
fn on_delete_leaves_old_pods() {
    let nodes = [node("n1", json!({}))];
    let p = decide(
        &ds(json!({"type": "OnDelete"})),
        "h2",
        &nodes,
        &[pod("a", "n1", "h1", true)],
        now(),
    );
    assert!(p.delete.is_empty() && p.create.is_empty());
    assert_eq!(p.status.updated_number_scheduled, None);
}

#[test]
fn percentages_round_up() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(scaled(Some(&IntOrString::String("10%".into())), 3, 1), 1);
    assert_eq!(scaled(Some(&IntOrString::String("50%".into())), 3, 1), 2);
    assert_eq!(scaled(Some(&IntOrString::Int(0)), 3, 1), 0);
    assert_eq!(scaled(None, 3, 1), 1);
}
