//! The PROXY protocol listener in real axum and tonic servers on loopback: hand-built v1
//! and v2 headers, the deadline and size limits, trust, and a real haproxy in front
//! (`send-proxy-v2`, `send-proxy`) when `haproxy` is on PATH (always in CI).
//!
//! Every loopback connection comes from 127.0.0.x: the balancer is 127.0.0.1, and a
//! client socket bound to 127.0.0.2 stands for a peer that is not a balancer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Endpoint, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::util::MapRequestLayer;
use tower_ip_allowlist::client_ip::{
    peer_addr, ClientIp, ClientIpLayer, ClientIpOutcome, ClientIpResolver, ClientIpSource,
};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::proxy_protocol::{
    with_connect_info, ProxyProtocolConfig, ProxyProtocolInfo, ProxyProtocolListener,
};
use tower_ip_allowlist::snapshot::SnapshotHandle;

const BALANCER: &str = "127.0.0.1";
const ELSEWHERE: &str = "127.0.0.2";

/// alice: 203.0.113.7 only (a client behind the balancer). lb: 127.0.0.1 only (the
/// balancer's own address). carol: 2001:db8::/64. dora: 127.0.0.2 only (the client in
/// the haproxy test). Anyone else has no policy.
fn policies() -> SnapshotHandle {
    let handle = SnapshotHandle::default();
    let mut org = OrgPolicies::default();
    for (name, source, user) in [
        ("alice", "203.0.113.7", "alice"),
        ("lb", "127.0.0.1", "lb"),
        ("carol", "2001:db8::/64", "carol"),
        ("dora", "127.0.0.2", "dora"),
    ] {
        org.insert_policy(
            Policy::builder(name)
                .sources([source])
                .unwrap()
                .user(user)
                .build()
                .unwrap(),
        );
    }
    handle.set_org(OrgId::default(), &org);
    handle
}

/// Stand-in authentication for axum and tonic alike: the `x-user` header (or gRPC
/// metadata) becomes the principal.
fn header_auth<B>(mut request: http::Request<B>) -> http::Request<B> {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(Principal::new);
    if let Some(principal) = user {
        request.extensions_mut().insert(principal);
    }
    request
}

/// What the request's extensions say about its connection.
async fn whoami(request: Request) -> String {
    let extensions = request.extensions();
    let shown = |addr: Option<String>| addr.unwrap_or_else(|| "none".into());
    let info = extensions.get::<ProxyProtocolInfo>();
    let source = match ClientIpOutcome::of(extensions).map(ClientIpOutcome::result) {
        Some(Ok(ClientIp {
            source: ClientIpSource::ProxyProtocol { balancer },
            ..
        })) => format!("proxyProtocol({balancer})"),
        Some(Ok(ClientIp {
            source: ClientIpSource::Peer,
            ..
        })) => "peer".to_owned(),
        Some(Ok(_)) => "header".to_owned(),
        Some(Err(_)) => "unknown".to_owned(),
        None => "none".to_owned(),
    };
    format!(
        "peer_addr={} connect_info={} outcome={} balancer={} source={source}",
        shown(peer_addr(extensions).map(|ip| ip.to_string())),
        shown(
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string())
        ),
        shown(info.map(|info| format!("{:?}", info.outcome))),
        shown(
            info.and_then(|info| info.balancer())
                .map(|addr| addr.ip().to_string())
        ),
    )
}

fn trusting(balancer: &str) -> ProxyProtocolConfig {
    ProxyProtocolConfig::new([format!("{balancer}/32")]).unwrap()
}

async fn serve(config: ProxyProtocolConfig) -> SocketAddr {
    serve_resolving(config, ClientIpResolver::peer()).await
}

/// The recommended stack, outermost first: the client address (`resolver`), the
/// stand-in authentication, the allowlist, the routes.
async fn serve_resolving(config: ProxyProtocolConfig, resolver: ClientIpResolver) -> SocketAddr {
    let listener = ProxyProtocolListener::bind("127.0.0.1:0", config)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/", get(whoami).post(whoami))
        .layer(AllowlistLayer::new(policies()).allow_anonymous())
        .layer(MapRequestLayer::new(header_auth))
        .layer(ClientIpLayer::new(resolver));
    tokio::spawn(async move {
        axum::serve(listener, with_connect_info(app)).await.unwrap();
    });
    addr
}

