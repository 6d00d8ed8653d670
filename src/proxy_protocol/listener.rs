//! The listener: accepts TCP connections and reads each one's header in a task of its
//! own, handing on the connections that are ready.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::task::JoinSet;
use tokio::time::Sleep;

use super::header::{handshake, Handshake};
use super::{ProxiedStream, ProxyProtocolConfig, Settings};

/// How long to wait after an accept error that is not about one connection (such as
/// too many open files) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A TCP listener that reads the PROXY protocol header of each connection from a trusted
/// balancer before handing it on. See the [module docs](super) for what each connection
/// becomes, and an example.
///
/// Serve it with `axum::serve` (it implements axum's `Listener`, feature `axum`; use
/// [`with_connect_info`](super::with_connect_info) for the client address), or with
/// tonic's `serve_with_incoming` (it is a `Stream` of connections). Accept errors are
/// logged and retried, never returned. Dropping the listener aborts the headers still
/// being read.
pub struct ProxyProtocolListener {
    listener: TcpListener,
    settings: Arc<Settings>,
    handshakes: JoinSet<Option<ProxiedStream>>,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl ProxyProtocolListener {
    /// Reads PROXY headers on the connections `listener` accepts.
    #[must_use]
    pub fn new(listener: TcpListener, config: ProxyProtocolConfig) -> Self {
        Self {
            listener,
            settings: config.settings().clone(),
            handshakes: JoinSet::new(),
            backoff: None,
        }
    }

    /// Binds a TCP listener on `addr` and reads PROXY headers on its connections.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, config: ProxyProtocolConfig) -> io::Result<Self> {
        Ok(Self::new(TcpListener::bind(addr).await?, config))
    }

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection whose header has been read (or that needs none). Connections
    /// that are refused are closed and logged at debug level; this never fails.
    pub async fn accept(&mut self) -> ProxiedStream {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection whose header has been read; see
    /// [`accept`](Self::accept).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<ProxiedStream> {
        loop {
            match self.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(stream)))) => return Poll::Ready(stream),
                Poll::Ready(Some(Ok(None))) => continue,
                Poll::Ready(Some(Err(err))) => {
                    if err.is_panic() {
                        tracing::error!(error = %err, "PROXY protocol: a header task panicked");
                    }
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            if let Some(backoff) = &mut self.backoff {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.handshakes.len() >= self.settings.max_pending_handshakes {
                // Woken when a header task finishes.
                return Poll::Pending;
            }
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) if self.settings.is_trusted(peer.ip()) => {
                    let settings = Arc::clone(&self.settings);
                    self.handshakes.spawn(read_header(stream, peer, settings));
                }
                // Not a balancer: served at once, its first bytes checked as they are read.
                Poll::Ready(Ok((stream, peer))) => {
                    return Poll::Ready(ProxiedStream::direct(stream, peer));
                }
                Poll::Ready(Err(err)) if is_connection_error(&err) => {}
                Poll::Ready(Err(err)) => {
                    tracing::error!(error = %err, "accept error; accepting again in 1 s");
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// One balancer connection's task: its header, under the deadline.
async fn read_header(
    mut stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
) -> Option<ProxiedStream> {
    match handshake(&mut stream, peer, &settings).await {
        Ok(Handshake { info, leftover }) => {
            tracing::trace!(
                peer = %peer,
                client = ?info.client,
                outcome = ?info.outcome,
                "PROXY protocol: connection accepted"
            );
            Some(ProxiedStream::new(stream, leftover, info))
        }
        Err(reason) => {
            tracing::debug!(peer = %peer, reason = %reason, "PROXY protocol: connection closed");
            None
        }
    }
}

/// Errors about one connection (gone before it was accepted): accept the next one.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl fmt::Debug for ProxyProtocolListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyProtocolListener")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .field("pending_headers", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

/// The connections, for tonic's `serve_with_incoming`. Never ends, never yields an error.
impl futures_core::Stream for ProxyProtocolListener {
    type Item = io::Result<ProxiedStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_accept(cx)
            .map(|stream| Some(Ok(stream)))
    }
}

/// The client address is the listener's `Addr`: `None` when the header named no usable
/// address. Serve with [`with_connect_info`](super::with_connect_info) to have it in
/// each request.
#[cfg(feature = "axum")]
impl axum::serve::Listener for ProxyProtocolListener {
    type Io = ProxiedStream;
    type Addr = Option<SocketAddr>;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let stream = Self::accept(self).await;
        let client = stream.info().client;
        (stream, client)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Self::local_addr(self).map(Some)
    }
}
