//! The admin router end to end: real JWTs, the JWT layer, the allowlist layer and the
//! router, served on loopback and called from chosen source addresses.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tower_ip_allowlist::admin;
use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, TokenClaims};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::lists::{ResourceAllowlistLayer, SiteAllowlistLayer};
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tower_ip_allowlist::store::{Limits, MemoryBackend, Store};
use tower_ip_allowlist::tenant::{TenantLayer, TenantResolver};

const SECRET: &[u8] = b"admin-test-secret-admin-test-secret";
const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";
const JSON_API: &str = "application/vnd.gooddata.api+json";

/// The server under test and its store.
struct Server {
    addr: SocketAddr,
    store: Store,
}

/// JWT authentication, then the allowlist, then the admin router and `/whoami`.
async fn start() -> Server {
    start_with(Store::memory()).await
}

/// As [`start`], over `store` (one with limits of its own, say).
async fn start_with(store: Store) -> Server {
    let media = "/api/v1/projects/{project}/media/{file}";
    let app = Router::new()
        .route(media, get(|| async { "media" }))
        .route_layer(
            ResourceAllowlistLayer::path_param(store.handle().clone(), media, "project").unwrap(),
        )
        .route("/whoami", get(|| async { "ok" }))
        .merge(admin::router(store.clone()))
        .layer(AllowlistLayer::new(store.handle().clone()).allow_anonymous())
        .layer(JwtAuthLayer::hs256(SECRET))
        .layer(SiteAllowlistLayer::new(store.handle().clone()))
        // `acme.test` is organization acme; `test` (every call's default) the default one.
        .layer(TenantLayer::new(TenantResolver::by_host("test").unwrap()));
    let addr = common::serve(app).await;
    Server { addr, store }
}

fn token(user: &str, org: Option<&str>, permissions: &[&str], groups: &[&str]) -> String {
    let mut claims = TokenClaims::new(user, Duration::from_secs(600))
        .with_permissions(permissions.iter().copied())
        .with_groups(groups.iter().copied());
    if let Some(org) = org {
        claims = claims.with_org(org);
    }
    encode_hs256(SECRET, &claims).unwrap()
}

fn admin_token() -> String {
    token("alice", None, &["MANAGE"], &[])
}

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Response {
    /// The first error's `code`, `source.pointer` and `detail`.
    fn error(&self) -> (&str, Option<&str>, &str) {
        let error = &self.body["errors"][0];
        (
            error["code"]
                .as_str()
                .unwrap_or_else(|| panic!("{}", self.text)),
            error["source"]["pointer"].as_str(),
            error["detail"].as_str().unwrap_or(""),
        )
    }
}

/// A request.
struct Call<'a> {
    method: Method,
    path: &'a str,
    from: &'a str,
    host: &'a str,
    token: Option<String>,
    content_type: Option<&'a str>,
    headers: Vec<(&'a str, String)>,
    body: Vec<u8>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            from: "127.0.0.1",
            host: "test",
            token: Some(admin_token()),
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn json(mut self, body: &Value) -> Self {
        self.content_type = Some(JSON_API);
        self.body = serde_json::to_vec(body).unwrap();
        self
    }

    fn from(mut self, from: &'a str) -> Self {
        self.from = from;
        self
    }

    /// The `Host`, which names the tenant: `test` the default organization, `acme.test`
    /// organization acme.
    fn host(mut self, host: &'a str) -> Self {
        self.host = host;
        self
    }

    fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    async fn send(self, server: &Server) -> Response {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(self.from.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        let stream = socket.connect(server.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("host", self.host);
        if let Some(token) = self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let response = sender
            .send_request(request.body(Body::from(self.body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }
}

fn policy(id: &str, sources: &[&str], users: &[&str], groups: &[&str]) -> Value {
    let users: Vec<Value> = users
        .iter()
        .map(|id| json!({"id": id, "type": "user"}))
        .collect();
    let groups: Vec<Value> = groups
        .iter()
        .map(|id| json!({"id": id, "type": "userGroup"}))
        .collect();
    json!({"data": {"id": id, "type": "ipAllowlistPolicy",
        "attributes": {"allowedSources": sources},
        "relationships": {"users": {"data": users}, "userGroups": {"data": groups}}}})
}

fn path(id: &str) -> String {
    format!("{POLICIES}/{id}")
}

fn action(id: &str, action: &str) -> String {
    format!("/api/v1/actions/ipAllowlistPolicies/{id}/{action}")
}

async fn create(server: &Server, body: &Value) -> Response {
    Call::new(Method::POST, POLICIES)
        .json(body)
        .send(server)
        .await
}

#[tokio::test]
async fn create_get_list_replace_patch_delete() {
    let server = start().await;
    let body = policy(
        "admin-vpn-only",
        &["203.0.113.10/32", "198.51.100.0/24", "2001:db8:abcd::/48"],
        &["admin_user"],
        &["adminGroup"],
    );
    let created = create(&server, &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.headers["location"], path("admin-vpn-only"));
    assert_eq!(created.headers["etag"], "\"1\"");
    assert_eq!(created.headers["content-type"], "application/vnd.api+json");
    let data = &created.body["data"];
    assert_eq!(data["type"], "ipAllowlistPolicy");
    assert_eq!(
        data["attributes"]["allowedSources"],
        json!(["203.0.113.10", "198.51.100.0/24", "2001:db8:abcd::/48"])
    );
    assert_eq!(
        data["relationships"]["users"]["data"],
        json!([{"id": "admin_user", "type": "user"}])
    );
    assert_eq!(data["meta"]["version"], 1);

    let got = Call::new(Method::GET, &path("admin-vpn-only"))
        .send(&server)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, created.body);

    let list = Call::new(Method::GET, POLICIES).send(&server).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);

    let replaced = Call::new(Method::PUT, &path("admin-vpn-only"))
        .json(&policy(
            "admin-vpn-only",
            &["192.0.2.0/24"],
            &["admin_user"],
            &[],
        ))
        .header("if-match", "\"1\"")
        .send(&server)
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.headers["etag"], "\"2\"");
    assert_eq!(
        replaced.body["data"]["relationships"]["userGroups"]["data"],
        json!([])
    );

    let patched = Call::new(Method::PATCH, &path("admin-vpn-only"))
        .json(&json!({"data": {"id": "admin-vpn-only", "type": "ipAllowlistPolicy", "attributes": {"name": "Admins on VPN"}}}))
        .header("if-match", "W/\"2\"")
        .send(&server)
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["data"]["attributes"]["name"], "Admins on VPN");
    assert_eq!(
        patched.body["data"]["attributes"]["allowedSources"],
        json!(["192.0.2.0/24"])
    );
    assert_eq!(patched.body["data"]["meta"]["version"], 3);

    let deleted = Call::new(Method::DELETE, &path("admin-vpn-only"))
        .header("if-match", "\"3\"")
        .send(&server)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let gone = Call::new(Method::GET, &path("admin-vpn-only"))
        .send(&server)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error().0, "notFound");
}

