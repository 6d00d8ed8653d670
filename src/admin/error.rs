//! JSON:API error documents, and how every refusal maps onto one.

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::document::{ErrorDocument, ErrorObject, ErrorSource};
use super::MEDIA_TYPE;
use crate::store::StoreError;

/// A refused admin request, answered as a JSON:API error document
/// `{"errors":[{"status","code","title","detail","source"}]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) detail: String,
    pub(crate) source: Option<ErrorSource>,
}

/// Where in a request the store's errors point, which depends on the document sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// An `ipAllowlistPolicy` resource document.
    Policy,
    /// An `addTargets` / `removeTargets` action document.
    Targets,
    /// A `userGroup` resource document.
    Group,
    /// A `siteAllowlist` or `resourceAllowlist` document.
    List,
    /// No request body.
    NoBody,
    /// An `apiToken` document.
    #[cfg_attr(
        not(feature = "api-tokens"),
        allow(dead_code, reason = "only the token routes use it")
    )]
    ApiToken,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            source: None,
        }
    }

    /// A `malformedDocument` error pointing at `pointer` (RFC 6901) in the body.
    pub(crate) fn malformed(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformedDocument", detail).at(pointer)
    }

    pub(crate) fn at(mut self, pointer: impl Into<String>) -> Self {
        self.source = Some(ErrorSource {
            pointer: Some(pointer.into()),
            ..ErrorSource::default()
        });
        self
    }

    pub(crate) fn at_header(mut self, header: &str) -> Self {
        self.source = Some(ErrorSource {
            header: Some(header.to_owned()),
            ..ErrorSource::default()
        });
        self
    }

    pub(crate) fn at_parameter(mut self, parameter: &str) -> Self {
        self.source = Some(ErrorSource {
            parameter: Some(parameter.to_owned()),
            ..ErrorSource::default()
        });
        self
    }

    pub(crate) fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this API needs an authenticated caller: send `Authorization: Bearer <token>`",
        )
    }

    pub(crate) fn organization_mismatch() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "organizationMismatch",
            "these credentials belong to another organization than the one this request is for",
        )
    }

    pub(crate) fn forbidden(permission: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("managing IP allowlists needs the `{permission}` permission"),
        )
    }

    pub(crate) fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("no {kind} `{id}` in this organization"),
        )
    }

    /// Maps a store refusal, pointing into the document `context` names.
    pub(crate) fn from_store(err: StoreError, context: Context) -> Self {
        let code = err.code();
        let status = match &err {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::Conflict { .. }
            | StoreError::PolicyLimitExceeded { .. }
            | StoreError::ResourceLimitExceeded { .. }
            | StoreError::GroupLimitExceeded { .. }
            | StoreError::DepthLimitExceeded { .. }
            | StoreError::LockoutPrevented { .. }
            | StoreError::WouldDenyCallers { .. } => StatusCode::CONFLICT,
            StoreError::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            StoreError::Backend(backend) if backend.is_refused() => {
                // Permanent: the same change fails the same way. Not the store's
                // health, so not ERROR; the message names no host or file.
                tracing::warn!(error = %backend, "allowlist store refused a value");
                return Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code,
                    format!(
                        "{backend}; nothing was changed: change the value, retrying will not help"
                    ),
                );
            }
            StoreError::Backend(backend) => {
                // The message may name files or hosts: log it, do not send it.
                tracing::error!(error = %backend, "allowlist store backend failed");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    code,
                    "the policy store is unavailable; nothing was changed: retry later",
                );
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let pointer = match (&err, context) {
            (StoreError::InvalidSource(err), Context::Policy | Context::List) => {
                Some(match err.index {
                    Some(index) => format!("/data/attributes/allowedSources/{index}"),
                    None => "/data/attributes/allowedSources".to_owned(),
                })
            }
            (StoreError::SourceLimitExceeded { .. }, Context::Policy | Context::List) => {
                Some("/data/attributes/allowedSources".to_owned())
            }
            (StoreError::InvalidBlockedSource(err), Context::Policy | Context::List) => {
                Some(match err.index {
                    Some(index) => format!("/data/attributes/blockedSources/{index}"),
                    None => "/data/attributes/blockedSources".to_owned(),
                })
            }
            (StoreError::BlockedSourceLimitExceeded { .. }, Context::Policy | Context::List) => {
                Some("/data/attributes/blockedSources".to_owned())
            }
            (StoreError::TargetLimitExceeded { .. }, Context::Policy) => {
                Some("/data/relationships".to_owned())
            }
            (StoreError::TargetLimitExceeded { .. }, Context::Targets) => Some("/data".to_owned()),
            (
                StoreError::Cycle(_)
                | StoreError::ParentLimitExceeded { .. }
                | StoreError::DepthLimitExceeded { .. },
                Context::Group,
            ) => Some("/data/relationships/parents".to_owned()),
            (StoreError::InvalidApiToken { .. }, Context::ApiToken) => {
                Some("/data/attributes".to_owned())
            }
            (StoreError::Conflict { .. } | StoreError::InvalidId { .. }, Context::Policy) => {
                Some("/data/id".to_owned())
            }
            _ => None,
        };
        let error = Self::new(status, code, err.to_string());
        match pointer {
            Some(pointer) => error.at(pointer),
            None => error,
        }
    }
}

/// The title each code carries: the same for every occurrence, as JSON:API asks.
fn title(code: &str) -> &'static str {
    match code {
        "invalidSource" => "Invalid allowed source",
        "hostnameNotAllowed" => "Host names are not allowed",
        "matchAllNotAllowed" => "Match-all ranges are not allowed",
        "emptyAllowedSources" => "No allowed sources",
        "hostBitsSet" => "Range has host bits set",
        "policyLimitExceeded" => "Too many policies",
        "targetLimitExceeded" => "Too many targets",
        "resourceLimitExceeded" => "Too many resource allowlists",
        "sourceLimitExceeded" => "Too many allowed sources",
        "groupLimitExceeded" => "Too many groups",
        "parentLimitExceeded" => "Too many parents",
        "depthLimitExceeded" => "Hierarchy too deep",
        "invalidOrganization" => "Invalid organization id",
        "valueNotStorable" => "Value cannot be stored",
        "conflict" => "Conflict",
        "lockoutPrevented" => "Change would lock you out",
        "wouldDenyCallers" => "Change would refuse callers",
        "versionMismatch" => "Version mismatch",
        "notFound" => "Not found",
        "malformedDocument" => "Malformed document",
        "unsupportedMediaType" => "Unsupported media type",
        "payloadTooLarge" => "Payload too large",
        "unauthenticated" => "Unauthenticated",
        "organizationMismatch" => "Credentials of another organization",
        "forbidden" => "Forbidden",
        "backendError" => "Store unavailable",
        "apiTokenRefused" => "API token refused",
        _ => "Error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(
            status = self.status.as_u16(),
            code = self.code,
            detail = %self.detail,
            "admin request refused"
        );
        let document = ErrorDocument {
            errors: vec![ErrorObject {
                status: self.status.as_u16().to_string(),
                code: self.code.to_owned(),
                title: title(self.code).to_owned(),
                detail: self.detail,
                source: self.source,
            }],
        };
        let body = serde_json::to_vec(&document).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        if self.code == "organizationMismatch" {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        } else if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