#[derive(Debug, PartialEq)]
enum Reply {
    Http(u16, String),
    /// Closed without an HTTP response.
    Closed,
}

impl Reply {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Http(status, _) => Some(*status),
            Self::Closed => None,
        }
    }

    fn body(&self) -> &str {
        match self {
            Self::Http(_, body) => body,
            Self::Closed => "",
        }
    }
}

async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

fn http_request(user: Option<&str>) -> Vec<u8> {
    let user = user
        .map(|user| format!("x-user: {user}\r\n"))
        .unwrap_or_default();
    format!("GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{user}\r\n").into_bytes()
}

/// Sends `header` and then a request as `user` from `from`, in one write.
async fn request(server: SocketAddr, from: &str, header: &[u8], user: Option<&str>) -> Reply {
    let mut stream = connect_from(from, server).await;
    let bytes = [header, &http_request(user)].concat();
    if stream.write_all(&bytes).await.is_err() {
        return Reply::Closed;
    }
    read_reply(&mut stream).await
}

async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await {
        Err(_) => panic!("neither a reply nor a close within 10 s"),
        // Reset: closed with our bytes unread.
        Ok(Err(_)) => return Reply::Closed,
        Ok(Ok(_)) if out.is_empty() => return Reply::Closed,
        Ok(Ok(_)) => {}
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Reply::Http(status, body.to_owned())
}

fn v1(line: &str) -> Vec<u8> {
    format!("{line}\r\n").into_bytes()
}

/// A v2 header: `command` 0 (LOCAL) or 1 (PROXY), the family/transport byte, the
/// address block and TLVs.
fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family);
    let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(addresses);
    out.extend_from_slice(tlvs);
    out
}

