//! User-owned API tokens, as the store keeps them.
//!
//! What a backend stores is an [`ApiTokenRecord`]: the token's id, organization,
//! owner, the owner's groups and permissions when it was created, a name, an optional
//! expiry, the last time it was used, and the SHA-256 hash of the secret, never the
//! secret itself. The secret is `tia_` followed by 64 hexadecimal digits: 256 bits from
//! the operating system's random source. The prefix makes a token recognisable in
//! logs and to secret scanners, and tells it from a JWT in an `Authorization` header.
//!
//! SHA-256, not a password hash (Argon2, bcrypt): the secret is 256 random bits, so
//! nothing can be guessed faster than by trying 2^255 hashes, and a slow hash would
//! only slow every request. A leaked table gives no usable token.
//!
//! The methods of [`Store`](super::Store) that create, list, revoke and verify tokens
//! need the `api-tokens` feature; the [`Backend`](super::Backend) methods that store
//! them do not, so a custom backend is written once. See `api_token::ApiTokenLayer`
//! (feature `api-tokens`) for the layer that verifies them.

use std::fmt;
use std::time::SystemTime;

use crate::policy::{GroupId, OrgId, UserId};

/// The prefix of every API token: `tia_` (tower-ip-allowlist).
pub const API_TOKEN_PREFIX: &str = "tia_";

/// How many random bytes a token carries (256 bits).
pub(crate) const SECRET_BYTES: usize = 32;

/// The length of a token: the prefix and two hexadecimal digits per random byte.
pub(crate) const TOKEN_LEN: usize = API_TOKEN_PREFIX.len() + 2 * SECRET_BYTES;

/// One API token as a backend stores it: everything but the secret, of which only the
/// SHA-256 [`hash`](Self::hash) is kept. Not `#[non_exhaustive]`: a custom
/// [`Backend`](super::Backend) builds it from what it stored.
///
/// The secret is `tia_` ([`API_TOKEN_PREFIX`]) followed by 64 hexadecimal digits: 256
/// bits from the operating system's random source. The prefix makes a token
/// recognisable in logs and to secret scanners, and tells it from a JWT in an
/// `Authorization` header.
///
/// SHA-256, not a password hash (Argon2, bcrypt): the secret is 256 random bits, so
/// nothing finds it faster than trying about 2^255 candidates, and a slow hash would
/// only slow every request. A leaked table gives no usable token.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// The token's public id (16 hexadecimal digits): what lists, revocation and the
    /// audit trail name. It reveals nothing of the secret.
    pub id: String,
    /// The organization the token belongs to: its owner's.
    pub org: OrgId,
    /// The user the token acts as.
    pub owner: UserId,
    /// The owner's direct groups when the token was created.
    pub groups: Vec<GroupId>,
    /// The owner's permissions when the token was created.
    pub permissions: Vec<String>,
    /// A name the owner gave it, to recognise it in a list.
    pub name: String,
    /// SHA-256 of the whole token (prefix included).
    pub hash: [u8; 32],
    /// When it was created, to the microsecond.
    pub created: SystemTime,
    /// When it stops being accepted; `None`: never.
    pub expires: Option<SystemTime>,
    /// When it was last used, to within the layer's `last_used_interval`; `None`:
    /// never.
    pub last_used: Option<SystemTime>,
}

impl ApiTokenRecord {
    /// Whether the token has expired at `now`.
    #[must_use]
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|expires| now >= expires)
    }
}

/// The hash is not a secret, but there is no reason to print it either.
impl fmt::Debug for ApiTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiTokenRecord")
            .field("id", &self.id)
            .field("org", &self.org)
            .field("owner", &self.owner)
            .field("groups", &self.groups)
            .field("permissions", &self.permissions)
            .field("name", &self.name)
            .field("hash", &"<sha-256>")
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("last_used", &self.last_used)
            .finish()
    }
}

