use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use crate::client_ip::ClientIp;
use crate::grpc;
use crate::snapshot::DenyReason;

/// What the layer knows about a request it refuses, handed to the [`Rejection`].
///
/// It carries no hint of which addresses would be allowed, and neither should the
/// response built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Denial {
    /// Why the request is refused.
    pub reason: DenyReason,
    /// Whether the request is gRPC (`content-type: application/grpc*`).
    pub grpc: bool,
    /// The client address, when it could be determined.
    pub client_ip: Option<ClientIp>,
}

impl Denial {
    pub(crate) fn new(reason: DenyReason, grpc: bool, client_ip: Option<ClientIp>) -> Self {
        Self {
            reason,
            grpc,
            client_ip,
        }
    }
}

/// Builds the response for a refused request.
///
/// Implemented for [`DefaultRejection`] and for any `Fn(&Denial) -> Response<Bytes>`
/// closure that is `Clone + Send + Sync + 'static`. Whatever it returns, the layer
/// inserts the [`DenyReason`] into the response extensions.
pub trait Rejection: Clone + Send + Sync + 'static {
    /// The response for `denial`.
    fn reject(&self, denial: &Denial) -> Response<Bytes>;
}

impl<F> Rejection for F
where
    F: Fn(&Denial) -> Response<Bytes> + Clone + Send + Sync + 'static,
{
    fn reject(&self, denial: &Denial) -> Response<Bytes> {
        self(denial)
    }
}

/// The default response: HTTP 403 with a JSON:API error document naming the reason
/// (`ipNotAllowed` or `clientIpUnknown`), or, for gRPC, a trailers-only response with
/// status 7 `PERMISSION_DENIED`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl Rejection for DefaultRejection {
    fn reject(&self, denial: &Denial) -> Response<Bytes> {
        if denial.grpc {
            return grpc::status_response(grpc::PERMISSION_DENIED, detail(denial.reason));
        }
        let body = format!(
            r#"{{"errors":[{{"status":"403","code":"{}","title":"Forbidden","detail":"{}"}}]}}"#,
            denial.reason.code(),
            detail(denial.reason),
        );
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = StatusCode::FORBIDDEN;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

fn detail(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::IpNotAllowed => "Access from this address is not allowed for this account.",
        DenyReason::ClientIpUnknown => "The client address could not be determined.",
    }
}
