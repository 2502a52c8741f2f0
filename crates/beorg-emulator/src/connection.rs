//! The sockets under axum: a listener the handle can close, and connections that die when
//! the emulator shuts down, so keep-alive connections in a client's pool stop being served.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::state::{Shared, lock};

/// The listening socket as axum sees it: shared with the handle so shutdown can close it.
pub(crate) struct ServerListener {
    pub(crate) shared: Arc<Shared>,
}

impl ServerListener {
    /// Polls the shared socket; after shutdown there is none and this never completes.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        match lock(&self.shared.listener).as_ref() {
            Some(listener) => listener.poll_accept(cx),
            None => Poll::Pending,
        }
    }
}

impl axum::serve::Listener for ServerListener {
    type Io = ServerStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ServerStream, SocketAddr) {
        loop {
            match poll_fn(|cx| self.poll_accept(cx)).await {
                Ok((stream, peer)) => {
                    let stream = ServerStream::new(stream, self.shared.stop_tx.subscribe());
                    return (stream, peer);
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait a little and try again.
                    tracing::debug!(error = %err, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.addr)
    }
}

/// A future that completes when the emulator shuts down.
type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An accepted connection that fails every read and write once the emulator shuts down, so
/// keep-alive connections in a client's pool stop being served too.
pub(crate) struct ServerStream {
    inner: TcpStream,
    /// `None` once shutdown was seen.
    stop: Option<StopFuture>,
}

impl ServerStream {
    fn new(inner: TcpStream, mut stop_rx: watch::Receiver<bool>) -> Self {
        // Best effort: small JSON answers should not wait for Nagle.
        let _ = inner.set_nodelay(true);
        let stop: StopFuture = Box::pin(async move {
            // An error means the sender is gone, which only happens when the server is gone.
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
        });
        Self {
            inner,
            stop: Some(stop),
        }
    }

    /// Whether shutdown happened; registers the task's waker for it otherwise.
    fn stopped(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(stop) = self.stop.as_mut() else {
            return true;
        };
        if stop.as_mut().poll(cx).is_ready() {
            self.stop = None;
            return true;
        }
        false
    }
}

/// The error every I/O call returns after shutdown.
fn shut_down_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "emulator shut down")
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stopped(cx) {
            return Poll::Ready(Err(shut_down_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stopped(cx) {
            return Poll::Ready(Err(shut_down_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.stopped(cx) {
            return Poll::Ready(Err(shut_down_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
