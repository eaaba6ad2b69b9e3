use super::filters::{interpodaffinity as ipa, topologyspread as spread};
use super::*;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};
use std::sync::Arc;

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                // null deletes, as in a merge patch.
                if v.is_null() {
                    a.remove(&k);
                } else {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b,
    }
}

fn node(name: &str, v: Value) -> Node {
    let mut base = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": "a", "size": "4"}},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn pod(v: Value) -> Pod {
    let mut base = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

/// A pod bound to `node`, with its own name and uid.
fn on(node: &str, name: &str, v: Value) -> Pod {
    let mut p = pod(v);
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.spec.as_mut().unwrap().node_name = Some(node.into());
    p
}

fn cpu(q: &str) -> Value {
    json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": q}}}]}})
}

fn with(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

fn snap(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
    let pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
    let ns = [("default".to_string(), Default::default())].into();
    Snapshot::build(nodes.into_iter().map(Arc::new), pods.iter(), ns)
}

fn check(p: &Pod, s: &Snapshot, node: &str) -> Result<(), filters::Reject> {
    filters::run_all(&Cycle::new(p, s), &s.nodes[s.index[node]])
}

fn reason(p: &Pod, s: &Snapshot, node: &str) -> String {
    check(p, s, node).unwrap_err().reasons.join(", ")
}

fn place(p: &Pod, s: &Snapshot) -> Result<String, String> {
    place_with(p, s, &[])
}

fn place_with(p: &Pod, s: &Snapshot, pdbs: &[PodDisruptionBudget]) -> Result<String, String> {
    match decide(&Cycle::new(p, s), s, &mut 0, pdbs) {
        Decision::Bind(i) => Ok(s.nodes[i].name.clone()),
        Decision::Preempt(c, msg) => Err(format!(
            "{msg} [preempt on {}: {}]",
            s.nodes[c.node].name,
            c.victims
                .iter()
                .map(|v| v.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        )),
        Decision::Unschedulable(m) => Err(m),
    }
}

#[test]
fn resources_fit_counts_pods_already_there() {
    let s = snap(
        vec![node("n1", json!({}))],
        vec![on("n1", "a", cpu("1500m"))],
    );
    assert!(check(&pod(cpu("500m")), &s, "n1").is_ok());
    let r = check(&pod(cpu("1")), &s, "n1").unwrap_err();
    assert_eq!(r.reasons, vec!["Insufficient cpu"]);
    assert!(r.resolvable);
    let full = snap(
        vec![node(
            "n1",
            json!({"status": {"allocatable": {"pods": "1"}}}),
        )],
        vec![on("n1", "a", json!({}))],
    );
    assert_eq!(reason(&pod(json!({})), &full, "n1"), "Too many pods");
    // A finished pod holds nothing.
    let done = snap(
        vec![node("n1", json!({}))],
        vec![on(
            "n1",
            "a",
            with(cpu("2"), json!({"status": {"phase": "Succeeded"}})),
        )],
    );
    assert!(check(&pod(cpu("2")), &done, "n1").is_ok());
}

#[test]
fn resources_fit_extended_and_ephemeral_storage() {
    let s = snap(
        vec![node(
            "n1",
            json!({"status": {"allocatable": {"example.com/gpu": "1", "ephemeral-storage": "1Gi"}}}),
        )],
        vec![],
    );
    let want = |res: Value| {
        pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": res}}]}}))
    };
    assert!(check(&want(json!({"example.com/gpu": "1"})), &s, "n1").is_ok());
    assert_eq!(
        reason(&want(json!({"example.com/gpu": "2"})), &s, "n1"),
        "Insufficient example.com/gpu"
    );
    assert_eq!(
        reason(
            &want(json!({"ephemeral-storage": "2Gi", "memory": "8Gi"})),
            &s,
            "n1"
        ),
        "Insufficient memory, Insufficient ephemeral-storage"
    );
}

#[test]
fn effective_requests_follow_init_sidecar_and_overhead_rules() {
    let c = |name: &str, cpu: &str| json!({"name": name, "image": "i", "resources": {"requests": {"cpu": cpu}}});
    let mut sidecar = c("log", "200m");
    sidecar["restartPolicy"] = json!("Always");
    let p = pod(json!({"spec": {
        "initContainers": [c("setup", "1"), sidecar, c("migrate", "500m")],
        "containers": [c("app", "300m")],
        "overhead": {"cpu": "50m"}}}));
    // max(app 300m + sidecar 200m, setup 1, sidecar 200m + migrate 500m) + overhead 50m.
    let r = requests::Requests::of_pod(&p, false);
    assert_eq!(r.milli_cpu, 1050.0);
    // Scores count a container without requests as 100m / 200Mi.
    let none = requests::Requests::of_pod(&pod(json!({})), true);
    assert_eq!(
        (none.milli_cpu, none.memory),
        (100.0, 200.0 * 1024.0 * 1024.0)
    );
}

#[test]
fn nominated_pods_hold_room_against_lower_priority() {
    let mut s = snap(vec![node("n1", json!({}))], vec![]);
    s.nodes[0].nominated.push(snapshot::Nominated {
        uid: "big".into(),
        priority: 100,
        requests: requests::Requests::of_pod(&pod(cpu("1500m")), false),
    });
    assert_eq!(reason(&pod(cpu("1")), &s, "n1"), "Insufficient cpu");
    let urgent = pod(with(cpu("1"), json!({"spec": {"priority": 1000}})));
    assert!(check(&urgent, &s, "n1").is_ok());
}

#[test]
fn node_name_and_selector() {
    let s = snap(vec![node("node1", json!({}))], vec![]);
    let msg = reason(&pod(json!({"spec": {"nodeName": "node2"}})), &s, "node1");
    assert_eq!(msg, "node(s) didn't match the requested node name");
    assert!(check(&pod(json!({"spec": {"nodeName": "node1"}})), &s, "node1").is_ok());
    assert!(check(
        &pod(json!({"spec": {"nodeSelector": {"size": "4"}}})),
        &s,
        "node1"
    )
    .is_ok());
    assert_eq!(
        reason(
            &pod(json!({"spec": {"nodeSelector": {"size": "8"}}})),
            &s,
            "node1"
        ),
        "node(s) didn't match Pod's node affinity/selector"
    );
}

#[test]
fn required_node_affinity_operators_and_fields() {
    let s = snap(vec![node("node1", json!({}))], vec![]);
    let term = |t: Value| {
        pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [t]}}}}}),
        )
    };
    let expr = |op: &str, key: &str, values: Value| {
        term(json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]}))
    };
    let ok = |p: Pod| check(&p, &s, "node1").is_ok();
    assert!(ok(expr("In", "size", json!(["4", "8"]))));
    assert!(!ok(expr("NotIn", "size", json!(["4"]))));
    assert!(ok(expr("Exists", "size", json!(null))));
    assert!(!ok(expr("DoesNotExist", "size", json!(null))));
    assert!(ok(expr("Gt", "size", json!(["3"]))));
    assert!(!ok(expr("Lt", "size", json!(["3"]))));
    assert!(!ok(expr("Gt", "kubernetes.io/hostname", json!(["3"]))));
    let field = |name: &str| {
        term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}))
    };
    assert!(ok(field("node1")));
    assert!(!ok(field("node2")));
    assert!(!ok(term(json!({}))), "an empty term matches nothing");
}

