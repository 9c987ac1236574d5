//! The node's writer: group commit into PostgreSQL, with the postbacks' check-then-act
//! made safe against other nodes by advisory locks taken before anything is read.

use super::spool::{ClickRow, OutboundRow, Spool, Spooled};
use super::{error, pool_error, Job};
use crate::metrics::Metrics;
use crate::store::decide::{pick_twin, relays_new, twin_origin, Action, Existing};
use crate::store::export::Changes;
use crate::store::{
    ConversionCandidate, DeliveryResult, PostbackCommit, PostbackOutcome, PostbackWrite,
    StoreError, Verdict, WriteOp, WriteResult,
};
use deadpool_postgres::{Pool, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::Row;

/// How often a batch that lost a race (deadlock, serialization failure, a unique key
/// another node took first) is tried again before its writes are tried one by one.
const RACE_RETRIES: u32 = 4;

/// SQLSTATEs of a transaction that lost a race with another node's and may simply be
/// run again: deadlock_detected, serialization_failure, unique_violation.
fn lost_a_race(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(text)
        if text.starts_with("40P01") || text.starts_with("40001") || text.starts_with("23505"))
}

/// Group commit: wait for a job, take whatever else is queued (up to `batch_max`
/// operations), commit it all in one transaction, answer every job.
/// What the writer needs besides its queue.
pub(super) struct Writer {
    pub pool: Pool,
    pub batch_max: usize,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    /// Set while the database is unreachable: clicks go straight to the spool.
    pub outage: Arc<AtomicBool>,
    /// Queue each transaction's changes for the analytics exporter.
    pub analytics: bool,
}

/// Put `ops` in the spool if they may go there; `Ok(true)` when spooled.
pub(super) fn spool_if_clicks(
    spool: &Spool,
    metrics: &Metrics,
    ops: &[WriteOp],
) -> Result<bool, StoreError> {
    let Some(writes) = Spooled::of(ops) else {
        return Ok(false);
    };
    spool.put(&writes)?;
    metrics.store_spooled.inc_by(writes.len() as u64);
    metrics.store_spool_depth.add(writes.len() as i64);
    Ok(true)
}

/// The queue the node's writers share: each takes a batch from it in turn.
pub(super) type SharedQueue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

/// Take the next batch: wait for a job, then whatever else is queued (up to
/// `batch_max` operations). `None` once the store is gone.
async fn next_batch(queue: &SharedQueue, batch_max: usize, jobs: &mut Vec<Job>) -> Option<usize> {
    let mut rx = queue.lock().await;
    let first = rx.recv().await?;
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
    Some(ops)
}

