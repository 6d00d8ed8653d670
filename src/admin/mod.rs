//! The JSON:API admin router: organization administrators manage IP allowlist
//! policies and the group hierarchy over HTTP.
//!
//! | method and path | does | answers |
//! |---|---|---|
//! | `GET /api/v1/entities/ipAllowlistPolicies` | list | 200 |
//! | `POST /api/v1/entities/ipAllowlistPolicies` | create | 201 + `Location` |
//! | `GET /api/v1/entities/ipAllowlistPolicies/{id}` | get | 200 + `ETag` |
//! | `PUT /api/v1/entities/ipAllowlistPolicies/{id}` | replace | 200 |
//! | `PATCH /api/v1/entities/ipAllowlistPolicies/{id}` | change the members sent | 200 |
//! | `DELETE /api/v1/entities/ipAllowlistPolicies/{id}` | delete | 204 |
//! | `POST /api/v1/actions/ipAllowlistPolicies/{id}/addTargets` | assign users and groups | 204 |
//! | `POST /api/v1/actions/ipAllowlistPolicies/{id}/removeTargets` | unassign them | 204 |
//! | `GET /api/v1/entities/userGroups` | every group that has parents, with them | 200 |
//! | `GET`, `PUT`, `DELETE /api/v1/entities/userGroups/{id}` | a group's parents | 200 / 200 / 204 |
//! | `POST /api/v1/actions/ipAllowlistPolicies/evaluate` | explain a user, groups and address, rule by rule | 200 |
//! | `GET /api/v1/actions/ipAllowlistPolicies/myAccess` | explain the caller's own requests (any authenticated caller) | 200 |
//! | `GET`, `PUT /api/v1/entities/siteAllowlist` | the organization's site allowlist | 200 |
//! | `GET /api/v1/entities/resourceAllowlists` | every resource's allowlist | 200 |
//! | `GET`, `PUT`, `DELETE /api/v1/entities/resourceAllowlists/{id}` | a resource's allowlist | 200 / 200 / 204 |
//! | `GET /api/v1/actions/ipAllowlistPolicies/{id}/wouldDeny`, `GET /api/v1/actions/siteAllowlist/wouldDeny`, `GET /api/v1/actions/resourceAllowlists/{id}/wouldDeny` | whom a report-only rule would have refused since it entered report mode | 200 |
//! | `GET /api/v1/entities/auditEvents` | the organization's audit trail, newest first: `page[size]` (1 to 500, default 50), `page[cursor]` from `links.next`, `filter[entityId]`, `filter[actor]`, `filter[since]`, `filter[until]` (RFC 3339; a bad value is 400 naming the parameter) | 200 |
//! | `POST /api/v1/entities/apiTokens` | create an API token for the caller (any authenticated caller, not one using a token); the answer holds the token, shown once (feature `api-tokens`) | 201 + `Location` |
//! | `GET /api/v1/entities/apiTokens` | the caller's tokens; with the manage permission, the organization's (`filter[owner]` for one user's) | 200 |
//! | `DELETE /api/v1/entities/apiTokens/{id}` | revoke one of the caller's tokens; with the manage permission, any of the organization's | 204 |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3.1 document, generated from this code | 200 |
//!
//! Documents are JSON:API as in the [`document`] types; bodies may be sent as
//! `application/vnd.gooddata.api+json`, `application/vnd.api+json` or
//! `application/json` (anything else: 415), up to 1 MiB (beyond: 413). They are read
//! strictly: a member sent twice in one object (which most JSON parsers resolve by
//! keeping the last) and unknown members are refused with 400 `malformedDocument`
//! pointing at them; the top level may hold `data`, `meta` and `jsonapi`. Ids follow
//! [`validate_id`](crate::policy::validate_id).
//!
//! # Who may call it
//!
//! The router reads the caller's [`Principal`](crate::principal::Principal) from the
//! request extensions, as the JWT layer (or any authentication layer) puts it there.
//! No principal: 401 `unauthenticated`. A principal without the manage permission
//! (`MANAGE` unless [`Admin::permission`] says otherwise): 403 `forbidden`. Each
//! administrator sees and changes only their own organization's policies: the
//! organization is the request's [tenant](crate::tenant) (the default organization
//! when no `TenantLayer` ran), and a principal of another organization is refused with
//! 401 `organizationMismatch`.
//!
//! Put the [`AllowlistLayer`](crate::layer::AllowlistLayer) around this router like
//! every other route: an administrator restricted by a policy can then manage only
//! from an allowed address.
//!
//! # Versions, and the lockout guard
//!
//! Every policy response carries its version, in `meta.version` and as the `ETag`
//! `"<version>"`. `PUT`, `PATCH` and `DELETE` with `If-Match: "<version>"` are refused
//! with 412 `versionMismatch` when the policy changed since.
//!
//! A change that would deny the administrator's own current address (a policy that
//! applies to them, or enabling the site allowlist) is refused with 409
//! `lockoutPrevented`; add `?force=true` to make it anyway.
//!
//! Policies, the site allowlist and resource allowlists take an `enforcement`
//! attribute, `enforce` (the default) or `report`: a report-only rule never refuses a
//! request, it reports what it would have refused (see [`report`](crate::report)).
//! Sources may be addresses, CIDR ranges, or ranges `first-last`.
//!
//! # From report-only to enforce
//!
//! While a rule reports, `GET .../wouldDeny` answers whom it would have refused since
//! it entered report mode: the distinct (user, address) pairs (IPv6 grouped by /64),
//! each with a count and first and last seen, most requests first, bounded per rule
//! (the rest counted in `otherRequests`); see [`report`](crate::report). With
//! PostgreSQL the answer covers every replica: each writes its summary to the
//! database every [`would_deny_flush_interval`](crate::store::ReplicationOptions::would_deny_flush_interval)
//! (10 s by default), so another replica's requests show up within that interval
//! (plus the time its write takes); otherwise it covers the answering process.
//!
//! Switching a rule from `report` to `enforce` while that summary is not empty is
//! refused with 409 `wouldDenyCallers`, naming how many callers (and requests) it
//! would have refused; review them, or add `?force=true` to switch anyway. Like the
//! lockout guard, it applies to administrators of the organization, not to
//! [`Actor::system`](crate::store::Actor::system).
//!
//! Each of them may also carry `blockedSources`, in the same forms: addresses refused
//! even inside the allowed sources (a rule admits what it allows and does not block;
//! policies still combine by union). The attribute is optional and means none when
//! absent; responses leave it out when there are none. `PATCH` changes it only when
//! sent, and `[]` or `null` clears it; `PUT` replaces the whole rule. Errors point at
//! `/data/attributes/blockedSources/{i}`, and `evaluate` and `myAccess` name the
//! blocked source that refused an address (`blockingSource`). The lockout guard
//! counts blocked sources like any other change.
//!
//! # Errors
//!
//! Every refusal is a JSON:API error document whose `source.pointer` names the member
//! at fault:
//!
//! ```json
//! {"errors":[{"status":"400","code":"hostBitsSet","title":"Range has host bits set",
//!   "detail":"allowed source 1: `198.51.100.7/24` has host bits set after the prefix: did you mean `198.51.100.0/24`?",
//!   "source":{"pointer":"/data/attributes/allowedSources/1"}}]}
//! ```
//!
//! | `code` | status |
//! |---|---|
//! | `invalidSource`, `hostnameNotAllowed`, `matchAllNotAllowed`, `emptyAllowedSources`, `hostBitsSet`, `targetLimitExceeded`, `sourceLimitExceeded`, `parentLimitExceeded`, `malformedDocument` | 400 |
//! | `invalidOrganization` (the caller's organization id breaks the id rule) | 400 |
//! | `unauthenticated`, `organizationMismatch` | 401 |
//! | `forbidden` | 403 |
//! | `notFound` | 404 |
//! | `conflict` (duplicate id), `policyLimitExceeded`, `resourceLimitExceeded`, `groupLimitExceeded`, `depthLimitExceeded`, `lockoutPrevented`, `wouldDenyCallers` | 409 |
//! | `versionMismatch` | 412 |
//! | `payloadTooLarge` | 413 |
//! | `unsupportedMediaType` | 415 |
//! | `valueNotStorable` (the database refuses the value; retrying will not help; nothing changed) | 422 |
//! | `backendError` (the store is unavailable; nothing changed: retry later) | 503 |
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{Request, StatusCode}, Extension};
//! use tower::ServiceExt;
//! use tower_ip_allowlist::{admin, principal::Principal, store::Store};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = Store::memory();
//! let admin = Principal::new("alice").with_permissions(["MANAGE"]);
//! // In a real service the JWT layer inserts the principal.
//! let app = admin::router(store.clone()).layer(Extension(admin));
//!
//! let body = r#"{"data":{"id":"vpn","type":"ipAllowlistPolicy",
//!     "attributes":{"allowedSources":["198.51.100.0/24"]}}}"#;
//! let request = Request::post("/api/v1/entities/ipAllowlistPolicies")
//!     .header("content-type", "application/vnd.gooddata.api+json")
//!     .body(Body::from(body))
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::CREATED);
//! assert_eq!(response.headers()["location"], "/api/v1/entities/ipAllowlistPolicies/vpn");
//! assert!(store.get_policy(&Default::default(), "vpn").is_some());
//! # }
//! ```

