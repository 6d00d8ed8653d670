//! `GET /api/v1/entities/auditEvents`: the organization's audit trail, newest first,
//! a page at a time, with RFC 3339 timestamps.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::Response;
use http::{StatusCode, Uri};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::ApiError;
use super::handlers::{document, Manager};
use super::AdminState;
use crate::store::{AuditQuery, AuditRecord};

/// The path of the route.
pub(super) const AUDIT_EVENTS_PATH: &str = "/api/v1/entities/auditEvents";

/// Records per page when `page[size]` is not given.
const DEFAULT_PAGE_SIZE: usize = 50;

/// The largest `page[size]`.
const MAX_PAGE_SIZE: usize = 500;

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditEventListDocument {
    data: Vec<AuditEventResource>,
    links: Links,
}

/// Where this page is, and the next one.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Links {
    /// This page.
    #[serde(rename = "self")]
    this: String,
    /// The next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditEventResource {
    /// The record's id: opaque, and the cursor of the page after it.
    id: String,
    /// Always `auditEvent`.
    #[serde(rename = "type")]
    kind: &'static str,
    attributes: AuditEventAttributes,
}

/// What an audit event says.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuditEventAttributes {
    /// When the change was made, RFC 3339 in UTC.
    time: String,
    /// The user id of the administrator, or `system`.
    actor: String,
    /// The administrator's client address, as the layers resolved it.
    client_ip: Option<String>,
    /// Whether the lockout guard was skipped.
    forced: bool,
    /// `createPolicy`, `updatePolicy`, `setSiteAllowlist`, ...
    operation: String,
    /// `policy`, `userGroup`, `siteAllowlist` or `resourceAllowlist`.
    entity_type: String,
    /// The entity's id (`site` for the site allowlist).
    entity_id: String,
    /// The organization's data version before the change.
    version_before: u64,
    /// The organization's data version after it.
    version_after: u64,
    /// The entity before the change; null when it was created.
    #[schema(value_type = Option<Object>)]
    before: Option<Value>,
    /// The entity after the change; null when it was deleted.
    #[schema(value_type = Option<Object>)]
    after: Option<Value>,
}

impl From<&AuditRecord> for AuditEventResource {
    fn from(record: &AuditRecord) -> Self {
        Self {
            id: record.id.to_string(),
            kind: "auditEvent",
            attributes: AuditEventAttributes {
                time: format_rfc3339(record.time),
                actor: record.actor.clone(),
                client_ip: record.client_ip.map(|ip| ip.to_string()),
                forced: record.forced,
                operation: record.operation.clone(),
                entity_type: record.entity_type.clone(),
                entity_id: record.entity_id.clone(),
                version_before: record.version_before,
                version_after: record.version_after,
                before: record.before.clone(),
                after: record.after.clone(),
            },
        }
    }
}

/// The query of a request: the store's query, and the parameters to repeat in the
/// `next` link.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Page {
    query: AuditQuery,
    /// The filters as sent (decoded), to carry into the next link.
    filters: Vec<(String, String)>,
}

fn bad(parameter: &str, detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalidParameter", detail).at_parameter(parameter)
}

/// Reads `page[size]`, `page[cursor]` and the filters from a query string. Keys and
/// values are percent-decoded; `+` is taken literally (send a time zone offset as
/// `+02:00` or `%2B02:00`).
pub(super) fn parse_page(query: Option<&str>) -> Result<Page, ApiError> {
    let mut page = Page {
        query: AuditQuery::default().limit(DEFAULT_PAGE_SIZE),
        filters: Vec::new(),
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(key).decode_utf8_lossy().into_owned();
        let value = percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key.as_str() {
            "page[size]" => {
                let size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
                    .ok_or_else(|| {
                        bad(
                            &key,
                            format!("`page[size]` must be a number from 1 to {MAX_PAGE_SIZE}, not `{value}`"),
                        )
                    })?;
                page.query.limit = size;
            }
            "page[cursor]" => {
                let id = value.parse::<u64>().map_err(|_| {
                    bad(
                        &key,
                        format!(
                            "`page[cursor]` must be the cursor of a `next` link, not `{value}`"
                        ),
                    )
                })?;
                page.query.before_id = Some(id);
            }
            "filter[entityId]" | "filter[actor]" if value.is_empty() => {
                return Err(bad(&key, format!("`{key}` must not be empty")));
            }
            "filter[entityId]" => {
                page.query.entity_id = Some(value.clone());
                page.filters.push((key, value));
            }
            "filter[actor]" => {
                page.query.actor = Some(value.clone());
                page.filters.push((key, value));
            }
            "filter[since]" | "filter[until]" => {
                let time = parse_rfc3339(&value).ok_or_else(|| {
                    bad(
                        &key,
                        format!("`{key}` must be an RFC 3339 timestamp such as `2024-05-01T12:00:00Z`, not `{value}`"),
                    )
                })?;
                if key == "filter[since]" {
                    page.query.since = Some(time);
                } else {
                    page.query.until = Some(time);
                }
                page.filters.push((key, value));
            }
            _ => {}
        }
    }
    Ok(page)
}

