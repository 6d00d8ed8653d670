//! The compiled, immutable decision structure, and the handle that publishes it.
//!
//! A [`Snapshot`] holds one [`CompiledOrg`] per organization. It is never changed in
//! place: a change to one organization builds a new snapshot that shares every other
//! organization's compiled form ([`Snapshot::with_org`]) and is published atomically
//! through a [`SnapshotHandle`]. The layer does one `load()` per request, so a request
//! sees the old snapshot or the new one, never a mix, and every request that starts
//! after [`SnapshotHandle::publish`] returns sees the new one.
//!
//! The decision itself is pure and knows nothing of HTTP:
//!
//! - no policy applies to the caller: [`Decision::NoPolicy`], the request goes on;
//! - some apply and the address is inside the union of their sources: [`Decision::Allowed`];
//! - some apply and the address is outside, or unknown: [`Decision::Denied`].
//!
//! A snapshot can also be **pending** ([`Snapshot::pending`], [`SnapshotHandle::pending`]):
//! the policies have not been loaded yet (a replica that starts while its database is
//! unreachable). A pending snapshot denies every caller with
//! [`DenyReason::PoliciesUnavailable`] rather than guessing that no policy applies:
//! fail closed. Publishing a loaded snapshot ends it, and nothing makes a handle
//! pending again.
//!
//! # Example
//!
//! ```
//! use tower_ip_allowlist::policy::{OrgPolicies, OrgId, Policy};
//! use tower_ip_allowlist::snapshot::{Decision, DenyReason, SnapshotHandle};
//!
//! let mut org = OrgPolicies::default();
//! org.insert_policy(
//!     Policy::builder("office").sources(["198.51.100.0/24"])?.group("staff").build()?,
//! );
//! org.groups.set_parents("interns", ["staff"])?;
//!
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::default(), &org);
//!
//! let snapshot = handle.load();
//! let office = Some("198.51.100.7".parse()?);
//! let cafe = Some("192.0.2.1".parse()?);
//! assert_eq!(snapshot.decide(None, "ann", ["interns"], office), Decision::Allowed);
//! assert_eq!(snapshot.decide(None, "ann", ["interns"], cafe), Decision::Denied(DenyReason::IpNotAllowed));
//! assert_eq!(snapshot.decide(None, "ann", ["interns"], None), Decision::Denied(DenyReason::ClientIpUnknown));
//! assert_eq!(snapshot.decide(None, "bob", ["sales"], cafe), Decision::NoPolicy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod handle;
mod index;
mod list;
mod org;
mod orgs;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

pub use handle::{SnapshotHandle, UpdateOrgError};
pub use list::CompiledList;
pub use org::CompiledOrg;

pub(crate) use self::org::same_name;
use self::orgs::OrgMap;
use crate::policy::{OrgId, OrgPolicies};

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// No policy applies to the caller: access works as usual.
    NoPolicy,
    /// At least one policy applies and the address is inside one of them.
    Allowed,
    /// At least one policy applies and the request must be refused, or the policies
    /// are not loaded yet.
    Denied(DenyReason),
}

impl Decision {
    /// Whether the request may go on.
    #[must_use]
    pub fn is_allowed(self) -> bool {
        !matches!(self, Self::Denied(_))
    }
}

/// Why a request was refused. The layer puts it in the response extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// The client address is outside every applicable policy.
    IpNotAllowed,
    /// A policy applies but the client address could not be determined (no peer
    /// address, or a malformed forwarded chain). The layer never fails open.
    ClientIpUnknown,
    /// The policies have not been loaded yet (the snapshot is
    /// [pending](Snapshot::pending)), so whether one applies is unknown. The layer
    /// answers 503 rather than 403: the caller may well be allowed once they load.
    PoliciesUnavailable,
    /// The caller's identity names another organization than the request's
    /// [tenant](crate::tenant): refused as unauthenticated (401, gRPC 16), since the
    /// credentials are not valid for this tenant. Never a decision of the snapshot.
    OrganizationMismatch,
    /// The request carries no identity where one is required (401, gRPC 16): see
    /// [`AllowlistLayer::allow_anonymous`](crate::layer::AllowlistLayer::allow_anonymous).
    /// Never a decision of the snapshot.
    Unauthenticated,
}

impl DenyReason {
    /// The machine-readable code in the error body: `ipNotAllowed`, `clientIpUnknown`
    /// (403), `policiesUnavailable` (503), `organizationMismatch` or `unauthenticated`
    /// (401).
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::IpNotAllowed => "ipNotAllowed",
            Self::ClientIpUnknown => "clientIpUnknown",
            Self::PoliciesUnavailable => "policiesUnavailable",
            Self::OrganizationMismatch => "organizationMismatch",
            Self::Unauthenticated => "unauthenticated",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IpNotAllowed => "the client address is not allowed for this caller",
            Self::ClientIpUnknown => "the client address could not be determined",
            Self::PoliciesUnavailable => "the allowlist policies are not loaded yet",
            Self::OrganizationMismatch => "the caller's organization is not the request's tenant",
            Self::Unauthenticated => "the request carries no identity",
        })
    }
}

