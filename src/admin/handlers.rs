//! The routes: extractors that authorize and read the request, and one handler per
//! operation. The `#[utoipa::path]` attributes generate the OpenAPI document.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use serde_json::Value;

use super::document::{
    self, ErrorDocument, EvaluateDocument, ExplanationData, ExplanationDocument, GroupDocument,
    GroupListDocument, GroupResource, PolicyDocument, PolicyListDocument, PolicyResource,
    ResourceAllowlistDocument, ResourceAllowlistListDocument, ResourceAllowlistResource,
    SiteAllowlistDocument, SiteAllowlistResource, TargetsDocument,
};
use super::error::{ApiError, Context};
use super::{AdminState, MAX_BODY_BYTES, MEDIA_TYPE, POLICIES_PATH};
use crate::client_ip::{ClientIp, ClientIpError, ClientIpOutcome, ClientIpSource, ForwardedHeader};
use crate::policy::OrgId;
use crate::principal::Principal;
use crate::store::{Actor, StoredGroup, StoredPolicy};
use crate::tenant::Tenant;

// ---- extractors ------------------------------------------------------------------

/// An authenticated caller holding the manage permission, with the organization it
/// manages and the actor the store's audit events and lockout guard see.
pub(super) struct Manager {
    org: OrgId,
    actor: Actor,
    client: Result<ClientIp, ClientIpError>,
}

impl Manager {
    /// The organization managed: the request's tenant.
    pub(super) fn org(&self) -> &OrgId {
        &self.org
    }
}

impl FromRequestParts<AdminState> for Manager {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.principal.has_permission(&state.permission) {
            return Err(ApiError::forbidden(&state.permission));
        }
        let actor = caller.actor();
        Ok(Self {
            org: caller.org,
            actor: actor.force(force(parts)?),
            client: caller.client,
        })
    }
}

/// Any authenticated caller, with the address it calls from: the request's one
/// recorded outcome, unknown when it is unknown.
pub(super) struct Caller {
    principal: Principal,
    /// The request's tenant, which the caller's organization is.
    org: OrgId,
    client: Result<ClientIp, ClientIpError>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(ApiError::unauthenticated)?;
        // The request's tenant (the default organization when no `TenantLayer` ran);
        // the allowlist layer refuses a mismatch already, and so does the API itself.
        let org = Tenant::org_id_of(&parts.extensions);
        if principal.organization_or_default() != org {
            return Err(ApiError::organization_mismatch());
        }
        // The outcome the layers recorded (or the peer's, recorded now, when no layer
        // ran): the one every layer decided with.
        let Ok(outcome) = ClientIpOutcome::from_request_parts(parts, &()).await;
        Ok(Self {
            principal,
            org,
            client: outcome.into_result(),
        })
    }
}

impl Caller {
    /// The authenticated caller.
    #[cfg_attr(
        not(feature = "api-tokens"),
        allow(dead_code, reason = "only the token routes read it")
    )]
    pub(super) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The organization: the request's tenant.
    #[cfg_attr(
        not(feature = "api-tokens"),
        allow(dead_code, reason = "only the token routes read it")
    )]
    pub(super) fn org(&self) -> &OrgId {
        &self.org
    }

    /// The caller as the store's audit records name it.
    pub(super) fn actor(&self) -> Actor {
        match &self.client {
            Ok(ip) => Actor::new(&self.principal, Some(ip.addr)),
            Err(unknown) => Actor::unknown_address(&self.principal, unknown),
        }
    }
}

/// `?force=true` skips the lockout guard.
fn force(parts: &Parts) -> Result<bool, ApiError> {
    let mut force = false;
    for pair in parts.uri.query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "force" {
            force = match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformedDocument",
                        "`force` must be `true` or `false`",
                    )
                    .at_parameter("force"))
                }
            };
        }
    }
    Ok(force)
}

/// The version an `If-Match` header names: `"3"` or `W/"3"`; `*` (or no header) is
/// any version.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let malformed = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformedDocument",
            "`If-Match` must be the `ETag` of the policy, such as \"3\"",
        )
        .at_header("If-Match")
    };
    let text = value.to_str().map_err(|_| malformed())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(malformed)
}

