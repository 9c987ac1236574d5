//! The embedded store's side of analytics (see `store/export.rs`): the queue row each
//! write transaction adds, the exporter's claims, and backfill pages.
//!
//! One process owns the file, so a claim needs no lease: the exporter is the only
//! reader of the queue, and its rows are deleted (through the writer) once exported.

use crate::store::export::{
    split_ids, BackfillCursor, Changes, ExportBacklog, ExportBatch, ExportedClick,
    ExportedConversion, ExportedTraits, HistoryPage,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use std::collections::BTreeSet;

/// Queue what one write transaction changed (nothing when it changed nothing).
pub(super) fn record(tx: &Transaction<'_>, changes: &Changes, now_ms: i64) -> rusqlite::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO analytics_queue (ts_ms, click_lo, click_hi, outbound, conversions, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now_ms,
        changes.click_lo,
        changes.click_hi,
        changes.outbound,
        changes.conversions,
        changes.count as i64,
    ])?;
    Ok(())
}

/// Start (or mark a gap in) the cursor on open. With analytics on, a store seen for
/// the first time needs a backfill only if it already holds clicks. With analytics
/// off, nothing is queued from now on, so history in analytics gets a gap: a cursor
/// that exists is marked not done, and the next backfill starts over (repeats are
/// harmless: analytics collapses them).
pub(super) fn on_open(conn: &Connection, analytics: bool) -> rusqlite::Result<()> {
    if analytics {
        conn.execute(
            "INSERT OR IGNORE INTO analytics_cursor (id, backfill_done)
             SELECT 1, NOT EXISTS (SELECT 1 FROM clicks LIMIT 1)",
            [],
        )?;
    } else {
        conn.execute(
            "UPDATE analytics_cursor SET backfill_done = 0, backfill_click_after = NULL,
                 backfill_conversion_after = NULL WHERE backfill_done = 1",
            [],
        )?;
        // Nothing will drain it now; a later start with analytics backfills instead.
        conn.execute("DELETE FROM analytics_queue", [])?;
    }
    Ok(())
}

/// Apply the exporter's progress (inside the writer's transaction).
pub(super) fn progress(
    tx: &Transaction<'_>,
    exported: &[i64],
    changes: u64,
    through_ms: Option<i64>,
    backfill: Option<&BackfillCursor>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute("INSERT OR IGNORE INTO analytics_cursor (id) VALUES (1)", [])?;
    if !exported.is_empty() {
        let mut delete = tx.prepare_cached("DELETE FROM analytics_queue WHERE id = ?1")?;
        for id in exported {
            delete.execute([id])?;
        }
        tx.execute(
            "UPDATE analytics_cursor SET exported_changes = exported_changes + ?1, exported_ms = ?2,
                 exported_through_ms = max(coalesce(exported_through_ms, 0), coalesce(?3, 0))
             WHERE id = 1",
            params![changes as i64, now_ms, through_ms],
        )?;
    }
    if let Some(b) = backfill {
        tx.execute(
            "UPDATE analytics_cursor SET backfill_click_after = ?1, backfill_conversion_after = ?2,
                 backfill_done = ?3 WHERE id = 1",
            params![b.click_after, b.conversion_after, b.done],
        )?;
    }
    Ok(())
}

pub(super) fn backlog(conn: &Connection) -> rusqlite::Result<ExportBacklog> {
    conn.query_row(
        "SELECT count(*), coalesce(sum(changes), 0), min(ts_ms) FROM analytics_queue",
        [],
        |r| {
            Ok(ExportBacklog {
                entries: r.get::<_, i64>(0)? as u64,
                changes: r.get::<_, i64>(1)? as u64,
                oldest_ms: r.get(2)?,
            })
        },
    )
}

