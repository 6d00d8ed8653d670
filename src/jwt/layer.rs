use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::verify::{JwtConfig, Keys, Verifier};
#[cfg(feature = "jwks")]
use super::RemoteKeys;
use super::{
    Algorithm, ClaimNames, DecodingKey, DefaultRejection, JwtAuthService, JwtConfigError, KeySet,
    Rejection,
};

/// Verifies `Authorization: Bearer` JWTs and inserts the caller's
/// [`Principal`](crate::principal::Principal) into the request extensions.
///
/// `R` builds the response for refused requests. Cloning is cheap: the configuration is
/// shared behind an `Arc`. See the [module docs](super) for the rules and an example.
///
/// # Security
///
/// Whoever holds the key decides who the caller is; see the
/// [module docs](super#security).
#[must_use]
pub struct JwtAuthLayer<R = DefaultRejection> {
    pub(super) config: Arc<Verifier>,
    pub(super) rejection: R,
}

impl JwtAuthLayer {
    /// A layer accepting only tokens signed with `algorithm` and verified with `key`.
    ///
    /// The key must be of the algorithm's family (an HMAC secret for `HS*`, an RSA key
    /// for `RS*` and `PS*`, ...): with a key of another family no token verifies and
    /// every request with a token is refused. The `*_pem` constructors check this.
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        if key.family() != algorithm.family() {
            tracing::warn!(
                algorithm = ?algorithm,
                key_family = ?key.family(),
                "jwt: the key does not fit the algorithm: every token will be refused"
            );
        }
        Self::from_config(JwtConfig::new(key, algorithm))
    }

    fn from_config(config: JwtConfig) -> Self {
        Self {
            config: Arc::new(Verifier::one(config)),
            rejection: DefaultRejection,
        }
    }

    /// A layer verifying each token with the key of `keys` its `kid` names, and the
    /// algorithm of that key; see [`KeySet`].
    pub fn key_set(keys: KeySet) -> Self {
        Self::from_config(JwtConfig::with_keys(Keys::Set(keys)))
    }

    /// A layer verifying tokens with keys fetched from an identity provider and kept
    /// fresh; see [`RemoteKeys`]. With keys found by OpenID Connect discovery, the
    /// `iss` claim is required and must be the discovered issuer.
    ///
    /// Until the first set has been fetched, requests with a token are refused with
    /// 503 and [`JwtRejection::KeysUnavailable`](super::JwtRejection::KeysUnavailable).
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    pub fn remote(keys: RemoteKeys) -> Self {
        let issuer = keys.issuer().map(str::to_owned);
        let mut config = JwtConfig::with_keys(Keys::Remote(keys));
        if let Some(issuer) = issuer {
            config.set_issuer(issuer);
        }
        Self::from_config(config)
    }

    /// One layer for several issuers, each with its own keys, audience, claim names and
    /// organization: the token's `iss` (read before anything is verified) picks the
    /// layer whose [`issuer`](Self::issuer) it is, and that layer verifies the token,
    /// `iss` included. A token naming no configured issuer is refused with
    /// [`JwtRejection::InvalidIssuer`](super::JwtRejection::InvalidIssuer).
    ///
    /// The settings of each layer stay its own; a builder method called on the
    /// combined layer ([`leeway`](Self::leeway), ...) sets it for every issuer.
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::Issuers`] if a layer has no issuer, two have the same, a layer
    /// is itself for several issuers, or there are none.
    pub fn issuers(layers: impl IntoIterator<Item = JwtAuthLayer>) -> Result<Self, JwtConfigError> {
        let mut configs: Vec<JwtConfig> = Vec::new();
        for layer in layers {
            let [config] = layer.config.configs() else {
                return Err(JwtConfigError::Issuers(
                    "a layer for several issuers cannot be nested in another: list its issuers directly".to_owned(),
                ));
            };
            let Some(issuer) = config.issuer() else {
                return Err(JwtConfigError::Issuers(
                    "every layer needs its issuer: call `.issuer(..)` on it, or build it with `remote` on discovered keys".to_owned(),
                ));
            };
            if configs.iter().any(|c| c.issuer() == Some(issuer)) {
                return Err(JwtConfigError::Issuers(format!(
                    "the issuer {issuer:?} is configured twice"
                )));
            }
            configs.push(config.clone());
        }
        if configs.is_empty() {
            return Err(JwtConfigError::Issuers(
                "no issuer is configured".to_owned(),
            ));
        }
        Ok(Self {
            config: Arc::new(Verifier::by_issuer(configs)),
            rejection: DefaultRejection,
        })
    }

    /// HS256 (HMAC with SHA-256) with a shared secret.
    ///
    /// # Security
    ///
    /// The secret must be long (32 bytes or more) and random: anyone who knows it can
    /// mint tokens for any user.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::new(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS256)
    }

    /// HS384 (HMAC with SHA-384) with a shared secret; see [`hs256`](Self::hs256).
    pub fn hs384(secret: impl AsRef<[u8]>) -> Self {
        Self::new(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS384)
    }

    /// HS512 (HMAC with SHA-512) with a shared secret; see [`hs256`](Self::hs256).
    pub fn hs512(secret: impl AsRef<[u8]>) -> Self {
        Self::new(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS512)
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) with an RSA public key in PEM
    /// (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidKey`] if the PEM is not an RSA public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        Self::from_pem(pem, Algorithm::RS256, DecodingKey::from_rsa_pem)
    }

    /// ES256 (ECDSA on P-256 with SHA-256) with an EC public key in PEM
    /// (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidKey`] if the PEM is not an EC public key.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        Self::from_pem(pem, Algorithm::ES256, DecodingKey::from_ec_pem)
    }

    /// EdDSA (Ed25519) with an Ed25519 public key in PEM (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidKey`] if the PEM is not an Ed25519 public key.
    pub fn eddsa_pem(pem: &[u8]) -> Result<Self, JwtConfigError> {
        Self::from_pem(pem, Algorithm::EdDSA, DecodingKey::from_ed_pem)
    }

    fn from_pem(
        pem: &[u8],
        algorithm: Algorithm,
        parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
    ) -> Result<Self, JwtConfigError> {
        let key = parse(pem).map_err(|source| JwtConfigError::InvalidKey { algorithm, source })?;
        Ok(Self::new(key, algorithm))
    }
}

