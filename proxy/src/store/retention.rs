//! Retention: deleting what `[store.retention]` no longer keeps, a small batch at a
//! time, from a background service, so the request path's writes never wait long.
//!
//! What each rule keeps and why is in `docs/retention-and-backup.md`. In short:
//! - clicks older than the longest attribution window plus a margin go, with their
//!   `/go` records, unless a conversion refers to them (conversions, their history and
//!   the outbox entries relaying them are never pruned, so nothing loses its click);
//! - postback journal entries older than their maximum age go;
//! - delivered outbox entries go once delivered longer ago than their maximum age
//!   (pending and dead ones stay: one is still to be sent, the other awaits a replay);
//! - the analytics queue is never pruned (its rows go once exported).
//!
//! The embedded store deletes through its one writer thread (a [`super::WriteOp::Prune`]
//! batch between the request path's batches); the shared store deletes on its pool.

use super::{Store, StoreError};
use crate::config::RetentionConfig;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which rows one rule deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneRule {
    /// Clicks recorded before `before_ms` that no conversion refers to, with their
    /// outbound (`/go`) records.
    Clicks { before_ms: u64 },
    /// Postback journal entries received before `before_ms`.
    Journal { before_ms: u64 },
    /// Outbox entries delivered before `before_ms`.
    DeliveredOutbox { before_ms: u64 },
}

impl PruneRule {
    /// The rule's name in logs and its table's metric label.
    pub fn table(&self) -> &'static str {
        match self {
            PruneRule::Clicks { .. } => "clicks",
            PruneRule::Journal { .. } => "postback_journal",
            PruneRule::DeliveredOutbox { .. } => "outbox",
        }
    }

    /// The click key every click recorded before `before_ms` sorts below (its first 12
    /// hex characters are its millisecond timestamp, see `report::aggregate::key_range`).
    pub fn click_key_bound(before_ms: u64) -> String {
        crate::report::aggregate::key_range(None, Some(before_ms as i64)).1
    }
}

/// Where a run has got to within a rule's rows: the next batch looks only past it, so
/// rows a rule keeps (a click with a conversion) are looked at once per run, not once
/// per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PruneCursor {
    /// Nothing looked at yet.
    #[default]
    Start,
    /// Past this click key.
    AfterClick(String),
    /// Past the entry with this id (journal), or with this due time and id (outbox,
    /// read in the order of its `(state, next_attempt_ms)` index).
    AfterEntry { at_ms: i64, id: i64 },
}

/// One batch: the rule, where to start, and how many rows to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneStep {
    pub rule: PruneRule,
    pub after: PruneCursor,
    pub limit: u32,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Rows of the rule's table looked at.
    pub examined: u64,
    /// Rows of the rule's table deleted.
    pub deleted: u64,
    /// Outbound (`/go`) records deleted with their clicks (the clicks rule only).
    pub outbound_deleted: u64,
    /// Where the next batch starts; `None` once the rule has nothing more to delete.
    pub next: Option<PruneCursor>,
}

/// The tables pruning deletes from: the fixed label set of the metric.
const TABLES: [&str; 4] = ["clicks", "outbound_clicks", "postback_journal", "outbox"];

/// The pruner's metrics, registered beside the others.
#[derive(Clone)]
pub struct RetentionMetrics {
    /// `clickstamp_store_pruned_rows_total{table}`.
    pub rows: IntCounterVec,
    /// `clickstamp_store_prune_runs_total`: runs that finished every rule.
    pub runs: IntCounter,
    /// `clickstamp_store_prune_failures_total`: runs a store error cut short.
    pub failures: IntCounter,
}

impl RetentionMetrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rows = IntCounterVec::new(
            Opts::new(
                "clickstamp_store_pruned_rows_total",
                "Rows deleted by [store.retention], by table.",
            ),
            &["table"],
        )?;
        for table in TABLES {
            rows.with_label_values(&[table]);
        }
        let runs = IntCounter::new(
            "clickstamp_store_prune_runs_total",
            "Retention runs that went through every configured rule.",
        )?;
        let failures = IntCounter::new(
            "clickstamp_store_prune_failures_total",
            "Retention runs cut short by a store error (retried at the next interval).",
        )?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        Ok(RetentionMetrics {
            rows,
            runs,
            failures,
        })
    }
}

/// What one run deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub clicks: u64,
    pub outbound_clicks: u64,
    pub postback_journal: u64,
    pub outbox: u64,
}

/// The background service applying `[store.retention]`.
pub struct Pruner {
    store: Arc<dyn Store>,
    config: RetentionConfig,
    /// The longest campaign attribution window of the live config: no postback is
    /// attributed to a click older than this. Asked at every run, so a reloaded config
    /// with a longer window protects its clicks from the next run on.
    attribution_window: AttributionWindow,
    metrics: RetentionMetrics,
}

