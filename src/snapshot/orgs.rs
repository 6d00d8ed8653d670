//! The organizations of a snapshot: a hash map with structural sharing.
//!
//! A snapshot is never changed in place, and a change to one organization must not
//! copy the others: at a million organizations a copied map is a million entries per
//! change, on every replica. So the map is a fixed four-level radix tree over the
//! organization id's hash, 16 children per node, whose 65,536 leaves are small hash
//! tables:
//!
//! ```text
//! root ─16─► node ─16─► node ─16─► node ─16─► shard: hashbrown::HashTable<Slot>
//! ```
//!
//! Every node sits behind an `Arc`. Changing one organization copies the four nodes
//! on its path (16 pointers each) and its shard (at a million organizations, about
//! 15 slots); everything else is shared with the snapshot it was derived from. The
//! fan-out is small on purpose: copying a node bumps the reference count of each of
//! its children, and at a million organizations each of those is a cache miss (a
//! first version with two levels of 256 paid 512 of them per change). Building a map
//! from scratch copies nothing ([`Arc::make_mut`] on a node nobody else holds
//! changes it in place), so a bulk build is linear.
//!
//! A look-up hashes the id **once**: bits 40..56 of the hash pick the path, four bits
//! per level, and the shard's table is probed with the same hash (hashbrown reads its
//! low bits for the position and its top seven for the tag, which the radix bits leave
//! free, so the organizations of one shard still differ there). The depth is fixed,
//! so a look-up costs the same work with ten organizations as with a million; only
//! its cache misses differ.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};

use super::CompiledOrg;
use crate::policy::{OrgId, OrgPolicies};

/// Radix bits per level.
const BITS: u32 = 4;
/// Children per node.
const FANOUT: usize = 1 << BITS;
/// Where the root's index starts in the hash; each level below is `BITS` lower, the
/// last (the shard's index in its node) starting at bit 40 (see the module docs).
const TOP_SHIFT: u32 = 52;

type Shard = HashTable<Slot>;
type Node<T> = [Option<Arc<T>>; FANOUT];
type Level3 = Node<Shard>;
type Level2 = Node<Level3>;
type Level1 = Node<Level2>;
type Root = Node<Level1>;

/// One organization: its compiled form (if it has anything to enforce) and its
/// policies as published (if they are known). A slot always has one of the two.
#[derive(Clone)]
pub(super) struct Slot {
    hash: u64,
    pub(super) id: OrgId,
    pub(super) compiled: Option<Arc<CompiledOrg>>,
    pub(super) source: Option<Arc<OrgPolicies>>,
}

/// The organizations of a snapshot; see the module docs.
#[derive(Clone, Default)]
pub(super) struct OrgMap {
    /// `None` until the first organization: an empty snapshot allocates nothing.
    root: Option<Arc<Root>>,
    /// Shared by every map derived from this one, so their hashes agree.
    hasher: foldhash::fast::RandomState,
    /// Slots.
    len: usize,
    /// Slots with a compiled form.
    compiled: usize,
}

/// The child index at each level of `hash`'s path.
#[inline]
fn path(hash: u64) -> [usize; 4] {
    // Masked to BITS bits: in bounds of a FANOUT array, and the compiler knows it.
    let at = |level: u32| (hash >> (TOP_SHIFT - level * BITS)) as usize & (FANOUT - 1);
    [at(0), at(1), at(2), at(3)]
}

fn node<T>() -> Arc<Node<T>> {
    Arc::new(std::array::from_fn(|_| None))
}

impl OrgMap {
    /// The slot of `id`.
    #[inline]
    pub(super) fn get(&self, id: &str) -> Option<&Slot> {
        let root = self.root.as_deref()?;
        let hash = self.hasher.hash_one(id);
        let [a, b, c, d] = path(hash);
        let shard = root[a].as_deref()?[b].as_deref()?[c].as_deref()?[d].as_deref()?;
        shard.find(hash, |slot| slot.id.as_str() == id)
    }

    /// Number of organizations.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Number of organizations with a compiled form.
    pub(super) fn compiled_len(&self) -> usize {
        self.compiled
    }

