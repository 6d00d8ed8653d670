//! Which address a request comes from: the TCP peer, or a forwarded header written by a
//! proxy you trust.
//!
//! A [`ClientIpResolver`] has one of two strategies:
//!
//! - **Peer** (the default, [`ClientIpResolver::peer`]): the client is the TCP peer, read
//!   from axum's `ConnectInfo<SocketAddr>`, tonic's `TcpConnectInfo` or a plain
//!   `SocketAddr` extension ([`peer_addr`]). No header is ever read.
//! - **Trusted proxies** ([`ClientIpResolver::trusted_proxies`]): when, and only when, the
//!   peer is inside the trusted list, one forwarded header is read: `X-Forwarded-For`
//!   (all lines joined in order), `Forwarded` (RFC 7239 `for=`) or `X-Real-IP` (which
//!   must appear once). The chain is walked from the right, skipping trusted proxies;
//!   the first untrusted entry is the client, and if every entry is trusted the leftmost
//!   is. An entry that cannot be parsed (or an obfuscated `Forwarded` identifier such as
//!   `_hidden` or `unknown`) met on the walk makes the client unknown: the walk never
//!   skips it. A trusted peer that sent no header is itself the client.
//!
//! Every address is folded with [`normalize_ip`], so an
//! IPv4 client seen through a dual-stack socket as `::ffff:a.b.c.d` is the IPv4 client.
//! The layer inserts the resulting [`ClientIp`] into the request extensions, and with the
//! `axum` feature a handler can take it as an extractor.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Extensions, HeaderMap, HeaderValue};
//! use tower_ip_allowlist::client_ip::{ClientIpResolver, ClientIpSource, ForwardedHeader};
//!
//! let mut extensions = Extensions::new();
//! extensions.insert("10.0.0.5:41000".parse::<SocketAddr>()?); // the load balancer
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7, 192.0.2.44"));
//!
//! // By default headers are ignored: the client is the peer.
//! let ip = ClientIpResolver::peer().resolve(&extensions, &headers)?;
//! assert_eq!((ip.addr.to_string(), ip.source), ("10.0.0.5".into(), ClientIpSource::Peer));
//!
//! // Behind a trusted proxy, the rightmost untrusted entry is the client; the
//! // left-hand entry may be anything the client sent and is not believed.
//! let resolver = ClientIpResolver::trusted_proxies(["10.0.0.0/8".parse()?], ForwardedHeader::XForwardedFor);
//! let ip = resolver.resolve(&extensions, &headers)?;
//! assert_eq!((ip.addr.to_string(), ip.source), ("192.0.2.44".into(), ClientIpSource::XForwardedFor));
//! # Ok::<(), Box<dyn std::error::Error>>(())
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
//!   exactly their addresses (not a whole cloud range other tenants share).
//! - Make sure those proxies **append** the address they saw to the header (or overwrite
//!   it), never pass a client's value through unchanged. The walk from the right is what
//!   makes entries a client prepends (`X-Forwarded-For: <allowed>, <real>`) useless; it
//!   only works if the nearest trusted proxy wrote the real address.
//! - If the service can also be reached without the proxy, the peer is then untrusted and
//!   its headers are ignored, as they should be.

mod forwarded;
mod peer;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Extensions, HeaderMap};
use ipnet::IpNet;

pub use self::peer::peer_addr;
use crate::source::normalize_ip;

/// The resolved client address and how it was found. The layer inserts it into the
/// request extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp {
    /// The client address, IPv4-mapped IPv6 folded into IPv4.
    pub addr: IpAddr,
    /// How it was found.
    pub source: ClientIpSource,
}

/// How a [`ClientIp`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientIpSource {
    /// The TCP peer address.
    Peer,
    /// `X-Forwarded-For`, behind a trusted proxy.
    XForwardedFor,
    /// `Forwarded` (RFC 7239), behind a trusted proxy.
    Forwarded,
    /// `X-Real-IP`, behind a trusted proxy.
    XRealIp,
}

/// The forwarded header a trusted proxy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client` (one line, one address).
    XRealIp,
}

impl ForwardedHeader {
    fn source(self) -> ClientIpSource {
        match self {
            Self::XForwardedFor => ClientIpSource::XForwardedFor,
            Self::Forwarded => ClientIpSource::Forwarded,
            Self::XRealIp => ClientIpSource::XRealIp,
        }
    }
}

/// Why the client address could not be determined. A layer that needs the address then
/// refuses the request: it never fails open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIpError {
    /// No peer address in the request extensions.
    NoPeerAddress,
    /// An entry of a forwarded header met on the walk is not an address.
    MalformedEntry {
        /// The header.
        header: &'static str,
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
        header: &'static str,
    },
    /// A header value is not visible ASCII.
    InvalidHeaderValue {
        /// The header.
        header: &'static str,
    },
}

