//! One organization, compiled.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use smallvec::SmallVec;

use super::index::{self, RangeIndex, SetTable};
use super::{CompiledList, Decision, DenyReason};
use crate::policy::{Enforcement, OrgPolicies, Policy, PolicyId};
use crate::source::normalize_ip;

type FastMap<V> = HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// Bitset words kept on the stack while deciding: 256 policies before a heap allocation.
type Bits = SmallVec<[u64; 4]>;

/// The compiled, immutable decision structure of one organization.
///
/// Active policies get dense indexes; users and groups map straight to the set of
/// policies that apply through them (for groups, through every ancestor, resolved at
/// compile time); addresses map through a range index per family to the set of
/// policies whose sources cover them. A policy's blocked sources are subtracted from its
/// allowed ones before they enter the index, so they add nothing to a decision. A decision is a few hash look-ups, two binary
/// searches at most, and a bitwise AND, whatever the number of policies.
#[derive(Debug)]
pub struct CompiledOrg {
    policy_ids: Box<[PolicyId]>,
    words: usize,
    sets: Box<[u64]>,
    /// `members[member_starts[id]..member_starts[id + 1]]`: the policies of set `id`,
    /// for checking a caller's set against the few policies covering an address
    /// without reading every word of it.
    member_starts: Box<[u32]>,
    members: Box<[u32]>,
    users: FastMap<u32>,
    groups: FastMap<u32>,
    v4: RangeIndex<u32>,
    v6: RangeIndex<u128>,
    sources: usize,
    /// The enabled site list.
    site: Option<CompiledList>,
    /// Resources' lists.
    resources: FastMap<CompiledList>,
    /// When some active policies only report: every active policy, compiled, to tell
    /// what the decision would be if they enforced.
    report: Option<Box<CompiledOrg>>,
}

impl CompiledOrg {
    /// Compiles an organization's policies, group hierarchy, site list and resource
    /// lists.
    #[must_use]
    pub fn compile(org: &OrgPolicies) -> Self {
        let active: Vec<&Policy> = org.policies.values().filter(|p| p.is_active()).collect();
        let enforced: Vec<&Policy> = active
            .iter()
            .copied()
            .filter(|p| p.enforcement() == Enforcement::Enforce)
            .collect();
        let mut compiled = Self::policies(&enforced, org);
        if enforced.len() < active.len() {
            compiled.report = Some(Box::new(Self::policies(&active, org)));
        }
        compiled.site = org
            .site
            .as_ref()
            .filter(|site| site.enabled)
            .map(|site| CompiledList::compile(&site.list));
        compiled.resources = org
            .resources
            .iter()
            .map(|(id, list)| (id.as_str().into(), CompiledList::compile(list)))
            .collect();
        compiled
    }

    /// Compiles `active` policies over the organization's group hierarchy.
    fn policies(active: &[&Policy], org: &OrgPolicies) -> Self {
        let mut sets = SetTable::new(active.len());
        let words = sets.words();
        let bit = |bits: &mut [u64], p: usize| bits[p / 64] |= 1 << (p % 64);

        // Users: the policies that name them directly.
        let mut user_bits: HashMap<&str, Vec<u64>> = HashMap::new();
        // Groups: the policies that name them directly, before closure.
        let mut group_bits: HashMap<&str, Vec<u64>> = HashMap::new();
        for (p, policy) in active.iter().enumerate() {
            for user in policy.users() {
                bit(
                    user_bits
                        .entry(user.as_str())
                        .or_insert_with(|| vec![0; words]),
                    p,
                );
            }
            for group in policy.groups() {
                bit(
                    group_bits
                        .entry(group.as_str())
                        .or_insert_with(|| vec![0; words]),
                    p,
                );
            }
        }

        // Every group that can reach a targeted group upwards gets the union of its
        // ancestors' policies. Memoized depth-first walk; a cycle (refused when
        // editing, but never trusted here) is cut rather than followed.
        let mut candidates: Vec<&str> = group_bits.keys().copied().collect();
        candidates.extend(org.groups.iter().map(|(child, _)| child.as_str()));
        let closure = close_groups(candidates, org, &group_bits, words);

        let mut users = FastMap::default();
        for (user, bits) in user_bits {
            users.insert(user.into(), sets.intern(&bits));
        }
        let mut groups = FastMap::default();
        for (group, bits) in closure {
            if bits.iter().any(|w| *w != 0) {
                groups.insert(group.into(), sets.intern(&bits));
            }
        }

        let mut v4_ranges = Vec::new();
        let mut v6_ranges = Vec::new();
        let mut sources = 0;
        for (p, policy) in active.iter().enumerate() {
            sources += policy.sources().len();
            // Blocked sources are subtracted here, once: the index holds only what the
            // policy admits, and a decision costs what it did without them.
            let (v4, v6) = super::list::effective(policy.sources(), policy.blocked_sources());
            v4_ranges.extend(v4.iter().map(|&(first, last)| (p, first, last)));
            v6_ranges.extend(v6.iter().map(|&(first, last)| (p, first, last)));
        }
        let v4 = index::build(v4_ranges.into_iter(), &mut sets);
        let v6 = index::build(v6_ranges.into_iter(), &mut sets);

        let sets = sets.finish();
        let (member_starts, members) = members_of(&sets, words);
        Self {
            policy_ids: active.iter().map(|p| p.id().clone()).collect(),
            words,
            sets,
            member_starts,
            members,
            users,
            groups,
            v4,
            v6,
            sources,
            site: None,
            resources: FastMap::default(),
            report: None,
        }
    }

