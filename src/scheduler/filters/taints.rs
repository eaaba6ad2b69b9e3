//! TaintToleration: NoSchedule and NoExecute taints keep off pods without a matching toleration.

use super::Reject;
use crate::scheduler::{Cycle, NodeInfo};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};

pub fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    let tols = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    tols.into_iter().flatten().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let key = t.key.as_deref().unwrap_or("");
        match t.operator.as_deref().unwrap_or("Equal") {
            "Exists" => effect_ok && (key.is_empty() || key == taint.key),
            _ => {
                effect_ok
                    && key == taint.key
                    && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        }
    })
}

/// The first NoSchedule/NoExecute taint the pod does not tolerate.
pub fn untolerated<'a>(pod: &Pod, node: &'a Node) -> Option<&'a Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .find(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(pod, t))
}

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    let Some(t) = untolerated(c.pod, &node.node) else {
        return Ok(());
    };
    let shown = match t.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{}: {}", t.key, v),
        _ => t.key.clone(),
    };
    Err(Reject::new(format!(
        "node(s) had untolerated taint {{{shown}}}"
    )))
}
