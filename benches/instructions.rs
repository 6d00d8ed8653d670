//! Instructions per request, counted by callgrind through gungraun: the decision alone
//! and the layer in an axum router, beside the baselines the issue of record compares
//! with (the bare router, a do-nothing layer, tower-http's bearer check) and a
//! do-nothing layer that holds an `Arc` as configured layers do, all in the same run. Instruction counts do not drift with the machine's speed, as wall-clock
//! times do here by ±30 %.
//!
//! Each bench builds its service and requests in a setup that is not counted, then
//! sends each request through a clone of the service (as a server does per request)
//! and drops the response: what is counted is what a server pays per request. The
//! layer benches send [`REQUESTS`] requests in a row and `overheads.py` prints the
//! mean; the decision benches decide once, and the compile benches compile one
//! organization once.
//!
//! Needs valgrind and the runner of the same version as the `gungraun` dev-dependency:
//!
//! ```text
//! cargo install --locked gungraun-runner --version 0.17.2
//! cargo bench --bench instructions
//! python3 benches/overheads.py      # the differences from the baselines
//! ```
//!
//! The figures are summarized in BENCHMARKS.md.

// gungraun's macros generate undocumented items.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use gungraun::{library_benchmark, library_benchmark_group, main};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::{CompiledOrg, SnapshotHandle};

mod common;

use common::GROUPS;

/// The benches' organization (see `common::org`), built or the bench cannot start.
fn org(policies: u32, sources: u32) -> OrgPolicies {
    common::org(policies, sources, None).expect("a valid policy")
}

fn handle(policies: u32, sources: u32) -> SnapshotHandle {
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org(policies, sources));
    handle
}

/// In policy p5 (group g5, the caller's last group), its second source.
fn allowed() -> SocketAddr {
    SocketAddr::new(
        Ipv4Addr::from(0x2000_0000 + (5 << 20) + (1 << 4)).into(),
        40000,
    )
}

fn denied() -> SocketAddr {
    "192.0.2.1:40000".parse().expect("an address")
}