#[test]
fn taints_and_cordon() {
    let s = snap(
        vec![
            node(
                "t",
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
            ),
            node("c", json!({"spec": {"unschedulable": true}})),
        ],
        vec![],
    );
    assert_eq!(
        reason(&pod(json!({})), &s, "t"),
        "node(s) had untolerated taint {k: v}"
    );
    let tol = pod(
        json!({"spec": {"tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]}}),
    );
    assert!(check(&tol, &s, "t").is_ok());
    let exists = pod(json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
    assert!(check(&exists, &s, "t").is_ok());
    assert!(
        check(&exists, &s, "c").is_ok(),
        "Exists tolerates the cordon taint"
    );
    assert_eq!(
        reason(&pod(json!({})), &s, "c"),
        "node(s) were unschedulable"
    );
}

#[test]
fn host_ports_conflict_per_protocol_and_address() {
    let hp = |port: i32, proto: &str, ip: &str| {
        json!({"spec": {"containers": [{"name": "c", "image": "i",
        "ports": [{"containerPort": 80, "hostPort": port, "protocol": proto, "hostIP": ip}]}]}})
    };
    let s = snap(
        vec![node("n1", json!({}))],
        vec![on("n1", "a", hp(8080, "TCP", "127.0.0.1"))],
    );
    let msg = "node(s) didn't have free ports for the requested pod ports";
    assert_eq!(reason(&pod(hp(8080, "TCP", "")), &s, "n1"), msg);
    assert_eq!(reason(&pod(hp(8080, "TCP", "127.0.0.1")), &s, "n1"), msg);
    assert!(check(&pod(hp(8080, "TCP", "127.0.0.2")), &s, "n1").is_ok());
    assert!(check(&pod(hp(8080, "UDP", "")), &s, "n1").is_ok());
    assert!(check(&pod(hp(8081, "TCP", "")), &s, "n1").is_ok());
}

fn labelled(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}})
}

fn pod_term(kind: &str, app: &str, key: &str) -> Value {
    json!({"spec": {"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}})
}

#[test]
fn pod_anti_affinity_by_hostname_and_zone() {
    let b = node(
        "n2",
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "b"}}}),
    );
    let s = snap(
        vec![node("n1", json!({})), b, node("n3", json!({}))],
        vec![on("n1", "web-0", labelled("web"))],
    );
    let by_host = pod(with(
        labelled("web"),
        pod_term("podAntiAffinity", "web", "kubernetes.io/hostname"),
    ));
    assert_eq!(reason(&by_host, &s, "n1"), ipa::ANTI_AFFINITY);
    assert!(check(&by_host, &s, "n2").is_ok());
    assert!(check(&by_host, &s, "n3").is_ok());
    let by_zone = pod(pod_term(
        "podAntiAffinity",
        "web",
        "topology.kubernetes.io/zone",
    ));
    assert_eq!(reason(&by_zone, &s, "n3"), ipa::ANTI_AFFINITY);
    assert!(check(&by_zone, &s, "n2").is_ok());
    assert!(check(&by_zone, &s, "n1").unwrap_err().resolvable);
    // Terms look only in the pod's namespace unless they say otherwise.
    let mut elsewhere = by_host.clone();
    elsewhere.metadata.namespace = Some("other".into());
    assert!(check(&elsewhere, &s, "n1").is_ok());
}

