//! Keys from an identity provider: a loopback provider (an axum app serving OpenID
//! Connect discovery and a JWK set, counting its requests) and the JWT layer fetching
//! from it, through `oneshot`, a real tonic server and client, and the demo server.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::Code;
use tower::{service_fn, Layer, ServiceExt};
use tower_ip_allowlist::jwt::{
    Algorithm, ClaimNames, JwksError, JwtAuthLayer, JwtRejection, RemoteKeys,
};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("keys/rsa2_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("keys/ec384_private.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed_private.pem");

/// A signing key of the provider: its `kid`, algorithm and private key.
#[derive(Clone)]
struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    private: EncodingKey,
}

impl TestKey {
    fn new(kid: &'static str, alg: Algorithm, pem: &[u8]) -> Self {
        let private = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .unwrap();
        Self { kid, alg, private }
    }

    /// The public JWK, as the provider publishes it.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.private, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        serde_json::to_value(jwk).unwrap()
    }

    /// A token for `sub`, valid for five minutes, with more `claims`.
    fn sign(&self, sub: &str, claims: Value) -> String {
        self.sign_as(self.kid, self.alg, sub, claims)
    }

    /// A token whose header says `kid` and `alg`, signed with this key.
    fn sign_as(&self, kid: &str, alg: Algorithm, sub: &str, claims: Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let mut body = json!({"sub": sub, "exp": now() + 300});
        if let (Value::Object(body), Value::Object(more)) = (&mut body, claims) {
            body.extend(more);
        }
        jsonwebtoken::encode(&header, &body, &self.private).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rsa() -> TestKey {
    TestKey::new("rsa-1", Algorithm::RS256, RSA_PRIVATE)
}

fn rsa2() -> TestKey {
    TestKey::new("rsa-2", Algorithm::RS256, RSA2_PRIVATE)
}

/// What the loopback provider serves, and what it was asked.
#[derive(Default)]
struct Provider {
    keys: Mutex<Vec<Value>>,
    down: AtomicBool,
    max_age: Mutex<Option<u64>>,
    /// The issuer its discovery document names, when not its own URL.
    named_issuer: Mutex<Option<String>>,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    addr: Mutex<Option<SocketAddr>>,
}

struct Idp {
    addr: SocketAddr,
    state: Arc<Provider>,
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Self {
        let state = Arc::new(Provider::default());
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&state));
        let addr = common::serve(app).await;
        *state.addr.lock().unwrap() = Some(addr);
        let idp = Self { addr, state };
        idp.publish(keys);
        idp
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|key| key.jwk()).collect();
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }
}

async fn discovery(State(state): State<Arc<Provider>>) -> Json<Value> {
    state.discovery_requests.fetch_add(1, Ordering::SeqCst);
    let own = format!("http://{}", state.addr.lock().unwrap().unwrap());
    let issuer = state
        .named_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(own.clone());
    Json(json!({"issuer": issuer, "jwks_uri": format!("{own}/jwks"),
                "id_token_signing_alg_values_supported": ["RS256"]}))
}

async fn jwks(State(state): State<Arc<Provider>>) -> Response {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    let mut response = Json(json!({ "keys": keys })).into_response();
    if let Some(age) = *state.max_age.lock().unwrap() {
        response.headers_mut().insert(
            CACHE_CONTROL,
            format!("public, max-age={age}").parse().unwrap(),
        );
    }
    response
}

/// What the layer answered: the status, the rejection, the body (the user, when let
/// through), and the response headers.
struct Answer {
    status: StatusCode,
    rejection: Option<JwtRejection>,
    body: String,
    headers: http::HeaderMap,
}

