use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{DefaultRejection, JwtRejection, Rejection, ResponseFuture, Unauthenticated};
use crate::body::RefusalBody;
use crate::grpc;
use crate::principal::Principal;

/// Refuses requests that carry no [`Principal`] in their extensions, for the routes that
/// need an authenticated caller.
///
/// [`JwtAuthLayer`](super::JwtAuthLayer) lets a request without an `Authorization` header
/// through anonymous; put this layer inside it (added before it) on the protected routes.
/// A refused HTTP request gets 401 with `WWW-Authenticate: Bearer` and the same JSON body
/// as the JWT layer's; a gRPC request gets status 16 `UNAUTHENTICATED`. The response
/// extensions hold [`JwtRejection::MissingCredentials`].
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_ip_allowlist::jwt::{JwtRejection, RequirePrincipalLayer};
/// use tower_ip_allowlist::principal::Principal;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = service_fn(|_request: Request<String>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::from("secret")))
/// });
/// let app = RequirePrincipalLayer::new().layer(app);
///
/// let response = app.clone().oneshot(Request::new(String::new())).await?;
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.headers()["www-authenticate"], "Bearer");
/// assert_eq!(
///     response.extensions().get::<JwtRejection>(),
///     Some(&JwtRejection::MissingCredentials),
/// );
///
/// let mut request = Request::new(String::new());
/// request.extensions_mut().insert(Principal::new("alice"));
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RequirePrincipalLayer<R = DefaultRejection> {
    rejection: R,
}

impl RequirePrincipalLayer {
    /// A layer answering with the [`DefaultRejection`].
    pub fn new() -> Self {
        Self {
            rejection: DefaultRejection,
        }
    }
}

impl<R> RequirePrincipalLayer<R> {
    /// Replaces the response sent for refused requests.
    pub fn rejection<R2: Rejection>(self, rejection: R2) -> RequirePrincipalLayer<R2> {
        RequirePrincipalLayer { rejection }
    }
}

impl<S, R: Clone> Layer<S> for RequirePrincipalLayer<R> {
    type Service = RequirePrincipalService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePrincipalService {
            inner,
            rejection: self.rejection.clone(),
        }
    }
}

/// The service produced by [`RequirePrincipalLayer`].
#[derive(Debug, Clone)]
pub struct RequirePrincipalService<S, R> {
    inner: S,
    rejection: R,
}

impl<S, R> RequirePrincipalService<S, R> {
    inner_service_accessors!();
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePrincipalService<S, R>
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

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.extensions().get::<Principal>().is_some() {
            return ResponseFuture::future(self.inner.call(request));
        }
        let reason = JwtRejection::MissingCredentials;
        let grpc = grpc::is_grpc(request.headers());
        tracing::debug!(
            reason = reason.code(),
            grpc,
            "jwt: no principal: request rejected"
        );
        let mut response = self.rejection.reject(&Unauthenticated { reason, grpc });
        response.extensions_mut().insert(reason);
        ResponseFuture::rejected(response)
    }
}
