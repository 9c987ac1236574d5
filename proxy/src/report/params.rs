//! What a report asks for: group-by dimensions, a time range and a time zone, parsed
//! from a query string (`group_by=campaign,sub1,day&from=2026-11-01&to=2026-11-30&tz=+02:00`).
//!
//! Time zones are fixed UTC offsets (`+02:00`, `-05:30`, `Z`): a report never depends
//! on the host's tz database, so the same request gives the same figures everywhere.
//! Dates are calendar days in that offset, and `to` is inclusive (the whole day).

use clickstamp_plugins::query::{first_value, parse_query};
use std::fmt;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A column a report can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    Campaign,
    Offer,
    Network,
    Source,
    /// `sub1`..`sub5`: index 1..=5.
    Sub(u8),
    /// The calendar day of the click in the report's offset.
    Day,
    /// A click's recorded trait (docs/traffic-rules.md): quality, lander, country,
    /// device, OS or browser.
    Trait(Trait),
}

/// The click traits a report can group by: columns of the click, empty (grouped
/// under `null`) when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trait {
    /// `ok` or `flagged`.
    Quality,
    Lander,
    Country,
    Device,
    Os,
    Browser,
}

impl Trait {
    /// Every trait, in column order.
    pub const ALL: [Trait; 6] = [
        Trait::Quality,
        Trait::Lander,
        Trait::Country,
        Trait::Device,
        Trait::Os,
        Trait::Browser,
    ];

    /// The click column, and the dimension's name.
    pub fn column(self) -> &'static str {
        match self {
            Trait::Quality => "quality",
            Trait::Lander => "lander",
            Trait::Country => "country",
            Trait::Device => "device",
            Trait::Os => "os",
            Trait::Browser => "browser",
        }
    }
}

impl Dimension {
    /// Every dimension, for help texts.
    pub const ALL: [&'static str; 16] = [
        "campaign", "offer", "network", "source", "sub1", "sub2", "sub3", "sub4", "sub5", "day",
        "quality", "lander", "country", "device", "os", "browser",
    ];

    /// Parse a dimension name.
    pub fn parse(name: &str) -> Option<Dimension> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "campaign" => Dimension::Campaign,
            "offer" => Dimension::Offer,
            "network" => Dimension::Network,
            "source" | "traffic_source" => Dimension::Source,
            "sub1" => Dimension::Sub(1),
            "sub2" => Dimension::Sub(2),
            "sub3" => Dimension::Sub(3),
            "sub4" => Dimension::Sub(4),
            "sub5" => Dimension::Sub(5),
            "day" | "date" => Dimension::Day,
            other => {
                return Trait::ALL
                    .into_iter()
                    .find(|t| t.column() == other)
                    .map(Dimension::Trait)
            }
        })
    }

    /// The column name in JSON and CSV output.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Campaign => "campaign",
            Dimension::Offer => "offer",
            Dimension::Network => "network",
            Dimension::Source => "source",
            Dimension::Sub(n) => ["sub1", "sub2", "sub3", "sub4", "sub5"][usize::from(n - 1)],
            Dimension::Day => "day",
            Dimension::Trait(t) => t.column(),
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// Where a report is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportSource {
    /// ClickHouse when analytics is configured and backfilled, else the store.
    #[default]
    Auto,
    /// The store (`source=store`).
    Store,
    /// ClickHouse, or an error (`source=clickhouse`).
    ClickHouse,
}

impl ReportSource {
    /// The parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            ReportSource::Auto => "auto",
            ReportSource::Store => "store",
            ReportSource::ClickHouse => "clickhouse",
        }
    }
}

/// A parsed report request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportParams {
    /// Grouping columns, in output order, without repeats.
    pub group_by: Vec<Dimension>,
    /// Clicks from this instant (Unix ms, inclusive); `None` = from the first click.
    pub from_ms: Option<i64>,
    /// Clicks before this instant (Unix ms, exclusive); `None` = up to now and beyond.
    pub to_ms: Option<i64>,
    /// The offset days are cut in, in minutes east of UTC.
    pub tz_offset_min: i32,
    pub format: Format,
    /// Where to read it.
    pub source: ReportSource,
}

