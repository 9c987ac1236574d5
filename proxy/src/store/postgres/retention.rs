//! Retention on the shared store: each batch is one short transaction on the pool
//! (the writers keep their connections), deleting by primary key what a read along
//! the table's own order picked. Several nodes may prune at once: a row another node
//! deleted first is simply not deleted twice.

use super::{error, pool_error};
use crate::store::retention::{PruneCursor, PruneOutcome, PruneRule, PruneStep};
use crate::store::StoreError;
use deadpool_postgres::{GenericClient, Pool};

/// One batch of `step` in its own transaction.
pub(super) async fn prune(pool: &Pool, step: &PruneStep) -> Result<PruneOutcome, StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(error)?;
    let outcome = prune_batch(&tx, step).await?;
    tx.commit().await.map_err(error)?;
    Ok(outcome)
}

/// One batch of `step` on `client` (the pool's transaction, or a writer's).
pub(super) async fn prune_batch<C: GenericClient + Sync>(
    client: &C,
    step: &PruneStep,
) -> Result<PruneOutcome, StoreError> {
    let limit = i64::from(step.limit.max(1));
    match step.rule {
        PruneRule::Clicks { before_ms } => clicks(client, before_ms, &step.after, limit).await,
        PruneRule::Journal { before_ms } => journal(client, before_ms, &step.after, limit).await,
        PruneRule::DeliveredOutbox { before_ms } => {
            delivered_outbox(client, before_ms, &step.after, limit).await
        }
    }
}

/// Clicks before the cut-off without a conversion, and their outbound records. The
/// delete checks for conversions again: one may have committed since the read.
async fn clicks<C: GenericClient + Sync>(
    client: &C,
    before_ms: u64,
    after: &PruneCursor,
    limit: i64,
) -> Result<PruneOutcome, StoreError> {
    let after = match after {
        PruneCursor::AfterClick(key) => key.clone(),
        _ => String::new(),
    };
    let bound = PruneRule::click_key_bound(before_ms);
    let rows = client
        .query(
            "SELECT c.click_id, EXISTS (SELECT 1 FROM conversions v WHERE v.click_id = c.click_id)
             FROM clicks c WHERE c.click_id > $1 AND c.click_id < $2
             ORDER BY c.click_id LIMIT $3",
            &[&after, &bound, &limit],
        )
        .await
        .map_err(error)?;
    let batch: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let unconverted: Vec<&str> = batch
        .iter()
        .filter(|(_, converted)| !converted)
        .map(|(key, _)| key.as_str())
        .collect();
    let mut outcome = PruneOutcome {
        examined: batch.len() as u64,
        ..PruneOutcome::default()
    };
    if !unconverted.is_empty() {
        let deleted: Vec<String> = client
            .query(
                "DELETE FROM clicks c WHERE c.click_id = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM conversions v WHERE v.click_id = c.click_id)
                 RETURNING c.click_id",
                &[&unconverted],
            )
            .await
            .map_err(error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        outcome.deleted = deleted.len() as u64;
        if !deleted.is_empty() {
            outcome.outbound_deleted = client
                .execute(
                    "DELETE FROM outbound_clicks WHERE click_id = ANY($1)",
                    &[&deleted],
                )
                .await
                .map_err(error)?;
        }
    }
    if batch.len() as i64 == limit {
        outcome.next = batch
            .last()
            .map(|(key, _)| PruneCursor::AfterClick(key.clone()));
    }
    Ok(outcome)
}

/// Journal entries before the cut-off, oldest id first; the first entry at or after
/// the cut-off ends the run (ids grow with time).
async fn journal<C: GenericClient + Sync>(
    client: &C,
    before_ms: u64,
    after: &PruneCursor,
    limit: i64,
) -> Result<PruneOutcome, StoreError> {
    let after = match after {
        PruneCursor::AfterEntry { id, .. } => *id,
        _ => i64::MIN,
    };
    let rows = client
        .query(
            "SELECT id, ts_ms FROM postback_journal WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await
        .map_err(error)?;
    let batch: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let old: Vec<i64> = batch
        .iter()
        .filter(|(_, ts_ms)| *ts_ms < before_ms as i64)
        .map(|(id, _)| *id)
        .collect();
    let mut outcome = PruneOutcome {
        examined: batch.len() as u64,
        ..PruneOutcome::default()
    };
    if !old.is_empty() {
        outcome.deleted = client
            .execute("DELETE FROM postback_journal WHERE id = ANY($1)", &[&old])
            .await
            .map_err(error)?;
    }
    if batch.len() as i64 == limit && old.len() == batch.len() {
        outcome.next = batch
            .last()
            .map(|(id, _)| PruneCursor::AfterEntry { at_ms: 0, id: *id });
    }
    Ok(outcome)
}

/// Outbox entries delivered before the cut-off, read along `outbox_due` (an entry is
/// delivered at or after it was due).
async fn delivered_outbox<C: GenericClient + Sync>(
    client: &C,
    before_ms: u64,
    after: &PruneCursor,
    limit: i64,
) -> Result<PruneOutcome, StoreError> {
    let (after_ms, after_id) = match after {
        PruneCursor::AfterEntry { at_ms, id } => (*at_ms, *id),
        _ => (i64::MIN, i64::MIN),
    };
    let before = before_ms as i64;
    let rows = client
        .query(
            "SELECT id, next_attempt_ms, COALESCE(delivered_ms, next_attempt_ms) FROM outbox
             WHERE state = 'delivered' AND next_attempt_ms < $1
               AND (next_attempt_ms, id) > ($2, $3)
             ORDER BY next_attempt_ms, id LIMIT $4",
            &[&before, &after_ms, &after_id, &limit],
        )
        .await
        .map_err(error)?;
    let batch: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let old: Vec<i64> = batch
        .iter()
        .filter(|(_, _, delivered_ms)| *delivered_ms < before)
        .map(|(id, _, _)| *id)
        .collect();
    let mut outcome = PruneOutcome {
        examined: batch.len() as u64,
        ..PruneOutcome::default()
    };
    if !old.is_empty() {
        outcome.deleted = client
            .execute(
                "DELETE FROM outbox WHERE id = ANY($1) AND state = 'delivered'",
                &[&old],
            )
            .await
            .map_err(error)?;
    }
    if batch.len() as i64 == limit {
        outcome.next = batch.last().map(|(id, due, _)| PruneCursor::AfterEntry {
            at_ms: *due,
            id: *id,
        });
    }
    Ok(outcome)
}
