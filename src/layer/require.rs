//! A layer that refuses requests without an identity, for any identity type.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::service::{reject, warn_if_credentials_unread};
use super::{DefaultRejection, Rejection, ResponseFuture};
use crate::body::RefusalBody;
use crate::principal::{Identity, Principal};
use crate::snapshot::DenyReason;
use crate::warn::RateLimited;

/// Refuses requests that carry no identity of type `I` (a [`Principal`] unless set with
/// [`with_identity`](Self::with_identity)): 401 `unauthenticated` with
/// `WWW-Authenticate: Bearer` (gRPC 16), through the same pluggable
/// [`Rejection`] as the allowlist. Needs no feature and no particular authentication
/// layer.
///
/// Put it on the routes that need a caller when the
/// [`AllowlistLayer`](super::AllowlistLayer) lets anonymous requests through
/// ([`allow_anonymous`](super::AllowlistLayer::allow_anonymous)) for public routes.
///
/// ```
/// use axum::{body::Body, http::{Request, StatusCode}, routing::get, Extension, Router};
/// use tower::ServiceExt;
/// use tower_ip_allowlist::layer::RequireIdentityLayer;
/// use tower_ip_allowlist::principal::Identity;
///
/// #[derive(Clone)]
/// struct Session { user: String }
/// impl Identity for Session {
///     fn user_id(&self) -> &str { &self.user }
///     fn group_ids(&self) -> impl Iterator<Item = &str> { std::iter::empty() }
///     fn organization_id(&self) -> Option<&str> { None }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = Router::new()
///     .route("/account", get(|| async { "yours" }))
///     .route_layer(RequireIdentityLayer::new().with_identity::<Session>());
/// let get = || Request::get("/account").body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(get()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
/// let signed_in = app.layer(Extension(Session { user: "ann".into() }));
/// assert_eq!(signed_in.oneshot(get()).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
#[must_use]
pub struct RequireIdentityLayer<I = Principal, R = DefaultRejection> {
    rejection: R,
    warned: Arc<RateLimited>,
    identity: PhantomData<fn() -> I>,
}

impl RequireIdentityLayer {
    /// Requires a [`Principal`], refusing with the [`DefaultRejection`].
    pub fn new() -> Self {
        Self {
            rejection: DefaultRejection,
            warned: Arc::new(RateLimited::new(Duration::from_secs(60))),
            identity: PhantomData,
        }
    }
}

impl Default for RequireIdentityLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, R> RequireIdentityLayer<I, R> {
    /// Requires the application's own identity type `J` instead.
    pub fn with_identity<J: Identity>(self) -> RequireIdentityLayer<J, R> {
        RequireIdentityLayer {
            rejection: self.rejection,
            warned: self.warned,
            identity: PhantomData,
        }
    }

    /// Replaces the response sent for refused requests.
    pub fn rejection<R2: Rejection>(self, rejection: R2) -> RequireIdentityLayer<I, R2> {
        RequireIdentityLayer {
            rejection,
            warned: self.warned,
            identity: PhantomData,
        }
    }
}

impl<I, R: Clone> Clone for RequireIdentityLayer<I, R> {
    fn clone(&self) -> Self {
        Self {
            rejection: self.rejection.clone(),
            warned: Arc::clone(&self.warned),
            identity: PhantomData,
        }
    }
}

impl<I, R: fmt::Debug> fmt::Debug for RequireIdentityLayer<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireIdentityLayer")
            .field("rejection", &self.rejection)
            .field("identity", &std::any::type_name::<I>())
            .finish()
    }
}

impl<S, I, R: Clone> Layer<S> for RequireIdentityLayer<I, R> {
    type Service = RequireIdentityService<S, I, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireIdentityService {
            inner,
            rejection: self.rejection.clone(),
            warned: Arc::clone(&self.warned),
            identity: PhantomData,
        }
    }
}

/// The service of [`RequireIdentityLayer`].
pub struct RequireIdentityService<S, I, R> {
    inner: S,
    rejection: R,
    warned: Arc<RateLimited>,
    identity: PhantomData<fn() -> I>,
}

impl<S, I, R> RequireIdentityService<S, I, R> {
    inner_service_accessors!();
}

impl<S: Clone, I, R: Clone> Clone for RequireIdentityService<S, I, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rejection: self.rejection.clone(),
            warned: Arc::clone(&self.warned),
            identity: PhantomData,
        }
    }
}

impl<S: fmt::Debug, I, R: fmt::Debug> fmt::Debug for RequireIdentityService<S, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireIdentityService")
            .field("inner", &self.inner)
            .field("rejection", &self.rejection)
            .field("identity", &std::any::type_name::<I>())
            .finish()
    }
}

impl<S, I, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireIdentityService<S, I, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RefusalBody,
    I: Identity,
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
        if request.extensions().get::<I>().is_some() {
            return ResponseFuture::future(self.inner.call(request));
        }
        warn_if_credentials_unread::<I, _>(&request, None, &self.warned);
        reject(&self.rejection, &request, DenyReason::Unauthenticated)
    }
}
