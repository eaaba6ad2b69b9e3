//! The pod-template-hash: a label on a Deployment's ReplicaSets and their pods, so sets of
//! different templates never select each other's pods, and the suffix of the set's name.
//! Upstream hashes the template with FNV-1a (32 bit) over a Go-specific dump of the object and
//! writes the decimal number in a vowel-free alphabet; nanokube hashes the template's JSON,
//! so the names have upstream's shape but not its values.

use k8s_openapi::api::core::v1::PodTemplateSpec;

pub const LABEL: &str = "pod-template-hash";

/// rand.SafeEncodeString's alphabet: no vowels (no words), no look-alikes (0/o, 1/l, 3/e).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// ComputeHash: the template, then the collision count (little endian) when there is one, so
/// a collision with a foreign set of the same name is escaped by counting up.
pub fn compute(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend((c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The template without the hash label: what a set's template is compared by.
pub fn without_label(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(LABEL);
    }
    t
}

/// EqualIgnoreHash: the same template once both lose the hash label.
pub fn equal_ignoring(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_label(a) == without_label(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn hash_depends_on_template_and_collisions_only() {
        let a = compute(&template("busybox:1"), None);
        assert_eq!(a, compute(&template("busybox:1"), None));
        assert_ne!(a, compute(&template("busybox:2"), None));
        assert_ne!(a, compute(&template("busybox:1"), Some(1)));
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)), "{a}");
        // A u32 in decimal: at most ten characters.
        assert!((1..=10).contains(&a.len()));
        // Digits land on 4..9 and b, c, d, f: "7c5ddbdf54"-like names.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn the_hash_label_is_not_part_of_the_comparison() {
        let plain = template("busybox:1");
        let mut labelled = plain.clone();
        labelled
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_default()
            .insert(LABEL.into(), "abc".into());
        assert!(equal_ignoring(&plain, &labelled));
        assert!(!equal_ignoring(&plain, &template("busybox:2")));
    }
}
