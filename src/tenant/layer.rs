//! The layer that decides each request's tenant, before authentication, and records it.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::{Tenant, TenantResolver};
use crate::body::RefusalBody;
use crate::client_ip::decided_with_tenant;
use crate::grpc;
use crate::layer::{error_document, ResponseFuture, JSON_API};
use crate::lists::{Exempt, RequestHead};
use crate::policy::OrgId;
use crate::seen::Seen;
use crate::warn::RateLimited;

/// Decides each request's [`Tenant`] with a [`TenantResolver`] and records it in the
/// extensions; a request whose tenant cannot be determined is refused with 404
/// `unknownTenant` (gRPC 5 `NOT_FOUND`). Put it outside the list layers and
/// authentication: see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct TenantLayer {
    resolver: TenantResolver,
    exempt: Exempt,
}

/// Whether this process has made a [`TenantLayer`]: until it has, no layer can run after
/// one that decided with the default organization, and the allowlist need not note that
/// it did (see [`layer_made`]).
static LAYER_MADE: Seen = Seen::new();

/// Whether a [`TenantLayer`] exists in this process. It is made before any request
/// reaches it, so a request that a layer outside it handles finds this `true`.
pub(crate) fn layer_made() -> bool {
    LAYER_MADE.ever()
}

impl TenantLayer {
    /// Records what `resolver` decides.
    pub fn new(resolver: impl Into<TenantResolver>) -> Self {
        LAYER_MADE.note();
        Self {
            resolver: resolver.into(),
            exempt: Exempt::default(),
        }
    }

    /// Lets requests for `path` through with no tenant (health checks): an exact path,
    /// or a prefix written with a trailing `*`.
    pub fn exempt(mut self, path: &str) -> Self {
        self.exempt.add(path);
        self
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService {
            inner,
            resolver: self.resolver.clone(),
            exempt: self.exempt.clone(),
        }
    }
}

/// The service of [`TenantLayer`].
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    resolver: TenantResolver,
    exempt: Exempt,
}

impl<S> TenantService<S> {
    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for TenantService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantService")
            .field("inner", &self.inner)
            .field("resolver", &self.resolver)
            .field("exempt", &self.exempt)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TenantService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RefusalBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if self.exempt.contains(request.uri()) {
            return ResponseFuture::future(self.inner.call(request));
        }
        match self.resolver.resolve(&RequestHead::of(&request)) {
            Some(org) => {
                // Only another organization than the default contradicts a layer that
                // decided with the default before this one.
                let not_default = org.as_str() != OrgId::DEFAULT;
                // Recorded at once: the insert's own probe says whether a `TenantLayer`
                // before this one recorded a tenant, without a look-up of its own.
                let earlier = request.extensions_mut().insert(Tenant::new(org));
                // Read back only where there is something to compare it with.
                let now = || Tenant::org_of(request.extensions());
                match earlier {
                    // A `TenantLayer` before this one decided the same.
                    Some(earlier) if earlier.org().as_str() == now() => {}
                    Some(earlier) => {
                        return decided_otherwise(&request, earlier.org().as_str(), now())
                    }
                    None if not_default && decided_with_tenant(request.extensions()) => {
                        return decided_otherwise(&request, OrgId::DEFAULT, now());
                    }
                    None => {}
                }
                ResponseFuture::future(self.inner.call(request))
            }
            None => {
                tracing::debug!(
                    host = ?RequestHead::of(&request).host(),
                    "no tenant for this request: refused"
                );
                ResponseFuture::rejected(refusal(
                    grpc::is_grpc(request.headers()),
                    StatusCode::NOT_FOUND,
                    grpc::NOT_FOUND,
                    "unknownTenant",
                    "No organization is served at this address.",
                ))
            }
        }
    }
}

/// The request's organization was decided before this layer, as `earlier`: by another
/// `TenantLayer`, or, as the default organization, by a list or allowlist that ran
/// first. Deciding it again as `org` would let the layers disagree about the tenant,
/// so the request is refused (500, gRPC 13 `INTERNAL`) and the wiring mistake said at
/// WARN.
fn decided_otherwise<B, F>(request: &Request<B>, earlier: &str, org: &str) -> ResponseFuture<F> {
    static LIMIT: RateLimited = RateLimited::new(Duration::from_secs(60));
    if LIMIT.ready() {
        tracing::warn!(
            target: "tower_ip_allowlist::wiring",
            earlier,
            organization = org,
            "a request's organization was already decided as `{earlier}` when a TenantLayer decided `{org}`: it is refused; put the TenantLayer outside the list layers, authentication and the allowlist (with axum, `.layer(TenantLayer)` after them), and use one per stack",
        );
    }
    ResponseFuture::rejected(refusal(
        grpc::is_grpc(request.headers()),
        StatusCode::INTERNAL_SERVER_ERROR,
        grpc::INTERNAL,
        "tenantDecidedTwice",
        "The server's layers decided this request's organization twice, differently.",
    ))
}

/// A refusal of this layer: a JSON:API error document, or for gRPC requests the status
/// `grpc_code`.
fn refusal(
    grpc: bool,
    status: StatusCode,
    grpc_code: u8,
    code: &str,
    detail: &str,
) -> Response<Bytes> {
    if grpc {
        return grpc::status_response(grpc_code, detail);
    }
    let mut response = Response::new(Bytes::from(error_document(status, code, detail)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response
}
