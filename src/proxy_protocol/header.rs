//! Reading a trusted balancer's PROXY header, or enough bytes to tell that there is
//! none; and telling a header's first bytes from anything else (for peers that are not
//! balancers, checked by [`ProxiedStream`](super::ProxiedStream) as the server reads).
//! The header is parsed by `ppp`; this file only compares the two signatures, buffers,
//! and decides.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use ppp::{v1, v2, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{ProxyOutcome, ProxyProtocolInfo, ProxyVersion, Settings};

/// The longest v1 header, `\r\n` included (the specification's 107 bytes).
pub(crate) const V1_MAX_LEN: usize = 107;
/// How much is read from the socket at a time while looking for the header.
const CHUNK: usize = 512;

/// Why a connection was closed before HTTP started. Logged, never sent to the peer.
#[derive(Debug)]
pub(crate) enum Refused {
    /// A trusted balancer sent no header, and that is not allowed.
    MissingHeader,
    /// The header is not valid.
    Malformed(String),
    /// The header is longer than the limit.
    TooLong,
    /// The header (or the first bytes) did not arrive within the deadline.
    Timeout,
    /// The peer closed the connection before the header was complete.
    Closed,
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader => f.write_str("no PROXY header from a trusted balancer"),
            Self::Malformed(reason) => write!(f, "malformed PROXY header: {reason}"),
            Self::TooLong => f.write_str("PROXY header longer than the limit"),
            Self::Timeout => f.write_str("PROXY header not complete within the deadline"),
            Self::Closed => f.write_str("closed before the PROXY header was complete"),
            Self::Io(err) => write!(f, "read error: {err}"),
        }
    }
}

/// The result of a successful handshake: who the connection is from, and the bytes
/// read past the header (the start of the client's data).
#[derive(Debug)]
pub(crate) struct Handshake {
    pub(crate) info: ProxyProtocolInfo,
    pub(crate) leftover: Vec<u8>,
}

/// What the first bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// Too few bytes to tell (a prefix of a signature, or none).
    Maybe,
    /// Starts with the v1 signature, `PROXY`.
    V1,
    /// Starts with the 12-byte v2 signature.
    V2,
    /// Not a PROXY header.
    NotHeader,
}

pub(crate) fn sniff(buf: &[u8]) -> Sniff {
    let v1_sig = v1::PROTOCOL_PREFIX.as_bytes();
    let v2_sig = v2::PROTOCOL_PREFIX;
    if buf.starts_with(v2_sig) {
        Sniff::V2
    } else if buf.starts_with(v1_sig) {
        Sniff::V1
    } else if v2_sig.starts_with(buf) || v1_sig.starts_with(buf) {
        Sniff::Maybe
    } else {
        Sniff::NotHeader
    }
}

/// What to do with the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Read more.
    NeedMore,
    /// Serve the connection: `consumed` bytes were the header.
    Serve {
        consumed: usize,
        client: Option<SocketAddr>,
        destination: Option<SocketAddr>,
        outcome: ProxyOutcome,
    },
    /// Close the connection.
    Close(RefusedKind),
}

/// [`Refused`] without its payload, so steps compare in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RefusedKind {
    MissingHeader,
    Malformed(String),
    TooLong,
}

impl From<RefusedKind> for Refused {
    fn from(kind: RefusedKind) -> Self {
        match kind {
            RefusedKind::MissingHeader => Self::MissingHeader,
            RefusedKind::Malformed(reason) => Self::Malformed(reason),
            RefusedKind::TooLong => Self::TooLong,
        }
    }
}

/// Decides from the bytes a trusted balancer sent so far. Pure: the table-driven tests
/// call it directly.
fn step(buf: &[u8], peer: SocketAddr, allow_missing_header: bool, max_header_len: usize) -> Step {
    match sniff(buf) {
        Sniff::Maybe => Step::NeedMore,
        Sniff::NotHeader if allow_missing_header => Step::Serve {
            consumed: 0,
            client: Some(peer),
            destination: None,
            outcome: ProxyOutcome::NoHeader,
        },
        Sniff::NotHeader => Step::Close(RefusedKind::MissingHeader),
        Sniff::V1 => v1_step(buf),
        Sniff::V2 => v2_step(buf, peer, max_header_len),
    }
}

