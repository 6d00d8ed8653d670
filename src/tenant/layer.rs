//! The layer that decides each request's tenant, before authentication, and records it.

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::{Tenant, TenantResolver};
use crate::body::RefusalBody;
use crate::grpc;
use crate::layer::{error_document, ResponseFuture, JSON_API};
use crate::lists::{Exempt, RequestHead};

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

impl TenantLayer {
    /// Records what `resolver` decides.
    pub fn new(resolver: impl Into<TenantResolver>) -> Self {
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
        if self.exempt.contains(request.uri().path()) {
            return ResponseFuture::future(self.inner.call(request));
        }
        match self.resolver.resolve(&RequestHead::of(&request)) {
            Some(org) => {
                request.extensions_mut().insert(Tenant::new(org));
                ResponseFuture::future(self.inner.call(request))
            }
            None => {
                tracing::debug!(
                    host = ?RequestHead::of(&request).host(),
                    "no tenant for this request: refused"
                );
                ResponseFuture::rejected(unknown_tenant(grpc::is_grpc(request.headers())))
            }
        }
    }
}

fn unknown_tenant(grpc: bool) -> Response<Bytes> {
    const DETAIL: &str = "No organization is served at this address.";
    if grpc {
        return grpc::status_response(grpc::NOT_FOUND, DETAIL);
    }
    let status = StatusCode::NOT_FOUND;
    let mut response = Response::new(Bytes::from(error_document(status, "unknownTenant", DETAIL)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response
}
