//! Whether a reflector has finished its first list, asked without waiting for it.
//!
//! Reconcilers must not `await` `Store::wait_until_ready`. kube-runtime signals readiness
//! through a oneshot channel, and a oneshot remembers only the task that polled it last: when
//! several reconciles are parked on it, the list's completion wakes that one alone, and the
//! others stay pending for good. The controller's runner never starts a second reconcile of an
//! object while its first is still running, so those objects are never synced again (seen as
//! an old ReplicaSet that was never scaled down after a server restart mid-rollout). Asking
//! without waiting, and requeueing shortly when the answer is no, keeps every object moving.
//!
//! Only for the stores a controller reads besides its own (the runner waits for that one
//! before any reconcile starts): a poll that finds the list unfinished leaves a no-op waker in
//! the oneshot, which is harmless only while nobody else waits on the same store.

use futures::FutureExt;
use kube::runtime::reflector::{Lookup, Store};
use std::hash::Hash;
use std::time::Duration;

/// How soon a reconcile that found a cache unlisted runs again.
pub const RETRY: Duration = Duration::from_millis(100);

/// True once `store`'s reflector has applied its first complete list.
pub fn listed<K>(store: &Store<K>) -> bool
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    #[test]
    fn unlisted_until_the_first_list_is_applied() {
        let (store, mut writer) = reflector::store::<Pod>();
        assert!(!listed(&store));
        writer.apply_watcher_event(&Event::Init);
        assert!(!listed(&store));
        writer.apply_watcher_event(&Event::InitDone);
        assert!(listed(&store));
        assert!(listed(&store), "the answer is kept");
    }

    /// The failure this module avoids, kept as a record: of two tasks parked on the signal,
    /// the one that polled first is not woken by the list's completion.
    #[tokio::test]
    async fn kube_wakes_only_the_last_task_parked_on_readiness() {
        let (store, mut writer) = reflector::store::<Pod>();
        let (first, second) = (store.clone(), store.clone());
        let a = tokio::spawn(async move { first.wait_until_ready().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = tokio::spawn(async move { second.wait_until_ready().await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        assert!(b.await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !a.is_finished(),
            "kube-runtime now wakes every waiter: this module may go"
        );
        a.abort();
    }
}
