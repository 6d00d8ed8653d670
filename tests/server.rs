//! The demo server as a process: its routes, `kill -9` in the middle of writes, and
//! graceful shutdown on SIGTERM with a request in flight.
//!
//! Runs the `server` example binary that `cargo test` builds next to the test binaries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::demo::{self, send, try_send, Running};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const SECRET: &str = "server-test-secret-server-test-secret";
const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";

/// Starts the demo server on a free port with its database in `db`.
fn start(db: &Path) -> Running {
    demo::start(&format!("sqlite://{}", db.display()), SECRET)
}

fn token(user: &str, permissions: &[&str]) -> String {
    demo::token(SECRET, user, permissions)
}

fn policy(id: &str, sources: &[&str], users: &[&str]) -> Value {
    let users: Vec<Value> = users
        .iter()
        .map(|id| json!({"id": id, "type": "user"}))
        .collect();
    json!({"data": {"id": id, "type": "ipAllowlistPolicy",
        "attributes": {"allowedSources": sources},
        "relationships": {"users": {"data": users}}}})
}

fn temp_db(name: &str) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new(name);
    let db = dir.path().join("allowlist.db");
    (dir, db)
}

/// A directory removed when dropped.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub(crate) fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "tower-ip-allowlist-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test]
async fn routes_of_the_demo() {
    let (_dir, db) = temp_db("routes");
    let server = start(&db);
    let admin = token("alice", &["MANAGE"]);
    let bob = token("bob", &[]);

    let (status, _) = send(server.addr, Method::GET, "/health", Some("garbage"), None).await;
    assert_eq!(status, StatusCode::OK, "health is never authenticated");
    let (status, body) = send(server.addr, Method::GET, "/api/v1/profile", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], "unauthenticated");
    let (status, body) = send(
        server.addr,
        Method::GET,
        "/api/v1/profile",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"user": "bob", "organization": "default", "tenant": "default", "clientIp": "127.0.0.1"})
    );

    let (status, _) = send(
        server.addr,
        Method::POST,
        POLICIES,
        Some(&admin),
        Some(policy("office", &["203.0.113.0/24"], &["bob"])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = send(
        server.addr,
        Method::GET,
        "/api/v1/profile",
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "enforced on the next request"
    );
    assert_eq!(body["errors"][0]["code"], "ipNotAllowed");
    let (status, _) = send(server.addr, Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "health is never gated");

    // A project's media, guarded by the project's resource allowlist.
    let media = "/api/v1/projects/apollo/media/cover.png";
    let (status, _) = send(server.addr, Method::GET, media, None, None).await;
    assert_eq!(status, StatusCode::OK, "no list: unrestricted");
    let list = |sources: &[&str]| {
        json!({"data": {"id": "apollo", "type": "resourceAllowlist",
            "attributes": {"allowedSources": sources}}})
    };
    let path = "/api/v1/entities/resourceAllowlists/apollo";
    let (status, _) = send(
        server.addr,
        Method::PUT,
        path,
        Some(&admin),
        Some(list(&["192.0.2.0/24"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(server.addr, Method::GET, media, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send(
        server.addr,
        Method::GET,
        "/api/v1/projects/gemini/media/a.png",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another project is unrestricted");
    let (status, _) = send(
        server.addr,
        Method::PUT,
        path,
        Some(&admin),
        Some(list(&["127.0.0.1"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(server.addr, Method::GET, media, None, None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn acknowledged_writes_and_their_audit_records_survive_kill_9() {
    let (_dir, db) = temp_db("crash");
    let admin = token("alice", &["MANAGE"]);
    let server = start(&db);

    // Write in the background; kill -9 the server while writes are in flight.
    let addr = server.addr;
    let writer_token = admin.clone();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            let id = format!("p{i}");
            let body = policy(&id, &["192.0.2.0/24"], &["bob"]);
            match try_send(
                addr,
                Method::POST,
                POLICIES,
                Some(&writer_token),
                Some(body),
            )
            .await
            {
                Ok((StatusCode::CREATED, _)) => {
                    let _ = acked_tx.send(id);
                }
                _ => break,
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 10 {
        acked.push(acked_rx.recv().await.expect("the writer stopped early"));
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL on Unix
    server.child.wait().unwrap();
    let _ = writer.await;
    while let Ok(id) = acked_rx.try_recv() {
        acked.push(id);
    }
    assert!(acked.len() < 100, "the kill came after every write");

    let server = start(&db);
    let (status, body) = send(server.addr, Method::GET, POLICIES, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let stored: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for id in &acked {
        assert!(
            stored.contains(&id.as_str()),
            "acknowledged {id} was lost: {stored:?}"
        );
    }
    // Every stored change has its audit record, and no record lacks its change: they
    // were committed in one transaction.
    let (status, body) = send(
        server.addr,
        Method::GET,
        "/api/v1/entities/auditEvents?page[size]=500",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut audited: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            assert_eq!(event["attributes"]["operation"], "createPolicy");
            assert_eq!(event["attributes"]["actor"], "alice");
            event["attributes"]["entityId"].as_str().unwrap()
        })
        .collect();
    audited.sort_unstable();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort_unstable();
    assert_eq!(audited, stored_sorted);
    // And it is enforced after the restart.
    let (status, _) = send(
        server.addr,
        Method::GET,
        "/api/v1/profile",
        Some(&token("bob", &[])),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish() {
    let (_dir, db) = temp_db("sigterm");
    let mut server = start(&db);
    let admin = token("alice", &["MANAGE"]);

    // Send the headers and half the body, then SIGTERM, then the rest.
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = serde_json::to_vec(&policy("late", &["192.0.2.0/24"], &[])).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(2);
    tx.send(Ok(http_body::Frame::data(Bytes::copy_from_slice(first))))
        .await
        .unwrap();
    let request = http::Request::post(POLICIES)
        .header("host", "test")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap();
    let response = tokio::spawn(sender.send_request(request));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(http_body::Frame::data(Bytes::copy_from_slice(rest))))
        .await
        .unwrap();
    drop(tx);

    let response = response
        .await
        .unwrap()
        .expect("the request in flight was cut");
    assert_eq!(response.status(), StatusCode::CREATED);
    let addr = server.addr;
    let (_server, status) = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        (server, status)
    })
    .await
    .unwrap();
    assert!(status.success(), "the server exited with {status}");

    // It no longer accepts connections, and the write is kept.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let server = start(&db);
    let (status, _) = send(
        server.addr,
        Method::GET,
        &format!("{POLICIES}/late"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The README's API-token walk-through against the real demo: a restricted service
/// account's token from an allowed and a refused address, then revoked.
#[tokio::test]
async fn a_service_accounts_api_token_from_an_allowed_and_a_refused_address() {
    let server = demo::start_with(
        "memory",
        SECRET,
        &["--trusted-proxy", "127.0.0.1", "--proxy-without-header"],
    );
    let addr = server.addr;
    let admin = token("alice", &["MANAGE"]);
    let bot = token("deploy-bot", &[]);
    let (status, _) = send(
        addr,
        Method::POST,
        POLICIES,
        Some(&admin),
        Some(policy("ci-network", &["203.0.113.0/24"], &["deploy-bot"])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let allowed = [("x-forwarded-for", "203.0.113.9")];
    let refused = [("x-forwarded-for", "198.51.100.4")];
    let (status, created) = demo::send_with(
        addr,
        Method::POST,
        "/api/v1/entities/apiTokens",
        Some(&bot),
        Some(json!({"data": {"type": "apiToken", "attributes": {"name": "deploys"}}})),
        &allowed,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let api_token = created["data"]["attributes"]["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    let (status, profile) = demo::send_with(
        addr,
        Method::GET,
        "/api/v1/profile",
        Some(&api_token),
        None,
        &allowed,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["user"], "deploy-bot");
    assert_eq!(profile["apiToken"], json!(id));
    assert_eq!(profile["clientIp"], "203.0.113.9");
    let (status, body) = demo::send_with(
        addr,
        Method::GET,
        "/api/v1/profile",
        Some(&api_token),
        None,
        &refused,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], "ipNotAllowed");

    let (status, _) = send(
        addr,
        Method::DELETE,
        &format!("/api/v1/entities/apiTokens/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = demo::send_with(
        addr,
        Method::GET,
        "/api/v1/profile",
        Some(&api_token),
        None,
        &allowed,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["code"], "invalidApiToken");
}
