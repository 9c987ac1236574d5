//! The shared store's side of analytics (see `store/export.rs`): the queue row each
//! write transaction adds, claims under a lease, and backfill pages.
//!
//! Every node with `[analytics]` exports. A claim takes the oldest unleased queue rows
//! (`FOR UPDATE SKIP LOCKED`, so two nodes never claim the same rows at once) and
//! leases them to the node; the rows are deleted once exported. A node killed
//! mid-export leaves its lease to run out, and another node exports the same rows.

use super::{error, pool_error};
use crate::store::export::{
    merge_ranges, split_ids, BackfillCursor, Changes, ExportBacklog, ExportBatch, ExportedClick,
    ExportedConversion, ExportedTraits, HistoryPage,
};
use crate::store::StoreError;
use deadpool_postgres::{Pool, Transaction};
use std::collections::BTreeSet;
use tokio_postgres::Row;

/// Queue what one write transaction changed (nothing when it changed nothing).
pub(super) async fn record(
    tx: &Transaction<'_>,
    changes: &Changes,
    now_ms: i64,
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO analytics_queue (ts_ms, click_lo, click_hi, outbound, conversions, changes)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(error)?;
    tx.execute(
        &stmt,
        &[
            &now_ms,
            &changes.click_lo,
            &changes.click_hi,
            &changes.outbound,
            &changes.conversions,
            &(changes.count as i64),
        ],
    )
    .await
    .map_err(error)?;
    Ok(())
}

/// Start the cursor when analytics is on (a store with no clicks yet needs no
/// backfill), and release this node's old claims. Unlike the embedded store, a node
/// without analytics changes nothing here: other nodes may still be exporting.
pub(super) async fn on_open(
    client: &tokio_postgres::Client,
    node: &str,
    analytics: bool,
) -> Result<(), StoreError> {
    if analytics {
        client
            .execute(
                "INSERT INTO analytics_cursor (id, backfill_done)
                 SELECT 1, NOT EXISTS (SELECT 1 FROM clicks LIMIT 1)
                 ON CONFLICT (id) DO NOTHING",
                &[],
            )
            .await
            .map_err(error)?;
        client
            .execute(
                "UPDATE analytics_queue SET lease_owner = NULL, lease_until_ms = NULL
                 WHERE lease_owner = $1",
                &[&node],
            )
            .await
            .map_err(error)?;
    }
    Ok(())
}

/// Apply the exporter's progress.
pub(super) async fn progress(
    tx: &Transaction<'_>,
    exported: &[i64],
    changes: u64,
    through_ms: Option<i64>,
    backfill: Option<&BackfillCursor>,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO analytics_cursor (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        &[],
    )
    .await
    .map_err(error)?;
    if !exported.is_empty() {
        tx.execute(
            "DELETE FROM analytics_queue WHERE id = ANY($1)",
            &[&exported],
        )
        .await
        .map_err(error)?;
        tx.execute(
            "UPDATE analytics_cursor SET exported_changes = exported_changes + $1, exported_ms = $2,
                 exported_through_ms = GREATEST(COALESCE(exported_through_ms, 0), COALESCE($3::BIGINT, 0))
             WHERE id = 1",
            &[&(changes as i64), &now_ms, &through_ms],
        )
        .await
        .map_err(error)?;
    }
    if let Some(b) = backfill {
        tx.execute(
            "UPDATE analytics_cursor SET backfill_click_after = $1, backfill_conversion_after = $2,
                 backfill_done = $3 WHERE id = 1",
            &[&b.click_after, &b.conversion_after, &b.done],
        )
        .await
        .map_err(error)?;
    }
    Ok(())
}

pub(super) async fn backlog(pool: &Pool) -> Result<ExportBacklog, StoreError> {
    let conn = pool.get().await.map_err(pool_error)?;
    let r = conn
        .query_one(
            "SELECT count(*), COALESCE(sum(changes), 0)::BIGINT, min(ts_ms) FROM analytics_queue",
            &[],
        )
        .await
        .map_err(error)?;
    Ok(ExportBacklog {
        entries: r.get::<_, i64>(0) as u64,
        changes: r.get::<_, i64>(1) as u64,
        oldest_ms: r.get(2),
    })
}

