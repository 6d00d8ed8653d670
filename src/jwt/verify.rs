//! The verification itself: from the `Authorization` header to a [`Principal`] or a
//! [`JwtRejection`]. Nothing here knows about services or responses.

use std::fmt;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::keys::Selected;
#[cfg(feature = "jwks")]
use super::RemoteKeys;
use super::{unix_now, ClaimNames, JwtRejection, KeySet, MAX_TOKEN_LEN};
use crate::policy::validate_id;
use crate::principal::Principal;

/// What tokens are verified with: one static key, a [`KeySet`], or keys fetched from
/// an identity provider.
#[derive(Clone)]
pub(super) enum Keys {
    One {
        key: DecodingKey,
        algorithm: Algorithm,
    },
    Set(KeySet),
    #[cfg(feature = "jwks")]
    Remote(RemoteKeys),
}

/// The algorithms a key of a set may have.
const SET_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Everything the layer verifies the tokens of one issuer with. Shared behind an `Arc`.
#[derive(Clone)]
pub(super) struct JwtConfig {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    organization: Option<String>,
    leeway: Duration,
    claims: ClaimNames,
    max_token_len: usize,
    /// Built from the fields above by [`JwtConfig::rebuild`]; signature, algorithm,
    /// `iss` and `aud` only: time is checked here, with saturating arithmetic. One for a
    /// static key; one for each algorithm of [`SET_ALGORITHMS`] for a key set (the JWT
    /// library wants the algorithms of one validation all of the key's family).
    validations: Vec<Validation>,
}

