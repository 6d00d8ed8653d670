//! Tenants over loopback, with the demo server in both modes: every list guards its own
//! organization's requests, whoever sends them, and credentials of another organization
//! are refused.
//!
//! Multi-tenant mode is `--tenant-domain example.test`: `b.example.test` is
//! organization `b`; `example.test` and any other host the default organization. All
//! loopback requests come from 127.0.0.1: "outside" lists admit only 192.0.2.0/24,
//! "inside" ones 127.0.0.1.

mod common;

use std::net::SocketAddr;

use common::demo::{self, send_with, Running};
use http::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "tenants-test-secret-tenants-test-secret";
const SITE: &str = "/api/v1/entities/siteAllowlist";
const MEDIA: &str = "/api/v1/projects/apollo/media/x.png";
const APOLLO: &str = "/api/v1/entities/resourceAllowlists/apollo";

fn multi_tenant() -> Running {
    demo::start_with("memory", SECRET, &["--tenant-domain", "example.test"])
}

fn token(user: &str, org: Option<&str>, permissions: &[&str]) -> String {
    demo::org_token(SECRET, user, org, permissions)
}

/// A request to `host` with `token`.
async fn send(
    addr: SocketAddr,
    host: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send_with(addr, method, path, token, body, &[("host", host)]).await
}

fn code(body: &Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or_default()
}

fn site(sources: &[&str]) -> Value {
    json!({"data": {"id": "siteAllowlist", "type": "siteAllowlist",
        "attributes": {"enabled": true, "allowedSources": sources}}})
}

fn resource(sources: &[&str]) -> Value {
    json!({"data": {"id": "apollo", "type": "resourceAllowlist",
        "attributes": {"allowedSources": sources}}})
}

