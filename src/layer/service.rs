use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{Request, Response};
use smallvec::SmallVec;
use tower_service::Service;

use super::layer::Anonymous;
use super::{Denial, Rejection, ResponseFuture};
use crate::body::RefusalBody;
use crate::client_ip::{resolve_addr_once, ClientIpOutcome, ClientIpResolver};
use crate::grpc;
use crate::lists::Exempt;
use crate::policy::OrgId;
use crate::principal::{Identity, Principal};
use crate::snapshot::{same_name, Decision, DenyReason, SnapshotHandle};
use crate::tenant::{self, Tenant};
use crate::warn::RateLimited;
use crate::{metrics, report};

/// The service produced by [`AllowlistLayer`](super::AllowlistLayer).
pub struct AllowlistService<S, I, R> {
    pub(super) inner: S,
    /// Shared by every clone: a server clones the service per request, and one
    /// reference count is all that costs.
    pub(super) config: Arc<Config<R>>,
    pub(super) identity: PhantomData<fn() -> I>,
}

/// What the layer was configured with.
#[derive(Debug, Clone)]
pub(super) struct Config<R> {
    pub(super) handle: SnapshotHandle,
    pub(super) client_ip: Option<ClientIpResolver>,
    pub(super) exempt: Exempt,
    pub(super) anonymous: Anonymous,
    pub(super) rejection: R,
}

impl<S, I, R> AllowlistService<S, I, R> {
    inner_service_accessors!();
}

impl<S, I, R, ReqBody, ResBody> Service<Request<ReqBody>> for AllowlistService<S, I, R>
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

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Decided apart, so that the request moves once, straight to the inner service.
        match admit::<I, R, ReqBody>(&self.config, &mut request) {
            Admission::Admitted => ResponseFuture::future(self.inner.call(request)),
            Admission::Refused(refusal) => ResponseFuture::rejected(refusal),
        }
    }
}

/// What [`admit`] decided.
enum Admission {
    /// The request goes on to the inner service.
    Admitted,
    /// The refusal to answer instead.
    Refused(Response<Bytes>),
}

/// Whether the request goes on to the inner service.
fn admit<I: Identity, R: Rejection, B>(config: &Config<R>, request: &mut Request<B>) -> Admission {
    let exempt = config.exempt.contains(request.uri());
    // A caller is checked against the request's tenant (on exempt routes too), so the
    // record notes a decision with the tenant for a `TenantLayer` that would run after
    // this one; an anonymous request decides nothing with it. Asked only in a process
    // that has a `TenantLayer` (one more look-up): elsewhere no one reads the note.
    let decides = tenant::layer_made() && request.extensions().get::<I>().is_some();
    // Recorded before the exemption, so exempt routes' handlers see the same outcome.
    let addr = resolve_addr_once(request, config.client_ip.as_ref(), decides);

    let Some(caller) = request.extensions().get::<I>() else {
        if exempt {
            return Admission::Admitted;
        }
        // A caller this crate authenticated but that is unreadable here is not
        // anonymous: refused even where anonymous requests go on, or every such caller
        // would pass without a policy.
        if !authenticated_as_another_type::<I, _>(request) {
            warn_if_credentials_unread::<I, _>(
                request,
                config.anonymous.cookie.as_deref(),
                &config.anonymous.warned,
            );
            if config.anonymous.allow {
                tracing::debug!(
                    "no caller identity: the policies do not apply to anonymous requests"
                );
                return Admission::Admitted;
            }
        }
        return Admission::Refused(refusal(
            &config.rejection,
            request,
            DenyReason::Unauthenticated,
        ));
    };
    // The request's tenant, decided before authentication (the default organization
    // when no `TenantLayer` ran): credentials of another organization are refused.
    // Exempt routes too: the exemption is from the policies, not from the tenant.
    let org_id = Tenant::org_of(request.extensions());
    let caller_org = caller.organization_id().unwrap_or(OrgId::DEFAULT);
    let snapshot;
    let (decision, compiled) = if same_name(caller_org, org_id) {
        if exempt {
            return Admission::Admitted;
        }
        snapshot = config.handle.load();
        snapshot.decide_in(Some(org_id), caller.user_id(), caller.group_ids(), addr)
    } else {
        tracing::debug!(
            organization = org_id,
            caller_organization = caller_org,
            user = caller.user_id(),
            "allowlist: the caller's organization is not the request's tenant"
        );
        (Decision::Denied(DenyReason::OrganizationMismatch), None)
    };

    let Decision::Denied(reason) = decision else {
        if decision == Decision::Allowed {
            metrics::allowed(org_id, "policy");
        }
        if let Some(org) = compiled.filter(|org| org.has_report_policies()) {
            // `would_deny` walks the groups several times; on the stack for the
            // usual handful, not a heap allocation per request.
            let groups: SmallVec<[&str; 8]> = caller.group_ids().collect();
            let user = caller.user_id();
            for rule in org
                .would_deny(user, groups.iter().copied(), addr)
                .into_iter()
                .flatten()
            {
                report::would_deny(
                    &config.handle,
                    report::RuleKind::Policy,
                    rule.as_str(),
                    org_id,
                    Some(user),
                    addr,
                );
            }
        }
        tracing::trace!(
            organization = org_id,
            user = caller.user_id(),
            client_ip = ?addr,
            decision = ?decision,
            "allowlist: allowed"
        );
        return Admission::Admitted;
    };

    if tracing::enabled!(tracing::Level::DEBUG) {
        let policies = compiled
            .map(|org| org.applicable_policies(caller.user_id(), caller.group_ids()))
            .unwrap_or_default();
        tracing::debug!(
            organization = org_id,
            user = caller.user_id(),
            client_ip = ?addr,
            client_ip_source = ?ClientIpOutcome::of(request.extensions())
                .and_then(ClientIpOutcome::client_ip)
                .map(|ip| &ip.source),
            reason = reason.code(),
            policies = ?policies,
            "allowlist: request denied"
        );
    }
    metrics::denied(org_id, "policy", reason.code());
    Admission::Refused(refusal(&config.rejection, request, reason))
}

