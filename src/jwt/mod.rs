//! JWT bearer authentication: a tower layer that verifies `Authorization: Bearer`
//! tokens and puts the caller in the request extensions as a
//! [`Principal`](crate::principal::Principal), for the
//! [allowlist layer](crate::layer) and the handlers.
//!
//! [`JwtAuthLayer`] verifies the token's signature with **one** configured algorithm and
//! key (a token signed with any other algorithm is refused, so an HS256 token "signed"
//! with an RSA public key gets nowhere), or with the key of a [JWK set](KeySet) its `kid`
//! names, in that key's algorithm (see [below](self#keys-from-an-identity-provider)),
//! then its claims:
//!
//! - `exp` is required and must not be past, `nbf`, when present, must not be future,
//!   both with a [leeway](JwtAuthLayer::leeway) of 60 seconds by default;
//! - `iss` and `aud` are checked, and required, only when configured with
//!   [`issuer`](JwtAuthLayer::issuer) and [`audience`](JwtAuthLayer::audience);
//! - `sub` (a non-empty string) becomes the user, `groups` (an array of strings) the
//!   direct groups, `org` (a string) the organization and `permissions` (an array of
//!   strings, or a string of them separated by spaces) the permissions. The claim names
//!   can be changed with [`ClaimNames`], and be JSON pointers to nested claims
//!   (`/realm_access/roles`). A claim of the wrong type makes the token invalid, and so
//!   does an invalid user, group or organization id.
//!
//! A request without an `Authorization` header goes on anonymous, with no principal: add
//! [`RequirePrincipalLayer`] to the routes that need one. A request with any other
//! `Authorization` header (another scheme, a malformed or invalid token) is refused with
//! 401 Unauthorized, `WWW-Authenticate: Bearer error="invalid_token", error_description="..."`
//! and a short JSON body; a gRPC request gets a trailers-only response with status 16
//! `UNAUTHENTICATED`, which tonic clients see as `Code::Unauthenticated`. The
//! [`JwtRejection`] is in the response extensions; the response itself is replaceable
//! with [`JwtAuthLayer::rejection`].
//!
//! [`encode_hs256`] and [`encode`] mint tokens with the default claim names, for
//! development and tests.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{header, Request, Response, StatusCode};
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, JwtRejection, TokenClaims};
//! use tower_ip_allowlist::principal::Principal;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"a development secret of at least 32 bytes";
//! let app = service_fn(|request: Request<String>| async move {
//!     let user = request.extensions().get::<Principal>().map(|p| p.user.to_string());
//!     Ok::<_, std::convert::Infallible>(Response::new(user.unwrap_or_default()))
//! });
//! let app = JwtAuthLayer::hs256(secret).layer(app);
//!
//! let claims = TokenClaims::new("alice", Duration::from_secs(300)).with_groups(["admins"]);
//! let token = encode_hs256(secret, &claims)?;
//! let request = Request::get("/")
//!     .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .body(String::new())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let forged = encode_hs256(b"another secret", &claims)?;
//! let request = Request::get("/")
//!     .header(header::AUTHORIZATION, format!("Bearer {forged}"))
//!     .body(String::new())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     response.extensions().get::<JwtRejection>(),
//!     Some(&JwtRejection::InvalidSignature),
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # Keys from an identity provider
//!
//! An identity provider publishes its public keys as a JWK set and rotates them: the
//! token's `kid` header names the key that signed it.
//!
//! - [`JwtAuthLayer::key_set`] takes a [`KeySet`] read from JSON or a file;
//! - [`JwtAuthLayer::remote`] (feature `jwks`) takes [`RemoteKeys`], fetched from a JWK
//!   set URL or found by OpenID Connect discovery from the issuer URL, and refreshed in
//!   the background: on an interval, and when a token names a key the set does not hold
//!   (at most once per interval, 10 seconds by default). Until the first fetch has
//!   succeeded, a request with a token is refused with 503 and
//!   [`JwtRejection::KeysUnavailable`], never let through;
//! - [`JwtAuthLayer::issuers`] combines layers for several issuers, picked by the
//!   token's `iss`, each with its own keys, audience, claim names and
//!   [organization](JwtAuthLayer::organization).
//!
//! ```
//! use tower_ip_allowlist::jwt::{ClaimNames, JwtAuthLayer, KeySet};
//!
//! let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
//!                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! // Keycloak: realm roles as groups, one client's roles as permissions.
//! let keycloak = JwtAuthLayer::key_set(KeySet::from_json(jwks)?)
//!     .issuer("https://sso.example.com/realms/acme")
//!     .audience("orders-api")
//!     .claims(
//!         ClaimNames::default()
//!             .groups("/realm_access/roles")
//!             .permissions("/resource_access/orders-api/roles"),
//!     )
//!     .organization("acme")?;
//! // Entra ID: the object id is the user, app roles the groups, delegated scopes
//! // (`scp`, space-separated) the permissions, the tenant the organization.
//! let entra = JwtAuthLayer::key_set(KeySet::from_json(jwks)?)
//!     .issuer("https://login.microsoftonline.com/TENANT-ID/v2.0")
//!     .audience("api://orders")
//!     .claims(ClaimNames::default().user("oid").groups("roles").permissions("scp").org("tid"));
//! let layer = JwtAuthLayer::issuers([keycloak, entra])?;
//! assert_eq!(layer.algorithm(), None, "each key has its own");
//! # Ok::<(), tower_ip_allowlist::jwt::JwtConfigError>(())
//! ```
//!
//! # Where to put it
//!
//! Outside (added after) the [`AllowlistLayer`](crate::layer::AllowlistLayer), so the
//! principal is in the extensions when the allowlist runs:
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_ip_allowlist::jwt::{JwtAuthLayer, RequirePrincipalLayer};
//! use tower_ip_allowlist::layer::AllowlistLayer;
//! use tower_ip_allowlist::snapshot::SnapshotHandle;
//!
//! let app: Router = Router::new()
//!     .route("/me", get(|| async { "protected" }))
//!     .route_layer(RequirePrincipalLayer::new())
//!     .route("/health", get(|| async { "public" }))
//!     .layer(AllowlistLayer::new(SnapshotHandle::default()))
//!     .layer(JwtAuthLayer::hs256(b"a development secret of at least 32 bytes"));
//! ```
//!
//! # Security
//!
//! The principal is exactly what the token claims: whoever holds the key decides who
//! the caller is, in which groups and organization, with which permissions. Use an
//! asymmetric algorithm ([`rs256_pem`](JwtAuthLayer::rs256_pem),
//! [`es256_pem`](JwtAuthLayer::es256_pem), [`eddsa_pem`](JwtAuthLayer::eddsa_pem)) when
//! the tokens are issued by another party; an HMAC secret must be long (32 bytes or
//! more) and random, and never shared with clients. Configure
//! [`issuer`](JwtAuthLayer::issuer) and [`audience`](JwtAuthLayer::audience) when the
//! key also signs tokens meant for other services. Neither the key nor the token is ever
//! logged or printed: `Debug` shows `<redacted>`, and a rejection is logged at debug level
//! with its reason only.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use serde::{Deserialize, Serialize};

