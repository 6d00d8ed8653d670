//! Many organizations in one snapshot: publishing one organization's change, building
//! a snapshot of all of them at once, and deciding for a random one, at 10,000,
//! 100,000 and 1,000,000 organizations of one policy × five sources.
//!
//! The baseline, in the same run, is what publishing cost before the organization map
//! shared structure: copying a `HashMap` of every organization.
//!
//! `cargo bench --bench orgs` (all sizes), or `cargo bench --bench orgs -- 100000` for
//! one (a filter naming a size builds only that size's fixture); the figures are
//! summarized in BENCHMARKS.md ("A million organizations"). The 1,000,000-organization
//! fixture takes tens of seconds and about 6 GB to build, so `from_orgs` is timed
//! there once, by `benches/org_memory.rs`, rather than ten times here.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::snapshot::{CompiledOrg, Snapshot, SnapshotHandle};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// Organization `i`: one policy for the group `staff` and the user `alice`, five /24
/// sources of its own.
fn org(i: usize) -> OrgPolicies {
    let mut builder = Policy::builder("office").group("staff").user("alice");
    for s in 0..5u32 {
        let n = (i as u32).wrapping_mul(5).wrapping_add(s);
        let net = Ipv4Addr::from(0x0a00_0000 | ((n & 0xffff) << 8));
        builder = builder
            .sources([format!("{net}/24")])
            .expect("valid by construction");
    }
    let mut org = OrgPolicies::default();
    org.insert_policy(builder.build().expect("valid by construction"));
    org
}

fn fixture(n: usize) -> Vec<(OrgId, OrgPolicies)> {
    (0..n)
        .map(|i| (OrgId::from(format!("org-{i}")), org(i)))
        .collect()
}

fn build(orgs: &[(OrgId, OrgPolicies)]) -> Snapshot {
    Snapshot::from_orgs(orgs.iter().map(|(id, org)| (id.clone(), org)))
}

fn orgs(c: &mut Criterion) {
    // A filter naming a size (`-- 100000`, `-- orgs/10000/publish`) keeps the others'
    // fixtures from being built at all.
    let named: Vec<usize> = SIZES
        .into_iter()
        .filter(|n| {
            std::env::args()
                .skip(1)
                .any(|arg| arg == n.to_string() || arg.contains(&format!("orgs/{n}/")))
        })
        .collect();
    let sizes = if named.is_empty() {
        SIZES.to_vec()
    } else {
        named
    };
    for n in sizes {
        let orgs = fixture(n);
        let handle = SnapshotHandle::new(build(&orgs));
        let mut group = c.benchmark_group(format!("orgs/{n}"));
        group.measurement_time(Duration::from_secs(3));

        // One change through the handle: copy the policies, compile them, publish (a
        // store shares its policies instead, `set_org_shared`, and skips the copy).
        let (id, policies) = &orgs[n / 2];
        group.bench_function("publish_one_org", |b| {
            b.iter(|| handle.set_org(id.clone(), policies));
        });
        // The map's share of it: the organization compiled beforehand, only the
        // derived snapshot built and published.
        let compiled = Arc::new(CompiledOrg::compile(policies));
        group.bench_function("publish_compiled", |b| {
            b.iter(|| {
                let mut next = Snapshot::clone(&handle.load());
                next.insert_compiled(id.clone(), Arc::clone(&compiled));
                handle.publish(next);
            });
        });
        // The baseline: what the change cost when the map was copied whole.
        let whole: HashMap<OrgId, Arc<CompiledOrg>, foldhash::fast::RandomState> = orgs
            .iter()
            .map(|(id, _)| (id.clone(), Arc::clone(&compiled)))
            .collect();
        group.bench_function("baseline_copy_whole_map", |b| {
            b.iter(|| {
                let mut next = whole.clone();
                next.insert(id.clone(), Arc::clone(&compiled));
                black_box(next)
            });
        });

        // A decision for a random organization: cache misses grow with the number of
        // organizations, the work does not.
        let names: Vec<&str> = orgs.iter().map(|(id, _)| id.as_str()).collect();
        let addr = IpAddr::from(Ipv4Addr::new(192, 0, 2, 1));
        let mut i = 0usize;
        group.bench_function("decide_random_org", |b| {
            b.iter(|| {
                i = (i + 7919) % names.len();
                black_box(
                    handle
                        .load()
                        .decide(Some(names[i]), "bob", ["staff"], Some(addr)),
                )
            });
        });

        // Building a snapshot of every organization at once: linear.
        if n < 1_000_000 {
            group.sample_size(10);
            group.bench_with_input(BenchmarkId::new("from_orgs", n), &orgs, |b, orgs| {
                b.iter(|| black_box(build(orgs)));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, orgs);
criterion_main!(benches);
