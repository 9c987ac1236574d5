//! Reads: click lookups, the outbox (and its leases), the journal, conversions and
//! reports, each on a pooled connection.

use super::{error, pool_error};
use crate::report::aggregate::{
    amount_micros, key_range, Aggregator, ClickFacts, ConversionFacts, COUNTED_STATUSES,
};
use crate::report::{Catalog, Figures, ReportParams, ReportRow};
use crate::store::{
    ConversionRow, JournalCut, JournalFilter, JournalRow, OutboxCounts, OutboxRow, StoreError,
    StoredClick, WriteOp, MAX_OUTBOUND_OFFERS,
};
use clickstamp_plugins::ClickId;
use deadpool_postgres::{Object, Pool};
use lru::LruCache;
use parking_lot::Mutex;
use std::time::Duration;
use tokio_postgres::Row;

type Cache = Mutex<LruCache<ClickId, StoredClick>>;

async fn client(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(pool_error)
}

/// Cache the clicks of `ops` (without outbound offers); returns the ids touched, to
/// forget again should the write fail.
pub(super) fn remember(recent: &Cache, ops: &[WriteOp]) -> Vec<ClickId> {
    let mut touched = Vec::new();
    let mut recent = recent.lock();
    for op in ops {
        match op {
            WriteOp::Click(c) => {
                recent.put(c.click_id, StoredClick::from(c.as_ref()));
                touched.push(c.click_id);
            }
            WriteOp::Outbound(o) => touched.push(o.click_id),
            _ => {}
        }
    }
    touched
}

/// The click `id`: its immutable part from the cache when there, its outbound offers
/// always from the database (another node may have sent the visitor on since).
pub(super) async fn click(
    pool: &Pool,
    recent: &Cache,
    id: ClickId,
    cached: Option<StoredClick>,
) -> Result<Option<StoredClick>, StoreError> {
    let conn = client(pool).await?;
    let hex = id.to_hex();
    let mut click = match cached {
        Some(c) => c,
        None => {
            let stmt = conn
                .prepare_cached(
                    "SELECT click_id, ts_ms, campaign_id, source_id, source_click_id, cost, source_click_param,
                        sub1, sub2, sub3, sub4, sub5,
                        quality, quality_reasons, excluded_reason, lander, country, device, os, browser, route
                     FROM clicks WHERE click_id = $1",
                )
                .await
                .map_err(error)?;
            let Some(r) = conn.query_opt(&stmt, &[&hex]).await.map_err(error)? else {
                return Ok(None);
            };
            let found = StoredClick {
                click_id: r.get(0),
                ts_ms: r.get::<_, i64>(1) as u64,
                campaign_id: r.get(2),
                source_id: r.get(3),
                source_click_id: r.get(4),
                cost: r.get(5),
                source_click_param: r.get(6),
                sub_ids: [r.get(7), r.get(8), r.get(9), r.get(10), r.get(11)],
                last_offer_id: None,
                outbound_offer_ids: Vec::new(),
                profile: crate::store::ClickProfile {
                    quality: r.get(12),
                    quality_reasons: r.get(13),
                    excluded: r.get(14),
                    lander: r.get(15),
                    country: r.get(16),
                    device: r.get(17),
                    os: r.get(18),
                    browser: r.get(19),
                    route: r.get(20),
                },
            };
            recent.lock().put(id, found.clone());
            found
        }
    };
    let stmt = conn
        .prepare_cached(
            "SELECT offer_id FROM outbound_clicks WHERE click_id = $1 ORDER BY ts_ms, seq",
        )
        .await
        .map_err(error)?;
    let rows = conn.query(&stmt, &[&hex]).await.map_err(error)?;
    click.last_offer_id = rows.last().map(|r| r.get(0));
    click.outbound_offer_ids.clear();
    for r in &rows {
        let offer: String = r.get(0);
        if !click.outbound_offer_ids.contains(&offer) {
            if click.outbound_offer_ids.len() >= MAX_OUTBOUND_OFFERS {
                break;
            }
            click.outbound_offer_ids.push(offer);
        }
    }
    Ok(Some(click))
}

pub(super) async fn click_count(pool: &Pool) -> Result<u64, StoreError> {
    let conn = client(pool).await?;
    let n: i64 = conn
        .query_one("SELECT count(*) FROM clicks", &[])
        .await
        .map_err(error)?
        .get(0);
    Ok(n as u64)
}

