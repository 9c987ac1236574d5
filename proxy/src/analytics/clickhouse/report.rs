//! A report read from ClickHouse: one query that groups and counts server-side and
//! returns the same rows and totals as the store's own report
//! ([`crate::store::sqlite::report`] fed to [`crate::report::aggregate`]).
//!
//! # The query
//!
//! ```text
//! SELECT <keys>, countIf(kind = 1), uniqExactIf(visitor, kind = 1), countIf(kind = 2),
//!        <cost and payout sums, in two halves each>
//! FROM (
//!     SELECT <offer> AS o, <key>…, 1 AS kind, visitor, cost, 0 AS payout
//!     FROM (SELECT <columns> FROM clicks FINAL WHERE click_id >= ? AND click_id < ?)
//!   UNION ALL
//!     SELECT <offer> AS o, <key>…, if(status IN (?, ?), 2, 0) AS kind, 0, 0, payout
//!     FROM (SELECT <columns> FROM conversions FINAL WHERE click_id >= ? AND click_id < ?)
//! )
//! GROUP BY <keys> WITH TOTALS
//! ```
//!
//! - **Latest versions only.** Each table is read `FINAL` in a subquery filtered on
//!   the key alone, so every version of a row is there to be replaced. The status of
//!   a conversion is only looked at afterwards, and not as a filter at all: an
//!   uncounted conversion becomes `kind = 0`, which no figure counts (a filter could
//!   be pushed below `FINAL` by the optimizer, where a stale version would survive).
//!   Groups left with nothing counted are dropped here, as the store never forms them.
//! - **Offer and network** come from the catalog, bound as arrays to `transform`:
//!   the recorded offer, else the campaign's sole offer; the conversion's network,
//!   else the offer's. `transform` needs a non-null default, so "not found" is a
//!   sentinel string chosen to differ from every catalog value, mapped to `NULL`.
//! - **Exact sums.** ClickHouse sums `Int64` in `Int64`, which a few million payouts
//!   at the limit overflow. Each amount `x` is split into `x >> 32` (arithmetic:
//!   `Int64`) and `x & 0xffffffff` (`0 ..= 2³²-1`, summed as `UInt64`); neither sum
//!   can wrap below 2³² rows in a group, and `hi · 2³² + lo` recombines them exactly
//!   in 128 bits here.
//! - **Days** are `floor((ts_ms + offset) / DAY_MS)` (`intDiv` truncates, so one is
//!   taken off for negative remainders), formatted with the store's `format_date`.
//! - **Rows and totals in one pass:** `WITH TOTALS` gives the overall figures,
//!   including the overall distinct visitor count, which rows cannot be summed into.
//!   The answer is read as `JSONCompact` (64-bit integers come quoted; plain numbers
//!   are accepted too) and sorted here by key exactly as the store sorts.
//!
//! Every value goes in through the client's `?` binding; dimension names never
//! reach the SQL, only column names chosen from [`Dimension`].

use crate::report::aggregate::{key_range, Needed, COUNTED_STATUSES};
use crate::report::params::{format_date, Dimension, DAY_MS};
use crate::report::{Catalog, Figures, ReportParams, ReportRow};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// A value bound to the next `?` of the query.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bound {
    Text(String),
    Int(i64),
    List(Vec<String>),
}

/// A report query ready to send: SQL with `?` placeholders and their values in
/// order.
#[derive(Debug, Clone)]
pub(super) struct ReportQuery {
    pub sql: String,
    pub binds: Vec<Bound>,
    dims: Vec<Dimension>,
}

/// SQL text and the values of its placeholders, built side by side so they cannot
/// drift apart.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bound>,
}

impl Sql {
    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: Bound) -> &mut Self {
        self.text.push('?');
        self.binds.push(value);
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bound::Text(value.to_string()))
    }

    fn append(&mut self, other: Sql) -> &mut Self {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
        self
    }
}

