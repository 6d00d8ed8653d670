use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::Config;
use super::{AllowlistService, DefaultRejection, Rejection};
use crate::client_ip::ClientIpResolver;
use crate::lists::Exempt;
use crate::principal::{Identity, Principal};
use crate::snapshot::SnapshotHandle;
use crate::warn::RateLimited;

/// Applies IP allowlist policies to every request of the wrapped service.
///
/// `I` is the identity type read from the request extensions ([`Principal`] unless set
/// with [`with_identity`](Self::with_identity)); `R` builds the response for refused
/// requests. Cloning is cheap. See the [module docs](super) for an example.
#[must_use]
pub struct AllowlistLayer<I = Principal, R = DefaultRejection> {
    /// Shared with every service the layer makes: applying the layer (which axum does
    /// per request for a router whose state was never set) costs one reference count.
    config: Arc<Config<R>>,
    identity: PhantomData<fn() -> I>,
}

/// What the layer does with a request that carries no identity, and how it recognises
/// one that should have: see [`AllowlistLayer::allow_anonymous`].
#[derive(Debug, Clone)]
pub(super) struct Anonymous {
    pub(super) allow: bool,
    /// The application's session cookie, whose presence means "should be authenticated".
    pub(super) cookie: Option<Arc<str>>,
    /// One warning a minute per layer about credentials that reached it unread.
    pub(super) warned: Arc<RateLimited>,
}

impl Default for Anonymous {
    fn default() -> Self {
        Self {
            allow: false,
            cookie: None,
            warned: Arc::new(RateLimited::new(Duration::from_secs(60))),
        }
    }
}

impl AllowlistLayer {
    /// A layer deciding with the snapshots published to `handle`, reading the caller as a
    /// [`Principal`] and the client address recorded by
    /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer) (the TCP peer when none is).
    pub fn new(handle: SnapshotHandle) -> Self {
        Self {
            config: Arc::new(Config {
                handle,
                client_ip: None,
                exempt: Exempt::default(),
                anonymous: Anonymous::default(),
                rejection: DefaultRejection,
            }),
            identity: PhantomData,
        }
    }
}

impl<I, R: Clone> AllowlistLayer<I, R> {
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
        self.config_mut().client_ip = Some(resolver.into());
        self
    }

    /// Lets requests for `path` through without the policies: an exact path, or a
    /// prefix written with a trailing `*` (`/webhooks/*`). An identity of another
    /// organization than the request's tenant is still refused there (401
    /// `organizationMismatch`). See [`lists`](crate::lists#exempt-routes) for how this
    /// interacts with axum's `route_layer`.
    pub fn exempt(mut self, path: &str) -> Self {
        self.config_mut().exempt.add(path);
        self
    }

    /// Lets requests without an identity through, for stacks whose routes are partly
    /// public (a login page, public media): the policies apply to identified callers
    /// only, the site and resource lists to everyone. By default such requests are
    /// **refused** with 401 `unauthenticated` (gRPC 16), so that a forgotten
    /// [`with_identity`](Self::with_identity) or an authentication layer on the wrong
    /// side of this one fails closed instead of letting everyone in. Where only some
    /// routes need an identity, allow anonymous requests here and put
    /// [`RequireIdentityLayer`](super::RequireIdentityLayer) on those routes.
    ///
    /// Either way, a request that carries credentials (an `Authorization` header, or
    /// the [`credentials_cookie`](Self::credentials_cookie)) but reaches this layer with
    /// no identity is logged at WARN (at most once a minute) with the fix: it is the
    /// signature of a layer-order or identity-type mistake.
    pub fn allow_anonymous(mut self) -> Self {
        self.config_mut().anonymous.allow = true;
        self
    }

    /// Refuses requests without an identity with 401 (the default): see
    /// [`allow_anonymous`](Self::allow_anonymous).
    pub fn refuse_anonymous(mut self) -> Self {
        self.config_mut().anonymous.allow = false;
        self
    }

    /// The name of the application's session cookie: a request carrying it but no
    /// identity is logged as a likely layer-order mistake, like one carrying an
    /// `Authorization` header.
    pub fn credentials_cookie(mut self, name: &str) -> Self {
        self.config_mut().anonymous.cookie = Some(Arc::from(name));
        self
    }

    /// Reads the caller as the application's own type `J` instead of [`Principal`].
    pub fn with_identity<J: Identity>(self) -> AllowlistLayer<J, R> {
        AllowlistLayer {
            config: self.config,
            identity: PhantomData,
        }
    }

    /// Replaces the response sent for refused requests.
    pub fn rejection<R2: Rejection>(self, rejection: R2) -> AllowlistLayer<I, R2> {
        let config = Arc::unwrap_or_clone(self.config);
        AllowlistLayer {
            config: Arc::new(Config {
                handle: config.handle,
                client_ip: config.client_ip,
                exempt: config.exempt,
                anonymous: config.anonymous,
                rejection,
            }),
            identity: PhantomData,
        }
    }

    /// The snapshot handle the layer decides with.
    pub fn handle(&self) -> &SnapshotHandle {
        &self.config.handle
    }

    /// The configuration to change: this layer's own, or a copy if a clone of the
    /// layer shares it.
    fn config_mut(&mut self) -> &mut Config<R> {
        Arc::make_mut(&mut self.config)
    }
}

impl<S, I, R> Layer<S> for AllowlistLayer<I, R> {
    type Service = AllowlistService<S, I, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AllowlistService {
            inner,
            config: Arc::clone(&self.config),
            identity: PhantomData,
        }
    }
}

impl<I, R> Clone for AllowlistLayer<I, R> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            identity: PhantomData,
        }
    }
}

impl<I, R: fmt::Debug> fmt::Debug for AllowlistLayer<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowlistLayer")
            .field("handle", &self.config.handle)
            .field("client_ip", &self.config.client_ip)
            .field("exempt", &self.config.exempt)
            .field("anonymous", &self.config.anonymous)
            .field("rejection", &self.config.rejection)
            .field("identity", &std::any::type_name::<I>())
            .finish()
    }
}
