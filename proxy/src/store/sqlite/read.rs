//! Read queries, on the reader connection (WAL lets them run beside the writer).

use crate::store::{
    ConversionRow, JournalCut, JournalFilter, JournalRow, OutboxCounts, OutboxRow, StoredClick,
    MAX_OUTBOUND_OFFERS,
};
use clickstamp_plugins::ClickId;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) fn click(conn: &Connection, id: &ClickId) -> rusqlite::Result<Option<StoredClick>> {
    let Some(mut click) = click_row(conn, id)? else {
        return Ok(None);
    };
    click.outbound_offer_ids = outbound_offers(conn, &click.click_id)?;
    Ok(Some(click))
}

/// The distinct offers a click was sent to, in the order it first went to each: a
/// range of `outbound_clicks`' primary key.
fn outbound_offers(conn: &Connection, click_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT offer_id FROM outbound_clicks WHERE click_id = ?1 ORDER BY ts_ms, seq",
    )?;
    let mut rows = stmt.query([click_id])?;
    let mut offers: Vec<String> = Vec::new();
    while let Some(r) = rows.next()? {
        let offer: String = r.get(0)?;
        if !offers.contains(&offer) {
            if offers.len() >= MAX_OUTBOUND_OFFERS {
                break;
            }
            offers.push(offer);
        }
    }
    Ok(offers)
}

fn click_row(conn: &Connection, id: &ClickId) -> rusqlite::Result<Option<StoredClick>> {
    conn.prepare_cached(
        "SELECT click_id, ts_ms, campaign_id, source_id, source_click_id, cost,
            (SELECT offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1),
            source_click_param, sub1, sub2, sub3, sub4, sub5,
            quality, quality_reasons, excluded_reason, lander, country, device, os, browser, route
         FROM clicks c WHERE click_id = ?1",
    )?
    .query_row([id.to_hex()], |r| {
        Ok(StoredClick {
            click_id: r.get(0)?,
            ts_ms: r.get::<_, i64>(1)? as u64,
            campaign_id: r.get(2)?,
            source_id: r.get(3)?,
            source_click_id: r.get(4)?,
            cost: r.get(5)?,
            last_offer_id: r.get(6)?,
            source_click_param: r.get(7)?,
            sub_ids: [r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?],
            outbound_offer_ids: Vec::new(),
            profile: crate::store::ClickProfile {
                quality: r.get(13)?,
                quality_reasons: r.get(14)?,
                excluded: r.get(15)?,
                lander: r.get(16)?,
                country: r.get(17)?,
                device: r.get(18)?,
                os: r.get(19)?,
                browser: r.get(20)?,
                route: r.get(21)?,
            },
        })
    })
    .optional()
}

pub(super) fn click_count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM clicks", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

pub(super) const OUTBOX_COLUMNS: &str =
    "id, conversion_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms,
    last_status, last_error, delivered_ms, click_id, replayed_ms, destination_id";

pub(super) fn outbox_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        conversion_id: r.get(1)?,
        source_id: r.get(2)?,
        kind: r.get(3)?,
        url: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_ms: r.get::<_, i64>(7)? as u64,
        created_ms: r.get::<_, i64>(8)? as u64,
        last_status: r.get(9)?,
        last_error: r.get(10)?,
        delivered_ms: r.get::<_, Option<i64>>(11)?.map(|t| t as u64),
        click_id: r.get(12)?,
        replayed_ms: r.get::<_, Option<i64>>(13)?.map(|t| t as u64),
        destination_id: r.get(14)?,
    })
}

pub(super) fn due_outbox(
    conn: &Connection,
    now: u64,
    limit: u32,
    in_flight: &[i64],
) -> rusqlite::Result<Vec<OutboxRow>> {
    // Over-fetch by the in-flight count so skipping them still fills the batch.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_ms <= ?1 AND destination_id IS NULL ORDER BY next_attempt_ms, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![now as i64, (limit as usize + in_flight.len()) as i64],
        outbox_row,
    )?;
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        if !in_flight.contains(&row.id) {
            out.push(row);
        }
        if out.len() >= limit as usize {
            break;
        }
    }
    Ok(out)
}

pub(super) fn outbox(
    conn: &Connection,
    state: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![state, limit as i64], outbox_row)?;
    rows.collect()
}

/// A click's relays: its conversions by the click-ordered index, their outbox entries
/// by `outbox_by_conversion`.
pub(super) fn outbox_for_click(
    conn: &Connection,
    click_id: &str,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE conversion_id IN \
         (SELECT id FROM conversions WHERE click_id = ?1) ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![click_id, super::super::MAX_RELAYS_PER_CLICK as i64],
        outbox_row,
    )?;
    rows.collect()
}