fn v2_tcp4(source: [u8; 4], tlvs: &[u8]) -> Vec<u8> {
    let mut block = source.to_vec();
    block.extend_from_slice(&[192, 0, 2, 1]);
    block.extend_from_slice(&41000u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    v2(1, 0x11, &block, tlvs)
}

fn v2_tcp6(source: &str) -> Vec<u8> {
    let source: std::net::Ipv6Addr = source.parse().unwrap();
    let destination: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut block = source.octets().to_vec();
    block.extend_from_slice(&destination.octets());
    block.extend_from_slice(&41000u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    v2(1, 0x21, &block, &[])
}

fn expect_http(reply: &Reply, status: u16, body: &str) {
    assert_eq!(reply.status(), Some(status), "{reply:?}");
    assert!(reply.body().contains(body), "{body:?} not in {reply:?}");
}

#[tokio::test]
async fn the_client_in_the_header_is_the_client() {
    let server = serve(trusting(BALANCER)).await;
    let v1_tcp4 = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("v1 IPv4", v1_tcp4, "203.0.113.7"),
        (
            "v2 IPv4 with TLVs",
            // An unknown TLV and an empty one: ignored.
            v2_tcp4([203, 0, 113, 7], &[0xE0, 0, 3, 1, 2, 3, 0x04, 0, 0]),
            "203.0.113.7",
        ),
        (
            "v1 IPv6",
            v1("PROXY TCP6 2001:db8::7 2001:db8::1 41000 443"),
            "2001:db8::7",
        ),
        ("v2 IPv6", v2_tcp6("2001:db8::7"), "2001:db8::7"),
    ];
    for (name, header, client) in cases {
        let version = if header.starts_with(b"PROXY") {
            "V1"
        } else {
            "V2"
        };
        let reply = request(server, BALANCER, &header, None).await;
        let want = format!(
            "peer_addr={client} connect_info={client} outcome=Proxied({version}) balancer=127.0.0.1 source=proxyProtocol(127.0.0.1)"
        );
        assert_eq!(reply, Reply::Http(200, want), "{name}");
        // A user allowed only from the balancer's address is refused: the balancer is
        // not the client.
        let reply = request(server, BALANCER, &header, Some("lb")).await;
        expect_http(&reply, 403, "ipNotAllowed");
    }

    // alice is allowed from 203.0.113.7 only, whatever the TCP peer.
    let from = |ip: [u8; 4]| v2_tcp4(ip, &[]);
    let reply = request(server, BALANCER, &from([203, 0, 113, 7]), Some("alice")).await;
    expect_http(&reply, 200, "peer_addr=203.0.113.7");
    let reply = request(server, BALANCER, &from([198, 51, 100, 9]), Some("alice")).await;
    expect_http(&reply, 403, "ipNotAllowed");
    let reply = request(server, BALANCER, &v2_tcp6("2001:db8::7"), Some("carol")).await;
    expect_http(&reply, 200, "peer_addr=2001:db8::7");
    let reply = request(server, BALANCER, &v2_tcp6("2001:db9::7"), Some("carol")).await;
    expect_http(&reply, 403, "ipNotAllowed");
}

#[tokio::test]
async fn an_http_proxy_behind_the_balancer_is_walked_after_the_header() {
    // The balancer (127.0.0.1) forwards, with the PROXY protocol, connections from an
    // HTTP proxy at 10.1.0.5, which writes X-Forwarded-For.
    let resolver = ClientIpResolver::trusted_proxies(["10.1.0.5"])
        .unwrap()
        .build();
    let server = serve_resolving(trusting(BALANCER), resolver).await;
    let send = |source: &'static str, forwarded: &'static str| async move {
        let mut stream = connect_from(BALANCER, server).await;
        let header = v1(&format!("PROXY TCP4 {source} 192.0.2.1 41000 443"));
        let request = format!(
            "GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\nx-user: alice\r\nx-forwarded-for: {forwarded}\r\n\r\n"
        );
        stream
            .write_all(&[header, request.into_bytes()].concat())
            .await
            .unwrap();
        read_reply(&mut stream).await
    };
    // The PROXY client is the HTTP proxy, so its header is read: alice is 203.0.113.7.
    let reply = send("10.1.0.5", "203.0.113.7").await;
    expect_http(
        &reply,
        200,
        "peer_addr=10.1.0.5 connect_info=10.1.0.5 outcome=Proxied(V1)",
    );
    let reply = send("10.1.0.5", "198.51.100.9").await;
    expect_http(&reply, 403, "ipNotAllowed");
    // Any other PROXY client is not a trusted HTTP proxy: its header is not believed.
    let reply = send("198.51.100.9", "203.0.113.7").await;
    expect_http(&reply, 403, "ipNotAllowed");
}

#[tokio::test]
async fn local_is_the_balancer_and_unknown_fails_closed() {
    let server = serve(trusting(BALANCER)).await;

    // LOCAL (the balancer's health check): the balancer is the client.
    let local = v2(0, 0x00, &[], &[]);
    let reply = request(server, BALANCER, &local, Some("lb")).await;
    expect_http(
        &reply,
        200,
        "peer_addr=127.0.0.1 connect_info=127.0.0.1 outcome=Local balancer=127.0.0.1",
    );
    let reply = request(server, BALANCER, &local, Some("alice")).await;
    expect_http(&reply, 403, "ipNotAllowed");

    // UNKNOWN and non-IP families: served, with no address at all. The balancer is
    // never used instead, so even the user allowed from the balancer is refused.
    let unknowns = [
        ("v1 UNKNOWN", v1("PROXY UNKNOWN"), "Unknown(V1)"),
        ("v2 UNSPEC", v2(1, 0x00, &[], &[]), "Unknown(V2)"),
        ("v2 unix", v2(1, 0x31, &[0; 216], &[]), "Unknown(V2)"),
    ];
    for (name, header, outcome) in unknowns {
        let reply = request(server, BALANCER, &header, None).await;
        let want = format!(
            "peer_addr=none connect_info=none outcome={outcome} balancer=127.0.0.1 source=unknown"
        );
        assert_eq!(reply, Reply::Http(200, want), "{name}");
        for user in ["lb", "alice"] {
            let reply = request(server, BALANCER, &header, Some(user)).await;
            assert_eq!(reply.status(), Some(403), "{name} {user}: {reply:?}");
            assert!(
                reply.body().contains("clientIpUnknown"),
                "{name}: {reply:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_header_sent_in_pieces_is_read_whole() {
    let server = serve(trusting(BALANCER)).await;
    for header in [
        v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443"),
        v2_tcp4([203, 0, 113, 7], &[0xE0, 0, 2, 9, 9]),
    ] {
        let mut stream = connect_from(BALANCER, server).await;
        for piece in header.chunks(7) {
            stream.write_all(piece).await.unwrap();
            stream.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stream
            .write_all(&http_request(Some("alice")))
            .await
            .unwrap();
        let reply = read_reply(&mut stream).await;
        expect_http(&reply, 200, "peer_addr=203.0.113.7");
    }
}

#[tokio::test]
async fn bad_headers_close_the_connection() {
    let server = serve(trusting(BALANCER)).await;
    let mut oversized = v2_tcp4([203, 0, 113, 7], &[0xE0, 0x13, 0x88]);
    oversized.extend(std::iter::repeat_n(0, 5000)); // a 5000-byte TLV: past 4 KiB
    oversized[14..16].copy_from_slice(&(12u16 + 3 + 5000).to_be_bytes());
    let cases = [
        (
            "v1 longer than 107 bytes",
            v1(&format!("PROXY UNKNOWN {}", "x".repeat(120))),
        ),
        (
            "v1 bad address",
            v1("PROXY TCP4 203.0.113.777 192.0.2.1 41000 443"),
        ),
        ("v1 missing fields", v1("PROXY TCP4 203.0.113.7")),
        ("v2 past the size limit", oversized),
        ("v2 bad version", {
            let mut header = v2_tcp4([203, 0, 113, 7], &[]);
            header[12] = 0x31;
            header
        }),
        (
            "v2 length shorter than its addresses",
            v2(1, 0x21, &[0; 12], &[]),
        ),
    ];
    for (name, header) in cases {
        let reply = request(server, BALANCER, &header, Some("bob")).await;
        assert_eq!(reply, Reply::Closed, "{name}");
    }
    // A truncated header, then the balancer hangs up.
    let mut stream = connect_from(BALANCER, server).await;
    stream
        .write_all(&v2_tcp4([203, 0, 113, 7], &[])[..20])
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_reply(&mut stream).await, Reply::Closed);
}

#[tokio::test]
async fn the_header_must_arrive_before_the_deadline() {
    let deadline = Duration::from_millis(500);
    let config = trusting(BALANCER).header_timeout(deadline).unwrap();
    let server = serve(config).await;
    let v1_tcp4 = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
    for (name, sent) in [
        ("nothing", &[][..]),
        ("half a v1 header", &v1_tcp4[..20]),
        ("half a v2 header", &v2_tcp4([203, 0, 113, 7], &[])[..20]),
    ] {
        let started = Instant::now();
        let mut stream = connect_from(BALANCER, server).await;
        stream.write_all(sent).await.unwrap();
        assert_eq!(read_reply(&mut stream).await, Reply::Closed, "{name}");
        let waited = started.elapsed();
        assert!(
            waited >= deadline - Duration::from_millis(50) && waited < Duration::from_secs(5),
            "{name}: closed after {waited:?}"
        );
    }

    // The deadline is the balancers': a peer that is not one and waits is served as it
    // would be without the listener, its request after the deadline answered.
    let mut stream = connect_from(ELSEWHERE, server).await;
    tokio::time::sleep(deadline + Duration::from_millis(300)).await;
    stream.write_all(&http_request(None)).await.unwrap();
    let reply = read_reply(&mut stream).await;
    expect_http(
        &reply,
        200,
        "peer_addr=127.0.0.2 connect_info=127.0.0.2 outcome=Direct",
    );
}

#[tokio::test]
async fn a_slow_balancer_does_not_hold_up_the_others() {
    let server = serve(trusting(BALANCER)).await; // the default deadline: 3 s
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(connect_from(BALANCER, server).await);
    }
    let started = Instant::now();
    let header = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
    let reply = request(server, BALANCER, &header, Some("alice")).await;
    expect_http(&reply, 200, "peer_addr=203.0.113.7");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered after {:?} behind 5 silent connections",
        started.elapsed()
    );
    // The silent ones are closed at the deadline.
    for mut stream in silent {
        assert_eq!(read_reply(&mut stream).await, Reply::Closed);
    }
}

#[tokio::test]
async fn balancers_past_the_pending_limit_wait_their_turn() {
    let deadline = Duration::from_millis(500);
    let config = trusting(BALANCER)
        .header_timeout(deadline)
        .unwrap()
        .max_pending_handshakes(1);
    let server = serve(config).await;
    // One silent balancer connection takes the only slot until its deadline...
    let mut silent = connect_from(BALANCER, server).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let header = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
    let reply = request(server, BALANCER, &header, Some("alice")).await;
    // ...so the next one is accepted only then, and served.
    expect_http(&reply, 200, "peer_addr=203.0.113.7");
    assert!(
        started.elapsed() >= deadline - Duration::from_millis(200),
        "served after {:?}, before the slot was free",
        started.elapsed()
    );
    assert_eq!(read_reply(&mut silent).await, Reply::Closed);
}

#[tokio::test]
async fn only_the_listed_balancers_are_believed() {
    let server = serve(trusting(BALANCER)).await;
    // From a peer that is not a balancer, a header closes the connection...
    for header in [
        v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443"),
        v2_tcp4([203, 0, 113, 7], &[]),
    ] {
        let reply = request(server, ELSEWHERE, &header, Some("alice")).await;
        assert_eq!(reply, Reply::Closed);
    }
    // ...and plain HTTP is served with the peer's own address.
    let reply = request(server, ELSEWHERE, &[], Some("dora")).await;
    expect_http(
        &reply,
        200,
        "peer_addr=127.0.0.2 connect_info=127.0.0.2 outcome=Direct balancer=none",
    );
    let reply = request(server, ELSEWHERE, &[], Some("alice")).await;
    expect_http(&reply, 403, "ipNotAllowed");
    // Its first bytes are checked however they arrive: a header in pieces is closed,
    // a POST (which starts like `PROXY`) in pieces is served.
    for (first, rest, want_closed) in [
        (
            &b"PRO"[..],
            &b"XY TCP4 203.0.113.7 192.0.2.1 41000 443\r\n"[..],
            true,
        ),
        (&b"\r\n\r\n"[..], &v2_tcp4([203, 0, 113, 7], &[])[4..], true),
        (
            &b"P"[..],
            &b"OST / HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"[..],
            false,
        ),
    ] {
        let mut stream = connect_from(ELSEWHERE, server).await;
        stream.write_all(first).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let reply = match stream.write_all(rest).await {
            Ok(()) => read_reply(&mut stream).await,
            Err(_) => Reply::Closed,
        };
        if want_closed {
            assert_eq!(reply, Reply::Closed, "{first:?}");
        } else {
            expect_http(
                &reply,
                200,
                "peer_addr=127.0.0.2 connect_info=127.0.0.2 outcome=Direct",
            );
        }
    }

    // Trusting 127.0.0.2 only: the same header from 127.0.0.1 is now refused.
    let server = serve(trusting(ELSEWHERE)).await;
    let header = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
    assert_eq!(
        request(server, BALANCER, &header, Some("alice")).await,
        Reply::Closed
    );
    let reply = request(server, ELSEWHERE, &header, Some("alice")).await;
    expect_http(&reply, 200, "peer_addr=203.0.113.7");
}

#[tokio::test]
async fn a_balancer_without_header_is_closed_unless_allowed() {
    let server = serve(trusting(BALANCER)).await;
    assert_eq!(
        request(server, BALANCER, &[], Some("lb")).await,
        Reply::Closed
    );

    let server = serve(trusting(BALANCER).allow_missing_header(true)).await;
    let reply = request(server, BALANCER, &[], Some("lb")).await;
    expect_http(
        &reply,
        200,
        "peer_addr=127.0.0.1 connect_info=127.0.0.1 outcome=NoHeader balancer=127.0.0.1",
    );
    // A header is still read when there is one.
    let header = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
    let reply = request(server, BALANCER, &header, Some("alice")).await;
    expect_http(&reply, 200, "peer_addr=203.0.113.7");
}

// ---- tonic ---------------------------------------------------------------------------

async fn serve_tonic(config: ProxyProtocolConfig) -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = ProxyProtocolListener::bind("127.0.0.1:0", config)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(MapRequestLayer::new(header_auth))
            .layer(AllowlistLayer::new(policies()))
            .add_service(health)
            .serve_with_incoming(listener)
            .await
            .unwrap();
    });
    addr
}

