//! The validated, authoritative store of policies and group hierarchies.
//!
//! Every change goes the same way: the [`Backend`] locks the organization and loads its
//! current record; the change is applied and validated there (sources, ids, limits,
//! cycles, versions, the lockout guard); the backend writes it with a new data
//! version; then the store publishes the recompiled organization to its
//! [`SnapshotHandle`] before the call returns, so the very next request is decided
//! with it. A refused change leaves the stored state and the snapshot as they were.
//!
//! - Limits ([`Limits`]) default to the product's: 100 policies per organization and
//!   100 direct targets (users plus groups) per policy. Members of groups do not count.
//!   The group hierarchy is bounded too: 10,000 groups per organization, 100 parents
//!   per group, 32 levels (see [`Limits`] for why).
//! - Every id follows one rule, [`validate_id`], checked here for every backend (the
//!   organization's too, on every change), so what one backend stores another would
//!   store as well. A value the storage refuses all
//!   the same is a [refused](BackendError::refused) backend error, which retrying
//!   cannot fix, unlike an unreachable database.
//! - Adding a target that is already assigned, or removing one that is not, changes
//!   nothing (no new version, no audit event). Removing the last target keeps the
//!   policy, inactive.
//! - Every policy has a version; a change that names a stale one
//!   ([`StoreError::VersionMismatch`]) is refused.
//! - The lockout guard: a change after which the acting administrator's own current
//!   address would be denied is refused ([`StoreError::LockoutPrevented`]) unless the
//!   [`Actor`] forces it. The product this reproduces only warns.
//! - Every committed change emits a `tracing` event at `INFO` on the target
//!   `tower_ip_allowlist::audit` with the organization, actor, operation, what it is
//!   about (a policy, a group, the site allowlist or a resource), and the state before
//!   and after.
//! - Every committed change also writes an [`AuditRecord`] in the same transaction
//!   (see [`AuditRecord`] for what it holds), read back with
//!   [`Store::audit_events`]; [`Limits::audit_retention`] bounds how many are kept.
//!
//! With the `api-tokens` feature the store also keeps user-owned API tokens
//! ([`ApiTokenRecord`]; `Store::create_api_token`, `api_tokens`, `revoke_api_token`,
//! `verify_api_token`): only their SHA-256 hashes, one look-up per use so that a
//! revocation holds on every replica at once, and an audit record for each creation,
//! revocation and (at most once per interval) use.
//!
//! [`MemoryBackend`] keeps everything in memory; `SqliteBackend` (feature `sqlite`)
//! keeps it in one local SQLite file; `PostgresBackend` (feature `postgres`) keeps it in
//! a PostgreSQL database shared by several replicas, and its `Replicator` brings every
//! replica's snapshot up to date after a change made through another; other backends
//! implement [`Backend`].
//!
//! # Several processes on one backend
//!
//! A store publishes its own changes at once; another process's changes reach it
//! through [`reload_org`](Store::reload_org) (one organization) or
//! [`resync`](Store::resync) (every organization whose data version moved). A replica
//! that must start serving before its backend answers is built with
//! [`Store::unloaded`]: its handle stays [pending](SnapshotHandle::pending), and until
//! the first successful [`resync`](Store::resync) the allowlist layer answers 503 to
//! callers with an identity, and the site and resource list layers to every request
//! they guard.
//!
//! # Example
//!
//! ```
//! use tower_ip_allowlist::policy::OrgId;
//! use tower_ip_allowlist::principal::Principal;
//! use tower_ip_allowlist::snapshot::{Decision, DenyReason};
//! use tower_ip_allowlist::store::{Actor, PolicyDraft, Store, StoreError, Targets};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Store::memory();
//! let org = OrgId::default();
//! let admin = Principal::new("admin").with_permissions(["MANAGE"]);
//! let actor = Actor::new(&admin, Some("127.0.0.1".parse()?));
//!
//! let draft = PolicyDraft::new("office-only", ["203.0.113.0/24"]).users(["alice"]);
//! let stored = store.create_policy(&actor, &org, draft).await?;
//! assert_eq!(stored.version, 1);
//!
//! // Enforced by the next decision.
//! let snapshot = store.handle().load();
//! let cafe = Some("192.0.2.1".parse()?);
//! assert_eq!(snapshot.decide(None, "alice", [], cafe), Decision::Denied(DenyReason::IpNotAllowed));
//!
//! // The admin cannot shut themselves out by accident.
//! let err = store.add_targets(&actor, &org, "office-only", Targets::default().users(["admin"])).await.unwrap_err();
//! assert!(matches!(err, StoreError::LockoutPrevented { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

/// The columns of `allowlist_api_tokens` in the order both SQL backends read and write
/// them; a literal, so that their statements are `concat!`ed once, not formatted per
/// request.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! token_columns {
    () => {
        "org_id, id, hash, owner, groups, permissions, name, created_us, expires_us, last_used_us"
    };
}

mod api_token;
mod audit;
mod backend;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod document;
mod error;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod replicator;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub use self::api_token::{is_api_token, ApiTokenRecord, API_TOKEN_PREFIX};
#[cfg(feature = "api-tokens")]
#[cfg_attr(docsrs, doc(cfg(feature = "api-tokens")))]
pub use self::api_token::{
    ApiTokenDraft, ApiTokenRejection, ApiTokenSecret, MAX_API_TOKENS_PER_USER,
};
pub use self::audit::{AuditDraft, AuditQuery, AuditRecord, AuditRetention, PRUNE_BATCH};
pub use self::backend::{Backend, BoxFuture, Change, MemoryBackend, OrgRecord, Updated};
pub use self::error::{BackendError, StoreError};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::postgres::{PostgresBackend, PostgresOptions};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::replicator::{ReplicationOptions, Replicator, SyncStatus};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use self::sqlite::SqliteBackend;
use crate::client_ip::ClientIpError;
use crate::explain::{explain, Explanation};
use crate::policy::{
    validate_id, Enforcement, GroupId, OrgId, OrgPolicies, Policy, PolicyId, ResourceId, SiteList,
    SourceList, UserId,
};
use crate::principal::Principal;
use crate::report::summary::{enforcement_of, is_reporting};
use crate::report::{RuleKind, RuleSummary};
use crate::snapshot::{CompiledOrg, Decision, Snapshot, SnapshotHandle};
use crate::source::{
    check_blocked_coverage, check_coverage, parse_all, parse_blocked_sources, parse_each,
    parse_sources, SourceListError,
};

/// Limits on what one organization may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Policies per organization (default 100).
    pub max_policies_per_org: usize,
    /// Direct targets (users plus groups) per policy (default 100).
    pub max_targets_per_policy: usize,
    /// Resources with their own allowlist, per organization (default 1000).
    pub max_resource_lists_per_org: usize,
    /// Allowed sources per policy or list (default 1000); its blocked sources are
    /// limited to as many again, counted apart.
    pub max_sources_per_rule: usize,
    /// Groups the hierarchy of one organization may name, as children or parents
    /// (default 10,000). See [`Limits`] for why.
    pub max_groups_per_org: usize,
    /// Direct parents of one group (default 100).
    pub max_parents_per_group: usize,
    /// Parent links on the longest path upwards from a group (default 32).
    pub max_group_depth: usize,
    /// How many audit records are kept per organization, and for how long (default:
    /// all, forever). See [`AuditRetention`].
    pub audit_retention: AuditRetention,
}