fn v1_step(buf: &[u8]) -> Step {
    // A v1 header is one line: wait for its end before parsing, since `ppp` takes a
    // line cut at a space (`... 41000 `, the last port still to come) for a bad port.
    let has_line_end = buf.iter().take(V1_MAX_LEN).any(|&b| b == b'\n');
    if !has_line_end {
        return if buf.len() < V1_MAX_LEN {
            Step::NeedMore
        } else {
            Step::Close(RefusedKind::TooLong)
        };
    }
    let parsed = v1::Header::try_from(buf);
    if parsed.is_incomplete() {
        return Step::Close(RefusedKind::Malformed(
            "v1: the line ends before the header does".into(),
        ));
    }
    match parsed {
        Ok(header) => {
            let consumed = header.header.len();
            match header.addresses {
                v1::Addresses::Tcp4(ip) => proxied(consumed, ProxyVersion::V1, v4_ends(ip)),
                v1::Addresses::Tcp6(ip) => proxied(consumed, ProxyVersion::V1, v6_ends(ip)),
                v1::Addresses::Unknown => unknown(consumed, ProxyVersion::V1),
            }
        }
        Err(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong)) => {
            Step::Close(RefusedKind::TooLong)
        }
        Err(err) => Step::Close(RefusedKind::Malformed(format!("v1: {err}"))),
    }
}

fn v2_step(buf: &[u8], peer: SocketAddr, max_header_len: usize) -> Step {
    let parsed = v2::Header::try_from(buf);
    match parsed {
        Err(v2::ParseError::Partial(_, length)) if 16 + length > max_header_len => {
            Step::Close(RefusedKind::TooLong)
        }
        Err(v2::ParseError::Incomplete(_) | v2::ParseError::Partial(..)) => Step::NeedMore,
        Ok(header) if header.len() > max_header_len => Step::Close(RefusedKind::TooLong),
        Ok(header) => {
            let consumed = header.len();
            match (header.command, header.protocol, header.addresses) {
                // The balancer speaking for itself: addresses, if any, are ignored.
                (v2::Command::Local, ..) => Step::Serve {
                    consumed,
                    client: Some(peer),
                    destination: None,
                    outcome: ProxyOutcome::Local,
                },
                (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv4(ip)) => {
                    proxied(consumed, ProxyVersion::V2, v4_ends(ip))
                }
                (v2::Command::Proxy, v2::Protocol::Stream, v2::Addresses::IPv6(ip)) => {
                    proxied(consumed, ProxyVersion::V2, v6_ends(ip))
                }
                // UNSPEC or unix families, UDP or an unspecified transport: not a TCP
                // client's address.
                (v2::Command::Proxy, ..) => unknown(consumed, ProxyVersion::V2),
            }
        }
        Err(err) => Step::Close(RefusedKind::Malformed(format!("v2: {err}"))),
    }
}

/// A header naming a TCP client: `(source, destination)`.
fn proxied(consumed: usize, version: ProxyVersion, ends: (SocketAddr, SocketAddr)) -> Step {
    Step::Serve {
        consumed,
        client: Some(ends.0),
        destination: Some(ends.1),
        outcome: ProxyOutcome::Proxied(version),
    }
}

/// A header without a usable address: the client is unknown.
fn unknown(consumed: usize, version: ProxyVersion) -> Step {
    Step::Serve {
        consumed,
        client: None,
        destination: None,
        outcome: ProxyOutcome::Unknown(version),
    }
}

/// `(source, destination)` of an IPv4 header (`ppp` has one type for both versions).
fn v4_ends(ip: v2::IPv4) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::from((ip.source_address, ip.source_port)),
        SocketAddr::from((ip.destination_address, ip.destination_port)),
    )
}

