//! The destination worker: delivers conversions to `[[destinations]]` — Meta's
//! Conversions API, Google Ads click conversions, TikTok's Events API and signed
//! webhooks — from their own outbox entries (see `store/LIFECYCLE.md`).
//!
//! Each destination is a lane with its own batches, concurrency and rate limit. A
//! lane claims a full batch at once, or a partial one once its oldest entry has
//! lingered `linger`; it never has more than `concurrency` requests in flight, and
//! starts at most `rate_limit_per_second` a second. A 429's `Retry-After` pauses the
//! lane for that long, and the entries of the refused request wait at least as long.
//!
//! Every entry's outcome is recorded as the relays' are: delivered, retried with the
//! outbox's jittered backoff (connection errors, 5xx, 429, rows the platform says to
//! retry), or dead-lettered (a refusal the platform documents as permanent, with its
//! message kept; `outbox.max_attempts`; `outbox.max_age`). Dead letters replay like
//! any other. Secrets are scrubbed from every message kept or logged.
//!
//! A new kind is one [`Platform`] implementation and one arm in [`platform_for`].

mod google;
mod meta;
pub mod platform;
mod tiktok;
pub mod webhook;

pub use platform::{Answer, Platform, Request, RowOutcome};

use crate::config::destinations::{Destination, PlatformConfig};
use crate::config::Config;
use crate::store::{DeliveryResult, DestinationClaim, DestinationEntry, WriteOp};
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

/// How often lanes look for due entries (a lingering batch waits at most this much
/// longer than its `linger`).
const TICK: Duration = Duration::from_millis(50);

/// Most of an answer that is read: platforms answer in a few KiB, a partial failure
/// listing a thousand rows in a few hundred.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// The platform of destination `d`.
pub fn platform_for(d: &Destination) -> Arc<dyn Platform> {
    match &d.platform {
        PlatformConfig::MetaCapi(c) => Arc::new(meta::Meta::new(d, c)),
        PlatformConfig::GoogleAds(c) => Arc::new(google::GoogleAds::new(d, c)),
        PlatformConfig::TikTok(c) => Arc::new(tiktok::TikTok::new(d, c)),
        PlatformConfig::Webhook(c) => Arc::new(webhook::Webhook::new(d, c)),
    }
}

/// One destination's delivery state.
struct Lane {
    destination: Destination,
    platform: Arc<dyn Platform>,
    agent: ureq::Agent,
    permits: Arc<Semaphore>,
    in_flight: Mutex<HashSet<i64>>,
    /// The earliest the next request may start (rate limit, `Retry-After`).
    next_start: Mutex<Instant>,
    /// Told when a batch is done, so the worker claims the next one at once rather
    /// than at its next tick.
    batch_done: Arc<tokio::sync::Notify>,
}

impl Lane {
    fn new(destination: &Destination, batch_done: &Arc<tokio::sync::Notify>) -> Lane {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(destination.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("clickstamp-destinations/0.1")
            .max_idle_connections_per_host(destination.concurrency)
            .build()
            .new_agent();
        Lane {
            platform: platform_for(destination),
            agent,
            permits: Arc::new(Semaphore::new(destination.concurrency)),
            in_flight: Mutex::new(HashSet::new()),
            next_start: Mutex::new(Instant::now()),
            batch_done: batch_done.clone(),
            destination: destination.clone(),
        }
    }

    /// Wait for this lane's next start slot and book the one after it.
    async fn wait_turn(&self) {
        let start = {
            let mut next = self.next_start.lock();
            let start = (*next).max(Instant::now());
            let spacing = self
                .destination
                .rate_limit_per_second
                .map_or(Duration::ZERO, |r| Duration::from_secs_f64(1.0 / r));
            *next = start + spacing;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }

    /// Hold every request of the lane back until `until` (a 429's `Retry-After`).
    fn pause_until(&self, until: Instant) {
        let mut next = self.next_start.lock();
        *next = (*next).max(until);
    }

    /// Replace each secret in `text` by `<redacted>`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.platform.secrets() {
            if !secret.is_empty() {
                out = out.replace(&secret, "<redacted>");
            }
        }
        out
    }
}

/// The background service delivering destination entries.
pub struct DestinationWorker {
    tracker: Arc<Tracker>,
}

impl DestinationWorker {
    pub fn new(tracker: Arc<Tracker>) -> Self {
        DestinationWorker { tracker }
    }
}