impl<R> JwtAuthLayer<R> {
    /// Requires the `iss` claim, equal to `issuer`. (For several issuers, set it on
    /// each layer given to [`issuers`](JwtAuthLayer::issuers), not on the combined one.)
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let value = issuer.into();
        for config in Arc::make_mut(&mut self.config).configs_mut() {
            config.set_issuer(value.clone());
        }
        self
    }

    /// Requires the `aud` claim, naming `audience` (a string equal to it, or an array
    /// containing it).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        let value = audience.into();
        for config in Arc::make_mut(&mut self.config).configs_mut() {
            config.set_audience(value.clone());
        }
        self
    }

    /// The clock skew tolerated on `exp` and `nbf`, in whole seconds; 60 seconds by
    /// default.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        let value = leeway;
        for config in Arc::make_mut(&mut self.config).configs_mut() {
            config.set_leeway(value);
        }
        self
    }

    /// The longest bearer token accepted, in bytes ([`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN),
    /// 16 KiB, by default). A longer one is refused with 401 and
    /// [`JwtRejection::TokenTooLong`](super::JwtRejection::TokenTooLong) before any
    /// decoding. Raise it for an issuer whose tokens list many groups; lower it to
    /// spend less on hostile ones.
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        let value = bytes;
        for config in Arc::make_mut(&mut self.config).configs_mut() {
            config.set_max_token_len(value);
        }
        self
    }

    /// The names of the claims the principal is read from.
    pub fn claims(mut self, names: ClaimNames) -> Self {
        let value = names;
        for config in Arc::make_mut(&mut self.config).configs_mut() {
            config.set_claims(value.clone());
        }
        self
    }

    /// Replaces the response sent for refused requests.
    pub fn rejection<R2: Rejection>(self, rejection: R2) -> JwtAuthLayer<R2> {
        JwtAuthLayer {
            config: self.config,
            rejection,
        }
    }

    /// Every token's organization is `organization`, whatever its claims say: for an
    /// issuer that serves one organization (one Keycloak realm, one Entra tenant).
    ///
    /// # Errors
    ///
    /// [`JwtConfigError::InvalidOrganization`] if it is not a valid id
    /// ([`validate_id`](crate::policy::validate_id)).
    pub fn organization(mut self, organization: impl Into<String>) -> Result<Self, JwtConfigError> {
        let organization = organization.into();
        if let Err(error) = crate::policy::validate_id(&organization) {
            return Err(JwtConfigError::InvalidOrganization(error.to_string()));
        }
        for config in Arc::make_mut(&mut self.config).configs_mut() {
            config.set_organization(organization.clone());
        }
        Ok(self)
    }

    /// The only algorithm accepted, for a layer with one static key; `None` for a layer
    /// on a key set, whose keys each have their own.
    #[must_use]
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.config.configs() {
            [only] => only.algorithm(),
            _ => None,
        }
    }
}

impl<S, R: Clone> Layer<S> for JwtAuthLayer<R> {
    type Service = JwtAuthService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuthService {
            inner,
            config: Arc::clone(&self.config),
            rejection: self.rejection.clone(),
        }
    }
}

impl<R: Clone> Clone for JwtAuthLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            rejection: self.rejection.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for JwtAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("config", &self.config)
            .field("rejection", &self.rejection)
            .finish()
    }
}
