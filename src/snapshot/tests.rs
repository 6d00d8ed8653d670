//! The decision, table-driven, and the compiled structure against a naive model.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::policy::{Enforcement, GroupHierarchy, GroupId, Policy, PolicyId, UserId};
use crate::source::{normalize_ip, AllowedSource};

fn policy(id: &str, sources: &[&str], users: &[&str], groups: &[&str]) -> Policy {
    let mut builder = Policy::builder(id).sources(sources).unwrap();
    for user in users {
        builder = builder.user(*user);
    }
    for group in groups {
        builder = builder.group(*group);
    }
    builder.build().unwrap()
}

/// acme: office (users ann, grp staff), vpn (group admins), v6lab (user v6),
/// idle (no targets). Hierarchy: interns -> staff; oncall -> admins, staff;
/// night -> oncall. Org "other" has a policy for ann too.
fn fixture() -> Snapshot {
    let mut acme = OrgPolicies::default();
    acme.insert_policy(policy("office", &["198.51.100.0/24"], &["ann"], &["staff"]));
    acme.insert_policy(policy(
        "vpn",
        &["203.0.113.10", "192.0.2.0/31"],
        &[],
        &["admins"],
    ));
    acme.insert_policy(policy("v6lab", &["2001:db8:abcd::/48"], &["v6"], &[]));
    acme.insert_policy(policy("idle", &["10.0.0.0/8"], &[], &[]));
    acme.groups.set_parents("interns", ["staff"]).unwrap();
    acme.groups
        .set_parents("oncall", ["admins", "staff"])
        .unwrap();
    acme.groups.set_parents("night", ["oncall"]).unwrap();

    let mut other = OrgPolicies::default();
    other.insert_policy(policy("elsewhere", &["100.64.0.0/10"], &["ann"], &[]));

    let mut default = OrgPolicies::default();
    default.insert_policy(policy("single-tenant", &["172.16.0.0/12"], &["solo"], &[]));

    Snapshot::from_orgs([
        (OrgId::from("acme"), &acme),
        (OrgId::from("other"), &other),
        (OrgId::default(), &default),
    ])
}

struct Case {
    name: &'static str,
    org: Option<&'static str>,
    user: &'static str,
    groups: &'static [&'static str],
    addr: Option<&'static str>,
    want: Decision,
}

const ALLOWED: Decision = Decision::Allowed;
const NO_POLICY: Decision = Decision::NoPolicy;
const NOT_ALLOWED: Decision = Decision::Denied(DenyReason::IpNotAllowed);
const UNKNOWN: Decision = Decision::Denied(DenyReason::ClientIpUnknown);