mod keys;
#[allow(clippy::module_inception)]
mod layer;
#[cfg(feature = "jwks")]
mod remote;
mod require;
mod response;
mod service;
mod verify;

pub use self::keys::KeySet;
pub use self::layer::JwtAuthLayer;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub use self::remote::{JwksError, RemoteKeys, RemoteKeysBuilder};
pub use self::require::{RequirePrincipalLayer, RequirePrincipalService};
pub use self::response::{DefaultRejection, Rejection, Unauthenticated};
pub use self::service::JwtAuthService;
pub use crate::body::{RefusalBody, ResponseBody};
pub use crate::layer::ResponseFuture;
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
pub use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The longest bearer token accepted by default, in bytes; a longer one is refused
/// with [`JwtRejection::TokenTooLong`] before any decoding. Change it with
/// [`JwtAuthLayer::max_token_len`].
///
/// 16 KiB holds the tokens of identity providers that list a few hundred groups;
/// providers cap theirs lower (Entra ID swaps the groups claim for a link past 200
/// groups). Decoding costs in proportion to the length, so a tighter cap is cheaper
/// to defend; HTTP servers and proxies commonly refuse headers of 8 to 16 KiB anyway.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The names of the claims the principal is read from.
///
/// The defaults are `sub`, `groups`, `org` and `permissions`; identity providers often
/// use others (`oid`, `roles`, `tid`, `scp`, ...). A name that starts with `/` is a JSON
/// pointer (RFC 6901) into the claims, for claims nested in objects, as Keycloak's
/// `/realm_access/roles` and `/resource_access/{client}/roles` are (a `/` inside a key
/// is written `~1`, a `~` is written `~0`). See the [module docs](self).
///
/// ```
/// use tower_ip_allowlist::jwt::{ClaimNames, JwtAuthLayer};
///
/// let names = ClaimNames::default().groups("roles").org("tenant");
/// assert_eq!(names.groups_claim(), "roles");
/// let layer = JwtAuthLayer::hs256(b"a development secret of at least 32 bytes").claims(names);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ClaimNames {
    sub: String,
    groups: String,
    org: String,
    permissions: String,
    group_ancestors: bool,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            sub: "sub".to_owned(),
            groups: "groups".to_owned(),
            org: "org".to_owned(),
            permissions: "permissions".to_owned(),
            group_ancestors: false,
        }
    }
}

