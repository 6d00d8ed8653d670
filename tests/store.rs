//! The store: every operation and rule, through the in-memory backend.

use std::net::IpAddr;
use std::sync::Arc;

use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::{Decision, DenyReason, SnapshotHandle};
use tower_ip_allowlist::store::{
    Actor, Limits, ListDraft, MemoryBackend, PolicyDraft, PolicyPatch, Store, StoreError, Targets,
};

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn org() -> OrgId {
    OrgId::default()
}

fn decide(store: &Store, user: &str, groups: &[&str], addr: &str) -> Decision {
    store
        .handle()
        .load()
        .decide(None, user, groups.iter().copied(), ip(addr))
}

const SYSTEM: fn() -> Actor = Actor::system;

#[tokio::test]
async fn create_get_list_replace_update_delete() {
    let store = Store::memory();
    let created = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("vpn", [" 203.0.113.0/24 ", "2001:db8::/32"])
                .name("VPN")
                .users(["alice"]),
        )
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.policy.name(), Some("VPN"));
    assert_eq!(created.policy.sources()[0].to_string(), "203.0.113.0/24");
    assert_eq!(store.get_policy(&org(), "vpn"), Some(created.clone()));
    assert_eq!(
        decide(&store, "alice", &[], "192.0.2.1"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    assert_eq!(
        decide(&store, "alice", &[], "203.0.113.9"),
        Decision::Allowed
    );

    // Duplicate id.
    let err = store
        .create_policy(&SYSTEM(), &org(), PolicyDraft::new("vpn", ["192.0.2.0/24"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");

    // Replace: new sources, enforced at once.
    let replaced = store
        .replace_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("vpn", ["192.0.2.0/24"]).users(["alice"]),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(replaced.version, 2);
    assert_eq!(decide(&store, "alice", &[], "192.0.2.1"), Decision::Allowed);

    // Update only the name; a stale version is refused and changes nothing.
    let err = store
        .update_policy(
            &SYSTEM(),
            &org(),
            "vpn",
            PolicyPatch {
                name: Some(None),
                ..PolicyPatch::default()
            },
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
    let updated = store
        .update_policy(
            &SYSTEM(),
            &org(),
            "vpn",
            PolicyPatch {
                name: Some(Some("Office".into())),
                ..PolicyPatch::default()
            },
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.version, updated.policy.name()),
        (3, Some("Office"))
    );
    assert_eq!(updated.policy.sources(), replaced.policy.sources());

    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("another", ["198.51.100.1"]),
        )
        .await
        .unwrap();
    let ids: Vec<String> = store
        .list_policies(&org())
        .iter()
        .map(|p| p.policy.id().to_string())
        .collect();
    assert_eq!(ids, ["another", "vpn"]);

    let err = store
        .delete_policy(&SYSTEM(), &org(), "vpn", Some(2))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "versionMismatch");
    store
        .delete_policy(&SYSTEM(), &org(), "vpn", Some(3))
        .await
        .unwrap();
    assert_eq!(store.get_policy(&org(), "vpn"), None);
    assert_eq!(decide(&store, "alice", &[], "10.0.0.1"), Decision::NoPolicy);
    let err = store
        .delete_policy(&SYSTEM(), &org(), "vpn", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "notFound");
    let err = store
        .replace_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("vpn", ["192.0.2.0/24"]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "notFound");
}

#[tokio::test]
async fn validation_errors_name_what_is_wrong() {
    let store = Store::memory();
    for (draft, code) in [
        (
            PolicyDraft::new("p", ["203.0.113.10", "vpn.example.com"]),
            "hostnameNotAllowed",
        ),
        (PolicyDraft::new("p", ["0.0.0.0/0"]), "matchAllNotAllowed"),
        (PolicyDraft::new("p", ["198.51.100.7/24"]), "hostBitsSet"),
        (PolicyDraft::new("p", ["1.2.3"]), "invalidSource"),
        (
            PolicyDraft::new("p", Vec::<String>::new()),
            "emptyAllowedSources",
        ),
        (PolicyDraft::new("", ["192.0.2.1"]), "malformedDocument"),
        (PolicyDraft::new("a/b", ["192.0.2.1"]), "malformedDocument"),
        (
            PolicyDraft::new(".hidden", ["192.0.2.1"]),
            "malformedDocument",
        ),
        (
            PolicyDraft::new("x".repeat(256), ["192.0.2.1"]),
            "malformedDocument",
        ),
        (
            PolicyDraft::new("p", ["192.0.2.1"]).users(["bad\nuser"]),
            "malformedDocument",
        ),
        (
            PolicyDraft::new("p", ["192.0.2.1"]).groups([""]),
            "malformedDocument",
        ),
    ] {
        let err = store
            .create_policy(&SYSTEM(), &org(), draft.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{draft:?}: {err}");
    }
    let err = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["192.0.2.1", "x", "y"]),
        )
        .await
        .unwrap_err();
    let StoreError::InvalidSource(list) = err else {
        panic!("{err}")
    };
    assert_eq!(list.index, Some(1));
    assert!(store.list_policies(&org()).is_empty());
}

#[tokio::test]
async fn policy_limit_at_100_and_101() {
    let store = Store::memory();
    for i in 0..100 {
        store
            .create_policy(
                &SYSTEM(),
                &org(),
                PolicyDraft::new(format!("p{i}"), ["192.0.2.1"]),
            )
            .await
            .unwrap();
    }
    let err = store
        .create_policy(&SYSTEM(), &org(), PolicyDraft::new("p100", ["192.0.2.1"]))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::PolicyLimitExceeded { limit: 100 });
    // Other organizations have their own limit.
    store
        .create_policy(
            &SYSTEM(),
            &OrgId::from("acme"),
            PolicyDraft::new("p100", ["192.0.2.1"]),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn target_limit_at_100_and_101() {
    let store = Store::memory();
    let users: Vec<String> = (0..60).map(|i| format!("u{i}")).collect();
    let groups: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    let full = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["192.0.2.1"])
                .users(users.clone())
                .groups(groups.clone()),
        )
        .await
        .unwrap();
    assert_eq!(full.policy.target_count(), 100);
    let err = store
        .add_targets(
            &SYSTEM(),
            &org(),
            "p",
            Targets::default().users(["one-more"]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::TargetLimitExceeded {
            limit: 100,
            count: 101
        }
    );
    // Re-adding assigned targets is not growth.
    store
        .add_targets(
            &SYSTEM(),
            &org(),
            "p",
            Targets::default().users(["u1"]).groups(["g1"]),
        )
        .await
        .unwrap();
    let err = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("q", ["192.0.2.1"]).users((0..101).map(|i| format!("u{i}"))),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "targetLimitExceeded");
    // Configurable.
    let store = Store::open(
        Arc::new(MemoryBackend::new()),
        SnapshotHandle::default(),
        Limits::default().max_targets_per_policy(1),
    )
    .await
    .unwrap();
    let err = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["192.0.2.1"]).users(["a", "b"]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "targetLimitExceeded");
}

