use super::*;
use serde_json::json;

fn now() -> Timestamp {
    "2026-01-01T01:00:00Z".parse().unwrap()
}

fn deploy(image: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": strategy, "revisionHistoryLimit": 1, "progressDeadlineSeconds": 600,
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}
    }))
    .unwrap()
}

fn rolling(surge: i32, unavailable: i32) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// A set as the deployment would have made it for `image`, at `replicas` with `available`
/// of them available.
fn set(
    d: &Deployment,
    image: &str,
    replicas: i32,
    available: i32,
    revision: i64,
    created: &str,
) -> ReplicaSet {
    let mut d = d.clone();
    d.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some(image.into());
    let s = Sync::new(&d, &[], now());
    let mut rs = s.build_new();
    let name = rs.metadata.name.clone().unwrap();
    rs.metadata.uid = Some(format!("uid-{name}"));
    rs.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created.parse().unwrap(),
    ));
    rs.spec.as_mut().unwrap().replicas = Some(replicas);
    let want = arith::replicas(&d);
    rs.metadata.annotations = Some(
        [
            (REVISION.to_string(), revision.to_string()),
            (DESIRED_REPLICAS.to_string(), want.to_string()),
            (MAX_REPLICAS.to_string(), (want + max_surge(&d)).to_string()),
        ]
        .into(),
    );
    rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas,
        ready_replicas: Some(available),
        available_replicas: Some(available),
        observed_generation: Some(1),
        ..Default::default()
    });
    rs
}

fn sizes(plan: &Plan) -> Vec<(String, i32)> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Create(rs, _) | Step::Update(rs, _) => {
                Some((name(rs).to_string(), rs_replicas(rs)))
            }
            Step::Delete(..) => None,
        })
        .collect()
}

fn progressing_reason(plan: &Plan) -> Option<String> {
    cond::get(plan.status.as_ref()?, PROGRESSING)?
        .reason
        .clone()
}

#[test]
fn a_new_deployment_gets_its_first_set_at_full_size() {
    let d = deploy("v1", 3, rolling(1, 0));
    let plan = decide(&d, &[], &[], now());
    let [Step::Create(rs, Some(event))] = plan.steps.as_slice() else {
        panic!("{:?}", plan.steps)
    };
    let h = hash::compute(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(name(rs), format!("web-{h}"));
    assert_eq!(rs_replicas(rs), 3);
    assert_eq!(event, &format!("Scaled up replica set web-{h} from 0 to 3"));
    let labels = rs
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(labels.get(hash::LABEL), Some(&h));
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()
            .get(hash::LABEL),
        Some(&h)
    );
    let a = rs.metadata.annotations.clone().unwrap();
    assert_eq!(
        (
            a[REVISION].as_str(),
            a[DESIRED_REPLICAS].as_str(),
            a[MAX_REPLICAS].as_str()
        ),
        ("1", "3", "4")
    );
    assert_eq!(plan.revision.as_deref(), Some("1"));
    assert_eq!(
        progressing_reason(&plan).as_deref(),
        Some(cond::NEW_RS_CREATED)
    );
}

#[test]
fn max_unavailable_zero_surges_first_and_shrinks_only_what_is_available() {
    let d = deploy("v2", 3, rolling(1, 0));
    let old = set(&d, "v1", 3, 3, 1, "2026-01-01T00:00:00Z");
    // First sync: only the surge pod of the new template.
    let plan = decide(&d, std::slice::from_ref(&old), &[], now());
    let new_name = format!(
        "web-{}",
        hash::compute(&d.spec.as_ref().unwrap().template, None)
    );
    assert_eq!(sizes(&plan), [(new_name.clone(), 1)]);
    assert_eq!(plan.revision.as_deref(), Some("2"));
    // The new pod is not available yet: the old set keeps its three.
    let new = set(&d, "v2", 1, 0, 2, "2026-01-01T00:30:00Z");
    let plan = decide(&d, &[old.clone(), new], &[], now());
    assert!(sizes(&plan).is_empty(), "{:?}", plan.steps);
    // Once it is, one old pod may go.
    let new = set(&d, "v2", 1, 1, 2, "2026-01-01T00:30:00Z");
    let plan = decide(&d, &[old.clone(), new], &[], now());
    assert_eq!(sizes(&plan), [(name(&old).to_string(), 2)]);
    let Step::Update(_, Some(event)) = &plan.steps[0] else {
        panic!()
    };
    assert_eq!(
        event,
        &format!("Scaled down replica set {} from 3 to 2", name(&old))
    );
}

#[test]
fn unavailable_old_pods_are_removed_first() {
    let d = deploy("v2", 4, rolling(0, 1));
    let old = set(&d, "v1", 4, 2, 1, "2026-01-01T00:00:00Z");
    let new = set(&d, "v2", 0, 0, 2, "2026-01-01T00:30:00Z");
    let plan = decide(&d, &[old.clone(), new], &[], now());
    // 4 - 3 allowed available - 0 new unavailable = 1 to remove, taken from the unhealthy.
    assert_eq!(sizes(&plan), [(name(&old).to_string(), 3)]);
}

