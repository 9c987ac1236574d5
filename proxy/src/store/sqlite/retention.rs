//! Retention on the embedded store: each batch is a [`WriteOp::Prune`] the writer
//! thread applies in its own transaction, between the request path's batches, so a
//! prune never holds the write lock for more than one batch's deletes.
//!
//! Every batch reads along a key: clicks by their time-ordered key, the journal by
//! its id (which grows with time), delivered outbox entries along `outbox_due`
//! (`state, next_attempt_ms`). No index was added for retention.

use super::{Job, SqliteStore};
use crate::store::retention::{PruneCursor, PruneOutcome, PruneRule, PruneStep};
use crate::store::{StoreError, WriteOp, WriteResult};
use rusqlite::{params, Transaction};
use tokio::sync::oneshot;

impl SqliteStore {
    /// Queue `step` for the writer and wait for its transaction to commit.
    pub(super) async fn prune_through_writer(
        &self,
        step: &PruneStep,
    ) -> Result<PruneOutcome, StoreError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Job {
                ops: vec![WriteOp::Prune(step.clone())],
                done: Some(done),
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        match wait.await.map_err(|_| StoreError::WriterGone)??.pop() {
            Some(WriteResult::Pruned(outcome)) => Ok(outcome),
            other => Err(StoreError::Backend(format!(
                "the writer answered a prune with {other:?}"
            ))),
        }
    }
}

/// Delete one batch of what `step.rule` no longer keeps, inside the writer's `tx`.
pub(super) fn prune_batch(
    tx: &Transaction<'_>,
    step: &PruneStep,
) -> rusqlite::Result<PruneOutcome> {
    let limit = i64::from(step.limit.max(1));
    match step.rule {
        PruneRule::Clicks { before_ms } => clicks(tx, before_ms, &step.after, limit),
        PruneRule::Journal { before_ms } => journal(tx, before_ms, &step.after, limit),
        PruneRule::DeliveredOutbox { before_ms } => {
            delivered_outbox(tx, before_ms, &step.after, limit)
        }
    }
}

