//! A request through an axum router with the allowlist layer, against the same router
//! without it, in the same run: the difference is the layer's overhead.
//!
//! The layer is measured both ways an application can add it: with `Router::layer`
//! (axum wraps every route in it, and re-boxes each route's service and response body;
//! a layer that does nothing shows that cost alone) and around the whole router. The
//! caller's groups are compared in order with the names reaching the policies that
//! cover the address, and the first that matches allows, so the allowed address is in
//! a policy of the caller's *last* group: every group is compared.
//!
//! Before criterion's measurements, the bench prints the four services' fastest rounds
//! when they take turns (see `fastest_rounds`), which hold up on a machine whose speed
//! drifts while criterion measures one service after the other.
//!
//! `cargo bench --bench layer`; the figures are summarized in BENCHMARKS.md.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;

fn request(principal: &Principal, peer: SocketAddr) -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    request.extensions_mut().insert(principal.clone());
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

/// One request through a clone of `service`, as a server does per request.
fn call<S, B>(runtime: &Runtime, service: &S, request: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
{
    runtime
        .block_on(service.clone().oneshot(request))
        .unwrap_or_else(|never| match never {})
}

/// Runs the services in turn, 20,000 requests each, for 40 rounds, and prints each one's
/// fastest round and its difference from the first's. This machine's speed drifts
/// during a run (by up to half), which criterion's one-after-the-other medians take
/// for differences between the services; taking turns puts the drift on all of them
/// alike, and the fastest round is the least disturbed.
fn fastest_rounds(services: &[(&str, &dyn Fn())]) {
    const REQUESTS: u32 = 20_000;
    let mut fastest = vec![f64::INFINITY; services.len()];
    for _ in 0..40 {
        for ((_, request), fastest) in services.iter().zip(&mut fastest) {
            let start = Instant::now();
            for _ in 0..REQUESTS {
                request();
            }
            let per_request = start.elapsed().as_nanos() as f64 / f64::from(REQUESTS);
            *fastest = fastest.min(per_request);
        }
    }
    println!("fastest of 40 interleaved rounds of {REQUESTS} requests, per request:");
    for ((name, _), fastest_ns) in services.iter().zip(&fastest) {
        println!(
            "  {name:32} {fastest_ns:7.0} ns  {:+5.0} ns",
            fastest_ns - fastest[0]
        );
    }
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // 100 policies of 100 sources: policy p is for group g(p % 20) and covers 100
    // addresses of 10.0.(16p).0/20, 16 apart.
    let mut org = OrgPolicies::default();
    for p in 0..100 {
        let mut builder = Policy::builder(format!("p{p}")).group(format!("g{}", p % 20));
        for s in 0..100u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (p << 12) | (s << 4));
            builder = builder.source(std::net::IpAddr::V4(addr).into());
        }
        org.insert_policy(builder.build().unwrap());
    }
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);

    let bare: Router = Router::new().route("/", get(|| async { "ok" }));
    // The cost of any layer at all added with `Router::layer`, for reference.
    let noop: Router = bare.clone().layer(tower::util::MapRequestLayer::new(
        |request: Request<Body>| request,
    ));
    let allowlist = AllowlistLayer::new(handle);
    let per_route: Router = bare.clone().layer(allowlist.clone());
    let around = allowlist.layer(bare.clone());

    let principal = Principal::new("alice").with_groups(["g1", "g2", "g3", "g4", "g5"]);
    // In policy p5, for g5: the caller's last group.
    let allowed: SocketAddr = "10.0.80.16:40000".parse().unwrap();
    let denied: SocketAddr = "192.0.2.1:40000".parse().unwrap();

    // Every router answers as expected before anything is timed.
    for status in [
        call(&runtime, &bare, request(&principal, allowed)).status(),
        call(&runtime, &noop, request(&principal, allowed)).status(),
        call(&runtime, &per_route, request(&principal, allowed)).status(),
        call(&runtime, &around, request(&principal, allowed)).status(),
    ] {
        assert_eq!(status, StatusCode::OK);
    }
    for status in [
        call(&runtime, &per_route, request(&principal, denied)).status(),
        call(&runtime, &around, request(&principal, denied)).status(),
    ] {
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    fastest_rounds(&[
        ("router without layer", &|| {
            black_box(call(&runtime, &bare, request(&principal, allowed)));
        }),
        ("router with a do-nothing layer", &|| {
            black_box(call(&runtime, &noop, request(&principal, allowed)));
        }),
        ("allowlist with Router::layer", &|| {
            black_box(call(&runtime, &per_route, request(&principal, allowed)));
        }),
        ("allowlist around the router", &|| {
            black_box(call(&runtime, &around, request(&principal, allowed)));
        }),
    ]);

    let mut group = c.benchmark_group("layer");
    group.bench_function("router_without_layer", |b| {
        b.iter(|| black_box(call(&runtime, &bare, request(&principal, allowed))))
    });
    group.bench_function("router_with_noop_layer", |b| {
        b.iter(|| black_box(call(&runtime, &noop, request(&principal, allowed))))
    });
    group.bench_function("router_with_layer_allowed", |b| {
        b.iter(|| black_box(call(&runtime, &per_route, request(&principal, allowed))))
    });
    group.bench_function("layer_around_router_allowed", |b| {
        b.iter(|| black_box(call(&runtime, &around, request(&principal, allowed))))
    });
    group.bench_function("router_with_layer_denied", |b| {
        b.iter(|| black_box(call(&runtime, &per_route, request(&principal, denied))))
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
