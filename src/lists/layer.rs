use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::{ListService, Scope};
use super::{Exempt, OrgResolver, PathParam, PathTemplateError, RequestHead};
use crate::client_ip::ClientIpResolver;
use crate::layer::{DefaultRejection, Rejection};
use crate::policy::OrgId;
use crate::snapshot::SnapshotHandle;

/// What both list layers are configured with.
#[derive(Clone)]
pub(super) struct Config<R> {
    pub(super) handle: SnapshotHandle,
    pub(super) client_ip: Option<ClientIpResolver>,
    pub(super) organization: OrgResolver,
    pub(super) exempt: Exempt,
    pub(super) rejection: R,
    pub(super) scope: Scope,
}

impl<R: fmt::Debug> fmt::Debug for Config<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("handle", &self.handle)
            .field("client_ip", &self.client_ip)
            .field("organization", &self.organization)
            .field("exempt", &self.exempt)
            .field("rejection", &self.rejection)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Config<DefaultRejection> {
    fn new(handle: SnapshotHandle, scope: Scope) -> Self {
        Self {
            handle,
            client_ip: None,
            organization: OrgResolver::default(),
            exempt: Exempt::default(),
            rejection: DefaultRejection,
            scope,
        }
    }
}

/// The builder methods both list layers share.
macro_rules! list_layer {
    ($name:ident) => {
        impl<R> $name<R> {
            /// A resolver of this layer's own, for stacks without a
            /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer); by default the layer
            /// reads the recorded outcome, or the TCP peer when none is recorded. See
            /// [`client_ip`](crate::client_ip#resolve-once) for which wins.
            pub fn client_ip(mut self, resolver: impl Into<ClientIpResolver>) -> Self {
                self.config.client_ip = Some(resolver.into());
                self
            }

            /// Which organization's list applies to a request (`None` lets it through
            /// unchecked). By default: the request's [tenant](crate::tenant), or the
            /// default organization where no `TenantLayer` recorded one. Override it
            /// only to name a resource's owner where resource ids are global.
            pub fn organization(
                mut self,
                resolve: impl Fn(&RequestHead<'_>) -> Option<OrgId> + Send + Sync + 'static,
            ) -> Self {
                self.config.organization = OrgResolver::new(resolve);
                self
            }

            /// Lets requests for `path` through unchecked: an exact path, or a prefix
            /// written with a trailing `*` (`/webhooks/*`).
            pub fn exempt(mut self, path: &str) -> Self {
                self.config.exempt.add(path);
                self
            }

            /// Replaces the response for refused requests.
            pub fn rejection<R2: Rejection>(self, rejection: R2) -> $name<R2> {
                let Config {
                    handle,
                    client_ip,
                    organization,
                    exempt,
                    scope,
                    ..
                } = self.config;
                $name {
                    config: Config {
                        handle,
                        client_ip,
                        organization,
                        exempt,
                        rejection,
                        scope,
                    },
                }
            }
        }

        impl<S, R: Clone> Layer<S> for $name<R> {
            type Service = ListService<S, R>;

            fn layer(&self, inner: S) -> Self::Service {
                ListService {
                    inner,
                    config: Arc::new(self.config.clone()),
                }
            }
        }
    };
}

/// Enforces each organization's site allowlist on every request; see the
/// [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct SiteAllowlistLayer<R = DefaultRejection> {
    config: Config<R>,
}

impl SiteAllowlistLayer {
    /// Enforces the site lists published to `handle` (by the [`Store`](crate::store::Store)).
    pub fn new(handle: SnapshotHandle) -> Self {
        Self {
            config: Config::new(handle, Scope::Site),
        }
    }
}

list_layer!(SiteAllowlistLayer);

/// Enforces resources' allowlists on the routes it wraps; see the [module docs](super).
#[derive(Debug, Clone)]
#[must_use]
pub struct ResourceAllowlistLayer<R = DefaultRejection> {
    config: Config<R>,
}

impl ResourceAllowlistLayer {
    /// Finds the resource id of a request with `resource` (`None`: not a guarded
    /// request, let through).
    pub fn new(
        handle: SnapshotHandle,
        resource: impl Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            config: Config::new(handle, Scope::Resource(Arc::new(resource))),
        }
    }

    /// The resource id is the `{name}` parameter of `template`, such as
    /// `/api/v1/projects/{project}/media/{file}` (a trailing `{*rest}` matches the rest
    /// of the path). Paths that do not match are let through.
    ///
    /// # Errors
    ///
    /// [`PathTemplateError`] when `template` does not start with `/` or has no `{name}`.
    pub fn path_param(
        handle: SnapshotHandle,
        template: &str,
        name: &str,
    ) -> Result<Self, PathTemplateError> {
        let param = PathParam::new(template, name)?;
        Ok(Self::new(handle, move |head| {
            param.extract(head.uri.path())
        }))
    }
}

list_layer!(ResourceAllowlistLayer);
