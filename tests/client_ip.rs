//! One answer to "where does this request come from", over loopback: the demo server
//! behind a trusted proxy (every loopback client is 127.0.0.1, the proxy), where the
//! layers, the `ClientIp` extractor, `myAccess`, `evaluate` and the lockout guard must
//! all agree, above all when the address is unknown.

mod common;

use std::net::SocketAddr;

use common::demo::{self, send_with, Running};
use http::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "client-ip-test-secret-client-ip-test-secret";
const SITE: &str = "/api/v1/entities/siteAllowlist";
const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";
const MY_ACCESS: &str = "/api/v1/actions/ipAllowlistPolicies/myAccess";
const EVALUATE: &str = "/api/v1/actions/ipAllowlistPolicies/evaluate";

fn start() -> Running {
    demo::start_with("memory", SECRET, &["--trusted-proxy", "127.0.0.1"])
}

struct Client {
    addr: SocketAddr,
    token: Option<String>,
    /// The `X-Forwarded-For` the proxy sends (`None`: no header).
    xff: Option<&'static str>,
}

impl Client {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = self
            .xff
            .map(|v| ("x-forwarded-for", v))
            .into_iter()
            .collect();
        send_with(
            self.addr,
            method,
            path,
            self.token.as_deref(),
            body,
            &headers,
        )
        .await
    }
}

fn code(body: &Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or_default()
}

fn site(sources: &[&str]) -> Value {
    json!({"data": {"id": "siteAllowlist", "type": "siteAllowlist",
        "attributes": {"enabled": true, "allowedSources": sources}}})
}

#[tokio::test]
async fn a_garbage_hop_is_unknown_to_every_layer_handler_and_guard() {
    let server = start();
    let admin = demo::token(SECRET, "alice", &["MANAGE"]);
    let from = |xff| Client {
        addr: server.addr,
        token: Some(admin.clone()),
        xff,
    };
    let good = from(Some("198.51.100.7"));
    let garbage = from(Some("198.51.100.7, garbage"));
    let headerless = from(None);

    // Behind the proxy, the client is the header's.
    let (status, body) = good.send(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["clientIp"], "198.51.100.7");

    // A garbage hop: the handler's extractor refuses instead of naming the proxy...
    let (status, body) = garbage.send(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "clientIpUnknown"),
        "{body}"
    );
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("garbage"),
        "{body}"
    );
    // ...so does it for a trusted proxy that sent no header at all.
    let (status, body) = headerless.send(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "clientIpUnknown"),
        "{body}"
    );

    // myAccess says it is unknown, and why; it never reports the proxy.
    let (status, body) = garbage.send(Method::GET, MY_ACCESS, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["clientIp"], Value::Null, "{body}");
    assert!(
        body["data"]["clientIpUnknown"]
            .as_str()
            .unwrap()
            .contains("garbage"),
        "{body}"
    );
    let (_, body) = good.send(Method::GET, MY_ACCESS, None).await;
    assert_eq!(body["data"]["clientIp"], "198.51.100.7");
    assert_eq!(body["data"]["clientIpSource"], "xForwardedFor");
    assert_eq!(body["data"]["clientIpHeader"], "x-forwarded-for");
    assert_eq!(body["data"]["clientIpHop"], 1);

    // evaluate without an address evaluates the caller's own, unknown here.
    let (status, body) = garbage
        .send(
            Method::POST,
            EVALUATE,
            Some(json!({"data": {"user": "bob"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["clientIp"], Value::Null, "{body}");
    assert!(body["data"]["clientIpUnknown"].is_string(), "{body}");

    // The lockout guard: a site list that admits only the proxy would lock the
    // administrator out; with the address unknown the change is refused, and nothing
    // is stored.
    let (status, body) = garbage
        .send(Method::PUT, SITE, Some(site(&["127.0.0.1"])))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "lockoutPrevented"),
        "{body}"
    );
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("could not be determined"), "{detail}");
    let (_, body) = good.send(Method::GET, SITE, None).await;
    assert_eq!(
        body["data"]["attributes"]["enabled"], false,
        "nothing stored: {body}"
    );
    // The same change from the administrator's real address is refused too (it admits
    // only the proxy), and one that admits them is accepted.
    let (status, _) = good
        .send(Method::PUT, SITE, Some(site(&["127.0.0.1"])))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = good
        .send(Method::PUT, SITE, Some(site(&["198.51.100.0/24"])))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The site list (before authentication) refuses the unknown address, anonymous or not.
    let (status, body) = garbage.send(Method::GET, MY_ACCESS, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "clientIpUnknown"),
        "{body}"
    );
    let anonymous = Client {
        addr: server.addr,
        token: None,
        xff: Some("garbage"),
    };
    let (status, body) = anonymous.send(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "clientIpUnknown"),
        "{body}"
    );
    // The proxy's own address is not let in by the list either: it is not the client.
    let outside = from(Some("203.0.113.9"));
    let (status, body) = outside.send(Method::GET, "/api/v1/profile", None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "ipNotAllowed"),
        "{body}"
    );
    // /health belongs to no list.
    let (status, _) = anonymous.send(Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK);

    // evaluate without an address evaluates the caller's own: known, then unknown.
    let bob = json!({"data": {"user": "bob"}});
    let (status, body) = good.send(Method::POST, EVALUATE, Some(bob.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["clientIp"], "198.51.100.7");
    assert_eq!(body["data"]["siteAllowlist"]["admits"], true, "{body}");
}

