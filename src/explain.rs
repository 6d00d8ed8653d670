//! Why a request would be allowed or denied: the slow, thorough evaluation behind the
//! admin API's `evaluate` and `myAccess` actions.
//!
//! [`explain`] walks an organization's policies the obvious way (it is the reference
//! the compiled snapshot is tested against), and says for each applicable policy how
//! it reaches the caller (directly, or through which chain of groups), whether it
//! admits the address and with which source, which blocked source refuses it when one
//! does, and what report-only rules would do.
//!
//! # Example
//!
//! ```
//! use tower_ip_allowlist::explain::{explain, Via};
//! use tower_ip_allowlist::policy::{OrgPolicies, Policy};
//! use tower_ip_allowlist::snapshot::Decision;
//!
//! let mut org = OrgPolicies::default();
//! org.insert_policy(Policy::builder("office").sources(["198.51.100.0/24"])?.group("company").build()?);
//! org.groups.set_parents("staff", ["company"])?;
//! org.groups.set_parents("interns", ["staff"])?;
//!
//! let why = explain(&org, "ann", ["interns"], Some("198.51.100.7".parse()?));
//! assert_eq!(why.decision, Decision::Allowed);
//! assert_eq!(why.policies[0].via, vec![Via::Group { path: vec!["interns".into(), "staff".into(), "company".into()] }]);
//! assert_eq!(why.policies[0].matching_source.unwrap().to_string(), "198.51.100.0/24");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::policy::{Enforcement, GroupHierarchy, GroupId, OrgPolicies, PolicyId, SourceList};
use crate::snapshot::{Decision, DenyReason};
use crate::source::{normalize_ip, AllowedSource};

/// The evaluation of one caller and address against an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// The decision of the enforced policies. The site list is reported apart, in
    /// [`site`](Self::site); resource lists, which depend on the route, are not
    /// evaluated here.
    pub decision: Decision,
    /// Every active policy that applies to the caller, enforced and report-only, by id.
    pub policies: Vec<PolicyExplanation>,
    /// The first enforced policy admitting the address, and the source that does.
    pub matching: Option<(PolicyId, AllowedSource)>,
    /// What the decision would be if report-only policies enforced too, when some
    /// apply.
    pub with_report_only: Option<Decision>,
    /// The organization's site list, when enabled.
    pub site: Option<ListExplanation>,
}

/// How one applicable policy relates to the caller and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyExplanation {
    /// The policy.
    pub id: PolicyId,
    /// Whether it enforces or only reports.
    pub enforcement: Enforcement,
    /// Every way it reaches the caller.
    pub via: Vec<Via>,
    /// Whether it admits the address (`None`: the address is unknown): inside an allowed
    /// source and outside every blocked one.
    pub admits: Option<bool>,
    /// The first of its allowed sources containing the address.
    pub matching_source: Option<AllowedSource>,
    /// The first of its blocked sources containing the address, when one of its allowed
    /// sources contains it too: the reason it refuses an address it would otherwise
    /// admit.
    pub blocked_by: Option<AllowedSource>,
}

/// How a policy reaches a caller.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// It names the user.
    User,
    /// It names a group the caller is in, directly or through ancestors: `path` goes
    /// from the caller's own group up to the group the policy names.
    Group {
        /// The chain of groups, from the caller's to the policy's.
        path: Vec<GroupId>,
    },
}

/// Whether a site or resource list admits the address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListExplanation {
    /// Whether it enforces or only reports.
    pub enforcement: Enforcement,
    /// Whether it admits the address (`None`: the address is unknown): inside an allowed
    /// source and outside every blocked one.
    pub admits: Option<bool>,
    /// The first of its allowed sources containing the address.
    pub matching_source: Option<AllowedSource>,
    /// The first of its blocked sources containing the address, when one of its allowed
    /// sources contains it too.
    pub blocked_by: Option<AllowedSource>,
}

impl ListExplanation {
    /// Evaluates `list` for `addr`.
    #[must_use]
    pub fn of(list: &SourceList, addr: Option<IpAddr>) -> Self {
        let (matching_source, blocked_by) = matches(list.sources(), list.blocked_sources(), addr);
        Self {
            enforcement: list.enforcement(),
            admits: addr.map(|_| matching_source.is_some() && blocked_by.is_none()),
            matching_source,
            blocked_by,
        }
    }
}

/// The first allowed source containing `addr` and, when there is one, the first blocked
/// source containing it too.
fn matches(
    allowed: &[AllowedSource],
    blocked: &[AllowedSource],
    addr: Option<IpAddr>,
) -> (Option<AllowedSource>, Option<AllowedSource>) {
    let Some(addr) = addr else {
        return (None, None);
    };
    let matching = first_match(allowed, addr);
    let blocked_by = matching.and_then(|_| first_match(blocked, addr));
    (matching, blocked_by)
}