/// One of the node's writers (`store.writers`). With several, each commits its own
/// batch on its own connection: a commit waits for the WAL to reach disk (and a
/// synchronous standby), and while one writer waits the next batch is already being
/// applied. Their order does not matter: clicks are idempotent, and
/// postbacks touching the same conversion queue on its advisory lock, as they do
/// across nodes.
pub(super) async fn writer_loop(w: Writer, queue: SharedQueue) {
    let Writer {
        pool,
        batch_max,
        metrics,
        spool,
        outage,
        analytics,
    } = w;
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while let Some(ops) = next_batch(&queue, batch_max, &mut jobs).await {
        let started = Instant::now();
        match commit_retrying(&pool, &jobs, analytics).await {
            Ok(results) => {
                for (job, result) in jobs.iter_mut().zip(results) {
                    if let Some(done) = job.done.take() {
                        let _ = done.send(Ok(result));
                    }
                }
            }
            Err(batch_error @ (StoreError::Unavailable(_) | StoreError::WriterGone)) => {
                // Nothing in the batch is to blame and nothing was written. Clicks go
                // to the spool (and are acknowledged from there); anything else gets
                // its prompt 503 (a retry of each alone would only wait again).
                outage.store(true, Ordering::Relaxed);
                tracing::error!(error = %batch_error, jobs = jobs.len(), "store unreachable; clicks spooled, other writes refused");
                for job in jobs.iter_mut() {
                    let answer = match spool_if_clicks(&spool, &metrics, &job.ops) {
                        Ok(true) => Ok(vec![WriteResult::Done; job.ops.len()]),
                        Ok(false) => Err(batch_error.clone()),
                        Err(spool_error) => {
                            tracing::error!(error = %spool_error, "cannot spool clicks either");
                            Err(batch_error.clone())
                        }
                    };
                    if answer.is_err() {
                        metrics.store_errors.inc();
                    }
                    if let Some(done) = job.done.take() {
                        let _ = done.send(answer);
                    }
                }
            }
            Err(batch_error) => {
                tracing::warn!(error = %batch_error, jobs = jobs.len(), "batch failed; retrying each write alone");
                for job in jobs.iter_mut() {
                    let alone = commit_retrying(&pool, std::slice::from_ref(job), analytics)
                        .await
                        .map(|mut r| r.pop().unwrap_or_default());
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

async fn commit_retrying(
    pool: &Pool,
    jobs: &[Job],
    analytics: bool,
) -> Result<Vec<Vec<WriteResult>>, StoreError> {
    let mut attempt = 0;
    loop {
        match commit_batch(pool, jobs, analytics).await {
            Err(e) if lost_a_race(&e) && attempt < RACE_RETRIES => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "batch lost a race with another node; again");
                // A little jitter so two nodes that collided do not collide again.
                let pause = Duration::from_micros(rand::random::<u64>() % (2_000 << attempt));
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// The advisory lock name of a converted postback: its click and event, the scope
/// within which dedup and the pixel/S2S merge look for a match. PostgreSQL hashes it
/// (`hashtextextended`), so every node and version names the same lock.
fn lock_name(c: &ConversionCandidate) -> String {
    format!("{}\u{1f}{}", c.click_id, c.event)
}

async fn commit_batch(
    pool: &Pool,
    jobs: &[Job],
    analytics: bool,
) -> Result<Vec<Vec<WriteResult>>, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(error)?;
    let ops = || jobs.iter().flat_map(|j| j.ops.iter());

    // Locks first, in one order for every node: two batches wanting the same pair of
    // locks take them in the same order, so they queue instead of deadlocking.
    let mut locks: Vec<String> = ops()
        .filter_map(|op| match op {
            WriteOp::Postback(w) => match &w.verdict {
                Verdict::Convert(c) => Some(lock_name(c)),
                Verdict::Rejected { .. } => None,
            },
            _ => None,
        })
        .collect();
    locks.sort_unstable();
    locks.dedup();
    if !locks.is_empty() {
        // `unnest` yields the array in order, and each row takes its lock as it is
        // produced.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(name, 0)) FROM unnest($1::text[]) AS name",
            &[&locks],
        )
        .await
        .map_err(error)?;
    }

    let clicks: Vec<ClickRow> = ops()
        .filter_map(|op| match op {
            WriteOp::Click(c) => Some(ClickRow::from(c.as_ref())),
            _ => None,
        })
        .collect();
    let outbound: Vec<OutboundRow> = ops()
        .filter_map(|op| match op {
            WriteOp::Outbound(o) => Some(OutboundRow::from(o)),
            _ => None,
        })
        .collect();
    insert_clicks(&tx, &clicks).await?;
    insert_outbound(&tx, &outbound).await?;

    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut one = Vec::with_capacity(job.ops.len());
        for op in &job.ops {
            one.push(match op {
                WriteOp::Click(_) | WriteOp::Outbound(_) => WriteResult::Done,
                WriteOp::Postback(w) => WriteResult::Postback(apply_postback(&tx, w).await?),
                WriteOp::Delivery(d) => {
                    record_delivery(&tx, d).await?;
                    WriteResult::Done
                }
                WriteOp::ReplayDead { outbox_id, now_ms } => {
                    WriteResult::Replayed(replay_dead(&tx, *outbox_id, *now_ms).await?)
                }
                WriteOp::AnalyticsProgress {
                    exported,
                    changes,
                    through_ms,
                    backfill,
                    now_ms,
                } => {
                    super::export::progress(
                        &tx,
                        exported,
                        *changes,
                        *through_ms,
                        backfill.as_ref(),
                        *now_ms as i64,
                    )
                    .await?;
                    WriteResult::Done
                }
                WriteOp::Prune(step) => {
                    WriteResult::Pruned(super::retention::prune_batch(&tx, step).await?)
                }
            });
        }
        results.push(one);
    }
    if analytics {
        let changes = Changes::of(
            jobs.iter()
                .zip(&results)
                .flat_map(|(job, r)| job.ops.iter().zip(r.iter().map(Some))),
        );
        super::export::record(&tx, &changes, crate::store::export::now_ms()).await?;
    }
    tx.commit().await.map_err(error)?;
    Ok(results)
}

/// Forward spooled writes in one transaction; committed when this returns.
pub(super) async fn forward_spooled(
    pool: &Pool,
    writes: &[Spooled],
    analytics: bool,
) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(error)?;
    let mut clicks = Vec::new();
    let mut outbound = Vec::new();
    for w in writes {
        match w {
            Spooled::Click(c) => clicks.push(c.as_ref().clone()),
            Spooled::Outbound(o) => outbound.push(o.clone()),
        }
    }
    insert_clicks(&tx, &clicks).await?;
    insert_outbound(&tx, &outbound).await?;
    if analytics {
        let mut changes = Changes::default();
        for c in &clicks {
            changes.click(&c.click_id);
        }
        for o in &outbound {
            changes.outbound(&o.click_id);
        }
        super::export::record(&tx, &changes, crate::store::export::now_ms()).await?;
    }
    tx.commit().await.map_err(error)
}

/// Every click of the batch in one statement (arrays unnested into rows): a batch of a
/// thousand clicks costs one round trip, not a thousand. A click already there (a
/// spooled one forwarded twice) is left as it is.
async fn insert_clicks(tx: &Transaction<'_>, clicks: &[ClickRow]) -> Result<(), StoreError> {
    if clicks.is_empty() {
        return Ok(());
    }
    let texts = |f: &dyn Fn(&ClickRow) -> Option<&str>| -> Vec<Option<&str>> {
        clicks.iter().map(f).collect()
    };
    let ids = texts(&|c| Some(c.click_id.as_str()));
    let ts: Vec<i64> = clicks.iter().map(|c| c.ts_ms).collect();
    let campaign = texts(&|c| Some(c.campaign_id.as_str()));
    let source = texts(&|c| Some(c.source_id.as_str()));
    let source_click_id = texts(&|c| c.source_click_id.as_deref());
    let source_click_param = texts(&|c| c.source_click_param.as_deref());
    let cost: Vec<Option<f64>> = clicks.iter().map(|c| c.cost).collect();
    let subs: Vec<Vec<Option<&str>>> = (0..5)
        .map(|i| texts(&|c| c.sub_ids[i].as_deref()))
        .collect();
    let ip = texts(&|c| c.ip.as_deref());
    let ua = texts(&|c| c.user_agent.as_deref());
    let referrer = texts(&|c| c.referrer.as_deref());
    let entry = texts(&|c| Some(c.entry.as_str()));
    let quality = texts(&|c| Some(c.profile.quality.as_str()));
    let quality_reasons = texts(&|c| Some(c.profile.quality_reasons.as_str()));
    let excluded: Vec<bool> = clicks
        .iter()
        .map(|c| c.profile.excluded.is_some())
        .collect();
    let excluded_reason = texts(&|c| c.profile.excluded.as_deref());
    let lander = texts(&|c| Some(c.profile.lander.as_str()));
    let country = texts(&|c| Some(c.profile.country.as_str()));
    let device = texts(&|c| Some(c.profile.device.as_str()));
    let os = texts(&|c| Some(c.profile.os.as_str()));
    let browser = texts(&|c| Some(c.profile.browser.as_str()));
    let route = texts(&|c| Some(c.profile.route.as_str()));
    let stmt = tx
        .prepare_cached(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id, source_click_param, cost,
                sub1, sub2, sub3, sub4, sub5, ip, user_agent, referrer, entry,
                quality, quality_reasons, excluded, excluded_reason, lander, country, device, os, browser, route)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                $17::text[], $18::text[], $19::bool[], $20::text[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[])
             ON CONFLICT (click_id) DO NOTHING",
        )
        .await
        .map_err(error)?;
    tx.execute(
        &stmt,
        &[
            &ids,
            &ts,
            &campaign,
            &source,
            &source_click_id,
            &source_click_param,
            &cost,
            &subs[0],
            &subs[1],
            &subs[2],
            &subs[3],
            &subs[4],
            &ip,
            &ua,
            &referrer,
            &entry,
            &quality,
            &quality_reasons,
            &excluded,
            &excluded_reason,
            &lander,
            &country,
            &device,
            &os,
            &browser,
            &route,
        ],
    )
    .await
    .map_err(error)?;
    Ok(())
}

/// Every outbound click of the batch in one statement; `seq` comes from the table's
/// sequence, in batch order.
async fn insert_outbound(tx: &Transaction<'_>, rows: &[OutboundRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = rows.iter().map(|o| o.click_id.as_str()).collect();
    let ts: Vec<i64> = rows.iter().map(|o| o.ts_ms).collect();
    let campaign: Vec<&str> = rows.iter().map(|o| o.campaign_id.as_str()).collect();
    let offer: Vec<&str> = rows.iter().map(|o| o.offer_id.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbound_clicks (click_id, ts_ms, campaign_id, offer_id)
             SELECT c, t, camp, off FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) WITH ORDINALITY AS o(c, t, camp, off, n)
             ORDER BY n",
        )
        .await
        .map_err(error)?;
    tx.execute(&stmt, &[&ids, &ts, &campaign, &offer])
        .await
        .map_err(error)?;
    Ok(())
}

fn existing(r: &Row) -> Existing {
    Existing {
        id: r.get(0),
        status: r.get(1),
        origin: r.get(2),
        txid: r.get(3),
    }
}

/// The conversion the candidate is (its own key), else its twin of the other origin,
/// as `LIFECYCLE.md` defines them; the caller holds the (click, event) lock. Two seeks
/// in `conversions_by_click_key`, as in the embedded store: the own key is a point
/// lookup, and only the other origin's conversions are read for a twin (an offer with
/// many conversions per click has many of its own origin, and few of the other).
async fn find_existing(
    tx: &Transaction<'_>,
    c: &ConversionCandidate,
) -> Result<Option<Existing>, StoreError> {
    let own_origin_sql = if c.origin == "s2s" {
        "SELECT id, status, origin, txid FROM conversions
         WHERE click_id = $1 AND event = $2 AND origin = 's2s' AND dedup_key = $3"
    } else {
        "SELECT id, status, origin, txid FROM conversions
         WHERE click_id = $1 AND event = $2 AND dedup_key = $3 ORDER BY origin = 's2s' DESC, id LIMIT 1"
    };
    let stmt = tx.prepare_cached(own_origin_sql).await.map_err(error)?;
    if let Some(row) = tx
        .query_opt(&stmt, &[&c.click_id, &c.event, &c.dedup_key])
        .await
        .map_err(error)?
    {
        return Ok(Some(existing(&row)));
    }
    let stmt = tx
        .prepare_cached(
            "SELECT id, status, origin, txid FROM conversions
             WHERE click_id = $1 AND event = $2 AND origin = $3 ORDER BY id",
        )
        .await
        .map_err(error)?;
    let rows = tx
        .query(&stmt, &[&c.click_id, &c.event, &twin_origin(c)])
        .await
        .map_err(error)?;
    pick_twin(rows.iter().map(|r| Ok::<_, StoreError>(existing(r))), c)
}

/// The status a postback gave its conversion, kept in `conversion_history`.
struct HistoryEntry<'c> {
    conversion_id: i64,
    candidate: &'c ConversionCandidate,
}

