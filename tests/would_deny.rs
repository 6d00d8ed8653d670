//! From report-only to enforce over the admin API, on loopback: the `wouldDeny` routes
//! of policies, the site list and resource lists answer whom each report-only rule
//! would have refused, and switching such a rule to enforce is refused with 409
//! `wouldDenyCallers` unless forced.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tower_ip_allowlist::admin;
use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, TokenClaims};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::lists::{ResourceAllowlistLayer, SiteAllowlistLayer};
use tower_ip_allowlist::store::Store;

const SECRET: &[u8] = b"would-deny-test-secret-would-deny";
const JSON_API: &str = "application/vnd.gooddata.api+json";
const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";
const SITE: &str = "/api/v1/entities/siteAllowlist";

/// JWT authentication, the site list, the allowlist, a resource list on the media
/// route, the admin router and `/whoami`, on loopback.
async fn start() -> SocketAddr {
    let store = Store::memory();
    let media = "/projects/{project}/media";
    let app = Router::new()
        .route(media, get(|| async { "media" }))
        .route_layer(
            ResourceAllowlistLayer::path_param(store.handle().clone(), media, "project").unwrap(),
        )
        .route("/whoami", get(|| async { "ok" }))
        .merge(admin::router(store.clone()))
        .layer(AllowlistLayer::new(store.handle().clone()).allow_anonymous())
        .layer(JwtAuthLayer::hs256(SECRET))
        .layer(SiteAllowlistLayer::new(store.handle().clone()));
    common::serve(app).await
}

fn token(user: &str, permissions: &[&str]) -> String {
    let claims = TokenClaims::new(user, Duration::from_secs(600))
        .with_permissions(permissions.iter().copied());
    encode_hs256(SECRET, &claims).unwrap()
}

struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", self.text))
    }

    fn attributes(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        &self.body["data"]["attributes"]
    }
}

/// `method path` from `from`, as `user` (`None`: anonymous), with `body`.
async fn call(
    server: SocketAddr,
    method: Method,
    path: &str,
    from: &str,
    user: Option<(&str, &[&str])>,
    body: Option<&Value>,
) -> Answer {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(server).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    if let Some((user, permissions)) = user {
        request = request.header(
            "authorization",
            format!("Bearer {}", token(user, permissions)),
        );
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", JSON_API);
            serde_json::to_vec(body).unwrap()
        }
        None => Vec::new(),
    };
    let response = sender
        .send_request(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    }
}

const ADMIN: Option<(&str, &[&str])> = Some(("alice", &["MANAGE"]));
const BOB: Option<(&str, &[&str])> = Some(("bob", &[]));

fn list(sources: &[&str], enforcement: &str) -> Value {
    json!({"data": {"id": "apollo", "type": "resourceAllowlist",
        "attributes": {"allowedSources": sources, "enforcement": enforcement}}})
}

fn site(sources: &[&str], enforcement: &str) -> Value {
    json!({"data": {"id": "siteAllowlist", "type": "siteAllowlist",
        "attributes": {"enabled": true, "allowedSources": sources, "enforcement": enforcement}}})
}

fn enforcement(id: &str, enforcement: &str) -> Value {
    json!({"data": {"id": id, "type": "ipAllowlistPolicy",
        "attributes": {"enforcement": enforcement}}})
}