#[cfg(feature = "api-tokens")]
mod api_tokens;
mod audit;
pub mod document;
mod error;
mod handlers;
mod would_deny;

use std::fmt;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::store::Store;

/// The media type of every document this API sends.
const MEDIA_TYPE: &str = "application/vnd.api+json";

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The permission that lets a principal manage its organization's allowlist, unless
/// [`Admin::permission`] names another.
pub const MANAGE_PERMISSION: &str = "MANAGE";

const POLICIES_PATH: &str = "/api/v1/entities/ipAllowlistPolicies";

/// The admin router with its defaults: see the [module docs](self).
pub fn router(store: Store) -> Router {
    Admin::new(store).into_router()
}

/// Builds the admin router; see the [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct Admin {
    state: AdminState,
}

#[derive(Clone)]
pub(crate) struct AdminState {
    store: Store,
    permission: Arc<str>,
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("store", &self.store)
            .field("permission", &self.permission)
            .finish()
    }
}

impl Admin {
    /// An admin API over `store`, requiring [`MANAGE_PERMISSION`].
    pub fn new(store: Store) -> Self {
        Self {
            state: AdminState {
                store,
                permission: Arc::from(MANAGE_PERMISSION),
            },
        }
    }

    /// Requires `permission` instead of `MANAGE`.
    pub fn permission(mut self, permission: impl Into<String>) -> Self {
        self.state.permission = Arc::from(permission.into());
        self
    }

