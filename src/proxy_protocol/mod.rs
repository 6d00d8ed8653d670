//! The client address behind a layer-4 load balancer: the PROXY protocol (v1 and v2).
//!
//! A load balancer that forwards TCP rather than HTTP (AWS NLB, haproxy `mode tcp`,
//! Traefik TCP routers, ingress-nginx with `use-proxy-protocol`) cannot add a forwarded
//! header; it writes a [PROXY protocol] header at the start of each connection instead.
//! [`ProxyProtocolListener`] wraps a `tokio` [`TcpListener`](tokio::net::TcpListener),
//! reads that header (text v1 or binary v2, parsed by the [`ppp`] crate) from the
//! balancers you trust, and hands on a [`ProxiedStream`] whose peer address is the
//! client's:
//!
//! - **axum**: `axum::serve(listener, proxy_protocol::with_connect_info(app))` (feature
//!   `axum`). Every request carries `ConnectInfo<SocketAddr>` with the client (absent
//!   when the client is unknown) and a [`ProxyProtocolInfo`] extension with the
//!   balancer and what the header said.
//! - **tonic**: `Server::builder()...serve_with_incoming(listener)` (feature `tonic`; the
//!   listener is a `Stream` of connections). Every request carries tonic's
//!   `TcpConnectInfo` whose `remote_addr` is the client (`None` when unknown). tonic
//!   puts only that one connection type into requests, so the [`ProxyProtocolInfo`] is
//!   not there (the balancer is in the trace-level log, and on the stream for a server of
//!   your own).
//!
//! So [`peer_addr`](crate::client_ip::peer_addr), the outcome
//! [`ClientIpLayer`](crate::client_ip::ClientIpLayer) records (with the default peer
//! resolver: the client, source `Peer`), axum's `ConnectInfo<SocketAddr>` and tonic's
//! `Request::remote_addr` all see the client, never the balancer.
//!
//! [PROXY protocol]: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
//!
//! # What each connection becomes
//!
//! | TCP peer | first bytes | result | client address |
//! |---|---|---|---|
//! | trusted balancer | PROXY header, `PROXY` command, TCP over IPv4/IPv6 | served | the header's source |
//! | trusted balancer | v2 header, `LOCAL` command (health checks) | served | the balancer |
//! | trusted balancer | v1 `UNKNOWN`, or v2 with another family (UNSPEC, unix) or transport | served | **unknown** |
//! | trusted balancer | no header | closed; served as the peer with [`allow_missing_header`](ProxyProtocolConfig::allow_missing_header) | the balancer |
//! | trusted balancer | malformed, too long, or not complete within the deadline | closed | |
//! | anyone else | a PROXY header | closed (the first read fails) | |
//! | anyone else | anything else (plain HTTP, TLS) | served at once | the peer |
//!
//! An unknown client fails closed: the request has no peer address, so
//! [`peer_addr`](crate::client_ip::peer_addr) returns `None` and the allowlist refuses
//! every caller a policy applies to (`403 clientIpUnknown`). It never falls back to the
//! balancer's address. TLVs are not read, so whatever they hold is ignored.
//!
//! A balancer's header is read in a task of its own for each connection, under a
//! deadline ([`header_timeout`](ProxyProtocolConfig::header_timeout), 3 s by default), so
//! a connection that sends nothing never holds up the others; at most
//! [`max_pending_handshakes`](ProxyProtocolConfig::max_pending_handshakes) are read at
//! once. A v1 header is at most 107 bytes, as the specification says; a v2 header at
//! most [`max_header_len`](ProxyProtocolConfig::max_header_len) (4 KiB by default).
//! Connections from other peers are handed on at once, and take no such slot: their
//! first bytes are checked for a PROXY signature as the server reads them, so the
//! server's own timeouts apply to them as without this listener.
//!
//! # Behind a balancer and an HTTP proxy
//!
//! The PROXY header is read first, when the connection opens: its client becomes the
//! connection's peer. Then, per request, the
//! [`ClientIpResolver`](crate::client_ip::ClientIpResolver) of
//! [`ClientIpLayer`](crate::client_ip::ClientIpLayer) works on that peer as on any
//! other: if the PROXY client is itself an HTTP proxy you list in
//! [`trusted_proxies`](crate::client_ip::ClientIpResolver::trusted_proxies) (a layer-4
//! balancer in front of a reverse proxy that forwards to you with the PROXY protocol),
//! its forwarded header is read and walked as usual. The two lists are separate: the
//! balancers here, the HTTP proxies in the resolver.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{extract::ConnectInfo, routing::get, Extension, Router};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tower_ip_allowlist::proxy_protocol::{self, ProxyOutcome, ProxyProtocolConfig, ProxyProtocolInfo, ProxyProtocolListener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Only the balancer on 127.0.0.1 is believed.
//! let config = ProxyProtocolConfig::new(["127.0.0.1"])?;
//! let listener = ProxyProtocolListener::bind("127.0.0.1:0", config).await?;
//! let addr = listener.local_addr()?;
//!
//! let app = Router::new().route(
//!     "/",
//!     get(|ConnectInfo(client): ConnectInfo<SocketAddr>, Extension(info): Extension<ProxyProtocolInfo>| async move {
//!         assert_eq!(info.outcome, ProxyOutcome::Proxied(proxy_protocol::ProxyVersion::V1));
//!         format!("{} via {}", client.ip(), info.peer.ip())
//!     }),
//! );
//! tokio::spawn(async move { axum::serve(listener, proxy_protocol::with_connect_info(app)).await });
//!
//! // What a balancer sends: the header, then the client's bytes.
//! let mut balancer = tokio::net::TcpStream::connect(addr).await?;
//! balancer.write_all(b"PROXY TCP4 203.0.113.7 192.0.2.1 41000 443\r\n").await?;
//! balancer.write_all(b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n").await?;
//! let mut response = String::new();
//! balancer.read_to_string(&mut response).await?;
//! assert!(response.starts_with("HTTP/1.1 200"));
//! assert!(response.ends_with("203.0.113.7 via 127.0.0.1"));
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//!
//! The PROXY header is believed from the balancers you list and from no one else, like a
//! forwarded header from a trusted proxy (see [`client_ip`](crate::client_ip#security)):
//!
//! - List exactly your balancers' addresses (or their subnet), as the service sees them.
//!   A range shared with other tenants lets them claim any address. Match-all ranges are
//!   refused.
//! - The balancer must **always** send the header (haproxy `send-proxy-v2`, NLB "proxy
//!   protocol v2" on the target group). A connection from a listed balancer without one
//!   is closed unless you opt in with
//!   [`allow_missing_header`](ProxyProtocolConfig::allow_missing_header), in which case
//!   the balancer itself is the client. Read its security note: while it is on, a
//!   client behind a balancer that sends no header can write a PROXY line itself.
//! - A connection from anyone else that starts with a PROXY header is closed, never
//!   believed. Plain connections from elsewhere (health checks, a sidecar) are served
//!   with their own address, so an allowlist still applies to them.
//! - The port the listener serves should be reachable only through the balancers; if it
//!   is not, the rules above still hold, but clients that bypass the balancer are seen
//!   with their own address.
//! - Do not also list the balancers' range as trusted HTTP proxies in the
//!   [`ClientIpResolver`](crate::client_ip::ClientIpResolver): a client whose PROXY
//!   address falls inside it (another service in the same subnet) would then have its
//!   `X-Forwarded-For` believed. List there only the HTTP proxies that sit behind the
//!   balancer.

