//! The exporter: a background service that drains the store's analytics queue into
//! ClickHouse (see the module above for the guarantees).

use super::ClickHouse;
use crate::config::AnalyticsConfig;
use crate::store::export::now_ms;
use crate::tracker::Tracker;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes per ClickHouse insert at most (besides `analytics.batch_max` write
/// transactions): bounds the memory one batch takes after a long outage.
pub const MAX_CHANGES_PER_BATCH: u64 = 100_000;

/// The first pause after a failure; it doubles up to `analytics.retry_max`.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// How often an exporter with nothing to send settles quiet click days (merges
/// them so reports read them without `FINAL`; see `ClickHouse::settle`).
const SETTLE_EVERY: Duration = Duration::from_secs(60);
/// A day is settled once nothing was inserted into it for this long: today's
/// partition, which takes every new click, stays unsettled and is read `FINAL`.
const SETTLE_QUIET: Duration = Duration::from_secs(120);

/// The analytics metrics. Labels are fixed words (`table`, `stage`), never input.
#[derive(Clone)]
pub struct AnalyticsMetrics {
    /// Seconds since the oldest change not yet in ClickHouse was committed.
    pub lag_seconds: Gauge,
    /// Changes (clicks, outbound clicks, conversion changes) not yet in ClickHouse.
    pub lag_rows: IntGauge,
    /// Rows sent to ClickHouse, by table (`clicks`, `conversions`).
    pub rows_exported: IntCounterVec,
    /// Export attempts that failed, by stage (`clickhouse`, `store`).
    pub failures: IntCounterVec,
    /// 1 while the last attempt to reach ClickHouse succeeded.
    pub up: IntGauge,
    /// Automatic reports that fell back to the store because ClickHouse failed.
    pub report_fallbacks: IntCounter,
}

impl AnalyticsMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let lag_seconds = Gauge::new(
            "clickstamp_analytics_lag_seconds",
            "Seconds since the oldest change not yet exported to ClickHouse was committed (0 when none waits).",
        )?;
        let lag_rows = IntGauge::new(
            "clickstamp_analytics_lag_rows",
            "Changes (clicks, outbound clicks, conversion changes) not yet exported to ClickHouse.",
        )?;
        let rows_exported = IntCounterVec::new(
            Opts::new(
                "clickstamp_analytics_rows_exported_total",
                "Rows sent to ClickHouse, by table (repeats after a retry count again).",
            ),
            &["table"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "clickstamp_analytics_export_failures_total",
                "Export attempts that failed, by stage (clickhouse: unreachable or refused; store: reading or acknowledging).",
            ),
            &["stage"],
        )?;
        let up = IntGauge::new(
            "clickstamp_analytics_up",
            "1 while the exporter's last attempt to reach ClickHouse succeeded.",
        )?;
        let report_fallbacks = IntCounter::new(
            "clickstamp_analytics_report_fallbacks_total",
            "Reports that read the store because ClickHouse failed.",
        )?;
        registry.register(Box::new(lag_seconds.clone()))?;
        registry.register(Box::new(lag_rows.clone()))?;
        registry.register(Box::new(rows_exported.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(report_fallbacks.clone()))?;
        for table in ["clicks", "conversions"] {
            rows_exported.with_label_values(&[table]);
        }
        for stage in ["clickhouse", "store"] {
            failures.with_label_values(&[stage]);
        }
        Ok(AnalyticsMetrics {
            lag_seconds,
            lag_rows,
            rows_exported,
            failures,
            up,
            report_fallbacks,
        })
    }
}

/// Analytics as the running tracker holds it: the config, the client and metrics.
#[derive(Clone)]
pub struct Analytics {
    pub config: AnalyticsConfig,
    pub client: ClickHouse,
    pub metrics: AnalyticsMetrics,
}

impl Analytics {
    /// Analytics for `config`, counting into `metrics`. Building the client does no
    /// I/O; `None` (logged) only if the client cannot be built, which `clickstamp
    /// check` already rules out.
    pub fn new(config: &AnalyticsConfig, metrics: AnalyticsMetrics) -> Option<Analytics> {
        match ClickHouse::new(&config.clickhouse) {
            Ok(client) => Some(Analytics {
                config: config.clone(),
                client,
                metrics,
            }),
            Err(e) => {
                tracing::error!(error = %e, "analytics: cannot build the ClickHouse client; analytics is off");
                None
            }
        }
    }
}

impl AnalyticsMetrics {
    /// The metrics registered in `registry`; they are exported (at zero) without
    /// analytics too, so dashboards and alerts evaluate on every node. A second
    /// registration on one registry (a second tracker, embedding) gets unexported
    /// copies.
    pub fn register_or_detached(registry: &Registry) -> AnalyticsMetrics {
        AnalyticsMetrics::register(registry).unwrap_or_else(|_| {
            AnalyticsMetrics::register(&Registry::new()).expect("a fresh registry takes them")
        })
    }
}

/// What one export step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing was waiting.
    Idle,
    /// A batch went out; `full` when more is probably waiting.
    Sent { full: bool },
    /// It failed (and was logged); try again after a pause.
    Failed,
}

