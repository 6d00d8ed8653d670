//! Whether a process has ever made a value of a type that requests may carry: until it
//! has, no request can hold one, and the look-up in the request extensions is skipped.
//! Every request pays such a look-up otherwise (a hash probe, ~35 instructions), in
//! servers that never use the feature.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the first value is made, and never cleared.
#[derive(Debug)]
pub(crate) struct Seen(AtomicBool);

impl Seen {
    pub(crate) const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Notes that a value has been made: call it wherever one is. Written only the
    /// first time, so that the flag's cache line stays shared between the cores that
    /// read it on every request.
    pub(crate) fn note(&self) {
        if !self.0.load(Ordering::Relaxed) {
            self.0.store(true, Ordering::Release);
        }
    }

    /// Whether a value has been made. A value that reaches a request was made before
    /// the request was handed to the reader (on this thread, or through whatever
    /// synchronization moved the request to it), so this is `true` for it.
    pub(crate) fn ever(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::Seen;

    #[test]
    fn false_until_noted_then_true_for_good() {
        let seen = Seen::new();
        assert!(!seen.ever());
        seen.note();
        assert!(seen.ever());
        seen.note();
        assert!(seen.ever());
    }
}