/// Counts per state, each an index range on `outbox_due`. Pending and dead are small
/// (the backlog); delivered grows forever, so it is counted only when asked for.
pub(super) fn outbox_counts(
    conn: &Connection,
    include_delivered: bool,
) -> rusqlite::Result<OutboxCounts> {
    let mut stmt = conn.prepare_cached("SELECT count(*) FROM outbox WHERE state = ?1")?;
    let mut count = |state: &str| {
        stmt.query_row([state], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    };
    Ok(OutboxCounts {
        pending: count("pending")?,
        dead: count("dead")?,
        delivered: if include_delivered {
            count("delivered")?
        } else {
            0
        },
    })
}

/// A cheap read that proves the database answers.
pub(super) fn ping(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row(
        "SELECT count(*) FROM (SELECT 1 FROM clicks LIMIT 1)",
        [],
        |_| Ok(()),
    )
}

const JOURNAL_COLUMNS: &str =
    "id, ts_ms, network_id, method, remote_ip, raw_query, raw_body, content_type, origin,
    outcome, reason, message, click_id, conversion_id, replay_of, cut";

fn journal_row(r: &Row<'_>) -> rusqlite::Result<JournalRow> {
    // Read as bytes, never through text: a replay and its signature need them exactly.
    let body: Vec<u8> = match r.get_ref(6)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        _ => Vec::new(),
    };
    let raw_body_hex = std::str::from_utf8(&body)
        .is_err()
        .then(|| body.iter().map(|b| format!("{b:02x}")).collect());
    // A `cut` value this version cannot read is shown as cut all the same.
    let cut = r.get::<_, Option<String>>(15)?.map(|text| {
        serde_json::from_str(&text).unwrap_or(JournalCut {
            query_len: 0,
            query_sha256: None,
            body_len: 0,
            body_sha256: None,
        })
    });
    Ok(JournalRow {
        id: r.get(0)?,
        ts_ms: r.get::<_, i64>(1)? as u64,
        network_id: r.get(2)?,
        method: r.get(3)?,
        remote_ip: r.get(4)?,
        raw_query: r.get(5)?,
        raw_body: body,
        raw_body_hex,
        content_type: r.get(7)?,
        origin: r.get(8)?,
        outcome: r.get(9)?,
        reason: r.get(10)?,
        message: r.get(11)?,
        click_id: r.get(12)?,
        conversion_id: r.get::<_, Option<i64>>(13)?.filter(|id| *id != 0),
        replay_of: r.get(14)?,
        cut,
    })
}

pub(super) fn journal(conn: &Connection, f: &JournalFilter) -> rusqlite::Result<Vec<JournalRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOURNAL_COLUMNS} FROM postback_journal
         WHERE (?1 IS NULL OR network_id = ?1) AND (?2 IS NULL OR outcome = ?2) AND (?3 IS NULL OR reason = ?3)
           AND (?4 IS NULL OR ts_ms >= ?4) AND (?5 IS NULL OR ts_ms < ?5)
         ORDER BY id DESC LIMIT ?6"
    ))?;
    let opt = |v: Option<u64>| v.map_or(Value::Null, |t| Value::Integer(t as i64));
    let rows = stmt.query_map(
        params![
            f.network_id,
            f.outcome,
            f.reason,
            opt(f.since_ms),
            opt(f.until_ms),
            f.limit.max(1) as i64
        ],
        journal_row,
    )?;
    rows.collect()
}

pub(super) fn journal_entry(conn: &Connection, id: i64) -> rusqlite::Result<Option<JournalRow>> {
    conn.prepare_cached(&format!(
        "SELECT {JOURNAL_COLUMNS} FROM postback_journal WHERE id = ?1"
    ))?
    .query_row([id], journal_row)
    .optional()
}

pub(super) fn conversions_for_click(
    conn: &Connection,
    click_id: &str,
) -> rusqlite::Result<Vec<ConversionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, dedup_key, click_id, campaign_id, source_id, network_id, offer_id, event, txid, payout, currency,
            status, origin, duplicates, created_ms, updated_ms FROM conversions WHERE click_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([click_id], |r| {
        Ok(ConversionRow {
            id: r.get(0)?,
            dedup_key: r.get(1)?,
            click_id: r.get(2)?,
            campaign_id: r.get(3)?,
            source_id: r.get(4)?,
            network_id: r.get(5)?,
            offer_id: r.get(6)?,
            event: r.get(7)?,
            txid: r.get(8)?,
            payout: r.get(9)?,
            currency: r.get(10)?,
            status: r.get(11)?,
            origin: r.get(12)?,
            duplicates: r.get(13)?,
            created_ms: r.get::<_, i64>(14)? as u64,
            updated_ms: r.get::<_, i64>(15)? as u64,
        })
    })?;
    rows.collect()
}
