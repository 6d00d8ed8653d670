//! Report-only rules never deny, and are observed: the `tower_ip_allowlist::report`
//! events are captured here. Alone in its binary, so the thread's subscriber does not
//! race other tests registering the same callsites.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use common::capture::Capture;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::lists::{ResourceAllowlistLayer, SiteAllowlistLayer};
use tower_ip_allowlist::policy::{
    Enforcement, OrgId, OrgPolicies, Policy, ResourceId, SiteList, SourceList,
};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::report;
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn report_only_rules_never_deny_and_are_observed() {
    let capture = Capture::new("tower_ip_allowlist::report");
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let report_only = |sources: &[&str]| {
        SourceList::parse(sources)
            .unwrap()
            .with_enforcement(Enforcement::Report)
    };
    let mut org = OrgPolicies {
        site: Some(SiteList {
            enabled: true,
            list: report_only(&["192.0.2.0/24"]),
        }),
        ..OrgPolicies::default()
    };
    org.resources
        .insert(ResourceId::from("apollo"), report_only(&["192.0.2.1"]));
    org.insert_policy(
        Policy::builder("rollout")
            .sources(["192.0.2.0/24"])
            .unwrap()
            .user("bob")
            .enforcement(Enforcement::Report)
            .build()
            .unwrap(),
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);

    let media = "/projects/{project}/media";
    let app = |from: [u8; 4]| {
        Router::new()
            .route(media, get(|| async { "media" }))
            .route_layer(
                ResourceAllowlistLayer::path_param(handle.clone(), media, "project").unwrap(),
            )
            .layer(AllowlistLayer::new(handle.clone()))
            .layer(Extension(Principal::new("bob")))
            .layer(SiteAllowlistLayer::new(handle.clone()))
            .layer(MockConnectInfo(SocketAddr::from((from, 4000))))
    };

    let before = report::would_deny_count();
    let request = Request::get("/projects/apollo/media")
        .body(Body::empty())
        .unwrap();
    let response = app([203, 0, 113, 9]).oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "report-only never denies"
    );

    let events = capture.events();
    let rules: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["rule_kind"].as_str(), e["rule"].as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            ("siteAllowlist", "siteAllowlist"),
            ("policy", "rollout"),
            ("resourceAllowlist", "apollo"),
        ],
        "{events:#?}"
    );
    for event in &events {
        assert_eq!(event["organization"], "default");
        assert_eq!(event["client_ip"], "Some(203.0.113.9)");
    }
    // The site layer runs before the principal is known; the others see bob.
    assert_eq!(events[1]["user"], "bob");
    assert_eq!(events[2]["user"], "bob");
    assert!(report::would_deny_count() >= before + 3);

    // From inside every list: nothing to report.
    capture.clear();
    let request = Request::get("/projects/apollo/media")
        .body(Body::empty())
        .unwrap();
    let response = app([192, 0, 2, 1]).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(capture.events().is_empty());
}