impl fmt::Display for ClientIpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPeerAddress => f.write_str(
                "the request has no peer address: serve axum with `into_make_service_with_connect_info::<SocketAddr>()` (tonic adds it itself)",
            ),
            Self::MalformedEntry { header, entry } => write!(
                f,
                "`{header}` entry `{entry}` is not an IP address, so the client cannot be determined"
            ),
            Self::ObfuscatedEntry { entry } => write!(
                f,
                "`forwarded` names a hop `{entry}` instead of an address, so the client cannot be determined: configure the proxy to send addresses"
            ),
            Self::RepeatedHeader { header } => {
                write!(f, "`{header}` appears more than once; it must carry exactly one address")
            }
            Self::InvalidHeaderValue { header } => {
                write!(f, "`{header}` holds bytes that are not visible ASCII")
            }
        }
    }
}

impl std::error::Error for ClientIpError {}

/// Resolves the client address of a request; see the [module docs](self).
///
/// Cloning is cheap.
#[derive(Clone, Default)]
pub struct ClientIpResolver {
    trusted: Option<Arc<Trusted>>,
}

struct Trusted {
    proxies: Vec<IpNet>,
    header: ForwardedHeader,
}

impl Trusted {
    fn contains(&self, addr: IpAddr) -> bool {
        self.proxies.iter().any(|net| net.contains(&addr))
    }
}

/// Folds an IPv4-mapped IPv6 network (prefix >= 96 inside `::ffff:0:0/96`) into IPv4.
fn normalize_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

impl ClientIpResolver {
    /// The client is the TCP peer; no header is read. This is the default.
    #[must_use]
    pub fn peer() -> Self {
        Self::default()
    }

    /// Reads `header` when the peer is inside `proxies`; otherwise the client is the
    /// peer. An empty list trusts nobody, which is the same as [`peer`](Self::peer).
    ///
    /// # Security
    ///
    /// List exactly your proxies: see the [module docs](self#security).
    #[must_use]
    pub fn trusted_proxies(
        proxies: impl IntoIterator<Item = IpNet>,
        header: ForwardedHeader,
    ) -> Self {
        let proxies: Vec<IpNet> = proxies
            .into_iter()
            .map(|net| normalize_net(net.trunc()))
            .collect();
        if proxies.is_empty() {
            return Self::peer();
        }
        Self {
            trusted: Some(Arc::new(Trusted { proxies, header })),
        }
    }

    /// Resolves the client address.
    ///
    /// # Errors
    ///
    /// [`ClientIpError`] when it cannot be determined: no peer address, or a malformed
    /// chain from a trusted proxy.
    pub fn resolve(
        &self,
        extensions: &Extensions,
        headers: &HeaderMap,
    ) -> Result<ClientIp, ClientIpError> {
        let peer = peer_addr(extensions).ok_or(ClientIpError::NoPeerAddress)?;
        let as_peer = ClientIp {
            addr: peer,
            source: ClientIpSource::Peer,
        };
        let Some(trusted) = &self.trusted else {
            return Ok(as_peer);
        };
        if !trusted.contains(peer) {
            return Ok(as_peer);
        }
        let entries = match trusted.header {
            ForwardedHeader::XForwardedFor => forwarded::x_forwarded_for(headers)?,
            ForwardedHeader::Forwarded => forwarded::forwarded(headers)?,
            ForwardedHeader::XRealIp => forwarded::x_real_ip(headers)?,
        };
        // Right to left: skip trusted hops; the first untrusted one is the client.
        let mut leftmost = None;
        for entry in entries {
            let addr = normalize_ip(entry?);
            if !trusted.contains(addr) {
                return Ok(ClientIp {
                    addr,
                    source: trusted.header.source(),
                });
            }
            leftmost = Some(addr);
        }
        Ok(match leftmost {
            Some(addr) => ClientIp {
                addr,
                source: trusted.header.source(),
            },
            None => as_peer,
        })
    }
}

impl fmt::Debug for ClientIpResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.trusted {
            None => f.write_str("ClientIpResolver::Peer"),
            Some(trusted) => f
                .debug_struct("ClientIpResolver::TrustedProxies")
                .field("proxies", &trusted.proxies)
                .field("header", &trusted.header)
                .finish(),
        }
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::FromRequestParts;
    use axum::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::StatusCode;

    use super::{peer_addr, ClientIp, ClientIpSource};

    /// The rejection of the [`ClientIp`] extractor: neither the allowlist layer nor the
    /// server provided an address.
    #[derive(Debug, Clone, Copy)]
    #[non_exhaustive]
    pub struct MissingClientIp;

    impl IntoResponse for MissingClientIp {
        fn into_response(self) -> Response {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "ClientIp is unavailable: add AllowlistLayer, or serve with `into_make_service_with_connect_info::<SocketAddr>()`",
            )
                .into_response()
        }
    }

    /// Takes the [`ClientIp`] the layer resolved, or else the peer address.
    impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
        type Rejection = MissingClientIp;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            if let Some(ip) = parts.extensions.get::<ClientIp>() {
                return Ok(*ip);
            }
            peer_addr(&parts.extensions)
                .map(|addr| ClientIp {
                    addr,
                    source: ClientIpSource::Peer,
                })
                .ok_or(MissingClientIp)
        }
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::extract::MissingClientIp;

#[cfg(test)]
mod tests;