#[tokio::test]
async fn every_validation_code_points_at_the_field() {
    struct Case {
        name: &'static str,
        body: Value,
        status: StatusCode,
        code: &'static str,
        pointer: Option<&'static str>,
    }
    let server = start().await;
    assert_eq!(
        create(&server, &policy("taken", &["192.0.2.1"], &[], &[]))
            .await
            .status,
        StatusCode::CREATED
    );
    let many_users: Vec<String> = (0..101).map(|i| format!("user{i}")).collect();
    let many_users: Vec<&str> = many_users.iter().map(String::as_str).collect();
    let cases = [
        Case {
            name: "malformed source",
            body: policy("p", &["10.0.0.1", "10.0.0.300"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "invalidSource",
            pointer: Some("/data/attributes/allowedSources/1"),
        },
        Case {
            name: "zone id",
            body: policy("p", &["fe80::1%eth0"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "invalidSource",
            pointer: Some("/data/attributes/allowedSources/0"),
        },
        Case {
            name: "hostname",
            body: policy("p", &["10.0.0.1", "10.0.0.2", "vpn.example.com"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "hostnameNotAllowed",
            pointer: Some("/data/attributes/allowedSources/2"),
        },
        Case {
            name: "match all v4",
            body: policy("p", &["0.0.0.0/0"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "matchAllNotAllowed",
            pointer: Some("/data/attributes/allowedSources/0"),
        },
        Case {
            name: "match all v6",
            body: policy("p", &["10.0.0.1", "::/0"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "matchAllNotAllowed",
            pointer: Some("/data/attributes/allowedSources/1"),
        },
        Case {
            name: "match all as a union of halves",
            body: policy("p", &["0.0.0.0/1", "128.0.0.0/1"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "matchAllNotAllowed",
            pointer: Some("/data/attributes/allowedSources"),
        },
        Case {
            name: "match all as a range missing one address, plus that address",
            body: policy("p", &["0.0.0.2-255.255.255.255", "0.0.0.1"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "matchAllNotAllowed",
            pointer: Some("/data/attributes/allowedSources"),
        },
        Case {
            name: "match all v6 as overlapping prefixes",
            body: policy("p", &["::/1", "4000::/2", "8000::/1"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "matchAllNotAllowed",
            pointer: Some("/data/attributes/allowedSources"),
        },
        Case {
            name: "empty",
            body: policy("p", &[], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "emptyAllowedSources",
            pointer: Some("/data/attributes/allowedSources"),
        },
        Case {
            name: "host bits",
            body: policy("p", &["198.51.100.7/24"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "hostBitsSet",
            pointer: Some("/data/attributes/allowedSources/0"),
        },
        Case {
            name: "duplicate id",
            body: policy("taken", &["192.0.2.1"], &[], &[]),
            status: StatusCode::CONFLICT,
            code: "conflict",
            pointer: Some("/data/id"),
        },
        Case {
            name: "101 targets",
            body: policy("p", &["192.0.2.1"], &many_users, &[]),
            status: StatusCode::BAD_REQUEST,
            code: "targetLimitExceeded",
            pointer: Some("/data/relationships"),
        },
        Case {
            name: "wrong type",
            body: json!({"data": {"id": "p", "type": "policy", "attributes": {"allowedSources": ["192.0.2.1"]}}}),
            status: StatusCode::BAD_REQUEST,
            code: "malformedDocument",
            pointer: Some("/data/type"),
        },
        Case {
            name: "sources not a list",
            body: json!({"data": {"id": "p", "type": "ipAllowlistPolicy", "attributes": {"allowedSources": "192.0.2.1"}}}),
            status: StatusCode::BAD_REQUEST,
            code: "malformedDocument",
            pointer: Some("/data/attributes/allowedSources"),
        },
        Case {
            name: "bad policy id",
            body: policy("../etc", &["192.0.2.1"], &[], &[]),
            status: StatusCode::BAD_REQUEST,
            code: "malformedDocument",
            pointer: Some("/data/id"),
        },
        Case {
            name: "not a document",
            body: json!([1, 2, 3]),
            status: StatusCode::BAD_REQUEST,
            code: "malformedDocument",
            pointer: Some(""),
        },
    ];
    for case in cases {
        let response = create(&server, &case.body).await;
        assert_eq!(
            response.status, case.status,
            "{}: {}",
            case.name, response.text
        );
        let (code, pointer, detail) = response.error();
        assert_eq!(code, case.code, "{}", case.name);
        assert_eq!(pointer, case.pointer, "{}", case.name);
        assert!(!detail.is_empty(), "{}", case.name);
        assert_eq!(
            response.body["errors"][0]["status"],
            case.status.as_u16().to_string()
        );
    }
    let hint = create(&server, &policy("p", &["198.51.100.7/24"], &[], &[])).await;
    assert!(hint.error().2.contains("198.51.100.0/24"), "{}", hint.text);
    // Nothing refused was stored.
    assert_eq!(server.store.list_policies(&OrgId::default()).len(), 1);
}

#[tokio::test]
async fn policy_limit_at_100_and_101() {
    let server = start().await;
    for i in 0..100 {
        let response = create(&server, &policy(&format!("p{i}"), &["192.0.2.1"], &[], &[])).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{i}: {}",
            response.text
        );
    }
    let response = create(&server, &policy("p100", &["192.0.2.1"], &[], &[])).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.error().0, "policyLimitExceeded");
    // Another organization has its own limit.
    let acme = Call::new(Method::POST, POLICIES)
        .json(&policy("p100", &["192.0.2.1"], &[], &[]))
        .token(Some(token("root", Some("acme"), &["MANAGE"], &[])))
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(acme.status, StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_bodies_and_transport_errors() {
    let server = start().await;
    let send = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut call = Call::new(Method::POST, POLICIES);
        call.body = body;
        call.content_type = content_type;
        call.send(&server)
    };
    let response = send(b"{\"data\":".to_vec(), Some(JSON_API)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.error().0, "malformedDocument");
    let response = send(vec![0xff, 0xfe, 0x00], Some("application/json")).await;
    assert_eq!(response.error().0, "malformedDocument");
    // Nesting deeper than the JSON parser allows: refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let response = send(deep.into_bytes(), Some(JSON_API)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = send(b"{}".to_vec(), content_type).await;
        assert_eq!(
            response.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(response.error().0, "unsupportedMediaType");
    }
    for accepted in [
        "application/vnd.api+json",
        "application/json; charset=utf-8",
    ] {
        let mut call = Call::new(Method::POST, POLICIES).json(&policy(
            accepted
                .split(';')
                .next()
                .unwrap()
                .replace(['/', '+'], "-")
                .as_str(),
            &["192.0.2.1"],
            &[],
            &[],
        ));
        call.content_type = Some(accepted);
        assert_eq!(
            call.send(&server).await.status,
            StatusCode::CREATED,
            "{accepted}"
        );
    }

    // Over 1 MiB, declared or streamed.
    let mut huge =
        br#"{"data":{"id":"big","type":"ipAllowlistPolicy","attributes":{"name":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 2 << 20));
    huge.extend(br#""}}}"#);
    let response = send(huge.clone(), Some(JSON_API)).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.error().0, "payloadTooLarge");
    let chunked = admin_streamed(&server, huge).await;
    assert_eq!(chunked, StatusCode::PAYLOAD_TOO_LARGE);

    let response = Call::new(Method::PUT, &path("x"))
        .json(&policy("x", &["192.0.2.1"], &[], &[]))
        .header("if-match", "yesterday")
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.body["errors"][0]["source"]["header"], "If-Match");
    let response = Call::new(Method::POST, &format!("{POLICIES}?force=maybe"))
        .json(&policy("x", &["192.0.2.1"], &[], &[]))
        .send(&server)
        .await;
    assert_eq!(response.body["errors"][0]["source"]["parameter"], "force");
    assert_eq!(server.store.list_policies(&OrgId::default()).len(), 2);
}

/// Sends `body` with chunked transfer encoding (no `Content-Length`).
async fn admin_streamed(server: &Server, body: Vec<u8>) -> StatusCode {
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = body
        .chunks(64 * 1024)
        .map(|chunk| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(chunk))))
        .collect();
    let body = http_body_util::StreamBody::new(tokio_stream::iter(chunks));
    let request = http::Request::post(POLICIES)
        .header("host", "test")
        .header("authorization", format!("Bearer {}", admin_token()))
        .header("content-type", JSON_API)
        .body(body)
        .unwrap();
    assert!(request.headers().get("content-length").is_none());
    match sender.send_request(request).await {
        Ok(response) => response.status(),
        // The server may answer and close before the client finished sending.
        Err(err) => panic!("request failed: {err}"),
    }
}

#[tokio::test]
async fn authentication_and_permission() {
    let server = start().await;
    let response = Call::new(Method::GET, POLICIES)
        .token(None)
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.error().0, "unauthenticated");
    assert_eq!(response.headers["www-authenticate"], "Bearer");

    let response = Call::new(Method::GET, POLICIES)
        .token(Some("not.a.token".to_owned()))
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(response.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    let expired = encode_hs256(
        SECRET,
        &TokenClaims::new("alice", Duration::ZERO)
            .with_permissions(["MANAGE"])
            .with_expiry(1),
    )
    .unwrap();
    let response = Call::new(Method::GET, POLICIES)
        .token(Some(expired))
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);

    let response = Call::new(Method::POST, POLICIES)
        .json(&policy("p", &["192.0.2.1"], &[], &[]))
        .token(Some(token("bob", None, &["READ"], &[])))
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error().0, "forbidden");
    assert!(server.store.list_policies(&OrgId::default()).is_empty());
}

#[tokio::test]
async fn versions_and_not_found() {
    let server = start().await;
    create(&server, &policy("p", &["192.0.2.1"], &[], &[])).await;
    let first = Call::new(Method::PUT, &path("p"))
        .json(&policy("p", &["192.0.2.2"], &[], &[]))
        .header("if-match", "\"1\"")
        .send(&server)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    // A second writer that read version 1 too loses.
    for method in [Method::PUT, Method::PATCH] {
        let stale = Call::new(method.clone(), &path("p"))
            .json(&policy("p", &["192.0.2.3"], &[], &[]))
            .header("if-match", "\"1\"")
            .send(&server)
            .await;
        assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{method}");
        assert_eq!(stale.error().0, "versionMismatch");
    }
    let stale = Call::new(Method::DELETE, &path("p"))
        .header("if-match", "\"1\"")
        .send(&server)
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let any = Call::new(Method::PUT, &path("p"))
        .json(&policy("p", &["192.0.2.4"], &[], &[]))
        .header("if-match", "*")
        .send(&server)
        .await;
    assert_eq!(any.status, StatusCode::OK);
    assert_eq!(
        server
            .store
            .get_policy(&OrgId::default(), "p")
            .unwrap()
            .version,
        3
    );

    // PUT does not create, and the URL's id wins any disagreement.
    let missing = Call::new(Method::PUT, &path("nope"))
        .json(&policy("nope", &["192.0.2.1"], &[], &[]))
        .send(&server)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let mismatch = Call::new(Method::PUT, &path("p"))
        .json(&policy("q", &["192.0.2.1"], &[], &[]))
        .send(&server)
        .await;
    assert_eq!(mismatch.error().1, Some("/data/id"));
    for action_name in ["addTargets", "removeTargets"] {
        let response = Call::new(Method::POST, &action("nope", action_name))
            .json(&json!({"data": {"users": [{"id": "u", "type": "user"}]}}))
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{action_name}");
        assert_eq!(response.error().0, "notFound");
    }
    let response = Call::new(Method::DELETE, &path("nope")).send(&server).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn targets_are_enforced_on_the_next_request() {
    let server = start().await;
    let bob = || {
        Call::new(Method::GET, "/whoami")
            .token(Some(token("bob", None, &[], &["staff"])))
            .from("127.0.0.2")
    };
    assert_eq!(bob().send(&server).await.status, StatusCode::OK);
    create(&server, &policy("office", &["203.0.113.0/24"], &[], &[])).await;
    assert_eq!(
        bob().send(&server).await.status,
        StatusCode::OK,
        "no targets: inactive"
    );

    let add = json!({"data": {"users": [{"id": "bob", "type": "user"}]}});
    for _ in 0..2 {
        let response = Call::new(Method::POST, &action("office", "addTargets"))
            .json(&add)
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::NO_CONTENT, "{}", response.text);
    }
    assert_eq!(
        server
            .store
            .get_policy(&OrgId::default(), "office")
            .unwrap()
            .version,
        2,
        "adding twice changes once"
    );
    let denied = bob().send(&server).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.error().0, "ipNotAllowed");

    let remove = json!({"data": {"users": [{"id": "bob", "type": "user"}, {"id": "nobody", "type": "user"}]}});
    let response = Call::new(Method::POST, &action("office", "removeTargets"))
        .json(&remove)
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(bob().send(&server).await.status, StatusCode::OK);
    let kept = Call::new(Method::GET, &path("office")).send(&server).await;
    assert_eq!(
        kept.status,
        StatusCode::OK,
        "the last target removed keeps the policy"
    );

    // Through a grandparent group.
    let group = |id: &str, parents: &[&str]| {
        let parents: Vec<Value> = parents
            .iter()
            .map(|p| json!({"id": p, "type": "userGroup"}))
            .collect();
        json!({"data": {"id": id, "type": "userGroup", "relationships": {"parents": {"data": parents}}}})
    };
    for (id, parents) in [("staff", &["dept"]), ("dept", &["company"])] {
        let response = Call::new(Method::PUT, &format!("/api/v1/entities/userGroups/{id}"))
            .json(&group(id, parents))
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(
            response.body["data"]["relationships"]["parents"]["data"][0]["id"],
            parents[0]
        );
    }
    let add = json!({"data": {"userGroups": [{"id": "company", "type": "userGroup"}]}});
    Call::new(Method::POST, &action("office", "addTargets"))
        .json(&add)
        .send(&server)
        .await;
    assert_eq!(bob().send(&server).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        bob().from("127.0.0.1").send(&server).await.status,
        StatusCode::FORBIDDEN
    );

    // A cycle is refused and changes nothing.
    let cycle = Call::new(Method::PUT, "/api/v1/entities/userGroups/company")
        .json(&group("company", &["staff"]))
        .send(&server)
        .await;
    assert_eq!(cycle.status, StatusCode::BAD_REQUEST);
    assert_eq!(cycle.error().1, Some("/data/relationships/parents"));
    let got = Call::new(Method::GET, "/api/v1/entities/userGroups/company")
        .send(&server)
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);

    let deleted = Call::new(Method::DELETE, "/api/v1/entities/userGroups/dept")
        .send(&server)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        bob().send(&server).await.status,
        StatusCode::OK,
        "dept no longer under company"
    );
    let again = Call::new(Method::DELETE, "/api/v1/entities/userGroups/dept")
        .send(&server)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lockout_guard_and_restricted_administrators() {
    let server = start().await;
    // alice manages from 127.0.0.1; a policy that would shut her out is refused.
    let body = policy("admins", &["127.0.0.5"], &["alice"], &[]);
    let refused = create(&server, &body).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let (code, _, detail) = refused.error();
    assert_eq!(code, "lockoutPrevented");
    assert!(detail.contains("127.0.0.1"), "{detail}");
    assert!(server.store.list_policies(&OrgId::default()).is_empty());

    let allowed = create(&server, &policy("admins", &["127.0.0.1"], &["alice"], &[])).await;
    assert_eq!(allowed.status, StatusCode::CREATED);
    // From another address she is now refused by the allowlist itself.
    let elsewhere = Call::new(Method::GET, POLICIES)
        .from("127.0.0.9")
        .send(&server)
        .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    assert_eq!(elsewhere.error().0, "ipNotAllowed");

    // Narrowing it past her own address needs force.
    let narrow = policy("admins", &["127.0.0.5"], &["alice"], &[]);
    let refused = Call::new(Method::PUT, &path("admins"))
        .json(&narrow)
        .send(&server)
        .await;
    assert_eq!(refused.error().0, "lockoutPrevented");
    let forced = Call::new(Method::PUT, &format!("{}?force=true", path("admins")))
        .json(&narrow)
        .send(&server)
        .await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.text);
    let locked_out = Call::new(Method::GET, POLICIES).send(&server).await;
    assert_eq!(locked_out.status, StatusCode::FORBIDDEN);
    let from_new = Call::new(Method::GET, POLICIES)
        .from("127.0.0.5")
        .send(&server)
        .await;
    assert_eq!(from_new.status, StatusCode::OK);
}

#[tokio::test]
async fn organizations_are_isolated() {
    let server = start().await;
    create(&server, &policy("p", &["192.0.2.1"], &["bob"], &[])).await;
    let acme = || Some(token("root", Some("acme"), &["MANAGE"], &[]));
    let list = Call::new(Method::GET, POLICIES)
        .token(acme())
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(list.body["data"], json!([]));
    for method in [Method::GET, Method::DELETE] {
        let response = Call::new(method, &path("p"))
            .token(acme())
            .host("acme.test")
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND);
    }
    let response = Call::new(Method::POST, &action("p", "addTargets"))
        .json(&json!({"data": {"users": [{"id": "eve", "type": "user"}]}}))
        .token(acme())
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let created = Call::new(Method::POST, POLICIES)
        .json(&policy("p", &["198.51.100.0/24"], &["bob"], &[]))
        .token(acme())
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let default_policy = server.store.get_policy(&OrgId::default(), "p").unwrap();
    assert_eq!(default_policy.policy.sources()[0].to_string(), "192.0.2.1");
    assert!(default_policy
        .policy
        .users()
        .iter()
        .all(|u| u.as_str() == "bob"));

    // Credentials of another organization than the request's tenant: 401, either way.
    for (token, host) in [(acme(), "test"), (Some(admin_token()), "acme.test")] {
        let response = Call::new(Method::GET, POLICIES)
            .token(token)
            .host(host)
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{host}");
        assert_eq!(response.error().0, "organizationMismatch");
        assert_eq!(
            response.headers["www-authenticate"],
            r#"Bearer error="invalid_token", error_description="the token is for another organization""#
        );
    }
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let server = start().await;
    let response = Call::new(Method::GET, "/api/v1/openapi.json")
        .token(None)
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let doc = response.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let routes = [
        ("/api/v1/entities/ipAllowlistPolicies", &["get", "post"][..]),
        (
            "/api/v1/entities/ipAllowlistPolicies/{id}",
            &["get", "put", "patch", "delete"],
        ),
        (
            "/api/v1/actions/ipAllowlistPolicies/{id}/addTargets",
            &["post"],
        ),
        (
            "/api/v1/actions/ipAllowlistPolicies/{id}/removeTargets",
            &["post"],
        ),
        (
            "/api/v1/entities/userGroups/{id}",
            &["get", "put", "delete"],
        ),
        ("/api/v1/entities/userGroups", &["get"]),
        ("/api/v1/entities/resourceAllowlists", &["get"]),
    ];
    for (route, methods) in routes {
        for method in methods {
            assert!(doc["paths"][route][method].is_object(), "{method} {route}");
        }
    }
    assert!(doc["components"]["schemas"]["PolicyDocument"].is_object());
    assert!(doc["components"]["schemas"]["ErrorDocument"].is_object());
    // Blocked sources: optional everywhere allowed sources are, and named in verdicts.
    let schemas = &doc["components"]["schemas"];
    for (schema, property) in [
        ("PolicyAttributes", "blockedSources"),
        ("SiteAllowlistAttributes", "blockedSources"),
        ("ListAttributes", "blockedSources"),
        ("PolicyVerdict", "blockingSource"),
        ("ListVerdict", "blockingSource"),
    ] {
        assert!(
            schemas[schema]["properties"][property].is_object(),
            "{schema}.{property}: {}",
            schemas[schema]
        );
        let required = schemas[schema]["required"].as_array().unwrap();
        assert!(!required.contains(&json!(property)), "{schema}.{property}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

fn site(enabled: bool, sources: &[&str]) -> Value {
    json!({"data": {"id": "siteAllowlist", "type": "siteAllowlist",
        "attributes": {"enabled": enabled, "allowedSources": sources}}})
}

const SITE: &str = "/api/v1/entities/siteAllowlist";

#[tokio::test]
async fn site_allowlist_through_the_api() {
    let server = start().await;
    let got = Call::new(Method::GET, SITE).send(&server).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["data"]["attributes"]["enabled"], false);

    // Enabling it without the administrator's own address locks them out: refused.
    let refused = Call::new(Method::PUT, SITE)
        .json(&site(true, &["127.0.0.2"]))
        .send(&server)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.error().0, "lockoutPrevented");
    let bad = Call::new(Method::PUT, SITE)
        .json(&site(true, &["127.0.0.1", "127.0.0.7/24"]))
        .send(&server)
        .await;
    assert_eq!(
        bad.error(),
        (
            "hostBitsSet",
            Some("/data/attributes/allowedSources/1"),
            bad.error().2
        )
    );
    // Sources that together admit everyone are refused, whatever the split.
    let everyone = Call::new(Method::PUT, SITE)
        .json(&site(true, &["127.0.0.1", "0.0.0.0/1", "128.0.0.0/1"]))
        .send(&server)
        .await;
    assert_eq!(
        everyone.error().0,
        "matchAllNotAllowed",
        "{}",
        everyone.text
    );
    assert_eq!(everyone.error().1, Some("/data/attributes/allowedSources"));
    let wrong_id = Call::new(Method::PUT, SITE)
        .json(&json!({"data": {"id": "other", "type": "siteAllowlist", "attributes": {"enabled": true, "allowedSources": ["127.0.0.1"]}}}))
        .send(&server)
        .await;
    assert_eq!(wrong_id.error().1, Some("/data/id"));

    let set = Call::new(Method::PUT, SITE)
        .json(&site(true, &["127.0.0.1", "127.0.0.2-127.0.0.3"]))
        .send(&server)
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(
        set.body["data"]["attributes"]["allowedSources"],
        json!(["127.0.0.1", "127.0.0.2-127.0.0.3"])
    );

    // Enforced at once, before authentication: anonymous and authenticated alike.
    let outside = Call::new(Method::GET, "/whoami")
        .token(None)
        .from("127.0.0.9")
        .send(&server)
        .await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    let outside = Call::new(Method::GET, "/whoami")
        .from("127.0.0.9")
        .send(&server)
        .await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    let inside = Call::new(Method::GET, "/whoami")
        .token(None)
        .from("127.0.0.3")
        .send(&server)
        .await;
    assert_eq!(inside.status, StatusCode::OK);

    // Report-only: let through. Forcing past the guard works too.
    let report = json!({"data": {"id": "siteAllowlist", "type": "siteAllowlist",
        "attributes": {"enabled": true, "allowedSources": ["127.0.0.2"], "enforcement": "report"}}});
    let set = Call::new(Method::PUT, SITE)
        .json(&report)
        .send(&server)
        .await;
    assert_eq!(
        set.status,
        StatusCode::OK,
        "report-only cannot lock anyone out: {}",
        set.text
    );
    let outside = Call::new(Method::GET, "/whoami")
        .from("127.0.0.9")
        .send(&server)
        .await;
    assert_eq!(outside.status, StatusCode::OK);
    let forced = Call::new(Method::PUT, &format!("{SITE}?force=true"))
        .json(&site(true, &["127.0.0.2"]))
        .send(&server)
        .await;
    assert_eq!(forced.status, StatusCode::OK);
    let locked = Call::new(Method::GET, SITE).send(&server).await;
    assert_eq!(
        locked.status,
        StatusCode::FORBIDDEN,
        "the administrator locked themselves out, as forced"
    );
    // Disabling needs no sources: the ones stored are kept.
    let off = Call::new(Method::PUT, SITE)
        .json(&site(false, &[]))
        .from("127.0.0.2")
        .send(&server)
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert_eq!(off.body["data"]["attributes"]["enabled"], false);
    assert_eq!(
        off.body["data"]["attributes"]["allowedSources"],
        json!(["127.0.0.2"])
    );
    let back = Call::new(Method::GET, SITE).send(&server).await;
    assert_eq!(back.status, StatusCode::OK, "disabled: reachable again");
    // Another organization's site list is its own.
    let acme = Call::new(Method::GET, SITE)
        .from("127.0.0.2")
        .token(Some(token("root", Some("acme"), &["MANAGE"], &[])))
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(acme.body["data"]["attributes"]["enabled"], false);
}

#[tokio::test]
async fn resource_allowlists_through_the_api() {
    let server = start().await;
    let path = "/api/v1/entities/resourceAllowlists/apollo";
    let media = |project: &str| format!("/api/v1/projects/{project}/media/cover.png");
    let missing = Call::new(Method::GET, path).send(&server).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let list = json!({"data": {"id": "apollo", "type": "resourceAllowlist",
        "attributes": {"allowedSources": ["127.0.0.2"]}}});
    let set = Call::new(Method::PUT, path).json(&list).send(&server).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["data"]["attributes"]["enforcement"], "enforce");
    let got = Call::new(Method::GET, path).send(&server).await;
    assert_eq!(got.body, set.body);

    let server = &server;
    let from = |addr: &'static str, project: &'static str| async move {
        let path = media(project);
        Call::new(Method::GET, &path).from(addr).send(server).await
    };
    assert_eq!(from("127.0.0.2", "apollo").await.status, StatusCode::OK);
    assert_eq!(
        from("127.0.0.1", "apollo").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        from("127.0.0.1", "gemini").await.status,
        StatusCode::OK,
        "no list: unrestricted"
    );

    let bad = json!({"data": {"id": "apollo", "type": "resourceAllowlist",
        "attributes": {"allowedSources": ["127.0.0.2"], "enforcement": "sometimes"}}});
    let refused = Call::new(Method::PUT, path).json(&bad).send(server).await;
    assert_eq!(refused.error().1, Some("/data/attributes/enforcement"));
    let everyone = json!({"data": {"id": "apollo", "type": "resourceAllowlist",
        "attributes": {"allowedSources": ["::/1", "8000::/1"]}}});
    let refused = Call::new(Method::PUT, path)
        .json(&everyone)
        .send(server)
        .await;
    assert_eq!(refused.error().0, "matchAllNotAllowed");
    let empty = json!({"data": {"id": "apollo", "type": "resourceAllowlist", "attributes": {"allowedSources": []}}});
    let refused = Call::new(Method::PUT, path).json(&empty).send(server).await;
    assert_eq!(refused.error().0, "emptyAllowedSources");

    let deleted = Call::new(Method::DELETE, path).send(server).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(from("127.0.0.1", "apollo").await.status, StatusCode::OK);
    let again = Call::new(Method::DELETE, path).send(server).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn evaluate_and_my_access_explain_decisions() {
    let server = start().await;
    for (id, parents) in [("staff", "company"), ("interns", "staff")] {
        let body = json!({"data": {"id": id, "type": "userGroup", "relationships": {"parents": {"data": [{"id": parents, "type": "userGroup"}]}}}});
        Call::new(Method::PUT, &format!("/api/v1/entities/userGroups/{id}"))
            .json(&body)
            .send(&server)
            .await;
    }
    // An unaligned range, and a report-only policy being rolled out.
    create(
        &server,
        &policy("office", &["127.0.0.2-127.0.0.6"], &[], &["company"]),
    )
    .await;
    let mut rollout = policy("rollout", &["127.0.0.5"], &[], &["interns"]);
    rollout["data"]["attributes"]["enforcement"] = json!("report");
    let created = create(&server, &rollout).await;
    assert_eq!(created.body["data"]["attributes"]["enforcement"], "report");

    let ask = |address: &str| json!({"data": {"user": "ann", "userGroups": ["interns"], "address": address}});
    let evaluated = Call::new(Method::POST, "/api/v1/actions/ipAllowlistPolicies/evaluate")
        .json(&ask("127.0.0.3"))
        .send(&server)
        .await;
    assert_eq!(evaluated.status, StatusCode::OK, "{}", evaluated.text);
    let data = &evaluated.body["data"];
    assert_eq!(data["decision"], "allowed");
    assert_eq!(
        data["matching"],
        json!({"policy": "office", "source": "127.0.0.2-127.0.0.6"})
    );
    assert_eq!(
        data["policies"][0]["viaGroups"],
        json!([["interns", "staff", "company"]])
    );
    assert_eq!(data["policies"][1]["id"], "rollout");
    assert_eq!(data["policies"][1]["admits"], false);
    assert_eq!(
        data["withReportOnly"], "allowed",
        "the office policy still admits it"
    );

    let outside = Call::new(Method::POST, "/api/v1/actions/ipAllowlistPolicies/evaluate")
        .json(&ask("127.0.0.7"))
        .send(&server)
        .await;
    assert_eq!(outside.body["data"]["decision"], "denied");
    assert_eq!(outside.body["data"]["reason"], "ipNotAllowed");
    let bad = Call::new(Method::POST, "/api/v1/actions/ipAllowlistPolicies/evaluate")
        .json(&ask("not-an-ip"))
        .send(&server)
        .await;
    assert_eq!(bad.error().1, Some("/data/address"));
    let not_admin = Call::new(Method::POST, "/api/v1/actions/ipAllowlistPolicies/evaluate")
        .json(&ask("127.0.0.3"))
        .token(Some(token("ann", None, &[], &["interns"])))
        .send(&server)
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);

    // myAccess: any authenticated caller, about their own requests.
    let ann = token("ann", None, &[], &["interns"]);
    let mine = Call::new(Method::GET, "/api/v1/actions/ipAllowlistPolicies/myAccess")
        .token(Some(ann))
        .from("127.0.0.4")
        .send(&server)
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["data"]["clientIp"], "127.0.0.4");
    assert_eq!(mine.body["data"]["clientIpSource"], "peer");
    assert_eq!(mine.body["data"]["user"], "ann");
    assert_eq!(mine.body["data"]["policies"][0]["admits"], true);
    assert_eq!(mine.body["data"]["withReportOnly"], "allowed");
    // The rollout ends: switched to enforce, it applies at once (and the lockout guard
    // checks the switch like any change).
    let switch =
        json!({"data": {"type": "ipAllowlistPolicy", "attributes": {"enforcement": "enforce"}}});
    let switched = Call::new(Method::PATCH, &path("rollout"))
        .json(&switch)
        .send(&server)
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.text);
    assert_eq!(
        switched.body["data"]["attributes"]["enforcement"],
        "enforce"
    );
    let mine = Call::new(Method::GET, "/api/v1/actions/ipAllowlistPolicies/myAccess")
        .token(Some(token("ann", None, &[], &["interns"])))
        .from("127.0.0.4")
        .send(&server)
        .await;
    assert_eq!(mine.body["data"]["withReportOnly"], Value::Null);
    assert_eq!(mine.body["data"]["policies"][1]["enforcement"], "enforce");
    let anonymous = Call::new(Method::GET, "/api/v1/actions/ipAllowlistPolicies/myAccess")
        .token(None)
        .send(&server)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

fn group_doc(parents: &[String]) -> Value {
    let parents: Vec<Value> = parents
        .iter()
        .map(|id| json!({"id": id, "type": "userGroup"}))
        .collect();
    json!({"data": {"type": "userGroup", "relationships": {"parents": {"data": parents}}}})
}

async fn put_group(server: &Server, group: &str, parents: &[String]) -> Response {
    let path = format!("/api/v1/entities/userGroups/{group}");
    Call::new(Method::PUT, &path)
        .json(&group_doc(parents))
        .send(server)
        .await
}

/// The default hierarchy limits at N and N+1: 100 parents per group, 32 levels.
#[tokio::test]
async fn hierarchy_limits_at_their_defaults() {
    let server = start().await;
    let limits = Limits::default();
    assert_eq!(
        (limits.max_parents_per_group, limits.max_group_depth),
        (100, 32)
    );

    let parents = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
    let response = put_group(&server, "wide", &parents(100)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let response = put_group(&server, "wider", &parents(101)).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    let (code, pointer, detail) = response.error();
    assert_eq!(code, "parentLimitExceeded");
    assert_eq!(pointer, Some("/data/relationships/parents"));
    assert!(
        detail.contains("at most 100") && detail.contains("101"),
        "{detail}"
    );

    // A chain l0 -> l1 -> ... : 32 links deep is allowed, the 33rd is refused.
    for level in 0..32 {
        let response = put_group(&server, &format!("l{level}"), &[format!("l{}", level + 1)]).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{level}: {}",
            response.text
        );
    }
    let response = put_group(&server, "l32", &["l33".to_owned()]).await;
    assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.text);
    let (code, _, detail) = response.error();
    assert_eq!(code, "depthLimitExceeded");
    assert!(
        detail.contains("at most 32 levels") && detail.contains("33"),
        "{detail}"
    );
    // Deepening from below is refused the same way.
    let response = put_group(&server, "below", &["l0".to_owned()]).await;
    assert_eq!(response.error().0, "depthLimitExceeded");
    assert!(server.store.get_group(&OrgId::default(), "below").is_none());
}

/// The group count per organization at N and N+1, with limits of the store's own.
#[tokio::test]
async fn group_limit_per_organization() {
    let store = Store::open(
        std::sync::Arc::new(MemoryBackend::new()),
        SnapshotHandle::default(),
        Limits::default().max_groups_per_org(10),
    )
    .await
    .unwrap();
    let server = start_with(store).await;
    // `g0` with parents `p0`..`p3`: 5 groups; `g1` with `p4`..`p7`: 10.
    let four = |from: usize| {
        (from..from + 4)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        put_group(&server, "g0", &four(0)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        put_group(&server, "g1", &four(4)).await.status,
        StatusCode::OK
    );
    // Links between groups already named add none.
    assert_eq!(
        put_group(&server, "p0", &["p1".to_owned()]).await.status,
        StatusCode::OK
    );
    let response = put_group(&server, "g2", &["p0".to_owned()]).await;
    assert_eq!(response.status, StatusCode::CONFLICT, "{}", response.text);
    let (code, _, detail) = response.error();
    assert_eq!(code, "groupLimitExceeded");
    assert!(
        detail.contains("at most 10 groups") && detail.contains("11"),
        "{detail}"
    );
    // Another organization has its own count.
    let path = "/api/v1/entities/userGroups/g2";
    let acme = Call::new(Method::PUT, path)
        .json(&group_doc(&["p0".to_owned()]))
        .token(Some(token("root", Some("acme"), &["MANAGE"], &[])))
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(acme.status, StatusCode::OK, "{}", acme.text);
}

/// A member sent twice is refused wherever it is; unknown top-level members too.
#[tokio::test]
async fn ambiguous_documents_are_refused() {
    let server = start().await;
    let body = br#"{"data": {"id": "a", "id": "b", "type": "ipAllowlistPolicy",
        "attributes": {"allowedSources": ["192.0.2.1"]}}}"#;
    let mut call = Call::new(Method::POST, POLICIES);
    call.content_type = Some(JSON_API);
    call.body = body.to_vec();
    let response = call.send(&server).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    let (code, pointer, detail) = response.error();
    assert_eq!((code, pointer), ("malformedDocument", Some("/data/id")));
    assert!(detail.contains("`id` appears more than once"), "{detail}");
    assert!(server.store.list_policies(&OrgId::default()).is_empty());

    let response = Call::new(Method::POST, POLICIES)
        .json(&json!({"data": policy("a", &["192.0.2.1"], &[], &[])["data"], "included": []}))
        .send(&server)
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.error().1, Some("/included"));
}

/// A token whose user, group or organization id breaks the id rule is refused at
/// the door with 401 and a description naming the claim.
#[tokio::test]
async fn tokens_with_invalid_ids_are_refused_with_401() {
    let server = start().await;
    let cases = [
        (token("alice\u{0}", None, &["MANAGE"], &[]), "user id"),
        (
            token("alice", Some("acme\u{0}"), &["MANAGE"], &[]),
            "organization id",
        ),
        (
            token("alice", Some(&"o".repeat(8000)), &["MANAGE"], &[]),
            "organization id",
        ),
        (
            token("alice", None, &["MANAGE"], &["ok", "a\nb"]),
            "group id",
        ),
    ];
    for (token, claim) in cases {
        let response = Call::new(Method::POST, POLICIES)
            .json(&policy("p", &["192.0.2.1"], &[], &[]))
            .token(Some(token))
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{claim}");
        let challenge = response.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(claim), "{claim}: {challenge}");
        assert!(challenge.contains("1 to 255 bytes"), "{challenge}");
    }
    assert!(server.store.list_policies(&OrgId::default()).is_empty());
}

const EVALUATE: &str = "/api/v1/actions/ipAllowlistPolicies/evaluate";
const MY_ACCESS: &str = "/api/v1/actions/ipAllowlistPolicies/myAccess";

fn with_blocked(mut document: Value, blocked: Value) -> Value {
    document["data"]["attributes"]["blockedSources"] = blocked;
    document
}

#[tokio::test]
async fn blocked_sources_on_policies_through_the_api() {
    let server = start_with(
        Store::open(
            std::sync::Arc::new(MemoryBackend::new()),
            SnapshotHandle::default(),
            Limits::default().max_sources_per_rule(2),
        )
        .await
        .unwrap(),
    )
    .await;
    let staff = policy("staff", &["127.0.0.0/24"], &[], &["staff"]);
    // Validation points at the blocked entry, or at the list when together they block
    // everything; the limit applies to the blocked list apart.
    for (blocked, code, pointer) in [
        (
            json!(["127.0.0.66", "printer.example"]),
            "hostnameNotAllowed",
            "/data/attributes/blockedSources/1",
        ),
        (
            json!(["127.0.0.66/24"]),
            "hostBitsSet",
            "/data/attributes/blockedSources/0",
        ),
        (
            json!(["0.0.0.0/1", "128.0.0.0/1"]),
            "matchAllNotAllowed",
            "/data/attributes/blockedSources",
        ),
        (
            json!(["127.0.0.1", "127.0.0.2", "127.0.0.3"]),
            "sourceLimitExceeded",
            "/data/attributes/blockedSources",
        ),
        (
            json!(["127.0.0.1", 7]),
            "malformedDocument",
            "/data/attributes/blockedSources/1",
        ),
        (
            json!("127.0.0.1"),
            "malformedDocument",
            "/data/attributes/blockedSources",
        ),
    ] {
        let refused = create(&server, &with_blocked(staff.clone(), blocked.clone())).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{blocked}: {}",
            refused.text
        );
        assert_eq!(refused.error().0, code, "{blocked}");
        assert_eq!(refused.error().1, Some(pointer), "{blocked}");
    }
    assert!(server.store.list_policies(&OrgId::default()).is_empty());

    let created = create(
        &server,
        &with_blocked(staff.clone(), json!(["127.0.0.64/26"])),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        created.body["data"]["attributes"]["blockedSources"],
        json!(["127.0.0.64/26"])
    );
    let got = Call::new(Method::GET, &path("staff")).send(&server).await;
    assert_eq!(got.body, created.body);
    // Without blocked sources the member is left out: documents stay as they were.
    let plain = create(&server, &policy("plain", &["127.0.0.1"], &["nobody"], &[])).await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.text);
    let attributes = plain.body["data"]["attributes"].as_object().unwrap();
    assert!(!attributes.contains_key("blockedSources"), "{}", plain.text);

    // Refused from a blocked address inside the allowed range...
    let bob = || Some(token("bob", None, &[], &["staff"]));
    let whoami = |from: &'static str| {
        let server = &server;
        async move {
            Call::new(Method::GET, "/whoami")
                .token(bob())
                .from(from)
                .send(server)
                .await
                .status
        }
    };
    assert_eq!(whoami("127.0.0.7").await, StatusCode::OK);
    assert_eq!(whoami("127.0.0.66").await, StatusCode::FORBIDDEN);
    assert_eq!(whoami("127.0.0.128").await, StatusCode::OK);
    // ...and named by evaluate and myAccess.
    let ask = json!({"data": {"user": "bob", "userGroups": ["staff"], "address": "127.0.0.66"}});
    let evaluated = Call::new(Method::POST, EVALUATE)
        .json(&ask)
        .send(&server)
        .await;
    let data = &evaluated.body["data"];
    assert_eq!(data["decision"], "denied", "{}", evaluated.text);
    assert_eq!(data["policies"][0]["admits"], false);
    assert_eq!(data["policies"][0]["matchingSource"], "127.0.0.0/24");
    assert_eq!(data["policies"][0]["blockingSource"], "127.0.0.64/26");
    assert_eq!(data["matching"], Value::Null);
    let mine = Call::new(Method::GET, MY_ACCESS)
        .token(bob())
        .from("127.0.0.66")
        .send(&server)
        .await;
    // Refused by the allowlist before the handler: myAccess answers for an admitted
    // caller only, so ask from an admitted address about the policy's verdict there.
    assert_eq!(mine.status, StatusCode::FORBIDDEN);
    let mine = Call::new(Method::GET, MY_ACCESS)
        .token(bob())
        .from("127.0.0.7")
        .send(&server)
        .await;
    assert_eq!(
        mine.body["data"]["policies"][0]["admits"], true,
        "{}",
        mine.text
    );
    assert!(!mine.body["data"]["policies"][0]
        .as_object()
        .unwrap()
        .contains_key("blockingSource"));

    // Another applicable policy admitting the address lets it through: union.
    let lab = create(&server, &policy("lab", &["127.0.0.66"], &["bob"], &[])).await;
    assert_eq!(lab.status, StatusCode::CREATED, "{}", lab.text);
    assert_eq!(whoami("127.0.0.66").await, StatusCode::OK);
    assert_eq!(whoami("127.0.0.67").await, StatusCode::FORBIDDEN);
    let mine = Call::new(Method::GET, MY_ACCESS)
        .token(bob())
        .from("127.0.0.66")
        .send(&server)
        .await;
    let data = &mine.body["data"];
    assert_eq!(data["decision"], "allowed", "{}", mine.text);
    assert_eq!(
        data["matching"],
        json!({"policy": "lab", "source": "127.0.0.66"})
    );
    let staff_verdict = data["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "staff")
        .unwrap();
    assert_eq!(staff_verdict["blockingSource"], "127.0.0.64/26");

    // PATCH: absent leaves them, a list replaces them, `[]` and `null` clear them.
    let patch = |attributes: Value| json!({"data": {"type": "ipAllowlistPolicy", "attributes": attributes}});
    let send_patch = |attributes: Value| {
        let server = &server;
        let body = patch(attributes);
        async move {
            Call::new(Method::PATCH, &path("staff"))
                .json(&body)
                .send(server)
                .await
        }
    };
    let renamed = send_patch(json!({"name": "Staff"})).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(
        renamed.body["data"]["attributes"]["blockedSources"],
        json!(["127.0.0.64/26"])
    );
    let refused = send_patch(json!({"blockedSources": ["127.0.0.1", "::/0"]})).await;
    assert_eq!(refused.error().0, "matchAllNotAllowed");
    assert_eq!(refused.error().1, Some("/data/attributes/blockedSources/1"));
    let replaced = send_patch(json!({"blockedSources": ["127.0.0.7"]})).await;
    assert_eq!(
        replaced.body["data"]["attributes"]["blockedSources"],
        json!(["127.0.0.7"])
    );
    assert_eq!(whoami("127.0.0.7").await, StatusCode::FORBIDDEN);
    assert_eq!(whoami("127.0.0.67").await, StatusCode::OK);
    let cleared = send_patch(json!({"blockedSources": []})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert!(!cleared.body["data"]["attributes"]
        .as_object()
        .unwrap()
        .contains_key("blockedSources"));
    assert_eq!(whoami("127.0.0.7").await, StatusCode::OK);
    send_patch(json!({"blockedSources": ["127.0.0.7"]})).await;
    let cleared = send_patch(json!({"blockedSources": null})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert!(server
        .store
        .get_policy(&OrgId::default(), "staff")
        .unwrap()
        .policy
        .blocked_sources()
        .is_empty());
    // PUT replaces the whole policy: without the member, no blocked sources.
    let put = Call::new(Method::PUT, &path("staff"))
        .json(&with_blocked(staff.clone(), json!(["127.0.0.9"])))
        .send(&server)
        .await;
    assert_eq!(
        put.body["data"]["attributes"]["blockedSources"],
        json!(["127.0.0.9"])
    );
    let put = Call::new(Method::PUT, &path("staff"))
        .json(&staff)
        .send(&server)
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert!(server
        .store
        .get_policy(&OrgId::default(), "staff")
        .unwrap()
        .policy
        .blocked_sources()
        .is_empty());
}

#[tokio::test]
async fn blocked_sources_on_lists_and_the_lockout_guard() {
    let server = start().await;
    // alice manages from 127.0.0.1: blocking it in a policy that applies to her is a
    // lockout, whatever else her policy admits.
    let admins = create(
        &server,
        &policy("admins", &["127.0.0.0/24"], &["alice"], &[]),
    )
    .await;
    assert_eq!(admins.status, StatusCode::CREATED, "{}", admins.text);
    let block_me = json!({"data": {"type": "ipAllowlistPolicy", "attributes": {"blockedSources": ["127.0.0.0/30"]}}});
    let refused = Call::new(Method::PATCH, &path("admins"))
        .json(&block_me)
        .send(&server)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.error().0, "lockoutPrevented");
    // A second policy blocking her is fine while the first still admits her: union.
    let me_too = create(
        &server,
        &with_blocked(
            policy("me-too", &["127.0.0.0/24"], &["alice"], &[]),
            json!(["127.0.0.1"]),
        ),
    )
    .await;
    assert_eq!(me_too.status, StatusCode::CREATED, "{}", me_too.text);

    // The site list.
    let site_doc = |blocked: Option<Value>| {
        let document = site(true, &["127.0.0.0/24"]);
        match blocked {
            Some(blocked) => with_blocked(document, blocked),
            None => document,
        }
    };
    let refused = Call::new(Method::PUT, SITE)
        .json(&site_doc(Some(json!(["127.0.0.1"]))))
        .send(&server)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.error().0, "lockoutPrevented");
    let refused = Call::new(Method::PUT, SITE)
        .json(&site_doc(Some(json!(["127.0.0.9", "127.0.0.1/8"]))))
        .send(&server)
        .await;
    assert_eq!(refused.error().1, Some("/data/attributes/blockedSources/1"));
    let set = Call::new(Method::PUT, SITE)
        .json(&site_doc(Some(json!(["127.0.0.9"]))))
        .send(&server)
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(
        set.body["data"]["attributes"]["blockedSources"],
        json!(["127.0.0.9"])
    );
    let got = Call::new(Method::GET, SITE).send(&server).await;
    assert_eq!(got.body, set.body);
    let anonymous = |from: &'static str| {
        let server = &server;
        async move {
            Call::new(Method::GET, "/whoami")
                .token(None)
                .from(from)
                .send(server)
                .await
                .status
        }
    };
    assert_eq!(anonymous("127.0.0.8").await, StatusCode::OK);
    assert_eq!(anonymous("127.0.0.9").await, StatusCode::FORBIDDEN);
    let ask = json!({"data": {"user": "ann", "address": "127.0.0.9"}});
    let evaluated = Call::new(Method::POST, EVALUATE)
        .json(&ask)
        .send(&server)
        .await;
    let verdict = &evaluated.body["data"]["siteAllowlist"];
    assert_eq!(verdict["admits"], false, "{}", evaluated.text);
    assert_eq!(verdict["blockingSource"], "127.0.0.9");
    // A PUT without the member clears them.
    let cleared = Call::new(Method::PUT, SITE)
        .json(&site_doc(None))
        .send(&server)
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    let attributes = cleared.body["data"]["attributes"].as_object().unwrap();
    assert!(
        !attributes.contains_key("blockedSources"),
        "{}",
        cleared.text
    );
    assert_eq!(anonymous("127.0.0.9").await, StatusCode::OK);

    // A resource list.
    let resource = "/api/v1/entities/resourceAllowlists/apollo";
    let list = |blocked: Value| {
        json!({"data": {"id": "apollo", "type": "resourceAllowlist",
            "attributes": {"allowedSources": ["127.0.0.0/24"], "blockedSources": blocked}}})
    };
    let media = |from: &'static str| {
        let server = &server;
        async move {
            Call::new(Method::GET, "/api/v1/projects/apollo/media/cover.png")
                .from(from)
                .send(server)
                .await
                .status
        }
    };
    let refused = Call::new(Method::PUT, resource)
        .json(&list(json!(["www.example.com"])))
        .send(&server)
        .await;
    assert_eq!(refused.error().0, "hostnameNotAllowed");
    assert_eq!(refused.error().1, Some("/data/attributes/blockedSources/0"));
    let set = Call::new(Method::PUT, resource)
        .json(&list(json!(["127.0.0.3"])))
        .send(&server)
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(
        set.body["data"]["attributes"]["blockedSources"],
        json!(["127.0.0.3"])
    );
    let got = Call::new(Method::GET, resource).send(&server).await;
    assert_eq!(got.body, set.body);
    assert_eq!(media("127.0.0.2").await, StatusCode::OK);
    assert_eq!(media("127.0.0.3").await, StatusCode::FORBIDDEN);
    let cleared = Call::new(Method::PUT, resource)
        .json(&list(Value::Null))
        .send(&server)
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    let attributes = cleared.body["data"]["attributes"].as_object().unwrap();
    assert!(
        !attributes.contains_key("blockedSources"),
        "{}",
        cleared.text
    );
    assert_eq!(media("127.0.0.3").await, StatusCode::OK);
}

