//! The audit trail: one [`AuditRecord`] per committed change, written by the
//! [`Backend`](super::Backend) in the same transaction as the change itself.
//!
//! A change that is refused (validation, lockout, stale version) or that changes
//! nothing writes no record; a change that is committed always has one, so the trail
//! and the stored state cannot disagree, even across a crash.
//!
//! Records are kept per organization and read newest first with
//! [`Store::audit_events`](super::Store::audit_events). [`AuditRetention`] bounds how
//! many are kept, and for how long: the backend prunes, in the same transaction, just
//! after it wrote the new record, at most [`PRUNE_BATCH`] records per change; a
//! prune that fails is logged and rolled back on its own, and never fails the change.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::backend::{OrgRecord, Updated};
use super::Actor;
use crate::policy::{GroupId, OrgId, PolicyId, ResourceId, SourceList};

/// The most records one change prunes: a lowered limit is reached over a few changes
/// rather than by one long delete.
pub const PRUNE_BATCH: u32 = 1000;

/// One committed change, as the audit trail keeps it. Not `#[non_exhaustive]`: a
/// custom [`Backend`](super::Backend) builds it from what it stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The record's id, assigned by the backend when it is written: increasing, never
    /// reused, and the order of the organization's changes. Opaque otherwise.
    pub id: u64,
    /// When the change was made (the writer's clock), to the microsecond.
    pub time: SystemTime,
    /// The organization changed.
    pub org: OrgId,
    /// Who made it: the administrator's user id, or `system`.
    pub actor: String,
    /// The administrator's client address, as the layers resolved it (`None` when
    /// unknown, or for `system`).
    pub client_ip: Option<IpAddr>,
    /// Whether the administrator forced the change past the lockout guard.
    pub forced: bool,
    /// What was done: `createPolicy`, `updatePolicy`, `setSiteAllowlist`, ...
    pub operation: String,
    /// What it was done to: `policy`, `userGroup`, `siteAllowlist` or
    /// `resourceAllowlist`.
    pub entity_type: String,
    /// The entity's id (`site` for the site allowlist).
    pub entity_id: String,
    /// The organization's data version before the change.
    pub version_before: u64,
    /// The organization's data version after it.
    pub version_after: u64,
    /// The entity before the change, as JSON; `None` when it did not exist.
    pub before: Option<Value>,
    /// The entity after the change, as JSON; `None` when it was deleted.
    pub after: Option<Value>,
}

impl AuditRecord {
    /// [`time`](Self::time) as microseconds since the Unix epoch (negative before it),
    /// as the SQL backends store it.
    #[must_use]
    pub fn time_micros(&self) -> i64 {
        micros(self.time)
    }
}

/// Microseconds since the Unix epoch, saturating.
pub(crate) fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// The inverse of [`micros`].
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// What is known of a change before it runs: who makes it and what it is about. The
/// backend turns it into the [`AuditRecord`] it writes with
/// [`record`](Self::record), once the change is applied.
///
/// The [`Store`](super::Store) makes one for every change and passes it to
/// [`Backend::update`](super::Backend::update); a backend only reads it.
#[derive(Debug, Clone)]
pub struct AuditDraft {
    actor: String,
    client_ip: Option<IpAddr>,
    forced: bool,
    operation: &'static str,
    subject: Subject,
    retention: AuditRetention,
}

/// What a change is about.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    Policy(PolicyId),
    Group(GroupId),
    Site,
    Resource(ResourceId),
}

impl AuditDraft {
    pub(crate) fn new(
        actor: &Actor,
        operation: &'static str,
        subject: Subject,
        retention: AuditRetention,
    ) -> Self {
        Self {
            actor: actor.name().to_owned(),
            client_ip: actor.addr,
            forced: actor.force,
            operation,
            subject,
            retention,
        }
    }

    /// The retention the backend enforces after writing the record.
    #[must_use]
    pub fn retention(&self) -> AuditRetention {
        self.retention
    }

    /// The record of `updated` in `org`, stamped now, with id 0 (the backend assigns
    /// the id when it writes it).
    #[must_use]
    pub fn record(&self, org: &OrgId, updated: &Updated) -> AuditRecord {
        let (entity_type, entity_id) = match &self.subject {
            Subject::Policy(id) => ("policy", id.to_string()),
            Subject::Group(id) => ("userGroup", id.to_string()),
            Subject::Site => ("siteAllowlist", "site".to_owned()),
            Subject::Resource(id) => ("resourceAllowlist", id.to_string()),
        };
        AuditRecord {
            id: 0,
            // Stored to the microsecond: truncate now, so what is returned is what is read.
            time: from_micros(micros(SystemTime::now())),
            org: org.clone(),
            actor: self.actor.clone(),
            client_ip: self.client_ip,
            forced: self.forced,
            operation: self.operation.to_owned(),
            entity_type: entity_type.to_owned(),
            entity_id,
            version_before: updated.before.version,
            version_after: updated.after.version,
            before: state(&updated.before, &self.subject),
            after: state(&updated.after, &self.subject),
        }
    }
}