pub(super) async fn cursor(pool: &Pool) -> Result<BackfillCursor, StoreError> {
    let conn = pool.get().await.map_err(pool_error)?;
    Ok(conn
        .query_opt(
            "SELECT backfill_click_after, backfill_conversion_after, backfill_done
             FROM analytics_cursor WHERE id = 1",
            &[],
        )
        .await
        .map_err(error)?
        .map(|r| BackfillCursor {
            click_after: r.get(0),
            conversion_after: r.get(1),
            done: r.get(2),
        })
        .unwrap_or_default())
}

/// A click's columns with its latest `/go` (offer and time), as the embedded store
/// reads them.
const CLICK_COLUMNS: &str = "c.click_id, c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
    c.cost, c.ip, c.user_agent,
    (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1),
    COALESCE((SELECT max(o.ts_ms) FROM outbound_clicks o WHERE o.click_id = c.click_id), 0),
    c.quality, c.lander, c.country, c.device, c.os, c.browser, c.excluded";

fn click_row(r: &Row) -> ExportedClick {
    ExportedClick {
        click_id: r.get(0),
        ts_ms: r.get(1),
        campaign_id: r.get(2),
        source_id: r.get(3),
        sub_ids: [r.get(4), r.get(5), r.get(6), r.get(7), r.get(8)],
        cost: r.get(9),
        ip: r.get(10),
        user_agent: r.get(11),
        last_offer_id: r.get(12),
        last_offer_ms: r.get(13),
        traits: ExportedTraits {
            quality: r.get(14),
            lander: r.get(15),
            country: r.get(16),
            device: r.get(17),
            os: r.get(18),
            browser: r.get(19),
            excluded: r.get(20),
        },
    }
}

const CONVERSION_COLUMNS: &str = "v.id, v.click_id, c.ts_ms, c.campaign_id, c.source_id,
    c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
    COALESCE(v.offer_id, (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id
                          ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1)),
    v.network_id, v.payout, v.status, v.updated_ms,
    COALESCE((SELECT max(o.ts_ms) FROM outbound_clicks o WHERE o.click_id = c.click_id), 0),
    c.quality, c.lander, c.country, c.device, c.os, c.browser, c.excluded";

fn conversion_row(r: &Row) -> ExportedConversion {
    ExportedConversion {
        id: r.get(0),
        click_id: r.get(1),
        click_ts_ms: r.get(2),
        campaign_id: r.get(3),
        source_id: r.get(4),
        sub_ids: [r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)],
        offer_id: r.get(10),
        network_id: r.get(11),
        payout: r.get(12),
        status: r.get(13),
        updated_ms: r.get(14),
        last_offer_ms: r.get(15),
        traits: ExportedTraits {
            quality: r.get(16),
            lander: r.get(17),
            country: r.get(18),
            device: r.get(19),
            os: r.get(20),
            browser: r.get(21),
            excluded: r.get(22),
        },
    }
}

