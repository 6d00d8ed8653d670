use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::Config;
use super::RequestHead;
use crate::body::RefusalBody;
use crate::client_ip::resolve_addr_once;
use crate::layer::{reject, Rejection, ResponseFuture};
use crate::policy::Enforcement;
use crate::principal::Principal;
use crate::report::RuleKind;
use crate::snapshot::{CompiledList, CompiledOrg, DenyReason};
use crate::{metrics, report};

type ResourceFn = dyn Fn(&RequestHead<'_>) -> Option<String> + Send + Sync;

/// Which list a layer enforces.
#[derive(Clone)]
pub(crate) enum Scope {
    Site,
    Resource(Arc<ResourceFn>),
}

impl Scope {
    /// The rule kind reports name and the layer metrics name.
    fn names(&self) -> (RuleKind, &'static str) {
        match self {
            Self::Site => (RuleKind::SiteAllowlist, "site"),
            Self::Resource(_) => (RuleKind::ResourceAllowlist, "resource"),
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Site => f.write_str("Site"),
            Self::Resource(_) => f.write_str("Resource(<fn>)"),
        }
    }
}

/// The service of [`SiteAllowlistLayer`](super::SiteAllowlistLayer) and
/// [`ResourceAllowlistLayer`](super::ResourceAllowlistLayer).
pub struct ListService<S, R> {
    pub(super) inner: S,
    pub(super) config: Arc<Config<R>>,
}

impl<S, R> ListService<S, R> {
    inner_service_accessors!();
}

impl<S: Clone, R> Clone for ListService<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for ListService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListService")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for ListService<S, R>
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
        let config = &*self.config;
        let exempt = config.exempt.contains(request.uri());
        // Recorded before the exemption, so exempt routes' handlers see the same
        // outcome; noted as a decision with the tenant only where this list makes one.
        let decides = config.organization.is_tenant() && !exempt;
        let addr = resolve_addr_once(&mut request, config.client_ip.as_ref(), decides);
        if exempt {
            return ResponseFuture::future(self.inner.call(request));
        }
        let head = RequestHead::of(&request);
        let Some(organization) = config.organization.resolve(&head) else {
            return ResponseFuture::future(self.inner.call(request));
        };
        let snapshot = config.handle.load();
        let (kind, layer) = config.scope.names();
        if snapshot.is_pending() {
            // Whether a list applies is unknown until the policies are loaded: closed.
            let reason = DenyReason::PoliciesUnavailable;
            // Not labelled by the resolver's organization: before the policies load,
            // any client could claim label values with made-up host names.
            metrics::denied("other", layer, reason.code());
            return reject(&config.rejection, &request, reason);
        }
        let compiled = snapshot.org(organization.as_str());
        let Some((rule, list)) = select(&config.scope, compiled.map(|c| &**c), &head) else {
            return ResponseFuture::future(self.inner.call(request));
        };
        if addr.is_some_and(|addr| list.contains(addr)) {
            metrics::allowed(organization.as_str(), layer);
            return ResponseFuture::future(self.inner.call(request));
        }
        let user = head.extensions.get::<Principal>().map(|p| p.user.as_str());
        if list.enforcement() == Enforcement::Report {
            report::would_deny(
                &config.handle,
                kind,
                &rule,
                organization.as_str(),
                user,
                addr,
            );
            return ResponseFuture::future(self.inner.call(request));
        }
        let reason = if addr.is_some() {
            DenyReason::IpNotAllowed
        } else {
            DenyReason::ClientIpUnknown
        };
        tracing::debug!(
            organization = organization.as_str(),
            rule_kind = kind.as_str(),
            rule = &*rule,
            user,
            client_ip = ?addr,
            reason = reason.code(),
            "allowlist: request denied"
        );
        metrics::denied(organization.as_str(), layer, reason.code());
        reject(&config.rejection, &request, reason)
    }
}

/// The list that applies to the request, with its id for reports (no allocation for
/// the site list, which is checked on every request).
fn select<'a>(
    scope: &Scope,
    compiled: Option<&'a CompiledOrg>,
    head: &RequestHead<'_>,
) -> Option<(Cow<'static, str>, &'a CompiledList)> {
    let compiled = compiled?;
    match scope {
        Scope::Site => compiled
            .site()
            .map(|list| (Cow::Borrowed(RuleKind::SiteAllowlist.as_str()), list)),
        Scope::Resource(resource) => {
            let id = resource(head)?;
            let list = compiled.resource(&id)?;
            Some((Cow::Owned(id), list))
        }
    }
}