/// A JSON:API request body: an accepted media type, at most [`MAX_BODY_BYTES`], and
/// valid JSON.
pub(super) struct Body(pub(super) Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        check_media_type(request.headers())?;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let bytes = Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformedDocument",
                        "the request body could not be read",
                    )
                }
            })?
            .to_bytes();
        document::parse(&bytes).map(Body)
    }
}

fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence.as_deref() {
        Some("application/vnd.gooddata.api+json" | "application/vnd.api+json" | "application/json") => {
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedMediaType",
            "send the body as `application/vnd.gooddata.api+json`, `application/vnd.api+json` or `application/json`",
        )
        .at_header("Content-Type")),
    }
}

/// The `{id}` path segment, refused as a JSON:API error if it cannot be decoded.
pub(super) struct Id(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let path: Result<Path<String>, PathRejection> =
            Path::from_request_parts(parts, state).await;
        path.map(|Path(id)| Id(id)).map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformedDocument",
                format!("the id in the URL cannot be read: {err}"),
            )
        })
    }
}

// ---- responses -------------------------------------------------------------------

pub(super) fn document(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

fn policy_response(status: StatusCode, stored: &StoredPolicy) -> Response {
    let mut response = document(
        status,
        &PolicyDocument {
            data: PolicyResource::from(stored),
        },
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", stored.version)) {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}

fn group_response(group: &StoredGroup) -> Response {
    document(
        StatusCode::OK,
        &GroupDocument {
            data: GroupResource::from(group),
        },
    )
}

// ---- policies --------------------------------------------------------------------

/// List the organization's policies.
#[utoipa::path(
    get, path = "/api/v1/entities/ipAllowlistPolicies", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The policies, by id", body = PolicyListDocument, content_type = "application/vnd.api+json"),
        (status = 401, description = "No valid token", body = ErrorDocument),
        (status = 403, description = "No manage permission, or the allowlist denies the caller", body = ErrorDocument),
    )
)]
pub(super) async fn list_policies(State(state): State<AdminState>, manager: Manager) -> Response {
    let data = state
        .store
        .list_policies(&manager.org)
        .iter()
        .map(PolicyResource::from)
        .collect();
    document(StatusCode::OK, &PolicyListDocument { data })
}

/// Create a policy.
#[utoipa::path(
    post, path = "/api/v1/entities/ipAllowlistPolicies", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(("force" = Option<bool>, Query, description = "Skip the lockout guard")),
    request_body(content = PolicyDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 201, description = "Created; `Location` names it", body = PolicyDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document or source", body = ErrorDocument),
        (status = 409, description = "Duplicate id, policy limit reached, or the change would lock the caller out", body = ErrorDocument),
        (status = 413, description = "Body over 1 MiB", body = ErrorDocument),
        (status = 415, description = "Unsupported content type", body = ErrorDocument),
    )
)]
pub(super) async fn create_policy(
    State(state): State<AdminState>,
    manager: Manager,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let draft = document::policy_draft(&body, None)?;
    let stored = state
        .store
        .create_policy(&manager.actor, &manager.org, draft)
        .await
        .map_err(|err| ApiError::from_store(err, Context::Policy))?;
    let mut response = policy_response(StatusCode::CREATED, &stored);
    let location = format!("{POLICIES_PATH}/{}", stored.policy.id());
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// Get a policy.
#[utoipa::path(
    get, path = "/api/v1/entities/ipAllowlistPolicies/{id}", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The policy id")),
    responses(
        (status = 200, description = "The policy; `ETag` is its version", body = PolicyDocument, content_type = "application/vnd.api+json"),
        (status = 404, description = "No such policy", body = ErrorDocument),
    )
)]
pub(super) async fn get_policy(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let stored = state
        .store
        .get_policy(&manager.org, &id)
        .ok_or_else(|| ApiError::not_found("policy", &id))?;
    Ok(policy_response(StatusCode::OK, &stored))
}

