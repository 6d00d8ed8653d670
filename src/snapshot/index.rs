//! The address index: non-overlapping ranges, each tagged with the set of policies
//! whose sources cover it.

use std::collections::HashMap;
use std::net::IpAddr;

/// Key space of one address family: IPv4 as `u32`, IPv6 as `u128`.
pub(crate) trait Key: Copy + Ord + std::hash::Hash + Default {
    fn checked_next(self) -> Option<Self>;
    fn checked_sub(self, other: Self) -> Option<Self>;
    /// Number of significant bits.
    fn bit_len(self) -> u32;
    /// `self >> shift` as a bucket number (`usize::MAX` if it does not fit).
    fn bucket(self, shift: u32) -> usize;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            fn checked_next(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline]
            fn checked_sub(self, other: Self) -> Option<Self> {
                <$t>::checked_sub(self, other)
            }
            fn bit_len(self) -> u32 {
                <$t>::BITS - self.leading_zeros()
            }
            #[inline]
            fn bucket(self, shift: u32) -> usize {
                usize::try_from(self.checked_shr(shift).unwrap_or(0)).unwrap_or(usize::MAX)
            }
        }
    };
}
impl_key!(u32);
impl_key!(u128);

/// Most bucket bits: 65,536 buckets, 256 KiB, for indexes of 128K intervals and more.
const MAX_BUCKET_BITS: u32 = 16;

/// Indexes of fewer starts than this have no bucket table: a binary search of them is
/// as short as one inside a bucket.
const BUCKETS_FROM: usize = 16;

/// A bucket holding more starts than this gets a table of its own.
const NEST_FROM: usize = 16;

/// Whether the bucket of starts `lo..hi` is crowded: it has a table of its own.
fn crowded(lo: usize, hi: usize) -> bool {
    hi - lo > NEST_FROM
}

/// Sorted interval starts; `set_ids[i]` is the policy set covering
/// `starts[i]..starts[i + 1]`. Addresses before the first start are covered by nothing.
///
/// A look-up first reads a bucket table, which bounds the binary search to the few
/// starts inside one bucket. The buckets divide the span from the first start to the
/// last, not the whole address space, so that sources packed into one corner of it
/// (an organization's ranges usually are) still spread over all the buckets. The table
/// has about one bucket per two intervals (at most 65,536), so it costs about two
/// bytes per interval. Small indexes (fewer than [`BUCKETS_FROM`] starts) have none.
///
/// Equal buckets cannot follow clusters: the sources of one policy packed into a few
/// thousand addresses, a long way from the next policy's, all fall into one bucket.
/// Such a crowded bucket (more than [`NEST_FROM`] starts) divides its own span again
/// (`Tables::nested`), so that a look-up there too searches a handful of starts: at 100
/// policies of 100 addresses each, 16 apart, a search of 200 starts becomes one of
/// about 4 (BENCHMARKS.md, "Instructions per request"). The nested tables cost up to
/// about five more bytes per interval for IPv4 and seven for IPv6 (buckets of 17
/// starts each, the worst case), and nothing where no bucket is crowded.
#[derive(Debug, Clone)]
pub(crate) struct RangeIndex<K> {
    starts: Box<[K]>,
    set_ids: Box<[u32]>,
    /// `None` for small indexes: behind one pointer, so that the many small
    /// organizations pay 8 bytes for it.
    tables: Option<Box<Tables<K>>>,
}

/// The bucket tables of an index of [`BUCKETS_FROM`] starts or more.
#[derive(Debug, Clone)]
struct Tables<K> {
    buckets: Buckets<K>,
    /// For each bucket: 0, or 1 + the position of its own table in `nested` (a crowded
    /// bucket). Both empty when no bucket is crowded.
    nested_of: Box<[u32]>,
    nested: Box<[Buckets<K>]>,
}

/// Equal-width buckets over the span from a first start to a last one.
#[derive(Debug, Clone)]
struct Buckets<K> {
    /// The first start: bucket `b` holds the keys whose offset from it, shifted right
    /// by `shift`, is `b`.
    base: K,
    shift: u32,
    /// `bounds[b]..bounds[b + 1]` are the indexes, in the whole index's starts, of the
    /// starts in bucket `b`; the last bound is the end of the starts divided.
    bounds: Box<[u32]>,
}

