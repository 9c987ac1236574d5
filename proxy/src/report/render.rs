//! Reports as JSON and CSV.
//!
//! Both carry the same rows and columns: the group-by columns in the order asked for,
//! then `clicks, unique_clicks, conversions, cr, revenue, cost, profit, roi, epc`.
//! Money is written from integer cents, so `12.30` is never `12.299999`. CSV has a
//! header line and no totals line (it is meant to be imported); JSON has `totals`.

use super::aggregate::COUNTED_STATUSES;
use super::params::{format_offset, Format};
use super::{Figures, Report};
use serde_json::{json, Map, Value};

/// The figure columns, after the group-by columns.
pub const FIGURE_COLUMNS: [&str; 9] = [
    "clicks",
    "unique_clicks",
    "conversions",
    "cr",
    "revenue",
    "cost",
    "profit",
    "roi",
    "epc",
];

/// The report in `format`, with its content type.
pub fn render(report: &Report, format: Format) -> (&'static str, Vec<u8>) {
    match format {
        Format::Json => ("application/json", to_json(report).to_string().into_bytes()),
        Format::Csv => ("text/csv; charset=utf-8", to_csv(report).into_bytes()),
    }
}

/// An answered report in `format`: JSON also says where it was read (`source`) and,
/// when an automatic report could not read ClickHouse, why (`note`).
pub fn render_answered(answered: &super::Answered, format: Format) -> (&'static str, Vec<u8>) {
    match format {
        Format::Json => {
            let mut doc = to_json(&answered.report);
            doc["source"] = json!(answered.source);
            if let Some(note) = &answered.note {
                doc["note"] = json!(note);
            }
            ("application/json", doc.to_string().into_bytes())
        }
        Format::Csv => render(&answered.report, format),
    }
}

/// Cents as a JSON number with at most two decimals.
fn money(cents: i128) -> Value {
    json!(cents as f64 / 100.0)
}

/// An exact integer as a JSON number: JSON numbers here are 64-bit, so a sum beyond
/// that (billions of conversions at the payout limit) is given as a decimal string.
fn exact(micros: i128) -> Value {
    i64::try_from(micros).map_or_else(|_| json!(micros.to_string()), |m| json!(m))
}

fn figures_json(f: &Figures, into: &mut Map<String, Value>) {
    into.insert("clicks".into(), json!(f.clicks));
    into.insert("unique_clicks".into(), json!(f.unique_clicks));
    into.insert("conversions".into(), json!(f.conversions));
    into.insert("cr".into(), json!(f.cr_percent()));
    into.insert("revenue".into(), money(f.revenue_cents()));
    into.insert("cost".into(), money(f.cost_cents()));
    into.insert("profit".into(), money(f.profit_cents()));
    into.insert("roi".into(), json!(f.roi_percent()));
    into.insert("epc".into(), json!(f.epc()));
    into.insert("revenue_micros".into(), exact(f.revenue_micros));
    into.insert("cost_micros".into(), exact(f.cost_micros));
}

/// The report as a JSON document.
pub fn to_json(report: &Report) -> Value {
    let p = &report.params;
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|row| {
            let mut obj = Map::new();
            for (d, k) in p.group_by.iter().zip(&row.keys) {
                obj.insert(d.name().into(), json!(k));
            }
            figures_json(&row.figures, &mut obj);
            Value::Object(obj)
        })
        .collect();
    let mut totals = Map::new();
    figures_json(&report.totals, &mut totals);
    json!({
        "group_by": p.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "from_ms": p.from_ms,
        "to_ms": p.to_ms,
        "tz": format_offset(p.tz_offset_min),
        "time_basis": "click",
        "counted_statuses": COUNTED_STATUSES,
        "rows": rows,
        "totals": Value::Object(totals),
    })
}

/// `-12.30` from -1230 cents, exactly.
pub fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}")).unwrap_or_default()
}

/// One CSV field, quoted when needed (RFC 4180). Sub ids come from ad URLs, so, as
/// OWASP's CSV-injection rule says, a value a spreadsheet could run as a formula (one
/// starting with `=`, `+`, `-`, `@`, tab or CR — `-2+3+cmd|...` is a formula too) is
/// prefixed with `'`. Only text cells come through here; figures are written as
/// numbers.
fn field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// The report as CSV: a header, then one line per row (CRLF line ends).
pub fn to_csv(report: &Report) -> String {
    let mut out = String::new();
    let header: Vec<&str> = report
        .params
        .group_by
        .iter()
        .map(|d| d.name())
        .chain(FIGURE_COLUMNS)
        .collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for row in &report.rows {
        let f = &row.figures;
        let mut cells: Vec<String> = row
            .keys
            .iter()
            .map(|k| field(k.as_deref().unwrap_or("")))
            .collect();
        cells.extend([
            f.clicks.to_string(),
            f.unique_clicks.to_string(),
            f.conversions.to_string(),
            opt(f.cr_percent(), 2),
            format_cents(f.revenue_cents()),
            format_cents(f.cost_cents()),
            format_cents(f.profit_cents()),
            opt(f.roi_percent(), 2),
            opt(f.epc(), 4),
        ]);
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Dimension, ReportParams, ReportRow};

    #[test]
    fn csv_quotes_and_defuses_hostile_sub_ids() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for (hostile, defused) in [
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("+1", "'+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("-1,2", "\"'-1,2\""),
        ] {
            assert_eq!(field(hostile), defused, "{hostile:?}");
        }
        assert_eq!(field("a-b"), "a-b", "only a leading character counts");
        assert_eq!(format_cents(-1230), "-12.30");
        assert_eq!(format_cents(5), "0.05");
    }

    #[test]
    fn csv_rows_follow_the_header() {
        let report = Report {
            params: ReportParams {
                group_by: vec![Dimension::Campaign, Dimension::Sub(1)],
                ..Default::default()
            },
            rows: vec![ReportRow {
                keys: vec![Some("c1".into()), None],
                figures: Figures {
                    clicks: 4,
                    unique_clicks: 3,
                    conversions: 1,
                    revenue_micros: 2_500_000,
                    cost_micros: 80_000,
                },
            }],
            totals: Figures::default(),
        };
        assert_eq!(
            to_csv(&report),
            "campaign,sub1,clicks,unique_clicks,conversions,cr,revenue,cost,profit,roi,epc\r\n\
             c1,,4,3,1,25.00,2.50,0.08,2.42,3025.00,0.6250\r\n"
        );
        let json = to_json(&report);
        assert_eq!(json["rows"][0]["sub1"], Value::Null);
        assert_eq!(json["rows"][0]["profit"], json!(2.42));
        assert_eq!(json["totals"]["cr"], Value::Null);
    }
}