#[tokio::test]
async fn targets_are_idempotent_and_the_last_one_leaves_the_policy_inactive() {
    let store = Store::memory();
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["198.51.100.0/24"]),
        )
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "alice", &[], "192.0.2.1"),
        Decision::NoPolicy,
        "no targets: inactive"
    );

    let v = store
        .add_targets(
            &SYSTEM(),
            &org(),
            "p",
            Targets::default().users(["alice"]).groups(["staff"]),
        )
        .await
        .unwrap();
    assert_eq!(v.version, 2);
    assert_eq!(
        decide(&store, "alice", &[], "192.0.2.1"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    let same = store
        .add_targets(
            &SYSTEM(),
            &org(),
            "p",
            Targets::default().users(["alice"]).groups(["staff"]),
        )
        .await
        .unwrap();
    assert_eq!(same.version, 2, "adding assigned targets changes nothing");
    let same = store
        .remove_targets(
            &SYSTEM(),
            &org(),
            "p",
            Targets::default().users(["bob"]).groups(["nobody"]),
        )
        .await
        .unwrap();
    assert_eq!(same.version, 2, "removing missing targets changes nothing");

    store
        .remove_targets(
            &SYSTEM(),
            &org(),
            "p",
            Targets::default().users(["alice"]).groups(["staff"]),
        )
        .await
        .unwrap();
    let left = store.get_policy(&org(), "p").unwrap();
    assert!(!left.policy.is_active());
    assert_eq!(left.version, 3);
    assert_eq!(
        decide(&store, "alice", &[], "192.0.2.1"),
        Decision::NoPolicy
    );

    let err = store
        .add_targets(
            &SYSTEM(),
            &org(),
            "missing",
            Targets::default().users(["alice"]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "notFound");
}

#[tokio::test]
async fn groups_inherit_and_cycles_are_refused() {
    let store = Store::memory();
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["198.51.100.0/24"]).groups(["parent"]),
        )
        .await
        .unwrap();
    store
        .set_group_parents(&SYSTEM(), &org(), "child", ["parent"])
        .await
        .unwrap();
    store
        .set_group_parents(&SYSTEM(), &org(), "grandchild", ["child"])
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "u", &["grandchild"], "192.0.2.1"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    let err = store
        .set_group_parents(&SYSTEM(), &org(), "parent", ["grandchild"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "malformedDocument");
    assert!(matches!(err, StoreError::Cycle(_)));
    assert_eq!(store.get_group(&org(), "child").unwrap().parents.len(), 1);
    assert_eq!(store.get_group(&org(), "parent"), None);

    store
        .delete_group(&SYSTEM(), &org(), "child")
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "u", &["grandchild"], "192.0.2.1"),
        Decision::NoPolicy
    );
    let err = store
        .delete_group(&SYSTEM(), &org(), "child")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "notFound");
}