fn first_match(sources: &[AllowedSource], addr: IpAddr) -> Option<AllowedSource> {
    let addr = normalize_ip(addr);
    sources.iter().find(|source| source.contains(addr)).copied()
}

/// Evaluates `org` for a caller (`user` and their direct `groups`) at `addr`.
#[must_use]
pub fn explain<'a>(
    org: &OrgPolicies,
    user: &str,
    groups: impl IntoIterator<Item = &'a str>,
    addr: Option<IpAddr>,
) -> Explanation {
    let mut groups: Vec<&str> = groups.into_iter().collect();
    groups.sort_unstable();
    groups.dedup();
    // One walk up from each of the caller's groups; then, for each ancestor, which of
    // them reach it. Each policy target is then one look-up, however many groups.
    let walks: Vec<Walk<'_>> = groups.iter().map(|g| Walk::up(&org.groups, g)).collect();
    let mut reached_by: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, walk) in walks.iter().enumerate() {
        for ancestor in walk.came_from.keys() {
            reached_by.entry(ancestor).or_default().push(i);
        }
    }
    let mut policies = Vec::new();
    for policy in org.policies.values().filter(|p| p.is_active()) {
        let mut via = Vec::new();
        if policy.users().iter().any(|u| u.as_str() == user) {
            via.push(Via::User);
        }
        for target in policy.groups() {
            for &i in reached_by.get(target.as_str()).into_iter().flatten() {
                via.push(Via::Group {
                    path: walks[i].path_to(target.as_str()),
                });
            }
        }
        if via.is_empty() {
            continue;
        }
        via.sort();
        via.dedup();
        let (matching_source, blocked_by) =
            matches(policy.sources(), policy.blocked_sources(), addr);
        policies.push(PolicyExplanation {
            id: policy.id().clone(),
            enforcement: policy.enforcement(),
            via,
            admits: addr.map(|_| matching_source.is_some() && blocked_by.is_none()),
            matching_source,
            blocked_by,
        });
    }

    let decide = |considered: &mut dyn Iterator<Item = &PolicyExplanation>| {
        let mut any = false;
        for policy in considered {
            any = true;
            if policy.admits == Some(true) {
                return Decision::Allowed;
            }
        }
        match (any, addr) {
            (false, _) => Decision::NoPolicy,
            (true, None) => Decision::Denied(DenyReason::ClientIpUnknown),
            (true, Some(_)) => Decision::Denied(DenyReason::IpNotAllowed),
        }
    };
    let decision = decide(
        &mut policies
            .iter()
            .filter(|p| p.enforcement == Enforcement::Enforce),
    );
    let with_report_only = policies
        .iter()
        .any(|p| p.enforcement == Enforcement::Report)
        .then(|| decide(&mut policies.iter()));
    let matching = policies
        .iter()
        .filter(|p| p.enforcement == Enforcement::Enforce && p.admits == Some(true))
        .find_map(|p| Some((p.id.clone(), p.matching_source?)));
    let site = org
        .site
        .as_ref()
        .filter(|site| site.enabled)
        .map(|site| ListExplanation::of(&site.list, addr));
    Explanation {
        decision,
        policies,
        matching,
        with_report_only,
        site,
    }
}

/// A breadth-first walk up the hierarchy from one group: every ancestor (and the group
/// itself) with the group it was first reached from, so paths are shortest.
struct Walk<'a> {
    came_from: HashMap<&'a str, Option<&'a str>>,
}

impl<'a> Walk<'a> {
    fn up(hierarchy: &'a GroupHierarchy, from: &'a str) -> Self {
        let mut came_from = HashMap::from([(from, None)]);
        let mut queue = VecDeque::from([from]);
        while let Some(group) = queue.pop_front() {
            for parent in hierarchy.parents(group) {
                if !came_from.contains_key(parent.as_str()) {
                    came_from.insert(parent.as_str(), Some(group));
                    queue.push_back(parent.as_str());
                }
            }
        }
        Self { came_from }
    }