/// What one entry's outcome records, and its metric label.
fn settle(
    config: &Config,
    entry: &DestinationEntry,
    outcome: &RowOutcome,
    status: Option<u16>,
    not_before_ms: u64,
    now_ms: u64,
) -> (DeliveryResult, &'static str) {
    let row = &entry.outbox;
    let cfg = &config.outbox;
    let base = DeliveryResult {
        outbox_id: row.id,
        ts_ms: now_ms,
        delivered: false,
        http_status: status,
        error: None,
        next_attempt_ms: None,
    };
    match outcome {
        RowOutcome::Delivered => (
            DeliveryResult {
                delivered: true,
                ..base
            },
            "delivered",
        ),
        RowOutcome::Skipped(why) => (
            DeliveryResult {
                delivered: true,
                error: Some(format!("skipped: {why}")),
                ..base
            },
            "skipped",
        ),
        RowOutcome::Refused(message) => (
            DeliveryResult {
                error: Some(format!("{message}; dead-lettered: the platform refused it")),
                ..base
            },
            "dead_refused",
        ),
        RowOutcome::Retry(message) => {
            let age_from_ms = row.replayed_ms.unwrap_or(row.created_ms);
            let why_dead = if row.attempts + 1 >= cfg.max_attempts {
                Some("outbox.max_attempts reached")
            } else if now_ms.saturating_sub(age_from_ms) >= cfg.max_age.as_millis() as u64 {
                Some("older than outbox.max_age")
            } else {
                None
            };
            if let Some(why) = why_dead {
                return (
                    DeliveryResult {
                        error: Some(format!("{message}; dead-lettered: {why}")),
                        ..base
                    },
                    "dead_exhausted",
                );
            }
            let delay = cfg.backoff.delay(row.attempts, rand::rng().random::<f64>());
            let next = (now_ms + delay.as_millis() as u64).max(not_before_ms);
            (
                DeliveryResult {
                    error: Some(message.clone()),
                    next_attempt_ms: Some(next),
                    ..base
                },
                "retry",
            )
        }
    }
}

/// Send one request for `entries` (of one group) and read its answer, on a blocking
/// thread. Returns the outcomes, the HTTP status and the `Retry-After`.
fn send_group(
    lane: &Lane,
    group: &'static str,
    entries: &[&DestinationEntry],
    now_ms: u64,
) -> (Vec<RowOutcome>, Option<u16>, Option<Duration>) {
    let request = match lane.platform.request(&lane.agent, group, entries, now_ms) {
        Ok(r) => r,
        Err(e) => return (vec![RowOutcome::Retry(e); entries.len()], None, None),
    };
    let mut call = lane
        .agent
        .post(&request.url)
        .header("Content-Type", "application/json");
    for (name, value) in &request.headers {
        call = call.header(*name, value);
    }
    match call.send(&request.body[..]) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_vec()
                .unwrap_or_default();
            let answer = Answer {
                status,
                retry_after,
                body,
            };
            let mut outcomes = lane.platform.read_answer(entries, &answer);
            outcomes.resize(
                entries.len(),
                RowOutcome::Retry("the platform's answer did not cover this row".into()),
            );
            (outcomes, Some(status), retry_after)
        }
        Err(e) => {
            // ureq's message names the host, never the body or headers; scrubbed anyway.
            let message: String = e.to_string().chars().take(300).collect();
            (vec![RowOutcome::Retry(message); entries.len()], None, None)
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

async fn deliver_batch(tracker: Arc<Tracker>, lane: Arc<Lane>, entries: Vec<DestinationEntry>) {
    let id = lane.destination.id.clone();
    let metrics = &tracker.metrics;
    let config = tracker.config();
    let now = Tracker::now_ms();
    let mut results: Vec<(usize, RowOutcome, Option<u16>, u64)> = Vec::new();
    let mut to_send: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match lane.platform.precheck(e, now) {
            Some(outcome) => results.push((i, outcome, None, 0)),
            None => to_send.push(i),
        }
    }
    let mut groups: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for i in to_send {
        let g = lane.platform.group(&entries[i]);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, members)) => members.push(i),
            None => groups.push((g, vec![i])),
        }
    }
    let entries = Arc::new(entries);
    for (group, members) in groups {
        lane.wait_turn().await;
        let started = Instant::now();
        let (lane2, entries2, members2) = (lane.clone(), entries.clone(), members.clone());
        let sent = tokio::task::spawn_blocking(move || {
            let batch: Vec<&DestinationEntry> = members2.iter().map(|i| &entries2[*i]).collect();
            send_group(&lane2, group, &batch, Tracker::now_ms())
        })
        .await;
        let (outcomes, status, retry_after) = sent.unwrap_or_else(|e| {
            (
                vec![RowOutcome::Retry(format!("delivery task failed: {e}")); members.len()],
                None,
                None,
            )
        });
        metrics
            .destination_request_seconds
            .with_label_values(&[&id])
            .observe(started.elapsed().as_secs_f64());
        let delivered = outcomes
            .iter()
            .filter(|o| matches!(o, RowOutcome::Delivered))
            .count();
        let result = if delivered == outcomes.len() {
            "ok"
        } else if delivered > 0 {
            "partial"
        } else if outcomes.iter().any(|o| matches!(o, RowOutcome::Retry(_))) {
            "retry"
        } else {
            "refused"
        };
        metrics
            .destination_requests
            .with_label_values(&[&id, result])
            .inc();
        let not_before = match retry_after {
            Some(wait) => {
                lane.pause_until(Instant::now() + wait);
                Tracker::now_ms() + wait.as_millis() as u64
            }
            None => 0,
        };
        tracing::info!(destination = %id, kind = lane.destination.kind(), group, conversions = members.len(), delivered, status, result, "destination request");
        for (i, outcome) in members.into_iter().zip(outcomes) {
            results.push((i, outcome, status, not_before));
        }
    }
    let now = Tracker::now_ms();
    let mut writes = Vec::with_capacity(results.len());
    for (i, outcome, status, not_before) in &results {
        let e = &entries[*i];
        let outcome = match outcome {
            RowOutcome::Retry(m) => RowOutcome::Retry(lane.scrub(m)),
            RowOutcome::Refused(m) => RowOutcome::Refused(lane.scrub(m)),
            other => other.clone(),
        };
        let (result, label) = settle(&config, e, &outcome, *status, *not_before, now);
        metrics
            .destination_deliveries
            .with_label_values(&[&id, label])
            .inc();
        if label != "delivered" {
            let error = result.error.as_deref().unwrap_or("");
            if label.starts_with("dead") {
                tracing::error!(destination = %id, outbox_id = e.outbox.id, click_id = %e.outbox.click_id, event_id = %e.conversion.dedup_key, attempts = e.outbox.attempts + 1, error, "destination entry dead-lettered");
            } else {
                tracing::warn!(destination = %id, outbox_id = e.outbox.id, click_id = %e.outbox.click_id, event_id = %e.conversion.dedup_key, outcome = label, error, "destination entry not delivered");
            }
        }
        writes.push(WriteOp::Delivery(result));
    }
    // Recorded before the claims are released, so the next poll cannot take them again.
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = tracker.store.write(writes.clone()).await {
        tracing::error!(destination = %id, error = %e, "cannot record destination results; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    {
        let mut in_flight = lane.in_flight.lock();
        for e in entries.iter() {
            in_flight.remove(&e.outbox.id);
        }
    }
    lane.batch_done.notify_one();
}