impl ClaimNames {
    /// The claim holding the user id, a non-empty string (default `sub`).
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.sub = name.into();
        self
    }

    /// The claim holding the direct groups, an array of strings (default `groups`).
    pub fn groups(mut self, name: impl Into<String>) -> Self {
        self.groups = name.into();
        self
    }

    /// The claim holding the organization, a string (default `org`).
    pub fn org(mut self, name: impl Into<String>) -> Self {
        self.org = name.into();
        self
    }

    /// The claim holding the permissions, an array of strings or one string of them
    /// separated by spaces, as `scope` and Entra ID's `scp` are (default `permissions`).
    pub fn permissions(mut self, name: impl Into<String>) -> Self {
        self.permissions = name.into();
        self
    }

    /// Whether a group written as a path, as Keycloak's group mapper writes them
    /// (`/engineering/platform`), also makes the caller a member of each ancestor
    /// (`/engineering`); off by default, when the caller is in exactly the groups the
    /// token lists.
    ///
    /// Turn it on when policies are written for departments and the token names teams;
    /// leave it off (and give the allowlist's groups their parents) when the groups'
    /// structure is kept in the store.
    ///
    /// ```
    /// use tower_ip_allowlist::jwt::ClaimNames;
    ///
    /// let names = ClaimNames::default().groups("groups").group_ancestors(true);
    /// assert!(names.group_ancestors_enabled());
    /// ```
    pub fn group_ancestors(mut self, enabled: bool) -> Self {
        self.group_ancestors = enabled;
        self
    }

    /// Whether [`group_ancestors`](Self::group_ancestors) is on.
    #[must_use]
    pub fn group_ancestors_enabled(&self) -> bool {
        self.group_ancestors
    }

    /// The name of the user id claim.
    #[must_use]
    pub fn user_claim(&self) -> &str {
        &self.sub
    }

    /// The name of the groups claim.
    #[must_use]
    pub fn groups_claim(&self) -> &str {
        &self.groups
    }

    /// The name of the organization claim.
    #[must_use]
    pub fn org_claim(&self) -> &str {
        &self.org
    }

    /// The name of the permissions claim.
    #[must_use]
    pub fn permissions_claim(&self) -> &str {
        &self.permissions
    }
}

