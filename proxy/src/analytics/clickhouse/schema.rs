//! The analytics tables: their DDL, and the check that tables found in place are
//! the ones this code writes.
//!
//! Both are `ReplacingMergeTree(version)`: the exporter sends rows at least once and
//! re-sends a row whenever it changes, and a table keeps, per key, the row of the
//! highest version. Merges do that eventually; reports read with `FINAL` so they see
//! it at once. A row's key and its partition never change between versions (the
//! partition is the month of the *click*, which a conversion carries), so every
//! version of a row meets the others in one partition, where merges can replace it.
//!
//! The DDL sticks to what ClickHouse 18.16 understands and current releases still
//! accept: no `LowCardinality`, `DateTime64`, `TTL`, or nullable sorting keys.

/// A column: name and type as `DESCRIBE TABLE` spells it.
pub(super) type Column = (&'static str, &'static str);

/// One analytics table.
pub(super) struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub order_by: &'static str,
    /// The click's Unix-ms time column the partition comes from.
    pub time_column: &'static str,
    /// How that time is cut into partitions (`toYYYYMMDD`: a day, `toYYYYMM`: a month).
    pub partition_by: &'static str,
}

/// The engine both tables use; `ensure_schema` refuses a table with another.
pub(super) const ENGINE: &str = "ReplacingMergeTree";

/// Column order matches [`super::rows::ClickRow`].
pub(super) const CLICKS: Table = Table {
    name: "clicks",
    columns: &[
        ("click_id", "String"),
        ("ts_ms", "Int64"),
        ("campaign_id", "String"),
        ("source_id", "String"),
        ("sub1", "Nullable(String)"),
        ("sub2", "Nullable(String)"),
        ("sub3", "Nullable(String)"),
        ("sub4", "Nullable(String)"),
        ("sub5", "Nullable(String)"),
        ("last_offer_id", "Nullable(String)"),
        ("cost_micros", "Int64"),
        ("visitor", "UInt64"),
        ("version", "UInt64"),
        ("quality", "String"),
        ("lander", "String"),
        ("country", "String"),
        ("device", "String"),
        ("os", "String"),
        ("browser", "String"),
        ("excluded", "UInt8"),
    ],
    order_by: "click_id",
    time_column: "ts_ms",
    // A day per partition: reports skip `FINAL` on days known to be merged
    // ([`SETTLED_DAYS`]), so the unit of "merged" should be small.
    partition_by: "toYYYYMMDD",
};

/// Column order matches [`super::rows::ConversionRow`].
pub(super) const CONVERSIONS: Table = Table {
    name: "conversions",
    columns: &[
        ("click_id", "String"),
        ("id", "Int64"),
        ("click_ts_ms", "Int64"),
        ("campaign_id", "String"),
        ("source_id", "String"),
        ("sub1", "Nullable(String)"),
        ("sub2", "Nullable(String)"),
        ("sub3", "Nullable(String)"),
        ("sub4", "Nullable(String)"),
        ("sub5", "Nullable(String)"),
        ("offer_id", "Nullable(String)"),
        ("network_id", "Nullable(String)"),
        ("payout_micros", "Int64"),
        ("status", "String"),
        ("version", "UInt64"),
        ("quality", "String"),
        ("lander", "String"),
        ("country", "String"),
        ("device", "String"),
        ("os", "String"),
        ("browser", "String"),
        ("excluded", "UInt8"),
    ],
    order_by: "(click_id, id)",
    time_column: "click_ts_ms",
    partition_by: "toYYYYMM",
};

pub(super) const TABLES: [&Table; 2] = [&CLICKS, &CONVERSIONS];

/// Columns added after the first layout (traffic quality and traits), last in each
/// table so `ADD COLUMN` appends them where the row puts them.
pub(super) const ADDED_COLUMNS: [&str; 7] = [
    "quality", "lander", "country", "device", "os", "browser", "excluded",
];

/// The default a column reads as in rows written before it existed.
fn default_clause(name: &str) -> &'static str {
    match name {
        "quality" => " DEFAULT 'ok'",
        _ => "",
    }
}

