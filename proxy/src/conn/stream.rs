//! A downstream connection with deadlines on what the client sends.
//!
//! Pingora times each *read* (60 s), not the whole header or body, so a client that
//! trickles one byte every few seconds holds a connection — and a file descriptor —
//! forever. [`GuardedStream`] wraps the accepted stream and watches the bytes the HTTP
//! layer reads from it:
//!
//! - from the connection's start, and from the first byte after each response, the
//!   request header must be complete (a blank line seen) within `header_timeout`; a read
//!   still waiting when that passes fails with `TimedOut`;
//! - after the header, bytes still arriving once `body_timeout` has passed fail the same
//!   way. A client that has sent everything is never cut: a read that merely waits while
//!   the response is produced is not timed here (Pingora's own per-read timeout and the
//!   keep-alive timeout cover idle connections);
//! - the first write (the response) ends the request's deadlines.
//!
//! The HTTP parser is Pingora's; this only needs to know where a header ends, which is
//! the first empty line (`\n\n`, `\r\n\r\n` or `\n\r\n`, as httparse accepts).

use super::ConnectionStats;
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// How long a client may take to send a request.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the first byte (or the connection's start) to the end of the header.
    pub header: Duration,
    /// From the end of the header to the last byte of the body.
    pub body: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request header, until the deadline.
    Header(Instant),
    /// The header is in; body bytes are accepted until the deadline.
    Body(Instant),
    /// A response went out: nothing is timed until the next request starts.
    Responded,
}

/// An accepted stream under [`Deadlines`], holding its slot of the listener's
/// connection cap until dropped.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    deadlines: Deadlines,
    phase: Phase,
    /// Armed at the header deadline; polled only while a header read waits.
    timer: Pin<Box<Sleep>>,
    /// The last byte scanned was a line feed (possibly followed by `\r`).
    after_newline: bool,
    stats: Arc<ConnectionStats>,
    _slot: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// Wrap a freshly accepted stream; its first header deadline starts now.
    pub fn new(
        inner: Stream,
        deadlines: Deadlines,
        stats: Arc<ConnectionStats>,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let deadline = Instant::now() + deadlines.header;
        stats.opened();
        GuardedStream {
            inner,
            deadlines,
            phase: Phase::Header(deadline),
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            after_newline: false,
            stats,
            _slot: slot,
        }
    }

    fn timed_out(&self, phase: &'static str) -> io::Error {
        self.stats.slow_client(phase);
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client took too long to send the request {phase}"),
        )
    }

    /// Follow the request through the bytes just read.
    fn observe(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if self.phase == Phase::Responded {
            let deadline = now + self.deadlines.header;
            self.phase = Phase::Header(deadline);
            self.timer.as_mut().reset(deadline);
            self.after_newline = false;
        }
        match self.phase {
            Phase::Header(deadline) => {
                if now > deadline {
                    return Err(self.timed_out("header"));
                }
                if self.header_ends_in(bytes) {
                    self.phase = Phase::Body(now + self.deadlines.body);
                }
            }
            Phase::Body(deadline) if now > deadline => return Err(self.timed_out("body")),
            Phase::Body(_) | Phase::Responded => {}
        }
        Ok(())
    }

    fn header_ends_in(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' if self.after_newline => return true,
                b'\n' => self.after_newline = true,
                b'\r' => {}
                _ => self.after_newline = false,
            }
        }
        false
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.stats.closed();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                let fresh = &buf.filled()[before..];
                Poll::Ready(this.observe(fresh))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if matches!(self.phase, Phase::Header(_)) && self.timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(self.timed_out("header")));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.phase = Phase::Responded;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.phase = Phase::Responded;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// Everything else Pingora asks of a stream is the wrapped stream's answer.

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