/// Journal the postback and, with `history`, record the status it set, in one
/// statement (one round trip): the history row names the journal row just inserted.
async fn insert_journal(
    tx: &Transaction<'_>,
    w: &PostbackWrite,
    outcome: &str,
    conversion_id: Option<i64>,
    history: Option<HistoryEntry<'_>>,
) -> Result<i64, StoreError> {
    const JOURNAL: &str =
        "INSERT INTO postback_journal (ts_ms, network_id, method, remote_ip, raw_query, raw_body, content_type,
            origin, outcome, reason, message, click_id, replay_of, conversion_id, cut)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id";
    let j = &w.journal;
    let (reason, message, click_id) = match &w.verdict {
        Verdict::Rejected {
            reason,
            message,
            click_id,
        } => (Some(*reason), Some(message.as_str()), click_id.as_deref()),
        Verdict::Convert(c) => (None, None, Some(c.click_id.as_str())),
    };
    let cut = j
        .cut
        .as_ref()
        .and_then(|cut| serde_json::to_string(cut).ok());
    let ts = j.ts_ms as i64;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &ts,
        &j.network_id,
        &j.method,
        &j.remote_ip,
        &j.raw_query,
        &j.raw_body,
        &j.content_type,
        &j.origin,
        &outcome,
        &reason,
        &message,
        &click_id,
        &j.replay_of,
        &conversion_id,
        &cut,
    ];
    let stmt = match &history {
        None => tx.prepare_cached(JOURNAL).await,
        Some(h) => {
            params.extend([
                &h.conversion_id as &(dyn tokio_postgres::types::ToSql + Sync),
                &h.candidate.status,
                &h.candidate.payout,
                &h.candidate.origin,
            ]);
            tx.prepare_cached(&format!(
                "WITH journal AS ({JOURNAL}),
                 history AS (INSERT INTO conversion_history (conversion_id, ts_ms, status, payout, origin, journal_id)
                             SELECT $16, $1, $17, $18, $19, id FROM journal)
                 SELECT id FROM journal"
            ))
            .await
        }
    }
    .map_err(error)?;
    let row = tx.query_one(&stmt, &params).await.map_err(error)?;
    Ok(row.get(0))
}

