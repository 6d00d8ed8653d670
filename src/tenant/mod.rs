//! Which organization a request belongs to: decided from the request itself, before
//! authentication, once, and recorded for every layer after it.
//!
//! Both products this crate reproduces give each customer its own host name, and their
//! lists protect that customer's requests whoever sends them. So the **tenant** of a
//! request is not whatever organization its credentials name: it is decided from the
//! request (its host, or the application's own rule) by a [`TenantResolver`], recorded
//! by [`TenantLayer`] as a [`Tenant`] in the extensions, and then:
//!
//! - the site list and resource lists are looked up in the tenant, for anonymous and
//!   authenticated requests alike ([`lists`](crate::lists));
//! - the allowlist layer refuses a caller whose identity names another organization:
//!   401 with `WWW-Authenticate: Bearer error="invalid_token"` and the code
//!   `organizationMismatch` (gRPC 16 `UNAUTHENTICATED`), before any handler runs;
//! - the admin API manages, explains and audits the tenant's policies.
//!
//! **A service that configures nothing is single-tenant**: with no `TenantLayer`, every
//! request belongs to the default organization, and an identity naming another one is
//! refused as a mismatch. Multi-tenancy is something one turns on.
//!
//! **Decided once.** A `TenantLayer` that finds the request's organization already
//! decided otherwise refuses the request with 500 `tenantDecidedTwice` (gRPC 13
//! `INTERNAL`) and a WARN on the `tower_ip_allowlist::wiring` target: another
//! `TenantLayer` before it that decided another organization, or a list or allowlist
//! placed outside it, which decided with the default organization (the allowlist
//! decides with it for a request with a caller; an anonymous request decided nothing).
//! So a layer in the wrong place cannot leave the layers disagreeing about the tenant.
//!
//! | resolver | the tenant is |
//! |---|---|
//! | [`TenantResolver::single`] | always the default organization (the same as no layer) |
//! | [`TenantResolver::fixed`] | always the organization you name |
//! | [`TenantResolver::by_host`] | `acme` for `acme.example.com`, the default organization for `example.com` itself |
//! | [`TenantResolver::custom`] | what your function says from the [`RequestHead`] |
//!
//! Host names are normalized before they are compared: the URI's authority (HTTP/2's
//! `:authority`) or else the `Host` header, without port or trailing dot, in lower case;
//! the configured domain is converted to its ASCII (IDNA) form, as clients send it.
//! Only one label is taken under the domain: `a.b.example.com` is **not** a tenant (no
//! tenant is named by a nested subdomain), nor are look-alikes such as
//! `acme.example.com.evil.test` or `evilexample.com`. A request whose tenant cannot be
//! determined (another host, an IP literal, no host at all, a label that is not a valid
//! organization id) is **refused** with 404 `unknownTenant` by default; with
//! [`HostTenants::other_hosts`] it can belong to the default organization instead. Paths
//! given to [`TenantLayer::exempt`] (health checks) belong to no tenant: nothing is
//! recorded and nothing refused, and the layers after it treat them as the default
//! organization's, so keep such routes outside the list layers.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, extract::connect_info::MockConnectInfo, http::{Request, StatusCode}, routing::get, Router};
//! use std::net::SocketAddr;
//! use tower::ServiceExt;
//! use tower_ip_allowlist::lists::SiteAllowlistLayer;
//! use tower_ip_allowlist::policy::{OrgId, OrgPolicies, SiteList, SourceList};
//! use tower_ip_allowlist::snapshot::SnapshotHandle;
//! use tower_ip_allowlist::tenant::{Tenant, TenantLayer, TenantResolver};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // acme's site list admits 198.51.100.0/24 only.
//! let mut acme = OrgPolicies::default();
//! acme.site = Some(SiteList { enabled: true, list: SourceList::parse(["198.51.100.0/24"])? });
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::from("acme"), &acme);
//!
//! let app = Router::new()
//!     .route("/", get(|tenant: Tenant| async move { tenant.org().to_string() }))
//!     .layer(SiteAllowlistLayer::new(handle))
//!     .layer(TenantLayer::new(TenantResolver::by_host("example.com")?));
//!
//! let get = |host: &str, from: &str| {
//!     let request = Request::get("/").header("host", host).body(Body::empty()).unwrap();
//!     let app = app.clone().layer(MockConnectInfo(from.parse::<SocketAddr>().unwrap()));
//!     app.oneshot(request)
//! };
//! assert_eq!(get("ACME.example.com:443", "198.51.100.7:1").await?.status(), StatusCode::OK);
//! assert_eq!(get("acme.example.com", "192.0.2.1:1").await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(get("example.com", "192.0.2.1:1").await?.status(), StatusCode::OK); // the default organization
//! assert_eq!(get("acme.example.com.evil.test", "198.51.100.7:1").await?.status(), StatusCode::NOT_FOUND);
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! The tenant decides whose lists protect a request, so it must come from the request
//! as your routing sees it, never from a header a client can write freely
//! (`X-Forwarded-Host` included, unless a trusted proxy sets it and your custom
//! resolver reads it only then). Resource ids are looked up in the tenant: if your
//! resource ids are global rather than per tenant, give
//! [`ResourceAllowlistLayer::organization`](crate::lists::ResourceAllowlistLayer::organization)
//! the resource's owner.

