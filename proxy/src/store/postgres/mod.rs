//! The shared store: PostgreSQL, so any number of clickstamp nodes can serve one set of
//! campaigns. See `LIFECYCLE.md` ("Many nodes") for what holds across nodes.
//!
//! - Each node commits in groups, as the embedded store does: a writer task takes every
//!   write queued while it was busy and applies them all in one transaction, so a node
//!   pays one commit for many requests. With `store.writers` above 1, several do so at
//!   once, each on its own connection, so one batch's commit wait overlaps the next
//!   batch's work.
//! - Several nodes write at once, so the check-then-act of dedup runs under a database
//!   lock: each batch first takes a transaction advisory lock per (click, event) its
//!   postbacks touch, in one global order (so two batches never deadlock on them), and
//!   only then looks up the conversions. A unique index is the backstop.
//! - Outbox entries are leased: a node claims due entries with `FOR UPDATE SKIP LOCKED`
//!   and holds them until it records the delivery or `store.outbox_lease` runs out.
//! - Only clicks are cached (they never change); their outbound offers, which another
//!   node may add, are read from the database on every lookup.
//! - The store owns a small tokio runtime: connections and the writer run there, not on
//!   the proxy's own threads, so no request thread ever drives another's connection.

mod destinations;
mod export;
pub mod import;
mod read;
mod retention;
mod rotation;
pub mod schema;
mod spool;
mod tls;
mod write;

use super::{
    ConversionRow, JournalFilter, JournalRow, OutboxCounts, OutboxRow, Store, StoreError,
    StoredClick, WriteOp, WriteResult,
};
use crate::config::{Durability, PostgresConfig, StoreConfig};
use crate::metrics::Metrics;
use crate::store::export::{BackfillCursor, ExportBacklog, ExportBatch, HistoryPage};
use async_trait::async_trait;
use clickstamp_plugins::ClickId;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use lru::LruCache;
use parking_lot::Mutex;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Queue depth between request handlers and the writer (as the embedded store).
const QUEUE_DEPTH: usize = 16_384;

type Reply = oneshot::Sender<Result<Vec<WriteResult>, StoreError>>;

struct Job {
    ops: Vec<WriteOp>,
    done: Option<Reply>,
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    /// Runs the pool's connections and the writer; shut down (without blocking) on drop.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    queue: mpsc::Sender<Job>,
    durability: Durability,
    /// Recent clicks without their outbound offers (those can change on another node).
    recent: Arc<Mutex<LruCache<ClickId, StoredClick>>>,
    /// This node's name on the outbox leases it holds.
    node: Arc<str>,
    lease: Duration,
    metrics: Arc<Metrics>,
    spool: Arc<spool::Spool>,
    /// Set while the database is unreachable: clicks go straight to the spool rather
    /// than wait for a connection attempt each.
    outage: Arc<AtomicBool>,
}

/// How often the forwarder looks at the spool.
const FORWARD_EVERY: Duration = Duration::from_millis(250);
/// Spooled writes forwarded per transaction.
const FORWARD_BATCH: usize = 1_000;

/// Forward spooled clicks once the database answers, oldest first; clear the outage
/// once the spool is empty and the database answers.
async fn forwarder(
    pool: Pool,
    spool: Arc<spool::Spool>,
    outage: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    analytics: bool,
) {
    loop {
        tokio::time::sleep(FORWARD_EVERY).await;
        let batch = match spool.oldest(FORWARD_BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                continue;
            }
        };
        if batch.is_empty() {
            if outage.load(Ordering::Relaxed) && read::ping(&pool).await.is_ok() {
                outage.store(false, Ordering::Relaxed);
                tracing::info!("store reachable again");
            }
            metrics.store_spool_depth.set(0);
            continue;
        }
        let last = batch.last().map_or(0, |(id, _)| *id);
        let writes: Vec<spool::Spooled> = batch.into_iter().map(|(_, w)| w).collect();
        match write::forward_spooled(&pool, &writes, analytics).await {
            Ok(()) => {
                if let Err(e) = spool.remove_through(last) {
                    // Forwarded again next round: clicks are idempotent.
                    tracing::error!(error = %e, "cannot trim the spool");
                }
                tracing::info!(writes = writes.len(), "spooled clicks forwarded");
                metrics
                    .store_spool_depth
                    .set(spool.depth().map_or(0, |n| n as i64));
            }
            Err(e) => tracing::debug!(error = %e, "store still unreachable; clicks stay spooled"),
        }
    }
}

