//! Resident memory per organization in a snapshot of many organizations of one policy
//! × five sources: the compiled organization, the copy of its policies the snapshot
//! keeps to read back, and its place in the organization map.
//!
//! A measurement program, not a criterion bench: `cargo bench --bench org_memory`
//! (1,000,000 organizations), or `cargo bench --bench org_memory -- 100000`. Linux
//! only (it reads `/proc/self/statm`). It prints the growth of the resident set per
//! organization while building, one after the other and each kept: the policies
//! (once); the compiled organizations alone in the map; a snapshot sharing the
//! policies (`from_shared_orgs`, as a store's replica builds it) and, with the
//! policies, what a replica holds per organization; a snapshot with its own copy of
//! the policies (`from_orgs`); then the time and memory of publishing changes one by
//! one.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::snapshot::{CompiledOrg, Snapshot, SnapshotHandle};

mod common;

use common::resident;

/// Organization `i`, as in `benches/orgs.rs`.
fn org(i: usize) -> OrgPolicies {
    let mut builder = Policy::builder("office").group("staff").user("alice");
    for s in 0..5u32 {
        let n = (i as u32).wrapping_mul(5).wrapping_add(s);
        let net = Ipv4Addr::from(0x0a00_0000 | ((n & 0xffff) << 8));
        builder = builder
            .sources([format!("{net}/24")])
            .expect("valid by construction");
    }
    let mut org = OrgPolicies::default();
    org.insert_policy(builder.build().expect("valid by construction"));
    org
}

fn main() {
    // `cargo bench` passes `--bench`; the first number is the organization count.
    let n = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    let Some(start) = resident() else {
        eprintln!(
            "org_memory: /proc/self/statm is not readable here (Linux only); nothing measured"
        );
        return;
    };
    let per_org = |from: usize, to: usize| to.saturating_sub(from) as f64 / n as f64;
    // Everything measured stays alive to the end: each figure is the growth of the
    // resident set while building one thing, with nothing freed to reuse meanwhile.
    let orgs: Vec<(OrgId, Arc<OrgPolicies>)> = (0..n)
        .map(|i| (OrgId::from(format!("org-{i}")), Arc::new(org(i))))
        .collect();
    let inputs = resident().unwrap_or(start);
    let policies_once = per_org(start, inputs);
    println!(
        "{n} organizations of 1 policy x 5 sources: their policies (one `Arc<OrgPolicies>` and id each, in a Vec): {policies_once:.0} bytes per organization"
    );

    // The compiled organizations alone, in the map (what decisions read).
    let before = resident().unwrap_or(inputs);
    let mut compiled_only = Snapshot::empty();
    for (id, org) in &orgs {
        compiled_only.insert_compiled(id.clone(), Arc::new(CompiledOrg::compile(org)));
    }
    let after = resident().unwrap_or(before);
    println!(
        "compiled organizations in the map, without their policies: {:.0} bytes per organization",
        per_org(before, after)
    );

    // A snapshot sharing the policies it is given (as a store's replica builds it).
    let before = after;
    let began = Instant::now();
    let shared =
        Snapshot::from_shared_orgs(orgs.iter().map(|(id, org)| (id.clone(), Arc::clone(org))));
    let built = began.elapsed();
    let after = resident().unwrap_or(before);
    let shared_bytes = per_org(before, after);
    println!(
        "snapshot sharing the policies (`from_shared_orgs`: compiled + map), built in {:.2} s: {shared_bytes:.0} bytes per organization; with the policies once, what a replica holds: {:.0} bytes per organization",
        built.as_secs_f64(),
        policies_once + shared_bytes,
    );
    assert_eq!(shared.len(), n);

    // A snapshot with its own copy of the policies (`from_orgs` from references).
    let before = after;
    let began = Instant::now();
    let copied = Snapshot::from_orgs(orgs.iter().map(|(id, org)| (id.clone(), &**org)));
    let built = began.elapsed();
    let after = resident().unwrap_or(before);
    println!(
        "snapshot copying the policies (`from_orgs`: compiled + map + a copy), built in {:.2} s: {:.0} bytes per organization",
        built.as_secs_f64(),
        per_org(before, after),
    );
    assert_eq!(copied.len(), n);

    // One change published through a handle: copies a path of the map, not the map.
    let handle = SnapshotHandle::new(copied);
    let before = resident().unwrap_or(after);
    let began = Instant::now();
    let changes = 1000;
    for i in 0..changes {
        let (id, org) = &orgs[(i * 7919) % n];
        handle.set_org(id.clone(), org);
    }
    let elapsed = began.elapsed();
    println!(
        "{changes} changes published one by one: {:.1} us each, resident {:+.1} MB",
        elapsed.as_secs_f64() * 1e6 / changes as f64,
        (resident().unwrap_or(before) as f64 - before as f64) / 1e6,
    );
    // Kept alive until here: freeing a million organizations first leaves the
    // allocator sorting a million free chunks during the changes timed above.
    drop((compiled_only, shared));
}
