use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::Snapshot;
use crate::policy::{OrgId, OrgPolicies};
use crate::report::WouldDenySummaries;

/// A shared, atomically replaceable [`Snapshot`]: what the layer reads and what a store
/// publishes to. Cloning is cheap and every clone sees the same snapshot.
///
/// See the [module docs](super) for an example.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
    would_deny: Arc<WouldDenySummaries>,
}

impl SnapshotHandle {
    /// A handle publishing `snapshot`.
    #[must_use]
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            would_deny: Arc::default(),
        }
    }

    /// What the report-only rules decided with this handle would have denied: see
    /// [`report`](crate::report#what-a-rule-would-deny-before-it-enforces). Shared by
    /// every clone; bounded by [`WouldDenySummaries::set_limits`].
    #[must_use]
    pub fn would_deny(&self) -> &WouldDenySummaries {
        &self.would_deny
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
        self.set_org_shared(id, Arc::new(org.clone()));
    }

    /// [`set_org`](Self::set_org) for policies already behind an `Arc`, which the
    /// snapshot keeps as they are instead of copying them (so that whoever keeps them
    /// too, a store's cache say, holds the only other reference, not a second copy).
    pub fn set_org_shared(&self, id: OrgId, source: Arc<OrgPolicies>) {
        let compiled = Arc::new(super::CompiledOrg::compile(&source));
        self.current.rcu(|current| {
            let mut next = Snapshot::clone(current);
            next.insert_with_source(id.clone(), Arc::clone(&source), Arc::clone(&compiled));
            next
        });
    }

    /// An organization's policies as last published, to read back (inactive policies,
    /// the group hierarchy and the lists included); `None` if it was never published.
    #[must_use]
    pub fn org_policies(&self, id: &str) -> Option<Arc<OrgPolicies>> {
        self.current.load().policies(id).cloned()
    }

    /// Changes one organization's policies in place and publishes the result
    /// atomically: `edit` is applied to the policies as last published (empty if
    /// never), and the next request sees the change. Returns what `edit` returned.
    ///
    /// Concurrent edits of the handle do not lose each other's changes: when another
    /// publication wins the race, `edit` runs again on the newer policies (so keep it
    /// free of side effects beyond the policies it is given).
    ///
    /// No validation beyond the policy types' own happens here; for validated,
    /// versioned, audited changes use the [`Store`](crate::store::Store) (its
    /// in-memory backend needs no database). Do not edit in place the organizations a
    /// `Store` publishes to this handle: the store republishes from its own records on
    /// its next change, and the edit would be lost.
    ///
    /// # Errors
    ///
    /// [`UpdateOrgError::PublishedWithoutPolicies`] when the organization was published
    /// in compiled form only ([`Snapshot::insert_compiled`]): its policies cannot be read
    /// back, and editing from empty ones would drop them.
    ///
    /// ```
    /// use tower_ip_allowlist::policy::{OrgId, Policy, UserId};
    /// use tower_ip_allowlist::snapshot::SnapshotHandle;
    ///
    /// let handle = SnapshotHandle::default();
    /// let org = OrgId::default();
    /// handle.update_org(&org, |policies| {
    ///     policies.insert_policy(Policy::builder("vpn").sources(["203.0.113.0/24"]).unwrap().user("alice").build().unwrap());
    /// })?;
    /// // Later: let bob in too, keeping everything else.
    /// handle.update_org(&org, |policies| {
    ///     if let Some(vpn) = policies.policies.get_mut("vpn") {
    ///         vpn.add_targets([UserId::from("bob")], []);
    ///     }
    /// })?;
    /// let vpn = &handle.org_policies("default").unwrap().policies["vpn"];
    /// assert_eq!(vpn.users().len(), 2);
    /// # Ok::<(), tower_ip_allowlist::snapshot::UpdateOrgError>(())
    /// ```
    pub fn update_org<T>(
        &self,
        id: &OrgId,
        mut edit: impl FnMut(&mut OrgPolicies) -> T,
    ) -> Result<T, UpdateOrgError> {
        loop {
            let current = self.current.load_full();
            let mut policies = match current.policies(id.as_str()) {
                Some(source) => OrgPolicies::clone(source),
                None if current.org(id.as_str()).is_some() => {
                    return Err(UpdateOrgError::PublishedWithoutPolicies { org: id.clone() })
                }
                None => OrgPolicies::default(),
            };
            let result = edit(&mut policies);
            let compiled = Arc::new(super::CompiledOrg::compile(&policies));
            let mut next = Snapshot::clone(&current);
            next.insert_with_source(id.clone(), Arc::new(policies), compiled);
            let previous = self.current.compare_and_swap(&current, Arc::new(next));
            if Arc::ptr_eq(&previous, &current) {
                return Ok(result);
            }
        }
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

/// Why [`SnapshotHandle::update_org`] cannot edit an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOrgError {
    /// The organization was published in compiled form only, so its policies cannot be
    /// read back.
    PublishedWithoutPolicies {
        /// The organization.
        org: OrgId,
    },
}

impl fmt::Display for UpdateOrgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PublishedWithoutPolicies { org } => write!(
                f,
                "organization `{org}` was published compiled only (`Snapshot::insert_compiled`), so its policies cannot be read back: publish it with `set_org` before editing it in place"
            ),
        }
    }
}

impl std::error::Error for UpdateOrgError {}
