//! A hostile forwarded header from a trusted proxy costs bounded memory: whatever its
//! size, resolving allocates no more than for a small one (the walk collects nothing;
//! only an error's description is allocated, cut to 64 characters). The time it takes
//! is measured in `benches/client_ip.rs`.
//!
//! Allocations are counted by dhat's global allocator, so this file holds one test.

use std::net::SocketAddr;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use tower_ip_allowlist::client_ip::{ClientIpResolver, ForwardedHeader};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const QUARTER_MB: usize = 256 * 1024;

fn repeat(unit: &str) -> String {
    unit.repeat(QUARTER_MB / unit.len())
}

#[test]
fn a_quarter_megabyte_header_allocates_no_more_than_a_small_one() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut extensions = Extensions::new();
    extensions.insert("10.0.0.1:4000".parse::<SocketAddr>().unwrap());
    let xff = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .build();
    let forwarded = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .header(ForwardedHeader::Forwarded)
        .build();
    let real_ip = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .header(ForwardedHeader::XRealIp)
        .build();
    let cases: Vec<(&str, &ClientIpResolver, &str, String)> = vec![
        (
            "small",
            &xff,
            "x-forwarded-for",
            "203.0.113.7, 10.0.0.2".to_owned(),
        ),
        (
            "commas",
            &xff,
            "x-forwarded-for",
            format!("203.0.113.7{}", repeat(",")),
        ),
        (
            "trusted hops",
            &xff,
            "x-forwarded-for",
            repeat("10.0.0.2, "),
        ),
        ("one long entry", &xff, "x-forwarded-for", repeat("x")),
        ("addresses", &xff, "x-forwarded-for", repeat("203.0.113.7,")),
        (
            "forwarded commas",
            &forwarded,
            "forwarded",
            format!("for=203.0.113.7{}", repeat(",")),
        ),
        (
            "forwarded trusted",
            &forwarded,
            "forwarded",
            repeat("for=10.0.0.2, "),
        ),
        (
            "forwarded quoted",
            &forwarded,
            "forwarded",
            format!("for=\"{}\"", repeat("a")),
        ),
        (
            "forwarded escapes",
            &forwarded,
            "forwarded",
            format!("for=\"{}\"", repeat("\\\"")),
        ),
        (
            "forwarded unbalanced",
            &forwarded,
            "forwarded",
            format!("for=\"{}", repeat("a,")),
        ),
        ("x-real-ip", &real_ip, "x-real-ip", repeat("1")),
    ];
    let mut small = None;
    for (name, resolver, header, value) in &cases {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(header),
            HeaderValue::from_str(value).unwrap(),
        );
        let before = dhat::HeapStats::get();
        let outcome = resolver.resolve(&extensions, &headers);
        let after = dhat::HeapStats::get();
        let allocated = after.total_bytes - before.total_bytes;
        let blocks = after.total_blocks - before.total_blocks;
        drop(outcome);
        eprintln!("{name}: {allocated} bytes in {blocks} blocks");
        let small = *small.get_or_insert(allocated);
        assert!(
            allocated <= small + 256,
            "{name}: {allocated} bytes allocated, a small header takes {small}"
        );
        assert!(blocks <= 3, "{name}: {blocks} allocations");
    }
}