pub(super) const OUTBOX_COLUMNS: &str =
    "id, conversion_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms,
    last_status, last_error, delivered_ms, click_id, replayed_ms, destination_id";

pub(super) fn outbox_row(r: &Row) -> OutboxRow {
    OutboxRow {
        id: r.get(0),
        conversion_id: r.get(1),
        source_id: r.get(2),
        kind: r.get(3),
        url: r.get(4),
        state: r.get(5),
        attempts: r.get::<_, i32>(6).max(0) as u32,
        next_attempt_ms: r.get::<_, i64>(7) as u64,
        created_ms: r.get::<_, i64>(8) as u64,
        last_status: r.get::<_, Option<i32>>(9).map(|s| s.clamp(0, 999) as u16),
        last_error: r.get(10),
        delivered_ms: r.get::<_, Option<i64>>(11).map(|t| t as u64),
        click_id: r.get(12),
        replayed_ms: r.get::<_, Option<i64>>(13).map(|t| t as u64),
        destination_id: r.get(14),
    }
}

/// Claim up to `limit` due entries for `node` until `now + lease`: rows another node is
/// claiming this instant are skipped (`SKIP LOCKED`), and rows whose lease is still
/// running are not due. A node that dies holding leases loses them when they run out.
pub(super) async fn claim_due_outbox(
    pool: &Pool,
    node: &str,
    lease: Duration,
    now: u64,
    limit: u32,
    in_flight: &[i64],
) -> Result<Vec<OutboxRow>, StoreError> {
    let conn = client(pool).await?;
    let now = now as i64;
    let until = now + lease.as_millis() as i64;
    let stmt = conn
        .prepare_cached(&format!(
            "UPDATE outbox SET lease_owner = $1, lease_until_ms = $2
             WHERE id IN (
                SELECT id FROM outbox
                WHERE state = 'pending' AND next_attempt_ms <= $3 AND destination_id IS NULL
                  AND (lease_until_ms IS NULL OR lease_until_ms <= $3)
                  AND NOT (id = ANY($5))
                ORDER BY next_attempt_ms, id LIMIT $4
                FOR UPDATE SKIP LOCKED)
             RETURNING {OUTBOX_COLUMNS}"
        ))
        .await
        .map_err(error)?;
    let rows = conn
        .query(&stmt, &[&node, &until, &now, &i64::from(limit), &in_flight])
        .await
        .map_err(error)?;
    let mut out: Vec<OutboxRow> = rows.iter().map(outbox_row).collect();
    out.sort_by_key(|r| (r.next_attempt_ms, r.id));
    Ok(out)
}

pub(super) async fn outbox(
    pool: &Pool,
    state: Option<&str>,
    limit: u32,
) -> Result<Vec<OutboxRow>, StoreError> {
    let conn = client(pool).await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1::text IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"
        ))
        .await
        .map_err(error)?;
    let rows = conn
        .query(&stmt, &[&state, &i64::from(limit)])
        .await
        .map_err(error)?;
    Ok(rows.iter().map(outbox_row).collect())
}

/// A click's relays: its conversions by `conversions_by_click_key`, their outbox
/// entries by `outbox_by_conversion`.
pub(super) async fn outbox_for_click(
    pool: &Pool,
    click_id: &str,
) -> Result<Vec<OutboxRow>, StoreError> {
    let conn = client(pool).await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE conversion_id IN \
             (SELECT id FROM conversions WHERE click_id = $1) ORDER BY id LIMIT $2"
        ))
        .await
        .map_err(error)?;
    let rows = conn
        .query(
            &stmt,
            &[&click_id, &i64::from(crate::store::MAX_RELAYS_PER_CLICK)],
        )
        .await
        .map_err(error)?;
    Ok(rows.iter().map(outbox_row).collect())
}

pub(super) async fn outbox_counts(
    pool: &Pool,
    include_delivered: bool,
) -> Result<OutboxCounts, StoreError> {
    let conn = client(pool).await?;
    let stmt = conn
        .prepare_cached("SELECT count(*) FROM outbox WHERE state = $1")
        .await
        .map_err(error)?;
    let mut counts = OutboxCounts::default();
    for (state, slot) in [("pending", &mut counts.pending), ("dead", &mut counts.dead)] {
        let n: i64 = conn
            .query_one(&stmt, &[&state])
            .await
            .map_err(error)?
            .get(0);
        *slot = n as u64;
    }
    if include_delivered {
        let n: i64 = conn
            .query_one(&stmt, &[&"delivered"])
            .await
            .map_err(error)?
            .get(0);
        counts.delivered = n as u64;
    }
    Ok(counts)
}