#[cfg(feature = "axum")]
mod connect_info;
mod header;
mod listener;
mod stream;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::connect_info::{with_connect_info, AddConnectInfo, WithConnectInfo};
pub use self::listener::ProxyProtocolListener;
pub use self::stream::ProxiedStream;
use crate::seen::Seen;
use crate::source::{check_coverage, normalize_ip, parse_sources, AllowedSource, SourceError};

/// The PROXY protocol version a header was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// The text header, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// What a connection's first bytes said, and so where its client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyOutcome {
    /// A trusted balancer sent a `PROXY` header for TCP over IPv4 or IPv6: the client is
    /// the header's source address.
    Proxied(ProxyVersion),
    /// A trusted balancer sent a v2 `LOCAL` header (its own health check): the client is
    /// the balancer.
    Local,
    /// A trusted balancer sent a header without a usable address (v1 `UNKNOWN`, v2
    /// `UNSPEC` or unix family, or a transport other than TCP): the client is unknown.
    Unknown(ProxyVersion),
    /// A trusted balancer sent no header and
    /// [`allow_missing_header`](ProxyProtocolConfig::allow_missing_header) is on: the
    /// client is the balancer.
    NoHeader,
    /// The peer is not a trusted balancer and sent no header: the client is the peer.
    Direct,
}