    /// What the decision would be if the report-only policies enforced too, when that
    /// differs from [`decide`](Self::decide)'s by denying: the report-only policies that
    /// apply to the caller, which would have denied the request. `None` when there is
    /// nothing to report (the usual case, and free when no policy only reports).
    #[must_use]
    pub fn would_deny<'a>(
        &self,
        user: &str,
        groups: impl IntoIterator<Item = &'a str> + Clone,
        addr: Option<IpAddr>,
    ) -> Option<Vec<PolicyId>> {
        let report = self.report.as_deref()?;
        if !matches!(
            report.decide(user, groups.clone(), addr),
            Decision::Denied(_)
        ) {
            return None;
        }
        if matches!(self.decide(user, groups.clone(), addr), Decision::Denied(_)) {
            return None;
        }
        let enforced = self.applicable_policies(user, groups.clone());
        let reporting: Vec<PolicyId> = report
            .applicable_policies(user, groups)
            .into_iter()
            .filter(|id| !enforced.contains(id))
            .collect();
        Some(reporting)
    }

    /// Whether nothing here can affect a request: no active policy (enforced or
    /// report-only), no enabled site list, no resource list.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.policy_ids.is_empty()
            && self.report.is_none()
            && self.site.is_none()
            && self.resources.is_empty()
    }

    /// Whether some active policies only report (and [`would_deny`](Self::would_deny)
    /// has anything to say).
    #[must_use]
    #[inline]
    pub fn has_report_policies(&self) -> bool {
        self.report.is_some()
    }

    /// The enabled site list, if any.
    #[must_use]
    pub fn site(&self) -> Option<&CompiledList> {
        self.site.as_ref()
    }

    /// The list of `resource`, if it has one.
    #[must_use]
    pub fn resource(&self, resource: &str) -> Option<&CompiledList> {
        self.resources.get(resource)
    }

    /// Decides for a caller and a client address (`None`: it could not be determined).
    ///
    /// The address is normalized with [`normalize_ip`] first.
    #[must_use]
    pub fn decide<'a>(
        &self,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
        addr: Option<IpAddr>,
    ) -> Decision {
        // The caller's sets of applicable policies, user first, then each group (already
        // closed over its ancestors at compile time). The address is looked up when the
        // first one is found, and the first set meeting the policies covering it allows:
        // the rest of the caller's groups are not even looked up.
        let user = self.users.get(user).copied();
        let mut sets = user.into_iter().chain(
            groups
                .into_iter()
                .filter_map(|group| self.groups.get(group).copied()),
        );
        let Some(first) = sets.next() else {
            return Decision::NoPolicy;
        };
        let Some(addr) = addr else {
            return Decision::Denied(DenyReason::ClientIpUnknown);
        };
        let covering = self.covering(addr);
        let members = self.members(covering);
        // The policies covering an address are usually one or two: test the caller's set
        // for those alone rather than reading all its words.
        let meets = |id: u32| {
            if members.len() <= self.words {
                let set = self.set(id);
                members
                    .iter()
                    .any(|&p| set[p as usize / 64] & (1 << (p % 64)) != 0)
            } else {
                self.set(id)
                    .iter()
                    .zip(self.set(covering))
                    .any(|(a, c)| a & c != 0)
            }
        };
        if meets(first) || sets.any(meets) {
            Decision::Allowed
        } else {
            Decision::Denied(DenyReason::IpNotAllowed)
        }
    }

    /// Ids of the policies that apply to the caller (the slow path: logs, explanations).
    #[must_use]
    pub fn applicable_policies<'a>(
        &self,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> Vec<PolicyId> {
        let Some(bits) = self.applicable_bits(user, groups) else {
            return Vec::new();
        };
        self.policy_ids
            .iter()
            .enumerate()
            .filter(|(p, _)| bits[p / 64] & (1 << (p % 64)) != 0)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Number of active policies.
    #[must_use]
    pub fn active_policies(&self) -> usize {
        self.policy_ids.len()
    }

    /// Number of sources of active policies that went into the index.
    #[must_use]
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Bytes used by the address index and its policy sets (not the user and group
    /// maps). Divided by [`sources`](Self::sources), this is the per-source footprint.
    #[must_use]
    pub fn index_bytes(&self) -> usize {
        self.v4.bytes()
            + self.v6.bytes()
            + self.sets.len() * 8
            + (self.member_starts.len() + self.members.len()) * 4
    }

    #[inline]
    fn applicable_bits<'a>(
        &self,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> Option<Bits> {
        let mut acc: Bits = SmallVec::from_elem(0, self.words);
        let mut any = false;
        let mut or = |id: u32| {
            any = true;
            for (a, s) in acc.iter_mut().zip(self.set(id)) {
                *a |= s;
            }
        };
        if let Some(&id) = self.users.get(user) {
            or(id);
        }
        for group in groups {
            if let Some(&id) = self.groups.get(group) {
                or(id);
            }
        }
        any.then_some(acc)
    }

    #[inline]
    fn covering(&self, addr: IpAddr) -> u32 {
        match index::key(normalize_ip(addr)) {
            Ok(v4) => self.v4.lookup(v4),
            Err(v6) => self.v6.lookup(v6),
        }
    }

    #[inline]
    fn members(&self, id: u32) -> &[u32] {
        let id = id as usize;
        match self.member_starts.get(id..id + 2) {
            Some(&[start, end]) => self
                .members
                .get(start as usize..end as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    #[inline]
    fn set(&self, id: u32) -> &[u64] {
        let start = id as usize * self.words;
        &self.sets[start..start + self.words]
    }
}

/// The members of every set of `sets` (`words` words each), as starts into one list.
fn members_of(sets: &[u64], words: usize) -> (Box<[u32]>, Box<[u32]>) {
    let mut starts = vec![0u32];
    let mut members = Vec::new();
    for set in sets.chunks_exact(words) {
        for (w, word) in set.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                let bit = word.trailing_zeros();
                members.push(
                    u32::try_from(w * 64)
                        .unwrap_or(u32::MAX)
                        .saturating_add(bit),
                );
                word &= word - 1;
            }
        }
        starts.push(u32::try_from(members.len()).unwrap_or(u32::MAX));
    }
    (starts.into_boxed_slice(), members.into_boxed_slice())
}

/// For each candidate group, the union of the policies naming it or any ancestor.
///
/// Iterative depth-first walk with memoization, so a deep hierarchy cannot overflow
/// the stack; a cycle (refused when editing, but never trusted here) is cut rather
/// than followed.
fn close_groups<'a>(
    candidates: Vec<&'a str>,
    org: &'a OrgPolicies,
    direct: &HashMap<&'a str, Vec<u64>>,
    words: usize,
) -> HashMap<&'a str, Vec<u64>> {
    let mut closure: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut in_progress: HashSet<&str> = HashSet::new();
    for start in candidates {
        let mut stack = vec![(start, false)];
        while let Some((group, expanded)) = stack.pop() {
            if closure.contains_key(group) {
                continue;
            }
            if !expanded {
                if !in_progress.insert(group) {
                    continue;
                }
                stack.push((group, true));
                for parent in org.groups.parents(group) {
                    let parent = parent.as_str();
                    if !closure.contains_key(parent) && !in_progress.contains(parent) {
                        stack.push((parent, false));
                    }
                }
                continue;
            }
            let mut bits = direct.get(group).cloned().unwrap_or_else(|| vec![0; words]);
            for parent in org.groups.parents(group) {
                if let Some(parent_bits) = closure.get(parent.as_str()) {
                    for (b, p) in bits.iter_mut().zip(parent_bits) {
                        *b |= p;
                    }
                }
            }
            in_progress.remove(group);
            closure.insert(group, bits);
        }
    }
    closure
}
