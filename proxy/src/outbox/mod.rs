//! The outbox worker: delivers conversions to traffic sources, at least once, with
//! retries, and dead-letters what will not go. See `store/LIFECYCLE.md`.
//!
//! Guarantees:
//! - an entry is never in flight twice at once (an in-memory set guards the claim, and
//!   the result is committed before the entry leaves the set);
//! - pending entries survive a restart (they are rows in the store, nothing is queued
//!   only in memory);
//! - connection errors, timeouts, 5xx and 429 are retried with jittered exponential
//!   backoff; other 4xx answers are final (retrying a request the source refused as
//!   malformed cannot succeed) and dead-letter the entry at once, as does running out
//!   of attempts or age. Dead letters replay on demand.

pub mod backoff;
mod deliver;
pub mod destinations;

use crate::store::{DeliveryResult, OutboxRow, WriteOp};
use crate::tracker::Tracker;
use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rand::Rng;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub use deliver::{classify, Attempt};

/// How long the worker lets relays accumulate after being woken.
const WAKE_COALESCE: Duration = Duration::from_millis(5);

/// The background service delivering outbox entries.
pub struct OutboxWorker(Arc<Shared>);

/// State shared by the polling loop and the delivery tasks it spawns.
struct Shared {
    tracker: Arc<Tracker>,
    agent: ureq::Agent,
    in_flight: Mutex<HashSet<i64>>,
}

impl OutboxWorker {
    /// A worker over the shared tracker.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        // `outbox.timeout` and `outbox.concurrency` shape the agent and the worker's
        // permits: they take a restart (see `crate::reload`); the rest is read live.
        let outbox = tracker.config().outbox.clone();
        let agent = deliver::agent(outbox.timeout, outbox.concurrency);
        OutboxWorker(Arc::new(Shared {
            tracker,
            agent,
            in_flight: Mutex::new(HashSet::new()),
        }))
    }
}

impl Shared {
    /// What to record after `attempt` of entry `row` (attempts so far: `row.attempts`).
    fn decide(
        &self,
        row: &OutboxRow,
        attempt: &Attempt,
        now_ms: u64,
    ) -> (DeliveryResult, &'static str) {
        let config = self.tracker.config();
        let cfg = &config.outbox;
        let attempts_after = row.attempts + 1;
        let base = DeliveryResult {
            outbox_id: row.id,
            ts_ms: now_ms,
            delivered: false,
            http_status: attempt.status,
            error: attempt.error.clone(),
            next_attempt_ms: None,
        };
        if attempt.delivered {
            return (
                DeliveryResult {
                    delivered: true,
                    ..base
                },
                "delivered",
            );
        }
        // The age runs from the entry's creation, or from its last replay: a replay is
        // a fresh lease on life, not one attempt at an entry already out of time.
        let age_from_ms = row.replayed_ms.unwrap_or(row.created_ms);
        let too_old = now_ms.saturating_sub(age_from_ms) >= cfg.max_age.as_millis() as u64;
        let why_dead = if !attempt.retryable {
            Some("a 4xx answer is final")
        } else if attempts_after >= cfg.max_attempts {
            Some("outbox.max_attempts reached")
        } else if too_old {
            Some("older than outbox.max_age")
        } else {
            None
        };
        if let Some(why) = why_dead {
            // The dead letter says why it died, beside what the source last answered.
            let error = match &base.error {
                Some(e) => format!("{e}; dead-lettered: {why}"),
                None => format!("dead-lettered: {why}"),
            };
            return (
                DeliveryResult {
                    error: Some(error),
                    ..base
                },
                if attempt.retryable {
                    "dead_exhausted"
                } else {
                    "dead_refused"
                },
            );
        }
        let delay = cfg.backoff.delay(row.attempts, rand::rng().random::<f64>());
        (
            DeliveryResult {
                next_attempt_ms: Some(now_ms + delay.as_millis() as u64),
                ..base
            },
            "retry",
        )
    }