/// The defaults fit real directories and bound the work an administrator can cause:
///
/// - **10,000 groups** per organization: large Active Directory and Okta tenants have
///   thousands of groups, and only those placed in the hierarchy count. Every change
///   recompiles the organization, and the layer finds a caller's ancestors in the
///   compiled form, so the bound keeps both a change and the snapshot's memory
///   proportionate.
/// - **100 parents** per group: nesting a group in more than a few dozen others is
///   rare even in sprawling directories; a document naming 5,000 is a mistake or an
///   attack, and refusing it costs nobody.
/// - **32 levels**: organizational nesting seldom passes 10 (company, division,
///   department, team, ...); the ancestor walk the layer does per request is bounded
///   by it.
///
/// A change that would pass a hierarchy limit is refused; one that keeps a count
/// already past a lowered limit where it is, or shrinks it, is allowed, so stored
/// data over a new limit can always be cleaned up.
impl Default for Limits {
    fn default() -> Self {
        Self {
            max_policies_per_org: 100,
            max_targets_per_policy: 100,
            max_resource_lists_per_org: 1000,
            max_sources_per_rule: 1000,
            max_groups_per_org: 10_000,
            max_parents_per_group: 100,
            max_group_depth: 32,
            audit_retention: AuditRetention::default(),
        }
    }
}

impl Limits {
    /// Sets the most policies an organization may have.
    #[must_use]
    pub fn max_policies_per_org(mut self, limit: usize) -> Self {
        self.max_policies_per_org = limit;
        self
    }

    /// Sets the most direct targets a policy may have.
    #[must_use]
    pub fn max_targets_per_policy(mut self, limit: usize) -> Self {
        self.max_targets_per_policy = limit;
        self
    }

    /// Sets the most allowed sources a policy or list may have.
    #[must_use]
    pub fn max_sources_per_rule(mut self, limit: usize) -> Self {
        self.max_sources_per_rule = limit;
        self
    }

    /// Sets the most resources with an allowlist an organization may have.
    #[must_use]
    pub fn max_resource_lists_per_org(mut self, limit: usize) -> Self {
        self.max_resource_lists_per_org = limit;
        self
    }

    /// Sets the most groups an organization's hierarchy may name.
    #[must_use]
    pub fn max_groups_per_org(mut self, limit: usize) -> Self {
        self.max_groups_per_org = limit;
        self
    }

    /// Sets the most direct parents a group may have.
    #[must_use]
    pub fn max_parents_per_group(mut self, limit: usize) -> Self {
        self.max_parents_per_group = limit;
        self
    }

    /// Sets the most parent links on a path upwards from a group.
    #[must_use]
    pub fn max_group_depth(mut self, limit: usize) -> Self {
        self.max_group_depth = limit;
        self
    }

    /// Sets how many audit records are kept per organization, and for how long.
    #[must_use]
    pub fn audit_retention(mut self, retention: AuditRetention) -> Self {
        self.audit_retention = retention;
        self
    }
}

/// Who makes a change, and from where: what the audit events name and what the lockout
/// guard checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    identity: Option<Principal>,
    addr: Option<IpAddr>,
    /// Why `addr` is unknown, for the lockout guard's message.
    unknown: Option<String>,
    force: bool,
}

impl Actor {
    /// An administrator acting from `addr` (`None` if it is unknown, which the lockout
    /// guard treats as denied wherever a policy applies to the administrator).
    #[must_use]
    pub fn new(principal: &Principal, addr: Option<IpAddr>) -> Self {
        Self {
            identity: Some(principal.clone()),
            addr,
            unknown: None,
            force: false,
        }
    }

    /// An administrator whose address could not be determined, and why: the lockout
    /// guard refuses every change that would put them under a list or policy.
    #[must_use]
    pub fn unknown_address(principal: &Principal, why: &ClientIpError) -> Self {
        Self {
            identity: Some(principal.clone()),
            addr: None,
            unknown: Some(why.to_string()),
            force: false,
        }
    }

    /// The application itself (set-up code, migrations, tests): no lockout check.
    #[must_use]
    pub fn system() -> Self {
        Self {
            identity: None,
            addr: None,
            unknown: None,
            force: false,
        }
    }

    /// Skips the lockout guard: the administrator asked for the change knowing it
    /// denies their current address.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    pub(crate) fn name(&self) -> &str {
        self.identity.as_ref().map_or("system", |p| p.user.as_str())
    }

    fn locked_out(&self) -> StoreError {
        StoreError::LockoutPrevented {
            addr: self.addr,
            unknown: self.unknown.clone(),
        }
    }
}

/// A policy as an administrator writes it: sources as text, parsed and validated by
/// the store so errors can name the offending entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDraft {
    /// The policy id: 1 to 255 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
    pub id: String,
    /// A human-readable name.
    pub name: Option<String>,
    /// Allowed sources: addresses and CIDR ranges.
    pub allowed_sources: Vec<String>,
    /// Blocked sources: addresses refused even inside the allowed ones (empty: none).
    pub blocked_sources: Vec<String>,
    /// Assigned users.
    pub users: BTreeSet<UserId>,
    /// Assigned groups.
    pub groups: BTreeSet<GroupId>,
    /// Whether the policy enforces (the default) or only reports.
    pub enforcement: Enforcement,
}

impl PolicyDraft {
    /// A draft with an id and sources, no name and no targets.
    #[must_use]
    pub fn new<S: Into<String>>(
        id: impl Into<String>,
        sources: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            id: id.into(),
            allowed_sources: sources.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Sets the name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the blocked sources: addresses refused even inside the allowed ones.
    #[must_use]
    pub fn blocked_sources<S: Into<String>>(
        mut self,
        sources: impl IntoIterator<Item = S>,
    ) -> Self {
        self.blocked_sources = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Assigns users.
    #[must_use]
    pub fn users<U: Into<UserId>>(mut self, users: impl IntoIterator<Item = U>) -> Self {
        self.users.extend(users.into_iter().map(Into::into));
        self
    }

    /// Assigns groups.
    #[must_use]
    pub fn groups<G: Into<GroupId>>(mut self, groups: impl IntoIterator<Item = G>) -> Self {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    /// Sets whether the policy enforces or only reports.
    #[must_use]
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }
}

/// A site or resource list as an administrator writes it: sources as text, validated
/// by the store so errors can name the offending entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListDraft {
    /// Allowed sources: addresses, CIDR ranges and `first-last` ranges.
    pub allowed_sources: Vec<String>,
    /// Blocked sources: addresses refused even inside the allowed ones (empty: none).
    pub blocked_sources: Vec<String>,
    /// Whether the list enforces (the default) or only reports.
    pub enforcement: Enforcement,
}

impl ListDraft {
    /// An enforcing list of `sources`.
    #[must_use]
    pub fn new<S: Into<String>>(sources: impl IntoIterator<Item = S>) -> Self {
        Self {
            allowed_sources: sources.into_iter().map(Into::into).collect(),
            blocked_sources: Vec::new(),
            enforcement: Enforcement::Enforce,
        }
    }

    /// Sets the blocked sources: addresses refused even inside the allowed ones.
    #[must_use]
    pub fn blocked_sources<S: Into<String>>(
        mut self,
        sources: impl IntoIterator<Item = S>,
    ) -> Self {
        self.blocked_sources = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Sets whether the list enforces or only reports.
    #[must_use]
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    fn build(&self, limits: Limits) -> Result<SourceList, StoreError> {
        check_sources(&self.allowed_sources, limits)?;
        check_blocked(&self.blocked_sources, limits)?;
        SourceList::parse(&self.allowed_sources)
            .map_err(StoreError::InvalidSource)?
            .with_enforcement(self.enforcement)
            .with_blocked(&self.blocked_sources)
            .map_err(StoreError::InvalidBlockedSource)
    }
}

/// A partial update: only the fields that are `Some` change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyPatch {
    /// New name (`Some(None)` removes it).
    pub name: Option<Option<String>>,
    /// New allowed sources.
    pub allowed_sources: Option<Vec<String>>,
    /// New blocked sources (`Some` of an empty list removes them all).
    pub blocked_sources: Option<Vec<String>>,
    /// New set of users.
    pub users: Option<BTreeSet<UserId>>,
    /// New set of groups.
    pub groups: Option<BTreeSet<GroupId>>,
    /// New enforcement.
    pub enforcement: Option<Enforcement>,
}

/// Users and groups to assign to, or unassign from, a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Users.
    pub users: Vec<UserId>,
    /// Groups.
    pub groups: Vec<GroupId>,
}