/// The catalog as parallel arrays for `transform`, deduplicated as the aggregator's
/// maps are (a later pair wins), plus the "not found" sentinel.
struct Lookups {
    campaigns: Vec<String>,
    sole_offers: Vec<String>,
    offers: Vec<String>,
    networks: Vec<String>,
    not_found: String,
}

impl Lookups {
    fn new(catalog: &Catalog) -> Lookups {
        let split = |pairs: &[(String, String)]| -> (Vec<String>, Vec<String>) {
            let map: HashMap<&str, &str> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut sorted: Vec<(&str, &str)> = map.into_iter().collect();
            // Sorted, so the same catalog always gives the same SQL.
            sorted.sort_unstable();
            sorted
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .unzip()
        };
        let (campaigns, sole_offers) = split(&catalog.sole_offers);
        let (offers, networks) = split(&catalog.offer_networks);
        // Config ids are never empty, so this is "" in practice; the loop keeps any
        // catalog exact.
        let mut not_found = String::new();
        while [&campaigns, &sole_offers, &offers, &networks]
            .iter()
            .any(|list| list.contains(&not_found))
        {
            not_found.push('\u{1}');
        }
        Lookups {
            campaigns,
            sole_offers,
            offers,
            networks,
            not_found,
        }
    }
}

/// Which table a branch of the union reads.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Clicks,
    Conversions,
}

impl Side {
    fn table(self) -> &'static str {
        match self {
            Side::Clicks => "clicks",
            Side::Conversions => "conversions",
        }
    }

    fn ts(self) -> &'static str {
        match self {
            Side::Clicks => "ts_ms",
            Side::Conversions => "click_ts_ms",
        }
    }

    /// The offer recorded with the row (a click's latest `/go`; a conversion's own,
    /// which already falls back to its click's).
    fn recorded_offer(self) -> &'static str {
        match self {
            Side::Clicks => "last_offer_id",
            Side::Conversions => "offer_id",
        }
    }
}

const SUB_COLUMNS: [&str; 5] = ["sub1", "sub2", "sub3", "sub4", "sub5"];

fn sub_column(n: u8) -> Result<&'static str, String> {
    usize::from(n)
        .checked_sub(1)
        .and_then(|i| SUB_COLUMNS.get(i).copied())
        .ok_or_else(|| format!("no sub id {n}: sub ids are sub1..sub5"))
}

/// The name a dimension's key has in the union and the outer query.
fn key_name(i: usize, d: Dimension) -> String {
    match d {
        Dimension::Offer => "o".to_string(),
        _ => format!("k{i}"),
    }
}