fn link(page: &Page, cursor: Option<u64>) -> String {
    let encode = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut link = format!("{AUDIT_EVENTS_PATH}?page%5Bsize%5D={}", page.query.limit);
    if let Some(cursor) = cursor {
        link.push_str(&format!("&page%5Bcursor%5D={cursor}"));
    }
    for (key, value) in &page.filters {
        link.push_str(&format!("&{}={}", encode(key), encode(value)));
    }
    link
}

/// List the organization's audit events, newest first: one per committed change.
#[utoipa::path(
    get, path = "/api/v1/entities/auditEvents", tag = "auditEvents",
    security(("bearer" = [])),
    params(
        ("page[size]" = Option<usize>, Query, description = "Events per page, 1 to 500 (default 50)"),
        ("page[cursor]" = Option<String>, Query, description = "Where the page starts: take it from a `links.next`"),
        ("filter[entityId]" = Option<String>, Query, description = "Only events about this entity"),
        ("filter[actor]" = Option<String>, Query, description = "Only events of this user id (or `system`)"),
        ("filter[since]" = Option<String>, Query, description = "Only events at or after this RFC 3339 time"),
        ("filter[until]" = Option<String>, Query, description = "Only events at or before this RFC 3339 time"),
    ),
    responses(
        (status = 200, description = "A page of events, newest first", body = AuditEventListDocument, content_type = "application/vnd.api+json"),
        (status = 400, description = "A malformed parameter", body = super::document::ErrorDocument),
        (status = 401, description = "No valid token", body = super::document::ErrorDocument),
        (status = 403, description = "No manage permission, or the allowlist denies the caller", body = super::document::ErrorDocument),
        (status = 503, description = "The store cannot be read", body = super::document::ErrorDocument),
    )
)]
pub(super) async fn list_audit_events(
    State(state): State<AdminState>,
    manager: Manager,
    uri: Uri,
) -> Result<Response, ApiError> {
    let page = parse_page(uri.query())?;
    let size = page.query.limit;
    // One more than the page, to know whether there is a next one.
    let mut query = page.query.clone();
    query.limit = size + 1;
    let mut records = state
        .store
        .audit_events(manager.org(), &query)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "allowlist store backend failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storeUnavailable",
                "the audit trail cannot be read now: retry later",
            )
        })?;
    let more = records.len() > size;
    records.truncate(size);
    let next = more
        .then(|| records.last().map(|last| link(&page, Some(last.id))))
        .flatten();
    Ok(document(
        StatusCode::OK,
        &AuditEventListDocument {
            data: records.iter().map(AuditEventResource::from).collect(),
            links: Links {
                this: link(&page, page.query.before_id),
                next,
            },
        },
    ))
}

// ---- RFC 3339 ---------------------------------------------------------------------

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00.5+02:00`) with the `time` crate,
/// already in the dependency graph through `jsonwebtoken`.
pub(super) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// `time` as RFC 3339 in UTC, to the microsecond: `2024-05-01T12:00:00.000000Z`.
pub(super) fn format_rfc3339(time: SystemTime) -> String {
    let at = OffsetDateTime::from(time);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn rfc3339_round_trips_and_refuses_malformed_times() {
        let time = parse_rfc3339("2024-02-29T23:59:58.5+01:00").unwrap();
        assert_eq!(format_rfc3339(time), "2024-02-29T22:59:58.500000Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        let now = parse_rfc3339(&format_rfc3339(
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        ));
        assert_eq!(
            now,
            Some(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456))
        );
        for bad in [
            "",
            "yesterday",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00 01:00",
            "2024-01-01",
            "2024-1-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn page_parameters() {
        let page = parse_page(Some(
            "page%5Bsize%5D=2&page[cursor]=9&filter[entityId]=p%201&filter[actor]=alice&filter%5Bsince%5D=2024-01-01T00:00:00%2B00:00",
        ))
        .unwrap();
        assert_eq!(page.query.limit, 2);
        assert_eq!(page.query.before_id, Some(9));
        assert_eq!(page.query.entity_id.as_deref(), Some("p 1"));
        assert_eq!(page.query.actor.as_deref(), Some("alice"));
        assert_eq!(page.query.since, parse_rfc3339("2024-01-01T00:00:00Z"));
        assert_eq!(parse_page(None).unwrap().query.limit, DEFAULT_PAGE_SIZE);
        for bad in [
            "page[size]=0",
            "page[size]=501",
            "page[size]=x",
            "page[cursor]=abc",
            "filter[since]=2024",
            "filter[until]=now",
            "filter[actor]=",
        ] {
            assert!(parse_page(Some(bad)).is_err(), "{bad}");
        }
    }
}