impl<K: Key> Buckets<K> {
    /// Buckets over `starts` (sorted, not empty), which begin at index `first` of the
    /// whole index's starts.
    fn new(starts: &[K], first: usize) -> Self {
        let bits = (starts.len() / 2)
            .checked_ilog2()
            .unwrap_or(0)
            .min(MAX_BUCKET_BITS);
        let base = starts.first().copied().unwrap_or_default();
        let span = starts
            .last()
            .and_then(|last| last.checked_sub(base))
            .unwrap_or_default();
        // The last start's bucket is at most 2^bits - 1.
        let shift = span.bit_len().saturating_sub(bits);
        let mut bounds = vec![0u32; (1 << bits) + 1];
        bounds[0] = u32::try_from(first).unwrap_or(u32::MAX);
        for start in starts {
            // Every start counts towards each bucket after its own. Sorted: no start is
            // below the base.
            let offset = start.checked_sub(base).unwrap_or_default();
            bounds[offset.bucket(shift) + 1] += 1;
        }
        for b in 1..bounds.len() {
            bounds[b] += bounds[b - 1];
        }
        Self {
            base,
            shift,
            bounds: bounds.into_boxed_slice(),
        }
    }

    /// The bucket of `key` (`None` outside the buckets) and the indexes of the starts
    /// to search for it.
    #[inline]
    fn find(&self, key: K) -> (Option<usize>, usize, usize) {
        let Some(offset) = key.checked_sub(self.base) else {
            // Before the first start.
            let first = self.bounds.first().map_or(0, |first| *first as usize);
            return (None, first, first);
        };
        let bucket = offset.bucket(self.shift);
        match self.bounds.get(bucket..bucket.saturating_add(2)) {
            Some(&[lo, hi]) => (Some(bucket), lo as usize, hi as usize),
            // Past the last bucket: after every start.
            _ => {
                let end = self.bounds.last().map_or(0, |end| *end as usize);
                (None, end, end)
            }
        }
    }

    /// As an element of `Tables::nested`: itself and its bounds.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.bounds.len() * 4
    }
}

impl<K: Key> Tables<K> {
    /// Over `starts` (sorted, not empty).
    fn new(starts: &[K]) -> Self {
        let buckets = Buckets::new(starts, 0);
        let mut nested_of = vec![0u32; buckets.bounds.len() - 1];
        let mut nested = Vec::new();
        for (b, bounds) in buckets.bounds.windows(2).enumerate() {
            let (lo, hi) = (bounds[0] as usize, bounds[1] as usize);
            if crowded(lo, hi) {
                nested.push(Buckets::new(&starts[lo..hi], lo));
                nested_of[b] = u32::try_from(nested.len()).unwrap_or(u32::MAX);
            }
        }
        if nested.is_empty() {
            nested_of.clear();
        }
        Self {
            buckets,
            nested_of: nested_of.into_boxed_slice(),
            nested: nested.into_boxed_slice(),
        }
    }

    /// The indexes of the starts to search for `key`.
    #[inline]
    fn find(&self, key: K) -> (usize, usize) {
        match self.buckets.find(key) {
            (Some(bucket), lo, hi) if crowded(lo, hi) => {
                self.nested_find(bucket, key).unwrap_or((lo, hi))
            }
            (_, lo, hi) => (lo, hi),
        }
    }

    /// The same, in a crowded `bucket`'s own table.
    #[inline]
    fn nested_find(&self, bucket: usize, key: K) -> Option<(usize, usize)> {
        let table = (*self.nested_of.get(bucket)? as usize).checked_sub(1)?;
        let (_, lo, hi) = self.nested.get(table)?.find(key);
        Some((lo, hi))
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.buckets.bounds.len() * 4
            + self.nested_of.len() * 4
            + self.nested.iter().map(Buckets::bytes).sum::<usize>()
    }
}

impl<K: Key> RangeIndex<K> {
    fn new(starts: Vec<K>, set_ids: Vec<u32>) -> Self {
        // A search of a few starts needs no table (nor its allocation, for the many
        // small organizations).
        let tables = (starts.len() >= BUCKETS_FROM).then(|| Box::new(Tables::new(&starts)));
        Self {
            starts: starts.into_boxed_slice(),
            set_ids: set_ids.into_boxed_slice(),
            tables,
        }
    }

    /// The id of the policy set covering `key` (0, the empty set, when none does).
    #[inline]
    pub(crate) fn lookup(&self, key: K) -> u32 {
        // The starts to search: all of a small index's, or one bucket's.
        let (lo, hi) = match self.tables.as_deref() {
            None => (0, self.starts.len()),
            Some(tables) => tables.find(key),
        };
        let i = lo + self.starts[lo..hi].partition_point(|start| *start <= key);
        match i.checked_sub(1) {
            Some(i) => self.set_ids[i],
            None => 0,
        }
    }

    /// The ids of the sets a look-up can return, one per interval.
    pub(crate) fn set_ids(&self) -> &[u32] {
        &self.set_ids
    }

