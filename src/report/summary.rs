//! Bounded per-rule summaries of what report-only rules would have denied.
//!
//! Every report-only rule (policy, site list, resource list) that would have refused a
//! request gets the caller recorded in its [`RuleSummary`]: the distinct (user,
//! address) pairs, IPv6 addresses grouped by their /64 (one host's privacy addresses
//! are one caller), each with a count and the first and last time it was seen.
//!
//! Memory is bounded whatever the traffic: at most
//! [`callers_per_rule`](SummaryLimits::callers_per_rule) pairs per rule and
//! [`rules_per_org`](SummaryLimits::rules_per_org) rules per organization, user ids
//! cut to [`MAX_USER_BYTES`]. When a rule's table is full, a new pair takes the
//! place of the weakest one, whose requests are then counted as `other` (the
//! *Space-Saving* algorithm of Metwally, Agrawal and El Abbadi): every pair refused
//! more than `total / callers_per_rule` times is listed, whatever the order of the
//! requests, while a flood of one-off pairs churns through the weakest places and
//! ends up in `other`. A listed count is exact since the pair was last admitted to the
//! table, so never more than its true count; counts and the total add up exactly.
//!
//! Nothing here runs for a request the rule admits; recording a pair already in the
//! table takes a lock and a scan of at most `callers_per_rule` entries, and allocates
//! nothing.
//!
//! ```
//! use std::net::IpAddr;
//! use tower_ip_allowlist::report::{RuleKind, SummaryLimits, WouldDenySummaries};
//!
//! let summaries = WouldDenySummaries::new(SummaryLimits::default().callers_per_rule(2));
//! let addr = |text: &str| Some(text.parse::<IpAddr>().unwrap());
//! for _ in 0..3 {
//!     summaries.record(RuleKind::Policy, "default", "vpn", Some("alice"), addr("192.0.2.1"));
//! }
//! summaries.record(RuleKind::Policy, "default", "vpn", Some("bob"), addr("2001:db8::1"));
//! summaries.record(RuleKind::Policy, "default", "vpn", Some("bob"), addr("2001:db8::2"));
//! summaries.record(RuleKind::Policy, "default", "vpn", Some("carol"), addr("192.0.2.9"));
//!
//! let summary = summaries.summary(RuleKind::Policy, "default", "vpn").unwrap();
//! assert_eq!(summary.total_requests, 6);
//! // alice (3), then carol took bob's place (bob's two requests are `other`).
//! assert_eq!(summary.callers[0].user.as_deref(), Some("alice"));
//! assert_eq!(summary.callers[0].count, 3);
//! assert_eq!(summary.callers[1].user.as_deref(), Some("carol"));
//! assert_eq!(summary.other_requests, 2);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use crate::policy::{Enforcement, OrgPolicies};
use crate::source::normalize_ip;

/// The longest user id a summary keeps, in bytes; longer ones are cut (at a character
/// boundary), so that a caller cannot make a summary grow with a huge id.
pub const MAX_USER_BYTES: usize = 255;

/// The kind of a report-only rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    /// An IP allowlist policy; the rule id is the policy id.
    Policy,
    /// The organization's site allowlist; the rule id is `siteAllowlist`.
    SiteAllowlist,
    /// A resource's allowlist; the rule id is the resource id.
    ResourceAllowlist,
}

impl RuleKind {
    const ALL: [Self; 3] = [Self::Policy, Self::SiteAllowlist, Self::ResourceAllowlist];