    /// The router, with every route at its absolute path (merge it into your app).
    pub fn into_router(self) -> Router {
        use handlers::*;
        let router = Router::new()
            .route(POLICIES_PATH, get(list_policies).post(create_policy))
            .route(
                "/api/v1/entities/ipAllowlistPolicies/{id}",
                get(get_policy)
                    .put(replace_policy)
                    .patch(update_policy)
                    .delete(delete_policy),
            )
            .route(
                "/api/v1/actions/ipAllowlistPolicies/{id}/addTargets",
                post(add_targets),
            )
            .route(
                "/api/v1/actions/ipAllowlistPolicies/{id}/removeTargets",
                post(remove_targets),
            )
            .route("/api/v1/entities/userGroups", get(list_groups))
            .route(
                "/api/v1/entities/userGroups/{id}",
                get(get_group).put(put_group).delete(delete_group),
            )
            .route(
                "/api/v1/actions/ipAllowlistPolicies/evaluate",
                post(evaluate),
            )
            .route(
                "/api/v1/actions/ipAllowlistPolicies/myAccess",
                get(my_access),
            )
            .route(
                "/api/v1/entities/siteAllowlist",
                get(get_site_list).put(put_site_list),
            )
            .route(
                "/api/v1/entities/resourceAllowlists",
                get(list_resource_lists),
            )
            .route(
                "/api/v1/entities/resourceAllowlists/{id}",
                get(get_resource_list)
                    .put(put_resource_list)
                    .delete(delete_resource_list),
            )
            .route(
                "/api/v1/actions/ipAllowlistPolicies/{id}/wouldDeny",
                get(would_deny::policy_would_deny),
            )
            .route(
                "/api/v1/actions/siteAllowlist/wouldDeny",
                get(would_deny::site_would_deny),
            )
            .route(
                "/api/v1/actions/resourceAllowlists/{id}/wouldDeny",
                get(would_deny::resource_would_deny),
            )
            .route(audit::AUDIT_EVENTS_PATH, get(audit::list_audit_events));
        #[cfg(feature = "api-tokens")]
        let router = router
            .route(
                api_tokens::API_TOKENS_PATH,
                get(api_tokens::list_api_tokens).post(api_tokens::create_api_token),
            )
            .route(
                "/api/v1/entities/apiTokens/{id}",
                axum::routing::delete(api_tokens::revoke_api_token),
            );
        router
            .route("/api/v1/openapi.json", get(handlers::openapi))
            .with_state(self.state)
    }
}

/// The OpenAPI 3.1 document of the admin API, generated from the route definitions
/// (with the `apiTokens` routes when the feature `api-tokens` is on).
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[cfg_attr(not(feature = "api-tokens"), allow(unused_mut))]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "api-tokens")]
    doc.merge(api_tokens::ApiTokensDoc::openapi());
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tower-ip-allowlist admin API",
        description = "Manage IP allowlist policies and the user-group hierarchy of your organization."
    ),
    paths(
        handlers::list_policies,
        handlers::create_policy,
        handlers::get_policy,
        handlers::replace_policy,
        handlers::update_policy,
        handlers::delete_policy,
        handlers::add_targets,
        handlers::remove_targets,
        handlers::list_groups,
        handlers::get_group,
        handlers::put_group,
        handlers::delete_group,
        handlers::get_site_list,
        handlers::put_site_list,
        handlers::list_resource_lists,
        handlers::get_resource_list,
        handlers::put_resource_list,
        handlers::delete_resource_list,
        handlers::evaluate,
        handlers::my_access,
        would_deny::policy_would_deny,
        would_deny::site_would_deny,
        would_deny::resource_would_deny,
        audit::list_audit_events,
        handlers::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "ipAllowlistPolicies", description = "IP allowlist policies"),
        (name = "userGroups", description = "The user-group hierarchy policies follow"),
        (name = "siteAllowlist", description = "The organization-wide allowlist"),
        (name = "resourceAllowlists", description = "Allowlists of single resources, such as a project's media"),
        (name = "auditEvents", description = "The organization's audit trail: one event per committed change"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
