//! A StatefulSet's pods: their stable identity (`<set>-<ordinal>`, hostname and subdomain,
//! the pod-name and pod-index labels), how a pod is made from a revision's template, and the
//! states the controller waits on.

use super::claims;
use super::revision::Revision;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The reference that makes the set the controller of a pod, claim or revision.
pub fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.metadata.name.clone().unwrap_or_default(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `set` (by UID) is the controller of an object with these references.
pub fn controlled_by(refs: Option<&Vec<OwnerReference>>, set_uid: &str) -> bool {
    refs.into_iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == set_uid)
}

/// What the set does with a pod of its namespace that matches or that it controls, as
/// upstream's ControllerRefManager: it adopts an orphan that its selector matches and whose
/// name is `<set>-<n>`, and releases a pod it controls that its selector no longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Owned,
    Adopt,
    Release,
    NotOurs,
}

pub fn ownership(set: &StatefulSet, pod: &Pod) -> Ownership {
    use kube::core::{Selector, SelectorExt};
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    let refs = pod.metadata.owner_references.as_ref();
    let selected = set
        .spec
        .as_ref()
        .and_then(|s| Selector::try_from(s.selector.clone()).ok())
        .is_some_and(|sel| sel.matches(pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())));
    let member = selected && ordinal(set, pod).is_some();
    let deleting = set.metadata.deletion_timestamp.is_some();
    if controlled_by(refs, set_uid) {
        return if member || deleting {
            Ownership::Owned
        } else {
            Ownership::Release
        };
    }
    let has_controller = refs
        .into_iter()
        .flatten()
        .any(|r| r.controller == Some(true));
    if member && !has_controller && !deleting && !is_terminating(pod) {
        Ownership::Adopt
    } else {
        Ownership::NotOurs
    }
}

/// The first ordinal (`spec.ordinals.start`, 0 by default).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// Whether the ordinal is one the set wants now.
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

/// The parent name and ordinal a pod name encodes (`web-12` -> `web`, 12).
pub fn parse_name(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if parent.is_empty() || ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// The ordinal of a pod of this set, `None` for a pod whose name is not `<set>-<n>`.
pub fn ordinal(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let (parent, ord) = parse_name(pod.metadata.name.as_deref()?)?;
    (Some(parent) == set.metadata.name.as_deref()).then_some(ord)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.metadata.name.as_deref().unwrap_or(""))
}

/// The identity labels a pod of this ordinal must carry.
pub fn identity_labels(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, String> {
    [
        (POD_NAME_LABEL.to_string(), pod_name(set, ordinal)),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ]
    .into()
}

/// The identity labels that are missing or wrong on `pod`, `None` when it has them all.
pub fn identity_repair(
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
) -> Option<BTreeMap<String, String>> {
    let have = pod.metadata.labels.clone().unwrap_or_default();
    let want = identity_labels(set, ordinal);
    want.iter()
        .any(|(k, v)| have.get(k) != Some(v))
        .then_some(want)
}

/// The pod for `ordinal` at `revision`: the template with the stable name as hostname, the
/// governing Service as subdomain (the kubelet then writes `<pod>.<service>.<ns>.svc...` into
/// /etc/hosts), identity and revision labels, and one volume per claim template.
pub fn new_pod(set: &StatefulSet, revision: &Revision, ordinal: i32) -> Pod {
    let name = pod_name(set, ordinal);
    let t = &revision.template;
    let tm = t.metadata.clone().unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    labels.extend(identity_labels(set, ordinal));
    labels.insert(REVISION_LABEL.into(), revision.name.clone());
    let mut spec = t.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // Claim volumes replace any template volume of the same name.
    let claim_volumes: Vec<Volume> = claims::for_ordinal(set, ordinal)
        .into_iter()
        .map(|(template, claim)| Volume {
            name: template,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    let mut volumes = claim_volumes.clone();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claim_volumes.iter().any(|c| c.name == v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// When the pod's Ready condition last became True, if it is True now.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready_since(pod).is_some()
}

/// Running, Ready, and Ready for longer than minReadySeconds.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_running_and_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod).flatten() {
        Some(t) => t.as_second() + i64::from(min_ready_seconds) < now.as_second(),
        None => false,
    }
}

/// Running and Ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::revision::tests::set_with_image;

    #[test]
    fn names_parse_back_to_set_and_ordinal() {
        assert_eq!(parse_name("web-0"), Some(("web", 0)));
        assert_eq!(parse_name("my-db-12"), Some(("my-db", 12)));
        assert_eq!(parse_name("web-"), None);
        assert_eq!(parse_name("web-x1"), None);
        assert_eq!(parse_name("web"), None);
    }

    #[test]
    fn orphans_are_adopted_and_strays_released() {
        let mut set = set_with_image("a:1");
        set.spec.as_mut().unwrap().selector.match_labels =
            Some([("app".to_string(), "web".to_string())].into());
        let rev = Revision {
            name: "web-abc".into(),
            template: set.spec.as_ref().unwrap().template.clone(),
        };
        let mut pod = new_pod(&set, &rev, 0);
        assert_eq!(ownership(&set, &pod), Ownership::Owned);
        pod.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("app".into(), "other".into());
        assert_eq!(ownership(&set, &pod), Ownership::Release);
        let mut orphan = new_pod(&set, &rev, 1);
        orphan.metadata.owner_references = None;
        assert_eq!(ownership(&set, &orphan), Ownership::Adopt);
        orphan.metadata.name = Some("other-1".into());
        assert_eq!(ownership(&set, &orphan), Ownership::NotOurs);
    }

    #[test]
    fn new_pod_has_stable_identity() {
        let mut set = set_with_image("a:1");
        set.spec.as_mut().unwrap().service_name = Some("nginx".into());
        let rev = Revision {
            name: "web-abc".into(),
            template: set.spec.as_ref().unwrap().template.clone(),
        };
        let pod = new_pod(&set, &rev, 3);
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-3"));
        assert_eq!(labels[POD_NAME_LABEL], "web-3");
        assert_eq!(labels[POD_INDEX_LABEL], "3");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-3"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        assert!(controlled_by(
            pod.metadata.owner_references.as_ref(),
            "uid-web"
        ));
        assert_eq!(identity_repair(&set, &pod, 3), None);
    }
}
