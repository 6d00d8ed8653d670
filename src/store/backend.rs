use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

use super::api_token::ApiTokenRecord;
use super::audit::{AuditDraft, AuditQuery, AuditRecord};
use super::{BackendError, StoreError};
use crate::policy::{OrgId, OrgPolicies, PolicyId, UserId};
use crate::report::{NamedSummary, RuleKind, RuleSummary};

/// A boxed future, so [`Backend`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One organization's authoritative state, as a backend stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgRecord {
    /// Policies and group hierarchy.
    pub org: OrgPolicies,
    /// Each policy's version: 1 when created, bumped by every change to it.
    pub policy_versions: BTreeMap<PolicyId, u64>,
    /// The organization's data version, bumped by every committed change.
    pub version: u64,
}

impl OrgRecord {
    /// Policy `id`'s version: 1 where none is recorded (records stored before versions
    /// were, and a policy just created).
    #[must_use]
    pub fn policy_version(&self, id: &PolicyId) -> u64 {
        self.policy_versions.get(id).copied().unwrap_or(1)
    }
}

/// A change to one organization's record: returns whether it changed anything, or why
/// it is refused. It may run more than once (a backend may retry), so it must only
/// modify the record it is given.
pub type Change<'a> = &'a (dyn Fn(&mut OrgRecord) -> Result<bool, StoreError> + Send + Sync);

/// What [`Backend::update`] did.
#[derive(Debug, Clone)]
pub struct Updated {
    /// The record before the change.
    pub before: OrgRecord,
    /// The record after it (equal to `before` when nothing changed).
    pub after: OrgRecord,
    /// Whether anything was written.
    pub changed: bool,
}

impl Updated {
    /// Runs `change` on a copy of `before`: what a backend then writes, if `changed`,
    /// is `after`, with the next data version. Every backend's
    /// [`update`](Backend::update) goes through here.
    ///
    /// # Errors
    ///
    /// The change's refusal.
    pub fn apply(before: OrgRecord, change: Change<'_>) -> Result<Self, StoreError> {
        let mut after = before.clone();
        let changed = change(&mut after)?;
        if changed {
            after.version = before.version + 1;
        } else {
            after.clone_from(&before);
        }
        Ok(Self {
            before,
            after,
            changed,
        })
    }
}

