//! PersistentVolumeClaims from `volumeClaimTemplates`: one per template and ordinal, named
//! `<template>-<set>-<ordinal>`, created before the pod and kept when the pod goes, so the
//! pod that comes back under the same name gets the same storage.
//!
//! `persistentVolumeClaimRetentionPolicy` decides who may delete them, through ownerReferences
//! the garbage collector follows (as upstream): `whenDeleted: Delete` makes the set their
//! controller, `whenScaled: Delete` makes the pod their controller once its ordinal is out of
//! range, and Retain leaves them without either reference.

use super::pods::{self, controller_ref, in_range};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub fn claim_name(template: &str, set_name: &str, ordinal: i32) -> String {
    format!("{template}-{set_name}-{ordinal}")
}

/// (template name, claim) for each template: the template with the per-pod name and the set's
/// selector labels added; its status is the store's business.
pub fn for_ordinal(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return vec![];
    };
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let template = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template, set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (template, claim)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub delete_when_deleted: bool,
    pub delete_when_scaled: bool,
}

pub fn policy(set: &StatefulSet) -> Policy {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let is_delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    Policy {
        delete_when_deleted: is_delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete_when_scaled: is_delete(p.and_then(|p| p.when_scaled.as_ref())),
    }
}

fn matches(r: &OwnerReference, kind: &str, name: Option<&str>) -> bool {
    r.kind == kind && Some(r.name.as_str()) == name
}

/// A reference to a set or pod of the same name but another UID: left by an earlier object
/// under that name, whose deletion the garbage collector is still carrying out.
pub fn has_stale_ref(
    claim: &PersistentVolumeClaim,
    kind: &str,
    name: &str,
    uid: Option<&str>,
) -> bool {
    claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| matches(r, kind, Some(name)) && Some(r.uid.as_str()) != uid)
}

/// The claim's ownerReferences as the retention policy wants them for `pod` (which has a UID,
/// i.e. was created), or `None` when they are right already or must not be touched.
pub fn wanted_refs(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Option<Vec<OwnerReference>> {
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let set_uid = set.metadata.uid.as_deref();
    let pod_uid = pod.metadata.uid.as_deref();
    if pod_uid.is_none()
        || has_stale_ref(claim, "StatefulSet", set_name, set_uid)
        || has_stale_ref(claim, "Pod", pod_name, pod_uid)
    {
        return None;
    }
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    let ours =
        |r: &OwnerReference| Some(r.uid.as_str()) == set_uid || Some(r.uid.as_str()) == pod_uid;
    let mut refs: Vec<OwnerReference> = current.iter().filter(|r| !ours(r)).cloned().collect();
    // Someone else controls the claim: take our references off and add none.
    let foreign_controller = refs.iter().any(|r| r.controller == Some(true));
    if !foreign_controller {
        let p = policy(set);
        let scaled_down = pods::ordinal(set, pod).is_none_or(|o| !in_range(set, o));
        if p.delete_when_scaled && scaled_down {
            refs.push(OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod_name.to_string(),
                uid: pod_uid.unwrap_or_default().to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        } else if p.delete_when_deleted {
            refs.push(controller_ref(set));
        }
    }
    // Order does not matter to the garbage collector; compare as sets.
    let same = refs.len() == current.len() && refs.iter().all(|r| current.contains(r));
    (!same).then_some(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::revision::tests::set_with_image;
    use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy;

    fn set(when_deleted: &str, when_scaled: &str, replicas: i32) -> StatefulSet {
        let mut s = set_with_image("a:1");
        let spec = s.spec.as_mut().unwrap();
        spec.replicas = Some(replicas);
        spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        spec.persistent_volume_claim_retention_policy =
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(when_deleted.into()),
                when_scaled: Some(when_scaled.into()),
            });
        s
    }

    fn pod(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p
    }

    fn claim(refs: Vec<OwnerReference>) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some("www-web-1".into());
        c.metadata.owner_references = Some(refs);
        c
    }

    #[test]
    fn claims_are_named_per_template_and_ordinal() {
        let s = set("Retain", "Retain", 2);
        let cs = for_ordinal(&s, 1);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].0, "www");
        assert_eq!(cs[0].1.metadata.name.as_deref(), Some("www-web-1"));
    }

    #[test]
    fn retain_retain_wants_no_references() {
        let s = set("Retain", "Retain", 2);
        assert_eq!(wanted_refs(&claim(vec![]), &s, &pod("web-1")), None);
        let with_set = claim(vec![controller_ref(&s)]);
        assert_eq!(wanted_refs(&with_set, &s, &pod("web-1")), Some(vec![]));
    }

    #[test]
    fn when_deleted_delete_makes_the_set_the_owner() {
        let s = set("Delete", "Retain", 2);
        let refs = wanted_refs(&claim(vec![]), &s, &pod("web-1")).unwrap();
        assert_eq!(refs, vec![controller_ref(&s)]);
        assert_eq!(wanted_refs(&claim(refs), &s, &pod("web-1")), None);
    }

    #[test]
    fn when_scaled_delete_hands_a_scaled_down_claim_to_its_pod() {
        let s = set("Delete", "Delete", 1);
        let refs = wanted_refs(&claim(vec![controller_ref(&s)]), &s, &pod("web-1")).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (refs[0].kind.as_str(), refs[0].uid.as_str()),
            ("Pod", "uid-web-1")
        );
        // In range, the set owns it instead.
        let s2 = set("Delete", "Delete", 2);
        assert_eq!(
            wanted_refs(&claim(refs), &s2, &pod("web-1")),
            Some(vec![controller_ref(&s2)])
        );
    }

    #[test]
    fn stale_or_foreign_references_are_respected() {
        let s = set("Delete", "Retain", 2);
        let mut old = controller_ref(&s);
        old.uid = "uid-of-an-earlier-web".into();
        assert_eq!(wanted_refs(&claim(vec![old]), &s, &pod("web-1")), None);
        let foreign = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "x".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        assert_eq!(wanted_refs(&claim(vec![foreign]), &s, &pod("web-1")), None);
    }
}
