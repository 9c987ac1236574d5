//! Outbox entries of `[[destinations]]`: written beside the relay in the postback's
//! transaction, read back joined with their conversion and click when due.

use super::read::{outbox_row, OUTBOX_COLUMNS};
use crate::store::{
    ConversionCandidate, ConversionRow, DestinationClaim, DestinationClick, DestinationEntry,
};
use rusqlite::{params, Connection, Row, Transaction};

/// The index a destination's claim seeks: only destination entries are in it, so
/// relays pay nothing for it. Created after `destination_id` exists (an older file
/// gains the column in `migrate.rs`), hence not in `schema.sql`.
pub(super) const INDEX: &str = "CREATE INDEX IF NOT EXISTS outbox_due_by_destination
    ON outbox (destination_id, state, next_attempt_ms) WHERE destination_id IS NOT NULL";

/// One entry per destination of `c` (only those taking status changes when `kind` is
/// `status`), due at `due`. Entries carry no URL: the request is built at delivery
/// from the conversion as it is then.
pub(super) fn enqueue(
    tx: &Transaction<'_>,
    conversion_id: i64,
    c: &ConversionCandidate,
    kind: &str,
    now: u64,
    due: u64,
) -> rusqlite::Result<bool> {
    let mut any = false;
    for d in &c.destinations {
        if kind == "status" && !d.status_changes {
            continue;
        }
        tx.prepare_cached(
            "INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms, destination_id)
             VALUES (?1, ?2, ?3, ?4, '', 'pending', 0, ?5, ?6, ?7)",
        )?
        .execute(params![conversion_id, c.click_id, c.source_id, kind, due as i64, now as i64, d.id])?;
        any = true;
    }
    Ok(any)
}

/// A pixel conversion's destination entries still held in the grace period go now
/// (they read the S2S figures when sent); how many were held.
pub(super) fn release_held(
    tx: &Transaction<'_>,
    conversion_id: i64,
    now: u64,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "UPDATE outbox SET next_attempt_ms = ?2 WHERE conversion_id = ?1 AND state = 'pending'
            AND attempts = 0 AND destination_id IS NOT NULL AND next_attempt_ms > ?2",
    )?
    .execute(params![conversion_id, now as i64])
}

/// The join that gives an entry everything its request needs.
fn entry_query() -> String {
    let outbox_cols: String = OUTBOX_COLUMNS
        .split(',')
        .map(|c| format!("o.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {outbox_cols},
            cv.id, cv.dedup_key, cv.click_id, cv.campaign_id, cv.source_id, cv.network_id, cv.offer_id, cv.event,
            cv.txid, cv.payout, cv.currency, cv.status, cv.origin, cv.duplicates, cv.created_ms, cv.updated_ms,
            c.ts_ms, c.source_click_id, c.source_click_param, c.ip, c.user_agent, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5
         FROM outbox o JOIN conversions cv ON cv.id = o.conversion_id
         LEFT JOIN clicks c ON c.click_id = o.click_id
         WHERE o.state = 'pending' AND o.next_attempt_ms <= ?1 AND o.destination_id = ?2
         ORDER BY o.next_attempt_ms, o.id LIMIT ?3"
    )
}

fn entry(r: &Row<'_>) -> rusqlite::Result<DestinationEntry> {
    const C: usize = 15;
    const K: usize = C + 16;
    let click_ts: Option<i64> = r.get(K)?;
    Ok(DestinationEntry {
        outbox: outbox_row(r)?,
        conversion: ConversionRow {
            id: r.get(C)?,
            dedup_key: r.get(C + 1)?,
            click_id: r.get(C + 2)?,
            campaign_id: r.get(C + 3)?,
            source_id: r.get(C + 4)?,
            network_id: r.get(C + 5)?,
            offer_id: r.get(C + 6)?,
            event: r.get(C + 7)?,
            txid: r.get(C + 8)?,
            payout: r.get(C + 9)?,
            currency: r.get(C + 10)?,
            status: r.get(C + 11)?,
            origin: r.get(C + 12)?,
            duplicates: r.get(C + 13)?,
            created_ms: r.get::<_, i64>(C + 14)? as u64,
            updated_ms: r.get::<_, i64>(C + 15)? as u64,
        },
        click: match click_ts {
            None => None,
            Some(ts) => Some(DestinationClick {
                ts_ms: ts as u64,
                source_click_id: r.get(K + 1)?,
                source_click_param: r.get(K + 2)?,
                ip: r.get(K + 3)?,
                user_agent: r.get(K + 4)?,
                sub_ids: [
                    r.get(K + 5)?,
                    r.get(K + 6)?,
                    r.get(K + 7)?,
                    r.get(K + 8)?,
                    r.get(K + 9)?,
                ],
            }),
        },
    })
}

/// Due entries of one destination, or none while a partial batch lingers.
pub(super) fn due(
    conn: &Connection,
    claim: &DestinationClaim,
) -> rusqlite::Result<Vec<DestinationEntry>> {
    let mut stmt = conn.prepare_cached(&entry_query())?;
    let fetch = claim.limit as usize + claim.in_flight.len();
    let rows = stmt.query_map(
        params![claim.now_ms as i64, claim.destination_id, fetch as i64],
        entry,
    )?;
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        if !claim.in_flight.contains(&row.outbox.id) {
            out.push(row);
        }
        if out.len() >= claim.limit as usize {
            break;
        }
    }
    Ok(hold_partial(out, claim))
}

/// A partial batch waits until its oldest entry has been due for `linger_ms`.
pub(crate) fn hold_partial(
    entries: Vec<DestinationEntry>,
    claim: &DestinationClaim,
) -> Vec<DestinationEntry> {
    let full = entries.len() >= claim.limit as usize;
    let oldest_due = entries.first().map(|e| e.outbox.next_attempt_ms);
    match oldest_due {
        Some(due) if !full && due + claim.linger_ms > claim.now_ms => Vec::new(),
        _ => entries,
    }
}

/// The destination entries `action` calls for, as the relay's rules have it: a new
/// conversion goes to every destination (held with its relay through a pixel's grace
/// period), a status change to those taking status changes, and an S2S upgrade of a
/// held pixel conversion releases what was held instead of enqueueing again.
pub(super) fn after_postback(
    tx: &Transaction<'_>,
    action: &crate::store::decide::Action,
    c: &ConversionCandidate,
    conversion_id: i64,
    now: u64,
) -> rusqlite::Result<bool> {
    use crate::store::decide::{relays_new, Action};
    if c.destinations.is_empty() {
        return Ok(false);
    }
    match action {
        Action::New if relays_new(c) => enqueue(
            tx,
            conversion_id,
            c,
            "conversion",
            now,
            c.relay_not_before_ms.unwrap_or(now),
        ),
        Action::Transition(_) => enqueue(tx, conversion_id, c, "status", now, now),
        Action::UpgradePixel(e) => {
            if release_held(tx, e.id, now)? > 0 {
                Ok(true)
            } else if e.status != c.status {
                enqueue(tx, e.id, c, "status", now, now)
            } else {
                Ok(false)
            }
        }
        _ => Ok(false),
    }
}