/// The background service.
pub struct Exporter {
    tracker: Arc<Tracker>,
}

impl Exporter {
    pub fn new(tracker: Arc<Tracker>) -> Self {
        Exporter { tracker }
    }

    /// Claim, send, acknowledge: one batch.
    async fn step(&self, a: &Analytics) -> Step {
        let store = &self.tracker.store;
        let cfg = &a.config;
        let batch = match store
            .export_claim(cfg.batch_max, MAX_CHANGES_PER_BATCH, cfg.lease)
            .await
        {
            Ok(Some(batch)) => batch,
            Ok(None) => return Step::Idle,
            Err(e) => {
                a.metrics.failures.with_label_values(&["store"]).inc();
                tracing::warn!(error = %e, "analytics: cannot read the export queue");
                return Step::Failed;
            }
        };
        if let Err(e) = a.client.insert(&batch.clicks, &batch.conversions).await {
            a.metrics.failures.with_label_values(&["clickhouse"]).inc();
            if a.metrics.up.get() == 1 {
                tracing::warn!(error = %e, waiting = batch.changes, "analytics: ClickHouse refused a batch; retrying with backoff, nothing is lost");
            } else {
                tracing::debug!(error = %e, "analytics: ClickHouse still failing");
            }
            a.metrics.up.set(0);
            return Step::Failed;
        }
        a.metrics.up.set(1);
        a.metrics
            .rows_exported
            .with_label_values(&["clicks"])
            .inc_by(batch.clicks.len() as u64);
        a.metrics
            .rows_exported
            .with_label_values(&["conversions"])
            .inc_by(batch.conversions.len() as u64);
        if let Err(e) = store.export_done(&batch).await {
            // Exported again later: ClickHouse collapses the repeat.
            a.metrics.failures.with_label_values(&["store"]).inc();
            tracing::warn!(error = %e, "analytics: exported, but cannot acknowledge in the store; will export again");
            return Step::Failed;
        }
        tracing::debug!(
            entries = batch.queue_ids.len(),
            clicks = batch.clicks.len(),
            conversions = batch.conversions.len(),
            "analytics: batch exported"
        );
        Step::Sent {
            full: batch.queue_ids.len() >= cfg.batch_max || batch.changes >= MAX_CHANGES_PER_BATCH,
        }
    }

    async fn refresh_lag(&self, a: &Analytics) {
        match self.tracker.store.export_backlog().await {
            Ok(b) => {
                let lag_ms = b.oldest_ms.map_or(0, |t| (now_ms() - t).max(0));
                a.metrics.lag_seconds.set(lag_ms as f64 / 1000.0);
                a.metrics.lag_rows.set(b.changes as i64);
            }
            Err(e) => tracing::debug!(error = %e, "analytics: cannot read the backlog"),
        }
    }
}

#[async_trait]
impl BackgroundService for Exporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(a) = self.tracker.analytics.clone() else {
            return;
        };
        let mut schema_ready = false;
        let mut retry = FIRST_RETRY;
        let mut down_since: Option<Instant> = None;
        let mut last_lag = Instant::now() - Duration::from_secs(60);
        let mut last_settle = Instant::now();
        loop {
            let step = if schema_ready {
                self.step(&a).await
            } else {
                match a.client.ensure_schema().await {
                    Ok(()) => {
                        schema_ready = true;
                        a.metrics.up.set(1);
                        tracing::info!(database = %a.config.clickhouse.database, "analytics: ClickHouse tables ready; exporting");
                        self.step(&a).await
                    }
                    Err(e) => {
                        a.metrics.failures.with_label_values(&["clickhouse"]).inc();
                        a.metrics.up.set(0);
                        if down_since.is_none() {
                            tracing::warn!(error = %e, "analytics: cannot reach ClickHouse to create its tables; retrying with backoff (changes stay queued)");
                        }
                        Step::Failed
                    }
                }
            };
            let pause = match step {
                Step::Failed => {
                    down_since.get_or_insert_with(Instant::now);
                    let pause = retry;
                    retry = (retry * 2).min(a.config.retry_max);
                    pause
                }
                Step::Sent { .. } | Step::Idle => {
                    if let Some(since) = down_since.take() {
                        tracing::info!(
                            down_seconds = since.elapsed().as_secs(),
                            "analytics: exporting again; catching up"
                        );
                    }
                    retry = FIRST_RETRY;
                    if step == Step::Idle && last_settle.elapsed() >= SETTLE_EVERY {
                        last_settle = Instant::now();
                        match a.client.settle(SETTLE_QUIET).await {
                            Ok(0) => {}
                            Ok(days) => tracing::info!(
                                days,
                                "analytics: click days merged; reports read them without FINAL"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, "analytics: cannot settle click days (reports stay exact, only slower)")
                            }
                        }
                    }
                    match step {
                        Step::Sent { full: true } => Duration::ZERO,
                        _ => a.config.flush_interval,
                    }
                }
            };
            if last_lag.elapsed() >= Duration::from_secs(1) || pause > Duration::ZERO {
                self.refresh_lag(&a).await;
                last_lag = Instant::now();
            }
            if pause.is_zero() {
                if *shutdown.borrow() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
