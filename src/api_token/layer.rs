use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::ApiTokenAuth;
use crate::body::RefusalBody;
use crate::client_ip::{peer_addr, ClientIpOutcome};
use crate::grpc;
use crate::policy::OrgId;
use crate::principal::Principal;
use crate::store::{ApiTokenRecord, ApiTokenRejection, Store, API_TOKEN_PREFIX};

/// What the application says a token's owner is now, given the principal the token
/// recorded; `None`: the owner is gone.
type CurrentOwner = dyn Fn(Principal) -> Option<Principal> + Send + Sync;

#[derive(Clone)]
struct Config {
    last_used_interval: Duration,
    current_owner: Option<Arc<CurrentOwner>>,
}

/// Verifies `Authorization: Bearer tia_...` API tokens against the store and inserts
/// the owner's [`Principal`]; any other request goes on untouched. Place it outside
/// the JWT layer. Cloning is cheap. See the [module docs](super).
///
/// # Security
///
/// See the [module docs](super#security).
#[derive(Clone)]
#[must_use]
pub struct ApiTokenLayer {
    store: Store,
    config: Arc<Config>,
}

impl ApiTokenLayer {
    /// A layer verifying tokens kept by `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            config: Arc::new(Config {
                last_used_interval: Duration::from_secs(300),
                current_owner: None,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// How often a token's last use (and its `useApiToken` audit record) may be
    /// written: at most once per token per interval (default 5 minutes; zero writes
    /// on every use).
    pub fn last_used_interval(mut self, interval: Duration) -> Self {
        self.config_mut().last_used_interval = interval;
        self
    }

    /// Asks `current_owner` on each request who the token's owner is now, given the
    /// principal the token recorded at creation (user, organization, groups and
    /// permissions then): return it with the user's current groups and permissions,
    /// or `None` to refuse the token (401 `apiTokenOwnerUnknown`) because the user is
    /// gone. It runs on the request path: answer from memory. The organization and
    /// user of the answer are ignored: a token never changes hands.
    pub fn current_owner<F>(mut self, current_owner: F) -> Self
    where
        F: Fn(Principal) -> Option<Principal> + Send + Sync + 'static,
    {
        self.config_mut().current_owner = Some(Arc::new(current_owner));
        self
    }
}

impl fmt::Debug for ApiTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTokenLayer")
            .field("store", &self.store)
            .field("last_used_interval", &self.config.last_used_interval)
            .field(
                "current_owner",
                &self.config.current_owner.as_ref().map(|_| "<fn>"),
            )
            .finish()
    }
}

impl<S> Layer<S> for ApiTokenLayer {
    type Service = ApiTokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiTokenService {
            inner,
            store: self.store.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

/// The service produced by [`ApiTokenLayer`].
#[derive(Clone)]
pub struct ApiTokenService<S> {
    inner: S,
    store: Store,
    config: Arc<Config>,
}

impl<S> ApiTokenService<S> {
    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ApiTokenService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTokenService")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The bearer credential of `headers`, when it is an API token (by its prefix alone).
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && credential.starts_with(API_TOKEN_PREFIX))
        .then_some(credential)
}

/// The principal a token stands for: its owner as recorded, or as the hook says now.
fn principal(token: &ApiTokenRecord, config: &Config) -> Option<Principal> {
    let mut recorded = Principal::new(token.owner.clone())
        .with_groups(token.groups.iter().cloned())
        .with_permissions(token.permissions.iter().cloned());
    if token.org != OrgId::default() {
        recorded = recorded.with_organization(token.org.clone());
    }
    let Some(current_owner) = &config.current_owner else {
        return Some(recorded);
    };
    let user = recorded.user.clone();
    let organization = recorded.organization.clone();
    let mut current = current_owner(recorded)?;
    current.user = user;
    current.organization = organization;
    Some(current)
}

/// The default refusal: 401 with a `WWW-Authenticate` challenge and a JSON:API error
/// document, 503 with `Retry-After` when tokens cannot be checked, or the gRPC
/// equivalents (16 `UNAUTHENTICATED`, 14 `UNAVAILABLE`).
fn reject(reason: ApiTokenRejection, grpc: bool) -> Response<Bytes> {
    let unavailable = reason == ApiTokenRejection::Unavailable;
    if grpc {
        let code = if unavailable {
            grpc::UNAVAILABLE
        } else {
            grpc::UNAUTHENTICATED
        };
        let mut response = grpc::status_response(code, reason.description());
        response.extensions_mut().insert(reason);
        return response;
    }
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::UNAUTHORIZED
    };
    let body = crate::layer::error_document(status, reason.code(), reason.description());
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::layer::JSON_API),
    );
    if unavailable {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    } else if let Ok(challenge) = HeaderValue::from_str(&format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\"",
        reason.description()
    )) {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    response.extensions_mut().insert(reason);
    response
}