/// How a connection's client address was found: the TCP peer (the balancer, for
/// proxied connections), the client, and what the header said. See the
/// [module docs](self).
///
/// With [`with_connect_info`] (axum), every request carries it as an extension (read it
/// with `Extension<ProxyProtocolInfo>`); [`ProxiedStream::info`] has it for other servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ProxyProtocolInfo {
    /// The TCP peer of the connection: the balancer when a header was read.
    pub peer: SocketAddr,
    /// The client: the header's source, the balancer for `LOCAL`, the peer for a
    /// connection without header; `None` when the header names no usable address, and
    /// then the request has no peer address at all.
    pub client: Option<SocketAddr>,
    /// The address the client connected to, as the balancer reported it (`None` when
    /// the header did not say, or there was no header).
    pub destination: Option<SocketAddr>,
    /// What the connection's first bytes said.
    pub outcome: ProxyOutcome,
}

/// Whether this process has made a [`ProxyProtocolInfo`] (only
/// [`ProxyProtocolInfo::new`] makes one): servers without a PROXY-protocol listener
/// skip looking for it when they resolve a client address.
static MADE: Seen = Seen::new();

/// Whether a request could carry a [`ProxyProtocolInfo`].
pub(crate) fn any_made() -> bool {
    MADE.ever()
}

impl ProxyProtocolInfo {
    /// Made by the listener for each connection, and only here.
    pub(crate) fn new(
        peer: SocketAddr,
        client: Option<SocketAddr>,
        destination: Option<SocketAddr>,
        outcome: ProxyOutcome,
    ) -> Self {
        MADE.note();
        Self {
            peer,
            client,
            destination,
            outcome,
        }
    }

    /// The trusted balancer the connection came through: the TCP peer, unless the peer
    /// is not a balancer ([`ProxyOutcome::Direct`]).
    #[must_use]
    pub fn balancer(&self) -> Option<SocketAddr> {
        match self.outcome {
            ProxyOutcome::Direct => None,
            _ => Some(self.peer),
        }
    }
}

/// The settings of a [`ProxyProtocolListener`]: the trusted balancers, the deadline
/// and the size limit. See the [module docs](self) for an example.
///
/// # Security
///
/// Only the balancers listed here are believed: see the
/// [module docs](self#security).
#[derive(Clone)]
#[must_use]
pub struct ProxyProtocolConfig {
    inner: Arc<Settings>,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    balancers: Vec<AllowedSource>,
    pub(crate) header_timeout: Duration,
    pub(crate) max_header_len: usize,
    pub(crate) allow_missing_header: bool,
    pub(crate) max_pending_handshakes: usize,
}

impl Settings {
    pub(crate) fn is_trusted(&self, peer: IpAddr) -> bool {
        let peer = normalize_ip(peer);
        self.balancers.iter().any(|source| source.contains(peer))
    }
}