pub(super) async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let conn = client(pool).await?;
    conn.query_one("SELECT 1", &[]).await.map_err(error)?;
    Ok(())
}

const JOURNAL_COLUMNS: &str =
    "id, ts_ms, network_id, method, remote_ip, raw_query, raw_body, content_type, origin,
    outcome, reason, message, click_id, conversion_id, replay_of, cut";

fn journal_row(r: &Row) -> JournalRow {
    let body: Vec<u8> = r.get::<_, Option<Vec<u8>>>(6).unwrap_or_default();
    let raw_body_hex = std::str::from_utf8(&body)
        .is_err()
        .then(|| body.iter().map(|b| format!("{b:02x}")).collect());
    // A `cut` value this version cannot read is shown as cut all the same.
    let cut = r.get::<_, Option<String>>(15).map(|text| {
        serde_json::from_str(&text).unwrap_or(JournalCut {
            query_len: 0,
            query_sha256: None,
            body_len: 0,
            body_sha256: None,
        })
    });
    JournalRow {
        id: r.get(0),
        ts_ms: r.get::<_, i64>(1) as u64,
        network_id: r.get(2),
        method: r.get(3),
        remote_ip: r.get(4),
        raw_query: r.get(5),
        raw_body: body,
        raw_body_hex,
        content_type: r.get(7),
        origin: r.get(8),
        outcome: r.get(9),
        reason: r.get(10),
        message: r.get(11),
        click_id: r.get(12),
        conversion_id: r.get::<_, Option<i64>>(13).filter(|id| *id != 0),
        replay_of: r.get(14),
        cut,
    }
}

pub(super) async fn journal(pool: &Pool, f: &JournalFilter) -> Result<Vec<JournalRow>, StoreError> {
    let conn = client(pool).await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM postback_journal
             WHERE ($1::text IS NULL OR network_id = $1) AND ($2::text IS NULL OR outcome = $2)
               AND ($3::text IS NULL OR reason = $3)
               AND ($4::int8 IS NULL OR ts_ms >= $4) AND ($5::int8 IS NULL OR ts_ms < $5)
             ORDER BY id DESC LIMIT $6"
        ))
        .await
        .map_err(error)?;
    let ms = |v: Option<u64>| v.map(|t| t.min(i64::MAX as u64) as i64);
    let rows = conn
        .query(
            &stmt,
            &[
                &f.network_id,
                &f.outcome,
                &f.reason,
                &ms(f.since_ms),
                &ms(f.until_ms),
                &i64::from(f.limit.max(1)),
            ],
        )
        .await
        .map_err(error)?;
    Ok(rows.iter().map(journal_row).collect())
}

pub(super) async fn journal_entry(pool: &Pool, id: i64) -> Result<Option<JournalRow>, StoreError> {
    let conn = client(pool).await?;
    let stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOURNAL_COLUMNS} FROM postback_journal WHERE id = $1"
        ))
        .await
        .map_err(error)?;
    Ok(conn
        .query_opt(&stmt, &[&id])
        .await
        .map_err(error)?
        .as_ref()
        .map(journal_row))
}

pub(super) async fn conversions_for_click(
    pool: &Pool,
    click_id: &str,
) -> Result<Vec<ConversionRow>, StoreError> {
    let conn = client(pool).await?;
    let stmt = conn
        .prepare_cached(
            "SELECT id, dedup_key, click_id, campaign_id, source_id, network_id, offer_id, event, txid, payout, currency,
                status, origin, duplicates, created_ms, updated_ms FROM conversions WHERE click_id = $1 ORDER BY id",
        )
        .await
        .map_err(error)?;
    let rows = conn.query(&stmt, &[&click_id]).await.map_err(error)?;
    Ok(rows
        .iter()
        .map(|r| ConversionRow {
            id: r.get(0),
            dedup_key: r.get(1),
            click_id: r.get(2),
            campaign_id: r.get(3),
            source_id: r.get(4),
            network_id: r.get(5),
            offer_id: r.get(6),
            event: r.get(7),
            txid: r.get(8),
            payout: r.get(9),
            currency: r.get(10),
            status: r.get(11),
            origin: r.get(12),
            duplicates: r.get::<_, i32>(13).max(0) as u32,
            created_ms: r.get::<_, i64>(14) as u64,
            updated_ms: r.get::<_, i64>(15) as u64,
        })
        .collect())
}

