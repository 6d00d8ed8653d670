//! `/api/v1/entities/apiTokens`: users create, list and revoke their own API tokens;
//! an administrator (the manage permission) lists and revokes any token of the
//! organization. The secret is in the creation response, and nowhere else.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::LOCATION;
use http::request::Parts;
use http::{HeaderValue, StatusCode, Uri};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::{format_rfc3339, parse_rfc3339};
use super::document::{self as doc, API_TOKEN_TYPE};
use super::error::{ApiError, Context};
use super::handlers::{document, Body, Caller, Id};
use super::AdminState;
use crate::api_token::ApiTokenAuth;
use crate::store::{ApiTokenDraft, ApiTokenRecord};

/// The path of the collection.
pub(super) const API_TOKENS_PATH: &str = "/api/v1/entities/apiTokens";

/// One token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiTokenDocument {
    data: ApiTokenResource,
}

/// A list of tokens, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiTokenListDocument {
    data: Vec<ApiTokenResource>,
}

/// An API token: never its secret, except in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiTokenResource {
    /// The token's public id.
    id: String,
    /// Always `apiToken`.
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: ApiTokenAttributes,
}

/// What a token is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiTokenAttributes {
    /// The name its owner gave it.
    name: String,
    /// The user it acts as.
    owner: String,
    /// The owner's direct groups when it was created.
    groups: Vec<String>,
    /// When it was created, RFC 3339 in UTC.
    created_at: String,
    /// When it expires; absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    /// When it was last used, to within minutes; absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    /// The token itself (`tia_...`): only in the answer to `POST`, never again. Send
    /// it as `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_token: Option<String>,
}

impl ApiTokenResource {
    fn new(token: &ApiTokenRecord, secret: Option<String>) -> Self {
        Self {
            id: token.id.clone(),
            kind: API_TOKEN_TYPE,
            attributes: ApiTokenAttributes {
                name: token.name.clone(),
                owner: token.owner.to_string(),
                groups: token.groups.iter().map(ToString::to_string).collect(),
                created_at: format_rfc3339(token.created),
                expires_at: token.expires.map(format_rfc3339),
                last_used_at: token.last_used.map(format_rfc3339),
                bearer_token: secret,
            },
        }
    }
}

/// The request to create a token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiTokenCreateDocument {
    data: ApiTokenCreateData,
}

/// `type` and `attributes` of a token to create.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ApiTokenCreateData {
    /// `apiToken`.
    #[serde(rename = "type")]
    kind: String,
    attributes: ApiTokenCreateAttributes,
}

/// A token's name and optional expiry.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiTokenCreateAttributes {
    /// 1 to 100 characters, no control characters.
    name: String,
    /// RFC 3339, in the future; absent: never expires.
    expires_at: Option<String>,
}

fn store_unavailable(err: &crate::store::BackendError) -> ApiError {
    tracing::error!(error = %err, "allowlist store backend failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "backendError",
        "API tokens cannot be read now: retry later",
    )
}

/// Whether the caller holds the manage permission: it then sees and revokes every
/// token of the organization.
fn manages(state: &AdminState, caller: &Caller) -> bool {
    caller.principal().has_permission(&state.permission)
}