/// Replace a policy.
#[utoipa::path(
    put, path = "/api/v1/entities/ipAllowlistPolicies/{id}", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The policy id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the change was made against"),
        ("force" = Option<bool>, Query, description = "Skip the lockout and would-deny guards"),
    ),
    request_body(content = PolicyDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 200, description = "The replaced policy", body = PolicyDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document or source", body = ErrorDocument),
        (status = 404, description = "No such policy", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out (`lockoutPrevented`), or enforce a rule whose report-only summary is not empty (`wouldDenyCallers`)", body = ErrorDocument),
        (status = 412, description = "`If-Match` names an older version", body = ErrorDocument),
    )
)]
pub(super) async fn replace_policy(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let version = if_match(&headers)?;
    let draft = document::policy_draft(&body, Some(&id))?;
    let stored = state
        .store
        .replace_policy(&manager.actor, &manager.org, draft, version)
        .await
        .map_err(|err| ApiError::from_store(err, Context::Policy))?;
    Ok(policy_response(StatusCode::OK, &stored))
}

/// Change some of a policy's attributes or relationships.
#[utoipa::path(
    patch, path = "/api/v1/entities/ipAllowlistPolicies/{id}", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The policy id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the change was made against"),
        ("force" = Option<bool>, Query, description = "Skip the lockout and would-deny guards"),
    ),
    request_body(content = PolicyDocument, content_type = "application/vnd.gooddata.api+json",
        description = "Only the members sent change; `name: null` removes the name"),
    responses(
        (status = 200, description = "The updated policy", body = PolicyDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document or source", body = ErrorDocument),
        (status = 404, description = "No such policy", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out (`lockoutPrevented`), or enforce a rule whose report-only summary is not empty (`wouldDenyCallers`)", body = ErrorDocument),
        (status = 412, description = "`If-Match` names an older version", body = ErrorDocument),
    )
)]
pub(super) async fn update_policy(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let version = if_match(&headers)?;
    let patch = document::policy_patch(&body, &id)?;
    let stored = state
        .store
        .update_policy(&manager.actor, &manager.org, &id, patch, version)
        .await
        .map_err(|err| ApiError::from_store(err, Context::Policy))?;
    Ok(policy_response(StatusCode::OK, &stored))
}

/// Delete a policy.
#[utoipa::path(
    delete, path = "/api/v1/entities/ipAllowlistPolicies/{id}", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The policy id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the change was made against"),
        ("force" = Option<bool>, Query, description = "Skip the lockout guard"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such policy", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out", body = ErrorDocument),
        (status = 412, description = "`If-Match` names an older version", body = ErrorDocument),
    )
)]
pub(super) async fn delete_policy(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let version = if_match(&headers)?;
    state
        .store
        .delete_policy(&manager.actor, &manager.org, &id, version)
        .await
        .map_err(|err| ApiError::from_store(err, Context::NoBody))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Assign users and groups to a policy; already assigned ones are left alone.
#[utoipa::path(
    post, path = "/api/v1/actions/ipAllowlistPolicies/{id}/addTargets", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The policy id"),
        ("force" = Option<bool>, Query, description = "Skip the lockout guard"),
    ),
    request_body(content = TargetsDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 204, description = "Assigned (or already assigned)"),
        (status = 400, description = "Invalid document, or the target limit would be exceeded", body = ErrorDocument),
        (status = 404, description = "No such policy", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out", body = ErrorDocument),
    )
)]
pub(super) async fn add_targets(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let targets = document::targets(&body)?;
    state
        .store
        .add_targets(&manager.actor, &manager.org, &id, targets)
        .await
        .map_err(|err| ApiError::from_store(err, Context::Targets))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unassign users and groups; ones not assigned are ignored. Removing the last target
/// keeps the policy, inactive.
#[utoipa::path(
    post, path = "/api/v1/actions/ipAllowlistPolicies/{id}/removeTargets", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The policy id"),
        ("force" = Option<bool>, Query, description = "Skip the lockout guard"),
    ),
    request_body(content = TargetsDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 204, description = "Unassigned (or was not assigned)"),
        (status = 400, description = "Invalid document", body = ErrorDocument),
        (status = 404, description = "No such policy", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out", body = ErrorDocument),
    )
)]
pub(super) async fn remove_targets(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let targets = document::targets(&body)?;
    state
        .store
        .remove_targets(&manager.actor, &manager.org, &id, targets)
        .await
        .map_err(|err| ApiError::from_store(err, Context::Targets))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- groups ----------------------------------------------------------------------

/// List the groups that have parents, each with them: the whole hierarchy.
#[utoipa::path(
    get, path = "/api/v1/entities/userGroups", tag = "userGroups",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The groups that have parents, by id", body = GroupListDocument, content_type = "application/vnd.api+json"),
        (status = 401, description = "No valid token", body = ErrorDocument),
        (status = 403, description = "No manage permission, or the allowlist denies the caller", body = ErrorDocument),
    )
)]
pub(super) async fn list_groups(State(state): State<AdminState>, manager: Manager) -> Response {
    let data = state
        .store
        .list_groups(&manager.org)
        .iter()
        .map(GroupResource::from)
        .collect();
    document(StatusCode::OK, &GroupListDocument { data })
}

