//! How long a change committed through replica A takes to be enforced by replica B,
//! both on one PostgreSQL database, against the bare `NOTIFY` to `LISTEN` delivery
//! measured in the same run.
//!
//! ```text
//! ALLOWLIST_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --all-features --bench propagation
//! ```
//!
//! A custom harness: criterion times a closure in a loop, while what matters here is
//! the delay until another replica's snapshot changes. Each change is timed from
//! just before A's write starts (an upper bound on "from the commit") to the moment
//! a thread polling B's snapshot every ~50 µs sees the new decision; A's own write
//! latency is reported beside it. Without the database URL it prints a notice and
//! exits. The figures are summarized in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use sqlx::Connection;
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::snapshot::{Decision, DenyReason, SnapshotHandle};
use tower_ip_allowlist::store::{
    Actor, Limits, PolicyDraft, PostgresBackend, ReplicationOptions, Replicator, Store,
};

const ENV: &str = "ALLOWLIST_TEST_DATABASE_URL";
const WARM_UP: usize = 20;
const CHANGES: usize = 300;

fn main() {
    let Some(url) = std::env::var(ENV).ok().filter(|url| !url.is_empty()) else {
        println!(
            "propagation bench skipped: set {ENV}, for example {ENV}=postgres://postgres@127.0.0.1:5432/test"
        );
        return;
    };
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run(&url));
}

struct Replica {
    store: Store,
    _replicator: Replicator,
}

async fn replica(url: &str, schema: &str) -> Replica {
    let backend = PostgresBackend::connect_with_schema(url, schema)
        .await
        .expect("connect");
    let store = Store::open(
        Arc::new(backend.clone()),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .expect("open");
    let replicator = backend.replicate(&store, ReplicationOptions::default());
    tokio::time::timeout(Duration::from_secs(10), replicator.until_listening())
        .await
        .expect("listening");
    Replica {
        store,
        _replicator: replicator,
    }
}

/// Latencies in microseconds, sorted.
struct Figures(Vec<u64>);

impl Figures {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(
            samples
                .iter()
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .collect(),
        )
    }

    fn percentile(&self, p: f64) -> Duration {
        let rank = ((p * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        Duration::from_micros(self.0[rank - 1])
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<68} n={:<4} p50 {:>9.3} ms   p99 {:>9.3} ms   max {:>9.3} ms",
            self.0.len(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0)),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits on a thread of its own until B decides `want` for alice from 192.0.2.1;
/// returns when it did.
fn watch(
    handle: SnapshotHandle,
    org: &'static str,
    want: Decision,
) -> std::thread::JoinHandle<Instant> {
    let addr = Some("192.0.2.1".parse().expect("an address"));
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if handle.load().decide(Some(org), "alice", [], addr) == want {
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "B never enforced the change");
            std::thread::sleep(Duration::from_micros(50));
        }
    })
}

/// `CHANGES` changes to alice's policy through A, each timed until B enforces it.
async fn propagation(a: &Replica, b: &Replica, org: &'static str) -> [Figures; 3] {
    let org_id = OrgId::from(org);
    let inside = ["192.0.2.0/24"];
    let outside = ["203.0.113.0/24"];
    let mut write = Vec::new();
    let mut enforced = Vec::new();
    let mut after_ack = Vec::new();
    for i in 0..(WARM_UP + CHANGES) {
        let (sources, want) = if i % 2 == 0 {
            (inside, Decision::Allowed)
        } else {
            (outside, Decision::Denied(DenyReason::IpNotAllowed))
        };
        let watcher = watch(b.store.handle().clone(), org, want);
        let start = Instant::now();
        a.store
            .replace_policy(
                &Actor::system(),
                &org_id,
                PolicyDraft::new("alice", sources).users(["alice"]),
                None,
            )
            .await
            .expect("the write");
        let acknowledged = Instant::now();
        let seen = tokio::task::spawn_blocking(move || watcher.join())
            .await
            .expect("join")
            .expect("the watcher");
        if i >= WARM_UP {
            write.push(acknowledged - start);
            enforced.push(seen - start);
            after_ack.push(seen.saturating_duration_since(acknowledged));
        }
    }
    [
        Figures::new(write),
        Figures::new(enforced),
        Figures::new(after_ack),
    ]
}

/// The floor: a bare `pg_notify` on one connection to a `PgListener` on another.
async fn raw_notify(url: &str, channel: &str) -> Figures {
    let mut sender = sqlx::PgConnection::connect(url).await.expect("connect");
    let mut listener = PgListener::connect(url).await.expect("listen");
    listener.listen(channel).await.expect("LISTEN");
    let mut samples = Vec::new();
    for i in 0..(WARM_UP + CHANGES) {
        let start = Instant::now();
        sqlx::query("SELECT pg_notify($1, 'x')")
            .bind(channel)
            .execute(&mut sender)
            .await
            .expect("NOTIFY");
        listener.recv().await.expect("a notification");
        if i >= WARM_UP {
            samples.push(start.elapsed());
        }
    }
    Figures::new(samples)
}

async fn run(url: &str) {
    let schema = format!("allowlist_bench_{}", std::process::id());
    let a = replica(url, &schema).await;
    let b = replica(url, &schema).await;

    // "small": alice's policy alone. "full": alice's policy among 100 policies of 100
    // sources each (the product's limit), so each reload decodes, validates and
    // compiles 10,000 sources.
    let system = Actor::system();
    for org in ["small", "full"] {
        a.store
            .create_policy(
                &system,
                &OrgId::from(org),
                PolicyDraft::new("alice", ["203.0.113.0/24"]).users(["alice"]),
            )
            .await
            .expect("create");
    }
    for p in 0..99u32 {
        let sources: Vec<String> = (0..100u32)
            .map(|s| {
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (p << 12) | (s << 4));
                format!("{addr}/28")
            })
            .collect();
        a.store
            .create_policy(
                &system,
                &OrgId::from("full"),
                PolicyDraft::new(format!("p{p}"), sources).groups([format!("g{p}")]),
            )
            .await
            .expect("create");
    }

    println!(
        "propagation: {CHANGES} changes each (after {WARM_UP} warm-up), two replicas in one process, one PostgreSQL\n"
    );
    let raw = raw_notify(url, &format!("allowlist_bench_raw_{}", std::process::id())).await;
    println!(
        "{}",
        raw.line("baseline: bare pg_notify -> PgListener.recv")
    );
    for org in ["small", "full"] {
        let [write, enforced, after_ack] = propagation(&a, &b, org).await;
        let label = if org == "small" {
            "1 policy"
        } else {
            "100 policies x 100 sources"
        };
        println!(
            "{}",
            write.line(&format!("A's write acknowledged ({label})"))
        );
        println!(
            "{}",
            enforced.line(&format!("B enforcing, from A's write start ({label})"))
        );
        println!(
            "{}",
            after_ack.line(&format!("B enforcing, after A's write returned ({label})"))
        );
        let p50 = enforced.percentile(0.50);
        let p99 = enforced.percentile(0.99);
        println!(
            "  targets: p50 < 50 ms: {}; p99 < 1 s: {}; p50 is {:.1}x the bare NOTIFY p50\n",
            if p50 < Duration::from_millis(50) {
                "met"
            } else {
                "NOT met"
            },
            if p99 < Duration::from_secs(1) {
                "met"
            } else {
                "NOT met"
            },
            p50.as_secs_f64() / raw.percentile(0.50).as_secs_f64().max(1e-9),
        );
    }

    drop(a);
    drop(b);
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut conn)
            .await;
    }
}
