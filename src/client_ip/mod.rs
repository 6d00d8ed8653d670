//! Where a request comes from: decided once, by one configured resolver, recorded in the
//! request extensions, and honoured by every layer, handler and guard.
//!
//! # Resolve once
//!
//! [`ClientIpLayer`], placed **outermost** (before the site list and authentication),
//! resolves the client address with one [`ClientIpResolver`] and records the outcome
//! as a [`ClientIpOutcome`] in the request extensions: the address and how it was
//! found ([`ClientIpSource`]: the peer, or which header and which hop), or that it is
//! unknown and why ([`ClientIpError`]). Every layer of this crate, the admin router
//! (lockout guard, `myAccess`, `evaluate`) and the [`ClientIp`] extractor read that
//! one outcome. An unknown address stays unknown everywhere: nothing turns it into the
//! peer's, and every rule that applies refuses the request (403 `clientIpUnknown`).
//!
//! A layer that finds no recorded outcome resolves with its own resolver (the peer,
//! unless you gave it one) and records what it found, so the layers and handlers
//! after it agree with it. When both exist, the rule is **the address can only become
//! unknown, never different**: a layer configured with a resolver of its own that
//! finds an outcome recorded by a differently configured one resolves too, and if the
//! two disagree the address is unknown from there on (`ClientIpError::Conflict`,
//! logged at WARN). Configure the resolver once, in `ClientIpLayer`, and give the other
//! layers none.
//!
//! # Strategies
//!
//! | strategy | reads | use it when |
//! |---|---|---|
//! | [`ClientIpResolver::peer`] (default) | the TCP peer: axum `ConnectInfo`, tonic `TcpConnectInfo`, or a `SocketAddr` extension ([`peer_addr`]) | clients connect directly (or through a PROXY-protocol listener, which makes the client the peer) |
//! | [`trusted_proxies`](ClientIpResolver::trusted_proxies) (rightmost untrusted) | `X-Forwarded-For` by default, or `Forwarded` (RFC 7239), from the right, skipping trusted proxies | you can list every proxy's address (your load balancer, ingress, nginx) |
//! | [`.hop_count(n)`](TrustedProxies::hop_count) | the n-th entry from the right | a fixed number of proxies whose addresses you cannot list (a CDN in front of your balancer) |
//! | [`.header(ForwardedHeader::XRealIp)`](TrustedProxies::header), [`ForwardedHeader::single`] | one header holding one address: `X-Real-IP`, `CF-Connecting-IP`, `True-Client-IP`, `Fly-Client-IP` | the proxy sets (overwrites) such a header |
//!
//! Headers are read **only** when the peer is a trusted proxy. A trusted peer that sends
//! none of the configured headers is unknown by default
//! ([`peer_without_header`](TrustedProxies::peer_without_header) makes it the client,
//! for a balancer's own health checks). Parsing is strict and bounded: RFC 7239 quoted
//! strings with their escapes and nothing after a closing quote, `for=` exactly once
//! per element, repeated header lines combined in order as RFC 9110 says, and at most
//! [`max_hops`](TrustedProxies::max_hops) entries walked ([`DEFAULT_MAX_HOPS`]) of at
//! most 512 bytes each, so a header of any size costs the same bounded work. An entry
//! on the walk that is not an address, `unknown`, an obfuscated identifier (`_hidden`),
//! `0.0.0.0` or `::` makes the client unknown: the walk never skips it. So does a chain
//! whose entries are all trusted proxies.
//!
//! Every address is folded with [`normalize_ip`], so an IPv4 client seen through a
//! dual-stack socket as `::ffff:a.b.c.d` is the IPv4 client.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{body::Body, extract::connect_info::MockConnectInfo, http::Request, routing::get, Router};
//! use tower::ServiceExt;
//! use tower_ip_allowlist::client_ip::{ClientIp, ClientIpLayer, ClientIpResolver};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Behind one load balancer at 10.0.0.5.
//! let resolver = ClientIpResolver::trusted_proxies(["10.0.0.5"])?;
//! let app = Router::new()
//!     .route("/", get(|ip: ClientIp| async move { ip.addr.to_string() }))
//!     .layer(ClientIpLayer::new(resolver))
//!     .layer(MockConnectInfo("10.0.0.5:41000".parse::<SocketAddr>()?)); // the peer
//!
//! // The rightmost untrusted entry is the client; the left-hand one may be anything
//! // the client sent and is not believed.
//! let request = Request::get("/")
//!     .header("x-forwarded-for", "203.0.113.7, 192.0.2.44")
//!     .body(Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! let body = axum::body::to_bytes(response.into_body(), 1024).await?;
//! assert_eq!(&body[..], b"192.0.2.44");
//!
//! // A garbage hop from the trusted proxy: unknown, and the extractor refuses.
//! let request = Request::get("/").header("x-forwarded-for", "garbage").body(Body::empty())?;
//! assert_eq!(app.oneshot(request).await?.status(), 403);
//! # Ok(()) }
//! ```
//!
//! # Security
//!
//! **The default trusts no header, and that is deliberate.** A forwarded header is text
//! the client can write: anyone who can reach your service directly can send
//! `X-Forwarded-For: 203.0.113.10` and, if the header were believed, pass an allowlist
//! written for `203.0.113.10`. So:
//!
//! - Configure trusted proxies only when the service sits behind proxies, and list
//!   exactly their addresses: not a whole private range (`10.0.0.0/8`), where any host
//!   of yours (a compromised pod, a developer's VM) could then claim any address, nor a
//!   cloud provider's range that other tenants share. Ranges that trust everyone are
//!   refused when the resolver is built.
//! - Make sure those proxies **append** the address they saw to the header (or
//!   overwrite it), never pass a client's value through unchanged. The walk from the
//!   right is what makes entries a client prepends (`X-Forwarded-For: <allowed>, <real>`)
//!   useless; it only works if the nearest trusted proxy wrote the real address.
//! - If the service can also be reached without the proxy, the peer is then untrusted
//!   and its headers are ignored, as they should be.