/// Get a group's parents.
#[utoipa::path(
    get, path = "/api/v1/entities/userGroups/{id}", tag = "userGroups",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The group id")),
    responses(
        (status = 200, description = "The group and its parents", body = GroupDocument, content_type = "application/vnd.api+json"),
        (status = 404, description = "The group has no parents in this organization", body = ErrorDocument),
    )
)]
pub(super) async fn get_group(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let group = state
        .store
        .get_group(&manager.org, &id)
        .ok_or_else(|| ApiError::not_found("userGroup", &id))?;
    Ok(group_response(&group))
}

/// Set a group's parents (`relationships.parents`); cycles are refused.
#[utoipa::path(
    put, path = "/api/v1/entities/userGroups/{id}", tag = "userGroups",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The group id"),
        ("force" = Option<bool>, Query, description = "Skip the lockout guard"),
    ),
    request_body(content = GroupDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 200, description = "The group and its parents", body = GroupDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document, more parents than allowed, or the parents would make a cycle", body = ErrorDocument),
        (status = 409, description = "The hierarchy would name too many groups or be too deep, or the change would lock the caller out", body = ErrorDocument),
    )
)]
pub(super) async fn put_group(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let parents = document::group_parents(&body, &id)?;
    let group = state
        .store
        .set_group_parents(&manager.actor, &manager.org, &id, parents)
        .await
        .map_err(|err| ApiError::from_store(err, Context::Group))?;
    Ok(group_response(&group))
}

/// Remove a group's parent links (its children keep theirs).
#[utoipa::path(
    delete, path = "/api/v1/entities/userGroups/{id}", tag = "userGroups",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The group id"),
        ("force" = Option<bool>, Query, description = "Skip the lockout guard"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The group has no parents in this organization", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out", body = ErrorDocument),
    )
)]
pub(super) async fn delete_group(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_group(&manager.actor, &manager.org, &id)
        .await
        .map_err(|err| ApiError::from_store(err, Context::NoBody))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- site and resource lists ---------------------------------------------------

/// Get the organization's site allowlist (disabled and empty if never set).
#[utoipa::path(
    get, path = "/api/v1/entities/siteAllowlist", tag = "siteAllowlist",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The site allowlist", body = SiteAllowlistDocument, content_type = "application/vnd.api+json"),
    )
)]
pub(super) async fn get_site_list(State(state): State<AdminState>, manager: Manager) -> Response {
    let data = state
        .store
        .site_list(&manager.org)
        .as_ref()
        .map_or_else(SiteAllowlistResource::unset, SiteAllowlistResource::from);
    document(StatusCode::OK, &SiteAllowlistDocument { data })
}