/// The rejection's response for `reason`, as the response future.
pub(crate) fn reject<R: Rejection, B, F>(
    rejection: &R,
    request: &Request<B>,
    reason: DenyReason,
) -> ResponseFuture<F> {
    ResponseFuture::rejected(refusal(rejection, request, reason))
}

/// The rejection's response for `reason`, with the reason in its extensions.
fn refusal<R: Rejection, B>(
    rejection: &R,
    request: &Request<B>,
    reason: DenyReason,
) -> Response<Bytes> {
    let client_ip = ClientIpOutcome::of(request.extensions())
        .and_then(ClientIpOutcome::client_ip)
        .cloned();
    let denial = Denial::new(reason, grpc::is_grpc(request.headers()), client_ip);
    let mut response = rejection.reject(&denial);
    response.extensions_mut().insert(reason);
    response
}

/// Whether a request with no identity of type `I` was authenticated by this crate's JWT
/// or API-token layer, which record a [`Principal`]: the allowlist reads another type,
/// so a layer that maps one to the other is missing or on the wrong side. Said at WARN,
/// at most once a minute, with the fix.
fn authenticated_as_another_type<I: Identity, B>(request: &Request<B>) -> bool {
    if TypeId::of::<I>() == TypeId::of::<Principal>()
        || request.extensions().get::<Principal>().is_none()
    {
        return false;
    }
    // A limit of its own: the credentials warning's must not hide this one.
    static LIMIT: RateLimited = RateLimited::new(Duration::from_secs(60));
    if LIMIT.ready() {
        tracing::warn!(
            target: "tower_ip_allowlist::wiring",
            identity = std::any::type_name::<I>(),
            "a request authenticated as a `Principal` (by the JWT or API-token layer) reached the allowlist, which reads `{}`: it is refused; read `Principal` (the default), or insert your type from the `Principal` in a layer outside the allowlist",
            std::any::type_name::<I>(),
        );
    }
    true
}

/// A request that carries credentials but reaches the layer with no identity of type `I`
/// is the signature of a layer-order or identity-type mistake: said at WARN, at most
/// once a minute, with the fix.
pub(super) fn warn_if_credentials_unread<I, B>(
    request: &Request<B>,
    cookie: Option<&str>,
    limit: &RateLimited,
) {
    let headers = request.headers();
    let authorization = headers.contains_key(AUTHORIZATION);
    let session = cookie.is_some_and(|name| {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .any(|pair| pair.trim_start().split('=').next() == Some(name))
    });
    if !(authorization || session) {
        return;
    }
    if limit.ready() {
        tracing::warn!(
            target: "tower_ip_allowlist::wiring",
            identity = std::any::type_name::<I>(),
            "a request carries credentials ({}) but reached the allowlist with no identity of type `{}`: add the authentication layer outside the allowlist (with axum, `.layer(auth)` after `.layer(AllowlistLayer)`; with tonic, as a `Server::builder().layer`, not a per-service interceptor), and read your own identity type with `.with_identity::<YourUser>()`",
            if authorization { "an Authorization header" } else { "the session cookie" },
            std::any::type_name::<I>(),
        );
    }
}

impl<S: Clone, I, R> Clone for AllowlistService<S, I, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            identity: PhantomData,
        }
    }
}

impl<S: fmt::Debug, I, R: fmt::Debug> fmt::Debug for AllowlistService<S, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowlistService")
            .field("inner", &self.inner)
            .field("handle", &self.config.handle)
            .field("client_ip", &self.config.client_ip)
            .field("exempt", &self.config.exempt)
            .field("anonymous", &self.config.anonymous)
            .field("rejection", &self.config.rejection)
            .field("identity", &std::any::type_name::<I>())
            .finish()
    }
}