#[tokio::test]
async fn a_policy_meets_the_unknown_address_closed() {
    let server = start();
    let admin = demo::token(SECRET, "alice", &["MANAGE"]);
    let bob = demo::token(SECRET, "bob", &[]);
    let as_admin = Client {
        addr: server.addr,
        token: Some(admin),
        xff: Some("198.51.100.7"),
    };
    let policy = json!({"data": {"id": "office", "type": "ipAllowlistPolicy",
        "attributes": {"allowedSources": ["203.0.113.0/24"]},
        "relationships": {"users": {"data": [{"id": "bob", "type": "user"}]}}}});
    let (status, body) = as_admin.send(Method::POST, POLICIES, Some(policy)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for (xff, want) in [
        (Some("203.0.113.4"), Ok(())),
        (Some("198.51.100.7"), Err("ipNotAllowed")),
        (Some("203.0.113.4, not-an-address"), Err("clientIpUnknown")),
        (Some(r#"203.0.113.4"#), Ok(())),
        (None, Err("clientIpUnknown")),
        // The proxy itself is never the client: prepending an allowed address gains nothing.
        (Some("203.0.113.4, 198.51.100.7"), Err("ipNotAllowed")),
    ] {
        let client = Client {
            addr: server.addr,
            token: Some(bob.clone()),
            xff,
        };
        let (status, body) = client.send(Method::GET, "/api/v1/profile", None).await;
        match want {
            Ok(()) => assert_eq!(status, StatusCode::OK, "{xff:?}: {body}"),
            Err(want) => assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, want),
                "{xff:?}: {body}"
            ),
        }
    }

    // A change that would put the administrator under a policy while their address is
    // unknown is refused, naming the reason.
    let unknown = Client {
        addr: server.addr,
        token: as_admin.token.clone(),
        xff: Some("nope"),
    };
    let targets = json!({"data": {"users": [{"id": "alice", "type": "user"}]}});
    let (status, body) = unknown
        .send(
            Method::POST,
            "/api/v1/actions/ipAllowlistPolicies/office/addTargets",
            Some(targets),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "lockoutPrevented"),
        "{body}"
    );
    let (_, body) = as_admin
        .send(Method::GET, &format!("{POLICIES}/office"), None)
        .await;
    let users = &body["data"]["relationships"]["users"]["data"];
    assert_eq!(users.as_array().map(Vec::len), Some(1), "only bob: {body}");
}

/// The demo server behind a layer-4 balancer (`--proxy-protocol`): the client is the
/// one in the PROXY header, and `myAccess` says which balancer named it.
#[tokio::test]
async fn behind_a_proxy_protocol_balancer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = demo::start_with(
        "memory",
        SECRET,
        &["--trusted-proxy", "127.0.0.1", "--proxy-protocol"],
    );
    let admin = demo::token(SECRET, "alice", &["MANAGE"]);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "PROXY TCP4 203.0.113.7 192.0.2.1 41000 443\r\nGET {MY_ACCESS} HTTP/1.1\r\nhost: test\r\nconnection: close\r\nauthorization: Bearer {admin}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body: Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["data"]["clientIp"], "203.0.113.7", "{body}");
    assert_eq!(body["data"]["clientIpSource"], "proxyProtocol");
    assert_eq!(body["data"]["clientIpBalancer"], "127.0.0.1");
    // A balancer connection without the header is closed, not served as the balancer.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!("GET {MY_ACCESS} HTTP/1.1\r\nhost: test\r\nconnection: close\r\nauthorization: Bearer {admin}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply).await;
    assert!(!reply.contains("200 OK"), "{reply}");
}