#[tokio::test]
async fn each_tenants_lists_guard_its_own_requests() {
    let server = multi_tenant();
    let addr = server.addr;
    let a_admin = token("root", Some("a"), &["MANAGE"]);
    let b_admin = token("root", Some("b"), &["MANAGE"]);
    let b_user = token("bob", Some("b"), &[]);
    let a_user = token("ann", Some("a"), &[]);
    let default_admin = token("root", None, &["MANAGE"]);

    // B puts a resource list on its project `apollo` that admits nobody here.
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::PUT,
        APOLLO,
        Some(&b_admin),
        Some(resource(&["192.0.2.0/24"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A admits everyone here to its own `apollo`, and so does the default organization.
    for (host, admin) in [
        ("a.example.test", &a_admin),
        ("example.test", &default_admin),
    ] {
        let (status, body) = send(
            addr,
            host,
            Method::PUT,
            APOLLO,
            Some(admin),
            Some(resource(&["127.0.0.1"])),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }

    // B's media from outside B's list: refused anonymous, with a B token, and with an
    // A token (as a mismatch, before the list is even consulted).
    let (status, body) = send(addr, "b.example.test", Method::GET, MEDIA, None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "ipNotAllowed"),
        "anonymous: {body}"
    );
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::GET,
        MEDIA,
        Some(&b_user),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "ipNotAllowed"),
        "B token: {body}"
    );
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::GET,
        MEDIA,
        Some(&a_user),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "organizationMismatch"),
        "A token: {body}"
    );
    // A's and the default organization's lists never affect B's requests, nor B's theirs.
    let (status, _) = send(
        addr,
        "a.example.test",
        Method::GET,
        MEDIA,
        Some(&a_user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(addr, "a.example.test", Method::GET, MEDIA, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(addr, "example.test", Method::GET, MEDIA, None, None).await;
    assert_eq!(status, StatusCode::OK);

    // Inside B's list, B's callers pass.
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::PUT,
        APOLLO,
        Some(&b_admin),
        Some(resource(&["127.0.0.1"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = send(
        addr,
        "b.example.test",
        Method::GET,
        MEDIA,
        Some(&b_user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(addr, "b.example.test", Method::GET, MEDIA, None, None).await;
    assert_eq!(status, StatusCode::OK);

    // B's site list (forced past the lockout guard): from outside it, B's requests are
    // refused whoever sends them.
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::PUT,
        &format!("{SITE}?force=true"),
        Some(&b_admin),
        Some(site(&["192.0.2.0/24"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (who, token) in [
        ("anonymous", None),
        ("B", Some(&b_user)),
        ("A", Some(&a_user)),
    ] {
        let (status, body) = send(
            addr,
            "b.example.test",
            Method::GET,
            "/api/v1/profile",
            token.map(String::as_str),
            None,
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "ipNotAllowed"),
            "{who}: {body}"
        );
    }
    // ...and A's and the default organization's requests are not.
    let (status, body) = send(
        addr,
        "a.example.test",
        Method::GET,
        "/api/v1/profile",
        Some(&a_user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenant"], "a");
    let (status, _) = send(
        addr,
        "example.test",
        Method::GET,
        "/api/v1/profile",
        Some(&token("dan", None, &[])),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Any other host, an IP literal included, is the default organization's.
    let (status, body) = send(
        addr,
        "127.0.0.1",
        Method::GET,
        "/api/v1/profile",
        Some(&token("dan", None, &[])),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["tenant"]),
        (StatusCode::OK, &json!("default")),
        "{body}"
    );
    // /health belongs to no tenant.
    let (status, _) = send(addr, "b.example.test", Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);

    // Inside it, B's callers pass.
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::PUT,
        &format!("{SITE}?force=true"),
        Some(&b_admin),
        Some(site(&["192.0.2.0/24"])),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "ipNotAllowed"),
        "locked out, as forced: {body}"
    );
}

#[tokio::test]
async fn b_inside_its_site_list_and_the_admin_api_per_tenant() {
    let server = multi_tenant();
    let addr = server.addr;
    let b_admin = token("root", Some("b"), &["MANAGE"]);
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::PUT,
        SITE,
        Some(&b_admin),
        Some(site(&["127.0.0.1"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::GET,
        "/api/v1/profile",
        Some(&token("bob", Some("b"), &[])),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenant"], "b");
    // The admin API manages the request's tenant: the default organization's site list
    // is untouched, and B's administrator cannot reach it through another host.
    let (status, body) = send(
        addr,
        "example.test",
        Method::GET,
        SITE,
        Some(&b_admin),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "organizationMismatch"),
        "{body}"
    );
    let (_, body) = send(
        addr,
        "example.test",
        Method::GET,
        SITE,
        Some(&token("root", None, &["MANAGE"])),
        None,
    )
    .await;
    assert_eq!(body["data"]["attributes"]["enabled"], false, "{body}");
    // myAccess answers for the tenant.
    let (status, body) = send(
        addr,
        "b.example.test",
        Method::GET,
        "/api/v1/actions/ipAllowlistPolicies/myAccess",
        Some(&b_admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["organization"], "b");
    assert_eq!(body["data"]["siteAllowlist"]["admits"], true, "{body}");
}

#[tokio::test]
async fn single_tenant_refuses_other_organizations_everywhere_but_health() {
    let server = demo::start_with("memory", SECRET, &[]);
    let addr = server.addr;
    let acme = token("carol", Some("acme"), &["MANAGE"]);
    for path in [
        "/api/v1/profile",
        MEDIA,
        SITE,
        "/api/v1/entities/ipAllowlistPolicies",
        "/api/v1/actions/ipAllowlistPolicies/myAccess",
    ] {
        for host in ["test", "acme.test", "acme.example.test"] {
            let (status, body) = send(addr, host, Method::GET, path, Some(&acme), None).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::UNAUTHORIZED, "organizationMismatch"),
                "{host}{path}: {body}"
            );
        }
    }
    let (status, _) = send(addr, "test", Method::GET, "/health", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(
        addr,
        "test",
        Method::GET,
        "/api/v1/profile",
        Some(&token("carol", None, &[])),
        None,
    )
    .await;
    assert_eq!(
        (status, &body["tenant"]),
        (StatusCode::OK, &json!("default")),
        "{body}"
    );
}