/// The default deadline for the header: 3 seconds.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// The default size limit of a v2 header, TLVs included: 4 KiB.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;
/// The smallest allowed size limit of a v2 header: the 16 fixed bytes and the largest
/// address block (two unix paths, 216 bytes), so every family can be read.
pub const MIN_MAX_HEADER_LEN: usize = 16 + 216;
/// The largest v2 header there can be: the 16 fixed bytes and a 16-bit length.
pub const MAX_MAX_HEADER_LEN: usize = 16 + u16::MAX as usize;
/// The default number of connections whose header is read at once.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

impl ProxyProtocolConfig {
    /// Trusts the balancers at `balancers`: addresses (`10.0.0.5`, `2001:db8::5`), CIDR
    /// ranges (`10.0.0.0/24`) or address ranges (`10.0.0.5-10.0.0.9`), as an allowed
    /// source is written (see [`source`](crate::source)).
    ///
    /// # Errors
    ///
    /// [`ProxyProtocolConfigError::InvalidBalancer`] for an entry that is not an address
    /// or range, a match-all range (`0.0.0.0/0`, `::/0`, `::ffff:0:0/96`), or a range
    /// with host bits set; [`ProxyProtocolConfigError::NoBalancers`] for an empty list.
    pub fn new<I, S>(balancers: I) -> Result<Self, ProxyProtocolConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let balancers = parse_sources(balancers).map_err(|err| match err.error {
            SourceError::Empty => ProxyProtocolConfigError::NoBalancers,
            error => ProxyProtocolConfigError::InvalidBalancer {
                index: err.index,
                error,
            },
        })?;
        Self::from_sources(balancers)
    }

    /// Trusts the balancers in `balancers`, already validated.
    ///
    /// # Errors
    ///
    /// [`ProxyProtocolConfigError::NoBalancers`] for an empty list.
    pub fn from_sources(
        balancers: impl IntoIterator<Item = AllowedSource>,
    ) -> Result<Self, ProxyProtocolConfigError> {
        let balancers: Vec<AllowedSource> = balancers.into_iter().collect();
        if balancers.is_empty() {
            return Err(ProxyProtocolConfigError::NoBalancers);
        }
        check_coverage(&balancers)
            .map_err(|error| ProxyProtocolConfigError::InvalidBalancer { index: None, error })?;
        Ok(Self {
            inner: Arc::new(Settings {
                balancers,
                header_timeout: DEFAULT_HEADER_TIMEOUT,
                max_header_len: DEFAULT_MAX_HEADER_LEN,
                allow_missing_header: false,
                max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            }),
        })
    }

    fn settings_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.inner)
    }

    /// How long a trusted balancer has to send its whole header after the connection
    /// is accepted: [`DEFAULT_HEADER_TIMEOUT`] unless set. Past it, the connection is
    /// closed (or, with [`allow_missing_header`](Self::allow_missing_header) and not a
    /// byte received, served as a connection without header).
    ///
    /// # Errors
    ///
    /// [`ProxyProtocolConfigError::ZeroTimeout`] for a zero duration.
    pub fn header_timeout(mut self, timeout: Duration) -> Result<Self, ProxyProtocolConfigError> {
        if timeout.is_zero() {
            return Err(ProxyProtocolConfigError::ZeroTimeout);
        }
        self.settings_mut().header_timeout = timeout;
        Ok(self)
    }

    /// The size limit of a v2 header, its 16 fixed bytes and TLVs included:
    /// [`DEFAULT_MAX_HEADER_LEN`] unless set. A longer header closes the connection. (A
    /// v1 header is always limited to 107 bytes.)
    ///
    /// # Errors
    ///
    /// [`ProxyProtocolConfigError::MaxHeaderLen`] outside
    /// [`MIN_MAX_HEADER_LEN`]`..=`[`MAX_MAX_HEADER_LEN`].
    pub fn max_header_len(mut self, len: usize) -> Result<Self, ProxyProtocolConfigError> {
        if !(MIN_MAX_HEADER_LEN..=MAX_MAX_HEADER_LEN).contains(&len) {
            return Err(ProxyProtocolConfigError::MaxHeaderLen { len });
        }
        self.settings_mut().max_header_len = len;
        Ok(self)
    }

    /// Serves connections from a trusted balancer that sends no header, with the
    /// balancer as the client, instead of closing them. Off by default.
    ///
    /// # Security
    ///
    /// **While this is on, a client can choose its own address.** A balancer that
    /// sends no header forwards the client's bytes as they are, so a client can begin
    /// its connection with a PROXY line of its own, and the listener, which cannot tell
    /// that line from the balancer's, believes it. Use it only where no client can
    /// reach the balancer without a header being sent (a balancer that speaks the PROXY
    /// protocol to every target, with only its own health checks arriving bare), or on
    /// a separate port during a migration whose policies do not depend on the client
    /// address. Otherwise the balancer's own address stands for every client it forwards
    /// without a header.
    pub fn allow_missing_header(mut self, allow: bool) -> Self {
        self.settings_mut().allow_missing_header = allow;
        self
    }

    /// How many balancer connections may be reading their header at once; beyond that
    /// the listener stops accepting until one finishes:
    /// [`DEFAULT_MAX_PENDING_HANDSHAKES`] unless set (0 is taken as 1).
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.settings_mut().max_pending_handshakes = max.max(1);
        self
    }

    /// Whether `peer` is one of the trusted balancers (IPv4-mapped IPv6 folded).
    #[must_use]
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.inner.is_trusted(peer)
    }

    pub(crate) fn settings(&self) -> &Arc<Settings> {
        &self.inner
    }
}

