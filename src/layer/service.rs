use std::fmt;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::{Request, Response};
use smallvec::SmallVec;
use tower_service::Service;

use super::{Denial, Rejection, ResponseFuture};
use crate::body::ResponseBody;
use crate::client_ip::{resolve_once, ClientIpResolver};
use crate::grpc;
use crate::lists::Exempt;
use crate::policy::OrgId;
use crate::principal::Identity;
use crate::snapshot::{Decision, SnapshotHandle};
use crate::{metrics, report};

/// The service produced by [`AllowlistLayer`](super::AllowlistLayer).
pub struct AllowlistService<S, I, R> {
    pub(super) inner: S,
    pub(super) handle: SnapshotHandle,
    pub(super) client_ip: Option<ClientIpResolver>,
    pub(super) exempt: Exempt,
    pub(super) rejection: R,
    pub(super) identity: PhantomData<fn() -> I>,
}

impl<S, I, R> AllowlistService<S, I, R> {
    inner_service_accessors!();
}

impl<S, I, R, ReqBody, ResBody> Service<Request<ReqBody>> for AllowlistService<S, I, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I: Identity,
    R: Rejection,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Recorded before the exemption, so exempt routes' handlers see the same outcome.
        let client_ip = resolve_once(&mut request, self.client_ip.as_ref());
        if self.exempt.contains(request.uri().path()) {
            return ResponseFuture::future(self.inner.call(request));
        }

        let Some(caller) = request.extensions().get::<I>() else {
            tracing::debug!("no caller identity in the request: the allowlist does not apply");
            return ResponseFuture::future(self.inner.call(request));
        };
        let snapshot = self.handle.load();
        let addr = client_ip.as_ref().ok().map(|ip| ip.addr);
        let organization = caller.organization_id();
        let org_id = organization.unwrap_or(OrgId::DEFAULT);
        let (decision, compiled) =
            snapshot.decide_in(organization, caller.user_id(), caller.group_ids(), addr);

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
                    report::would_deny("policy", rule.as_str(), org_id, Some(user), addr);
                }
            }
            tracing::trace!(
                organization = org_id,
                user = caller.user_id(),
                client_ip = ?addr,
                decision = ?decision,
                "allowlist: allowed"
            );
            return ResponseFuture::future(self.inner.call(request));
        };

        if tracing::enabled!(tracing::Level::DEBUG) {
            let policies = compiled
                .map(|org| org.applicable_policies(caller.user_id(), caller.group_ids()))
                .unwrap_or_default();
            tracing::debug!(
                organization = org_id,
                user = caller.user_id(),
                client_ip = ?addr,
                client_ip_source = ?client_ip.as_ref().map(|ip| &ip.source),
                reason = reason.code(),
                policies = ?policies,
                "allowlist: request denied"
            );
        }
        metrics::denied(org_id, "policy", reason.code());
        let denial = Denial {
            reason,
            grpc: grpc::is_grpc(request.headers()),
            client_ip: client_ip.ok(),
        };
        let mut response = self.rejection.reject(&denial);
        response.extensions_mut().insert(reason);
        ResponseFuture::rejected(response)
    }
}

impl<S: Clone, I, R: Clone> Clone for AllowlistService<S, I, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            handle: self.handle.clone(),
            client_ip: self.client_ip.clone(),
            exempt: self.exempt.clone(),
            rejection: self.rejection.clone(),
            identity: PhantomData,
        }
    }
}

impl<S: fmt::Debug, I, R: fmt::Debug> fmt::Debug for AllowlistService<S, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowlistService")
            .field("inner", &self.inner)
            .field("handle", &self.handle)
            .field("client_ip", &self.client_ip)
            .field("exempt", &self.exempt)
            .field("rejection", &self.rejection)
            .field("identity", &std::any::type_name::<I>())
            .finish()
    }
}
