//! The whole decision (snapshot load, user and group resolution, address look-up)
//! against a naive baseline measured in the same run.
//!
//! `cargo bench --bench decision`; the figures are summarized in BENCHMARKS.md.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::snapshot::{CompiledOrg, Snapshot, SnapshotHandle};
use tower_ip_allowlist::source::AllowedSource;

/// A random source: half IPv4 (/16 to /32), half IPv6 (/32 to /128).
fn random_source(rng: &mut StdRng) -> AllowedSource {
    let net = if rng.random_bool(0.5) {
        let prefix = rng.random_range(16..=32);
        IpNet::V4(
            Ipv4Net::new(rng.random::<u32>().into(), prefix)
                .unwrap()
                .trunc(),
        )
    } else {
        let prefix = rng.random_range(32..=128);
        IpNet::V6(
            Ipv6Net::new(rng.random::<u128>().into(), prefix)
                .unwrap()
                .trunc(),
        )
    };
    AllowedSource::from_net(net).expect("valid by construction")
}

/// A random address inside `net`.
fn inside(rng: &mut StdRng, net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host = !u32::from(n.netmask());
            IpAddr::from((u32::from(n.network()) | (rng.random::<u32>() & host)).to_be_bytes())
        }
        IpNet::V6(n) => {
            let host = !u128::from(n.netmask());
            IpAddr::from((u128::from(n.network()) | (rng.random::<u128>() & host)).to_be_bytes())
        }
    }
}

/// Three-level hierarchy: 20 roots, 3 children each, 2 grandchildren each (200 groups).
struct Org {
    org: OrgPolicies,
    caller_groups: Vec<String>,
    applicable: Vec<Policy>,
    queries: Vec<IpAddr>,
}

fn build_org(rng: &mut StdRng, policies: usize, sources: usize) -> Org {
    let mut org = OrgPolicies::default();
    let mut groups = Vec::new();
    for root in 0..20 {
        groups.push(format!("r{root}"));
        for child in 0..3 {
            let c = format!("r{root}c{child}");
            org.groups
                .set_parents(c.clone(), [format!("r{root}")])
                .unwrap();
            groups.push(c.clone());
            for grand in 0..2 {
                let g = format!("{c}g{grand}");
                org.groups.set_parents(g.clone(), [c.clone()]).unwrap();
                groups.push(g);
            }
        }
    }
    // Each policy targets two groups anywhere in the hierarchy and two users.
    for p in 0..policies {
        let mut builder = Policy::builder(format!("policy-{p}"));
        for _ in 0..sources {
            builder = builder.source(random_source(rng));
        }
        for _ in 0..2 {
            builder = builder.group(groups[rng.random_range(0..groups.len())].clone());
            builder = builder.user(format!("user-{}", rng.random_range(0..1000)));
        }
        org.insert_policy(builder.build().unwrap());
    }
    // The caller: five grandchild groups, chosen so about ten policies apply.
    let grandchildren: Vec<&String> = groups.iter().filter(|g| g.contains('g')).collect();
    let mut best: Option<(Vec<String>, usize)> = None;
    for _ in 0..200 {
        let pick: Vec<String> = (0..5)
            .map(|_| grandchildren[rng.random_range(0..grandchildren.len())].clone())
            .collect();
        let n = org
            .applicable("caller", pick.iter().map(String::as_str))
            .len();
        if best
            .as_ref()
            .is_none_or(|(_, b)| n.abs_diff(10) < b.abs_diff(10))
        {
            best = Some((pick, n));
        }
    }
    let (caller_groups, _) = best.unwrap();
    let applicable: Vec<Policy> = org
        .applicable("caller", caller_groups.iter().map(String::as_str))
        .into_iter()
        .cloned()
        .collect();
    // Half the queries inside an applicable policy, half random (v4 and v6).
    let queries = (0..1024)
        .map(|i| {
            if i % 2 == 0 {
                let p = &applicable[rng.random_range(0..applicable.len())];
                let s = p.sources()[rng.random_range(0..p.sources().len())];
                inside(rng, s.to_cidrs()[0])
            } else if rng.random_bool(0.5) {
                IpAddr::from(rng.random::<u32>().to_be_bytes())
            } else {
                IpAddr::from(rng.random::<u128>().to_be_bytes())
            }
        })
        .collect();
    Org {
        org,
        caller_groups,
        applicable,
        queries,
    }
}

