//! IP allowlist policies for [tower] services: per-user and per-group policies,
//! enforced by a layer that runs after authentication.
//!
//! [tower]: https://docs.rs/tower
//!
//! An organization's administrators assign **policies** (allowed addresses and ranges)
//! to users and user groups. When one or more policies apply to the caller, a request is
//! accepted only if its source address is inside at least one of them; otherwise it is
//! refused with 403 Forbidden (gRPC: `PERMISSION_DENIED`). Callers to whom no policy
//! applies are not affected. Requests with no identity are refused with 401 unless the
//! layer is told some routes are public, so that a wiring mistake fails closed.
//!
//! | module | what it holds |
//! |---|---|
//! | [`source`] | allowed-source parsing and validation |
//! | [`policy`] | policies, targets, organizations and the group hierarchy |
//! | [`snapshot`] | the compiled, immutable decision structure and its shared handle |
//! | [`client_ip`] | which address a request comes from, decided once: the peer, or trusted proxies' headers |
//! | [`tenant`] | which organization a request belongs to, decided once from the request (its host) |
//! | [`principal`] | who the caller is, read from the request extensions |
//! | [`layer`] | the tower layer that enforces it all |
//! | [`explain`] | why a caller and address would be allowed or denied, rule by rule |
//! | [`lists`] | site-wide and per-resource allowlists: lists that apply to requests, not users |
//! | [`report`] | report-only rules and what they would have denied |
//! | [`metrics`] | counters through the `metrics` facade (feature `metrics`) |
//! | [`testing`] | requests from a given peer, with an identity and a tenant, for `oneshot` tests |
//! | [`store`] | the validated, authoritative store: limits, versions, lockout guard, audit events; SQLite and PostgreSQL persistence, replication across replicas |
//! | `jwt` | optional JWT bearer authentication: tokens to a [`Principal`](principal::Principal) (feature `jwt`) |
//! | `admin` | the JSON:API admin router and its OpenAPI document (feature `admin`) |
//! | `console` | an administrator's console in the browser, a client of the admin API (feature `console`) |
//! | `api_token` | user-owned API tokens as credentials, beside JWTs: the owner's policies apply to the token (feature `api-tokens`) |
//! | `proxy_protocol` | the client address behind layer-4 load balancers: a listener that reads PROXY protocol v1/v2 headers (feature `proxy-protocol`) |
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_ip_allowlist::{layer::AllowlistLayer, policy::{OrgId, OrgPolicies, Policy}, snapshot::SnapshotHandle};
//!
//! let mut org = OrgPolicies::default();
//! org.insert_policy(Policy::builder("vpn").sources(["203.0.113.0/24"])?.user("alice").build()?);
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::default(), &org);
//!
//! // Routes first, then the allowlist, then (outermost) your authentication layer.
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(AllowlistLayer::new(handle.clone()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `axum` | reads the peer address from axum's `ConnectInfo<SocketAddr>`; `ClientIp` as an axum extractor |
//! | `tonic` | reads the peer address from tonic's `TcpConnectInfo` |
//! | `jwt` | `jwt::JwtAuthLayer`: verifies `Authorization: Bearer` JWTs (HS256/384/512, RS256, ES256, EdDSA; or the keys of a JWK set, `jwt::KeySet`) into a `Principal` |
//! | `jwks` | `jwt::RemoteKeys`: keys from a JWK set URL or OpenID Connect discovery, refreshed in the background, for `JwtAuthLayer::remote` (implies `jwt`) |
//! | `sqlite` | `store::SqliteBackend`: the store in one local SQLite file |
//! | `postgres` | `store::PostgresBackend` and `store::Replicator`: one PostgreSQL database shared by several replicas, each change enforced by every replica within moments |
//! | `api-tokens` | user-owned API tokens: the store keeps their SHA-256 hashes, `api_token::ApiTokenLayer` verifies `Authorization: Bearer tia_...` into the owner's `Principal`, and the admin router gains the `apiTokens` routes |
//! | `admin` | `admin::router`: the JSON:API admin API over the store, with its OpenAPI document |
//! | `console` | `console::router`: an administrator's console (HTML, CSS and JavaScript embedded in the binary, no build step) to serve at `/console` beside the admin API; implies `admin` |
//! | `metrics` | counters of allowed, denied and would-deny requests through the `metrics` facade |
//! | `proxy-protocol` | `proxy_protocol::ProxyProtocolListener`: reads the PROXY protocol header (v1, v2) from trusted layer-4 balancers, for `axum::serve` and tonic's `serve_with_incoming` |
//!
//! # Security
//!
//! The client address is decided once per request, by
//! [`ClientIpLayer`](client_ip::ClientIpLayer) placed outermost, and every layer,
//! handler and guard reads that one outcome; it is the TCP peer unless you configure
//! trusted proxies. Read [`client_ip`] before deploying behind a load balancer. The
//! request's organization is decided the same way, from the request, by
//! [`TenantLayer`](tenant::TenantLayer) (the default organization without one), and an
//! identity of another organization is refused. The README's "Wiring it safely" lists
//! what fails closed and what is logged on the `tower_ip_allowlist::wiring` target.
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a service that wraps `inner: S`, as
/// tower-http's services have them.
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
#[cfg(feature = "api-tokens")]
#[cfg_attr(docsrs, doc(cfg(feature = "api-tokens")))]
pub mod api_token;
mod body;
pub mod client_ip;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
pub mod explain;
mod grpc;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
pub mod layer;
pub mod lists;
pub mod metrics;
pub mod policy;
pub mod principal;
#[cfg(feature = "proxy-protocol")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy-protocol")))]
pub mod proxy_protocol;
pub mod report;
mod seen;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod tenant;
pub mod testing;
mod warn;
