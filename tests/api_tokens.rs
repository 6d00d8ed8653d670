//! User-owned API tokens end to end: created through the admin API with a JWT, used
//! beside JWTs through `ApiTokenLayer`, judged by the allowlist like their owner,
//! revoked (on every replica, with PostgreSQL), expired; and what the database holds.
//!
//! The PostgreSQL test needs `ALLOWLIST_TEST_DATABASE_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`); without it, it prints a notice and
//! passes. It works in a schema of its own, dropped at the end.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Json, Router};
use http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Row};
use tower::ServiceExt;
use tower_ip_allowlist::admin;
use tower_ip_allowlist::api_token::{ApiTokenLayer, ApiTokenRejection};
use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, TokenClaims};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tower_ip_allowlist::store::{
    Actor, ApiTokenDraft, AuditQuery, Limits, PolicyDraft, PostgresBackend, ReplicationOptions,
    Replicator, SqliteBackend, Store, StoreError,
};
use tower_ip_allowlist::testing::TestRequest;

const SECRET: &[u8] = b"a development secret of at least 32 bytes";
const OFFICE: &str = "203.0.113.7";
const CAFE: &str = "192.0.2.1";

fn jwt(user: &str, groups: &[&str], permissions: &[&str]) -> String {
    let claims = TokenClaims::new(user, Duration::from_secs(300))
        .with_groups(groups.iter().map(|g| (*g).to_owned()))
        .with_permissions(permissions.iter().map(|p| (*p).to_owned()));
    encode_hs256(SECRET, &claims).unwrap()
}

/// A service as the demo wires it: API tokens outermost, then JWTs, the allowlist,
/// the admin API and a route that shows who the caller is.
fn app(store: &Store, tokens: ApiTokenLayer) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(
                |Extension(p): Extension<Principal>, headers: http::HeaderMap| async move {
                    Json(json!({
                        "user": p.user.as_str(),
                        "groups": p.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                        // Whether the credential reached the handler.
                        "authorization": headers.contains_key(header::AUTHORIZATION),
                    }))
                },
            ),
        )
        .merge(admin::router(store.clone()))
        .layer(AllowlistLayer::new(store.handle().clone()).allow_anonymous())
        .layer(JwtAuthLayer::hs256(SECRET))
        .layer(tokens)
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    peer: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/vnd.api+json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap()
        .with_peer(peer);
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn create_body(name: &str, expires_at: Option<&str>) -> Value {
    let mut attributes = json!({ "name": name });
    if let Some(at) = expires_at {
        attributes["expiresAt"] = json!(at);
    }
    json!({ "data": { "type": "apiToken", "attributes": attributes } })
}