/// Where the pruner reads the longest attribution window from.
pub type AttributionWindow = Arc<dyn Fn() -> Duration + Send + Sync>;

impl Pruner {
    /// A pruner over `store` with the rules of `config`.
    pub fn new(
        store: Arc<dyn Store>,
        config: RetentionConfig,
        attribution_window: AttributionWindow,
        metrics: RetentionMetrics,
    ) -> Self {
        Pruner {
            store,
            config,
            attribution_window,
            metrics,
        }
    }

    /// The rules in force at `now_ms`, each with its cut-off.
    pub fn rules(&self, now_ms: u64) -> Vec<PruneRule> {
        let before = |age: Duration| now_ms.saturating_sub(age.as_millis() as u64);
        let mut rules = Vec::new();
        if let Some(margin) = self.config.clicks_margin {
            rules.push(PruneRule::Clicks {
                before_ms: before((self.attribution_window)() + margin),
            });
        }
        if let Some(age) = self.config.journal_max_age {
            rules.push(PruneRule::Journal {
                before_ms: before(age),
            });
        }
        if let Some(age) = self.config.delivered_outbox_max_age {
            rules.push(PruneRule::DeliveredOutbox {
                before_ms: before(age),
            });
        }
        rules
    }

    /// Apply every rule once, batch by batch, pausing between batches; counts what went
    /// (metrics included) even when a store error ends the run early.
    pub async fn run_once(&self, now_ms: u64) -> (RunCounts, Result<(), StoreError>) {
        let mut counts = RunCounts::default();
        for rule in self.rules(now_ms) {
            let mut after = PruneCursor::Start;
            loop {
                let step = PruneStep {
                    rule,
                    after,
                    limit: self.config.batch,
                };
                let outcome = match self.store.prune(&step).await {
                    Ok(o) => o,
                    Err(e) => return (counts, Err(e)),
                };
                self.count(rule, &outcome, &mut counts);
                match outcome.next {
                    Some(next) => after = next,
                    None => break,
                }
                tokio::time::sleep(self.config.pause).await;
            }
        }
        (counts, Ok(()))
    }

    fn count(&self, rule: PruneRule, outcome: &PruneOutcome, counts: &mut RunCounts) {
        let rows = |table: &str, n: u64| {
            if n > 0 {
                self.metrics.rows.with_label_values(&[table]).inc_by(n);
            }
        };
        rows(rule.table(), outcome.deleted);
        rows("outbound_clicks", outcome.outbound_deleted);
        match rule {
            PruneRule::Clicks { .. } => {
                counts.clicks += outcome.deleted;
                counts.outbound_clicks += outcome.outbound_deleted;
            }
            PruneRule::Journal { .. } => counts.postback_journal += outcome.deleted,
            PruneRule::DeliveredOutbox { .. } => counts.outbox += outcome.deleted,
        }
    }

    async fn run_and_log(&self) {
        let started = Instant::now();
        let (counts, result) = self.run_once(crate::store::export::now_ms() as u64).await;
        let took_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                self.metrics.runs.inc();
                tracing::info!(
                    clicks = counts.clicks,
                    outbound_clicks = counts.outbound_clicks,
                    postback_journal = counts.postback_journal,
                    outbox = counts.outbox,
                    took_ms,
                    "retention run done"
                );
            }
            Err(e) => {
                self.metrics.failures.inc();
                tracing::warn!(
                    error = %e,
                    clicks = counts.clicks,
                    outbound_clicks = counts.outbound_clicks,
                    postback_journal = counts.postback_journal,
                    outbox = counts.outbox,
                    took_ms,
                    "retention run cut short; retried at the next interval"
                );
            }
        }
    }
}

/// The first run waits at most this long after start, so a node restarted more often
/// than `store.retention.interval` still prunes.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);

#[async_trait]
impl BackgroundService for Pruner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut wait = self.config.interval.min(FIRST_RUN_AFTER);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            self.run_and_log().await;
            wait = self.config.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_click_bound_sorts_above_older_clicks_and_at_or_below_newer_ones() {
        let bound = PruneRule::click_key_bound(0x0190_0000_0000);
        let id = |ms: u64| format!("{ms:012x}7abc8def0123456789abcdef0123");
        assert!(id(0x018f_ffff_ffff) < bound);
        assert!(id(0x0190_0000_0000) >= bound);
    }

    #[test]
    fn every_table_a_rule_deletes_from_is_a_metric_label() {
        for rule in [
            PruneRule::Clicks { before_ms: 0 },
            PruneRule::Journal { before_ms: 0 },
            PruneRule::DeliveredOutbox { before_ms: 0 },
        ] {
            assert!(TABLES.contains(&rule.table()));
        }
    }
}
