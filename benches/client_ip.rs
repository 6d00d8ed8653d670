//! Resolving the client address from a trusted proxy's header: a small header against
//! quarter-megabyte hostile ones, in the same run. The walk is bounded (at most
//! `DEFAULT_MAX_HOPS` elements of at most 512 bytes), so the hostile ones must cost
//! about what the small one does, not ~30 ms as a collect-every-hop parser did.
//! Their allocations are checked in `tests/bounded_headers.rs`.
//!
//! `cargo bench --bench client_ip`; the figures are summarized in BENCHMARKS.md.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use tower_ip_allowlist::client_ip::{ClientIpResolver, ForwardedHeader};

const QUARTER_MB: usize = 256 * 1024;

fn repeat(unit: &str) -> String {
    unit.repeat(QUARTER_MB / unit.len())
}

fn bench(c: &mut Criterion) {
    let mut extensions = Extensions::new();
    extensions.insert("10.0.0.1:4000".parse::<SocketAddr>().unwrap());
    let xff = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .build();
    let forwarded = ClientIpResolver::trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .header(ForwardedHeader::Forwarded)
        .build();
    let cases = [
        (
            "xff small",
            &xff,
            "x-forwarded-for",
            "203.0.113.7, 10.0.0.2".to_owned(),
        ),
        (
            "xff 256KB commas",
            &xff,
            "x-forwarded-for",
            format!("203.0.113.7{}", repeat(",")),
        ),
        (
            "xff 256KB trusted hops",
            &xff,
            "x-forwarded-for",
            repeat("10.0.0.2, "),
        ),
        (
            "forwarded small",
            &forwarded,
            "forwarded",
            "for=203.0.113.7, for=10.0.0.2".to_owned(),
        ),
        (
            "forwarded 256KB commas",
            &forwarded,
            "forwarded",
            format!("for=203.0.113.7{}", repeat(",")),
        ),
        (
            "forwarded 256KB quoted",
            &forwarded,
            "forwarded",
            format!("for=\"{}\"", repeat("a")),
        ),
    ];
    let mut group = c.benchmark_group("resolve");
    for (name, resolver, header, value) in &cases {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(header),
            HeaderValue::from_str(value).unwrap(),
        );
        group.bench_function(*name, |b| {
            b.iter(|| black_box(resolver.resolve(black_box(&extensions), black_box(&headers))));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
