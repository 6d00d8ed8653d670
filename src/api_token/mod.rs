//! User-owned API tokens as credentials: a tower layer that verifies
//! `Authorization: Bearer tia_...` and puts the token owner's
//! [`Principal`](crate::principal::Principal) in the request extensions, so that the
//! [allowlist](crate::layer) treats a token exactly like its owner.
//!
//! Tokens are created, listed and revoked through the store
//! ([`Store::create_api_token`](crate::store::Store::create_api_token), ...) or the
//! admin API's `apiTokens` routes (feature `admin`); see
//! [`ApiTokenRecord`](crate::store::ApiTokenRecord) for what is stored (the SHA-256
//! hash, never the secret) and why SHA-256 is the right hash for them.
//!
//! [`ApiTokenLayer`] sits **outside** the JWT layer (or any other authentication
//! layer): a bearer credential that starts with the prefix
//! ([`API_TOKEN_PREFIX`](crate::store::API_TOKEN_PREFIX), `tia_`) is an API token,
//! anything else goes on untouched to the next layer. A valid token
//!
//! - becomes the owner's `Principal`: user, organization, and the groups and
//!   permissions recorded when the token was created, or what the
//!   [`current_owner`](ApiTokenLayer::current_owner) hook says they are now;
//! - is removed from the request (the `Authorization` header is dropped), so the JWT
//!   layer sees an authenticated request without a header, and no later layer,
//!   handler or log sees the secret;
//! - leaves an [`ApiTokenAuth`] in the extensions, naming the token (not the secret).
//!
//! A token that is malformed, revoked or was never issued is refused with 401
//! `invalidApiToken`, an expired one with 401 `apiTokenExpired` (gRPC: status 16
//! `UNAUTHENTICATED`); when the store cannot be read, 503 `apiTokensUnavailable`
//! (gRPC 14). The [`ApiTokenRejection`] is in the response extensions.
//!
//! # Revocation on every replica
//!
//! The token is looked up in the store's backend on every request that presents one
//! (one indexed read by hash). A revoked token is thus refused by every replica from
//! the moment the revocation is committed: no cache to expire, no notification to wait
//! for. The price is that read, per request with a token, and that requests with a
//! token are refused (503) while the database is unreachable, when JWTs and the
//! policies already loaded keep working.
//!
//! # Last use, and the audit trail
//!
//! The last use is written at most once per token and per
//! [`last_used_interval`](ApiTokenLayer::last_used_interval) (default 5 minutes), by
//! one conditional update that replicas cannot double, with an audit record
//! (`useApiToken`, with the client address a `ClientIpLayer` outside it recorded, or
//! else the TCP peer: put `ClientIpLayer` outside the token layer behind a proxy, or the
//! record names the proxy). Creating
//! and revoking a token are audit events too (`createApiToken`, `revokeApiToken`).
//! The secret is never logged: the layer's events name the token's id.
//!
//! # Groups
//!
//! The store keeps policies and the group hierarchy, not who is in which group: that
//! comes from the identity provider, with each JWT. A token records its owner's direct
//! groups and permissions when it is created, and by default stands for them. When
//! the application knows a user's groups now (a directory it mirrors, SCIM, its own
//! database), give [`current_owner`](ApiTokenLayer::current_owner) a function that
//! returns them: it is asked on each request, and a user whose groups changed meets
//! the new groups' policies on their next request with the token.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{header, Request, StatusCode}, routing::get, Router};
//! use tower::ServiceExt;
//! use tower_ip_allowlist::api_token::ApiTokenLayer;
//! use tower_ip_allowlist::layer::AllowlistLayer;
//! use tower_ip_allowlist::policy::OrgId;
//! use tower_ip_allowlist::principal::Principal;
//! use tower_ip_allowlist::store::{Actor, ApiTokenDraft, PolicyDraft, Store};
//! use tower_ip_allowlist::testing::TestRequest;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::memory();
//! let org = OrgId::default();
//! let bot = Principal::new("deploy-bot").with_groups(["ci"]);
//! store.create_policy(&Actor::system(), &org, PolicyDraft::new("ci-runners", ["203.0.113.0/24"]).groups(["ci"])).await?;
//! let (_, secret) = store.create_api_token(&Actor::system(), &org, &bot, ApiTokenDraft::new("deploys")).await?;
//!
//! // The token layer outside the JWT layer (in a real service) and the allowlist, and
//! // inside `ClientIpLayer` and `TenantLayer` when they are used.
//! let app = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(AllowlistLayer::new(store.handle().clone()))
//!     .layer(ApiTokenLayer::new(store.clone()));
//! let from = |peer: &str, token: &str| {
//!     Request::get("/")
//!         .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!         .body(Body::empty())
//!         .unwrap()
//!         .with_peer(peer)
//! };
//! assert_eq!(app.clone().oneshot(from("203.0.113.9", secret.expose())).await?.status(), StatusCode::OK);
//! assert_eq!(app.clone().oneshot(from("192.0.2.1", secret.expose())).await?.status(), StatusCode::FORBIDDEN);
//! let forged = format!("tia_{}", "0".repeat(64));
//! assert_eq!(app.oneshot(from("203.0.113.9", &forged)).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! Whoever holds a token acts as its owner, from wherever the owner's policies allow.
//! A token cannot create another one through the admin API (403): a stolen token
//! cannot make itself permanent. Give tokens an expiry where you can, and revoke them
//! when their holder leaves.

mod layer;

pub use self::layer::{ApiTokenLayer, ApiTokenService, ResponseFuture};
pub use crate::store::ApiTokenRejection;

/// Which API token authenticated the request: inserted into the request extensions by
/// [`ApiTokenLayer`] beside the owner's `Principal`. It never holds the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiTokenAuth {
    /// The token's public id.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
}