/// The office-only policy of group `ci`.
async fn office_policy(store: &Store) {
    store
        .create_policy(
            &Actor::system(),
            &OrgId::default(),
            PolicyDraft::new("ci-office", ["203.0.113.0/24"]).groups(["ci"]),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn create_use_refuse_revoke_through_the_admin_api() {
    let store = Store::memory();
    office_policy(&store).await;
    let app = app(&store, ApiTokenLayer::new(store.clone()));
    let alice = jwt("alice", &["ci"], &[]);

    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/entities/apiTokens",
        OFFICE,
        &alice,
        Some(create_body("laptop", None)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["data"]["attributes"]["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("tia_") && token.len() == 68, "{token}");
    assert_eq!(created["data"]["attributes"]["owner"], "alice");

    // The token is alice, groups and all, under alice's policy.
    let (status, me) = call(&app, Method::GET, "/whoami", OFFICE, &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        json!({ "user": "alice", "groups": ["ci"], "authorization": false })
    );
    let (status, _) = call(&app, Method::GET, "/whoami", CAFE, &token, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "outside the owner's policy");

    // Listed without its secret, with its last use.
    let (status, list) = call(
        &app,
        Method::GET,
        "/api/v1/entities/apiTokens",
        OFFICE,
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0]["attributes"].get("bearerToken").is_none());
    assert!(
        list["data"][0]["attributes"]["lastUsedAt"].is_string(),
        "{list}"
    );
    assert!(!list.to_string().contains(&token[4..]));

    // Revoked: 401 from the next request.
    let path = format!("/api/v1/entities/apiTokens/{id}");
    let (status, _) = call(&app, Method::DELETE, &path, OFFICE, &alice, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&app, Method::GET, "/whoami", OFFICE, &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], "invalidApiToken");

    // Creating, using and revoking are audit events, and none holds the token.
    let events = store
        .audit_events(
            &OrgId::default(),
            &AuditQuery::default().entity_id(id.clone()),
        )
        .await
        .unwrap();
    let operations: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        ["revokeApiToken", "useApiToken", "createApiToken"]
    );
    assert_eq!(events[1].actor, "alice");
    assert_eq!(events[1].client_ip, Some(OFFICE.parse().unwrap()));
    for event in &events {
        let shown = format!("{event:?}");
        assert!(!shown.contains(&token[4..]), "{shown}");
    }
}

#[tokio::test]
async fn a_jwt_still_works_beside_tokens_and_a_malformed_token_is_401() {
    let store = Store::memory();
    let app = app(&store, ApiTokenLayer::new(store.clone()));
    let (status, me) = call(
        &app,
        Method::GET,
        "/whoami",
        CAFE,
        &jwt("bob", &[], &[]),
        None,
    )
    .await;
    assert_eq!((status, me["user"].clone()), (StatusCode::OK, json!("bob")));
    assert_eq!(
        me["authorization"],
        json!(true),
        "a JWT is not the token layer's to remove"
    );
    for bad in ["tia_", "tia_short", &format!("tia_{}", "0".repeat(64))] {
        let (status, body) = call(&app, Method::GET, "/whoami", CAFE, bad, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(body["errors"][0]["code"], "invalidApiToken");
    }
}

#[tokio::test]
async fn a_token_cannot_create_tokens_and_only_an_admin_revokes_others_tokens() {
    let store = Store::memory();
    let app = app(&store, ApiTokenLayer::new(store.clone()));
    let alice = jwt("alice", &[], &[]);
    let (_, created) = call(
        &app,
        Method::POST,
        "/api/v1/entities/apiTokens",
        CAFE,
        &alice,
        Some(create_body("ci", None)),
    )
    .await;
    let token = created["data"]["attributes"]["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/entities/apiTokens",
        CAFE,
        &token,
        Some(create_body("more", None)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Bob sees none of alice's tokens and cannot revoke them.
    let bob = jwt("bob", &[], &[]);
    let (_, list) = call(
        &app,
        Method::GET,
        "/api/v1/entities/apiTokens",
        CAFE,
        &bob,
        None,
    )
    .await;
    assert_eq!(list["data"], json!([]));
    let path = format!("/api/v1/entities/apiTokens/{id}");
    let (status, _) = call(&app, Method::DELETE, &path, CAFE, &bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An administrator sees and revokes every token of the organization.
    let admin = jwt("root", &[], &["MANAGE"]);
    let (_, list) = call(
        &app,
        Method::GET,
        "/api/v1/entities/apiTokens?filter%5Bowner%5D=alice",
        CAFE,
        &admin,
        None,
    )
    .await;
    assert_eq!(list["data"][0]["id"], json!(id));
    let (status, _) = call(&app, Method::DELETE, &path, CAFE, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, Method::GET, "/whoami", CAFE, &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_names_and_expiries_are_400_pointing_at_the_member() {
    let store = Store::memory();
    let app = app(&store, ApiTokenLayer::new(store.clone()));
    let alice = jwt("alice", &[], &[]);
    for (body, pointer) in [
        (create_body("", None), "/data/attributes"),
        (
            create_body("x", Some("yesterday")),
            "/data/attributes/expiresAt",
        ),
        (
            create_body("x", Some("2001-01-01T00:00:00Z")),
            "/data/attributes",
        ),
        (
            json!({"data": {"type": "apiToken", "attributes": {"name": "x", "scope": "all"}}}),
            "/data/attributes/scope",
        ),
    ] {
        let (status, error) = call(
            &app,
            Method::POST,
            "/api/v1/entities/apiTokens",
            CAFE,
            &alice,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(
            error["errors"][0]["source"]["pointer"], pointer,
            "{body}: {error}"
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let store = Store::memory();
    let app = app(&store, ApiTokenLayer::new(store.clone()));
    let owner = Principal::new("alice");
    // Wide enough that a loaded machine still makes the first call before it expires.
    let expires = SystemTime::now() + Duration::from_secs(2);
    let draft = ApiTokenDraft::new("short").expires(expires);
    let (_, secret) = store
        .create_api_token(&Actor::system(), &OrgId::default(), &owner, draft)
        .await
        .unwrap();
    let (status, me) = call(&app, Method::GET, "/whoami", CAFE, secret.expose(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me["authorization"],
        json!(false),
        "a verified token's header is removed before the handler"
    );
    let wait = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(100)).await;
    let (status, body) = call(&app, Method::GET, "/whoami", CAFE, secret.expose(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], "apiTokenExpired");
}

#[tokio::test]
async fn an_owner_whose_groups_change_meets_the_new_groups_policies_on_the_next_request() {
    let store = Store::memory();
    office_policy(&store).await;
    // The application's directory: who is in which group now.
    let directory: Arc<RwLock<HashMap<String, Vec<String>>>> = Arc::default();
    directory.write().unwrap().insert("carol".into(), vec![]);
    let lookup = Arc::clone(&directory);
    let layer = ApiTokenLayer::new(store.clone()).current_owner(move |recorded: Principal| {
        let groups = lookup.read().ok()?.get(recorded.user.as_str())?.clone();
        Some(recorded.with_groups(groups))
    });
    let app = app(&store, layer);
    let (_, secret) = store
        .create_api_token(
            &Actor::system(),
            &OrgId::default(),
            &Principal::new("carol"),
            ApiTokenDraft::new("cli"),
        )
        .await
        .unwrap();

    let (status, _) = call(&app, Method::GET, "/whoami", CAFE, secret.expose(), None).await;
    assert_eq!(status, StatusCode::OK, "no group, no policy");
    directory
        .write()
        .unwrap()
        .insert("carol".into(), vec!["ci".into()]);
    let (status, _) = call(&app, Method::GET, "/whoami", CAFE, secret.expose(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "now in ci: office only");
    let (status, me) = call(&app, Method::GET, "/whoami", OFFICE, secret.expose(), None).await;
    assert_eq!(
        (status, me["groups"].clone()),
        (StatusCode::OK, json!(["ci"]))
    );
    directory.write().unwrap().remove("carol");
    let (status, body) = call(&app, Method::GET, "/whoami", OFFICE, secret.expose(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the owner is gone");
    assert_eq!(
        body["errors"][0]["code"],
        ApiTokenRejection::OwnerUnknown.code()
    );
}

#[tokio::test]
async fn last_use_is_written_once_per_interval_not_per_request() {
    let store = Store::memory();
    let app = app(
        &store,
        ApiTokenLayer::new(store.clone()).last_used_interval(Duration::from_secs(3600)),
    );
    let (token, secret) = store
        .create_api_token(
            &Actor::system(),
            &OrgId::default(),
            &Principal::new("alice"),
            ApiTokenDraft::new("busy"),
        )
        .await
        .unwrap();
    for _ in 0..20 {
        let (status, _) = call(&app, Method::GET, "/whoami", CAFE, secret.expose(), None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let uses = store
        .audit_events(
            &OrgId::default(),
            &AuditQuery::default().entity_id(token.id.clone()),
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.operation == "useApiToken")
        .count();
    assert_eq!(uses, 1);
    let listed = store
        .api_tokens(&OrgId::default(), Some("alice"))
        .await
        .unwrap();
    assert!(listed[0].last_used.is_some());
}

#[tokio::test]
async fn a_user_holds_at_most_the_limit_of_tokens() {
    let store = Store::memory();
    let owner = Principal::new("hoarder");
    for i in 0..tower_ip_allowlist::store::MAX_API_TOKENS_PER_USER {
        store
            .create_api_token(
                &Actor::system(),
                &OrgId::default(),
                &owner,
                ApiTokenDraft::new(format!("t{i}")),
            )
            .await
            .unwrap();
    }
    let err = store
        .create_api_token(
            &Actor::system(),
            &OrgId::default(),
            &owner,
            ApiTokenDraft::new("one more"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidApiToken { .. }), "{err}");
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn sqlite_holds_the_hash_not_the_secret() {
    let dir =
        std::env::temp_dir().join(format!("tower-ip-allowlist-{}-tokens", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let url = format!("sqlite://{}", dir.0.join("allowlist.db").display());
    let backend = SqliteBackend::open(&url).await.unwrap();
    let store = Store::open(
        Arc::new(backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();
    let (token, secret) = store
        .create_api_token(
            &Actor::system(),
            &OrgId::default(),
            &Principal::new("alice").with_groups(["ci"]),
            ApiTokenDraft::new("laptop"),
        )
        .await
        .unwrap();
    assert!(store
        .verify_api_token(secret.expose(), None, Duration::ZERO)
        .await
        .is_ok());

    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT * FROM allowlist_api_tokens")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let hash: Vec<u8> = rows[0].try_get("hash").unwrap();
    assert_eq!(hash, Sha256::digest(secret.expose().as_bytes()).to_vec());
    let id: String = rows[0].try_get("id").unwrap();
    assert_eq!(id, token.id);
    // No column, and no audit record, holds the secret.
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT quote(org_id) || quote(id) || quote(hash) || quote(owner) || quote(groups) || quote(permissions) || quote(name) FROM allowlist_api_tokens
         UNION ALL SELECT coalesce(before, '') || coalesce(after, '') || entity_id FROM allowlist_audit",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for row in dump {
        assert!(!row.to_lowercase().contains(&secret.expose()[4..]), "{row}");
    }
}

// ---- PostgreSQL: two replicas ----------------------------------------------------

const ENV: &str = "ALLOWLIST_TEST_DATABASE_URL";

fn database_url(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: {ENV} is not set (for example {ENV}=postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of its own, dropped when the guard is.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {err}", self.name);
        }
    }
}

async fn replica(schema: &Schema) -> (Store, Replicator) {
    let backend = PostgresBackend::connect_with_schema(&schema.url, &schema.name)
        .await
        .unwrap();
    let store = Store::open(
        Arc::new(backend.clone()),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();
    let replicator = backend.replicate(&store, ReplicationOptions::default());
    tokio::time::timeout(Duration::from_secs(10), replicator.until_listening())
        .await
        .expect("the replica did not start listening");
    (store, replicator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_create_use_refuse_revoke() {
    let Some(url) = database_url("postgres_two_replicas_create_use_refuse_revoke") else {
        return;
    };
    let schema = Schema {
        name: format!(
            "allowlist_test_tokens_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ),
        url,
    };
    let (a, _replicating_a) = replica(&schema).await;
    let (b, _replicating_b) = replica(&schema).await;
    let app_a = app(&a, ApiTokenLayer::new(a.clone()));
    let app_b = app(&b, ApiTokenLayer::new(b.clone()));
    office_policy(&a).await;

    // Created through replica A with a JWT...
    let alice = jwt("alice", &["ci"], &[]);
    let (status, created) = call(
        &app_a,
        Method::POST,
        "/api/v1/entities/apiTokens",
        OFFICE,
        &alice,
        Some(create_body("deploys", None)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["data"]["attributes"]["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    // ...used on both, under alice's policy (B has it once replication delivered it).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = call(&app_b, Method::GET, "/whoami", CAFE, &token, None).await;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never enforced the policy: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for app in [&app_a, &app_b] {
        let (status, me) = call(app, Method::GET, "/whoami", OFFICE, &token, None).await;
        assert_eq!(
            (status, me["user"].clone()),
            (StatusCode::OK, json!("alice"))
        );
        let (status, _) = call(app, Method::GET, "/whoami", CAFE, &token, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // The table holds the hash, not the secret.
    let mut conn = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    let row = sqlx::query(&format!(
        "SELECT id, hash, owner, name, groups FROM {}.allowlist_api_tokens",
        schema.name
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let hash: Vec<u8> = row.try_get("hash").unwrap();
    assert_eq!(hash, Sha256::digest(token.as_bytes()).to_vec());
    let text: String = sqlx::query_scalar(&format!(
        "SELECT string_agg(t::text, ' ') FROM {}.allowlist_api_tokens t",
        schema.name
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!text.contains(&token[4..]), "{text}");

    // Revoked through A: the very next request is 401 on both replicas.
    let (status, _) = call(
        &app_a,
        Method::DELETE,
        &format!("/api/v1/entities/apiTokens/{id}"),
        OFFICE,
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for app in [&app_b, &app_a] {
        let (status, body) = call(app, Method::GET, "/whoami", OFFICE, &token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["errors"][0]["code"], "invalidApiToken");
    }

    // Every replica reads the same trail.
    let events = b
        .audit_events(&OrgId::default(), &AuditQuery::default().entity_id(id))
        .await
        .unwrap();
    let operations: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        operations,
        ["revokeApiToken", "useApiToken", "createApiToken"]
    );
}

/// Behind a proxy, with the client address resolved by the allowlist's own resolver
/// (no `ClientIpLayer`), a token request meets the same address as a JWT request: the
/// token layer reads the address for its audit record and records none, which would
/// have made the allowlist's resolver conflict with it (the address unknown, 403).
#[tokio::test]
async fn behind_a_proxy_a_token_meets_the_address_the_allowlist_resolves() {
    use tower_ip_allowlist::client_ip::ClientIpResolver;

    let store = Store::memory();
    office_policy(&store).await;
    let (status, created) = call(
        &app(&store, ApiTokenLayer::new(store.clone())),
        Method::POST,
        "/api/v1/entities/apiTokens",
        OFFICE,
        &jwt("carol", &["ci"], &[]),
        Some(create_body("build", None)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["data"]["attributes"]["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let proxy = ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .build();
    let proxied = Router::new()
        .route("/whoami", get(|| async { "ok" }))
        .layer(AllowlistLayer::new(store.handle().clone()).client_ip(proxy))
        .layer(JwtAuthLayer::hs256(SECRET))
        .layer(ApiTokenLayer::new(store.clone()));
    for (client, want) in [(OFFICE, StatusCode::OK), (CAFE, StatusCode::FORBIDDEN)] {
        let request = Request::get("/whoami")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("x-forwarded-for", client)
            .body(Body::empty())
            .unwrap()
            .with_peer("10.0.0.1");
        let response = proxied.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            want,
            "a token from {client} via the proxy"
        );
    }
}
