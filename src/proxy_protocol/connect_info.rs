//! `axum::serve` with the client address: the make-service that puts each connection's
//! client and [`ProxyProtocolInfo`] into its requests.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use axum::serve::IncomingStream;
use tower_service::Service;

use super::{ProxyProtocolInfo, ProxyProtocolListener};

/// Serves `service` (a `Router`, or layers around one) on a [`ProxyProtocolListener`]
/// so that each request carries the connection's client as `ConnectInfo<SocketAddr>`
/// and a [`ProxyProtocolInfo`] extension:
/// `axum::serve(listener, with_connect_info(app))`. It stands where
/// `app.into_make_service_with_connect_info::<SocketAddr>()` stands for a plain
/// `TcpListener`.
///
/// When the header named no usable address (v1 `UNKNOWN`, v2 `UNSPEC` or unix), the
/// requests have **no** `ConnectInfo<SocketAddr>`: the client is unknown, and the
/// allowlist fails closed. See the [module docs](super) for an example.
pub fn with_connect_info<S>(service: S) -> WithConnectInfo<S> {
    WithConnectInfo { inner: service }
}

/// The make-service of [`with_connect_info`]: for each connection, an
/// [`AddConnectInfo`] around a clone of the service.
#[derive(Debug, Clone)]
#[must_use]
pub struct WithConnectInfo<S> {
    inner: S,
}

impl<S> WithConnectInfo<S> {
    inner_service_accessors!();
}

impl<S: Clone> Service<IncomingStream<'_, ProxyProtocolListener>> for WithConnectInfo<S> {
    type Response = AddConnectInfo<S>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, ProxyProtocolListener>) -> Self::Future {
        ready(Ok(AddConnectInfo {
            inner: self.inner.clone(),
            info: *stream.io().info(),
        }))
    }
}

/// One connection's service: inserts its [`ProxyProtocolInfo`], and its client as
/// `ConnectInfo<SocketAddr>` when known, into every request. Made by
/// [`with_connect_info`].
#[derive(Debug, Clone)]
pub struct AddConnectInfo<S> {
    inner: S,
    info: ProxyProtocolInfo,
}

impl<S> AddConnectInfo<S> {
    inner_service_accessors!();

    /// The connection's information, as inserted into each request.
    #[must_use]
    pub fn info(&self) -> &ProxyProtocolInfo {
        &self.info
    }
}

impl<S, B> Service<http::Request<B>> for AddConnectInfo<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let extensions = request.extensions_mut();
        extensions.insert(self.info);
        if let Some(client) = self.info.client {
            extensions.insert(ConnectInfo::<SocketAddr>(client));
        }
        self.inner.call(request)
    }
}