#[test]
#[rustfmt::skip]
fn decision_table() {
    let cases = [
        Case { name: "user target, inside", org: Some("acme"), user: "ann", groups: &[], addr: Some("198.51.100.9"), want: ALLOWED },
        Case { name: "user target, outside", org: Some("acme"), user: "ann", groups: &[], addr: Some("198.51.101.9"), want: NOT_ALLOWED },
        Case { name: "no policy applies: untouched", org: Some("acme"), user: "bob", groups: &["sales"], addr: Some("192.0.2.200"), want: NO_POLICY },
        Case { name: "no policy applies, address unknown: untouched", org: Some("acme"), user: "bob", groups: &[], addr: None, want: NO_POLICY },
        Case { name: "direct group target", org: Some("acme"), user: "x", groups: &["staff"], addr: Some("198.51.100.1"), want: ALLOWED },
        Case { name: "child group inherits", org: Some("acme"), user: "x", groups: &["interns"], addr: Some("198.51.100.1"), want: ALLOWED },
        Case { name: "child group inherits the denial", org: Some("acme"), user: "x", groups: &["interns"], addr: Some("203.0.113.10"), want: NOT_ALLOWED },
        Case { name: "grandchild through two parents: union (admins' vpn)", org: Some("acme"), user: "x", groups: &["night"], addr: Some("203.0.113.10"), want: ALLOWED },
        Case { name: "grandchild through two parents: union (staff's office)", org: Some("acme"), user: "x", groups: &["night"], addr: Some("198.51.100.77"), want: ALLOWED },
        Case { name: "grandchild, outside every applicable policy", org: Some("acme"), user: "x", groups: &["night"], addr: Some("192.0.2.2"), want: NOT_ALLOWED },
        Case { name: "/31 both addresses", org: Some("acme"), user: "x", groups: &["admins"], addr: Some("192.0.2.1"), want: ALLOWED },
        Case { name: "user and group policies combine", org: Some("acme"), user: "ann", groups: &["admins"], addr: Some("203.0.113.10"), want: ALLOWED },
        Case { name: "one of several groups suffices", org: Some("acme"), user: "x", groups: &["sales", "admins"], addr: Some("203.0.113.10"), want: ALLOWED },
        Case { name: "applies, address unknown: deny", org: Some("acme"), user: "ann", groups: &[], addr: None, want: UNKNOWN },
        Case { name: "inactive policy affects nobody", org: Some("acme"), user: "y", groups: &[], addr: Some("10.1.2.3"), want: NO_POLICY },
        Case { name: "v6 policy inside", org: Some("acme"), user: "v6", groups: &[], addr: Some("2001:db8:abcd:1::5"), want: ALLOWED },
        Case { name: "v6 policy, v4 address", org: Some("acme"), user: "v6", groups: &[], addr: Some("198.51.100.1"), want: NOT_ALLOWED },
        Case { name: "v4-mapped client matches a v4 rule", org: Some("acme"), user: "ann", groups: &[], addr: Some("::ffff:198.51.100.9"), want: ALLOWED },
        Case { name: "v4-mapped client outside a v4 rule", org: Some("acme"), user: "ann", groups: &[], addr: Some("::ffff:198.51.101.9"), want: NOT_ALLOWED },
        Case { name: "organizations do not mix: ann in other", org: Some("other"), user: "ann", groups: &[], addr: Some("198.51.100.9"), want: NOT_ALLOWED },
        Case { name: "organizations do not mix: ann's other policy", org: Some("other"), user: "ann", groups: &[], addr: Some("100.64.1.1"), want: ALLOWED },
        Case { name: "organizations do not mix: groups", org: Some("other"), user: "x", groups: &["staff"], addr: Some("192.0.2.200"), want: NO_POLICY },
        Case { name: "unknown organization", org: Some("nobody"), user: "ann", groups: &[], addr: Some("192.0.2.200"), want: NO_POLICY },
        Case { name: "no organization is the default one", org: None, user: "solo", groups: &[], addr: Some("192.0.2.200"), want: NOT_ALLOWED },
        Case { name: "the default organization by name", org: Some("default"), user: "solo", groups: &[], addr: Some("172.20.0.1"), want: ALLOWED },
    ];
    let snapshot = fixture();
    for case in cases {
        let addr = case.addr.map(|a| a.parse::<IpAddr>().unwrap());
        let got = snapshot.decide(case.org, case.user, case.groups.iter().copied(), addr);
        assert_eq!(got, case.want, "{}", case.name);
    }
}

/// office admits 198.51.100.0/24 but the printer range .64/26 and 2001:db8::/32 but
/// one /48, for staff; lab admits only the printer .66, for ann; the report-only audit
/// policy blocks .7 for ann.
#[test]
#[rustfmt::skip]
fn blocked_sources_table() {
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("office")
            .sources(["198.51.100.0/24", "2001:db8::/32"]).unwrap()
            .blocked_sources(["198.51.100.64/26", "2001:db8:bad::/48", "192.0.2.0/24"]).unwrap()
            .group("staff")
            .build().unwrap(),
    );
    org.insert_policy(policy("lab", &["198.51.100.66"], &["ann"], &[]));
    org.insert_policy(
        Policy::builder("audit")
            .sources(["198.51.100.0/24"]).unwrap()
            .blocked_sources(["198.51.100.7"]).unwrap()
            .user("ann")
            .enforcement(Enforcement::Report)
            .build().unwrap(),
    );
    let compiled = CompiledOrg::compile(&org);
    let cases = [
        Case { name: "allowed, not blocked", org: None, user: "x", groups: &["staff"], addr: Some("198.51.100.7"), want: ALLOWED },
        Case { name: "blocked inside allowed", org: None, user: "x", groups: &["staff"], addr: Some("198.51.100.66"), want: NOT_ALLOWED },
        Case { name: "first blocked address", org: None, user: "x", groups: &["staff"], addr: Some("198.51.100.64"), want: NOT_ALLOWED },
        Case { name: "just before the blocked range", org: None, user: "x", groups: &["staff"], addr: Some("198.51.100.63"), want: ALLOWED },
        Case { name: "last blocked address", org: None, user: "x", groups: &["staff"], addr: Some("198.51.100.127"), want: NOT_ALLOWED },
        Case { name: "just after the blocked range", org: None, user: "x", groups: &["staff"], addr: Some("198.51.100.128"), want: ALLOWED },
        Case { name: "v4-mapped blocked address", org: None, user: "x", groups: &["staff"], addr: Some("::ffff:198.51.100.66"), want: NOT_ALLOWED },
        Case { name: "v6 blocked inside allowed", org: None, user: "x", groups: &["staff"], addr: Some("2001:db8:bad::1"), want: NOT_ALLOWED },
        Case { name: "v6 allowed, not blocked", org: None, user: "x", groups: &["staff"], addr: Some("2001:db8:bae::1"), want: ALLOWED },
        Case { name: "blocked outside allowed changes nothing", org: None, user: "x", groups: &["staff"], addr: Some("192.0.2.1"), want: NOT_ALLOWED },
        Case { name: "another policy admits the blocked address: union", org: None, user: "ann", groups: &["staff"], addr: Some("198.51.100.66"), want: ALLOWED },
        Case { name: "that policy alone admits only its own", org: None, user: "ann", groups: &[], addr: Some("198.51.100.67"), want: NOT_ALLOWED },
        Case { name: "a report-only policy's blocked sources do not deny", org: None, user: "ann", groups: &["staff"], addr: Some("198.51.100.7"), want: ALLOWED },
    ];
    for case in cases {
        let addr = case.addr.map(|a| a.parse::<IpAddr>().unwrap());
        let got = compiled.decide(case.user, case.groups.iter().copied(), addr);
        assert_eq!(got, case.want, "{}", case.name);
        let explained = crate::explain::explain(&org, case.user, case.groups.iter().copied(), addr);
        assert_eq!(explained.decision, case.want, "explain: {}", case.name);
    }
}