/// `(source, destination)` of an IPv6 header.
fn v6_ends(ip: v2::IPv6) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::from((ip.source_address, ip.source_port)),
        SocketAddr::from((ip.destination_address, ip.destination_port)),
    )
}

/// Reads a trusted balancer's header under the deadline and decides. Runs in the
/// connection's own task.
pub(crate) async fn handshake(
    stream: &mut TcpStream,
    peer: SocketAddr,
    settings: &Settings,
) -> Result<Handshake, Refused> {
    let mut buf = Vec::new();
    let read = read_until_decided(stream, peer, settings, &mut buf);
    match tokio::time::timeout(settings.header_timeout, read).await {
        Ok(result) => result,
        // Not a byte: with the opt-in, a connection without header, like any other.
        Err(_elapsed) if buf.is_empty() && settings.allow_missing_header => Ok(Handshake {
            info: ProxyProtocolInfo::new(peer, Some(peer), None, ProxyOutcome::NoHeader),
            leftover: buf,
        }),
        Err(_elapsed) => Err(Refused::Timeout),
    }
}

async fn read_until_decided(
    stream: &mut TcpStream,
    peer: SocketAddr,
    settings: &Settings,
    buf: &mut Vec<u8>,
) -> Result<Handshake, Refused> {
    // A bound however the parser answers: never buffer more than the longest header
    // allowed and one read.
    let limit = settings.max_header_len.max(V1_MAX_LEN) + CHUNK;
    let mut chunk = [0u8; CHUNK];
    loop {
        match step(
            buf,
            peer,
            settings.allow_missing_header,
            settings.max_header_len,
        ) {
            Step::NeedMore => {}
            Step::Close(kind) => return Err(kind.into()),
            Step::Serve {
                consumed,
                client,
                destination,
                outcome,
            } => {
                buf.drain(..consumed);
                return Ok(Handshake {
                    info: ProxyProtocolInfo::new(peer, client, destination, outcome),
                    leftover: std::mem::take(buf),
                });
            }
        }
        if buf.len() >= limit {
            return Err(Refused::TooLong);
        }
        let n = stream.read(&mut chunk).await.map_err(Refused::Io)?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "10.0.0.5:50000";

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = v2::PROTOCOL_PREFIX.to_vec();
        out.push(0x20 | command);
        out.push(family);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    fn v4_block() -> Vec<u8> {
        let mut block = vec![203, 0, 113, 7, 192, 0, 2, 1];
        block.extend_from_slice(&41000u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block
    }

    struct Case {
        name: &'static str,
        input: Vec<u8>,
        allow_missing: bool,
        want: Step,
    }

    fn serve(
        consumed: usize,
        client: Option<&str>,
        destination: Option<&str>,
        outcome: ProxyOutcome,
    ) -> Step {
        Step::Serve {
            consumed,
            client: client.map(|c| c.parse().unwrap()),
            destination: destination.map(|d| d.parse().unwrap()),
            outcome,
        }
    }

    #[test]
    fn steps() {
        let v1_line = b"PROXY TCP4 203.0.113.7 192.0.2.1 41000 443\r\n".to_vec();
        let mut v1_then_http = v1_line.clone();
        v1_then_http.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let v2_v4 = v2(1, 0x11, &v4_block(), &[]);
        let mut v2_tlv = v2(1, 0x11, &v4_block(), &[0x04, 0, 3, b'a', b'b', b'c']);
        let v2_tlv_len = v2_tlv.len();
        v2_tlv.extend_from_slice(b"GET");
        let mut big = v2(1, 0x11, &v4_block(), &[0; 5000]);
        big.truncate(40);
        #[rustfmt::skip]
        let cases = [
            Case { name: "nothing yet", input: vec![], allow_missing: false, want: Step::NeedMore },
            Case { name: "part of the v1 signature", input: b"PRO".to_vec(), allow_missing: false, want: Step::NeedMore },
            Case { name: "part of the v2 signature", input: b"\r\n\r\n\0".to_vec(), allow_missing: false, want: Step::NeedMore },
            Case { name: "v1 header in progress", input: b"PROXY TCP4 203.0.113.7 192.0.2.1 41000 44".to_vec(), allow_missing: false, want: Step::NeedMore },
            Case { name: "v1 TCP4", input: v1_line.clone(), allow_missing: false, want: serve(v1_line.len(), Some("203.0.113.7:41000"), Some("192.0.2.1:443"), ProxyOutcome::Proxied(ProxyVersion::V1)) },
            Case { name: "v1 then HTTP", input: v1_then_http, allow_missing: false, want: serve(v1_line.len(), Some("203.0.113.7:41000"), Some("192.0.2.1:443"), ProxyOutcome::Proxied(ProxyVersion::V1)) },
            Case { name: "v1 TCP6", input: b"PROXY TCP6 2001:db8::7 2001:db8::1 41000 443\r\n".to_vec(), allow_missing: false, want: serve(46, Some("[2001:db8::7]:41000"), Some("[2001:db8::1]:443"), ProxyOutcome::Proxied(ProxyVersion::V1)) },
            Case { name: "v1 UNKNOWN", input: b"PROXY UNKNOWN\r\n".to_vec(), allow_missing: false, want: serve(15, None, None, ProxyOutcome::Unknown(ProxyVersion::V1)) },
            Case { name: "v1 bad address", input: b"PROXY TCP4 203.0.113.777 192.0.2.1 41000 443\r\n".to_vec(), allow_missing: false, want: Step::Close(RefusedKind::Malformed("v1: Header contains invalid IP address for the source.".into())) },
            Case { name: "v1 line ends early", input: b"PROXY TCP4 203.0.113.7\r\nGET /".to_vec(), allow_missing: false, want: Step::Close(RefusedKind::Malformed("v1: the line ends before the header does".into())) },
            Case { name: "v1 too long", input: [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat(), allow_missing: false, want: Step::Close(RefusedKind::TooLong) },
            Case { name: "v1 not UTF-8", input: b"PROXY TCP4 \xff\xfe 1 2\r\n".to_vec(), allow_missing: false, want: Step::Close(RefusedKind::Malformed("v1: Header is not valid UTF-8.".into())) },
            Case { name: "v2 IPv4", input: v2_v4.clone(), allow_missing: false, want: serve(28, Some("203.0.113.7:41000"), Some("192.0.2.1:443"), ProxyOutcome::Proxied(ProxyVersion::V2)) },
            Case { name: "v2 TLVs ignored, data kept", input: v2_tlv, allow_missing: false, want: serve(v2_tlv_len, Some("203.0.113.7:41000"), Some("192.0.2.1:443"), ProxyOutcome::Proxied(ProxyVersion::V2)) },
            Case { name: "v2 truncated", input: v2_v4[..20].to_vec(), allow_missing: false, want: Step::NeedMore },
            Case { name: "v2 LOCAL", input: v2(0, 0x00, &[], &[]), allow_missing: false, want: serve(16, Some(PEER), None, ProxyOutcome::Local) },
            Case { name: "v2 UNSPEC", input: v2(1, 0x00, &[], &[]), allow_missing: false, want: serve(16, None, None, ProxyOutcome::Unknown(ProxyVersion::V2)) },
            Case { name: "v2 unix", input: v2(1, 0x31, &[0; 216], &[]), allow_missing: false, want: serve(232, None, None, ProxyOutcome::Unknown(ProxyVersion::V2)) },
            Case { name: "v2 UDP", input: v2(1, 0x12, &v4_block(), &[]), allow_missing: false, want: serve(28, None, None, ProxyOutcome::Unknown(ProxyVersion::V2)) },
            Case { name: "v2 announced beyond the limit", input: big, allow_missing: false, want: Step::Close(RefusedKind::TooLong) },
            Case { name: "v2 bad version", input: { let mut h = v2_v4.clone(); h[12] = 0x11; h }, allow_missing: false, want: Step::Close(RefusedKind::Malformed("v2: Expected version 10 to be equal to 2.".into())) },
            Case { name: "v2 length shorter than its addresses", input: v2(1, 0x21, &v4_block(), &[]), allow_missing: false, want: Step::Close(RefusedKind::Malformed("v2: Header length of 12 bytes cannot store the 36 bytes required for the address family.".into())) },
            Case { name: "trusted, plain HTTP", input: b"GET / HTTP/1.1\r\n".to_vec(), allow_missing: false, want: Step::Close(RefusedKind::MissingHeader) },
            Case { name: "trusted, plain HTTP, allowed", input: b"GET /".to_vec(), allow_missing: true, want: serve(0, Some(PEER), None, ProxyOutcome::NoHeader) },
        ];
        for case in cases {
            let got = step(&case.input, PEER.parse().unwrap(), case.allow_missing, 4096);
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn sniffing() {
        let v2_v4 = v2(1, 0x11, &v4_block(), &[]);
        #[rustfmt::skip]
        let cases: [(&str, &[u8], Sniff); 10] = [
            ("nothing yet", b"", Sniff::Maybe),
            ("part of the v1 signature", b"PROX", Sniff::Maybe),
            ("part of the v2 signature", &v2_v4[..11], Sniff::Maybe),
            ("v1", b"PROXY TCP4", Sniff::V1),
            ("v1 signature alone", b"PROXY", Sniff::V1),
            ("v2", &v2_v4[..12], Sniff::V2),
            ("POST shares a P", b"PO", Sniff::NotHeader),
            ("GET", b"G", Sniff::NotHeader),
            ("TLS", &[0x16, 0x03, 0x01], Sniff::NotHeader),
            ("CR LF then not QUIT", b"\r\n\r\nX", Sniff::NotHeader),
        ];
        for (name, input, want) in cases {
            assert_eq!(sniff(input), want, "{name}");
        }
    }

    #[test]
    fn v2_limit_applies_to_complete_headers() {
        let header = v2(1, 0x11, &v4_block(), &[0; 300]);
        let peer = PEER.parse().unwrap();
        assert_eq!(
            step(&header, peer, false, 300),
            Step::Close(RefusedKind::TooLong)
        );
        assert!(matches!(
            step(&header, peer, false, 400),
            Step::Serve { .. }
        ));
    }

    proptest::proptest! {
        /// Whatever follows a signature, the answer is safe: no panic, never more
        /// consumed than was read, and more is asked for only while under the limits.
        #[test]
        fn any_bytes_are_decided_safely(
            start in 0usize..4,
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let mut buf = match start {
                0 => b"PROXY ".to_vec(),
                1 => b"PROXY TCP4 ".to_vec(),
                2 => [v2::PROTOCOL_PREFIX, &[0x21]].concat(),
                _ => v2::PROTOCOL_PREFIX.to_vec(),
            };
            buf.extend_from_slice(&rest);
            let max_header_len = 232;
            match step(&buf, PEER.parse().unwrap(), false, max_header_len) {
                Step::Serve { consumed, .. } => proptest::prop_assert!(consumed <= buf.len()),
                Step::NeedMore => proptest::prop_assert!(buf.len() < max_header_len),
                Step::Close(_) => {}
            }
        }
    }

    #[test]
    fn any_prefix_of_a_header_is_never_served_from_a_balancer() {
        // Every cut of a valid header asks for more, never serves a guess.
        let v1_line = b"PROXY TCP6 2001:db8::7 2001:db8::1 41000 443\r\n";
        let v2_v4 = v2(1, 0x11, &v4_block(), &[0x04, 0, 1, 0]);
        let peer = PEER.parse().unwrap();
        for header in [v1_line.as_slice(), &v2_v4] {
            for cut in 0..header.len() {
                assert_eq!(
                    step(&header[..cut], peer, false, 4096),
                    Step::NeedMore,
                    "cut {cut}"
                );
            }
        }
    }
}
