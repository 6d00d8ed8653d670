//! Helpers for testing a service behind this crate's layers with `oneshot`, without a
//! server: a request from a given peer address, carrying an identity and a tenant, as
//! the server and the authentication layer would hand it over.
//!
//! ```
//! use axum::{body::Body, http::{Request, StatusCode}, routing::get, Router};
//! use tower::ServiceExt;
//! use tower_ip_allowlist::layer::AllowlistLayer;
//! use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
//! use tower_ip_allowlist::principal::Principal;
//! use tower_ip_allowlist::snapshot::SnapshotHandle;
//! use tower_ip_allowlist::testing::TestRequest;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut org = OrgPolicies::default();
//! org.insert_policy(Policy::builder("vpn").sources(["203.0.113.0/24"])?.user("alice").build()?);
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::default(), &org);
//! let app = Router::new().route("/", get(|| async { "hi" })).layer(AllowlistLayer::new(handle));
//!
//! let request = |peer: &str| {
//!     Request::get("/").body(Body::empty()).unwrap().with_peer(peer).with_identity(Principal::new("alice"))
//! };
//! assert_eq!(app.clone().oneshot(request("203.0.113.9")).await?.status(), StatusCode::OK);
//! assert_eq!(app.oneshot(request("192.0.2.1:4000")).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(()) }
//! ```

use std::net::{IpAddr, SocketAddr};

use crate::policy::OrgId;
use crate::principal::Identity;
use crate::tenant::Tenant;

/// Builds requests for tests: see the [module docs](self).
pub trait TestRequest: Sized {
    /// The connection's peer address: an IP address (`"203.0.113.9"`) or a socket
    /// address (`"203.0.113.9:4000"`, `"[2001:db8::1]:443"`), read by the layers as
    /// they read axum's `ConnectInfo`.
    ///
    /// # Panics
    ///
    /// When `peer` is neither: a test's literal is wrong.
    #[must_use]
    fn with_peer(self, peer: &str) -> Self;

    /// The caller, as an authentication layer would insert it.
    #[must_use]
    fn with_identity<I: Identity + Clone>(self, identity: I) -> Self;

    /// The request's tenant, as a [`TenantLayer`](crate::tenant::TenantLayer) would
    /// record it.
    #[must_use]
    fn for_tenant(self, org: impl Into<OrgId>) -> Self;
}

impl<B> TestRequest for http::Request<B> {
    fn with_peer(mut self, peer: &str) -> Self {
        let addr = peer
            .parse::<SocketAddr>()
            .or_else(|_| peer.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
            .unwrap_or_else(|_| panic!("`{peer}` is not an IP or socket address"));
        self.extensions_mut().insert(addr);
        self
    }

    fn with_identity<I: Identity + Clone>(mut self, identity: I) -> Self {
        self.extensions_mut().insert(identity);
        self
    }

    fn for_tenant(mut self, org: impl Into<OrgId>) -> Self {
        self.extensions_mut().insert(Tenant::new(org.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::peer_addr;
    use crate::principal::Principal;

    #[test]
    fn requests_carry_what_they_are_given() {
        let request = http::Request::new(())
            .with_peer("[::ffff:192.0.2.1]:9")
            .with_identity(Principal::new("ann"))
            .for_tenant("acme");
        assert_eq!(
            peer_addr(request.extensions()),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            request
                .extensions()
                .get::<Principal>()
                .unwrap()
                .user
                .as_str(),
            "ann"
        );
        assert_eq!(
            Tenant::of(request.extensions()).unwrap().org().as_str(),
            "acme"
        );
        let request = http::Request::new(()).with_peer("2001:db8::1");
        assert_eq!(
            peer_addr(request.extensions()),
            Some("2001:db8::1".parse().unwrap())
        );
    }
}
