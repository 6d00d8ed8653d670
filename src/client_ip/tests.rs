use std::net::SocketAddr;

use http::{Extensions, HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

/// The whole recorded outcome after [`resolve_addr_once`], as the handlers see it.
fn resolve_once<B>(
    request: &mut Request<B>,
    own: Option<&ClientIpResolver>,
) -> Result<ClientIp, ClientIpError> {
    resolve_addr_once(request, own, false);
    ClientIpOutcome::of(request.extensions())
        .expect("resolving records an outcome")
        .result()
        .cloned()
        .map_err(Clone::clone)
}

/// Resolves with `resolver` a request from `peer` carrying `headers`: the address and
/// how it was found (`peer`, or `header-name#hop`), or the error's variant name.
fn run(
    resolver: &ClientIpResolver,
    peer: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(String, String), String> {
    let mut extensions = Extensions::new();
    if let Some(peer) = peer {
        extensions.insert(peer.parse::<SocketAddr>().unwrap());
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::try_from(*name).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    resolver
        .resolve(&extensions, &map)
        .map(|ip| {
            let how = match ip.source {
                ClientIpSource::Peer => "peer".to_owned(),
                ClientIpSource::Header { header, hop } => format!("{}#{hop}", header.name()),
                ClientIpSource::ProxyProtocol { balancer } => format!("proxy {balancer}"),
            };
            (ip.addr.to_string(), how)
        })
        .map_err(|err| {
            let debug = format!("{err:?}");
            debug[..debug.find([' ', '{', '(']).unwrap_or(debug.len())].to_owned()
        })
}

struct Case {
    name: &'static str,
    peer: &'static str,
    headers: &'static [(&'static str, &'static str)],
    want: Result<(&'static str, &'static str), &'static str>,
}

fn check(resolver: &ClientIpResolver, cases: &[Case]) {
    for case in cases {
        let got = run(resolver, Some(case.peer), case.headers);
        let want = case
            .want
            .map(|(addr, how)| (addr.to_owned(), how.to_owned()))
            .map_err(str::to_owned);
        assert_eq!(got, want, "{}", case.name);
    }
}

const XFF: &str = "x-forwarded-for";
const FWD: &str = "forwarded";

#[test]
#[rustfmt::skip]
fn rightmost_untrusted() {
    // Trusted: 10.0.0.0/8 and ::ffff:172.16.0.0/108 (an IPv4-mapped way to write 172.16.0.0/12).
    let resolver = ClientIpResolver::trusted_proxies(["10.0.0.0/8", "::ffff:172.16.0.0/108"]).unwrap().build();
    check(&resolver, &[
        Case { name: "untrusted peer: header ignored (spoofing)", peer: "192.0.2.9:1", headers: &[(XFF, "203.0.113.10")], want: Ok(("192.0.2.9", "peer")) },
        Case { name: "untrusted peer, garbage header: still the peer", peer: "192.0.2.9:1", headers: &[(XFF, "garbage")], want: Ok(("192.0.2.9", "peer")) },
        Case { name: "trusted peer, no header: unknown", peer: "10.0.0.1:1", headers: &[], want: Err("MissingHeader") },
        Case { name: "trusted peer, another header only: unknown", peer: "10.0.0.1:1", headers: &[(FWD, "for=192.0.2.1")], want: Err("MissingHeader") },
        Case { name: "one entry", peer: "10.0.0.1:1", headers: &[(XFF, "203.0.113.10")], want: Ok(("203.0.113.10", "x-forwarded-for#1")) },
        Case { name: "prepended entry is not believed", peer: "10.0.0.1:1", headers: &[(XFF, "203.0.113.10, 192.0.2.66")], want: Ok(("192.0.2.66", "x-forwarded-for#1")) },
        Case { name: "trusted hops skipped", peer: "10.0.0.1:1", headers: &[(XFF, "192.0.2.66, 10.1.1.1, 10.2.2.2")], want: Ok(("192.0.2.66", "x-forwarded-for#3")) },
        Case { name: "all trusted: unknown", peer: "10.0.0.1:1", headers: &[(XFF, "10.3.3.3, 10.1.1.1")], want: Err("NoUntrustedHop") },
        Case { name: "empty value: unknown", peer: "10.0.0.1:1", headers: &[(XFF, "")], want: Err("NoUntrustedHop") },
        Case { name: "garbage on the walk: unknown", peer: "10.0.0.1:1", headers: &[(XFF, "192.0.2.66, garbage, 10.1.1.1")], want: Err("MalformedEntry") },
        Case { name: "garbage rightmost: unknown, never the proxy", peer: "10.0.0.1:1", headers: &[(XFF, "garbage")], want: Err("MalformedEntry") },
        Case { name: "garbage left of the client: fine", peer: "10.0.0.1:1", headers: &[(XFF, "garbage, 192.0.2.66, 10.1.1.1")], want: Ok(("192.0.2.66", "x-forwarded-for#2")) },
        Case { name: "unspecified on the walk: unknown", peer: "10.0.0.1:1", headers: &[(XFF, "0.0.0.0")], want: Err("MalformedEntry") },
        Case { name: "lines joined in order", peer: "10.0.0.1:1", headers: &[(XFF, "192.0.2.1"), (XFF, "192.0.2.2")], want: Ok(("192.0.2.2", "x-forwarded-for#1")) },
        Case { name: "empty elements ignored", peer: "10.0.0.1:1", headers: &[(XFF, "192.0.2.1,, ,10.0.0.9,")], want: Ok(("192.0.2.1", "x-forwarded-for#2")) },
        Case { name: "mapped entry folded", peer: "10.0.0.1:1", headers: &[(XFF, "::ffff:192.0.2.7")], want: Ok(("192.0.2.7", "x-forwarded-for#1")) },
        Case { name: "mapped trusted hop skipped", peer: "10.0.0.1:1", headers: &[(XFF, "192.0.2.7, ::ffff:10.9.9.9")], want: Ok(("192.0.2.7", "x-forwarded-for#2")) },
        Case { name: "mapped peer is trusted", peer: "[::ffff:10.0.0.1]:1", headers: &[(XFF, "192.0.2.7")], want: Ok(("192.0.2.7", "x-forwarded-for#1")) },
        Case { name: "mapped trusted list entry", peer: "172.16.5.5:1", headers: &[(XFF, "192.0.2.7")], want: Ok(("192.0.2.7", "x-forwarded-for#1")) },
        Case { name: "ports and brackets", peer: "10.0.0.1:1", headers: &[(XFF, "[2001:db8::7]:443, 10.1.1.1:80")], want: Ok(("2001:db8::7", "x-forwarded-for#2")) },
    ]);
}

#[test]
#[rustfmt::skip]
fn forwarded_header() {
    let resolver = ClientIpResolver::trusted_proxies(["10.0.0.0/8"]).unwrap().header(ForwardedHeader::Forwarded).build();
    check(&resolver, &[
        Case { name: "forwarded", peer: "10.0.0.1:1", headers: &[(FWD, r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:80";by=10.0.0.1"#)], want: Ok(("2001:db8::1", "forwarded#1")) },
        Case { name: "obfuscated on the walk", peer: "10.0.0.1:1", headers: &[(FWD, "for=192.0.2.60, for=_hidden")], want: Err("ObfuscatedEntry") },
        Case { name: "unknown on the walk", peer: "10.0.0.1:1", headers: &[(FWD, "for=192.0.2.60, for=unknown")], want: Err("ObfuscatedEntry") },
        Case { name: "obfuscated left of the client", peer: "10.0.0.1:1", headers: &[(FWD, "for=_hidden, for=192.0.2.60")], want: Ok(("192.0.2.60", "forwarded#1")) },
        Case { name: "case-insensitive name", peer: "10.0.0.1:1", headers: &[(FWD, "For=192.0.2.60")], want: Ok(("192.0.2.60", "forwarded#1")) },
        Case { name: "text after a closing quote", peer: "10.0.0.1:1", headers: &[(FWD, r#"for="192.0.2.1"5"#)], want: Err("MalformedEntry") },
        Case { name: "quoted comma does not split", peer: "10.0.0.1:1", headers: &[(FWD, r#"for=192.0.2.1;ext="x, for=203.0.113.9""#)], want: Ok(("192.0.2.1", "forwarded#1")) },
        Case { name: "for twice", peer: "10.0.0.1:1", headers: &[(FWD, "for=192.0.2.1;for=203.0.113.9")], want: Err("MalformedEntry") },
        Case { name: "untrusted peer ignored", peer: "192.0.2.9:1", headers: &[(FWD, "for=203.0.113.10")], want: Ok(("192.0.2.9", "peer")) },
        Case { name: "x-forwarded-for is not read", peer: "10.0.0.1:1", headers: &[(XFF, "203.0.113.10")], want: Err("MissingHeader") },
    ]);
}

#[test]
#[rustfmt::skip]
fn single_address_headers() {
    let real_ip = ClientIpResolver::trusted_proxies(["10.0.0.1"]).unwrap().header(ForwardedHeader::XRealIp).build();
    check(&real_ip, &[
        Case { name: "x-real-ip", peer: "10.0.0.1:1", headers: &[("x-real-ip", "192.0.2.60")], want: Ok(("192.0.2.60", "x-real-ip#1")) },
        Case { name: "twice", peer: "10.0.0.1:1", headers: &[("x-real-ip", "192.0.2.60"), ("x-real-ip", "192.0.2.61")], want: Err("RepeatedHeader") },
        Case { name: "a list", peer: "10.0.0.1:1", headers: &[("x-real-ip", "192.0.2.60, 192.0.2.61")], want: Err("MalformedEntry") },
        Case { name: "from an untrusted peer", peer: "10.0.0.2:1", headers: &[("x-real-ip", "192.0.2.60")], want: Ok(("10.0.0.2", "peer")) },
    ]);
    // Cases of realclientip-go's TestSingleIPHeaderStrategy
    // (github.com/realclientip/realclientip-go, 0BSD), behind a trusted peer.
    let cloudflare = ClientIpResolver::trusted_proxies(["10.0.0.1"]).unwrap()
        .header(ForwardedHeader::single("True-Client-IP").unwrap()).build();
    let others: &[(&str, &str)] = &[("x-real-ip", "1.1.1.1"), ("x-forwarded-for", "3.3.3.3")];
    let with = |value: &'static str| -> Vec<(&str, &str)> {
        let mut headers = others.to_vec();
        headers.push(("true-client-ip", value));
        headers
    };
    for (value, want) in [
        ("2.2.2.2:49489", Ok("2.2.2.2")),
        ("2.2.2.2", Ok("2.2.2.2")),
        ("[2607:f8b0:4004:83f::18]:3838", Ok("2607:f8b0:4004:83f::18")),
        ("2607:f8b0:4004:83f::19", Ok("2607:f8b0:4004:83f::19")),
        // Zones are local to one host: refused where realclientip keeps them.
        ("fe80::1111%zone", Err("MalformedEntry")),
        ("[fe80::1111%zone]:4848", Err("MalformedEntry")),
        ("nope", Err("MalformedEntry")),
        ("1.1.1.1, 2.2.2.2", Err("MalformedEntry")),
    ] {
        let got = run(&cloudflare, Some("10.0.0.1:1"), &with(value));
        assert_eq!(got.map(|(addr, _)| addr), want.map(str::to_owned).map_err(str::to_owned), "{value}");
    }
    let got = run(&cloudflare, Some("10.0.0.1:1"), others);
    assert_eq!(got, Err("MissingHeader".to_owned()));
}

/// Cases of realclientip-go's `TestRightmostTrustedRangeStrategy` and
/// `TestRightmostTrustedCountStrategy` (github.com/realclientip/realclientip-go, 0BSD),
/// behind a trusted peer. Ranges realclientip writes with host bits set are written
/// here as the networks they mean, since a resolver refuses host bits.
#[test]
fn realclientip_vectors() {
    let peer = Some("10.255.0.1:443");
    fn with_peer<'a>(ranges: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["10.255.0.1"];
        all.extend_from_slice(ranges);
        all
    }
    let xff: &[(&str, &str)] = &[
        ("x-real-ip", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2:3384, 3.3.3.3"),
        ("x-forwarded-for", "4.4.4.4"),
    ];
    let range = |ranges: &[&str]| {
        ClientIpResolver::trusted_proxies(with_peer(ranges))
            .unwrap()
            .build()
    };
    let addr = |got: Result<(String, String), String>| got.map(|(addr, _)| addr);
    assert_eq!(addr(run(&range(&[]), peer, xff)), Ok("4.4.4.4".into()));
    assert_eq!(
        addr(run(&range(&["4.4.4.0/24"]), peer, xff)),
        Ok("3.3.3.3".into())
    );
    assert_eq!(
        addr(run(&range(&["4.4.4.4"]), peer, xff)),
        Ok("3.3.3.3".into())
    );
    let many = ClientIpResolver::trusted_proxies(with_peer(&[
        "2.2.2.2/32",
        "2607:f8b0:4004:83f::200e/128",
        "3.3.0.0/16",
        "2001:db7::/64",
        "::ffff:4.4.4.0/124",
        "64:ff9b::188.0.0.0/112",
    ]))
    .unwrap()
    .header(ForwardedHeader::Forwarded)
    .build();
    let forwarded: &[(&str, &str)] = &[
        (
            "forwarded",
            r#"For=99.99.99.99, For=4.4.4.8, For="[2607:f8b0:4004:83f::200e]:4747""#,
        ),
        (
            "forwarded",
            "For=2.2.2.2:8883, For=64:ff9b::188.0.2.200, For=3.3.5.5, For=2001:db7::abcd",
        ),
    ];
    assert_eq!(addr(run(&many, peer, forwarded)), Ok("99.99.99.99".into()));
    let all_trusted: &[(&str, &str)] = &[
        ("x-forwarded-for", "2.2.2.2:3384, 2.2.2.3"),
        ("x-forwarded-for", "2.2.2.4"),
    ];
    let two = range(&["2.2.2.0/24"]);
    assert_eq!(
        addr(run(&two, peer, all_trusted)),
        Err("NoUntrustedHop".into())
    );
    let bad: &[(&str, &str)] = &[("x-forwarded-for", "nope, 2.2.2.2:3384, 2.2.2.3, 2.2.2.4")];
    assert_eq!(addr(run(&two, peer, bad)), Err("MalformedEntry".into()));
    let zero: &[(&str, &str)] = &[("x-forwarded-for", "::, 2.2.2.2:3384, 2.2.2.3, 2.2.2.4")];
    assert_eq!(addr(run(&two, peer, zero)), Err("MalformedEntry".into()));
    // A spoofed header from an untrusted peer: the peer, not the victim it names.
    let spoof: &[(&str, &str)] = &[("x-forwarded-for", "1.2.3.4, 10.0.0.1")];
    assert_eq!(
        addr(run(&range(&["10.0.0.0/8"]), Some("9.9.9.9:1234"), spoof)),
        Ok("9.9.9.9".into())
    );

    // Trusted count: the n-th from the right.
    let count = |n: usize, header: ForwardedHeader| {
        ClientIpResolver::trusted_proxies(["10.255.0.1"])
            .unwrap()
            .header(header)
            .hop_count(n)
            .unwrap()
            .build()
    };
    let headers: &[(&str, &str)] = &[
        ("x-real-ip", "1.1.1.1"),
        ("x-forwarded-for", "4.4.4.4, 5.5.5.5"),
        ("x-forwarded-for", "::1, fe80::382b:141b:fa4a:2a16%28"),
        (
            "x-forwarded-for",
            "7.7.7.7.7, 8.8.8.8, 9.9.9.9, 10.10.10.10,11.11.11.11, 12.12.12.12",
        ),
        ("forwarded", r#"For="::ffff:bc15:0006""#),
        ("forwarded", "host=what;for=6.6.6.6;proto=https"),
    ];
    assert_eq!(
        run(&count(1, ForwardedHeader::Forwarded), peer, headers),
        Ok(("6.6.6.6".into(), "forwarded#1".into()))
    );
    assert_eq!(
        run(&count(5, ForwardedHeader::XForwardedFor), peer, headers),
        Ok(("8.8.8.8".into(), "x-forwarded-for#5".into()))
    );
    assert_eq!(
        addr(run(
            &count(50, ForwardedHeader::XForwardedFor),
            peer,
            headers
        )),
        Err("MalformedEntry".into()),
        "the walk meets `7.7.7.7.7` before running out"
    );
    let short: &[(&str, &str)] = &[("x-forwarded-for", "8.8.8.8, 9.9.9.9")];
    assert_eq!(
        addr(run(&count(3, ForwardedHeader::XForwardedFor), peer, short)),
        Err("TooFewHops".into())
    );
    let nope: &[(&str, &str)] = &[
        ("forwarded", r#"For="::ffff:bc15:0006""#),
        ("forwarded", "For=nope"),
        ("forwarded", "host=what;for=6.6.6.6;proto=https"),
    ];
    assert_eq!(
        addr(run(&count(2, ForwardedHeader::Forwarded), peer, nope)),
        Err("MalformedEntry".into())
    );
    let zero: &[(&str, &str)] = &[
        ("forwarded", "For=0.0.0.0"),
        ("forwarded", "host=what;for=6.6.6.6;proto=https"),
    ];
    assert_eq!(
        addr(run(&count(2, ForwardedHeader::Forwarded), peer, zero)),
        Err("MalformedEntry".into())
    );
    assert_eq!(
        ClientIpResolver::trusted_proxies(["10.255.0.1"])
            .unwrap()
            .hop_count(0)
            .unwrap_err(),
        ClientIpConfigError::ZeroHops
    );
}

/// The examples of Traefik's `ipStrategy` documentation (`depth` and `excludedIPs`),
/// and of Envoy's `x-forwarded-for` documentation (`xff_num_trusted_hops` with
/// `use_remote_address`: Envoy's N trusted hops is `hop_count(N)` here).
#[test]
fn traefik_and_envoy_vectors() {
    let peer = Some("10.255.0.1:443");
    let chain: &[(&str, &str)] = &[("x-forwarded-for", "10.0.0.1,11.0.0.1,12.0.0.1,13.0.0.1")];
    let depth = |n| {
        ClientIpResolver::trusted_proxies(["10.255.0.1"])
            .unwrap()
            .hop_count(n)
            .unwrap()
            .build()
    };
    let addr = |got: Result<(String, String), String>| got.map(|(addr, _)| addr);
    assert_eq!(addr(run(&depth(1), peer, chain)), Ok("13.0.0.1".into()));
    assert_eq!(addr(run(&depth(3), peer, chain)), Ok("11.0.0.1".into()));
    assert_eq!(addr(run(&depth(5), peer, chain)), Err("TooFewHops".into()));
    let excluded = |ips: &[&'static str]| {
        let mut all = vec!["10.255.0.1"];
        all.extend_from_slice(ips);
        ClientIpResolver::trusted_proxies(all).unwrap().build()
    };
    assert_eq!(
        addr(run(&excluded(&["12.0.0.1", "13.0.0.1"]), peer, chain)),
        Ok("11.0.0.1".into())
    );
    assert_eq!(
        addr(run(&excluded(&["15.0.0.1", "16.0.0.1"]), peer, chain)),
        Ok("13.0.0.1".into())
    );
    assert_eq!(
        addr(run(&excluded(&["10.0.0.1", "13.0.0.1"]), peer, chain)),
        Ok("12.0.0.1".into())
    );
    // Envoy: XFF "203.0.113.128, 203.0.113.10, 203.0.113.1" from 192.0.2.5.
    let envoy: &[(&str, &str)] = &[(
        "x-forwarded-for",
        "203.0.113.128, 203.0.113.10, 203.0.113.1",
    )];
    let hops = |n| {
        ClientIpResolver::trusted_proxies(["192.0.2.5"])
            .unwrap()
            .hop_count(n)
            .unwrap()
            .build()
    };
    assert_eq!(
        addr(run(&hops(1), Some("192.0.2.5:1"), envoy)),
        Ok("203.0.113.1".into())
    );
    assert_eq!(
        addr(run(&hops(2), Some("192.0.2.5:1"), envoy)),
        Ok("203.0.113.10".into())
    );
}

#[test]
fn headers_in_precedence_order() {
    let resolver = ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .headers([ForwardedHeader::Forwarded, ForwardedHeader::XForwardedFor])
        .unwrap()
        .build();
    let both: &[(&str, &str)] = &[
        ("x-forwarded-for", "192.0.2.1"),
        ("forwarded", "for=192.0.2.2"),
    ];
    assert_eq!(
        run(&resolver, Some("10.0.0.1:1"), both),
        Ok(("192.0.2.2".into(), "forwarded#1".into()))
    );
    let xff: &[(&str, &str)] = &[("x-forwarded-for", "192.0.2.1")];
    assert_eq!(
        run(&resolver, Some("10.0.0.1:1"), xff),
        Ok(("192.0.2.1".into(), "x-forwarded-for#1".into()))
    );
    assert!(ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .headers([])
        .is_err());
}

#[test]
fn a_trusted_peer_without_header_is_the_client_only_when_asked() {
    let strict = ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .build();
    assert_eq!(
        run(&strict, Some("10.0.0.1:1"), &[]),
        Err("MissingHeader".into())
    );
    let health = ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .peer_without_header(true)
        .build();
    assert_eq!(
        run(&health, Some("10.0.0.1:1"), &[]),
        Ok(("10.0.0.1".into(), "peer".into()))
    );
    // A header that is there but wrong is still unknown.
    assert_eq!(
        run(&health, Some("10.0.0.1:1"), &[("x-forwarded-for", "nope")]),
        Err("MalformedEntry".into())
    );
}

#[test]
fn the_walk_is_bounded() {
    let resolver = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .max_hops(3)
        .build();
    let deep: &[(&str, &str)] = &[("x-forwarded-for", "192.0.2.1, 10.0.0.4, 10.0.0.3, 10.0.0.2")];
    assert_eq!(
        run(&resolver, Some("10.0.0.1:1"), deep),
        Err("TooManyHops".into())
    );
    let ok: &[(&str, &str)] = &[("x-forwarded-for", "192.0.2.1, 10.0.0.3, 10.0.0.2")];
    assert_eq!(
        run(&resolver, Some("10.0.0.1:1"), ok),
        Ok(("192.0.2.1".into(), "x-forwarded-for#3".into()))
    );
    // A header of a quarter megabyte of commas ends at the default budget.
    let commas = format!("192.0.2.1{}", ",".repeat(256 * 1024));
    let resolver = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .header(ForwardedHeader::Forwarded)
        .build();
    assert_eq!(
        run(&resolver, Some("10.0.0.1:1"), &[("forwarded", &commas)]),
        Err("TooManyHops".into())
    );
}

#[test]
fn the_peer_strategy_never_reads_headers() {
    let headers: &[(&str, &str)] = &[
        ("x-forwarded-for", "not even an address"),
        ("x-real-ip", "203.0.113.10"),
    ];
    assert_eq!(
        run(&ClientIpResolver::peer(), Some("192.0.2.9:1"), headers),
        Ok(("192.0.2.9".into(), "peer".into()))
    );
    assert_eq!(
        run(&ClientIpResolver::peer(), None, headers),
        Err("NoPeerAddress".into())
    );
}

#[test]
#[rustfmt::skip]
fn trusted_proxies_are_validated_like_allowed_sources() {
    let err = |proxies: &[&str]| ClientIpResolver::trusted_proxies(proxies).unwrap_err().to_string();
    for everyone in [&["0.0.0.0/0"][..], &["::/0"], &["::ffff:0:0/96"], &["0.0.0.0/1", "128.0.0.0/1"], &["0.0.0.0-255.255.255.255"], &["::/1", "8000::/1"]] {
        let message = err(everyone);
        assert!(message.contains("any client could claim any address"), "{everyone:?}: {message}");
    }
    assert_eq!(err(&["10.0.0.7/24"]), "trusted proxy 0: `10.0.0.7/24` has host bits set after the prefix: did you mean `10.0.0.0/24`?");
    assert!(err(&["10.0.0.1", "lb.internal"]).starts_with("trusted proxy 1: `lb.internal` looks like a host name"));
    assert!(err(&[]).starts_with("no trusted proxy given"));
    // Bare addresses and ranges are fine.
    let resolver = ClientIpResolver::trusted_proxies(["10.0.0.7", "10.1.0.0/24", "10.2.0.1-10.2.0.9", "::ffff:10.3.0.1"]).unwrap().build();
    for trusted in ["10.0.0.7", "10.1.0.200", "10.2.0.5", "10.3.0.1", "::ffff:10.0.0.7"] {
        assert!(resolver.is_trusted_proxy(trusted.parse().unwrap()), "{trusted}");
    }
    assert!(!resolver.is_trusted_proxy("10.0.0.8".parse().unwrap()));
    assert!(ForwardedHeader::single("not a header").is_err());
    assert_eq!(ForwardedHeader::single("X-Forwarded-For").unwrap(), ForwardedHeader::XForwardedFor);
}

#[test]
fn errors_read_well() {
    let err = ClientIpError::MalformedEntry {
        header: HeaderName::from_static("x-forwarded-for"),
        entry: "nope".into(),
    };
    assert_eq!(
        err.to_string(),
        "`x-forwarded-for` entry `nope` is not a usable IP address, so the client cannot be determined"
    );
}

/// The peer as the first layer found it is the peer for the rest of the request: a
/// middleware that rewrites or removes the server's peer extensions between two layers
/// (a "real IP" middleware setting `ConnectInfo` from a header, a `MockConnectInfo`
/// inside) changes nothing that a later layer, handler or guard reads. (A zero-sized
/// "resolved as the peer" record that readers expand again, tried to save the record's
/// allocation, failed this.)
#[test]
fn the_recorded_peer_survives_rewritten_peer_extensions() {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert("203.0.113.7:1".parse::<SocketAddr>().unwrap());
    let first = resolve_addr_once(&mut request, None, false);
    assert_eq!(first, Some("203.0.113.7".parse().unwrap()));

    // Replaced, and overridden by an extension read before it.
    request
        .extensions_mut()
        .insert("198.51.100.66:1".parse::<SocketAddr>().unwrap());
    #[cfg(feature = "axum")]
    request.extensions_mut().insert(axum::extract::ConnectInfo(
        "198.51.100.67:1".parse::<SocketAddr>().unwrap(),
    ));
    for own in [None, Some(&ClientIpResolver::peer())] {
        assert_eq!(resolve_addr_once(&mut request, own, false), first);
        assert_eq!(addr_of(&request), first);
    }

    // Removed.
    request.extensions_mut().remove::<SocketAddr>();
    #[cfg(feature = "axum")]
    request
        .extensions_mut()
        .remove::<axum::extract::ConnectInfo<SocketAddr>>();
    assert_eq!(resolve_addr_once(&mut request, None, false), first);
    assert_eq!(addr_of(&request), first);
}

fn addr_of<B>(request: &Request<B>) -> Option<IpAddr> {
    ClientIpOutcome::of(request.extensions()).and_then(ClientIpOutcome::addr)
}

/// The rule for stacked layers: the first outcome is kept, and a later, differently
/// configured resolver can only make it unknown.
#[test]
fn stacked_resolvers_never_loosen() {
    let request = |peer: &str, xff: Option<&str>| {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        if let Some(xff) = xff {
            request
                .headers_mut()
                .insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        }
        request
    };
    let proxies = ClientIpResolver::trusted_proxies(["10.0.0.1"])
        .unwrap()
        .build();
    let addr = |r: Result<ClientIp, ClientIpError>| r.map(|ip| ip.addr.to_string());

    // Recorded by the proxies' resolver; a layer without one reads it.
    let mut req = request("10.0.0.1:1", Some("192.0.2.7"));
    assert_eq!(
        addr(resolve_once(&mut req, Some(&proxies))),
        Ok("192.0.2.7".into())
    );
    assert_eq!(addr(resolve_once(&mut req, None)), Ok("192.0.2.7".into()));
    // The same resolver again: agrees without resolving.
    assert_eq!(
        addr(resolve_once(&mut req, Some(&proxies.clone()))),
        Ok("192.0.2.7".into())
    );
    // A later peer-only resolver disagrees: unknown from there on, for everyone after.
    let peer = ClientIpResolver::peer();
    assert!(matches!(
        resolve_once(&mut req, Some(&peer)),
        Err(ClientIpError::Conflict { .. })
    ));
    assert!(matches!(
        resolve_once(&mut req, None),
        Err(ClientIpError::Conflict { .. })
    ));
    assert!(ClientIpOutcome::of(req.extensions())
        .unwrap()
        .addr()
        .is_none());

    // Recorded unknown stays unknown, even for a resolver that would find the peer.
    let mut req = request("10.0.0.1:1", Some("garbage"));
    assert!(resolve_once(&mut req, Some(&proxies)).is_err());
    assert!(resolve_once(&mut req, Some(&peer)).is_err());
    assert!(resolve_once(&mut req, None).is_err());

    // Nothing recorded: the layer's own resolver, or the peer, and it is recorded.
    let mut req = request("10.0.0.1:1", Some("192.0.2.7"));
    assert_eq!(addr(resolve_once(&mut req, None)), Ok("10.0.0.1".into()));
    assert_eq!(
        ClientIpOutcome::of(req.extensions()).unwrap().addr(),
        Some("10.0.0.1".parse().unwrap())
    );
    // ...and a later proxies' resolver that disagrees makes it unknown.
    assert!(resolve_once(&mut req, Some(&proxies)).is_err());
}

#[test]
fn internal_peers() {
    for (addr, want) in [
        ("127.0.0.1", true),
        ("10.1.2.3", true),
        ("172.16.0.1", true),
        ("192.168.1.1", true),
        ("100.64.0.1", true),
        ("100.128.0.1", false),
        ("fd00::1", true),
        ("::1", true),
        ("203.0.113.1", false),
        ("2001:db8::1", false),
    ] {
        assert_eq!(looks_internal(addr.parse().unwrap()), want, "{addr}");
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_extractors_read_the_one_outcome() {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let (mut parts, ()) = Request::new(()).into_parts();
    let err = ClientIp::from_request_parts(&mut parts, &())
        .await
        .unwrap_err();
    assert_eq!(err.into_response().status(), 500, "no peer at all: wiring");

    parts
        .extensions
        .insert("[::ffff:192.0.2.1]:9".parse::<SocketAddr>().unwrap());
    parts.extensions.remove::<ClientIpOutcome>();
    let ip = ClientIp::from_request_parts(&mut parts, &()).await.unwrap();
    assert_eq!(
        (ip.addr.to_string(), ip.source),
        ("192.0.2.1".into(), ClientIpSource::Peer)
    );

    // An unknown outcome is refused, never replaced by the peer.
    let proxies = ClientIpResolver::trusted_proxies(["192.0.2.1"])
        .unwrap()
        .build();
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert("192.0.2.1:9".parse::<SocketAddr>().unwrap());
    request
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("garbage"));
    assert!(resolve_once(&mut request, Some(&proxies)).is_err());
    let (mut parts, ()) = request.into_parts();
    let rejection = ClientIp::from_request_parts(&mut parts, &())
        .await
        .unwrap_err();
    let response = rejection.into_response();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.api+json"
    );
    let Ok(outcome) = ClientIpOutcome::from_request_parts(&mut parts, &()).await;
    assert!(matches!(
        outcome.result(),
        Err(ClientIpError::MalformedEntry { .. })
    ));
}

/// Addresses as they appear in a header, the same addresses as the resolver folds them.
fn entry() -> impl Strategy<Value = (String, IpAddr)> {
    prop_oneof![
        (0u8..4, any::<u8>()).prop_map(|(a, b)| {
            // Few distinct addresses, so trusted ones come up often.
            let addr = IpAddr::from([10, 0, a, b % 4 + 1]);
            (addr.to_string(), addr)
        }),
        (1u8..4, any::<u8>()).prop_map(|(a, b)| {
            let addr = IpAddr::from([192, 0, a, b % 4 + 1]);
            (format!("{addr}:{}", u16::from(b) + 1), addr)
        }),
        any::<u16>().prop_map(|x| {
            let addr: IpAddr = format!("2001:db8::{x:x}").parse().unwrap();
            (format!("[{addr}]"), addr)
        }),
    ]
}

proptest! {
    /// The resolver never returns an address the header did not contain, and never a
    /// trusted address when an untrusted hop exists within the walk; with only trusted
    /// hops it returns none.
    #[test]
    fn resolver_returns_only_what_the_header_holds(
        chain in prop::collection::vec(entry(), 0..24),
        garbage_at in prop::option::of(0usize..24),
    ) {
        let resolver = ClientIpResolver::trusted_proxies(["10.0.0.0/16"]).unwrap().build();
        let mut texts: Vec<String> = chain.iter().map(|(text, _)| text.clone()).collect();
        if let Some(at) = garbage_at.filter(|at| *at < texts.len()) {
            texts[at] = "garbage".to_owned();
        }
        let value = texts.join(", ");
        let got = run(&resolver, Some("10.0.0.1:1"), &[("x-forwarded-for", &value)]);
        // The model: walk from the right, at most DEFAULT_MAX_HOPS entries.
        let mut want: Result<String, &str> = Err(if texts.is_empty() { "NoUntrustedHop" } else { "TooManyHops" });
        for (walked, text) in texts.iter().rev().enumerate() {
            if walked == DEFAULT_MAX_HOPS { break; }
            if text == "garbage" { want = Err("MalformedEntry"); break; }
            let addr = chain[texts.len() - 1 - walked].1;
            let trusted = matches!(addr, IpAddr::V4(v4) if v4.octets()[..2] == [10, 0]);
            if !trusted { want = Ok(addr.to_string()); break; }
            if walked + 1 == texts.len() { want = Err("NoUntrustedHop"); }
        }
        match (&got, &want) {
            (Ok((addr, _)), Ok(want)) => {
                prop_assert_eq!(addr, want);
                let addr: IpAddr = addr.parse().unwrap();
                prop_assert!(chain.iter().any(|(_, a)| *a == addr));
                prop_assert!(!resolver.is_trusted_proxy(addr));
            }
            (Err(got), Err(want)) => prop_assert_eq!(got.as_str(), *want),
            _ => prop_assert!(false, "got {:?}, want {:?} for {}", got, want, value),
        }
    }
}

#[test]
fn a_forwarded_header_is_found_among_few_headers_and_many() {
    use http::header::{HeaderMap, HeaderName, HeaderValue};
    for extra in [0usize, 3, 11, 12, 13, 40] {
        let base = || {
            let mut headers = HeaderMap::new();
            for i in 0..extra {
                let name = HeaderName::try_from(format!("x-extra-{i}")).unwrap();
                headers.insert(name, HeaderValue::from_static("1"));
            }
            headers
        };
        assert!(!super::carries_forwarded_header(&base()), "{extra} others");
        for name in ["x-forwarded-for", "forwarded", "x-real-ip", "X-Real-IP"] {
            let mut headers = base();
            headers.insert(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::from_static("192.0.2.1"),
            );
            assert!(
                super::carries_forwarded_header(&headers),
                "{name} among {extra} others"
            );
        }
        // A look-alike is not one of them.
        let mut headers = base();
        headers.insert("x-forwarded-host", HeaderValue::from_static("example.com"));
        assert!(
            !super::carries_forwarded_header(&headers),
            "look-alike among {extra} others"
        );
    }
}

/// Resolver ids tell resolvers apart for the stacked-resolver rule: clones share one,
/// resolvers built apart never do, even configured alike (and so equal), and peer
/// resolvers are all one.
#[test]
fn resolver_ids_are_unique_per_resolver_built() {
    let build = || {
        ClientIpResolver::trusted_proxies(["10.0.0.1"])
            .unwrap()
            .build()
    };
    let (a, b) = (build(), build());
    assert_eq!(a, b, "configured alike");
    assert_ne!(a.id(), b.id());
    assert_eq!(a.clone().id(), a.id());
    assert_ne!(a.id(), ClientIpResolver::peer().id());
    assert_eq!(
        ClientIpResolver::peer().id(),
        ClientIpResolver::default().id()
    );
    // Dropped and built again: a new id, wherever the allocator puts it.
    let id = a.id();
    drop(a);
    assert_ne!(build().id(), id);
}

/// A layer deciding with the tenant notes it in the record (for a `TenantLayer` after
/// it), and the outcome is the same outcome either way.
#[test]
fn the_tenant_decision_is_noted_beside_the_outcome() {
    let request = || {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert("203.0.113.7:1".parse::<SocketAddr>().unwrap());
        request
    };
    let (mut recorded, mut deciding) = (request(), request());
    resolve_addr_once(&mut recorded, None, false);
    resolve_addr_once(&mut deciding, None, true);
    assert!(!decided_with_tenant(recorded.extensions()));
    assert!(decided_with_tenant(deciding.extensions()));
    assert_eq!(
        ClientIpOutcome::of(recorded.extensions()),
        ClientIpOutcome::of(deciding.extensions())
    );
    // Noted on an outcome a layer recorded before, too.
    resolve_addr_once(&mut recorded, None, true);
    assert!(decided_with_tenant(recorded.extensions()));
}