mod extract;
mod forwarded;
mod layer;
mod peer;
mod resolver;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Request};

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::extract::ClientIpRejection;
pub use self::layer::{ClientIpLayer, ClientIpService};
pub use self::peer::peer_addr;
use self::resolver::PEER_RESOLVER;
pub use self::resolver::{ClientIpResolver, ForwardedHeader, TrustedProxies, DEFAULT_MAX_HOPS};
use crate::source::{normalize_ip, SourceError};
use crate::warn::RateLimited;

/// The client address of a request and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIp {
    /// The client address, IPv4-mapped IPv6 folded into IPv4.
    pub addr: IpAddr,
    /// How it was found.
    pub source: ClientIpSource,
}

/// How a [`ClientIp`] was found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientIpSource {
    /// The TCP peer address.
    Peer,
    /// The client named by the PROXY protocol header of a trusted layer-4 balancer
    /// (the connection's peer as a
    /// [`ProxyProtocolListener`](crate::proxy_protocol::ProxyProtocolListener) presents
    /// it; feature `proxy-protocol`).
    ProxyProtocol {
        /// The balancer that sent the header.
        balancer: IpAddr,
    },
    /// A header written by a trusted proxy.
    Header {
        /// Which header.
        header: ForwardedHeader,
        /// Which entry, counted from the right: 1 is the last one, written by the
        /// nearest proxy (always 1 for single-address headers).
        hop: usize,
    },
}

/// Why the client address could not be determined. A layer that needs the address then
/// refuses the request: it never fails open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIpError {
    /// No peer address in the request extensions.
    NoPeerAddress,
    /// A trusted proxy sent none of the headers the resolver reads.
    MissingHeader {
        /// The proxy.
        proxy: IpAddr,
    },
    /// An entry of a forwarded header met on the walk is not a usable address.
    MalformedEntry {
        /// The header.
        header: HeaderName,
        /// The entry (cut to 64 characters).
        entry: String,
    },
    /// A `Forwarded` entry met on the walk names its node with an obfuscated identifier
    /// (`_hidden`) or `unknown`.
    ObfuscatedEntry {
        /// The identifier (cut to 64 characters).
        entry: String,
    },
    /// A header that must appear once appears several times.
    RepeatedHeader {
        /// The header.
        header: HeaderName,
    },
    /// Every entry of the header is a trusted proxy, or it has none.
    NoUntrustedHop {
        /// The header.
        header: HeaderName,
    },
    /// The header has fewer entries than the configured hop count.
    TooFewHops {
        /// The header.
        header: HeaderName,
        /// The hop count.
        wanted: usize,
        /// How many entries it has.
        found: usize,
    },
    /// The walk examined as many entries as it may without finding the client.
    TooManyHops {
        /// The header.
        header: HeaderName,
        /// How many entries a walk may examine.
        limit: usize,
    },
    /// Two differently configured resolvers in one stack disagree about the client.
    Conflict {
        /// What the first, recorded outcome said (`None`: unknown).
        recorded: Option<IpAddr>,
        /// What the later layer's own resolver says (`None`: unknown).
        later: Option<IpAddr>,
    },
}

