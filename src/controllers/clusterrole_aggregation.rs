//! ClusterRole aggregation: a ClusterRole with an `aggregationRule` gets as its rules the
//! rules of every other ClusterRole its label selectors match, as upstream's
//! clusterrole-aggregation controller keeps them: in the order of the matching roles' names,
//! each rule once. Any ClusterRole change can change any aggregate, so every change re-checks
//! every aggregating role against one cache (there are tens of ClusterRoles, not thousands);
//! only an aggregate whose rules differ is written.

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use std::time::Duration;

/// The rules `role` aggregates from `all`, or None when it aggregates nothing.
pub fn aggregated_rules(role: &ClusterRole, all: &[&ClusterRole]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .as_ref()?;
    let mut rules: Vec<PolicyRule> = Vec::new();
    for sel in selectors {
        let mut matching: Vec<&&ClusterRole> = all
            .iter()
            .filter(|r| r.metadata.name != role.metadata.name)
            .filter(|r| super::ownership::selects(Some(sel), r.metadata.labels.as_ref()))
            .collect();
        matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for r in matching {
            for rule in r.rules.iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let api: Api<ClusterRole> = Api::all(client);
    let (reader, writer) = reflector::store();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        // Wait for the whole list before judging, then act once per change.
        if matches!(
            event,
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) | Err(_)
        ) {
            continue;
        }
        let roles = reader.state();
        let all: Vec<&ClusterRole> = roles.iter().map(|r| r.as_ref()).collect();
        for role in &all {
            let Some(rules) = aggregated_rules(role, &all) else {
                continue;
            };
            if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
                continue;
            }
            let name = role.metadata.name.clone().unwrap_or_default();
            let patch = serde_json::json!({"rules": rules});
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // The watch brings the role back (or the next change does): try again then.
                tracing::warn!(clusterrole = %name, error = %e, "aggregating rules");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;

    fn role(name: &str, label: Option<&str>, verbs: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| BTreeMap::from([(l.to_string(), "true".to_string())])),
                ..Default::default()
            },
            rules: Some(
                verbs
                    .iter()
                    .map(|v| PolicyRule {
                        verbs: vec![v.to_string()],
                        resources: Some(vec!["pods".into()]),
                        api_groups: Some(vec!["".into()]),
                        ..Default::default()
                    })
                    .collect(),
            ),
            aggregation_rule: None,
        }
    }

    #[test]
    fn rules_come_from_matching_roles_by_name_each_once() {
        let mut agg = role("monitoring", None, &[]);
        agg.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([("to-mon".into(), "true".into())])),
                ..Default::default()
            }]),
        });
        let b = role("b", Some("to-mon"), &["list", "get"]);
        let a = role("a", Some("to-mon"), &["get"]);
        let other = role("c", Some("elsewhere"), &["delete"]);
        let all = vec![&agg, &b, &a, &other];
        let rules = aggregated_rules(&agg, &all).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["get", "list"]);
        assert_eq!(aggregated_rules(&a, &all), None);
    }
}
