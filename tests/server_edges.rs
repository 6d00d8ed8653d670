//! The demo server's edges, probed as an attacker would, over raw loopback sockets:
//! slow and silent clients, the connection cap, body deadlines, and SIGTERM with
//! connections in every state. Short deadlines come from the server's flags.
//!
//! Runs the `server` example binary that `cargo test` builds next to the test binaries.

mod common;

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::demo::{self, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "edges-test-secret-edges-test-secret";
const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";

fn start_server(flags: &[&str]) -> Running {
    demo::start_with("memory", SECRET, flags)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// How long until the server closes `stream` (end of stream or a reset), reading and
/// discarding whatever it sends; `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// One response read off `stream`: its status and head (lower-cased), within
/// `limit`; `None` when none came in time or the connection closed first.
async fn response_within(stream: &mut TcpStream, limit: Duration) -> Option<(u16, String)> {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                return Some((status, head));
            }
        }
        let left = limit.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

async fn get_health(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
}

/// A policy-creating request's head and body, for a request kept in flight by
/// sending its body in parts.
fn create_request(id: &str) -> (Vec<u8>, Vec<u8>) {
    let token = demo::token(SECRET, "alice", &["MANAGE"]);
    let body = format!(
        r#"{{"data":{{"id":"{id}","type":"ipAllowlistPolicy","attributes":{{"allowedSources":["192.0.2.0/24"]}}}}}}"#
    )
    .into_bytes();
    let head = format!(
        "POST {POLICIES} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    (head, body)
}

fn sigterm(server: &Running) {
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
}

/// The exit status, once the process exits within `limit`.
async fn exit_within(server: &mut Running, limit: Duration) -> Option<(ExitStatus, Duration)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = server.child.try_wait().unwrap() {
            return Some((status, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed_at_the_head_deadline() {
    let server = start_server(&["--header-timeout", "1"]);
    let limit = Duration::from_secs(10);

    let mut silent = connect(server.addr).await;
    let mut half_line = connect(server.addr).await;
    half_line.write_all(b"GET /health HTT").await.unwrap();
    let mut half_headers = connect(server.addr).await;
    half_headers
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        .await
        .unwrap();
    let mut idle = connect(server.addr).await;
    get_health(&mut idle).await;
    assert_eq!(response_within(&mut idle, limit).await.unwrap().0, 200);

    for (name, stream) in [
        ("silent", &mut silent),
        ("half a request line", &mut half_line),
        ("half the headers", &mut half_headers),
        ("idle keep-alive", &mut idle),
    ] {
        let closed = closed_within(stream, limit)
            .await
            .unwrap_or_else(|| panic!("{name}: still open after {limit:?}"));
        assert!(
            closed < Duration::from_secs(5),
            "{name}: closed after {closed:?}"
        );
    }

    // A client that trickles its head slower than the deadline is cut too, however
    // steadily it sends.
    let mut trickle = connect(server.addr).await;
    let start = Instant::now();
    let mut cut = false;
    for byte in b"GET /health HTTP/1.1\r\nHost: test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n" {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cut || closed_within(&mut trickle, Duration::from_millis(200))
            .await
            .is_some(),
        "a head trickled over {:?} was served",
        start.elapsed()
    );

    // And a prompt client is served as before.
    let mut prompt = connect(server.addr).await;
    get_health(&mut prompt).await;
    assert_eq!(response_within(&mut prompt, limit).await.unwrap().0, 200);
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_and_is_served_once_another_leaves() {
    let server = start_server(&["--max-connections", "2", "--header-timeout", "30"]);
    let limit = Duration::from_secs(10);
    let mut first = connect(server.addr).await;
    let mut second = connect(server.addr).await;
    for stream in [&mut first, &mut second] {
        get_health(stream).await;
        assert_eq!(response_within(stream, limit).await.unwrap().0, 200);
    }

    // The kernel completes the third handshake; the server does not accept it.
    let mut third = connect(server.addr).await;
    get_health(&mut third).await;
    assert_eq!(
        response_within(&mut third, Duration::from_millis(1500)).await,
        None,
        "served past the cap"
    );
    // Those being served are not disturbed.
    for stream in [&mut first, &mut second] {
        get_health(stream).await;
        assert_eq!(response_within(stream, limit).await.unwrap().0, 200);
    }

    drop(first);
    let start = Instant::now();
    let (status, _) = response_within(&mut third, limit)
        .await
        .expect("the waiting client was not served after a connection closed");
    assert_eq!(status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_body_that_stalls_or_trickles_past_its_deadlines_is_refused() {
    let limit = Duration::from_secs(10);

    // Stalls: no byte for longer than --body-timeout.
    let server = start_server(&["--body-timeout", "1", "--request-timeout", "30"]);
    let (head, body) = create_request("stalled");
    let mut stalled = connect(server.addr).await;
    stalled.write_all(&head).await.unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let start = Instant::now();
    let (status, _) = response_within(&mut stalled, limit)
        .await
        .expect("no answer to a stalled body");
    assert_eq!(status, 400);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(server);

    // Trickles: a byte every 200 ms never pauses a second, but the whole request
    // must be in within --request-timeout.
    let server = start_server(&["--body-timeout", "30", "--request-timeout", "1"]);
    let (head, body) = create_request("trickled");
    let mut trickle = connect(server.addr).await;
    trickle.write_all(&head).await.unwrap();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let (mut reader, mut writer) = trickle.into_split();
        let read = tokio::spawn(async move {
            let mut received = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut received))
                    .await;
            received
        });
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if read.is_finished() {
                break;
            }
        }
        read.await.unwrap()
    });
    let received = writer.await.unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_closes_idle_and_half_sent_connections_at_once_and_finishes_requests_in_flight() {
    let mut server = start_server(&["--header-timeout", "60", "--shutdown-grace", "10"]);
    let limit = Duration::from_secs(10);

    let mut idle = connect(server.addr).await;
    get_health(&mut idle).await;
    assert_eq!(response_within(&mut idle, limit).await.unwrap().0, 200);
    let mut half_head = connect(server.addr).await;
    half_head
        .write_all(b"GET /health HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let (head, body) = create_request("in-flight");
    let mut in_flight = connect(server.addr).await;
    in_flight.write_all(&head).await.unwrap();
    in_flight.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    sigterm(&server);
    for (name, stream) in [("idle", &mut idle), ("half a head", &mut half_head)] {
        let closed = closed_within(stream, limit)
            .await
            .unwrap_or_else(|| panic!("{name}: still open after SIGTERM"));
        assert!(
            closed < Duration::from_secs(2),
            "{name}: closed {closed:?} after SIGTERM, not at once"
        );
    }
    // No new connections.
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        match TcpStream::connect(server.addr).await {
            Err(_) => true,
            Ok(mut late) => {
                get_health(&mut late).await;
                response_within(&mut late, Duration::from_millis(500))
                    .await
                    .is_none()
            }
        }
    })
    .await
    .unwrap_or(true);
    assert!(refused, "a connection made after SIGTERM was served");

    // The request in flight when the signal came completes.
    in_flight.write_all(&body[body.len() / 2..]).await.unwrap();
    let (status, head) = response_within(&mut in_flight, limit)
        .await
        .expect("the request in flight was cut");
    assert_eq!(status, 201);
    assert!(head.contains("connection: close"), "{head}");

    let (exit, _) = exit_within(&mut server, limit)
        .await
        .expect("the server did not exit");
    assert!(exit.success(), "the server exited with {exit}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_stuck_request_cannot_hold_shutdown_past_the_grace_period() {
    let mut server = start_server(&[
        "--shutdown-grace",
        "1",
        "--body-timeout",
        "60",
        "--request-timeout",
        "60",
    ]);
    let (head, body) = create_request("stuck");
    let mut stuck = connect(server.addr).await;
    stuck.write_all(&head).await.unwrap();
    stuck.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&server);
    let (exit, after) = exit_within(&mut server, Duration::from_secs(10))
        .await
        .expect("the server waited on the stuck request past its grace period");
    assert!(exit.success(), "the server exited with {exit}");
    assert!(
        after >= Duration::from_millis(800),
        "exited after {after:?}: the request in flight had a 1 s grace period"
    );
    assert!(after < Duration::from_secs(4), "exited after {after:?}");
    assert!(closed_within(&mut stuck, Duration::from_secs(2))
        .await
        .is_some());
}

/// The process's CPU time so far (user plus system), from `/proc`.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses): utime and stime
    // are the 12th and 13th, in clock ticks of 1/100 s on Linux.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Out of descriptors (`accept: Too many open files`), the server backs off instead
/// of spinning, and serves again once clients leave.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let server = start_server(&["--max-connections", "10000", "--header-timeout", "60"]);
    let pid = server.child.id();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=64:64"])
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit failed");

    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(connect(server.addr).await);
    }
    // Some were accepted until the descriptors ran out; the rest wait in the backlog.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = cpu_time(pid) - before;
    assert!(
        spent < Duration::from_millis(500),
        "the server spent {spent:?} of CPU in 3 s at the descriptor limit: it spins"
    );

    drop(clients);
    let mut late = connect(server.addr).await;
    get_health(&mut late).await;
    let (status, _) = response_within(&mut late, Duration::from_secs(10))
        .await
        .expect("not served after the clients left");
    assert_eq!(status, 200);
}