    /// Sets `id`'s compiled form and policies, replacing what it had; with neither,
    /// removes it. Copies only the nodes on `id`'s path that another map shares.
    pub(super) fn set(
        &mut self,
        id: OrgId,
        compiled: Option<Arc<CompiledOrg>>,
        source: Option<Arc<OrgPolicies>>,
    ) {
        if compiled.is_none() && source.is_none() {
            self.remove(id.as_str());
            return;
        }
        let hash = self.hasher.hash_one(id.as_str());
        let [a, b, c, d] = path(hash);
        let root = Arc::make_mut(self.root.get_or_insert_with(node));
        let level1 = Arc::make_mut(root[a].get_or_insert_with(node));
        let level2 = Arc::make_mut(level1[b].get_or_insert_with(node));
        let level3 = Arc::make_mut(level2[c].get_or_insert_with(node));
        let shard = Arc::make_mut(level3[d].get_or_insert_with(Arc::default));
        let has_compiled = compiled.is_some();
        match shard.entry(hash, |slot| slot.id == id, |slot| slot.hash) {
            Entry::Occupied(mut entry) => {
                let slot = entry.get_mut();
                if slot.compiled.is_some() {
                    self.compiled -= 1;
                }
                slot.compiled = compiled;
                slot.source = source;
            }
            Entry::Vacant(entry) => {
                entry.insert(Slot {
                    hash,
                    id,
                    compiled,
                    source,
                });
                self.len += 1;
            }
        }
        if has_compiled {
            self.compiled += 1;
        }
    }