mod layer;

use std::fmt;
use std::sync::Arc;

use http::Extensions;

pub(crate) use self::layer::layer_made;
pub use self::layer::{TenantLayer, TenantService};
use crate::lists::RequestHead;
use crate::policy::OrgId;
use crate::seen::Seen;

/// The organization a request belongs to, recorded by [`TenantLayer`]. With the `axum`
/// feature it is also an extractor: the recorded tenant, or the default organization
/// where no `TenantLayer` ran, as every layer reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant {
    org: OrgId,
}

/// Whether this process has made a [`Tenant`] that a request can carry: [`Tenant::new`]
/// notes each (the extractor's default is never recorded).
static MADE: Seen = Seen::new();

impl Tenant {
    /// A request of `org`.
    #[must_use]
    pub fn new(org: OrgId) -> Self {
        MADE.note();
        Self { org }
    }

    /// The tenant recorded in `extensions`, if a [`TenantLayer`] recorded one.
    #[must_use]
    pub fn of(extensions: &Extensions) -> Option<&Self> {
        // Single-tenant servers never make one: every layer asks, and none looks.
        if !MADE.ever() {
            return None;
        }
        extensions.get::<Self>()
    }

    /// The organization.
    #[must_use]
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The organization of a request as every layer sees it: the recorded tenant, or
    /// the default organization where none is recorded (single-tenant).
    pub(crate) fn org_of(extensions: &Extensions) -> &str {
        Self::of(extensions).map_or(OrgId::DEFAULT, |tenant| tenant.org.as_str())
    }

    /// [`org_of`](Self::org_of), as an owned id (no allocation: ids are shared).
    pub(crate) fn org_id_of(extensions: &Extensions) -> OrgId {
        Self::of(extensions).map_or_else(OrgId::default, |tenant| tenant.org.clone())
    }
}

type TenantFn = dyn Fn(&RequestHead<'_>) -> Option<OrgId> + Send + Sync;

/// Decides the tenant of a request; see the [module docs](self).
#[derive(Clone)]
pub struct TenantResolver {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Fixed(OrgId),
    Host(HostTenants),
    Custom(Arc<TenantFn>),
}

/// Tenants by host name under one domain; made by [`TenantResolver::by_host`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HostTenants {
    /// Lower-case ASCII, no trailing dot.
    domain: Arc<str>,
    other_hosts: OtherHosts,
}

/// What becomes of a request whose host names no tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtherHosts {
    /// Refused with 404 `unknownTenant` (the default).
    Refuse,
    /// The default organization's: for a service also reached by IP address or by
    /// internal names, where the default organization is the operator's own.
    DefaultOrganization,
}

/// Why a [`TenantResolver`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantConfigError {
    /// The domain is not a valid DNS name.
    InvalidDomain {
        /// The text given (cut to 64 characters).
        domain: String,
    },
}

impl fmt::Display for TenantConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDomain { domain } => write!(
                f,
                "`{domain}` is not a domain name: give the domain tenants are subdomains of, such as `example.com`"
            ),
        }
    }
}

impl std::error::Error for TenantConfigError {}

impl TenantResolver {
    /// Every request belongs to the default organization: a single-tenant service.
    /// The same as having no [`TenantLayer`].
    #[must_use]
    pub fn single() -> Self {
        Self::fixed(OrgId::default())
    }

    /// Every request belongs to `org`.
    #[must_use]
    pub fn fixed(org: impl Into<OrgId>) -> Self {
        Self {
            kind: Kind::Fixed(org.into()),
        }
    }

