//! Which address a request comes from. (Being written: see the module plan in the
//! helper brief; the public API below is fixed.)

use std::net::IpAddr;

use http::{Extensions, HeaderMap};

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

/// Why the client address could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIpError {
    /// No peer address in the request extensions.
    NoPeerAddress,
}

/// Resolves the client address of a request.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {}

impl ClientIpResolver {
    /// Resolves the client address.
    ///
    /// # Errors
    ///
    /// [`ClientIpError`] when it cannot be determined.
    pub fn resolve(&self, extensions: &Extensions, headers: &HeaderMap) -> Result<ClientIp, ClientIpError> {
        let _ = (extensions, headers);
        Err(ClientIpError::NoPeerAddress)
    }
}
