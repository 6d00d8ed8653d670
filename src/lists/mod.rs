//! Site-wide and per-resource allowlists: lists that apply to **requests**, not to
//! users.
//!
//! - [`SiteAllowlistLayer`]: an organization's site list. Once enabled, every request
//!   of the organization, authenticated or not, must come from inside it. It can (and
//!   usually should) run **before** authentication: it is cheap, and it keeps unknown
//!   addresses away from the login path. The list is the request's
//!   [tenant](crate::tenant)'s: the organization [`TenantLayer`](crate::tenant::TenantLayer)
//!   recorded (from the host, say), or the default organization in a single-tenant
//!   service.
//! - [`ResourceAllowlistLayer`]: a resource's list (a project's, say) restricting the
//!   routes you guard with it, typically a resource's media. You tell it how to find the
//!   resource id in a request, e.g. [`ResourceAllowlistLayer::path_param`]. A resource
//!   without a list is unrestricted.
//!
//! Both combine with the user policies of [`AllowlistLayer`](crate::layer::AllowlistLayer):
//! where several run, a request must pass all of them. A list whose enforcement is
//! [`Report`](crate::policy::Enforcement::Report) never refuses: a request from outside
//! it is let through and reported (see [`report`](crate::report)).
//!
//! Refusals are the allowlist layer's: 403 with `ipNotAllowed` or `clientIpUnknown`
//! (gRPC: `PERMISSION_DENIED`), through the same pluggable
//! [`Rejection`](crate::layer::Rejection). While the snapshot is
//! [pending](crate::snapshot::SnapshotHandle::pending) (policies not loaded yet),
//! whether a list applies is unknown, and every request that is not exempt is refused
//! with 503 `policiesUnavailable`.
//!
//! # Security
//!
//! A list protects its organization's **requests**, whoever sends them, so it is looked
//! up in the request's tenant, never in an organization named by the caller's
//! credentials: an anonymous request meets the same lists as an authenticated one, and
//! a token of another organization is refused as a mismatch by the allowlist layer.
//!
//! - By default a list layer uses the [`Tenant`] that
//!   [`TenantLayer`](crate::tenant::TenantLayer) recorded, and the default organization
//!   where none did: a single-tenant service needs nothing more, and a multi-tenant one
//!   adds `TenantLayer` outside the list layers (see [`tenant`](crate::tenant)).
//! - Resource ids are looked up in the tenant. Where resource ids are global (unique
//!   across tenants) and a resource's owner is known, give
//!   [`ResourceAllowlistLayer::organization`] a function naming the **owner**, so a
//!   request for another tenant's resource meets the owner's list.
//! - A resolver returning `None` lets the request through unchecked: return `None` only
//!   for requests that belong to no tenant.
//! - Resource ids are percent-decoded the way axum's `Path` decodes them, so
//!   `/projects/%61pollo/...` is project `apollo` to the layer and to the handler. Under
//!   `Router::nest`, the layer sees the path with the nest prefix stripped: write the
//!   template relative to the nested router. The layer checks only the id segment;
//!   rejecting `..` in a `{*rest}` parameter is the handler's job.
//! - The client address is the one recorded by
//!   [`ClientIpLayer`](crate::client_ip::ClientIpLayer), placed outermost, which the
//!   user policies and the admin router's lockout guard read too; without it, the first
//!   layer to run resolves with its own [`client_ip`](SiteAllowlistLayer::client_ip)
//!   resolver (the peer by default) and records that. See
//!   [`client_ip`](crate::client_ip#resolve-once).
//!
//! # Exempt routes
//!
//! [`exempt`](SiteAllowlistLayer::exempt) skips paths (health checks, webhook
//! receivers) by exact path or by prefix (a pattern ending in `*`). With axum,
//! `Router::layer` wraps every route, exempt ones included, and the exemption is what
//! lets them through; `Router::route_layer` wraps only the routes registered before it,
//! so a route added after it needs no exemption (and unknown paths answer 404 without
//! reaching the layer).
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
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut org = OrgPolicies::default();
//! org.site = Some(SiteList { enabled: true, list: SourceList::parse(["198.51.100.0/24"])? });
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::default(), &org);
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(SiteAllowlistLayer::new(handle).exempt("/health"));
//!
//! let from = |addr: &str| app.clone().layer(MockConnectInfo(addr.parse::<SocketAddr>().unwrap()));
//! let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
//! assert_eq!(from("198.51.100.7:4000").oneshot(get("/")).await?.status(), StatusCode::OK);
//! assert_eq!(from("192.0.2.1:4000").oneshot(get("/")).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(from("192.0.2.1:4000").oneshot(get("/health")).await?.status(), StatusCode::OK);
//! # Ok(()) }
//! ```