/// Lease the oldest unleased queue rows to `node` and read what they changed.
pub(super) async fn claim(
    pool: &Pool,
    node: &str,
    max_entries: usize,
    max_changes: u64,
    lease_ms: i64,
) -> Result<Option<ExportBatch>, StoreError> {
    let mut conn = pool.get().await.map_err(pool_error)?;
    let now = crate::store::export::now_ms();
    let claimed = {
        let tx = conn.transaction().await.map_err(error)?;
        // Candidates in id order: unleased, leased to a node whose lease ran out, or
        // this node's own (a batch it failed to send and now retries). The running sum
        // of changes bounds the batch (the first row always goes, however large).
        let rows = tx
            .query(
                "WITH candidates AS (
                     SELECT id, changes FROM analytics_queue
                     WHERE lease_until_ms IS NULL OR lease_until_ms < $1 OR lease_owner = $3
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), bounded AS (
                     SELECT id, (sum(changes) OVER (ORDER BY id))::BIGINT AS running,
                            row_number() OVER (ORDER BY id) AS n
                     FROM candidates
                 )
                 UPDATE analytics_queue q SET lease_owner = $3, lease_until_ms = $1 + $4
                 FROM bounded b WHERE q.id = b.id AND (b.n = 1 OR b.running <= $5)
                 RETURNING q.id, q.ts_ms, q.click_lo, q.click_hi, q.outbound, q.conversions, q.changes",
                &[
                    &now,
                    &(max_entries as i64),
                    &node,
                    &lease_ms,
                    &(max_changes as i64),
                ],
            )
            .await
            .map_err(error)?;
        tx.commit().await.map_err(error)?;
        rows
    };
    if claimed.is_empty() {
        return Ok(None);
    }
    let mut batch = ExportBatch {
        oldest_ms: i64::MAX,
        ..Default::default()
    };
    let mut ranges = Vec::new();
    let mut outbound: BTreeSet<String> = BTreeSet::new();
    let mut conversions: BTreeSet<i64> = BTreeSet::new();
    for r in &claimed {
        batch.queue_ids.push(r.get(0));
        let ts: i64 = r.get(1);
        batch.oldest_ms = batch.oldest_ms.min(ts);
        batch.newest_ms = batch.newest_ms.max(ts);
        batch.changes += r.get::<_, i64>(6) as u64;
        if let (Some(lo), Some(hi)) = (r.get::<_, Option<String>>(2), r.get(3)) {
            ranges.push((lo, hi));
        }
        outbound.extend(split_ids(r.get::<_, &str>(4)).map(str::to_string));
        conversions.extend(split_ids(r.get::<_, &str>(5)).filter_map(|s| s.parse::<i64>().ok()));
    }
    batch.queue_ids.sort_unstable();
    let ranges = merge_ranges(ranges);
    let in_range = conn
        .prepare_cached(&format!(
            "SELECT {CLICK_COLUMNS} FROM clicks c WHERE c.click_id >= $1 AND c.click_id <= $2"
        ))
        .await
        .map_err(error)?;
    for (lo, hi) in &ranges {
        for r in conn.query(&in_range, &[lo, hi]).await.map_err(error)? {
            batch.clicks.push(click_row(&r));
        }
    }
    // A new `/go` moves the click's offer, and the offer its conversions fall back
    // to: both are sent again.
    let moved: Vec<&str> = outbound
        .iter()
        .map(String::as_str)
        .filter(|id| {
            !ranges
                .iter()
                .any(|(lo, hi)| lo.as_str() <= *id && *id <= hi.as_str())
        })
        .collect();
    if !moved.is_empty() {
        for r in conn
            .query(
                &format!("SELECT {CLICK_COLUMNS} FROM clicks c WHERE c.click_id = ANY($1)"),
                &[&moved],
            )
            .await
            .map_err(error)?
        {
            batch.clicks.push(click_row(&r));
        }
    }
    let all_outbound: Vec<&str> = outbound.iter().map(String::as_str).collect();
    if !all_outbound.is_empty() {
        for r in conn
            .query(
                "SELECT id FROM conversions WHERE click_id = ANY($1)",
                &[&all_outbound],
            )
            .await
            .map_err(error)?
        {
            conversions.insert(r.get(0));
        }
    }
    if !conversions.is_empty() {
        let ids: Vec<i64> = conversions.into_iter().collect();
        for r in conn
            .query(
                &format!(
                    "SELECT {CONVERSION_COLUMNS} FROM conversions v JOIN clicks c ON c.click_id = v.click_id
                     WHERE v.id = ANY($1)"
                ),
                &[&ids],
            )
            .await
            .map_err(error)?
        {
            batch.conversions.push(conversion_row(&r));
        }
    }
    Ok(Some(batch))
}

/// The next page of history after `from`.
pub(super) async fn page(
    pool: &Pool,
    from: &BackfillCursor,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let conn = pool.get().await.map_err(pool_error)?;
    let mut page = HistoryPage {
        next: from.clone(),
        ..Default::default()
    };
    if from.conversion_after.is_none() {
        let after = from.click_after.clone().unwrap_or_default();
        for r in conn
            .query(
                &format!(
                    "SELECT {CLICK_COLUMNS} FROM clicks c WHERE c.click_id > $1 ORDER BY c.click_id LIMIT $2"
                ),
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(error)?
        {
            page.clicks.push(click_row(&r));
        }
        if let Some(last) = page.clicks.last() {
            page.next.click_after = Some(last.click_id.clone());
        }
        if page.clicks.len() < limit {
            page.next.conversion_after = Some(0);
        }
        return Ok(page);
    }
    let after = from.conversion_after.unwrap_or(0);
    for r in conn
        .query(
            &format!(
                "SELECT {CONVERSION_COLUMNS} FROM conversions v JOIN clicks c ON c.click_id = v.click_id
                 WHERE v.id > $1 ORDER BY v.id LIMIT $2"
            ),
            &[&after, &(limit as i64)],
        )
        .await
        .map_err(error)?
    {
        page.conversions.push(conversion_row(&r));
    }
    match page.conversions.last() {
        Some(last) => page.next.conversion_after = Some(last.id),
        None => page.next.done = true,
    }
    Ok(page)
}
