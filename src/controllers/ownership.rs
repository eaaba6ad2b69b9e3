//! What the workload controllers share about ownership: the controller reference, label
//! selectors, and the claim rule of upstream's ControllerRefManager (keep what we own and
//! still select, adopt matching orphans, release what we own but no longer select).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The reference a controller puts on what it creates or adopts: it is the controller, and the
/// owner's foreground deletion waits for the dependent.
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// metav1.LabelSelectorAsSelector: an empty selector selects everything, a missing one
/// nothing, and an unknown operator nothing.
pub fn selects(sel: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = sel else { return false };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The selector that selects nothing but these labels' values (a ReplicationController's).
pub fn equality_selector(labels: Option<&BTreeMap<String, String>>) -> Option<LabelSelector> {
    labels.map(|l| LabelSelector {
        match_labels: Some(l.clone()),
        match_expressions: None,
    })
}

/// What a controller does with one object in its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and selected.
    Keep,
    /// An orphan we select: take it.
    Adopt,
    /// Ours but no longer selected: let go of it.
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// ClaimObject's rule. A controller being deleted neither adopts nor releases, and an object
/// being deleted is not adopted.
pub fn claim(
    owner_uid: &str,
    owner_deleting: bool,
    selector: Option<&LabelSelector>,
    obj: &ObjectMeta,
) -> Claim {
    let selected = selects(selector, obj.labels.as_ref());
    match controller_of(obj) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if selected => Claim::Keep,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !selected || obj.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The merge patch that adds `ours` to an object's references, pinned to the version the
/// decision was made on (a concurrent change is a conflict, retried by the next sync).
pub fn adopt_patch(obj: &ObjectMeta, ours: OwnerReference) -> serde_json::Value {
    let mut refs = obj.owner_references.clone().unwrap_or_default();
    refs.push(ours);
    serde_json::json!({"metadata": {"ownerReferences": refs,
        "resourceVersion": obj.resource_version}})
}

/// The merge patch that removes the reference to `owner_uid`.
pub fn release_patch(obj: &ObjectMeta, owner_uid: &str) -> serde_json::Value {
    let refs: Vec<&OwnerReference> = obj
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .collect();
    serde_json::json!({"metadata": {"ownerReferences": refs,
        "resourceVersion": obj.resource_version}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_as_upstream() {
        let app = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selects(Some(&app), Some(&labels(&[("app", "web")]))));
        assert!(!selects(
            Some(&app),
            Some(&labels(&[("app", "web"), ("tier", "db")]))
        ));
        assert!(!selects(Some(&app), None));
        assert!(selects(Some(&LabelSelector::default()), None));
        assert!(!selects(None, Some(&labels(&[("app", "web")]))));
    }

    #[test]
    fn claim_rules() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: None,
        };
        let mut meta = ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        assert_eq!(claim("u1", false, Some(&sel), &meta), Claim::Adopt);
        assert_eq!(claim("u1", true, Some(&sel), &meta), Claim::Ignore);
        meta.owner_references = Some(vec![controller_ref("apps/v1", "ReplicaSet", "a", "u1")]);
        assert_eq!(claim("u1", false, Some(&sel), &meta), Claim::Keep);
        assert_eq!(claim("u2", false, Some(&sel), &meta), Claim::Ignore);
        meta.labels = Some(labels(&[("app", "other")]));
        assert_eq!(claim("u1", false, Some(&sel), &meta), Claim::Release);
        assert_eq!(claim("u1", true, Some(&sel), &meta), Claim::Ignore);
    }
}
