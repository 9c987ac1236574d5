//! The embedded store: SQLite in WAL mode, one writer thread doing group commit.

mod apply;
mod destinations;
mod export;
mod migrate;
mod read;
pub(crate) mod report;
mod retention;
mod rotation;

use super::export::{BackfillCursor, ExportBacklog, ExportBatch, HistoryPage};
use super::{ConversionRow, JournalFilter, JournalRow, OutboxCounts, OutboxRow};
use super::{Store, StoreError, StoredClick, WriteOp, WriteResult};
use crate::config::{Durability, StoreConfig, SyncMode};
use crate::metrics::Metrics;
use async_trait::async_trait;
use clickstamp_plugins::ClickId;
use lru::LruCache;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Queue depth between request handlers and the writer. Deep enough to absorb a burst
/// while a batch commits; when full, requests wait (backpressure) instead of piling up.
const QUEUE_DEPTH: usize = 16_384;

/// The schema, re-run on every open (see `migrate`); `pub(crate)` so tests elsewhere
/// can build a store file of the current layout.
pub(crate) const SCHEMA: &str = include_str!("schema.sql");

/// How long the writer waits for more writes when it is busy and its batch is small.
const BATCH_LINGER: std::time::Duration = std::time::Duration::from_micros(250);

type Reply = oneshot::Sender<Result<Vec<WriteResult>, StoreError>>;

struct Job {
    ops: Vec<WriteOp>,
    done: Option<Reply>,
}