#[tokio::test]
async fn a_report_only_policy_names_whom_it_would_refuse_and_guards_the_switch() {
    let server = start().await;
    let policy = json!({"data": {"id": "rollout", "type": "ipAllowlistPolicy",
        "attributes": {"allowedSources": ["127.0.0.2"], "enforcement": "report"},
        "relationships": {"users": {"data": [{"id": "bob", "type": "user"}]}}}});
    let created = call(
        server,
        Method::POST,
        POLICIES,
        "127.0.0.1",
        ADMIN,
        Some(&policy),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let would_deny = "/api/v1/actions/ipAllowlistPolicies/rollout/wouldDeny";

    let empty = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    let attributes = empty.attributes();
    assert_eq!(attributes["reportOnly"], true);
    assert_eq!(attributes["scope"], "thisProcess");
    assert_eq!(attributes["totalRequests"], 0);
    assert!(attributes["since"]
        .as_str()
        .is_some_and(|since| since.ends_with('Z')));
    assert_eq!(empty.body["data"]["type"], "wouldDenySummary");
    assert_eq!(empty.body["data"]["id"], "rollout");

    // Bob twice from outside (let through: report-only), once from inside.
    for from in ["127.0.0.3", "127.0.0.3", "127.0.0.2"] {
        let whoami = call(server, Method::GET, "/whoami", from, BOB, None).await;
        assert_eq!(whoami.status, StatusCode::OK, "report-only never refuses");
    }
    let summary = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    let attributes = summary.attributes();
    assert_eq!(attributes["totalRequests"], 2, "{}", summary.text);
    assert_eq!(attributes["otherRequests"], 0);
    let callers = attributes["callers"].as_array().unwrap();
    assert_eq!(callers.len(), 1, "{}", summary.text);
    assert_eq!(callers[0]["user"], "bob");
    assert_eq!(callers[0]["address"], "127.0.0.3");
    assert_eq!(callers[0]["count"], 2);
    // RFC 3339 in UTC: ordered as text. Both present, or the comparison proves nothing.
    assert!(callers[0]["firstSeen"].as_str().unwrap() <= callers[0]["lastSeen"].as_str().unwrap());

    // Enforcing now would lock bob out: 409, and nothing changes.
    let path = format!("{POLICIES}/rollout");
    let refused = call(
        server,
        Method::PATCH,
        &path,
        "127.0.0.1",
        ADMIN,
        Some(&enforcement("rollout", "enforce")),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.code(), "wouldDenyCallers");
    let detail = refused.body["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 caller ") && detail.contains("2 times"),
        "{detail}"
    );
    assert!(
        detail.contains("/api/v1/actions/ipAllowlistPolicies/rollout/wouldDeny"),
        "{detail}"
    );
    let stored = call(server, Method::GET, &path, "127.0.0.1", ADMIN, None).await;
    assert_eq!(stored.body["data"]["attributes"]["enforcement"], "report");
    let whoami = call(server, Method::GET, "/whoami", "127.0.0.3", BOB, None).await;
    assert_eq!(whoami.status, StatusCode::OK, "still report-only");

    // Forced, as with the lockout guard: enforced, and the summary is over.
    let forced = format!("{path}?force=true");
    let switched = call(
        server,
        Method::PATCH,
        &forced,
        "127.0.0.1",
        ADMIN,
        Some(&enforcement("rollout", "enforce")),
    )
    .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.text);
    let whoami = call(server, Method::GET, "/whoami", "127.0.0.3", BOB, None).await;
    assert_eq!(whoami.status, StatusCode::FORBIDDEN);
    let over = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    let attributes = over.attributes();
    assert_eq!(attributes["reportOnly"], false);
    assert_eq!(attributes["since"], Value::Null);
    assert_eq!(attributes["callers"], json!([]));

    // Back to report: a new, empty summary; switching again with nothing seen is free.
    let back = call(
        server,
        Method::PATCH,
        &path,
        "127.0.0.1",
        ADMIN,
        Some(&enforcement("rollout", "report")),
    )
    .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text);
    let fresh = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    assert_eq!(fresh.attributes()["totalRequests"], 0, "{}", fresh.text);
    let again = call(
        server,
        Method::PATCH,
        &path,
        "127.0.0.1",
        ADMIN,
        Some(&enforcement("rollout", "enforce")),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);

    // Only managers read it; unknown policies are 404.
    let bob_reads = call(server, Method::GET, would_deny, "127.0.0.2", BOB, None).await;
    assert_eq!(bob_reads.status, StatusCode::FORBIDDEN);
    let unknown = call(
        server,
        Method::GET,
        "/api/v1/actions/ipAllowlistPolicies/nope/wouldDeny",
        "127.0.0.1",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "notFound")
    );
}

