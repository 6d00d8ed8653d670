//! Recording what report-only rules would deny stays off the allocator for requests
//! they admit, and for a caller already in the summary: counted with dhat's global
//! allocator (so this file holds one test). The time it takes is measured in
//! `benches/would_deny.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tower::{service_fn, Layer, Service};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{Enforcement, OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::report::{RuleKind, SummaryLimits};
use tower_ip_allowlist::snapshot::SnapshotHandle;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Runs a future that never waits (the inner service answers at once).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the service waited"),
    }
}

/// Heap blocks and bytes allocated while `f` runs.
fn allocated<T>(f: impl FnOnce() -> T) -> (u64, u64, T) {
    let before = dhat::HeapStats::get();
    let out = f();
    let after = dhat::HeapStats::get();
    (
        after.total_blocks - before.total_blocks,
        after.total_bytes - before.total_bytes,
        out,
    )
}

fn handle_with(enforcement: Enforcement) -> SnapshotHandle {
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

#[test]
fn recording_allocates_only_for_a_new_caller() {
    let _profiler = dhat::Profiler::builder().testing().build();

    // The summary alone.
    let handle = SnapshotHandle::default();
    let summaries = handle.would_deny();
    summaries.set_limits(SummaryLimits::default().callers_per_rule(4));
    let addr = |last: u8| Some(IpAddr::from([192, 0, 2, last]));
    summaries.record(RuleKind::Policy, "default", "rollout", Some("bob"), addr(1));
    let (blocks, bytes, ()) = allocated(|| {
        for _ in 0..1000 {
            summaries.record(RuleKind::Policy, "default", "rollout", Some("bob"), addr(1));
        }
    });
    eprintln!("record, known caller: {blocks} blocks, {bytes} bytes per 1000");
    assert_eq!((blocks, bytes), (0, 0), "a known caller allocates nothing");
    for last in 2..=4 {
        summaries.record(
            RuleKind::Policy,
            "default",
            "rollout",
            Some("bob"),
            addr(last),
        );
    }
    let (blocks, bytes, ()) = allocated(|| {
        summaries.record(
            RuleKind::Policy,
            "default",
            "rollout",
            Some("mallory"),
            addr(9),
        );
    });
    eprintln!("record, new caller into a full table: {blocks} blocks, {bytes} bytes");
    assert!(
        blocks <= 1 && bytes <= 7,
        "only the new caller's user id: {blocks} blocks, {bytes} bytes"
    );

    // Through the layer: the request and its response are built outside the count.
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let request = |from: &str| {
        let mut request = Request::new(());
        request.extensions_mut().insert(Principal::new("bob"));
        request
            .extensions_mut()
            .insert(SocketAddr::new(from.parse().unwrap(), 4000));
        request
    };
    let mut per_request = Vec::new();
    for (name, enforcement, from) in [
        (
            "admitted by an enforcing policy",
            Enforcement::Enforce,
            "203.0.113.7",
        ),
        (
            "admitted under a report-only policy",
            Enforcement::Report,
            "203.0.113.7",
        ),
        (
            "would-deny, caller already summarized",
            Enforcement::Report,
            "192.0.2.7",
        ),
    ] {
        let handle = handle_with(enforcement);
        let mut service = AllowlistLayer::new(handle.clone()).layer(inner);
        // Warm up: the caller enters the summary, lazily built things get built.
        drop(ready(service.call(request(from))));
        let mut counts = Vec::new();
        for _ in 0..3 {
            let request = request(from);
            let (blocks, bytes, response) = allocated(|| ready(service.call(request)));
            drop(response);
            counts.push((blocks, bytes));
        }
        eprintln!("{name}: {counts:?} (blocks, bytes) per request");
        assert!(
            counts.windows(2).all(|w| w[0] == w[1]),
            "{name}: steady per request"
        );
        per_request.push(counts[0]);
        let recorded = handle
            .would_deny()
            .summary(RuleKind::Policy, "default", "rollout")
            .map_or(0, |summary| summary.total_requests);
        let expected = if from.starts_with("192.") { 4 } else { 0 };
        assert_eq!(recorded, expected, "{name}: recorded");
    }
    assert!(
        per_request[1].0 <= per_request[0].0 && per_request[1].1 <= per_request[0].1,
        "a request a report-only policy admits allocates no more than one an enforced policy admits: {per_request:?}"
    );
}
