use std::fmt;
use std::marker::PhantomData;

use tower_layer::Layer;

use super::{AllowlistService, DefaultRejection, Rejection};
use crate::client_ip::ClientIpResolver;
use crate::lists::Exempt;
use crate::principal::{Identity, Principal};
use crate::snapshot::SnapshotHandle;

/// Applies IP allowlist policies to every request of the wrapped service.
///
/// `I` is the identity type read from the request extensions ([`Principal`] unless set
/// with [`with_identity`](Self::with_identity)); `R` builds the response for refused
/// requests. Cloning is cheap. See the [module docs](super) for an example.
#[must_use]
pub struct AllowlistLayer<I = Principal, R = DefaultRejection> {
    pub(super) handle: SnapshotHandle,
    pub(super) client_ip: Option<ClientIpResolver>,
    pub(super) exempt: Exempt,
    pub(super) rejection: R,
    pub(super) identity: PhantomData<fn() -> I>,
}

impl AllowlistLayer {
    /// A layer deciding with the snapshots published to `handle`, reading the caller as a
    /// [`Principal`] and the client address recorded by
    /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer) (the TCP peer when none is).
    pub fn new(handle: SnapshotHandle) -> Self {
        Self {
            handle,
            client_ip: None,
            exempt: Exempt::default(),
            rejection: DefaultRejection,
            identity: PhantomData,
        }
    }
}

impl<I, R> AllowlistLayer<I, R> {
    /// A resolver of this layer's own, for stacks without a
    /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer). Prefer configuring the
    /// resolver once, in `ClientIpLayer`: where both are configured differently and
    /// disagree, the address is unknown (see [`client_ip`](crate::client_ip#resolve-once)).
    ///
    /// # Security
    ///
    /// Trust forwarded headers only from your own proxies: see
    /// [`client_ip`](crate::client_ip#security).
    pub fn client_ip(mut self, resolver: impl Into<ClientIpResolver>) -> Self {
        self.client_ip = Some(resolver.into());
        self
    }

    /// Lets requests for `path` through unchecked: an exact path, or a prefix written
    /// with a trailing `*` (`/webhooks/*`). See [`lists`](crate::lists#exempt-routes)
    /// for how this interacts with axum's `route_layer`.
    pub fn exempt(mut self, path: &str) -> Self {
        self.exempt.add(path);
        self
    }

    /// Reads the caller as the application's own type `J` instead of [`Principal`].
    pub fn with_identity<J: Identity>(self) -> AllowlistLayer<J, R> {
        AllowlistLayer {
            handle: self.handle,
            client_ip: self.client_ip,
            exempt: self.exempt,
            rejection: self.rejection,
            identity: PhantomData,
        }
    }

    /// Replaces the response sent for refused requests.
    pub fn rejection<R2: Rejection>(self, rejection: R2) -> AllowlistLayer<I, R2> {
        AllowlistLayer {
            handle: self.handle,
            client_ip: self.client_ip,
            exempt: self.exempt,
            rejection,
            identity: PhantomData,
        }
    }

    /// The snapshot handle the layer decides with.
    pub fn handle(&self) -> &SnapshotHandle {
        &self.handle
    }
}

impl<S, I, R: Clone> Layer<S> for AllowlistLayer<I, R> {
    type Service = AllowlistService<S, I, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AllowlistService {
            inner,
            handle: self.handle.clone(),
            client_ip: self.client_ip.clone(),
            exempt: self.exempt.clone(),
            rejection: self.rejection.clone(),
            identity: PhantomData,
        }
    }
}

impl<I, R: Clone> Clone for AllowlistLayer<I, R> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            client_ip: self.client_ip.clone(),
            exempt: self.exempt.clone(),
            rejection: self.rejection.clone(),
            identity: PhantomData,
        }
    }
}

impl<I, R: fmt::Debug> fmt::Debug for AllowlistLayer<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowlistLayer")
            .field("handle", &self.handle)
            .field("client_ip", &self.client_ip)
            .field("exempt", &self.exempt)
            .field("rejection", &self.rejection)
            .field("identity", &std::any::type_name::<I>())
            .finish()
    }
}
