//! The layer that resolves the client address once, outermost, and records it.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::{resolve_addr_once, ClientIpResolver};

/// Resolves each request's client address with one resolver and records the
/// [`ClientIpOutcome`](super::ClientIpOutcome) in its extensions, for every layer,
/// handler and guard after it. Put it outermost: see the
/// [module docs](super#resolve-once).
///
/// It refuses nothing itself: an unknown address is recorded as unknown, and each rule
/// that applies refuses the request.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientIpLayer {
    resolver: ClientIpResolver,
}

impl ClientIpLayer {
    /// Records what `resolver` finds.
    pub fn new(resolver: impl Into<ClientIpResolver>) -> Self {
        Self {
            resolver: resolver.into(),
        }
    }

    /// The resolver.
    #[must_use]
    pub fn resolver(&self) -> &ClientIpResolver {
        &self.resolver
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service of [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    resolver: ClientIpResolver,
}

impl<S> ClientIpService<S> {
    inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Recorded in the extensions; the value is for the layers that decide.
        resolve_addr_once(&mut request, Some(&self.resolver), false);
        self.inner.call(request)
    }
}