type Verifying<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The response future of [`ApiTokenService`]: the inner service's future, unboxed,
    /// for requests without an API token; a boxed one that looks the token up first
    /// otherwise.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] future: F },
        Verifying { future: Verifying<B, E> },
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Inner { .. } => "ResponseFuture::Inner",
            Kind::Verifying { .. } => "ResponseFuture::Verifying",
        })
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Verifying { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiTokenService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: RefusalBody + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if presented_token(request.headers()).is_none() {
            return ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            };
        }
        // The service that was made ready goes with this request; a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        let config = Arc::clone(&self.config);
        let grpc = grpc::is_grpc(request.headers());
        // For the audit record of the token's use: the address a `ClientIpLayer`
        // recorded, else the peer. Read, never recorded: deciding the client address is
        // the job of the layers configured for it, and a peer recorded here would
        // conflict with a later layer's own resolver (the address would become unknown).
        let client_ip = ClientIpOutcome::of(request.extensions())
            .map_or_else(|| peer_addr(request.extensions()), ClientIpOutcome::addr);
        let future = async move {
            // Read where it lies, not copied: the header is removed below once verified.
            let presented = presented_token(request.headers()).unwrap_or_default();
            let verified = store
                .verify_api_token(presented, client_ip, config.last_used_interval)
                .await
                .and_then(|token| {
                    principal(&token, &config)
                        .map(|principal| (token, principal))
                        .ok_or(ApiTokenRejection::OwnerUnknown)
                });
            match verified {
                Ok((token, principal)) => {
                    tracing::trace!(
                        user = %principal.user,
                        token_id = %token.id,
                        "api tokens: authenticated"
                    );
                    // No later layer, handler or log sees the secret, and the JWT
                    // layer sees an authenticated request without a header.
                    request.headers_mut().remove(AUTHORIZATION);
                    request.extensions_mut().insert(principal);
                    request.extensions_mut().insert(ApiTokenAuth {
                        id: token.id,
                        name: token.name,
                    });
                    inner.call(request).await
                }
                Err(reason) => {
                    tracing::debug!(reason = reason.code(), grpc, "api tokens: request rejected");
                    Ok(reject(reason, grpc).map(ResBody::from_refusal))
                }
            }
        };
        ResponseFuture {
            kind: Kind::Verifying {
                future: Box::pin(future),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_headers_are_api_tokens() {
        struct Case {
            name: &'static str,
            header: Option<&'static str>,
            want: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "none",
                header: None,
                want: None,
            },
            Case {
                name: "jwt",
                header: Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
                want: None,
            },
            Case {
                name: "token",
                header: Some("Bearer tia_abc"),
                want: Some("tia_abc"),
            },
            Case {
                name: "scheme case",
                header: Some("bearer tia_abc"),
                want: Some("tia_abc"),
            },
            Case {
                name: "basic",
                header: Some("Basic tia_abc"),
                want: None,
            },
            Case {
                name: "no credential",
                header: Some("Bearer"),
                want: None,
            },
        ];
        for case in cases {
            let mut headers = HeaderMap::new();
            if let Some(header) = case.header {
                headers.insert(AUTHORIZATION, HeaderValue::from_static(header));
            }
            assert_eq!(presented_token(&headers), case.want, "{}", case.name);
        }
    }
}
