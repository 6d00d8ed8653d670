//! The TCP peer address, from whichever extension the server put it in.

use std::net::{IpAddr, SocketAddr};

use http::Extensions;

use crate::source::normalize_ip;

/// The peer address of the connection, IPv4-mapped IPv6 folded into IPv4.
///
/// Looked for, in order: axum's `ConnectInfo<SocketAddr>` and, for tests, its
/// `MockConnectInfo<SocketAddr>` (feature `axum`), tonic's
/// `TcpConnectInfo` (feature `tonic`), and a plain [`SocketAddr`] extension, which any
/// server or test can insert.
#[must_use]
pub fn peer_addr(extensions: &Extensions) -> Option<IpAddr> {
    // By family: an IPv4 peer needs no folding, and is copied whole rather than byte by
    // byte through the IPv6 case.
    Some(match raw_peer(extensions)? {
        SocketAddr::V4(addr) => IpAddr::V4(*addr.ip()),
        SocketAddr::V6(addr) => normalize_ip(IpAddr::V6(*addr.ip())),
    })
}

fn raw_peer(extensions: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::connect_info::MockConnectInfo(addr)) =
        extensions.get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    #[cfg(feature = "tonic")]
    if let Some(info) = extensions.get::<tonic::transport::server::TcpConnectInfo>() {
        if let Some(addr) = info.remote_addr() {
            return Some(addr);
        }
    }
    extensions.get::<SocketAddr>().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_socket_addr() {
        let mut ext = Extensions::new();
        assert_eq!(peer_addr(&ext), None);
        ext.insert("[::ffff:192.0.2.1]:80".parse::<SocketAddr>().unwrap());
        assert_eq!(peer_addr(&ext), Some("192.0.2.1".parse().unwrap()));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn axum_connect_info_first() {
        let mut ext = Extensions::new();
        ext.insert("192.0.2.9:80".parse::<SocketAddr>().unwrap());
        ext.insert(axum::extract::ConnectInfo(
            "192.0.2.1:80".parse::<SocketAddr>().unwrap(),
        ));
        assert_eq!(peer_addr(&ext), Some("192.0.2.1".parse().unwrap()));
    }
}
