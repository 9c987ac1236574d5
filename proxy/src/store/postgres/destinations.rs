//! Outbox entries of `[[destinations]]` on the shared store: written in the postback's
//! transaction, claimed with the outbox's leases, read joined with their conversion
//! and click.

use super::read::{outbox_row, OUTBOX_COLUMNS};
use super::{error, pool_error};
use crate::store::decide::{relays_new, Action};
use crate::store::{
    ConversionCandidate, ConversionRow, DestinationClaim, DestinationClick, DestinationEntry,
    StoreError,
};
use deadpool_postgres::{Pool, Transaction};
use std::time::Duration;
use tokio_postgres::Row;

async fn enqueue(
    tx: &Transaction<'_>,
    conversion_id: i64,
    c: &ConversionCandidate,
    kind: &str,
    now: u64,
    due: u64,
) -> Result<bool, StoreError> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms, destination_id)
             VALUES ($1, $2, $3, $4, '', 'pending', 0, $5, $6, $7)",
        )
        .await
        .map_err(error)?;
    let mut any = false;
    for d in &c.destinations {
        if kind == "status" && !d.status_changes {
            continue;
        }
        tx.execute(
            &stmt,
            &[
                &conversion_id,
                &c.click_id,
                &c.source_id,
                &kind,
                &(due as i64),
                &(now as i64),
                &d.id,
            ],
        )
        .await
        .map_err(error)?;
        any = true;
    }
    Ok(any)
}

/// As in the embedded store (`sqlite/destinations.rs`): the entries `action` calls for.
pub(super) async fn after_postback(
    tx: &Transaction<'_>,
    action: &Action,
    c: &ConversionCandidate,
    conversion_id: i64,
    now: u64,
) -> Result<bool, StoreError> {
    if c.destinations.is_empty() {
        return Ok(false);
    }
    match action {
        Action::New if relays_new(c) => {
            let due = c.relay_not_before_ms.unwrap_or(now);
            enqueue(tx, conversion_id, c, "conversion", now, due).await
        }
        Action::Transition(_) => enqueue(tx, conversion_id, c, "status", now, now).await,
        Action::UpgradePixel(e) => {
            let stmt = tx
                .prepare_cached(
                    "UPDATE outbox SET next_attempt_ms = $2 WHERE conversion_id = $1 AND state = 'pending'
                        AND attempts = 0 AND destination_id IS NOT NULL AND next_attempt_ms > $2",
                )
                .await
                .map_err(error)?;
            let held = tx
                .execute(&stmt, &[&e.id, &(now as i64)])
                .await
                .map_err(error)?;
            if held > 0 {
                Ok(true)
            } else if e.status != c.status {
                enqueue(tx, e.id, c, "status", now, now).await
            } else {
                Ok(false)
            }
        }
        _ => Ok(false),
    }
}

/// Claim due entries of one destination for `node` until `now + lease` — unless
/// they make a partial batch that should linger still, in which case nothing is
/// claimed — and read them with their conversion and click.
pub(super) async fn claim_due(
    pool: &Pool,
    node: &str,
    lease: Duration,
    claim: &DestinationClaim,
) -> Result<Vec<DestinationEntry>, StoreError> {
    let conn = pool.get().await.map_err(pool_error)?;
    let now = claim.now_ms as i64;
    let limit = i64::from(claim.limit);
    let peek = conn
        .prepare_cached(
            "SELECT count(*), min(next_attempt_ms) FROM (
                SELECT next_attempt_ms FROM outbox
                WHERE state = 'pending' AND next_attempt_ms <= $1 AND destination_id = $2
                  AND (lease_until_ms IS NULL OR lease_until_ms <= $1) AND NOT (id = ANY($3))
                LIMIT $4) due",
        )
        .await
        .map_err(error)?;
    let row = conn
        .query_one(
            &peek,
            &[&now, &claim.destination_id, &claim.in_flight, &limit],
        )
        .await
        .map_err(error)?;
    let (count, oldest): (i64, Option<i64>) = (row.get(0), row.get(1));
    let Some(oldest) = oldest else {
        return Ok(Vec::new());
    };
    if count < limit && oldest + claim.linger_ms as i64 > now {
        return Ok(Vec::new());
    }
    let outbox_cols: String = OUTBOX_COLUMNS
        .split(',')
        .map(|c| format!("o.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let stmt = conn
        .prepare_cached(&format!(
            "WITH claimed AS (
                UPDATE outbox SET lease_owner = $1, lease_until_ms = $2
                WHERE id IN (
                    SELECT id FROM outbox
                    WHERE state = 'pending' AND next_attempt_ms <= $3 AND destination_id = $6
                      AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                      AND NOT (id = ANY($5))
                    ORDER BY next_attempt_ms, id LIMIT $4
                    FOR UPDATE SKIP LOCKED)
                RETURNING *)
             SELECT {outbox_cols},
                cv.id, cv.dedup_key, cv.click_id, cv.campaign_id, cv.source_id, cv.network_id, cv.offer_id, cv.event,
                cv.txid, cv.payout, cv.currency, cv.status, cv.origin, cv.duplicates, cv.created_ms, cv.updated_ms,
                c.ts_ms, c.source_click_id, c.source_click_param, c.ip, c.user_agent, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5
             FROM claimed o JOIN conversions cv ON cv.id = o.conversion_id
             LEFT JOIN clicks c ON c.click_id = o.click_id"
        ))
        .await
        .map_err(error)?;
    let until = now + lease.as_millis() as i64;
    let rows = conn
        .query(
            &stmt,
            &[
                &node,
                &until,
                &now,
                &limit,
                &claim.in_flight,
                &claim.destination_id,
            ],
        )
        .await
        .map_err(error)?;
    let mut out: Vec<DestinationEntry> = rows.iter().map(entry).collect();
    out.sort_by_key(|e| (e.outbox.next_attempt_ms, e.outbox.id));
    Ok(out)
}

fn entry(r: &Row) -> DestinationEntry {
    const C: usize = 15;
    const K: usize = C + 16;
    let click_ts: Option<i64> = r.get(K);
    DestinationEntry {
        outbox: outbox_row(r),
        conversion: ConversionRow {
            id: r.get(C),
            dedup_key: r.get(C + 1),
            click_id: r.get(C + 2),
            campaign_id: r.get(C + 3),
            source_id: r.get(C + 4),
            network_id: r.get(C + 5),
            offer_id: r.get(C + 6),
            event: r.get(C + 7),
            txid: r.get(C + 8),
            payout: r.get(C + 9),
            currency: r.get(C + 10),
            status: r.get(C + 11),
            origin: r.get(C + 12),
            duplicates: r.get::<_, i32>(C + 13).max(0) as u32,
            created_ms: r.get::<_, i64>(C + 14) as u64,
            updated_ms: r.get::<_, i64>(C + 15) as u64,
        },
        click: click_ts.map(|ts| DestinationClick {
            ts_ms: ts as u64,
            source_click_id: r.get(K + 1),
            source_click_param: r.get(K + 2),
            ip: r.get(K + 3),
            user_agent: r.get(K + 4),
            sub_ids: [
                r.get(K + 5),
                r.get(K + 6),
                r.get(K + 7),
                r.get(K + 8),
                r.get(K + 9),
            ],
        }),
    }
}
