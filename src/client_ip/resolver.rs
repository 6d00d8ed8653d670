//! The strategies: the peer, or trusted proxies' headers.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::header::FORWARDED;
use http::{Extensions, HeaderMap, HeaderName};
use smallvec::SmallVec;

use super::forwarded::{self, Elements, Stop, Syntax};
use super::{peer_addr, ClientIp, ClientIpConfigError, ClientIpError, ClientIpSource};
use crate::source::{normalize_ip, parse_sources, AllowedSource, SourceError};

/// How many list elements a walk examines unless [`TrustedProxies::max_hops`] says
/// otherwise: more than any real chain of proxies has.
pub const DEFAULT_MAX_HOPS: usize = 16;

/// A header that names the client, written by a trusted proxy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`: each proxy appends the address it saw.
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client`: one line, one address, set (not appended) by the proxy.
    XRealIp,
    /// Another single-address header that the proxy sets, such as `CF-Connecting-IP`
    /// (Cloudflare), `True-Client-IP` (Akamai, Cloudflare) or `Fly-Client-IP` (Fly.io).
    Single(HeaderName),
}

impl ForwardedHeader {
    /// A single-address header by name, such as `"CF-Connecting-IP"`.
    ///
    /// # Errors
    ///
    /// [`ClientIpConfigError::InvalidHeaderName`] when `name` is not a header name.
    pub fn single(name: &str) -> Result<Self, ClientIpConfigError> {
        let parsed =
            HeaderName::try_from(name).map_err(|_| ClientIpConfigError::InvalidHeaderName {
                name: forwarded::shown(name.as_bytes()),
            })?;
        Ok(match parsed.as_str() {
            "x-forwarded-for" => Self::XForwardedFor,
            "forwarded" => Self::Forwarded,
            "x-real-ip" => Self::XRealIp,
            _ => Self::Single(parsed),
        })
    }

    /// The header's name.
    #[must_use]
    pub fn name(&self) -> &HeaderName {
        static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
        match self {
            Self::XForwardedFor => &X_FORWARDED_FOR,
            Self::Forwarded => &FORWARDED,
            Self::XRealIp => &X_REAL_IP,
            Self::Single(name) => name,
        }
    }

    /// Whether the header lists a chain of hops (`X-Forwarded-For`, `Forwarded`) rather
    /// than one address.
    #[must_use]
    pub fn is_list(&self) -> bool {
        matches!(self, Self::XForwardedFor | Self::Forwarded)
    }
}

/// How the client is picked from a list header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// The first entry from the right that is not a trusted proxy.
    RightmostUntrusted,
    /// The n-th entry from the right, whatever it is.
    HopCount(usize),
}

/// Resolves the client address of a request; see the [module docs](super).
///
/// Cloning is cheap. Two resolvers compare equal when they are configured alike.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientIpResolver {
    trusted: Option<Arc<Trusted>>,
}

#[derive(Debug, Clone)]
struct Trusted {
    proxies: Box<[AllowedSource]>,
    /// In precedence order: the first one present in a request is read.
    headers: SmallVec<[ForwardedHeader; 1]>,
    strategy: Strategy,
    max_hops: usize,
    peer_without_header: bool,
    /// The resolver's [`id`](ClientIpResolver::id), unique in the process: given when
    /// it is built, never reused (an address could be, once a resolver is dropped).
    id: usize,
}

/// Configured alike, whatever their ids.
impl PartialEq for Trusted {
    fn eq(&self, other: &Self) -> bool {
        self.proxies == other.proxies
            && self.headers == other.headers
            && self.strategy == other.strategy
            && self.max_hops == other.max_hops
            && self.peer_without_header == other.peer_without_header
    }
}

impl Eq for Trusted {}

impl Trusted {
    fn contains(&self, addr: IpAddr) -> bool {
        self.proxies.iter().any(|proxy| proxy.contains(addr))
    }
}

/// A resolver that reads forwarded headers from trusted proxies, being configured: made
/// by [`ClientIpResolver::trusted_proxies`], used wherever a [`ClientIpResolver`] is
/// (it converts with `into()`, or [`build`](Self::build)).
#[derive(Debug, Clone)]
#[must_use]
pub struct TrustedProxies {
    trusted: Trusted,
}

impl ClientIpResolver {
    /// The client is the TCP peer; no header is read. This is the default.
    #[must_use]
    pub fn peer() -> Self {
        Self::default()
    }

    /// Reads forwarded headers when, and only when, the peer is one of `proxies`:
    /// addresses, CIDR ranges or `first-last` ranges, written and validated as allowed
    /// sources are (`"10.0.0.7"`, `"10.1.0.0/24"`). By default it reads
    /// `X-Forwarded-For`, picks the rightmost entry that is not a trusted proxy, walks
    /// at most [`DEFAULT_MAX_HOPS`] entries, and treats a trusted peer that sent no
    /// header as unknown; [`TrustedProxies`] changes each of these.
    ///
    /// # Errors
    ///
    /// [`ClientIpConfigError`] for an empty list, an entry that is not an address or
    /// range, host bits set (`10.0.0.7/24`), or ranges that alone or together trust
    /// every address of a family (`0.0.0.0/0`, `::/0`, `::ffff:0:0/96`, `0.0.0.0/1` with
    /// `128.0.0.0/1`): trusting everyone would let any client claim any address.
    ///
    /// # Security
    ///
    /// List exactly your proxies: see the [module docs](super#security).
    pub fn trusted_proxies<I, S>(proxies: I) -> Result<TrustedProxies, ClientIpConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        // Validated as allowed sources are, union included: trusting every address would
        // let any client claim any address.
        let proxies = parse_sources(proxies).map_err(|err| match err.error {
            SourceError::Empty => ClientIpConfigError::NoProxies,
            error => ClientIpConfigError::Proxy {
                index: err.index,
                error,
            },
        })?;
        Ok(TrustedProxies {
            trusted: Trusted {
                proxies: proxies.into_boxed_slice(),
                headers: SmallVec::from_buf([ForwardedHeader::XForwardedFor]),
                strategy: Strategy::RightmostUntrusted,
                max_hops: DEFAULT_MAX_HOPS,
                peer_without_header: false,
                id: PEER_RESOLVER,
            },
        })
    }

    /// Whether `addr` is one of the trusted proxies (always `false` for the peer
    /// strategy).
    #[must_use]
    pub fn is_trusted_proxy(&self, addr: IpAddr) -> bool {
        self.trusted
            .as_ref()
            .is_some_and(|trusted| trusted.contains(normalize_ip(addr)))
    }

    /// Resolves the client address of a request from its extensions (for the peer
    /// address) and headers. Layers call this only when no earlier layer recorded an
    /// outcome: see [`ClientIpLayer`](super::ClientIpLayer).
    ///
    /// # Errors
    ///
    /// [`ClientIpError`] when the address cannot be determined: no peer address, or a
    /// trusted proxy's header that is missing, malformed, or names no untrusted hop.
    pub fn resolve(
        &self,
        extensions: &Extensions,
        headers: &HeaderMap,
    ) -> Result<ClientIp, ClientIpError> {
        let as_peer = peer_client(extensions)?;
        let peer = as_peer.addr;
        let Some(trusted) = &self.trusted else {
            return Ok(as_peer);
        };
        if !trusted.contains(peer) {
            return Ok(as_peer);
        }
        let Some(header) = trusted
            .headers
            .iter()
            .find(|header| headers.contains_key(header.name()))
        else {
            return if trusted.peer_without_header {
                Ok(as_peer)
            } else {
                Err(ClientIpError::MissingHeader { proxy: peer })
            };
        };
        let (addr, hop) = match header {
            ForwardedHeader::XForwardedFor => walk(trusted, headers, header, Syntax::Plain)?,
            ForwardedHeader::Forwarded => walk(trusted, headers, header, Syntax::Quoted)?,
            ForwardedHeader::XRealIp | ForwardedHeader::Single(_) => {
                (forwarded::single(headers, header.name())?, 1)
            }
        };
        Ok(ClientIp {
            addr: normalize_ip(addr),
            source: ClientIpSource::Header {
                header: header.clone(),
                hop,
            },
        })
    }

    /// The resolver's identity, cheap to compare: two clones of one resolver share it,
    /// every peer resolver has the same, and no other resolver of the process has it
    /// (two built apart differ even when configured alike; a later layer then resolves
    /// again and compares the addresses).
    pub(super) fn id(&self) -> usize {
        self.trusted
            .as_ref()
            .map_or(PEER_RESOLVER, |trusted| trusted.id)
    }
}

/// The client as the default resolver ([`ClientIpResolver::peer`]) finds it: the peer,
/// and how its address was found.
#[inline]
pub(super) fn peer_client(extensions: &Extensions) -> Result<ClientIp, ClientIpError> {
    // Not `ok_or`: it would make and drop the error on every request.
    let Some(addr) = peer_addr(extensions) else {
        return Err(ClientIpError::NoPeerAddress);
    };
    Ok(ClientIp {
        addr,
        source: peer_source(extensions),
    })
}

/// How the peer address was found: the TCP peer, or the client a trusted balancer's
/// PROXY header named.
fn peer_source(extensions: &Extensions) -> ClientIpSource {
    #[cfg(feature = "proxy-protocol")]
    if let Some(info) = crate::proxy_protocol::any_made()
        .then(|| extensions.get::<crate::proxy_protocol::ProxyProtocolInfo>())
        .flatten()
    {
        if let crate::proxy_protocol::ProxyOutcome::Proxied(_) = info.outcome {
            return ClientIpSource::ProxyProtocol {
                balancer: normalize_ip(info.peer.ip()),
            };
        }
    }
    #[cfg(not(feature = "proxy-protocol"))]
    let _ = extensions;
    ClientIpSource::Peer
}

/// Walks a list header from the right; the client and its hop, counted from 1.
fn walk(
    trusted: &Trusted,
    headers: &HeaderMap,
    header: &ForwardedHeader,
    syntax: Syntax,
) -> Result<(IpAddr, usize), ClientIpError> {
    let name = header.name();
    let mut elements = Elements::new(headers.get_all(name), name, syntax, trusted.max_hops);
    let mut hop = 0;
    while let Some(element) = elements.next_element() {
        let element = match element {
            Ok(element) => element,
            Err(Stop::Error(err)) => return Err(err),
            Err(Stop::Budget) => {
                return Err(ClientIpError::TooManyHops {
                    header: name.clone(),
                    limit: trusted.max_hops,
                })
            }
        };
        hop += 1;
        let addr = match syntax {
            Syntax::Plain => forwarded::node(name, element)?,
            Syntax::Quoted => forwarded::forwarded_for(name, element)?,
        };
        let addr = normalize_ip(addr);
        let found = match trusted.strategy {
            Strategy::RightmostUntrusted => !trusted.contains(addr),
            Strategy::HopCount(n) => hop == n,
        };
        if found {
            return Ok((addr, hop));
        }
    }
    Err(match trusted.strategy {
        Strategy::RightmostUntrusted => ClientIpError::NoUntrustedHop {
            header: name.clone(),
        },
        Strategy::HopCount(wanted) => ClientIpError::TooFewHops {
            header: name.clone(),
            wanted,
            found: hop,
        },
    })
}

impl TrustedProxies {
    /// Reads `header` (the default is `X-Forwarded-For`).
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.trusted.headers = SmallVec::from_buf([header]);
        self
    }

    /// Reads the first of `headers` that a request carries, in the order given.
    ///
    /// # Security
    ///
    /// Name a header only if **every** trusted proxy writes or removes it: a header
    /// that a proxy passes through unchanged is the client's to write, and a client
    /// could then pick the header that suits it. Prefer one header.
    ///
    /// # Errors
    ///
    /// [`ClientIpConfigError::NoHeaders`] for an empty list.
    pub fn headers(
        mut self,
        headers: impl IntoIterator<Item = ForwardedHeader>,
    ) -> Result<Self, ClientIpConfigError> {
        let headers: SmallVec<[ForwardedHeader; 1]> = headers.into_iter().collect();
        if headers.is_empty() {
            return Err(ClientIpConfigError::NoHeaders);
        }
        self.trusted.headers = headers;
        Ok(self)
    }

    /// Picks the `n`-th entry from the right of a list header as the client, whatever
    /// it is (`1` is the address the nearest proxy appended), instead of the rightmost
    /// entry that is not a trusted proxy. For a fixed number of proxies whose
    /// addresses you cannot list, such as a CDN in front of a load balancer: the peer
    /// must still be trusted. Like Traefik's `depth` and realclientip's trusted count.
    /// A request whose header has fewer entries has an unknown address. Raises
    /// [`max_hops`](Self::max_hops) to `n` if needed.
    ///
    /// The trusted peer must be reachable **only** through those proxies: a client that
    /// reaches it directly writes the whole header itself, the entry `n` hops from the
    /// right included, and is taken to be whatever address it wrote there.
    ///
    /// # Errors
    ///
    /// [`ClientIpConfigError::ZeroHops`] when `n` is 0.
    pub fn hop_count(mut self, n: usize) -> Result<Self, ClientIpConfigError> {
        if n == 0 {
            return Err(ClientIpConfigError::ZeroHops);
        }
        self.trusted.strategy = Strategy::HopCount(n);
        self.trusted.max_hops = self.trusted.max_hops.max(n);
        Ok(self)
    }

    /// How many entries of a list header the walk examines at most (empty ones
    /// included), [`DEFAULT_MAX_HOPS`] by default. A request whose client is not found
    /// within them has an unknown address; this bounds the work of any header. Values
    /// below 1 are taken as 1.
    pub fn max_hops(mut self, max: usize) -> Self {
        self.trusted.max_hops = max.max(1);
        if let Strategy::HopCount(n) = self.trusted.strategy {
            self.trusted.max_hops = self.trusted.max_hops.max(n);
        }
        self
    }

    /// Whether a trusted peer that sends none of the headers is itself the client. By
    /// default it is not: the address is unknown, since a proxy that forgot its header
    /// would otherwise make every client look like the proxy. Turn this on for a load
    /// balancer's own health checks.
    pub fn peer_without_header(mut self, allow: bool) -> Self {
        self.trusted.peer_without_header = allow;
        self
    }

    /// The resolver.
    #[must_use]
    pub fn build(self) -> ClientIpResolver {
        ClientIpResolver {
            trusted: Some(Arc::new(Trusted {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                ..self.trusted
            })),
        }
    }
}

/// The [`id`](ClientIpResolver::id) of every peer resolver (they are all alike).
pub(super) const PEER_RESOLVER: usize = 0;

/// The next id of a resolver of trusted proxies.
static NEXT_ID: AtomicUsize = AtomicUsize::new(PEER_RESOLVER + 1);

impl From<TrustedProxies> for ClientIpResolver {
    fn from(proxies: TrustedProxies) -> Self {
        proxies.build()
    }
}

impl fmt::Debug for ClientIpResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.trusted {
            None => f.write_str("ClientIpResolver::Peer"),
            Some(trusted) => f
                .debug_struct("ClientIpResolver::TrustedProxies")
                .field("proxies", &trusted.proxies)
                .field("headers", &trusted.headers)
                .field("strategy", &trusted.strategy)
                .field("max_hops", &trusted.max_hops)
                .field("peer_without_header", &trusted.peer_without_header)
                .finish(),
        }
    }
}