#[test]
fn applicable_policy_ids() {
    let snapshot = fixture();
    let org = snapshot.org("acme").unwrap();
    let mut ids = org.applicable_policies("ann", ["night"]);
    ids.sort();
    assert_eq!(ids, [PolicyId::from("office"), PolicyId::from("vpn")]);
    assert!(org.applicable_policies("bob", ["sales"]).is_empty());
}

#[test]
fn recompiling_one_org_shares_the_rest() {
    let snapshot = fixture();
    let mut acme = OrgPolicies::default();
    acme.insert_policy(policy("new", &["192.0.2.0/24"], &["ann"], &[]));
    let next = snapshot.with_org(OrgId::from("acme"), &acme);
    assert!(Arc::ptr_eq(
        snapshot.org("other").unwrap(),
        next.org("other").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        snapshot.org("acme").unwrap(),
        next.org("acme").unwrap()
    ));
    // An organization left with no active policy drops out.
    let empty = next.with_org(OrgId::from("acme"), &OrgPolicies::default());
    assert!(empty.org("acme").is_none());
    assert_eq!(empty.len(), 2);
}

#[test]
fn handle_publishes_atomically() {
    let handle = SnapshotHandle::default();
    let addr = Some("192.0.2.1".parse().unwrap());
    assert_eq!(handle.load().decide(None, "u", [], addr), NO_POLICY);
    let mut org = OrgPolicies::default();
    org.insert_policy(policy("p", &["198.51.100.0/24"], &["u"], &[]));
    handle.set_org(OrgId::default(), &org);
    assert_eq!(handle.load().decide(None, "u", [], addr), NOT_ALLOWED);
    handle.remove_org(OrgId::DEFAULT);
    assert_eq!(handle.load().decide(None, "u", [], addr), NO_POLICY);
}

#[test]
fn the_default_organization_follows_every_change() {
    // Named or not, through every way of changing it.
    let inside = Some("198.51.100.1".parse().unwrap());
    let outside = Some("192.0.2.1".parse().unwrap());
    let mut org = OrgPolicies::default();
    org.insert_policy(policy("p", &["198.51.100.0/24"], &["u"], &[]));
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::from("default"), &org);
    for name in [None, Some("default")] {
        assert_eq!(handle.load().decide(name, "u", [], inside), ALLOWED);
        assert_eq!(handle.load().decide(name, "u", [], outside), NOT_ALLOWED);
    }
    org.insert_policy(policy("p", &["192.0.2.0/24"], &["u"], &[]));
    handle.set_org(OrgId::default(), &org);
    assert_eq!(handle.load().decide(None, "u", [], inside), NOT_ALLOWED);
    assert_eq!(handle.load().decide(None, "u", [], outside), ALLOWED);
    // Left with no active policy: dropped, like any organization.
    handle.set_org(OrgId::default(), &OrgPolicies::default());
    assert_eq!(handle.load().decide(None, "u", [], outside), NO_POLICY);
    assert!(handle.load().org(OrgId::DEFAULT).is_none());
    handle.set_org(OrgId::default(), &org);
    assert_eq!(handle.load().decide(None, "u", [], inside), NOT_ALLOWED);
    assert_eq!(
        handle
            .load()
            .without_org(OrgId::DEFAULT)
            .decide(None, "u", [], inside),
        NO_POLICY
    );
    // Another organization's changes leave it alone.
    handle.set_org(OrgId::from("acme"), &OrgPolicies::default());
    assert_eq!(handle.load().decide(None, "u", [], outside), ALLOWED);
}