#[test]
fn existing_pods_anti_affinity_keeps_newcomers_out() {
    let loner = on(
        "n1",
        "loner",
        pod_term("podAntiAffinity", "web", "kubernetes.io/hostname"),
    );
    let s = snap(
        vec![node("n1", json!({})), node("n2", json!({}))],
        vec![loner],
    );
    assert_eq!(
        reason(&pod(labelled("web")), &s, "n1"),
        ipa::EXISTING_ANTI_AFFINITY
    );
    assert!(check(&pod(labelled("web")), &s, "n2").is_ok());
    assert!(check(&pod(labelled("db")), &s, "n1").is_ok());
}

#[test]
fn pod_affinity_needs_a_match_in_the_domain_except_for_the_first_pod() {
    let b = node(
        "n2",
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "b"}}}),
    );
    let bare = node(
        "n3",
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": null}}}),
    );
    let near_db = pod(pod_term("podAffinity", "db", "topology.kubernetes.io/zone"));
    let s = snap(
        vec![node("n1", json!({})), b.clone(), bare.clone()],
        vec![on("n1", "db-0", labelled("db"))],
    );
    assert!(check(&near_db, &s, "n1").is_ok());
    let r = check(&near_db, &s, "n2").unwrap_err();
    assert_eq!(
        (r.reasons[0].as_str(), r.resolvable),
        (ipa::AFFINITY, false)
    );
    assert_eq!(
        reason(&near_db, &s, "n3"),
        ipa::AFFINITY,
        "the node lacks the key"
    );
    // No db pod anywhere: a db pod with affinity to db may start the group.
    let empty = snap(vec![node("n1", json!({})), b, bare], vec![]);
    let first = pod(with(
        labelled("db"),
        pod_term("podAffinity", "db", "topology.kubernetes.io/zone"),
    ));
    assert!(check(&first, &empty, "n2").is_ok());
    assert!(check(&first, &empty, "n3").is_err());
    assert_eq!(reason(&near_db, &empty, "n1"), ipa::AFFINITY);
}