/// A store error from a driver error: the database's own refusal, or an unreachable
/// database (no answer, a lost connection, a server shutting down or read-only after a
/// failover), which a retry may get past.
pub(crate) fn error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 57P0x: the server is shutting down or
            // starting; 53300: too many connections; 25006: a standby (read-only).
            let unreachable = code.starts_with("08")
                || code.starts_with("57P0")
                || code == "53300"
                || code == "25006";
            let text = format!("{code}: {}", db.message());
            if unreachable {
                StoreError::Unavailable(text)
            } else {
                StoreError::Backend(text)
            }
        }
        None => StoreError::Unavailable(with_causes(&e)),
    }
}

/// An error with the errors beneath it ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the driver's own message alone rarely says what to fix.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => error(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// The driver's config for `pg`: the URL, with the timeouts of `[store]` added.
pub(crate) use tls::connector as tls_connector;

/// The driver's config for `pg`: the URL, with the timeouts of `[store]` added.
pub(crate) fn driver_config(pg: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut cfg: tokio_postgres::Config = pg.url.parse().map_err(|e| StoreError::Open {
        path: "store.url".into(),
        reason: format!("not a PostgreSQL connection URL ({e})"),
    })?;
    let mut options = cfg.get_options().unwrap_or("").to_string();
    options.push_str(&format!(
        " -c statement_timeout={}",
        pg.statement_timeout.as_millis()
    ));
    cfg.options(options.trim());
    if cfg.get_application_name().is_none() {
        cfg.application_name("clickstamp");
    }
    cfg.connect_timeout(pg.connect_timeout);
    // A host that vanished (no RST) is noticed within the connect timeout rather than
    // the kernel's minutes of retransmissions.
    cfg.keepalives(true);
    cfg.keepalives_idle(Duration::from_secs(10));
    cfg.tcp_user_timeout(pg.connect_timeout.max(Duration::from_secs(1)) * 2);
    Ok(cfg)
}

/// A pool over `pg`, for any runtime it is used on.
pub(crate) fn pool(pg: &PostgresConfig) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        driver_config(pg)?,
        tls::connector(pg)?,
        ManagerConfig {
            // A connection the server closed (restart, failover) is noticed by the
            // driver; nothing else needs a round trip to check.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(pg.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(pg.statement_timeout + pg.connect_timeout))
        .create_timeout(Some(pg.connect_timeout))
        .recycle_timeout(Some(pg.connect_timeout))
        .build()
        .map_err(|e| StoreError::Open {
            path: "store.url".into(),
            reason: e.to_string(),
        })
}

/// This node's name on the leases it holds: its host and main listener, which no other
/// running node shares, and which stay the same when the node restarts, so a restarted
/// node takes back at once what it held when it died (see [`PgStore::open`]).
fn node_name(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    format!("{host}/{listen}")
}

