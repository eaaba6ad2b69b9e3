//! Upstream's ControllerExpectations, kept as names instead of counts: the pods a set created
//! and deleted in its last sync that the watch has not shown yet. Until the pod cache shows
//! them all (or they expire), the set's pods as seen are stale, and a sync that created or
//! deleted from them would do the same work twice.

use k8s_openapi::api::core::v1::Pod;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upstream's ExpectationsTimeout: a watch event lost for good does not stall a set forever.
pub const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    /// Names of created pods not yet seen.
    created: HashSet<String>,
    /// Uids of deleted pods still seen alive.
    deleted: HashSet<String>,
    since: Instant,
}

/// Keyed by the set's uid.
#[derive(Debug, Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

impl Expectations {
    /// Records what a sync wrote.
    pub fn expect(&self, set: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut all = self.0.lock().expect("expectations lock");
        let e = all.entry(set.to_string()).or_insert_with(|| Pending {
            created: HashSet::new(),
            deleted: HashSet::new(),
            since: Instant::now(),
        });
        e.created.extend(created);
        e.deleted.extend(deleted);
        e.since = Instant::now();
    }

    /// Whether the cache (the set's namespace's pods) shows every write of the last sync. A
    /// pod with a deletionTimestamp counts as deleted, as upstream's informer handler counts it.
    pub fn settled(&self, set: &str, pods: &[Pod], now: Instant) -> bool {
        let mut all = self.0.lock().expect("expectations lock");
        let Some(e) = all.get_mut(set) else {
            return true;
        };
        let seen: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        let alive: HashSet<&str> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        e.created.retain(|n| !seen.contains(n.as_str()));
        e.deleted.retain(|u| alive.contains(u.as_str()));
        let done =
            (e.created.is_empty() && e.deleted.is_empty()) || now.duration_since(e.since) > TIMEOUT;
        if done {
            all.remove(set);
        }
        done
    }

    /// The set is gone: nothing more to wait for.
    pub fn forget(&self, set: &str) {
        self.0.lock().expect("expectations lock").remove(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                deletion_timestamp: deleting.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn settles_once_creations_and_deletions_are_seen() {
        let e = Expectations::default();
        let now = Instant::now();
        e.expect("rs", vec!["web-a".into()], vec!["uid-old".into()]);
        assert!(!e.settled("rs", &[pod("old", false)], now));
        assert!(!e.settled("rs", &[pod("old", true)], now));
        assert!(e.settled("rs", &[pod("old", true), pod("web-a", false)], now));
        assert!(e.settled("other", &[], now));
    }

    #[test]
    fn expires() {
        let e = Expectations::default();
        e.expect("rs", vec!["never-seen".into()], vec![]);
        assert!(!e.settled("rs", &[], Instant::now()));
        assert!(e.settled("rs", &[], Instant::now() + TIMEOUT + Duration::from_secs(1)));
    }
}