impl JwtConfig {
    pub(super) fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        Self::with_keys(Keys::One { key, algorithm })
    }

    pub(super) fn with_keys(keys: Keys) -> Self {
        let mut config = Self {
            keys,
            issuer: None,
            audience: None,
            organization: None,
            leeway: Duration::from_secs(60),
            claims: ClaimNames::default(),
            max_token_len: MAX_TOKEN_LEN,
            validations: Vec::new(),
        };
        config.rebuild();
        config
    }

    /// The one algorithm accepted, for a static key.
    pub(super) fn algorithm(&self) -> Option<Algorithm> {
        match self.keys {
            Keys::One { algorithm, .. } => Some(algorithm),
            _ => None,
        }
    }

    pub(super) fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub(super) fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    pub(super) fn set_issuer(&mut self, issuer: String) {
        self.issuer = Some(issuer);
        self.rebuild();
    }

    pub(super) fn set_audience(&mut self, audience: String) {
        self.audience = Some(audience);
        self.rebuild();
    }

    pub(super) fn set_organization(&mut self, organization: String) {
        self.organization = Some(organization);
    }

    pub(super) fn set_leeway(&mut self, leeway: Duration) {
        self.leeway = leeway;
    }

    pub(super) fn set_claims(&mut self, claims: ClaimNames) {
        self.claims = claims;
    }

    pub(super) fn set_max_token_len(&mut self, bytes: usize) {
        self.max_token_len = bytes;
    }

    fn rebuild(&mut self) {
        self.validations = match &self.keys {
            Keys::One { algorithm, .. } => vec![self.validation(*algorithm)],
            _ => SET_ALGORITHMS
                .iter()
                .map(|algorithm| self.validation(*algorithm))
                .collect(),
        };
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        validation.validate_aud = self.audience.is_some();
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        validation
    }

    /// The validation for `algorithm` (always found: one per algorithm a key can have).
    fn validation_for(&self, algorithm: Algorithm) -> Result<&Validation, JwtRejection> {
        self.validations
            .iter()
            .find(|validation| validation.algorithms.first() == Some(&algorithm))
            .ok_or(JwtRejection::UnsupportedAlgorithm)
    }

    /// The claims of `token`, its signature, algorithm, issuer and audience verified.
    fn decode(&self, token: &str) -> Result<Map<String, Value>, JwtRejection> {
        let set = match &self.keys {
            Keys::One { key, algorithm } => {
                return jsonwebtoken::decode::<Map<String, Value>>(
                    token,
                    key,
                    self.validation_for(*algorithm)?,
                )
                .map(|data| data.claims)
                .map_err(|error| rejection(error.kind()));
            }
            Keys::Set(set) => set,
            #[cfg(feature = "jwks")]
            Keys::Remote(remote) => {
                let Some(set) = remote.current() else {
                    remote.request_refetch();
                    return Err(JwtRejection::KeysUnavailable);
                };
                return self.decode_with_set(token, &set, Some(remote));
            }
        };
        self.decode_with_set(token, set, None)
    }

    fn decode_with_set(
        &self,
        token: &str,
        set: &KeySet,
        #[cfg(feature = "jwks")] remote: Option<&RemoteKeys>,
        #[cfg(not(feature = "jwks"))] _remote: Option<&()>,
    ) -> Result<Map<String, Value>, JwtRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| rejection(error.kind()))?;
        match set.select(header.kid.as_deref()) {
            Selected::Key(key) if key.algorithm == header.alg => {
                let validation = self.validation_for(key.algorithm)?;
                jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
                    .map(|data| data.claims)
                    .map_err(|error| rejection(error.kind()))
            }
            Selected::Key(_) => Err(JwtRejection::UnsupportedAlgorithm),
            Selected::Unknown => {
                #[cfg(feature = "jwks")]
                if let Some(remote) = remote {
                    remote.request_refetch();
                }
                Err(JwtRejection::UnknownKey)
            }
        }
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch).
    pub(super) fn verify(&self, token: &str, now: u64) -> Result<Principal, JwtRejection> {
        if token.len() > self.max_token_len {
            return Err(JwtRejection::TokenTooLong);
        }
        let claims = self.decode(token)?;

        let leeway = self.leeway.as_secs();
        let exp = numeric_date(claims.get("exp"))?.ok_or(JwtRejection::InvalidClaims)?;
        if now >= exp.saturating_add(leeway) {
            return Err(JwtRejection::Expired);
        }
        if let Some(nbf) = numeric_date(claims.get("nbf"))? {
            if nbf > now.saturating_add(leeway) {
                return Err(JwtRejection::NotYetValid);
            }
        }

        let names = &self.claims;
        let user = match claim(&claims, names.user_claim()) {
            Some(Value::String(user)) if !user.is_empty() => user.as_str(),
            _ => return Err(JwtRejection::InvalidClaims),
        };
        let organization = match &self.organization {
            Some(fixed) => Some(fixed.as_str()),
            None => match claim(&claims, names.org_claim()) {
                None => None,
                Some(Value::String(org)) if !org.is_empty() => Some(org.as_str()),
                Some(_) => return Err(JwtRejection::InvalidClaims),
            },
        };
        let mut groups = string_list(claim(&claims, names.groups_claim()), false)?;
        if names.group_ancestors_enabled() {
            groups = with_ancestors(groups);
        }
        let permissions = string_list(claim(&claims, names.permissions_claim()), true)?;
        // The one id rule, checked once here: everything downstream (the allowlist,
        // the store, every backend) can take these ids as they are.
        validate_id(user).map_err(|_| JwtRejection::InvalidUserId)?;
        if groups.iter().any(|group| validate_id(group).is_err()) {
            return Err(JwtRejection::InvalidGroupId);
        }
        if organization.is_some_and(|org| validate_id(org).is_err()) {
            return Err(JwtRejection::InvalidOrganizationId);
        }
        let mut principal = Principal::new(user)
            .with_groups(groups)
            .with_permissions(permissions);
        if let Some(organization) = organization {
            principal = principal.with_organization(organization);
        }
        Ok(principal)
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("organization", &self.organization)
            .field("leeway", &self.leeway)
            .field("claims", &self.claims)
            .field("max_token_len", &self.max_token_len)
            .finish()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One { algorithm, .. } => f
                .debug_struct("One")
                .field("algorithm", algorithm)
                .field("key", &format_args!("<redacted>"))
                .finish(),
            Self::Set(set) => f.debug_tuple("Set").field(set).finish(),
            #[cfg(feature = "jwks")]
            Self::Remote(remote) => f.debug_tuple("Remote").field(remote).finish(),
        }
    }
}