/// Why a request was refused: with 401 Unauthorized, or 503 for
/// [`KeysUnavailable`](Self::KeysUnavailable).
///
/// The [layers](self) insert it into the response extensions. It never carries the token
/// or anything from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtRejection {
    /// No credentials: [`RequirePrincipalLayer`] found no principal in the extensions.
    MissingCredentials,
    /// The `Authorization` header is not `Bearer <token>`: another scheme, no token,
    /// bytes that are not visible ASCII, or the header given more than once.
    MalformedHeader,
    /// The token is longer than [`MAX_TOKEN_LEN`].
    TokenTooLong,
    /// The token is not a well-formed JWT (three base64url parts, JSON header and claims).
    MalformedToken,
    /// The token is signed with another algorithm than the configured one.
    UnsupportedAlgorithm,
    /// The signature does not verify with the configured key.
    InvalidSignature,
    /// The token names (by its `kid` header) a key the configured key set does not
    /// hold, or names none while the set holds several. With
    /// [`RemoteKeys`](self#keys-from-an-identity-provider), it asks for a refetch.
    UnknownKey,
    /// The keys have not been fetched from the identity provider yet: the request is
    /// refused with 503 Service Unavailable (gRPC 14 `UNAVAILABLE`), never let through.
    KeysUnavailable,
    /// The token has expired (`exp`, past the leeway).
    Expired,
    /// The token is not valid yet (`nbf`, past the leeway).
    NotYetValid,
    /// The `iss` claim is missing or not the configured issuer.
    InvalidIssuer,
    /// The `aud` claim is missing or does not name the configured audience.
    InvalidAudience,
    /// A claim is missing or of the wrong type: `exp` not a number, the user claim not a
    /// non-empty string, groups or permissions not an array of strings, ...
    InvalidClaims,
    /// The user claim is not a valid id ([`validate_id`](crate::policy::validate_id)):
    /// longer than 255 bytes, with control or invisible characters, or with white
    /// space at an end.
    InvalidUserId,
    /// A group in the groups claim is not a valid id
    /// ([`validate_id`](crate::policy::validate_id)).
    InvalidGroupId,
    /// The organization claim is not a valid id
    /// ([`validate_id`](crate::policy::validate_id)).
    InvalidOrganizationId,
}