impl Table {
    /// `CREATE TABLE IF NOT EXISTS`, for the client's default database. Built only
    /// from the constants above: nothing here comes from a request or the config.
    pub fn create_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, ty)| format!("{name} {ty}{}", default_clause(name)))
            .collect();
        // An explicit 'UTC': without it the month would be cut in the server's time
        // zone, and two servers would partition the same rows differently.
        format!(
            "CREATE TABLE IF NOT EXISTS {name} ({columns}) \
             ENGINE = {ENGINE}(version) \
             PARTITION BY {partition}(toDateTime(intDiv({time}, 1000), 'UTC')) \
             ORDER BY {order}",
            name = self.name,
            columns = columns.join(", "),
            partition = self.partition_by,
            time = self.time_column,
            order = self.order_by,
        )
    }

    /// The later columns (see [`ADDED_COLUMNS`]) that a table found in place (its
    /// `DESCRIBE` gave `found`) lacks, in table order.
    pub fn missing_columns(&self, found: &[(String, String)]) -> Vec<Column> {
        self.columns
            .iter()
            .filter(|(name, _)| {
                ADDED_COLUMNS.contains(name) && !found.iter().any(|(n, _)| n == name)
            })
            .copied()
            .collect()
    }

    /// `ALTER TABLE ... ADD COLUMN` for one of them: appended last, where the row
    /// puts it. Built from the constants above only.
    pub fn add_column_sql(&self, name: &str, ty: &str) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN {name} {ty}{}",
            self.name,
            default_clause(name)
        )
    }

    /// What is wrong with a table found in place whose `DESCRIBE` gave `found`
    /// (name, type) and whose engine is `engine`, if anything. Extra columns are
    /// fine (inserts name their columns, reports read theirs by name).
    pub fn mismatch(&self, engine: &str, found: &[(String, String)]) -> Option<String> {
        if engine != ENGINE {
            return Some(format!(
                "table {} has engine {engine}, not {ENGINE}",
                self.name
            ));
        }
        let wrong: Vec<String> = self
            .columns
            .iter()
            .filter_map(|(name, ty)| match found.iter().find(|(n, _)| n == name) {
                Some((_, t)) if t == ty => None,
                Some((_, t)) => Some(format!("{name} is {t}, not {ty}")),
                None => Some(format!("{name} ({ty}) is missing")),
            })
            .collect();
        (!wrong.is_empty()).then(|| format!("table {}: {}", self.name, wrong.join("; ")))
    }
}

/// Which click days are known to hold one merged part (no repeats left), so reports
/// may read them without `FINAL`. Every insert of clicks marks its days dirty (kind
/// 0) before and after it is sent; the exporter's settle step merges a quiet dirty
/// day (`OPTIMIZE ... FINAL`) and marks it clean (kind 1) as of the time it started.
/// A day is clean when its latest clean mark is newer than its latest dirty mark.
/// Times are the server's (`now()`), so nodes' clocks do not matter.
pub(super) const SETTLED_DAYS: &str = "CREATE TABLE IF NOT EXISTS settled_days \
     (day UInt32, kind UInt8, at UInt32) ENGINE = MergeTree ORDER BY (day, kind, at)";

/// A database name that can go into DDL as it is: `[A-Za-z_][A-Za-z0-9_]*`, at most
/// 64 characters (what the config accepts).
pub(super) fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_partitions_clicks_by_day_conversions_by_month_and_keys_by_click() {
        assert_eq!(
            CLICKS.create_sql(),
            "CREATE TABLE IF NOT EXISTS clicks (click_id String, ts_ms Int64, \
             campaign_id String, source_id String, sub1 Nullable(String), \
             sub2 Nullable(String), sub3 Nullable(String), sub4 Nullable(String), \
             sub5 Nullable(String), last_offer_id Nullable(String), cost_micros Int64, \
             visitor UInt64, version UInt64, quality String DEFAULT 'ok', lander String, \
             country String, device String, os String, browser String, excluded UInt8) \
             ENGINE = ReplacingMergeTree(version) \
             PARTITION BY toYYYYMMDD(toDateTime(intDiv(ts_ms, 1000), 'UTC')) ORDER BY click_id"
        );
        let conversions = CONVERSIONS.create_sql();
        assert!(conversions.ends_with(
            "PARTITION BY toYYYYMM(toDateTime(intDiv(click_ts_ms, 1000), 'UTC')) \
             ORDER BY (click_id, id)"
        ));
    }

    #[test]
    fn a_table_in_place_must_have_our_columns_and_engine() {
        let ours: Vec<(String, String)> = CLICKS
            .columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(CLICKS.mismatch(ENGINE, &ours), None);
        let mut extra = ours.clone();
        extra.push(("added_later".into(), "String".into()));
        assert_eq!(CLICKS.mismatch(ENGINE, &extra), None);
        let mut changed = ours.clone();
        changed[10].1 = "Float64".into();
        changed.remove(11);
        let why = CLICKS.mismatch(ENGINE, &changed).unwrap();
        assert!(
            why.contains("cost_micros is Float64") && why.contains("visitor (UInt64) is missing"),
            "{why}"
        );
        assert!(CLICKS.mismatch("MergeTree", &ours).is_some());
    }

    #[test]
    fn an_older_table_gets_the_later_columns_added_in_order() {
        let older: Vec<(String, String)> = CLICKS
            .columns
            .iter()
            .filter(|(n, _)| !ADDED_COLUMNS.contains(n))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        let added: Vec<String> = CLICKS
            .missing_columns(&older)
            .into_iter()
            .map(|(n, t)| CLICKS.add_column_sql(n, t))
            .collect();
        assert_eq!(added.len(), 7);
        assert_eq!(
            added[0],
            "ALTER TABLE clicks ADD COLUMN quality String DEFAULT 'ok'"
        );
        assert_eq!(added[6], "ALTER TABLE clicks ADD COLUMN excluded UInt8");
        let current: Vec<(String, String)> = CLICKS
            .columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert!(CLICKS.missing_columns(&current).is_empty());
    }

    #[test]
    fn database_names_must_be_plain() {
        for ok in ["clickstamp", "_a1", "A_b_9"] {
            assert!(is_plain_identifier(ok), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a.b", "a`b", "ä", &"a".repeat(65)] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }
}
