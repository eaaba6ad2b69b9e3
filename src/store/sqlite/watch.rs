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
use crate::store::{Event, ProgressWatchStream, Result, WatchItem};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

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
    /// How long without a yielded item before a progress mark; None: never.
    progress: Option<Duration>,
    /// The last revision yielded, as an event or a progress mark.
    reported: i64,
    quiet_since: Instant,
}

/// Events under `prefix` after `after`, and progress marks when `progress` is set.
pub(super) fn stream(
    readers: Arc<Readers>,
    prefix: String,
    after: i64,
    live: broadcast::Receiver<Arc<Event>>,
    progress: Option<Duration>,
) -> ProgressWatchStream {
    let watcher = Watcher {
        readers,
        prefix,
        last: after,
        live,
        replaying: true,
        ready: VecDeque::new(),
        done: false,
        progress,
        reported: after,
        quiet_since: Instant::now(),
    };
    futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        if let Ok(item) = &item {
            w.reported = match item {
                WatchItem::Event(event) => event.revision(),
                WatchItem::Progress(revision) => *revision,
            };
        }
        w.quiet_since = Instant::now();
        Some((item, w))
    })
    .boxed()
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchItem>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(WatchItem::Event(event)));
            }
            if self.replaying {
                if let Err(e) = self.replay_page().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            let received = match self.progress {
                None => self.live.recv().await,
                Some(interval) => {
                    match tokio::time::timeout_at(self.quiet_since + interval, self.live.recv())
                        .await
                    {
                        Ok(received) => received,
                        Err(_) => {
                            // Quiet for a whole interval: everything up to `last` is delivered.
                            // With nothing new since the last mark, wait another interval.
                            if self.last > self.reported {
                                return Some(Ok(WatchItem::Progress(self.last)));
                            }
                            self.quiet_since = Instant::now();
                            continue;
                        }
                    }
                }
            };
            match received {
                Ok(event) => {
                    let revision = event.revision();
                    if revision <= self.last {
                        continue;
                    }
                    self.last = revision;
                    if event.key().starts_with(&self.prefix) {
                        return Some(Ok(WatchItem::Event((*event).clone())));
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
