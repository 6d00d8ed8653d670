//! The connection after its header: the TCP stream, the bytes read past the header,
//! and who the client is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::ProxyProtocolInfo;

/// An accepted connection whose PROXY header (if any) has been read: reads start with
/// the client's first byte. See the [module docs](super).
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
    info: ProxyProtocolInfo,
}

impl ProxiedStream {
    pub(crate) fn new(inner: TcpStream, leftover: Vec<u8>, info: ProxyProtocolInfo) -> Self {
        Self {
            inner,
            leftover,
            consumed: 0,
            info,
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
