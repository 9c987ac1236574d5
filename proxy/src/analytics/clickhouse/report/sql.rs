//! Building the report query (see the [parent](super) for its shape).

use super::{Bound, ReportQuery};
use crate::report::aggregate::{key_range, Needed, COUNTED_STATUSES};
use crate::report::params::{Dimension, Trait, DAY_MS};
use crate::report::{Catalog, ReportParams};
use std::collections::HashMap;

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
#[allow(clippy::too_many_arguments)]
fn branch(
    side: Side,
    dims: &[Dimension],
    needed: &Needed,
    lookups: &Lookups,
    offset_ms: i64,
    range: &(String, String),
    settled: &[(i64, i64)],
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
            // Already selected as `o`; a trait is the column of the same name.
            Dimension::Offer => continue,
            Dimension::Trait(t) => sql.push(t.column()),
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
    for (t, wanted) in Trait::ALL.iter().zip(needed.traits) {
        if wanted {
            columns.push(t.column());
        }
    }
    match side {
        Side::Clicks => columns.extend(["visitor", "cost_micros"]),
        Side::Conversions => columns.extend(["status", "payout_micros"]),
    }
    let columns = columns.join(", ");
    let read = |sql: &mut Sql, final_: bool| {
        sql.push("SELECT ")
            .push(&columns)
            .push(" FROM ")
            .push(side.table())
            .push(if final_ { " FINAL" } else { "" })
            .push(" WHERE click_id >= ")
            .text(&range.0)
            .push(" AND click_id < ")
            .text(&range.1)
            // Excluded clicks (and their conversions, which carry the flag) never
            // count. The flag never changes, so reading it before FINAL is sound.
            .push(" AND excluded = 0");
    };
    sql.push(" FROM (");
    if side == Side::Clicks && !settled.is_empty() {
        // Settled days hold one merged part each: no repeats to collapse, so they
        // are read as they are, and only the other days pay for FINAL.
        let within = |sql: &mut Sql| {
            sql.push("(");
            for (i, (start, end)) in settled.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(ts_ms >= ")
                    .bind(Bound::Int(*start))
                    .push(" AND ts_ms < ")
                    .bind(Bound::Int(*end))
                    .push(")");
            }
            sql.push(")");
        };
        read(&mut sql, true);
        sql.push(" AND NOT ");
        within(&mut sql);
        sql.push(" UNION ALL ");
        read(&mut sql, false);
        sql.push(" AND ");
        within(&mut sql);
    } else {
        read(&mut sql, true);
    }
    sql.push(")");
    Ok(sql)
}

/// Build the report query for `params` over `catalog`.
///
/// `settled`: Unix-ms ranges of click days known to be merged (read without `FINAL`).
pub(in crate::analytics::clickhouse) fn build(
    catalog: &Catalog,
    params: &ReportParams,
    settled: &[(i64, i64)],
) -> Result<ReportQuery, String> {
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
        settled,
    )?);
    sql.push(" UNION ALL ");
    sql.append(branch(
        Side::Conversions,
        &dims,
        &needed,
        &lookups,
        offset_ms,
        &range,
        settled,
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
        let q = build(&catalog(), &params(&[]), &[]).unwrap();
        placeholders_match(&q);
        assert_eq!(
            q.sql,
            "SELECT countIf(kind = 1), uniqExactIf(visitor, kind = 1), countIf(kind = 2), \
             sum(bitShiftRight(cost, 32)), sum(toUInt64(bitAnd(cost, 4294967295))), \
             sum(bitShiftRight(payout, 32)), sum(toUInt64(bitAnd(payout, 4294967295))) FROM (\
             SELECT materialize(toUInt8(1)) AS kind, visitor, cost_micros AS cost, \
             materialize(toInt64(0)) AS payout \
             FROM (SELECT visitor, cost_micros FROM clicks FINAL WHERE click_id >= ? AND click_id < ? AND excluded = 0) \
             UNION ALL \
             SELECT if(status IN (?, ?), toUInt8(2), toUInt8(0)) AS kind, \
             materialize(toUInt64(0)) AS visitor, materialize(toInt64(0)) AS cost, \
             if(kind = 2, payout_micros, toInt64(0)) AS payout \
             FROM (SELECT status, payout_micros FROM conversions FINAL WHERE click_id >= ? AND click_id < ? AND excluded = 0))"
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
    fn settled_days_are_read_without_final_and_the_rest_with_it() {
        let day = 86_400_000;
        let q = build(&catalog(), &params(&[]), &[(10 * day, 12 * day)]).unwrap();
        placeholders_match(&q);
        assert!(
            q.sql.contains(
                "FROM (SELECT visitor, cost_micros FROM clicks FINAL WHERE click_id >= ? AND click_id < ? AND excluded = 0 \
                 AND NOT ((ts_ms >= ? AND ts_ms < ?)) UNION ALL \
                 SELECT visitor, cost_micros FROM clicks WHERE click_id >= ? AND click_id < ? AND excluded = 0 \
                 AND ((ts_ms >= ? AND ts_ms < ?)))"
            ),
            "{}",
            q.sql
        );
        assert!(
            q.sql.contains("FROM conversions FINAL"),
            "conversions are always read FINAL: {}",
            q.sql
        );
        assert!(q.binds.contains(&Bound::Int(10 * day)) && q.binds.contains(&Bound::Int(12 * day)));
    }

    #[test]
    fn keys_are_grouped_in_request_order_with_totals() {
        let q = build(
            &catalog(),
            &params(&[Dimension::Sub(2), Dimension::Campaign, Dimension::Day]),
            &[],
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
        let q = build(
            &catalog(),
            &params(&[Dimension::Network, Dimension::Offer]),
            &[],
        )
        .unwrap();
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
        let q = build(&catalog(), &params(&[Dimension::Offer]), &[]).unwrap();
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
            &[],
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
            let q = build(&catalog(), &params(&dims), &[]).unwrap();
            placeholders_match(&q);
            assert_eq!(
                q.sql
                    .matches(" FINAL WHERE click_id >= ? AND click_id < ? AND excluded = 0")
                    .count(),
                2
            );
            assert_eq!(q.sql.contains("GROUP BY"), !dims.is_empty());
        }
        assert!(build(&catalog(), &params(&[Dimension::Sub(6)]), &[]).is_err());
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
}
