//! Report-only rules, and what they would have denied.
//!
//! A policy, a site list or a resource list whose enforcement is
//! [`Report`](crate::policy::Enforcement::Report) never refuses a request. When it would
//! have, the layer that evaluated it emits one `tracing` event at `DEBUG` on the target
//! `tower_ip_allowlist::report` (not `INFO`: a report-only site list sees every request,
//! anonymous ones included, and must not let anyone flood the logs), with the fields
//!
//! | field | value |
//! |---|---|
//! | `rule_kind` | `policy`, `siteAllowlist` or `resourceAllowlist` |
//! | `rule` | the policy id, `siteAllowlist`, or the resource id |
//! | `organization` | the organization |
//! | `user` | the caller, when known |
//! | `client_ip` | the client address, when known |
//!
//! and counts it (see [`would_deny_count`], and with the `metrics` feature the
//! `ip_allowlist_report_only_would_deny_total` counter of [`metrics`](crate::metrics)). Filter on the target to watch a rollout:
//! `RUST_LOG=tower_ip_allowlist::report=debug`.
//!
//! # What a rule would deny, before it enforces
//!
//! Each would-deny is also recorded in a bounded [summary] per rule, kept in
//! the [`SnapshotHandle`] the layer decides with
//! ([`SnapshotHandle::would_deny`](crate::snapshot::SnapshotHandle::would_deny)): the
//! distinct (user, address) pairs, IPv6 addresses grouped by /64, with counts and
//! first and last seen, since the rule entered report mode. A
//! [`Store`](crate::store::Store) publishing to the handle starts and drops summaries
//! as rules enter and leave report mode, answers them with
//! [`Store::would_deny`](crate::store::Store::would_deny) (across every replica with
//! PostgreSQL), and refuses to switch a rule from report to enforce while its summary
//! is not empty unless forced ([`StoreError::WouldDenyCallers`](crate::store::StoreError::WouldDenyCallers)).
//! The admin API serves them at `GET /api/v1/actions/.../wouldDeny`.

pub mod summary;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

pub use self::summary::{
    NamedSummary, RuleKind, RuleSummary, SummaryLimits, WouldDenyCaller, WouldDenySummaries,
};
use crate::snapshot::SnapshotHandle;

static WOULD_DENY: AtomicU64 = AtomicU64::new(0);

/// How many requests report-only rules would have denied since the process started.
#[must_use]
pub fn would_deny_count() -> u64 {
    WOULD_DENY.load(Ordering::Relaxed)
}

/// Reports that a report-only rule would have denied a request, and records the caller
/// in the rule's summary in `handle`.
pub(crate) fn would_deny(
    handle: &SnapshotHandle,
    kind: RuleKind,
    rule: &str,
    organization: &str,
    user: Option<&str>,
    client_ip: Option<IpAddr>,
) {
    WOULD_DENY.fetch_add(1, Ordering::Relaxed);
    handle
        .would_deny()
        .record(kind, organization, rule, user, client_ip);
    crate::metrics::would_deny(organization, kind.as_str(), rule);
    tracing::debug!(
        target: "tower_ip_allowlist::report",
        rule_kind = kind.as_str(),
        rule,
        organization,
        user,
        client_ip = ?client_ip,
        "report-only rule would have denied the request"
    );
}