/// Set the organization's site allowlist: once enabled, every request of the
/// organization must come from inside it.
#[utoipa::path(
    put, path = "/api/v1/entities/siteAllowlist", tag = "siteAllowlist",
    security(("bearer" = [])),
    params(("force" = Option<bool>, Query, description = "Skip the lockout and would-deny guards")),
    request_body(content = SiteAllowlistDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 200, description = "The site allowlist", body = SiteAllowlistDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document or source", body = ErrorDocument),
        (status = 409, description = "The change would lock the caller out (`lockoutPrevented`), or enforce a rule whose report-only summary is not empty (`wouldDenyCallers`)", body = ErrorDocument),
    )
)]
pub(super) async fn put_site_list(
    State(state): State<AdminState>,
    manager: Manager,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let (enabled, draft) = document::site_list(&body)?;
    let site = state
        .store
        .set_site_list(&manager.actor, &manager.org, enabled, draft)
        .await
        .map_err(|err| ApiError::from_store(err, Context::List))?;
    let data = site
        .as_ref()
        .map_or_else(SiteAllowlistResource::unset, SiteAllowlistResource::from);
    Ok(document(StatusCode::OK, &SiteAllowlistDocument { data }))
}

/// List the resources that have an allowlist.
#[utoipa::path(
    get, path = "/api/v1/entities/resourceAllowlists", tag = "resourceAllowlists",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resources' allowlists, by id", body = ResourceAllowlistListDocument, content_type = "application/vnd.api+json"),
        (status = 401, description = "No valid token", body = ErrorDocument),
        (status = 403, description = "No manage permission, or the allowlist denies the caller", body = ErrorDocument),
    )
)]
pub(super) async fn list_resource_lists(
    State(state): State<AdminState>,
    manager: Manager,
) -> Response {
    let data = state
        .store
        .resource_lists(&manager.org)
        .iter()
        .map(|(id, list)| ResourceAllowlistResource::of(id.as_str(), list))
        .collect();
    document(StatusCode::OK, &ResourceAllowlistListDocument { data })
}

/// Get a resource's allowlist.
#[utoipa::path(
    get, path = "/api/v1/entities/resourceAllowlists/{id}", tag = "resourceAllowlists",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The resource id")),
    responses(
        (status = 200, description = "The resource's allowlist", body = ResourceAllowlistDocument, content_type = "application/vnd.api+json"),
        (status = 404, description = "The resource has no allowlist (it is unrestricted)", body = ErrorDocument),
    )
)]
pub(super) async fn get_resource_list(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let list = state
        .store
        .resource_list(&manager.org, &id)
        .ok_or_else(|| ApiError::not_found("resourceAllowlist", &id))?;
    let data = ResourceAllowlistResource::of(&id, &list);
    Ok(document(
        StatusCode::OK,
        &ResourceAllowlistDocument { data },
    ))
}

/// Set (create or replace) a resource's allowlist.
#[utoipa::path(
    put, path = "/api/v1/entities/resourceAllowlists/{id}", tag = "resourceAllowlists",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The resource id"),
        ("force" = Option<bool>, Query, description = "Skip the lockout and would-deny guards"),
    ),
    request_body(content = ResourceAllowlistDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 200, description = "The resource's allowlist", body = ResourceAllowlistDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document or source", body = ErrorDocument),
        (status = 409, description = "Too many resources with an allowlist, the change would lock the caller out (`lockoutPrevented`), or enforce a rule whose report-only summary is not empty (`wouldDenyCallers`)", body = ErrorDocument),
    )
)]
pub(super) async fn put_resource_list(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let draft = document::resource_list(&body, &id)?;
    let list = state
        .store
        .set_resource_list(&manager.actor, &manager.org, &id, draft)
        .await
        .map_err(|err| ApiError::from_store(err, Context::List))?;
    let data = ResourceAllowlistResource::of(&id, &list);
    Ok(document(
        StatusCode::OK,
        &ResourceAllowlistDocument { data },
    ))
}

