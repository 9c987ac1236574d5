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
    /// The header deadline's timer, armed lazily: only when a read waits in the
    /// middle of a header (a browser sends its header in one packet, so most requests
    /// never touch the timer wheel).
    timer: Option<Pin<Box<Sleep>>>,
    /// The last byte scanned was a line feed (possibly followed by `\r`).
    after_newline: bool,
    /// The connection was upgraded (a `101` went out): what follows is another
    /// protocol (a WebSocket), whose bytes are never timed as HTTP requests.
    upgraded: bool,
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
        // HTTP/2 frames have no blank line to find: the deadlines are HTTP/1's.
        let h2 = matches!(inner.selected_alpn_proto(), Some(ALPN::H2));
        stats.opened();
        GuardedStream {
            inner,
            deadlines,
            phase: Phase::Header(deadline),
            timer: None,
            after_newline: false,
            upgraded: h2,
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
        if bytes.is_empty() || self.upgraded {
            return Ok(());
        }
        let now = Instant::now();
        if self.phase == Phase::Responded {
            self.phase = Phase::Header(now + self.deadlines.header);
            self.after_newline = false;
        }
        match self.phase {
            Phase::Header(deadline) => {
                if now > deadline {
                    return Err(self.timed_out("header"));
                }
                if header_ends_in(&mut self.after_newline, bytes) {
                    self.phase = Phase::Body(now + self.deadlines.body);
                }
            }
            Phase::Body(deadline) if now > deadline => return Err(self.timed_out("body")),
            Phase::Body(_) | Phase::Responded => {}
        }
        Ok(())
    }

    /// A write is the response: it ends the request's deadlines. The first bytes of a
    /// response are its status line, which tells two cases apart: an interim
    /// `100 Continue` (the request body is still to come, under its deadline) and a
    /// `101` (the connection now speaks another protocol: nothing more is timed).
    fn on_write(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Responded || self.upgraded || bytes.is_empty() {
            return;
        }
        let status = bytes.get(9..12);
        match status {
            Some(b"100") if bytes.starts_with(b"HTTP/1.") => {}
            Some(b"101") if bytes.starts_with(b"HTTP/1.") => {
                self.upgraded = true;
                self.phase = Phase::Responded;
            }
            _ => self.phase = Phase::Responded,
        }
    }

    /// Wake the task at `deadline`: the timer is made on first use and moved only
    /// when the deadline changed.
    fn poll_header_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// Whether a request header's blank line is in `bytes`, given whether the bytes before
/// ended a line (`after_newline`, updated). Only the bytes between line feeds are looked
/// at, and only up to the first that is not a carriage return: the cost is per header
/// line, not per byte.
fn header_ends_in(after_newline: &mut bool, bytes: &[u8]) -> bool {
    let only_cr = |run: &[u8]| run.iter().all(|&b| b == b'\r');
    let mut line_start = 0;
    for lf in memchr::memchr_iter(b'\n', bytes) {
        if !only_cr(&bytes[line_start..lf]) {
            *after_newline = false;
        }
        if *after_newline {
            return true;
        }
        *after_newline = true;
        line_start = lf + 1;
    }
    if !only_cr(&bytes[line_start..]) {
        *after_newline = false;
    }
    false
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
                if let Phase::Header(deadline) = self.phase {
                    if self.poll_header_deadline(deadline, cx) {
                        return Poll::Ready(Err(self.timed_out("header")));
                    }
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
        self.on_write(buf);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.on_write(first);
        }
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

#[cfg(test)]
mod tests {
    use super::header_ends_in;

    /// Which chunk completes the header, if any.
    fn ends(chunks: &[&[u8]]) -> Option<usize> {
        let mut after_newline = false;
        chunks
            .iter()
            .position(|chunk| header_ends_in(&mut after_newline, chunk))
    }

    #[test]
    fn the_blank_line_is_found_in_any_split() {
        let request: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nbody\r\n\r\n";
        // The index of the blank line's final line feed.
        let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 3;
        for at in 1..request.len() {
            let (a, b) = request.split_at(at);
            let expected = if at > end { 0 } else { 1 };
            assert_eq!(ends(&[a, b]), Some(expected), "split at {at}");
        }
        assert_eq!(ends(&[b"GET / HTTP/1.1\nHost: x\n\n"]), Some(0));
        assert_eq!(ends(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]), None);
        assert_eq!(
            ends(&[b"GET / HTTP/1.1\r\n", b"X: \r\n", b"Y", b"\r\n"]),
            None
        );
        let one_byte_at_a_time: Vec<&[u8]> = request.chunks(1).collect();
        assert_eq!(ends(&one_byte_at_a_time), Some(end));
    }
}
