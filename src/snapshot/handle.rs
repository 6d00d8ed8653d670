use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::Snapshot;
use crate::policy::{OrgId, OrgPolicies};

/// A shared, atomically replaceable [`Snapshot`]: what the layer reads and what a store
/// publishes to. Cloning is cheap and every clone sees the same snapshot.
///
/// See the [module docs](super) for an example.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
}

impl SnapshotHandle {
    /// A handle publishing `snapshot`.
    #[must_use]
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
        }
    }

    /// A handle whose policies are not loaded yet: it publishes a
    /// [pending](Snapshot::pending) snapshot, which denies every caller with
    /// [`DenyReason::PoliciesUnavailable`](super::DenyReason::PoliciesUnavailable)
    /// (the layer answers 503) until a loaded snapshot is
    /// [published](Self::publish). For a replica that starts serving before its
    /// database answers; see `Store::unloaded`.
    #[must_use]
    pub fn pending() -> Self {
        Self::new(Snapshot::pending())
    }

    /// Whether a loaded snapshot has been published (see [`pending`](Self::pending)).
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        !self.current.load().is_pending()
    }

    /// The current snapshot. Cheap (no reference-count traffic in the common case);
    /// hold the guard only for the duration of one decision.
    #[must_use]
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, to keep beyond one decision.
    #[must_use]
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot. Requests that start after this returns see `snapshot`.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Recompiles one organization and publishes the result; other organizations are
    /// shared, not recompiled. Safe against concurrent calls for other organizations
    /// (read-copy-update: a lost race is retried on the newer snapshot).
    pub fn set_org(&self, id: OrgId, org: &OrgPolicies) {
        let compiled = Arc::new(super::CompiledOrg::compile(org));
        self.current.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.insert_compiled(id.clone(), Arc::clone(&compiled));
            next
        });
    }

    /// Removes an organization and publishes the result.
    pub fn remove_org(&self, id: &str) {
        self.current.rcu(|current| current.without_org(id));
    }
}

impl Default for SnapshotHandle {
    fn default() -> Self {
        Self::new(Snapshot::empty())
    }
}

impl fmt::Debug for SnapshotHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SnapshotHandle")
            .field(&*self.current.load())
            .finish()
    }
}
