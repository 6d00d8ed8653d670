//! What the benches share: the organization and caller of the layer benches
//! (`instructions`, `throughput`), so that their figures describe the same fixture, and
//! the resident-memory reading of the memory benches (`org_memory`, `cold_start`).

// Each bench uses its part.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use tower_ip_allowlist::policy::{OrgPolicies, Policy};
use tower_ip_allowlist::source::SourceError;

/// The caller's groups: the allowed address is in a policy of the last one, so every
/// group is compared before one allows.
pub(crate) const GROUPS: [&str; 5] = ["g1", "g2", "g3", "g4", "g5"];

/// `policies` policies of `sources` sources each: policy p is for group g(p % 20) and
/// covers `sources` addresses from 32.0.0.0 + p·2²⁰, 16 apart (public addresses, as an
/// allowlist holds: a private peer would add the forgotten-proxy check of `client_ip`).
/// Policy p5 (group g5, the caller's last group) also holds `also_in_p5`, if given.
pub(crate) fn org(
    policies: u32,
    sources: u32,
    also_in_p5: Option<Ipv4Addr>,
) -> Result<OrgPolicies, SourceError> {
    let mut org = OrgPolicies::default();
    for p in 0..policies {
        let mut builder = Policy::builder(format!("p{p}")).group(format!("g{}", p % 20));
        for s in 0..sources {
            let addr = Ipv4Addr::from(0x2000_0000 + (p << 20) + (s << 4));
            builder = builder.source(IpAddr::V4(addr).into());
        }
        if let Some(extra) = also_in_p5.filter(|_| p == 5) {
            builder = builder.source(IpAddr::V4(extra).into());
        }
        org.insert_policy(builder.build()?);
    }
    Ok(org)
}

/// Resident bytes, from `/proc/self/statm` (pages × 4096); `None` off Linux.
pub(crate) fn resident() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