    pub(crate) fn bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>()
            + self.set_ids.len() * 4
            + self.tables.as_deref().map_or(0, Tables::bytes)
    }

    #[cfg(test)]
    pub(crate) fn intervals(&self) -> usize {
        self.starts.len()
    }
}

impl<K: Key> Default for RangeIndex<K> {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new())
    }
}

/// Deduplicated bitsets of policy indexes, stored flat with a fixed stride.
/// Set 0 is always the empty set.
#[derive(Debug)]
pub(crate) struct SetTable {
    words: usize,
    flat: Vec<u64>,
    ids: HashMap<Box<[u64]>, u32, foldhash::fast::RandomState>,
    /// Id of the set holding only policy `p` (0: not interned yet).
    singles: Vec<u32>,
}

impl SetTable {
    pub(crate) fn new(policies: usize) -> Self {
        let words = policies.div_ceil(64).max(1);
        let mut table = Self {
            words,
            flat: Vec::new(),
            ids: HashMap::default(),
            singles: vec![0; words * 64],
        };
        table.intern(&vec![0; words]);
        table
    }

    pub(crate) fn words(&self) -> usize {
        self.words
    }

    pub(crate) fn intern(&mut self, set: &[u64]) -> u32 {
        debug_assert_eq!(set.len(), self.words);
        if let Some(&id) = self.ids.get(set) {
            return id;
        }
        let id = u32::try_from(self.flat.len() / self.words).unwrap_or(u32::MAX);
        self.flat.extend_from_slice(set);
        self.ids.insert(set.into(), id);
        id
    }

    /// [`intern`](Self::intern) for a set with exactly one member, without hashing.
    pub(crate) fn intern_single(&mut self, set: &[u64]) -> u32 {
        let Some((word, bits)) = set.iter().enumerate().find(|(_, w)| **w != 0) else {
            return 0;
        };
        let p = word * 64 + bits.trailing_zeros() as usize;
        if let Some(&id) = self.singles.get(p).filter(|id| **id != 0) {
            return id;
        }
        let id = self.intern(set);
        if let Some(slot) = self.singles.get_mut(p) {
            *slot = id;
        }
        id
    }

    pub(crate) fn finish(self) -> Box<[u64]> {
        self.flat.into_boxed_slice()
    }
}

/// Sweeps the ranges of every (policy, range) pair into non-overlapping intervals.
pub(crate) fn build<K: Key>(
    ranges: impl ExactSizeIterator<Item = (usize, K, K)>,
    sets: &mut SetTable,
) -> RangeIndex<K> {
    // Tag: policy << 1 | 1 opens the policy at a key; | 0 closes it after its last key.
    let mut events: Vec<(K, u32)> = Vec::with_capacity(ranges.len() * 2);
    for (policy, first, last) in ranges {
        let tag = u32::try_from(policy).unwrap_or(u32::MAX >> 1) << 1;
        events.push((first, tag | 1));
        if let Some(after) = last.checked_next() {
            events.push((after, tag));
        }
    }
    events.sort_unstable_by_key(|event| event.0);

    let words = sets.words();
    // How many ranges of each policy cover the current key (a policy's own ranges may
    // overlap), and the resulting set.
    let mut counts = vec![0u32; words * 64];
    let mut current = vec![0u64; words];
    let mut members = 0usize;
    let mut starts = Vec::new();
    let mut set_ids = Vec::new();
    let mut last_id = 0;
    let mut i = 0;
    while i < events.len() {
        let at = events[i].0;
        while let Some(&(_, tag)) = events.get(i).filter(|event| event.0 == at) {
            let p = (tag >> 1) as usize;
            let was = counts[p] > 0;
            if tag & 1 == 1 {
                counts[p] += 1;
            } else {
                counts[p] -= 1;
            }
            let is = counts[p] > 0;
            if was != is {
                current[p / 64] ^= 1 << (p % 64);
                members = if is { members + 1 } else { members - 1 };
            }
            i += 1;
        }
        // Most intervals of real lists are covered by zero or one policy: skip hashing.
        let id = match members {
            0 => 0,
            1 => sets.intern_single(&current),
            _ => sets.intern(&current),
        };
        if id != last_id || starts.is_empty() {
            starts.push(at);
            set_ids.push(id);
            last_id = id;
        }
    }
    RangeIndex::new(starts, set_ids)
}

