//! A compiled source list (site or resource): merged, sorted address intervals, its
//! blocked sources already subtracted.

use std::net::IpAddr;

use crate::policy::{Enforcement, SourceList};
use crate::source::{normalize_ip, AllowedSource};

/// A site or resource list, compiled: each family's sources merged into sorted,
/// disjoint intervals, the blocked sources subtracted from them, searched with one
/// binary search. Blocked sources cost nothing per request: they are gone from the
/// intervals before the first look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledList {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
    enforcement: Enforcement,
}

impl CompiledList {
    /// Compiles `list`.
    #[must_use]
    pub fn compile(list: &SourceList) -> Self {
        let (v4, v6) = effective(list.sources(), list.blocked_sources());
        Self {
            v4,
            v6,
            enforcement: list.enforcement(),
        }
    }

    /// Whether `addr` (normalized first) is inside the list.
    #[must_use]
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match normalize_ip(addr) {
            IpAddr::V4(v4) => inside(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => inside(&self.v6, u128::from(v6)),
        }
    }

    /// Whether the list enforces or only reports.
    #[must_use]
    pub fn enforcement(&self) -> Enforcement {
        self.enforcement
    }
}

/// First and last key, inclusive.
type Interval<K> = (K, K);

/// Sorted, disjoint, non-adjacent intervals.
pub(super) type Intervals<K> = Box<[Interval<K>]>;

/// The addresses `allowed` admits and `blocked` does not, per family, as sorted,
/// disjoint, non-adjacent intervals.
pub(super) fn effective(
    allowed: &[AllowedSource],
    blocked: &[AllowedSource],
) -> (Intervals<u32>, Intervals<u128>) {
    let (v4, v6) = intervals(allowed);
    let (v4, v6) = (merge(v4), merge(v6));
    if blocked.is_empty() {
        return (v4, v6);
    }
    let (blocked_v4, blocked_v6) = intervals(blocked);
    (
        subtract(&v4, &merge(blocked_v4)),
        subtract(&v6, &merge(blocked_v6)),
    )
}

/// Each source's bounds, split by family.
fn intervals(sources: &[AllowedSource]) -> (Vec<(u32, u32)>, Vec<Interval<u128>>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for source in sources {
        match source.bounds() {
            (IpAddr::V4(first), IpAddr::V4(last)) => v4.push((u32::from(first), u32::from(last))),
            (IpAddr::V6(first), IpAddr::V6(last)) => {
                v6.push((u128::from(first), u128::from(last)));
            }
            // Both ends of a source are of one family.
            _ => {}
        }
    }
    (v4, v6)
}

/// `allowed` minus `blocked`, both as [`merge`] leaves them (sorted, disjoint,
/// non-adjacent); so is the result. One pass over both: `O(n + m)`.
fn subtract<K: Copy + Ord + num_like::Successor>(
    allowed: &[(K, K)],
    blocked: &[(K, K)],
) -> Box<[(K, K)]> {
    let mut out = Vec::with_capacity(allowed.len());
    // The first blocked interval that may still overlap an allowed one: blocked
    // intervals ending before the current allowed one starts are behind for good.
    let mut j = 0;
    for &(first, last) in allowed {
        while blocked.get(j).is_some_and(|&(_, end)| end < first) {
            j += 1;
        }
        // The start of what is left of `first..=last`, if anything is.
        let mut start = Some(first);
        let mut k = j;
        while let Some(from) = start {
            match blocked.get(k) {
                Some(&(block_first, block_last)) if block_first <= last => {
                    if let Some(before) = block_first.predecessor().filter(|b| from <= *b) {
                        out.push((from, before));
                    }
                    start = block_last.successor().filter(|after| *after <= last);
                    k += 1;
                }
                _ => {
                    out.push((from, last));
                    start = None;
                }
            }
        }
    }
    out.into_boxed_slice()
}