impl fmt::Display for ClientIpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPeerAddress => f.write_str(
                "the request has no peer address: serve axum with `into_make_service_with_connect_info::<SocketAddr>()` (tonic adds it itself)",
            ),
            Self::MissingHeader { proxy } => write!(
                f,
                "trusted proxy {proxy} sent no forwarded header, so the client cannot be determined: configure the proxy to send it (or allow its own requests with `peer_without_header`)"
            ),
            Self::MalformedEntry { header, entry } => write!(
                f,
                "`{header}` entry `{entry}` is not a usable IP address, so the client cannot be determined"
            ),
            Self::ObfuscatedEntry { entry } => write!(
                f,
                "`forwarded` names a hop `{entry}` instead of an address, so the client cannot be determined: configure the proxy to send addresses"
            ),
            Self::RepeatedHeader { header } => {
                write!(f, "`{header}` appears more than once; it must carry exactly one address")
            }
            Self::NoUntrustedHop { header } => write!(
                f,
                "every entry of `{header}` is a trusted proxy (or it has none), so the client cannot be determined"
            ),
            Self::TooFewHops { header, wanted, found } => write!(
                f,
                "`{header}` has {found} entries but the client is expected {wanted} hops from the right"
            ),
            Self::TooManyHops { header, limit } => write!(
                f,
                "no client found within the last {limit} entries of `{header}`: raise `max_hops` if your chain of proxies is really that long"
            ),
            Self::Conflict { recorded, later } => write!(
                f,
                "two differently configured client-address resolvers disagree ({} vs {}): configure the resolver once, in `ClientIpLayer`",
                shown_addr(*recorded),
                shown_addr(*later),
            ),
        }
    }
}

fn shown_addr(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |addr| addr.to_string())
}

impl std::error::Error for ClientIpError {}

/// Why a [`ClientIpResolver`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIpConfigError {
    /// A trusted proxy entry is invalid (`index`), or the entries together trust every
    /// address of a family (no index).
    Proxy {
        /// Zero-based position of the entry, if one entry is at fault.
        index: Option<usize>,
        /// What is wrong, as for an allowed source.
        error: SourceError,
    },
    /// No trusted proxy was given.
    NoProxies,
    /// An empty list of headers.
    NoHeaders,
    /// A hop count of 0.
    ZeroHops,
    /// Not a header name.
    InvalidHeaderName {
        /// The text given (cut to 64 characters).
        name: String,
    },
}

impl fmt::Display for ClientIpConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Proxy {
                index,
                error: SourceError::MatchAll { input },
            } => write!(
                f,
                "trusted proxy {}: `{input}` trusts every address as a proxy, so any client could claim any address: list only your proxies' addresses",
                index.unwrap_or_default()
            ),
            Self::Proxy {
                error: SourceError::CoversEverything { family },
                ..
            } => write!(
                f,
                "the trusted proxies together cover every {family} address, so any client could claim any address: list only your proxies' addresses"
            ),
            Self::Proxy {
                index: Some(index),
                error,
            } => write!(f, "trusted proxy {index}: {error}"),
            Self::Proxy { index: None, error } => write!(f, "trusted proxies: {error}"),
            Self::NoProxies => f.write_str(
                "no trusted proxy given: list your proxies' addresses, or use `ClientIpResolver::peer()` when clients connect directly",
            ),
            Self::NoHeaders => f.write_str("no forwarded header given: name at least one"),
            Self::ZeroHops => f.write_str(
                "a hop count of 0 would make the proxy itself the client: count from 1, the address the nearest proxy appended",
            ),
            Self::InvalidHeaderName { name } => write!(f, "`{name}` is not a valid header name"),
        }
    }
}

impl std::error::Error for ClientIpConfigError {}