/// Remove a resource's allowlist, leaving the resource unrestricted.
#[utoipa::path(
    delete, path = "/api/v1/entities/resourceAllowlists/{id}", tag = "resourceAllowlists",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The resource id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "The resource has no allowlist", body = ErrorDocument),
    )
)]
pub(super) async fn delete_resource_list(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_resource_list(&manager.actor, &manager.org, &id)
        .await
        .map_err(|err| ApiError::from_store(err, Context::NoBody))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- explain ---------------------------------------------------------------------

/// Evaluate a user, their groups and an address against the organization's policies
/// and site allowlist, rule by rule.
#[utoipa::path(
    post, path = "/api/v1/actions/ipAllowlistPolicies/evaluate", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    request_body(content = EvaluateDocument, content_type = "application/vnd.gooddata.api+json"),
    responses(
        (status = 200, description = "The decision and its reasons", body = ExplanationDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "Invalid document", body = ErrorDocument),
    )
)]
pub(super) async fn evaluate(
    State(state): State<AdminState>,
    manager: Manager,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let (user, groups, named) = document::evaluate(&body)?;
    let addr = named.or_else(|| manager.client.as_ref().ok().map(|ip| ip.addr));
    let why = state
        .store
        .explain(&manager.org, &user, groups.iter().map(String::as_str), addr);
    let mut data = ExplanationData::of(&user, manager.org.as_str(), addr, &why);
    if named.is_none() {
        describe_client(&mut data, &manager.client);
    }
    Ok(document(StatusCode::OK, &ExplanationDocument { data }))
}

/// How the caller's own requests are evaluated: the resolved address, how it was
/// resolved, and whether each applicable rule admits it. Any authenticated caller.
#[utoipa::path(
    get, path = "/api/v1/actions/ipAllowlistPolicies/myAccess", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's decision and its reasons", body = ExplanationDocument, content_type = "application/vnd.api+json"),
        (status = 401, description = "No valid token", body = ErrorDocument),
    )
)]
pub(super) async fn my_access(State(state): State<AdminState>, caller: Caller) -> Response {
    let org = caller.org;
    let addr = caller.client.as_ref().ok().map(|ip| ip.addr);
    let why = state.store.explain(
        &org,
        caller.principal.user.as_str(),
        caller.principal.groups.iter().map(|g| g.as_str()),
        addr,
    );
    let mut data = ExplanationData::of(caller.principal.user.as_str(), org.as_str(), addr, &why);
    describe_client(&mut data, &caller.client);
    document(StatusCode::OK, &ExplanationDocument { data })
}

/// How the caller's address was found, or why it is unknown.
fn describe_client(data: &mut ExplanationData, client: &Result<ClientIp, ClientIpError>) {
    match client {
        Ok(ip) => {
            let (source, header, hop) = match &ip.source {
                ClientIpSource::Header { header, hop } => {
                    let source = match header {
                        ForwardedHeader::XForwardedFor => "xForwardedFor",
                        ForwardedHeader::Forwarded => "forwarded",
                        ForwardedHeader::XRealIp => "xRealIp",
                        _ => "header",
                    };
                    (source, Some(header.name().as_str().to_owned()), Some(*hop))
                }
                ClientIpSource::ProxyProtocol { balancer } => {
                    data.client_ip_balancer = Some(balancer.to_string());
                    ("proxyProtocol", None, None)
                }
                // `Peer`, and whatever later versions add.
                _ => ("peer", None, None),
            };
            data.client_ip_source = Some(source.to_owned());
            data.client_ip_header = header;
            data.client_ip_hop = hop;
        }
        Err(unknown) => data.client_ip_unknown = Some(unknown.to_string()),
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub(super) async fn openapi() -> Response {
    let mut response = super::openapi()
        .to_json()
        .unwrap_or_default()
        .into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers), Ok(None));
        for (value, want) in [("\"3\"", Some(3)), ("W/\"4\"", Some(4)), ("*", None)] {
            headers.insert(IF_MATCH, HeaderValue::from_static(value));
            assert_eq!(if_match(&headers), Ok(want), "{value}");
        }
        for value in ["3", "\"x\"", "\"-1\"", "\"\"", "\"3\", \"4\""] {
            headers.insert(IF_MATCH, HeaderValue::from_static(value));
            assert!(if_match(&headers).is_err(), "{value}");
        }
    }

    #[test]
    fn media_types() {
        let mut headers = HeaderMap::new();
        assert!(check_media_type(&headers).is_err());
        for value in [
            "application/vnd.gooddata.api+json",
            "application/vnd.api+json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert!(check_media_type(&headers).is_ok(), "{value}");
        }
        for value in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert!(check_media_type(&headers).is_err(), "{value}");
        }
    }
}
