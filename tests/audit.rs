//! The store's audit events, captured from `tracing`. Alone in its binary: a subscriber
//! set for one thread must not race other tests registering the same callsites.

mod common;

use common::capture::Capture;
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::store::{Actor, PolicyDraft, Store, Targets};

fn org() -> OrgId {
    OrgId::default()
}

#[tokio::test]
async fn every_committed_change_is_audited_and_nothing_else() {
    use tracing_subscriber::layer::SubscriberExt;
    let log = Capture::new("tower_ip_allowlist::audit");
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));
    let store = Store::memory();
    let admin = Principal::new("alice").with_permissions(["MANAGE"]);
    let actor = Actor::new(&admin, "192.0.2.1".parse().ok());
    store
        .create_policy(&actor, &org(), PolicyDraft::new("vpn", ["203.0.113.0/24"]))
        .await
        .unwrap();
    let targets = || Targets::default().users(["bob"]);
    store
        .add_targets(&actor, &org(), "vpn", targets())
        .await
        .unwrap();
    // Idempotent and refused changes commit nothing and are not audited.
    store
        .add_targets(&actor, &org(), "vpn", targets())
        .await
        .unwrap();
    store
        .create_policy(&actor, &org(), PolicyDraft::new("vpn", ["203.0.113.0/24"]))
        .await
        .unwrap_err();
    store
        .set_group_parents(&actor, &org(), "interns", ["staff"])
        .await
        .unwrap();

    let events = log.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    let ops: Vec<&str> = events.iter().map(|e| e["operation"].as_str()).collect();
    assert_eq!(ops, ["createPolicy", "addTargets", "setGroupParents"]);
    for event in &events {
        assert_eq!(event["organization"], "default");
        assert_eq!(event["actor"], "alice");
        assert_eq!(event["forced"], "false");
    }
    assert_eq!(events[0]["policy"], "vpn");
    assert_eq!(events[0]["before"], "None");
    assert!(
        events[1]["before"].contains("users: {}"),
        "{}",
        events[1]["before"]
    );
    assert!(
        events[1]["after"].contains("\"bob\""),
        "{}",
        events[1]["after"]
    );
    assert_eq!(events[2]["group"], "interns");
    assert!(events[2]["after"].contains("staff"));
}