#[async_trait]
impl BackgroundService for DestinationWorker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let batch_done = Arc::new(tokio::sync::Notify::new());
        let mut config = self.tracker.config();
        let mut lanes: Vec<Arc<Lane>> = config
            .destinations
            .iter()
            .map(|d| Arc::new(Lane::new(d, &batch_done)))
            .collect();
        loop {
            // A reload that changes a destination gets a fresh lane; its entries in
            // flight finish on the old one.
            let current = self.tracker.config();
            if !Arc::ptr_eq(&current, &config) {
                lanes = current
                    .destinations
                    .iter()
                    .map(|d| {
                        lanes
                            .iter()
                            .find(|l| l.destination == *d)
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Lane::new(d, &batch_done)))
                    })
                    .collect();
                config = current;
            }
            for lane in &lanes {
                self.poll_lane(lane).await;
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                _ = batch_done.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

impl DestinationWorker {
    /// Claim and start as many batches as the lane has permits for.
    async fn poll_lane(&self, lane: &Arc<Lane>) {
        let d = &lane.destination;
        while lane.permits.available_permits() > 0 && Instant::now() >= *lane.next_start.lock() {
            let claim = DestinationClaim {
                destination_id: d.id.clone(),
                now_ms: Tracker::now_ms(),
                limit: d.batch_size as u32,
                linger_ms: d.linger.as_millis() as u64,
                in_flight: lane.in_flight.lock().iter().copied().collect(),
            };
            let entries = match self.tracker.store.due_destination(&claim).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(destination = %d.id, error = %e, "cannot read the destination's outbox");
                    return;
                }
            };
            if entries.is_empty() {
                return;
            }
            let full = entries.len() >= d.batch_size;
            lane.in_flight
                .lock()
                .extend(entries.iter().map(|e| e.outbox.id));
            let Ok(permit) = lane.permits.clone().acquire_owned().await else {
                return;
            };
            let (tracker, lane2) = (self.tracker.clone(), lane.clone());
            tokio::spawn(async move {
                deliver_batch(tracker, lane2, entries).await;
                drop(permit);
            });
            if !full {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_retry_after;
    use std::time::Duration;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
