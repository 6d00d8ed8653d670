//! Keys fetched from an identity provider: a JWK set URL, or OpenID Connect discovery,
//! refreshed in the background (feature `jwks`).

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use super::KeySet;

/// The largest discovery document or JWK set read, in bytes.
const MAX_DOCUMENT: usize = 1024 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A JWK set fetched from an identity provider and kept fresh in the background: give
/// it to [`JwtAuthLayer::remote`](super::JwtAuthLayer::remote).
///
/// Built with [`RemoteKeys::jwks_url`] or [`RemoteKeys::oidc_issuer`] and started with
/// [`RemoteKeysBuilder::start`], inside a tokio runtime. Then:
///
/// - the set is fetched at start, and again every
///   [`refresh_interval`](RemoteKeysBuilder::refresh_interval) (5 minutes by default),
///   or after the `Cache-Control: max-age` of the last response, kept within
///   [`max_age_bounds`](RemoteKeysBuilder::max_age_bounds) (1 minute to 1 day);
/// - a token naming a `kid` the set does not hold is refused (401 `unknownKey`) and
///   wakes a refetch, at most once per
///   [`unknown_kid_interval`](RemoteKeysBuilder::unknown_kid_interval) (10 seconds by
///   default): a key the provider has just published is usable within that interval,
///   and a flood of made-up `kid`s costs the provider one request per interval;
/// - a failed fetch keeps the last good set, is logged (a warning at most once a
///   minute) and is retried after [`retry_interval`](RemoteKeysBuilder::retry_interval)
///   (30 seconds by default); a key removed from the set stops verifying with the
///   next successful fetch;
/// - until the first successful fetch, a request with a token is refused with 503
///   Service Unavailable, code `keysUnavailable` (gRPC status 14 `UNAVAILABLE`): never
///   let through unverified.
///
/// The background task ends when the last clone of the `RemoteKeys` (and so the last
/// layer holding it) is dropped.
///
/// HTTPS uses rustls with the Mozilla root certificates (no system OpenSSL); plain
/// `http://` is accepted only for loopback hosts unless
/// [`allow_http`](RemoteKeysBuilder::allow_http) is set. Redirects are not followed.
///
/// ```no_run
/// use tower_ip_allowlist::jwt::{JwtAuthLayer, RemoteKeys};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = RemoteKeys::oidc_issuer("https://login.example.com/realms/acme")
///     .start()
///     .await?;
/// let layer = JwtAuthLayer::remote(keys).audience("orders-api");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RemoteKeys {
    shared: Arc<Shared>,
}

struct Shared {
    jwks_uri: Uri,
    issuer: Option<String>,
    options: Options,
    client: HttpClient,
    keys: ArcSwapOption<KeySet>,
    wake: Arc<Notify>,
    last_on_demand: Mutex<Option<Instant>>,
    last_warning: Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Let the background task see that nobody holds the keys any more.
        self.wake.notify_one();
    }
}

#[derive(Debug, Clone)]
struct Options {
    refresh_interval: Duration,
    min_max_age: Duration,
    max_max_age: Duration,
    unknown_kid_interval: Duration,
    retry_interval: Duration,
    timeout: Duration,
    allow_http: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            min_max_age: Duration::from_secs(60),
            max_max_age: Duration::from_secs(86_400),
            unknown_kid_interval: Duration::from_secs(10),
            retry_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            allow_http: false,
        }
    }
}

#[derive(Debug, Clone)]
enum Source {
    Jwks(String),
    Issuer(String),
}

/// Configures [`RemoteKeys`]; see there.
#[derive(Debug, Clone)]
#[must_use]
pub struct RemoteKeysBuilder {
    source: Source,
    options: Options,
}

impl RemoteKeys {
    /// Keys from the JWK set at `url` (`https://`, or `http://` for a loopback host).
    pub fn jwks_url(url: impl Into<String>) -> RemoteKeysBuilder {
        RemoteKeysBuilder {
            source: Source::Jwks(url.into()),
            options: Options::default(),
        }
    }

    /// Keys found by OpenID Connect discovery: [`start`](RemoteKeysBuilder::start) reads
    /// `{issuer}/.well-known/openid-configuration`, checks that its `issuer` is exactly
    /// `issuer`, and fetches the set at its `jwks_uri`. A layer built on these keys
    /// requires `iss` to be `issuer`.
    pub fn oidc_issuer(issuer: impl Into<String>) -> RemoteKeysBuilder {
        RemoteKeysBuilder {
            source: Source::Issuer(issuer.into()),
            options: Options::default(),
        }
    }

