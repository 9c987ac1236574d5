//! The SQL behind a report: one grouped scan of the clicks in range, one grouped pass
//! over their counted conversions, merged by group key.
//!
//! The clicks table has no secondary index, on purpose (every index would add pages
//! to each click's commit). It does not need one here: its key is a UUIDv7 in lowercase
//! hex whose first 12 characters are the click's Unix millisecond timestamp, so a time
//! range *is* a key range, scanned in key order. Conversions are reached through the
//! existing `conversions_by_click` index with the same key range, and a click's offer
//! through the `outbound_clicks` primary key. So the report adds no index, and nothing
//! to the click path.

use super::params::{Dimension, ReportParams, DAY_MS};
use super::{Catalog, Figures, ReportRow};
use rusqlite::types::Value;
use rusqlite::Connection;
use std::collections::BTreeMap;

/// Statuses counted as conversions: the network has not (yet) taken them back.
pub const COUNTED_STATUSES: [&str; 2] = ["approved", "pending"];

/// Money columns are summed as integer micro-units (1e-6 of the account currency):
/// each stored amount is rounded to the nearest micro once, and integer sums are exact.
const MICROS: &str = "1000000";

/// The click-key range `[lo, hi)` for a time range: the key's first 12 hex characters
/// are its millisecond timestamp, and every key is longer than the 12-character bound,
/// so `key >= hex(from)` keeps exactly the clicks at or after `from`, and
/// `key < hex(to)` exactly those before `to`.
pub fn key_range(from_ms: Option<i64>, to_ms: Option<i64>) -> (String, String) {
    let bound = |ms: i64| format!("{:012x}", ms.clamp(0, 0xffff_ffff_ffff));
    (
        from_ms.map(bound).unwrap_or_default(),
        // "g" sorts after every hex digit.
        to_ms.map(bound).unwrap_or_else(|| "g".to_string()),
    )
}

/// Config-derived lookup tables, as CTEs with bound parameters.
fn catalog_ctes(catalog: &Catalog, args: &mut Vec<Value>) -> String {
    let mut table = |name: &str, cols: &str, pairs: &[(String, String)]| {
        let mut sql = format!("{name}({cols}) AS (SELECT NULL, NULL WHERE 0");
        for (a, b) in pairs {
            sql.push_str(" UNION ALL SELECT ?, ?");
            args.push(Value::Text(a.clone()));
            args.push(Value::Text(b.clone()));
        }
        sql.push(')');
        sql
    };
    let sole = table("sole_offer", "campaign_id, offer_id", &catalog.sole_offers);
    let nets = table(
        "offer_network",
        "offer_id, network_id",
        &catalog.offer_networks,
    );
    format!("{sole}, {nets}")
}

/// The offer a click went to: its latest `/go`, else its campaign's only offer.
const CLICK_OFFER: &str = "COALESCE(
    (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1),
    (SELECT s.offer_id FROM sole_offer s WHERE s.campaign_id = c.campaign_id))";

fn needs_offer(group_by: &[Dimension]) -> bool {
    group_by
        .iter()
        .any(|d| matches!(d, Dimension::Offer | Dimension::Network))
}

/// The SQL expression of a dimension over the inner row set `r`, which has the click's
/// columns plus `offer_id` and `conv_network` (NULL for clicks).
fn key_expr(d: Dimension, offset_ms: i64) -> String {
    match d {
        Dimension::Campaign => "r.campaign_id".into(),
        Dimension::Source => "r.source_id".into(),
        Dimension::Sub(n) => format!("r.sub{n}"),
        // Integer days since the epoch in the offset; rendered as a date in Rust.
        Dimension::Day => format!("((r.ts_ms + ({offset_ms})) / {DAY_MS})"),
        Dimension::Offer => "r.offer_id".into(),
        Dimension::Network => "COALESCE(r.conv_network, (SELECT n.network_id FROM offer_network n WHERE n.offer_id = r.offer_id))".into(),
    }
}

type Groups = BTreeMap<Vec<Option<String>>, Figures>;

fn read_keys(
    row: &rusqlite::Row<'_>,
    group_by: &[Dimension],
) -> rusqlite::Result<Vec<Option<String>>> {
    group_by
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Ok(match row.get::<_, Value>(i)? {
                Value::Null => None,
                Value::Integer(n) if *d == Dimension::Day => Some(super::params::format_date(n)),
                Value::Integer(n) => Some(n.to_string()),
                Value::Real(f) => Some(f.to_string()),
                Value::Text(s) => Some(s),
                Value::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            })
        })
        .collect()
}