impl fmt::Debug for ProxyProtocolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyProtocolConfig")
            .field("balancers", &self.inner.balancers)
            .field("header_timeout", &self.inner.header_timeout)
            .field("max_header_len", &self.inner.max_header_len)
            .field("allow_missing_header", &self.inner.allow_missing_header)
            .field("max_pending_handshakes", &self.inner.max_pending_handshakes)
            .finish()
    }
}

/// Why a [`ProxyProtocolConfig`] is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyProtocolConfigError {
    /// A trusted balancer entry is not a valid address or range (`index`), or the
    /// entries together trust every address of a family (no index).
    InvalidBalancer {
        /// Zero-based position of the entry, if one entry is at fault.
        index: Option<usize>,
        /// What is wrong with it.
        error: SourceError,
    },
    /// No trusted balancer is listed.
    NoBalancers,
    /// The header deadline is zero.
    ZeroTimeout,
    /// The v2 header size limit is out of range.
    MaxHeaderLen {
        /// The limit asked for.
        len: usize,
    },
}

impl fmt::Display for ProxyProtocolConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBalancer {
                index,
                error: SourceError::MatchAll { input },
            } => write!(
                f,
                "trusted balancer {}: `{input}` matches every address, so anyone could claim any client address with a PROXY header: list your load balancers' addresses or subnet",
                index.unwrap_or_default()
            ),
            Self::InvalidBalancer {
                error: SourceError::CoversEverything { family },
                ..
            } => write!(
                f,
                "the trusted balancers together cover every {family} address, so anyone could claim any client address with a PROXY header: list your load balancers' addresses or subnet"
            ),
            Self::InvalidBalancer {
                index: Some(index),
                error,
            } => write!(f, "trusted balancer {index}: {error}"),
            Self::InvalidBalancer { index: None, error } => {
                write!(f, "trusted balancers: {error}")
            }
            Self::NoBalancers => f.write_str(
                "no trusted balancer: name the load balancers (addresses or CIDR ranges) whose PROXY headers are believed",
            ),
            Self::ZeroTimeout => f.write_str(
                "the PROXY header deadline is zero: give the balancer a few seconds (the default is 3 s)",
            ),
            Self::MaxHeaderLen { len } => write!(
                f,
                "a PROXY v2 header limit of {len} bytes is out of range: use {MIN_MAX_HEADER_LEN} to {MAX_MAX_HEADER_LEN} (the default is {DEFAULT_MAX_HEADER_LEN})"
            ),
        }
    }
}

