//! The connection after its header: the TCP stream, the bytes read past the header,
//! and who the client is.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::header::{sniff, Sniff};
use super::{ProxyOutcome, ProxyProtocolInfo};

/// An accepted connection whose PROXY header (if any) has been read: reads start with
/// the client's first byte. See the [module docs](super).
///
/// A connection from a peer that is not a trusted balancer is handed on at once; if its
/// first bytes turn out to be a PROXY header, the first read fails with
/// [`io::ErrorKind::InvalidData`], so the server closes it without believing anything.
///
/// With the `tonic` feature it implements tonic's `Connected`, with a `TcpConnectInfo`
/// whose `remote_addr` is the client ([`ProxyProtocolInfo::client`]).
#[derive(Debug)]
pub struct ProxiedStream {
    inner: TcpStream,
    /// Bytes read past the header, handed out before reading the socket again.
    leftover: Vec<u8>,
    /// How much of `leftover` was handed out.
    consumed: usize,
    /// A peer that is not a balancer, whose first bytes are still to be checked.
    sniffing: bool,
    info: ProxyProtocolInfo,
}

impl ProxiedStream {
    /// A balancer's connection after its header.
    pub(crate) fn new(inner: TcpStream, leftover: Vec<u8>, info: ProxyProtocolInfo) -> Self {
        Self {
            inner,
            leftover,
            consumed: 0,
            sniffing: false,
            info,
        }
    }

    /// A connection from a peer that is not a balancer: its own address, and no header
    /// allowed.
    pub(crate) fn direct(inner: TcpStream, peer: SocketAddr) -> Self {
        Self {
            inner,
            leftover: Vec::new(),
            consumed: 0,
            sniffing: true,
            info: ProxyProtocolInfo::new(peer, Some(peer), None, ProxyOutcome::Direct),
        }
    }

    /// Who the connection is from: the TCP peer, the client, and what the header said.
    #[must_use]
    pub fn info(&self) -> &ProxyProtocolInfo {
        &self.info
    }

    /// The TCP stream. Bytes already read past the header are not in it.
    #[must_use]
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsyncRead for ProxiedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.sniffing {
            match sniff(&this.leftover) {
                Sniff::NotHeader => this.sniffing = false,
                Sniff::V1 | Sniff::V2 => {
                    tracing::debug!(
                        peer = %this.info.peer,
                        "PROXY protocol: a header from a peer that is not a trusted balancer; connection closed"
                    );
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a PROXY header from a peer that is not a trusted balancer",
                    )));
                }
                Sniff::Maybe => {
                    let mut chunk = [0u8; 512];
                    let mut read = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    if read.filled().is_empty() {
                        // Closed before it could be told: hand on what there is.
                        this.sniffing = false;
                    } else {
                        this.leftover.extend_from_slice(read.filled());
                    }
                }
            }
        }
        if this.consumed < this.leftover.len() {
            let rest = &this.leftover[this.consumed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.consumed += n;
            if this.consumed == this.leftover.len() {
                this.leftover = Vec::new();
                this.consumed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxiedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(feature = "tonic")]
impl tonic::transport::server::Connected for ProxiedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    /// The client as `remote_addr` (`None` when the header named no usable address, so
    /// nothing falls back to the balancer), the listening socket as `local_addr`.
    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.inner.local_addr().ok(),
            remote_addr: self.info.client,
        }
    }
}