/// One branch of the union: the latest version of each row of `side` in the range,
/// with its keys and what it adds to the figures.
fn branch(
    side: Side,
    dims: &[Dimension],
    needed: &Needed,
    lookups: &Lookups,
    offset_ms: i64,
    range: &(String, String),
) -> Result<Sql, String> {
    let mut sql = Sql::default();
    sql.push("SELECT ");
    if needed.offer {
        if lookups.campaigns.is_empty() {
            sql.push(side.recorded_offer());
        } else {
            sql.push("ifNull(")
                .push(side.recorded_offer())
                .push(", nullIf(transform(campaign_id, ")
                .bind(Bound::List(lookups.campaigns.clone()))
                .push(", ")
                .bind(Bound::List(lookups.sole_offers.clone()))
                .push(", ")
                .text(&lookups.not_found)
                .push("), ")
                .text(&lookups.not_found)
                .push("))");
        }
        sql.push(" AS o, ");
    }
    for (i, d) in dims.iter().enumerate() {
        match d {
            Dimension::Campaign => sql.push("campaign_id"),
            Dimension::Source => sql.push("source_id"),
            Dimension::Sub(n) => sql.push(sub_column(*n)?),
            Dimension::Day => {
                let ts = side.ts();
                sql.push("intDiv(")
                    .push(ts)
                    .push(" + ")
                    .bind(Bound::Int(offset_ms))
                    .push(&format!(", {DAY_MS}) - ((("))
                    .push(ts)
                    .push(" + ")
                    .bind(Bound::Int(offset_ms))
                    .push(&format!(") % {DAY_MS}) < 0)"))
            }
            // Already selected as `o`.
            Dimension::Offer => continue,
            Dimension::Network => {
                let own = (side == Side::Conversions).then_some("network_id");
                if lookups.offers.is_empty() {
                    sql.push(own.unwrap_or("materialize(CAST(NULL AS Nullable(String)))"));
                } else {
                    if let Some(own) = own {
                        sql.push("ifNull(").push(own).push(", ");
                    }
                    sql.push("nullIf(transform(ifNull(o, ")
                        .text(&lookups.not_found)
                        .push("), ")
                        .bind(Bound::List(lookups.offers.clone()))
                        .push(", ")
                        .bind(Bound::List(lookups.networks.clone()))
                        .push(", ")
                        .text(&lookups.not_found)
                        .push("), ")
                        .text(&lookups.not_found)
                        .push(")");
                    if own.is_some() {
                        sql.push(")");
                    }
                }
                &mut sql
            }
        };
        sql.push(" AS ").push(&key_name(i, *d)).push(", ");
    }
    // Constants are materialized: 18.16 cannot unite a constant column of one
    // branch with a computed column of the other (code 171).
    match side {
        Side::Clicks => {
            sql.push(
                "materialize(toUInt8(1)) AS kind, visitor, cost_micros AS cost, \
                 materialize(toInt64(0)) AS payout",
            );
        }
        Side::Conversions => {
            sql.push("if(status IN (");
            for (i, status) in COUNTED_STATUSES.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(status);
            }
            sql.push(
                "), toUInt8(2), toUInt8(0)) AS kind, materialize(toUInt64(0)) AS visitor, \
                 materialize(toInt64(0)) AS cost, if(kind = 2, payout_micros, toInt64(0)) AS payout",
            );
        }
    }

    // The raw columns, read FINAL and filtered on the sorting key alone.
    let mut columns: Vec<&str> = Vec::new();
    if needed.day {
        columns.push(side.ts());
    }
    if needed.campaign {
        columns.push("campaign_id");
    }
    if needed.source {
        columns.push("source_id");
    }
    for (wanted, column) in needed.subs.iter().zip(SUB_COLUMNS) {
        if *wanted {
            columns.push(column);
        }
    }
    if needed.offer {
        columns.push(side.recorded_offer());
        if side == Side::Conversions && dims.contains(&Dimension::Network) {
            columns.push("network_id");
        }
    }
    match side {
        Side::Clicks => columns.extend(["visitor", "cost_micros"]),
        Side::Conversions => columns.extend(["status", "payout_micros"]),
    }
    sql.push(" FROM (SELECT ")
        .push(&columns.join(", "))
        .push(" FROM ")
        .push(side.table())
        .push(" FINAL WHERE click_id >= ")
        .text(&range.0)
        .push(" AND click_id < ")
        .text(&range.1)
        .push(")");
    Ok(sql)
}

/// Build the report query for `params` over `catalog`.
pub(super) fn build(catalog: &Catalog, params: &ReportParams) -> Result<ReportQuery, String> {
    let dims = params.group_by.clone();
    let needed = Needed::of(params);
    let lookups = Lookups::new(catalog);
    let offset_ms = i64::from(params.tz_offset_min) * 60_000;
    let range = key_range(params.from_ms, params.to_ms);
    let keys: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| key_name(i, *d))
        .collect();

    let mut sql = Sql::default();
    sql.push("SELECT ");
    for key in &keys {
        sql.push(key).push(", ");
    }
    sql.push(
        "countIf(kind = 1), uniqExactIf(visitor, kind = 1), countIf(kind = 2), \
         sum(bitShiftRight(cost, 32)), sum(toUInt64(bitAnd(cost, 4294967295))), \
         sum(bitShiftRight(payout, 32)), sum(toUInt64(bitAnd(payout, 4294967295))) FROM (",
    );
    sql.append(branch(
        Side::Clicks,
        &dims,
        &needed,
        &lookups,
        offset_ms,
        &range,
    )?);
    sql.push(" UNION ALL ");
    sql.append(branch(
        Side::Conversions,
        &dims,
        &needed,
        &lookups,
        offset_ms,
        &range,
    )?);
    sql.push(")");
    if !keys.is_empty() {
        sql.push(" GROUP BY ")
            .push(&keys.join(", "))
            .push(" WITH TOTALS");
    }
    Ok(ReportQuery {
        sql: sql.text,
        binds: sql.binds,
        dims,
    })
}

