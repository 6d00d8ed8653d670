//! Public keys from a JWK set (RFC 7517): each with its algorithm, found by `kid`.

use std::fmt;
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::JwtConfigError;

/// The public keys tokens are verified with, read from a JWK set, each with the one
/// algorithm it verifies.
///
/// A token is verified only with the key its `kid` header names, or with the only key
/// when the set holds one and the token names none; a token whose `alg` is not that
/// key's algorithm is refused. The algorithm of a key is its `alg` member when present,
/// otherwise it follows from `kty` and `crv`:
///
/// | `kty` | `crv` | algorithm without `alg` | with `alg` |
/// | --- | --- | --- | --- |
/// | `RSA` | | RS256 | RS256, RS384, RS512, PS256, PS384, PS512 |
/// | `EC` | `P-256` | ES256 | ES256 |
/// | `EC` | `P-384` | ES384 | ES384 |
/// | `OKP` | `Ed25519` | EdDSA | EdDSA |
///
/// Keys marked for encryption (`"use": "enc"`), symmetric keys (`kty` `oct`: a secret
/// has no place in a published set), other curves and algorithms are skipped with a
/// warning in the log; a set left without any usable key is an error.
///
/// ```
/// use tower_ip_allowlist::jwt::{JwtAuthLayer, KeySet};
///
/// let jwks = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "2026-11",
///                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
/// let keys = KeySet::from_json(jwks)?;
/// assert_eq!(keys.key_ids().collect::<Vec<_>>(), [Some("2026-11")]);
/// let layer = JwtAuthLayer::key_set(keys).issuer("https://id.example.com");
/// # Ok::<(), tower_ip_allowlist::jwt::JwtConfigError>(())
/// ```
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<SetKey>,
}

#[derive(Clone)]
pub(super) struct SetKey {
    pub(super) kid: Option<String>,
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
}

/// Which key of a set verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Selected<'a> {
    /// The key named by the token (or the only one).
    Key(&'a SetKey),
    /// The token names a key the set does not hold, or names none in a set of several.
    Unknown,
}

impl KeySet {
    /// The usable keys of a JWK set document (`{"keys": [...]}`).
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidKeySet`] if the text is not a JWK set, or holds no
    /// usable signing key.
    pub fn from_json(json: &str) -> Result<Self, JwtConfigError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|error| {
            JwtConfigError::InvalidKeySet(format!(
                "not a JWK set (a JSON object with a `keys` array of JWKs): {error}"
            ))
        })?;
        Self::from_jwk_set(&set)
    }

    /// The usable keys of a JWK set file.
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidKeySet`] if the file cannot be read, is not a JWK set, or
    /// holds no usable signing key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, JwtConfigError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|error| {
            JwtConfigError::InvalidKeySet(format!("cannot read {}: {error}", path.display()))
        })?;
        Self::from_json(&json).map_err(|error| match error {
            JwtConfigError::InvalidKeySet(message) => {
                JwtConfigError::InvalidKeySet(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// The usable keys of a parsed JWK set.
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidKeySet`] if it holds no usable signing key.
    pub fn from_jwk_set(set: &JwkSet) -> Result<Self, JwtConfigError> {
        let mut keys: Vec<SetKey> = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            match usable_key(jwk) {
                Ok(key) => {
                    if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                        tracing::warn!(kid = ?kid, "jwks: a second key with the same kid is skipped");
                        continue;
                    }
                    keys.push(key);
                }
                Err(why) => tracing::warn!(kid = ?kid, reason = why, "jwks: key skipped"),
            }
        }
        if keys.is_empty() {
            return Err(JwtConfigError::InvalidKeySet(format!(
                "none of its {} keys is a usable signing key (RSA, EC P-256/P-384 or Ed25519 \
                 public keys, not marked `\"use\": \"enc\"`)",
                set.keys.len()
            )));
        }
        Ok(Self { keys })
    }

    /// How many usable keys the set holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key (never, for a set built by this type's constructors).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid` of each usable key, in the set's order.
    pub fn key_ids(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.keys.iter().map(|key| key.kid.as_deref())
    }

    /// The algorithm of the key named `kid`, if the set holds it.
    #[must_use]
    pub fn algorithm(&self, kid: &str) -> Option<Algorithm> {
        self.keys
            .iter()
            .find(|key| key.kid.as_deref() == Some(kid))
            .map(|key| key.algorithm)
    }

    pub(super) fn select(&self, kid: Option<&str>) -> Selected<'_> {
        let found = match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        };
        found.map_or(Selected::Unknown, Selected::Key)
    }
}

impl fmt::Debug for SetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The public key is not secret, but it is long and says nothing to a reader.
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PartialEq for SetKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.algorithm == other.algorithm
    }
}

impl Eq for SetKey {}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("keys", &self.keys).finish()
    }
}