    /// `{org}.{domain}` is organization `org`, `domain` itself the default
    /// organization; any other host is refused unless [`HostTenants::other_hosts`]
    /// says otherwise. `domain` may be written in Unicode (IDNA) or ASCII.
    ///
    /// # Errors
    ///
    /// [`TenantConfigError::InvalidDomain`] when `domain` is not a DNS name.
    pub fn by_host(domain: &str) -> Result<HostTenants, TenantConfigError> {
        let invalid = || TenantConfigError::InvalidDomain {
            domain: domain.chars().take(64).collect(),
        };
        let trimmed = domain.trim().trim_end_matches('.');
        let ascii = idna::domain_to_ascii(trimmed).map_err(|_| invalid())?;
        let valid = !ascii.is_empty()
            && ascii.len() <= 253
            && ascii
                .split('.')
                .all(|label| is_label(label) && !label.is_empty());
        if !valid {
            return Err(invalid());
        }
        Ok(HostTenants {
            domain: Arc::from(ascii),
            other_hosts: OtherHosts::Refuse,
        })
    }

    /// The tenant is what `resolve` says from the request (`None`: unknown, refused).
    #[must_use]
    pub fn custom(
        resolve: impl Fn(&RequestHead<'_>) -> Option<OrgId> + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind: Kind::Custom(Arc::new(resolve)),
        }
    }

    /// The tenant of a request, or `None` when it cannot be determined.
    #[must_use]
    pub fn resolve(&self, head: &RequestHead<'_>) -> Option<OrgId> {
        match &self.kind {
            Kind::Fixed(org) => Some(org.clone()),
            Kind::Custom(resolve) => resolve(head),
            Kind::Host(hosts) => hosts.resolve(head.host().as_deref()),
        }
    }
}

impl HostTenants {
    /// What becomes of requests for hosts that name no tenant ([`OtherHosts::Refuse`]
    /// by default).
    pub fn other_hosts(mut self, other: OtherHosts) -> Self {
        self.other_hosts = other;
        self
    }

    /// The resolver.
    #[must_use]
    pub fn build(self) -> TenantResolver {
        TenantResolver {
            kind: Kind::Host(self),
        }
    }

    /// The tenant of a normalized host (see [`RequestHead::host`]).
    fn resolve(&self, host: Option<&str>) -> Option<OrgId> {
        let tenant = host.and_then(|host| {
            if host == &*self.domain {
                return Some(OrgId::default());
            }
            let label = host.strip_suffix(&*self.domain)?.strip_suffix('.')?;
            (is_label(label) && !label.is_empty()).then(|| OrgId::from(label))
        });
        match (tenant, self.other_hosts) {
            (Some(org), _) => Some(org),
            (None, OtherHosts::DefaultOrganization) => Some(OrgId::default()),
            (None, OtherHosts::Refuse) => None,
        }
    }
}

impl From<HostTenants> for TenantResolver {
    fn from(hosts: HostTenants) -> Self {
        hosts.build()
    }
}

/// One DNS label as it may name a tenant: up to 63 lower-case letters, digits and
/// inner hyphens (also a valid organization id).
fn is_label(label: &str) -> bool {
    label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl fmt::Debug for TenantResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Fixed(org) => f.debug_tuple("TenantResolver::Fixed").field(org).finish(),
            Kind::Host(hosts) => f.debug_tuple("TenantResolver::Host").field(hosts).finish(),
            Kind::Custom(_) => f.write_str("TenantResolver::Custom(<fn>)"),
        }
    }
}

#[cfg(feature = "axum")]
mod extract {
    use std::convert::Infallible;

    use axum::extract::FromRequestParts;
    use http::request::Parts;

    use super::Tenant;

    /// The request's tenant: the one [`TenantLayer`](super::TenantLayer) recorded, or
    /// the default organization where none did (single-tenant), as every layer sees it.
    impl<S: Send + Sync> FromRequestParts<S> for Tenant {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            // The default is made without `Tenant::new`: "no tenant recorded" already
            // reads as the default organization, and noting one made here would make
            // every single-tenant server look its tenant up on every request.
            Ok(Tenant {
                org: Tenant::org_id_of(&parts.extensions),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Method, Uri};

    use super::*;

    fn resolve(resolver: &TenantResolver, uri: &str, host: Option<&str>) -> Option<String> {
        let uri: Uri = uri.parse().unwrap();
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
        }
        let extensions = Extensions::new();
        let head = RequestHead {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            extensions: &extensions,
        };
        resolver.resolve(&head).map(|org| org.to_string())
    }

