//! The little of gRPC this crate needs: recognising a gRPC request and answering it
//! with a trailers-only error response, as `tonic::Status::into_http` does.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// `PERMISSION_DENIED`.
pub(crate) const PERMISSION_DENIED: u8 = 7;

/// `UNAVAILABLE`.
pub(crate) const UNAVAILABLE: u8 = 14;

/// `NOT_FOUND`.
pub(crate) const NOT_FOUND: u8 = 5;

/// `INTERNAL`: the server is misconfigured.
pub(crate) const INTERNAL: u8 = 13;

/// `UNAUTHENTICATED`.
pub(crate) const UNAUTHENTICATED: u8 = 16;

/// Whether the request is gRPC (`content-type: application/grpc`, `application/grpc+proto`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A trailers-only gRPC response: HTTP 200, the status in the headers, an empty body.
/// `message` must be plain ASCII; it is percent-encoded as the gRPC spec asks.
pub(crate) fn status_response(code: u8, message: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    *response.status_mut() = StatusCode::OK;
    response
}

fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_grpc() {
        let mut headers = HeaderMap::new();
        assert!(!is_grpc(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&headers));
    }

    #[test]
    fn trailers_only_shape() {
        let response = status_response(PERMISSION_DENIED, "100% denied\n");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(response.headers()["grpc-message"], "100%25 denied%0A");
        assert!(response.body().is_empty());
    }
}