/// Run the report's queries on `conn` (a read-only connection inside one read
/// transaction, so clicks and conversions come from the same snapshot).
pub fn run(
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
    let group_by = &params.group_by;
    let offset_ms = i64::from(params.tz_offset_min) * 60_000;
    let (lo, hi) = key_range(params.from_ms, params.to_ms);
    let keys: Vec<String> = group_by.iter().map(|d| key_expr(*d, offset_ms)).collect();
    let select_keys: String = keys.iter().map(|k| format!("{k}, ")).collect();
    let group_clause = if keys.is_empty() {
        String::new()
    } else {
        format!(
            "GROUP BY {}",
            (1..=keys.len())
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let offer = if needs_offer(group_by) {
        CLICK_OFFER
    } else {
        "NULL"
    };
    let mut groups: Groups = BTreeMap::new();

    // Clicks, grouped.
    let mut args = Vec::new();
    let ctes = catalog_ctes(catalog, &mut args);
    args.push(Value::Text(lo.clone()));
    args.push(Value::Text(hi.clone()));
    let sql = format!(
        "WITH {ctes},
         r AS (SELECT c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
                      c.cost, c.ip, c.user_agent, {offer} AS offer_id, NULL AS conv_network
               FROM clicks c WHERE c.click_id >= ? AND c.click_id < ?)
         SELECT {select_keys} count(*),
                count(DISTINCT ifnull(r.ip, '') || char(31) || ifnull(r.user_agent, '')),
                ifnull(sum(CAST(round(ifnull(r.cost, 0) * {MICROS}) AS INTEGER)), 0)
         FROM r {group_clause}"
    );
    let n = group_by.len();
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    while let Some(row) = rows.next()? {
        let clicks: i64 = row.get(n)?;
        if clicks == 0 {
            // The ungrouped query answers one all-zero row for an empty range.
            continue;
        }
        let f = groups.entry(read_keys(row, group_by)?).or_default();
        f.clicks += clicks as u64;
        f.unique_clicks += row.get::<_, i64>(n + 1)? as u64;
        f.cost_micros += row.get::<_, i64>(n + 2)?;
    }

    // Counted conversions of those clicks, grouped the same way. The conversions table
    // is the outer loop (CROSS JOIN fixes the order): its click_id index covers the
    // same key range, and each conversion finds its click by primary key.
    let mut args = Vec::new();
    let ctes = catalog_ctes(catalog, &mut args);
    args.push(Value::Text(lo.clone()));
    args.push(Value::Text(hi.clone()));
    let statuses = COUNTED_STATUSES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH {ctes},
         r AS (SELECT c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
                      v.payout, COALESCE(v.offer_id, {offer}) AS offer_id, v.network_id AS conv_network
               FROM conversions v CROSS JOIN clicks c ON c.click_id = v.click_id
               WHERE v.click_id >= ? AND v.click_id < ? AND v.status IN ({statuses}))
         SELECT {select_keys} count(*),
                ifnull(sum(CAST(round(ifnull(r.payout, 0) * {MICROS}) AS INTEGER)), 0)
         FROM r {group_clause}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    while let Some(row) = rows.next()? {
        let conversions: i64 = row.get(n)?;
        if conversions == 0 {
            continue;
        }
        let f = groups.entry(read_keys(row, group_by)?).or_default();
        f.conversions += conversions as u64;
        f.revenue_micros += row.get::<_, i64>(n + 1)?;
    }

    let mut totals = Figures::default();
    for f in groups.values() {
        totals.clicks += f.clicks;
        totals.conversions += f.conversions;
        totals.revenue_micros += f.revenue_micros;
        totals.cost_micros += f.cost_micros;
    }
    // Unique visitors do not add up across groups (one visitor can be in several), so
    // the total is its own count.
    totals.unique_clicks = if group_by.is_empty() {
        groups.values().map(|f| f.unique_clicks).sum()
    } else {
        conn.query_row(
            "SELECT count(DISTINCT ifnull(ip, '') || char(31) || ifnull(user_agent, ''))
             FROM clicks WHERE click_id >= ?1 AND click_id < ?2",
            [&lo, &hi],
            |r| r.get::<_, i64>(0),
        )? as u64
    };
    let rows = groups
        .into_iter()
        .map(|(keys, figures)| ReportRow { keys, figures })
        .collect();
    Ok((rows, totals))
}

#[cfg(test)]
mod tests {
    use super::key_range;

    #[test]
    fn key_range_brackets_exactly_the_milliseconds_asked_for() {
        let (lo, hi) = key_range(Some(0x0190_0000_0000), Some(0x0190_0000_0002));
        let id = |ms: u64| format!("{ms:012x}7abc8def0123456789abcdef0123");
        assert!(id(0x0190_0000_0000).as_str() >= lo.as_str());
        assert!(id(0x018f_ffff_ffff).as_str() < lo.as_str());
        assert!(id(0x0190_0000_0001).as_str() < hi.as_str());
        assert!(
            id(0x0190_0000_0002).as_str() >= hi.as_str(),
            "to is exclusive"
        );
        let (lo, hi) = key_range(None, None);
        assert!(id(0).as_str() >= lo.as_str() && id(0xffff_ffff_ffff).as_str() < hi.as_str());
    }
}
