//! The verification itself: from the `Authorization` header to a [`Principal`] or a
//! [`JwtRejection`]. Nothing here knows about services or responses.

use std::fmt;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{unix_now, ClaimNames, JwtRejection, MAX_TOKEN_LEN};
use crate::policy::validate_id;
use crate::principal::Principal;

/// Everything the layer verifies tokens with. Shared behind an `Arc`.
#[derive(Clone)]
pub(super) struct JwtConfig {
    key: DecodingKey,
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    claims: ClaimNames,
    max_token_len: usize,
    /// Built from the fields above by [`JwtConfig::rebuild`]; signature, algorithm,
    /// `iss` and `aud` only: time is checked here, with saturating arithmetic.
    validation: Validation,
}

impl JwtConfig {
    pub(super) fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut config = Self {
            key,
            algorithm,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(60),
            claims: ClaimNames::default(),
            max_token_len: MAX_TOKEN_LEN,
            validation: Validation::new(algorithm),
        };
        config.rebuild();
        config
    }

    pub(super) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub(super) fn set_issuer(&mut self, issuer: String) {
        self.issuer = Some(issuer);
        self.rebuild();
    }

    pub(super) fn set_audience(&mut self, audience: String) {
        self.audience = Some(audience);
        self.rebuild();
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
        let mut validation = Validation::new(self.algorithm);
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
        self.validation = validation;
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
        let token = bearer_token(value, self.max_token_len)?;
        self.verify(token, unix_now()).map(Some)
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch).
    pub(super) fn verify(&self, token: &str, now: u64) -> Result<Principal, JwtRejection> {
        if token.len() > self.max_token_len {
            return Err(JwtRejection::TokenTooLong);
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|error| rejection(error.kind()))?
            .claims;

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
        let user = match claims.get(names.user_claim()) {
            Some(Value::String(user)) if !user.is_empty() => user.as_str(),
            _ => return Err(JwtRejection::InvalidClaims),
        };
        let organization = match claims.get(names.org_claim()) {
            None => None,
            Some(Value::String(org)) if !org.is_empty() => Some(org.as_str()),
            Some(_) => return Err(JwtRejection::InvalidClaims),
        };
        let groups = string_list(claims.get(names.groups_claim()))?;
        let permissions = string_list(claims.get(names.permissions_claim()))?;
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
            .field("algorithm", &self.algorithm)
            .field("key", &format_args!("<redacted>"))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("claims", &self.claims)
            .field("max_token_len", &self.max_token_len)
            .finish()
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

/// An array of non-empty strings; absent is empty.
fn string_list(value: Option<&Value>) -> Result<Vec<&str>, JwtRejection> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() => Ok(s.as_str()),
                _ => Err(JwtRejection::InvalidClaims),
            })
            .collect(),
        Some(_) => Err(JwtRejection::InvalidClaims),
    }
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
            assert_eq!(config.authenticate(&headers), case.want, "{}", case.name);
        }

        assert_eq!(config.authenticate(&HeaderMap::new()), Ok(None));
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        headers.append(AUTHORIZATION, value.clone());
        headers.append(AUTHORIZATION, value);
        assert_eq!(
            config.authenticate(&headers),
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
            config.authenticate(&headers),
            Err(JwtRejection::TokenTooLong)
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