/// How long, and how many, audit records are kept per organization. The default keeps
/// every record. The record of the change just committed is never pruned, whatever
/// the limits (a count of 0 keeps that one, as does an age of zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditRetention {
    /// The most records kept per organization (the newest); `None`: no limit.
    pub max_records_per_org: Option<u64>,
    /// The oldest a record may be before it is pruned; `None`: no limit.
    pub max_age: Option<Duration>,
}

impl AuditRetention {
    /// Keeps at most `count` records per organization.
    #[must_use]
    pub fn max_records_per_org(mut self, count: u64) -> Self {
        self.max_records_per_org = Some(count);
        self
    }

    /// Prunes records older than `age`.
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The SQL parameters of the prune: how many of the newest records survive the
    /// count limit (`i64::MAX` when there is none), and the time (microseconds) before
    /// which records are pruned (`i64::MIN` when there is none).
    pub(crate) fn bounds(self, now: SystemTime) -> (i64, i64) {
        let keep = self
            .max_records_per_org
            .map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let cutoff = self.max_age.map_or(i64::MIN, |age| {
            now.checked_sub(age).map_or(i64::MIN, micros)
        });
        (keep, cutoff)
    }
}

/// Which records to read, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only records about this entity id.
    pub entity_id: Option<String>,
    /// Only records of this actor (user id or `system`).
    pub actor: Option<String>,
    /// Only records made at or after this time.
    pub since: Option<SystemTime>,
    /// Only records made at or before this time.
    pub until: Option<SystemTime>,
    /// Only records older than the record with this id: the cursor of the next page.
    pub before_id: Option<u64>,
    /// At most this many records (default 50).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            entity_id: None,
            actor: None,
            since: None,
            until: None,
            before_id: None,
            limit: 50,
        }
    }
}

impl AuditQuery {
    /// Only records about `id`.
    #[must_use]
    pub fn entity_id(mut self, id: impl Into<String>) -> Self {
        self.entity_id = Some(id.into());
        self
    }

    /// Only records of `actor`.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Only records made at or after `time`.
    #[must_use]
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since = Some(time);
        self
    }

    /// Only records made at or before `time`.
    #[must_use]
    pub fn until(mut self, time: SystemTime) -> Self {
        self.until = Some(time);
        self
    }

    /// Only records older than the record `id`.
    #[must_use]
    pub fn before_id(mut self, id: u64) -> Self {
        self.before_id = Some(id);
        self
    }

    /// At most `limit` records.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Whether `record` passes the filters (the cursor included, not the limit): what
    /// a backend without a query language applies.
    #[must_use]
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.entity_id
            .as_ref()
            .is_none_or(|id| *id == record.entity_id)
            && self.actor.as_ref().is_none_or(|a| *a == record.actor)
            && self.since.is_none_or(|t| record.time >= t)
            && self.until.is_none_or(|t| record.time <= t)
            && self.before_id.is_none_or(|id| record.id < id)
    }

    /// The SQL parameters of the time and cursor filters, inclusive, with the widest
    /// values where there is no filter.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "postgres")),
        allow(dead_code, reason = "only the SQL backends bind them")
    )]
    pub(crate) fn bounds(&self) -> (i64, i64, i64) {
        (
            self.since.map_or(i64::MIN, micros),
            self.until.map_or(i64::MAX, micros),
            self.before_id
                .map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX)),
        )
    }
}

fn list_state(list: &SourceList) -> Value {
    json!({
        "allowedSources": list.sources().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "blockedSources": list.blocked_sources().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "enforcement": list.enforcement().as_str(),
    })
}

/// The subject's JSON document in `record`, `None` when it does not exist there.
fn state(record: &OrgRecord, subject: &Subject) -> Option<Value> {
    match subject {
        Subject::Policy(id) => {
            let policy = record.org.policies.get(id)?;
            Some(json!({
                "id": id.as_str(),
                "version": record.policy_version(id),
                "name": policy.name(),
                "allowedSources": policy.sources().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "blockedSources": policy.blocked_sources().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "users": policy.users().iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                "groups": policy.groups().iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                "enforcement": policy.enforcement().as_str(),
            }))
        }
        Subject::Group(id) => {
            let parents: Vec<&str> = record
                .org
                .groups
                .parents(id.as_str())
                .map(GroupId::as_str)
                .collect();
            (!parents.is_empty()).then(|| json!({ "id": id.as_str(), "parents": parents }))
        }
        Subject::Site => record.org.site.as_ref().map(|site| {
            let mut value = list_state(&site.list);
            value["enabled"] = Value::Bool(site.enabled);
            value
        }),
        Subject::Resource(id) => record.org.resources.get(id).map(|list| {
            let mut value = list_state(list);
            value["id"] = Value::String(id.to_string());
            value
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{from_micros, micros};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn micros_round_trip_on_both_sides_of_the_epoch() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            UNIX_EPOCH - Duration::from_micros(5),
        ] {
            assert_eq!(from_micros(micros(t)), t);
        }
        assert_eq!(micros(UNIX_EPOCH - Duration::from_micros(5)), -5);
    }
}