/// Sorts and merges overlapping or adjacent intervals.
fn merge<K: Copy + Ord + num_like::Successor>(mut intervals: Vec<(K, K)>) -> Box<[(K, K)]> {
    intervals.sort_unstable();
    let mut merged: Vec<(K, K)> = Vec::with_capacity(intervals.len());
    for (first, last) in intervals {
        match merged.last_mut() {
            Some(previous) if previous.1.successor().is_none_or(|next| first <= next) => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged.into_boxed_slice()
}

fn inside<K: Copy + Ord>(intervals: &[(K, K)], key: K) -> bool {
    // The last interval starting at or before `key`.
    let after = intervals.partition_point(|&(first, _)| first <= key);
    after > 0 && key <= intervals[after - 1].1
}

mod num_like {
    /// The next key, if any: what makes `[a, b]` and `[b + 1, c]` adjacent.
    /// The next and previous keys, if any: what makes `[a, b]` and `[b + 1, c]`
    /// adjacent, and what is left of `[a, c]` before a hole at `b`.
    pub(super) trait Successor: Sized {
        fn successor(self) -> Option<Self>;
        fn predecessor(self) -> Option<Self>;
    }

    impl Successor for u32 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
        fn predecessor(self) -> Option<Self> {
            self.checked_sub(1)
        }
    }

    impl Successor for u128 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
        fn predecessor(self) -> Option<Self> {
            self.checked_sub(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn merges_and_finds() {
        let list = SourceList::parse([
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "192.0.2.10-192.0.2.20",
            "2001:db8::/64",
            "255.255.255.255",
        ])
        .unwrap();
        let compiled = CompiledList::compile(&list);
        assert_eq!(compiled.v4.len(), 3, "{:?}", compiled.v4);
        for (addr, want) in [
            ("10.0.0.0", true),
            ("10.0.1.255", true),
            ("10.0.2.0", false),
            ("192.0.2.9", false),
            ("192.0.2.10", true),
            ("192.0.2.20", true),
            ("192.0.2.21", false),
            ("::ffff:192.0.2.15", true),
            ("2001:db8::1", true),
            ("2001:db8:0:1::1", false),
            ("255.255.255.255", true),
            ("0.0.0.0", false),
        ] {
            assert_eq!(compiled.contains(addr.parse().unwrap()), want, "{addr}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn subtraction_table() {
        struct Case { name: &'static str, allowed: &'static [(u32, u32)], blocked: &'static [(u32, u32)], want: &'static [(u32, u32)] }
        let cases = [
            Case { name: "nothing blocked", allowed: &[(10, 20)], blocked: &[], want: &[(10, 20)] },
            Case { name: "hole in the middle", allowed: &[(10, 20)], blocked: &[(15, 15)], want: &[(10, 14), (16, 20)] },
            Case { name: "first address", allowed: &[(10, 20)], blocked: &[(10, 10)], want: &[(11, 20)] },
            Case { name: "last address", allowed: &[(10, 20)], blocked: &[(20, 20)], want: &[(10, 19)] },
            Case { name: "overhanging both ends", allowed: &[(10, 20)], blocked: &[(5, 12), (18, 25)], want: &[(13, 17)] },
            Case { name: "all of it", allowed: &[(10, 20)], blocked: &[(0, 30)], want: &[] },
            Case { name: "outside", allowed: &[(10, 20)], blocked: &[(0, 9), (21, 30)], want: &[(10, 20)] },
            Case { name: "one block across two intervals", allowed: &[(10, 20), (30, 40)], blocked: &[(18, 32)], want: &[(10, 17), (33, 40)] },
            Case { name: "several holes", allowed: &[(0, 100)], blocked: &[(10, 19), (30, 39), (100, 100)], want: &[(0, 9), (20, 29), (40, 99)] },
            Case { name: "bottom of the space", allowed: &[(0, 5)], blocked: &[(0, 0)], want: &[(1, 5)] },
            Case { name: "top of the space", allowed: &[(u32::MAX - 5, u32::MAX)], blocked: &[(u32::MAX, u32::MAX)], want: &[(u32::MAX - 5, u32::MAX - 1)] },
            Case { name: "block past the top", allowed: &[(10, 20), (u32::MAX - 1, u32::MAX)], blocked: &[(15, u32::MAX)], want: &[(10, 14)] },
        ];
        for case in cases {
            assert_eq!(&*subtract(case.allowed, case.blocked), case.want, "{}", case.name);
        }
    }

    #[test]
    fn blocked_sources_are_holes_in_the_list() {
        let list = SourceList::parse(["10.0.0.0/24", "2001:db8::/64"])
            .unwrap()
            .with_blocked(["10.0.0.128/25", "10.0.0.7", "2001:db8::1", "192.0.2.0/24"])
            .unwrap();
        let compiled = CompiledList::compile(&list);
        for (addr, want) in [
            ("10.0.0.0", true),
            ("10.0.0.6", true),
            ("10.0.0.7", false),
            ("::ffff:10.0.0.7", false),
            ("10.0.0.8", true),
            ("10.0.0.127", true),
            ("10.0.0.128", false),
            ("10.0.0.255", false),
            ("2001:db8::1", false),
            ("2001:db8::2", true),
            ("192.0.2.1", false),
        ] {
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(compiled.contains(addr), want, "{addr}");
            assert_eq!(list.contains(addr), want, "{addr}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_list_and_its_blocked_sources(
            nets in prop::collection::vec((any::<u32>(), 8u8..=32), 1..12),
            blocked in prop::collection::vec((any::<u32>(), 8u8..=32), 0..8),
            probes in prop::collection::vec(any::<u32>(), 1..32),
        ) {
            let text = |nets: &[(u32, u8)]| -> Vec<String> {
                nets.iter()
                    .map(|&(a, p)| ipnet::Ipv4Net::new(a.into(), p).unwrap().trunc().to_string())
                    .collect()
            };
            let list = SourceList::parse(text(&nets)).unwrap().with_blocked(text(&blocked)).unwrap();
            let compiled = CompiledList::compile(&list);
            let edges = list.sources().iter().chain(list.blocked_sources()).flat_map(|s| {
                let (a, b) = s.bounds();
                let (a, b) = (u32::from(match a { IpAddr::V4(a) => a, IpAddr::V6(_) => unreachable!() }),
                              u32::from(match b { IpAddr::V4(b) => b, IpAddr::V6(_) => unreachable!() }));
                [a.wrapping_sub(1), a, b, b.wrapping_add(1)]
            });
            for addr in probes.iter().copied().chain(edges).map(|p| IpAddr::from(std::net::Ipv4Addr::from(p))) {
                prop_assert_eq!(compiled.contains(addr), list.contains(addr), "{}", addr);
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_list(
            nets in prop::collection::vec((any::<u32>(), 8u8..=32), 1..12),
            probes in prop::collection::vec(any::<u32>(), 1..32),
        ) {
            let sources: Vec<String> = nets
                .iter()
                .map(|&(a, p)| ipnet::Ipv4Net::new(a.into(), p).unwrap().trunc().to_string())
                .collect();
            let list = SourceList::parse(&sources).unwrap();
            let compiled = CompiledList::compile(&list);
            let edges = list.sources().iter().flat_map(|s| {
                let (a, b) = s.bounds();
                [a, b]
            });
            for addr in probes.iter().map(|&p| IpAddr::from(std::net::Ipv4Addr::from(p))).chain(edges) {
                prop_assert_eq!(compiled.contains(addr), list.contains(addr), "{}", addr);
            }
        }
    }
}
