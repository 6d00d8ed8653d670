use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::client_ip::ClientIp;
use crate::grpc;
use crate::snapshot::DenyReason;

/// What the layer knows about a request it refuses, handed to the [`Rejection`].
///
/// It carries no hint of which addresses would be allowed, and neither should the
/// response built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A refusal for `reason`, for an application that decides with the snapshot itself
    /// (a sign-in handler, say) and answers as the layer would, with a [`Rejection`].
    #[must_use]
    pub fn new(reason: DenyReason, grpc: bool, client_ip: Option<ClientIp>) -> Self {
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
///
/// A caller of another organization than the request's tenant
/// ([`DenyReason::OrganizationMismatch`]) gets 401 with
/// `WWW-Authenticate: Bearer error="invalid_token"` and the code `organizationMismatch`,
/// a request without an identity where one is required ([`DenyReason::Unauthenticated`])
/// 401 with `WWW-Authenticate: Bearer` and the code `unauthenticated`; gRPC: status 16
/// `UNAUTHENTICATED`.
///
/// While the policies are not loaded yet ([`DenyReason::PoliciesUnavailable`]) it is
/// HTTP 503 with the code `policiesUnavailable`, or gRPC status 14 `UNAVAILABLE`: the
/// caller is not known to be denied, and may retry.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl Rejection for DefaultRejection {
    fn reject(&self, denial: &Denial) -> Response<Bytes> {
        let (status, grpc_code) = statuses(denial.reason);
        if denial.grpc {
            return grpc::status_response(grpc_code, detail(denial.reason));
        }
        let mut response = Response::new(document(denial.reason, status));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_API));
        let challenge = match denial.reason {
            DenyReason::OrganizationMismatch => Some(
                r#"Bearer error="invalid_token", error_description="the token is for another organization""#,
            ),
            DenyReason::Unauthenticated => Some("Bearer"),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The media type of the error documents refusals carry.
pub(crate) const JSON_API: &str = "application/vnd.api+json";

/// A JSON:API error document with one error, `detail` escaped as a JSON string (this
/// module does not depend on serde).
pub(crate) fn error_document(status: StatusCode, code: &str, detail: &str) -> String {
    let mut escaped = String::with_capacity(detail.len());
    for c in detail.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c if u32::from(c) < 0x20 => escaped.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    format!(
        r#"{{"errors":[{{"status":"{}","code":"{code}","title":"{}","detail":"{escaped}"}}]}}"#,
        status.as_str(),
        status.canonical_reason().unwrap_or("Error"),
    )
}

/// The HTTP status and the gRPC code of the default refusal for `reason`.
fn statuses(reason: DenyReason) -> (StatusCode, u8) {
    match reason {
        DenyReason::PoliciesUnavailable => (StatusCode::SERVICE_UNAVAILABLE, grpc::UNAVAILABLE),
        DenyReason::OrganizationMismatch | DenyReason::Unauthenticated => {
            (StatusCode::UNAUTHORIZED, grpc::UNAUTHENTICATED)
        }
        // `IpNotAllowed`, `ClientIpUnknown`, and any later reason: forbidden.
        _ => (StatusCode::FORBIDDEN, grpc::PERMISSION_DENIED),
    }
}

/// The default refusal's body for `reason`: built once per reason and process, so that
/// refusing a request (what a flood of unwanted callers costs) formats nothing.
fn document(reason: DenyReason, status: StatusCode) -> Bytes {
    use std::sync::LazyLock;
    use DenyReason::{
        ClientIpUnknown, IpNotAllowed, OrganizationMismatch, PoliciesUnavailable, Unauthenticated,
    };
    static DOCUMENTS: LazyLock<Vec<(DenyReason, StatusCode, Bytes)>> = LazyLock::new(|| {
        [
            IpNotAllowed,
            ClientIpUnknown,
            PoliciesUnavailable,
            OrganizationMismatch,
            Unauthenticated,
        ]
        .into_iter()
        .map(|reason| {
            let status = statuses(reason).0;
            let body = error_document(status, reason.code(), detail(reason));
            (
                reason,
                status,
                Bytes::from_static(Box::leak(body.into_boxed_str()).as_bytes()),
            )
        })
        .collect()
    });
    DOCUMENTS
        .iter()
        .find(|(known, known_status, _)| *known == reason && *known_status == status)
        .map_or_else(
            || Bytes::from(error_document(status, reason.code(), detail(reason))),
            |(_, _, body)| body.clone(),
        )
}

fn detail(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::IpNotAllowed => "Access from this address is not allowed for this account.",
        DenyReason::ClientIpUnknown => "The client address could not be determined.",
        DenyReason::PoliciesUnavailable => {
            "The access policies are not loaded yet. Retry in a few seconds."
        }
        DenyReason::OrganizationMismatch => {
            "These credentials belong to another organization than the one this request is for."
        }
        DenyReason::Unauthenticated => {
            "This request needs an authenticated caller: send your credentials."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(reason: DenyReason, grpc: bool) -> Denial {
        Denial {
            reason,
            grpc,
            client_ip: None,
        }
    }

    #[test]
    fn default_rejection_statuses() {
        struct Case {
            name: &'static str,
            reason: DenyReason,
            grpc: bool,
            want_status: StatusCode,
            want_grpc_status: Option<&'static str>,
            want_body: &'static str,
        }
        let cases = [
            Case {
                name: "address not allowed",
                reason: DenyReason::IpNotAllowed,
                grpc: false,
                want_status: StatusCode::FORBIDDEN,
                want_grpc_status: None,
                want_body: r#"{"errors":[{"status":"403","code":"ipNotAllowed","title":"Forbidden","detail":"Access from this address is not allowed for this account."}]}"#,
            },
            Case {
                name: "policies not loaded",
                reason: DenyReason::PoliciesUnavailable,
                grpc: false,
                want_status: StatusCode::SERVICE_UNAVAILABLE,
                want_grpc_status: None,
                want_body: r#"{"errors":[{"status":"503","code":"policiesUnavailable","title":"Service Unavailable","detail":"The access policies are not loaded yet. Retry in a few seconds."}]}"#,
            },
            Case {
                name: "gRPC, address unknown",
                reason: DenyReason::ClientIpUnknown,
                grpc: true,
                want_status: StatusCode::OK,
                want_grpc_status: Some("7"),
                want_body: "",
            },
            Case {
                name: "gRPC, policies not loaded",
                reason: DenyReason::PoliciesUnavailable,
                grpc: true,
                want_status: StatusCode::OK,
                want_grpc_status: Some("14"),
                want_body: "",
            },
        ];
        for case in cases {
            let response = DefaultRejection.reject(&denial(case.reason, case.grpc));
            assert_eq!(response.status(), case.want_status, "{}", case.name);
            assert_eq!(
                response
                    .headers()
                    .get("grpc-status")
                    .map(|v| v.to_str().unwrap()),
                case.want_grpc_status,
                "{}",
                case.name
            );
            assert_eq!(response.body(), case.want_body, "{}", case.name);
        }
    }

    #[test]
    fn every_reason_answers_the_document_it_would_have_formatted() {
        for reason in [
            DenyReason::IpNotAllowed,
            DenyReason::ClientIpUnknown,
            DenyReason::PoliciesUnavailable,
            DenyReason::OrganizationMismatch,
            DenyReason::Unauthenticated,
        ] {
            let response = DefaultRejection.reject(&denial(reason, false));
            let status = response.status();
            let want = error_document(status, reason.code(), detail(reason));
            assert_eq!(response.body(), want.as_bytes(), "{reason:?}");
            // Twice: the second answer is the same document.
            let again = DefaultRejection.reject(&denial(reason, false));
            assert_eq!(again.body(), response.body());
            let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(json["errors"][0]["code"], reason.code());
            assert_eq!(json["errors"][0]["status"], status.as_str());
        }
        // A status no reason is built with is formatted on the spot.
        let odd = document(DenyReason::IpNotAllowed, StatusCode::IM_A_TEAPOT);
        assert!(std::str::from_utf8(&odd)
            .unwrap()
            .contains(r#""status":"418""#));
    }
}
