//! The demo server (`examples/server.rs`) as a process, and requests to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tower_ip_allowlist::jwt::{encode_hs256, TokenClaims};

/// The `server` example binary that `cargo test` builds next to the test binaries.
fn binary() -> PathBuf {
    // target/debug/deps/<test>-<hash> -> target/debug/examples/server
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = dir
        .join("examples")
        .join(format!("server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --all-features`, which builds the examples",
        binary.display()
    );
    binary
}

/// A running demo server, killed when dropped.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// What it printed first (`listening on http://ADDR (database ...)`).
    pub first_line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo server on a free port with `database` and the JWT `secret`.
pub fn start(database: &str, secret: &str) -> Running {
    start_with(database, secret, &[])
}

/// As [`start`], with more command-line flags (`--header-timeout 1`, say).
pub fn start_with(database: &str, secret: &str, flags: &[&str]) -> Running {
    let mut child = Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--database", database])
        .args(flags)
        .env("ALLOWLIST_JWT_SECRET", secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let first_line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not print its address");
    let addr = first_line
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first_line}"))
        .parse()
        .unwrap();
    Running {
        child,
        addr,
        first_line,
    }
}

/// A token for `user` with `permissions`, signed with `secret`.
pub fn token(secret: &str, user: &str, permissions: &[&str]) -> String {
    org_token(secret, user, None, permissions)
}

/// A token for `user` of organization `org` (the default one when `None`).
pub fn org_token(secret: &str, user: &str, org: Option<&str>, permissions: &[&str]) -> String {
    let mut claims = TokenClaims::new(user, Duration::from_secs(600))
        .with_permissions(permissions.iter().copied());
    if let Some(org) = org {
        claims = claims.with_org(org);
    }
    encode_hs256(secret.as_bytes(), &claims).unwrap()
}

/// One request; its status and JSON body (`Null` when not JSON).
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    try_send(addr, method, path, token, body).await.unwrap()
}

/// One request; `Err` when the connection fails (the server was killed).
pub async fn try_send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    try_send_with(addr, method, path, token, body, &[]).await
}

/// One request with extra `headers`; its status and JSON body (`Null` when not JSON).
pub async fn send_with(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    try_send_with(addr, method, path, token, body, headers)
        .await
        .unwrap()
}

async fn try_send_with(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Value), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = http::Request::builder().method(method).uri(path);
    // `test` unless the caller names the host (which names the tenant).
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header("host", "test");
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/vnd.gooddata.api+json");
            Body::from(serde_json::to_vec(&body).unwrap())
        }
        None => Body::empty(),
    };
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}