    /// The issuer, when the keys were found by discovery.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.shared.issuer.as_deref()
    }

    /// The URL the JWK set is fetched from.
    #[must_use]
    pub fn jwks_uri(&self) -> &Uri {
        &self.shared.jwks_uri
    }

    /// Whether a set has been fetched: until then, tokens are refused with 503.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.shared.keys.load().is_some()
    }

    /// The current set, if one has been fetched.
    #[must_use]
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.shared.keys.load_full()
    }

    /// How many times the JWK set has been requested, successfully or not.
    #[must_use]
    pub fn fetch_count(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// Fetches the set now, whatever the intervals say; on failure the last good set is
    /// kept.
    ///
    /// # Errors
    ///
    /// [`JwksError`] if the set could not be fetched or read.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        self.shared.refresh().await.map(|_| ())
    }

    /// Asks the background task for a refetch, at most once per `unknown_kid_interval`:
    /// a token named a key the set does not hold, or no set has been fetched yet.
    pub(super) fn request_refetch(&self) {
        let Ok(mut last) = self.shared.last_on_demand.lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.shared.options.unknown_kid_interval)
        {
            return;
        }
        *last = Some(now);
        drop(last);
        tracing::debug!("jwks: unknown key or no keys yet: refetch requested");
        self.shared.wake.notify_one();
    }
}

impl RemoteKeysBuilder {
    /// How often the set is fetched when the provider sends no `Cache-Control: max-age`;
    /// 5 minutes by default.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.options.refresh_interval = interval;
        self
    }

    /// The bounds a provider's `Cache-Control: max-age` is kept within; 1 minute and 1
    /// day by default.
    pub fn max_age_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.options.min_max_age = min;
        self.options.max_max_age = max.max(min);
        self
    }

    /// The shortest time between two refetches asked for by tokens naming an unknown
    /// `kid` (or sent before any set was fetched); 10 seconds by default.
    pub fn unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.options.unknown_kid_interval = interval;
        self
    }

    /// How long after a failed fetch the next is tried; 30 seconds by default.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.options.retry_interval = interval;
        self
    }

    /// How long one request to the provider may take; 10 seconds by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Accepts plain `http://` URLs for any host, not only loopback ones.
    ///
    /// # Security
    ///
    /// Whoever can change the keys on the way can sign tokens for any user: only on a
    /// network where nobody can.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.options.allow_http = allow;
        self
    }

    /// Runs discovery (for [`RemoteKeys::oidc_issuer`]), fetches the set once, and
    /// starts refreshing it in the background. Must be called inside a tokio runtime.
    ///
    /// A failed first fetch of the set is not an error: it is logged and retried, and
    /// until one succeeds, requests with a token are refused with 503.
    ///
    /// # Errors
    ///
    /// [`JwksError`] if a URL is not acceptable, or discovery fails: the document cannot
    /// be fetched or read, or names another issuer.
    pub async fn start(self) -> Result<RemoteKeys, JwksError> {
        let options = self.options;
        let client = client()?;
        let (jwks_uri, issuer) = match self.source {
            Source::Jwks(url) => (checked_uri(&url, options.allow_http)?, None),
            Source::Issuer(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let uri = checked_uri(&url, options.allow_http)?;
                let (body, _) = get(&client, &uri, options.timeout).await?;
                let document: Discovery =
                    serde_json::from_slice(&body).map_err(|error| JwksError::InvalidDocument {
                        url: url.clone(),
                        reason: format!(
                            "not an OpenID Connect discovery document with `issuer` and \
                             `jwks_uri`: {error}"
                        ),
                    })?;
                if document.issuer != issuer {
                    return Err(JwksError::IssuerMismatch {
                        configured: issuer,
                        found: document.issuer,
                    });
                }
                (
                    checked_uri(&document.jwks_uri, options.allow_http)?,
                    Some(issuer),
                )
            }
        };
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            jwks_uri,
            issuer,
            options,
            client,
            keys: ArcSwapOption::empty(),
            wake: Arc::clone(&wake),
            last_on_demand: Mutex::new(None),
            last_warning: Mutex::new(None),
            fetches: AtomicU64::new(0),
        });
        let first = shared.refresh_logged().await;
        tokio::spawn(refresh_loop(Arc::downgrade(&shared), wake, first));
        Ok(RemoteKeys { shared })
    }
}

/// Refreshes until the keys are dropped: on schedule, or when woken by a request.
async fn refresh_loop(shared: Weak<Shared>, wake: Arc<Notify>, mut delay: Duration) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        delay = shared.refresh_logged().await;
    }
}

impl Shared {
    /// Fetches the set; returns how long until the next scheduled fetch.
    async fn refresh_logged(&self) -> Duration {
        match self.refresh().await {
            Ok(next) => next,
            Err(error) => {
                let now = Instant::now();
                let warn = self.last_warning.lock().is_ok_and(|mut last| {
                    let due =
                        last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
                    if due {
                        *last = Some(now);
                    }
                    due
                });
                let has_keys = self.keys.load().is_some();
                if warn {
                    tracing::warn!(%error, has_keys, "jwks: fetching the keys failed; the last good keys stay in use");
                } else {
                    tracing::debug!(%error, has_keys, "jwks: fetching the keys failed");
                }
                self.options.retry_interval
            }
        }
    }

