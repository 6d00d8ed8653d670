//! Response bodies: how this crate's layers answer a request themselves (a refusal) in
//! the inner service's own body type, and [`ResponseBody`] for inner services whose
//! body type cannot hold such an answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;

/// A response body type that can hold a complete answer of this crate's layers (the
/// error document of a refusal; empty for gRPC's trailers-only refusals).
///
/// Every layer of this crate answers in its inner service's own body type, so a stack
/// of them, or one added with axum's `Router::layer`, adds no body wrapper for axum to
/// box again on every response. Implemented for the body types of axum
/// (`axum::body::Body`) and tonic (`tonic::body::Body`), for `http-body-util`'s
/// [`Full<Bytes>`], [`BoxBody`] and [`UnsyncBoxBody`], for `String`, and for
/// [`ResponseBody`], which wraps any other body type: a service whose body type is none
/// of these gets it by mapping its responses with `ResponseBody::inner` inside the
/// layer (tower's `ServiceBuilder::map_response`, or tower-http's
/// `MapResponseBodyLayer`).
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_ip_allowlist::layer::{AllowlistLayer, ResponseBody};
/// use tower_ip_allowlist::snapshot::SnapshotHandle;
///
/// # #[derive(Debug)] struct MyBody;
/// # impl http_body::Body for MyBody {
/// #     type Data = bytes::Bytes;
/// #     type Error = std::convert::Infallible;
/// #     fn poll_frame(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>)
/// #         -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
/// #         std::task::Poll::Ready(None)
/// #     }
/// # }
/// let service = ServiceBuilder::new()
///     .layer(AllowlistLayer::new(SnapshotHandle::default()))
///     // The allowlist answers refusals in `ResponseBody<MyBody>`.
///     .map_response(|response: http::Response<MyBody>| response.map(ResponseBody::inner))
///     .service_fn(|_request: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(MyBody))
///     });
/// # let _ = service;
/// ```
pub trait RefusalBody: Sized {
    /// A complete body holding `data`.
    fn from_refusal(data: Bytes) -> Self;
}

impl<B> RefusalBody for ResponseBody<B> {
    fn from_refusal(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl RefusalBody for Full<Bytes> {
    fn from_refusal(data: Bytes) -> Self {
        Full::new(data)
    }
}

impl<E: 'static> RefusalBody for BoxBody<Bytes, E> {
    fn from_refusal(data: Bytes) -> Self {
        Full::new(data).map_err(|never| match never {}).boxed()
    }
}

impl<E: 'static> RefusalBody for UnsyncBoxBody<Bytes, E> {
    fn from_refusal(data: Bytes) -> Self {
        Full::new(data)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

impl RefusalBody for String {
    /// The layers' own answers are UTF-8; a custom rejection's bytes that are not are
    /// replaced, never dropped silently.
    fn from_refusal(data: Bytes) -> Self {
        String::from_utf8_lossy(&data).into_owned()
    }
}

#[cfg(feature = "axum")]
impl RefusalBody for axum::body::Body {
    fn from_refusal(data: Bytes) -> Self {
        data.into()
    }
}

#[cfg(feature = "tonic")]
impl RefusalBody for tonic::body::Body {
    fn from_refusal(data: Bytes) -> Self {
        if data.is_empty() {
            // gRPC refusals are trailers-only: no boxing for them.
            Self::empty()
        } else {
            Self::new(Full::new(data))
        }
    }
}

pin_project! {
    /// The inner service's body, or a complete body produced by a layer: the
    /// [`RefusalBody`] of services whose own body type cannot hold a layer's answer.
    ///
    /// No boxing: the inner body is polled in place.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body produced by the layer (empty `data` is an empty body).
    pub fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