/// The report `params` asks for, read from the store file at `path` through a fresh
/// read-only connection, as a running store's [`Store::report`] reads it (blocking: for
/// benchmarks and tools, not async code).
pub fn report_file(
    path: &Path,
    catalog: &crate::report::Catalog,
    params: &crate::report::ReportParams,
) -> Result<crate::report::Report, StoreError> {
    let conn = report::open_read_only(path)?;
    let (rows, totals) = report::run(&conn, catalog, params)?;
    Ok(crate::report::Report {
        params: params.clone(),
        rows,
        totals,
    })
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    /// The database file, for reports (each opens its own read-only connection).
    path: std::path::PathBuf,
    queue: mpsc::Sender<Job>,
    durability: Durability,
    /// Reads on the request path (click lookups): never shares a lock with listings.
    reader: Mutex<Connection>,
    /// Reads for the outbox worker and the admin API, which may scan.
    admin_reader: Mutex<Connection>,
    /// Reads for the analytics exporter and backfills.
    export_reader: Arc<Mutex<Connection>>,
    recent: Mutex<LruCache<ClickId, StoredClick>>,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `config.path` and start the writer.
    pub fn open(config: &StoreConfig, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let path = &config.path;
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let writer = open_writer(path, config.sync).map_err(|e| open_err(e.to_string()))?;
        export::on_open(&writer, config.analytics_queue).map_err(|e| open_err(e.to_string()))?;
        let open_reader = || {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| open_err(e.to_string()))
        };
        let reader = open_reader()?;
        let admin_reader = open_reader()?;
        let export_reader = open_reader()?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let batch_max = config.batch_max;
        let analytics = config.analytics_queue;
        std::thread::Builder::new()
            .name("clickstamp-store-writer".into())
            .spawn({
                let metrics = metrics.clone();
                move || writer_loop(writer, rx, batch_max, analytics, &metrics)
            })
            .map_err(|e| open_err(e.to_string()))?;
        let checkpoint_conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        let wal_max_bytes = config.wal_max_bytes;
        std::thread::Builder::new()
            .name("clickstamp-store-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_conn, wal_max_bytes, &metrics))
            .map_err(|e| open_err(e.to_string()))?;
        let cache = NonZeroUsize::new(config.click_cache.max(1)).expect("max(1) is non-zero");
        Ok(SqliteStore {
            path: path.clone(),
            queue: tx,
            durability: config.durability,
            reader: Mutex::new(reader),
            export_reader: Arc::new(Mutex::new(export_reader)),
            admin_reader: Mutex::new(admin_reader),
            recent: Mutex::new(LruCache::new(cache)),
        })
    }

    /// Hand `ops` to the writer and wait as the durability mode says.
    async fn write_remembered(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        let n = ops.len();
        match self.durability {
            Durability::Commit => {
                let (done, wait) = oneshot::channel();
                self.queue
                    .send(Job {
                        ops,
                        done: Some(done),
                    })
                    .await
                    .map_err(|_| StoreError::WriterGone)?;
                wait.await.map_err(|_| StoreError::WriterGone)?
            }
            Durability::Async => {
                // Postbacks always wait: their answer depends on the dedup outcome, and a
                // network must never get 200 for a conversion that is not on disk.
                if ops
                    .iter()
                    .any(|op| matches!(op, WriteOp::Postback(_) | WriteOp::ReplayDead { .. }))
                {
                    let (done, wait) = oneshot::channel();
                    self.queue
                        .send(Job {
                            ops,
                            done: Some(done),
                        })
                        .await
                        .map_err(|_| StoreError::WriterGone)?;
                    return wait.await.map_err(|_| StoreError::WriterGone)?;
                }
                self.queue
                    .send(Job { ops, done: None })
                    .await
                    .map_err(|_| StoreError::WriterGone)?;
                Ok(vec![WriteResult::Done; n])
            }
        }
    }

    /// Put the clicks (and their outbound offers) of `ops` in the recent-click cache.
    fn remember(&self, ops: &[WriteOp]) {
        let mut recent = self.recent.lock();
        for op in ops {
            match op {
                WriteOp::Click(c) => {
                    recent.put(c.click_id, StoredClick::from(c.as_ref()));
                }
                WriteOp::Outbound(o) => {
                    if let Some(hit) = recent.get_mut(&o.click_id) {
                        hit.last_offer_id = Some(o.offer_id.clone());
                        if !hit.outbound_offer_ids.contains(&o.offer_id)
                            && hit.outbound_offer_ids.len() < crate::store::MAX_OUTBOUND_OFFERS
                        {
                            hit.outbound_offer_ids.push(o.offer_id.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// How often the checkpointer runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

fn open_writer(path: &Path, sync: SyncMode) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        },
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Checkpoints run on their own thread (see `checkpointer`), never inside a commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // A WAL that grew under a burst is cut back to this size when it starts over.
    conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate::apply_schema(&mut conn, SCHEMA)?;
    Ok(conn)
}

/// Copy the WAL back into the database in the background. PASSIVE checkpoints never
/// block the writer, so a commit never waits for one (they were the source of
/// multi-millisecond commit stalls when SQLite ran them inside commits).
///
/// But SQLite only starts the WAL over once a checkpoint has caught up with every
/// frame, and under steady writes a passive one never does: the writer appends while
/// it copies. Left alone the WAL then grows for as long as the load lasts (a gigabyte
/// in a minute of postbacks), and commits and reads slow down with it. So once it holds
/// more than `wal_max_bytes` of frames, a RESTART checkpoint finishes the copy while
/// holding writes back for a moment (the writer's busy timeout covers it), and the next
/// commit starts the WAL from the beginning.
fn checkpointer(conn: Connection, wal_max_bytes: u64, metrics: &Metrics) {
    let _ = conn.busy_timeout(std::time::Duration::from_millis(100));
    // One WAL frame holds one page.
    let page_size = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .map_or(4096, |p| p.max(512) as u64);
    let wal_max_pages = wal_max_bytes / page_size;
    let frames = |r: &rusqlite::Row<'_>| r.get::<_, i64>(1);
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], frames) {
            Ok(log) if log >= 0 && log as u64 > wal_max_pages => {
                let started = Instant::now();
                match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
                    Ok(0) => {
                        metrics.store_wal_restarts.inc();
                        tracing::debug!(
                            frames = log,
                            took_ms = started.elapsed().as_millis() as u64,
                            "wal restarted"
                        );
                    }
                    Ok(_) => tracing::debug!(frames = log, "wal restart was busy; will retry"),
                    Err(e) => tracing::warn!(error = %e, "wal restart failed; will retry"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "wal checkpoint failed; will retry"),
        }
    }
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &WriteOp) -> rusqlite::Result<WriteResult> {
    Ok(match op {
        WriteOp::Click(c) => {
            apply::insert_click(tx, c)?;
            WriteResult::Done
        }
        WriteOp::Outbound(o) => {
            apply::insert_outbound(tx, o)?;
            WriteResult::Done
        }
        WriteOp::Postback(w) => WriteResult::Postback(apply::apply_postback(tx, w)?),
        WriteOp::Delivery(d) => {
            apply::record_delivery(tx, d)?;
            WriteResult::Done
        }
        WriteOp::ReplayDead { outbox_id, now_ms } => {
            WriteResult::Replayed(apply::replay_dead(tx, *outbox_id, *now_ms)?)
        }
        WriteOp::AnalyticsProgress {
            exported,
            changes,
            through_ms,
            backfill,
            now_ms,
        } => {
            export::progress(
                tx,
                exported,
                *changes,
                *through_ms,
                backfill.as_ref(),
                *now_ms as i64,
            )?;
            WriteResult::Done
        }
        WriteOp::Prune(step) => WriteResult::Pruned(retention::prune_batch(tx, step)?),
    })
}

/// The error says the write lock could not be taken (another writer held it past the
/// busy timeout), not that a write in the batch was at fault.
fn lock_not_taken(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn commit_batch(
    conn: &mut Connection,
    jobs: &[Job],
    analytics: bool,
) -> rusqlite::Result<Vec<Vec<WriteResult>>> {
    // IMMEDIATE: take the write lock up front, waiting (busy timeout) while the
    // checkpointer restarts the WAL. A deferred transaction would read first and then
    // fail to upgrade its outdated snapshot, without waiting.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut one = Vec::with_capacity(job.ops.len());
        for op in &job.ops {
            one.push(apply_op(&tx, op)?);
        }
        results.push(one);
    }
    if analytics {
        let changes = crate::store::export::Changes::of(
            jobs.iter()
                .zip(&results)
                .flat_map(|(job, r)| job.ops.iter().zip(r.iter().map(Some))),
        );
        export::record(&tx, &changes, crate::store::export::now_ms())?;
    }
    tx.commit()?;
    Ok(results)
}

/// Group commit: block for the first job, then take whatever else is already queued
/// (up to `batch_max` operations) and commit it all in one transaction. Under load the
/// batch grows by itself; when idle a lone write commits immediately.
fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    analytics: bool,
    metrics: &Metrics,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    let mut busy = false;
    while let Some(first) = rx.blocking_recv() {
        let mut ops = first.ops.len();
        jobs.push(first);
        let drain = |jobs: &mut Vec<Job>, ops: &mut usize, rx: &mut mpsc::Receiver<Job>| {
            while *ops < batch_max {
                match rx.try_recv() {
                    Ok(job) => {
                        *ops += job.ops.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        };
        drain(&mut jobs, &mut ops, &mut rx);
        // Under load, linger a moment so the batch fills: every commit rewrites whole
        // WAL pages, so a few more writes per commit cost far less than another commit.
        // A lone write on an idle store commits at once.
        if busy && ops < batch_max / 4 {
            std::thread::sleep(BATCH_LINGER);
            drain(&mut jobs, &mut ops, &mut rx);
        }
        busy = jobs.len() > 1;
        let started = Instant::now();
        match commit_batch(&mut conn, &jobs, analytics) {
            Ok(results) => {
                for (job, result) in jobs.iter_mut().zip(results) {
                    if let Some(done) = job.done.take() {
                        // The requester may have hung up; the data is on disk regardless.
                        let _ = done.send(Ok(result));
                    }
                }
            }
            Err(batch_error) if lock_not_taken(&batch_error) => {
                // Nothing in the batch is to blame: the write lock was not to be had
                // within the busy timeout. Retrying each job alone would wait that long
                // again per job (a batch of N stalled the writer for N+1 timeouts) while
                // networks time out; every job gets its prompt 503 instead.
                tracing::error!(error = %batch_error, jobs = jobs.len(), "store write lock not taken; the batch is refused");
                metrics.store_errors.inc_by(jobs.len() as u64);
                let error = StoreError::from(batch_error);
                for job in jobs.iter_mut() {
                    if let Some(done) = job.done.take() {
                        let _ = done.send(Err(error.clone()));
                    }
                }
            }
            Err(batch_error) => {
                tracing::warn!(error = %batch_error, jobs = jobs.len(), "batch failed; retrying each write alone");
                // One poisoned write must not fail its neighbours: retry each job alone.
                for job in jobs.iter_mut() {
                    let alone = commit_batch(&mut conn, std::slice::from_ref(job), analytics)
                        .map(|mut r| r.pop().unwrap_or_default())
                        .map_err(StoreError::from);
                    if let Err(e) = &alone {
                        tracing::error!(error = %e, "store write failed");
                        metrics.store_errors.inc();
                    }
                    if let Some(done) = job.done.take() {
                        let _ = done.send(alone);
                    }
                }
            }
        }
        metrics
            .store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.store_batch_ops.observe(ops as f64);
        jobs.clear();
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError> {
        // Cached first, so a request right behind this one (a /go after the landing
        // page) finds the click without a read; forgotten again if the write fails, so
        // no later postback is attributed to a click that was never stored.
        self.remember(&ops);
        let touched: Vec<ClickId> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Click(c) => Some(c.click_id),
                WriteOp::Outbound(o) => Some(o.click_id),
                _ => None,
            })
            .collect();
        let result = self.write_remembered(ops).await;
        if result.is_err() {
            let mut recent = self.recent.lock();
            for id in &touched {
                recent.pop(id);
            }
        }
        result
    }

    async fn click(&self, id: &ClickId) -> Result<Option<StoredClick>, StoreError> {
        if let Some(hit) = self.recent.lock().get(id) {
            return Ok(Some(hit.clone()));
        }
        let found = read::click(&self.reader.lock(), id)?;
        if let Some(c) = &found {
            self.recent.lock().put(*id, c.clone());
        }
        Ok(found)
    }

    async fn click_count(&self) -> Result<u64, StoreError> {
        Ok(read::click_count(&self.admin_reader.lock())?)
    }

    async fn due_outbox(
        &self,
        now_ms: u64,
        limit: u32,
        in_flight: &[i64],
    ) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(read::due_outbox(
            &self.admin_reader.lock(),
            now_ms,
            limit,
            in_flight,
        )?)
    }

    async fn due_destination(
        &self,
        claim: &crate::store::DestinationClaim,
    ) -> Result<Vec<crate::store::DestinationEntry>, StoreError> {
        Ok(destinations::due(&self.admin_reader.lock(), claim)?)
    }

    async fn outbox(&self, state: Option<&str>, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(read::outbox(&self.admin_reader.lock(), state, limit)?)
    }

    async fn outbox_for_click(&self, click_id: &str) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(read::outbox_for_click(&self.admin_reader.lock(), click_id)?)
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        Ok(read::outbox_counts(&self.admin_reader.lock(), true)?)
    }

    async fn outbox_backlog(&self) -> Result<OutboxCounts, StoreError> {
        Ok(read::outbox_counts(&self.admin_reader.lock(), false)?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.queue.is_closed() {
            return Err(StoreError::WriterGone);
        }
        Ok(read::ping(&self.admin_reader.lock())?)
    }

    async fn journal(&self, filter: &JournalFilter) -> Result<Vec<JournalRow>, StoreError> {
        Ok(read::journal(&self.admin_reader.lock(), filter)?)
    }

    async fn journal_entry(&self, id: i64) -> Result<Option<JournalRow>, StoreError> {
        Ok(read::journal_entry(&self.admin_reader.lock(), id)?)
    }

    async fn conversions_for_click(
        &self,
        click_id: &str,
    ) -> Result<Vec<ConversionRow>, StoreError> {
        Ok(read::conversions_for_click(
            &self.admin_reader.lock(),
            click_id,
        )?)
    }

    async fn rotation_figures(
        &self,
        campaign_id: &str,
        since_ms: u64,
    ) -> Result<Vec<crate::store::RotationFigure>, StoreError> {
        Ok(rotation::figures(
            &self.admin_reader.lock(),
            campaign_id,
            since_ms,
        )?)
    }

    async fn report(
        &self,
        catalog: &crate::report::Catalog,
        params: &crate::report::ReportParams,
    ) -> Result<crate::report::Report, StoreError> {
        let path = self.path.clone();
        let (catalog, params) = (catalog.clone(), params.clone());
        // SQLite calls block: keep them off the async workers.
        tokio::task::spawn_blocking(move || report_file(&path, &catalog, &params))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("report task failed: {e}"))))
    }

    async fn export_claim(
        &self,
        max_entries: usize,
        max_changes: u64,
        _lease: std::time::Duration,
    ) -> Result<Option<ExportBatch>, StoreError> {
        self.on_export_reader(move |conn| export::claim(conn, max_entries, max_changes))
            .await
    }

    async fn export_done(&self, batch: &ExportBatch) -> Result<(), StoreError> {
        self.write(vec![WriteOp::AnalyticsProgress {
            exported: batch.queue_ids.clone(),
            changes: batch.changes,
            through_ms: Some(batch.newest_ms),
            backfill: None,
            now_ms: crate::store::export::now_ms() as u64,
        }])
        .await
        .map(drop)
    }

    async fn export_backlog(&self) -> Result<ExportBacklog, StoreError> {
        self.on_export_reader(export::backlog).await
    }

    async fn backfill_cursor(&self) -> Result<BackfillCursor, StoreError> {
        self.on_export_reader(export::cursor).await
    }

    async fn backfill_page(
        &self,
        from: &BackfillCursor,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let from = from.clone();
        self.on_export_reader(move |conn| export::page(conn, &from, limit))
            .await
    }

    async fn backfill_progress(&self, cursor: &BackfillCursor) -> Result<(), StoreError> {
        self.write(vec![WriteOp::AnalyticsProgress {
            exported: Vec::new(),
            changes: 0,
            through_ms: None,
            backfill: Some(cursor.clone()),
            now_ms: crate::store::export::now_ms() as u64,
        }])
        .await
        .map(drop)
    }

    async fn prune(
        &self,
        step: &crate::store::retention::PruneStep,
    ) -> Result<crate::store::retention::PruneOutcome, StoreError> {
        self.prune_through_writer(step).await
    }
}

impl SqliteStore {
    /// Run `f` on the exporter's connection, off the async workers (exports and
    /// backfills read many rows).
    async fn on_export_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.export_reader.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock()).map_err(StoreError::from))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("export task failed: {e}"))))
    }
}
