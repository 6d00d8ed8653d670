//! Warnings that a client can trigger at will, limited to one per period so that they
//! cannot flood the logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lets one event through per period; shared by every thread.
#[derive(Debug)]
pub(crate) struct RateLimited {
    every: Duration,
    /// Milliseconds since [`start`] at the last event, plus one (0: never).
    last: AtomicU64,
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl RateLimited {
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            last: AtomicU64::new(0),
        }
    }

    /// Whether an event may be emitted now; if so, the period starts again.
    pub(crate) fn ready(&self) -> bool {
        let now = u64::try_from(start().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last.load(Ordering::Relaxed);
        let every = u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_period() {
        let limited = RateLimited::new(Duration::from_secs(3600));
        assert!(limited.ready());
        assert!(!limited.ready());
        let always = RateLimited::new(Duration::ZERO);
        assert!(always.ready());
        assert!(always.ready());
    }
}