#[tokio::test]
async fn the_site_list_summarizes_anonymous_callers_and_guards_the_switch() {
    let server = start().await;
    let would_deny = "/api/v1/actions/siteAllowlist/wouldDeny";
    let never_set = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    assert_eq!(
        never_set.status,
        StatusCode::NOT_FOUND,
        "{}",
        never_set.text
    );

    let set = call(
        server,
        Method::PUT,
        SITE,
        "127.0.0.1",
        ADMIN,
        Some(&site(&["127.0.0.1", "127.0.0.2"], "report")),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    for from in ["127.0.0.5", "127.0.0.5", "127.0.0.6", "127.0.0.2"] {
        let whoami = call(server, Method::GET, "/whoami", from, None, None).await;
        assert_eq!(whoami.status, StatusCode::OK);
    }
    let summary = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    let attributes = summary.attributes();
    assert_eq!(attributes["ruleKind"], "siteAllowlist");
    assert_eq!(attributes["totalRequests"], 3, "{}", summary.text);
    let callers: Vec<(Value, Value, Value)> = attributes["callers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["user"].clone(), c["address"].clone(), c["count"].clone()))
        .collect();
    assert_eq!(
        callers,
        [
            (Value::Null, json!("127.0.0.5"), json!(2)),
            (Value::Null, json!("127.0.0.6"), json!(1)),
        ],
        "the site list runs before authentication: callers are anonymous"
    );

    let refused = call(
        server,
        Method::PUT,
        SITE,
        "127.0.0.1",
        ADMIN,
        Some(&site(&["127.0.0.1", "127.0.0.2"], "enforce")),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "wouldDenyCallers"),
        "{}",
        refused.text
    );
    let detail = refused.body["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("2 callers") && detail.contains("3 times"),
        "{detail}"
    );
    let forced = call(
        server,
        Method::PUT,
        &format!("{SITE}?force=true"),
        "127.0.0.1",
        ADMIN,
        Some(&site(&["127.0.0.1", "127.0.0.2"], "enforce")),
    )
    .await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.text);
    let outside = call(server, Method::GET, "/whoami", "127.0.0.5", None, None).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_resource_list_summarizes_its_callers_and_guards_the_switch() {
    let server = start().await;
    let path = "/api/v1/entities/resourceAllowlists/apollo";
    let would_deny = "/api/v1/actions/resourceAllowlists/apollo/wouldDeny";
    let none = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::NOT_FOUND, "notFound")
    );

    let set = call(
        server,
        Method::PUT,
        path,
        "127.0.0.1",
        ADMIN,
        Some(&list(&["127.0.0.2"], "report")),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let media = call(
        server,
        Method::GET,
        "/projects/apollo/media",
        "127.0.0.4",
        BOB,
        None,
    )
    .await;
    assert_eq!(media.status, StatusCode::OK);
    let other_project = call(
        server,
        Method::GET,
        "/projects/gemini/media",
        "127.0.0.4",
        BOB,
        None,
    )
    .await;
    assert_eq!(other_project.status, StatusCode::OK);

    let summary = call(server, Method::GET, would_deny, "127.0.0.1", ADMIN, None).await;
    let attributes = summary.attributes();
    assert_eq!(attributes["ruleKind"], "resourceAllowlist");
    assert_eq!(attributes["totalRequests"], 1, "{}", summary.text);
    assert_eq!(attributes["callers"][0]["user"], "bob");
    assert_eq!(attributes["callers"][0]["address"], "127.0.0.4");

    let refused = call(
        server,
        Method::PUT,
        path,
        "127.0.0.1",
        ADMIN,
        Some(&list(&["127.0.0.2"], "enforce")),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "wouldDenyCallers"),
        "{}",
        refused.text
    );
    // A change that stays report-only is not guarded.
    let widened = call(
        server,
        Method::PUT,
        path,
        "127.0.0.1",
        ADMIN,
        Some(&list(&["127.0.0.2", "127.0.0.3"], "report")),
    )
    .await;
    assert_eq!(widened.status, StatusCode::OK, "{}", widened.text);
    let forced = call(
        server,
        Method::PUT,
        &format!("{path}?force=true"),
        "127.0.0.1",
        ADMIN,
        Some(&list(&["127.0.0.2"], "enforce")),
    )
    .await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.text);
    let media = call(
        server,
        Method::GET,
        "/projects/apollo/media",
        "127.0.0.4",
        BOB,
        None,
    )
    .await;
    assert_eq!(media.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_openapi_document_describes_the_would_deny_routes() {
    let openapi = serde_json::to_value(admin::openapi()).unwrap();
    for path in [
        "/api/v1/actions/ipAllowlistPolicies/{id}/wouldDeny",
        "/api/v1/actions/siteAllowlist/wouldDeny",
        "/api/v1/actions/resourceAllowlists/{id}/wouldDeny",
    ] {
        assert!(openapi["paths"][path]["get"].is_object(), "{path} missing");
    }
    let schema = &openapi["components"]["schemas"]["WouldDenyAttributes"];
    for attribute in [
        "since",
        "callers",
        "totalRequests",
        "otherRequests",
        "reportOnly",
        "scope",
    ] {
        assert!(
            schema["properties"][attribute].is_object(),
            "{attribute} missing: {schema}"
        );
    }
}
