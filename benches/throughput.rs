//! Loopback throughput of an axum hello app behind a stand-in authentication layer, with
//! the allowlist (B) and without it (A), in the same run: the ratio B/A is what the
//! issue of record holds the layer to (≥ 90 %).
//!
//! Both servers run in this process, each `axum::serve(listener,
//! app.into_make_service_with_connect_info::<SocketAddr>())` on its own loopback port;
//! a hyper client in this process keeps `--connections` keep-alive connections busy
//! (one request in flight on each, so that many in flight in all) for `--secs` seconds,
//! on A, then on B, then on A again, for `--rounds` rounds: the machine's drift falls on
//! both variants alike, and the median of the rounds' ratios B/A is reported with its
//! quartiles. Many short rounds by default (30 × 1 s): on a shared machine single rounds
//! range from 50 % to 150 %, and the quartiles of 30 ratios say how far their median can
//! be trusted, which those of 5 do not. Each round also shows the server thread's CPU
//! time per request for each variant, and their ratio A/B.
//!
//! One process rather than two: both servers and the client are built from the same
//! code with the same allocator and runtime settings, start and stop together, and the
//! variant not being measured sits idle on its accept loop. The server and the client
//! each get a runtime of one worker thread by default (`--runtime split`), one core
//! each on a two-core machine; `--runtime shared` runs everything on one runtime of two
//! workers instead.
//!
//! The app: `GET /` answers "hello". The stand-in authentication layer inserts a
//! [`Principal`] with a user and five groups into the request extensions, as a JWT
//! layer does after verifying a token (without the verification, so the allowlist's
//! share of the work is larger than behind a real one). B adds
//! `AllowlistLayer::new(handle)` inside it, with 100 policies × 100 sources as in
//! `benches/instructions.rs`, and 127.0.0.1 among the sources of the policy of the
//! caller's last group: every group is compared before the caller is allowed. Before
//! measuring, the bench checks that B answers the client 200 "hello" and a caller from
//! 127.0.0.2 403, and that A answers that caller 200.
//!
//! ```text
//! cargo bench --bench throughput                                  # 30 rounds × 1 s each
//! cargo bench --bench throughput -- --rounds 5 --secs 5 --connections 64
//! cargo bench --bench throughput -- --only b --secs 20            # one variant, to profile
//! ```
//!
//! The figures are summarized in BENCHMARKS.md ("Loopback throughput").

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tower::util::MapRequestLayer;
use tower::ServiceBuilder;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::OrgId;
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;

mod common;

use common::GROUPS;

/// The client's address, allowed by the policy of group g5, the caller's last group.
const CLIENT: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A caller on loopback whom no policy allows.
const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[derive(Parser, Debug)]
#[command(about = "Loopback throughput of an axum app with and without the allowlist")]
struct Args {
    /// Rounds; each loads A, then B.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seconds each variant is loaded per round.
    #[arg(long, default_value_t = 1.0, value_parser = positive_secs)]
    secs: f64,
    /// Seconds of load on each variant before the first round, not reported.
    #[arg(long, default_value_t = 1.0, value_parser = positive_secs)]
    warm_up: f64,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,
    /// How the server and the client share the machine's threads.
    #[arg(long, value_enum, default_value_t = Runtimes::Split)]
    runtime: Runtimes,
    /// Load only one variant for `--secs` (no ratio): for profiling one side alone.
    #[arg(long, value_enum)]
    only: Option<Variant>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn positive_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 3600.0 => Ok(secs),
        Ok(_) => Err("expected seconds between 0 (excluded) and 3600".to_owned()),
        Err(error) => Err(format!("expected a number of seconds: {error}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Runtimes {
    /// The server on a runtime of one worker thread, the client on another.
    Split,
    /// Server and client on one runtime of two worker threads.
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Variant {
    /// Authentication only.
    A,
    /// Authentication, then the allowlist.
    B,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::A => "A (no allowlist)",
            Variant::B => "B (allowlist)",
        })
    }
}

/// The stand-in for a JWT layer after it verified the token: the caller, per request.
fn authenticate(mut request: Request<axum::body::Body>) -> Request<axum::body::Body> {
    request
        .extensions_mut()
        .insert(Principal::new("alice").with_groups(GROUPS));
    request
}

fn app(variant: Variant) -> Result<Router, String> {
    let router = Router::new().route("/", get(|| async { "hello" }));
    let authentication = MapRequestLayer::new(authenticate);
    match variant {
        Variant::A => Ok(router.layer(authentication)),
        Variant::B => {
            let handle = SnapshotHandle::default();
            handle.set_org(
                OrgId::default(),
                &common::org(100, 100, Some(CLIENT))
                    .map_err(|error| format!("the bench's organization is invalid: {error}"))?,
            );
            // ServiceBuilder: the first layer is the outermost, so the allowlist runs
            // inside (after) authentication and finds the principal.
            Ok(router.layer(
                ServiceBuilder::new()
                    .layer(authentication)
                    .layer(AllowlistLayer::new(handle)),
            ))
        }
    }
}

