//! Site and resource lists end to end over loopback, with real JWTs: the site list
//! before authentication, site AND policy, a resource list on one project only.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use common::serve;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, RequirePrincipalLayer, TokenClaims};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::lists::{ResourceAllowlistLayer, SiteAllowlistLayer};
use tower_ip_allowlist::policy::{
    Enforcement, OrgId, OrgPolicies, Policy, ResourceId, SiteList, SourceList,
};
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tower_ip_allowlist::tenant::{TenantLayer, TenantResolver};

const SECRET: &[u8] = b"lists-test-secret-lists-test-secret";
const MEDIA: &str = "/api/v1/projects/{project}/media/{file}";

fn token(user: &str, org: Option<&str>) -> String {
    let mut claims = TokenClaims::new(user, Duration::from_secs(600));
    if let Some(org) = org {
        claims = claims.with_org(org);
    }
    encode_hs256(SECRET, &claims).unwrap()
}

/// trace-less stack, outermost first: tenant by host, site list (before authentication), JWT,
/// allowlist; `/login` is public, `/me` needs a token, the media route is guarded by
/// its project's list, `/health` is exempt from everything.
fn app(handle: &SnapshotHandle) -> Router {
    let media = Router::new()
        .route(MEDIA, get(|| async { "media" }))
        .route_layer(ResourceAllowlistLayer::path_param(handle.clone(), MEDIA, "project").unwrap());
    Router::new()
        .route("/login", get(|| async { "login page" }))
        .route(
            "/me",
            get(|| async { "me" }).route_layer(RequirePrincipalLayer::new()),
        )
        .merge(media)
        .layer(AllowlistLayer::new(handle.clone()).allow_anonymous())
        .layer(JwtAuthLayer::hs256(SECRET))
        .route("/health", get(|| async { "ok" }))
        .layer(SiteAllowlistLayer::new(handle.clone()).exempt("/health"))
        // Before authentication the tenant comes from the host name: `acme.app.test` is
        // acme, `app.test` the default organization.
        .layer(TenantLayer::new(TenantResolver::by_host("app.test").unwrap()).exempt("/health"))
}

