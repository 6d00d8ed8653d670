//! The JWT layer with real signed tokens: through `oneshot` where the network does not
//! matter, in a real axum server and a real tonic server on loopback where it does.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use common::serve;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::Code;
use tower::ServiceExt;
use tower_ip_allowlist::jwt::{
    encode, encode_hs256, Algorithm, ClaimNames, JwtAuthLayer, JwtConfigError, JwtRejection,
    RequirePrincipalLayer, TokenClaims, Unauthenticated,
};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;

const SECRET: &[u8] = b"integration-test secret: 32 bytes or more, random in production";

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed_public.pem");

const EXPIRED: &str = r#"Bearer error="invalid_token", error_description="The token has expired.""#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs arbitrary claims, for shapes `TokenClaims` cannot express.
fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn alice() -> TokenClaims {
    TokenClaims::new("alice", Duration::from_secs(300))
        .with_groups(["admins", "oncall"])
        .with_org("acme")
        .with_permissions(["MANAGE"])
}

/// The principal as text, or `anonymous`.
async fn whoami(principal: Option<Extension<Principal>>) -> String {
    match principal {
        Some(Extension(p)) => format!(
            "{} {:?} {:?} {:?}",
            p.user, p.groups, p.organization, p.permissions
        ),
        None => "anonymous".to_owned(),
    }
}

/// `/whoami` is open to anonymous callers, `/me` requires a principal.
fn app(layer: JwtAuthLayer) -> Router {
    Router::new()
        .route("/me", get(whoami))
        .route_layer(RequirePrincipalLayer::new())
        .route("/whoami", get(whoami))
        .layer(layer)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    rejection: Option<JwtRejection>,
}

async fn call_with(app: Router, path: &str, authorization: Option<HeaderValue>) -> Answer {
    let mut request = Request::get(path);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let rejection = response.extensions().get::<JwtRejection>().copied();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        rejection,
    }
}

async fn call(layer: JwtAuthLayer, token: &str) -> Answer {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    call_with(app(layer), "/whoami", Some(value)).await
}

#[track_caller]
fn assert_rejected(answer: &Answer, reason: JwtRejection) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(answer.rejection, Some(reason), "{}", answer.body);
    let challenge = answer.headers[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer error="invalid_token", error_description=""#),
        "{challenge}"
    );
}

