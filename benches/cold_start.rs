//! A replica's cold start from PostgreSQL: how long `Store::open` takes to load and
//! compile 100,000 organizations (half with one policy, half with two; two to five
//! sources each), and how that splits between reading the rows (`load_all`) and
//! compiling and publishing the snapshot (each measured apart too, after the whole),
//! and how much the replica's resident set grew (Linux).
//!
//! A measurement program against a real database, not a criterion bench (one cold
//! start is the figure; criterion's repetitions would take minutes):
//!
//! ```text
//! ALLOWLIST_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --bench cold_start [-- 100000]
//! ```
//!
//! It works in a schema of its own, filled with SQL (`generate_series`), and drops it
//! at the end. Without the variable it prints a notice and measures nothing. The
//! figures are summarized in BENCHMARKS.md ("A million organizations").

use std::sync::Arc;
use std::time::Instant;

use sqlx::Connection;
use tower_ip_allowlist::snapshot::{Snapshot, SnapshotHandle};
use tower_ip_allowlist::store::{Backend, Limits, PostgresBackend, Store};

mod common;

use common::resident;

const ENV: &str = "ALLOWLIST_TEST_DATABASE_URL";

/// Every organization's document, built by PostgreSQL: `office` for the group
/// `staff` and two users, two to five /24 sources of its own; every other
/// organization also has `vpn` for the user `alice` and one /32.
const FILL: &str = r#"
INSERT INTO allowlist_orgs (org_id, version, document)
SELECT 'org-' || g, 1, jsonb_build_object(
    'policies',
    jsonb_build_array(jsonb_build_object(
        'id', 'office',
        'name', 'Office network',
        'allowedSources', (
            SELECT jsonb_agg(format('10.%s.%s.0/24', (g * 5 + s) / 256 % 256, (g * 5 + s) % 256))
            FROM generate_series(0, 1 + g % 4) AS s
        ),
        'users', jsonb_build_array('alice', 'user-' || g),
        'groups', jsonb_build_array('staff'),
        'version', 1
    )) || CASE WHEN g % 2 = 0 THEN jsonb_build_array(jsonb_build_object(
        'id', 'vpn',
        'allowedSources', jsonb_build_array(format('192.0.2.%s', g % 256)),
        'users', jsonb_build_array('alice'),
        'groups', jsonb_build_array(),
        'version', 1
    )) ELSE '[]'::jsonb END,
    'groups', jsonb_build_object('interns', jsonb_build_array('staff'))
)
FROM generate_series(1, $1) AS g
"#;

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    let url = match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!("cold_start: {ENV} is not set (for example {ENV}=postgres://postgres@127.0.0.1:5432/test); nothing measured");
            return;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let schema = format!("allowlist_cold_start_{}", std::process::id());
    let result = runtime.block_on(measure(&url, &schema, n));
    runtime.block_on(async {
        match sqlx::PgConnection::connect(&url).await {
            Ok(mut conn) => {
                if let Err(err) = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                {
                    eprintln!("cold_start: could not drop schema {schema}: {err}");
                }
            }
            Err(err) => eprintln!("cold_start: could not drop schema {schema}: {err}"),
        }
    });
    if let Err(err) = result {
        eprintln!("cold_start: {err}");
        std::process::exit(1);
    }
}

async fn measure(url: &str, schema: &str, n: i64) -> Result<(), Box<dyn std::error::Error>> {
    let backend = PostgresBackend::connect_with_schema(url, schema).await?;
    let began = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("SET search_path TO {schema}"))
        .execute(&mut conn)
        .await?;
    sqlx::query(FILL).bind(n).execute(&mut conn).await?;
    sqlx::query("ANALYZE allowlist_orgs")
        .execute(&mut conn)
        .await?;
    println!(
        "filled {n} organizations in {:.1} s",
        began.elapsed().as_secs_f64()
    );

    // The whole cold start, as a replica does it: connect, load, compile, publish.
    // First, so that the resident set it adds is not memory freed by the phases
    // measured apart below and reused.
    let resident_before = resident();
    let began = Instant::now();
    let backend_of_replica = PostgresBackend::connect_with_schema(url, schema).await?;
    let handle = SnapshotHandle::default();
    let store = Store::open(
        Arc::new(backend_of_replica),
        handle.clone(),
        Limits::default(),
    )
    .await?;
    let total = began.elapsed();
    let resident_after = resident();
    assert_eq!(handle.load().len(), usize::try_from(n)?);

    // Reading alone, on a fresh backend (its own pool, nothing cached).
    let reader = PostgresBackend::connect_with_schema(url, schema).await?;
    let began = Instant::now();
    let records = reader.load_all().await?;
    let read = began.elapsed();
    assert_eq!(records.len(), usize::try_from(n)?);

    // Compiling alone: the loaded organizations into a snapshot (on every core).
    let began = Instant::now();
    let snapshot = Snapshot::from_shared_orgs(
        records
            .into_iter()
            .map(|(id, record)| (id, Arc::new(record.org))),
    );
    let compiled = began.elapsed();
    assert_eq!(snapshot.len(), usize::try_from(n)?);
    drop(snapshot);

    println!(
        "cold start of {n} organizations: {:.2} s; measured apart after it: load_all {:.2} s, compiling into a snapshot {:.2} s (the rest of a cold start, connecting and filling the store's cache, is the difference, within the drift between runs)",
        total.as_secs_f64(),
        read.as_secs_f64(),
        compiled.as_secs_f64(),
    );
    if let (Some(before), Some(after)) = (resident_before, resident_after) {
        println!(
            "the replica's resident set grew by {:.0} MB: {:.0} bytes per organization (its store's cache, the snapshot, and what the load left to the allocator)",
            after.saturating_sub(before) as f64 / 1e6,
            after.saturating_sub(before) as f64 / n as f64,
        );
    }
    drop((store, backend));
    Ok(())
}