/// Rows fetched per round trip while a report streams through a portal: memory stays
/// bounded however many clicks the range holds.
const REPORT_CHUNK: i32 = 10_000;

fn subs(r: &Row, first: usize) -> [Option<&str>; 5] {
    std::array::from_fn(|i| r.get(first + i))
}

/// A report from one snapshot (a read-only repeatable-read transaction), streamed
/// through portals and aggregated as the embedded store's is.
/// The click traits a report groups by, in `Trait::ALL` order (the few bytes each
/// are cheap next to the row; reading them always keeps the statement fixed).
const TRAIT_COLUMNS: &str = "c.quality, c.lander, c.country, c.device, c.os, c.browser";

fn traits(r: &tokio_postgres::Row, from: usize) -> [Option<&str>; 6] {
    std::array::from_fn(|i| r.get(from + i))
}

pub(super) async fn report(
    pool: &Pool,
    catalog: &Catalog,
    params: &ReportParams,
) -> Result<(Vec<ReportRow>, Figures), StoreError> {
    let mut conn = client(pool).await?;
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(error)?;
    let (lo, hi) = key_range(params.from_ms, params.to_ms);
    let mut report = Aggregator::new(catalog, params);
    let needs_offer = crate::report::aggregate::Needed::of(params).offer;
    // The latest /go offer, a backward seek in outbound_clicks' primary key, only when
    // a key needs it.
    let latest_offer = if needs_offer {
        "(SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1)"
    } else {
        "NULL::text"
    };
    let clicks = tx
        .prepare(&format!(
            "SELECT c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
                c.cost, c.ip, c.user_agent, {latest_offer}, {TRAIT_COLUMNS}
             FROM clicks c WHERE c.click_id >= $1 AND c.click_id < $2 AND NOT c.excluded"
        ))
        .await
        .map_err(error)?;
    let portal = tx.bind(&clicks, &[&lo, &hi]).await.map_err(error)?;
    loop {
        let rows = tx
            .query_portal(&portal, REPORT_CHUNK)
            .await
            .map_err(error)?;
        for r in &rows {
            report.add_click(&ClickFacts {
                ts_ms: r.get(0),
                campaign: r.get(1),
                source: r.get(2),
                subs: subs(r, 3),
                cost_micros: r.get::<_, Option<f64>>(8).map_or(0, amount_micros),
                ip: r.get(9),
                user_agent: r.get(10),
                offer: r.get(11),
                traits: traits(r, 12),
            });
        }
        if rows.len() < REPORT_CHUNK as usize {
            break;
        }
    }
    let statuses: Vec<&str> = COUNTED_STATUSES.to_vec();
    let convs = tx
        .prepare(&format!(
            "SELECT c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
                v.payout, v.network_id,
                COALESCE(v.offer_id, (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id
                                      ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1)),
                {TRAIT_COLUMNS}
             FROM conversions v JOIN clicks c ON c.click_id = v.click_id
             WHERE v.click_id >= $1 AND v.click_id < $2 AND v.status = ANY($3) AND NOT c.excluded",
        ))
        .await
        .map_err(error)?;
    let portal = tx
        .bind(&convs, &[&lo, &hi, &statuses])
        .await
        .map_err(error)?;
    loop {
        let rows = tx
            .query_portal(&portal, REPORT_CHUNK)
            .await
            .map_err(error)?;
        for r in &rows {
            report.add_conversion(&ConversionFacts {
                ts_ms: r.get(0),
                campaign: r.get(1),
                source: r.get(2),
                subs: subs(r, 3),
                payout_micros: r.get::<_, Option<f64>>(8).map_or(0, amount_micros),
                network: r.get(9),
                offer: r.get(10),
                traits: traits(r, 11),
            });
        }
        if rows.len() < REPORT_CHUNK as usize {
            break;
        }
    }
    tx.commit().await.map_err(error)?;
    Ok(report.finish())
}