/// The key of an already normalized address.
#[inline]
pub(crate) fn key(addr: IpAddr) -> Result<u32, u128> {
    match addr {
        IpAddr::V4(v4) => Ok(u32::from(v4)),
        IpAddr::V6(v6) => Err(u128::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_merges_and_splits() {
        let mut sets = SetTable::new(2);
        // p0: 10..=20, p1: 15..=30, p0 again: 18..=25 (overlapping itself)
        let index = build(
            [(0, 10u32, 20), (1, 15, 30), (0, 18, 25)].into_iter(),
            &mut sets,
        );
        let flat = sets.finish();
        let set = |k: u32| {
            let id = index.lookup(k) as usize;
            flat[id]
        };
        assert_eq!(set(0), 0);
        assert_eq!(set(9), 0);
        assert_eq!(set(10), 0b01);
        assert_eq!(set(15), 0b11);
        assert_eq!(set(25), 0b11);
        assert_eq!(set(26), 0b10);
        assert_eq!(set(30), 0b10);
        assert_eq!(set(31), 0);
        assert_eq!(set(u32::MAX), 0);
    }

    #[test]
    fn buckets_match_a_plain_sorted_search() {
        // Sizes around the bucket-count steps, keys spread over the whole space and
        // packed into a corner of it, low or high, every key between and around the
        // starts, below the first and above the last.
        for n in (0..40u32).chain([255, 256, 257, 4097]) {
            for (base, spread) in [(10u32, 1u32), (10, 3), (10, 1 << 18), (0xC000_0000, 7)] {
                let starts: Vec<u32> = (0..n).map(|i| base + spread * i).collect();
                let set_ids: Vec<u32> = (0..n).map(|i| 100 + i).collect();
                let index = RangeIndex::new(starts.clone(), set_ids.clone());
                let probes = starts.iter().flat_map(|s| [s.saturating_sub(1), *s, s + 1]);
                for key in probes.chain([0, 9, base - 1, u32::MAX]) {
                    let i = starts.partition_point(|s| *s <= key);
                    let want = i.checked_sub(1).map_or(0, |i| set_ids[i]);
                    assert_eq!(index.lookup(key), want, "n {n} spread {spread} key {key}");
                }
            }
        }
        // Clusters: `size` starts `spread` apart, clusters `gap` apart, as one policy's
        // sources packed into a block, far from the next policy's. Crowded buckets get
        // tables of their own; clusters on and off the buckets' boundaries, a denser run
        // beside a cluster, and a lone start far beyond the last one are searched too.
        for (clusters, size, spread, gap) in [
            (100u32, 200u32, 8u32, 1u32 << 20),
            (100, 200, 8, (1 << 20) + 12_345),
            (3, 1000, 1, 1 << 12),
            (7, 40, 3, 100_000),
            (2, 5000, 16, 1 << 26),
        ] {
            let mut starts: Vec<u32> = (0..clusters)
                .flat_map(|c| (0..size).map(move |i| 0x2000_0000 + c * gap + i * spread))
                .collect();
            // A dense run just after the first cluster, and a lone far start.
            starts.extend((0..64).map(|i| 0x2000_0000 + spread * size + 1 + i));
            starts.push(0xF000_0000);
            starts.sort_unstable();
            starts.dedup();
            let set_ids: Vec<u32> = (0..starts.len() as u32).map(|i| 7 + i % 5).collect();
            let index = RangeIndex::new(starts.clone(), set_ids.clone());
            assert!(
                index
                    .tables
                    .as_ref()
                    .is_some_and(|tables| !tables.nested.is_empty()),
                "{clusters} clusters of {size}"
            );
            // Every start and its neighbours, and halfway to the next start (so between
            // clusters, and before and after each crowded bucket's own span).
            let probes = starts
                .iter()
                .zip(starts.iter().skip(1))
                .flat_map(|(s, next)| [s.saturating_sub(1), *s, s + 1, s + (next - s) / 2]);
            for key in probes.chain([0, 0x1FFF_FFFF, 0xF000_0000, u32::MAX]) {
                let i = starts.partition_point(|s| *s <= key);
                let want = i.checked_sub(1).map_or(0, |i| set_ids[i]);
                assert_eq!(
                    index.lookup(key),
                    want,
                    "{clusters} clusters of {size}: key {key}"
                );
            }
        }
        let index = RangeIndex::new(vec![0u128, 1 << 127, u128::MAX], vec![1, 2, 3]);
        assert_eq!(index.lookup(0), 1);
        assert_eq!(index.lookup((1 << 127) - 1), 1);
        assert_eq!(index.lookup(1 << 127), 2);
        assert_eq!(index.lookup(u128::MAX - 1), 2);
        assert_eq!(index.lookup(u128::MAX), 3);
    }

    #[test]
    fn range_to_the_top_of_the_space() {
        let mut sets = SetTable::new(1);
        let index = build([(0, u32::MAX - 1, u32::MAX)].into_iter(), &mut sets);
        assert_eq!(index.lookup(u32::MAX), 1);
        assert_eq!(index.lookup(u32::MAX - 2), 0);
        assert_eq!(index.intervals(), 1);
    }
}