#[test]
fn a_pending_handle_denies_everyone_until_a_loaded_snapshot_is_published() {
    let handle = SnapshotHandle::pending();
    let addr = Some("192.0.2.1".parse().unwrap());
    let unavailable = Decision::Denied(DenyReason::PoliciesUnavailable);
    assert!(!handle.is_loaded());
    assert_eq!(handle.load().decide(None, "nobody", [], addr), unavailable);
    // Changes to one organization keep it pending: the others are still unknown.
    let mut org = OrgPolicies::default();
    org.insert_policy(policy("p", &["198.51.100.0/24"], &["u"], &[]));
    handle.set_org(OrgId::default(), &org);
    handle.remove_org("other");
    assert_eq!(handle.load().decide(None, "u", [], addr), unavailable);
    assert!(!handle.is_loaded());
    // A loaded snapshot ends it.
    handle.publish(Snapshot::from_orgs([(OrgId::default(), &org)]));
    assert!(handle.is_loaded());
    assert_eq!(handle.load().decide(None, "u", [], addr), NOT_ALLOWED);
    assert_eq!(handle.load().decide(None, "nobody", [], addr), NO_POLICY);
    assert_eq!(
        DenyReason::PoliciesUnavailable.code(),
        "policiesUnavailable"
    );
}

#[test]
fn a_cycle_in_stored_data_cannot_hang_the_compiler() {
    // Editing refuses cycles; the compiler must still terminate on whatever storage holds.
    let mut org = OrgPolicies {
        groups: GroupHierarchy::with_unchecked_edges([("a", "b"), ("b", "c"), ("c", "a")]),
        ..OrgPolicies::default()
    };
    org.insert_policy(policy("p", &["192.0.2.0/24"], &[], &["b"]));
    let compiled = CompiledOrg::compile(&org);
    for group in ["a", "b", "c"] {
        assert!(compiled
            .decide("u", [group], Some("192.0.2.1".parse().unwrap()))
            .is_allowed());
    }
}

#[test]
fn deep_hierarchy_compiles_without_recursion() {
    let mut org = OrgPolicies::default();
    let depth = 3_000;
    for i in 1..depth {
        org.groups
            .set_parents(format!("g{i}"), [format!("g{}", i - 1)])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    org.insert_policy(policy("root", &["192.0.2.0/24"], &[], &["g0"]));
    let compiled = CompiledOrg::compile(&org);
    let leaf = format!("g{}", depth - 1);
    assert_eq!(
        compiled.decide("u", [leaf.as_str()], Some("192.0.2.1".parse().unwrap())),
        ALLOWED
    );
}

// ---------------------------------------------------------------------------------
// Property test: the compiled snapshot decides exactly like the naive model.

/// The naive reference: find applicable policies the obvious way, then scan sources.
fn naive(org: &OrgPolicies, user: &str, groups: &[String], addr: Option<IpAddr>) -> Decision {
    let mut applicable = org.applicable(user, groups.iter().map(String::as_str));
    applicable.retain(|p| p.enforcement() == Enforcement::Enforce);
    if applicable.is_empty() {
        return NO_POLICY;
    }
    let Some(addr) = addr else { return UNKNOWN };
    let addr = normalize_ip(addr);
    let inside = |sources: &[AllowedSource]| {
        sources
            .iter()
            .any(|s| s.to_cidrs().iter().any(|net| net.contains(&addr)))
    };
    // Union of policies; each admits what its allowed sources hold and its blocked
    // sources do not.
    if applicable
        .iter()
        .any(|p| inside(p.sources()) && !inside(p.blocked_sources()))
    {
        ALLOWED
    } else {
        NOT_ALLOWED
    }
}

/// Addresses drawn from a small pool of prefixes so ranges overlap and addresses hit.
fn addr_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| IpAddr::from([10, 0, a & 3, b])),
        any::<u32>().prop_map(|v| IpAddr::from(v.to_be_bytes())),
        (any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| { IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, a & 7, b]) }),
        any::<u128>().prop_map(|v| IpAddr::from(v.to_be_bytes())),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| {
            // IPv4-mapped forms of the 10.0.x.y pool.
            IpAddr::from(std::net::Ipv4Addr::new(10, 0, a & 3, b).to_ipv6_mapped())
        }),
    ]
}

