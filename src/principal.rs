//! Who the caller is, and how the layer reads it from the request extensions.
//!
//! An authentication layer that runs before the allowlist inserts the caller into the
//! request extensions. The layer reads any type that implements [`Identity`]:
//!
//! - [`Principal`], this crate's own type, which the JWT layer (`jwt::JwtAuthLayer`, feature `jwt`) inserts;
//! - or an application's own user type, by implementing [`Identity`] for it and naming it
//!   in [`AllowlistLayer::with_identity`](crate::layer::AllowlistLayer::with_identity).
//!   No wrapping and no copying: the layer borrows it from the extensions.
//!
//! # Example
//!
//! The organization an identity names must be the request's [tenant](crate::tenant)
//! (the default organization when no `TenantLayer` decides otherwise), and policies are
//! published to that same organization; an identity of another organization is
//! refused (401 `organizationMismatch`), never matched against nothing.
//!
//! ```
//! use axum::{body::Body, http::{Request, StatusCode}, routing::get, Router};
//! use tower::ServiceExt;
//! use tower_ip_allowlist::layer::AllowlistLayer;
//! use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
//! use tower_ip_allowlist::principal::Identity;
//! use tower_ip_allowlist::snapshot::SnapshotHandle;
//! use tower_ip_allowlist::testing::TestRequest;
//!
//! // An application's own user type, as its session middleware inserts it. A
//! // single-tenant application names no organization: the default one.
//! #[derive(Clone)]
//! struct SessionUser { login: String, teams: Vec<String> }
//!
//! impl Identity for SessionUser {
//!     fn user_id(&self) -> &str { &self.login }
//!     fn group_ids(&self) -> impl Iterator<Item = &str> { self.teams.iter().map(String::as_str) }
//!     fn organization_id(&self) -> Option<&str> { None }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Policies go to the organization the identity names: here the default one.
//! let mut org = OrgPolicies::default();
//! org.insert_policy(Policy::builder("vpn").sources(["203.0.113.0/24"])?.group("admins").build()?);
//! let handle = SnapshotHandle::default();
//! handle.set_org(OrgId::default(), &org);
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(AllowlistLayer::new(handle).with_identity::<SessionUser>());
//! let alice = SessionUser { login: "alice".into(), teams: vec!["admins".into()] };
//! let from = |peer: &str| Request::get("/").body(Body::empty()).unwrap().with_peer(peer).with_identity(alice.clone());
//! assert_eq!(app.clone().oneshot(from("192.0.2.1")).await?.status(), StatusCode::FORBIDDEN);
//! assert_eq!(app.oneshot(from("203.0.113.5")).await?.status(), StatusCode::OK);
//! # Ok(()) }
//! ```

use crate::policy::{GroupId, OrgId, UserId};

/// What the allowlist needs to know about a caller.
///
/// Implement it for the type your authentication layer puts in the request extensions;
/// see the [module docs](self).
pub trait Identity: Send + Sync + 'static {
    /// The caller's user id.
    fn user_id(&self) -> &str;

    /// The groups the caller belongs to directly. Ancestors are found through the
    /// organization's group hierarchy; do not list them here.
    fn group_ids(&self) -> impl Iterator<Item = &str>;

    /// The caller's organization; `None` means the default organization.
    fn organization_id(&self) -> Option<&str>;
}

/// An authenticated caller: user, direct groups, organization and permissions.
///
/// This crate's JWT layer inserts one into the request extensions; any other
/// authentication layer can too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id.
    pub user: UserId,
    /// The groups the user belongs to directly.
    pub groups: Vec<GroupId>,
    /// The organization; `None` is the default organization.
    pub organization: Option<OrgId>,
    /// Permissions granted to the caller (`MANAGE` lets it manage the allowlist).
    pub permissions: Vec<String>,
}

impl Principal {
    /// A principal with only a user id.
    #[must_use]
    pub fn new(user: impl Into<UserId>) -> Self {
        Self {
            user: user.into(),
            groups: Vec::new(),
            organization: None,
            permissions: Vec::new(),
        }
    }

    /// Sets the direct groups.
    #[must_use]
    pub fn with_groups<G: Into<GroupId>>(mut self, groups: impl IntoIterator<Item = G>) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the organization.
    #[must_use]
    pub fn with_organization(mut self, organization: impl Into<OrgId>) -> Self {
        self.organization = Some(organization.into());
        self
    }

    /// Sets the permissions.
    #[must_use]
    pub fn with_permissions<P: Into<String>>(
        mut self,
        permissions: impl IntoIterator<Item = P>,
    ) -> Self {
        self.permissions = permissions.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the caller holds `permission`.
    #[must_use]
    pub fn has_permission(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// The organization, or the default one.
    #[must_use]
    pub fn organization_or_default(&self) -> OrgId {
        self.organization.clone().unwrap_or_default()
    }
}

impl Identity for Principal {
    fn user_id(&self) -> &str {
        self.user.as_str()
    }

    fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(GroupId::as_str)
    }

    fn organization_id(&self) -> Option<&str> {
        self.organization.as_ref().map(OrgId::as_str)
    }
}

/// Session stores and authentication layers often hand out shared pointers: the
/// allowlist reads `Arc<YourUser>` (with `.with_identity::<Arc<YourUser>>()`) as it
/// reads `YourUser`.
impl<T: Identity + ?Sized> Identity for std::sync::Arc<T> {
    fn user_id(&self) -> &str {
        (**self).user_id()
    }

    fn group_ids(&self) -> impl Iterator<Item = &str> {
        (**self).group_ids()
    }

    fn organization_id(&self) -> Option<&str> {
        (**self).organization_id()
    }
}

impl<T: Identity + ?Sized> Identity for Box<T> {
    fn user_id(&self) -> &str {
        (**self).user_id()
    }

    fn group_ids(&self) -> impl Iterator<Item = &str> {
        (**self).group_ids()
    }

    fn organization_id(&self) -> Option<&str> {
        (**self).organization_id()
    }
}

impl<T: Identity + ?Sized> Identity for &'static T {
    fn user_id(&self) -> &str {
        (**self).user_id()
    }

    fn group_ids(&self) -> impl Iterator<Item = &str> {
        (**self).group_ids()
    }

    fn organization_id(&self) -> Option<&str> {
        (**self).organization_id()
    }
}
