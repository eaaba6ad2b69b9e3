//! A resource's objects as plugins need them on every write (webhook configurations, priority
//! classes): read once, then kept current by a watch of the resource's store prefix, as
//! upstream's informers, so a write does not list them. Until first use, or after the watch
//! ends, the next use reads them again.

use crate::apiserver::encoding;
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

type Shared<T> = Arc<RwLock<Option<Arc<T>>>>;

/// The objects of one resource, made into `T` by `build` (given them in key order, i.e. by
/// name).
pub struct Watched<T> {
    group: &'static str,
    plural: &'static str,
    build: fn(Vec<Value>) -> T,
    current: Shared<T>,
    watching: Arc<AtomicBool>,
}

impl<T: Send + Sync + 'static> Watched<T> {
    pub fn new(group: &'static str, plural: &'static str, build: fn(Vec<Value>) -> T) -> Self {
        Watched {
            group,
            plural,
            build,
            current: Arc::default(),
            watching: Arc::default(),
        }
    }

    /// What is stored now (as of the last change the watch delivered).
    pub async fn get(&self, api: &Api) -> Result<Arc<T>, ApiError> {
        let cached = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(v) = cached {
            return Ok(v);
        }
        let (objects, rev) = self.load(api).await?;
        let value = Arc::new((self.build)(objects));
        if self.watching.swap(true, Ordering::AcqRel) {
            return Ok(value);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(value.clone());
        let Some(api) = api.me.upgrade() else {
            self.watching.store(false, Ordering::Release);
            return Ok(value);
        };
        let me = Watched {
            group: self.group,
            plural: self.plural,
            build: self.build,
            current: self.current.clone(),
            watching: self.watching.clone(),
        };
        tokio::spawn(async move {
            me.keep_current(&api, rev).await;
            *me.current.write().unwrap_or_else(|e| e.into_inner()) = None;
            me.watching.store(false, Ordering::Release);
        });
        Ok(value)
    }

    fn prefix(&self, api: &Api) -> Option<String> {
        // Every resource watched here is served as v1.
        api.registry
            .lookup(self.group, "v1", self.plural)
            .map(|info| info.list_prefix(None))
    }

    async fn load(&self, api: &Api) -> Result<(Vec<Value>, i64), ApiError> {
        let Some(prefix) = self.prefix(api) else {
            return Ok((Vec::new(), 0));
        };
        let page = api.store.list(&prefix, None, 0, None).await?;
        let objects = page
            .items
            .iter()
            .map(|kv| encoding::decode_stored(&kv.value, kv.mod_revision))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((objects, page.revision))
    }

    /// Rebuilds after every change under the prefix, until the watch ends or the server stops.
    async fn keep_current(&self, api: &Arc<Api>, rev: i64) {
        use futures::StreamExt;
        let Some(prefix) = self.prefix(api) else {
            return;
        };
        let Ok(mut events) = api.store.watch(&prefix, rev).await else {
            return;
        };
        let mut shutdown = api.shutdown.clone();
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(_)) => match self.load(api).await {
                        Ok((objects, _)) => {
                            let value = Arc::new((self.build)(objects));
                            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(value);
                        }
                        Err(_) => return,
                    },
                    _ => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}
