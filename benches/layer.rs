//! A request through an axum router with the allowlist layer, against the same router
//! without it, in the same run: the difference is the layer's overhead.
//!
//! `cargo bench --bench layer`; the figures are summarized in BENCHMARKS.md.

use std::hint::black_box;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, StatusCode};
use tower::ServiceExt;
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

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

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
    let gated: Router = bare.clone().layer(AllowlistLayer::new(handle));
    // The cost of any layer at all in an axum router (it re-boxes each route), for
    // reference: a layer that does nothing.
    let noop: Router = bare.clone().layer(tower::util::MapRequestLayer::new(
        |request: Request<Body>| request,
    ));

    let principal = Principal::new("alice").with_groups(["g1", "g2", "g3", "g4", "g5"]);
    let allowed: SocketAddr = "10.0.16.16:40000".parse().unwrap();
    let denied: SocketAddr = "192.0.2.1:40000".parse().unwrap();

    // Both routers answer as expected before anything is timed.
    runtime.block_on(async {
        let ok = gated
            .clone()
            .oneshot(request(&principal, allowed))
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let no = gated
            .clone()
            .oneshot(request(&principal, denied))
            .await
            .unwrap();
        assert_eq!(no.status(), StatusCode::FORBIDDEN);
    });

    let mut group = c.benchmark_group("layer");
    group.bench_function("router_without_layer", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    bare.clone()
                        .oneshot(request(&principal, allowed))
                        .await
                        .unwrap(),
                )
            })
        })
    });
    group.bench_function("router_with_noop_layer", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    noop.clone()
                        .oneshot(request(&principal, allowed))
                        .await
                        .unwrap(),
                )
            })
        })
    });
    group.bench_function("router_with_layer_allowed", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    gated
                        .clone()
                        .oneshot(request(&principal, allowed))
                        .await
                        .unwrap(),
                )
            })
        })
    });
    group.bench_function("router_with_layer_denied", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    gated
                        .clone()
                        .oneshot(request(&principal, denied))
                        .await
                        .unwrap(),
                )
            })
        })
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
