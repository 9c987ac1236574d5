//! Reading a report out of the SQLite store: one ordered pass over the clicks in range,
//! one over their counted conversions, fed to the backend-neutral
//! [`Aggregator`](crate::report::aggregate::Aggregator).
//!
//! The clicks table has no secondary index, on purpose (every index would add pages
//! to each click's commit). It needs none here: its key is a UUIDv7 in lowercase hex
//! whose first 12 characters are the click's Unix millisecond timestamp, so a time
//! range *is* a key range, read in key order. A click's `/go` offer comes from
//! `outbound_clicks`, whose primary key starts with the click id, walked in the same
//! order beside the clicks (a merge join: no per-click lookup). Conversions are reached
//! through the `conversions_by_click_key` index over the same key range. So the
//! report adds no index and nothing to the click path.
//!
//! Reports read through their own read-only connection (WAL readers never block the
//! writer), on a blocking thread, inside one read transaction.

use crate::report::aggregate::{
    amount_micros, key_range, Aggregator, ClickFacts, ConversionFacts, Needed, COUNTED_STATUSES,
};
use crate::report::params::Trait;
use crate::report::{Catalog, Figures, ReportParams, ReportRow};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Open the store at `path` read-only, for reports. Separate from the tracker's
/// connections so a long report never holds a lock the click path waits on.
pub(crate) fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Read pages through a memory map rather than a copy per page read.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    Ok(conn)
}

/// A stored amount in integer micro-units (see [`amount_micros`]).
fn micros(v: ValueRef<'_>) -> i128 {
    match v {
        ValueRef::Real(f) => amount_micros(f),
        ValueRef::Integer(i) => i128::from(i) * 1_000_000,
        _ => 0,
    }
}