async fn enqueue(
    tx: &Transaction<'_>,
    conversion_id: i64,
    c: &ConversionCandidate,
    url: &str,
    kind: &str,
    now: u64,
    due: u64,
) -> Result<(), StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7)",
        )
        .await
        .map_err(error)?;
    tx.execute(
        &stmt,
        &[
            &conversion_id,
            &c.click_id,
            &c.source_id,
            &kind,
            &url,
            &(due as i64),
            &(now as i64),
        ],
    )
    .await
    .map_err(error)?;
    Ok(())
}

async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = tx.prepare_cached(sql).await.map_err(error)?;
    tx.execute(&stmt, params).await.map_err(error)
}

/// Dedup and apply a postback, and journal it, in the batch's transaction: the raw
/// request is committed exactly when its effects are.
async fn apply_postback(
    tx: &Transaction<'_>,
    w: &PostbackWrite,
) -> Result<PostbackCommit, StoreError> {
    let now = w.journal.ts_ms;
    let c = match &w.verdict {
        Verdict::Rejected { .. } => {
            let journal_id =
                insert_journal(tx, w, PostbackOutcome::Rejected.as_str(), None, None).await?;
            return Ok(PostbackCommit {
                journal_id,
                outcome: PostbackOutcome::Rejected,
                conversion_id: None,
                status: None,
                relayed: false,
            });
        }
        Verdict::Convert(c) => c,
    };
    let action = Action::decide(c, find_existing(tx, c).await?);
    let now_i = now as i64;
    let (outcome, conversion_id, status) = match &action {
        Action::New => {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, network_id, offer_id, event, txid,
                        payout, currency, status, origin, created_ms, updated_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING id",
                )
                .await
                .map_err(error)?;
            let row = tx
                .query_one(
                    &stmt,
                    &[
                        &c.dedup_key,
                        &c.click_id,
                        &c.campaign_id,
                        &c.source_id,
                        &c.network_id,
                        &c.offer_id,
                        &c.event,
                        &c.txid,
                        &c.payout,
                        &c.currency,
                        &c.status,
                        &c.origin,
                        &now_i,
                    ],
                )
                .await
                .map_err(error)?;
            (
                PostbackOutcome::Accepted,
                row.get::<_, i64>(0),
                c.status.to_string(),
            )
        }
        Action::UpgradePixel(e) => {
            // S2S is authoritative: the conversion takes the S2S key, payout and status.
            execute(
                tx,
                "UPDATE conversions SET dedup_key = $2, origin = 's2s', txid = COALESCE($3, txid), network_id = COALESCE($4, network_id),
                    payout = COALESCE($5, payout), currency = COALESCE($6, currency), status = $7, updated_ms = $8 WHERE id = $1",
                &[&e.id, &c.dedup_key, &c.txid, &c.network_id, &c.payout, &c.currency, &c.status, &now_i],
            )
            .await?;
            (PostbackOutcome::StatusChanged, e.id, c.status.to_string())
        }
        Action::Transition(e) => {
            execute(
                tx,
                "UPDATE conversions SET status = $2, payout = COALESCE($3, payout), currency = COALESCE($4, currency), updated_ms = $5 WHERE id = $1",
                &[&e.id, &c.status, &c.payout, &c.currency, &now_i],
            )
            .await?;
            (PostbackOutcome::StatusChanged, e.id, c.status.to_string())
        }
        Action::Duplicate(e) => {
            let claimed_txid = Action::claimed_txid(c, e);
            execute(
                tx,
                "UPDATE conversions SET duplicates = duplicates + 1, txid = COALESCE(txid, $2) WHERE id = $1",
                &[&e.id, &claimed_txid],
            )
            .await?;
            (PostbackOutcome::Duplicate, e.id, e.status.clone())
        }
    };
    // Every status a conversion takes is kept, with the postback that set it (an
    // upgrade only happens for S2S, so the candidate's origin is `s2s` there).
    let history = (!matches!(action, Action::Duplicate(_))).then_some(HistoryEntry {
        conversion_id,
        candidate: c,
    });
    let journal_id = insert_journal(tx, w, outcome.as_str(), Some(conversion_id), history).await?;
    let relayed = match &action {
        Action::New => match &c.relay_url {
            Some(url) if relays_new(c) => {
                let due = c.relay_not_before_ms.unwrap_or(now);
                enqueue(tx, conversion_id, c, url, "conversion", now, due).await?;
                true
            }
            _ => false,
        },
        Action::UpgradePixel(e) => relay_upgrade(tx, c, e, now).await?,
        Action::Transition(_) => match &c.relay_url {
            Some(url) if c.relay_status_changes => {
                let due = c.relay_not_before_ms.unwrap_or(now);
                enqueue(tx, conversion_id, c, url, "status", now, due).await?;
                true
            }
            _ => false,
        },
        Action::Duplicate(_) => false,
    };
    let relayed =
        super::destinations::after_postback(tx, &action, c, conversion_id, now).await? || relayed;
    Ok(PostbackCommit {
        journal_id,
        outcome,
        conversion_id: Some(conversion_id),
        status: Some(status),
        relayed,
    })
}