    /// The name reports, metrics and the admin API use: `policy`, `siteAllowlist`,
    /// `resourceAllowlist`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::SiteAllowlist => "siteAllowlist",
            Self::ResourceAllowlist => "resourceAllowlist",
        }
    }

    /// The kind named `name` (as [`as_str`](Self::as_str) writes it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    fn index(self) -> usize {
        match self {
            Self::Policy => 0,
            Self::SiteAllowlist => 1,
            Self::ResourceAllowlist => 2,
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a [`WouldDenySummaries`] keeps; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct SummaryLimits {
    /// Distinct (user, address) pairs kept per rule (default 100); the requests of
    /// the others are counted as `other`.
    pub callers_per_rule: usize,
    /// Report-only rules summarized per organization (default 128); would-denies of
    /// further rules are counted only in the process-wide total
    /// ([`would_deny_count`](super::would_deny_count)).
    pub rules_per_org: usize,
}

impl Default for SummaryLimits {
    fn default() -> Self {
        Self {
            callers_per_rule: 100,
            rules_per_org: 128,
        }
    }
}

impl SummaryLimits {
    /// Sets [`callers_per_rule`](Self::callers_per_rule).
    pub fn callers_per_rule(mut self, limit: usize) -> Self {
        self.callers_per_rule = limit;
        self
    }

    /// Sets [`rules_per_org`](Self::rules_per_org).
    pub fn rules_per_org(mut self, limit: usize) -> Self {
        self.rules_per_org = limit;
        self
    }
}

/// One caller a report-only rule would have refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldDenyCaller {
    /// The caller, `None` for anonymous requests (site and resource lists see them).
    pub user: Option<String>,
    /// The client address: an IPv4 address, or the first address of an IPv6 /64
    /// (see [`address_text`](Self::address_text)); `None` when it was unknown.
    pub address: Option<IpAddr>,
    /// Requests from this pair that the rule would have refused.
    pub count: u64,
    /// The first of them.
    pub first_seen: SystemTime,
    /// The last of them.
    pub last_seen: SystemTime,
    /// The count the pair ranks by: `count` plus the requests of the pair it replaced
    /// when it took its place in a full table (Space-Saving's overestimate).
    rank: u64,
}

impl WouldDenyCaller {
    /// A caller with the given counts and times, as a backend reads one back.
    #[must_use]
    pub fn new(
        user: Option<String>,
        address: Option<IpAddr>,
        count: u64,
        first_seen: SystemTime,
        last_seen: SystemTime,
    ) -> Self {
        Self {
            user,
            address,
            count,
            first_seen,
            last_seen,
            rank: count,
        }
    }

    /// The address as the admin API writes it: `192.0.2.1`, or `2001:db8::/64`.
    #[must_use]
    pub fn address_text(&self) -> Option<String> {
        self.address.map(|addr| match addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("{v6}/64"),
        })
    }

    fn same_caller(&self, other: &Self) -> bool {
        self.address == other.address && self.user == other.user
    }
}

/// What one report-only rule would have refused since it entered report mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    /// When the summary started: when this process saw the rule enter report mode
    /// (or loaded it in report mode).
    pub since: SystemTime,
    /// The callers, highest count first (the most recently seen first among equals).
    pub callers: Vec<WouldDenyCaller>,
    /// Requests the rule would have refused from callers not in `callers`.
    pub other_requests: u64,
    /// Every request the rule would have refused: the counts of `callers` plus
    /// `other_requests`.
    pub total_requests: u64,
}

impl RuleSummary {
    /// An empty summary starting at `since`.
    #[must_use]
    pub fn new(since: SystemTime) -> Self {
        Self {
            since,
            callers: Vec::new(),
            other_requests: 0,
            total_requests: 0,
        }
    }

