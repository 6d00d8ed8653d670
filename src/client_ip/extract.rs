//! The client address as axum extractors: [`ClientIp`] refuses a request whose address
//! is unknown, [`ClientIpOutcome`] hands the outcome over as it is.
#![cfg(feature = "axum")]

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::{outcome_once, ClientIp, ClientIpError, ClientIpOutcome};
use crate::layer::{error_document, JSON_API};

/// The rejection of the [`ClientIp`] extractor: the client address is unknown.
///
/// 403 `clientIpUnknown` with a JSON:API error document saying why; 500 when the server
/// gave no peer address at all (a wiring mistake: serve with `ConnectInfo`).
#[derive(Debug, Clone)]
pub struct ClientIpRejection {
    /// Why the address is unknown.
    pub error: ClientIpError,
}

impl IntoResponse for ClientIpRejection {
    fn into_response(self) -> Response {
        let (status, code) = match self.error {
            ClientIpError::NoPeerAddress => (StatusCode::INTERNAL_SERVER_ERROR, "noPeerAddress"),
            _ => (StatusCode::FORBIDDEN, "clientIpUnknown"),
        };
        let body = error_document(status, code, &self.error.to_string());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_API));
        response
    }
}

/// The client address the request's recorded outcome names. A request whose address is
/// unknown is refused ([`ClientIpRejection`]); take [`ClientIpOutcome`] instead to
/// handle that yourself.
impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ClientIpRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        outcome_once(parts)
            .into_result()
            .map_err(|error| ClientIpRejection { error })
    }
}

/// The request's recorded outcome, known or not; never refuses.
impl<S: Send + Sync> FromRequestParts<S> for ClientIpOutcome {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(outcome_once(parts))
    }
}
