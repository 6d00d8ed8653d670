use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::verify::Verifier;
use super::{Rejection, ResponseFuture, Unauthenticated};
use crate::body::RefusalBody;
use crate::grpc;

/// The service produced by [`JwtAuthLayer`](super::JwtAuthLayer).
#[derive(Clone)]
pub struct JwtAuthService<S, R> {
    pub(super) inner: S,
    pub(super) config: Arc<Verifier>,
    pub(super) rejection: R,
}

impl<S, R> JwtAuthService<S, R> {
    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuthService<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RefusalBody,
    R: Rejection,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.config.authenticate(request.headers()) {
            Ok(Some(principal)) => {
                tracing::trace!(
                    user = %principal.user,
                    organization = ?principal.organization,
                    "jwt: authenticated"
                );
                request.extensions_mut().insert(principal);
                ResponseFuture::future(self.inner.call(request))
            }
            Ok(None) => {
                tracing::trace!("jwt: no authorization header: anonymous");
                ResponseFuture::future(self.inner.call(request))
            }
            Err(reason) => {
                let grpc = grpc::is_grpc(request.headers());
                tracing::debug!(reason = reason.code(), grpc, "jwt: request rejected");
                let mut response = self.rejection.reject(&Unauthenticated { reason, grpc });
                response.extensions_mut().insert(reason);
                ResponseFuture::rejected(response)
            }
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for JwtAuthService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("rejection", &self.rejection)
            .finish()
    }
}