#[test]
fn complete_rollouts_say_so_and_clean_up_history() {
    let d = deploy("v3", 2, rolling(1, 0));
    let v1 = set(&d, "v1", 0, 0, 1, "2026-01-01T00:00:00Z");
    let v2 = set(&d, "v2", 0, 0, 2, "2026-01-01T00:10:00Z");
    let v3 = set(&d, "v3", 2, 2, 3, "2026-01-01T00:20:00Z");
    let mut d = d;
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(2),
        updated_replicas: Some(2),
        available_replicas: Some(2),
        ready_replicas: Some(2),
        ..Default::default()
    });
    let plan = decide(&d, &[v1.clone(), v2, v3], &[], now());
    // revisionHistoryLimit 1: the oldest old set goes.
    assert!(
        plan.steps.contains(&Step::Delete(
            name(&v1).into(),
            v1.metadata.uid.clone().unwrap()
        )),
        "{:?}",
        plan.steps
    );
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(
        progressing_reason(&plan).as_deref(),
        Some(cond::NEW_RS_AVAILABLE)
    );
    let msg = cond::get(plan.status.as_ref().unwrap(), PROGRESSING)
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        msg.starts_with("ReplicaSet \"web-") && msg.ends_with("\" has successfully progressed."),
        "{msg}"
    );
}

#[test]
fn recreate_waits_for_the_old_pods_to_be_gone() {
    let d = deploy("v2", 2, json!({"type": "Recreate"}));
    let old = set(&d, "v1", 2, 2, 1, "2026-01-01T00:00:00Z");
    let plan = decide(&d, std::slice::from_ref(&old), &[], now());
    assert_eq!(
        sizes(&plan),
        [(name(&old).to_string(), 0)],
        "old down first, nothing new yet"
    );
    // Scaled to zero but a pod still terminating: still no new set.
    let mut old0 = set(&d, "v1", 0, 0, 1, "2026-01-01T00:00:00Z");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": name(&old0), "uid": old0.metadata.uid, "controller": true}],
            "deletionTimestamp": "2026-01-01T00:59:00Z"},
        "status": {"phase": "Running"}})).unwrap();
    let plan = decide(&d, std::slice::from_ref(&old0), &[pod], now());
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    // Gone: the new set at full size at once.
    old0.status.as_mut().unwrap().replicas = 0;
    let plan = decide(&d, &[old0], &[], now());
    let got = sizes(&plan);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, 2);
}

#[test]
fn paused_deployments_scale_but_do_not_roll_out() {
    let mut d = deploy("v2", 3, rolling(1, 0));
    d.spec.as_mut().unwrap().paused = Some(true);
    let old = set(&d, "v1", 3, 3, 1, "2026-01-01T00:00:00Z");
    let plan = decide(&d, std::slice::from_ref(&old), &[], now());
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    let st = plan.status.unwrap();
    let c = cond::get(&st, PROGRESSING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("Unknown", Some(cond::PAUSED))
    );
    // Scaling a paused deployment still resizes its set.
    d.spec.as_mut().unwrap().replicas = Some(5);
    let plan = decide(&d, std::slice::from_ref(&old), &[], now());
    assert_eq!(sizes(&plan), [(name(&old).to_string(), 5)]);
}

#[test]
fn scaling_mid_rollout_splits_between_the_sets() {
    // 10 replicas, surge 2: new at 6 and old at 6 when the size goes to 20.
    let d10 = deploy("v2", 10, rolling(2, 0));
    let old = set(&d10, "v1", 6, 6, 1, "2026-01-01T00:00:00Z");
    let new = set(&d10, "v2", 6, 0, 2, "2026-01-01T00:30:00Z");
    let mut d = d10.clone();
    d.spec.as_mut().unwrap().replicas = Some(20);
    let plan = decide(&d, &[old.clone(), new.clone()], &[], now());
    // 20 + surge 2 allowed: 10 to add, each set's share of 12 growing to its share of 22.
    let mut got = sizes(&plan);
    got.sort();
    let mut want = vec![(name(&old).to_string(), 11), (name(&new).to_string(), 11)];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn an_older_template_is_rolled_back_to_under_a_new_revision() {
    let d = deploy("v1", 2, rolling(1, 0));
    let v1 = set(&d, "v1", 0, 0, 1, "2026-01-01T00:00:00Z");
    let v2 = set(&d, "v2", 2, 2, 2, "2026-01-01T00:10:00Z");
    let plan = decide(&d, &[v1.clone(), v2], &[], now());
    let Step::Update(rs, None) = &plan.steps[0] else {
        panic!("{:?}", plan.steps)
    };
    assert_eq!(name(rs), name(&v1));
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (a[REVISION].as_str(), a[REVISION_HISTORY].as_str()),
        ("3", "1")
    );
}
