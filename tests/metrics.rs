//! The `metrics` counters, read from a debugging recorder installed for this binary.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use http::{Request, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::ServiceExt;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::lists::SiteAllowlistLayer;
use tower_ip_allowlist::policy::{Enforcement, OrgId, OrgPolicies, Policy, SiteList, SourceList};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tower_ip_allowlist::tenant::{TenantLayer, TenantResolver};

/// `name{label=value,...}` -> count, labels sorted.
fn counters(snapshotter: &metrics_util::debugging::Snapshotter) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let DebugValue::Counter(count) = value else {
                return None;
            };
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            Some((format!("{}{{{}}}", key.name(), labels.join(",")), count))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn allowed_denied_and_would_deny_are_counted_with_bounded_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let mut org = OrgPolicies {
        site: Some(SiteList {
            enabled: true,
            list: SourceList::parse(["192.0.2.0/24"]).unwrap(),
        }),
        ..OrgPolicies::default()
    };
    org.insert_policy(
        Policy::builder("desk")
            .sources(["192.0.2.1"])
            .unwrap()
            .user("bob")
            .build()
            .unwrap(),
    );
    org.insert_policy(
        Policy::builder("rollout")
            .sources(["192.0.2.9"])
            .unwrap()
            .user("bob")
            .user("carol")
            .enforcement(Enforcement::Report)
            .build()
            .unwrap(),
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    let app = |from: [u8; 4], user: &str| {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AllowlistLayer::new(handle.clone()))
            .layer(Extension(Principal::new(user)))
            .layer(SiteAllowlistLayer::new(handle.clone()))
            .layer(MockConnectInfo(SocketAddr::from((from, 4000))))
    };
    let call = |from: [u8; 4], user: &'static str| async move {
        let request = Request::get("/").body(Body::empty()).unwrap();
        app(from, user).oneshot(request).await.unwrap().status()
    };
    assert_eq!(call([192, 0, 2, 1], "bob").await, StatusCode::OK);
    assert_eq!(call([192, 0, 2, 2], "bob").await, StatusCode::FORBIDDEN);
    assert_eq!(call([203, 0, 113, 1], "bob").await, StatusCode::FORBIDDEN);
    // carol has only the report-only policy: let through, counted as would-deny.
    assert_eq!(call([192, 0, 2, 3], "carol").await, StatusCode::OK);

    assert_eq!(
        counters(&snapshotter),
        [
            (
                "ip_allowlist_allowed_total{layer=policy,organization=default}".to_owned(),
                1
            ),
            (
                "ip_allowlist_allowed_total{layer=site,organization=default}".to_owned(),
                3
            ),
            (
                "ip_allowlist_denied_total{layer=policy,organization=default,reason=ipNotAllowed}"
                    .to_owned(),
                1
            ),
            (
                "ip_allowlist_denied_total{layer=site,organization=default,reason=ipNotAllowed}"
                    .to_owned(),
                1
            ),
            (
                "ip_allowlist_report_only_would_deny_total{organization=default,rule=rollout,rule_kind=policy}".to_owned(),
                1,
            ),
        ]
    );

    // Many organizations: the label set stays bounded.
    for i in 0..(tower_ip_allowlist::metrics::MAX_LABEL_VALUES + 50) {
        let org_id = format!("tenant-{i}");
        handle.set_org(OrgId::from(org_id.as_str()), &org);
        let request = Request::get("/").body(Body::empty()).unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(AllowlistLayer::new(handle.clone()))
            .layer(Extension(
                Principal::new("bob").with_organization(org_id.as_str()),
            ))
            .layer(TenantLayer::new(TenantResolver::fixed(org_id.as_str())))
            .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
        assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
    }
    let counters = counters(&snapshotter);
    let policy_allowed = counters
        .iter()
        .filter(|(k, _)| k.starts_with("ip_allowlist_allowed_total{layer=policy"))
        .count();
    assert_eq!(
        policy_allowed,
        tower_ip_allowlist::metrics::MAX_LABEL_VALUES + 1,
        "every value up to the bound, then `other`"
    );
    // `default` took one of the values: tenants past the 999th are `other`.
    let other = counters
        .iter()
        .find(|(k, _)| k == "ip_allowlist_allowed_total{layer=policy,organization=other}");
    assert_eq!(other.map(|(_, n)| *n), Some(51));
}