async fn get_from(
    server: SocketAddr,
    from: &str,
    host: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::get(path).header("host", host);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn site(sources: &[&str], enabled: bool) -> Option<SiteList> {
    Some(SiteList {
        enabled,
        list: SourceList::parse(sources).unwrap(),
    })
}

#[tokio::test]
async fn site_list_refuses_outsiders_before_authentication() {
    let handle = SnapshotHandle::default();
    let server = serve(app(&handle)).await;
    let mut org = OrgPolicies {
        site: site(&["127.0.0.2", "127.0.0.3"], true),
        ..OrgPolicies::default()
    };
    handle.set_org(OrgId::default(), &org);

    // From outside: refused on the public login page too, and whatever the token says
    // (even a garbage one: the site list runs first).
    for token in [None, Some(token("alice", None)), Some("garbage".to_owned())] {
        let (status, body) =
            get_from(server, "127.0.0.1", "app.test", "/login", token.as_deref()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("ipNotAllowed"), "{body}");
    }
    let (status, _) = get_from(server, "127.0.0.1", "app.test", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "exempt");
    // From inside: anonymous and authenticated paths behave as without the list.
    let (status, _) = get_from(server, "127.0.0.2", "app.test", "/login", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_from(server, "127.0.0.2", "app.test", "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get_from(
        server,
        "127.0.0.2",
        "app.test",
        "/me",
        Some(&token("alice", None)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Another organization (by host) has no site list.
    let (status, _) = get_from(server, "127.0.0.1", "acme.app.test", "/login", None).await;
    assert_eq!(status, StatusCode::OK);

    // Disabled: kept, but not in force.
    org.site = site(&["127.0.0.2"], false);
    handle.set_org(OrgId::default(), &org);
    let (status, _) = get_from(server, "127.0.0.1", "app.test", "/login", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn site_list_and_policies_must_both_pass() {
    let handle = SnapshotHandle::default();
    let server = serve(app(&handle)).await;
    let mut org = OrgPolicies {
        site: site(&["127.0.0.2-127.0.0.5"], true),
        ..OrgPolicies::default()
    };
    org.insert_policy(
        Policy::builder("alice-desk")
            .sources(["127.0.0.3", "127.0.0.9"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    handle.set_org(OrgId::default(), &org);
    let alice = token("alice", None);
    let cases = [
        ("127.0.0.3", StatusCode::OK, "inside both"),
        ("127.0.0.2", StatusCode::FORBIDDEN, "site only"),
        ("127.0.0.9", StatusCode::FORBIDDEN, "policy only"),
        ("127.0.0.7", StatusCode::FORBIDDEN, "neither"),
    ];
    for (from, want, name) in cases {
        let (status, _) = get_from(server, from, "app.test", "/me", Some(&alice)).await;
        assert_eq!(status, want, "{name}");
    }
    // Bob has no policy: the site list alone decides.
    let bob = token("bob", None);
    let (status, _) = get_from(server, "127.0.0.4", "app.test", "/me", Some(&bob)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn resource_list_restricts_only_its_own_project() {
    let handle = SnapshotHandle::default();
    let server = serve(app(&handle)).await;
    let mut org = OrgPolicies::default();
    org.resources.insert(
        ResourceId::from("apollo"),
        SourceList::parse(["127.0.0.2"]).unwrap(),
    );
    handle.set_org(OrgId::default(), &org);
    let alice = token("alice", None);
    let media = |project: &str| format!("/api/v1/projects/{project}/media/cover.png");

    let (status, body) = get_from(
        server,
        "127.0.0.2",
        "app.test",
        &media("apollo"),
        Some(&alice),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "media"));
    let (status, _) = get_from(
        server,
        "127.0.0.1",
        "app.test",
        &media("apollo"),
        Some(&alice),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Percent-encoding the id changes nothing: it is the same project to the handler.
    let (status, _) = get_from(server, "127.0.0.1", "app.test", &media("%61pollo"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Anonymous callers too: the resource list is about the address, not the user.
    let (status, _) = get_from(server, "127.0.0.1", "app.test", &media("apollo"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_from(
        server,
        "127.0.0.1",
        "app.test",
        &media("gemini"),
        Some(&alice),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a project without a list is unrestricted"
    );
    // Another organization's project of the same name is not restricted.
    let acme = token("carol", Some("acme"));
    let (status, _) = get_from(
        server,
        "127.0.0.1",
        "acme.app.test",
        &media("apollo"),
        Some(&acme),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Report-only: let through.
    org.resources.insert(
        ResourceId::from("apollo"),
        SourceList::parse(["127.0.0.2"])
            .unwrap()
            .with_enforcement(Enforcement::Report),
    );
    handle.set_org(OrgId::default(), &org);
    let (status, _) = get_from(
        server,
        "127.0.0.1",
        "app.test",
        &media("apollo"),
        Some(&alice),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn lists_fail_closed_until_the_policies_are_loaded() {
    let handle = SnapshotHandle::pending();
    let server = serve(app(&handle)).await;
    // Whether a site list applies is unknown: everyone is refused, anonymous included.
    let (status, body) = get_from(server, "127.0.0.2", "app.test", "/login", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("policiesUnavailable"), "{body}");
    let (status, _) = get_from(server, "127.0.0.2", "app.test", "/health", None).await;
    assert_eq!(status, StatusCode::OK, "exempt routes stay up");
    handle.publish(tower_ip_allowlist::snapshot::Snapshot::empty());
    let (status, _) = get_from(server, "127.0.0.2", "app.test", "/login", None).await;
    assert_eq!(status, StatusCode::OK);
}