impl std::error::Error for ProxyProtocolConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidBalancer { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balancers_are_validated() {
        struct Case {
            name: &'static str,
            input: &'static str,
            want: Result<(), &'static str>,
        }
        #[rustfmt::skip]
        let cases = [
            Case { name: "address", input: "10.0.0.5", want: Ok(()) },
            Case { name: "network", input: "10.0.0.0/24", want: Ok(()) },
            Case { name: "IPv6", input: "2001:db8::/64", want: Ok(()) },
            Case { name: "IPv4 match-all", input: "0.0.0.0/0", want: Err("matchAllNotAllowed") },
            Case { name: "IPv6 match-all", input: "::/0", want: Err("matchAllNotAllowed") },
            Case { name: "IPv4-mapped match-all", input: "::ffff:0:0/96", want: Err("matchAllNotAllowed") },
            Case { name: "host bits", input: "10.0.0.5/24", want: Err("hostBitsSet") },
            Case { name: "host name", input: "lb.example.com", want: Err("hostnameNotAllowed") },
        ];
        for case in cases {
            let got = ProxyProtocolConfig::new([case.input])
                .map(|_| ())
                .map_err(|err| match err {
                    ProxyProtocolConfigError::InvalidBalancer {
                        index: Some(0),
                        error,
                    } => error.code(),
                    other => panic!("{}: {other:?}", case.name),
                });
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = ProxyProtocolConfig::new(["10.0.0.5", "0.0.0.0/0"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("trusted balancer 1: `0.0.0.0/0` matches every address"),
            "{err}"
        );
        let err = ProxyProtocolConfig::new(["10.0.0.5/24"]).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `10.0.0.0/24`"),
            "{err}"
        );
        // Two halves trust everyone as much as `0.0.0.0/0` does.
        let err = ProxyProtocolConfig::new(["0.0.0.0/1", "128.0.0.0/1"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the trusted balancers together cover every IPv4 address"),
            "{err}"
        );
        let everyone = ["::/1".parse().unwrap(), "8000::/1".parse().unwrap()];
        assert!(ProxyProtocolConfig::from_sources(everyone).is_err());
        let none: [&str; 0] = [];
        assert_eq!(
            ProxyProtocolConfig::new(none).unwrap_err(),
            ProxyProtocolConfigError::NoBalancers
        );
        let config = ProxyProtocolConfig::new(["10.0.0.5"]).unwrap();
        assert_eq!(
            config.clone().header_timeout(Duration::ZERO).unwrap_err(),
            ProxyProtocolConfigError::ZeroTimeout
        );
        assert_eq!(
            config.clone().max_header_len(100).unwrap_err(),
            ProxyProtocolConfigError::MaxHeaderLen { len: 100 }
        );
        assert!(config.max_header_len(MIN_MAX_HEADER_LEN).is_ok());
    }

    #[test]
    fn trust_folds_mapped_addresses_and_builders_do_not_share() {
        let config = ProxyProtocolConfig::new(["10.0.0.0/24", "2001:db8::5"]).unwrap();
        assert!(config.is_trusted("10.0.0.9".parse().unwrap()));
        assert!(config.is_trusted("::ffff:10.0.0.9".parse().unwrap()));
        assert!(config.is_trusted("2001:db8::5".parse().unwrap()));
        assert!(!config.is_trusted("10.0.1.9".parse().unwrap()));
        let strict = config.clone();
        let lenient = config.allow_missing_header(true);
        assert!(!strict.settings().allow_missing_header);
        assert!(lenient.settings().allow_missing_header);
    }
}