/// The key and its algorithm, or why the JWK is skipped.
fn usable_key(jwk: &Jwk) -> Result<SetKey, &'static str> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("the key is for encryption (`use` is `enc`)");
    }
    let declared = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => Some(
            Algorithm::try_from(alg)
                .map_err(|_| "its `alg` is not a signature algorithm this crate verifies")?,
        ),
    };
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            None => Algorithm::RS256,
            Some(
                alg @ (Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512),
            ) => alg,
            Some(_) => return Err("its `alg` is not an RSA algorithm"),
        },
        AlgorithmParameters::EllipticCurve(ec) => {
            let implied = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("its curve is not P-256 or P-384"),
            };
            match declared {
                None => implied,
                Some(alg) if alg == implied => alg,
                Some(_) => return Err("its `alg` does not fit its curve"),
            }
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 {
                return Err("its curve is not Ed25519");
            }
            match declared {
                None | Some(Algorithm::EdDSA) => Algorithm::EdDSA,
                Some(_) => return Err("its `alg` is not EdDSA"),
            }
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("it is a symmetric secret (`kty` `oct`), never accepted from a key set")
        }
        _ => return Err("its `kty` is not RSA, EC or OKP"),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "its public key parameters are invalid")?;
    Ok(SetKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    struct Case {
        name: &'static str,
        jwk: serde_json::Value,
        want: Result<Algorithm, ()>,
    }

    #[test]
    fn algorithm_of_each_key() {
        let rsa = |alg: Option<&str>| {
            let mut jwk = serde_json::json!({"kty": "RSA", "kid": "r", "e": "AQAB",
                "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"});
            if let Some(alg) = alg {
                jwk["alg"] = alg.into();
            }
            jwk
        };
        let ec = |crv: &str, alg: Option<&str>| {
            let mut jwk = serde_json::json!({"kty": "EC", "crv": crv, "kid": "e",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
            if let Some(alg) = alg {
                jwk["alg"] = alg.into();
            }
            jwk
        };
        let cases = [
            Case {
                name: "RSA without alg",
                jwk: rsa(None),
                want: Ok(Algorithm::RS256),
            },
            Case {
                name: "RSA with RS512",
                jwk: rsa(Some("RS512")),
                want: Ok(Algorithm::RS512),
            },
            Case {
                name: "RSA with PS256",
                jwk: rsa(Some("PS256")),
                want: Ok(Algorithm::PS256),
            },
            Case {
                name: "RSA with ES256",
                jwk: rsa(Some("ES256")),
                want: Err(()),
            },
            Case {
                name: "RSA for encryption",
                jwk: {
                    let mut jwk = rsa(Some("RSA-OAEP"));
                    jwk["use"] = "enc".into();
                    jwk
                },
                want: Err(()),
            },
            Case {
                name: "P-256 without alg",
                jwk: ec("P-256", None),
                want: Ok(Algorithm::ES256),
            },
            Case {
                name: "P-256 with ES384",
                jwk: ec("P-256", Some("ES384")),
                want: Err(()),
            },
            Case {
                name: "P-521",
                jwk: ec("P-521", None),
                want: Err(()),
            },
            Case {
                name: "Ed25519",
                jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X}),
                want: Ok(Algorithm::EdDSA),
            },
            Case {
                name: "a secret",
                jwk: serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}),
                want: Err(()),
            },
            Case {
                name: "an unknown kty",
                jwk: serde_json::json!({"kty": "XYZ", "alg": "RS256"}),
                want: Err(()),
            },
        ];
        for case in cases {
            let jwk: Jwk = serde_json::from_value(case.jwk).unwrap();
            assert_eq!(
                usable_key(&jwk).map(|k| k.algorithm).map_err(|_| ()),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn selection_by_kid() {
        let one = KeySet::from_json(&format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}}]}}"#
        ))
        .unwrap();
        assert!(matches!(one.select(Some("a")), Selected::Key(k) if k.kid.as_deref() == Some("a")));
        assert!(matches!(one.select(None), Selected::Key(_)), "the only key");
        assert_eq!(one.select(Some("b")), Selected::Unknown);

        let two = KeySet::from_json(&format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}},
                         {{"kty":"OKP","crv":"Ed25519","kid":"b","x":"{ED_X}"}},
                         {{"kty":"OKP","crv":"Ed25519","kid":"b","x":"{ED_X}"}}]}}"#
        ))
        .unwrap();
        assert_eq!(two.len(), 2, "the duplicate kid is skipped");
        assert_eq!(two.select(None), Selected::Unknown, "several keys, no kid");
        assert!(matches!(two.select(Some("b")), Selected::Key(k) if k.kid.as_deref() == Some("b")));
    }

    #[test]
    fn unusable_sets_are_errors_a_person_can_act_on() {
        let error = KeySet::from_json("[]").unwrap_err().to_string();
        assert!(error.contains("not a JWK set"), "{error}");
        let error = KeySet::from_json(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("none of its 1 keys"), "{error}");
        let error = KeySet::from_file("/nonexistent/jwks.json")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot read /nonexistent/jwks.json"),
            "{error}"
        );
    }

    #[test]
    fn debug_prints_no_key_material() {
        let set = KeySet::from_json(&format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{ED_X}"}}]}}"#
        ))
        .unwrap();
        let debug = format!("{set:?}");
        assert!(debug.contains("EdDSA") && !debug.contains(ED_X), "{debug}");
    }
}
