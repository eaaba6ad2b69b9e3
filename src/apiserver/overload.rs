//! Overload protection as kube-apiserver's --max-requests-inflight and
//! --max-mutating-requests-inflight: two pools of slots, read-only and mutating, taken without
//! waiting. A request that finds its pool full is answered 429 at once, so a burst costs the
//! server a refusal instead of queued memory. Long-running requests (watches, exec, logs, ...)
//! never take a slot: they would hold it for hours.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Upstream's message and Retry-After for a refused request.
pub const MESSAGE: &str = "Too many requests, please try again later.";
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// One pool: a limit (0 = none) and how many requests hold a slot now.
#[derive(Debug)]
struct Pool {
    limit: usize,
    current: AtomicUsize,
}

impl Pool {
    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut now = self.current.load(Ordering::Relaxed);
        loop {
            if self.limit != 0 && now >= self.limit {
                return None;
            }
            match self.current.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(seen) => now = seen,
            }
        }
    }
}

/// A held slot; given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<Pool>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub struct Inflight {
    read_only: Arc<Pool>,
    mutating: Arc<Pool>,
}

impl Inflight {
    /// 0 for a limit means no limit, as upstream.
    pub fn new(max_read_only: usize, max_mutating: usize) -> Self {
        let pool = |limit| {
            Arc::new(Pool {
                limit,
                current: AtomicUsize::new(0),
            })
        };
        Inflight {
            read_only: pool(max_read_only),
            mutating: pool(max_mutating),
        }
    }

    /// A slot in the request's pool, or None when it is full.
    pub fn try_admit(&self, mutating: bool) -> Option<Slot> {
        if mutating {
            self.mutating.try_take()
        } else {
            self.read_only.try_take()
        }
    }

    /// Requests holding a slot now: (read-only, mutating).
    pub fn current(&self) -> (usize, usize) {
        (
            self.read_only.current.load(Ordering::Relaxed),
            self.mutating.current.load(Ordering::Relaxed),
        )
    }
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight::new(400, 200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_fill_and_drain_separately() {
        let f = Inflight::new(1, 2);
        let r = f.try_admit(false).unwrap();
        assert!(f.try_admit(false).is_none());
        let m1 = f.try_admit(true).unwrap();
        let _m2 = f.try_admit(true).unwrap();
        assert!(f.try_admit(true).is_none());
        assert_eq!(f.current(), (1, 2));
        drop(r);
        drop(m1);
        assert_eq!(f.current(), (0, 1));
        assert!(f.try_admit(false).is_some());
        let unlimited = Inflight::new(0, 0);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.try_admit(true).unwrap())
            .collect();
        assert_eq!(unlimited.current().1, 1000);
        drop(held);
    }
}
