//! Connection-level defences for each listener: a cap on open connections with a clear
//! refusal, deadlines on request headers and bodies ([`stream`]), and the process's
//! file limit raised at start-up ([`raise_file_limit`]).
//!
//! Without them, 1,100 connections that trickle their headers exhaust the default
//! 1,024 file descriptors and stop `/go`, postbacks and `/healthz` alike. With them, a
//! slow client is cut at its deadline, a flood beyond the cap is answered `503
//! too_many_connections` and closed at once, and the admin listener keeps its own cap
//! within the file limit, so `/metrics` and `/healthz` keep answering.

pub mod stream;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

pub use stream::{Deadlines, GuardedStream};

/// The connection metrics of every listener, labelled by the listener's fixed name.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    slow_closed: IntCounterVec,
}

impl ConnectionMetrics {
    /// Register the connection metrics in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGaugeVec::new(
            Opts::new(
                "clickstamp_connections_open",
                "Client connections open, by listener",
            ),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "clickstamp_connections_refused_total",
                "Connections answered 503 too_many_connections at the listener's cap",
            ),
            &["listener"],
        )?;
        let slow_closed = IntCounterVec::new(
            Opts::new(
                "clickstamp_slow_clients_closed_total",
                "Connections closed because the request header or body came too slowly",
            ),
            &["listener", "phase"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(slow_closed.clone()))?;
        Ok(ConnectionMetrics {
            open,
            refused,
            slow_closed,
        })
    }

    /// The counters of one listener (`"main"`, `"admin"`).
    pub fn listener(&self, name: &'static str) -> Arc<ConnectionStats> {
        Arc::new(ConnectionStats {
            listener: name,
            open: self.open.with_label_values(&[name]),
            refused: self.refused.with_label_values(&[name]),
            slow_header: self.slow_closed.with_label_values(&[name, "header"]),
            slow_body: self.slow_closed.with_label_values(&[name, "body"]),
            last_warning_s: AtomicU64::new(0),
        })
    }
}

/// One listener's connection counters.
#[derive(Debug)]
pub struct ConnectionStats {
    listener: &'static str,
    open: IntGauge,
    refused: IntCounter,
    slow_header: IntCounter,
    slow_body: IntCounter,
    /// When the last "at the cap" warning was logged (unix seconds): a flood logs one
    /// line a second, not one per connection.
    last_warning_s: AtomicU64,
}

impl ConnectionStats {
    /// Count a connection cut for sending its header (`"header"`) or body too slowly.
    pub fn slow_client(&self, phase: &'static str) {
        match phase {
            "header" => self.slow_header.inc(),
            _ => self.slow_body.inc(),
        }
        tracing::debug!(
            listener = self.listener,
            phase,
            "slow client cut at its deadline"
        );
    }

    fn opened(&self) {
        self.open.inc();
    }

    fn closed(&self) {
        self.open.dec();
    }

    fn warn_at_cap(&self, cap: usize) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.last_warning_s.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                listener = self.listener,
                max_connections = cap,
                "connection refused with 503 too_many_connections: the listener is at its cap"
            );
        }
    }
}

/// A listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request.
    pub deadlines: Deadlines,
}

/// A Pingora app behind the connection guard: each accepted connection takes a slot
/// (or is refused) and reads under [`Deadlines`].
pub struct Guarded<A> {
    inner: Arc<A>,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
}

impl<A> Guarded<A> {
    /// Guard `inner` with `limits`, counting into `stats`.
    pub fn new(inner: A, limits: ConnectionLimits, stats: Arc<ConnectionStats>) -> Self {
        Guarded {
            inner: Arc::new(inner),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            stats,
        }
    }
}

/// The answer to a connection over the cap. It is written before the request is read
/// (the request may never come); clients read a response sent early.
fn refusal() -> Vec<u8> {
    let body = serde_json::json!({
        "error": "too_many_connections",
        "message": "this listener is at its connection limit; retry shortly",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A stream handed back for reuse is already guarded (and holds its slot).
        if (*stream).as_any().is::<GuardedStream>() {
            return self.inner.process_new(stream, shutdown).await;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.stats.refused.inc();
            self.stats.warn_at_cap(self.limits.max_connections);
            // Bounded: a client that does not read its refusal cannot hold the slot-less
            // connection open either.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                stream.write_all(&refusal()).await?;
                stream.flush().await?;
                AsyncWriteExt::shutdown(&mut stream).await
            })
            .await;
            return None;
        };
        let guarded = GuardedStream::new(stream, self.limits.deadlines, self.stats.clone(), slot);
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Raise the soft limit on open files to the hard limit, and return both (soft after
/// raising). Every connection is a file descriptor: the default soft limit of 1,024
/// would cap the process far below what the listeners are configured for.
pub fn raise_file_limit() -> std::io::Result<(u64, u64)> {
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let bytes = refusal();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
    }
}