    /// Removes `id`; returns whether it was there. Copies nothing when it was not.
    pub(super) fn remove(&mut self, id: &str) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        let hash = self.hasher.hash_one(id);
        let [a, b, c, d] = path(hash);
        let Some(root) = self.root.as_mut() else {
            return false;
        };
        let Some(level1) = Arc::make_mut(root)[a].as_mut() else {
            return false;
        };
        let Some(level2) = Arc::make_mut(level1)[b].as_mut() else {
            return false;
        };
        let Some(level3) = Arc::make_mut(level2)[c].as_mut() else {
            return false;
        };
        let level3 = Arc::make_mut(level3);
        let Some(shard) = level3[d].as_mut() else {
            return false;
        };
        let shard = Arc::make_mut(shard);
        let Ok(entry) = shard.find_entry(hash, |slot| slot.id.as_str() == id) else {
            return false;
        };
        let (slot, _) = entry.remove();
        if shard.is_empty() {
            // An empty shard is a miss one pointer earlier, and holds no memory.
            level3[d] = None;
        }
        self.len -= 1;
        if slot.compiled.is_some() {
            self.compiled -= 1;
        }
        true
    }

    /// Every slot, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.root
            .iter()
            .flat_map(|root| root.iter().flatten())
            .flat_map(|level1| level1.iter().flatten())
            .flat_map(|level2| level2.iter().flatten())
            .flat_map(|level3| level3.iter().flatten())
            .flat_map(|shard| shard.iter())
    }

    /// Whether `self` and `other` hold the very same shard for `id` (for tests: what
    /// a change to another organization must leave shared).
    #[cfg(test)]
    pub(super) fn shares_shard_of(&self, other: &Self, id: &str) -> bool {
        let [a, b, c, d] = path(self.hasher.hash_one(id));
        let shard = |map: &Self| {
            map.root
                .as_deref()
                .and_then(|root| root[a].as_deref())
                .and_then(|level1| level1[b].as_deref())
                .and_then(|level2| level2[c].as_deref())
                .and_then(|level3| level3[d].clone())
        };
        match (shard(self), shard(other)) {
            (Some(x), Some(y)) => Arc::ptr_eq(&x, &y),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn compiled() -> Arc<CompiledOrg> {
        Arc::new(CompiledOrg::compile(&OrgPolicies::default()))
    }

    /// The map holds what a plain `HashMap` holds after the same operations, and the
    /// counts agree.
    fn check(map: &OrgMap, model: &HashMap<String, (bool, bool)>) {
        assert_eq!(map.len(), model.len());
        assert_eq!(
            map.compiled_len(),
            model.values().filter(|(c, _)| *c).count()
        );
        assert_eq!(map.iter().count(), model.len());
        for (id, &(c, s)) in model {
            let slot = map.get(id).expect("present");
            assert_eq!(slot.id.as_str(), id);
            assert_eq!((slot.compiled.is_some(), slot.source.is_some()), (c, s));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u16, bool, bool),
        Remove(u16),
        Fork,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..600u16, any::<bool>(), any::<bool>()).prop_map(|(id, c, s)| Op::Set(id, c, s)),
            2 => (0..600u16).prop_map(Op::Remove),
            1 => Just(Op::Fork),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random sets and removals, with earlier versions kept alive (forks) and
        /// checked again at the end: a change never leaks into a map it was derived
        /// from.
        #[test]
        fn behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 1..400)) {
            let source = Arc::new(OrgPolicies::default());
            let org = compiled();
            let mut map = OrgMap::default();
            let mut model: HashMap<String, (bool, bool)> = HashMap::new();
            let mut forks = Vec::new();
            for op in ops {
                match op {
                    Op::Set(id, c, s) => {
                        let name = format!("org-{id}");
                        map.set(
                            OrgId::from(name.as_str()),
                            c.then(|| Arc::clone(&org)),
                            s.then(|| Arc::clone(&source)),
                        );
                        if c || s {
                            model.insert(name, (c, s));
                        } else {
                            model.remove(&name);
                        }
                    }
                    Op::Remove(id) => {
                        let name = format!("org-{id}");
                        prop_assert_eq!(map.remove(&name), model.remove(&name).is_some());
                    }
                    Op::Fork => forks.push((map.clone(), model.clone())),
                }
                check(&map, &model);
            }
            for (map, model) in &forks {
                check(map, model);
            }
        }
    }

    #[test]
    fn one_organization_and_none() {
        let mut map = OrgMap::default();
        assert!(map.get("acme").is_none());
        assert!(!map.remove("acme"));
        map.set(OrgId::from("acme"), Some(compiled()), None);
        assert_eq!((map.len(), map.compiled_len()), (1, 1));
        assert!(map.get("acme").is_some());
        assert!(map.get("acme2").is_none());
        assert!(map.remove("acme"));
        assert_eq!((map.len(), map.compiled_len()), (0, 0));
        assert!(map.get("acme").is_none());
        assert_eq!(map.iter().count(), 0);
    }

    #[test]
    fn replacing_keeps_one_slot_and_counts_true() {
        let mut map = OrgMap::default();
        let source = Arc::new(OrgPolicies::default());
        map.set(OrgId::from("acme"), Some(compiled()), None);
        map.set(OrgId::from("acme"), None, Some(Arc::clone(&source)));
        assert_eq!((map.len(), map.compiled_len()), (1, 0));
        let slot = map.get("acme").unwrap();
        assert!(slot.compiled.is_none());
        assert!(Arc::ptr_eq(slot.source.as_ref().unwrap(), &source));
        map.set(OrgId::from("acme"), Some(compiled()), Some(source));
        assert_eq!((map.len(), map.compiled_len()), (1, 1));
        // Neither: removed.
        map.set(OrgId::from("acme"), None, None);
        assert_eq!((map.len(), map.compiled_len()), (0, 0));
    }

    #[test]
    fn a_change_copies_only_its_own_path() {
        let mut base = OrgMap::default();
        let ids: Vec<String> = (0..20_000).map(|i| format!("org-{i}")).collect();
        for id in &ids {
            base.set(OrgId::from(id.as_str()), Some(compiled()), None);
        }
        let mut next = base.clone();
        let fresh = compiled();
        next.set(OrgId::from("org-7"), Some(Arc::clone(&fresh)), None);

        assert!(Arc::ptr_eq(
            next.get("org-7").unwrap().compiled.as_ref().unwrap(),
            &fresh
        ));
        assert!(!Arc::ptr_eq(
            base.get("org-7").unwrap().compiled.as_ref().unwrap(),
            &fresh
        ));
        assert!(!next.shares_shard_of(&base, "org-7"));
        let mut shared_shards = 0;
        for id in &ids {
            let (old, new) = (base.get(id).unwrap(), next.get(id).unwrap());
            if id != "org-7" {
                // Every other organization's compiled form is the very same.
                assert!(Arc::ptr_eq(
                    old.compiled.as_ref().unwrap(),
                    new.compiled.as_ref().unwrap()
                ));
            }
            if next.shares_shard_of(&base, id) {
                shared_shards += 1;
            }
        }
        // Only the organizations in org-7's shard live in a copied shard.
        let same_shard = ids
            .iter()
            .filter(|id| !next.shares_shard_of(&base, id))
            .count();
        assert!(
            same_shard < 10,
            "{same_shard} organizations in copied shards"
        );
        assert_eq!(shared_shards + same_shard, ids.len());
    }

    // ---- through the snapshot and its handle ------------------------------------

    use std::net::IpAddr;

    use crate::policy::Policy;
    use crate::snapshot::{Decision, DenyReason, Snapshot, SnapshotHandle};

    /// Organization `i`: `office` for `staff`, `10.(i/256).(i%256).0/24`.
    fn org(i: usize) -> OrgPolicies {
        let mut org = OrgPolicies::default();
        org.insert_policy(
            Policy::builder("office")
                .sources([format!("10.{}.{}.0/24", i / 256 % 256, i % 256)])
                .unwrap()
                .group("staff")
                .build()
                .unwrap(),
        );
        org
    }

    fn inside(i: usize) -> Option<IpAddr> {
        Some(
            format!("10.{}.{}.9", i / 256 % 256, i % 256)
                .parse()
                .unwrap(),
        )
    }

    #[test]
    fn a_snapshot_built_at_once_decides_as_one_built_one_by_one() {
        // Above the count compiled on several threads.
        let n = super::super::PARALLEL_FROM * 8 + 3;
        let orgs: Vec<(OrgId, OrgPolicies)> = (0..n)
            .map(|i| (OrgId::from(format!("org-{i}")), org(i)))
            .collect();
        let at_once = Snapshot::from_orgs(orgs.iter().map(|(id, org)| (id.clone(), org)));
        let mut one_by_one = Snapshot::empty();
        for (id, org) in &orgs {
            one_by_one = one_by_one.with_org(id.clone(), org);
        }
        assert_eq!((at_once.len(), at_once.organizations()), (n, n));
        assert_eq!(one_by_one.len(), n);
        for (i, (id, policies)) in orgs.iter().enumerate() {
            let name = id.as_str();
            let id = Some(name);
            for snapshot in [&at_once, &one_by_one] {
                assert_eq!(
                    snapshot.decide(id, "u", ["staff"], inside(i)),
                    Decision::Allowed
                );
                assert_eq!(
                    snapshot.decide(id, "u", ["staff"], inside(i + 1)),
                    Decision::Denied(DenyReason::IpNotAllowed)
                );
                assert_eq!(
                    snapshot.decide(id, "u", ["sales"], inside(i)),
                    Decision::NoPolicy
                );
                assert_eq!(**snapshot.policies(name).unwrap(), *policies);
            }
        }
        assert_eq!(
            at_once.decide(Some("org-missing"), "u", ["staff"], inside(0)),
            Decision::NoPolicy
        );
        let mut ids: Vec<&str> = at_once.org_ids().map(OrgId::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);

        // The same id twice: the later one wins, as it would one by one.
        let twice = Snapshot::from_orgs((0..n).map(|i| (OrgId::from("dup"), &orgs[i].1)));
        assert_eq!(twice.organizations(), 1);
        assert_eq!(
            twice.decide(Some("dup"), "u", ["staff"], inside(n - 1)),
            Decision::Allowed
        );
    }

    #[test]
    fn removing_organizations_shares_the_rest() {
        let orgs: Vec<(OrgId, OrgPolicies)> = (0..3000)
            .map(|i| (OrgId::from(format!("org-{i}")), org(i)))
            .collect();
        let full = Snapshot::from_orgs(orgs.iter().map(|(id, org)| (id.clone(), org)));
        let mut half = full.clone();
        for (id, _) in orgs.iter().step_by(2) {
            half = half.without_org(id.as_str());
        }
        // Removing what is not there changes nothing, and copies nothing.
        let same = half.without_org("org-0");
        assert!(
            same.orgs.root.as_ref().map(Arc::as_ptr) == half.orgs.root.as_ref().map(Arc::as_ptr)
        );
        assert_eq!((full.len(), half.len()), (3000, 1500));
        for (i, (id, _)) in orgs.iter().enumerate() {
            if i % 2 == 0 {
                assert!(half.org(id.as_str()).is_none());
                assert!(half.policies(id.as_str()).is_none());
                assert!(
                    full.org(id.as_str()).is_some(),
                    "the older snapshot keeps it"
                );
            } else {
                assert!(Arc::ptr_eq(
                    half.org(id.as_str()).unwrap(),
                    full.org(id.as_str()).unwrap()
                ));
            }
        }
        // Down to none, and back.
        let mut none = half.clone();
        for (id, _) in orgs.iter().skip(1).step_by(2) {
            none = none.without_org(id.as_str());
        }
        assert_eq!(
            (none.len(), none.organizations(), none.org_ids().count()),
            (0, 0, 0)
        );
        let one = none.with_org(OrgId::from("org-5"), &orgs[5].1);
        assert_eq!(
            one.decide(Some("org-5"), "u", ["staff"], inside(5)),
            Decision::Allowed
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn concurrent_publications_into_many_organizations_lose_nothing() {
        let base: Vec<(OrgId, OrgPolicies)> = (0..5000)
            .map(|i| (OrgId::from(format!("org-{i}")), org(i)))
            .collect();
        let handle = SnapshotHandle::new(Snapshot::from_orgs(
            base.iter().map(|(id, org)| (id.clone(), org)),
        ));
        // Four writers: each sets 300 new organizations and removes 100 old ones.
        std::thread::scope(|scope| {
            for writer in 0..4usize {
                let handle = &handle;
                scope.spawn(move || {
                    for k in 0..300 {
                        let i = 5000 + writer * 300 + k;
                        handle.set_org(OrgId::from(format!("org-{i}")), &org(i));
                        if k < 100 {
                            handle.remove_org(&format!("org-{}", writer * 100 + k));
                        }
                    }
                });
            }
        });
        let snapshot = handle.load();
        assert_eq!(snapshot.len(), 5000 + 4 * 300 - 4 * 100);
        for i in 0..6200 {
            let decision = snapshot.decide(Some(&format!("org-{i}")), "u", ["staff"], inside(i));
            let want = if i < 400 {
                Decision::NoPolicy
            } else {
                Decision::Allowed
            };
            assert_eq!(decision, want, "org-{i}");
        }
    }
}