    /// The chain from the walk's start up to `to` (which the walk reached).
    fn path_to(&self, to: &str) -> Vec<GroupId> {
        let mut path = vec![GroupId::from(to)];
        let mut current = to;
        while let Some(Some(previous)) = self.came_from.get(current) {
            path.push(GroupId::from(*previous));
            current = previous;
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn org() -> OrgPolicies {
        let mut org = OrgPolicies::default();
        org.insert_policy(
            Policy::builder("office")
                .sources(["198.51.100.0/24", "203.0.113.0/24"])
                .unwrap()
                .group("company")
                .user("ann")
                .build()
                .unwrap(),
        );
        org.insert_policy(
            Policy::builder("vpn-rollout")
                .sources(["192.0.2.0/24"])
                .unwrap()
                .group("staff")
                .enforcement(Enforcement::Report)
                .build()
                .unwrap(),
        );
        org.insert_policy(
            Policy::builder("unassigned")
                .sources(["192.0.2.0/24"])
                .unwrap()
                .build()
                .unwrap(),
        );
        org.groups.set_parents("staff", ["company"]).unwrap();
        org.groups.set_parents("interns", ["staff"]).unwrap();
        org
    }

    #[test]
    fn grandchild_group_match() {
        let why = explain(
            &org(),
            "bob",
            ["interns"],
            Some("203.0.113.9".parse().unwrap()),
        );
        assert_eq!(why.decision, Decision::Allowed);
        let ids: Vec<&str> = why.policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            ["office", "vpn-rollout"],
            "inactive policies are left out"
        );
        let path: Vec<GroupId> = ["interns", "staff", "company"].map(GroupId::from).to_vec();
        assert_eq!(why.policies[0].via, vec![Via::Group { path }]);
        assert_eq!(
            why.matching
                .as_ref()
                .map(|(id, s)| (id.as_str(), s.to_string())),
            Some(("office", "203.0.113.0/24".to_owned()))
        );
        // The report-only policy would not admit it, but the office policy still
        // does: enforcing it would change nothing.
        assert_eq!(why.policies[1].admits, Some(false));
        assert_eq!(why.with_report_only, Some(Decision::Allowed));
    }

    #[test]
    fn report_only_would_widen_not_deny() {
        let why = explain(
            &org(),
            "bob",
            ["interns"],
            Some("192.0.2.1".parse().unwrap()),
        );
        assert_eq!(why.decision, Decision::Denied(DenyReason::IpNotAllowed));
        assert_eq!(why.with_report_only, Some(Decision::Allowed));
        assert_eq!(why.matching, None);
    }

    #[test]
    fn a_blocked_source_is_named_and_another_policy_still_admits() {
        let mut org = org();
        org.insert_policy(
            Policy::builder("office")
                .sources(["198.51.100.0/24"])
                .unwrap()
                .blocked_sources(["198.51.100.64/26", "198.51.100.66"])
                .unwrap()
                .group("company")
                .build()
                .unwrap(),
        );
        let addr = Some("198.51.100.66".parse().unwrap());
        let why = explain(&org, "bob", ["staff"], addr);
        assert_eq!(why.decision, Decision::Denied(DenyReason::IpNotAllowed));
        let office = &why.policies[0];
        assert_eq!(office.admits, Some(false));
        assert_eq!(
            office.matching_source.unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(office.blocked_by.unwrap().to_string(), "198.51.100.64/26");
        assert_eq!(why.matching, None, "a blocked match admits nothing");
        // Outside the blocked range, nothing is named.
        let why = explain(
            &org,
            "bob",
            ["staff"],
            Some("198.51.100.7".parse().unwrap()),
        );
        assert_eq!(why.decision, Decision::Allowed);
        assert_eq!(why.policies[0].blocked_by, None);
        // Another applicable policy admitting the address lets it through: union.
        org.insert_policy(
            Policy::builder("lab")
                .sources(["198.51.100.66"])
                .unwrap()
                .user("bob")
                .build()
                .unwrap(),
        );
        let why = explain(&org, "bob", ["staff"], addr);
        assert_eq!(why.decision, Decision::Allowed);
        assert_eq!(
            why.matching.map(|(id, s)| (id.to_string(), s.to_string())),
            Some(("lab".to_owned(), "198.51.100.66".to_owned()))
        );
        // Lists too.
        let list = SourceList::parse(["198.51.100.0/24"])
            .unwrap()
            .with_blocked(["198.51.100.66"])
            .unwrap();
        let verdict = ListExplanation::of(&list, addr);
        assert_eq!(verdict.admits, Some(false));
        assert_eq!(verdict.blocked_by.unwrap().to_string(), "198.51.100.66");
        assert_eq!(ListExplanation::of(&list, None).blocked_by, None);
    }

    #[test]
    fn user_and_group_both_listed_and_unknown_address() {
        let why = explain(&org(), "ann", ["staff"], None);
        assert_eq!(why.decision, Decision::Denied(DenyReason::ClientIpUnknown));
        assert_eq!(why.policies[0].via.len(), 2);
        assert_eq!(why.policies[0].via[0], Via::User);
        assert_eq!(why.policies[0].admits, None);
        let nobody = explain(&org(), "zed", ["sales"], None);
        assert_eq!(nobody.decision, Decision::NoPolicy);
        assert!(nobody.policies.is_empty());
        assert_eq!(nobody.with_report_only, None);
    }
}