impl JwtRejection {
    /// A stable, machine-readable code: `missingCredentials`, `malformedHeader`,
    /// `tokenTooLong`, `malformedToken`, `unsupportedAlgorithm`, `invalidSignature`,
    /// `unknownKey`, `keysUnavailable`, `expired`, `notYetValid`, `invalidIssuer`, `invalidAudience`, `invalidClaims`,
    /// `invalidUserId`, `invalidGroupId` or `invalidOrganizationId`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missingCredentials",
            Self::MalformedHeader => "malformedHeader",
            Self::TokenTooLong => "tokenTooLong",
            Self::MalformedToken => "malformedToken",
            Self::UnsupportedAlgorithm => "unsupportedAlgorithm",
            Self::InvalidSignature => "invalidSignature",
            Self::UnknownKey => "unknownKey",
            Self::KeysUnavailable => "keysUnavailable",
            Self::Expired => "expired",
            Self::NotYetValid => "notYetValid",
            Self::InvalidIssuer => "invalidIssuer",
            Self::InvalidAudience => "invalidAudience",
            Self::InvalidClaims => "invalidClaims",
            Self::InvalidUserId => "invalidUserId",
            Self::InvalidGroupId => "invalidGroupId",
            Self::InvalidOrganizationId => "invalidOrganizationId",
        }
    }

    /// A sentence for the caller, safe to send: it names what is wrong, never the token,
    /// the key or the expected values.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::MissingCredentials => "Authentication is required.",
            Self::MalformedHeader => "The Authorization header is not a bearer token.",
            Self::TokenTooLong => {
                "The token is longer than this server accepts: ask the issuer for a smaller token (fewer groups)."
            }
            Self::MalformedToken => "The token is malformed.",
            Self::UnsupportedAlgorithm => "The token algorithm is not accepted.",
            Self::InvalidSignature => "The token signature is invalid.",
            Self::UnknownKey => "The token is signed with a key this server does not know.",
            Self::KeysUnavailable => {
                "The keys to verify tokens with are not available yet: try again shortly."
            }
            Self::Expired => "The token has expired.",
            Self::NotYetValid => "The token is not valid yet.",
            Self::InvalidIssuer => "The token issuer is not accepted.",
            Self::InvalidAudience => "The token audience is not accepted.",
            Self::InvalidClaims => "The token claims are missing or invalid.",
            Self::InvalidUserId => ID_RULE_USER,
            Self::InvalidGroupId => ID_RULE_GROUP,
            Self::InvalidOrganizationId => ID_RULE_ORG,
        }
    }

    /// The HTTP status of the default response: 503 Service Unavailable for
    /// [`KeysUnavailable`](Self::KeysUnavailable), 401 Unauthorized otherwise.
    #[must_use]
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::KeysUnavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750): `Bearer` when credentials are
    /// missing, otherwise `Bearer error="invalid_token", error_description="..."`.
    #[must_use]
    pub fn www_authenticate(self) -> HeaderValue {
        if self == Self::MissingCredentials {
            return HeaderValue::from_static("Bearer");
        }
        let challenge = format!(
            r#"Bearer error="invalid_token", error_description="{}""#,
            self.description()
        );
        HeaderValue::from_str(&challenge)
            .unwrap_or_else(|_| HeaderValue::from_static(r#"Bearer error="invalid_token""#))
    }
}

// Sent in a header and a JSON string: ASCII, no quotes or backslashes.
const ID_RULE_USER: &str = "The token user id is invalid: ids are 1 to 255 bytes, without control or invisible characters or white space at either end.";
const ID_RULE_GROUP: &str = "A token group id is invalid: ids are 1 to 255 bytes, without control or invisible characters or white space at either end.";
const ID_RULE_ORG: &str = "The token organization id is invalid: ids are 1 to 255 bytes, without control or invisible characters or white space at either end.";

impl fmt::Display for JwtRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingCredentials => "no credentials",
            Self::MalformedHeader => "the authorization header is not a bearer token",
            Self::TokenTooLong => "the token is too long",
            Self::MalformedToken => "the token is not a well-formed JWT",
            Self::UnsupportedAlgorithm => "the token is signed with another algorithm",
            Self::InvalidSignature => "the token signature does not verify",
            Self::UnknownKey => "the token names a key that is not in the key set",
            Self::KeysUnavailable => {
                "the keys have not been fetched from the identity provider yet"
            }
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::InvalidIssuer => "the token issuer is missing or not accepted",
            Self::InvalidAudience => "the token audience is missing or not accepted",
            Self::InvalidClaims => "a token claim is missing or of the wrong type",
            Self::InvalidUserId => "the token's user id is not a valid id",
            Self::InvalidGroupId => "a group id in the token is not a valid id",
            Self::InvalidOrganizationId => "the token's organization id is not a valid id",
        })
    }
}

impl std::error::Error for JwtRejection {}

/// Why a key could not be loaded or a token could not be signed.
#[derive(Debug)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// The PEM is not a public key for the algorithm.
    InvalidKey {
        /// The algorithm the key was meant for.
        algorithm: Algorithm,
        /// What the JWT library found wrong (it never contains key material).
        source: jsonwebtoken::errors::Error,
    },
    /// The token could not be signed: the key does not fit the algorithm, or is not a
    /// valid private key.
    Encode(jsonwebtoken::errors::Error),
    /// A JWK set cannot be used: what is wrong with it.
    InvalidKeySet(String),
    /// [`JwtAuthLayer::issuers`] was given layers it cannot combine: why.
    Issuers(String),
    /// [`JwtAuthLayer::organization`] was given an invalid id: why.
    InvalidOrganization(String),
}