#[tokio::test]
async fn lockout_is_prevented_unless_forced() {
    let store = Store::memory();
    let admin = Principal::new("admin")
        .with_groups(["admins"])
        .with_permissions(["MANAGE"]);
    let at_desk = Actor::new(&admin, ip("192.0.2.10"));

    // A policy for admins that excludes this address: refused, nothing changes.
    let err = store
        .create_policy(
            &at_desk,
            &org(),
            PolicyDraft::new("admins", ["198.51.100.0/24"]).groups(["admins"]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::LockoutPrevented {
            addr: ip("192.0.2.10"),
            unknown: None
        }
    );
    assert!(store.list_policies(&org()).is_empty());
    assert_eq!(
        decide(&store, "admin", &["admins"], "192.0.2.10"),
        Decision::NoPolicy
    );

    // Including the current address is fine; removing it later is refused.
    store
        .create_policy(
            &at_desk,
            &org(),
            PolicyDraft::new("admins", ["198.51.100.0/24", "192.0.2.10"]).groups(["admins"]),
        )
        .await
        .unwrap();
    let narrow = PolicyPatch {
        allowed_sources: Some(vec!["198.51.100.0/24".into()]),
        ..PolicyPatch::default()
    };
    let err = store
        .update_policy(&at_desk, &org(), "admins", narrow.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "lockoutPrevented");
    // Through the hierarchy too: making the admins' group a child of a restricted one.
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("office", ["203.0.113.0/24"]).groups(["office"]),
        )
        .await
        .unwrap();
    store
        .set_group_parents(&at_desk, &org(), "admins", ["office"])
        .await
        .unwrap(); // union still has .10
                   // An unknown address counts as denied.
    let nowhere = Actor::new(&admin, None);
    let err = store
        .add_targets(
            &nowhere,
            &org(),
            "office",
            Targets::default().users(["admin"]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::LockoutPrevented {
            addr: None,
            unknown: None
        }
    );

    // Forced: allowed, and enforced.
    store
        .update_policy(&at_desk.clone().force(true), &org(), "admins", narrow, None)
        .await
        .unwrap();
    store
        .delete_policy(&at_desk.clone().force(true), &org(), "office", None)
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "admin", &["admins"], "192.0.2.10"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );

    // An administrator of another organization is not locked out by this one's policies.
    let other = Actor::new(
        &Principal::new("admin").with_organization("acme"),
        ip("192.0.2.10"),
    );
    store
        .create_policy(
            &other,
            &org(),
            PolicyDraft::new("x", ["198.51.100.9"]).users(["admin"]),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_change_leaves_the_snapshot_alone() {
    let store = Store::memory();
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["198.51.100.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();
    let before = store.handle().load_full();
    let _ = store
        .replace_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["bad source"]),
            None,
        )
        .await
        .unwrap_err();
    let _ = store
        .update_policy(&SYSTEM(), &org(), "p", PolicyPatch::default(), Some(9))
        .await
        .unwrap_err();
    assert!(
        Arc::ptr_eq(&before, &store.handle().load_full()),
        "no snapshot was published"
    );
    assert_eq!(store.get_policy(&org(), "p").unwrap().version, 1);
}

#[tokio::test]
async fn reopening_from_the_same_backend() {
    let backend = Arc::new(MemoryBackend::new());
    let store = Store::open(
        backend.clone(),
        SnapshotHandle::default(),
        Limits::default(),
    )
    .await
    .unwrap();
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("p", ["198.51.100.0/24"]).users(["alice"]),
        )
        .await
        .unwrap();
    store
        .add_targets(&SYSTEM(), &org(), "p", Targets::default().users(["bob"]))
        .await
        .unwrap();

    let again = Store::open(backend, SnapshotHandle::default(), Limits::default())
        .await
        .unwrap();
    assert_eq!(again.list_policies(&org()), store.list_policies(&org()));
    assert_eq!(again.get_policy(&org(), "p").unwrap().version, 2);
    assert_eq!(
        decide(&again, "bob", &[], "192.0.2.1"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_pass_the_limit() {
    let store = Store::memory();
    let tasks: Vec<_> = (0..150)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_policy(
                        &Actor::system(),
                        &OrgId::default(),
                        PolicyDraft::new(format!("p{i}"), ["192.0.2.1"]).users(["u"]),
                    )
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(err) => assert_eq!(err, StoreError::PolicyLimitExceeded { limit: 100 }),
        }
    }
    assert_eq!(created, 100);
    assert_eq!(store.list_policies(&org()).len(), 100);
    // The snapshot ends at the newest state whatever order the writers finished in.
    let compiled = store.handle().load_full();
    assert_eq!(compiled.org(OrgId::DEFAULT).unwrap().active_policies(), 100);
}

#[tokio::test]
async fn source_and_resource_limits() {
    let store = Store::open(
        Arc::new(MemoryBackend::new()),
        SnapshotHandle::default(),
        Limits::default()
            .max_sources_per_rule(3)
            .max_resource_lists_per_org(2),
    )
    .await
    .unwrap();
    let sources = |n: u8| (0..n).map(|i| format!("192.0.2.{i}")).collect::<Vec<_>>();
    store
        .create_policy(&SYSTEM(), &org(), PolicyDraft::new("three", sources(3)))
        .await
        .unwrap();
    let err = store
        .create_policy(&SYSTEM(), &org(), PolicyDraft::new("four", sources(4)))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::SourceLimitExceeded { limit: 3, count: 4 });
    let patch = PolicyPatch {
        allowed_sources: Some(sources(4)),
        ..PolicyPatch::default()
    };
    let err = store
        .update_policy(&SYSTEM(), &org(), "three", patch, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "sourceLimitExceeded");
    let err = store
        .set_site_list(&SYSTEM(), &org(), true, ListDraft::new(sources(4)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "sourceLimitExceeded");

    for id in ["a", "b"] {
        store
            .set_resource_list(&SYSTEM(), &org(), id, ListDraft::new(sources(1)))
            .await
            .unwrap();
    }
    // Replacing an existing one is fine at the limit; a third is not.
    store
        .set_resource_list(&SYSTEM(), &org(), "a", ListDraft::new(sources(2)))
        .await
        .unwrap();
    let err = store
        .set_resource_list(&SYSTEM(), &org(), "c", ListDraft::new(sources(1)))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::ResourceLimitExceeded { limit: 2 });
    assert_eq!(store.resource_lists(&org()).len(), 2);
}