fn spread_pod(when: &str, extra: Value) -> Pod {
    let mut c = json!({"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}});
    merge(&mut c, extra);
    pod(with(
        labelled("web"),
        json!({"spec": {"topologySpreadConstraints": [c]}}),
    ))
}

#[test]
fn topology_spread_filter_keeps_skew_within_max() {
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let nodes = vec![
        node("a1", zone("a")),
        node("b1", zone("b")),
        node(
            "x",
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": null}}}),
        ),
    ];
    let pods = vec![
        on("a1", "w1", labelled("web")),
        on("a1", "w2", labelled("web")),
        on("b1", "w3", labelled("web")),
        on("b1", "other", labelled("db")),
    ];
    let s = snap(nodes, pods);
    let p = spread_pod("DoNotSchedule", json!({}));
    let r = check(&p, &s, "a1").unwrap_err();
    assert_eq!(
        (r.reasons[0].as_str(), r.resolvable),
        (spread::REASON, true)
    );
    assert!(check(&p, &s, "b1").is_ok());
    let r = check(&p, &s, "x").unwrap_err();
    assert_eq!(
        (r.reasons[0].as_str(), r.resolvable),
        (spread::MISSING_LABEL, false)
    );
    // With fewer domains than minDomains the global minimum counts as 0.
    let p = spread_pod("DoNotSchedule", json!({"minDomains": 3}));
    assert_eq!(reason(&p, &s, "b1"), spread::REASON);
    // ScheduleAnyway never filters.
    assert!(check(&spread_pod("ScheduleAnyway", json!({})), &s, "a1").is_ok());
}

#[test]
fn scores_prefer_free_spread_and_preferred_nodes() {
    let owned = |name: &str| {
        json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "rs", "uid": "rs1", "controller": true}]}})
    };
    let two = || vec![node("n1", json!({})), node("n2", json!({}))];
    // Less allocated wins.
    let s = snap(two(), vec![on("n1", "busy", cpu("1"))]);
    assert_eq!(place(&pod(cpu("100m")), &s).unwrap(), "n2");
    // A controller's pods spread by default, even onto the busier node.
    let s = snap(
        two(),
        vec![on("n1", "sib", owned("sib")), on("n2", "busy", cpu("300m"))],
    );
    assert_eq!(place(&pod(owned("new")), &s).unwrap(), "n2");
    // Preferred node affinity.
    let prefer = pod(
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
        [{"weight": 10, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}}]}}}}),
    );
    let s = snap(two(), vec![on("n1", "busy", cpu("1"))]);
    assert_eq!(place(&prefer, &s).unwrap(), "n1");
    // Preferred pod anti-affinity, and a PreferNoSchedule taint, push away.
    let avoid = pod(
        json!({"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
        [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
    );
    let s = snap(two(), vec![on("n2", "web", labelled("web"))]);
    assert_eq!(place(&avoid, &s).unwrap(), "n1");
    let soft = node(
        "n1",
        json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
    );
    let s = snap(
        vec![soft, node("n2", json!({}))],
        vec![on("n2", "busy", cpu("1"))],
    );
    assert_eq!(place(&pod(json!({})), &s).unwrap(), "n2");
    // An image the node already holds.
    let cached = node(
        "n2",
        json!({"status": {"images": [{"names": ["docker.io/library/big:1"], "sizeBytes": 900_000_000}]}}),
    );
    let s = snap(vec![node("n1", json!({})), cached], vec![]);
    let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "big:1"}]}}));
    assert_eq!(place(&p, &s).unwrap(), "n2");
    // ScheduleAnyway spread picks the emptier zone.
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let s = snap(
        vec![node("n1", zone("a")), node("n2", zone("b"))],
        vec![on("n2", "w1", labelled("web")), on("n1", "busy", cpu("1"))],
    );
    assert_eq!(
        place(&spread_pod("ScheduleAnyway", json!({})), &s).unwrap(),
        "n1"
    );
}