/// Whether `text` has the shape of an API token: the prefix, then 64 lowercase
/// hexadecimal digits. Decided by its shape alone, never by the secret's value.
#[must_use]
pub fn is_api_token(text: &str) -> bool {
    text.len() == TOKEN_LEN
        && text.starts_with(API_TOKEN_PREFIX)
        && text[API_TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(feature = "api-tokens")]
pub use self::secrets::ApiTokenSecret;
#[cfg(feature = "api-tokens")]
use self::secrets::{generate, hash, hashes_match};

#[cfg(feature = "api-tokens")]
mod secrets {
    use std::fmt;

    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;

    use super::{API_TOKEN_PREFIX, SECRET_BYTES};
    use crate::store::BackendError;

    /// A token's secret, shown once, when it is created. `Debug` never prints it.
    #[derive(Clone, PartialEq, Eq)]
    pub struct ApiTokenSecret(String);

    impl ApiTokenSecret {
        /// The token, to hand to its owner once (`tia_` and 64 hexadecimal digits).
        #[must_use]
        pub fn expose(&self) -> &str {
            &self.0
        }
    }

    impl fmt::Debug for ApiTokenSecret {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("ApiTokenSecret(<redacted>)")
        }
    }

    /// `count` random bytes from the operating system, as lowercase hexadecimal.
    fn random_hex(count: usize) -> Result<String, BackendError> {
        let mut bytes = vec![0u8; count];
        getrandom::fill(&mut bytes).map_err(|err| {
            BackendError::new(format!(
                "the operating system's random source failed ({err}): no token was created"
            ))
        })?;
        Ok(hex(&bytes))
    }

    fn hex(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// A new secret and a new public id.
    pub(crate) fn generate() -> Result<(ApiTokenSecret, String), BackendError> {
        let secret = format!("{API_TOKEN_PREFIX}{}", random_hex(SECRET_BYTES)?);
        let id = random_hex(8)?;
        Ok((ApiTokenSecret(secret), id))
    }

    /// SHA-256 of the whole token: what is stored, and what a presented token is
    /// looked up by. A token that shares a prefix with a real one has an unrelated
    /// hash, so neither the look-up nor the comparison can be timed to learn the
    /// secret a character at a time.
    pub(crate) fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Compares two hashes in constant time: after a look-up by hash, the stored hash
    /// is checked again, so a backend that matched loosely cannot let a token in.
    pub(crate) fn hashes_match(stored: &[u8; 32], presented: &[u8; 32]) -> bool {
        stored.ct_eq(presented).into()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::store::api_token::is_api_token;

        #[test]
        fn generated_tokens_have_the_shape_and_differ() {
            let (a, id_a) = generate().unwrap();
            let (b, id_b) = generate().unwrap();
            assert!(is_api_token(a.expose()), "{}", a.expose());
            assert_ne!(a, b);
            assert_ne!(id_a, id_b);
            assert_eq!(id_a.len(), 16);
            assert!(!format!("{a:?}").contains(a.expose()));
        }

        #[test]
        fn a_near_miss_has_an_unrelated_hash() {
            // Two tokens equal but for the last digit: what a timing attack on a
            // character-by-character comparison would try. Their hashes, which are
            // all that is looked up and compared, differ from the first byte.
            let real = format!("{API_TOKEN_PREFIX}{}", "ab".repeat(32));
            let near = format!("{API_TOKEN_PREFIX}{}a", &"ab".repeat(32)[..63]);
            assert_eq!(real.len(), near.len());
            assert_eq!(real[..real.len() - 1], near[..near.len() - 1]);
            let (h_real, h_near) = (hash(&real), hash(&near));
            assert_ne!(h_real[0], h_near[0]);
            assert!(hashes_match(&h_real, &h_real));
            assert!(!hashes_match(&h_real, &h_near));
        }

        #[test]
        fn the_shape_check_is_exact() {
            let good = format!("{API_TOKEN_PREFIX}{}", "0f".repeat(32));
            assert!(is_api_token(&good));
            for bad in [
                String::new(),
                API_TOKEN_PREFIX.to_owned(),
                good[..good.len() - 1].to_owned(),
                format!("{good}0"),
                good.to_uppercase(),
                good.replacen("tia_", "tib_", 1),
                format!("{API_TOKEN_PREFIX}{}", "zz".repeat(32)),
                "eyJhbGciOiJIUzI1NiJ9.e30.x".to_owned(),
            ] {
                assert!(!is_api_token(&bad), "{bad}");
            }
        }
    }
}

#[cfg(feature = "api-tokens")]
pub use self::store_methods::{ApiTokenDraft, ApiTokenRejection, MAX_API_TOKENS_PER_USER};

#[cfg(feature = "api-tokens")]
mod store_methods {
    use std::fmt;
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde_json::{json, Value};

    use super::{generate, hash, hashes_match, is_api_token, ApiTokenRecord, ApiTokenSecret};
    use crate::policy::OrgId;
    use crate::principal::Principal;
    use crate::store::audit::{from_micros, micros};
    use crate::store::{check_principal_id, Actor, AuditRecord, BackendError, Store, StoreError};

    /// The most tokens one user may hold in an organization: enough for every
    /// machine a person or a service account runs, and a bound on what a stolen
    /// session can create.
    pub const MAX_API_TOKENS_PER_USER: usize = 100;

    /// The longest name of a token, in characters.
    const MAX_NAME_CHARS: usize = 100;

    /// A token to create: its name and when it expires.
    #[derive(Debug, Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct ApiTokenDraft {
        /// A name to recognise it by (1 to 100 characters, no control characters).
        pub name: String,
        /// When it stops being accepted; `None`: never.
        pub expires: Option<SystemTime>,
    }

    impl ApiTokenDraft {
        /// A token named `name` that does not expire.
        #[must_use]
        pub fn new(name: impl Into<String>) -> Self {
            Self {
                name: name.into(),
                expires: None,
            }
        }

        /// Expires at `at`.
        #[must_use]
        pub fn expires(mut self, at: SystemTime) -> Self {
            self.expires = Some(at);
            self
        }
    }

    /// Why a presented API token is not accepted. It says nothing of the token.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum ApiTokenRejection {
        /// No such token: never issued, revoked, or mistyped.
        Unknown,
        /// The token has expired.
        Expired,
        /// The token's owner is no longer known to the application (the
        /// `current_owner` hook of the layer answered `None`).
        OwnerUnknown,
        /// The store could not be read: the token cannot be checked now.
        Unavailable,
    }

    impl ApiTokenRejection {
        /// The machine-readable code of the error document.
        #[must_use]
        pub fn code(self) -> &'static str {
            match self {
                Self::Unknown => "invalidApiToken",
                Self::Expired => "apiTokenExpired",
                Self::OwnerUnknown => "apiTokenOwnerUnknown",
                Self::Unavailable => "apiTokensUnavailable",
            }
        }

        /// A sentence for the caller.
        #[must_use]
        pub fn description(self) -> &'static str {
            match self {
                Self::Unknown => "the API token is not valid: it was revoked, or never issued",
                Self::Expired => "the API token has expired: create a new one",
                Self::OwnerUnknown => "the owner of the API token is no longer known",
                Self::Unavailable => "API tokens cannot be checked now: retry later",
            }
        }
    }

    impl fmt::Display for ApiTokenRejection {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.description())
        }
    }

    impl std::error::Error for ApiTokenRejection {}

    fn unix_seconds(time: SystemTime) -> Option<u64> {
        time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
    }

    /// What the audit trail shows of a token: never its hash, never its secret.
    fn audit_state(token: &ApiTokenRecord) -> Value {
        json!({
            "id": token.id,
            "name": token.name,
            "owner": token.owner.as_str(),
            "groups": token.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "expiresUnix": token.expires.and_then(unix_seconds),
        })
    }

    impl Store {
        fn token_audit(
            &self,
            actor: &str,
            client_ip: Option<IpAddr>,
            operation: &str,
            token: &ApiTokenRecord,
            before: Option<Value>,
            after: Option<Value>,
        ) -> AuditRecord {
            // A token changes no policy: the organization's data version stays.
            let version = self.cached(&token.org).map_or(0, |record| record.version);
            AuditRecord {
                id: 0,
                time: from_micros(micros(SystemTime::now())),
                org: token.org.clone(),
                actor: actor.to_owned(),
                client_ip,
                forced: false,
                operation: operation.to_owned(),
                entity_type: "apiToken".to_owned(),
                entity_id: token.id.clone(),
                version_before: version,
                version_after: version,
                before,
                after,
            }
        }

        /// Creates an API token for `owner` in `org`, recording the owner's current
        /// groups and permissions with it, and returns it with its secret: the only
        /// time the secret is known. The creation is an audit event
        /// (`createApiToken`). See [`ApiTokenRecord`] for what is stored.
        ///
        /// ```
        /// use tower_ip_allowlist::policy::OrgId;
        /// use tower_ip_allowlist::principal::Principal;
        /// use tower_ip_allowlist::store::{Actor, ApiTokenDraft, Store};
        ///
        /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
        /// let store = Store::memory();
        /// let ci = Principal::new("ci-bot").with_groups(["build-agents"]);
        /// let (token, secret) = store
        ///     .create_api_token(&Actor::new(&ci, None), &OrgId::default(), &ci, ApiTokenDraft::new("deploys"))
        ///     .await?;
        /// assert!(secret.expose().starts_with("tia_"));
        /// let found = store.verify_api_token(secret.expose(), None, std::time::Duration::from_secs(60)).await?;
        /// assert_eq!((found.id, found.owner.as_str()), (token.id, "ci-bot"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// # }).unwrap();
        /// ```
        ///
        /// # Errors
        ///
        /// [`StoreError::InvalidApiToken`] for a name that is empty, longer than 100
        /// characters or has control characters, an expiry in the past, or an owner
        /// who already holds [`MAX_API_TOKENS_PER_USER`]; [`StoreError::InvalidId`]
        /// for an organization or owner id the store refuses;
        /// [`StoreError::Backend`] when the backend fails (or keeps no tokens).
        pub async fn create_api_token(
            &self,
            actor: &Actor,
            org: &OrgId,
            owner: &Principal,
            draft: ApiTokenDraft,
        ) -> Result<(ApiTokenRecord, ApiTokenSecret), StoreError> {
            check_principal_id("organization", org.as_str())?;
            check_principal_id("user", owner.user.as_str())?;
            let name = draft.name.trim();
            if name.is_empty()
                || name.chars().count() > MAX_NAME_CHARS
                || name.chars().any(char::is_control)
            {
                return Err(StoreError::InvalidApiToken {
                    reason: format!(
                        "the name must be 1 to {MAX_NAME_CHARS} characters without control characters"
                    ),
                });
            }
            let now = from_micros(micros(SystemTime::now()));
            if draft.expires.is_some_and(|at| at <= now) {
                return Err(StoreError::InvalidApiToken {
                    reason: "the expiry is in the past: give a time in the future, or none"
                        .to_owned(),
                });
            }
            let held = self
                .inner
                .backend
                .api_tokens(org, Some(&owner.user))
                .await?
                .len();
            if held >= MAX_API_TOKENS_PER_USER {
                return Err(StoreError::InvalidApiToken {
                    reason: format!(
                        "`{}` already holds {held} API tokens, the most a user may: revoke one first",
                        owner.user
                    ),
                });
            }
            let (secret, id) = generate()?;
            let token = ApiTokenRecord {
                id,
                org: org.clone(),
                owner: owner.user.clone(),
                groups: owner.groups.clone(),
                permissions: owner.permissions.clone(),
                name: name.to_owned(),
                hash: hash(secret.expose()),
                created: now,
                expires: draft.expires.map(|at| from_micros(micros(at))),
                last_used: None,
            };
            let audit = self.token_audit(
                actor.name(),
                actor.addr,
                "createApiToken",
                &token,
                None,
                Some(audit_state(&token)),
            );
            self.inner.backend.insert_api_token(&token, &audit).await?;
            tracing::info!(
                target: "tower_ip_allowlist::audit",
                organization = %org,
                actor = actor.name(),
                operation = "createApiToken",
                token_id = %token.id,
                owner = %token.owner,
                "allowlist change"
            );
            Ok((token, secret))
        }

        /// `org`'s API tokens, only `owner`'s when given, oldest first. No secret is
        /// ever returned: the store does not have them.
        ///
        /// # Errors
        ///
        /// [`BackendError`] when the backend cannot be read.
        pub async fn api_tokens(
            &self,
            org: &OrgId,
            owner: Option<&str>,
        ) -> Result<Vec<ApiTokenRecord>, BackendError> {
            let owner = owner.map(crate::policy::UserId::from);
            self.inner.backend.api_tokens(org, owner.as_ref()).await
        }

        /// Revokes `org`'s token `id` (only if `owner` owns it, when given). Every
        /// replica refuses it from the next request on: the token is looked up in the
        /// backend on each use. The revocation is an audit event (`revokeApiToken`).
        ///
        /// # Errors
        ///
        /// [`StoreError::NotFound`] (kind `apiToken`) when there is no such token
        /// (or `owner` does not own it); [`StoreError::Backend`] when the backend
        /// fails.
        pub async fn revoke_api_token(
            &self,
            actor: &Actor,
            org: &OrgId,
            id: &str,
            owner: Option<&str>,
        ) -> Result<(), StoreError> {
            let not_found = || StoreError::NotFound {
                kind: "apiToken",
                id: id.chars().take(64).collect(),
            };
            let tokens = self.api_tokens(org, owner).await?;
            let Some(token) = tokens.into_iter().find(|t| t.id == id) else {
                return Err(not_found());
            };
            let audit = self.token_audit(
                actor.name(),
                actor.addr,
                "revokeApiToken",
                &token,
                Some(audit_state(&token)),
                None,
            );
            let owner = owner.map(crate::policy::UserId::from);
            if !self
                .inner
                .backend
                .delete_api_token(org, id, owner.as_ref(), &audit)
                .await?
            {
                return Err(not_found());
            }
            tracing::info!(
                target: "tower_ip_allowlist::audit",
                organization = %org,
                actor = actor.name(),
                operation = "revokeApiToken",
                token_id = %token.id,
                owner = %token.owner,
                "allowlist change"
            );
            Ok(())
        }

        /// The token `presented` is, if it is valid now: one look-up by its SHA-256
        /// hash, then a constant-time comparison of the hashes. Its last use is
        /// written when the stored one is unset or older than `last_used_interval`,
        /// with an audit event (`useApiToken`, naming `client_ip`): at most one write
        /// per token per interval, whatever the traffic. A failure to write it is
        /// logged and does not refuse the token.
        ///
        /// # Errors
        ///
        /// [`ApiTokenRejection::Unknown`] for anything that is not a current token
        /// (malformed, revoked, never issued), [`ApiTokenRejection::Expired`], and
        /// [`ApiTokenRejection::Unavailable`] when the backend cannot be read (logged
        /// at `ERROR`).
        pub async fn verify_api_token(
            &self,
            presented: &str,
            client_ip: Option<IpAddr>,
            last_used_interval: Duration,
        ) -> Result<ApiTokenRecord, ApiTokenRejection> {
            if !is_api_token(presented) {
                return Err(ApiTokenRejection::Unknown);
            }
            let presented_hash = hash(presented);
            let token = match self.inner.backend.api_token_by_hash(&presented_hash).await {
                Ok(Some(token)) if hashes_match(&token.hash, &presented_hash) => token,
                Ok(_) => return Err(ApiTokenRejection::Unknown),
                Err(err) => {
                    tracing::error!(error = %err, "allowlist: API tokens cannot be read from the store");
                    return Err(ApiTokenRejection::Unavailable);
                }
            };
            let now = SystemTime::now();
            if token.is_expired(now) {
                return Err(ApiTokenRejection::Expired);
            }
            let stale_before = now.checked_sub(last_used_interval).unwrap_or(UNIX_EPOCH);
            if token.last_used.is_none_or(|last| last < stale_before) {
                let audit = self.token_audit(
                    token.owner.as_str(),
                    client_ip,
                    "useApiToken",
                    &token,
                    None,
                    None,
                );
                match self
                    .inner
                    .backend
                    .touch_api_token(&token.org, &token.id, now, stale_before, &audit)
                    .await
                {
                    Ok(true) => {
                        tracing::debug!(token_id = %token.id, "allowlist: API token last use recorded")
                    }
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(token_id = %token.id, error = %err, "allowlist: could not record an API token's last use; the token is accepted")
                    }
                }
            }
            Ok(token)
        }
    }
}