pub(super) fn cursor(conn: &Connection) -> rusqlite::Result<BackfillCursor> {
    Ok(conn
        .query_row(
            "SELECT backfill_click_after, backfill_conversion_after, backfill_done
             FROM analytics_cursor WHERE id = 1",
            [],
            |r| {
                Ok(BackfillCursor {
                    click_after: r.get(0)?,
                    conversion_after: r.get(1)?,
                    done: r.get(2)?,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
}

/// A click's columns, with its latest `/go` (offer and time): two seeks in
/// `outbound_clicks`' key.
const CLICK_COLUMNS: &str = "c.click_id, c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
    c.cost, c.ip, c.user_agent,
    (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1),
    coalesce((SELECT max(o.ts_ms) FROM outbound_clicks o WHERE o.click_id = c.click_id), 0),
    c.quality, c.lander, c.country, c.device, c.os, c.browser, c.excluded";

fn click_row(r: &Row<'_>) -> rusqlite::Result<ExportedClick> {
    Ok(ExportedClick {
        click_id: r.get(0)?,
        ts_ms: r.get(1)?,
        campaign_id: r.get(2)?,
        source_id: r.get(3)?,
        sub_ids: [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
        cost: r.get(9)?,
        ip: r.get(10)?,
        user_agent: r.get(11)?,
        last_offer_id: r.get(12)?,
        last_offer_ms: r.get(13)?,
        traits: ExportedTraits {
            quality: r.get(14)?,
            lander: r.get(15)?,
            country: r.get(16)?,
            device: r.get(17)?,
            os: r.get(18)?,
            browser: r.get(19)?,
            excluded: r.get(20)?,
        },
    })
}

/// A conversion with its click's attributes; its offer falls back to the click's
/// latest `/go`, as the store's own report does.
const CONVERSION_COLUMNS: &str = "v.id, v.click_id, c.ts_ms, c.campaign_id, c.source_id,
    c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
    coalesce(v.offer_id, (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id
                          ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1)),
    v.network_id, v.payout, v.status, v.updated_ms,
    coalesce((SELECT max(o.ts_ms) FROM outbound_clicks o WHERE o.click_id = c.click_id), 0),
    c.quality, c.lander, c.country, c.device, c.os, c.browser, c.excluded";

fn conversion_row(r: &Row<'_>) -> rusqlite::Result<ExportedConversion> {
    Ok(ExportedConversion {
        id: r.get(0)?,
        click_id: r.get(1)?,
        click_ts_ms: r.get(2)?,
        campaign_id: r.get(3)?,
        source_id: r.get(4)?,
        sub_ids: [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
        offer_id: r.get(10)?,
        network_id: r.get(11)?,
        payout: r.get(12)?,
        status: r.get(13)?,
        updated_ms: r.get(14)?,
        last_offer_ms: r.get(15)?,
        traits: ExportedTraits {
            quality: r.get(16)?,
            lander: r.get(17)?,
            country: r.get(18)?,
            device: r.get(19)?,
            os: r.get(20)?,
            browser: r.get(21)?,
            excluded: r.get(22)?,
        },
    })
}

/// The oldest queue rows (up to `max_entries`, stopping once `max_changes` is
/// reached) and what they changed, read in one read transaction.
pub(super) fn claim(
    conn: &Connection,
    max_entries: usize,
    max_changes: u64,
) -> rusqlite::Result<Option<ExportBatch>> {
    conn.execute_batch("BEGIN")?;
    let result = claim_in_snapshot(conn, max_entries, max_changes);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn claim_in_snapshot(
    conn: &Connection,
    max_entries: usize,
    max_changes: u64,
) -> rusqlite::Result<Option<ExportBatch>> {
    let mut batch = ExportBatch::default();
    let mut ranges: Vec<(String, String)> = Vec::new();
    let mut outbound: BTreeSet<String> = BTreeSet::new();
    let mut conversions: BTreeSet<i64> = BTreeSet::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, ts_ms, click_lo, click_hi, outbound, conversions, changes
             FROM analytics_queue ORDER BY id LIMIT ?1",
        )?;
        let mut rows = stmt.query([max_entries as i64])?;
        while let Some(r) = rows.next()? {
            let changes = r.get::<_, i64>(6)? as u64;
            if !batch.queue_ids.is_empty() && batch.changes + changes > max_changes {
                break;
            }
            batch.queue_ids.push(r.get(0)?);
            let ts: i64 = r.get(1)?;
            if batch.queue_ids.len() == 1 {
                batch.oldest_ms = ts;
            }
            batch.newest_ms = batch.newest_ms.max(ts);
            batch.changes += changes;
            if let (Some(lo), Some(hi)) = (r.get::<_, Option<String>>(2)?, r.get(3)?) {
                ranges.push((lo, hi));
            }
            outbound.extend(split_ids(&r.get::<_, String>(4)?).map(str::to_string));
            conversions
                .extend(split_ids(&r.get::<_, String>(5)?).filter_map(|s| s.parse::<i64>().ok()));
        }
    }
    if batch.queue_ids.is_empty() {
        return Ok(None);
    }
    let mut in_range = conn.prepare_cached(&format!(
        "SELECT {CLICK_COLUMNS} FROM clicks c WHERE c.click_id >= ?1 AND c.click_id <= ?2"
    ))?;
    let ranges = crate::store::export::merge_ranges(ranges);
    for (lo, hi) in &ranges {
        for click in in_range.query_map([lo, hi], click_row)? {
            batch.clicks.push(click?);
        }
    }
    let mut one = conn.prepare_cached(&format!(
        "SELECT {CLICK_COLUMNS} FROM clicks c WHERE c.click_id = ?1"
    ))?;
    let mut of_click = conn.prepare_cached("SELECT id FROM conversions WHERE click_id = ?1")?;
    for id in &outbound {
        // A new `/go` moves the click's offer, and the offer its conversions fall
        // back to: both are sent again.
        if !ranges.iter().any(|(lo, hi)| lo <= id && id <= hi) {
            if let Some(click) = one.query_row([id], click_row).optional()? {
                batch.clicks.push(click);
            }
        }
        for conversion in of_click.query_map([id], |r| r.get::<_, i64>(0))? {
            conversions.insert(conversion?);
        }
    }
    let mut conversion = conn.prepare_cached(&format!(
        "SELECT {CONVERSION_COLUMNS} FROM conversions v JOIN clicks c ON c.click_id = v.click_id
         WHERE v.id = ?1"
    ))?;
    for id in conversions {
        if let Some(v) = conversion.query_row([id], conversion_row).optional()? {
            batch.conversions.push(v);
        }
    }
    Ok(Some(batch))
}

/// The next page of history after `from`.
pub(super) fn page(
    conn: &Connection,
    from: &BackfillCursor,
    limit: usize,
) -> rusqlite::Result<HistoryPage> {
    let mut page = HistoryPage {
        next: from.clone(),
        ..Default::default()
    };
    if from.conversion_after.is_none() {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {CLICK_COLUMNS} FROM clicks c WHERE c.click_id > ?1 ORDER BY c.click_id LIMIT ?2"
        ))?;
        let after = from.click_after.clone().unwrap_or_default();
        for click in stmt.query_map(params![after, limit as i64], click_row)? {
            page.clicks.push(click?);
        }
        if let Some(last) = page.clicks.last() {
            page.next.click_after = Some(last.click_id.clone());
        }
        if page.clicks.len() == limit {
            return Ok(page);
        }
        // Clicks are done: conversions from the start.
        page.next.conversion_after = Some(0);
        return Ok(page);
    }
    let after = from.conversion_after.unwrap_or(0);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CONVERSION_COLUMNS} FROM conversions v JOIN clicks c ON c.click_id = v.click_id
         WHERE v.id > ?1 ORDER BY v.id LIMIT ?2"
    ))?;
    for v in stmt.query_map(params![after, limit as i64], conversion_row)? {
        page.conversions.push(v?);
    }
    match page.conversions.last() {
        Some(last) => page.next.conversion_after = Some(last.id),
        None => page.next.done = true,
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
        let tx = conn.transaction().unwrap();
        for (id, ts) in [("0a", 10), ("0b", 20), ("0c", 30), ("0z", 90)] {
            tx.execute(
                "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, entry)
                 VALUES (?1, ?2, 'camp', 'src', 'landing')",
                params![id, ts],
            )
            .unwrap();
        }
        // Two /go of 0b: the later one is its offer.
        for (ts, seq, offer) in [(25, 1, "first"), (26, 2, "second")] {
            tx.execute(
                "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id)
                 VALUES ('0b', ?1, ?2, 'camp', ?3)",
                params![ts, seq, offer],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO conversions (id, dedup_key, click_id, campaign_id, source_id, event, payout,
                 status, origin, created_ms, updated_ms)
             VALUES (7, 'k', '0b', 'camp', 'src', 'conversion', 2.5, 'approved', 's2s', 40, 41)",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
        conn
    }

    fn queue(conn: &mut Connection, changes: &Changes, ts: i64) {
        let tx = conn.transaction().unwrap();
        record(&tx, changes, ts).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn a_claim_reads_what_its_queue_rows_changed_in_the_current_state() {
        let mut conn = store();
        let mut first = Changes::default();
        first.click("0a");
        first.click("0b");
        queue(&mut conn, &first, 100);
        let mut second = Changes::default();
        second.outbound("0z");
        second.conversion(7);
        queue(&mut conn, &second, 200);
        queue(&mut conn, &Changes::default(), 300);

        let batch = claim(&conn, 10, 1_000).unwrap().unwrap();
        assert_eq!(batch.queue_ids.len(), 2, "an empty change queues nothing");
        assert_eq!(
            (batch.oldest_ms, batch.newest_ms, batch.changes),
            (100, 200, 4)
        );
        let clicks: Vec<&str> = batch.clicks.iter().map(|c| c.click_id.as_str()).collect();
        assert_eq!(
            clicks,
            ["0a", "0b", "0z"],
            "the range, then the /go outside it"
        );
        let b = &batch.clicks[1];
        assert_eq!(
            (b.last_offer_id.as_deref(), b.last_offer_ms, b.version()),
            (Some("second"), 26, 26)
        );
        assert_eq!(batch.conversions.len(), 1);
        let v = &batch.conversions[0];
        assert_eq!(
            (v.id, v.click_ts_ms, v.offer_id.as_deref(), v.version()),
            (7, 20, Some("second"), 41),
            "the conversion falls back to its click's latest /go"
        );

        // Bounded by changes: the first row always goes, the second would pass 3.
        let small = claim(&conn, 10, 3).unwrap().unwrap();
        assert_eq!(small.queue_ids, batch.queue_ids[..1]);

        let tx = conn.transaction().unwrap();
        progress(&tx, &batch.queue_ids, batch.changes, Some(200), None, 500).unwrap();
        tx.commit().unwrap();
        assert!(claim(&conn, 10, 1_000).unwrap().is_none());
        let left = backlog(&conn).unwrap();
        assert_eq!((left.entries, left.changes, left.oldest_ms), (0, 0, None));
        let exported: (i64, i64) = conn
            .query_row(
                "SELECT exported_changes, exported_through_ms FROM analytics_cursor",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(exported, (4, 200));
    }

    #[test]
    fn backfill_pages_walk_clicks_then_conversions_and_finish() {
        let conn = store();
        let mut cursor = BackfillCursor::default();
        let mut clicks = Vec::new();
        let mut conversions = Vec::new();
        for _ in 0..10 {
            let page = page(&conn, &cursor, 3).unwrap();
            clicks.extend(page.clicks.iter().map(|c| c.click_id.clone()));
            conversions.extend(page.conversions.iter().map(|v| v.id));
            cursor = page.next;
            if cursor.done {
                break;
            }
        }
        assert!(cursor.done);
        assert_eq!(clicks, ["0a", "0b", "0c", "0z"]);
        assert_eq!(conversions, [7]);
    }

    #[test]
    fn turning_analytics_off_marks_history_incomplete_and_drops_the_queue() {
        let mut conn = store();
        on_open(&conn, true).unwrap();
        assert!(
            !cursor(&conn).unwrap().done,
            "a store with clicks needs a backfill"
        );
        conn.execute("UPDATE analytics_cursor SET backfill_done = 1", [])
            .unwrap();
        let mut c = Changes::default();
        c.click("0a");
        queue(&mut conn, &c, 1);
        on_open(&conn, false).unwrap();
        assert!(!cursor(&conn).unwrap().done);
        assert_eq!(backlog(&conn).unwrap().entries, 0);

        let empty = Connection::open_in_memory().unwrap();
        empty.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
        on_open(&empty, true).unwrap();
        assert!(
            cursor(&empty).unwrap().done,
            "an empty store has no history"
        );
    }
}
