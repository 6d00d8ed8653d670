//! The PostgreSQL backend and replication against a real PostgreSQL: several replicas
//! (stores) on one database, racing writers, lost connections, and two demo servers.
//!
//! The database comes from `ALLOWLIST_TEST_DATABASE_URL`, for example
//! `postgres://postgres@127.0.0.1:5432/test`; without it, the tests that need it print
//! a notice and pass. Each test works in a schema of its own, dropped at the end, so
//! they run in parallel.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use common::demo::{self, send, Running};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{Enforcement, OrgId};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::report::RuleKind;
use tower_ip_allowlist::snapshot::{Decision, DenyReason, SnapshotHandle};
use tower_ip_allowlist::store::{
    Actor, Backend, Limits, PolicyDraft, PolicyPatch, PostgresBackend, PostgresOptions,
    ReplicationOptions, Replicator, Store, StoreError,
};
use tower_ip_allowlist::tenant::Tenant;

const ENV: &str = "ALLOWLIST_TEST_DATABASE_URL";

/// The test database, or `None` (after printing why the test is skipped).
fn database_url(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: the test harness would swallow `eprintln!` of a
            // passing test, and the notice must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: {ENV} is not set (for example {ENV}=postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of its own for one test, dropped (with everything in it) when the guard
/// is, even if the test fails.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, test: &str) -> Self {
        let name = format!(
            "allowlist_test_{}_{}_{:08x}",
            test,
            std::process::id(),
            rand::random::<u32>()
        );
        assert!(name.len() <= 63, "test name too long for a schema: {test}");
        Self {
            url: url.to_owned(),
            name,
        }
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions::new(&self.url)
            .unwrap()
            .schema(&self.name)
            .unwrap()
    }

    async fn backend(&self) -> PostgresBackend {
        PostgresBackend::connect_with_schema(&self.url, &self.name)
            .await
            .unwrap()
    }

    /// The channel the backend announces changes on (see `PostgresBackend`).
    fn channel(&self) -> String {
        format!("allowlist_changes:{}", self.name)
    }

    /// The URL with the schema as the connection's search_path, as a process that only
    /// takes a URL (the demo server) is given it.
    fn url_with_search_path(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.url, self.name
        )
    }

    /// A connection for the test's own SQL, with the schema as its search_path.
    async fn sql(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url_with_search_path())
            .await
            .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: clean up from a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .map(|_| ())
            })
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not drop test schema {}: {err}", self.name);
        }
    }
}

/// One replica: a store on its own backend (own pool), kept in step by a replicator.
struct Replica {
    store: Store,
    replicator: Replicator,
}

impl Replica {
    async fn start(options: PostgresOptions, replication: ReplicationOptions) -> Self {
        let backend = options.connect().await.unwrap();
        let store = Store::open(
            Arc::new(backend.clone()),
            SnapshotHandle::default(),
            Limits::default(),
        )
        .await
        .unwrap();
        let replicator = backend.replicate(&store, replication);
        tokio::time::timeout(Duration::from_secs(10), replicator.until_listening())
            .await
            .expect("the replica did not start listening");
        Self { store, replicator }
    }

    fn decide(&self, org: &str, user: &str, addr: &str) -> Decision {
        self.store
            .handle()
            .load()
            .decide(Some(org), user, [], Some(addr.parse().unwrap()))
    }
}

/// How long until `check` holds, polling every millisecond; `None` after `limit`.
async fn until(limit: Duration, check: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    check().then(|| start.elapsed())
}

