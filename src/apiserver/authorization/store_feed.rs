//! Keeps an in-memory index current from the server's own store: a list of some key prefixes,
//! then every change of their watches applied as it comes (a watch that ends or is compacted is
//! made good by a relist). The authorizers' indexes (the node graph, the RBAC policy) are fed
//! this way, so a decision never reads the store and costs nothing like the store's size.

use crate::apiserver::encoding;
use crate::apiserver::handler::Api;
use futures::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// An index the feed is the one writer of.
pub trait Index: Send + Sync + 'static {
    /// Replaces everything known with the objects listed, one list per prefix.
    fn reset(&self, lists: Vec<Vec<Value>>);
    /// One change under prefix number `which`: the object as stored now, or as it was when
    /// `deleted`.
    fn apply(&self, which: usize, obj: &Value, deleted: bool);
}

/// Fills the index before returning (so it answers from the server's first request), then
/// follows the prefixes until the server stops.
pub async fn start(api: &Arc<Api>, prefixes: Vec<String>, index: Arc<dyn Index>) {
    let listed = load(api, &prefixes, &*index).await;
    let api = api.clone();
    tokio::spawn(async move { follow(api, prefixes, index, listed).await });
}

/// Lists every prefix at one revision each and resets the index; the revisions listed at.
async fn load(api: &Api, prefixes: &[String], index: &dyn Index) -> Option<Vec<i64>> {
    let mut lists = Vec::new();
    let mut revisions = Vec::new();
    for p in prefixes {
        let (objects, rev) = list_all(api, p).await?;
        lists.push(objects);
        revisions.push(rev);
    }
    index.reset(lists);
    Some(revisions)
}

async fn follow(
    api: Arc<Api>,
    prefixes: Vec<String>,
    index: Arc<dyn Index>,
    mut listed: Option<Vec<i64>>,
) {
    let mut shutdown = api.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(revisions) = listed.take() else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            listed = load(&api, &prefixes, &*index).await;
            continue;
        };
        let mut streams = Vec::new();
        for (i, (p, rev)) in prefixes.iter().zip(&revisions).enumerate() {
            match api.store.watch(p, *rev).await {
                Ok(s) => streams.push(s.map(move |e| (i, e)).boxed()),
                Err(_) => break,
            }
        }
        if streams.len() != prefixes.len() {
            continue;
        }
        let mut events = futures::stream::select_all(streams);
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some((i, Ok(ev))) => apply(&*index, i, &ev),
                    _ => break,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn apply(index: &dyn Index, which: usize, ev: &crate::store::Event) {
    use crate::store::Event;
    let (kv, deleted) = match ev {
        Event::Put { kv, .. } => (kv, false),
        Event::Delete { prev, .. } => (prev, true),
    };
    if let Ok(obj) = encoding::decode_stored(&kv.value, kv.mod_revision) {
        index.apply(which, &obj, deleted);
    }
}

/// Every object under a prefix, and the revision read at.
async fn list_all(api: &Api, prefix: &str) -> Option<(Vec<Value>, i64)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    let mut revision = None;
    loop {
        let page = api
            .store
            .list(prefix, after.as_deref(), 1000, revision)
            .await
            .ok()?;
        revision = Some(page.revision);
        for kv in &page.items {
            if let Ok(v) = encoding::decode_stored(&kv.value, kv.mod_revision) {
                out.push(v);
            }
        }
        if !page.more {
            return Some((out, page.revision));
        }
        after = page.items.last().map(|kv| kv.key.clone());
    }
}