fn request(peer: SocketAddr) -> Request<Body> {
    let mut request = Request::get("/")
        .header("authorization", "Bearer secret")
        .body(Body::empty())
        .expect("a request");
    request
        .extensions_mut()
        .insert(Principal::new("alice").with_groups(GROUPS));
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn bare() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

/// Leaked, so that dropping the service is not counted (a server keeps it).
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// One request through a clone of `service`, polled to completion on this thread (every
/// service here answers without waiting).
fn call<S, B>(service: &S, request: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
{
    let future = pin!(service.clone().oneshot(request));
    let mut future = future;
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => unreachable!("every service in this bench answers at once"),
    }
}

/// Requests sent per layer bench; `overheads.py` divides the count by it. A single
/// request's count moves by a few hundred instructions from one run of the same binary
/// to the next (the heap's state after a setup whose hash maps are seeded at random
/// decides which path `malloc` takes); the mean of several requests in a row, after a
/// first one outside the count, is steady, and closer to what a busy server pays.
const REQUESTS: usize = 16;

/// A service and the requests to send through it, checked to answer `expect` once
/// outside the count.
fn fixture<S, B>(service: S, peer: SocketAddr, expect: StatusCode) -> Fixture<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
{
    assert_eq!(call(&service, request(peer)).status(), expect);
    (
        leak(service),
        (0..REQUESTS).map(|_| request(peer)).collect(),
    )
}

type Fixture<S> = (&'static S, Vec<Request<Body>>);

/// Sends every request through a clone of `service`, one after the other.
fn send_all<S, B>(service: &S, requests: Vec<Request<Body>>) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
{
    let mut status = StatusCode::OK;
    for request in requests {
        status = black_box(call(service, request)).status();
    }
    status
}

fn bare_router() -> Fixture<Router> {
    fixture(bare(), allowed(), StatusCode::OK)
}

/// The cost of any layer at all added with `Router::layer`.
fn noop_layer() -> Fixture<Router> {
    let noop = tower::layer::layer_fn(|inner| inner);
    fixture(bare().layer(noop), allowed(), StatusCode::OK)
}

/// A do-nothing layer that holds state, as every configured layer does (here an `Arc`,
/// as the allowlist's configuration is): with `Router::layer` and no `with_state`, axum
/// clones the layer into a new box on every request, which a zero-sized layer such as
/// the one above does not pay. Its service hands the inner future on unwrapped.
#[derive(Clone)]
struct Stateful<S> {
    inner: S,
    _state: Arc<u64>,
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for Stateful<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.inner.call(request)
    }
}

fn stateful() -> impl Layer<axum::routing::Route, Service = Stateful<axum::routing::Route>> + Clone
{
    let state = Arc::new(0);
    tower::layer::layer_fn(move |inner| Stateful {
        inner,
        _state: Arc::clone(&state),
    })
}

fn stateful_layer() -> Fixture<Router> {
    fixture(bare().layer(stateful()), allowed(), StatusCode::OK)
}

fn validate_layer() -> Fixture<Router> {
    #[allow(deprecated)] // `bearer` is deprecated in favour of a custom validator.
    let layer = ValidateRequestHeaderLayer::bearer("secret");
    fixture(bare().layer(layer), allowed(), StatusCode::OK)
}

fn allowlist_layer() -> Fixture<Router> {
    let layer = AllowlistLayer::new(handle(100, 100));
    fixture(bare().layer(layer), allowed(), StatusCode::OK)
}

fn allowlist_layer_denied() -> Fixture<Router> {
    let layer = AllowlistLayer::new(handle(100, 100));
    fixture(bare().layer(layer), denied(), StatusCode::FORBIDDEN)
}

/// The forms above, as `axum::serve` runs them: `into_make_service` calls
/// `with_state(())`, which turns every handler into a route once ("rather than doing
/// that per request", in axum's words). Without it, as in the issue's measurement,
/// axum converts the handler and applies the route's layers on every request.
fn served(router: Router) -> Router {
    router.with_state(())
}

fn bare_served() -> Fixture<Router> {
    fixture(served(bare()), allowed(), StatusCode::OK)
}

fn noop_layer_served() -> Fixture<Router> {
    let noop = tower::layer::layer_fn(|inner| inner);
    fixture(served(bare().layer(noop)), allowed(), StatusCode::OK)
}

fn stateful_layer_served() -> Fixture<Router> {
    fixture(served(bare().layer(stateful())), allowed(), StatusCode::OK)
}

fn validate_layer_served() -> Fixture<Router> {
    #[allow(deprecated)]
    let layer = ValidateRequestHeaderLayer::bearer("secret");
    fixture(served(bare().layer(layer)), allowed(), StatusCode::OK)
}

fn allowlist_layer_served() -> Fixture<Router> {
    let layer = AllowlistLayer::new(handle(100, 100));
    fixture(served(bare().layer(layer)), allowed(), StatusCode::OK)
}

fn allowlist_around_served() -> Fixture<Around<AllowlistLayer>> {
    let layer = AllowlistLayer::new(handle(100, 100));
    fixture(layer.layer(served(bare())), allowed(), StatusCode::OK)
}

type Around<L> = <L as Layer<Router>>::Service;

#[allow(deprecated)]
type Validate = ValidateRequestHeaderLayer<tower_http::auth::require_authorization::Bearer<Body>>;

fn validate_around() -> Fixture<Around<Validate>> {
    #[allow(deprecated)]
    let layer = ValidateRequestHeaderLayer::bearer("secret");
    fixture(layer.layer(bare()), allowed(), StatusCode::OK)
}

fn validate_around_served() -> Fixture<Around<Validate>> {
    #[allow(deprecated)]
    let layer = ValidateRequestHeaderLayer::bearer("secret");
    fixture(layer.layer(served(bare())), allowed(), StatusCode::OK)
}

fn allowlist_around() -> Fixture<Around<AllowlistLayer>> {
    let layer = AllowlistLayer::new(handle(100, 100));
    fixture(layer.layer(bare()), allowed(), StatusCode::OK)
}

fn allowlist_around_denied() -> Fixture<Around<AllowlistLayer>> {
    let layer = AllowlistLayer::new(handle(100, 100));
    fixture(layer.layer(bare()), denied(), StatusCode::FORBIDDEN)
}

#[library_benchmark]
#[bench::bare_router(setup = bare_router)]
#[bench::noop_layer(setup = noop_layer)]
#[bench::stateful_layer(setup = stateful_layer)]
#[bench::validate_layer(setup = validate_layer)]
#[bench::allowlist_layer(setup = allowlist_layer)]
#[bench::allowlist_layer_denied(setup = allowlist_layer_denied)]
#[bench::bare_served(setup = bare_served)]
#[bench::noop_layer_served(setup = noop_layer_served)]
#[bench::stateful_layer_served(setup = stateful_layer_served)]
#[bench::validate_layer_served(setup = validate_layer_served)]
#[bench::allowlist_layer_served(setup = allowlist_layer_served)]
fn router((service, requests): Fixture<Router>) -> StatusCode {
    send_all(service, requests)
}

#[library_benchmark]
#[bench::validate_around(setup = validate_around)]
#[bench::validate_around_served(setup = validate_around_served)]
fn validate((service, requests): Fixture<Around<Validate>>) -> StatusCode {
    send_all(service, requests)
}

#[library_benchmark]
#[bench::allowlist_around(setup = allowlist_around)]
#[bench::allowlist_around_denied(setup = allowlist_around_denied)]
#[bench::allowlist_around_served(setup = allowlist_around_served)]
fn around((service, requests): Fixture<Around<AllowlistLayer>>) -> StatusCode {
    send_all(service, requests)
}

/// The decision alone, snapshot load included: a caller with five groups, allowed
/// through the last one.
fn decision_setup(policies: u32, sources: u32) -> (&'static SnapshotHandle, IpAddr) {
    (leak(handle(policies, sources)), allowed().ip())
}

#[library_benchmark]
#[bench::p100_s100(setup = decision_setup, args = (100, 100))]
#[bench::p100_s10000(setup = decision_setup, args = (100, 10_000))]
#[bench::p1000_s10(setup = decision_setup, args = (1000, 10))]
fn decision((handle, addr): (&'static SnapshotHandle, IpAddr)) -> bool {
    let snapshot = handle.load();
    black_box(snapshot.decide(None, black_box("alice"), black_box(GROUPS), Some(addr))).is_allowed()
}

/// The decision's other outcomes at 100 × 100: a caller of five targeted groups from an
/// address none of their policies covers (refused), and a caller of five groups no
/// policy names (no policy: every name is ruled out or looked up).
fn other_outcomes_setup(groups: [&'static str; 5], addr: IpAddr) -> DecisionCase {
    (leak(handle(100, 100)), groups, addr)
}

type DecisionCase = (&'static SnapshotHandle, [&'static str; 5], IpAddr);

#[library_benchmark]
#[bench::refused(setup = other_outcomes_setup, args = (GROUPS, denied().ip()))]
#[bench::no_policy(setup = other_outcomes_setup, args = (["x1", "x2", "x3", "x4", "x5"], allowed().ip()))]
fn decision_outcomes((handle, groups, addr): DecisionCase) -> bool {
    let snapshot = handle.load();
    black_box(snapshot.decide(None, black_box("alice"), black_box(groups), Some(addr))).is_allowed()
}

/// Compiling an organization (what publishing a change and a replica's cold start pay
/// per organization): one policy of five sources, as most organizations of a large
/// deployment have, and 100 × 100.
fn compile_setup(policies: u32, sources: u32) -> &'static OrgPolicies {
    leak(org(policies, sources))
}

#[library_benchmark]
#[bench::compile_p1_s5(setup = compile_setup, args = (1, 5))]
#[bench::compile_p100_s100(setup = compile_setup, args = (100, 100))]
fn compile(org: &'static OrgPolicies) -> usize {
    black_box(CompiledOrg::compile(org)).active_policies()
}

library_benchmark_group!(name = decide; benchmarks = decision, decision_outcomes, compile);
library_benchmark_group!(name = layer; benchmarks = router, validate, around);

main!(library_benchmark_groups = decide, layer);