/// What was decided about a request's client address, as recorded in the request
/// extensions by the first layer that resolved it ([`ClientIpLayer`], or else the
/// first of this crate's layers). Read it with [`ClientIpOutcome::of`], or take it as
/// an axum extractor in handlers that handle an unknown address themselves.
#[derive(Debug, Clone)]
pub struct ClientIpOutcome {
    result: Result<ClientIp, ClientIpError>,
    /// Which resolver decided it ([`ClientIpResolver::id`]).
    resolver: usize,
    /// Whether a layer that decided with the request's tenant (the allowlist for a
    /// caller, a list of the tenant) has run: a `TenantLayer` after it would change the
    /// organization it decided with (see [`decided_with_tenant`]). Kept here, in the
    /// record every such layer already reads or writes, so that noting it costs no
    /// look-up or allocation of its own.
    decided: bool,
}

/// The same outcome: the same address or error, from the same resolver (or its clone);
/// whether a layer has decided with it yet is bookkeeping, not part of it.
impl PartialEq for ClientIpOutcome {
    fn eq(&self, other: &Self) -> bool {
        self.result == other.result && self.resolver == other.resolver
    }
}

impl Eq for ClientIpOutcome {}

impl ClientIpOutcome {
    /// The outcome recorded in `extensions`, if a layer recorded one.
    #[must_use]
    pub fn of(extensions: &http::Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }

    /// The client address and how it was found, or why it is unknown.
    pub fn result(&self) -> Result<&ClientIp, &ClientIpError> {
        self.result.as_ref()
    }

    /// The client, when it is known.
    #[must_use]
    pub fn client_ip(&self) -> Option<&ClientIp> {
        self.result.as_ref().ok()
    }

    /// The client address, when it is known.
    #[must_use]
    pub fn addr(&self) -> Option<IpAddr> {
        self.client_ip().map(|ip| ip.addr)
    }

    /// Consumes the outcome.
    ///
    /// # Errors
    ///
    /// Why the address is unknown.
    pub fn into_result(self) -> Result<ClientIp, ClientIpError> {
        self.result
    }
}

/// The request's client address as every layer must see it (`None`: unknown): the
/// recorded outcome, reconciled with the layer's `own` resolver if it has one, or else
/// resolved now with `own` (the peer when `None`) and recorded. See the
/// [module docs](self#resolve-once). Only the address is returned, nothing cloned: the
/// outcome stays recorded in the extensions for whoever needs its details (a refusal,
/// a log line, the handlers).
///
/// `decides`: the layer is about to decide with the request's tenant, and the record
/// says so, for a `TenantLayer` that would run after it ([`decided_with_tenant`]).
pub(crate) fn resolve_addr_once<B>(
    request: &mut Request<B>,
    own: Option<&ClientIpResolver>,
    decides: bool,
) -> Option<IpAddr> {
    // Looked up mutably (it costs what a shared look-up costs) to note the decision.
    let recorded = request
        .extensions_mut()
        .get_mut::<ClientIpOutcome>()
        .map(|recorded| {
            recorded.decided |= decides;
            (recorded.resolver, recorded.addr(), recorded.decided)
        });
    if let Some((resolver, first, decided)) = recorded {
        let Some(own) = own.filter(|own| own.id() != resolver) else {
            return first;
        };
        let later = own
            .resolve(request.extensions(), request.headers())
            .ok()
            .map(|ip| ip.addr);
        tracing::trace!(target: "tower_ip_allowlist::client_ip", client_ip = ?later, "client address resolved again by a differently configured layer");
        let conflict = match (first, later) {
            (Some(first), Some(second)) if first != second => ClientIpError::Conflict {
                recorded: Some(first),
                later: Some(second),
            },
            (Some(first), Some(_)) => return Some(first),
            (Some(first), None) => ClientIpError::Conflict {
                recorded: Some(first),
                later: None,
            },
            // Unknown stays unknown.
            (None, _) => return None,
        };
        static CONFLICT: RateLimited = RateLimited::new(Duration::from_secs(60));
        if CONFLICT.ready() {
            tracing::warn!(target: "tower_ip_allowlist::wiring", "client address unknown: {conflict}");
        }
        request.extensions_mut().insert(ClientIpOutcome {
            result: Err(conflict),
            resolver,
            decided,
        });
        return None;
    }
    let outcome = peer_or_own(request.extensions(), request.headers(), own, decides);
    let addr = outcome.addr();
    request.extensions_mut().insert(outcome);
    addr
}

