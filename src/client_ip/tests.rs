use std::net::SocketAddr;

use http::HeaderValue;

use super::*;

struct Case {
    name: &'static str,
    peer: Option<&'static str>,
    header: ForwardedHeader,
    values: &'static [&'static str],
    want: Result<(&'static str, ClientIpSource), &'static str>,
}

fn header_name(header: ForwardedHeader) -> &'static str {
    match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
        ForwardedHeader::XRealIp => "x-real-ip",
    }
}

const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
const FWD: ForwardedHeader = ForwardedHeader::Forwarded;
const XRI: ForwardedHeader = ForwardedHeader::XRealIp;
const PEER: ClientIpSource = ClientIpSource::Peer;

#[test]
#[rustfmt::skip]
fn trusted_proxy_table() {
    // Trusted: 10.0.0.0/8 and ::ffff:172.16.0.0/108 (an IPv4-mapped way to write 172.16.0.0/12).
    let resolver = |header| ClientIpResolver::trusted_proxies(
        ["10.0.0.0/8".parse().unwrap(), "::ffff:172.16.0.0/108".parse().unwrap()],
        header,
    );
    let cases = [
        Case { name: "untrusted peer: header ignored (spoofing)", peer: Some("192.0.2.9:1"), header: XFF, values: &["203.0.113.10"], want: Ok(("192.0.2.9", PEER)) },
        Case { name: "trusted peer, no header: the proxy itself", peer: Some("10.0.0.1:1"), header: XFF, values: &[], want: Ok(("10.0.0.1", PEER)) },
        Case { name: "trusted peer, one entry", peer: Some("10.0.0.1:1"), header: XFF, values: &["203.0.113.10"], want: Ok(("203.0.113.10", ClientIpSource::XForwardedFor)) },
        Case { name: "prepended entry is not believed", peer: Some("10.0.0.1:1"), header: XFF, values: &["203.0.113.10, 192.0.2.66"], want: Ok(("192.0.2.66", ClientIpSource::XForwardedFor)) },
        Case { name: "trusted hops skipped", peer: Some("10.0.0.1:1"), header: XFF, values: &["192.0.2.66, 10.1.1.1, 10.2.2.2"], want: Ok(("192.0.2.66", ClientIpSource::XForwardedFor)) },
        Case { name: "all trusted: leftmost", peer: Some("10.0.0.1:1"), header: XFF, values: &["10.3.3.3, 10.1.1.1"], want: Ok(("10.3.3.3", ClientIpSource::XForwardedFor)) },
        Case { name: "garbage on the walk: unknown", peer: Some("10.0.0.1:1"), header: XFF, values: &["192.0.2.66, garbage, 10.1.1.1"], want: Err("MalformedEntry") },
        Case { name: "garbage left of the client: fine", peer: Some("10.0.0.1:1"), header: XFF, values: &["garbage, 192.0.2.66, 10.1.1.1"], want: Ok(("192.0.2.66", ClientIpSource::XForwardedFor)) },
        Case { name: "lines joined in order", peer: Some("10.0.0.1:1"), header: XFF, values: &["192.0.2.1", "192.0.2.2"], want: Ok(("192.0.2.2", ClientIpSource::XForwardedFor)) },
        Case { name: "mapped entry folded", peer: Some("10.0.0.1:1"), header: XFF, values: &["::ffff:192.0.2.7"], want: Ok(("192.0.2.7", ClientIpSource::XForwardedFor)) },
        Case { name: "mapped trusted hop skipped", peer: Some("10.0.0.1:1"), header: XFF, values: &["192.0.2.7, ::ffff:10.9.9.9"], want: Ok(("192.0.2.7", ClientIpSource::XForwardedFor)) },
        Case { name: "mapped peer is trusted", peer: Some("[::ffff:10.0.0.1]:1"), header: XFF, values: &["192.0.2.7"], want: Ok(("192.0.2.7", ClientIpSource::XForwardedFor)) },
        Case { name: "mapped trusted list entry", peer: Some("172.16.5.5:1"), header: XFF, values: &["192.0.2.7"], want: Ok(("192.0.2.7", ClientIpSource::XForwardedFor)) },
        Case { name: "ports and brackets", peer: Some("10.0.0.1:1"), header: XFF, values: &["[2001:db8::7]:443, 10.1.1.1:80"], want: Ok(("2001:db8::7", ClientIpSource::XForwardedFor)) },
        Case { name: "empty value: unknown", peer: Some("10.0.0.1:1"), header: XFF, values: &[""], want: Err("MalformedEntry") },
        Case { name: "forwarded", peer: Some("10.0.0.1:1"), header: FWD, values: &[r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:80";by=10.0.0.1"#], want: Ok(("2001:db8::1", ClientIpSource::Forwarded)) },
        Case { name: "forwarded obfuscated on the walk", peer: Some("10.0.0.1:1"), header: FWD, values: &["for=192.0.2.60, for=_hidden"], want: Err("ObfuscatedEntry") },
        Case { name: "forwarded unknown on the walk", peer: Some("10.0.0.1:1"), header: FWD, values: &["for=192.0.2.60, for=unknown"], want: Err("ObfuscatedEntry") },
        Case { name: "forwarded obfuscated left of the client", peer: Some("10.0.0.1:1"), header: FWD, values: &["for=_hidden, for=192.0.2.60"], want: Ok(("192.0.2.60", ClientIpSource::Forwarded)) },
        Case { name: "forwarded case-insensitive name", peer: Some("10.0.0.1:1"), header: FWD, values: &["For=192.0.2.60"], want: Ok(("192.0.2.60", ClientIpSource::Forwarded)) },
        Case { name: "forwarded from untrusted peer ignored", peer: Some("192.0.2.9:1"), header: FWD, values: &["for=203.0.113.10"], want: Ok(("192.0.2.9", PEER)) },
        Case { name: "x-real-ip", peer: Some("10.0.0.1:1"), header: XRI, values: &["192.0.2.60"], want: Ok(("192.0.2.60", ClientIpSource::XRealIp)) },
        Case { name: "x-real-ip twice", peer: Some("10.0.0.1:1"), header: XRI, values: &["192.0.2.60", "192.0.2.61"], want: Err("RepeatedHeader") },
        Case { name: "x-real-ip list", peer: Some("10.0.0.1:1"), header: XRI, values: &["192.0.2.60, 192.0.2.61"], want: Err("MalformedEntry") },
        Case { name: "no peer", peer: None, header: XFF, values: &["192.0.2.60"], want: Err("NoPeerAddress") },
    ];
    for case in cases {
        let mut extensions = Extensions::new();
        if let Some(peer) = case.peer {
            extensions.insert(peer.parse::<SocketAddr>().unwrap());
        }
        let mut headers = HeaderMap::new();
        for value in case.values {
            headers.append(header_name(case.header), HeaderValue::from_static(value));
        }
        let got = resolver(case.header)
            .resolve(&extensions, &headers)
            .map(|ip| (ip.addr.to_string(), ip.source))
            .map_err(|err| format!("{err:?}"));
        match (&got, &case.want) {
            (Ok(got), Ok((addr, source))) => assert_eq!(got, &(addr.to_string(), *source), "{}", case.name),
            (Err(got), Err(want)) => assert!(got.starts_with(want), "{}: {got}", case.name),
            _ => panic!("{}: got {got:?}, want {:?}", case.name, case.want),
        }
    }
}

#[test]
fn peer_strategy_never_reads_headers() {
    let mut extensions = Extensions::new();
    extensions.insert("192.0.2.9:1".parse::<SocketAddr>().unwrap());
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("not even an address"),
    );
    headers.insert("x-real-ip", HeaderValue::from_static("203.0.113.10"));
    let ip = ClientIpResolver::peer()
        .resolve(&extensions, &headers)
        .unwrap();
    assert_eq!(ip.addr.to_string(), "192.0.2.9");
    // An empty trusted list is the peer strategy too.
    let resolver = ClientIpResolver::trusted_proxies([], ForwardedHeader::XForwardedFor);
    assert_eq!(resolver.resolve(&extensions, &headers).unwrap(), ip);
}

#[test]
fn errors_read_well() {
    let err = ClientIpError::MalformedEntry {
        header: "x-forwarded-for",
        entry: "nope".into(),
    };
    assert_eq!(
        err.to_string(),
        "`x-forwarded-for` entry `nope` is not an IP address, so the client cannot be determined"
    );
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_extractor() {
    use axum::extract::FromRequestParts;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    assert!(ClientIp::from_request_parts(&mut parts, &()).await.is_err());
    parts
        .extensions
        .insert("[::ffff:192.0.2.1]:9".parse::<SocketAddr>().unwrap());
    let ip = ClientIp::from_request_parts(&mut parts, &()).await.unwrap();
    assert_eq!(
        (ip.addr.to_string(), ip.source),
        ("192.0.2.1".into(), ClientIpSource::Peer)
    );
    let resolved = ClientIp {
        addr: "203.0.113.1".parse().unwrap(),
        source: ClientIpSource::XForwardedFor,
    };
    parts.extensions.insert(resolved);
    assert_eq!(
        ClientIp::from_request_parts(&mut parts, &()).await.unwrap(),
        resolved
    );
}