fn source_strategy() -> impl Strategy<Value = AllowedSource> {
    prop_oneof![
        4 => net_strategy(),
        1 => (addr_strategy(), addr_strategy()).prop_filter_map("mixed families", |(a, b)| {
            AllowedSource::from_range(a.min(b), a.max(b)).ok()
        }),
    ]
}

fn net_strategy() -> impl Strategy<Value = AllowedSource> {
    (addr_strategy(), any::<u8>()).prop_filter_map("match-all", |(addr, p)| {
        let addr = normalize_ip(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        // Bias towards long prefixes (/31, /32, /127, /128 included) but cover 1..=max.
        let prefix = match p % 4 {
            0 => max,
            1 => max - (p / 4) % 3,
            _ => 1 + p % max,
        };
        let net = ipnet::IpNet::new(addr, prefix).ok()?.trunc();
        AllowedSource::from_net(net).ok()
    })
}

prop_compose! {
    fn org_strategy()(
        policies in prop::collection::vec(
            (
                prop::collection::vec(source_strategy(), 1..6),
                // Up to 12 users and 12 groups: past 8, an organization's names are
                // hashed (behind their filter).
                prop::collection::btree_set(0u8..12, 0..3),
                prop::collection::btree_set(0u8..12, 0..4),
                prop::bool::weighted(0.2),
                // Blocked sources: none for about half the policies.
                prop::collection::vec(source_strategy(), 0..4)
                    .prop_map(|blocked| if blocked.len() % 2 == 1 { blocked } else { Vec::new() })
                    .prop_filter("blocks everything", |blocked| {
                        crate::source::check_blocked_coverage(blocked).is_ok()
                    }),
            ),
            0..12,
        ),
        edges in prop::collection::vec((0u8..12, 0u8..12), 0..16),
    ) -> OrgPolicies {
        let mut org = OrgPolicies::default();
        for (i, (sources, users, groups, report, blocked)) in policies.into_iter().enumerate() {
            let mut b = Policy::builder(format!("p{i}"));
            if report { b = b.enforcement(Enforcement::Report); }
            for s in sources { b = b.source(s); }
            for s in blocked { b = b.blocked_source(s); }
            for u in users { b = b.user(format!("u{u}")); }
            for g in groups { b = b.group(format!("g{g}")); }
            org.insert_policy(b.build().unwrap());
        }
        for (child, parent) in edges {
            let parents: Vec<GroupId> = org.groups.parents(&format!("g{child}")).cloned()
                .chain([GroupId::from(format!("g{parent}"))]).collect();
            // Cycles are refused, as the store would refuse them.
            let _ = org.groups.set_parents(format!("g{child}"), parents);
        }
        org
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compiled_matches_naive(
        org in org_strategy(),
        queries in prop::collection::vec(
            (0u8..13, prop::collection::vec(0u8..13, 0..4), prop::option::weighted(0.95, addr_strategy())),
            1..24,
        ),
        more in prop::collection::vec(source_strategy(), 0..4),
    ) {
        // Both ways of deciding: by names where they fit (16), by sets wherever a
        // covering set is reached through any name at all (0: only sets reached
        // through none, such as the empty set, decide by names), and a mix (1).
        const LIMITS: [usize; 3] = [16, 0, 1];
        let compiled = LIMITS.map(|limit| CompiledOrg::compile_with(&org, limit));
        // Query addresses include the edges of every source.
        let mut addrs: Vec<Option<IpAddr>> = queries.iter().map(|q| q.2).collect();
        for policy in org.policies.values() {
            for s in policy.sources().iter().chain(policy.blocked_sources()).chain(&more) {
                let (first, last) = s.bounds();
                addrs.push(Some(first));
                addrs.push(Some(last));
                // Just outside a blocked range is where a subtraction goes wrong.
                let (before, after) = match (index::key(first), index::key(last)) {
                    (Ok(first), Ok(last)) => (
                        first.checked_sub(1).map(|k| IpAddr::from(std::net::Ipv4Addr::from(k))),
                        last.checked_add(1).map(|k| IpAddr::from(std::net::Ipv4Addr::from(k))),
                    ),
                    (Err(first), Err(last)) => (
                        first.checked_sub(1).map(|k| IpAddr::from(std::net::Ipv6Addr::from(k))),
                        last.checked_add(1).map(|k| IpAddr::from(std::net::Ipv6Addr::from(k))),
                    ),
                    _ => (None, None),
                };
                addrs.extend([before, after].into_iter().flatten().map(Some));
            }
        }
        for (i, (user, groups, _)) in queries.iter().enumerate() {
            let user = UserId::from(format!("u{user}"));
            let groups: Vec<String> = groups.iter().map(|g| format!("g{g}")).collect();
            for addr in addrs.iter().skip(i % 3).step_by(3) {
                let want = naive(&org, user.as_str(), &groups, *addr);
                for (compiled, limit) in compiled.iter().zip(LIMITS) {
                    let got = compiled.decide(user.as_str(), groups.iter().map(String::as_str), *addr);
                    prop_assert_eq!(got, want, "user {} groups {:?} addr {:?} limit {}", user, groups, addr, limit);
                }
                let compiled = &compiled[0];
                // Report-only: the compiled "would deny" agrees with the explanation.
                let why = crate::explain::explain(&org, user.as_str(), groups.iter().map(String::as_str), *addr);
                prop_assert_eq!(why.decision, want);
                let would = compiled.would_deny(user.as_str(), groups.iter().map(String::as_str), *addr);
                let expected = !matches!(want, Decision::Denied(_))
                    && matches!(why.with_report_only, Some(Decision::Denied(_)));
                prop_assert_eq!(would.is_some(), expected, "would_deny {:?} vs {:?}", would, why);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Readers deciding while a writer publishes: every decision is the old one or the new.

#[test]
fn readers_see_old_or_new_never_a_mix() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    // Two states that disagree on every probe: A admits 198.51.100.0/24 via user and
    // group policies, B admits only 192.0.2.0/24. A mix (user bits of one, index of the
    // other) would give a third answer on at least one probe.
    let state_a = {
        let mut org = OrgPolicies::default();
        org.insert_policy(policy("u", &["198.51.100.0/24"], &["ann"], &[]));
        org.insert_policy(policy("g", &["198.51.100.0/24"], &[], &["staff"]));
        org
    };
    let state_b = {
        let mut org = OrgPolicies::default();
        org.insert_policy(policy("u", &["192.0.2.0/24"], &["ann"], &[]));
        org.insert_policy(policy("g", &["192.0.2.0/24"], &[], &["staff"]));
        org
    };
    let probes: [(&str, &[&str], IpAddr); 4] = [
        ("ann", &[], "198.51.100.1".parse().unwrap()),
        ("ann", &[], "192.0.2.1".parse().unwrap()),
        ("x", &["staff"], "198.51.100.1".parse().unwrap()),
        ("x", &["staff"], "192.0.2.1".parse().unwrap()),
    ];
    let expect = |org: &OrgPolicies| -> Vec<Decision> {
        probes
            .iter()
            .map(|(u, g, a)| {
                naive(
                    org,
                    u,
                    &g.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    Some(*a),
                )
            })
            .collect()
    };
    let (want_a, want_b) = (expect(&state_a), expect(&state_b));
    assert_ne!(want_a, want_b);

    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &state_a);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let handle = handle.clone();
            let stop = Arc::clone(&stop);
            let (want_a, want_b) = (want_a.clone(), want_b.clone());
            thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) || checked == 0 {
                    let snapshot = handle.load();
                    let got: Vec<Decision> = probes
                        .iter()
                        .map(|(u, g, a)| snapshot.decide(None, u, g.iter().copied(), Some(*a)))
                        .collect();
                    assert!(got == want_a || got == want_b, "mixed decision {got:?}");
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    for i in 0..2_000 {
        handle.set_org(
            OrgId::default(),
            if i % 2 == 0 { &state_b } else { &state_a },
        );
        // The next load after publish returns sees what was published.
        let now = handle.load();
        let got: Vec<Decision> = probes
            .iter()
            .map(|(u, g, a)| now.decide(None, u, g.iter().copied(), Some(*a)))
            .collect();
        assert_eq!(
            got,
            if i % 2 == 0 {
                want_b.clone()
            } else {
                want_a.clone()
            }
        );
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}

#[test]
fn policies_read_back_and_edited_in_place_without_losing_concurrent_edits() {
    let handle = SnapshotHandle::default();
    let org = OrgId::from("acme");
    assert!(handle.org_policies("acme").is_none());
    // An inactive policy (no target) is kept in the policies, though nothing compiles.
    handle
        .update_org(&org, |policies| {
            policies.insert_policy(
                Policy::builder("idle")
                    .sources(["192.0.2.0/24"])
                    .unwrap()
                    .build()
                    .unwrap(),
            );
        })
        .unwrap();
    assert!(handle.load().org("acme").is_none());
    assert!(handle
        .org_policies("acme")
        .unwrap()
        .policies
        .contains_key("idle"));

    // Two writers, each adding 50 policies: every one of the 100 lands.
    std::thread::scope(|scope| {
        for writer in 0..2 {
            let handle = &handle;
            let org = &org;
            scope.spawn(move || {
                for i in 0..50 {
                    handle
                        .update_org(org, |policies| {
                            policies.insert_policy(
                                Policy::builder(format!("p{writer}-{i}").as_str())
                                    .sources(["198.51.100.0/24"])
                                    .unwrap()
                                    .user(format!("user{writer}-{i}").as_str())
                                    .build()
                                    .unwrap(),
                            );
                        })
                        .unwrap();
                }
            });
        }
    });
    let policies = handle.org_policies("acme").unwrap();
    assert_eq!(policies.policies.len(), 101);
    // And what is read back is what decides.
    let snapshot = handle.load();
    assert_eq!(
        snapshot.decide(
            Some("acme"),
            "user1-49",
            [],
            Some("192.0.2.1".parse().unwrap())
        ),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    // set_org records what it publishes too; remove_org forgets it.
    handle.set_org(org.clone(), &OrgPolicies::default());
    assert!(handle.org_policies("acme").unwrap().policies.is_empty());
    handle.remove_org("acme");
    assert!(handle.org_policies("acme").is_none());

    // Published compiled only: editing from empty policies would drop its policies,
    // so it is refused (from a review).
    let mut only_compiled = Snapshot::empty();
    let mut restricted = OrgPolicies::default();
    restricted.insert_policy(policy("vpn", &["203.0.113.0/24"], &["alice"], &[]));
    only_compiled.insert_compiled(org.clone(), Arc::new(CompiledOrg::compile(&restricted)));
    handle.publish(only_compiled);
    let err = handle.update_org(&org, |_| ()).unwrap_err();
    assert!(err.to_string().contains("set_org"), "{err}");
    assert_eq!(
        handle.load().decide(
            Some("acme"),
            "alice",
            [],
            Some("192.0.2.1".parse().unwrap())
        ),
        Decision::Denied(DenyReason::IpNotAllowed),
        "still restricted"
    );
}

// ---------------------------------------------------------------------------------
// The two ways of deciding, and the name filter.

/// One policy covering 198.51.100.0/24 for `groups` targeted groups (`t0`, `t1`, ...),
/// and another covering 192.0.2.0/24 for group `elsewhere`.
fn many_groups(groups: usize, admitting_names: usize) -> CompiledOrg {
    let targeted: Vec<String> = (0..groups).map(|g| format!("t{g}")).collect();
    let targeted: Vec<&str> = targeted.iter().map(String::as_str).collect();
    let mut org = OrgPolicies::default();
    org.insert_policy(policy("wide", &["198.51.100.0/24"], &[], &targeted));
    org.insert_policy(policy("other", &["192.0.2.0/24"], &[], &["elsewhere"]));
    CompiledOrg::compile_with(&org, admitting_names)
}

fn names(list: &[String], take: usize) -> Vec<&str> {
    list.iter().take(take).map(String::as_str).collect()
}

#[test]
fn both_ways_of_deciding_agree_past_the_deferred_groups() {
    let inside: Option<IpAddr> = Some("198.51.100.7".parse().unwrap());
    let outside: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
    let untargeted: Vec<String> = (0..40).map(|g| format!("u{g}")).collect();
    let targeted: Vec<String> = (0..40).map(|g| format!("t{g}")).collect();
    // By names (3 names fit), by sets (40 do not fit in 16), by sets (limit 0).
    for (groups, limit) in [(3, 16), (40, 16), (40, 0), (3, 0)] {
        let org = many_groups(groups, limit);
        // More untargeted groups than are deferred, then the last targeted one.
        let mut caller = names(&untargeted, 20);
        caller.push(targeted[groups - 1].as_str());
        assert_eq!(
            org.decide("x", caller.iter().copied(), inside),
            Decision::Allowed
        );
        assert_eq!(
            org.decide("x", caller.iter().copied(), outside),
            Decision::Denied(DenyReason::IpNotAllowed),
            "{groups} groups, limit {limit}"
        );
        assert_eq!(
            org.decide("x", caller.iter().copied(), None),
            Decision::Denied(DenyReason::ClientIpUnknown)
        );
        // Only untargeted groups: no policy, wherever the caller is.
        let caller = names(&untargeted, 40);
        for addr in [inside, outside, None] {
            assert_eq!(
                org.decide("x", caller.iter().copied(), addr),
                Decision::NoPolicy
            );
        }
        // Many targeted groups of the policy elsewhere: refused here.
        let mut caller = vec!["elsewhere"; 12];
        caller.extend(names(&untargeted, 12));
        assert_eq!(
            org.decide("x", caller.iter().copied(), inside),
            Decision::Denied(DenyReason::IpNotAllowed)
        );
    }
}

#[test]
fn users_and_groups_are_told_apart() {
    let mut org = OrgPolicies::default();
    org.insert_policy(policy("p", &["198.51.100.0/24"], &["ann"], &["staff"]));
    let inside: Option<IpAddr> = Some("198.51.100.7".parse().unwrap());
    for limit in [0, 16] {
        let org = CompiledOrg::compile_with(&org, limit);
        // A user named like the group, a group named like the user: neither applies.
        assert_eq!(org.decide("staff", ["ann"], inside), Decision::NoPolicy);
        assert_eq!(org.decide("ann", ["ann"], inside), Decision::Allowed);
        assert_eq!(org.decide("bob", ["staff"], inside), Decision::Allowed);
    }
}

#[test]
fn the_name_filter_holds_every_name_and_rules_out_most_others() {
    for held in [
        (0..20).map(|g| format!("g{g}")).collect::<Vec<_>>(),
        (0..20).map(|g| format!("team-{g:04}")).collect(),
        (0..20)
            .map(|g| format!("{g:08x}-0000-4000-8000-{:012x}", g * 7919))
            .collect(),
    ] {
        let filter: org::NameFilter = held.iter().map(String::as_str).collect();
        assert!(held.iter().all(|name| filter.may_hold(name)));
        let others: Vec<String> = (0..1000)
            .map(|i| format!("{:x}-user-{i}", i * 31))
            .chain((100..1100).map(|g| format!("g{g}")))
            .chain((100..1100).map(|g| format!("team-{g:04}")))
            .collect();
        let passed = others.iter().filter(|name| filter.may_hold(name)).count();
        // 20 names set at most 20 of 256 bits: about 8 % of other names pass.
        assert!(
            passed * 4 < others.len(),
            "{passed} of {} unheld names passed the filter of {:?}",
            others.len(),
            &held[..2]
        );
    }
}

#[test]
fn the_default_organization_shortcut_follows_every_change() {
    let inside: Option<IpAddr> = Some("198.51.100.7".parse().unwrap());
    let mut org = OrgPolicies::default();
    org.insert_policy(policy("p", &["198.51.100.0/24"], &["ann"], &[]));
    let mut moved = OrgPolicies::default();
    moved.insert_policy(policy("p", &["192.0.2.0/24"], &["ann"], &[]));

    let one = Snapshot::empty().with_org(OrgId::default(), &org);
    assert_eq!(one.decide(None, "ann", [], inside), Decision::Allowed);
    let two = one.with_org(OrgId::default(), &moved);
    assert_eq!(two.decide(None, "ann", [], inside), NOT_ALLOWED);
    assert_eq!(one.decide(None, "ann", [], inside), Decision::Allowed);
    let gone = two.without_org(OrgId::DEFAULT);
    assert_eq!(gone.decide(None, "ann", [], inside), NO_POLICY);
    assert!(gone.org(OrgId::DEFAULT).is_none());

    let mut compiled = gone.clone();
    compiled.insert_compiled(OrgId::default(), Arc::new(CompiledOrg::compile(&org)));
    assert_eq!(
        compiled.decide(Some(OrgId::DEFAULT), "ann", [], inside),
        Decision::Allowed
    );
    // An organization with nothing to enforce leaves no compiled form behind.
    compiled.insert_compiled(
        OrgId::default(),
        Arc::new(CompiledOrg::compile(&OrgPolicies::default())),
    );
    assert_eq!(compiled.decide(None, "ann", [], inside), NO_POLICY);
    // Built at once, and another organization changing does not touch it.
    let at_once = Snapshot::from_orgs([(OrgId::default(), &org), (OrgId::from("acme"), &moved)]);
    assert_eq!(at_once.decide(None, "ann", [], inside), Decision::Allowed);
    let other = at_once.with_org(OrgId::from("acme"), &org);
    assert_eq!(other.decide(None, "ann", [], inside), Decision::Allowed);
    assert_eq!(
        other.decide(Some("acme"), "ann", [], inside),
        Decision::Allowed
    );
}