/// What `JSONCompact` carries that a report needs.
#[derive(Deserialize)]
struct Answer {
    data: Vec<Vec<Value>>,
    #[serde(default)]
    totals: Option<Vec<Value>>,
}

/// The figures a row ends with: clicks, unique, conversions, cost hi/lo, payout hi/lo.
const FIGURE_CELLS: usize = 7;

/// An integer cell: quoted (64-bit integers, by default) or a plain number.
fn integer(cell: &Value) -> Result<i128, String> {
    match cell {
        Value::String(s) => s.parse::<i128>().ok(),
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
    .ok_or_else(|| format!("expected an integer, got {cell}"))
}

fn count(cell: &Value) -> Result<u64, String> {
    u64::try_from(integer(cell)?).map_err(|_| format!("expected a count, got {cell}"))
}

/// A sum from its halves: `Σ(x >> 32) · 2³² + Σ(x & 0xffffffff)`.
pub(super) fn recombine(high_sum: i128, low_sum: i128) -> i128 {
    high_sum * (1i128 << 32) + low_sum
}

fn figures(cells: &[Value]) -> Result<Figures, String> {
    let [clicks, unique, conversions, cost_hi, cost_lo, payout_hi, payout_lo] = cells else {
        return Err(format!(
            "expected {FIGURE_CELLS} figures, got {}",
            cells.len()
        ));
    };
    Ok(Figures {
        clicks: count(clicks)?,
        unique_clicks: count(unique)?,
        conversions: count(conversions)?,
        revenue_micros: recombine(integer(payout_hi)?, integer(payout_lo)?),
        cost_micros: recombine(integer(cost_hi)?, integer(cost_lo)?),
    })
}

fn key(d: Dimension, cell: &Value) -> Result<Option<String>, String> {
    match (d, cell) {
        (Dimension::Day, _) => {
            let day = i64::try_from(integer(cell)?).map_err(|_| format!("day {cell}"))?;
            Ok(Some(format_date(day)))
        }
        (_, Value::Null) => Ok(None),
        (_, Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(format!("expected a {d} value, got {cell}")),
    }
}

impl ReportQuery {
    /// The rows (sorted by key, as the store sorts them) and totals in a
    /// `JSONCompact` answer to this query.
    pub fn parse(&self, body: &[u8]) -> Result<(Vec<ReportRow>, Figures), String> {
        let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let n = self.dims.len();
        let mut rows = Vec::with_capacity(answer.data.len());
        for cells in &answer.data {
            if cells.len() != n + FIGURE_CELLS {
                return Err(format!(
                    "a row has {} cells, expected {}",
                    cells.len(),
                    n + FIGURE_CELLS
                ));
            }
            let keys = self
                .dims
                .iter()
                .zip(cells)
                .map(|(d, cell)| key(*d, cell))
                .collect::<Result<_, _>>()?;
            rows.push(ReportRow {
                keys,
                figures: figures(&cells[n..])?,
            });
        }
        // A group of uncounted conversions only: the store never forms it.
        rows.retain(|r| r.figures.clicks > 0 || r.figures.conversions > 0);
        let totals = if n == 0 {
            // No grouping: the one row is the total (present even over nothing).
            rows.first().map(|r| r.figures).unwrap_or_default()
        } else {
            match &answer.totals {
                Some(cells) if cells.len() == n + FIGURE_CELLS => figures(&cells[n..])?,
                Some(cells) => return Err(format!("totals have {} cells", cells.len())),
                None => Figures::default(),
            }
        };
        rows.sort_unstable_by(|a, b| a.keys.cmp(&b.keys));
        Ok((rows, totals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dims: &[Dimension]) -> ReportParams {
        ReportParams {
            group_by: dims.to_vec(),
            from_ms: Some(0x0190_0000_0000),
            to_ms: Some(0x0190_0000_1000),
            tz_offset_min: 120,
            ..Default::default()
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            sole_offers: vec![("camp".into(), "offer".into())],
            offer_networks: vec![("offer".into(), "net".into())],
        }
    }

    /// Every `?` has its value, in order.
    fn placeholders_match(q: &ReportQuery) {
        assert_eq!(q.sql.matches('?').count(), q.binds.len(), "{}", q.sql);
    }

    #[test]
    fn without_grouping_one_row_of_figures_over_both_tables() {
        let q = build(&catalog(), &params(&[])).unwrap();
        placeholders_match(&q);
        assert_eq!(
            q.sql,
            "SELECT countIf(kind = 1), uniqExactIf(visitor, kind = 1), countIf(kind = 2), \
             sum(bitShiftRight(cost, 32)), sum(toUInt64(bitAnd(cost, 4294967295))), \
             sum(bitShiftRight(payout, 32)), sum(toUInt64(bitAnd(payout, 4294967295))) FROM (\
             SELECT materialize(toUInt8(1)) AS kind, visitor, cost_micros AS cost, \
             materialize(toInt64(0)) AS payout \
             FROM (SELECT visitor, cost_micros FROM clicks FINAL WHERE click_id >= ? AND click_id < ?) \
             UNION ALL \
             SELECT if(status IN (?, ?), toUInt8(2), toUInt8(0)) AS kind, \
             materialize(toUInt64(0)) AS visitor, materialize(toInt64(0)) AS cost, \
             if(kind = 2, payout_micros, toInt64(0)) AS payout \
             FROM (SELECT status, payout_micros FROM conversions FINAL WHERE click_id >= ? AND click_id < ?))"
        );
        let (lo, hi) = key_range(Some(0x0190_0000_0000), Some(0x0190_0000_1000));
        assert_eq!(
            q.binds,
            [
                Bound::Text(lo.clone()),
                Bound::Text(hi.clone()),
                Bound::Text("approved".into()),
                Bound::Text("pending".into()),
                Bound::Text(lo),
                Bound::Text(hi),
            ]
        );
    }

    #[test]
    fn keys_are_grouped_in_request_order_with_totals() {
        let q = build(
            &catalog(),
            &params(&[Dimension::Sub(2), Dimension::Campaign, Dimension::Day]),
        )
        .unwrap();
        placeholders_match(&q);
        assert!(q.sql.starts_with("SELECT k0, k1, k2, countIf"), "{}", q.sql);
        assert!(
            q.sql.ends_with(" GROUP BY k0, k1, k2 WITH TOTALS"),
            "{}",
            q.sql
        );
        assert!(q.sql.contains(
            "SELECT sub2 AS k0, campaign_id AS k1, \
             intDiv(ts_ms + ?, 86400000) - (((ts_ms + ?) % 86400000) < 0) AS k2, materialize("
        ));
        assert!(q.sql.contains(
            "FROM (SELECT ts_ms, campaign_id, sub2, visitor, cost_micros FROM clicks FINAL"
        ));
        assert!(q.sql.contains(
            "FROM (SELECT click_ts_ms, campaign_id, sub2, status, payout_micros FROM conversions FINAL"
        ));
        assert_eq!(
            q.binds
                .iter()
                .filter(|b| **b == Bound::Int(7_200_000))
                .count(),
            4,
            "the offset, twice per branch"
        );
        assert!(!q.sql.contains("transform"), "no offer needed");
    }

    #[test]
    fn offer_and_network_come_from_the_catalog() {
        let q = build(&catalog(), &params(&[Dimension::Network, Dimension::Offer])).unwrap();
        placeholders_match(&q);
        assert!(q.sql.starts_with("SELECT k0, o, countIf"), "{}", q.sql);
        assert!(q.sql.contains(
            "SELECT ifNull(last_offer_id, nullIf(transform(campaign_id, ?, ?, ?), ?)) AS o, \
             nullIf(transform(ifNull(o, ?), ?, ?, ?), ?) AS k0, materialize("
        ));
        assert!(q.sql.contains(
            "SELECT ifNull(offer_id, nullIf(transform(campaign_id, ?, ?, ?), ?)) AS o, \
             ifNull(network_id, nullIf(transform(ifNull(o, ?), ?, ?, ?), ?)) AS k0, if(status"
        ));
        assert!(q
            .sql
            .contains("SELECT campaign_id, last_offer_id, visitor, cost_micros FROM clicks"));
        assert!(q.sql.contains(
            "SELECT campaign_id, offer_id, network_id, status, payout_micros FROM conversions"
        ));
        assert_eq!(q.sql.matches(" GROUP BY k0, o WITH TOTALS").count(), 1);
        assert!(q.binds.contains(&Bound::List(vec!["camp".into()])));
        assert!(q.binds.contains(&Bound::List(vec!["net".into()])));

        // The offer alone needs no network lookup.
        let q = build(&catalog(), &params(&[Dimension::Offer])).unwrap();
        placeholders_match(&q);
        assert!(
            !q.sql.contains("network_id") && !q.binds.contains(&Bound::List(vec!["net".into()]))
        );
    }

    #[test]
    fn an_empty_catalog_binds_no_empty_arrays() {
        let q = build(
            &Catalog::default(),
            &params(&[Dimension::Offer, Dimension::Network]),
        )
        .unwrap();
        placeholders_match(&q);
        assert!(!q.sql.contains("transform"), "{}", q.sql);
        assert!(q.sql.contains(
            "SELECT last_offer_id AS o, materialize(CAST(NULL AS Nullable(String))) AS k1, \
             materialize("
        ));
        assert!(q
            .sql
            .contains("SELECT offer_id AS o, network_id AS k1, if(status"));
    }

    #[test]
    fn every_dimension_set_builds_consistently() {
        let all = [
            Dimension::Campaign,
            Dimension::Offer,
            Dimension::Network,
            Dimension::Source,
            Dimension::Sub(1),
            Dimension::Sub(2),
            Dimension::Sub(3),
            Dimension::Sub(4),
            Dimension::Sub(5),
            Dimension::Day,
        ];
        for mask in 0u32..(1 << all.len()) {
            let dims: Vec<Dimension> = (0..all.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| all[i])
                .collect();
            let q = build(&catalog(), &params(&dims)).unwrap();
            placeholders_match(&q);
            assert_eq!(
                q.sql
                    .matches(" FINAL WHERE click_id >= ? AND click_id < ?")
                    .count(),
                2
            );
            assert_eq!(q.sql.contains("GROUP BY"), !dims.is_empty());
        }
        assert!(build(&catalog(), &params(&[Dimension::Sub(6)])).is_err());
    }

    #[test]
    fn the_not_found_sentinel_differs_from_every_catalog_value() {
        let catalog = Catalog {
            sole_offers: vec![("".into(), "\u{1}".into())],
            offer_networks: vec![("o".into(), "n".into())],
        };
        assert_eq!(Lookups::new(&catalog).not_found, "\u{1}\u{1}");
        assert_eq!(Lookups::new(&self::catalog()).not_found, "");
    }

    #[test]
    fn the_catalog_dedups_as_the_aggregator_does() {
        let catalog = Catalog {
            sole_offers: vec![
                ("b".into(), "1".into()),
                ("a".into(), "2".into()),
                ("b".into(), "3".into()),
            ],
            offer_networks: Vec::new(),
        };
        let lookups = Lookups::new(&catalog);
        assert_eq!(lookups.campaigns, ["a", "b"]);
        assert_eq!(lookups.sole_offers, ["2", "3"], "the later pair wins");
    }

    /// What the server computes per amount, mirrored: `x >> 32` and `x & 0xffffffff`.
    fn halves(x: i64) -> (i128, i128) {
        (i128::from(x >> 32), i128::from(x & 0xffff_ffff))
    }

    #[test]
    fn halves_recombine_exactly_with_negatives_and_extremes() {
        let amounts = [
            0,
            1,
            -1,
            4_294_967_295,
            4_294_967_296,
            -4_294_967_296,
            -4_294_967_297,
            -2_500_000,
            1_000_000_000_000,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        for x in amounts {
            let (hi, lo) = halves(x);
            assert!((0..1 << 32).contains(&lo));
            assert_eq!(recombine(hi, lo), i128::from(x), "{x}");
        }
        // A sum beyond i64 in both directions.
        for list in [
            vec![i64::MAX, i64::MAX, 5, -3],
            vec![i64::MIN, i64::MIN, -1, 7],
            vec![i64::MIN, i64::MAX, -2_500_000],
        ] {
            let (hi, lo) = list
                .iter()
                .map(|x| halves(*x))
                .fold((0, 0), |(h, l), (a, b)| (h + a, l + b));
            assert_eq!(
                recombine(hi, lo),
                list.iter().map(|x| i128::from(*x)).sum::<i128>()
            );
        }
    }

    #[test]
    fn answers_parse_into_sorted_rows_and_totals() {
        let q = build(&catalog(), &params(&[Dimension::Offer, Dimension::Day])).unwrap();
        let body = br#"{"meta": [], "data": [
            ["offer", "20758", "3", "2", "1", "0", "30000", "0", "2500000"],
            [null, "20757", "1", "1", "0", "-1", "4294967295", "0", "0"],
            ["x", 20758, "0", "0", "0", "0", "0", "0", "0"],
            ["", "20758", "0", "0", "1", "0", "0", "2", "5"]
        ], "totals": [null, "0", "4", "3", "2", "-1", "4294997295", "2", "2500005"], "rows": 4}"#;
        let (rows, totals) = q.parse(body).unwrap();
        let keys: Vec<_> = rows.iter().map(|r| r.keys.clone()).collect();
        assert_eq!(
            keys,
            [
                vec![None, Some("2026-10-31".to_string())],
                vec![Some(String::new()), Some("2026-11-01".to_string())],
                vec![Some("offer".to_string()), Some("2026-11-01".to_string())],
            ],
            "sorted, None first; the group with nothing counted dropped"
        );
        assert_eq!(rows[0].figures.cost_micros, -1, "-2³² + 2³² - 1");
        assert_eq!(rows[1].figures.revenue_micros, 2 * (1 << 32) + 5);
        assert_eq!(
            totals,
            Figures {
                clicks: 4,
                unique_clicks: 3,
                conversions: 2,
                revenue_micros: 2 * (1 << 32) + 2_500_005,
                cost_micros: 29_999,
            }
        );
    }

    #[test]
    fn without_grouping_nothing_counted_is_no_row() {
        let q = build(&catalog(), &params(&[])).unwrap();
        let empty = br#"{"data": [["0", "0", "0", "0", "0", "0", "0"]]}"#;
        let (rows, totals) = q.parse(empty).unwrap();
        assert!(rows.is_empty() && totals == Figures::default());
        let some = br#"{"data": [["2", "1", "0", "0", "10", "0", "0"]]}"#;
        let (rows, totals) = q.parse(some).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].keys.is_empty() && rows[0].figures == totals && totals.cost_micros == 10);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let q = build(&catalog(), &params(&[Dimension::Campaign])).unwrap();
        for body in [
            &br#"{"data": [["a", "1"]]}"#[..],
            br#"{"data": [[1, "1", "1", "0", "0", "0", "0", "0"]]}"#,
            br#"{"data": [["a", "x", "1", "0", "0", "0", "0", "0"]]}"#,
            br#"{"data": [["a", "-1", "1", "0", "0", "0", "0", "0"]]}"#,
            b"Code: 60. DB::Exception: Table doesn't exist",
        ] {
            assert!(q.parse(body).is_err());
        }
    }
}
