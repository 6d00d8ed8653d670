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

/// Most names the policies covering an address may be reached through for a decision
/// to compare the caller's names with them one by one. Past it, the decision looks up
/// the caller's sets of policies instead.
const ADMITTING_NAMES: usize = 16;

/// Caller groups kept on the stack for looking up if no name admits the caller; past
/// this many, a group is looked up at once.
const DEFERRED_GROUPS: usize = 8;

/// The compiled, immutable decision structure of one organization.
///
/// Active policies get dense indexes; users and groups map straight to the set of
/// policies that apply through them (for groups, through every ancestor, resolved at
/// compile time); addresses map through a range index per family to the set of
/// policies whose sources cover them. A policy's blocked sources are subtracted from its
/// allowed ones before they enter the index, so they add nothing to a decision.
///
/// A decision looks the address up first. The policies covering it are usually one or
/// two, reached through a handful of names: the caller's user and groups are compared
/// with those names, and one that matches allows the request without hashing
/// anything. Only a caller none admits is looked up in the user and group maps (to
/// tell a refusal from no policy at all), and a 256-bit filter rules out most names
/// the maps do not hold before they are hashed. When the covering policies are reached
/// through many names, the caller's sets are looked up and tested against them. Either
/// way the work does not grow with the number of policies or sources.
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
    users: NameMap,
    groups: NameMap,
    /// Rule out most names `users` and `groups` do not hold before `holds_user` and
    /// `holds_group` hash them.
    user_filter: NameFilter,
    group_filter: NameFilter,
    /// The names reaching the policies of each covering set (at most
    /// [`ADMITTING_NAMES`] by default).
    admitting: AdmittingNames,
    v4: RangeIndex<u32>,
    /// Boxed, and absent when no policy has an IPv6 source (most organizations).
    v6: Option<Box<RangeIndex<u128>>>,
    sources: usize,
    /// The site list, resource lists and report-only policies, which most
    /// organizations do not have: boxed, so that they cost one pointer when absent.
    extras: Option<Box<Extras>>,
}