/// The verification of the whole layer: one [`JwtConfig`], or one per issuer, picked by
/// the token's `iss` before it is verified.
#[derive(Clone, Debug)]
pub(super) struct Verifier {
    configs: Vec<JwtConfig>,
}

impl Verifier {
    pub(super) fn one(config: JwtConfig) -> Self {
        Self {
            configs: vec![config],
        }
    }

    pub(super) fn by_issuer(configs: Vec<JwtConfig>) -> Self {
        Self { configs }
    }

    pub(super) fn configs(&self) -> &[JwtConfig] {
        &self.configs
    }

    /// Each configuration, for a builder method that sets something on all.
    pub(super) fn configs_mut(&mut self) -> &mut [JwtConfig] {
        &mut self.configs
    }

    /// The caller named by the request's `Authorization` header: `Ok(None)` without one.
    pub(super) fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Principal>, JwtRejection> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(JwtRejection::MalformedHeader);
        }
        let max_len = self
            .configs
            .iter()
            .map(JwtConfig::max_token_len)
            .max()
            .unwrap_or(MAX_TOKEN_LEN);
        let token = bearer_token(value, max_len)?;
        self.config_for(token)?.verify(token, unix_now()).map(Some)
    }

    /// The configuration for the token's issuer: read without verifying anything, then
    /// verified by that configuration, which requires `iss` to be its issuer.
    fn config_for(&self, token: &str) -> Result<&JwtConfig, JwtRejection> {
        if let [only] = self.configs.as_slice() {
            return Ok(only);
        }
        #[derive(serde::Deserialize)]
        struct Peek {
            iss: Option<String>,
        }
        let peek: Peek = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| JwtRejection::MalformedToken)?;
        let iss = peek.iss.ok_or(JwtRejection::InvalidIssuer)?;
        self.configs
            .iter()
            .find(|config| config.issuer() == Some(iss.as_str()))
            .ok_or(JwtRejection::InvalidIssuer)
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer_token(value: &HeaderValue, max_len: usize) -> Result<&str, JwtRejection> {
    let value = value.to_str().map_err(|_| JwtRejection::MalformedHeader)?;
    let (scheme, token) = value.split_once(' ').ok_or(JwtRejection::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(JwtRejection::MalformedHeader);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(JwtRejection::MalformedHeader);
    }
    if token.len() > max_len {
        return Err(JwtRejection::TokenTooLong);
    }
    Ok(token)
}

/// A NumericDate claim: absent, or a non-negative number of seconds.
fn numeric_date(value: Option<&Value>) -> Result<Option<u64>, JwtRejection> {
    let Some(value) = value else {
        return Ok(None);
    };
    if let Some(seconds) = value.as_u64() {
        return Ok(Some(seconds));
    }
    match value.as_f64() {
        // Saturating conversion: a date past u64::MAX seconds is simply far away.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds as u64)),
        _ => Err(JwtRejection::InvalidClaims),
    }
}

/// The claim `name`, or, when `name` starts with `/`, the value at that JSON pointer
/// (RFC 6901) in the claims: `/realm_access/roles`.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let Some(pointer) = name.strip_prefix('/') else {
        return claims.get(name);
    };
    let (first, rest) = match pointer.split_once('/') {
        Some((first, _)) => (first, &pointer[first.len()..]),
        None => (pointer, ""),
    };
    let first = first.replace("~1", "/").replace("~0", "~");
    claims.get(&first)?.pointer(rest)
}

/// An array of non-empty strings, or, when `split` is set, a string of them separated
/// by spaces (`scope`, `scp`); absent is empty.
fn string_list(value: Option<&Value>, split: bool) -> Result<Vec<&str>, JwtRejection> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() => Ok(s.as_str()),
                _ => Err(JwtRejection::InvalidClaims),
            })
            .collect(),
        Some(Value::String(s)) if split => Ok(s.split(' ').filter(|p| !p.is_empty()).collect()),
        Some(_) => Err(JwtRejection::InvalidClaims),
    }
}

