//! The layer in a real axum server on loopback, and through `MockConnectInfo`.

mod common;

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use common::{serve, serve_on};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt;
use tower_ip_allowlist::client_ip::{
    ClientIp, ClientIpLayer, ClientIpOutcome, ClientIpResolver, ClientIpSource, ForwardedHeader,
};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::{DenyReason, SnapshotHandle};
use tower_ip_allowlist::tenant::{TenantLayer, TenantResolver};

/// Stand-in authentication: `x-user`, `x-groups` (comma-separated) and `x-org` headers.
async fn header_auth(mut request: Request, next: Next) -> Response {
    let (user, groups, org) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header("x-user"), header("x-groups"), header("x-org"))
    };
    if let Some(user) = user {
        let mut principal = Principal::new(user);
        if let Some(groups) = groups {
            principal = principal.with_groups(groups.split(','));
        }
        if let Some(org) = org {
            principal = principal.with_organization(org);
        }
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

async fn whoami(ip: ClientIp) -> String {
    match ip.source {
        ClientIpSource::Header { header, hop } => format!("{} {:?}#{hop}", ip.addr, header),
        source => format!("{} {source:?}", ip.addr),
    }
}

/// alice: 127.0.0.2 only. staff group (and its child interns): 203.0.113.0/24.
/// carol in org "acme": 127.0.0.3 only.
fn policies() -> SnapshotHandle {
    let handle = SnapshotHandle::default();
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("alice-desk")
            .sources(["127.0.0.2"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    org.insert_policy(
        Policy::builder("office")
            .sources(["203.0.113.0/24", "2001:db8::/32"])
            .unwrap()
            .group("staff")
            .build()
            .unwrap(),
    );
    org.groups.set_parents("interns", ["staff"]).unwrap();
    handle.set_org(OrgId::default(), &org);
    let mut acme = OrgPolicies::default();
    acme.insert_policy(
        Policy::builder("carol-desk")
            .sources(["127.0.0.3"])
            .unwrap()
            .user("carol")
            .build()
            .unwrap(),
    );
    handle.set_org(OrgId::from("acme"), &acme);
    handle
}

fn app(layer: AllowlistLayer) -> Router {
    Router::new()
        .route("/", get(whoami))
        .layer(layer)
        .layer(middleware::from_fn(header_auth))
        .layer(TenantLayer::new(TenantResolver::custom(|head| {
            // The tests' tenant is named by a header (a real service uses the host).
            let tenant = head.headers.get("x-tenant").and_then(|v| v.to_str().ok());
            Some(tenant.map_or_else(OrgId::default, OrgId::from))
        })))
}

/// One HTTP/1.1 request from a client socket bound to `from`.
async fn get_from(
    from: IpAddr,
    server: SocketAddr,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::get("/").header("host", "test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// alice passes from 127.0.0.2 only, with no hint of it in the 403; bob, whom no
/// policy names, passes from anywhere.
async fn alice_from_her_desk_only(server: SocketAddr) {
    let (status, body) = get_from(ip("127.0.0.2"), server, &[("x-user", "alice")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "127.0.0.2 Peer");

    let (status, body) = get_from(ip("127.0.0.3"), server, &[("x-user", "alice")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains(r#""code":"ipNotAllowed""#), "{body}");
    // No hint of which addresses would be allowed.
    assert!(!body.contains("127.0.0.2"), "{body}");

    let (status, _) = get_from(ip("127.0.0.3"), server, &[("x-user", "bob")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn peer_address_over_loopback() {
    let handle = policies();
    let server = serve(app(AllowlistLayer::new(handle.clone()))).await;

    alice_from_her_desk_only(server).await;
    // An anonymous request is refused by default: a forgotten or misplaced
    // authentication layer fails closed...
    let (status, body) = get_from(ip("127.0.0.3"), server, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains(r#""code":"unauthenticated""#), "{body}");
    // ...and goes through where the layer is told routes are public.
    let public = serve(app(AllowlistLayer::new(handle.clone()).allow_anonymous())).await;
    let (status, _) = get_from(ip("127.0.0.3"), public, &[]).await;
    assert_eq!(status, StatusCode::OK);

    // Groups and their children, and organizations kept apart.
    let (status, _) = get_from(
        ip("127.0.0.2"),
        server,
        &[("x-user", "dan"), ("x-groups", "interns")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_from(
        ip("127.0.0.3"),
        server,
        &[("x-user", "carol"), ("x-org", "acme"), ("x-tenant", "acme")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // carol's credentials on the default organization's requests: refused as such.
    let (status, body) = get_from(
        ip("127.0.0.3"),
        server,
        &[("x-user", "carol"), ("x-org", "acme")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("organizationMismatch"), "{body}");
    let (status, _) = get_from(
        ip("127.0.0.2"),
        server,
        &[("x-user", "carol"), ("x-org", "acme"), ("x-tenant", "acme")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_from(
        ip("127.0.0.2"),
        server,
        &[("x-user", "alice"), ("x-org", "acme"), ("x-tenant", "acme")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "alice has no policy in acme");

    // A published change is enforced on the very next request.
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("alice-desk")
            .sources(["127.0.0.3"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    handle.set_org(OrgId::default(), &org);
    let (status, _) = get_from(ip("127.0.0.3"), server, &[("x-user", "alice")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_from(ip("127.0.0.2"), server, &[("x-user", "alice")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn around_the_whole_router() {
    // The layer around the router rather than inside each route (`Router::layer`), with
    // authentication around it: the same decisions.
    let router = Router::new().route("/", get(whoami));
    let app = tower::ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(middleware::from_fn(header_auth))
        .layer(AllowlistLayer::new(policies()))
        .service(router);
    alice_from_her_desk_only(serve(app).await).await;
}

#[tokio::test]
async fn spoofed_forwarded_headers_are_ignored_by_default() {
    let server = serve(app(AllowlistLayer::new(policies()))).await;
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.5"),
        ("forwarded", "for=203.0.113.5"),
        ("x-real-ip", "203.0.113.5"),
    ] {
        let (status, _) = get_from(
            ip("127.0.0.3"),
            server,
            &[("x-user", "dan"), ("x-groups", "staff"), (name, value)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name} must not be trusted");
    }
}

#[tokio::test]
async fn forwarded_headers_behind_a_trusted_proxy() {
    let proxy = ClientIpResolver::trusted_proxies(["127.0.0.2"])
        .unwrap()
        .header(ForwardedHeader::XForwardedFor);
    let server = serve(app(AllowlistLayer::new(policies()).client_ip(proxy))).await;
    let staff = [("x-user", "dan"), ("x-groups", "staff")];

    // Through the proxy: the rightmost untrusted entry is the client.
    let (status, body) = get_from(
        ip("127.0.0.2"),
        server,
        &[staff[0], staff[1], ("x-forwarded-for", "203.0.113.5")],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "203.0.113.5 XForwardedFor#1")
    );

    // A client that prepends an allowed address gains nothing: the proxy appended the real one.
    let (status, _) = get_from(
        ip("127.0.0.2"),
        server,
        &[
            staff[0],
            staff[1],
            ("x-forwarded-for", "203.0.113.5, 192.0.2.66"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Header lines are joined in order.
    let (status, body) = get_from(
        ip("127.0.0.2"),
        server,
        &[
            staff[0],
            staff[1],
            ("x-forwarded-for", "192.0.2.66"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "203.0.113.9 XForwardedFor#1")
    );

    // IPv4-mapped IPv6 in the header is the IPv4 client.
    let (status, body) = get_from(
        ip("127.0.0.2"),
        server,
        &[
            staff[0],
            staff[1],
            ("x-forwarded-for", "::ffff:203.0.113.7"),
        ],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "203.0.113.7 XForwardedFor#1")
    );

    // A malformed chain: the client is unknown, and a policy applies: deny, never fail open.
    let (status, body) = get_from(
        ip("127.0.0.2"),
        server,
        &[
            staff[0],
            staff[1],
            ("x-forwarded-for", "203.0.113.5, not-an-ip"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("clientIpUnknown"), "{body}");

    // The same header from a peer that is not a trusted proxy is ignored.
    let (status, body) = get_from(
        ip("127.0.0.3"),
        server,
        &[staff[0], staff[1], ("x-forwarded-for", "203.0.113.5")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn dual_stack_socket_cannot_bypass_a_v4_rule() {
    // A server on [::] sees IPv4 clients as ::ffff:a.b.c.d; the rule for 127.0.0.2 must hold.
    let Ok(listener) = std::net::TcpListener::bind("[::]:0") else {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    serve_on(listener, app(AllowlistLayer::new(policies())));
    let server: SocketAddr = SocketAddr::new(ip("127.0.0.1"), port);
    let (status, body) = get_from(ip("127.0.0.2"), server, &[("x-user", "alice")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "127.0.0.2 Peer"));
    let (status, _) = get_from(ip("127.0.0.3"), server, &[("x-user", "alice")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn oneshot(app: Router, user: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = http::Request::get("/").header("x-user", user);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn mock_connect_info() {
    let handle = policies();
    let at = |addr: &str| {
        app(AllowlistLayer::new(handle.clone()))
            .layer(MockConnectInfo(addr.parse::<SocketAddr>().unwrap()))
    };

    let response = oneshot(at("127.0.0.2:1234"), "alice", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = oneshot(at("[::ffff:127.0.0.2]:1234"), "alice", &[]).await;
    assert_eq!(response.status(), StatusCode::OK, "v4-mapped peer");
    let response = oneshot(at("127.0.0.9:1234"), "alice", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::IpNotAllowed)
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.api+json"
    );
    let response = oneshot(at("[2001:db8::5]:1234"), "dan", &[("x-groups", "staff")]).await;
    assert_eq!(response.status(), StatusCode::OK, "v6 range");

    // A gRPC request is refused the gRPC way.
    let response = oneshot(
        at("127.0.0.9:1234"),
        "alice",
        &[("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "7");
}

#[tokio::test]
async fn no_peer_address_is_unknown_and_denied() {
    // No ConnectInfo at all (served without connect info): fail closed for restricted users.
    let app = app(AllowlistLayer::new(policies()));
    let response = oneshot(app.clone(), "alice", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::ClientIpUnknown)
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("clientIpUnknown"));
    // Unrestricted users are not affected.
    let response = oneshot(app, "bob", &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "the handler's ClientIp extractor has nothing to give"
    );
}

#[tokio::test]
async fn custom_rejection_and_route_layer() {
    let layer =
        AllowlistLayer::new(policies()).rejection(|denial: &tower_ip_allowlist::layer::Denial| {
            let mut response = http::Response::new(bytes::Bytes::from_static(b"nope"));
            *response.status_mut() = if denial.grpc {
                StatusCode::OK
            } else {
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
            };
            response
        });
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route_layer(layer)
        .layer(middleware::from_fn(header_auth))
        .layer(MockConnectInfo(
            "127.0.0.9:1".parse::<SocketAddr>().unwrap(),
        ));
    let response = oneshot(app.clone(), "alice", &[]).await;
    assert_eq!(response.status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::IpNotAllowed)
    );
    // route_layer does not run for unmatched paths: the 404 is the router's own.
    let request = http::Request::get("/missing")
        .header("x-user", "alice")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.oneshot(request).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn own_identity_type() {
    #[derive(Clone)]
    struct Session {
        login: String,
    }
    impl tower_ip_allowlist::principal::Identity for Session {
        fn user_id(&self) -> &str {
            &self.login
        }
        fn group_ids(&self) -> impl Iterator<Item = &str> {
            std::iter::empty()
        }
        fn organization_id(&self) -> Option<&str> {
            None
        }
    }
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AllowlistLayer::new(policies()).with_identity::<Session>())
        .layer(middleware::from_fn(
            |mut request: Request, next: Next| async move {
                request.extensions_mut().insert(Session {
                    login: "alice".into(),
                });
                next.run(request).await
            },
        ))
        .layer(MockConnectInfo(
            "127.0.0.9:1".parse::<SocketAddr>().unwrap(),
        ));
    let response = app
        .oneshot(http::Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[test]
fn client_ip_source_is_public() {
    // Handlers can match on how the address was found.
    let ip = ClientIp {
        addr: ip("192.0.2.1"),
        source: ClientIpSource::Peer,
    };
    assert_eq!(ip.source, ClientIpSource::Peer);
}

#[tokio::test]
async fn exempt_paths_skip_the_allowlist() {
    let handle = policies();
    let app = Router::new()
        .route("/", get(|| async { "root" }))
        .route("/health", get(|| async { "ok" }))
        .route("/hooks/{name}", get(|| async { "hook" }))
        .layer(
            AllowlistLayer::new(handle)
                .exempt("/health")
                .exempt("/hooks/*"),
        )
        .layer(middleware::from_fn(header_auth))
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
    for (path, want) in [
        ("/", StatusCode::FORBIDDEN),
        ("/health", StatusCode::OK),
        ("/health/", StatusCode::FORBIDDEN),
        ("/hooks/github", StatusCode::OK),
        ("/hook", StatusCode::FORBIDDEN),
    ] {
        let request = http::Request::get(path)
            .header("x-user", "alice")
            .body(Body::empty())
            .unwrap();
        let status = app.clone().oneshot(request).await.unwrap().status();
        assert_eq!(status, want, "{path}");
    }
}

/// Exempt routes get the same recorded outcome as every other route: the handler sees
/// the client behind the proxy, or an unknown address, never the proxy's.
#[tokio::test]
async fn exempt_routes_see_the_recorded_outcome() {
    let outcome = |outcome: ClientIpOutcome| async move { format!("{:?}", outcome.addr()) };
    let proxies = || ClientIpResolver::trusted_proxies(["10.0.0.1"]).unwrap();
    let routes = || {
        Router::new()
            .route("/open", get(outcome))
            .route("/closed", get(whoami))
    };
    // Resolved once outermost; the allowlist has no resolver of its own.
    let outermost = routes()
        .layer(
            AllowlistLayer::new(policies())
                .allow_anonymous()
                .exempt("/open"),
        )
        .layer(ClientIpLayer::new(proxies()))
        .layer(MockConnectInfo(
            "10.0.0.1:4000".parse::<SocketAddr>().unwrap(),
        ));
    // No ClientIpLayer: the allowlist's own resolver records the outcome, exempt or not.
    let own = routes()
        .layer(
            AllowlistLayer::new(policies())
                .client_ip(proxies())
                .allow_anonymous()
                .exempt("/open"),
        )
        .layer(MockConnectInfo(
            "10.0.0.1:4000".parse::<SocketAddr>().unwrap(),
        ));
    for app in [outermost, own] {
        let get = |path: &str, xff: &str| {
            http::Request::get(path)
                .header("x-forwarded-for", xff)
                .body(Body::empty())
                .unwrap()
        };
        let body = |response: Response| async move {
            String::from_utf8(
                response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap()
        };
        let open = app
            .clone()
            .oneshot(get("/open", "203.0.113.9"))
            .await
            .unwrap();
        assert_eq!(body(open).await, "Some(203.0.113.9)");
        let open = app.clone().oneshot(get("/open", "garbage")).await.unwrap();
        assert_eq!(body(open).await, "None", "unknown, not the proxy");
        let closed = app
            .clone()
            .oneshot(get("/closed", "203.0.113.9"))
            .await
            .unwrap();
        assert_eq!(body(closed).await, "203.0.113.9 XForwardedFor#1");
        let closed = app
            .clone()
            .oneshot(get("/closed", "garbage"))
            .await
            .unwrap();
        assert_eq!(
            closed.status(),
            StatusCode::FORBIDDEN,
            "the extractor refuses"
        );
    }
}

/// A layer configured with its own resolver that disagrees with the one recorded
/// outermost makes the address unknown: stacking never loosens.
#[tokio::test]
async fn conflicting_resolvers_fail_closed() {
    // alice is allowed only from 127.0.0.2. Outermost, nothing is trusted (the client
    // is the peer, 127.0.0.2); the allowlist itself trusts that peer as a proxy and
    // would believe the header's 127.0.0.2 is someone else.
    let app = app(AllowlistLayer::new(policies())
        .client_ip(ClientIpResolver::trusted_proxies(["127.0.0.2"]).unwrap()))
    .layer(ClientIpLayer::new(ClientIpResolver::peer()))
    .layer(MockConnectInfo(
        "127.0.0.2:4000".parse::<SocketAddr>().unwrap(),
    ));
    let response = oneshot(app.clone(), "alice", &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "trusted peer, no header: unknown"
    );
    let response = oneshot(app.clone(), "alice", &[("x-forwarded-for", "192.0.2.1")]).await;
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "they disagree: unknown"
    );
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::ClientIpUnknown)
    );
}