/// One HTTP/1.1 GET over loopback.
async fn http_get(
    server: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::get(path).header("host", "test");
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let response = sender
        .send_request(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn valid_hs256_token_maps_claims_over_loopback() {
    let server = serve(app(JwtAuthLayer::hs256(SECRET))).await;
    let token = encode_hs256(SECRET, &alice()).unwrap();

    for path in ["/whoami", "/me"] {
        let (status, _, body) = http_get(server, path, Some(&format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            r#"alice ["admins", "oncall"] Some("acme") ["MANAGE"]"#
        );
    }

    // No org claim: the default organization (None); lower-case scheme.
    let token = encode_hs256(SECRET, &TokenClaims::new("bob", Duration::from_secs(60))).unwrap();
    let (status, _, body) = http_get(server, "/whoami", Some(&format!("bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "bob [] None []");

    // An expired token is refused over the wire too, with the exact challenge.
    let expired = encode_hs256(SECRET, &alice().with_expiry(now() - 3600)).unwrap();
    let (status, headers, body) =
        http_get(server, "/whoami", Some(&format!("Bearer {expired}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[WWW_AUTHENTICATE], EXPIRED);
    assert_eq!(headers[CONTENT_TYPE], "application/vnd.api+json");
    assert_eq!(
        body,
        r#"{"errors":[{"status":"401","code":"unauthenticated","title":"Unauthenticated","detail":"The token has expired."}]}"#
    );
}

#[tokio::test]
async fn custom_claim_names() {
    let layer = JwtAuthLayer::hs256(SECRET).claims(
        ClaimNames::default()
            .user("oid")
            .groups("roles")
            .org("tid")
            .permissions("scp"),
    );
    let token = hs256(&json!({
        "oid": "u-42", "sub": "not-this-one", "roles": ["readers"], "tid": "tenant-7",
        "scp": ["read", "write"], "groups": ["ignored"], "exp": now() + 60,
    }));
    let answer = call(layer.clone(), &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.body,
        r#"u-42 ["readers"] Some("tenant-7") ["read", "write"]"#
    );

    // The default names no longer count: no `oid`, no user.
    let token = encode_hs256(SECRET, &alice()).unwrap();
    assert_rejected(&call(layer, &token).await, JwtRejection::InvalidClaims);
}

#[tokio::test]
async fn claims_of_the_wrong_type_make_the_token_invalid() {
    let exp = now() + 60;
    for claims in [
        json!({"exp": exp}),
        json!({"sub": "", "exp": exp}),
        json!({"sub": 7, "exp": exp}),
        json!({"sub": "a", "groups": "admins", "exp": exp}),
        json!({"sub": "a", "groups": [1, 2], "exp": exp}),
        json!({"sub": "a", "org": {"id": "acme"}, "exp": exp}),
        json!({"sub": "a", "permissions": 7, "exp": exp}),
        json!({"sub": "a", "permissions": {"MANAGE": true}, "exp": exp}),
        json!({"sub": "a"}),
        json!({"sub": "a", "exp": "tomorrow"}),
    ] {
        let answer = call(JwtAuthLayer::hs256(SECRET), &hs256(&claims)).await;
        assert_eq!(
            answer.rejection,
            Some(JwtRejection::InvalidClaims),
            "{claims}"
        );
        assert_rejected(&answer, JwtRejection::InvalidClaims);
    }
}

#[tokio::test]
async fn expired_token_gets_the_exact_challenge() {
    let token = encode_hs256(SECRET, &alice().with_expiry(now() - 120)).unwrap();
    let answer = call(JwtAuthLayer::hs256(SECRET), &token).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.rejection, Some(JwtRejection::Expired));
    assert_eq!(answer.headers[WWW_AUTHENTICATE], EXPIRED);
    assert_eq!(answer.headers[CONTENT_TYPE], "application/vnd.api+json");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["errors"][0]["code"], "unauthenticated");
    assert_eq!(body["errors"][0]["status"], "401");
}

#[tokio::test]
async fn not_before_in_the_future() {
    let token = encode_hs256(SECRET, &alice().with_not_before(now() + 600)).unwrap();
    let answer = call(JwtAuthLayer::hs256(SECRET), &token).await;
    assert_rejected(&answer, JwtRejection::NotYetValid);
    assert_eq!(
        answer.headers[WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token", error_description="The token is not valid yet.""#
    );

    // Within the leeway it is accepted.
    let token = encode_hs256(SECRET, &alice().with_not_before(now() + 30)).unwrap();
    assert_eq!(
        call(JwtAuthLayer::hs256(SECRET), &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn leeway_is_honoured() {
    // Expired 30 s ago: inside the default 60 s leeway.
    let token = encode_hs256(SECRET, &alice().with_expiry(now() - 30)).unwrap();
    assert_eq!(
        call(JwtAuthLayer::hs256(SECRET), &token).await.status,
        StatusCode::OK
    );
    let strict = JwtAuthLayer::hs256(SECRET).leeway(Duration::ZERO);
    assert_rejected(&call(strict, &token).await, JwtRejection::Expired);

    // Expired 100 s ago: outside the default, inside 120 s.
    let token = encode_hs256(SECRET, &alice().with_expiry(now() - 100)).unwrap();
    assert_rejected(
        &call(JwtAuthLayer::hs256(SECRET), &token).await,
        JwtRejection::Expired,
    );
    let lenient = JwtAuthLayer::hs256(SECRET).leeway(Duration::from_secs(120));
    assert_eq!(call(lenient, &token).await.status, StatusCode::OK);

    // Not before 100 s from now.
    let token = encode_hs256(SECRET, &alice().with_not_before(now() + 100)).unwrap();
    let strict = JwtAuthLayer::hs256(SECRET).leeway(Duration::from_secs(10));
    assert_rejected(&call(strict, &token).await, JwtRejection::NotYetValid);
}

#[tokio::test]
async fn wrong_secret_is_refused() {
    let token = encode_hs256(b"some other secret of sufficient length!!", &alice()).unwrap();
    let answer = call(JwtAuthLayer::hs256(SECRET), &token).await;
    assert_rejected(&answer, JwtRejection::InvalidSignature);

    // A tampered payload with the original signature.
    let token = encode_hs256(SECRET, &alice()).unwrap();
    let forged = hs256(&json!({"sub": "mallory", "exp": now() + 60}));
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = forged.split('.').nth(1).unwrap();
    let answer = call(JwtAuthLayer::hs256(SECRET), &parts.join(".")).await;
    assert_rejected(&answer, JwtRejection::InvalidSignature);
}

#[tokio::test]
async fn other_algorithms_are_refused_no_alg_confusion() {
    let claims = json!({"sub": "mallory", "exp": now() + 60});

    // The classic: HS256 "signed" with the server's public key as the HMAC secret.
    let rs = JwtAuthLayer::rs256_pem(RSA_PUBLIC).unwrap();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        &claims,
    );
    assert_rejected(
        &call(rs.clone(), &token).await,
        JwtRejection::UnsupportedAlgorithm,
    );

    let es = JwtAuthLayer::es256_pem(EC_PUBLIC).unwrap();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(EC_PUBLIC),
        &claims,
    );
    assert_rejected(
        &call(es.clone(), &token).await,
        JwtRejection::UnsupportedAlgorithm,
    );

    let ed = JwtAuthLayer::eddsa_pem(ED_PUBLIC).unwrap();
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(ED_PUBLIC),
        &claims,
    );
    assert_rejected(&call(ed, &token).await, JwtRejection::UnsupportedAlgorithm);

    // Another asymmetric algorithm, properly signed, is refused too.
    let rs_token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        &claims,
    );
    assert_rejected(
        &call(es, &rs_token).await,
        JwtRejection::UnsupportedAlgorithm,
    );
    // And an HMAC layer refuses an RS256 token and an HS512 one.
    assert_rejected(
        &call(JwtAuthLayer::hs256(SECRET), &rs_token).await,
        JwtRejection::UnsupportedAlgorithm,
    );
    let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET), &claims);
    assert_rejected(
        &call(JwtAuthLayer::hs256(SECRET), &hs512).await,
        JwtRejection::UnsupportedAlgorithm,
    );
    assert_eq!(
        call(JwtAuthLayer::hs512(SECRET), &hs512).await.status,
        StatusCode::OK
    );

    // `alg: none`, unsigned.
    let payload = hs256(&claims);
    let payload = payload.split('.').nth(1).unwrap();
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let answer = call(rs, &none).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_keys_work() {
    let cases = [
        (
            "RS256",
            JwtAuthLayer::rs256_pem(RSA_PUBLIC).unwrap(),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            "ES256",
            JwtAuthLayer::es256_pem(EC_PUBLIC).unwrap(),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        ),
        (
            "EdDSA",
            JwtAuthLayer::eddsa_pem(ED_PUBLIC).unwrap(),
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        ),
    ];
    for (name, layer, algorithm, key) in cases {
        assert_eq!(layer.algorithm(), Some(algorithm), "{name}");
        let token = encode(&key, algorithm, &alice()).unwrap();
        let answer = call(layer.clone(), &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.body);
        assert!(answer.body.starts_with("alice "), "{name}: {}", answer.body);

        // A flipped signature byte.
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let answer = call(layer, &String::from_utf8(bytes).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
    }
}

#[test]
fn pem_of_the_wrong_kind_is_a_config_error() {
    for (name, result) in [
        ("garbage", JwtAuthLayer::rs256_pem(b"not a pem")),
        ("EC key for RS256", JwtAuthLayer::rs256_pem(EC_PUBLIC)),
        ("RSA key for ES256", JwtAuthLayer::es256_pem(RSA_PUBLIC)),
        ("RSA key for EdDSA", JwtAuthLayer::eddsa_pem(RSA_PUBLIC)),
    ] {
        let error = result.expect_err(name);
        assert!(
            matches!(error, JwtConfigError::InvalidKey { .. }),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains("public key"), "{name}: {error}");
    }
}

#[tokio::test]
async fn issuer_and_audience_when_configured() {
    let layer = JwtAuthLayer::hs256(SECRET)
        .issuer("https://idp.example")
        .audience("allowlist-api");
    let good = alice()
        .with_issuer("https://idp.example")
        .with_audience("allowlist-api");
    let token = encode_hs256(SECRET, &good).unwrap();
    assert_eq!(call(layer.clone(), &token).await.status, StatusCode::OK);

    let cases = [
        (
            alice().with_audience("allowlist-api"),
            JwtRejection::InvalidIssuer,
        ),
        (
            good.clone().with_issuer("https://evil.example"),
            JwtRejection::InvalidIssuer,
        ),
        (
            alice().with_issuer("https://idp.example"),
            JwtRejection::InvalidAudience,
        ),
        (
            good.clone().with_audience("billing"),
            JwtRejection::InvalidAudience,
        ),
    ];
    for (claims, reason) in cases {
        let token = encode_hs256(SECRET, &claims).unwrap();
        assert_rejected(&call(layer.clone(), &token).await, reason);
    }

    // Unconfigured, neither is checked.
    let token = encode_hs256(SECRET, &good.with_audience("billing")).unwrap();
    assert_eq!(
        call(JwtAuthLayer::hs256(SECRET), &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn garbage_is_refused_never_panics() {
    let huge = format!("Bearer {}", "A".repeat(100 * 1024));
    let cases: [(&str, Vec<u8>, JwtRejection); 10] = [
        (
            "scheme only",
            b"Bearer".to_vec(),
            JwtRejection::MalformedHeader,
        ),
        (
            "empty token",
            b"Bearer   ".to_vec(),
            JwtRejection::MalformedHeader,
        ),
        (
            "two parts",
            b"Bearer a.b".to_vec(),
            JwtRejection::MalformedToken,
        ),
        (
            "three empty parts",
            b"Bearer ..".to_vec(),
            JwtRejection::MalformedToken,
        ),
        (
            "four parts",
            b"Bearer a.b.c.d".to_vec(),
            JwtRejection::MalformedToken,
        ),
        (
            // The signature is checked before the payload is read.
            "json header, garbage payload and signature",
            b"Bearer eyJhbGciOiJIUzI1NiJ9.!!!.abc".to_vec(),
            JwtRejection::InvalidSignature,
        ),
        (
            "not utf-8",
            b"Bearer \xc3\x28\xff".to_vec(),
            JwtRejection::MalformedHeader,
        ),
        ("100 KB", huge.into_bytes(), JwtRejection::TokenTooLong),
        (
            "basic",
            b"Basic YWxpY2U6cGFzc3dvcmQ=".to_vec(),
            JwtRejection::MalformedHeader,
        ),
        (
            "token scheme",
            b"Token abc".to_vec(),
            JwtRejection::MalformedHeader,
        ),
    ];
    for (name, value, reason) in cases {
        let value = HeaderValue::from_bytes(&value).unwrap();
        let answer = call_with(app(JwtAuthLayer::hs256(SECRET)), "/whoami", Some(value)).await;
        assert_eq!(answer.rejection, Some(reason), "{name}");
        assert_rejected(&answer, reason);
        assert!(
            answer.body.contains(r#""code":"unauthenticated""#),
            "{name}"
        );
    }
}

#[tokio::test]
async fn no_header_is_anonymous_and_require_principal_refuses_it() {
    let answer = call_with(app(JwtAuthLayer::hs256(SECRET)), "/whoami", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "anonymous");
    assert_eq!(answer.rejection, None);

    let answer = call_with(app(JwtAuthLayer::hs256(SECRET)), "/me", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.rejection, Some(JwtRejection::MissingCredentials));
    assert_eq!(answer.headers[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(answer.headers[CONTENT_TYPE], "application/vnd.api+json");
    assert_eq!(
        answer.body,
        r#"{"errors":[{"status":"401","code":"unauthenticated","title":"Unauthenticated","detail":"Authentication is required."}]}"#
    );
}

#[tokio::test]
async fn grpc_requests_get_unauthenticated_through_oneshot() {
    for path in ["/whoami", "/me"] {
        let mut request = Request::post(path).header(CONTENT_TYPE, "application/grpc");
        if path == "/whoami" {
            request = request.header(AUTHORIZATION, "Bearer not.a.jwt");
        }
        let response = app(JwtAuthLayer::hs256(SECRET))
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["grpc-status"], "16", "{path}");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
    }
}

async fn serve_grpc(require: bool) -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let incoming = TcpListenerStream::new(listener);
        let mut builder = Server::builder().layer(JwtAuthLayer::hs256(SECRET));
        if require {
            builder
                .layer(RequirePrincipalLayer::new())
                .add_service(health)
                .serve_with_incoming(incoming)
                .await
        } else {
            builder
                .add_service(health)
                .serve_with_incoming(incoming)
                .await
        }
        .unwrap();
    });
    addr
}

#[tokio::test]
async fn tonic_client_sees_unauthenticated() {
    let token = encode_hs256(SECRET, &alice()).unwrap();
    let expired = encode_hs256(SECRET, &alice().with_expiry(now() - 3600)).unwrap();

    let server = serve_grpc(false).await;
    common::grpc_health_check(server, Some(&token))
        .await
        .expect("valid token");
    common::grpc_health_check(server, None)
        .await
        .expect("anonymous passes");
    let status = common::grpc_health_check(server, Some(&expired))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "The token has expired.");
    let status = common::grpc_health_check(server, Some("garbage"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let server = serve_grpc(true).await;
    common::grpc_health_check(server, Some(&token))
        .await
        .expect("valid token");
    let status = common::grpc_health_check(server, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn principal_feeds_the_allowlist() {
    // alice may only come from 127.0.0.2; the client below comes from 127.0.0.1.
    let handle = SnapshotHandle::default();
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("desk")
            .sources(["127.0.0.2"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    handle.set_org(OrgId::default(), &org);
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(AllowlistLayer::new(handle))
        .layer(JwtAuthLayer::hs256(SECRET));
    let server = serve(app).await;

    let token = encode_hs256(SECRET, &TokenClaims::new("alice", Duration::from_secs(60))).unwrap();
    let (status, _, body) = http_get(server, "/whoami", Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let token = encode_hs256(SECRET, &TokenClaims::new("bob", Duration::from_secs(60))).unwrap();
    let (status, _, body) = http_get(server, "/whoami", Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn custom_rejection_keeps_the_reason_in_the_extensions() {
    let layer = JwtAuthLayer::hs256(SECRET).rejection(|u: &Unauthenticated| {
        let mut response = Response::new(Bytes::from(u.reason.code()));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
    });
    let app = Router::new().route("/", get(whoami)).layer(layer);
    let response = app
        .oneshot(
            Request::get("/")
                .header(AUTHORIZATION, "Bearer a.b")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.extensions().get::<JwtRejection>(),
        Some(&JwtRejection::MalformedToken)
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "malformedToken");
}

#[test]
fn debug_never_prints_the_key() {
    let secret = "debug-test-secret-4f9c2e";
    let layer = JwtAuthLayer::hs256(secret)
        .issuer("https://idp.example")
        .leeway(Duration::from_secs(5));
    let debug = format!("{layer:?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(debug.contains("HS256"), "{debug}");
    // Nor any of its bytes as a list.
    assert!(
        !debug.contains(&format!("{:?}", secret.as_bytes())[1..10]),
        "{debug}"
    );

    let service = tower::Layer::layer(&layer, ());
    let debug = format!("{service:?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");

    let layer = JwtAuthLayer::rs256_pem(RSA_PUBLIC).unwrap();
    let debug = format!("{layer:?}");
    let key_line = std::str::from_utf8(RSA_PUBLIC)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap();
    assert!(!debug.contains(key_line), "{debug}");
}