    /// Whether the rule would have refused nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.total_requests == 0
    }

    /// Several processes' summaries of one rule as one: the counts of a caller seen by
    /// several added, the earliest start, at most `callers` callers (the others'
    /// requests counted as `other`). `None` for no summary at all.
    #[must_use]
    pub fn merge(summaries: impl IntoIterator<Item = Self>, callers: usize) -> Option<Self> {
        let mut merged: Option<Self> = None;
        for summary in summaries {
            let Some(into) = merged.as_mut() else {
                merged = Some(summary);
                continue;
            };
            into.since = into.since.min(summary.since);
            into.other_requests += summary.other_requests;
            into.total_requests += summary.total_requests;
            for caller in summary.callers {
                match into.callers.iter_mut().find(|c| c.same_caller(&caller)) {
                    Some(known) => {
                        known.count += caller.count;
                        known.rank += caller.rank;
                        known.first_seen = known.first_seen.min(caller.first_seen);
                        known.last_seen = known.last_seen.max(caller.last_seen);
                    }
                    None => into.callers.push(caller),
                }
            }
        }
        let mut merged = merged?;
        merged.sort();
        if merged.callers.len() > callers {
            let folded: u64 = merged.callers[callers..].iter().map(|c| c.count).sum();
            merged.callers.truncate(callers);
            merged.other_requests += folded;
        }
        Some(merged)
    }

    fn sort(&mut self) {
        self.callers.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.last_seen.cmp(&a.last_seen))
                .then_with(|| a.user.cmp(&b.user))
                .then(a.address.cmp(&b.address))
        });
    }

    /// Adds one refused request by `user` from `address` (already grouped) at `now`.
    fn add(&mut self, user: Option<&str>, address: Option<IpAddr>, now: SystemTime, limit: usize) {
        self.total_requests += 1;
        if let Some(known) = self
            .callers
            .iter_mut()
            .find(|c| c.address == address && c.user.as_deref() == user)
        {
            known.count += 1;
            known.rank += 1;
            known.last_seen = known.last_seen.max(now);
            return;
        }
        // Making room (which also shrinks a table over a lowered limit): the new pair
        // inherits the rank of the weakest one it replaces.
        let mut inherited = 0;
        while !self.callers.is_empty() && self.callers.len() >= limit {
            let weakest = self
                .callers
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| (c.rank, c.last_seen))
                .map_or(0, |(index, _)| index);
            let evicted = self.callers.swap_remove(weakest);
            self.other_requests += evicted.count;
            inherited = inherited.max(evicted.rank);
        }
        if limit == 0 {
            self.other_requests += 1;
            return;
        }
        self.callers.push(WouldDenyCaller {
            user: user.map(String::from),
            address,
            count: 1,
            first_seen: now,
            last_seen: now,
            rank: inherited + 1,
        });
    }
}

/// The summary of one rule, named, as a replica flushes it to a shared backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSummary {
    /// The organization.
    pub organization: String,
    /// The kind of rule.
    pub kind: RuleKind,
    /// The rule id: a policy id, `siteAllowlist`, or a resource id.
    pub rule: String,
    /// What it would have refused.
    pub summary: RuleSummary,
}

/// The would-deny summaries of every report-only rule this process enforces: see the
/// [module docs](self). One lives in each
/// [`SnapshotHandle`](crate::snapshot::SnapshotHandle), shared by the layers deciding
/// with it and the store publishing to it.
pub struct WouldDenySummaries {
    state: Mutex<State>,
}

struct State {
    limits: SummaryLimits,
    orgs: HashMap<Box<str>, [HashMap<Box<str>, RuleSummary>; 3]>,
    /// Whether anything changed since the last [`WouldDenySummaries::take_changed`].
    changed: bool,
}

impl Default for WouldDenySummaries {
    fn default() -> Self {
        Self::new(SummaryLimits::default())
    }
}