/// Every organization's compiled policies at one moment. Immutable; see the
/// [module docs](self).
///
/// Cloning is cheap, and so is deriving a snapshot with one organization changed
/// ([`with_org`](Self::with_org)): the organizations are kept in a map with
/// structural sharing, so a change copies a few dozen pointers and the handful of
/// organizations that share a leaf with the changed one, never the whole map. A
/// look-up hashes the organization id once and costs the same work whatever the
/// number of organizations.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// Each organization's compiled form (only if it has anything to enforce), and
    /// its policies as they were published (inactive ones included), to read back and
    /// edit; the latter are not used by decisions.
    orgs: OrgMap,
    /// The default organization's compiled form, also in `orgs`: a single-tenant
    /// service decides without hashing an organization id.
    default: Option<Arc<CompiledOrg>>,
    /// Not loaded yet: every decision is denied (see the module docs).
    pending: bool,
}

impl Snapshot {
    /// A snapshot with no policies: every decision is [`Decision::NoPolicy`].
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// A snapshot standing for policies that are not loaded yet: every decision is
    /// [`Decision::Denied`] with [`DenyReason::PoliciesUnavailable`]. Snapshots derived
    /// from it ([`with_org`](Self::with_org), [`without_org`](Self::without_org)) stay
    /// pending; one built by [`from_orgs`](Self::from_orgs) or [`empty`](Self::empty)
    /// is loaded.
    #[must_use]
    pub fn pending() -> Self {
        Self {
            pending: true,
            ..Self::default()
        }
    }