/// As in the embedded store: a relay still held in the grace period takes the S2S
/// figures and goes now; one already sent is followed only by a status change.
async fn relay_upgrade(
    tx: &Transaction<'_>,
    c: &ConversionCandidate,
    existing: &Existing,
    now: u64,
) -> Result<bool, StoreError> {
    let Some(url) = &c.relay_url else {
        return Ok(false);
    };
    let held = execute(
        tx,
        "UPDATE outbox SET url = $2, next_attempt_ms = $3 WHERE conversion_id = $1 AND state = 'pending' AND attempts = 0 AND destination_id IS NULL",
        &[&existing.id, url, &(now as i64)],
    )
    .await?;
    if held > 0 {
        return Ok(true);
    }
    if existing.status != c.status && c.relay_status_changes {
        enqueue(tx, existing.id, c, url, "status", now, now).await?;
        return Ok(true);
    }
    Ok(false)
}

async fn record_delivery(tx: &Transaction<'_>, d: &DeliveryResult) -> Result<(), StoreError> {
    let state = match (d.delivered, d.next_attempt_ms) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "dead",
    };
    let delivered_ms = d.delivered.then_some(d.ts_ms as i64);
    // The lease ends with the result: the entry is free for whichever node is due next.
    execute(
        tx,
        "UPDATE outbox SET state = $2, attempts = attempts + 1, next_attempt_ms = COALESCE($3, next_attempt_ms),
            last_status = $4, last_error = $5, delivered_ms = COALESCE($6, delivered_ms),
            lease_owner = NULL, lease_until_ms = NULL
         WHERE id = $1 AND state = 'pending'",
        &[
            &d.outbox_id,
            &state,
            &d.next_attempt_ms.map(|t| t as i64),
            &d.http_status.map(i32::from),
            &d.error,
            &delivered_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Requeue dead letters as if new (see the embedded store's `replay_dead`).
async fn replay_dead(
    tx: &Transaction<'_>,
    outbox_id: Option<i64>,
    now: u64,
) -> Result<u64, StoreError> {
    let now = now as i64;
    match outbox_id {
        Some(id) => execute(
            tx,
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = $2, replayed_ms = $2,
                lease_owner = NULL, lease_until_ms = NULL WHERE id = $1 AND state = 'dead'",
            &[&id, &now],
        )
        .await,
        None => execute(
            tx,
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = $1, replayed_ms = $1,
                lease_owner = NULL, lease_until_ms = NULL WHERE state = 'dead'",
            &[&now],
        )
        .await,
    }
}