/// The parts of an organization beyond its enforced policies.
#[derive(Debug)]
struct Extras {
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
        Self::compile_with(org, ADMITTING_NAMES)
    }

    /// [`compile`](Self::compile), comparing names one by one only where the policies
    /// covering an address are reached through at most `admitting_names` names (the
    /// tests take both ways of deciding with it).
    pub(super) fn compile_with(org: &OrgPolicies, admitting_names: usize) -> Self {
        let active: Vec<&Policy> = org.policies.values().filter(|p| p.is_active()).collect();
        let enforced: Vec<&Policy> = active
            .iter()
            .copied()
            .filter(|p| p.enforcement() == Enforcement::Enforce)
            .collect();
        let mut compiled = Self::policies(&enforced, org, admitting_names);
        let extras = Extras {
            report: (enforced.len() < active.len())
                .then(|| Box::new(Self::policies(&active, org, admitting_names))),
            site: org
                .site
                .as_ref()
                .filter(|site| site.enabled)
                .map(|site| CompiledList::compile(&site.list)),
            resources: org
                .resources
                .iter()
                .map(|(id, list)| (id.as_str().into(), CompiledList::compile(list)))
                .collect(),
        };
        let any = extras.report.is_some() || extras.site.is_some() || !extras.resources.is_empty();
        compiled.extras = any.then(|| Box::new(extras));
        compiled
    }

    /// Compiles `active` policies over the organization's group hierarchy.
    fn policies(active: &[&Policy], org: &OrgPolicies, admitting_names: usize) -> Self {
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

        let users = NameMap::new(
            user_bits
                .into_iter()
                .map(|(user, bits)| (user.into(), sets.intern(&bits)))
                .collect(),
        );
        let groups = NameMap::new(
            closure
                .into_iter()
                .filter(|(_, bits)| bits.iter().any(|w| *w != 0))
                .map(|(group, bits)| (group.into(), sets.intern(&bits)))
                .collect(),
        );

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
        let v6 = (!v6_ranges.is_empty())
            .then(|| Box::new(index::build(v6_ranges.into_iter(), &mut sets)));

        let sets = sets.finish();
        let (member_starts, members) = members_of(&sets, words);
        let admitting = admitting_of(
            v4.set_ids()
                .iter()
                .chain(v6.iter().flat_map(|v6| v6.set_ids()))
                .copied(),
            member_starts.len().saturating_sub(1),
            active.len(),
            |id| members_in(&member_starts, &members, id),
            &users,
            &groups,
            admitting_names,
        );
        Self {
            policy_ids: active.iter().map(|p| p.id().clone()).collect(),
            words,
            sets,
            member_starts,
            members,
            user_filter: users.iter().map(|(name, _)| name).collect(),
            group_filter: groups.iter().map(|(name, _)| name).collect(),
            admitting,
            users,
            groups,
            v4,
            v6,
            sources,
            extras: None,
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
        let report = self.extras.as_ref()?.report.as_deref()?;
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
        // Extras are kept only when there are some.
        self.policy_ids.is_empty() && self.extras.is_none()
    }

    /// Whether some active policies only report (and [`would_deny`](Self::would_deny)
    /// has anything to say).
    #[must_use]
    #[inline]
    pub fn has_report_policies(&self) -> bool {
        self.extras
            .as_ref()
            .is_some_and(|extras| extras.report.is_some())
    }

    /// The enabled site list, if any.
    #[must_use]
    pub fn site(&self) -> Option<&CompiledList> {
        self.extras.as_ref()?.site.as_ref()
    }

    /// The list of `resource`, if it has one.
    #[must_use]
    pub fn resource(&self, resource: &str) -> Option<&CompiledList> {
        self.extras.as_ref()?.resources.get(resource)
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
        let Some(addr) = addr else {
            return if self.applies(user, groups) {
                Decision::Denied(DenyReason::ClientIpUnknown)
            } else {
                Decision::NoPolicy
            };
        };
        let covering = self.covering(addr);
        match self
            .admitting
            .sets
            .get(covering as usize)
            .copied()
            .flatten()
        {
            Some(admitting) => self.decide_by_names(admitting, user, groups),
            None => self.decide_by_sets(covering, user, groups),
        }
    }

    /// Compares the caller's names with the few through which the policies covering
    /// the address are reached; a caller none admits is refused if any policy applies
    /// to them at all.
    #[inline]
    fn decide_by_names<'a>(
        &self,
        admitting: Admitting,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> Decision {
        let (admitting_users, admitting_groups) = self.names(admitting);
        if admitting_users.iter().any(|name| same_name(name, user)) {
            return Decision::Allowed;
        }
        // Whether a policy applies is asked only if no group admits the caller: the
        // first groups wait for that here, on the stack; later ones are looked up at
        // once, until one is found.
        let mut deferred = [""; DEFERRED_GROUPS];
        let mut waiting = 0;
        let mut applies = false;
        // One admitting group (one policy of one group covering the address, the usual
        // case) is compared without walking a list.
        let admits = |group: &str| match admitting_groups {
            [one] => same_name(one, group),
            names => names.iter().any(|name| same_name(name, group)),
        };
        for group in groups {
            if admits(group) {
                return Decision::Allowed;
            }
            if let Some(slot) = deferred.get_mut(waiting) {
                *slot = group;
                waiting += 1;
            } else if !applies {
                applies = self.holds_group(group);
            }
        }
        let applies = applies
            || self.holds_user(user)
            || deferred[..waiting]
                .iter()
                .any(|group| self.holds_group(group));
        if applies {
            Decision::Denied(DenyReason::IpNotAllowed)
        } else {
            Decision::NoPolicy
        }
    }

    /// Looks up the caller's sets of applicable policies, user first, then each group
    /// (already closed over its ancestors at compile time), and tests them against the
    /// policies covering the address: the first set meeting them allows, and the rest
    /// of the caller's groups are not even looked up.
    fn decide_by_sets<'a>(
        &self,
        covering: u32,
        user: &str,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> Decision {
        let user = self.users.get(user);
        let mut sets = user.into_iter().chain(
            groups
                .into_iter()
                .filter_map(|group| self.groups.get(group)),
        );
        let Some(first) = sets.next() else {
            return Decision::NoPolicy;
        };
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

    /// Whether any active policy applies to the caller.
    fn applies<'a>(&self, user: &str, groups: impl IntoIterator<Item = &'a str>) -> bool {
        self.holds_user(user) || groups.into_iter().any(|group| self.holds_group(group))
    }

    #[inline]
    fn holds_user(&self, user: &str) -> bool {
        self.user_filter.may_hold(user) && self.users.get(user).is_some()
    }

    #[inline]
    fn holds_group(&self, group: &str) -> bool {
        self.group_filter.may_hold(group) && self.groups.get(group).is_some()
    }

    /// The user and group names of `admitting`.
    #[inline]
    fn names(&self, admitting: Admitting) -> (&[Box<str>], &[Box<str>]) {
        let start = admitting.start as usize;
        let users = start + admitting.users as usize;
        let groups = users + admitting.groups as usize;
        match (
            self.admitting.names.get(start..users),
            self.admitting.names.get(users..groups),
        ) {
            (Some(users), Some(groups)) => (users, groups),
            _ => (&[], &[]),
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
            + self.v6.as_ref().map_or(0, |v6| v6.bytes())
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
        if let Some(id) = self.users.get(user) {
            or(id);
        }
        for group in groups {
            if let Some(id) = self.groups.get(group) {
                or(id);
            }
        }
        any.then_some(acc)
    }

    #[inline]
    fn covering(&self, addr: IpAddr) -> u32 {
        match index::key(normalize_ip(addr)) {
            Ok(v4) => self.v4.lookup(v4),
            Err(key) => self.v6.as_ref().map_or(0, |v6| v6.lookup(key)),
        }
    }

    #[inline]
    fn members(&self, id: u32) -> &[u32] {
        members_in(&self.member_starts, &self.members, id)
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

/// The members of set `id` in the lists [`members_of`] builds.
#[inline]
fn members_in<'m>(starts: &[u32], members: &'m [u32], id: u32) -> &'m [u32] {
    let id = id as usize;
    match starts.get(id..id + 2) {
        Some(&[start, end]) => members.get(start as usize..end as usize).unwrap_or(&[]),
        _ => &[],
    }
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

/// For each set the address index can return, the names its policies are reached
/// through (`None` for other sets, and for covering sets reached through more names
/// than the limit); the names of all sets in one list.
#[derive(Debug)]
struct AdmittingNames {
    sets: Box<[Option<Admitting>]>,
    names: Box<[Box<str>]>,
}

/// The names through which the policies of one covering set are reached, in
/// [`AdmittingNames::names`]: `names[start..start + users]` are users naming one of
/// them, the next `groups` are groups whose closure holds one.
#[derive(Debug, Clone, Copy)]
struct Admitting {
    start: u32,
    users: u32,
    groups: u32,
}

/// For each set id below `set_count` that the address index can return (`covering`),
/// the names its policies are reached through, if there are at most `limit` of them.
fn admitting_of<'m>(
    covering: impl Iterator<Item = u32>,
    set_count: usize,
    policies: usize,
    members: impl Fn(u32) -> &'m [u32],
    users: &NameMap,
    groups: &NameMap,
    limit: usize,
) -> AdmittingNames {
    // Which sets the index returns, and which policies they hold. The empty set always:
    // the index returns it before its first start, and for every IPv6 address when no
    // source is IPv6, even where no interval carries it.
    let mut wanted = vec![false; set_count];
    if let Some(empty) = wanted.first_mut() {
        *empty = true;
    }
    let mut covers = vec![false; policies];
    for id in covering {
        if let Some(seen) = wanted.get_mut(id as usize).filter(|seen| !**seen) {
            *seen = true;
            for &p in members(id) {
                if let Some(covered) = covers.get_mut(p as usize) {
                    *covered = true;
                }
            }
        }
    }
    // The names reaching each policy that covers some address.
    let mut reaching: Vec<(Vec<&str>, Vec<&str>)> = vec![(Vec::new(), Vec::new()); policies];
    for (user, id) in users.iter() {
        for &p in members(id) {
            if covers.get(p as usize) == Some(&true) {
                reaching[p as usize].0.push(user);
            }
        }
    }
    for (group, id) in groups.iter() {
        for &p in members(id) {
            if covers.get(p as usize) == Some(&true) {
                reaching[p as usize].1.push(group);
            }
        }
    }
    let mut admitting = vec![None; set_count];
    let mut names: Vec<Box<str>> = Vec::new();
    let mut set_users: Vec<&str> = Vec::new();
    let mut set_groups: Vec<&str> = Vec::new();
    for (id, slot) in (0u32..).zip(admitting.iter_mut()) {
        if !wanted[id as usize] {
            continue;
        }
        set_users.clear();
        set_groups.clear();
        // Past a few times the limit, give up rather than sort a long list: the
        // caller's sets decide there.
        let bound = limit.saturating_mul(4);
        let mut complete = true;
        for &p in members(id) {
            if let Some((users, groups)) = reaching.get(p as usize) {
                set_users.extend(users);
                set_groups.extend(groups);
            }
            if set_users.len() + set_groups.len() > bound {
                complete = false;
                break;
            }
        }
        if !complete {
            continue;
        }
        set_users.sort_unstable();
        set_users.dedup();
        set_groups.sort_unstable();
        set_groups.dedup();
        if set_users.len() + set_groups.len() > limit {
            continue;
        }
        let (Ok(start), Ok(users), Ok(groups)) = (
            u32::try_from(names.len()),
            u32::try_from(set_users.len()),
            u32::try_from(set_groups.len()),
        ) else {
            continue;
        };
        *slot = Some(Admitting {
            start,
            users,
            groups,
        });
        names.extend(
            set_users
                .iter()
                .chain(&set_groups)
                .map(|name| Box::from(*name)),
        );
    }
    AdmittingNames {
        sets: admitting.into_boxed_slice(),
        names: names.into_boxed_slice(),
    }
}

/// User or group names to the ids of their sets of policies: a few names (most
/// organizations target a handful) in a slice compared one by one, which allocates no
/// table; more in a hash table.
#[derive(Debug)]
enum NameMap {
    Few(Box<[(Box<str>, u32)]>),
    Many(FastMap<u32>),
}

/// Most names a [`NameMap`] compares one by one.
const FEW_NAMES: usize = 8;

impl NameMap {
    fn new(entries: Vec<(Box<str>, u32)>) -> Self {
        if entries.len() <= FEW_NAMES {
            Self::Few(entries.into_boxed_slice())
        } else {
            Self::Many(entries.into_iter().collect())
        }
    }

    #[inline]
    fn get(&self, name: &str) -> Option<u32> {
        match self {
            Self::Few(entries) => entries
                .iter()
                .find(|(known, _)| same_name(known, name))
                .map(|(_, id)| *id),
            Self::Many(map) => map.get(name).copied(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        let (few, many) = match self {
            Self::Few(entries) => (&entries[..], None),
            Self::Many(map) => (&[][..], Some(map)),
        };
        few.iter()
            .map(|(name, id)| (&**name, *id))
            .chain(many.into_iter().flatten().map(|(name, id)| (&**name, *id)))
    }
}

/// Whether two names are equal, the last bytes compared first: names of one
/// organization often share a length and a prefix (`team-1`, `team-2`), rarely their
/// last byte.
///
/// Names of up to 16 bytes, most of them, are compared as two overlapping words
/// rather than through a call to `memcmp`, which costs more than the comparison.
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let len = a.len();
    if len != b.len() || a.last() != b.last() {
        return false;
    }
    match len {
        0..=3 => a.first() == b.first() && a.get(len / 2) == b.get(len / 2),
        4..=8 => {
            word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, len - 4) == word::<4>(b, len - 4)
        }
        9..=16 => {
            word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, len - 8) == word::<8>(b, len - 8)
        }
        _ => a == b,
    }
}