/// The naive baseline: a linear scan of `IpNet::contains` over the applicable policies
/// (already found, which flatters the baseline).
fn naive(applicable: &[Policy], addr: IpAddr) -> bool {
    applicable
        .iter()
        .any(|p| p.sources().iter().any(|s| s.contains(addr)))
}

fn decision(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    for (policies, sources) in [(100, 100), (100, 10_000)] {
        let fixture = build_org(&mut rng, policies, sources);
        let handle = SnapshotHandle::default();
        handle.set_org(OrgId::from("acme"), &fixture.org);
        let compiled = CompiledOrg::compile(&fixture.org);
        let inside = fixture
            .queries
            .iter()
            .filter(|a| naive(&fixture.applicable, **a))
            .count();
        eprintln!(
            "{policies}x{sources}: {} applicable policies, {} of {} queries inside, index {} bytes for {} sources = {:.1} bytes/source",
            fixture.applicable.len(),
            inside,
            fixture.queries.len(),
            compiled.index_bytes(),
            compiled.sources(),
            compiled.index_bytes() as f64 / compiled.sources() as f64,
        );
        let groups: Vec<&str> = fixture.caller_groups.iter().map(String::as_str).collect();

        let mut group = c.benchmark_group(format!("decision/{policies}x{sources}"));
        let mut i = 0;
        group.bench_function("compiled", |b| {
            b.iter(|| {
                i = (i + 1) % fixture.queries.len();
                let snapshot = handle.load();
                black_box(snapshot.decide(
                    Some("acme"),
                    "caller",
                    groups.iter().copied(),
                    Some(fixture.queries[i]),
                ))
            })
        });
        if sources <= 100 {
            let mut i = 0;
            group.bench_function("naive_baseline", |b| {
                b.iter(|| {
                    i = (i + 1) % fixture.queries.len();
                    black_box(naive(&fixture.applicable, fixture.queries[i]))
                })
            });
        }
        group.finish();
    }
}

/// Flat in the number of applicable policies: the caller's one group is named by 1, 10
/// or 100 policies of 100 sources each.
fn applicable_count(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut org = OrgPolicies::default();
    for p in 0..100usize {
        let mut builder = Policy::builder(format!("p{p}"));
        for n in [1usize, 10, 100] {
            if p < n {
                builder = builder.group(format!("named-by-{n}"));
            }
        }
        for _ in 0..100 {
            builder = builder.source(random_source(&mut rng));
        }
        org.insert_policy(builder.build().unwrap());
    }
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    let queries: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::from(rng.random::<u32>().to_be_bytes()))
        .collect();
    let mut group = c.benchmark_group("decision/applicable_policies");
    for n in [1usize, 10, 100] {
        let name = format!("named-by-{n}");
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(n), &name, |b, name| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(
                    handle
                        .load()
                        .decide(None, "u", [name.as_str()], Some(queries[i])),
                )
            })
        });
    }
    group.finish();
}

/// One snapshot holding 10,000 organizations of 10 policies x 10 sources.
fn many_orgs(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(13);
    let mut orgs = Vec::new();
    for o in 0..10_000 {
        let mut org = OrgPolicies::default();
        for p in 0..10 {
            let mut builder = Policy::builder(format!("p{p}"))
                .user("caller")
                .group("staff");
            for _ in 0..10 {
                builder = builder.source(random_source(&mut rng));
            }
            org.insert_policy(builder.build().unwrap());
        }
        orgs.push((OrgId::from(format!("org-{o}")), org));
    }
    let snapshot = Snapshot::from_orgs(orgs.iter().map(|(id, org)| (id.clone(), org)));
    let handle = SnapshotHandle::new(snapshot);
    let names: Vec<String> = (0..10_000).map(|o| format!("org-{o}")).collect();
    let queries: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::from(rng.random::<u32>().to_be_bytes()))
        .collect();
    let mut group = c.benchmark_group("decision/10000_orgs");
    let mut i = 0;
    group.bench_function("compiled", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            let org = &names[(i * 7919) % names.len()];
            black_box(
                handle
                    .load()
                    .decide(Some(org), "caller", ["staff"], Some(queries[i])),
            )
        })
    });
    // Publishing a change to one of them recompiles only that one.
    let (id, org) = &orgs[42];
    group.bench_function("publish_one_org", |b| {
        b.iter(|| handle.set_org(id.clone(), org))
    });
    group.finish();
}