/// Each group, and for a path (`/engineering/platform`) each of its ancestors
/// (`/engineering`), once each, in order of appearance.
fn with_ancestors(groups: Vec<&str>) -> Vec<&str> {
    let mut all: Vec<&str> = Vec::with_capacity(groups.len());
    for group in groups {
        let mut cut = group.len();
        let mut path = Vec::new();
        loop {
            path.push(&group[..cut]);
            match group[..cut].rfind('/') {
                Some(at) if at > 0 => cut = at,
                _ => break,
            }
        }
        for group in path.into_iter().rev() {
            if !all.contains(&group) {
                all.push(group);
            }
        }
    }
    all
}

fn rejection(error: &ErrorKind) -> JwtRejection {
    match error {
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => JwtRejection::UnsupportedAlgorithm,
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::InvalidIssuer => JwtRejection::InvalidIssuer,
        ErrorKind::InvalidAudience => JwtRejection::InvalidAudience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => JwtRejection::InvalidIssuer,
            "aud" => JwtRejection::InvalidAudience,
            _ => JwtRejection::InvalidClaims,
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => JwtRejection::InvalidClaims,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => JwtRejection::MalformedToken,
        // The signature, or a key that cannot verify it (a key of another family than
        // the algorithm): either way the token is not proven.
        _ => JwtRejection::InvalidSignature,
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"unit-test secret, thirty-two bytes or more";
    const NOW: u64 = 1_700_000_000;

    fn sign(claims: &Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn config() -> JwtConfig {
        JwtConfig::new(DecodingKey::from_secret(SECRET), Algorithm::HS256)
    }

    struct Case {
        name: &'static str,
        claims: Value,
        want: Result<Principal, JwtRejection>,
    }

    #[test]
    fn claims_table() {
        let exp = NOW + 300;
        let cases = [
            Case {
                name: "all claims",
                claims: json!({"sub": "alice", "groups": ["a", "b"], "org": "acme",
                               "permissions": ["MANAGE"], "exp": exp}),
                want: Ok(Principal::new("alice")
                    .with_groups(["a", "b"])
                    .with_organization("acme")
                    .with_permissions(["MANAGE"])),
            },
            Case {
                name: "only sub and exp",
                claims: json!({"sub": "bob", "exp": exp}),
                want: Ok(Principal::new("bob")),
            },
            Case {
                name: "exp as a float",
                claims: json!({"sub": "bob", "exp": exp as f64 + 0.5}),
                want: Ok(Principal::new("bob")),
            },
            Case {
                name: "no exp",
                claims: json!({"sub": "bob"}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "exp as a string",
                claims: json!({"sub": "bob", "exp": exp.to_string()}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "negative exp",
                claims: json!({"sub": "bob", "exp": -1}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "expired beyond the leeway",
                claims: json!({"sub": "bob", "exp": NOW - 60}),
                want: Err(JwtRejection::Expired),
            },
            Case {
                name: "expired within the leeway",
                claims: json!({"sub": "bob", "exp": NOW - 59}),
                want: Ok(Principal::new("bob")),
            },
            Case {
                name: "nbf within the leeway",
                claims: json!({"sub": "bob", "exp": exp, "nbf": NOW + 60}),
                want: Ok(Principal::new("bob")),
            },
            Case {
                name: "nbf beyond the leeway",
                claims: json!({"sub": "bob", "exp": exp, "nbf": NOW + 61}),
                want: Err(JwtRejection::NotYetValid),
            },
            Case {
                name: "nbf not a number",
                claims: json!({"sub": "bob", "exp": exp, "nbf": "soon"}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "no sub",
                claims: json!({"exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "empty sub",
                claims: json!({"sub": "", "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "numeric sub",
                claims: json!({"sub": 42, "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "groups a string",
                claims: json!({"sub": "bob", "groups": "admins", "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "groups with a number",
                claims: json!({"sub": "bob", "groups": ["admins", 7], "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "groups null",
                claims: json!({"sub": "bob", "groups": null, "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "org an array",
                claims: json!({"sub": "bob", "org": ["acme"], "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "permissions an object",
                claims: json!({"sub": "bob", "permissions": {"MANAGE": true}, "exp": exp}),
                want: Err(JwtRejection::InvalidClaims),
            },
            Case {
                name: "user id with NUL",
                claims: json!({"sub": "bob\u{0}", "exp": exp}),
                want: Err(JwtRejection::InvalidUserId),
            },
            Case {
                name: "user id of 256 bytes",
                claims: json!({"sub": "b".repeat(256), "exp": exp}),
                want: Err(JwtRejection::InvalidUserId),
            },
            Case {
                name: "group id with a line break",
                claims: json!({"sub": "bob", "groups": ["ok", "a\nb"], "exp": exp}),
                want: Err(JwtRejection::InvalidGroupId),
            },
            Case {
                name: "organization id with NUL",
                claims: json!({"sub": "bob", "org": "acme\u{0}", "exp": exp}),
                want: Err(JwtRejection::InvalidOrganizationId),
            },
            Case {
                name: "organization id of 8000 bytes",
                claims: json!({"sub": "bob", "org": "o".repeat(8000), "exp": exp}),
                want: Err(JwtRejection::InvalidOrganizationId),
            },
            Case {
                name: "organization id of 255 bytes",
                claims: json!({"sub": "bob", "org": "o".repeat(255), "exp": exp}),
                want: Ok(Principal::new("bob").with_organization("o".repeat(255))),
            },
            Case {
                name: "aud ignored when no audience is configured",
                claims: json!({"sub": "bob", "aud": "elsewhere", "iss": "anyone", "exp": exp}),
                want: Ok(Principal::new("bob")),
            },
        ];
        let config = config();
        for case in cases {
            assert_eq!(
                config.verify(&sign(&case.claims), NOW),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let mut config = config();
        config.set_issuer("https://issuer.example".to_owned());
        config.set_audience("api".to_owned());
        let exp = NOW + 300;
        let cases = [
            (
                json!({"sub": "a", "exp": exp, "iss": "https://issuer.example", "aud": "api"}),
                Ok(Principal::new("a")),
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://issuer.example", "aud": ["x", "api"]}),
                Ok(Principal::new("a")),
            ),
            (
                json!({"sub": "a", "exp": exp, "aud": "api"}),
                Err(JwtRejection::InvalidIssuer),
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "api"}),
                Err(JwtRejection::InvalidIssuer),
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://issuer.example"}),
                Err(JwtRejection::InvalidAudience),
            ),
            (
                json!({"sub": "a", "exp": exp, "iss": "https://issuer.example", "aud": "other"}),
                Err(JwtRejection::InvalidAudience),
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(config.verify(&sign(&claims), NOW), want, "{claims}");
        }
    }

    #[test]
    fn leeway_and_huge_leeway_do_not_overflow() {
        let mut config = config();
        config.set_leeway(Duration::ZERO);
        let token = sign(&json!({"sub": "a", "exp": NOW}));
        assert_eq!(config.verify(&token, NOW), Err(JwtRejection::Expired));
        assert!(config.verify(&token, NOW - 1).is_ok());

        config.set_leeway(Duration::MAX);
        let token = sign(&json!({"sub": "a", "exp": u64::MAX, "nbf": u64::MAX}));
        assert!(config.verify(&token, NOW).is_ok());
        let token = sign(&json!({"sub": "a", "exp": 1e300}));
        assert!(config.verify(&token, u64::MAX - 1).is_ok());
        assert_eq!(config.verify(&token, u64::MAX), Err(JwtRejection::Expired));
    }

    #[test]
    fn custom_claim_names() {
        let mut config = config();
        config.set_claims(
            ClaimNames::default()
                .user("oid")
                .groups("roles")
                .org("tid")
                .permissions("scp"),
        );
        let token = sign(
            &json!({"oid": "u1", "sub": "ignored", "roles": ["r"], "tid": "t",
                                 "scp": ["read"], "groups": 5, "exp": NOW + 10}),
        );
        assert_eq!(
            config.verify(&token, NOW),
            Ok(Principal::new("u1")
                .with_groups(["r"])
                .with_organization("t")
                .with_permissions(["read"]))
        );
    }

    struct HeaderCase {
        name: &'static str,
        value: Vec<u8>,
        want: Result<Option<Principal>, JwtRejection>,
    }

    #[test]
    fn header_table() {
        let token = sign(&json!({"sub": "a", "exp": unix_now() + 300}));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        let case = |name, value: &[u8], want| HeaderCase {
            name,
            value: value.to_vec(),
            want,
        };
        let alice = || Ok(Some(Principal::new("a")));
        let cases = [
            case("bearer", format!("Bearer {token}").as_bytes(), alice()),
            case("lower case", format!("bearer {token}").as_bytes(), alice()),
            case("two spaces", format!("BEARER  {token}").as_bytes(), alice()),
            case("scheme only", b"Bearer", Err(JwtRejection::MalformedHeader)),
            case("no token", b"Bearer ", Err(JwtRejection::MalformedHeader)),
            case(
                "two parts",
                b"Bearer a.b",
                Err(JwtRejection::MalformedToken),
            ),
            case(
                "garbage",
                b"Bearer !!!.???.***",
                Err(JwtRejection::MalformedToken),
            ),
            case(
                "basic",
                b"Basic YWxpY2U6c2VjcmV0",
                Err(JwtRejection::MalformedHeader),
            ),
            case(
                "not utf-8",
                b"Bearer \xff\xfe",
                Err(JwtRejection::MalformedHeader),
            ),
            case(
                "two tokens",
                b"Bearer a b",
                Err(JwtRejection::MalformedHeader),
            ),
            case(
                "too long",
                format!("Bearer {long}").as_bytes(),
                Err(JwtRejection::TokenTooLong),
            ),
            case(
                "prefix",
                format!("Bearerx {token}").as_bytes(),
                Err(JwtRejection::MalformedHeader),
            ),
        ];
        let config = config();
        for case in cases {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_bytes(&case.value).unwrap());
            assert_eq!(
                Verifier::one(config.clone()).authenticate(&headers),
                case.want,
                "{}",
                case.name
            );
        }

        assert_eq!(
            Verifier::one(config.clone()).authenticate(&HeaderMap::new()),
            Ok(None)
        );
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        headers.append(AUTHORIZATION, value.clone());
        headers.append(AUTHORIZATION, value);
        assert_eq!(
            Verifier::one(config.clone()).authenticate(&headers),
            Err(JwtRejection::MalformedHeader),
            "given twice"
        );
    }

    #[test]
    fn algorithm_none_and_other_algorithms_are_refused() {
        let config = config();
        let claims = json!({"sub": "a", "exp": NOW + 300});
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            config.verify(&hs512, NOW),
            Err(JwtRejection::UnsupportedAlgorithm)
        );

        // {"alg":"none","typ":"JWT"}, unsigned.
        let payload = sign(&claims);
        let payload = payload.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert!(config.verify(&none, NOW).is_err());
    }

    #[test]
    fn the_token_size_cap_is_configurable() {
        let token = sign(&json!({"sub": "a", "exp": NOW + 300}));
        let mut config = config();
        config.set_max_token_len(token.len());
        assert!(config.verify(&token, NOW).is_ok(), "at the cap");
        config.set_max_token_len(token.len() - 1);
        assert_eq!(
            config.verify(&token, NOW),
            Err(JwtRejection::TokenTooLong),
            "one byte over"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        assert_eq!(
            Verifier::one(config.clone()).authenticate(&headers),
            Err(JwtRejection::TokenTooLong)
        );
    }

    #[test]
    fn provider_claim_shapes() {
        let mut config = config();
        config.set_claims(
            ClaimNames::default()
                .groups("/realm_access/roles")
                .permissions("/resource_access/orders~1api/roles")
                .org("/tenant/id"),
        );
        let exp = NOW + 300;
        let token = sign(&json!({"sub": "u", "exp": exp,
            "realm_access": {"roles": ["staff"]},
            "resource_access": {"orders/api": {"roles": ["READ", "WRITE"]}},
            "tenant": {"id": "acme"}}));
        assert_eq!(
            config.verify(&token, NOW),
            Ok(Principal::new("u")
                .with_groups(["staff"])
                .with_permissions(["READ", "WRITE"])
                .with_organization("acme")),
            "JSON pointers, `~1` for a slash in a key"
        );
        let token = sign(&json!({"sub": "u", "exp": exp, "realm_access": {"roles": "staff"}}));
        assert_eq!(
            config.verify(&token, NOW),
            Err(JwtRejection::InvalidClaims),
            "groups stay arrays"
        );
        let token = sign(&json!({"sub": "u", "exp": exp, "realm_access": {}}));
        assert_eq!(
            config.verify(&token, NOW),
            Ok(Principal::new("u")),
            "absent"
        );

        config.set_claims(ClaimNames::default().permissions("scp"));
        let token = sign(&json!({"sub": "u", "exp": exp, "scp": "orders.read  orders.write"}));
        assert_eq!(
            config.verify(&token, NOW),
            Ok(Principal::new("u").with_permissions(["orders.read", "orders.write"])),
            "space-separated scopes"
        );

        config.set_claims(ClaimNames::default().group_ancestors(true));
        let token = sign(&json!({"sub": "u", "exp": exp,
            "groups": ["/engineering/platform/sre", "/engineering", "ops", "/sales/"]}));
        assert_eq!(
            config.verify(&token, NOW),
            Ok(Principal::new("u").with_groups([
                "/engineering",
                "/engineering/platform",
                "/engineering/platform/sre",
                "ops",
                "/sales",
                "/sales/"
            ])),
            "ancestors, once each"
        );
        let token = sign(&json!({"sub": "u", "exp": exp, "groups": ["/a\u{0}/b"]}));
        assert_eq!(
            config.verify(&token, NOW),
            Err(JwtRejection::InvalidGroupId)
        );

        config.set_claims(ClaimNames::default());
        config.set_organization("fixed".to_owned());
        let token = sign(&json!({"sub": "u", "exp": exp, "org": "claimed"}));
        assert_eq!(
            config.verify(&token, NOW),
            Ok(Principal::new("u").with_organization("fixed")),
            "a fixed organization wins over the claim"
        );
    }

    #[test]
    fn several_issuers_are_picked_by_iss() {
        let mut a = config();
        a.set_issuer("https://a.example".to_owned());
        a.set_organization("org-a".to_owned());
        let mut b = JwtConfig::new(
            DecodingKey::from_secret(b"another secret of thirty-two bytes or more"),
            Algorithm::HS256,
        );
        b.set_issuer("https://b.example".to_owned());
        let verifier = Verifier::by_issuer(vec![a, b]);
        let bearer = |token: String| {
            let mut headers = HeaderMap::new();
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
            verifier.authenticate(&headers)
        };
        let exp = unix_now() + 300;
        assert_eq!(
            bearer(sign(
                &json!({"sub": "u", "exp": exp, "iss": "https://a.example"})
            )),
            Ok(Some(Principal::new("u").with_organization("org-a")))
        );
        assert_eq!(
            bearer(sign(
                &json!({"sub": "u", "exp": exp, "iss": "https://b.example"})
            )),
            Err(JwtRejection::InvalidSignature),
            "b's key verifies b's tokens"
        );
        assert_eq!(
            bearer(sign(
                &json!({"sub": "u", "exp": exp, "iss": "https://c.example"})
            )),
            Err(JwtRejection::InvalidIssuer)
        );
        assert_eq!(
            bearer(sign(&json!({"sub": "u", "exp": exp}))),
            Err(JwtRejection::InvalidIssuer)
        );
        assert_eq!(
            bearer(sign(&json!({"sub": "u", "exp": exp, "iss": 7}))),
            Err(JwtRejection::MalformedToken)
        );
        assert_eq!(
            bearer("not.a.token".to_owned()),
            Err(JwtRejection::MalformedToken)
        );
    }

    #[test]
    fn debug_redacts_the_key() {
        let config = JwtConfig::new(
            DecodingKey::from_secret(b"super-secret-value"),
            Algorithm::HS256,
        );
        let debug = format!("{config:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(!debug.contains("super-secret-value"), "{debug}");
    }
}
