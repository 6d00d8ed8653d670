//! The tower layer that enforces IP allowlist policies.
//!
//! [`AllowlistLayer`] runs **after** authentication. For each request it
//!
//! 1. takes the client address recorded by [`ClientIpLayer`](crate::client_ip::ClientIpLayer)
//!    (or, when no layer recorded one, resolves it with its own resolver, the TCP peer
//!    by default, and records it for the handlers: see
//!    [`client_ip`](crate::client_ip#resolve-once));
//! 2. reads the caller's [`Identity`](crate::principal::Identity) from the request
//!    extensions. No identity: refused with 401 `unauthenticated` by default, so that a
//!    forgotten [`with_identity`](AllowlistLayer::with_identity) or an authentication
//!    layer on the wrong side fails closed; with
//!    [`allow_anonymous`](AllowlistLayer::allow_anonymous) (public routes) the request
//!    goes on. Credentials that reach the layer unread are logged at WARN either way,
//!    and a request this crate's JWT or API-token layer authenticated (a `Principal`)
//!    that the layer cannot read as its identity type is refused (401) even then: it
//!    is not anonymous. An identity of another organization than the request's
//!    [tenant](crate::tenant) is refused with 401 `organizationMismatch`, on
//!    [exempt](AllowlistLayer::exempt) routes too;
//! 3. loads the current [`Snapshot`](crate::snapshot::Snapshot) once and decides in
//!    the tenant's organization. No
//!    applicable policy: the request goes on. Applicable policies and an address inside
//!    one of them: the request goes on. Otherwise, and also when the address cannot be
//!    determined, the request is refused: never fail open. Until the policies are
//!    loaded at all (a [pending](crate::snapshot::SnapshotHandle::pending) handle,
//!    while a replica waits for its database), every request carrying an identity is
//!    refused with 503 `policiesUnavailable`, since whether a policy applies is unknown.
//!
//! A refused HTTP request gets 403 with a short JSON body naming the reason
//! (`ipNotAllowed`, `clientIpUnknown`) and no hint of which addresses would be allowed;
//! a gRPC request gets a trailers-only response with status 7 `PERMISSION_DENIED`, which
//! tonic clients see as `Code::PermissionDenied` (before the policies are loaded: 503,
//! and gRPC status 14 `UNAVAILABLE`). The [`DenyReason`](crate::snapshot::DenyReason)
//! is in the response extensions; the response itself is replaceable with
//! [`AllowlistLayer::rejection`].
//!
//! The layer keeps the inner service's error type and does not box its future.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_ip_allowlist::{layer::AllowlistLayer, principal::Principal};
//! use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
//! use tower_ip_allowlist::snapshot::{DenyReason, SnapshotHandle};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut org = OrgPolicies::default();
//! org.insert_policy(Policy::builder("vpn").sources(["203.0.113.0/24"])?.user("alice").build()?);
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::default(), &org);
//!
//! let app = service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//! });
//! let app = AllowlistLayer::new(handle).layer(app);
//!
//! // What an authentication layer and the server would have put in the extensions.
//! let request = |peer: &str| {
//!     let mut request = Request::new(String::new());
//!     request.extensions_mut().insert(Principal::new("alice"));
//!     request.extensions_mut().insert(peer.parse::<SocketAddr>().unwrap());
//!     request
//! };
//!
//! let response = app.clone().oneshot(request("203.0.113.7:50000")).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.oneshot(request("192.0.2.1:50000")).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(response.extensions().get::<DenyReason>(), Some(&DenyReason::IpNotAllowed));
//! # Ok(())
//! # }
//! ```
//!
//! # Where to put it
//!
//! With axum, `Router::layer` wraps every route, including a fallback; `route_layer`
//! only the routes added before it, so a request to an unknown path gets its 404 without
//! the allowlist being consulted. Either way the authentication layer must sit outside
//! (be added after) the allowlist layer so the identity is in the extensions when it
//! runs. With tonic, add it with `Server::builder().layer(...)`.
//!
//! # Security
//!
//! The decision is only as good as the identity and the address it is given: the
//! identity must come from a layer that verified it, and the address from a strategy
//! that cannot be spoofed. The default reads the TCP peer and trusts no header; read
//! [`client_ip`](crate::client_ip#security) before trusting proxies.

mod future;
#[allow(clippy::module_inception)]
mod layer;
mod require;
mod response;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::AllowlistLayer;
pub use self::require::{RequireIdentityLayer, RequireIdentityService};
pub(crate) use self::response::{error_document, JSON_API};
pub use self::response::{DefaultRejection, Denial, Rejection};
pub(crate) use self::service::reject;
pub use self::service::AllowlistService;
pub use crate::body::{RefusalBody, ResponseBody};
