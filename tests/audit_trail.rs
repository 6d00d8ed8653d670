//! The audit trail kept by the store: one record per committed change, written in the
//! change's transaction, on every backend (memory, SQLite, and PostgreSQL when
//! `ALLOWLIST_TEST_DATABASE_URL` is set; without it those tests print a notice and
//! pass).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tower_ip_allowlist::store::{
    Actor, AuditQuery, AuditRecord, AuditRetention, Backend, Limits, ListDraft, MemoryBackend,
    PolicyDraft, PolicyPatch, PostgresBackend, SqliteBackend, Store, StoreError, Targets,
};

const ENV: &str = "ALLOWLIST_TEST_DATABASE_URL";

fn org() -> OrgId {
    OrgId::from("acme")
}

fn admin() -> Actor {
    let admin = Principal::new("admin")
        .with_organization("acme")
        .with_permissions(["MANAGE"]);
    Actor::new(&admin, Some("198.51.100.7".parse().unwrap()))
}

async fn all(store: &Store) -> Vec<AuditRecord> {
    store
        .audit_events(&org(), &AuditQuery::default().limit(1000))
        .await
        .unwrap()
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tower-ip-allowlist-audit-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn db(&self) -> String {
        format!("sqlite://{}", self.0.join("allowlist.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PostgreSQL schema of its own, dropped at the end; `None` without the database.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(test: &str) -> Option<Self> {
        match std::env::var(ENV) {
            Ok(url) if !url.is_empty() => Some(Self {
                url,
                name: format!(
                    "allowlist_audit_{test}_{}_{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                ),
            }),
            _ => {
                let _ = writeln!(std::io::stderr(), "skipped {test}: {ENV} is not set");
                None
            }
        }
    }

    async fn backend(&self) -> PostgresBackend {
        PostgresBackend::connect_with_schema(&self.url, &self.name)
            .await
            .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let name = self.name.clone();
        // The test's runtime may be gone: drop the schema from a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

async fn store_on(backend: Arc<dyn Backend>, limits: Limits) -> Store {
    Store::open(backend, SnapshotHandle::default(), limits)
        .await
        .unwrap()
}

/// Every kind of change writes exactly one record with the right fields; refused and
/// no-op changes write none.
async fn every_change_is_recorded(store: &Store) {
    let actor = admin();
    // Refused: validation, stale version, lockout; and a no-op.
    let bad = PolicyDraft::new("bad", ["not an address"]);
    assert!(store.create_policy(&actor, &org(), bad).await.is_err());
    let office = PolicyDraft::new("again", ["203.0.113.0/24"]);
    store.create_policy(&actor, &org(), office).await.unwrap();
    assert!(matches!(
        store
            .delete_policy(&actor, &org(), "again", Some(2))
            .await
            .unwrap_err(),
        StoreError::VersionMismatch { .. }
    ));
    assert!(matches!(
        store
            .add_targets(&actor, &org(), "again", Targets::default().users(["admin"]))
            .await
            .unwrap_err(),
        StoreError::LockoutPrevented { .. }
    ));
    store
        .remove_targets(
            &actor,
            &org(),
            "again",
            Targets::default().users(["nobody"]),
        )
        .await
        .unwrap();

    assert_eq!(
        all(store).await.len(),
        1,
        "only the committed change is recorded"
    );

    let draft = PolicyDraft::new("office", ["203.0.113.0/24"]).users(["alice"]);
    store.create_policy(&actor, &org(), draft).await.unwrap();
    store
        .update_policy(
            &actor,
            &org(),
            "office",
            PolicyPatch {
                name: Some(Some("Office".into())),
                ..PolicyPatch::default()
            },
            Some(1),
        )
        .await
        .unwrap();
    store
        .add_targets(&actor, &org(), "office", Targets::default().users(["bob"]))
        .await
        .unwrap();
    store
        .remove_targets(&actor, &org(), "office", Targets::default().users(["bob"]))
        .await
        .unwrap();
    store
        .replace_policy(
            &actor,
            &org(),
            PolicyDraft::new("office", ["203.0.113.0/24"]).users(["carol"]),
            Some(4),
        )
        .await
        .unwrap();
    store
        .set_group_parents(&actor, &org(), "team", ["staff"])
        .await
        .unwrap();
    store.delete_group(&actor, &org(), "team").await.unwrap();
    store
        .set_resource_list(&actor, &org(), "repo-1", ListDraft::new(["192.0.2.0/24"]))
        .await
        .unwrap();
    store
        .delete_resource_list(&actor, &org(), "repo-1")
        .await
        .unwrap();
    store
        .set_site_list(&actor, &org(), false, ListDraft::new(["192.0.2.0/24"]))
        .await
        .unwrap();
    store
        .delete_policy(&actor, &org(), "office", Some(5))
        .await
        .unwrap();
    // Forced past the lockout guard: the admin's own address is outside the list.
    let forced = admin().force(true);
    store
        .set_site_list(&forced, &org(), true, ListDraft::new(["192.0.2.0/24"]))
        .await
        .unwrap();

    let records = all(store).await;
    assert_eq!(records.len(), 13, "one per committed change");
    let mut records: Vec<AuditRecord> = records.into_iter().rev().collect();
    let again = records.remove(0);
    assert_eq!(
        (again.operation.as_str(), again.version_after),
        ("createPolicy", 1)
    );
    let ops: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.operation.as_str(),
                r.entity_type.as_str(),
                r.entity_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("createPolicy", "policy", "office"),
            ("updatePolicy", "policy", "office"),
            ("addTargets", "policy", "office"),
            ("removeTargets", "policy", "office"),
            ("replacePolicy", "policy", "office"),
            ("setGroupParents", "userGroup", "team"),
            ("deleteGroup", "userGroup", "team"),
            ("setResourceAllowlist", "resourceAllowlist", "repo-1"),
            ("deleteResourceAllowlist", "resourceAllowlist", "repo-1"),
            ("setSiteAllowlist", "siteAllowlist", "site"),
            ("deletePolicy", "policy", "office"),
            ("setSiteAllowlist", "siteAllowlist", "site"),
        ]
    );
    for (n, record) in records.iter().enumerate() {
        let n = n as u64;
        assert_eq!(record.org, org());
        assert_eq!(record.actor, "admin");
        assert_eq!(record.client_ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(
            (record.version_before, record.version_after),
            (n + 1, n + 2)
        );
        assert_eq!(record.forced, n == 11, "{}", record.operation);
        assert!(record.time <= SystemTime::now());
    }
    // Ids increase with the changes.
    assert!(records.windows(2).all(|w| w[0].id < w[1].id));

    let created = &records[0];
    assert_eq!(created.before, None);
    assert_eq!(
        created.after,
        Some(json!({
            "id": "office", "version": 1, "name": null,
            "allowedSources": ["203.0.113.0/24"], "blockedSources": [],
            "users": ["alice"], "groups": [], "enforcement": "enforce",
        }))
    );
    let renamed = &records[1];
    assert_eq!(renamed.before.as_ref().unwrap()["name"], json!(null));
    assert_eq!(renamed.after.as_ref().unwrap()["name"], json!("Office"));
    assert_eq!(renamed.after.as_ref().unwrap()["version"], json!(2));
    assert_eq!(
        records[5].after,
        Some(json!({ "id": "team", "parents": ["staff"] }))
    );
    assert_eq!(records[6].after, None);
    assert_eq!(
        records[7].after,
        Some(json!({
            "id": "repo-1", "allowedSources": ["192.0.2.0/24"], "blockedSources": [],
            "enforcement": "enforce",
        }))
    );
    assert_eq!(records[8].after, None);
    assert_eq!(records[9].before, None);
    assert_eq!(records[9].after.as_ref().unwrap()["enabled"], json!(false));
    assert_eq!(records[10].after, None);
    assert_eq!(
        records[10].before.as_ref().unwrap()["users"],
        json!(["carol"])
    );
    assert_eq!(
        records[11].before.as_ref().unwrap()["enabled"],
        json!(false)
    );
    assert_eq!(records[11].after.as_ref().unwrap()["enabled"], json!(true));

    // A system change is recorded as such, without an address.
    store
        .set_resource_list(
            &Actor::system(),
            &org(),
            "repo-2",
            ListDraft::new(["192.0.2.1"]),
        )
        .await
        .unwrap();
    let newest = &all(store).await[0];
    assert_eq!((newest.actor.as_str(), newest.client_ip), ("system", None));

    // Another organization's records are its own.
    let other = OrgId::from("other");
    assert!(store
        .audit_events(&other, &AuditQuery::default())
        .await
        .unwrap()
        .is_empty());
}

/// The query's filters and cursor.
async fn queries(store: &Store) {
    let actor = admin();
    for n in 0..5 {
        store
            .set_resource_list(
                &actor,
                &org(),
                &format!("r{n}"),
                ListDraft::new(["192.0.2.1"]),
            )
            .await
            .unwrap();
    }
    store
        .set_resource_list(
            &Actor::system(),
            &org(),
            "r0",
            ListDraft::new(["192.0.2.2"]),
        )
        .await
        .unwrap();
    let everything = all(store).await;
    assert_eq!(everything.len(), 6);

    // Pages of two, by cursor, give everything once, newest first.
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let mut query = AuditQuery::default().limit(2);
        if let Some(id) = cursor {
            query = query.before_id(id);
        }
        let page = store.audit_events(&org(), &query).await.unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|r| r.id);
        paged.extend(page);
    }
    assert_eq!(paged, everything);

    let r0 = store
        .audit_events(&org(), &AuditQuery::default().entity_id("r0"))
        .await
        .unwrap();
    assert_eq!(r0.len(), 2);
    assert!(r0.iter().all(|r| r.entity_id == "r0"));
    let system = store
        .audit_events(&org(), &AuditQuery::default().actor("system"))
        .await
        .unwrap();
    assert_eq!(system.len(), 1);
    assert_eq!(system[0].id, everything[0].id);

    let middle = everything[2].time;
    let since = store
        .audit_events(&org(), &AuditQuery::default().since(middle))
        .await
        .unwrap();
    assert!(since.iter().all(|r| r.time >= middle) && since.len() >= 3);
    let until = store
        .audit_events(&org(), &AuditQuery::default().until(middle))
        .await
        .unwrap();
    assert!(until.iter().all(|r| r.time <= middle) && until.len() >= 4);
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert!(store
        .audit_events(&org(), &AuditQuery::default().since(future))
        .await
        .unwrap()
        .is_empty());
}

/// Keeps the newest `max` records: at `max` nothing is pruned, at `max + 1` the
/// oldest is.
async fn retention(store: &Store, max: usize) {
    let actor = admin();
    for n in 0..max {
        store
            .set_resource_list(
                &actor,
                &org(),
                &format!("r{n}"),
                ListDraft::new(["192.0.2.1"]),
            )
            .await
            .unwrap();
    }
    let at_max = all(store).await;
    assert_eq!(at_max.len(), max);
    store
        .set_resource_list(&actor, &org(), "last", ListDraft::new(["192.0.2.1"]))
        .await
        .unwrap();
    let after = all(store).await;
    assert_eq!(after.len(), max);
    assert_eq!(after[0].entity_id, "last");
    assert_eq!(after[1..], at_max[..max - 1], "the oldest one went");
}

fn retained(max: u64) -> Limits {
    Limits::default().audit_retention(AuditRetention::default().max_records_per_org(max))
}

#[tokio::test]
async fn memory_records_every_change() {
    every_change_is_recorded(&Store::memory()).await;
    queries(&store_on(Arc::new(MemoryBackend::new()), Limits::default()).await).await;
    retention(
        &store_on(Arc::new(MemoryBackend::new()), retained(3)).await,
        3,
    )
    .await;
    never_prunes_the_newest(&store_on(Arc::new(MemoryBackend::new()), nothing_kept()).await).await;
}

/// Retention that would keep nothing.
fn nothing_kept() -> Limits {
    Limits::default().audit_retention(
        AuditRetention::default()
            .max_records_per_org(0)
            .max_age(Duration::ZERO),
    )
}

/// Whatever the retention, the record of the change just made stays.
async fn never_prunes_the_newest(store: &Store) {
    for n in 0..3 {
        store
            .set_resource_list(
                &admin(),
                &org(),
                &format!("r{n}"),
                ListDraft::new(["192.0.2.1"]),
            )
            .await
            .unwrap();
        let left = all(store).await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entity_id, format!("r{n}"));
    }
}

#[tokio::test]
async fn sqlite_records_every_change() {
    let dir = TempDir::new("every");
    let store = store_on(
        Arc::new(SqliteBackend::open(&dir.db()).await.unwrap()),
        Limits::default(),
    )
    .await;
    every_change_is_recorded(&store).await;
    // And they are still there when the file is opened again.
    let before = all(&store).await;
    drop(store);
    let store = store_on(
        Arc::new(SqliteBackend::open(&dir.db()).await.unwrap()),
        Limits::default(),
    )
    .await;
    assert_eq!(all(&store).await, before);

    let dir = TempDir::new("queries");
    let backend = Arc::new(SqliteBackend::open(&dir.db()).await.unwrap());
    queries(&store_on(backend, Limits::default()).await).await;
    let dir = TempDir::new("retention");
    let backend = Arc::new(SqliteBackend::open(&dir.db()).await.unwrap());
    retention(&store_on(backend, retained(3)).await, 3).await;
    let dir = TempDir::new("newest");
    let backend = Arc::new(SqliteBackend::open(&dir.db()).await.unwrap());
    never_prunes_the_newest(&store_on(backend, nothing_kept()).await).await;
}

#[tokio::test]
async fn sqlite_max_age_prunes_old_records_without_failing_the_change() {
    let dir = TempDir::new("age");
    let backend = Arc::new(SqliteBackend::open(&dir.db()).await.unwrap());
    let limits = Limits::default()
        .audit_retention(AuditRetention::default().max_age(Duration::from_millis(200)));
    let store = store_on(backend, limits).await;
    store
        .set_resource_list(&admin(), &org(), "old", ListDraft::new(["192.0.2.1"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store
        .set_resource_list(&admin(), &org(), "new", ListDraft::new(["192.0.2.1"]))
        .await
        .unwrap();
    let left = all(&store).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].entity_id, "new");
}

#[tokio::test]
async fn sqlite_database_of_the_previous_schema_migrates_on_open() {
    use sqlx::Connection;
    let dir = TempDir::new("migrate");
    let path = dir.0.join("allowlist.db");
    std::fs::File::create(&path).unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&dir.db()).await.unwrap();
    for sql in [
        "CREATE TABLE allowlist_schema_migrations (version INTEGER PRIMARY KEY NOT NULL)",
        "INSERT INTO allowlist_schema_migrations (version) VALUES (1)",
        "CREATE TABLE allowlist_orgs (org_id TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let backend = Arc::new(SqliteBackend::open(&dir.db()).await.unwrap());
    let store = store_on(backend, Limits::default()).await;
    store
        .set_resource_list(&admin(), &org(), "r", ListDraft::new(["192.0.2.1"]))
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 1);
}

#[tokio::test]
async fn postgres_records_every_change() {
    let Some(schema) = Schema::new("every") else {
        return;
    };
    every_change_is_recorded(&store_on(Arc::new(schema.backend().await), Limits::default()).await)
        .await;
    let Some(schema) = Schema::new("queries") else {
        return;
    };
    queries(&store_on(Arc::new(schema.backend().await), Limits::default()).await).await;
    let Some(schema) = Schema::new("retention") else {
        return;
    };
    retention(
        &store_on(Arc::new(schema.backend().await), retained(3)).await,
        3,
    )
    .await;
    let Some(schema) = Schema::new("newest") else {
        return;
    };
    never_prunes_the_newest(&store_on(Arc::new(schema.backend().await), nothing_kept()).await)
        .await;
}

#[tokio::test]
async fn postgres_two_replicas_see_each_others_records() {
    let Some(schema) = Schema::new("replicas") else {
        return;
    };
    let one = store_on(Arc::new(schema.backend().await), Limits::default()).await;
    let two = store_on(Arc::new(schema.backend().await), Limits::default()).await;
    let mut writes = Vec::new();
    for n in 0..10 {
        let (store, name) = if n % 2 == 0 {
            (&one, "one")
        } else {
            (&two, "two")
        };
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            let actor = Actor::new(&Principal::new(name), None);
            store
                .set_resource_list(
                    &actor,
                    &org(),
                    &format!("r{n}"),
                    ListDraft::new(["192.0.2.1"]),
                )
                .await
                .unwrap();
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    let from_one = all(&one).await;
    assert_eq!(from_one, all(&two).await);
    assert_eq!(from_one.len(), 10);
    assert_eq!(from_one.iter().filter(|r| r.actor == "one").count(), 5);
    // Each record's versions chain onto the previous one: the writes serialized.
    for pair in from_one.windows(2) {
        assert_eq!(pair[1].version_after, pair[0].version_before);
    }
}

#[tokio::test]
async fn postgres_schema_of_the_previous_version_migrates_on_connect() {
    use sqlx::Connection;
    let Some(schema) = Schema::new("migrate") else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    let name = &schema.name;
    for sql in [
        format!("CREATE SCHEMA \"{name}\""),
        format!("CREATE TABLE \"{name}\".allowlist_schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"),
        format!("INSERT INTO \"{name}\".allowlist_schema_migrations (version) VALUES (1)"),
        format!("CREATE TABLE \"{name}\".allowlist_orgs (org_id TEXT PRIMARY KEY, version BIGINT NOT NULL CHECK (version > 0), document JSONB NOT NULL)"),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let store = store_on(Arc::new(schema.backend().await), Limits::default()).await;
    store
        .set_resource_list(&admin(), &org(), "r", ListDraft::new(["192.0.2.1"]))
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 1);
}

/// With retention at one record and the prune made to fail, `changes` changes all
/// commit, each with its record.
async fn failing_prune_keeps_the_change(store: &Store, changes: usize) {
    for n in 0..changes {
        store
            .set_resource_list(
                &admin(),
                &org(),
                &format!("r{n}"),
                ListDraft::new(["192.0.2.1"]),
            )
            .await
            .expect("a failed prune must not fail the change");
    }
    let records = all(store).await;
    assert_eq!(records.len(), changes, "nothing pruned, nothing lost");
    assert!(store.resource_list(&org(), "r2").is_some());
}

#[tokio::test]
async fn sqlite_prune_failure_does_not_fail_the_change() {
    use sqlx::Connection;
    let dir = TempDir::new("prune-fails");
    drop(SqliteBackend::open(&dir.db()).await.unwrap());
    let mut conn = sqlx::SqliteConnection::connect(&dir.db()).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_prune BEFORE DELETE ON allowlist_audit
         BEGIN SELECT RAISE(ABORT, 'pruning refused by the test'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let backend = Arc::new(SqliteBackend::open(&dir.db()).await.unwrap());
    failing_prune_keeps_the_change(&store_on(backend, retained(1)).await, 3).await;
}

#[tokio::test]
async fn postgres_prune_failure_does_not_fail_the_change() {
    use sqlx::Connection;
    let Some(schema) = Schema::new("prunefails") else {
        return;
    };
    drop(schema.backend().await);
    let mut conn = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    let name = &schema.name;
    for sql in [
        format!(
            "CREATE FUNCTION \"{name}\".refuse_prune() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'pruning refused by the test'; END $$"
        ),
        format!(
            "CREATE TRIGGER refuse_prune BEFORE DELETE ON \"{name}\".allowlist_audit
             FOR EACH ROW EXECUTE FUNCTION \"{name}\".refuse_prune()"
        ),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let backend = Arc::new(schema.backend().await);
    failing_prune_keeps_the_change(&store_on(backend, retained(1)).await, 3).await;
}