#[tokio::test]
async fn blocked_sources_are_validated_limited_patched_and_guarded() {
    let store = Store::open(
        Arc::new(MemoryBackend::new()),
        SnapshotHandle::default(),
        Limits::default().max_sources_per_rule(3),
    )
    .await
    .unwrap();
    // Validation names the blocked entry, apart from the allowed ones.
    let err = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("office", ["198.51.100.0/24"])
                .blocked_sources(["198.51.100.66", "printer.example.com"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidBlockedSource(e) if e.index == Some(1)),
        "{err:?}"
    );
    assert_eq!(err.code(), "hostnameNotAllowed");
    assert!(err.to_string().starts_with("blocked source 1: "), "{err}");
    let err = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("office", ["198.51.100.0/24"])
                .blocked_sources(["0.0.0.0/1", "128.0.0.0/1"]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidBlockedSource(e) if e.index.is_none()),
        "{err:?}"
    );
    assert_eq!(err.code(), "matchAllNotAllowed");
    assert!(err.to_string().contains("blocked sources"), "{err}");
    // The limit applies to each list apart: three allowed and three blocked pass.
    let three = |base: &str| (1..=3).map(|i| format!("{base}.{i}")).collect::<Vec<_>>();
    let err = store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("office", ["198.51.100.0/24"]).blocked_sources([
                "198.51.100.1",
                "198.51.100.2",
                "198.51.100.3",
                "198.51.100.4",
            ]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::BlockedSourceLimitExceeded { limit: 3, count: 4 }
    );
    assert_eq!(err.code(), "sourceLimitExceeded");
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("office", three("198.51.100"))
                .blocked_sources(three("198.51.100"))
                .users(["nobody"]),
        )
        .await
        .unwrap();
    store
        .create_policy(
            &SYSTEM(),
            &org(),
            PolicyDraft::new("staff", ["192.0.2.0/24"])
                .blocked_sources(["192.0.2.66"])
                .groups(["staff"]),
        )
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "x", &["staff"], "192.0.2.65"),
        Decision::Allowed
    );
    assert_eq!(
        decide(&store, "x", &["staff"], "192.0.2.66"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );

    // PATCH: absent leaves them, a list replaces them, an empty list clears them.
    let patch = |blocked: Option<Vec<&str>>| PolicyPatch {
        name: Some(Some("Staff".into())),
        blocked_sources: blocked.map(|b| b.into_iter().map(str::to_owned).collect()),
        ..PolicyPatch::default()
    };
    let stored = store
        .update_policy(&SYSTEM(), &org(), "staff", patch(None), None)
        .await
        .unwrap();
    assert_eq!(stored.policy.blocked_sources().len(), 1);
    let err = store
        .update_policy(&SYSTEM(), &org(), "staff", patch(Some(vec!["::/0"])), None)
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::InvalidBlockedSource(e) if e.index == Some(0)));
    store
        .update_policy(
            &SYSTEM(),
            &org(),
            "staff",
            patch(Some(vec!["192.0.2.0/25"])),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "x", &["staff"], "192.0.2.1"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    assert_eq!(
        decide(&store, "x", &["staff"], "192.0.2.200"),
        Decision::Allowed
    );
    let stored = store
        .update_policy(&SYSTEM(), &org(), "staff", patch(Some(vec![])), None)
        .await
        .unwrap();
    assert!(stored.policy.blocked_sources().is_empty());
    assert_eq!(
        decide(&store, "x", &["staff"], "192.0.2.1"),
        Decision::Allowed
    );

    // Lists: validated and limited the same way.
    let err = store
        .set_resource_list(
            &SYSTEM(),
            &org(),
            "apollo",
            ListDraft::new(["10.0.0.0/8"]).blocked_sources(["10.0.0.1/8"]),
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, StoreError::InvalidBlockedSource(e) if e.index == Some(0)));
    assert_eq!(err.code(), "hostBitsSet");
    let err = store
        .set_site_list(
            &SYSTEM(),
            &org(),
            true,
            ListDraft::new(["10.0.0.0/8"])
                .blocked_sources(three("10.0.0").into_iter().chain(["10.0.0.4".into()])),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "sourceLimitExceeded");
    let list = store
        .set_resource_list(
            &SYSTEM(),
            &org(),
            "apollo",
            ListDraft::new(["10.0.0.0/8"]).blocked_sources(["10.9.0.0/16"]),
        )
        .await
        .unwrap();
    assert_eq!(list.blocked_sources()[0].to_string(), "10.9.0.0/16");
    let snapshot = store.handle().load_full();
    let compiled = snapshot
        .org(OrgId::DEFAULT)
        .unwrap()
        .resource("apollo")
        .unwrap();
    assert!(compiled.contains("10.8.0.1".parse().unwrap()));
    assert!(!compiled.contains("10.9.0.1".parse().unwrap()));
}