    /// Whether this snapshot stands for policies not loaded yet.
    #[must_use]
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Compiles every organization. Linear in their number; many organizations are
    /// compiled on several threads at once (up to the available parallelism).
    ///
    /// The snapshot keeps a copy of each organization's policies, to read back
    /// ([`policies`](Self::policies)); [`from_shared_orgs`](Self::from_shared_orgs)
    /// keeps the ones it is given instead.
    pub fn from_orgs<'a>(orgs: impl IntoIterator<Item = (OrgId, &'a OrgPolicies)>) -> Self {
        Self::from_compiled(compile_all(orgs.into_iter().collect(), |org| {
            Arc::new(org.clone())
        }))
    }

    /// [`from_orgs`](Self::from_orgs) for policies already behind an `Arc`, which the
    /// snapshot shares rather than copies: whoever keeps them too (a store's cache,
    /// say) does not hold a second copy. At a million organizations of one policy
    /// that copy is most of a gigabyte.
    pub fn from_shared_orgs(orgs: impl IntoIterator<Item = (OrgId, Arc<OrgPolicies>)>) -> Self {
        Self::from_compiled(compile_all(orgs.into_iter().collect(), |org| org))
    }

    fn from_compiled(orgs: Vec<(OrgId, Arc<OrgPolicies>, Arc<CompiledOrg>)>) -> Self {
        let mut snapshot = Self::default();
        for (id, source, compiled) in orgs {
            snapshot.insert_with_source(id, source, compiled);
        }
        snapshot
    }

    /// A new snapshot in which only `id` is recompiled; every other organization's
    /// compiled form is shared with `self`.
    #[must_use]
    pub fn with_org(&self, id: OrgId, org: &OrgPolicies) -> Self {
        let mut next = self.clone();
        next.insert(id, org);
        next
    }

    /// A new snapshot without `id`.
    #[must_use]
    pub fn without_org(&self, id: &str) -> Self {
        let mut next = self.clone();
        next.orgs.remove(id);
        if id == OrgId::DEFAULT {
            next.default = None;
        }
        next
    }

    /// Sets an organization's compiled form (compiled elsewhere, or shared with
    /// another snapshot). Its policies as published are not known then:
    /// [`policies`](Self::policies) has none for `id` until it is published with them.
    pub fn insert_compiled(&mut self, id: OrgId, org: Arc<CompiledOrg>) {
        self.set(id, org, None);
    }

    /// Sets an organization's policies and their compiled form.
    pub(crate) fn insert_with_source(
        &mut self,
        id: OrgId,
        source: Arc<OrgPolicies>,
        org: Arc<CompiledOrg>,
    ) {
        self.set(id, org, Some(source));
    }

    /// Sets an organization, and the default organization's shortcut with it.
    fn set(&mut self, id: OrgId, org: Arc<CompiledOrg>, source: Option<Arc<OrgPolicies>>) {
        // Nothing can apply to an empty one: keep the look-up a miss.
        let compiled = (!org.is_empty()).then_some(org);
        if id.as_str() == OrgId::DEFAULT {
            self.default.clone_from(&compiled);
        }
        self.orgs.set(id, compiled, source);
    }

    fn insert(&mut self, id: OrgId, org: &OrgPolicies) {
        let compiled = Arc::new(CompiledOrg::compile(org));
        self.insert_with_source(id, Arc::new(org.clone()), compiled);
    }

    /// An organization's policies as they were last published (inactive policies,
    /// the group hierarchy and the lists included), to read them back or derive a
    /// change from them: see [`SnapshotHandle::update_org`].
    #[must_use]
    pub fn policies(&self, id: &str) -> Option<&Arc<OrgPolicies>> {
        self.orgs.get(id)?.source.as_ref()
    }

    /// The compiled organization, if it has any active policy or list.
    #[must_use]
    #[inline]
    pub fn org(&self, id: &str) -> Option<&Arc<CompiledOrg>> {
        if id == OrgId::DEFAULT {
            return self.default.as_ref();
        }
        self.orgs.get(id)?.compiled.as_ref()
    }

    /// Number of organizations with at least one active policy.
    #[must_use]
    pub fn len(&self) -> usize {
        self.orgs.compiled_len()
    }

    /// Whether no organization has an active policy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of organizations known to the snapshot: those with an active policy
    /// or list, and those published with policies that enforce nothing yet.
    #[must_use]
    pub fn organizations(&self) -> usize {
        self.orgs.len()
    }

    /// The ids of every organization known to the snapshot (see
    /// [`organizations`](Self::organizations)), in no particular order.
    pub fn org_ids(&self) -> impl Iterator<Item = &OrgId> {
        self.orgs.iter().map(|slot| &slot.id)
    }

    /// Decides for a caller of `organization` (`None`: the default organization).
    /// A [pending](Self::pending) snapshot denies everyone with
    /// [`DenyReason::PoliciesUnavailable`].
    #[must_use]
    #[inline]
    pub fn decide<'a>(
        &self,
        organization: Option<&str>,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
        addr: Option<IpAddr>,
    ) -> Decision {
        self.decide_in(organization, user, groups, addr).0
    }

    /// [`decide`](Self::decide), also handing back the compiled organization it
    /// decided with, so a caller that needs it too (the layer's report-only check)
    /// looks it up once.
    #[must_use]
    #[inline]
    pub fn decide_in<'a>(
        &self,
        organization: Option<&str>,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
        addr: Option<IpAddr>,
    ) -> (Decision, Option<&CompiledOrg>) {
        if self.pending {
            return (Decision::Denied(DenyReason::PoliciesUnavailable), None);
        }
        match self.org(organization.unwrap_or(OrgId::DEFAULT)) {
            Some(org) => (org.decide(user, groups, addr), Some(org)),
            None => (Decision::NoPolicy, None),
        }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("organizations", &self.orgs.compiled_len())
            .field("pending", &self.pending)
            .finish()
    }
}

/// Organizations below this many are compiled on the calling thread: a thread costs
/// more than compiling a few small ones.
const PARALLEL_FROM: usize = 256;

/// Compiles `orgs` and keeps their policies (`share` makes the snapshot's `Arc` of
/// each: a copy, or the one given), on up to the available parallelism's threads
/// when there are many, in the order given.
fn compile_all<T: Send>(
    orgs: Vec<(OrgId, T)>,
    share: impl Fn(T) -> Arc<OrgPolicies> + Sync,
) -> Vec<(OrgId, Arc<OrgPolicies>, Arc<CompiledOrg>)> {
    let compile = |(id, org): (OrgId, T)| {
        let org = share(org);
        let compiled = Arc::new(CompiledOrg::compile(&org));
        (id, org, compiled)
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if orgs.len() < PARALLEL_FROM || threads < 2 {
        return orgs.into_iter().map(compile).collect();
    }
    let chunk = orgs.len().div_ceil(threads);
    let mut orgs = orgs.into_iter();
    let chunks: Vec<Vec<(OrgId, T)>> = std::iter::from_fn(|| {
        let part: Vec<_> = orgs.by_ref().take(chunk).collect();
        (!part.is_empty()).then_some(part)
    })
    .collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|part| {
                let compile = &compile;
                scope.spawn(move || part.into_iter().map(compile).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(compiled) => compiled,
                // Compiling does not panic on any input; if it did, the panic goes on
                // as it would have on the calling thread.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests;