impl fmt::Display for JwtConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey { algorithm, source } => write!(
                f,
                "the PEM is not a public key usable with {algorithm:?} \
                 (expected `-----BEGIN PUBLIC KEY-----`): {source}"
            ),
            Self::Encode(source) => write!(f, "the token could not be signed: {source}"),
            Self::InvalidKeySet(reason) => write!(f, "the JWK set cannot be used: {reason}"),
            Self::Issuers(reason) => write!(f, "the issuers cannot be combined: {reason}"),
            Self::InvalidOrganization(reason) => {
                write!(f, "the fixed organization is not a valid id: {reason}")
            }
        }
    }
}

impl std::error::Error for JwtConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidKey { source, .. } | Self::Encode(source) => Some(source),
            Self::InvalidKeySet(_) | Self::Issuers(_) | Self::InvalidOrganization(_) => None,
        }
    }
}

/// The claims of a token minted by [`encode_hs256`] or [`encode`], with the default
/// claim names.
///
/// For development and tests; production tokens come from an identity provider. See
/// the [module docs](self) for an example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenClaims {
    /// The user id.
    pub sub: String,
    /// The direct groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The organization; `None` is the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The permissions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl TokenClaims {
    /// Claims for `sub`, issued now and expiring `ttl` from now.
    #[must_use]
    pub fn new(sub: impl Into<String>, ttl: Duration) -> Self {
        let now = unix_now();
        Self {
            sub: sub.into(),
            groups: Vec::new(),
            org: None,
            permissions: Vec::new(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    /// Sets the direct groups.
    #[must_use]
    pub fn with_groups<G: Into<String>>(mut self, groups: impl IntoIterator<Item = G>) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the organization.
    #[must_use]
    pub fn with_org(mut self, org: impl Into<String>) -> Self {
        self.org = Some(org.into());
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

    /// Sets the expiry, in seconds since the Unix epoch.
    #[must_use]
    pub fn with_expiry(mut self, exp: u64) -> Self {
        self.exp = exp;
        self
    }

    /// Sets "not before", in seconds since the Unix epoch.
    #[must_use]
    pub fn with_not_before(mut self, nbf: u64) -> Self {
        self.nbf = Some(nbf);
        self
    }

    /// Sets the issuer.
    #[must_use]
    pub fn with_issuer(mut self, iss: impl Into<String>) -> Self {
        self.iss = Some(iss.into());
        self
    }

    /// Sets the audience.
    #[must_use]
    pub fn with_audience(mut self, aud: impl Into<String>) -> Self {
        self.aud = Some(aud.into());
        self
    }
}

/// Signs `claims` with HS256 and `secret`: a token [`JwtAuthLayer::hs256`] with the
/// same secret accepts. For development and tests.
///
/// # Errors
///
/// [`JwtConfigError::Encode`] if signing fails, which HMAC does not in practice.
pub fn encode_hs256(secret: &[u8], claims: &TokenClaims) -> Result<String, JwtConfigError> {
    encode(&EncodingKey::from_secret(secret), Algorithm::HS256, claims)
}

/// Signs `claims` with `algorithm` and a private `key` (such as
/// `EncodingKey::from_ed_pem`). For development and tests.
///
/// # Errors
///
/// [`JwtConfigError::Encode`] if the key does not fit the algorithm.
pub fn encode(
    key: &EncodingKey,
    algorithm: Algorithm,
    claims: &TokenClaims,
) -> Result<String, JwtConfigError> {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), claims, key)
        .map_err(JwtConfigError::Encode)
}

/// Seconds since the Unix epoch; 0 if the clock is before it.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