    async fn deliver_one(self: Arc<Self>, row: OutboxRow) {
        let started = Instant::now();
        let agent = self.agent.clone();
        let url = row.url.clone();
        let attempt = tokio::task::spawn_blocking(move || deliver::attempt(&agent, &url))
            .await
            .unwrap_or_else(|e| Attempt::failed(format!("delivery task failed: {e}")));
        let metrics = &self.tracker.metrics;
        metrics
            .delivery_seconds
            .with_label_values(&[&row.source_id])
            .observe(started.elapsed().as_secs_f64());
        let now = Tracker::now_ms();
        let (result, outcome) = self.decide(&row, &attempt, now);
        metrics
            .deliveries
            .with_label_values(&[&row.source_id, outcome])
            .inc();
        match outcome {
            "delivered" => {
                tracing::info!(click_id = %row.click_id, outbox_id = row.id, conversion_id = row.conversion_id, source = %row.source_id, status = attempt.status, "relay delivered")
            }
            "retry" => {
                tracing::warn!(click_id = %row.click_id, outbox_id = row.id, source = %row.source_id, attempt = row.attempts + 1, status = attempt.status, error = attempt.error.as_deref().unwrap_or(""), "relay failed; will retry")
            }
            _ => {
                tracing::error!(click_id = %row.click_id, outbox_id = row.id, source = %row.source_id, attempts = row.attempts + 1, status = attempt.status, error = attempt.error.as_deref().unwrap_or(""), "relay dead-lettered")
            }
        }
        // Record before releasing the claim, so the next poll cannot pick it up again.
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = self
            .tracker
            .store
            .write(vec![WriteOp::Delivery(result.clone())])
            .await
        {
            tracing::error!(click_id = %row.click_id, outbox_id = row.id, error = %e, "cannot record the delivery result; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.in_flight.lock().remove(&row.id);
    }

    async fn refresh_gauges(&self) {
        if let Ok(counts) = self.tracker.store.outbox_backlog().await {
            let in_flight = self.in_flight.lock().len() as i64;
            let g = &self.tracker.metrics.outbox_entries;
            g.with_label_values(&["pending"]).set(counts.pending as i64);
            g.with_label_values(&["in_flight"]).set(in_flight);
            g.with_label_values(&["dead"]).set(counts.dead as i64);
        }
    }
}

#[async_trait]
impl BackgroundService for OutboxWorker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let this = &self.0;
        let permits = Arc::new(Semaphore::new(this.tracker.config().outbox.concurrency));
        let wake = this.tracker.outbox_wake.clone();
        let mut last_gauges = Instant::now() - Duration::from_secs(60);
        loop {
            let claimed: Vec<i64> = this.in_flight.lock().iter().copied().collect();
            // Claim up to four rounds of work per poll: deliveries wait for a permit
            // below, and under a postback flood one query then feeds many deliveries.
            let free = permits.available_permits() as u32 * 4;
            let due = if permits.available_permits() == 0 {
                Vec::new()
            } else {
                match this
                    .tracker
                    .store
                    .due_outbox(Tracker::now_ms(), free, &claimed)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the outbox");
                        Vec::new()
                    }
                }
            };
            for row in due {
                if !this.in_flight.lock().insert(row.id) {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let worker = this.clone();
                tokio::spawn(async move {
                    worker.deliver_one(row).await;
                    drop(permit);
                });
            }
            if last_gauges.elapsed() >= Duration::from_secs(1) {
                this.refresh_gauges().await;
                last_gauges = Instant::now();
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                // A relay was just enqueued; give its neighbours a moment to arrive so
                // one poll picks them all up.
                _ = wake.notified() => tokio::time::sleep(WAKE_COALESCE).await,
                _ = tokio::time::sleep(this.tracker.config().outbox.poll_interval) => {}
            }
        }
    }
}