impl Targets {
    /// Adds users.
    #[must_use]
    pub fn users<U: Into<UserId>>(mut self, users: impl IntoIterator<Item = U>) -> Self {
        self.users.extend(users.into_iter().map(Into::into));
        self
    }

    /// Adds groups.
    #[must_use]
    pub fn groups<G: Into<GroupId>>(mut self, groups: impl IntoIterator<Item = G>) -> Self {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }

    fn validate(&self) -> Result<(), StoreError> {
        for user in &self.users {
            check_principal_id("user", user.as_str())?;
        }
        for group in &self.groups {
            check_principal_id("userGroup", group.as_str())?;
        }
        Ok(())
    }
}

/// A policy with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// The policy.
    pub policy: Policy,
    /// Its version: 1 when created, bumped by every change.
    pub version: u64,
}

/// A group's place in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    /// The group.
    pub id: GroupId,
    /// Its direct parents.
    pub parents: BTreeSet<GroupId>,
}

/// The store; see the [module docs](self). Cloning is cheap and clones share state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    handle: SnapshotHandle,
    limits: Limits,
    /// This process's name among the replicas sharing would-deny summaries.
    replica: Box<str>,
    /// What was last published, per organization: reads come from here.
    cache: Mutex<HashMap<OrgId, Arc<Published>>>,
}

/// What the store last published for one organization. Its policies are the very
/// `Arc` the snapshot holds ([`SnapshotHandle::set_org_shared`]), not a copy: a
/// replica keeps each organization's policies once.
#[derive(Default)]
struct Published {
    org: Arc<OrgPolicies>,
    /// Each policy's version, sorted by id (a `BTreeMap` allocated a node of eleven
    /// for one policy).
    policy_versions: Box<[(PolicyId, u64)]>,
    version: u64,
}

impl Published {
    fn new(record: OrgRecord) -> Self {
        Self {
            org: Arc::new(record.org),
            // A `BTreeMap` iterates in key order: sorted already.
            policy_versions: record.policy_versions.into_iter().collect(),
            version: record.version,
        }
    }

    /// A policy's version (1 if none is recorded, as for records stored before
    /// versions were).
    fn policy_version(&self, id: &str) -> u64 {
        self.policy_versions
            .binary_search_by(|(policy, _)| policy.as_str().cmp(id))
            .map_or(1, |at| self.policy_versions[at].1)
    }
}

impl Store {
    /// Loads every organization from `backend` and publishes the snapshot to `handle`.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the backend cannot be read or holds invalid data.
    pub async fn open(
        backend: Arc<dyn Backend>,
        handle: SnapshotHandle,
        limits: Limits,
    ) -> Result<Self, BackendError> {
        let records = backend.load_all().await?;
        let store = Self::with_parts(backend, handle, limits);
        store.publish_all(records)?;
        Ok(store)
    }

    /// A store that has not loaded anything yet, for a replica that must start serving
    /// before its backend answers. It marks `handle` [pending](SnapshotHandle::pending):
    /// the layer answers 503 `policiesUnavailable` to every request carrying an
    /// identity (fail closed) until the first successful [`resync`](Self::resync),
    /// which loads every organization. A `Replicator` (feature `postgres`) does that
    /// for you, retrying with backoff.
    ///
    /// Changes made before the first load are validated against the backend as
    /// usual; reads ([`get_policy`](Self::get_policy), ...) see only what was loaded.
    #[must_use]
    pub fn unloaded(backend: Arc<dyn Backend>, handle: SnapshotHandle, limits: Limits) -> Self {
        handle.publish(Snapshot::pending());
        Self::with_parts(backend, handle, limits)
    }

