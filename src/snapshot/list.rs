//! A compiled source list (site or resource): merged, sorted address intervals.

use std::net::IpAddr;

use crate::policy::{Enforcement, SourceList};
use crate::source::normalize_ip;

/// A site or resource list, compiled: each family's sources merged into sorted,
/// disjoint intervals, searched with one binary search.
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
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for source in list.sources() {
            match source.bounds() {
                (IpAddr::V4(first), IpAddr::V4(last)) => {
                    v4.push((u32::from(first), u32::from(last)))
                }
                (IpAddr::V6(first), IpAddr::V6(last)) => {
                    v6.push((u128::from(first), u128::from(last)));
                }
                // Both ends of a source are of one family.
                _ => {}
            }
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
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
    pub(super) trait Successor: Sized {
        fn successor(self) -> Option<Self>;
    }

    impl Successor for u32 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }

    impl Successor for u128 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
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
