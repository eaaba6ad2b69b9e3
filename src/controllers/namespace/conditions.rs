//! The status conditions of a terminating namespace, pure, worded as upstream's namespace
//! deleter words them (pkg/controller/namespace/deletion/status_condition_utils.go).

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// The five conditions the deleter keeps, in upstream's order, with the reason and message
/// each has when all is well.
const OK: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// What one pass over a namespace's content found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Group versions discovery could not read, with why (`apps/v1: ...`).
    pub discovery_failures: Vec<String>,
    /// One message per resource whose deletion failed.
    pub content_failures: Vec<String>,
    /// Objects left, per `resource.group`.
    pub remaining: BTreeMap<String, usize>,
    /// Objects left, per finalizer they carry.
    pub finalizers: BTreeMap<String, usize>,
}

/// The failing conditions of a pass: (type, reason, message).
fn failures(p: &Pass) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if !p.discovery_failures.is_empty() {
        out.push((
            "NamespaceDeletionDiscoveryFailure",
            "DiscoveryFailed",
            format!(
                "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
                p.discovery_failures.len(),
                p.discovery_failures.join(", ")
            ),
        ));
    }
    if !p.content_failures.is_empty() {
        let mut msgs = p.content_failures.clone();
        msgs.sort();
        out.push((
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                msgs.len(),
                msgs.join(", ")
            ),
        ));
    }
    let counted = |m: &BTreeMap<String, usize>, what: &str| {
        let mut parts: Vec<String> = m
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {what} {n} resource instances"))
            .collect();
        parts.sort();
        parts
    };
    let remaining = counted(&p.remaining, "has");
    if !remaining.is_empty() {
        out.push((
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", remaining.join(", ")),
        ));
    }
    let finalizers = counted(&p.finalizers, "in");
    if !finalizers.is_empty() {
        out.push((
            "NamespaceFinalizersRemaining",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                finalizers.join(", ")
            ),
        ));
    }
    out
}

/// The namespace's conditions after a pass: each of the five set to its failure or its "ok"
/// variant, the transition time moved only when the status flips. Other conditions are kept.
/// None if nothing changed.
pub fn update(
    old: &[NamespaceCondition],
    pass: &Pass,
    now: Timestamp,
) -> Option<Vec<NamespaceCondition>> {
    let failing = failures(pass);
    let mut out = old.to_vec();
    let mut changed = false;
    for (kind, ok_reason, ok_message) in OK {
        let (status, reason, message) = match failing.iter().find(|f| f.0 == kind) {
            Some((_, r, m)) => ("True", r.to_string(), m.clone()),
            None => ("False", ok_reason.to_string(), ok_message.to_string()),
        };
        let new = NamespaceCondition {
            type_: kind.into(),
            status: status.into(),
            reason: Some(reason),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        };
        match out.iter_mut().find(|c| c.type_ == kind) {
            None => {
                out.push(new);
                changed = true;
            }
            Some(c) => {
                if c.status != new.status || c.reason != new.reason || c.message != new.message {
                    if c.status != new.status {
                        c.last_transition_time = new.last_transition_time;
                    }
                    c.status = new.status;
                    c.reason = new.reason;
                    c.message = new.message;
                    changed = true;
                }
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn get<'a>(cs: &'a [NamespaceCondition], kind: &str) -> &'a NamespaceCondition {
        cs.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_clean_pass_sets_the_five_ok_conditions() {
        let cs = update(&[], &Pass::default(), t(10)).unwrap();
        assert_eq!(cs.len(), 5);
        let c = get(&cs, "NamespaceContentRemaining");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(
            c.message.as_deref(),
            Some("All content successfully removed")
        );
        // The same pass again changes nothing.
        assert_eq!(update(&cs, &Pass::default(), t(20)), None);
    }

    #[test]
    fn remaining_content_and_failures_read_as_upstream() {
        let pass = Pass {
            discovery_failures: vec![
                "metrics.k8s.io/v1beta1: the server is currently unable to handle the request"
                    .into(),
            ],
            content_failures: vec![
                "unexpected items still remain in namespace: ns for gvr: /v1, Resource=pods".into(),
            ],
            remaining: [("pods.".to_string(), 2), ("configmaps.".to_string(), 1)].into(),
            finalizers: [("example.com/hold".to_string(), 1)].into(),
        };
        let cs = update(&[], &pass, t(10)).unwrap();
        assert_eq!(
            get(&cs, "NamespaceContentRemaining").message.as_deref(),
            Some("Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances")
        );
        assert_eq!(
            get(&cs, "NamespaceContentRemaining").reason.as_deref(),
            Some("SomeResourcesRemain")
        );
        assert_eq!(
            get(&cs, "NamespaceFinalizersRemaining").message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        assert_eq!(
            get(&cs, "NamespaceDeletionContentFailure").message.as_deref(),
            Some("Failed to delete all resource types, 1 remaining: unexpected items still remain in namespace: ns for gvr: /v1, Resource=pods")
        );
        assert_eq!(
            get(&cs, "NamespaceDeletionDiscoveryFailure").message.as_deref(),
            Some("Discovery failed for some groups, 1 failing: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request")
        );
        assert_eq!(
            get(&cs, "NamespaceDeletionGroupVersionParsingFailure").status,
            "False"
        );
        // Cleared: back to the ok variant, with a new transition time.
        let cs2 = update(&cs, &Pass::default(), t(30)).unwrap();
        let c = get(&cs2, "NamespaceContentRemaining");
        assert_eq!(c.status, "False");
        assert_eq!(c.last_transition_time, Some(Time(t(30))));
        assert_eq!(
            get(&cs2, "NamespaceDeletionGroupVersionParsingFailure").last_transition_time,
            Some(Time(t(10)))
        );
    }
}
