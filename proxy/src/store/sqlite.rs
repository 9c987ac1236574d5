//! The embedded store: SQLite in WAL mode, one writer thread doing group commit.

use super::{ClickRecord, OutboundRecord, Store, StoreError, StoredClick, WriteOp};
use crate::config::{Durability, StoreConfig, SyncMode};
use crate::metrics::Metrics;
use async_trait::async_trait;
use clickstamp_plugins::ClickId;
use lru::LruCache;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Queue depth between request handlers and the writer. Deep enough to absorb a burst
/// while a batch commits; when full, requests wait (backpressure) instead of piling up.
const QUEUE_DEPTH: usize = 16_384;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS clicks (
    click_id        TEXT PRIMARY KEY,
    ts_ms           INTEGER NOT NULL,
    campaign_id     TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    source_click_id TEXT,
    cost            REAL,
    sub1 TEXT, sub2 TEXT, sub3 TEXT, sub4 TEXT, sub5 TEXT,
    ip              TEXT,
    user_agent      TEXT,
    referrer        TEXT,
    entry           TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbound_clicks (
    id          INTEGER PRIMARY KEY,
    click_id    TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    campaign_id TEXT NOT NULL,
    offer_id    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbound_clicks_by_click ON outbound_clicks (click_id);
CREATE INDEX IF NOT EXISTS clicks_by_campaign_time ON clicks (campaign_id, ts_ms);
"#;

struct Job {
    ops: Vec<WriteOp>,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    queue: mpsc::Sender<Job>,
    durability: Durability,
    reader: Mutex<Connection>,
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
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let batch_max = config.batch_max;
        std::thread::Builder::new()
            .name("clickstamp-store-writer".into())
            .spawn(move || writer_loop(writer, rx, batch_max, &metrics))
            .map_err(|e| open_err(e.to_string()))?;
        let cache = NonZeroUsize::new(config.click_cache.max(1)).expect("max(1) is non-zero");
        Ok(SqliteStore {
            queue: tx,
            durability: config.durability,
            reader: Mutex::new(reader),
            recent: Mutex::new(LruCache::new(cache)),
        })
    }
}

fn open_writer(path: &Path, sync: SyncMode) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
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
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn insert_click(tx: &rusqlite::Transaction<'_>, c: &ClickRecord) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id, cost,
            sub1, sub2, sub3, sub4, sub5, ip, user_agent, referrer, entry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let [s1, s2, s3, s4, s5] = &c.sub_ids;
    stmt.execute(params![
        c.click_id.to_hex(),
        c.ts_ms as i64,
        c.campaign_id,
        c.source_id,
        c.source_click_id,
        c.cost,
        s1,
        s2,
        s3,
        s4,
        s5,
        c.ip,
        c.user_agent,
        c.referrer,
        c.entry,
    ])?;
    Ok(())
}

fn insert_outbound(tx: &rusqlite::Transaction<'_>, o: &OutboundRecord) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbound_clicks (click_id, ts_ms, campaign_id, offer_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    stmt.execute(params![
        o.click_id.to_hex(),
        o.ts_ms as i64,
        o.campaign_id,
        o.offer_id
    ])?;
    Ok(())
}

fn commit_batch(conn: &mut Connection, jobs: &[Job]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for job in jobs {
        for op in &job.ops {
            match op {
                WriteOp::Click(c) => insert_click(&tx, c)?,
                WriteOp::Outbound(o) => insert_outbound(&tx, o)?,
            }
        }
    }
    tx.commit()
}

/// Group commit: block for the first job, then take whatever else is already queued
/// (up to `batch_max` operations) and commit it all in one transaction. Under load the
/// batch grows by itself; when idle a lone click commits immediately.
fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    metrics: &Metrics,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while let Some(first) = rx.blocking_recv() {
        let mut ops = first.ops.len();
        jobs.push(first);
        while ops < batch_max {
            match rx.try_recv() {
                Ok(job) => {
                    ops += job.ops.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        if commit_batch(&mut conn, &jobs).is_ok() {
            for job in jobs.iter_mut() {
                if let Some(done) = job.done.take() {
                    // The requester may have hung up; the data is on disk regardless.
                    let _ = done.send(Ok(()));
                }
            }
        } else {
            // One poisoned write must not fail its neighbours: retry each job alone.
            for job in jobs.iter_mut() {
                let alone =
                    commit_batch(&mut conn, std::slice::from_ref(job)).map_err(StoreError::from);
                if let Err(e) = &alone {
                    tracing::error!(error = %e, "store write failed");
                    metrics.store_errors.inc();
                }
                if let Some(done) = job.done.take() {
                    let _ = done.send(alone);
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
    async fn write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        {
            let mut recent = self.recent.lock();
            for op in &ops {
                if let WriteOp::Click(c) = op {
                    recent.put(
                        c.click_id,
                        StoredClick {
                            click_id: c.click_id.to_hex(),
                            ts_ms: c.ts_ms,
                            campaign_id: c.campaign_id.clone(),
                            source_id: c.source_id.clone(),
                            source_click_id: c.source_click_id.clone(),
                            cost: c.cost,
                        },
                    );
                }
            }
        }
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
            Durability::Async => self
                .queue
                .send(Job { ops, done: None })
                .await
                .map_err(|_| StoreError::WriterGone),
        }
    }

    async fn click(&self, id: &ClickId) -> Result<Option<StoredClick>, StoreError> {
        if let Some(hit) = self.recent.lock().get(id) {
            return Ok(Some(hit.clone()));
        }
        let conn = self.reader.lock();
        let row = conn
            .prepare_cached(
                "SELECT click_id, ts_ms, campaign_id, source_id, source_click_id, cost FROM clicks WHERE click_id = ?1",
            )?
            .query_row([id.to_hex()], |r| {
                Ok(StoredClick {
                    click_id: r.get(0)?,
                    ts_ms: r.get::<_, i64>(1)? as u64,
                    campaign_id: r.get(2)?,
                    source_id: r.get(3)?,
                    source_click_id: r.get(4)?,
                    cost: r.get(5)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    async fn click_count(&self) -> Result<u64, StoreError> {
        let conn = self.reader.lock();
        let n: i64 = conn.query_row("SELECT count(*) FROM clicks", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}