    #[test]
    #[rustfmt::skip]
    fn tenants_by_host() {
        let strict = TenantResolver::by_host("Example.COM.").unwrap().build();
        let lenient = TenantResolver::by_host("example.com").unwrap().other_hosts(OtherHosts::DefaultOrganization).build();
        // (name, uri, Host header, strict, lenient)
        type Case = (&'static str, &'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>);
        let cases: &[Case] = &[
            ("a tenant", "/", Some("acme.example.com"), Some("acme"), Some("acme")),
            ("mixed case", "/", Some("ACME.Example.Com"), Some("acme"), Some("acme")),
            ("port", "/", Some("acme.example.com:8443"), Some("acme"), Some("acme")),
            ("trailing dot", "/", Some("acme.example.com."), Some("acme"), Some("acme")),
            ("trailing dot and port", "/", Some("acme.example.com.:443"), Some("acme"), Some("acme")),
            ("the bare domain", "/", Some("example.com"), Some("default"), Some("default")),
            ("the bare domain, port", "/", Some("EXAMPLE.com:80"), Some("default"), Some("default")),
            ("nested subdomain", "/", Some("a.b.example.com"), None, Some("default")),
            ("look-alike suffix", "/", Some("acme.example.com.evil.test"), None, Some("default")),
            ("look-alike prefix", "/", Some("evilexample.com"), None, Some("default")),
            ("another domain", "/", Some("acme.example.org"), None, Some("default")),
            ("an IP literal", "/", Some("127.0.0.1:3000"), None, Some("default")),
            ("an IPv6 literal", "/", Some("[::1]:3000"), None, Some("default")),
            ("no host", "/", None, None, Some("default")),
            ("empty label", "/", Some(".example.com"), None, Some("default")),
            ("underscore label", "/", Some("ac_me.example.com"), None, Some("default")),
            ("hyphen edge", "/", Some("-acme.example.com"), None, Some("default")),
            ("punycode label", "/", Some("xn--bcher-kva.example.com"), Some("xn--bcher-kva"), Some("xn--bcher-kva")),
            // HTTP/2's :authority is the URI's; a Host header that disagrees names no tenant.
            (":authority", "https://Acme.Example.com/x", None, Some("acme"), Some("acme")),
            (":authority and Host agree", "https://acme.example.com/x", Some("ACME.example.com:443"), Some("acme"), Some("acme")),
            (":authority and Host disagree", "https://acme.example.com/x", Some("internal.example.com"), None, Some("default")),
            ("user information", "/", Some("acme.example.com:@internal.example.com"), None, Some("default")),
        ];
        for (name, uri, host, want_strict, want_lenient) in cases {
            assert_eq!(resolve(&strict, uri, *host).as_deref(), *want_strict, "strict: {name}");
            assert_eq!(resolve(&lenient, uri, *host).as_deref(), *want_lenient, "lenient: {name}");
        }
    }

    #[test]
    fn domains_are_validated_and_idna_normalized() {
        let idn = TenantResolver::by_host("bücher.example").unwrap().build();
        assert_eq!(
            resolve(&idn, "/", Some("acme.xn--bcher-kva.example")).as_deref(),
            Some("acme")
        );
        for bad in ["", ".", "exa mple.com", "example..com", "-x.com", "a/b"] {
            assert!(TenantResolver::by_host(bad).is_err(), "{bad:?}");
        }
        let err = TenantResolver::by_host("exa mple.com").unwrap_err();
        assert!(err.to_string().contains("is not a domain name"), "{err}");
    }

    #[test]
    fn fixed_single_and_custom() {
        assert_eq!(
            resolve(&TenantResolver::single(), "/", None).as_deref(),
            Some("default")
        );
        assert_eq!(
            resolve(&TenantResolver::fixed("acme"), "/", Some("x")).as_deref(),
            Some("acme")
        );
        let by_path = TenantResolver::custom(|head| {
            head.uri
                .path()
                .strip_prefix("/t/")?
                .split('/')
                .next()
                .map(OrgId::from)
        });
        assert_eq!(
            resolve(&by_path, "/t/acme/x", None).as_deref(),
            Some("acme")
        );
        assert_eq!(resolve(&by_path, "/x", None), None);
    }
}
