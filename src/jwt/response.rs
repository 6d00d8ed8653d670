use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use super::JwtRejection;
use crate::grpc;

/// What the layer knows about a request it refuses, handed to the [`Rejection`].
///
/// It carries nothing from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unauthenticated {
    /// Why the request is refused.
    pub reason: JwtRejection,
    /// Whether the request is gRPC (`content-type: application/grpc*`).
    pub grpc: bool,
}

/// Builds the response for a request refused by [`JwtAuthLayer`](super::JwtAuthLayer) or
/// [`RequirePrincipalLayer`](super::RequirePrincipalLayer).
///
/// Implemented for [`DefaultRejection`] and for any
/// `Fn(&Unauthenticated) -> Response<Bytes>` closure that is `Clone + Send + Sync + 'static`.
/// Whatever it returns, the layer inserts the [`JwtRejection`] into the response
/// extensions.
pub trait Rejection: Clone + Send + Sync + 'static {
    /// The response for `unauthenticated`.
    fn reject(&self, unauthenticated: &Unauthenticated) -> Response<Bytes>;
}

impl<F> Rejection for F
where
    F: Fn(&Unauthenticated) -> Response<Bytes> + Clone + Send + Sync + 'static,
{
    fn reject(&self, unauthenticated: &Unauthenticated) -> Response<Bytes> {
        self(unauthenticated)
    }
}

/// The default response: HTTP 401 with the [`WWW-Authenticate`
/// challenge](JwtRejection::www_authenticate) and a JSON:API error document (code
/// `unauthenticated`), or, for gRPC, a trailers-only response with status 16
/// `UNAUTHENTICATED`; when the keys have not been fetched yet
/// ([`JwtRejection::KeysUnavailable`]), 503 with code `keysUnavailable` and
/// `Retry-After: 5`, or gRPC status 14 `UNAVAILABLE`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl Rejection for DefaultRejection {
    fn reject(&self, unauthenticated: &Unauthenticated) -> Response<Bytes> {
        let reason = unauthenticated.reason;
        if reason == JwtRejection::KeysUnavailable {
            return keys_unavailable(unauthenticated.grpc);
        }
        if unauthenticated.grpc {
            return grpc::status_response(grpc::UNAUTHENTICATED, reason.description());
        }
        let body = format!(
            r#"{{"errors":[{{"status":"401","code":"unauthenticated","title":"Unauthenticated","detail":"{}"}}]}}"#,
            reason.description(),
        );
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(crate::layer::JSON_API),
        );
        headers.insert(WWW_AUTHENTICATE, reason.www_authenticate());
        response
    }
}

/// 503 with code `keysUnavailable` and `Retry-After`, or gRPC 14 `UNAVAILABLE`.
fn keys_unavailable(grpc: bool) -> Response<Bytes> {
    let reason = JwtRejection::KeysUnavailable;
    if grpc {
        return grpc::status_response(grpc::UNAVAILABLE, reason.description());
    }
    let body = format!(
        r#"{{"errors":[{{"status":"503","code":"{}","title":"Service Unavailable","detail":"{}"}}]}}"#,
        reason.code(),
        reason.description(),
    );
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::layer::JSON_API),
    );
    headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