/// A parameter that cannot be understood. The message names the parameter and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    pub param: &'static str,
    pub message: String,
}

fn err(param: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        param,
        message: message.into(),
    }
}

/// The parameters [`ReportParams::from_query`] reads.
const KNOWN_PARAMS: &[&str] = &[
    "group_by", "group-by", "from", "to", "from_ms", "to_ms", "tz", "format", "source",
];

impl ReportParams {
    /// Parse a query string. Any other parameter is refused. Accepts `group_by` (or `group-by`), `from`, `to` (dates,
    /// `to` inclusive), `from_ms`/`to_ms` (Unix ms, half-open; they win over dates),
    /// `tz` and `format`.
    pub fn from_query(query: &str) -> Result<ReportParams, ParamError> {
        let q = parse_query(query);
        // A misspelt parameter (`form=`) would otherwise widen the report silently.
        if let Some((k, _)) = q.iter().find(|(k, _)| !KNOWN_PARAMS.contains(&k.as_str())) {
            let shown: String = k.chars().take(64).collect();
            return Err(err(
                "query",
                format!(
                    "unknown parameter {shown:?}; a report takes {}",
                    KNOWN_PARAMS.join(", ")
                ),
            ));
        }
        // Trim only the end: a leading space is an unescaped `+` of a tz offset.
        let get = |k: &str| {
            first_value(&q, k)
                .map(str::trim_end)
                .filter(|v| !v.trim().is_empty())
        };
        let mut p = ReportParams::default();
        if let Some(groups) = get("group_by").or_else(|| get("group-by")) {
            for name in groups.split(',').filter(|s| !s.trim().is_empty()) {
                let d = Dimension::parse(name.trim()).ok_or_else(|| {
                    err(
                        "group_by",
                        format!(
                            "unknown dimension {name:?}; use any of {}",
                            Dimension::ALL.join(", ")
                        ),
                    )
                })?;
                if !p.group_by.contains(&d) {
                    p.group_by.push(d);
                }
            }
        }
        if let Some(tz) = get("tz") {
            p.tz_offset_min = parse_offset(tz).ok_or_else(|| {
                err(
                    "tz",
                    format!("{tz:?} is not a fixed UTC offset; write +02:00, -05:30 or Z"),
                )
            })?;
        }
        let offset_ms = i64::from(p.tz_offset_min) * 60_000;
        if let Some(from) = get("from") {
            let day = parse_date(from.trim())
                .ok_or_else(|| err("from", format!("{from:?} is not a date; write YYYY-MM-DD")))?;
            p.from_ms = Some(day * DAY_MS - offset_ms);
        }
        if let Some(to) = get("to") {
            let day = parse_date(to.trim())
                .ok_or_else(|| err("to", format!("{to:?} is not a date; write YYYY-MM-DD")))?;
            p.to_ms = Some((day + 1) * DAY_MS - offset_ms);
        }
        if let Some(v) = get("from_ms") {
            p.from_ms = Some(parse_ms("from_ms", v)?);
        }
        if let Some(v) = get("to_ms") {
            p.to_ms = Some(parse_ms("to_ms", v)?);
        }
        if let (Some(from), Some(to)) = (p.from_ms, p.to_ms) {
            if to <= from {
                return Err(err("to", "the range is empty: `to` is before `from`"));
            }
        }
        if let Some(f) = get("format") {
            p.format = match f.to_ascii_lowercase().as_str() {
                "json" => Format::Json,
                "csv" => Format::Csv,
                _ => return Err(err("format", format!("{f:?}: use json or csv"))),
            };
        }
        if let Some(source) = get("source") {
            p.source = match source.to_ascii_lowercase().as_str() {
                "auto" => ReportSource::Auto,
                "store" => ReportSource::Store,
                "clickhouse" | "analytics" => ReportSource::ClickHouse,
                _ => {
                    return Err(err(
                        "source",
                        format!("{source:?}: use store, clickhouse or auto"),
                    ))
                }
            };
        }
        Ok(p)
    }