const AUDIT: &str = "/api/v1/entities/auditEvents";

/// Follows `links.next` from `path` to the end, returning every event's id.
async fn audit_pages(server: &Server, path: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut next = Some(path.to_owned());
    while let Some(path) = next {
        let page = Call::new(Method::GET, &path).send(server).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert_eq!(page.headers["content-type"], "application/vnd.api+json");
        pages += 1;
        for event in page.body["data"].as_array().unwrap() {
            assert_eq!(event["type"], "auditEvent");
            ids.push(event["id"].as_str().unwrap().to_owned());
        }
        next = page.body["links"]["next"].as_str().map(ToOwned::to_owned);
    }
    (ids, pages)
}

#[tokio::test]
async fn audit_events_are_paged_filtered_and_per_organization() {
    use tower_ip_allowlist::principal::Principal;
    use tower_ip_allowlist::store::{Actor, ListDraft};
    let server = start().await;
    // Five changes over HTTP by alice, from loopback.
    for i in 0..5 {
        let response = create(&server, &policy(&format!("p{i}"), &["192.0.2.1"], &[], &[])).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    }
    // One by the system, and one in organization acme.
    server
        .store
        .set_resource_list(
            &Actor::system(),
            &OrgId::default(),
            "repo",
            ListDraft::new(["192.0.2.1"]),
        )
        .await
        .unwrap();
    let root = Principal::new("root").with_organization("acme");
    server
        .store
        .set_resource_list(
            &Actor::new(&root, None),
            &OrgId::from("acme"),
            "acme-repo",
            ListDraft::new(["192.0.2.1"]),
        )
        .await
        .unwrap();

    let all = Call::new(Method::GET, AUDIT).send(&server).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let events = all.body["data"].as_array().unwrap();
    assert_eq!(events.len(), 6);
    assert!(all.body["links"].get("next").is_none());
    let newest = &events[0]["attributes"];
    assert_eq!(newest["actor"], "system");
    assert_eq!(newest["entityType"], "resourceAllowlist");
    assert_eq!(newest["clientIp"], Value::Null);
    let first = &events[5]["attributes"];
    assert_eq!(first["actor"], "alice");
    assert_eq!(first["clientIp"], "127.0.0.1");
    assert_eq!(first["operation"], "createPolicy");
    assert_eq!(first["entityId"], "p0");
    assert_eq!(
        (
            first["versionBefore"].clone(),
            first["versionAfter"].clone()
        ),
        (json!(0), json!(1))
    );
    assert_eq!(first["before"], Value::Null);
    assert_eq!(first["after"]["allowedSources"], json!(["192.0.2.1"]));
    assert_eq!(first["forced"], false);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));

    // Pages of two: three pages, every event once, in the same order.
    let (paged, pages) = audit_pages(&server, &format!("{AUDIT}?page[size]=2")).await;
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paged, ids);
    assert_eq!(pages, 3);

    // Filters, carried into the next link too.
    let (p3, _) = audit_pages(
        &server,
        &format!("{AUDIT}?filter[entityId]=p3&page[size]=1"),
    )
    .await;
    assert_eq!(p3, [ids[2].clone()]);
    let (alice, pages) = audit_pages(
        &server,
        &format!("{AUDIT}?filter%5Bactor%5D=alice&page%5Bsize%5D=2"),
    )
    .await;
    assert_eq!(alice, ids[1..]);
    assert_eq!(pages, 3);
    let third = events[3]["attributes"]["time"].as_str().unwrap().to_owned();
    let (since, _) = audit_pages(&server, &format!("{AUDIT}?filter[since]={third}")).await;
    assert_eq!(since, ids[..=3]);
    let (until, _) = audit_pages(&server, &format!("{AUDIT}?filter[until]={third}")).await;
    assert_eq!(until, ids[3..]);
    let (none, _) = audit_pages(
        &server,
        &format!("{AUDIT}?filter[since]=2999-01-01T00:00:00%2B01:00"),
    )
    .await;
    assert!(none.is_empty());

    // Bad values: 400 naming the parameter.
    for (query, parameter) in [
        ("page[size]=0", "page[size]"),
        ("page[size]=501", "page[size]"),
        ("page[cursor]=x", "page[cursor]"),
        ("filter[since]=yesterday", "filter[since]"),
        ("filter[until]=2024-02-30T00:00:00Z", "filter[until]"),
        ("filter[actor]=", "filter[actor]"),
    ] {
        let response = Call::new(Method::GET, &format!("{AUDIT}?{query}"))
            .send(&server)
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            response.body["errors"][0]["source"]["parameter"], parameter,
            "{query}"
        );
    }

    // Organization acme sees its own event only.
    let acme = Call::new(Method::GET, AUDIT)
        .token(Some(token("root", Some("acme"), &["MANAGE"], &[])))
        .host("acme.test")
        .send(&server)
        .await;
    assert_eq!(acme.status, StatusCode::OK, "{}", acme.text);
    let acme_events = acme.body["data"].as_array().unwrap();
    assert_eq!(acme_events.len(), 1);
    assert_eq!(acme_events[0]["attributes"]["entityId"], "acme-repo");

    // 401 without a token, 403 without MANAGE.
    let anonymous = Call::new(Method::GET, AUDIT)
        .token(None)
        .send(&server)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let reader = Call::new(Method::GET, AUDIT)
        .token(Some(token("bob", None, &["VIEW"], &[])))
        .send(&server)
        .await;
    assert_eq!(reader.status, StatusCode::FORBIDDEN);

    // The OpenAPI document describes the route.
    let openapi = admin::openapi().to_json().unwrap();
    assert!(openapi.contains("/api/v1/entities/auditEvents"));
    assert!(openapi.contains("filter[since]"));
}

