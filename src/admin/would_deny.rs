//! `GET /api/v1/actions/.../wouldDeny`: what a report-only policy, site list or
//! resource list would have refused since it entered report mode, so an administrator
//! can see whom enforcing it would lock out before switching it on.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::audit::format_rfc3339;
use super::document::WOULD_DENY_SUMMARY_TYPE;
use super::error::{ApiError, Context};
use super::handlers::{document, Id, Manager};
use super::AdminState;
use crate::report::{RuleKind, WouldDenyCaller};

/// A rule's would-deny summary.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WouldDenyDocument {
    data: WouldDenyResource,
}

/// The `wouldDenySummary` resource; its id is the rule's (a policy id,
/// `siteAllowlist`, or a resource id).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WouldDenyResource {
    /// The rule's id.
    id: String,
    /// Always `wouldDenySummary`.
    #[serde(rename = "type")]
    #[schema(example = "wouldDenySummary")]
    kind: &'static str,
    attributes: WouldDenyAttributes,
}

/// What the rule would have refused.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WouldDenyAttributes {
    /// `policy`, `siteAllowlist` or `resourceAllowlist`.
    rule_kind: &'static str,
    /// Whether the rule reports (`true`) or enforces, or for the site list is disabled
    /// (`false`: nothing is summarized, and the other attributes are empty).
    report_only: bool,
    /// When the summary started: when the answering replica saw the rule enter
    /// report mode (the earliest replica's, across replicas), RFC 3339 in UTC.
    since: Option<String>,
    /// `allReplicas` when the store shares summaries (PostgreSQL: other replicas'
    /// as of their last flush), `thisProcess` otherwise.
    #[schema(example = "allReplicas")]
    scope: &'static str,
    /// Every request the rule would have refused.
    total_requests: u64,
    /// Requests from callers not listed (beyond the summary's bound).
    other_requests: u64,
    /// The distinct (user, address) pairs refused, most requests first; IPv6
    /// addresses grouped by /64.
    callers: Vec<WouldDenyCallerAttributes>,
}

/// One caller the rule would have refused.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct WouldDenyCallerAttributes {
    /// The user id; null for anonymous requests.
    user: Option<String>,
    /// `192.0.2.1`, or `2001:db8::/64`; null when the address was unknown.
    address: Option<String>,
    /// Requests from this pair the rule would have refused.
    count: u64,
    /// The first of them, RFC 3339 in UTC.
    first_seen: String,
    /// The last of them.
    last_seen: String,
}

impl From<&WouldDenyCaller> for WouldDenyCallerAttributes {
    fn from(caller: &WouldDenyCaller) -> Self {
        Self {
            user: caller.user.clone(),
            address: caller.address_text(),
            count: caller.count,
            first_seen: format_rfc3339(caller.first_seen),
            last_seen: format_rfc3339(caller.last_seen),
        }
    }
}

async fn answer(
    state: &AdminState,
    manager: &Manager,
    kind: RuleKind,
    rule: &str,
) -> Result<Response, ApiError> {
    let summary = state
        .store
        .would_deny(manager.org(), kind, rule)
        .await
        .map_err(|err| ApiError::from_store(err, Context::NoBody))?;
    let rule_kind = kind.as_str();
    let scope = if state.store.shares_would_deny() {
        "allReplicas"
    } else {
        "thisProcess"
    };
    let attributes = match summary {
        Some(summary) => WouldDenyAttributes {
            rule_kind,
            report_only: true,
            since: Some(format_rfc3339(summary.since)),
            scope,
            total_requests: summary.total_requests,
            other_requests: summary.other_requests,
            callers: summary.callers.iter().map(Into::into).collect(),
        },
        // An enforcing rule answers zeros and no callers.
        None => WouldDenyAttributes {
            rule_kind,
            report_only: false,
            since: None,
            scope,
            total_requests: 0,
            other_requests: 0,
            callers: Vec::new(),
        },
    };
    Ok(document(
        StatusCode::OK,
        &WouldDenyDocument {
            data: WouldDenyResource {
                id: rule.to_owned(),
                kind: WOULD_DENY_SUMMARY_TYPE,
                attributes,
            },
        },
    ))
}

/// Whom a report-only policy would have refused since it entered report mode.
#[utoipa::path(
    get, path = "/api/v1/actions/ipAllowlistPolicies/{id}/wouldDeny", tag = "ipAllowlistPolicies",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The policy id")),
    responses(
        (status = 200, description = "The policy's would-deny summary (empty when it enforces)", body = WouldDenyDocument, content_type = "application/vnd.api+json"),
        (status = 404, description = "No such policy", body = super::document::ErrorDocument),
        (status = 503, description = "The shared summaries cannot be read", body = super::document::ErrorDocument),
    )
)]
pub(super) async fn policy_would_deny(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<Response, ApiError> {
    answer(&state, &manager, RuleKind::Policy, &id).await
}

/// Whom the report-only site allowlist would have refused since it entered report mode.
#[utoipa::path(
    get, path = "/api/v1/actions/siteAllowlist/wouldDeny", tag = "siteAllowlist",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The site allowlist's would-deny summary (empty when it enforces or is disabled)", body = WouldDenyDocument, content_type = "application/vnd.api+json"),
        (status = 404, description = "The site allowlist was never set", body = super::document::ErrorDocument),
        (status = 503, description = "The shared summaries cannot be read", body = super::document::ErrorDocument),
    )
)]
pub(super) async fn site_would_deny(
    State(state): State<AdminState>,
    manager: Manager,
) -> Result<Response, ApiError> {
    // The site list is one rule per organization, named as its kind.
    let site = RuleKind::SiteAllowlist;
    answer(&state, &manager, site, site.as_str()).await
}

/// Whom a resource's report-only allowlist would have refused since it entered report
/// mode.
#[utoipa::path(
    get, path = "/api/v1/actions/resourceAllowlists/{id}/wouldDeny", tag = "resourceAllowlists",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The resource id")),
    responses(
        (status = 200, description = "The resource allowlist's would-deny summary (empty when it enforces)", body = WouldDenyDocument, content_type = "application/vnd.api+json"),
        (status = 404, description = "The resource has no allowlist", body = super::document::ErrorDocument),
        (status = 503, description = "The shared summaries cannot be read", body = super::document::ErrorDocument),
    )
)]
pub(super) async fn resource_would_deny(
    State(state): State<AdminState>,
    manager: Manager,
    Id(id): Id,
) -> Result<Response, ApiError> {
    answer(&state, &manager, RuleKind::ResourceAllowlist, &id).await
}