#[test]
fn image_names_normalise_as_node_status_lists_them() {
    assert_eq!(
        scores::normalized_image("nginx"),
        "docker.io/library/nginx:latest"
    );
    assert_eq!(scores::normalized_image("me/app:2"), "docker.io/me/app:2");
    assert_eq!(
        scores::normalized_image("localhost:5000/app"),
        "localhost:5000/app:latest"
    );
}

#[test]
fn unschedulable_message_matches_upstream() {
    let taint = json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}});
    let s = snap(
        vec![
            node("n1", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
            node("n2", taint.clone()),
            node("n3", taint),
        ],
        vec![],
    );
    let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "i",
        "resources": {"requests": {"memory": "2Gi"}}}]}}));
    assert_eq!(place(&p, &s).unwrap_err(),
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.");
    let one = snap(vec![node("n1", json!({}))], vec![]);
    assert_eq!(place(&pod(cpu("3")), &one).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.");
    assert_eq!(
        place(&pod(cpu("1")), &snap(vec![], vec![])).unwrap_err(),
        "no nodes available to schedule pods"
    );
}

fn prio(p: i32, v: Value) -> Value {
    with(v, json!({"spec": {"priority": p}}))
}

#[test]
fn preemption_evicts_the_fewest_least_important_pods() {
    let s = snap(
        vec![node("n1", json!({}))],
        vec![
            on("n1", "low", prio(1, cpu("1"))),
            on("n1", "mid", prio(5, cpu("1"))),
        ],
    );
    let urgent = pod(prio(10, cpu("1")));
    assert_eq!(
        place(&urgent, &s).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. [preempt on n1: low]"
    );
    // Nothing of lower priority: no victims.
    let peer = pod(prio(1, cpu("1")));
    assert_eq!(place(&peer, &s).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.");
    let never = pod(with(
        prio(10, cpu("1")),
        json!({"spec": {"preemptionPolicy": "Never"}}),
    ));
    assert_eq!(
        place(&never, &s).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn preemption_picks_the_node_with_cheaper_victims_and_spares_budgets() {
    let s = snap(
        vec![node("n1", json!({})), node("n2", json!({}))],
        vec![
            on("n1", "a", prio(5, cpu("2"))),
            on("n2", "b", prio(2, cpu("2"))),
        ],
    );
    assert!(place(&pod(prio(10, cpu("1"))), &s)
        .unwrap_err()
        .ends_with("[preempt on n2: b]"));
    let guarded = with(labelled("guarded"), prio(1, cpu("1")));
    let s = snap(
        vec![node("n1", json!({}))],
        vec![on("n1", "g", guarded), on("n1", "free", prio(1, cpu("1")))],
    );
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "pdb", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
    .unwrap();
    assert!(place_with(&pod(prio(10, cpu("1"))), &s, &[pdb])
        .unwrap_err()
        .ends_with("[preempt on n1: free]"));
}

#[test]
fn preemption_waits_while_its_victims_terminate() {
    let dying = with(
        prio(1, cpu("2")),
        json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
    );
    let s = snap(vec![node("n1", json!({}))], vec![on("n1", "v", dying)]);
    let p = pod(with(
        prio(10, cpu("1")),
        json!({"status": {"nominatedNodeName": "n1"}}),
    ));
    assert_eq!(
        place(&p, &s).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to a terminating pod on the nominated node."
    );
}

#[test]
fn preemption_evicts_what_the_pods_anti_affinity_or_spread_counts() {
    // Room for both, but the newcomer's anti-affinity shuts it out of the only node: evicting
    // the lower-priority pod it repels (and only that one) lets it in.
    let s = snap(
        vec![node("n1", json!({}))],
        vec![
            on("n1", "web-0", with(labelled("web"), prio(1, json!({})))),
            on("n1", "db-0", with(labelled("db"), prio(1, json!({})))),
        ],
    );
    let repelling = pod(with(
        prio(10, json!({})),
        pod_term("podAntiAffinity", "web", "kubernetes.io/hostname"),
    ));
    assert_eq!(
        place(&repelling, &s).unwrap_err(),
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules. [preempt on n1: web-0]"
    );
    // A pod already there whose own anti-affinity repels the newcomer.
    let s = snap(
        vec![node("n1", json!({}))],
        vec![on(
            "n1",
            "loner",
            with(
                prio(1, json!({})),
                pod_term("podAntiAffinity", "web", "kubernetes.io/hostname"),
            ),
        )],
    );
    let web = pod(with(labelled("web"), prio(10, json!({}))));
    assert!(place(&web, &s)
        .unwrap_err()
        .ends_with("[preempt on n1: loner]"));
    // DoNotSchedule spread: zone a has two matching pods, zone b one, and b is full of a
    // higher-priority pod; evicting one low-priority pod in zone a brings the skew within 1
    // (the first of equals is given back its place, so the second goes).
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let s = snap(
        vec![node("a1", zone("a")), node("b1", zone("b"))],
        vec![
            on("a1", "w1", with(labelled("web"), prio(1, json!({})))),
            on("a1", "w2", with(labelled("web"), prio(1, json!({})))),
            on("b1", "w3", with(labelled("web"), prio(1, json!({})))),
            on("b1", "big", prio(100, cpu("2"))),
        ],
    );
    let mut spreading = spread_pod("DoNotSchedule", json!({}));
    let one_cpu: Pod = pod(cpu("1"));
    spreading.spec.as_mut().unwrap().containers = one_cpu.spec.unwrap().containers;
    spreading.spec.as_mut().unwrap().priority = Some(10);
    assert_eq!(
        place(&spreading, &s).unwrap_err(),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match pod topology spread constraints. [preempt on a1: w2]"
    );
}

#[test]
fn preemption_never_evicts_the_pods_a_required_affinity_needs() {
    // As upstream: affinity towards lower-priority pods is lost with them, so no victims.
    let s = snap(
        vec![node("n1", json!({}))],
        vec![on("n1", "web-0", with(labelled("web"), prio(1, cpu("2"))))],
    );
    let follower = pod(with(
        prio(10, cpu("1")),
        pod_term("podAffinity", "web", "kubernetes.io/hostname"),
    ));
    assert_eq!(
        place(&follower, &s).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
}

#[test]
fn large_clusters_score_a_share_of_nodes() {
    assert_eq!(feasible_to_find(50), 50);
    assert_eq!(feasible_to_find(100), 100);
    assert_eq!(feasible_to_find(1000), 420);
    assert_eq!(feasible_to_find(5000), 500);
    assert_eq!(feasible_to_find(100_000), 5000);
}

#[test]
fn round_robin_start_moves_on() {
    let nodes: Vec<Node> = (0..150)
        .map(|i| node(&format!("n{i:03}"), json!({})))
        .collect();
    let s = snap(nodes, vec![]);
    let p = pod(json!({}));
    let mut start = 0;
    let c = Cycle::new(&p, &s);
    assert!(schedule(&c, &s, &mut start).is_ok());
    assert_eq!(start, 100, "stops after the first 100 feasible nodes");
    let _ = schedule(&c, &s, &mut start);
    assert_eq!(start, 50);
}

#[test]
fn queue_backoff_doubles_to_ten_seconds() {
    assert_eq!(queue::backoff(1).as_secs(), 1);
    assert_eq!(queue::backoff(3).as_secs(), 4);
    assert_eq!(queue::backoff(9).as_secs(), 10);
}