fn text(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

/// Run the report on `conn` (a read-only connection; one read transaction, so clicks
/// and conversions come from the same snapshot). Rows come back sorted by key.
pub(crate) fn run(
    conn: &Connection,
    catalog: &Catalog,
    params: &ReportParams,
) -> rusqlite::Result<(Vec<ReportRow>, Figures)> {
    conn.execute_batch("BEGIN")?;
    let result = run_in_snapshot(conn, catalog, params);
    // A read transaction: ending it cannot lose anything.
    let _ = conn.execute_batch("COMMIT");
    result
}

fn run_in_snapshot(
    conn: &Connection,
    catalog: &Catalog,
    params: &ReportParams,
) -> rusqlite::Result<(Vec<ReportRow>, Figures)> {
    let (lo, hi) = key_range(params.from_ms, params.to_ms);
    let needed = Needed::of(params);
    let mut report = Aggregator::new(catalog, params);

    // Clicks, in key order, with their latest /go offer merged in from outbound_clicks
    // (same key order) when an offer is needed.
    // Columns no key needs are selected as NULL: SQLite then skips decoding them,
    // which is most of the scan's cost.
    let col = |name: &str, needed: bool| {
        if needed {
            name.to_string()
        } else {
            "NULL".into()
        }
    };
    let traits = Trait::ALL
        .iter()
        .zip(needed.traits)
        .map(|(t, needed)| col(t.column(), needed))
        .collect::<Vec<_>>()
        .join(", ");
    // Excluded clicks (and below, their conversions) are never counted.
    let mut clicks = conn.prepare(&format!(
        "SELECT {}, {}, {}, {}, {}, {}, {}, {}, {}, cost, ip, user_agent, {traits}
         FROM clicks WHERE click_id >= ?1 AND click_id < ?2 AND excluded = 0 ORDER BY click_id",
        col("click_id", needed.offer),
        col("ts_ms", needed.day),
        col("campaign_id", needed.campaign),
        col("source_id", needed.source),
        col("sub1", needed.subs[0]),
        col("sub2", needed.subs[1]),
        col("sub3", needed.subs[2]),
        col("sub4", needed.subs[3]),
        col("sub5", needed.subs[4]),
    ))?;
    let mut outbound = conn.prepare(
        "SELECT click_id, offer_id FROM outbound_clicks
         WHERE click_id >= ?1 AND click_id < ?2 ORDER BY click_id, ts_ms, seq",
    )?;
    let mut out_rows = if needed.offer {
        Some(outbound.query([&lo, &hi])?)
    } else {
        None
    };
    // The outbound row the merge stands on: (click id, offer).
    let mut out_head: Option<(String, String)> = None;
    let mut out_done = false;
    let mut rows = clicks.query([&lo, &hi])?;
    while let Some(r) = rows.next()? {
        let click_id = text(r.get_ref(0)?).unwrap_or("");
        let mut offer: Option<String> = None;
        if let Some(out) = out_rows.as_mut() {
            loop {
                if out_head.is_none() && !out_done {
                    match out.next()? {
                        Some(o) => {
                            out_head = Some((o.get(0)?, o.get(1)?));
                        }
                        None => out_done = true,
                    }
                }
                match &out_head {
                    Some((id, _)) if id.as_str() < click_id => out_head = None,
                    Some((id, o)) if id == click_id => {
                        // Rows of one click come in time order: the last one wins.
                        offer = Some(o.clone());
                        out_head = None;
                    }
                    _ => break,
                }
            }
        }
        let mut facts = ClickFacts {
            ts_ms: r.get::<_, Option<i64>>(1)?.unwrap_or_default(),
            campaign: text(r.get_ref(2)?),
            source: text(r.get_ref(3)?),
            offer: offer.as_deref(),
            cost_micros: micros(r.get_ref(9)?),
            ip: text(r.get_ref(10)?),
            user_agent: text(r.get_ref(11)?),
            ..Default::default()
        };
        for (i, t) in facts.traits.iter_mut().enumerate() {
            *t = text(r.get_ref(12 + i)?);
        }
        for (i, s) in facts.subs.iter_mut().enumerate() {
            *s = text(r.get_ref(4 + i)?);
        }
        report.add_click(&facts);
    }
    drop(rows);
    drop(out_rows);

    // Counted conversions of those clicks. The conversions table is the outer loop
    // (CROSS JOIN fixes the order): its click_id index covers the same key range, and
    // each conversion finds its click by primary key.
    let statuses = COUNTED_STATUSES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut convs = conn.prepare(&format!(
        "SELECT c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
                v.payout, v.network_id,
                COALESCE(v.offer_id, (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id
                                      ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1)),
                c.quality, c.lander, c.country, c.device, c.os, c.browser
         FROM conversions v CROSS JOIN clicks c ON c.click_id = v.click_id
         WHERE v.click_id >= ?1 AND v.click_id < ?2 AND v.status IN ({statuses}) AND c.excluded = 0"
    ))?;
    let mut rows = convs.query([&lo, &hi])?;
    while let Some(r) = rows.next()? {
        let mut facts = ConversionFacts {
            ts_ms: r.get(0)?,
            campaign: text(r.get_ref(1)?),
            source: text(r.get_ref(2)?),
            payout_micros: micros(r.get_ref(8)?),
            network: text(r.get_ref(9)?),
            offer: text(r.get_ref(10)?),
            ..Default::default()
        };
        for (i, t) in facts.traits.iter_mut().enumerate() {
            *t = text(r.get_ref(11 + i)?);
        }
        for (i, s) in facts.subs.iter_mut().enumerate() {
            *s = text(r.get_ref(3 + i)?);
        }
        report.add_conversion(&facts);
    }
    Ok(report.finish())
}

#[cfg(test)]
mod tests {
    use super::run;
    use crate::report::{Catalog, ReportParams};
    use rusqlite::{params, Connection};

    #[test]
    fn amounts_stored_before_the_limit_cannot_wrap_a_report() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
        let click = format!("{:012x}7abc8def0123456789abcdef0123", 0x0190_0000_0000u64);
        conn.execute(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, cost, entry)
             VALUES (?1, ?2, 'camp', 'src', 1e300, 'landing')",
            params![click, 0x0190_0000_0000i64],
        )
        .unwrap();
        for (i, payout) in [1e308, 1e23, 9.2e12, 2.5].iter().enumerate() {
            conn.execute(
                "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, event, payout,
                    status, origin, created_ms, updated_ms)
                 VALUES (?1, ?2, 'camp', 'src', 'conversion', ?3, 'approved', 's2s', 0, 0)",
                params![format!("k{i}"), click, payout],
            )
            .unwrap();
        }
        let catalog = Catalog {
            sole_offers: Vec::new(),
            offer_networks: Vec::new(),
        };
        let (_, totals) = run(&conn, &catalog, &ReportParams::default()).unwrap();
        assert_eq!(totals.conversions, 4);
        // Each saturates at i64::MAX micro-units instead of wrapping the sum negative.
        let saturated = i128::from(i64::MAX);
        assert_eq!(
            totals.revenue_micros,
            2 * saturated + 9_200_000_000_000_000_000 + 2_500_000
        );
        assert!(totals.revenue_cents() > 0 && totals.cost_micros == saturated);
    }
}