/// Binds `variant`'s app to a loopback port and serves it on `runtime`.
fn serve(runtime: &Runtime, variant: Variant) -> Result<SocketAddr, String> {
    let listener = runtime
        .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|error| format!("binding a loopback port: {error}"))?;
    let addr = listener
        .local_addr()
        .map_err(|error| format!("reading the bound address: {error}"))?;
    let service = app(variant)?.into_make_service_with_connect_info::<SocketAddr>();
    runtime.spawn(async move {
        if let Err(error) = axum::serve(listener, service).await {
            eprintln!("server {variant} stopped: {error}");
        }
    });
    Ok(addr)
}

/// A keep-alive HTTP/1 connection to `server` from `source`, its connection task spawned.
async fn connect(
    server: SocketAddr,
    source: Ipv4Addr,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let socket =
        TcpSocket::new_v4().map_err(|error| format!("creating a client socket: {error}"))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|error| format!("binding the client to {source}: {error}"))?;
    let stream = socket
        .connect(server)
        .await
        .map_err(|error| format!("connecting to {server} from {source}: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("setting TCP_NODELAY: {error}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP/1 handshake with {server}: {error}"))?;
    tokio::spawn(async move {
        // Ends with an error when the server closes first; the requests report theirs.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One `GET /` on `sender`: its status and body.
async fn get_root(sender: &mut SendRequest<Empty<Bytes>>) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|error| format!("connection lost: {error}"))?;
    let request = Request::get("/")
        .header(header::HOST, "127.0.0.1")
        .body(Empty::new())
        .map_err(|error| format!("building the request: {error}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| format!("sending a request: {error}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("reading a response body: {error}"))?
        .to_bytes();
    Ok((status, body))
}

/// One request to `server` from `source`, on a connection of its own.
async fn probe(server: SocketAddr, source: Ipv4Addr) -> Result<(StatusCode, Bytes), String> {
    get_root(&mut connect(server, source).await?).await
}

/// Checks what each variant answers before anything is measured.
async fn check(a: SocketAddr, b: SocketAddr) -> Result<(), String> {
    let checks = [
        (Variant::B, b, CLIENT, StatusCode::OK),
        (Variant::B, b, OUTSIDER, StatusCode::FORBIDDEN),
        (Variant::A, a, CLIENT, StatusCode::OK),
        (Variant::A, a, OUTSIDER, StatusCode::OK),
    ];
    for (variant, server, source, want) in checks {
        let (status, body) = probe(server, source).await?;
        if status != want || (want == StatusCode::OK && body != "hello") {
            return Err(format!(
                "{variant} answered {source} {status} {body:?}, expected {want}{}",
                if want == StatusCode::OK {
                    " \"hello\""
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

/// What a load answered: the requests answered 200 "hello", and the seconds from the
/// first request to the last answer.
#[derive(Clone, Copy, Debug)]
struct Answered {
    requests: u64,
    secs: f64,
}

impl Answered {
    fn rate(self) -> f64 {
        self.requests as f64 / self.secs
    }
}

/// Loads `server` over `connections` keep-alive connections for `secs`, counting the
/// requests answered 200 "hello" until the last in flight at the deadline is answered.
/// Any other answer is an error.
async fn load(server: SocketAddr, connections: u32, secs: f64) -> Result<Answered, String> {
    let mut senders = Vec::new();
    for _ in 0..connections {
        senders.push(connect(server, CLIENT).await?);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            tokio::spawn(async move {
                let mut answered = 0u64;
                while Instant::now() < deadline {
                    let (status, body) = get_root(&mut sender).await?;
                    if status != StatusCode::OK || body != "hello" {
                        return Err(format!("answered {status} {body:?} during the load"));
                    }
                    answered += 1;
                }
                Ok::<u64, String>(answered)
            })
        })
        .collect();
    let mut answered = 0u64;
    for task in tasks {
        answered += task
            .await
            .map_err(|error| format!("a client task failed: {error}"))??;
    }
    if answered == 0 {
        return Err(format!("{server} answered no request in {secs} s"));
    }
    Ok(Answered {
        requests: answered,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// The client side: where its futures run.
struct Client<'a> {
    runtime: &'a Runtime,
}

impl Client<'_> {
    /// Runs `future` as a task on the client's runtime (not on the calling thread, which
    /// `block_on` would use), and waits for it.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        self.runtime.block_on(async {
            tokio::spawn(future)
                .await
                .map_err(|error| format!("the client task failed: {error}"))?
        })
    }
}

/// The `p` quantile of `sorted` (0 ≤ p ≤ 1), interpolated between neighbours.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let at = (sorted.len() - 1) as f64 * p;
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (at - below as f64)
}

/// Median, quartiles and extremes of the rounds, as percentages.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let percent = |p: f64| quantile(values, p) * 100.0;
    format!(
        "{:.1} % (quartiles {:.1}–{:.1} %, rounds {:.1}–{:.1} %)",
        percent(0.5),
        percent(0.25),
        percent(0.75),
        percent(0.0),
        percent(1.0)
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    quantile(values, 0.5)
}

/// The load average as `uptime` prints it, from /proc/loadavg where there is one.
fn load_average() -> String {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(text) => text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => "unavailable".to_owned(),
    }
}

fn runtime(workers: usize, name: &str) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|error| format!("building the {name} runtime: {error}"))
}

fn run(args: &Args) -> Result<(), String> {
    let server_runtime = runtime(
        match args.runtime {
            Runtimes::Split => 1,
            Runtimes::Shared => 2,
        },
        match args.runtime {
            Runtimes::Split => "server",
            Runtimes::Shared => "shared",
        },
    )?;
    let client_runtime = match args.runtime {
        Runtimes::Split => Some(runtime(1, "client")?),
        Runtimes::Shared => None,
    };
    let client = Client {
        runtime: client_runtime.as_ref().unwrap_or(&server_runtime),
    };
    let a = serve(&server_runtime, Variant::A)?;
    let b = serve(&server_runtime, Variant::B)?;
    client.run(check(a, b))?;
    println!("checked: B answers {CLIENT} 200 \"hello\" and {OUTSIDER} 403; A answers both 200");

    let connections = args.connections;
    println!(
        "runtime {:?}, {connections} connections, {} s per variant and round; load average {}",
        args.runtime,
        args.secs,
        load_average()
    );
    if let Some(variant) = args.only {
        let server = if variant == Variant::A { a } else { b };
        let answered = client.run(load(server, connections, args.secs))?;
        println!(
            "{variant}: {} requests in {:.3} s, {:.0} requests/s; load average {}",
            answered.requests,
            answered.secs,
            answered.rate(),
            load_average()
        );
        return Ok(());
    }

    for server in [a, b] {
        client.run(load(server, connections, args.warm_up))?;
    }
    let server_threads = match args.runtime {
        Runtimes::Split => "server",
        // One runtime runs both: the whole process's CPU time.
        Runtimes::Shared => "",
    };
    let measure = |server: SocketAddr| -> Result<(f64, Option<f64>), String> {
        let cpu_before = cpu_ns(server_threads);
        let answered = client.run(load(server, connections, args.secs))?;
        let cpu = cpu_before
            .zip(cpu_ns(server_threads))
            .map(|(before, after)| {
                after.saturating_sub(before) as f64 / 1e3 / answered.requests as f64
            });
        Ok((answered.rate(), cpu))
    };
    let (mut rates_a, mut rates_b, mut ratios, mut cpu_ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let (rate_a, cpu_a) = measure(a)?;
        let (rate_b, cpu_b) = measure(b)?;
        let ratio = rate_b / rate_a;
        let cpu = match cpu_a.zip(cpu_b) {
            Some((cpu_a, cpu_b)) => {
                cpu_ratios.push(cpu_a / cpu_b);
                format!(
                    "  CPU µs/request A {cpu_a:5.2} B {cpu_b:5.2}  A/B {:5.1} %",
                    cpu_a / cpu_b * 100.0
                )
            }
            None => String::new(),
        };
        println!(
            "round {round}: A {rate_a:8.0} requests/s  B {rate_b:8.0} requests/s  B/A {:5.1} %{cpu}",
            ratio * 100.0
        );
        rates_a.push(rate_a);
        rates_b.push(rate_b);
        ratios.push(ratio);
    }
    println!(
        "median: A {:.0} requests/s  B {:.0} requests/s  B/A {}; load average {}",
        median(&mut rates_a),
        median(&mut rates_b),
        spread(&mut ratios),
        load_average()
    );
    if !cpu_ratios.is_empty() {
        println!(
            "{} CPU time per request, A/B: {}",
            if server_threads.is_empty() {
                "process"
            } else {
                "server thread"
            },
            spread(&mut cpu_ratios)
        );
    }
    Ok(())
}

/// The CPU time in nanoseconds that this process's threads whose names start with
/// `prefix` have run so far, from `/proc/self/task/*/schedstat` (Linux); `None` where
/// that cannot be read. A thread that exits between the listing and the reading is
/// left out.
fn cpu_ns(prefix: &str) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let (Ok(name), Ok(schedstat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        if name.starts_with(prefix) {
            total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("throughput: {error}");
            ExitCode::FAILURE
        }
    }
}
