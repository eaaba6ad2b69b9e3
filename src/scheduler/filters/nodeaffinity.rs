//! NodeAffinity: spec.nodeSelector and requiredDuringSchedulingIgnoredDuringExecution terms
//! (terms ORed, expressions within a term ANDed, as upstream).

use super::Reject;
use crate::scheduler::NodeInfo;
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Pod};
use std::collections::BTreeMap;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub fn expression_matches(
    req: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or(&[]);
    let num = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| num(v)),
                values.first().and_then(|v| num(v)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

pub fn filter(pod: &Pod, node: &NodeInfo) -> Result<(), Reject> {
    let empty = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let name = node.node.metadata.name.clone().unwrap_or_default();
    let fields = BTreeMap::from([("metadata.name".to_string(), name)]);
    let affinity_ok = required.is_none_or(|r| {
        r.node_selector_terms.iter().any(|t| {
            let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
            // matchFields name the node itself (metadata.name is the one field upstream
            // allows): DaemonSet pods are pinned this way.
            let field_reqs = t.match_fields.as_deref().unwrap_or(&[]);
            // A term with no requirements matches nothing, as upstream.
            !(exprs.is_empty() && field_reqs.is_empty())
                && exprs.iter().all(|e| expression_matches(e, labels))
                && field_reqs.iter().all(|e| expression_matches(e, &fields))
        })
    });
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Reject::new(REASON))
    }
}