#[tokio::test]
async fn blocking_your_own_address_is_a_lockout() {
    let store = Store::memory();
    let admin = Principal::new("admin")
        .with_groups(["admins"])
        .with_permissions(["MANAGE"]);
    let at_desk = Actor::new(&admin, ip("192.0.2.10"));
    store
        .create_policy(
            &at_desk,
            &org(),
            PolicyDraft::new("admins", ["192.0.2.0/24"]).groups(["admins"]),
        )
        .await
        .unwrap();
    // Blocking the admin's own address in the policy that admits them: refused.
    let block_me = PolicyPatch {
        blocked_sources: Some(vec!["192.0.2.8/29".into()]),
        ..PolicyPatch::default()
    };
    let err = store
        .update_policy(&at_desk, &org(), "admins", block_me.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::LockoutPrevented {
            addr: ip("192.0.2.10"),
            unknown: None
        }
    );
    assert!(store
        .get_policy(&org(), "admins")
        .unwrap()
        .policy
        .blocked_sources()
        .is_empty());
    // Another policy that still admits the address makes it safe: union.
    store
        .create_policy(
            &at_desk,
            &org(),
            PolicyDraft::new("desk", ["192.0.2.10"]).users(["admin"]),
        )
        .await
        .unwrap();
    store
        .update_policy(&at_desk, &org(), "admins", block_me, None)
        .await
        .unwrap();
    assert_eq!(
        decide(&store, "admin", &["admins"], "192.0.2.10"),
        Decision::Allowed
    );
    assert_eq!(
        decide(&store, "admin", &["admins"], "192.0.2.11"),
        Decision::Denied(DenyReason::IpNotAllowed)
    );
    // The site list counts its blocked sources too.
    let err = store
        .set_site_list(
            &at_desk,
            &org(),
            true,
            ListDraft::new(["192.0.2.0/24"]).blocked_sources(["192.0.2.10"]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "lockoutPrevented");
    store
        .set_site_list(
            &at_desk,
            &org(),
            true,
            ListDraft::new(["192.0.2.0/24"]).blocked_sources(["192.0.2.11"]),
        )
        .await
        .unwrap();
}