mod layer;
mod service;

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Uri};

pub use self::layer::{ResourceAllowlistLayer, SiteAllowlistLayer};
pub use self::service::ListService;
use crate::policy::OrgId;
use crate::tenant::Tenant;

/// The parts of a request a resolver may look at.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (where earlier layers put the `Principal` and the
    /// [`ClientIpOutcome`](crate::client_ip::ClientIpOutcome)).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The host the request is for, normalized: from the URI's authority (HTTP/2's
    /// `:authority`, or an absolute-form request target) or else the `Host` header,
    /// without port or trailing dot, in lower case.
    ///
    /// `None`, so that no tenant is named, whenever proxies and this service could read
    /// the host differently: neither is there, the header is not text, appears more
    /// than once, or differs from the URI's authority (RFC 9113 section 8.3.1), or the
    /// authority carries user information (`acme.example.com:@internal.example.com`).
    #[must_use]
    pub fn host(&self) -> Option<String> {
        let mut lines = self.headers.get_all(http::header::HOST).iter();
        let header = match (lines.next(), lines.next()) {
            (_, Some(_)) => return None,
            (Some(value), None) => Some(host_of(&value.to_str().ok()?.parse().ok()?)?),
            (None, None) => None,
        };
        let uri = match self.uri.authority() {
            Some(authority) => Some(host_of(authority)?),
            None => None,
        };
        match (uri, header) {
            (Some(uri), Some(header)) if uri != header => None,
            (Some(host), _) | (None, Some(host)) => Some(host),
            (None, None) => None,
        }
    }

    pub(crate) fn of<B>(request: &'a http::Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

/// An authority's host, normalized; `None` when it carries user information or no host.
fn host_of(authority: &http::uri::Authority) -> Option<String> {
    if authority.as_str().contains('@') {
        return None;
    }
    let raw = authority.host();
    let host = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

type OrgFn = dyn Fn(&RequestHead<'_>) -> Option<OrgId> + Send + Sync;

/// Which organization a request belongs to; `None` exempts the request.
#[derive(Clone, Default)]
pub(crate) enum OrgResolver {
    /// The request's [tenant](crate::tenant), or the default organization where no
    /// `TenantLayer` recorded one; never an organization named by the caller's
    /// credentials. A `TenantLayer` must have decided it before a list decides with it.
    #[default]
    Tenant,
    /// The application's own choice.
    Custom(Arc<OrgFn>),
}

impl OrgResolver {
    pub(crate) fn new(
        f: impl Fn(&RequestHead<'_>) -> Option<OrgId> + Send + Sync + 'static,
    ) -> Self {
        Self::Custom(Arc::new(f))
    }

    pub(crate) fn resolve(&self, head: &RequestHead<'_>) -> Option<OrgId> {
        match self {
            Self::Tenant => Some(Tenant::org_id_of(head.extensions)),
            Self::Custom(resolve) => resolve(head),
        }
    }

    /// Whether it is the request's tenant.
    pub(crate) fn is_tenant(&self) -> bool {
        matches!(self, Self::Tenant)
    }
}

impl fmt::Debug for OrgResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant => f.write_str("Tenant"),
            Self::Custom(_) => f.write_str("<fn>"),
        }
    }
}

/// Paths a layer lets through without looking: exact paths, or prefixes written with a
/// trailing `*`. Cheap to clone (layers clone it into every service).
#[derive(Debug, Clone, Default)]
pub(crate) struct Exempt(Option<Arc<Patterns>>);

#[derive(Debug, Clone, Default)]
struct Patterns {
    exact: Vec<Box<str>>,
    prefixes: Vec<Box<str>>,
}

impl Exempt {
    pub(crate) fn add(&mut self, pattern: &str) {
        let mut patterns = self.0.as_deref().cloned().unwrap_or_default();
        match pattern.strip_suffix('*') {
            Some(prefix) => patterns.prefixes.push(prefix.into()),
            None => patterns.exact.push(pattern.into()),
        }
        self.0 = Some(Arc::new(patterns));
    }

    /// Whether `uri`'s path is exempt; the path is not even read when nothing is.
    #[inline]
    pub(crate) fn contains(&self, uri: &http::Uri) -> bool {
        let Some(patterns) = &self.0 else {
            return false;
        };
        let path = uri.path();
        patterns.exact.iter().any(|exact| **exact == *path)
            || patterns
                .prefixes
                .iter()
                .any(|prefix| path.starts_with(&**prefix))
    }
}

/// A path template such as `/api/v1/projects/{project}/media/{file}`, and the name of
/// the parameter that is the resource id.
#[derive(Debug, Clone)]
pub(crate) struct PathParam {
    segments: Arc<[Segment]>,
    index: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param,
    Rest,
}

/// Why a path template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PathTemplateError {
    /// The template.
    pub template: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for PathTemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path template `{}` {}: write it as `/projects/{{project}}/media/{{file}}`",
            self.template, self.reason
        )
    }
}