/// Clicks before the cut-off without a conversion, and their outbound records.
fn clicks(
    tx: &Transaction<'_>,
    before_ms: u64,
    after: &PruneCursor,
    limit: i64,
) -> rusqlite::Result<PruneOutcome> {
    let after = match after {
        PruneCursor::AfterClick(key) => key.as_str(),
        _ => "",
    };
    let bound = PruneRule::click_key_bound(before_ms);
    // The conversions index starts with the click: each EXISTS is one seek.
    let batch: Vec<(String, bool)> = tx
        .prepare_cached(
            "SELECT c.click_id, EXISTS (SELECT 1 FROM conversions v WHERE v.click_id = c.click_id)
             FROM clicks c WHERE c.click_id > ?1 AND c.click_id < ?2
             ORDER BY c.click_id LIMIT ?3",
        )?
        .query_map(params![after, bound, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut outcome = PruneOutcome {
        examined: batch.len() as u64,
        ..PruneOutcome::default()
    };
    let mut delete_click = tx.prepare_cached("DELETE FROM clicks WHERE click_id = ?1")?;
    let mut delete_outbound =
        tx.prepare_cached("DELETE FROM outbound_clicks WHERE click_id = ?1")?;
    for (click_id, converted) in &batch {
        if *converted {
            continue;
        }
        outcome.deleted += delete_click.execute([click_id])? as u64;
        outcome.outbound_deleted += delete_outbound.execute([click_id])? as u64;
    }
    if batch.len() as i64 == limit {
        outcome.next = batch
            .last()
            .map(|(key, _)| PruneCursor::AfterClick(key.clone()));
    }
    Ok(outcome)
}

/// Journal entries before the cut-off. Ids grow with time, so the oldest entries come
/// first, and the first entry at or after the cut-off ends the run.
fn journal(
    tx: &Transaction<'_>,
    before_ms: u64,
    after: &PruneCursor,
    limit: i64,
) -> rusqlite::Result<PruneOutcome> {
    let after = match after {
        PruneCursor::AfterEntry { id, .. } => *id,
        _ => i64::MIN,
    };
    let batch: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, ts_ms FROM postback_journal WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut outcome = PruneOutcome {
        examined: batch.len() as u64,
        ..PruneOutcome::default()
    };
    let mut delete = tx.prepare_cached("DELETE FROM postback_journal WHERE id = ?1")?;
    let mut reached_newer = false;
    for (id, ts_ms) in &batch {
        if *ts_ms < before_ms as i64 {
            outcome.deleted += delete.execute([id])? as u64;
        } else {
            reached_newer = true;
        }
    }
    if batch.len() as i64 == limit && !reached_newer {
        outcome.next = batch
            .last()
            .map(|(id, _)| PruneCursor::AfterEntry { at_ms: 0, id: *id });
    }
    Ok(outcome)
}

/// Delivered outbox entries delivered before the cut-off, read along `outbox_due`: an
/// entry is delivered at or after it was due, so only entries due before the cut-off
/// can qualify.
fn delivered_outbox(
    tx: &Transaction<'_>,
    before_ms: u64,
    after: &PruneCursor,
    limit: i64,
) -> rusqlite::Result<PruneOutcome> {
    let (after_ms, after_id) = match after {
        PruneCursor::AfterEntry { at_ms, id } => (*at_ms, *id),
        _ => (i64::MIN, i64::MIN),
    };
    let batch: Vec<(i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT id, next_attempt_ms, COALESCE(delivered_ms, next_attempt_ms) FROM outbox
             WHERE state = 'delivered' AND next_attempt_ms < ?1
               AND (next_attempt_ms, id) > (?2, ?3)
             ORDER BY next_attempt_ms, id LIMIT ?4",
        )?
        .query_map(params![before_ms as i64, after_ms, after_id, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut outcome = PruneOutcome {
        examined: batch.len() as u64,
        ..PruneOutcome::default()
    };
    let mut delete =
        tx.prepare_cached("DELETE FROM outbox WHERE id = ?1 AND state = 'delivered'")?;
    for (id, _, delivered_ms) in &batch {
        if *delivered_ms < before_ms as i64 {
            outcome.deleted += delete.execute([id])? as u64;
        }
    }
    if batch.len() as i64 == limit {
        outcome.next = batch.last().map(|(id, due, _)| PruneCursor::AfterEntry {
            at_ms: *due,
            id: *id,
        });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 0x0190_0000_0000;

    fn store() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::SCHEMA).unwrap();
        conn
    }

    /// Run `rule` batch by batch, as the pruner does, until it says it is done.
    fn run(conn: &mut rusqlite::Connection, rule: PruneRule, limit: u32) -> PruneOutcome {
        let mut total = PruneOutcome::default();
        let mut after = PruneCursor::Start;
        loop {
            let tx = conn.transaction().unwrap();
            let step = PruneStep {
                rule,
                after: after.clone(),
                limit,
            };
            let o = prune_batch(&tx, &step).unwrap();
            tx.commit().unwrap();
            total.examined += o.examined;
            total.deleted += o.deleted;
            total.outbound_deleted += o.outbound_deleted;
            match o.next {
                Some(next) => after = next,
                None => return total,
            }
        }
    }

    fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn clicks_with_conversions_stay_and_each_old_click_is_looked_at_once() {
        let mut conn = store();
        for i in 0..10i64 {
            let ts = NOW - 40 * DAY + i;
            let key = format!("{ts:012x}{i:020x}");
            conn.execute(
                "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, entry) VALUES (?1, ?2, 'c', 's', 'landing')",
                params![key, ts],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id) VALUES (?1, ?2, 0, 'c', 'o')",
                params![key, ts],
            )
            .unwrap();
            if i % 4 == 1 {
                conn.execute(
                    "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, event, status, origin, created_ms, updated_ms)
                     VALUES (?1, ?1, 'c', 's', 'conversion', 'approved', 's2s', 0, 0)",
                    [&key],
                )
                .unwrap();
            }
        }
        let recent = format!("{:012x}{:020x}", NOW - DAY, 99);
        conn.execute(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, entry) VALUES (?1, ?2, 'c', 's', 'landing')",
            params![recent, NOW - DAY],
        )
        .unwrap();
        let done = run(
            &mut conn,
            PruneRule::Clicks {
                before_ms: (NOW - 31 * DAY) as u64,
            },
            3,
        );
        assert_eq!((done.deleted, done.outbound_deleted), (7, 7));
        assert_eq!(
            done.examined, 10,
            "each old click once, the recent one never"
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM clicks"), 4);
        assert_eq!(count(&conn, "SELECT count(*) FROM outbound_clicks"), 3);
    }

    #[test]
    fn the_journal_run_ends_at_the_first_entry_newer_than_the_cut_off() {
        let mut conn = store();
        for ts in [NOW - 9 * DAY, NOW - 8 * DAY, NOW - 8 * DAY, NOW - DAY, NOW] {
            conn.execute(
                "INSERT INTO postback_journal (ts_ms, network_id, method, raw_query, origin, outcome) VALUES (?1, 'n', 'GET', '', 's2s', 'accepted')",
                [ts],
            )
            .unwrap();
        }
        let done = run(
            &mut conn,
            PruneRule::Journal {
                before_ms: (NOW - 7 * DAY) as u64,
            },
            2,
        );
        assert_eq!(done.deleted, 3);
        assert_eq!(done.examined, 4, "the newer entries are not read past");
        assert_eq!(count(&conn, "SELECT count(*) FROM postback_journal"), 2);
    }

    #[test]
    fn only_entries_delivered_before_the_cut_off_go() {
        let mut conn = store();
        let rows: [(&str, i64, Option<i64>); 5] = [
            ("delivered", NOW - 5 * DAY, Some(NOW - 5 * DAY)),
            ("delivered", NOW - 5 * DAY, Some(NOW - 4 * DAY)),
            ("delivered", NOW - 5 * DAY, Some(NOW - DAY)),
            ("pending", NOW - 9 * DAY, None),
            ("dead", NOW - 9 * DAY, None),
        ];
        for (state, due, delivered) in rows {
            conn.execute(
                "INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, next_attempt_ms, created_ms, delivered_ms)
                 VALUES (1, 'k', 's', 'conversion', 'u', ?1, ?2, ?2, ?3)",
                params![state, due, delivered],
            )
            .unwrap();
        }
        let done = run(
            &mut conn,
            PruneRule::DeliveredOutbox {
                before_ms: (NOW - 3 * DAY) as u64,
            },
            1,
        );
        assert_eq!(done.deleted, 2);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM outbox WHERE state = 'delivered'"
            ),
            1
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM outbox"), 3);
    }
}