/// Where the store keeps its state.
///
/// [`update`](Backend::update) is the heart of it: the backend serializes writers of an
/// organization (across processes too, for a shared database), loads the **current**
/// record inside that critical section, runs the change on it, and writes the result
/// with `version + 1` only if the change succeeded and changed something. Validation
/// thus runs against the stored state, not a cache that another writer may have made
/// stale, which is what keeps limits and versions true with several writers.
///
/// A committed change writes its [`AuditRecord`] ([`AuditDraft::record`]) in the same
/// transaction, then prunes what [`AuditDraft::retention`] no longer keeps (a prune
/// that fails must not fail the change). Nothing is recorded for a change that is
/// refused or changes nothing.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// Every organization's record.
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<(OrgId, OrgRecord)>, BackendError>>;

    /// One organization's record, if it has one.
    fn load<'a>(&'a self, org: &'a OrgId)
        -> BoxFuture<'a, Result<Option<OrgRecord>, BackendError>>;

    /// Applies `change` atomically, and writes the record `audit` makes of it in the
    /// same transaction; see the trait docs.
    fn update<'a>(
        &'a self,
        org: &'a OrgId,
        change: Change<'a>,
        audit: &'a AuditDraft,
    ) -> BoxFuture<'a, Result<Updated, StoreError>>;

    /// `org`'s audit records that pass `query`, newest (highest id) first, at most
    /// `query.limit`.
    fn audit_events<'a>(
        &'a self,
        org: &'a OrgId,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditRecord>, BackendError>>;

    /// Every organization's data version, without its policies: what
    /// [`Store::resync`](super::Store::resync) compares with what it published, to
    /// reload only the organizations that changed. The default reads everything with
    /// [`load_all`](Self::load_all); a backend shared by several processes should
    /// answer it more cheaply.
    fn versions(&self) -> BoxFuture<'_, Result<Vec<(OrgId, u64)>, BackendError>> {
        Box::pin(async move {
            Ok(self
                .load_all()
                .await?
                .into_iter()
                .map(|(id, record)| (id, record.version))
                .collect())
        })
    }

    /// Whether this backend shares would-deny summaries between the processes using
    /// it ([`flush_would_deny`](Self::flush_would_deny) and
    /// [`would_deny`](Self::would_deny) do something). The default is no: summaries
    /// are per process.
    fn shares_would_deny(&self) -> bool {
        false
    }

    /// Replaces everything `replica` flushed before with `summaries`, its current
    /// would-deny summaries (bounded by its [`SummaryLimits`](crate::report::SummaryLimits)).
    /// The default keeps nothing.
    fn flush_would_deny<'a>(
        &'a self,
        replica: &'a str,
        summaries: &'a [NamedSummary],
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let _ = (replica, summaries);
        Box::pin(async { Ok(()) })
    }

    /// The summaries of one rule that replicas other than `except` flushed. The
    /// default has none.
    fn would_deny<'a>(
        &'a self,
        org: &'a OrgId,
        kind: RuleKind,
        rule: &'a str,
        except: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RuleSummary>, BackendError>> {
        let _ = (org, kind, rule, except);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Forgets every replica's summary of one rule, which has left report mode. The
    /// default has nothing to forget.
    fn forget_would_deny<'a>(
        &'a self,
        org: &'a OrgId,
        kind: RuleKind,
        rule: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let _ = (org, kind, rule);
        Box::pin(async { Ok(()) })
    }

    // ---- API tokens (see `api_token`): the default is a backend without them -----

    /// Stores a new API token, and `audit`, its record, in the same transaction.
    /// Token ids and hashes are unique; a duplicate is a
    /// [refused](BackendError::refused) error.
    ///
    /// The default refuses: the backend does not store API tokens.
    fn insert_api_token<'a>(
        &'a self,
        token: &'a ApiTokenRecord,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let _ = (token, audit);
        Box::pin(async { Err(no_api_tokens()) })
    }

    /// The token whose hash is `hash`, if there is one: one indexed look-up, on every
    /// request that presents a token, so that a revocation holds on every replica
    /// from the moment it is committed.
    ///
    /// The default finds none.
    fn api_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<ApiTokenRecord>, BackendError>> {
        let _ = hash;
        Box::pin(async { Ok(None) })
    }

    /// `org`'s tokens (only `owner`'s, when given), oldest first.
    ///
    /// The default has none.
    fn api_tokens<'a>(
        &'a self,
        org: &'a OrgId,
        owner: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Vec<ApiTokenRecord>, BackendError>> {
        let _ = (org, owner);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Deletes `org`'s token `id` (only if `owner` owns it, when given) and writes
    /// `audit` in the same transaction; returns whether there was such a token
    /// (nothing is written when there was not).
    ///
    /// The default finds none.
    fn delete_api_token<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
        owner: Option<&'a UserId>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let _ = (org, id, owner, audit);
        Box::pin(async { Ok(false) })
    }

    /// Sets `org`'s token `id`'s last use to `at` if its stored last use is unset or before
    /// `stale_before`, and then only, writes `audit` in the same transaction; returns
    /// whether it wrote. The condition is checked by the database, so replicas that
    /// see the same token at once write it once.
    ///
    /// The default writes nothing.
    fn touch_api_token<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
        at: SystemTime,
        stale_before: SystemTime,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let _ = (org, id, at, stale_before, audit);
        Box::pin(async { Ok(false) })
    }
}

fn no_api_tokens() -> BackendError {
    BackendError::refused(
        "this store backend does not keep API tokens: use the memory, SQLite or PostgreSQL backend, or implement the token methods of `Backend`",
    )
}

/// Keeps everything in memory: for tests, and for applications that rebuild their
/// policies at start.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    orgs: Mutex<HashMap<OrgId, OrgRecord>>,
    audit: Mutex<MemoryAudit>,
    /// API tokens by hash.
    tokens: Mutex<HashMap<[u8; 32], ApiTokenRecord>>,
}

#[derive(Debug, Default)]
struct MemoryAudit {
    last_id: u64,
    /// Per organization, oldest first.
    records: HashMap<OrgId, Vec<AuditRecord>>,
}

