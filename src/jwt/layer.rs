use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::verify::JwtConfig;
use super::{
    Algorithm, ClaimNames, DecodingKey, DefaultRejection, JwtAuthService, JwtConfigError, Rejection,
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
    pub(super) config: Arc<JwtConfig>,
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
        Self {
            config: Arc::new(JwtConfig::new(key, algorithm)),
            rejection: DefaultRejection,
        }
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
    /// Requires the `iss` claim, equal to `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).set_issuer(issuer.into());
        self
    }

    /// Requires the `aud` claim, naming `audience` (a string equal to it, or an array
    /// containing it).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).set_audience(audience.into());
        self
    }

    /// The clock skew tolerated on `exp` and `nbf`, in whole seconds; 60 seconds by
    /// default.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.config).set_leeway(leeway);
        self
    }

    /// The longest bearer token accepted, in bytes ([`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN),
    /// 16 KiB, by default). A longer one is refused with 401 and
    /// [`JwtRejection::TokenTooLong`](super::JwtRejection::TokenTooLong) before any
    /// decoding. Raise it for an issuer whose tokens list many groups; lower it to
    /// spend less on hostile ones.
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).set_max_token_len(bytes);
        self
    }

    /// The names of the claims the principal is read from.
    pub fn claims(mut self, names: ClaimNames) -> Self {
        Arc::make_mut(&mut self.config).set_claims(names);
        self
    }

    /// Replaces the response sent for refused requests.
    pub fn rejection<R2: Rejection>(self, rejection: R2) -> JwtAuthLayer<R2> {
        JwtAuthLayer {
            config: self.config,
            rejection,
        }
    }

    /// The only algorithm accepted.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.config.algorithm()
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
