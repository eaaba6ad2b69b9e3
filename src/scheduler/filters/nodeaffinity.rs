//! NodeAffinity: spec.nodeSelector and requiredDuringSchedulingIgnoredDuringExecution terms
//! (terms ORed, expressions within a term ANDed, as upstream).

use super::Reject;
use crate::scheduler::{Cycle, NodeInfo};
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};
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

/// One node selector term against a node; a term with no requirements matches nothing.
pub fn term_matches(t: &NodeSelectorTerm, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    // matchFields name the node itself (metadata.name is the one field upstream allows):
    // DaemonSet pods are pinned this way.
    let field_reqs = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && field_reqs.is_empty() {
        return false;
    }
    let fields = BTreeMap::from([(
        "metadata.name".to_string(),
        node.metadata.name.clone().unwrap_or_default(),
    )]);
    exprs.iter().all(|e| expression_matches(e, labels))
        && field_reqs.iter().all(|e| expression_matches(e, &fields))
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.metadata.labels.as_ref();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    if matches(c.pod, &node.node) {
        Ok(())
    } else {
        Err(Reject::new(REASON))
    }
}