impl WouldDenySummaries {
    /// Empty summaries bounded by `limits`.
    #[must_use]
    pub fn new(limits: SummaryLimits) -> Self {
        Self {
            state: Mutex::new(State {
                limits,
                orgs: HashMap::new(),
                changed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts, never a broken invariant that
        // matters more than a count: keep going with them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The limits in force.
    pub fn limits(&self) -> SummaryLimits {
        self.lock().limits
    }

    /// Changes the limits; a rule's table over a lowered
    /// [`callers_per_rule`](SummaryLimits::callers_per_rule) shrinks on its next new
    /// caller.
    pub fn set_limits(&self, limits: SummaryLimits) {
        self.lock().limits = limits;
    }

    /// Records that the report-only rule `kind`/`rule` of `organization` would have
    /// refused `user` calling from `address`, now.
    pub fn record(
        &self,
        kind: RuleKind,
        organization: &str,
        rule: &str,
        user: Option<&str>,
        address: Option<IpAddr>,
    ) {
        self.record_at(kind, organization, rule, user, address, SystemTime::now());
    }

    /// [`record`](Self::record) at a given time, for tests and replays.
    pub fn record_at(
        &self,
        kind: RuleKind,
        organization: &str,
        rule: &str,
        user: Option<&str>,
        address: Option<IpAddr>,
        now: SystemTime,
    ) {
        let address = address.map(group);
        let user = user.map(|user| cut(user, MAX_USER_BYTES));
        let mut state = self.lock();
        let State {
            limits,
            orgs,
            changed,
        } = &mut *state;
        // The usual case: the rule is already tracked, one look-up each.
        if let Some(summary) = orgs
            .get_mut(organization)
            .and_then(|rules| rules[kind.index()].get_mut(rule))
        {
            summary.add(user, address, now, limits.callers_per_rule);
            *changed = true;
            return;
        }
        if !orgs.contains_key(organization) {
            if limits.rules_per_org == 0 {
                return;
            }
            orgs.insert(Box::from(organization), Default::default());
        }
        let Some(rules) = orgs.get_mut(organization) else {
            return;
        };
        if !rules[kind.index()].contains_key(rule) {
            let tracked: usize = rules.iter().map(HashMap::len).sum();
            if tracked >= limits.rules_per_org {
                return;
            }
            rules[kind.index()].insert(Box::from(rule), RuleSummary::new(now));
        }
        if let Some(summary) = rules[kind.index()].get_mut(rule) {
            summary.add(user, address, now, limits.callers_per_rule);
            *changed = true;
        }
    }

    /// The summary of one rule, callers by count; `None` when this process has not
    /// seen the rule in report mode (since it last left it).
    #[must_use]
    pub fn summary(&self, kind: RuleKind, organization: &str, rule: &str) -> Option<RuleSummary> {
        let mut summary = self.lock().orgs.get(organization)?[kind.index()]
            .get(rule)?
            .clone();
        // Sorted after the lock is released: every request recording waits on it.
        summary.sort();
        Some(summary)
    }

    /// Every summary, for flushing to a shared backend.
    #[must_use]
    pub fn export(&self) -> Vec<NamedSummary> {
        let mut all = Vec::new();
        for (organization, rules) in &self.lock().orgs {
            for kind in RuleKind::ALL {
                for (rule, summary) in &rules[kind.index()] {
                    all.push(NamedSummary {
                        organization: organization.to_string(),
                        kind,
                        rule: rule.to_string(),
                        summary: summary.clone(),
                    });
                }
            }
        }
        // Sorted after the lock is released: every request recording waits on it.
        for named in &mut all {
            named.summary.sort();
        }
        all
    }

    /// Whether anything was recorded or forgotten since the last call.
    pub(crate) fn take_changed(&self) -> bool {
        std::mem::take(&mut self.lock().changed)
    }

    /// Marks the summaries changed again, after a flush that failed.
    pub(crate) fn mark_changed(&self) {
        self.lock().changed = true;
    }

    /// Brings `organization`'s summaries in line with its rules as just published:
    /// the summary of a rule that left report mode (or is gone) is dropped, and a
    /// rule that entered report mode starts an empty summary now. Returns the rules
    /// whose summary was dropped.
    pub fn sync_org(&self, organization: &str, policies: &OrgPolicies) -> Vec<(RuleKind, String)> {
        self.sync_org_at(organization, policies, SystemTime::now())
    }

    pub(crate) fn sync_org_at(
        &self,
        organization: &str,
        policies: &OrgPolicies,
        now: SystemTime,
    ) -> Vec<(RuleKind, String)> {
        let reporting = reporting_rules(policies);
        let mut state = self.lock();
        let State {
            limits,
            orgs,
            changed,
        } = &mut *state;
        if reporting.is_empty() && !orgs.contains_key(organization) {
            return Vec::new();
        }
        let rules = orgs.entry(Box::from(organization)).or_default();
        let mut dropped = Vec::new();
        for kind in RuleKind::ALL {
            rules[kind.index()].retain(|rule, _| {
                let keep = reporting.contains(&(kind, &**rule));
                if !keep {
                    dropped.push((kind, rule.to_string()));
                }
                keep
            });
        }
        for (kind, rule) in reporting {
            let tracked: usize = rules.iter().map(HashMap::len).sum();
            if tracked >= limits.rules_per_org {
                break;
            }
            rules[kind.index()]
                .entry(Box::from(rule))
                .or_insert_with(|| RuleSummary::new(now));
        }
        if rules.iter().all(HashMap::is_empty) {
            orgs.remove(organization);
        }
        *changed |= !dropped.is_empty();
        dropped
    }

    /// Forgets every summary of `organization`.
    pub fn forget_org(&self, organization: &str) {
        let mut state = self.lock();
        if state.orgs.remove(organization).is_some() {
            state.changed = true;
        }
    }
}

impl fmt::Debug for WouldDenySummaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let rules: usize = state
            .orgs
            .values()
            .map(|rules| rules.iter().map(HashMap::len).sum::<usize>())
            .sum();
        f.debug_struct("WouldDenySummaries")
            .field("limits", &state.limits)
            .field("organizations", &state.orgs.len())
            .field("rules", &rules)
            .finish()
    }
}

/// How the rule enforces in `policies`: `None` when it does not exist, or is a site
/// list that is not enabled.
#[must_use]
pub(crate) fn enforcement_of(
    policies: &OrgPolicies,
    kind: RuleKind,
    rule: &str,
) -> Option<Enforcement> {
    match kind {
        RuleKind::Policy => policies.policies.get(rule).map(|p| p.enforcement()),
        RuleKind::SiteAllowlist => policies
            .site
            .as_ref()
            .filter(|site| site.enabled)
            .map(|site| site.list.enforcement()),
        RuleKind::ResourceAllowlist => policies.resources.get(rule).map(|list| list.enforcement()),
    }
}

/// Whether the rule is in report mode in `policies`, for the rules that have it.
#[must_use]
pub(crate) fn is_reporting(policies: &OrgPolicies, kind: RuleKind, rule: &str) -> bool {
    enforcement_of(policies, kind, rule) == Some(Enforcement::Report)
}

/// Every rule of `policies` in report mode.
fn reporting_rules(policies: &OrgPolicies) -> Vec<(RuleKind, &str)> {
    let mut rules: Vec<(RuleKind, &str)> = policies
        .policies
        .iter()
        .filter(|(_, policy)| policy.enforcement() == Enforcement::Report)
        .map(|(id, _)| (RuleKind::Policy, id.as_str()))
        .collect();
    // The site list is one rule per organization, named as its kind.
    let site = RuleKind::SiteAllowlist.as_str();
    if is_reporting(policies, RuleKind::SiteAllowlist, site) {
        rules.push((RuleKind::SiteAllowlist, site));
    }
    rules.extend(
        policies
            .resources
            .iter()
            .filter(|(_, list)| list.enforcement() == Enforcement::Report)
            .map(|(id, _)| (RuleKind::ResourceAllowlist, id.as_str())),
    );
    rules
}

/// An address as a summary counts it: IPv4 (an IPv4-mapped IPv6 address too) as it
/// is, IPv6 as its /64.
#[must_use]
pub(crate) fn group(address: IpAddr) -> IpAddr {
    match normalize_ip(address) {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::policy::{Policy, SiteList, SourceList};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn groups_ipv6_by_64_and_keeps_ipv4() {
        struct Case {
            name: &'static str,
            addr: &'static str,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "ipv4",
                addr: "192.0.2.7",
                want: "192.0.2.7",
            },
            Case {
                name: "ipv6 host",
                addr: "2001:db8:1:2:3:4:5:6",
                want: "2001:db8:1:2::",
            },
            Case {
                name: "ipv4-mapped",
                addr: "::ffff:192.0.2.7",
                want: "192.0.2.7",
            },
            Case {
                name: "loopback v6",
                addr: "::1",
                want: "::",
            },
        ];
        for case in cases {
            let got = group(case.addr.parse().unwrap());
            assert_eq!(got, case.want.parse::<IpAddr>().unwrap(), "{}", case.name);
        }
    }

    #[test]
    fn counts_pairs_with_first_and_last_seen() {
        let summaries = WouldDenySummaries::default();
        summaries.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("alice"),
            ip("2001:db8::1"),
            at(10),
        );
        summaries.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("alice"),
            ip("2001:db8::ff"),
            at(20),
        );
        summaries.record_at(RuleKind::Policy, "o", "vpn", None, None, at(15));
        let summary = summaries.summary(RuleKind::Policy, "o", "vpn").unwrap();
        assert_eq!(summary.since, at(10));
        assert_eq!(summary.total_requests, 3);
        assert_eq!(summary.other_requests, 0);
        let alice = &summary.callers[0];
        assert_eq!(alice.user.as_deref(), Some("alice"));
        assert_eq!(alice.address_text().as_deref(), Some("2001:db8::/64"));
        assert_eq!(
            (alice.count, alice.first_seen, alice.last_seen),
            (2, at(10), at(20))
        );
        assert_eq!(
            (
                summary.callers[1].user.as_deref(),
                summary.callers[1].address
            ),
            (None, None)
        );
        // Other kinds, rules and organizations are apart.
        assert!(summaries
            .summary(RuleKind::ResourceAllowlist, "o", "vpn")
            .is_none());
        assert!(summaries.summary(RuleKind::Policy, "p", "vpn").is_none());
    }