const DENIED: Decision = Decision::Denied(DenyReason::IpNotAllowed);
const SYSTEM: fn() -> Actor = Actor::system;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_is_enforced_by_the_other() {
    let Some(url) = database_url("a_change_through_one_replica_is_enforced_by_the_other") else {
        return;
    };
    let schema = Schema::new(&url, "propagate");
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let b = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let org = OrgId::from("acme");

    a.store
        .create_policy(
            &SYSTEM(),
            &org,
            PolicyDraft::new("office", ["203.0.113.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();
    assert_eq!(a.decide("acme", "alice", "192.0.2.1"), DENIED, "A at once");
    let took = until(Duration::from_secs(1), || {
        b.decide("acme", "alice", "192.0.2.1") == DENIED
    })
    .await
    .expect("B did not enforce A's new policy within a second");
    eprintln!("create on A enforced by B after {took:?}");
    assert_eq!(b.store.get_policy(&org, "office").unwrap().version, 1);

    // Widened through B, enforced by A.
    b.store
        .update_policy(
            &SYSTEM(),
            &org,
            "office",
            PolicyPatch {
                allowed_sources: Some(vec!["203.0.113.0/24".into(), "192.0.2.0/24".into()]),
                ..PolicyPatch::default()
            },
            Some(1),
        )
        .await
        .unwrap();
    until(Duration::from_secs(1), || {
        a.decide("acme", "alice", "192.0.2.1") == Decision::Allowed
    })
    .await
    .expect("A did not enforce B's change within a second");
    assert_eq!(a.store.get_policy(&org, "office").unwrap().version, 2);

    // Deleted through A, gone on B.
    a.store
        .delete_policy(&SYSTEM(), &org, "office", None)
        .await
        .unwrap();
    until(Duration::from_secs(1), || {
        b.decide("acme", "alice", "192.0.2.1") == Decision::NoPolicy
    })
    .await
    .expect("B did not see the deletion within a second");
    assert!(b.store.get_policy(&org, "office").is_none());
    let status = b.replicator.status();
    assert!(status.loaded && status.listening, "{status:?}");
    assert_eq!(status.staleness, Some(Duration::ZERO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_on_one_policy_cannot_both_win() {
    let Some(url) = database_url("racing_writes_on_one_policy_cannot_both_win") else {
        return;
    };
    let schema = Schema::new(&url, "race");
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let b = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let org = OrgId::default();
    a.store
        .create_policy(&SYSTEM(), &org, PolicyDraft::new("p", ["192.0.2.1"]))
        .await
        .unwrap();

    for round in 0..10u64 {
        let version = round + 1;
        let system = SYSTEM();
        // Both replicas read the same version and race to replace the policy.
        let (left, right) = tokio::join!(
            a.store.replace_policy(
                &system,
                &org,
                PolicyDraft::new("p", [format!("198.51.100.{round}")]),
                Some(version),
            ),
            b.store.replace_policy(
                &system,
                &org,
                PolicyDraft::new("p", [format!("203.0.113.{round}")]),
                Some(version),
            ),
        );
        let (won, lost) = match (left, right) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            (left, right) => panic!("round {round}: exactly one must win: {left:?} / {right:?}"),
        };
        assert_eq!(won.version, version + 1, "round {round}");
        assert_eq!(
            lost,
            StoreError::VersionMismatch {
                expected: version,
                actual: version + 1
            },
            "round {round}"
        );
        assert_eq!(lost.code(), "versionMismatch", "the admin API's 412");
    }
    // Both replicas end at the same, newest version.
    for replica in [&a, &b] {
        until(Duration::from_secs(1), || {
            replica.store.get_policy(&org, "p").map(|p| p.version) == Some(11)
        })
        .await
        .expect("a replica did not converge");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_limit_holds_under_concurrent_creates_from_three_replicas() {
    let Some(url) = database_url("the_policy_limit_holds_under_concurrent_creates") else {
        return;
    };
    let schema = Schema::new(&url, "limit");
    let replicas = [
        Replica::start(schema.options(), ReplicationOptions::default()).await,
        Replica::start(schema.options(), ReplicationOptions::default()).await,
        Replica::start(schema.options(), ReplicationOptions::default()).await,
    ];
    let limit = Limits::default().max_policies_per_org;
    let mut tasks = Vec::new();
    for i in 0..(limit + 30) {
        let store = replicas[i % replicas.len()].store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_policy(
                    &Actor::system(),
                    &OrgId::default(),
                    PolicyDraft::new(format!("p{i}"), ["192.0.2.1"]).users([format!("u{i}")]),
                )
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(err) => assert_eq!(err, StoreError::PolicyLimitExceeded { limit }),
        }
    }
    assert_eq!(created, limit, "no policy past the limit slipped in");

    let mut sql = schema.sql().await;
    let document: String = sqlx::query_scalar(&format!(
        "SELECT document::text FROM {}.allowlist_orgs WHERE org_id = 'default'",
        schema.name
    ))
    .fetch_one(&mut sql)
    .await
    .unwrap();
    let stored: Value = serde_json::from_str(&document).unwrap();
    assert_eq!(stored["policies"].as_array().unwrap().len(), limit);
    for replica in &replicas {
        until(Duration::from_secs(2), || {
            replica.store.list_policies(&OrgId::default()).len() == limit
        })
        .await
        .expect("a replica did not converge on the stored policies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_listener_is_down_still_arrives() {
    let Some(url) = database_url("a_change_made_while_the_listener_is_down_still_arrives") else {
        return;
    };
    let schema = Schema::new(&url, "outage");
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    // B waits two seconds before reconnecting, and never resyncs on its own
    // schedule: only the resync after reconnecting can bring it the change.
    let b = Replica::start(
        schema.options(),
        ReplicationOptions::default()
            .backoff(Duration::from_secs(2), Duration::from_secs(2))
            .resync_interval(Duration::from_secs(3600)),
    )
    .await;
    let org = OrgId::from("acme");

    let mut sql = schema.sql().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'tower-ip-allowlist listener' AND query = $1",
    )
    .bind(format!("LISTEN \"{}\"", schema.channel()))
    .fetch_all(&mut sql)
    .await
    .unwrap();
    assert_eq!(killed, [true, true], "both replicas' listeners");
    until(Duration::from_secs(5), || !b.replicator.status().listening)
        .await
        .expect("B did not notice its listener was killed");

    a.store
        .create_policy(
            &SYSTEM(),
            &org,
            PolicyDraft::new("office", ["203.0.113.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();
    let status = b.replicator.status();
    assert!(
        !status.listening,
        "the change must be made during the outage: {status:?}"
    );
    assert!(status.loaded, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
    assert_ne!(status.staleness, Some(Duration::ZERO), "{status:?}");

    until(Duration::from_secs(5), || {
        b.decide("acme", "alice", "192.0.2.1") == DENIED
    })
    .await
    .expect("the change made during the outage never reached B");
    until(Duration::from_secs(1), || b.replicator.status().listening)
        .await
        .expect("B is not listening again");
    let status = b.replicator.status();
    assert_eq!(status.reconnects, 1, "{status:?}");
    assert_eq!(status.staleness, Some(Duration::ZERO));

    // And notifications flow again.
    a.store
        .delete_policy(&SYSTEM(), &org, "office", None)
        .await
        .unwrap();
    until(Duration::from_secs(1), || {
        b.decide("acme", "alice", "192.0.2.1") == Decision::NoPolicy
    })
    .await
    .expect("B does not get notifications after reconnecting");
}

/// A TCP forwarder to PostgreSQL that a test can cut (closing every connection and
/// refusing new ones) and restore: a replica losing its database while the others
/// keep theirs.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

/// A slow link: after each read of at most `chunk` bytes from the database, the
/// forwarder waits `pause` before reading on.
#[derive(Clone, Copy)]
struct Throttle {
    chunk: usize,
    pause: Duration,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        Self::start_with(upstream, None).await
    }

    /// A proxy; with `throttle`, its answers from the database come through a slow
    /// link.
    async fn start_with(upstream: String, throttle: Option<Throttle>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let up = Arc::clone(&up);
            let connections = Arc::clone(&connections);
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let Some(throttle) = throttle else {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        };
                        let (mut from_client, mut to_client) = client.into_split();
                        let (mut from_server, mut to_server) = server.into_split();
                        let requests = tokio::io::copy(&mut from_client, &mut to_server);
                        let answers = async {
                            let mut buffer = vec![0; throttle.chunk];
                            loop {
                                match from_server.read(&mut buffer).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        if to_client.write_all(&buffer[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                }
                                tokio::time::sleep(throttle.pause).await;
                            }
                        };
                        tokio::select! {
                            _ = requests => {}
                            () = answers => {}
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            }
        });
        Self {
            addr,
            up,
            connections,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let userinfo = authority
            .rsplit_once('@')
            .map(|(userinfo, _)| format!("{userinfo}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}{tail}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// host:port of the database at `url`.
fn upstream(url: &str) -> String {
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    format!("{}:{}", options.get_host(), options.get_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_the_database_keeps_enforcing_and_reports_staleness() {
    let Some(url) = database_url("a_replica_that_loses_the_database_keeps_enforcing") else {
        return;
    };
    let schema = Schema::new(&url, "lost");
    let proxy = Proxy::start(upstream(&url)).await;
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let b = Replica::start(
        PostgresOptions::new(&proxy.url(&url))
            .unwrap()
            .schema(&schema.name)
            .unwrap()
            .acquire_timeout(Duration::from_secs(1)),
        ReplicationOptions::default()
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .io_timeout(Duration::from_secs(2))
            .warn_interval(Duration::from_millis(100)),
    )
    .await;
    let org = OrgId::from("acme");
    a.store
        .create_policy(
            &SYSTEM(),
            &org,
            PolicyDraft::new("office", ["203.0.113.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();
    until(Duration::from_secs(1), || {
        b.decide("acme", "alice", "192.0.2.1") == DENIED
    })
    .await
    .expect("B did not get the policy");

    proxy.cut();
    until(Duration::from_secs(5), || !b.replicator.status().listening)
        .await
        .expect("B did not notice it lost the database");
    // A change B cannot see while cut off...
    a.store
        .add_targets(
            &SYSTEM(),
            &org,
            "office",
            tower_ip_allowlist::store::Targets::default().users(["bob"]),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...while it keeps enforcing what it had.
    assert_eq!(b.decide("acme", "alice", "192.0.2.1"), DENIED);
    assert_eq!(b.decide("acme", "bob", "192.0.2.1"), Decision::NoPolicy);
    let status = b.replicator.status();
    assert!(status.loaded && !status.listening, "{status:?}");
    assert!(
        status.staleness.unwrap() >= Duration::from_millis(300),
        "{status:?}"
    );
    assert!(status.last_error.is_some(), "{status:?}");
    // Writes through B fail cleanly, and change nothing.
    let err = b
        .store
        .delete_policy(&SYSTEM(), &org, "office", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "backendError", "{err}");
    assert_eq!(b.decide("acme", "alice", "192.0.2.1"), DENIED);

    proxy.restore();
    until(Duration::from_secs(5), || {
        b.decide("acme", "bob", "192.0.2.1") == DENIED
    })
    .await
    .expect("B did not catch up after the database came back");
    until(Duration::from_secs(1), || b.replicator.status().listening)
        .await
        .unwrap();
    let status = b.replicator.status();
    assert_eq!(status.staleness, Some(Duration::ZERO), "{status:?}");
    assert!(status.reconnects >= 1, "{status:?}");
    assert_eq!(b.store.get_policy(&org, "office").unwrap().version, 2);
}

/// A request through the allowlist layer, as axum would give it: a peer address and,
/// unless `None`, an authenticated caller.
async fn through_layer(
    handle: &SnapshotHandle,
    caller: Option<&str>,
    grpc: bool,
) -> http::Response<Body> {
    let app: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AllowlistLayer::new(handle.clone()));
    let mut request = Request::get("/");
    if grpc {
        request = request.header("content-type", "application/grpc");
    }
    let mut request = request.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
    ));
    if let Some(user) = caller {
        request.extensions_mut().insert(Principal::new(user));
    }
    app.oneshot(request).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_never_loaded_fails_closed_until_the_database_answers() {
    let Some(url) = database_url("a_replica_that_never_loaded_fails_closed") else {
        return;
    };
    let schema = Schema::new(&url, "pending");
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    a.store
        .create_policy(
            &SYSTEM(),
            &OrgId::default(),
            PolicyDraft::new("office", ["203.0.113.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();

    // B starts while its database is unreachable.
    let proxy = Proxy::start(upstream(&url)).await;
    proxy.cut();
    let backend = PostgresOptions::new(&proxy.url(&url))
        .unwrap()
        .schema(&schema.name)
        .unwrap()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy();
    let store = Store::unloaded(
        Arc::new(backend.clone()),
        SnapshotHandle::default(),
        Limits::default(),
    );
    let replicator = backend.replicate(
        &store,
        ReplicationOptions::default()
            .backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = replicator.status();
    assert!(!status.loaded && !status.listening, "{status:?}");
    assert_eq!(status.staleness, None);
    assert!(!store.is_loaded());

    // Callers with an identity: 503, even bob, to whom no policy applies.
    for user in ["alice", "bob"] {
        let response = through_layer(store.handle(), Some(user), false).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{user}");
        assert_eq!(
            response.extensions().get::<DenyReason>(),
            Some(&DenyReason::PoliciesUnavailable)
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["status"], "503");
        assert_eq!(body["errors"][0]["code"], "policiesUnavailable");
    }
    let response = through_layer(store.handle(), Some("alice"), true).await;
    assert_eq!(response.headers()["grpc-status"], "14", "gRPC UNAVAILABLE");
    // Anonymous requests are refused as such (401, the allowlist's default), not as
    // unavailable policies.
    let response = through_layer(store.handle(), None, false).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    proxy.restore();
    tokio::time::timeout(Duration::from_secs(5), replicator.until_listening())
        .await
        .expect("B did not load once the database answered");
    assert!(store.is_loaded());
    let response = through_layer(store.handle(), Some("alice"), false).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "alice's policy");
    let response = through_layer(store.handle(), Some("bob"), false).await;
    assert_eq!(response.status(), StatusCode::OK, "no policy for bob");

    // Losing the database again does not make it unloaded.
    proxy.cut();
    until(Duration::from_secs(5), || !replicator.status().listening)
        .await
        .unwrap();
    assert!(replicator.status().loaded);
    let response = through_layer(store.handle(), Some("bob"), false).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// `n` organizations, each with one policy for `alice` and two users, written
/// straight into the table (as `benches/cold_start.rs` does, smaller).
const FILL: &str = r#"
INSERT INTO allowlist_orgs (org_id, version, document)
SELECT 'org-' || g, 1, jsonb_build_object(
    'policies', jsonb_build_array(jsonb_build_object(
        'id', 'office',
        'name', 'Office network',
        'allowedSources', jsonb_build_array(format('10.%s.%s.0/24', g / 256 % 256, g % 256)),
        'users', jsonb_build_array('alice', 'user-' || g),
        'groups', jsonb_build_array('staff'),
        'version', 1
    )),
    'groups', jsonb_build_object()
)
FROM generate_series(1, $1) AS g
"#;

/// A replica's first load is bounded per wait for the database, not as a whole (why:
/// `PostgresBackend::load_all_waiting`): a load that takes longer than `io_timeout`
/// (many organizations, a slow link, a busy machine) completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_longer_than_the_io_timeout_completes() {
    let Some(url) = database_url("a_first_load_longer_than_the_io_timeout_completes") else {
        return;
    };
    let schema = Schema::new(&url, "slow_first_load");
    let _migrated = schema.backend().await;
    let mut sql = schema.sql().await;
    let orgs = 3000;
    sqlx::query(FILL)
        .bind(orgs)
        .execute(&mut sql)
        .await
        .unwrap();

    // Answers come 4 KiB at a time, 10 ms apart: each wait is short, the whole long.
    let throttle = Throttle {
        chunk: 4096,
        pause: Duration::from_millis(10),
    };
    let proxy = Proxy::start_with(upstream(&url), Some(throttle)).await;
    let backend = PostgresOptions::new(&proxy.url(&url))
        .unwrap()
        .schema(&schema.name)
        .unwrap()
        .connect_lazy();
    let io_timeout = Duration::from_millis(300);
    let began = Instant::now();
    let loaded = backend.load_all().await.unwrap();
    let whole = began.elapsed();
    assert_eq!(loaded.len(), orgs as usize);
    assert!(
        whole > io_timeout * 2,
        "the load took {whole:?}, not much longer than the timeout: the test proves nothing"
    );

    let store = Store::unloaded(
        Arc::new(backend.clone()),
        SnapshotHandle::default(),
        Limits::default(),
    );
    let replicator = backend.replicate(
        &store,
        ReplicationOptions::default()
            .io_timeout(io_timeout)
            .backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    tokio::time::timeout(Duration::from_secs(30), replicator.until_listening())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the first load never completed: {:?}",
                replicator.status().last_error
            )
        });
    assert!(store.is_loaded());
    assert_eq!(store.handle().load().organizations(), orgs as usize);
    assert_eq!(
        store.handle().load().decide(
            Some("org-7"),
            "alice",
            [],
            Some("10.0.7.1".parse().unwrap())
        ),
        Decision::Allowed
    );
    // Losing the database afterwards is noticed as before.
    proxy.cut();
    until(Duration::from_secs(5), || !replicator.status().listening)
        .await
        .expect("the cut was not noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_changed_organization_is_reloaded_and_recompiled() {
    let Some(url) = database_url("only_the_changed_organization_is_reloaded") else {
        return;
    };
    let schema = Schema::new(&url, "versions");
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let b = Replica::start(schema.options(), ReplicationOptions::default()).await;
    for org in ["one", "two"] {
        a.store
            .create_policy(
                &SYSTEM(),
                &OrgId::from(org),
                PolicyDraft::new("p", ["203.0.113.0/24"]).users(["alice"]),
            )
            .await
            .unwrap();
    }
    until(Duration::from_secs(1), || {
        b.decide("one", "alice", "192.0.2.1") == DENIED
            && b.decide("two", "alice", "192.0.2.1") == DENIED
    })
    .await
    .unwrap();
    let before = b.store.handle().load_full();

    a.store
        .create_policy(
            &SYSTEM(),
            &OrgId::from("one"),
            PolicyDraft::new("q", ["192.0.2.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();
    until(Duration::from_secs(1), || {
        b.decide("one", "alice", "192.0.2.1") == Decision::Allowed
    })
    .await
    .unwrap();
    let after = b.store.handle().load_full();
    assert!(
        Arc::ptr_eq(before.org("two").unwrap(), after.org("two").unwrap()),
        "organization two was recompiled for a change to one"
    );
    assert!(!Arc::ptr_eq(
        before.org("one").unwrap(),
        after.org("one").unwrap()
    ));
    // Nothing is stale: a resync reloads nothing and republishes nothing.
    assert_eq!(b.store.resync().await.unwrap(), 0);
    assert!(Arc::ptr_eq(&after, &b.store.handle().load_full()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(url) = database_url("replicas_starting_together_migrate_once") else {
        return;
    };
    let schema = Schema::new(&url, "migrate");
    let mut starts = Vec::new();
    for _ in 0..6 {
        let options = schema.options();
        starts.push(tokio::spawn(async move { options.connect().await }));
    }
    for start in starts {
        start.await.unwrap().expect("a replica failed to start");
    }
    let mut sql = schema.sql().await;
    let applied: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {}.allowlist_schema_migrations ORDER BY version",
        schema.name
    ))
    .fetch_all(&mut sql)
    .await
    .unwrap();
    assert_eq!(applied, [1, 2, 3, 4, 5], "each migration applied once");
    // And a backend on the schema, opened again, still works.
    let backend = schema.backend().await;
    let store = Store::open(
        Arc::new(backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();
    assert!(store.list_policies(&OrgId::default()).is_empty());
}

#[tokio::test]
async fn corrupt_rows_are_clear_errors_not_panics() {
    let Some(url) = database_url("corrupt_rows_are_clear_errors_not_panics") else {
        return;
    };
    let schema = Schema::new(&url, "corrupt");
    let backend = schema.backend().await;
    let mut sql = schema.sql().await;
    sqlx::query(&format!(
        r#"INSERT INTO {}.allowlist_orgs (org_id, version, document) VALUES ('acme', 1, '{{"policies":[{{"id":"p","allowedSources":["0.0.0.0/0"],"users":[],"groups":[],"version":1}}],"groups":{{}}}}')"#,
        schema.name
    ))
    .execute(&mut sql)
    .await
    .unwrap();
    let err = Store::open(
        Arc::new(backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("organization `acme` is invalid") && err.contains("0.0.0.0/0"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    // No database needed: nothing listens on port 1.
    let err = PostgresOptions::new("postgres://app:s3cret@127.0.0.1:1/policies")
        .unwrap()
        .acquire_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("127.0.0.1:1/policies as app") && !err.contains("s3cret"),
        "{err}"
    );
}

// ---- two demo servers on one database ------------------------------------------------

const SECRET: &str = "postgres-test-secret-postgres-test-secret";
const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";

fn start_server(database: &str) -> Running {
    let server = demo::start(database, SECRET);
    assert!(
        !server.first_line.contains("s3cret"),
        "the password was printed: {}",
        server.first_line
    );
    server
}

fn token(user: &str, permissions: &[&str]) -> String {
    demo::token(SECRET, user, permissions)
}

/// Polls `path` on `addr` as `token` until it answers `want`; how long that took.
async fn until_status(
    addr: SocketAddr,
    path: &str,
    token: &str,
    want: StatusCode,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = send(addr, Method::GET, path, Some(token), None).await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{addr}{path} still answers {status} {body} after {limit:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demo_servers_on_one_database_enforce_each_others_changes() {
    let Some(url) = database_url("two_demo_servers_on_one_database") else {
        return;
    };
    let schema = Schema::new(&url, "servers");
    // Create the schema; the servers find it through the URL's search_path.
    drop(schema.backend().await);
    let database = schema.url_with_search_path();
    let a = start_server(&database);
    let b = start_server(&database);
    let admin = token("alice", &["MANAGE"]);
    let bob = token("bob", &[]);
    for server in [&a, &b] {
        until_status(
            server.addr,
            "/api/v1/profile",
            &bob,
            StatusCode::OK,
            Duration::from_secs(30),
        )
        .await;
    }

    let (status, body) = send(
        a.addr,
        Method::POST,
        POLICIES,
        Some(&admin),
        Some(json!({"data": {"id": "office", "type": "ipAllowlistPolicy",
            "attributes": {"allowedSources": ["203.0.113.0/24"]},
            "relationships": {"users": {"data": [{"id": "bob", "type": "user"}]}}}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let took = until_status(
        b.addr,
        "/api/v1/profile",
        &bob,
        StatusCode::FORBIDDEN,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("a policy created on server A was enforced by server B after {took:?}");

    // B sees the stored version and deletes it; A lets bob in again.
    let (status, body) = send(
        b.addr,
        Method::GET,
        &format!("{POLICIES}/office"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        b.addr,
        Method::DELETE,
        &format!("{POLICIES}/office"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    until_status(
        a.addr,
        "/api/v1/profile",
        &bob,
        StatusCode::OK,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn a_demo_server_whose_database_is_down_answers_health_and_503() {
    // No database needed: nothing listens on port 1.
    let server = start_server("postgres://app:s3cret@127.0.0.1:1/test");
    let (status, _) = send(server.addr, Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(
        server.addr,
        Method::GET,
        "/api/v1/profile",
        Some(&token("bob", &[])),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["errors"][0]["code"], "policiesUnavailable");
    // The site allowlist runs before authentication, and whether it admits anyone is
    // unknown until the policies load: anonymous requests are refused too.
    let (status, body) = send(server.addr, Method::GET, "/api/v1/profile", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = send(server.addr, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// One admin request as `principal` (inserted as an authentication layer would, so
/// that its organization reaches the store unchecked by the JWT layer); the status
/// and the first error code.
async fn admin_call(
    store: &Store,
    principal: &Principal,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/vnd.api+json")
        .extension(principal.clone())
        // The request's tenant is the principal's organization, as a tenant layer
        // that served it would have decided, so the store's own checks are reached.
        .extension(Tenant::new(principal.organization_or_default()))
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let response = tower_ip_allowlist::admin::router(store.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = body["errors"][0]["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

/// The same hostile ids through the admin API, on SQLite and on PostgreSQL: the same
/// 4xx and code on both, never 503 (before, PostgreSQL answered 503 "retry later" to
/// an organization id with NUL or of 8000 bytes, which SQLite stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_invalid_ids_get_the_same_4xx_on_sqlite_and_postgresql() {
    let Some(url) = database_url("the_same_invalid_ids_get_the_same_4xx_on_sqlite_and_postgresql")
    else {
        return;
    };
    let schema = Schema::new(&url, "ids");
    let postgres = Store::open(
        Arc::new(schema.backend().await),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "tower-ip-allowlist-ids-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite_backend = tower_ip_allowlist::store::SqliteBackend::open(&format!(
        "sqlite://{}",
        dir.join("a.db").display()
    ))
    .await
    .unwrap();
    let sqlite = Store::open(
        Arc::new(sqlite_backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();

    let admin = |org: &str| {
        Principal::new("alice")
            .with_permissions(["MANAGE"])
            .with_organization(org)
    };
    let policy = |users: Value| {
        json!({"data": {"id": "p", "type": "ipAllowlistPolicy",
            "attributes": {"allowedSources": ["192.0.2.0/24"]},
            "relationships": {"users": {"data": users}}}})
    };
    let group = |parents: Value| json!({"data": {"type": "userGroup", "relationships": {"parents": {"data": parents}}}});
    let nul_org = "acme\0";
    let long_org = "o".repeat(8000);
    let cases: Vec<(&str, Principal, Method, String, Value, StatusCode, &str)> = vec![
        (
            "organization with NUL",
            admin(nul_org),
            Method::POST,
            "/api/v1/entities/ipAllowlistPolicies".to_owned(),
            policy(json!([])),
            StatusCode::BAD_REQUEST,
            "invalidOrganization",
        ),
        (
            "organization of 8000 bytes",
            admin(&long_org),
            Method::POST,
            "/api/v1/entities/ipAllowlistPolicies".to_owned(),
            policy(json!([])),
            StatusCode::BAD_REQUEST,
            "invalidOrganization",
        ),
        (
            "user id with NUL",
            admin("acme"),
            Method::POST,
            "/api/v1/entities/ipAllowlistPolicies".to_owned(),
            policy(json!([{"id": "bob\u{0}", "type": "user"}])),
            StatusCode::BAD_REQUEST,
            "malformedDocument",
        ),
        (
            "parent group of 256 bytes",
            admin("acme"),
            Method::PUT,
            "/api/v1/entities/userGroups/g".to_owned(),
            group(json!([{"id": "p".repeat(256), "type": "userGroup"}])),
            StatusCode::BAD_REQUEST,
            "malformedDocument",
        ),
        (
            "group id in the URL with a line break",
            admin("acme"),
            Method::PUT,
            "/api/v1/entities/userGroups/a%0Ab".to_owned(),
            json!({"data": {"type": "userGroup"}}),
            StatusCode::BAD_REQUEST,
            "malformedDocument",
        ),
        (
            "resource id in the URL with NUL",
            admin("acme"),
            Method::PUT,
            "/api/v1/entities/resourceAllowlists/r%00".to_owned(),
            json!({"data": {"id": "r\u{0}", "type": "resourceAllowlist",
                "attributes": {"allowedSources": ["192.0.2.0/24"]}}}),
            StatusCode::BAD_REQUEST,
            "malformedDocument",
        ),
    ];
    for (name, principal, method, path, body, status, code) in cases {
        let on_sqlite = admin_call(&sqlite, &principal, method.clone(), &path, body.clone()).await;
        let on_postgres = admin_call(&postgres, &principal, method, &path, body).await;
        assert_eq!(on_sqlite, on_postgres, "{name}: the backends disagree");
        assert_eq!(on_postgres, (status, code.to_owned()), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A value the database itself refuses (a constraint, here one the test adds) is a
/// 422 `valueNotStorable` on both backends: retrying cannot fix it, so it is no 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_database_refuses_is_a_422_not_a_503() {
    let Some(url) = database_url("a_value_the_database_refuses_is_a_422_not_a_503") else {
        return;
    };
    let schema = Schema::new(&url, "refused");
    let backend = schema.backend().await;
    let mut sql = schema.sql().await;
    sqlx::query(&format!(
        "ALTER TABLE {}.allowlist_orgs ADD CONSTRAINT small_documents CHECK (length(document::text) < 400)",
        schema.name
    ))
    .execute(&mut sql)
    .await
    .unwrap();
    let postgres = Store::open(
        Arc::new(backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();

    let dir = std::env::temp_dir().join(format!(
        "tower-ip-allowlist-refused-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("sqlite://{}", dir.join("a.db").display());
    let sqlite_backend = tower_ip_allowlist::store::SqliteBackend::open(&file)
        .await
        .unwrap();
    let mut lite = sqlx::SqliteConnection::connect(&file).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER small_documents BEFORE INSERT ON allowlist_orgs
         WHEN length(NEW.document) >= 400
         BEGIN SELECT RAISE(ABORT, 'document too large'); END",
    )
    .execute(&mut lite)
    .await
    .unwrap();
    let sqlite = Store::open(
        Arc::new(sqlite_backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();

    let admin = Principal::new("alice").with_permissions(["MANAGE"]);
    let sources: Vec<String> = (0..40).map(|i| format!("192.0.2.{i}")).collect();
    let body = json!({"data": {"id": "big", "type": "ipAllowlistPolicy",
        "attributes": {"allowedSources": sources}}});
    for (name, store) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
        let answer = admin_call(
            store,
            &admin,
            Method::POST,
            "/api/v1/entities/ipAllowlistPolicies",
            body.clone(),
        )
        .await;
        assert_eq!(
            answer,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "valueNotStorable".to_owned()
            ),
            "{name}"
        );
        assert!(
            store.get_policy(&OrgId::default(), "big").is_none(),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_sources_replicate_and_survive_a_restart() {
    let Some(url) = database_url("blocked_sources_replicate_and_survive_a_restart") else {
        return;
    };
    let schema = Schema::new(&url, "blocked");
    let a = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let b = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let org = OrgId::from("acme");
    a.store
        .create_policy(
            &SYSTEM(),
            &org,
            PolicyDraft::new("office", ["203.0.113.0/24"])
                .blocked_sources(["203.0.113.66", "203.0.113.128/25"])
                .users(["alice"]),
        )
        .await
        .unwrap();
    a.store
        .set_resource_list(
            &SYSTEM(),
            &org,
            "apollo",
            tower_ip_allowlist::store::ListDraft::new(["10.0.0.0/8"])
                .blocked_sources(["10.9.0.0/16"]),
        )
        .await
        .unwrap();
    until(Duration::from_secs(1), || {
        b.store.resource_list(&org, "apollo").is_some()
    })
    .await
    .expect("B did not see A's changes within a second");
    for replica in [&a, &b] {
        assert_eq!(
            replica.decide("acme", "alice", "203.0.113.7"),
            Decision::Allowed
        );
        assert_eq!(replica.decide("acme", "alice", "203.0.113.66"), DENIED);
        assert_eq!(replica.decide("acme", "alice", "203.0.113.200"), DENIED);
    }
    let list = b.store.resource_list(&org, "apollo").unwrap();
    assert_eq!(list.blocked_sources()[0].to_string(), "10.9.0.0/16");

    // Cleared through B; a replica started afresh reads what is stored.
    b.store
        .update_policy(
            &SYSTEM(),
            &org,
            "office",
            PolicyPatch {
                blocked_sources: Some(vec!["203.0.113.128/25".into()]),
                ..PolicyPatch::default()
            },
            Some(1),
        )
        .await
        .unwrap();
    let c = Replica::start(schema.options(), ReplicationOptions::default()).await;
    let stored = c.store.get_policy(&org, "office").unwrap();
    assert_eq!(stored.version, 2);
    let blocked: Vec<String> = stored
        .policy
        .blocked_sources()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(blocked, ["203.0.113.128/25"]);
    assert_eq!(c.decide("acme", "alice", "203.0.113.66"), Decision::Allowed);
    assert_eq!(c.decide("acme", "alice", "203.0.113.200"), DENIED);
    assert_eq!(
        c.store.resource_list(&org, "apollo").unwrap(),
        a.store.resource_list(&org, "apollo").unwrap()
    );
}

/// A request by `user` from `from` through the allowlist layer deciding with `handle`.
async fn call_from(handle: &SnapshotHandle, user: &str, from: &str) -> StatusCode {
    let app: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AllowlistLayer::new(handle.clone()));
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    let peer = SocketAddr::new(from.parse().unwrap(), 40000);
    request.extensions_mut().insert(ConnectInfo(peer));
    request
        .extensions_mut()
        .insert(Principal::new(user).with_organization("acme"));
    request
        .extensions_mut()
        .insert(Tenant::new(OrgId::from("acme")));
    app.oneshot(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn would_deny_summaries_recorded_through_one_replica_are_answered_by_the_other() {
    let Some(url) =
        database_url("would_deny_summaries_recorded_through_one_replica_are_answered_by_the_other")
    else {
        return;
    };
    let schema = Schema::new(&url, "would_deny");
    let replication =
        ReplicationOptions::default().would_deny_flush_interval(Duration::from_millis(50));
    let a = Replica::start(schema.options(), replication).await;
    let b = Replica::start(schema.options(), replication).await;
    assert!(a.store.shares_would_deny());
    assert_ne!(a.store.replica(), b.store.replica());
    let org = OrgId::from("acme");
    let draft = PolicyDraft::new("rollout", ["203.0.113.0/24"])
        .users(["bob"])
        .enforcement(Enforcement::Report);
    a.store.create_policy(&SYSTEM(), &org, draft).await.unwrap();
    until(Duration::from_secs(2), || {
        b.store.get_policy(&org, "rollout").is_some()
    })
    .await
    .expect("B did not load the policy");

    // Through A: bob from outside, three times from one IPv4 address and twice from
    // one IPv6 /64; from inside, and carol (no policy applies), nothing is recorded.
    for from in [
        "192.0.2.7",
        "192.0.2.7",
        "192.0.2.7",
        "2001:db8:0:1::1",
        "2001:db8:0:1::2",
    ] {
        assert_eq!(
            call_from(a.store.handle(), "bob", from).await,
            StatusCode::OK,
            "report-only"
        );
    }
    assert_eq!(
        call_from(a.store.handle(), "bob", "203.0.113.5").await,
        StatusCode::OK
    );
    assert_eq!(
        call_from(a.store.handle(), "carol", "192.0.2.7").await,
        StatusCode::OK
    );

    // Read on B, which saw none of these requests: A's flush brings them.
    let start = Instant::now();
    let summary = loop {
        let summary = b
            .store
            .would_deny(&org, RuleKind::Policy, "rollout")
            .await
            .unwrap()
            .expect("the policy reports");
        if summary.total_requests == 5 || start.elapsed() > Duration::from_secs(5) {
            break summary;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("A's would-denies answered by B after {:?}", start.elapsed());
    assert_eq!(summary.total_requests, 5, "{summary:?}");
    assert_eq!(summary.other_requests, 0);
    let callers: Vec<(Option<&str>, Option<String>, u64)> = summary
        .callers
        .iter()
        .map(|c| (c.user.as_deref(), c.address_text(), c.count))
        .collect();
    assert_eq!(
        callers,
        [
            (Some("bob"), Some("192.0.2.7".to_owned()), 3),
            (Some("bob"), Some("2001:db8:0:1::/64".to_owned()), 2),
        ]
    );
    assert!(
        b.store
            .handle()
            .would_deny()
            .summary(RuleKind::Policy, "acme", "rollout")
            .is_some_and(|own| own.is_empty()),
        "B's own summary is empty: the answer came from the database"
    );

    // Enforcing through B is refused while the summary is not empty...
    let admin = Principal::new("admin")
        .with_organization("acme")
        .with_permissions(["MANAGE"]);
    let actor = Actor::new(&admin, Some("203.0.113.1".parse().unwrap()));
    let enforce = PolicyPatch {
        enforcement: Some(Enforcement::Enforce),
        ..PolicyPatch::default()
    };
    let refused = b
        .store
        .update_policy(&actor, &org, "rollout", enforce.clone(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::WouldDenyCallers {
                callers: 2,
                requests: 5,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(
        b.store
            .get_policy(&org, "rollout")
            .unwrap()
            .policy
            .enforcement(),
        Enforcement::Report
    );
    // ...and made when forced: every replica's summary of it is then history.
    b.store
        .update_policy(&actor.clone().force(true), &org, "rollout", enforce, None)
        .await
        .unwrap();
    until(Duration::from_secs(2), || {
        a.store
            .handle()
            .would_deny()
            .summary(RuleKind::Policy, "acme", "rollout")
            .is_none()
    })
    .await
    .expect("A did not drop its summary when the policy left report mode");
    assert_eq!(
        a.store
            .would_deny(&org, RuleKind::Policy, "rollout")
            .await
            .unwrap(),
        None,
        "an enforcing policy has no summary"
    );

    // Back to report: a new summary, empty, on both replicas once A has flushed.
    let report = PolicyPatch {
        enforcement: Some(Enforcement::Report),
        ..PolicyPatch::default()
    };
    a.store
        .update_policy(&actor, &org, "rollout", report, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for replica in [&a, &b] {
        let summary = replica
            .store
            .would_deny(&org, RuleKind::Policy, "rollout")
            .await
            .unwrap()
            .expect("reporting again");
        assert!(summary.is_empty(), "{summary:?}");
    }
    // Bounded in the database too: one row per replica and rule.
    let mut sql = schema.sql().await;
    let rows: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.allowlist_would_deny",
        schema.name
    ))
    .fetch_one(&mut sql)
    .await
    .unwrap();
    assert!(rows <= 2, "{rows} rows");
}