impl PgStore {
    /// Connect, apply the schema migrations (or refuse a database migrated by a newer
    /// clickstamp) and start the writer.
    pub fn open(
        config: &StoreConfig,
        pg: &PostgresConfig,
        listen: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let node = node_name(listen);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("clickstamp-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Open {
                path: "store".into(),
                reason: e.to_string(),
            })?;
        let handle = runtime.handle().clone();
        let pool = {
            let _entered = runtime.enter();
            pool(pg)?
        };
        let (migrated, released) = runtime.block_on(async {
            let mut client = pool.get().await.map_err(pool_error)?;
            let migrated = schema::migrate(&mut client).await?;
            // Leases this node held when it last stopped (killed mid-delivery): nobody
            // is delivering those entries now, so they are due again at once rather
            // than when the leases run out.
            let released = client
                .execute(
                    "UPDATE outbox SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = $1",
                    &[&node],
                )
                .await
                .map_err(error)?;
            export::on_open(&client, &node, config.analytics_queue).await?;
            Ok::<_, StoreError>((migrated, released))
        })?;
        if released > 0 {
            tracing::warn!(entries = released, node = %node, "outbox entries this node held when it stopped are due again");
        }
        tracing::info!(
            from = migrated.from,
            to = migrated.to,
            "store: postgres schema ready"
        );
        let spool = Arc::new(spool::Spool::open(&pg.spool_path)?);
        let depth = spool.depth()?;
        metrics.store_spool_depth.set(depth as i64);
        if depth > 0 {
            tracing::warn!(
                writes = depth,
                "clicks spooled during an outage; forwarding them"
            );
        }
        let outage = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let queue: write::SharedQueue = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..pg.writers {
            runtime.spawn(write::writer_loop(
                write::Writer {
                    pool: pool.clone(),
                    batch_max: config.batch_max,
                    metrics: metrics.clone(),
                    spool: spool.clone(),
                    outage: outage.clone(),
                    analytics: config.analytics_queue,
                },
                queue.clone(),
            ));
        }
        runtime.spawn(forwarder(
            pool.clone(),
            spool.clone(),
            outage.clone(),
            metrics.clone(),
            config.analytics_queue,
        ));
        let cache = NonZeroUsize::new(config.click_cache.max(1)).expect("max(1) is non-zero");
        Ok(PgStore {
            runtime: Some(runtime),
            handle,
            pool,
            queue: tx,
            durability: config.durability,
            recent: Arc::new(Mutex::new(LruCache::new(cache))),
            node: node.into(),
            lease: pg.outbox_lease,
            metrics,
            spool,
            outage,
        })
    }

    /// Run `f` on the store's runtime and wait for it from whichever runtime calls.
    async fn on_store<T, F>(&self, f: impl FnOnce(Pool) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let result = self
            .handle
            .spawn(f(self.pool.clone()))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("store task failed: {e}"))));
        if matches!(result, Err(StoreError::Unavailable(_))) {
            self.metrics.store_unavailable.inc();
        }
        result
    }

    async fn enqueue(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let n = ops.len();
        if self.outage.load(Ordering::Relaxed) {
            // The writer found the database unreachable: clicks need not wait for a
            // connection attempt of their own to end up in the spool.
            let (spool, metrics) = (self.spool.clone(), self.metrics.clone());
            let spooled = self
                .handle
                .spawn_blocking(move || {
                    write::spool_if_clicks(&spool, &metrics, &ops).map(|s| (s, ops))
                })
                .await
                .map_err(|e| StoreError::Backend(format!("spool task failed: {e}")))??;
            match spooled {
                (true, _) => return Ok(vec![WriteResult::Done; n]),
                (false, unspooled) => return self.enqueue_to_writer(unspooled).await,
            }
        }
        self.enqueue_to_writer(ops).await
    }

    async fn enqueue_to_writer(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let n = ops.len();
        // Postbacks (and replays) always wait: their answer depends on the outcome, and
        // a network must never get 200 for a conversion that is not committed.
        let must_wait = self.durability == Durability::Commit
            || ops
                .iter()
                .any(|op| matches!(op, WriteOp::Postback(_) | WriteOp::ReplayDead { .. }));
        if !must_wait {
            self.queue
                .send(Job { ops, done: None })
                .await
                .map_err(|_| StoreError::WriterGone)?;
            return Ok(vec![WriteResult::Done; n]);
        }
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Job {
                ops,
                done: Some(done),
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let result = wait.await.map_err(|_| StoreError::WriterGone)?;
        if matches!(result, Err(StoreError::Unavailable(_))) {
            self.metrics.store_unavailable.inc();
        }
        result
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Never blocks, so dropping the store inside an async context is safe.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        // Cached before the write so a /go right behind the landing finds the click;
        // forgotten again if the write fails (see the embedded store).
        let touched = read::remember(&self.recent, &ops);
        let result = self.enqueue(ops).await;
        if result.is_err() {
            let mut recent = self.recent.lock();
            for id in &touched {
                recent.pop(id);
            }
        }
        result
    }

    async fn click(&self, id: &ClickId) -> Result<Option<StoredClick>, StoreError> {
        let cached = self.recent.lock().get(id).cloned();
        let (id, recent) = (*id, self.recent.clone());
        self.on_store(move |pool| async move { read::click(&pool, &recent, id, cached).await })
            .await
    }

    async fn click_count(&self) -> Result<u64, StoreError> {
        self.on_store(|pool| async move { read::click_count(&pool).await })
            .await
    }

    async fn due_outbox(
        &self,
        now_ms: u64,
        limit: u32,
        in_flight: &[i64],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let in_flight = in_flight.to_vec();
        let (node, lease) = (self.node.clone(), self.lease);
        self.on_store(move |pool| async move {
            read::claim_due_outbox(&pool, &node, lease, now_ms, limit, &in_flight).await
        })
        .await
    }

    async fn due_destination(
        &self,
        claim: &crate::store::DestinationClaim,
    ) -> Result<Vec<crate::store::DestinationEntry>, StoreError> {
        let claim = claim.clone();
        let (node, lease) = (self.node.clone(), self.lease);
        self.on_store(move |pool| async move {
            destinations::claim_due(&pool, &node, lease, &claim).await
        })
        .await
    }

    async fn outbox(&self, state: Option<&str>, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        let state = state.map(str::to_owned);
        self.on_store(move |pool| async move { read::outbox(&pool, state.as_deref(), limit).await })
            .await
    }

    async fn outbox_for_click(&self, click_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let click_id = click_id.to_owned();
        self.on_store(move |pool| async move { read::outbox_for_click(&pool, &click_id).await })
            .await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.on_store(|pool| async move { read::outbox_counts(&pool, true).await })
            .await
    }

    async fn outbox_backlog(&self) -> Result<OutboxCounts, StoreError> {
        self.on_store(|pool| async move { read::outbox_counts(&pool, false).await })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.queue.is_closed() {
            return Err(StoreError::WriterGone);
        }
        self.on_store(|pool| async move { read::ping(&pool).await })
            .await
    }

    fn spools_clicks(&self) -> bool {
        true
    }

    async fn journal(&self, filter: &JournalFilter) -> Result<Vec<JournalRow>, StoreError> {
        let filter = filter.clone();
        self.on_store(move |pool| async move { read::journal(&pool, &filter).await })
            .await
    }

    async fn journal_entry(&self, id: i64) -> Result<Option<JournalRow>, StoreError> {
        self.on_store(move |pool| async move { read::journal_entry(&pool, id).await })
            .await
    }

    async fn conversions_for_click(
        &self,
        click_id: &str,
    ) -> Result<Vec<ConversionRow>, StoreError> {
        let click_id = click_id.to_owned();
        self.on_store(
            move |pool| async move { read::conversions_for_click(&pool, &click_id).await },
        )
        .await
    }

    async fn rotation_figures(
        &self,
        campaign_id: &str,
        since_ms: u64,
    ) -> Result<Vec<crate::store::RotationFigure>, StoreError> {
        let campaign_id = campaign_id.to_owned();
        self.on_store(
            move |pool| async move { rotation::figures(&pool, &campaign_id, since_ms).await },
        )
        .await
    }

    async fn report(
        &self,
        catalog: &crate::report::Catalog,
        params: &crate::report::ReportParams,
    ) -> Result<crate::report::Report, StoreError> {
        let (catalog, params) = (catalog.clone(), params.clone());
        self.on_store(move |pool| async move {
            let (rows, totals) = read::report(&pool, &catalog, &params).await?;
            Ok(crate::report::Report {
                params,
                rows,
                totals,
            })
        })
        .await
    }

    async fn export_claim(
        &self,
        max_entries: usize,
        max_changes: u64,
        lease: std::time::Duration,
    ) -> Result<Option<ExportBatch>, StoreError> {
        let node = self.node.clone();
        let lease_ms = lease.as_millis() as i64;
        self.on_store(move |pool| async move {
            export::claim(&pool, &node, max_entries, max_changes, lease_ms).await
        })
        .await
    }

    async fn export_done(&self, batch: &ExportBatch) -> Result<(), StoreError> {
        let (ids, changes, through) = (batch.queue_ids.clone(), batch.changes, batch.newest_ms);
        self.on_store(move |pool| async move {
            progress(&pool, &ids, changes, Some(through), None).await
        })
        .await
    }

    async fn export_backlog(&self) -> Result<ExportBacklog, StoreError> {
        self.on_store(|pool| async move { export::backlog(&pool).await })
            .await
    }

    async fn backfill_cursor(&self) -> Result<BackfillCursor, StoreError> {
        self.on_store(|pool| async move { export::cursor(&pool).await })
            .await
    }

    async fn backfill_page(
        &self,
        from: &BackfillCursor,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let from = from.clone();
        self.on_store(move |pool| async move { export::page(&pool, &from, limit).await })
            .await
    }

    async fn backfill_progress(&self, cursor: &BackfillCursor) -> Result<(), StoreError> {
        let cursor = cursor.clone();
        self.on_store(move |pool| async move { progress(&pool, &[], 0, None, Some(&cursor)).await })
            .await
    }

    async fn prune(
        &self,
        step: &crate::store::retention::PruneStep,
    ) -> Result<crate::store::retention::PruneOutcome, StoreError> {
        let step = step.clone();
        self.on_store(move |pool| async move { retention::prune(&pool, &step).await })
            .await
    }
}

/// Record analytics progress in its own transaction.
async fn progress(
    pool: &Pool,
    exported: &[i64],
    changes: u64,
    through_ms: Option<i64>,
    backfill: Option<&BackfillCursor>,
) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(error)?;
    export::progress(
        &tx,
        exported,
        changes,
        through_ms,
        backfill,
        crate::store::export::now_ms(),
    )
    .await?;
    tx.commit().await.map_err(error)
}