impl MemoryBackend {
    /// An empty backend.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_audit(&self) -> Result<std::sync::MutexGuard<'_, MemoryAudit>, BackendError> {
        self.audit.lock().map_err(|_| {
            BackendError::new(
                "the in-memory backend's audit lock was poisoned by a panic in another thread",
            )
        })
    }

    fn lock_tokens(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<[u8; 32], ApiTokenRecord>>, BackendError> {
        self.tokens.lock().map_err(|_| {
            BackendError::new(
                "the in-memory backend's token lock was poisoned by a panic in another thread",
            )
        })
    }

    /// Appends `record` to the audit trail (no pruning: the next policy change prunes).
    fn append_audit(&self, record: &AuditRecord) -> Result<(), BackendError> {
        let mut trail = self.lock_audit()?;
        trail.last_id += 1;
        let mut record = record.clone();
        record.id = trail.last_id;
        trail
            .records
            .entry(record.org.clone())
            .or_default()
            .push(record);
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<OrgId, OrgRecord>>, BackendError> {
        self.orgs.lock().map_err(|_| {
            BackendError::new(
                "the in-memory backend's lock was poisoned by a panic in another thread",
            )
        })
    }
}

impl Backend for MemoryBackend {
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<(OrgId, OrgRecord)>, BackendError>> {
        Box::pin(async move {
            Ok(self
                .lock()?
                .iter()
                .map(|(id, record)| (id.clone(), record.clone()))
                .collect())
        })
    }

    fn load<'a>(
        &'a self,
        org: &'a OrgId,
    ) -> BoxFuture<'a, Result<Option<OrgRecord>, BackendError>> {
        Box::pin(async move { Ok(self.lock()?.get(org).cloned()) })
    }

    fn update<'a>(
        &'a self,
        org: &'a OrgId,
        change: Change<'a>,
        audit: &'a AuditDraft,
    ) -> BoxFuture<'a, Result<Updated, StoreError>> {
        Box::pin(async move {
            let mut orgs = self.lock()?;
            // Taken before anything is written, so the change and its record are
            // stored together or not at all.
            let mut trail = self.lock_audit()?;
            let before = orgs.get(org).cloned().unwrap_or_default();
            let updated = Updated::apply(before, change)?;
            if updated.changed {
                let mut record = audit.record(org, &updated);
                trail.last_id += 1;
                record.id = trail.last_id;
                let records = trail.records.entry(org.clone()).or_default();
                records.push(record);
                let (keep, cutoff) = audit.retention().bounds(std::time::SystemTime::now());
                let excess = records
                    .len()
                    .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
                let old = records
                    .iter()
                    .take_while(|r| r.time_micros() < cutoff)
                    .count();
                // Never the record just written: no change without its record.
                let prune = excess
                    .max(old)
                    .min(super::audit::PRUNE_BATCH as usize)
                    .min(records.len() - 1);
                records.drain(..prune);
                orgs.insert(org.clone(), updated.after.clone());
            }
            Ok(updated)
        })
    }

    fn audit_events<'a>(
        &'a self,
        org: &'a OrgId,
        query: &'a AuditQuery,
    ) -> BoxFuture<'a, Result<Vec<AuditRecord>, BackendError>> {
        Box::pin(async move {
            let trail = self.lock_audit()?;
            Ok(trail.records.get(org).map_or_else(Vec::new, |records| {
                records
                    .iter()
                    .rev()
                    .filter(|r| query.matches(r))
                    .take(query.limit)
                    .cloned()
                    .collect()
            }))
        })
    }

    fn insert_api_token<'a>(
        &'a self,
        token: &'a ApiTokenRecord,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut tokens = self.lock_tokens()?;
            if tokens.contains_key(&token.hash) || tokens.values().any(|t| t.id == token.id) {
                return Err(BackendError::refused(
                    "an API token with this id or hash exists",
                ));
            }
            self.append_audit(audit)?;
            tokens.insert(token.hash, token.clone());
            Ok(())
        })
    }

    fn api_token_by_hash<'a>(
        &'a self,
        hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<Option<ApiTokenRecord>, BackendError>> {
        Box::pin(async move { Ok(self.lock_tokens()?.get(hash).cloned()) })
    }

    fn api_tokens<'a>(
        &'a self,
        org: &'a OrgId,
        owner: Option<&'a UserId>,
    ) -> BoxFuture<'a, Result<Vec<ApiTokenRecord>, BackendError>> {
        Box::pin(async move {
            let mut found: Vec<ApiTokenRecord> = self
                .lock_tokens()?
                .values()
                .filter(|t| t.org == *org && owner.is_none_or(|owner| t.owner == *owner))
                .cloned()
                .collect();
            found.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            Ok(found)
        })
    }

    fn delete_api_token<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
        owner: Option<&'a UserId>,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let mut tokens = self.lock_tokens()?;
            let Some(hash) = tokens
                .values()
                .find(|t| {
                    t.org == *org && t.id == id && owner.is_none_or(|owner| t.owner == *owner)
                })
                .map(|t| t.hash)
            else {
                return Ok(false);
            };
            self.append_audit(audit)?;
            tokens.remove(&hash);
            Ok(true)
        })
    }

    fn touch_api_token<'a>(
        &'a self,
        org: &'a OrgId,
        id: &'a str,
        at: SystemTime,
        stale_before: SystemTime,
        audit: &'a AuditRecord,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let mut tokens = self.lock_tokens()?;
            let Some(token) = tokens.values_mut().find(|t| t.org == *org && t.id == id) else {
                return Ok(false);
            };
            if token.last_used.is_some_and(|last| last >= stale_before) {
                return Ok(false);
            }
            self.append_audit(audit)?;
            token.last_used = Some(at);
            Ok(true)
        })
    }
}
