//! ControllerRevisions: the StatefulSet's pod template history. Each revision stores a strategic
//! merge patch, `{"spec":{"template":{..., "$patch":"replace"}}}`, that puts its template back
//! on the set; `kubectl rollout undo` applies exactly that patch and `kubectl rollout history`
//! prints the template out of it. A revision is named `<set>-<hash>` where the hash covers the
//! patch and the set's collisionCount, and pods carry that name in `controller-revision-hash`.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The label a revision's hash is kept in (pods use `controller-revision-hash` for the name).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// A revision reduced to what the controller needs: its name and the template it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub name: String,
    pub template: PodTemplateSpec,
}

/// The patch a revision of `set`'s current template stores.
pub fn patch_of(set: &StatefulSet) -> Value {
    let template = set.spec.as_ref().map(|s| &s.template);
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    } else {
        t = json!({"$patch": "replace"});
    }
    json!({"spec": {"template": t}})
}

/// The template a revision's patch puts back, if it holds one.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// FNV-1 (32 bit) over the patch's bytes then the collision count in decimal, written in the
/// alphabet upstream uses for generated names (no vowels, no look-alike digits), so names
/// have the familiar shape and a collision can be escaped by counting up.
pub fn hash(data: &Value, collision_count: i32) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes.iter().chain(collision_count.to_string().as_bytes()) {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// `<set>-<hash>`, the set's name cut to keep the whole within 253 characters.
pub fn name(set_name: &str, hash: &str) -> String {
    let prefix: String = set_name.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of `set`'s current template with number `number`: labelled with the
/// template's labels (so `kubectl rollout history` finds it through the set's selector), the
/// set's annotations (its change-cause), and controlled by the set.
pub fn new_revision(set: &StatefulSet, number: i64, collision_count: i32) -> ControllerRevision {
    let data = patch_of(set);
    let h = hash(&data, collision_count);
    let mut labels: BTreeMap<String, String> = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), h.clone());
    let mut rev = ControllerRevision {
        data: Some(RawExtension(data)),
        revision: number,
        ..Default::default()
    };
    rev.metadata.name = Some(name(set.metadata.name.as_deref().unwrap_or(""), &h));
    rev.metadata.namespace = set.metadata.namespace.clone();
    rev.metadata.labels = Some(labels);
    rev.metadata.annotations = Some(set.metadata.annotations.clone().unwrap_or_default());
    rev.metadata.owner_references = Some(vec![super::pods::controller_ref(set)]);
    rev
}

/// Whether two revisions hold the same template (compared as JSON values, so a store that
/// reorders keys does not make a new revision).
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let la = a.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
    let lb = b.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
    if let (Some(x), Some(y)) = (la, lb) {
        if x != y {
            return false;
        }
    }
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Oldest first: by revision number, then creation time, then name.
pub fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t = |r: &ControllerRevision| {
                    r.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second())
                };
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number the next revision gets (revisions sorted oldest first).
pub fn next_number(sorted: &[ControllerRevision]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// What to do to have a revision for the set's current template.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The newest revision already holds it.
    Latest(usize),
    /// An older revision holds it (a rollback): it is renumbered to become the newest.
    Renumber(usize, i64),
    /// None does: this one is created.
    Create(Box<ControllerRevision>),
}

/// Finds the update revision among `sorted` (oldest first) for the set's template.
pub fn resolve(
    set: &StatefulSet,
    sorted: &[ControllerRevision],
    collision_count: i32,
) -> Resolution {
    let wanted = new_revision(set, next_number(sorted), collision_count);
    let equal_at: Vec<usize> = (0..sorted.len())
        .filter(|&i| equal(&sorted[i], &wanted))
        .collect();
    match equal_at.last() {
        Some(&i) if i + 1 == sorted.len() => Resolution::Latest(i),
        Some(&i) => Resolution::Renumber(i, wanted.revision),
        None => Resolution::Create(Box::new(wanted)),
    }
}

/// Names of old revisions to delete so at most `limit` revisions remain that no pod uses and
/// that are neither the current nor the update revision (oldest go first).
pub fn to_prune(
    sorted: &[ControllerRevision],
    live: &BTreeSet<String>,
    limit: usize,
) -> Vec<String> {
    let history: Vec<&String> = sorted
        .iter()
        .filter_map(|r| r.metadata.name.as_ref())
        .filter(|n| !live.contains(*n))
        .collect();
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).cloned().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn set_with_image(image: &str) -> StatefulSet {
        let mut set = StatefulSet::default();
        set.metadata.name = Some("web".into());
        set.metadata.namespace = Some("default".into());
        set.metadata.uid = Some("uid-web".into());
        set.spec = Some(StatefulSetSpec {
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        });
        set
    }

    #[test]
    fn patch_replaces_the_template_and_round_trips() {
        let set = set_with_image("a:1");
        let rev = new_revision(&set, 1, 0);
        let data = &rev.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data.as_object().unwrap().len(), 1);
        assert_eq!(template_of(&rev), Some(set.spec.unwrap().template));
        assert_eq!(rev.metadata.labels.as_ref().unwrap()["app"], "web");
        let h = &rev.metadata.labels.as_ref().unwrap()[HASH_LABEL];
        assert_eq!(
            rev.metadata.name.as_deref(),
            Some(format!("web-{h}").as_str())
        );
        let owner = &rev.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
    }

    #[test]
    fn hash_depends_on_template_and_collision_count() {
        let a = patch_of(&set_with_image("a:1"));
        let b = patch_of(&set_with_image("a:2"));
        assert_eq!(hash(&a, 0), hash(&a, 0));
        assert_ne!(hash(&a, 0), hash(&b, 0));
        assert_ne!(hash(&a, 0), hash(&a, 1));
        assert!(hash(&a, 0)
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn resolve_reuses_renumbers_or_creates() {
        let s1 = set_with_image("a:1");
        let s2 = set_with_image("a:2");
        let r1 = new_revision(&s1, 1, 0);
        let r2 = new_revision(&s2, 2, 0);
        let revs = vec![r1.clone(), r2.clone()];
        assert_eq!(resolve(&s2, &revs, 0), Resolution::Latest(1));
        // Back to the first template: the old revision becomes number 3.
        assert_eq!(resolve(&s1, &revs, 0), Resolution::Renumber(0, 3));
        match resolve(&set_with_image("a:3"), &revs, 0) {
            Resolution::Create(r) => assert_eq!(r.revision, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prune_keeps_live_and_the_newest_history() {
        let revs: Vec<ControllerRevision> = (1..=5)
            .map(|i| new_revision(&set_with_image(&format!("a:{i}")), i, 0))
            .collect();
        let n = |i: usize| revs[i].metadata.name.clone().unwrap();
        let live: BTreeSet<String> = [n(0), n(4)].into();
        // History is 2, 3, 4 (indices 1..=3); limit 1 keeps only 4.
        assert_eq!(to_prune(&revs, &live, 1), vec![n(1), n(2)]);
        assert!(to_prune(&revs, &live, 10).is_empty());
    }
}
