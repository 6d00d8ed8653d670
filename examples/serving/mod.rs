//! Serving connections at the service's edge: deadlines for slow clients, a cap on
//! concurrent connections, and a shutdown with a deadline. The part of the demo server
//! that an application embedding the layers can copy whole (README, "Running it in
//! production").
//!
//! Built on the server stack's own settings, with no timer of its own:
//!
//! - **the request head**: hyper's `header_read_timeout`, with a Tokio timer. hyper
//!   starts it whenever it waits for a head: after the connection opens, and after
//!   each response on a keep-alive connection. So it closes a connection that sends
//!   nothing, half a request line or half the headers, *and* an idle keep-alive
//!   connection: in hyper 1 the idle keep-alive timeout and the head deadline are one
//!   timer;
//! - **the request body**: tower-http's `RequestBodyTimeoutLayer` (the longest pause
//!   between two pieces of a body) and `TimeoutLayer` (receiving the whole body and
//!   answering, 408 past it), in [`with_deadlines`];
//! - **the connection cap**: a semaphore of `max_connections` permits, one held per
//!   connection. At the cap the loop stops accepting: new clients wait in the kernel's
//!   listen backlog (their TCP handshake completes, nothing is read) and are served,
//!   in order, as connections close; the connections being served are not touched.
//!   Past the backlog (`somaxconn`, 4096 on current Linux) the kernel drops their
//!   SYNs and they retry;
//! - **accept errors**: the listener (axum's `Listener` for `TcpListener`) logs an
//!   error such as `Too many open files` and sleeps a second before accepting again,
//!   instead of spinning. Keep `max_connections` under the process's descriptor limit
//!   (`ulimit -n`) and it is not reached;
//! - **shutdown**: see [`serve`].

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::serve::Listener;
use axum::Router;
use http::{Extensions, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// The edge's settings; see the module docs for what each bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    /// From connect, or from the end of the previous response, to the end of a
    /// request head.
    pub(crate) header_timeout: Duration,
    /// The longest pause between two pieces of a request body.
    pub(crate) body_timeout: Duration,
    /// From the end of the head to the response: receiving the body and answering.
    pub(crate) request_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub(crate) max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub(crate) shutdown_grace: Duration,
}

/// `app` with the body deadlines: 408 Request Timeout when a request is not received
/// and answered within `request_timeout`, and a body that pauses longer than
/// `body_timeout` fails to read (the admin API answers 400).
pub(crate) fn with_deadlines(app: Router, edge: &Edge) -> Router {
    app.layer(RequestBodyTimeoutLayer::new(edge.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            edge.request_timeout,
        ))
}

/// Serves `app` on the connections `listener` accepts, until `shutdown` resolves,
/// then shuts down within `edge.shutdown_grace`:
///
/// 1. the listener is dropped: no new connection is accepted;
/// 2. a connection with no request in flight (idle keep-alive, silent, or in the
///    middle of sending a head) is closed at once;
/// 3. a connection with a request in flight (its head received, its response not yet
///    written) finishes it, answers with `Connection: close`, and closes;
/// 4. whatever is still open when the grace period ends is closed.
///
/// Generic over how connections are accepted: anything that yields `(IO, address)` as
/// axum's [`Listener`] does (a `TcpListener`, or a listener that reads a PROXY
/// protocol header first). `connect_info` says what each request of a connection
/// carries in its extensions: `ConnectInfo<SocketAddr>` with the peer, as
/// `into_make_service_with_connect_info` would insert it, or what a PROXY header said.
pub(crate) async fn serve<L>(
    mut listener: L,
    app: Router,
    edge: Edge,
    shutdown: impl Future<Output = ()>,
    connect_info: impl Fn(&L::Io, &L::Addr) -> Extensions,
) where
    L: Listener,
    L::Addr: fmt::Debug,
{
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(edge.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut at_cap = false;
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        while connections.try_join_next().is_some() {}
        if permits.available_permits() == 0 && !at_cap {
            tracing::warn!(
                max_connections = edge.max_connections,
                "connection cap reached: new connections wait to be accepted until one closes"
            );
        }
        at_cap = permits.available_permits() == 0;
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (io, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let in_flight = InFlight::default();
        let extensions = connect_info(&io, &peer);
        let peer = format!("{peer:?}");
        let service = connection_service(app.clone(), extensions, in_flight.clone());
        let connection = http.serve_connection(TokioIo::new(io), service);
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(result, &peer),
                _ = stopping.changed() => {
                    if in_flight.count() == 0 {
                        // Idle, silent or half a head: dropping it closes it now.
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await, &peer);
                }
            }
        });
    }

    drop(listener);
    let open = connections.len();
    tracing::info!(
        connections = open,
        grace = ?edge.shutdown_grace,
        "shutting down: no new connections; finishing the requests in flight"
    );
    let _ = stop.send(true);
    let drained = tokio::time::timeout(edge.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace = ?edge.shutdown_grace,
            "the shutdown grace period ended: closing the connections still open"
        );
        connections.shutdown().await;
    }
}

/// The service of one connection: `app`, with the connection's `extensions` (its peer
/// address as `ConnectInfo`, say) in each request, and each request counted in flight
/// from its head until its response body is dropped (written, or abandoned).
fn connection_service(
    app: Router,
    extensions: Extensions,
    in_flight: InFlight,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = in_flight.enter();
        let mut request = request.map(Body::new);
        request.extensions_mut().extend(extensions.clone());
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            Ok(response.map(move |body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &guard;
                    frame
                }))
            }))
        }
    })
}

fn log_end(result: Result<(), hyper::Error>, peer: &str) {
    match result {
        Ok(()) => {}
        Err(err) if err.is_timeout() => {
            tracing::debug!(%peer, "closed a connection that sent no complete request head in time");
        }
        Err(err) => tracing::debug!(%peer, error = %err, "connection ended with an error"),
    }
}

/// Requests in flight on one connection.
#[derive(Debug, Clone, Default)]
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(Arc::clone(&self.0))
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One request in flight, until dropped.
#[derive(Debug)]
struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