/// The console draws the hierarchy and the resources from these two lists.
#[tokio::test]
async fn groups_and_resource_allowlists_are_listed() {
    let server = start().await;
    let groups = "/api/v1/entities/userGroups";
    let resources = "/api/v1/entities/resourceAllowlists";
    let empty = Call::new(Method::GET, groups).send(&server).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text);
    assert_eq!(empty.body, json!({"data": []}));
    assert_eq!(
        Call::new(Method::GET, resources).send(&server).await.body,
        json!({"data": []})
    );

    let set = put_group(&server, "interns", &["staff".to_owned()]).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let set = put_group(
        &server,
        "staff",
        &["everyone".to_owned(), "berlin".to_owned()],
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let listed = Call::new(Method::GET, groups).send(&server).await;
    assert_eq!(
        listed.body["data"],
        json!([
            {"id": "interns", "type": "userGroup",
             "relationships": {"parents": {"data": [{"id": "staff", "type": "userGroup"}]}}},
            {"id": "staff", "type": "userGroup",
             "relationships": {"parents": {"data": [
                 {"id": "berlin", "type": "userGroup"}, {"id": "everyone", "type": "userGroup"}]}}},
        ])
    );

    for project in ["gemini", "apollo"] {
        let path = format!("{resources}/{project}");
        let list = json!({"data": {"id": project, "type": "resourceAllowlist",
            "attributes": {"allowedSources": ["127.0.0.2"], "enforcement": "report"}}});
        let set = Call::new(Method::PUT, &path)
            .json(&list)
            .send(&server)
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    }
    let listed = Call::new(Method::GET, resources).send(&server).await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|list| list["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["apollo", "gemini"]);
    assert_eq!(
        listed.body["data"][0]["attributes"]["enforcement"],
        "report"
    );

    // Like every other route: administrators only, of their own organization.
    for path in [groups, resources] {
        let reader = Call::new(Method::GET, path)
            .token(Some(token("bob", None, &[], &[])))
            .send(&server)
            .await;
        assert_eq!(reader.status, StatusCode::FORBIDDEN, "{path}");
        let other = Call::new(Method::GET, path)
            .host("acme.test")
            .token(Some(token("carol", Some("acme"), &["MANAGE"], &[])))
            .send(&server)
            .await;
        assert_eq!(other.status, StatusCode::OK, "{path}");
        assert_eq!(other.body, json!({"data": []}), "{path}");
    }
}