/// Create an API token for the caller. The answer holds the token: keep it, it is
/// never shown again.
#[utoipa::path(
    post, path = "/api/v1/entities/apiTokens", tag = "apiTokens",
    security(("bearer" = [])),
    request_body(content = ApiTokenCreateDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 201, description = "Created; `attributes.bearerToken` is the token, shown this once", body = ApiTokenDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid name or expiry, or too many tokens", body = doc::ErrorDocument),
        (status = 401, description = "Not authenticated", body = doc::ErrorDocument),
        (status = 403, description = "Authenticated with an API token: tokens cannot create tokens", body = doc::ErrorDocument),
        (status = 503, description = "The store is unavailable", body = doc::ErrorDocument),
    )
)]
pub(super) async fn create_api_token(
    State(state): State<AdminState>,
    caller: Caller,
    parts: TokenCaller,
    Body(body): Body,
) -> Result<Response, ApiError> {
    if parts.by_token {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an API token cannot create API tokens: sign in as the user (a session or a JWT) to create one",
        ));
    }
    let (name, expires) = doc::api_token_draft(&body)?;
    let mut draft = ApiTokenDraft::new(name);
    if let Some((text, pointer)) = expires {
        let at = parse_rfc3339(&text).ok_or_else(|| {
            ApiError::malformed(
                pointer,
                "`expiresAt` must be an RFC 3339 timestamp such as `2030-01-01T00:00:00Z`",
            )
        })?;
        draft = draft.expires(at);
    }
    let (token, secret) = state
        .store
        .create_api_token(&caller.actor(), caller.org(), caller.principal(), draft)
        .await
        .map_err(|err| ApiError::from_store(err, Context::ApiToken))?;
    let mut response = document(
        StatusCode::CREATED,
        &ApiTokenDocument {
            data: ApiTokenResource::new(&token, Some(secret.expose().to_owned())),
        },
    );
    if let Ok(location) = HeaderValue::from_str(&format!("{API_TOKENS_PATH}/{}", token.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List API tokens: the caller's own; with the manage permission, every token of the
/// organization (or one user's, with `filter[owner]`).
#[utoipa::path(
    get, path = "/api/v1/entities/apiTokens", tag = "apiTokens",
    security(("bearer" = [])),
    params(("filter[owner]" = Option<String>, Query, description = "Only this user's tokens (administrators)")),
    responses(
        (status = 200, description = "The tokens, oldest first, without their secrets", body = ApiTokenListDocument, content_type = "application/vnd.api+json"),
        (status = 401, description = "Not authenticated", body = doc::ErrorDocument),
        (status = 503, description = "The store is unavailable", body = doc::ErrorDocument),
    )
)]
pub(super) async fn list_api_tokens(
    State(state): State<AdminState>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let asked = owner_filter(uri.query());
    let owner = if manages(&state, &caller) {
        asked
    } else {
        Some(caller.principal().user.to_string())
    };
    let tokens = state
        .store
        .api_tokens(caller.org(), owner.as_deref())
        .await
        .map_err(|err| store_unavailable(&err))?;
    Ok(document(
        StatusCode::OK,
        &ApiTokenListDocument {
            data: tokens
                .iter()
                .map(|token| ApiTokenResource::new(token, None))
                .collect(),
        },
    ))
}

/// Revoke an API token: every replica refuses it from the next request on.
#[utoipa::path(
    delete, path = "/api/v1/entities/apiTokens/{id}", tag = "apiTokens",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not authenticated", body = doc::ErrorDocument),
        (status = 404, description = "No such token of the caller (or, for an administrator, of the organization)", body = doc::ErrorDocument),
        (status = 503, description = "The store is unavailable", body = doc::ErrorDocument),
    )
)]
pub(super) async fn revoke_api_token(
    State(state): State<AdminState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let owner = (!manages(&state, &caller)).then(|| caller.principal().user.to_string());
    state
        .store
        .revoke_api_token(&caller.actor(), caller.org(), &id, owner.as_deref())
        .await
        .map_err(|err| ApiError::from_store(err, Context::ApiToken))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `filter[owner]`, decoded, if sent and not empty.
fn owner_filter(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let key = percent_decode_str(key).decode_utf8_lossy();
        let value = percent_decode_str(value).decode_utf8_lossy().into_owned();
        (key == "filter[owner]" && !value.is_empty()).then_some(value)
    })
}

/// Whether the request was authenticated with an API token.
pub(super) struct TokenCaller {
    by_token: bool,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TokenCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            by_token: parts.extensions.get::<ApiTokenAuth>().is_some(),
        })
    }
}

/// The token routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_api_token, list_api_tokens, revoke_api_token),
    tags((name = "apiTokens", description = "User-owned API tokens: credentials that meet their owner's policies")),
)]
pub(super) struct ApiTokensDoc;