impl std::error::Error for PathTemplateError {}

impl PathParam {
    pub(crate) fn new(template: &str, name: &str) -> Result<Self, PathTemplateError> {
        let error = |reason| PathTemplateError {
            template: template.to_owned(),
            reason,
        };
        let Some(rest) = template.strip_prefix('/') else {
            return Err(error("does not start with `/`"));
        };
        let mut segments = Vec::new();
        let mut index = None;
        for (i, segment) in rest.split('/').enumerate() {
            let parsed = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) if param.starts_with('*') => Segment::Rest,
                Some(param) => {
                    if param == name {
                        index = Some(i);
                    }
                    Segment::Param
                }
                None => Segment::Literal(segment.into()),
            };
            segments.push(parsed);
        }
        if segments[..segments.len() - 1].contains(&Segment::Rest) {
            return Err(error("has a `{*rest}` parameter before its end"));
        }
        let index = index.ok_or_else(|| error("does not name the resource parameter"))?;
        Ok(Self {
            segments: segments.into(),
            index,
        })
    }

    /// The resource id in `path`, if the path matches the template.
    pub(crate) fn extract(&self, path: &str) -> Option<String> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut found = None;
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest => return found,
                _ => {
                    let part = parts.next()?;
                    match segment {
                        Segment::Literal(literal) if **literal != *part => return None,
                        Segment::Param if part.is_empty() => return None,
                        _ => {}
                    }
                    if i == self.index {
                        // Decoded as axum's `Path` decodes it, so `%61pollo` is `apollo`
                        // here and in the handler alike.
                        found = Some(
                            percent_encoding::percent_decode_str(part)
                                .decode_utf8_lossy()
                                .into_owned(),
                        );
                    }
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_templates() {
        let media = PathParam::new("/api/v1/projects/{project}/media/{file}", "project").unwrap();
        assert_eq!(
            media
                .extract("/api/v1/projects/apollo/media/a.png")
                .as_deref(),
            Some("apollo")
        );
        for path in [
            "/api/v1/projects/apollo/media",
            "/api/v1/projects/apollo/media/a.png/more",
            "/api/v1/projects//media/a.png",
            "/api/v1/other/apollo/media/a.png",
            "api/v1/projects/apollo/media/a.png",
        ] {
            assert_eq!(media.extract(path), None, "{path}");
        }
        // Percent-encoded ids are the same resource as their decoded form.
        assert_eq!(
            media
                .extract("/api/v1/projects/%61pollo/media/a.png")
                .as_deref(),
            Some("apollo")
        );
        assert_eq!(
            media
                .extract("/api/v1/projects/caf%C3%A9/media/a.png")
                .as_deref(),
            Some("café")
        );
        assert_eq!(
            media
                .extract("/api/v1/projects/a%2Fb/media/a.png")
                .as_deref(),
            Some("a/b")
        );
        let rest = PathParam::new("/p/{id}/{*rest}", "id").unwrap();
        assert_eq!(rest.extract("/p/x/a/b/c").as_deref(), Some("x"));
        assert!(PathParam::new("/p/{id}", "project").is_err());
        assert!(PathParam::new("p/{id}", "id").is_err());
        assert!(PathParam::new("/{*rest}/{id}", "id").is_err());
    }

    #[test]
    fn hosts_are_normalized() {
        let headers = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, host.parse().unwrap());
            headers
        };
        let extensions = Extensions::new();
        let method = Method::GET;
        let relative: Uri = "/x".parse().unwrap();
        for (host, want) in [
            ("ACME.example.com", Some("acme.example.com")),
            ("acme.example.com.:8443", Some("acme.example.com")),
            ("[2001:db8::1]:443", Some("[2001:db8::1]")),
        ] {
            let headers = headers(host);
            let head = RequestHead {
                method: &method,
                uri: &relative,
                headers: &headers,
                extensions: &extensions,
            };
            assert_eq!(head.host().as_deref(), want, "{host}");
        }
        // HTTP/2 carries the authority in the URI (HTTP/1.1 too, in absolute form); a
        // Host header that agrees with it is fine, one that names another host makes
        // the host unknown (RFC 9113 section 8.3.1), as proxies may have routed by it.
        let absolute: Uri = "https://Acme.Example.com/x".parse().unwrap();
        for (header, want) in [
            (None, Some("acme.example.com")),
            (Some("acme.example.com:443"), Some("acme.example.com")),
            (Some("other.example.com"), None),
        ] {
            let map = header.map(headers).unwrap_or_default();
            let head = RequestHead {
                method: &method,
                uri: &absolute,
                headers: &map,
                extensions: &extensions,
            };
            assert_eq!(head.host().as_deref(), want, "{header:?}");
        }
        // User information and repeated Host headers: unknown, never one of the readings
        // (cases from a review).
        for host in [
            "acme.example.com:@internal.example.com",
            "a@internal.example.com",
        ] {
            let map = headers(host);
            let head = RequestHead {
                method: &method,
                uri: &relative,
                headers: &map,
                extensions: &extensions,
            };
            assert_eq!(head.host(), None, "{host}");
        }
        let with_userinfo: Uri = "http://a@internal.example.com/x".parse().unwrap();
        let none = HeaderMap::new();
        let head = RequestHead {
            method: &method,
            uri: &with_userinfo,
            headers: &none,
            extensions: &extensions,
        };
        assert_eq!(head.host(), None);
        let mut twice = headers("internal.example.com");
        twice.append(http::header::HOST, "acme.example.com".parse().unwrap());
        let head = RequestHead {
            method: &method,
            uri: &relative,
            headers: &twice,
            extensions: &extensions,
        };
        assert_eq!(head.host(), None);
        let none = HeaderMap::new();
        let head = RequestHead {
            method: &method,
            uri: &relative,
            headers: &none,
            extensions: &extensions,
        };
        assert_eq!(head.host(), None);
    }

    #[test]
    fn exemptions() {
        let mut exempt = Exempt::default();
        exempt.add("/health");
        exempt.add("/webhooks/*");
        let contains = |path: &'static str| exempt.contains(&http::Uri::from_static(path));
        assert!(contains("/health"));
        assert!(!contains("/health/deep"));
        assert!(contains("/webhooks/github"));
        assert!(!contains("/webhook"));
    }
}