    #[test]
    fn a_full_table_keeps_frequent_callers_and_counts_the_rest_as_other() {
        let summaries = WouldDenySummaries::new(SummaryLimits::default().callers_per_rule(3));
        for second in 0..10 {
            summaries.record_at(
                RuleKind::SiteAllowlist,
                "o",
                "siteAllowlist",
                Some("heavy"),
                ip("192.0.2.1"),
                at(second),
            );
        }
        // One-off addresses: fewer than callers_per_rule times the heavy caller's count.
        for n in 0..15u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            summaries.record_at(
                RuleKind::SiteAllowlist,
                "o",
                "siteAllowlist",
                None,
                Some(addr),
                at(100 + u64::from(n)),
            );
        }
        let summary = summaries
            .summary(RuleKind::SiteAllowlist, "o", "siteAllowlist")
            .unwrap();
        assert_eq!(summary.callers.len(), 3);
        assert_eq!(summary.callers[0].user.as_deref(), Some("heavy"));
        assert_eq!(summary.callers[0].count, 10);
        assert_eq!(summary.total_requests, 25);
        let listed: u64 = summary.callers.iter().map(|c| c.count).sum();
        assert_eq!(listed + summary.other_requests, summary.total_requests);
    }

    #[test]
    fn rules_per_org_bounds_the_rules_summarized() {
        let summaries = WouldDenySummaries::new(SummaryLimits::default().rules_per_org(2));
        for rule in ["a", "b", "c"] {
            summaries.record_at(
                RuleKind::ResourceAllowlist,
                "o",
                rule,
                None,
                ip("192.0.2.1"),
                at(1),
            );
        }
        assert!(summaries
            .summary(RuleKind::ResourceAllowlist, "o", "b")
            .is_some());
        assert!(summaries
            .summary(RuleKind::ResourceAllowlist, "o", "c")
            .is_none());
        // Another organization has its own bound.
        summaries.record_at(
            RuleKind::ResourceAllowlist,
            "p",
            "c",
            None,
            ip("192.0.2.1"),
            at(1),
        );
        assert!(summaries
            .summary(RuleKind::ResourceAllowlist, "p", "c")
            .is_some());
    }

    #[test]
    fn long_user_ids_are_cut() {
        let summaries = WouldDenySummaries::default();
        let long = "é".repeat(200);
        summaries.record_at(RuleKind::Policy, "o", "vpn", Some(&long), None, at(1));
        let summary = summaries.summary(RuleKind::Policy, "o", "vpn").unwrap();
        let user = summary.callers[0].user.as_deref().unwrap();
        assert!(
            user.len() <= MAX_USER_BYTES && long.starts_with(user),
            "{}",
            user.len()
        );
    }

    #[test]
    fn sync_starts_and_drops_summaries_as_rules_enter_and_leave_report_mode() {
        let summaries = WouldDenySummaries::default();
        let mut org = OrgPolicies::default();
        let report = |id: &str, enforcement| {
            Policy::builder(id)
                .sources(["203.0.113.0/24"])
                .unwrap()
                .user("alice")
                .enforcement(enforcement)
                .build()
                .unwrap()
        };
        org.insert_policy(report("vpn", Enforcement::Report));
        org.insert_policy(report("office", Enforcement::Enforce));
        let list = SourceList::parse(["198.51.100.0/24"])
            .unwrap()
            .with_enforcement(Enforcement::Report);
        org.site = Some(SiteList {
            enabled: true,
            list: list.clone(),
        });
        org.resources = BTreeMap::from([("media".into(), list)]);
        assert!(summaries.sync_org_at("o", &org, at(5)).is_empty());
        for (kind, rule) in [
            (RuleKind::Policy, "vpn"),
            (RuleKind::SiteAllowlist, "siteAllowlist"),
            (RuleKind::ResourceAllowlist, "media"),
        ] {
            let summary = summaries.summary(kind, "o", rule).unwrap();
            assert_eq!(
                (summary.since, summary.total_requests),
                (at(5), 0),
                "{kind} {rule}"
            );
        }
        assert!(summaries.summary(RuleKind::Policy, "o", "office").is_none());

        summaries.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("bob"),
            ip("192.0.2.1"),
            at(6),
        );
        // Republished unchanged: the count stays.
        summaries.sync_org_at("o", &org, at(7));
        assert_eq!(
            summaries
                .summary(RuleKind::Policy, "o", "vpn")
                .unwrap()
                .total_requests,
            1
        );

        // vpn enforces, the site list is disabled: both dropped.
        org.insert_policy(report("vpn", Enforcement::Enforce));
        if let Some(site) = org.site.as_mut() {
            site.enabled = false;
        }
        let mut dropped = summaries.sync_org_at("o", &org, at(8));
        dropped.sort();
        assert_eq!(
            dropped,
            [
                (RuleKind::Policy, "vpn".to_owned()),
                (RuleKind::SiteAllowlist, "siteAllowlist".to_owned())
            ]
        );
        assert!(summaries.summary(RuleKind::Policy, "o", "vpn").is_none());
        // Back to report: a new, empty summary since then.
        org.insert_policy(report("vpn", Enforcement::Report));
        summaries.sync_org_at("o", &org, at(9));
        let summary = summaries.summary(RuleKind::Policy, "o", "vpn").unwrap();
        assert_eq!((summary.since, summary.total_requests), (at(9), 0));
    }

    #[test]
    fn merge_adds_the_same_caller_and_keeps_the_bound() {
        let one = WouldDenySummaries::default();
        let two = WouldDenySummaries::default();
        one.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("a"),
            ip("192.0.2.1"),
            at(3),
        );
        two.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("a"),
            ip("192.0.2.1"),
            at(2),
        );
        two.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("a"),
            ip("192.0.2.1"),
            at(9),
        );
        two.record_at(
            RuleKind::Policy,
            "o",
            "vpn",
            Some("b"),
            ip("192.0.2.2"),
            at(4),
        );
        let merged = RuleSummary::merge(
            [
                one.summary(RuleKind::Policy, "o", "vpn").unwrap(),
                two.summary(RuleKind::Policy, "o", "vpn").unwrap(),
            ],
            1,
        )
        .unwrap();
        assert_eq!(merged.since, at(2));
        assert_eq!(merged.callers.len(), 1);
        let a = &merged.callers[0];
        assert_eq!((a.count, a.first_seen, a.last_seen), (3, at(2), at(9)));
        assert_eq!((merged.other_requests, merged.total_requests), (1, 4));
        assert!(RuleSummary::merge([], 10).is_none());
    }

    /// The naive model: every pair with its exact count.
    fn exact(events: &[(u8, u8)]) -> BTreeMap<(u8, u8), u64> {
        let mut counts = BTreeMap::new();
        for &event in events {
            *counts.entry(event).or_insert(0) += 1;
        }
        counts
    }

    proptest! {
        /// Against the exact counts: the table never holds more than the limit; every
        /// request is counted once, listed or as other; a listed count is never more
        /// than the pair's true count; with room for every pair the counts are exact;
        /// and every pair seen more than total/limit times is listed.
        #[test]
        fn bounded_summary_against_exact_counts(
            events in proptest::collection::vec((0u8..12, 0u8..6), 0..300),
            limit in 0usize..16,
        ) {
            let summaries = WouldDenySummaries::new(SummaryLimits::default().callers_per_rule(limit));
            for (second, &(user, host)) in events.iter().enumerate() {
                let user = format!("u{user}");
                let addr = IpAddr::from(std::net::Ipv4Addr::new(192, 0, 2, host));
                summaries.record_at(RuleKind::Policy, "o", "r", Some(&user), Some(addr), at(second as u64));
            }
            let model = exact(&events);
            let Some(summary) = summaries.summary(RuleKind::Policy, "o", "r") else {
                prop_assert!(events.is_empty());
                return Ok(());
            };
            prop_assert!(summary.callers.len() <= limit);
            prop_assert_eq!(summary.total_requests, events.len() as u64);
            let listed: u64 = summary.callers.iter().map(|c| c.count).sum();
            prop_assert_eq!(listed + summary.other_requests, summary.total_requests);
            let key = |c: &WouldDenyCaller| {
                let user: u8 = c.user.as_deref().unwrap()[1..].parse().unwrap();
                let IpAddr::V4(v4) = c.address.unwrap() else { unreachable!() };
                (user, v4.octets()[3])
            };
            for caller in &summary.callers {
                prop_assert!(caller.count <= model[&key(caller)]);
                prop_assert!(caller.first_seen <= caller.last_seen);
            }
            let mut keys: Vec<_> = summary.callers.iter().map(key).collect();
            keys.sort_unstable();
            keys.dedup();
            prop_assert_eq!(keys.len(), summary.callers.len(), "a pair is listed once");
            if model.len() <= limit {
                prop_assert_eq!(summary.other_requests, 0);
                let got: BTreeMap<_, _> = summary.callers.iter().map(|c| (key(c), c.count)).collect();
                prop_assert_eq!(&got, &model);
            }
            // Space-Saving's guarantee: a pair seen more than total/limit times is listed.
            for (pair, &count) in &model {
                if limit > 0 && count * limit as u64 > events.len() as u64 {
                    prop_assert!(summary.callers.iter().any(|c| key(c) == *pair), "{:?} ({}) missing", pair, count);
                }
            }
        }

        /// Merging summaries of disjoint traffic is the summary of all of it, when the
        /// tables are large enough to hold every pair.
        #[test]
        fn merge_equals_one_summary_of_all_traffic(
            events in proptest::collection::vec((0u8..6, 0u8..4, any::<bool>()), 1..200),
        ) {
            let all = WouldDenySummaries::default();
            let parts = [WouldDenySummaries::default(), WouldDenySummaries::default()];
            for (second, &(user, host, side)) in events.iter().enumerate() {
                let user = format!("u{user}");
                let addr = Some(IpAddr::from(std::net::Ipv4Addr::new(192, 0, 2, host)));
                let now = at(second as u64);
                all.record_at(RuleKind::Policy, "o", "r", Some(&user), addr, now);
                parts[usize::from(side)].record_at(RuleKind::Policy, "o", "r", Some(&user), addr, now);
            }
            let merged = RuleSummary::merge(
                parts.iter().filter_map(|part| part.summary(RuleKind::Policy, "o", "r")),
                100,
            );
            prop_assert_eq!(merged, all.summary(RuleKind::Policy, "o", "r"));
        }
    }
}
