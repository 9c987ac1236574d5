//! Reading the `JSONCompact` answer to a report query into rows and totals.

use super::ReportQuery;
use crate::report::params::{format_date, Dimension};
use crate::report::{Figures, ReportRow};
use serde::Deserialize;
use serde_json::Value;

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
fn recombine(high_sum: i128, low_sum: i128) -> i128 {
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
        // An unknown trait is stored empty and grouped under null, as the store does.
        (Dimension::Trait(_), Value::String(s)) if s.is_empty() => Ok(None),
        (_, Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(format!("expected a {d} value, got {cell}")),
    }
}

impl ReportQuery {
    /// The rows (sorted by key, as the store sorts them) and totals in a
    /// `JSONCompact` answer to this query.
    pub(in crate::analytics::clickhouse) fn parse(
        &self,
        body: &[u8],
    ) -> Result<(Vec<ReportRow>, Figures), String> {
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

    /// A query grouped by `dims` (only its grouping matters for reading answers).
    fn query(dims: &[Dimension]) -> ReportQuery {
        ReportQuery {
            sql: String::new(),
            binds: Vec::new(),
            dims: dims.to_vec(),
        }
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
        let q = query(&[Dimension::Offer, Dimension::Day]);
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
        let q = query(&[]);
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
        let q = query(&[Dimension::Campaign]);
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
