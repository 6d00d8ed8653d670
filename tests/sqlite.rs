//! The store on a real SQLite file.

use std::path::PathBuf;
use std::sync::Arc;

use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::snapshot::{Decision, DenyReason, SnapshotHandle};
use tower_ip_allowlist::store::{
    Actor, Limits, PolicyDraft, SqliteBackend, Store, StoreError, Targets,
};

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tower-ip-allowlist-{}-{name}", std::process::id()));
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

/// A database holding `document` as organization acme's stored data, written by hand
/// as an older version (or a corruption) would have left it.
async fn stored_raw(dir: &TempDir, document: &str) {
    use sqlx::Connection;
    drop(open(&dir.db()).await);
    let mut conn = sqlx::SqliteConnection::connect(&dir.db()).await.unwrap();
    sqlx::query("INSERT INTO allowlist_orgs (org_id, version, document) VALUES ('acme', 1, ?)")
        .bind(document)
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn open(url: &str) -> Store {
    let backend = SqliteBackend::open(url).await.unwrap();
    Store::open(
        Arc::new(backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn survives_a_reopen() {
    let dir = TempDir::new("reopen");
    let org = OrgId::from("acme");
    {
        let store = open(&dir.db()).await;
        store
            .create_policy(
                &Actor::system(),
                &org,
                PolicyDraft::new("vpn", ["203.0.113.0/24", "2001:db8::/48"])
                    .name("VPN")
                    .users(["alice"]),
            )
            .await
            .unwrap();
        store
            .add_targets(
                &Actor::system(),
                &org,
                "vpn",
                Targets::default().groups(["staff"]),
            )
            .await
            .unwrap();
        store
            .set_group_parents(&Actor::system(), &org, "interns", ["staff"])
            .await
            .unwrap();
        // A refused change writes nothing.
        let err = store
            .create_policy(
                &Actor::system(),
                &org,
                PolicyDraft::new("vpn", ["192.0.2.1"]),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
    }
    let store = open(&dir.db()).await;
    let vpn = store.get_policy(&org, "vpn").unwrap();
    assert_eq!(vpn.version, 2);
    assert_eq!(vpn.policy.name(), Some("VPN"));
    assert_eq!(vpn.policy.sources().len(), 2);
    assert_eq!(store.get_group(&org, "interns").unwrap().parents.len(), 1);
    let snapshot = store.handle().load();
    let outside = Some("192.0.2.1".parse().unwrap());
    assert_eq!(
        snapshot.decide(Some("acme"), "x", ["interns"], outside),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    // The plain-path form opens the same file.
    let path = dir.0.join("allowlist.db");
    drop(store);
    let plain = open(path.to_str().unwrap()).await;
    assert!(plain.get_policy(&org, "vpn").is_some());
}

#[tokio::test]
async fn corrupt_data_is_a_clear_error_not_a_panic() {
    let dir = TempDir::new("corrupt");
    stored_raw(&dir, r#"{"policies":[{"id":"p","allowedSources":["0.0.0.0/0"],"users":[],"groups":[],"version":1}],"groups":{}}"#).await;
    let backend = SqliteBackend::open(&dir.db()).await.unwrap();
    let err = Store::open(
        Arc::new(backend),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("organization `acme` is invalid") && message.contains("0.0.0.0/0"),
        "{message}"
    );
}

/// A rule whose sources together admit everyone was accepted before the coverage check
/// existed: it still loads (nothing stored is lost), and new changes are checked.
#[tokio::test]
async fn a_stored_union_that_admits_everyone_still_loads() {
    let dir = TempDir::new("union");
    stored_raw(&dir, r#"{"policies":[{"id":"p","allowedSources":["0.0.0.0/1","128.0.0.0/1"],"users":["bob"],"groups":[],"version":1}],"groups":{},"site":{"enabled":true,"allowedSources":["::/1","8000::/1"]}}"#).await;
    let store = open(&dir.db()).await;
    let org = OrgId::from("acme");
    let stored = store
        .get_policy(&org, "p")
        .expect("the stored policy loads");
    assert_eq!(stored.policy.sources().len(), 2);
    // Changing it goes through today's checks.
    let err = store
        .replace_policy(
            &Actor::system(),
            &org,
            PolicyDraft::new("p", ["0.0.0.0/1", "128.0.0.0/1"]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "matchAllNotAllowed");
}

/// Ids the rule accepted when they were stored (surrounding white space, invisible
/// characters) still load after the rule was tightened; new ones are refused.
#[tokio::test]
async fn ids_stored_under_the_older_rule_still_load() {
    let dir = TempDir::new("old-ids");
    stored_raw(&dir, r#"{"policies":[{"id":"p","allowedSources":["192.0.2.1"],"users":[" bob ","zero\u200bwidth"],"groups":[],"version":1}],"groups":{},"resources":{"apollo ":{"allowedSources":["192.0.2.1"]}}}"#).await;
    let store = open(&dir.db()).await;
    let org = OrgId::from("acme");
    let stored = store
        .get_policy(&org, "p")
        .expect("the stored policy loads");
    assert!(stored.policy.users().iter().any(|u| u.as_str() == " bob "));
    assert!(stored
        .policy
        .users()
        .iter()
        .any(|u| u.as_str() == "zero\u{200b}width"));
    let err = store
        .create_policy(
            &Actor::system(),
            &org,
            PolicyDraft::new("q", ["192.0.2.1"]).users([" carol "]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidId { .. }), "{err}");
}

#[tokio::test]
async fn not_a_database_is_a_clear_error() {
    let dir = TempDir::new("garbage");
    let path = dir.0.join("allowlist.db");
    std::fs::write(
        &path,
        b"this is not a database, it is a text file of some length......",
    )
    .unwrap();
    let err = SqliteBackend::open(path.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SQLite"), "{err}");
    // The file is left as it was.
    assert!(std::fs::read(&path)
        .unwrap()
        .starts_with(b"this is not a database"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_limits_and_versions() {
    let dir = TempDir::new("two");
    let a = open(&dir.db()).await;
    let b = open(&dir.db()).await;
    let org = OrgId::default();
    // Racing creates from both "replicas": the limit holds across them.
    let limit = Limits::default().max_policies_per_org;
    let mut tasks = Vec::new();
    for i in 0..(limit + 20) {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .create_policy(
                    &Actor::system(),
                    &OrgId::default(),
                    PolicyDraft::new(format!("p{i}"), ["192.0.2.1"]),
                )
                .await
        }));
    }
    let mut created = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => created.push(format!("p{i}")),
            Err(err) => assert_eq!(err, StoreError::PolicyLimitExceeded { limit }),
        }
    }
    assert_eq!(created.len(), limit);
    // Whichever creates won the race: any of them.
    let first = created[0].as_str();
    // A stale version from one replica is refused by the other's write.
    a.reload_org(&org).await.unwrap();
    b.reload_org(&org).await.unwrap();
    a.add_targets(
        &Actor::system(),
        &org,
        first,
        Targets::default().users(["u"]),
    )
    .await
    .unwrap();
    let err = b
        .replace_policy(
            &Actor::system(),
            &org,
            PolicyDraft::new(first, ["192.0.2.2"]),
            Some(1),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::VersionMismatch {
            expected: 1,
            actual: 2
        }
    );
    b.reload_org(&org).await.unwrap();
    assert_eq!(b.get_policy(&org, first).unwrap().version, 2);
    assert_eq!(b.list_policies(&org).len(), limit);
}
