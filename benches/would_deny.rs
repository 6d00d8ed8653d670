//! What report-only rules cost per request: a request admitted under a report-only
//! policy, and one it would have denied (recorded in the rule's summary, for a caller
//! already there and for a new caller each time, which churns a full table), against
//! a request admitted by an enforcing policy in the same run. Then the summary's
//! `record` alone. The allocations per request are counted in
//! `tests/would_deny_allocations.rs`.
//!
//! `cargo bench --bench would_deny`; the figures are summarized in BENCHMARKS.md.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use tower::{service_fn, Layer, Service};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{Enforcement, OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::report::{RuleKind, WouldDenySummaries};
use tower_ip_allowlist::snapshot::SnapshotHandle;

/// Runs a future that never waits (the inner service answers at once).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the inner service answers at once"),
    }
}

fn handle(enforcement: Enforcement) -> SnapshotHandle {
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("rollout")
            .sources(["203.0.113.0/24"])
            .unwrap()
            .user("bob")
            .enforcement(enforcement)
            .build()
            .unwrap(),
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    handle
}

fn request(principal: &Principal, from: IpAddr) -> Request<()> {
    let mut request = Request::new(());
    request.extensions_mut().insert(principal.clone());
    request.extensions_mut().insert(SocketAddr::new(from, 4000));
    request
}

fn layer(c: &mut Criterion) {
    let bob = Principal::new("bob");
    let inside = IpAddr::from([203, 0, 113, 7]);
    let outside = IpAddr::from([192, 0, 2, 7]);
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut enforced = AllowlistLayer::new(handle(Enforcement::Enforce)).layer(inner);
    let mut reported = AllowlistLayer::new(handle(Enforcement::Report)).layer(inner);

    let mut group = c.benchmark_group("would_deny/layer");
    group.bench_function("admitted_by_enforcing_policy (baseline)", |b| {
        b.iter(|| black_box(ready(enforced.call(request(&bob, inside)))))
    });
    group.bench_function("admitted_under_report_only_policy", |b| {
        b.iter(|| black_box(ready(reported.call(request(&bob, inside)))))
    });
    group.bench_function("would_deny_known_caller", |b| {
        b.iter(|| black_box(ready(reported.call(request(&bob, outside)))))
    });
    // A new address every request (65,536 of them): the table (100 callers) is full,
    // so each request evicts the weakest caller.
    let mut next = 0u32;
    group.bench_function("would_deny_new_caller_full_table", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let from = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (next & 0xffff)));
            black_box(ready(reported.call(request(&bob, from))))
        })
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let summaries = WouldDenySummaries::default();
    let known = Some(IpAddr::from([192, 0, 2, 7]));
    let mut group = c.benchmark_group("would_deny/record");
    group.bench_function("known_caller", |b| {
        b.iter(|| {
            summaries.record(
                RuleKind::Policy,
                "default",
                "rollout",
                Some("bob"),
                black_box(known),
            )
        })
    });
    let mut next = 0u32;
    group.bench_function("new_caller_full_table", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let from = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (next & 0xffff)));
            summaries.record(
                RuleKind::Policy,
                "default",
                "churn",
                Some("bob"),
                black_box(Some(from)),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, layer, record);
criterion_main!(benches);