async fn call(layer: &JwtAuthLayer, token: Option<&str>, grpc: bool) -> Answer {
    let app = service_fn(|request: Request<String>| async move {
        let principal = request.extensions().get::<Principal>().cloned();
        let text = principal.map_or_else(
            || "anonymous".to_owned(),
            |p| {
                format!(
                    "{} {:?} {:?} {:?}",
                    p.user, p.groups, p.organization, p.permissions
                )
            },
        );
        Ok::<_, Infallible>(http::Response::new(text))
    });
    let mut request = Request::get("/");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if grpc {
        request = request.header(CONTENT_TYPE, "application/grpc");
    }
    let response = layer
        .layer(app)
        .oneshot(request.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let rejection = response.extensions().get::<JwtRejection>().copied();
    let headers = response.headers().clone();
    let body: Bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        rejection,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
    }
}

/// Waits up to five seconds for `condition`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tokens_from_each_key_type_verify_with_their_own_key_and_algorithm() {
    let keys = [
        TestKey::new("rs256", Algorithm::RS256, RSA_PRIVATE),
        TestKey::new("rs384", Algorithm::RS384, RSA_PRIVATE),
        TestKey::new("rs512", Algorithm::RS512, RSA_PRIVATE),
        TestKey::new("ps256", Algorithm::PS256, RSA_PRIVATE),
        TestKey::new("es256", Algorithm::ES256, EC_PRIVATE),
        TestKey::new("es384", Algorithm::ES384, EC384_PRIVATE),
        TestKey::new("ed", Algorithm::EdDSA, ED_PRIVATE),
    ];
    let idp = Idp::start(&keys.iter().collect::<Vec<_>>()).await;
    let remote = RemoteKeys::jwks_url(idp.jwks_url()).start().await.unwrap();
    assert!(remote.is_ready());
    assert_eq!(remote.current().unwrap().len(), keys.len());
    let layer = JwtAuthLayer::remote(remote);
    let debug = format!("{layer:?}");
    for key in &keys {
        let jwk = key.jwk();
        let material = jwk
            .get("n")
            .or_else(|| jwk.get("x"))
            .unwrap()
            .as_str()
            .unwrap();
        assert!(!debug.contains(&material[..16]), "{debug}");
    }
    assert!(
        debug.contains("rs256") && debug.contains("PS256"),
        "{debug}"
    );

    for key in &keys {
        let answer = call(&layer, Some(&key.sign("alice", json!({}))), false).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {}",
            key.kid,
            answer.body
        );
        assert!(answer.body.starts_with("alice "), "{}", key.kid);
    }

    let rsa = &keys[0];
    let cases = [
        (
            "the kid's key, another algorithm of its family",
            rsa.sign_as("rs256", Algorithm::RS512, "a", json!({})),
            JwtRejection::UnsupportedAlgorithm,
        ),
        (
            "the kid of an EC key, an RSA signature",
            rsa.sign_as("es256", Algorithm::RS256, "a", json!({})),
            JwtRejection::UnsupportedAlgorithm,
        ),
        (
            "the right algorithm, another key's signature",
            TestKey::new("x", Algorithm::RS256, RSA2_PRIVATE).sign_as(
                "rs256",
                Algorithm::RS256,
                "a",
                json!({}),
            ),
            JwtRejection::InvalidSignature,
        ),
        (
            "no kid in a set of several",
            {
                let header = Header::new(Algorithm::RS256);
                let claims = json!({"sub": "a", "exp": now() + 300});
                jsonwebtoken::encode(&header, &claims, &rsa.private).unwrap()
            },
            JwtRejection::UnknownKey,
        ),
        (
            "HS256 with the public key as the secret",
            {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some("rs256".to_owned());
                let claims = json!({"sub": "a", "exp": now() + 300});
                let public = serde_json::to_vec(&rsa.jwk()).unwrap();
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public)).unwrap()
            },
            JwtRejection::UnsupportedAlgorithm,
        ),
    ];
    for (name, token, want) in cases {
        let answer = call(&layer, Some(&token), false).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(answer.rejection, Some(want), "{name}");
    }
}