/// The `N` bytes of `bytes` from `at` (zeros past its end, which the callers' lengths
/// rule out).
#[inline]
fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes
        .get(at..at + N)
        .and_then(|word| word.try_into().ok())
        .unwrap_or([0; N])
}

/// A 256-bit filter of a set of names, keyed by a cheap mix of a name's length and
/// its first and last eight bytes: a name whose bit is clear is certainly not in the
/// set, known for a dozen instructions instead of a hash and a probe. A set bit only
/// means "look it up". Not a defence against chosen names, and it need not be: a name
/// that passes costs one look-up, as every name did without the filter.
#[derive(Debug, Default, Clone)]
pub(super) struct NameFilter([u64; 4]);

impl NameFilter {
    #[inline]
    fn bit(name: &str) -> usize {
        let bytes = name.as_bytes();
        let len = bytes.len();
        let read = |at: usize| u64::from_le_bytes(word::<8>(bytes, at));
        let read4 = |at: usize| u64::from(u32::from_le_bytes(word::<4>(bytes, at)));
        let byte = |at: usize| u64::from(bytes.get(at).copied().unwrap_or(0));
        let word = match len {
            8.. => read(0) ^ read(len - 8).rotate_left(29),
            4..=7 => read4(0) << 32 | read4(len - 4),
            _ => byte(0) << 16 | byte(len / 2) << 8 | byte(len.wrapping_sub(1)),
        };
        // The top byte of a multiplicative hash.
        ((word ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
    }

    #[inline]
    pub(super) fn may_hold(&self, name: &str) -> bool {
        let bit = Self::bit(name);
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }
}

impl<'a> FromIterator<&'a str> for NameFilter {
    fn from_iter<T: IntoIterator<Item = &'a str>>(names: T) -> Self {
        let mut filter = Self::default();
        for name in names {
            let bit = Self::bit(name);
            filter.0[bit / 64] |= 1 << (bit % 64);
        }
        filter
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::same_name;

    proptest! {
        /// Names of every length around the word sizes, differing anywhere or nowhere.
        #[test]
        fn same_name_is_equality(
            name in "[ab]{0,40}",
            other in "[ab]{0,40}",
            at in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(same_name(&name, &other), name == other);
            prop_assert!(same_name(&name, &name.clone()));
            if !name.is_empty() {
                // One byte changed, at any position.
                let mut changed = name.clone().into_bytes();
                let i = at.index(changed.len());
                changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
                let changed = String::from_utf8(changed).unwrap();
                prop_assert!(!same_name(&name, &changed), "{} vs {}", name, changed);
            }
        }
    }
}
