//! Watch streams: replay from the log, then live events from the writer's broadcast, with no gap
//! and no duplicate at the seam.
//!
//! The receiver is subscribed *before* the replay reads the log. Every event the replay cannot
//! see (committed after its read) is therefore in the receiver, and every event both see is
//! dropped because its revision is not above the last one delivered. A watcher that falls so far
//! behind that the broadcast overwrote events it had not read does not fail: it subscribes again
//! and replays the missed range from the log, and only when compaction has removed that range
//! does it get `Compacted` (the API server's 410 Gone).

use super::reader::{self, Readers};
use crate::store::{Event, Result, WatchStream};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

/// Events read from the log per replay query.
const REPLAY_PAGE: usize = 1000;

struct Watcher {
    readers: Arc<Readers>,
    prefix: String,
    /// Revision of the last event delivered or skipped; everything up to it has been handled.
    last: i64,
    live: broadcast::Receiver<Arc<Event>>,
    replaying: bool,
    ready: VecDeque<Event>,
    done: bool,
}

pub(super) fn stream(
    readers: Arc<Readers>,
    prefix: String,
    after: i64,
    live: broadcast::Receiver<Arc<Event>>,
) -> WatchStream {
    let watcher = Watcher {
        readers,
        prefix,
        last: after,
        live,
        replaying: true,
        ready: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    })
    .boxed()
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.replaying {
                if let Err(e) = self.replay_page().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    let revision = event.revision();
                    if revision <= self.last {
                        continue;
                    }
                    self.last = revision;
                    if event.key().starts_with(&self.prefix) {
                        return Some(Ok((*event).clone()));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Start a fresh subscription first, then fill the hole from the log.
                    self.live = self.live.resubscribe();
                    self.replaying = true;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    async fn replay_page(&mut self) -> Result<()> {
        let prefix = self.prefix.clone();
        let after = self.last;
        let page = self
            .readers
            .run(move |conn| reader::replay(conn, &prefix, after, REPLAY_PAGE))
            .await?;
        let full = page.events.len() == REPLAY_PAGE;
        if let Some(last) = page.events.last() {
            self.last = last.revision();
        }
        if !full {
            // Nothing else under the prefix existed when the page was read: the receiver,
            // subscribed before that read, carries everything after it.
            self.last = self.last.max(page.revision);
            self.replaying = false;
        }
        self.ready.extend(page.events);
        Ok(())
    }
}