    async fn refresh(&self) -> Result<Duration, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (body, max_age) = get(&self.client, &self.jwks_uri, self.options.timeout).await?;
        let text = std::str::from_utf8(&body).map_err(|_| JwksError::InvalidDocument {
            url: self.jwks_uri.to_string(),
            reason: "the JWK set is not UTF-8".to_owned(),
        })?;
        let set = KeySet::from_json(text).map_err(|error| JwksError::InvalidDocument {
            url: self.jwks_uri.to_string(),
            reason: error.to_string(),
        })?;
        tracing::debug!(keys = set.len(), url = %self.jwks_uri, "jwks: keys fetched");
        self.keys.store(Some(Arc::new(set)));
        Ok(max_age.map_or(self.options.refresh_interval, |age| {
            age.clamp(self.options.min_max_age, self.options.max_max_age)
        }))
    }
}

#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

fn client() -> Result<HttpClient, JwksError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|error| JwksError::Tls(error.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The body of a successful GET, and its `Cache-Control: max-age`.
async fn get(
    client: &HttpClient,
    uri: &Uri,
    timeout: Duration,
) -> Result<(Bytes, Option<Duration>), JwksError> {
    let fetch_error = |reason: String| JwksError::Fetch {
        url: uri.to_string(),
        reason,
    };
    let request = Request::get(uri.clone())
        .header(ACCEPT, "application/json")
        .header(
            USER_AGENT,
            concat!("tower-ip-allowlist/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|error| fetch_error(error.to_string()))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| fetch_error(error_chain(&error)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status {
                url: uri.to_string(),
                status: status.as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .find_map(|value| max_age(value.to_str().ok()?));
        let body = Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|error| fetch_error(format!("reading the body (at most 1 MiB): {error}")))?
            .to_bytes();
        Ok((body, max_age))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fetch_error(format!("no answer within {timeout:?}")))?
}

/// The error and its causes, `: `-separated: hyper's own message alone says little.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `max-age=N` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        seconds
            .trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

/// `url` parsed, if HTTPS, or HTTP to a loopback host (or any host when allowed).
fn checked_uri(url: &str, allow_http: bool) -> Result<Uri, JwksError> {
    let invalid = |reason: &str| JwksError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not an absolute URL"))?;
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_http || is_loopback(host) => Ok(uri),
        Some("http") => Err(invalid(
            "plain http is accepted only for loopback hosts (localhost, 127.0.0.0/8, ::1): use https, or allow http explicitly",
        )),
        _ => Err(invalid("the scheme must be https")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("jwks_uri", &self.shared.jwks_uri)
            .field("issuer", &self.shared.issuer)
            .field("keys", &self.shared.keys.load().as_deref())
            .field("options", &self.shared.options)
            .finish()
    }
}

/// Why [`RemoteKeys`] could not start, or a fetch failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum JwksError {
    /// A URL is not acceptable.
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider could not be reached, or did not answer in time.
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The provider answered with an error status.
    Status {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The discovery document or the JWK set cannot be used.
    InvalidDocument {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The discovery document names another issuer than the configured one.
    IssuerMismatch {
        /// The issuer configured.
        configured: String,
        /// The issuer the document names.
        found: String,
    },
    /// The TLS configuration could not be built.
    Tls(String),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => write!(f, "the URL {url} is not accepted: {reason}"),
            Self::Fetch { url, reason } => write!(f, "cannot fetch {url}: {reason}"),
            Self::Status { url, status } => write!(
                f,
                "{url} answered with HTTP status {status}: check the URL (the issuer or JWK set URL of your identity provider)"
            ),
            Self::InvalidDocument { url, reason } => write!(f, "{url}: {reason}"),
            Self::IssuerMismatch { configured, found } => write!(
                f,
                "the discovery document of {configured:?} names the issuer {found:?}: configure \
                 the issuer exactly as the provider writes it (scheme, host, path, trailing slash)"
            ),
            Self::Tls(reason) => write!(f, "cannot set up TLS: {reason}"),
        }
    }
}

impl std::error::Error for JwksError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_directives() {
        let cases = [
            ("max-age=300", Some(300)),
            ("public, max-age=3600, must-revalidate", Some(3600)),
            ("Max-Age = \"60\"", Some(60)),
            ("no-cache", None),
            ("max-age=-1", None),
            ("max-age=soon", None),
            ("s-maxage=10", None),
        ];
        for (value, want) in cases {
            assert_eq!(max_age(value), want.map(Duration::from_secs), "{value}");
        }
    }

    #[test]
    fn urls_https_or_loopback_http() {
        let cases = [
            ("https://id.example.com/jwks", false, true),
            ("http://127.0.0.1:8080/jwks", false, true),
            ("http://localhost/jwks", false, true),
            ("http://[::1]:9000/jwks", false, true),
            ("http://id.example.com/jwks", false, false),
            ("http://id.example.com/jwks", true, true),
            ("http://10.0.0.1/jwks", false, false),
            ("ftp://id.example.com/jwks", true, false),
            ("/jwks", false, false),
            ("not a url", false, false),
        ];
        for (url, allow_http, ok) in cases {
            assert_eq!(
                checked_uri(url, allow_http).is_ok(),
                ok,
                "{url} {allow_http}"
            );
        }
    }
}