fn compile(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(17);
    let fixture = build_org(&mut rng, 100, 100);
    c.bench_function("compile/100x100", |b| {
        b.iter(|| black_box(CompiledOrg::compile(&fixture.org)))
    });
}

/// A piece of `source`: a network halfway between its prefix and a single address.
fn piece_of(rng: &mut StdRng, source: AllowedSource) -> AllowedSource {
    let net = source.to_cidrs()[0];
    let prefix = net.prefix_len() + (net.max_prefix_len() - net.prefix_len()).div_ceil(2);
    let piece = IpNet::new(inside(rng, net), prefix).unwrap().trunc();
    AllowedSource::from_net(piece).expect("valid by construction")
}

/// Blocked sources are subtracted at compile time, so a decision should cost what it
/// did without them: the 100 × 100 organization as it is, and with ten blocked sources
/// per policy (each a piece of one of its allowed sources), decided for the same
/// queries, a quarter of which fall inside a blocked piece of an applicable policy.
fn blocked(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(23);
    let fixture = build_org(&mut rng, 100, 100);
    let mut carved = fixture.org.clone();
    for policy in carved.policies.values_mut() {
        let pieces: Vec<AllowedSource> = (0..10)
            .map(|_| {
                let source = policy.sources()[rng.random_range(0..policy.sources().len())];
                piece_of(&mut rng, source)
            })
            .collect();
        policy.set_blocked_sources(pieces).unwrap();
    }
    let applicable: Vec<Policy> = carved
        .applicable("caller", fixture.caller_groups.iter().map(String::as_str))
        .into_iter()
        .cloned()
        .collect();
    let queries: Vec<IpAddr> = fixture
        .queries
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            if i % 4 == 1 {
                let p = &applicable[rng.random_range(0..applicable.len())];
                let s = p.blocked_sources()[rng.random_range(0..p.blocked_sources().len())];
                inside(&mut rng, s.to_cidrs()[0])
            } else {
                *addr
            }
        })
        .collect();
    let plain = CompiledOrg::compile(&fixture.org);
    let compiled = CompiledOrg::compile(&carved);
    eprintln!(
        "blocked 100x100: index {} bytes without blocked sources, {} with; {} of {} queries admitted with, {} without",
        plain.index_bytes(),
        compiled.index_bytes(),
        queries.iter().filter(|a| applicable.iter().any(|p| p.admits(**a))).count(),
        queries.len(),
        queries.iter().filter(|a| naive(&fixture.applicable, **a)).count(),
    );
    let groups: Vec<&str> = fixture.caller_groups.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("decision/blocked_100x100");
    for (name, org) in [("without_blocked", &fixture.org), ("with_blocked", &carved)] {
        let handle = SnapshotHandle::default();
        handle.set_org(OrgId::from("acme"), org);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                black_box(handle.load().decide(
                    Some("acme"),
                    "caller",
                    groups.iter().copied(),
                    Some(queries[i]),
                ))
            })
        });
    }
    let mut i = 0;
    group.bench_function("naive_baseline_with_blocked", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(applicable.iter().any(|p| p.admits(queries[i])))
        })
    });
    group.bench_function("compile_without_blocked", |b| {
        b.iter(|| black_box(CompiledOrg::compile(&fixture.org)))
    });
    group.bench_function("compile_with_blocked", |b| {
        b.iter(|| black_box(CompiledOrg::compile(&carved)))
    });
    group.finish();
}

/// Readers deciding while a writer publishes as fast as it can (arc-swap's contention case).
fn under_writer(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(19);
    let fixture = build_org(&mut rng, 100, 100);
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &fixture.org);
    let groups: Vec<&str> = fixture.caller_groups.iter().map(String::as_str).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let handle = handle.clone();
        let stop = Arc::clone(&stop);
        let compiled = Arc::new(CompiledOrg::compile(&fixture.org));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut next = Snapshot::clone(&handle.load());
                next.insert_compiled(OrgId::default(), Arc::clone(&compiled));
                handle.publish(next);
            }
        })
    };
    let mut i = 0;
    c.bench_function("decision/100x100_under_writer", |b| {
        b.iter(|| {
            i = (i + 1) % fixture.queries.len();
            black_box(handle.load().decide(
                None,
                "caller",
                groups.iter().copied(),
                Some(fixture.queries[i]),
            ))
        })
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

criterion_group!(
    benches,
    decision,
    applicable_count,
    many_orgs,
    compile,
    blocked,
    under_writer
);
criterion_main!(benches);