    /// The query string that asks for these parameters (what the CLI sends).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if !self.group_by.is_empty() {
            let names: Vec<_> = self.group_by.iter().map(|d| d.name()).collect();
            parts.push(format!("group_by={}", names.join(",")));
        }
        if let Some(f) = self.from_ms {
            parts.push(format!("from_ms={f}"));
        }
        if let Some(t) = self.to_ms {
            parts.push(format!("to_ms={t}"));
        }
        parts.push(format!(
            "tz={}",
            format_offset(self.tz_offset_min).replace('+', "%2B")
        ));
        parts.push(
            match self.format {
                Format::Json => "format=json",
                Format::Csv => "format=csv",
            }
            .to_string(),
        );
        if self.source != ReportSource::Auto {
            parts.push(format!("source={}", self.source.name()));
        }
        parts.join("&")
    }
}

fn parse_ms(param: &'static str, v: &str) -> Result<i64, ParamError> {
    v.parse::<i64>()
        .ok()
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| err(param, format!("{v:?} is not a Unix time in milliseconds")))
}

/// Parse `Z`, `UTC`, `+02:00`, `-0530`, `+2` into minutes east of UTC (at most ±14:00).
/// A `+` that arrived unescaped in a query string decodes to a space, so a leading
/// space is read as `+`.
pub fn parse_offset(text: &str) -> Option<i32> {
    let t = text.trim_end();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match t.chars().next()? {
        '+' | ' ' => (1, &t[1..]),
        '-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    if h.is_empty()
        || h.len() > 2
        || m.len() > 2
        || !(h.chars().chain(m.chars())).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 14 * 60).then_some(sign * total)
}

/// `+02:00` style rendering of an offset in minutes.
pub fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Parse `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut it = text.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Render days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian), exact for all i64
// days we can meet.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_across_leap_years_and_eras() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-11-01"), Some(20_758));
        for day in [-1000, 0, 59, 60, 11_016, 20_758, 30_000] {
            assert_eq!(parse_date(&format_date(day)), Some(day));
        }
        assert_eq!(
            parse_date("2024-02-29").map(format_date).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("26-11-01"), None);
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+02:00"), Some(120));
        assert_eq!(parse_offset("-05:30"), Some(-330));
        assert_eq!(parse_offset("+0545"), Some(345));
        assert_eq!(
            parse_offset(" 02:00"),
            Some(120),
            "an unescaped + decodes to a space"
        );
        assert_eq!(parse_offset("Z"), Some(0));
        assert_eq!(parse_offset("+3"), Some(180));
        assert_eq!(parse_offset("+15:00"), None);
        assert_eq!(parse_offset("Europe/Paris"), None);
        assert_eq!(parse_offset("+02:60"), None);
        assert_eq!(format_offset(-330), "-05:30");
    }

    #[test]
    fn query_with_dates_in_an_offset_covers_whole_local_days() {
        let p = ReportParams::from_query("group_by=campaign,sub1,day,campaign&from=2026-11-01&to=2026-11-01&tz=%2B02:00&format=csv").unwrap();
        assert_eq!(
            p.group_by,
            vec![Dimension::Campaign, Dimension::Sub(1), Dimension::Day]
        );
        let midnight_utc = 20_758 * DAY_MS;
        assert_eq!(p.from_ms, Some(midnight_utc - 2 * 3_600_000));
        assert_eq!(p.to_ms, Some(midnight_utc + DAY_MS - 2 * 3_600_000));
        assert_eq!(p.format, Format::Csv);
        assert_eq!(ReportParams::from_query(&p.to_query()).unwrap(), p);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        assert_eq!(
            ReportParams::from_query("group_by=planet")
                .unwrap_err()
                .param,
            "group_by"
        );
        assert_eq!(
            ReportParams::from_query("tz=Europe/Paris")
                .unwrap_err()
                .param,
            "tz"
        );
        assert_eq!(
            ReportParams::from_query("from=yesterday")
                .unwrap_err()
                .param,
            "from"
        );
        assert_eq!(
            ReportParams::from_query("from=2026-11-02&to=2026-11-01")
                .unwrap_err()
                .param,
            "to"
        );
        assert_eq!(
            ReportParams::from_query("format=xml").unwrap_err().param,
            "format"
        );
        let misspelt = ReportParams::from_query("form=2026-11-01").unwrap_err();
        assert!(
            misspelt.message.contains("\"form\""),
            "{}",
            misspelt.message
        );
    }
}