/// One call on a new connection that starts with `header`, as a balancer would open it.
async fn check(server: SocketAddr, header: Vec<u8>, user: &str) -> Result<(), tonic::Status> {
    let connector = tower::service_fn(move |_uri| {
        let header = header.clone();
        async move {
            let mut stream = TcpStream::connect(server).await?;
            stream.write_all(&header).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let channel = Endpoint::from_static("http://balanced.test")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .unwrap();
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-user", user.parse().unwrap());
    HealthClient::new(channel).check(request).await.map(|_| ())
}

#[tokio::test]
async fn tonic_sees_the_client_in_the_header() {
    let server = serve_tonic(trusting(BALANCER)).await;
    let from = |ip: [u8; 4]| v2_tcp4(ip, &[]);
    check(server, from([203, 0, 113, 7]), "alice")
        .await
        .expect("alice from 203.0.113.7");
    let status = check(server, from([198, 51, 100, 9]), "alice")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // The balancer is not the client.
    let status = check(server, from([203, 0, 113, 7]), "lb")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // UNKNOWN: no address, so no fallback to the balancer either; a user without a
    // policy still passes.
    let status = check(server, v1("PROXY UNKNOWN"), "lb").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    check(server, v1("PROXY UNKNOWN"), "bob")
        .await
        .expect("bob has no policy");
}

// ---- a real haproxy --------------------------------------------------------------------

/// haproxy in the foreground, killed when dropped.
struct Haproxy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The haproxy to run: `ALLOWLIST_TEST_HAPROXY`, else `haproxy` on PATH, else Debian's
/// `/usr/sbin/haproxy` (not on every user's PATH).
fn haproxy_binary() -> Option<PathBuf> {
    let runs = |path: &PathBuf| {
        Command::new(path)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    std::env::var_os("ALLOWLIST_TEST_HAPROXY")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("haproxy"), PathBuf::from("/usr/sbin/haproxy")])
        .find(runs)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts haproxy in `mode tcp` with two frontends to `backend`: one sending PROXY v2,
/// one v1. Returns it and the two frontends' addresses.
async fn start_haproxy(binary: &Path, backend: SocketAddr) -> (Haproxy, SocketAddr, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("allowlist-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (v2_port, v1_port) = (free_port(), free_port());
    let config = format!(
        "global\n  maxconn 100\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend v2\n  bind 127.0.0.1:{v2_port}\n  default_backend v2\n\
         backend v2\n  server app {backend} send-proxy-v2\n\
         frontend v1\n  bind 127.0.0.1:{v1_port}\n  default_backend v1\n\
         backend v1\n  server app {backend} send-proxy\n"
    );
    let config_path = dir.join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .expect("start haproxy");
    let haproxy = Haproxy { child, dir };
    let (v2_addr, v1_addr) = (
        SocketAddr::from(([127, 0, 0, 1], v2_port)),
        SocketAddr::from(([127, 0, 0, 1], v1_port)),
    );
    let started = Instant::now();
    for addr in [v2_addr, v1_addr] {
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "haproxy did not listen on {addr} within 10 s: {}",
                std::fs::read_to_string(haproxy.dir.join("haproxy.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (haproxy, v2_addr, v1_addr)
}

#[tokio::test]
async fn behind_a_real_haproxy() {
    let Some(binary) = haproxy_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy is not on PATH, and CI must run this test: install Debian's `haproxy`"
        );
        eprintln!(
            "SKIPPED behind_a_real_haproxy: haproxy is not on PATH (apt-get install haproxy)"
        );
        return;
    };
    // The balancer reaches the service from 127.0.0.1; clients reach the balancer
    // from 127.0.0.2 or 127.0.0.3.
    let server = serve(trusting(BALANCER)).await;
    let (_haproxy, via_v2, via_v1) = start_haproxy(&binary, server).await;
    for (version, frontend) in [("V2", via_v2), ("V1", via_v1)] {
        let reply = request(frontend, "127.0.0.2", &[], Some("dora")).await;
        let want = format!(
            "peer_addr=127.0.0.2 connect_info=127.0.0.2 outcome=Proxied({version}) balancer=127.0.0.1 source=proxyProtocol(127.0.0.1)"
        );
        assert_eq!(reply, Reply::Http(200, want), "{version}");
        let reply = request(frontend, "127.0.0.3", &[], Some("dora")).await;
        expect_http(&reply, 403, "ipNotAllowed");
        // Allowed from the balancer's address only: refused through the balancer.
        let reply = request(frontend, "127.0.0.2", &[], Some("lb")).await;
        expect_http(&reply, 403, "ipNotAllowed");
        // A client behind haproxy cannot smuggle its own header: haproxy's comes first,
        // and the client's is then just bytes of a bad HTTP request.
        let smuggled = v1("PROXY TCP4 203.0.113.7 192.0.2.1 41000 443");
        let reply = request(frontend, "127.0.0.2", &smuggled, Some("alice")).await;
        assert_eq!(reply.status(), Some(400), "{reply:?}");
    }
}