#[tokio::test]
async fn a_single_key_set_verifies_tokens_without_a_kid() {
    let key = rsa();
    let idp = Idp::start(&[&key]).await;
    let layer = JwtAuthLayer::remote(RemoteKeys::jwks_url(idp.jwks_url()).start().await.unwrap());
    let header = Header::new(Algorithm::RS256);
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "a", "exp": now() + 60}),
        &key.private,
    )
    .unwrap();
    assert_eq!(
        call(&layer, Some(&token), false).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rotation_a_new_kid_verifies_after_one_refetch_and_a_removed_key_stops() {
    let (old, new) = (rsa(), rsa2());
    let idp = Idp::start(&[&old]).await;
    let remote = RemoteKeys::jwks_url(idp.jwks_url())
        .refresh_interval(Duration::from_secs(3600))
        .unknown_kid_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let layer = JwtAuthLayer::remote(remote.clone());
    assert_eq!(idp.jwks_requests(), 1, "fetched at start");
    let old_token = old.sign("alice", json!({}));
    assert_eq!(
        call(&layer, Some(&old_token), false).await.status,
        StatusCode::OK
    );

    // The provider publishes a new key and signs with it at once.
    idp.publish(&[&old, &new]);
    let new_token = new.sign("bob", json!({}));
    let first = call(&layer, Some(&new_token), false).await;
    assert_eq!(first.rejection, Some(JwtRejection::UnknownKey));
    eventually("the refetch", || {
        remote
            .current()
            .is_some_and(|set| set.algorithm("rsa-2").is_some())
    })
    .await;
    assert_eq!(idp.jwks_requests(), 2, "exactly one refetch");
    let answer = call(&layer, Some(&new_token), false).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.starts_with("bob "));
    assert_eq!(
        call(&layer, Some(&old_token), false).await.status,
        StatusCode::OK
    );

    // The old key is retired: it stops verifying with the next fetch.
    idp.publish(&[&new]);
    remote.refresh().await.unwrap();
    let answer = call(&layer, Some(&old_token), false).await;
    assert_eq!(answer.rejection, Some(JwtRejection::UnknownKey));
    assert_eq!(
        call(&layer, Some(&new_token), false).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_provider_one_request_per_interval() {
    let key = rsa();
    let idp = Idp::start(&[&key]).await;
    // The default interval (10 seconds): the flood runs well within it.
    let remote = RemoteKeys::jwks_url(idp.jwks_url()).start().await.unwrap();
    let layer = JwtAuthLayer::remote(remote);
    let started = Instant::now();
    // Signed with HMAC, which is fast: the kid is looked up before anything else.
    let hmac = EncodingKey::from_secret(b"anything: the kid is unknown");
    for i in 0..500 {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(format!("made-up-{i}"));
        let token = jsonwebtoken::encode(&header, &json!({"sub": "eve", "exp": now() + 60}), &hmac)
            .unwrap();
        let answer = call(&layer, Some(&token), false).await;
        assert_eq!(answer.rejection, Some(JwtRejection::UnknownKey), "{i}");
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the flood outlasted the interval"
    );
    assert_eq!(
        idp.jwks_requests(),
        2,
        "the fetch at start and one refetch for 500 unknown kids"
    );
    assert_eq!(
        call(&layer, Some(&key.sign("alice", json!({}))), false)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_provider_down_keeps_the_last_good_keys() {
    let key = rsa();
    let idp = Idp::start(&[&key]).await;
    let remote = RemoteKeys::jwks_url(idp.jwks_url())
        .refresh_interval(Duration::from_millis(50))
        .retry_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let layer = JwtAuthLayer::remote(remote.clone());
    let token = key.sign("alice", json!({}));

    idp.set_down(true);
    let error = remote.refresh().await.unwrap_err();
    assert!(
        matches!(error, JwksError::Status { status: 503, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("HTTP status 503"), "{error}");
    let before = idp.jwks_requests();
    eventually("background refreshes that fail", || {
        idp.jwks_requests() >= before + 3
    })
    .await;
    assert_eq!(
        call(&layer, Some(&token), false).await.status,
        StatusCode::OK
    );

    // A set the provider garbles is a failure too: the good keys stay.
    idp.set_down(false);
    idp.state.keys.lock().unwrap().clear();
    let error = remote.refresh().await.unwrap_err();
    assert!(error.to_string().contains("none of its 0 keys"), "{error}");
    assert_eq!(
        call(&layer, Some(&token), false).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn before_the_first_fetch_tokens_get_503_never_a_pass() {
    let key = rsa();
    let idp = Idp::start(&[&key]).await;
    idp.set_down(true);
    let remote = RemoteKeys::jwks_url(idp.jwks_url())
        .retry_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("a provider down at start is not fatal");
    assert!(!remote.is_ready());
    let layer = JwtAuthLayer::remote(remote.clone());
    let token = key.sign("alice", json!({}));

    let answer = call(&layer, Some(&token), false).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.rejection, Some(JwtRejection::KeysUnavailable));
    assert_eq!(answer.headers[RETRY_AFTER], "5");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "keysUnavailable", "{body}");
    assert_eq!(body["errors"][0]["status"], "503", "{body}");

    let answer = call(&layer, Some(&token), true).await;
    assert_eq!(answer.status, StatusCode::OK, "trailers-only gRPC");
    assert_eq!(answer.headers["grpc-status"], "14", "UNAVAILABLE");

    let answer = call(&layer, Some("garbage"), false).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "unverifiable either way"
    );
    assert_eq!(call(&layer, None, false).await.body, "anonymous");

    idp.set_down(false);
    eventually("the first successful fetch", || remote.is_ready()).await;
    let answer = call(&layer, Some(&token), false).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn cache_control_max_age_is_honoured_within_bounds() {
    let key = rsa();
    let idp = Idp::start(&[&key]).await;
    *idp.state.max_age.lock().unwrap() = Some(0);
    let _remote = RemoteKeys::jwks_url(idp.jwks_url())
        .refresh_interval(Duration::from_secs(3600))
        .max_age_bounds(Duration::from_millis(300), Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let requests = idp.jwks_requests();
    assert!(
        (3..=5).contains(&requests),
        "max-age=0 lifted to the 300 ms bound: about 4 requests in a second, not {requests}"
    );

    let idp = Idp::start(&[&key]).await;
    *idp.state.max_age.lock().unwrap() = Some(86_400);
    let _remote = RemoteKeys::jwks_url(idp.jwks_url())
        .max_age_bounds(Duration::from_millis(100), Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    eventually("a refresh capped at 200 ms", || idp.jwks_requests() >= 3).await;
}

#[tokio::test]
async fn discovery_requires_the_exact_issuer() {
    let key = rsa();
    let idp = Idp::start(&[&key]).await;
    let remote = RemoteKeys::oidc_issuer(idp.issuer()).start().await.unwrap();
    assert_eq!(remote.issuer(), Some(idp.issuer().as_str()));
    assert_eq!(remote.jwks_uri().to_string(), idp.jwks_url());
    let layer = JwtAuthLayer::remote(remote).audience("orders");

    let good = key.sign("alice", json!({"iss": idp.issuer(), "aud": "orders"}));
    assert_eq!(
        call(&layer, Some(&good), false).await.status,
        StatusCode::OK
    );
    let cases = [
        (json!({"aud": "orders"}), JwtRejection::InvalidIssuer),
        (
            json!({"iss": "https://elsewhere.example", "aud": "orders"}),
            JwtRejection::InvalidIssuer,
        ),
        (json!({"iss": idp.issuer()}), JwtRejection::InvalidAudience),
    ];
    for (claims, want) in cases {
        let answer = call(&layer, Some(&key.sign("alice", claims.clone())), false).await;
        assert_eq!(answer.rejection, Some(want), "{claims}");
    }

    // The configured issuer with a trailing slash is another issuer.
    let error = RemoteKeys::oidc_issuer(format!("{}/", idp.issuer()))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, JwksError::IssuerMismatch { .. }), "{error}");
    *idp.state.named_issuer.lock().unwrap() = Some("https://impostor.example".to_owned());
    let error = RemoteKeys::oidc_issuer(idp.issuer())
        .start()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("names the issuer \"https://impostor.example\"")
            && message.contains("configure the issuer exactly"),
        "{message}"
    );

    let error = RemoteKeys::oidc_issuer("http://sso.example.com/realms/acme")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(error, JwksError::InvalidUrl { .. }), "{error}");
    assert!(error.to_string().contains("loopback"), "{error}");
    let error = RemoteKeys::jwks_url(format!("http://{}/missing", idp.addr))
        .start()
        .await
        .map(|keys| keys.is_ready());
    assert_eq!(
        error.ok(),
        Some(false),
        "a 404 JWK set is retried, not fatal"
    );
}

#[tokio::test]
async fn two_issuers_in_one_layer_each_with_its_own_keys_and_claims() {
    let (keycloak_key, entra_key) = (rsa(), TestKey::new("ed", Algorithm::EdDSA, ED_PRIVATE));
    let keycloak = Idp::start(&[&keycloak_key]).await;
    let entra = Idp::start(&[&entra_key]).await;
    let layer = JwtAuthLayer::issuers([
        JwtAuthLayer::remote(
            RemoteKeys::oidc_issuer(keycloak.issuer())
                .start()
                .await
                .unwrap(),
        )
        .audience("orders-api")
        .claims(
            ClaimNames::default()
                .groups("/realm_access/roles")
                .permissions("/resource_access/orders-api/roles"),
        )
        .organization("acme")
        .unwrap(),
        JwtAuthLayer::remote(
            RemoteKeys::oidc_issuer(entra.issuer())
                .start()
                .await
                .unwrap(),
        )
        .claims(
            ClaimNames::default()
                .user("oid")
                .groups("roles")
                .permissions("scp")
                .org("tid"),
        ),
    ])
    .unwrap();

    let token = keycloak_key.sign(
        "alice",
        json!({"iss": keycloak.issuer(), "aud": "orders-api",
               "realm_access": {"roles": ["staff"]},
               "resource_access": {"orders-api": {"roles": ["MANAGE"]}}}),
    );
    let answer = call(&layer, Some(&token), false).await;
    assert_eq!(answer.body, r#"alice ["staff"] Some("acme") ["MANAGE"]"#);

    let token = entra_key.sign(
        "pairwise-subject",
        json!({"iss": entra.issuer(), "oid": "0000-1111", "tid": "tenant-9",
               "roles": ["Orders.Admin"], "scp": "orders.read orders.write"}),
    );
    let answer = call(&layer, Some(&token), false).await;
    assert_eq!(
        answer.body,
        r#"0000-1111 ["Orders.Admin"] Some("tenant-9") ["orders.read", "orders.write"]"#
    );

    let cases = [
        (
            "the other issuer's key",
            entra_key.sign("a", json!({"iss": keycloak.issuer(), "aud": "orders-api"})),
            JwtRejection::UnknownKey,
        ),
        (
            "the audience of the first issuer",
            keycloak_key.sign("a", json!({"iss": keycloak.issuer()})),
            JwtRejection::InvalidAudience,
        ),
        (
            "an issuer not configured",
            keycloak_key.sign("a", json!({"iss": "https://other.example"})),
            JwtRejection::InvalidIssuer,
        ),
        (
            "no issuer",
            keycloak_key.sign("a", json!({})),
            JwtRejection::InvalidIssuer,
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(
            call(&layer, Some(&token), false).await.rejection,
            Some(want),
            "{name}"
        );
    }

    let error = JwtAuthLayer::issuers([
        JwtAuthLayer::hs256(b"a development secret of at least 32 bytes").issuer("https://a"),
        JwtAuthLayer::hs256(b"a development secret of at least 32 bytes").issuer("https://a"),
    ])
    .unwrap_err();
    assert!(error.to_string().contains("configured twice"), "{error}");
    let error = JwtAuthLayer::issuers([JwtAuthLayer::hs256(b"a development secret of 32 bytes!")])
        .unwrap_err();
    assert!(error.to_string().contains("needs its issuer"), "{error}");
}

async fn serve_grpc(layer: JwtAuthLayer) -> SocketAddr {
    // alice only from 192.0.2.0/24: the loopback client is refused.
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("alice-office")
            .sources(["192.0.2.0/24"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .layer(AllowlistLayer::new(handle))
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

#[tokio::test]
async fn tonic_client_end_to_end_with_provider_keys() {
    let key = TestKey::new("es", Algorithm::ES256, EC_PRIVATE);
    let idp = Idp::start(&[&key]).await;
    idp.set_down(true);
    let remote = RemoteKeys::oidc_issuer(idp.issuer())
        .retry_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let server = serve_grpc(JwtAuthLayer::remote(remote.clone())).await;
    let bob = key.sign("bob", json!({"iss": idp.issuer()}));

    let status = common::grpc_health_check(server, Some(&bob))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "no keys yet: {status:?}");

    idp.set_down(false);
    eventually("the keys", || remote.is_ready()).await;
    common::grpc_health_check(server, Some(&bob))
        .await
        .expect("bob has no policy");
    let alice = key.sign("alice", json!({"iss": idp.issuer()}));
    let status = common::grpc_health_check(server, Some(&alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = common::grpc_health_check(server, None).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "no identity: {status:?}"
    );
    let forged = rsa().sign("bob", json!({"iss": idp.issuer()}));
    let status = common::grpc_health_check(server, Some(&forged))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[test]
fn demo_server_verifies_tokens_from_the_provider() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = rsa();
    let idp = runtime.block_on(Idp::start(&[&key]));
    let issuer = idp.issuer();
    let db = std::env::temp_dir().join(format!("allowlist-jwks-demo-{}.db", std::process::id()));
    let server = common::demo::start_with(
        &format!("sqlite://{}", db.display()),
        "unused secret: tokens come from the provider",
        &["--oidc-issuer", &issuer, "--audience", "orders"],
    );
    let token = key.sign("alice", json!({"iss": issuer, "aud": "orders"}));
    let profile = |token: &str| {
        runtime.block_on(common::demo::send(
            server.addr,
            http::Method::GET,
            "/api/v1/profile",
            Some(token),
            None,
        ))
    };
    let (status, body) = profile(&token);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "alice", "{body}");
    let hs256 = tower_ip_allowlist::jwt::encode_hs256(
        b"unused secret: tokens come from the provider",
        &tower_ip_allowlist::jwt::TokenClaims::new("alice", Duration::from_secs(60)),
    )
    .unwrap();
    let (status, _) = profile(&hs256);
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the secret no longer signs tokens"
    );
    drop(server);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// The `tonic_basic` example that `cargo test` builds next to the test binaries.
fn tonic_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let binary = dir
        .join("examples")
        .join(format!("tonic_basic{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --all-features`, which builds the examples",
        binary.display()
    );
    binary
}

#[test]
fn tonic_example_server_and_its_client_mode() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Command::new(tonic_example())
        .env("LISTEN", &listen)
        .env("RUST_LOG", "warn")
        .env_remove("JWKS_URL")
        .env_remove("OIDC_ISSUER")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open to the end: the server prints more lines, and a closed pipe kills it.
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("gRPC health service on"), "{first}");
    let client = |user: Option<&str>| {
        let output = Command::new(tonic_example())
            .env("LISTEN", &listen)
            .env("RUST_LOG", "warn")
            .env_remove("TOKEN")
            .arg("client")
            .args(user)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let answers = [client(Some("alice")), client(Some("mallory")), client(None)];
    let _ = server.kill();
    let _ = server.wait();
    drop(stdout);
    assert_eq!(answers[0].trim(), "OK: Serving");
    assert!(
        answers[1].starts_with("PermissionDenied:"),
        "{}",
        answers[1]
    );
    assert!(answers[2].starts_with("Unauthenticated:"), "{}", answers[2]);
}