/// Whether a layer has decided with the request's tenant before now: a `TenantLayer`
/// that finds this (and no tenant recorded) runs after a layer that decided with the
/// default organization.
pub(crate) fn decided_with_tenant(extensions: &http::Extensions) -> bool {
    ClientIpOutcome::of(extensions).is_some_and(|outcome| outcome.decided)
}

/// What a layer that finds no record resolves, with `own` or the peer: logged, and
/// checked for the signs of a forgotten resolver and of a server that gives no peer.
fn peer_or_own(
    extensions: &http::Extensions,
    headers: &HeaderMap,
    own: Option<&ClientIpResolver>,
    decides: bool,
) -> ClientIpOutcome {
    // The default resolver's case without the call through it.
    let result = match own {
        Some(own) => own.resolve(extensions, headers),
        None => resolver::peer_client(extensions),
    };
    let addr = result.as_ref().ok().map(|ip| ip.addr);
    tracing::trace!(target: "tower_ip_allowlist::client_ip", client_ip = ?addr, "client address resolved");
    if own.is_none() {
        warn_if_proxied(headers, addr);
    }
    if matches!(result, Err(ClientIpError::NoPeerAddress)) {
        static NO_PEER: RateLimited = RateLimited::new(Duration::from_secs(300));
        if NO_PEER.ready() {
            tracing::warn!(
                target: "tower_ip_allowlist::wiring",
                "client address unknown: {}",
                ClientIpError::NoPeerAddress
            );
        }
    }
    ClientIpOutcome {
        result,
        resolver: own.map_or(PEER_RESOLVER, ClientIpResolver::id),
        decided: decides,
    }
}

/// The recorded outcome, or else the peer's, recorded now so that later extractors and
/// layers agree: the extractors' rule, the same as every layer's.
#[cfg(feature = "axum")]
fn outcome_once(parts: &mut http::request::Parts) -> ClientIpOutcome {
    if let Some(outcome) = ClientIpOutcome::of(&parts.extensions) {
        return outcome.clone();
    }
    let outcome = peer_or_own(&parts.extensions, &parts.headers, None, false);
    parts.extensions.insert(outcome.clone());
    outcome
}

/// The signature of a forgotten resolver: a request that reached us from a private or
/// loopback address (a proxy, most likely) carrying a forwarded header, with no
/// resolver configured anywhere. Rate-limited, so a client cannot flood the logs.
fn warn_if_proxied(headers: &HeaderMap, peer: Option<IpAddr>) {
    let Some(peer) = peer else {
        return;
    };
    // The address test first: it is cheap, and public peers (most of them, where no
    // proxy stands in front) skip the header look-ups.
    if !looks_internal(peer) {
        return;
    }
    if !carries_forwarded_header(headers) {
        return;
    }
    static FORGOTTEN: RateLimited = RateLimited::new(Duration::from_secs(300));
    if FORGOTTEN.ready() {
        tracing::warn!(
            target: "tower_ip_allowlist::wiring",
            peer = %peer,
            "a request from {peer} carries a forwarded header, but no client-address resolver is configured, so the client is taken to be {peer}: if the service is behind a proxy, add `ClientIpLayer::new(ClientIpResolver::trusted_proxies([..])?)` outermost"
        );
    }
}

/// Whether `headers` hold `X-Forwarded-For`, `Forwarded` or `X-Real-IP`.
///
/// Every request from a private peer pays this check when no resolver is configured.
/// Three look-ups hash three names (~360 instructions); the few headers of most
/// requests are cheaper to read once.
pub(crate) fn carries_forwarded_header(headers: &HeaderMap) -> bool {
    /// Up to this many distinct header names, the headers are read one by one rather
    /// than looked up.
    const SCAN_HEADERS: usize = 12;
    let forwarded = [
        ForwardedHeader::XForwardedFor,
        ForwardedHeader::Forwarded,
        ForwardedHeader::XRealIp,
    ];
    if headers.keys_len() <= SCAN_HEADERS {
        headers
            .keys()
            .any(|name| forwarded.iter().any(|header| header.name() == name))
    } else {
        forwarded
            .iter()
            .any(|header| headers.contains_key(header.name()))
    }
}

/// Loopback, private (RFC 1918), shared (RFC 6598) and unique-local addresses: where
/// proxies usually sit.
fn looks_internal(addr: IpAddr) -> bool {
    match normalize_ip(addr) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests;