    fn with_parts(backend: Arc<dyn Backend>, handle: SnapshotHandle, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                handle,
                limits,
                replica: replica_id(),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// An empty store in memory, publishing to a new handle, with default limits.
    #[must_use]
    pub fn memory() -> Self {
        Self {
            inner: Arc::new(Inner {
                backend: Arc::new(MemoryBackend::new()),
                handle: SnapshotHandle::default(),
                limits: Limits::default(),
                replica: replica_id(),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The handle the store publishes to: give it to the layer.
    #[must_use]
    pub fn handle(&self) -> &SnapshotHandle {
        &self.inner.handle
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Whether the policies have been loaded: always, for a store made with
    /// [`open`](Self::open) or [`memory`](Self::memory); after the first successful
    /// [`resync`](Self::resync) for one made with [`unloaded`](Self::unloaded). Never
    /// false again once true.
    #[must_use]
    pub fn is_loaded(&self) -> bool {
        self.inner.handle.is_loaded()
    }

    /// Re-reads one organization from the backend and publishes it if it is newer
    /// than what was last published (for backends shared by several processes).
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the backend cannot be read.
    pub async fn reload_org(&self, org: &OrgId) -> Result<(), BackendError> {
        let record = self.inner.backend.load(org).await?.unwrap_or_default();
        self.publish(org, record)
    }

    /// Brings the store up to date with its backend, for backends shared by several
    /// processes: reads every organization's data version
    /// ([`Backend::versions`]) and reloads and recompiles only those that are newer
    /// than what was published; the others are left alone. The first call on a store
    /// made with [`unloaded`](Self::unloaded) loads everything and ends the pending
    /// state instead. Returns how many organizations were reloaded.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the backend cannot be read. What was published stays
    /// published and is still enforced.
    pub async fn resync(&self) -> Result<usize, BackendError> {
        if !self.is_loaded() {
            return self.publish_loaded(self.inner.backend.load_all().await?);
        }
        let versions = self.inner.backend.versions().await?;
        let stale: Vec<OrgId> = {
            let cache = self.lock_cache()?;
            versions
                .into_iter()
                .filter_map(|(org, stored)| {
                    let published = cache.get(&org).map_or(0, |record| record.version);
                    if published > stored {
                        tracing::warn!(
                            organization = %org,
                            published,
                            stored,
                            "the backend holds an older version of this organization than was published (was the database restored?): keeping the newer one until restart"
                        );
                    }
                    (stored > published).then_some(org)
                })
                .collect()
        };
        for org in &stale {
            self.reload_org(org).await?;
        }
        Ok(stale.len())
    }

    // ---- reads -----------------------------------------------------------------

    /// `org`'s audit records that pass `query`, newest first: one per committed
    /// change, written with it (see [`AuditRecord`]). Read from the backend, so a
    /// change made through another replica is there as soon as it is committed.
    ///
    /// ```
    /// use tower_ip_allowlist::policy::OrgId;
    /// use tower_ip_allowlist::store::{Actor, AuditQuery, PolicyDraft, Store};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::memory();
    /// let org = OrgId::default();
    /// let draft = PolicyDraft::new("vpn", ["203.0.113.0/24"]);
    /// store.create_policy(&Actor::system(), &org, draft).await?;
    ///
    /// let events = store.audit_events(&org, &AuditQuery::default()).await?;
    /// assert_eq!(events.len(), 1);
    /// assert_eq!((events[0].operation.as_str(), events[0].entity_id.as_str()), ("createPolicy", "vpn"));
    /// assert_eq!(events[0].before, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the backend cannot be read.
    pub async fn audit_events(
        &self,
        org: &OrgId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, BackendError> {
        self.inner.backend.audit_events(org, query).await
    }

    /// What the report-only rule `kind`/`rule` of `org` would have refused since it
    /// entered report mode: see [`report`](crate::report#what-a-rule-would-deny-before-it-enforces).
    /// `None` when the rule exists but enforces (or, for the site list, is disabled).
    ///
    /// With a backend that [shares](Backend::shares_would_deny) summaries
    /// (PostgreSQL), this process's own summary is merged with what every other
    /// replica last flushed ([`flush_would_deny`](Self::flush_would_deny), which a
    /// `Replicator` runs periodically); otherwise it is this process's alone.
    ///
    /// ```
    /// use tower_ip_allowlist::policy::{Enforcement, OrgId};
    /// use tower_ip_allowlist::report::RuleKind;
    /// use tower_ip_allowlist::store::{Actor, PolicyDraft, Store};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let store = Store::memory();
    /// let org = OrgId::default();
    /// let draft = PolicyDraft::new("vpn", ["203.0.113.0/24"]).users(["alice"]).enforcement(Enforcement::Report);
    /// store.create_policy(&Actor::system(), &org, draft).await?;
    ///
    /// // What the layer does when alice calls from outside the range.
    /// let summaries = store.handle().would_deny();
    /// summaries.record(RuleKind::Policy, "default", "vpn", Some("alice"), Some("192.0.2.1".parse()?));
    ///
    /// let summary = store.would_deny(&org, RuleKind::Policy, "vpn").await?.unwrap();
    /// assert_eq!(summary.total_requests, 1);
    /// assert_eq!(summary.callers[0].user.as_deref(), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the rule does not exist, [`StoreError::Backend`]
    /// when the shared summaries cannot be read.
    pub async fn would_deny(
        &self,
        org: &OrgId,
        kind: RuleKind,
        rule: &str,
    ) -> Result<Option<RuleSummary>, StoreError> {
        let record = self.cached(org).unwrap_or_default();
        let exists = match kind {
            RuleKind::Policy => record.org.policies.contains_key(rule),
            RuleKind::SiteAllowlist => record.org.site.is_some(),
            RuleKind::ResourceAllowlist => record.org.resources.contains_key(rule),
        };
        if !exists {
            return Err(StoreError::NotFound {
                kind: kind.as_str(),
                id: rule.to_owned(),
            });
        }
        if !is_reporting(&record.org, kind, rule) {
            return Ok(None);
        }
        Ok(Some(
            self.merged_would_deny(org, kind, rule)
                .await?
                .unwrap_or_else(|| {
                    // Past `rules_per_org`: nothing summarized, from now on as far as is known.
                    RuleSummary::new(std::time::SystemTime::now())
                }),
        ))
    }

    /// Whether [`would_deny`](Self::would_deny) answers for every replica (the backend
    /// [shares](Backend::shares_would_deny) summaries) or for this process only.
    #[must_use]
    pub fn shares_would_deny(&self) -> bool {
        self.inner.backend.shares_would_deny()
    }

    /// This process's name among the replicas sharing would-deny summaries: random,
    /// new for every store.
    #[must_use]
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }

    /// Writes this process's would-deny summaries to a backend that
    /// [shares](Backend::shares_would_deny) them, replacing what it wrote before, if
    /// anything was recorded since the last flush. A `Replicator` calls it every
    /// [`would_deny_flush_interval`](ReplicationOptions::would_deny_flush_interval)
    /// (feature `postgres`); call it yourself with another shared backend. Returns
    /// whether it wrote.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when the backend cannot be written; the summaries are written
    /// on the next call.
    pub async fn flush_would_deny(&self) -> Result<bool, BackendError> {
        let summaries = self.inner.handle.would_deny();
        if !self.inner.backend.shares_would_deny() || !summaries.take_changed() {
            return Ok(false);
        }
        let all = summaries.export();
        let flushed = self
            .inner
            .backend
            .flush_would_deny(&self.inner.replica, &all)
            .await;
        if flushed.is_err() {
            summaries.mark_changed();
        }
        flushed.map(|()| true)
    }

    /// This process's summary merged with the other replicas'.
    async fn merged_would_deny(
        &self,
        org: &OrgId,
        kind: RuleKind,
        rule: &str,
    ) -> Result<Option<RuleSummary>, BackendError> {
        let summaries = self.inner.handle.would_deny();
        let local = summaries.summary(kind, org.as_str(), rule);
        let remote = if self.inner.backend.shares_would_deny() {
            self.inner
                .backend
                .would_deny(org, kind, rule, &self.inner.replica)
                .await?
        } else {
            Vec::new()
        };
        Ok(RuleSummary::merge(
            local.into_iter().chain(remote),
            summaries.limits().callers_per_rule,
        ))
    }

    fn cached(&self, org: &OrgId) -> Option<Arc<Published>> {
        self.inner.cache.lock().ok()?.get(org).cloned()
    }

    /// A policy of `org`.
    #[must_use]
    pub fn get_policy(&self, org: &OrgId, id: &str) -> Option<StoredPolicy> {
        self.cached(org).and_then(|record| stored(&record, id))
    }

    /// Every policy of `org`, by id.
    #[must_use]
    pub fn list_policies(&self, org: &OrgId) -> Vec<StoredPolicy> {
        let Some(record) = self.cached(org) else {
            return Vec::new();
        };
        record
            .org
            .policies
            .keys()
            .filter_map(|id| stored(&record, id.as_str()))
            .collect()
    }

    /// A group of `org` that has parents.
    #[must_use]
    pub fn get_group(&self, org: &OrgId, group: &str) -> Option<StoredGroup> {
        let record = self.cached(org)?;
        let parents: BTreeSet<GroupId> = record.org.groups.parents(group).cloned().collect();
        (!parents.is_empty()).then(|| StoredGroup {
            id: GroupId::from(group),
            parents,
        })
    }

    /// Every group of `org` that has parents, with them, by id.
    #[must_use]
    pub fn list_groups(&self, org: &OrgId) -> Vec<StoredGroup> {
        self.cached(org).map_or_else(Vec::new, |record| {
            record
                .org
                .groups
                .iter()
                .map(|(id, parents)| StoredGroup {
                    id: id.clone(),
                    parents: parents.clone(),
                })
                .collect()
        })
    }

    // ---- policy changes ----------------------------------------------------------

    /// Creates a policy.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] for an existing id, [`StoreError::PolicyLimitExceeded`],
    /// and the validation errors of every change.
    pub async fn create_policy(
        &self,
        actor: &Actor,
        org: &OrgId,
        draft: PolicyDraft,
    ) -> Result<StoredPolicy, StoreError> {
        check_sources(&draft.allowed_sources, self.inner.limits)?;
        check_blocked(&draft.blocked_sources, self.inner.limits)?;
        let policy = build_policy(draft, Ids::New)?;
        check_new_policy(&policy)?;
        let id = policy.id().clone();
        let limits = self.inner.limits;
        let record = self
            .change(
                actor,
                org,
                "createPolicy",
                Subject::Policy(&id),
                &|record| {
                    if record.org.policies.contains_key(&id) {
                        return Err(StoreError::Conflict { id: id.to_string() });
                    }
                    if record.org.policies.len() >= limits.max_policies_per_org {
                        return Err(StoreError::PolicyLimitExceeded {
                            limit: limits.max_policies_per_org,
                        });
                    }
                    check_targets(&policy, limits)?;
                    record.org.insert_policy(policy.clone());
                    record.policy_versions.insert(id.clone(), 1);
                    Ok(true)
                },
            )
            .await?;
        committed(&record, &id)
    }

    /// Replaces a policy's name, sources and targets.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::VersionMismatch`] when `if_version` is
    /// stale, and the validation errors of every change.
    pub async fn replace_policy(
        &self,
        actor: &Actor,
        org: &OrgId,
        draft: PolicyDraft,
        if_version: Option<u64>,
    ) -> Result<StoredPolicy, StoreError> {
        check_sources(&draft.allowed_sources, self.inner.limits)?;
        check_blocked(&draft.blocked_sources, self.inner.limits)?;
        let policy = build_policy(draft, Ids::New)?;
        check_new_policy(&policy)?;
        let id = policy.id().clone();
        let limits = self.inner.limits;
        let record = self
            .change(
                actor,
                org,
                "replacePolicy",
                Subject::Policy(&id),
                &|record| {
                    existing(record, &id, if_version)?;
                    check_targets(&policy, limits)?;
                    let changed = record.org.policies.get(&id) != Some(&policy);
                    if changed {
                        record.org.insert_policy(policy.clone());
                        bump(record, &id);
                    }
                    Ok(changed)
                },
            )
            .await?;
        committed(&record, &id)
    }

    /// Changes the fields of a policy that `patch` sets.
    ///
    /// # Errors
    ///
    /// As [`replace_policy`](Self::replace_policy).
    pub async fn update_policy(
        &self,
        actor: &Actor,
        org: &OrgId,
        id: &str,
        patch: PolicyPatch,
        if_version: Option<u64>,
    ) -> Result<StoredPolicy, StoreError> {
        let id = PolicyId::from(id);
        if let Some(sources) = &patch.allowed_sources {
            check_sources(sources, self.inner.limits)?;
        }
        if let Some(blocked) = &patch.blocked_sources {
            check_blocked(blocked, self.inner.limits)?;
        }
        let sources = match &patch.allowed_sources {
            Some(sources) => Some(parse_sources(sources).map_err(StoreError::InvalidSource)?),
            None => None,
        };
        let blocked = match &patch.blocked_sources {
            Some(blocked) => {
                Some(parse_blocked_sources(blocked).map_err(StoreError::InvalidBlockedSource)?)
            }
            None => None,
        };
        for user in patch.users.iter().flatten() {
            check_principal_id("user", user.as_str())?;
        }
        for group in patch.groups.iter().flatten() {
            check_principal_id("userGroup", group.as_str())?;
        }
        let limits = self.inner.limits;
        let record = self
            .change(
                actor,
                org,
                "updatePolicy",
                Subject::Policy(&id),
                &|record| {
                    let mut policy = existing(record, &id, if_version)?.clone();
                    if let Some(name) = &patch.name {
                        policy.set_name(name.clone());
                    }
                    if let Some(sources) = &sources {
                        policy.set_sources(sources.clone()).map_err(|error| {
                            StoreError::InvalidSource(crate::source::SourceListError {
                                index: None,
                                error,
                            })
                        })?;
                    }
                    if let Some(blocked) = &blocked {
                        policy
                            .set_blocked_sources(blocked.clone())
                            .map_err(|error| {
                                StoreError::InvalidBlockedSource(SourceListError {
                                    index: None,
                                    error,
                                })
                            })?;
                    }
                    if let Some(users) = &patch.users {
                        let groups = policy.groups().to_vec();
                        policy.set_targets(users.iter().cloned(), groups);
                    }
                    if let Some(groups) = &patch.groups {
                        let users = policy.users().to_vec();
                        policy.set_targets(users, groups.iter().cloned());
                    }
                    if let Some(enforcement) = patch.enforcement {
                        policy.set_enforcement(enforcement);
                    }
                    check_targets(&policy, limits)?;
                    let changed = record.org.policies.get(&id) != Some(&policy);
                    if changed {
                        record.org.insert_policy(policy);
                        bump(record, &id);
                    }
                    Ok(changed)
                },
            )
            .await?;
        committed(&record, &id)
    }

    /// Deletes a policy.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::VersionMismatch`], and the lockout guard.
    pub async fn delete_policy(
        &self,
        actor: &Actor,
        org: &OrgId,
        id: &str,
        if_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let id = PolicyId::from(id);
        self.change(
            actor,
            org,
            "deletePolicy",
            Subject::Policy(&id),
            &|record| {
                existing(record, &id, if_version)?;
                record.org.policies.remove(&id);
                record.policy_versions.remove(&id);
                Ok(true)
            },
        )
        .await?;
        Ok(())
    }

    /// Assigns users and groups to a policy; already assigned ones are left alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], [`StoreError::TargetLimitExceeded`], invalid ids, and
    /// the lockout guard.
    pub async fn add_targets(
        &self,
        actor: &Actor,
        org: &OrgId,
        id: &str,
        targets: Targets,
    ) -> Result<StoredPolicy, StoreError> {
        targets.validate()?;
        let Targets { users, groups } = targets;
        let id = PolicyId::from(id);
        let limits = self.inner.limits;
        let record = self
            .change(actor, org, "addTargets", Subject::Policy(&id), &|record| {
                let mut policy = existing(record, &id, None)?.clone();
                if !policy.add_targets(users.iter().cloned(), groups.iter().cloned()) {
                    return Ok(false);
                }
                check_targets(&policy, limits)?;
                record.org.insert_policy(policy);
                bump(record, &id);
                Ok(true)
            })
            .await?;
        committed(&record, &id)
    }

    /// Unassigns users and groups; ones that were not assigned are ignored. Removing
    /// the last target keeps the policy, inactive.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`], invalid ids, and the lockout guard.
    pub async fn remove_targets(
        &self,
        actor: &Actor,
        org: &OrgId,
        id: &str,
        targets: Targets,
    ) -> Result<StoredPolicy, StoreError> {
        targets.validate()?;
        let Targets { users, groups } = targets;
        let id = PolicyId::from(id);
        let record = self
            .change(
                actor,
                org,
                "removeTargets",
                Subject::Policy(&id),
                &|record| {
                    let mut policy = existing(record, &id, None)?.clone();
                    if !policy.remove_targets(&users, &groups) {
                        return Ok(false);
                    }
                    record.org.insert_policy(policy);
                    bump(record, &id);
                    Ok(true)
                },
            )
            .await?;
        committed(&record, &id)
    }

    // ---- group changes -----------------------------------------------------------

    /// Replaces a group's parents (an empty set removes them).
    ///
    /// # Errors
    ///
    /// [`StoreError::Cycle`], invalid ids, and the lockout guard.
    pub async fn set_group_parents<G: Into<GroupId>>(
        &self,
        actor: &Actor,
        org: &OrgId,
        group: &str,
        parents: impl IntoIterator<Item = G>,
    ) -> Result<StoredGroup, StoreError> {
        check_principal_id("userGroup", group)?;
        let parents: BTreeSet<GroupId> = parents.into_iter().map(Into::into).collect();
        for parent in &parents {
            check_principal_id("userGroup", parent.as_str())?;
        }
        let limits = self.inner.limits;
        if parents.len() > limits.max_parents_per_group {
            return Err(StoreError::ParentLimitExceeded {
                limit: limits.max_parents_per_group,
                count: parents.len(),
            });
        }
        let group_id = GroupId::from(group);
        self.change(
            actor,
            org,
            "setGroupParents",
            Subject::Group(&group_id),
            &|record| {
                let current: BTreeSet<GroupId> =
                    record.org.groups.parents(group).cloned().collect();
                if current == parents {
                    return Ok(false);
                }
                let before = (record.org.groups.group_count(), record.org.groups.depth());
                record
                    .org
                    .groups
                    .set_parents(group_id.clone(), parents.iter().cloned())
                    .map_err(StoreError::Cycle)?;
                check_hierarchy(&record.org.groups, before, limits)?;
                Ok(true)
            },
        )
        .await?;
        Ok(StoredGroup {
            id: group_id,
            parents,
        })
    }

    /// Removes a group's parent links (its children keep theirs).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the group has no parents, and the lockout guard.
    pub async fn delete_group(
        &self,
        actor: &Actor,
        org: &OrgId,
        group: &str,
    ) -> Result<(), StoreError> {
        let group_id = GroupId::from(group);
        self.change(
            actor,
            org,
            "deleteGroup",
            Subject::Group(&group_id),
            &|record| {
                if !record.org.groups.remove(group) {
                    return Err(StoreError::NotFound {
                        kind: "userGroup",
                        id: group.to_owned(),
                    });
                }
                Ok(true)
            },
        )
        .await?;
        Ok(())
    }

    /// Explains, rule by rule, what `org`'s policies and site list say about a caller
    /// (`user` and direct `groups`) at `addr`; see [`explain`](crate::explain).
    #[must_use]
    pub fn explain<'a>(
        &self,
        org: &OrgId,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
        addr: Option<IpAddr>,
    ) -> Explanation {
        match self.cached(org) {
            Some(record) => explain(&record.org, user, groups, addr),
            None => explain(&OrgPolicies::default(), user, groups, addr),
        }
    }

    // ---- site and resource lists -----------------------------------------------

    /// The site allowlist of `org`, if one was ever set.
    #[must_use]
    pub fn site_list(&self, org: &OrgId) -> Option<SiteList> {
        self.cached(org)?.org.site.clone()
    }

    /// Sets the site allowlist of `org`: enabled or not, its sources and enforcement.
    /// Disabling it with no sources keeps the sources it had (or none, if it never had
    /// any); the result is what is now stored.
    ///
    /// # Errors
    ///
    /// Source validation errors, and the lockout guard: enabling or changing the list
    /// so that the acting administrator's address falls outside is refused unless
    /// forced.
    pub async fn set_site_list(
        &self,
        actor: &Actor,
        org: &OrgId,
        enabled: bool,
        draft: ListDraft,
    ) -> Result<Option<SiteList>, StoreError> {
        let site = if !enabled && draft.allowed_sources.is_empty() {
            None
        } else {
            Some(SiteList {
                enabled,
                list: draft.build(self.inner.limits)?,
            })
        };
        let record = self
            .change(actor, org, "setSiteAllowlist", Subject::Site, &|record| {
                let next = match &site {
                    Some(site) => Some(site.clone()),
                    // Disable, keeping the sources.
                    None => record.org.site.clone().map(|site| SiteList {
                        enabled: false,
                        ..site
                    }),
                };
                if record.org.site == next {
                    return Ok(false);
                }
                record.org.site = next;
                Ok(true)
            })
            .await?;
        Ok(record.org.site)
    }

    /// The allowlist of `resource` in `org`, if it has one.
    #[must_use]
    pub fn resource_list(&self, org: &OrgId, resource: &str) -> Option<SourceList> {
        self.cached(org)?.org.resources.get(resource).cloned()
    }

    /// Every resource of `org` that has an allowlist, by id.
    #[must_use]
    pub fn resource_lists(&self, org: &OrgId) -> Vec<(ResourceId, SourceList)> {
        self.cached(org).map_or_else(Vec::new, |record| {
            record
                .org
                .resources
                .iter()
                .map(|(id, list)| (id.clone(), list.clone()))
                .collect()
        })
    }

    /// Sets (creating or replacing) the allowlist of `resource`.
    ///
    /// # Errors
    ///
    /// Source validation errors, an invalid id, and
    /// [`StoreError::ResourceLimitExceeded`].
    pub async fn set_resource_list(
        &self,
        actor: &Actor,
        org: &OrgId,
        resource: &str,
        draft: ListDraft,
    ) -> Result<SourceList, StoreError> {
        check_principal_id("resource", resource)?;
        let list = draft.build(self.inner.limits)?;
        let id = ResourceId::from(resource);
        let limit = self.inner.limits.max_resource_lists_per_org;
        let record = self
            .change(
                actor,
                org,
                "setResourceAllowlist",
                Subject::Resource(&id),
                &|record| {
                    let resources = &mut record.org.resources;
                    if resources.get(&id) == Some(&list) {
                        return Ok(false);
                    }
                    if !resources.contains_key(&id) && resources.len() >= limit {
                        return Err(StoreError::ResourceLimitExceeded { limit });
                    }
                    resources.insert(id.clone(), list.clone());
                    Ok(true)
                },
            )
            .await?;
        record
            .org
            .resources
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                kind: "resourceAllowlist",
                id: id.to_string(),
            })
    }

    /// Removes the allowlist of `resource`, leaving it unrestricted.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when it has none.
    pub async fn delete_resource_list(
        &self,
        actor: &Actor,
        org: &OrgId,
        resource: &str,
    ) -> Result<(), StoreError> {
        let id = ResourceId::from(resource);
        self.change(
            actor,
            org,
            "deleteResourceAllowlist",
            Subject::Resource(&id),
            &|record| {
                if record.org.resources.remove(&id).is_none() {
                    return Err(StoreError::NotFound {
                        kind: "resourceAllowlist",
                        id: id.to_string(),
                    });
                }
                Ok(true)
            },
        )
        .await?;
        Ok(())
    }

    // ---- the one path every change takes ------------------------------------------

    async fn change(
        &self,
        actor: &Actor,
        org: &OrgId,
        operation: &'static str,
        subject: Subject<'_>,
        apply: Change<'_>,
    ) -> Result<OrgRecord, StoreError> {
        // The organization comes from the caller's identity, not a document: checked
        // here, on the one path every change takes, so no backend ever sees an id the
        // others would refuse (PostgreSQL cannot store NUL, nor notify 8000 bytes).
        check_principal_id("organization", org.as_str())?;
        // The would-deny guard, like the lockout guard: for an administrator of the
        // organization, unless forced. The summary is read before the transaction
        // (with PostgreSQL it is a query); the transition is judged in it.
        let rule = subject.rule();
        let unguarded = actor.force
            || actor
                .identity
                .as_ref()
                .is_none_or(|identity| identity.organization_or_default() != *org);
        let summary = match rule {
            Some((kind, id))
                if !unguarded
                    && self
                        .cached(org)
                        .is_some_and(|record| is_reporting(&record.org, kind, id)) =>
            {
                self.merged_would_deny(org, kind, id).await?
            }
            _ => None,
        };
        let guarded = |record: &mut OrgRecord| {
            let was_reporting = rule.is_some_and(|(kind, id)| is_reporting(&record.org, kind, id));
            let changed = apply(record)?;
            if changed {
                check_lockout(actor, org, &record.org)?;
                if let Some((kind, id)) = rule.filter(|_| was_reporting && !unguarded) {
                    // The cached state was older than the stored one: this process's own.
                    let local = || {
                        self.inner
                            .handle
                            .would_deny()
                            .summary(kind, org.as_str(), id)
                    };
                    check_would_deny(kind, id, &record.org, summary.clone().or_else(local))?;
                }
            }
            Ok(changed)
        };
        let draft = AuditDraft::new(
            actor,
            operation,
            subject.owned(),
            self.inner.limits.audit_retention,
        );
        let updated = self.inner.backend.update(org, &guarded, &draft).await?;
        if updated.changed {
            audit(actor, org, operation, subject, &updated);
            self.publish(org, updated.after.clone())?;
            if let Some((kind, id)) = rule {
                if is_reporting(&updated.before.org, kind, id)
                    && !is_reporting(&updated.after.org, kind, id)
                {
                    // Every replica's summary of the rule is history now. Replicas drop
                    // their own as the change reaches them; one that flushes before
                    // it does writes its rows back until its next flush.
                    if let Err(err) = self.inner.backend.forget_would_deny(org, kind, id).await {
                        tracing::warn!(error = %err, organization = %org, rule_kind = kind.as_str(), rule = id, "allowlist: the shared would-deny summary of a rule that left report mode could not be deleted; it is replaced when each replica next flushes");
                    }
                }
            }
        }
        Ok(updated.after)
    }

    fn lock_cache(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<OrgId, Arc<Published>>>, BackendError> {
        self.inner.cache.lock().map_err(|_| {
            BackendError::new("the store's cache lock was poisoned by a panic in another thread")
        })
    }

    /// Publishes every organization of a replicator's first load, as
    /// [`resync`](Self::resync) does for an unloaded store, compiling on the blocking
    /// pool so that the runtime's threads keep serving meanwhile. Returns how many
    /// organizations were loaded.
    #[cfg(feature = "postgres")]
    pub(crate) async fn publish_first_load(
        &self,
        records: Vec<(OrgId, OrgRecord)>,
    ) -> Result<usize, BackendError> {
        let store = self.clone();
        join_blocking(
            tokio::task::spawn_blocking(move || store.publish_loaded(records)),
            "publishing the loaded organizations",
        )
        .await
    }

    /// Publishes a load of every organization, ending a pending state, and says so at
    /// INFO. Returns how many organizations were loaded.
    fn publish_loaded(&self, records: Vec<(OrgId, OrgRecord)>) -> Result<usize, BackendError> {
        let count = records.len();
        self.publish_all(records)?;
        tracing::info!(organizations = count, "allowlist policies loaded");
        Ok(count)
    }

    /// Publishes a whole snapshot of `records` (merged with anything newer published
    /// meanwhile), ending a pending state.
    fn publish_all(&self, records: Vec<(OrgId, OrgRecord)>) -> Result<(), BackendError> {
        let mut cache = self.lock_cache()?;
        for (id, record) in records {
            if cache
                .get(&id)
                .is_none_or(|cached| cached.version < record.version)
            {
                cache.insert(id, Arc::new(Published::new(record)));
            }
        }
        let snapshot = Snapshot::from_shared_orgs(
            cache
                .iter()
                .map(|(id, record)| (id.clone(), Arc::clone(&record.org))),
        );
        self.inner.handle.publish(snapshot);
        for (id, record) in cache.iter() {
            self.inner
                .handle
                .would_deny()
                .sync_org(id.as_str(), &record.org);
        }
        Ok(())
    }

    /// Publishes `record` unless a newer one was published already (two writers can
    /// finish in either order; the snapshot must end at the newest).
    fn publish(&self, org: &OrgId, record: OrgRecord) -> Result<(), BackendError> {
        let mut cache = self.lock_cache()?;
        if cache
            .get(org)
            .is_some_and(|cached| cached.version >= record.version)
        {
            return Ok(());
        }
        let record = Published::new(record);
        self.inner
            .handle
            .set_org_shared(org.clone(), Arc::clone(&record.org));
        // Summaries start and end with report mode, whoever made the change.
        self.inner
            .handle
            .would_deny()
            .sync_org(org.as_str(), &record.org);
        cache.insert(org.clone(), Arc::new(record));
        Ok(())
    }
}

/// The policy `id` as `record` (what a change committed) holds it.
fn committed(record: &OrgRecord, id: &PolicyId) -> Result<StoredPolicy, StoreError> {
    Ok(StoredPolicy {
        policy: existing(record, id, None)?.clone(),
        version: record.policy_version(id),
    })
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

/// What a change is about, for the audit event.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Policy(&'a PolicyId),
    Group(&'a GroupId),
    Site,
    Resource(&'a ResourceId),
}

impl<'a> Subject<'a> {
    /// The rule the change is about, for those that have a report mode.
    fn rule(self) -> Option<(RuleKind, &'a str)> {
        match self {
            Self::Policy(id) => Some((RuleKind::Policy, id.as_str())),
            Self::Group(_) => None,
            Self::Site => Some((RuleKind::SiteAllowlist, RuleKind::SiteAllowlist.as_str())),
            Self::Resource(id) => Some((RuleKind::ResourceAllowlist, id.as_str())),
        }
    }

    fn owned(self) -> audit::Subject {
        match self {
            Self::Policy(id) => audit::Subject::Policy(id.clone()),
            Self::Group(id) => audit::Subject::Group(id.clone()),
            Self::Site => audit::Subject::Site,
            Self::Resource(id) => audit::Subject::Resource(id.clone()),
        }
    }
}

fn audit(actor: &Actor, org: &OrgId, operation: &str, subject: Subject<'_>, updated: &Updated) {
    match subject {
        Subject::Policy(id) => tracing::info!(
            target: "tower_ip_allowlist::audit",
            organization = %org,
            actor = actor.name(),
            forced = actor.force,
            operation,
            policy = %id,
            before = ?updated.before.org.policies.get(id),
            after = ?updated.after.org.policies.get(id),
            "allowlist policy changed"
        ),
        Subject::Group(id) => tracing::info!(
            target: "tower_ip_allowlist::audit",
            organization = %org,
            actor = actor.name(),
            forced = actor.force,
            operation,
            group = %id,
            before = ?updated.before.org.groups.parents(id.as_str()).collect::<Vec<_>>(),
            after = ?updated.after.org.groups.parents(id.as_str()).collect::<Vec<_>>(),
            "allowlist group hierarchy changed"
        ),
        Subject::Site => tracing::info!(
            target: "tower_ip_allowlist::audit",
            organization = %org,
            actor = actor.name(),
            forced = actor.force,
            operation,
            before = ?updated.before.org.site,
            after = ?updated.after.org.site,
            "site allowlist changed"
        ),
        Subject::Resource(id) => tracing::info!(
            target: "tower_ip_allowlist::audit",
            organization = %org,
            actor = actor.name(),
            forced = actor.force,
            operation,
            resource = %id,
            before = ?updated.before.org.resources.get(id),
            after = ?updated.after.org.resources.get(id),
            "resource allowlist changed"
        ),
    }
}

fn stored(record: &Published, id: &str) -> Option<StoredPolicy> {
    let policy = record.org.policies.get(id)?;
    Some(StoredPolicy {
        policy: policy.clone(),
        version: record.policy_version(id),
    })
}

fn existing<'r>(
    record: &'r OrgRecord,
    id: &PolicyId,
    if_version: Option<u64>,
) -> Result<&'r Policy, StoreError> {
    let policy = record
        .org
        .policies
        .get(id)
        .ok_or_else(|| StoreError::NotFound {
            kind: "policy",
            id: id.to_string(),
        })?;
    let actual = record.policy_version(id);
    match if_version {
        Some(expected) if expected != actual => {
            Err(StoreError::VersionMismatch { expected, actual })
        }
        _ => Ok(policy),
    }
}

fn bump(record: &mut OrgRecord, id: &PolicyId) {
    *record.policy_versions.entry(id.clone()).or_insert(1) += 1;
}

fn check_targets(policy: &Policy, limits: Limits) -> Result<(), StoreError> {
    let count = policy.target_count();
    if count > limits.max_targets_per_policy {
        return Err(StoreError::TargetLimitExceeded {
            limit: limits.max_targets_per_policy,
            count,
        });
    }
    Ok(())
}

/// Refuses a change after which the acting administrator would be denied.
fn check_lockout(actor: &Actor, org: &OrgId, policies: &OrgPolicies) -> Result<(), StoreError> {
    let Some(identity) = &actor.identity else {
        return Ok(());
    };
    if actor.force || identity.organization_or_default() != *org {
        return Ok(());
    }
    if let Some(site) = policies.site.as_ref().filter(|site| site.enabled) {
        let inside = actor.addr.is_some_and(|addr| site.list.contains(addr));
        if !inside && site.list.enforcement() == Enforcement::Enforce {
            return Err(actor.locked_out());
        }
    }
    let compiled = CompiledOrg::compile(policies);
    match compiled.decide(
        identity.user.as_str(),
        identity.groups.iter().map(GroupId::as_str),
        actor.addr,
    ) {
        Decision::Denied(_) => Err(actor.locked_out()),
        Decision::Allowed | Decision::NoPolicy => Ok(()),
    }
}

/// Refuses switching a rule that reported into enforcing while its would-deny
/// `summary` is not empty (the caller checked that it reported and is not forced).
fn check_would_deny(
    kind: RuleKind,
    rule: &str,
    policies: &OrgPolicies,
    summary: Option<RuleSummary>,
) -> Result<(), StoreError> {
    let enforcing = enforcement_of(policies, kind, rule) == Some(Enforcement::Enforce);
    match summary {
        Some(summary) if enforcing && !summary.is_empty() => Err(StoreError::WouldDenyCallers {
            kind,
            rule: rule.to_owned(),
            callers: summary.callers.len(),
            requests: summary.total_requests,
        }),
        _ => Ok(()),
    }
}

/// A name for this process among replicas: random enough that two never share one.
fn replica_id() -> Box<str> {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    format!("{:016x}", hasher.finish()).into_boxed_str()
}

/// The outcome of a task on the blocking pool: its panic goes on as it would have
/// here, and its cancellation (the runtime shutting down) is an error saying that
/// `what` was cancelled.
#[cfg(feature = "postgres")]
async fn join_blocking<T>(
    task: tokio::task::JoinHandle<Result<T, BackendError>>,
    what: &str,
) -> Result<T, BackendError> {
    match task.await {
        Ok(outcome) => outcome,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => Err(BackendError::new(format!(
            "{what} was cancelled ({err}): is the runtime shutting down?"
        ))),
    }
}

/// Refuses a hierarchy that passes a limit it was within (`before`: its group count
/// and depth before the change), so that data over a lowered limit can still shrink.
fn check_hierarchy(
    groups: &crate::policy::GroupHierarchy,
    (count_before, depth_before): (usize, usize),
    limits: Limits,
) -> Result<(), StoreError> {
    let count = groups.group_count();
    if count > limits.max_groups_per_org && count > count_before {
        return Err(StoreError::GroupLimitExceeded {
            limit: limits.max_groups_per_org,
            count,
        });
    }
    let depth = groups.depth();
    if depth > limits.max_group_depth && depth > depth_before {
        return Err(StoreError::DepthLimitExceeded {
            limit: limits.max_group_depth,
            depth,
        });
    }
    Ok(())
}

/// Refuses more blocked sources than a rule may have, before parsing any of them.
fn check_blocked(sources: &[String], limits: Limits) -> Result<(), StoreError> {
    if sources.len() > limits.max_sources_per_rule {
        return Err(StoreError::BlockedSourceLimitExceeded {
            limit: limits.max_sources_per_rule,
            count: sources.len(),
        });
    }
    Ok(())
}

/// The checks a new policy passes that a stored one need not: its allowed sources may
/// not admit everyone, nor its blocked sources refuse everyone.
fn check_new_policy(policy: &Policy) -> Result<(), StoreError> {
    check_coverage(policy.sources())
        .map_err(|error| StoreError::InvalidSource(SourceListError { index: None, error }))?;
    check_blocked_coverage(policy.blocked_sources())
        .map_err(|error| StoreError::InvalidBlockedSource(SourceListError { index: None, error }))
}

/// Refuses more sources than a rule may have, before parsing any of them.
fn check_sources(sources: &[String], limits: Limits) -> Result<(), StoreError> {
    if sources.len() > limits.max_sources_per_rule {
        return Err(StoreError::SourceLimitExceeded {
            limit: limits.max_sources_per_rule,
            count: sources.len(),
        });
    }
    Ok(())
}

/// How strictly ids are checked: new input meets today's rule; stored data meets the
/// rule it was written under, so that tightening the rule never makes a database
/// unreadable (nothing stored is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, reason = "only stored documents are read with `Stored`")
)]
pub(super) enum Ids {
    New,
    Stored,
}

impl Ids {
    pub(super) fn check(self, kind: &'static str, id: &str) -> Result<(), StoreError> {
        match (self, validate_id(id)) {
            (_, Ok(())) => Ok(()),
            // Allowed before the rule refused them: loaded, and the operator told.
            (
                Self::Stored,
                Err(
                    crate::policy::IdError::InvisibleCharacter
                    | crate::policy::IdError::SurroundingWhitespace,
                ),
            ) => {
                tracing::warn!(kind, id = %shown(id), "a stored id breaks today's id rule; it still works, but rename it");
                Ok(())
            }
            (_, Err(_)) => check_principal_id(kind, id),
        }
    }
}

/// Builds a policy from a draft, validating ids and each source. A new policy must
/// also pass [`check_coverage`], which the callers that create one apply: a policy
/// stored before that check existed still loads.
pub(super) fn build_policy(draft: PolicyDraft, ids: Ids) -> Result<Policy, StoreError> {
    check_policy_id(&draft.id)?;
    for user in &draft.users {
        ids.check("user", user.as_str())?;
    }
    for group in &draft.groups {
        ids.check("userGroup", group.as_str())?;
    }
    let sources = parse_each(&draft.allowed_sources).map_err(StoreError::InvalidSource)?;
    let blocked = parse_all(&draft.blocked_sources).map_err(StoreError::InvalidBlockedSource)?;
    let mut builder = Policy::builder(draft.id.as_str());
    for source in sources {
        builder = builder.source(source);
    }
    for source in blocked {
        builder = builder.blocked_source(source);
    }
    for user in draft.users {
        builder = builder.user(user);
    }
    for group in draft.groups {
        builder = builder.group(group);
    }
    if let Some(name) = draft.name {
        builder = builder.name(name);
    }
    builder = builder.enforcement(draft.enforcement);
    builder
        .build_stored()
        .map_err(|error| StoreError::InvalidSource(SourceListError { index: None, error }))
}

/// An id as a message shows it: at most 64 characters, control and invisible
/// characters escaped, so an error about a bad id is itself safe to print or log.
fn shown(id: &str) -> String {
    id.chars().take(64).flat_map(char::escape_debug).collect()
}

pub(crate) fn check_policy_id(id: &str) -> Result<(), StoreError> {
    let reason = if let Err(err) = validate_id(id) {
        Some(err.reason())
    } else if id.starts_with('.') {
        Some("starts with `.`")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may only hold letters, digits, `.`, `_` and `-`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidId {
            kind: "policy",
            id: shown(id),
            reason,
        }),
        None => Ok(()),
    }
}

/// The one rule for user, group, organization and resource ids
/// ([`validate_id`]), as a store error naming `kind`.
pub(crate) fn check_principal_id(kind: &'static str, id: &str) -> Result<(), StoreError> {
    validate_id(id).map_err(|err| StoreError::InvalidId {
        kind,
        id: shown(id),
        reason: err.reason(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::DenyReason;

    fn decide(store: &Store, org: &str) -> Decision {
        store
            .handle()
            .load()
            .decide(Some(org), "alice", [], Some([192, 0, 2, 1].into()))
    }

    /// Two stores on one backend stand for two processes sharing a database.
    #[tokio::test]
    async fn an_unloaded_store_fails_closed_then_resyncs_only_what_moved() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let writer = Store::open(
            Arc::clone(&backend),
            SnapshotHandle::default(),
            Limits::default(),
        )
        .await
        .unwrap();
        let system = Actor::system();
        for org in ["one", "two"] {
            writer
                .create_policy(
                    &system,
                    &OrgId::from(org),
                    PolicyDraft::new("p", ["203.0.113.0/24"]).users(["alice"]),
                )
                .await
                .unwrap();
        }

        let replica = Store::unloaded(backend, SnapshotHandle::default(), Limits::default());
        assert!(!replica.is_loaded());
        let unavailable = Decision::Denied(DenyReason::PoliciesUnavailable);
        assert_eq!(decide(&replica, "one"), unavailable);
        assert_eq!(decide(&replica, "nobody"), unavailable);

        assert_eq!(replica.resync().await.unwrap(), 2, "the initial load");
        assert!(replica.is_loaded());
        assert_eq!(
            decide(&replica, "one"),
            Decision::Denied(DenyReason::IpNotAllowed)
        );
        assert_eq!(decide(&replica, "nobody"), Decision::NoPolicy);
        assert_eq!(replica.resync().await.unwrap(), 0, "nothing moved");

        writer
            .replace_policy(
                &system,
                &OrgId::from("one"),
                PolicyDraft::new("p", ["192.0.2.0/24"]).users(["alice"]),
                Some(1),
            )
            .await
            .unwrap();
        let before = replica.handle().load_full();
        assert_eq!(replica.resync().await.unwrap(), 1, "only `one` moved");
        let after = replica.handle().load_full();
        assert_eq!(decide(&replica, "one"), Decision::Allowed);
        assert!(Arc::ptr_eq(
            before.org("two").unwrap(),
            after.org("two").unwrap()
        ));
        assert_eq!(
            replica
                .get_policy(&OrgId::from("one"), "p")
                .unwrap()
                .version,
            2
        );
    }
}
