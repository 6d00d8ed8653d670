//! Mistakes in the stack fail closed, or say so loudly: one test per mistake a new user
//! made while wiring the allowlist from the docs alone. Warnings are captured on the
//! `tower_ip_allowlist::wiring` target.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::capture::Capture;
use http::StatusCode;
use tower::ServiceExt;
use tower_ip_allowlist::layer::{AllowlistLayer, RequireIdentityLayer};
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Identity;
use tower_ip_allowlist::snapshot::{DenyReason, SnapshotHandle};
use tower_ip_allowlist::testing::TestRequest;
use tracing_subscriber::layer::SubscriberExt;

/// The application's own session-style user, in its own tenant.
#[derive(Debug, Clone)]
struct User {
    name: String,
    tenant: Option<String>,
}

impl Identity for User {
    fn user_id(&self) -> &str {
        &self.name
    }
    fn group_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::empty()
    }
    fn organization_id(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

/// alice may call only from 203.0.113.0/24, in the default organization.
fn policies() -> SnapshotHandle {
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("vpn")
            .sources(["203.0.113.0/24"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    handle
}

/// The application's session layer: a `session=<user>` cookie becomes a `User`.
async fn session(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.strip_prefix("session="))
        .map(|name| User {
            name: name.to_owned(),
            tenant: None,
        });
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

fn alice_from(peer: &str) -> http::Request<Body> {
    http::Request::get("/")
        .header("cookie", "session=alice")
        .body(Body::empty())
        .unwrap()
        .with_peer(peer)
}

/// A request with no identity and no credentials.
fn anonymous_from(peer: &str) -> http::Request<Body> {
    anonymous_to("/", peer)
}

/// The same, for `path`.
fn anonymous_to(path: &str, peer: &str) -> http::Request<Body> {
    http::Request::get(path)
        .body(Body::empty())
        .unwrap()
        .with_peer(peer)
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::new("tower_ip_allowlist::wiring");
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    (capture, guard)
}

fn warned_about(capture: &Capture, text: &str) -> bool {
    capture
        .events()
        .iter()
        .any(|event| event.get("message").is_some_and(|m| m.contains(text)))
}

#[tokio::test(flavor = "current_thread")]
async fn a_forgotten_with_identity_fails_closed_and_says_why() {
    let (log, _guard) = capture();
    // The layer reads `Principal`, the application inserts `User`.
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(AllowlistLayer::new(policies()).credentials_cookie("session"))
        .layer(middleware::from_fn(session));
    let response = app.clone().oneshot(alice_from("192.0.2.1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "fails closed");
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::Unauthenticated)
    );
    assert!(warned_about(&log, "with_identity"), "{:?}", log.events());

    // Fixed: alice is held to her policy.
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(AllowlistLayer::new(policies()).with_identity::<User>())
        .layer(middleware::from_fn(session));
    let response = app.clone().oneshot(alice_from("192.0.2.1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app.oneshot(alice_from("203.0.113.5")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn authentication_on_the_wrong_side_fails_closed_and_says_why() {
    let (log, _guard) = capture();
    // `Router::layer` wraps outward: the last added runs first. Here the allowlist runs
    // before the session layer, so it never sees the user.
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(middleware::from_fn(session))
        .layer(
            AllowlistLayer::new(policies())
                .with_identity::<User>()
                .credentials_cookie("session"),
        );
    let response = app.oneshot(alice_from("192.0.2.1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        warned_about(&log, "add the authentication layer outside the allowlist"),
        "{:?}",
        log.events()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn with_public_routes_the_mistake_is_still_loud() {
    let (log, _guard) = capture();
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(middleware::from_fn(session))
        .layer(
            AllowlistLayer::new(policies())
                .with_identity::<User>()
                .allow_anonymous()
                .credentials_cookie("session"),
        );
    let response = app.clone().oneshot(alice_from("192.0.2.1")).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "anonymous requests are allowed here"
    );
    assert!(warned_about(&log, "session cookie"), "{:?}", log.events());
    // A request with no credentials at all is not a mistake: nothing said.
    log.clear();
    assert_eq!(
        app.oneshot(anonymous_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert!(log.events().is_empty(), "{:?}", log.events());
}

#[tokio::test(flavor = "current_thread")]
async fn an_identity_in_another_organization_than_the_policies_is_refused() {
    // The application's identity names its own tenant while the policies were
    // published to the default organization, and no TenantLayer says otherwise: the
    // service is single-tenant, and the identity is refused rather than let through
    // past policies that could never apply to it.
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(AllowlistLayer::new(policies()).with_identity::<User>());
    let alice = User {
        name: "alice".into(),
        tenant: Some("acme".into()),
    };
    let request = anonymous_from("192.0.2.1").with_identity(alice.clone());
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::OrganizationMismatch)
    );
    // In acme's tenant, alice is in acme, where no policy names her.
    let request = anonymous_from("192.0.2.1")
        .with_identity(alice)
        .for_tenant("acme");
    assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn shared_identities_and_the_generic_guard() {
    // Session stores hand out `Arc`s: the allowlist reads them as the user itself.
    let app = Router::new()
        .route("/", get(|| async { "in" }))
        .layer(AllowlistLayer::new(policies()).with_identity::<Arc<User>>());
    let alice = Arc::new(User {
        name: "alice".into(),
        tenant: None,
    });
    let from = |peer: &str| {
        http::Request::get("/")
            .body(Body::empty())
            .unwrap()
            .with_peer(peer)
            .with_identity(Arc::clone(&alice))
    };
    assert_eq!(
        app.clone()
            .oneshot(from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.oneshot(from("203.0.113.1")).await.unwrap().status(),
        StatusCode::OK
    );

    // The identity-generic guard, for stacks that allow anonymous requests elsewhere.
    let app = Router::new()
        .route("/account", get(|| async { "yours" }))
        .route_layer(RequireIdentityLayer::new().with_identity::<User>())
        .route("/", get(|| async { "public" }))
        .layer(
            AllowlistLayer::new(policies())
                .with_identity::<User>()
                .allow_anonymous(),
        );
    let get = |path: &str| anonymous_to(path, "192.0.2.1");
    assert_eq!(
        app.clone().oneshot(get("/")).await.unwrap().status(),
        StatusCode::OK
    );
    let refused = app.clone().oneshot(get("/account")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        refused.headers()["content-type"],
        "application/vnd.api+json"
    );
    let bob = get("/account").with_identity(User {
        name: "bob".into(),
        tenant: None,
    });
    assert_eq!(app.oneshot(bob).await.unwrap().status(), StatusCode::OK);
}

/// The demo's stack of deciding layers (client address, tenant, site list, JWT,
/// allowlist, resource list, handlers reading both) decides where the request comes from and whose it is
/// once: every later layer and extractor reads what was recorded.
#[tokio::test]
async fn the_full_stack_resolves_the_client_address_and_the_tenant_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::extract::ConnectInfo;
    use tower_ip_allowlist::client_ip::{ClientIp, ClientIpLayer, ClientIpResolver};
    use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, TokenClaims};
    use tower_ip_allowlist::lists::{ResourceAllowlistLayer, SiteAllowlistLayer};
    use tower_ip_allowlist::policy::{ResourceId, SiteList, SourceList};
    use tower_ip_allowlist::tenant::{Tenant, TenantLayer, TenantResolver};

    const SECRET: &[u8] = b"wiring-test-secret-wiring-test-secret";
    const MEDIA: &str = "/media/{project}";
    let client = "203.0.113.9";
    let allowed = || SourceList::parse(["203.0.113.0/24"]).unwrap();
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("vpn")
            .sources(["203.0.113.0/24"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    org.site = Some(SiteList {
        enabled: true,
        list: allowed(),
    });
    org.resources.insert(ResourceId::from("apollo"), allowed());
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);

    let tenant_lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&tenant_lookups);
    let tenants = TenantResolver::custom(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        Some(OrgId::default())
    });
    let proxies = ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .build();
    let app =
        Router::new()
            .route(
                MEDIA,
                get(|ip: ClientIp, tenant: Tenant| async move {
                    format!("{} {}", ip.addr, tenant.org())
                }),
            )
            .route_layer(
                ResourceAllowlistLayer::path_param(handle.clone(), MEDIA, "project").unwrap(),
            )
            .layer(AllowlistLayer::new(handle.clone()))
            .layer(JwtAuthLayer::hs256(SECRET))
            .layer(SiteAllowlistLayer::new(handle.clone()))
            .layer(TenantLayer::new(tenants))
            .layer(ClientIpLayer::new(proxies));

    let resolutions = Capture::new("tower_ip_allowlist::client_ip");
    let subscriber = tracing_subscriber::registry()
        .with(resolutions.clone())
        .with(tracing_subscriber::filter::LevelFilter::TRACE);
    let _guard = tracing::subscriber::set_default(subscriber);

    let token = encode_hs256(SECRET, &TokenClaims::new("alice", Duration::from_secs(600))).unwrap();
    let mut request = Request::get("/media/apollo")
        .header("authorization", format!("Bearer {token}"))
        .header("x-forwarded-for", client)
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(
        "10.0.0.1:40000".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(body, format!("{client} default").as_bytes());
    assert_eq!(
        tenant_lookups.load(Ordering::SeqCst),
        1,
        "the tenant is resolved once"
    );
    assert_eq!(
        resolutions.events().len(),
        1,
        "the client address is resolved once: {:?}",
        resolutions.events()
    );
}

/// acme's requests, by a custom resolver standing for any (a host, a path).
fn acme_tenant() -> tower_ip_allowlist::tenant::TenantLayer {
    use tower_ip_allowlist::tenant::{TenantLayer, TenantResolver};
    TenantLayer::new(TenantResolver::fixed("acme"))
}

/// Asserts that `response` is the `TenantLayer`'s refusal of a tenant decided twice,
/// not just any 500.
async fn assert_tenant_refusal(response: Response) {
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let document: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        document["errors"][0]["code"], "tenantDecidedTwice",
        "{document}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_tenant_decided_after_a_layer_that_decided_with_the_default_is_refused() {
    use tower_ip_allowlist::lists::SiteAllowlistLayer;
    use tower_ip_allowlist::principal::Principal;
    use tower_ip_allowlist::tenant::{TenantLayer, TenantResolver};

    let (log, _guard) = capture();
    let alice = || anonymous_from("203.0.113.5").with_identity(Principal::new("alice"));
    let route = || Router::new().route("/", get(|| async { "in" }));

    // The TenantLayer inside the allowlist: the allowlist decided with the default
    // organization, and acme's tenant would now reach the handlers.
    let app = route()
        .layer(acme_tenant())
        .layer(AllowlistLayer::new(policies()));
    assert_tenant_refusal(app.oneshot(alice()).await.unwrap()).await;
    assert!(
        warned_about(&log, "put the TenantLayer outside"),
        "{:?}",
        log.events()
    );
    // On a route exempt from the policies too: the caller's organization was checked
    // against the default one.
    let app = route()
        .route("/hooks", get(|| async { "hook" }))
        .layer(acme_tenant())
        .layer(AllowlistLayer::new(policies()).exempt("/hooks"));
    let hook = anonymous_to("/hooks", "203.0.113.5").with_identity(Principal::new("alice"));
    assert_tenant_refusal(app.oneshot(hook).await.unwrap()).await;
    // The same mistake where the tenant is the default organization anyway: nothing
    // was decided differently.
    let app = route()
        .layer(TenantLayer::new(TenantResolver::single()))
        .layer(AllowlistLayer::new(policies()));
    assert_eq!(app.oneshot(alice()).await.unwrap().status(), StatusCode::OK);

    // A site list outside the TenantLayer: it checked the default organization's list.
    let app = route()
        .layer(acme_tenant())
        .layer(SiteAllowlistLayer::new(policies()));
    assert_tenant_refusal(app.oneshot(alice()).await.unwrap()).await;

    // Two TenantLayers: the second may agree, never decide otherwise.
    let app = route().layer(acme_tenant()).layer(acme_tenant());
    assert_eq!(app.oneshot(alice()).await.unwrap().status(), StatusCode::OK);
    let app = route()
        .layer(acme_tenant())
        .layer(TenantLayer::new(TenantResolver::fixed("beta")));
    assert_tenant_refusal(app.oneshot(alice()).await.unwrap()).await;

    // In the documented order, acme is acme everywhere (alice is not in acme's
    // policies, and acme has none).
    let app = route()
        .layer(AllowlistLayer::new(policies()))
        .layer(SiteAllowlistLayer::new(policies()))
        .layer(acme_tenant());
    let response = app
        .oneshot(
            anonymous_from("192.0.2.1")
                .with_identity(Principal::new("alice").with_organization("acme")),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn a_principal_the_allowlist_cannot_read_is_refused_even_on_public_routes() {
    use tower_ip_allowlist::principal::Principal;

    let (log, _guard) = capture();
    // The JWT or API-token layer recorded a `Principal` (and, for a token, removed the
    // header); the allowlist reads the application's `User`, and lets anonymous
    // requests through.
    let app = Router::new().route("/", get(|| async { "in" })).layer(
        AllowlistLayer::new(policies())
            .with_identity::<User>()
            .allow_anonymous(),
    );
    let request = anonymous_from("192.0.2.1").with_identity(Principal::new("alice"));
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "not anonymous");
    assert!(
        warned_about(&log, "authenticated as a `Principal`"),
        "{:?}",
        log.events()
    );
    // A request with no identity at all is still anonymous.
    assert_eq!(
        app.oneshot(anonymous_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_anonymous_request_notes_no_tenant_decision() {
    // The TenantLayer misplaced inside the allowlist: where the allowlist decides with
    // the tenant (a caller's organization, exempt routes too: the test above), the
    // tenant is decided twice; an anonymous request decided nothing with it, and
    // acme's tenant is the only one. (Nothing here is refused: the refusal's WARN is
    // limited per process, and the test above waits for it.)
    let app = Router::new()
        .route("/", get(|| async { "public" }))
        .route("/hooks", get(|| async { "hook" }))
        .layer(acme_tenant())
        .layer(
            AllowlistLayer::new(policies())
                .exempt("/hooks")
                .allow_anonymous(),
        );
    for path in ["/hooks", "/"] {
        let anonymous = anonymous_to(path, "203.0.113.5");
        let response = app.clone().oneshot(anonymous).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // A site list's exempt route decides nothing with the tenant either (its other
    // routes do: the test above).
    let app = Router::new()
        .route("/hooks", get(|| async { "hook" }))
        .layer(acme_tenant())
        .layer(tower_ip_allowlist::lists::SiteAllowlistLayer::new(policies()).exempt("/hooks"));
    let hook = anonymous_to("/hooks", "203.0.113.5");
    assert_eq!(app.oneshot(hook).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn an_exempt_route_still_refuses_another_organizations_identity() {
    use tower_ip_allowlist::principal::Principal;

    let app = Router::new()
        .route("/hooks", get(|| async { "in" }))
        .layer(AllowlistLayer::new(policies()).exempt("/hooks"));
    let hook = |principal: Option<Principal>| {
        let request = anonymous_to("/hooks", "192.0.2.1");
        match principal {
            Some(principal) => request.with_identity(principal),
            None => request,
        }
    };
    // Exempt from the policies: alice from outside her range, and anyone.
    for caller in [Some(Principal::new("alice")), None] {
        let response = app.clone().oneshot(hook(caller)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Not from the tenant: acme's credentials on the default organization's service.
    let response = app
        .oneshot(hook(Some(
            Principal::new("alice").with_organization("acme"),
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.extensions().get::<DenyReason>(),
        Some(&DenyReason::OrganizationMismatch)
    );
}
