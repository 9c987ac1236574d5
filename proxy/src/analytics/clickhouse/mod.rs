//! The ClickHouse side of analytics: the tables ([`schema`]), the rows the exporter
//! inserts ([`rows`]) and reports read back ([`report`]), over ClickHouse's HTTP
//! interface with the `clickhouse` crate.
//!
//! # Server versions
//!
//! Works with ClickHouse **18.16** (Debian's `clickhouse-server`) and later. That is
//! why the client runs without schema validation (18.16 has no
//! `RowBinaryWithNamesAndTypes`; rows go as plain `RowBinary`, so
//! [`ClickHouse::ensure_schema`] checks the column types itself), without
//! compression, and why the tables use no `LowCardinality`, `DateTime64` or `TTL` and
//! inserts no `async_insert`.
//!
//! # What ClickHouse holds
//!
//! Clicks and conversions as the store exports them, keyed by click (and conversion
//! id), one row per key after merges (`ReplacingMergeTree(version)`, read `FINAL`).
//! Amounts are integer micro-units, rounded once as the store's report rounds them.
//! Visitors are a 64-bit digest of (IP, User-Agent): raw addresses and user agents
//! never reach ClickHouse. A report gives the same rows and totals as the store's
//! on the same data (unique visitors up to a 64-bit digest collision, about n²/2⁶⁵).
//!
//! # Errors and secrets
//!
//! The password travels in the `X-ClickHouse-Key` header only; URLs with credentials
//! are refused, and every error message is scrubbed of the password before it is
//! built into a [`ClickHouseError`].

mod report;
mod rows;
mod schema;

use crate::config::ClickHouseConfig;
use crate::report::{Catalog, Figures, ReportParams, ReportRow};
use crate::store::export::{ExportedClick, ExportedConversion};
use clickhouse::sql::Identifier;
use rows::{ClickRow, ConversionRow};
use serde::Deserialize;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a ClickHouse call failed. No message ever contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The config cannot be used: a bad URL, database name or timeout.
    #[error("ClickHouse config: {0}")]
    Config(String),
    /// No connection could be made or kept (refused, DNS, TLS, reset).
    #[error("ClickHouse at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// No complete answer within the configured timeout.
    #[error("ClickHouse at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The server refused the request; its own message (e.g. `Code: 60 …`).
    #[error("ClickHouse refused the request: {0}")]
    Server(String),
    /// Tables of these names exist but are not the ones this code writes.
    #[error("ClickHouse tables do not match: {0}; drop them or configure another database")]
    Schema(String),
    /// The answer could not be read.
    #[error("unexpected answer from ClickHouse: {0}")]
    Protocol(String),
}

/// A handle on the analytics database. Cheap to clone (the HTTP pool is shared).
#[derive(Clone)]
pub struct ClickHouse {
    /// With no default database: for `CREATE DATABASE` and `ping`.
    server: clickhouse::Client,
    /// With the configured database: tables, inserts, reports.
    db: clickhouse::Client,
    database: String,
    /// The URL as configured (never with credentials), for messages.
    url: String,
    timeout: Duration,
    /// Scrubbed from every message (`None` without a password).
    password: Option<Arc<str>>,
}

impl fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouse")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Reject a URL the client should not be given: not http(s), no host, with
/// credentials (which would end up in logs; the password goes in a header) or with
/// a query.
fn check_url(url: &str) -> Result<(), ClickHouseError> {
    let bad = |why: &str| Err(ClickHouseError::Config(format!("url: {why}")));
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad("not a URL; give the HTTP interface, e.g. http://127.0.0.1:8123");
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return bad("use an http:// or https:// URL");
    }
    match uri.authority() {
        None => bad("the URL names no host"),
        Some(a) if a.as_str().contains('@') => {
            // Don't echo the URL: it carries a secret.
            bad("the URL carries credentials; use user_env and password_env")
        }
        // A `?database=` would quietly override the configured database.
        Some(_) if uri.query().is_some() => bad("the URL has a query; give the server's root"),
        Some(_) => Ok(()),
    }
}

impl ClickHouse {
    /// A client for `cfg`. Makes no request (see [`ClickHouse::ping`]).
    pub fn new(cfg: &ClickHouseConfig) -> Result<ClickHouse, ClickHouseError> {
        check_url(&cfg.url)?;
        if !schema::is_plain_identifier(&cfg.database) {
            return Err(ClickHouseError::Config(format!(
                "database {:?} is not a plain name (letters, digits, '_'; not starting with a digit)",
                cfg.database
            )));
        }
        if cfg.timeout.is_zero() {
            return Err(ClickHouseError::Config("timeout must be above zero".into()));
        }
        let mut server = clickhouse::Client::default()
            .with_url(cfg.url.as_str())
            // 18.16 has no RowBinaryWithNamesAndTypes.
            .with_validation(false)
            .with_compression(clickhouse::Compression::None);
        if let Some(user) = &cfg.user {
            server = server.with_user(user.as_str());
        }
        if let Some(password) = &cfg.password {
            server = server.with_password(password.as_str());
        }
        let db = server.clone().with_database(cfg.database.as_str());
        Ok(ClickHouse {
            server,
            db,
            database: cfg.database.clone(),
            url: cfg.url.clone(),
            timeout: cfg.timeout,
            password: cfg
                .password
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(Arc::from),
        })
    }

    /// The server's version (`SELECT version()`): checks it answers and that the
    /// credentials are accepted.
    pub async fn ping(&self) -> Result<String, ClickHouseError> {
        self.call(|| self.server.query("SELECT version()").fetch_one::<String>())
            .await
    }

    /// Create the database and both tables where missing, then check that tables
    /// found in place have the columns (names and types) and engine this code
    /// writes: rows go as positional RowBinary, so a mismatch must stop here rather
    /// than store garbage. Idempotent.
    pub async fn ensure_schema(&self) -> Result<(), ClickHouseError> {
        self.call(|| {
            self.server
                .query("CREATE DATABASE IF NOT EXISTS ?")
                .bind(Identifier(&self.database))
                .execute()
        })
        .await?;
        for table in schema::TABLES {
            let sql = table.create_sql();
            self.call(|| self.db.query(&sql).execute()).await?;
        }
        self.call(|| self.db.query(schema::SETTLED_DAYS).execute())
            .await?;
        // Days are what settling merges: a clicks table partitioned otherwise (by an
        // earlier layout) would be read without FINAL where it must not be.
        let partitions: Answer1 = self
            .fetch_json(
                self.db
                    .query(
                        "SELECT DISTINCT partition FROM system.parts \
                         WHERE database = ? AND table = ? AND active LIMIT 5",
                    )
                    .bind(self.database.as_str())
                    .bind(schema::CLICKS.name),
            )
            .await?;
        if let Some((p,)) = partitions.data.iter().find(|(p,)| p.len() != 8) {
            return Err(ClickHouseError::Schema(format!(
                "table clicks is partitioned by {p:?}, not by day (an earlier layout); \
                 drop it and run `clickstamp analytics backfill --restart`"
            )));
        }
        let engines: Answer = self
            .fetch_json(
                self.db
                    .query("SELECT name, engine FROM system.tables WHERE database = ?")
                    .bind(self.database.as_str()),
            )
            .await?;
        for table in schema::TABLES {
            let engine = engines
                .data
                .iter()
                .find(|(name, _)| name == table.name)
                .map(|(_, engine)| engine.as_str())
                .ok_or_else(|| {
                    ClickHouseError::Schema(format!("table {} was not created", table.name))
                })?;
            // DESCRIBE gives (name, type, default kind, default, …): keep the first two.
            let described: DescribeAnswer = self
                .fetch_json(
                    self.db
                        .query("DESCRIBE TABLE ?")
                        .bind(Identifier(table.name)),
                )
                .await?;
            let columns: Vec<(String, String)> = described
                .data
                .into_iter()
                .filter_map(|cells| {
                    let mut cells = cells.into_iter();
                    Some((cells.next()?, cells.next()?))
                })
                .collect();
            // Columns a later version added are added to a table an earlier one made
            // (ALTER TABLE ... ADD COLUMN: 18.16 and current releases alike).
            let mut columns = columns;
            for (name, ty) in table.missing_columns(&columns) {
                let sql = table.add_column_sql(name, ty);
                tracing::info!(table = table.name, %sql, "analytics: adding a column");
                self.call(|| self.db.query(&sql).execute()).await?;
                columns.push((name.to_string(), ty.to_string()));
            }
            if let Some(why) = table.mismatch(engine, &columns) {
                return Err(ClickHouseError::Schema(why));
            }
        }
        Ok(())
    }

    /// Insert exported clicks and conversions (RowBinary, one request per table
    /// that has rows; empty slices send nothing). Repeats are harmless: tables keep
    /// the highest version of each row.
    pub async fn insert(
        &self,
        clicks: &[ExportedClick],
        conversions: &[ExportedConversion],
    ) -> Result<(), ClickHouseError> {
        let limit = Some(self.timeout);
        let days = utc_days(clicks);
        if !clicks.is_empty() {
            // Dirty before (a reader must not trust a merge that misses these rows)
            // and after (a settle that started meanwhile must not count them in).
            self.mark_days(&days, DIRTY).await?;
            self.call(|| async {
                let mut insert = self
                    .db
                    .insert::<ClickRow<'_>>(schema::CLICKS.name)
                    .await?
                    .with_timeouts(limit, limit);
                for click in clicks {
                    insert.write(&ClickRow::of(click)).await?;
                }
                insert.end().await
            })
            .await?;
            self.mark_days(&days, DIRTY).await?;
        }
        if !conversions.is_empty() {
            self.call(|| async {
                let mut insert = self
                    .db
                    .insert::<ConversionRow<'_>>(schema::CONVERSIONS.name)
                    .await?
                    .with_timeouts(limit, limit);
                for conversion in conversions {
                    insert.write(&ConversionRow::of(conversion)).await?;
                }
                insert.end().await
            })
            .await?;
        }
        Ok(())
    }

    /// Mark click days (`YYYYMMDD`) dirty or clean as of the server's clock.
    async fn mark_days(&self, days: &[u32], kind: u8) -> Result<(), ClickHouseError> {
        if days.is_empty() {
            return Ok(());
        }
        self.call(|| {
            self.db
                .query(
                    "INSERT INTO settled_days (day, kind, at) \
                     SELECT arrayJoin(?), ?, toUInt32(now())",
                )
                .bind(days)
                .bind(kind)
                .execute()
        })
        .await
    }

    /// Merge the click days that have been dirty and quiet for `quiet` (no insert
    /// marked them since), so reports read them without `FINAL`; returns how many
    /// days were settled. A day is marked clean as of the moment before its merge
    /// began, and only if the merge left one merged part: rows that arrived during
    /// the merge marked the day dirty after that moment, so it stays dirty.
    pub async fn settle(&self, quiet: Duration) -> Result<usize, ClickHouseError> {
        let dirty: Answer3 = self
            .fetch_json(self.db.query(
                "SELECT toString(day), toString(dirty), toString(toUInt32(now())) FROM \
                 (SELECT day, maxIf(at, kind = 0) AS dirty, maxIf(at, kind = 1) AS clean \
                 FROM settled_days GROUP BY day) WHERE dirty >= clean ORDER BY day",
            ))
            .await?;
        let mut settled = 0;
        for (day, dirty_at, now) in dirty.data {
            let (day, dirty_at, now): (u32, u64, u64) =
                (parse_u(&day)? as u32, parse_u(&dirty_at)?, parse_u(&now)?);
            if now.saturating_sub(dirty_at) < quiet.as_secs() {
                continue;
            }
            let started: String = self
                .call(|| {
                    self.db
                        .query("SELECT toString(toUInt32(now()))")
                        .fetch_one::<String>()
                })
                .await?;
            let started = parse_u(&started)?;
            self.call(|| {
                self.db
                    .query("OPTIMIZE TABLE clicks PARTITION ? FINAL")
                    .bind(day)
                    .execute()
            })
            .await?;
            let parts: Answer3 = self
                .fetch_json(
                    self.db
                        .query(
                            "SELECT toString(count()), toString(min(level)), '' FROM system.parts \
                             WHERE database = ? AND table = 'clicks' AND active AND partition = ?",
                        )
                        .bind(self.database.as_str())
                        .bind(day.to_string().as_str()),
                )
                .await?;
            let merged = parts
                .data
                .first()
                .is_some_and(|(count, level, _)| count == "0" || (count == "1" && level != "0"));
            if merged {
                self.call(|| {
                    self.db
                        .query("INSERT INTO settled_days (day, kind, at) VALUES (?, ?, ?)")
                        .bind(day)
                        .bind(CLEAN)
                        .bind(started as u32)
                        .execute()
                })
                .await?;
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// The click days known to be merged, as Unix-ms ranges `[start, end)` (merged
    /// where adjacent).
    async fn settled_ranges(&self) -> Result<Vec<(i64, i64)>, ClickHouseError> {
        let clean: Answer1 = self
            .fetch_json(self.db.query(
                "SELECT toString(day) FROM (SELECT day, maxIf(at, kind = 0) AS dirty, \
                 maxIf(at, kind = 1) AS clean FROM settled_days GROUP BY day) \
                 WHERE clean > dirty ORDER BY day",
            ))
            .await?;
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for (day,) in clean.data {
            let start = day_start_ms(&day)
                .ok_or_else(|| ClickHouseError::Protocol(format!("bad day {day:?}")))?;
            let end = start + crate::report::params::DAY_MS;
            match ranges.last_mut() {
                Some((_, last_end)) if *last_end == start => *last_end = end,
                _ => ranges.push((start, end)),
            }
        }
        Ok(ranges)
    }

    /// The report for `params`: the same rows, in the same order, and the same
    /// totals as the store's report over the same data (see [`report`]).
    pub async fn report(
        &self,
        catalog: &Catalog,
        params: &ReportParams,
    ) -> Result<(Vec<ReportRow>, Figures), ClickHouseError> {
        let settled = self.settled_ranges().await?;
        let built = report::build(catalog, params, &settled)
            .map_err(|e| ClickHouseError::Config(format!("report: {e}")))?;
        let mut query = self.db.query(&built.sql);
        for value in &built.binds {
            query = match value {
                report::Bound::Text(text) => query.bind(text.as_str()),
                report::Bound::Int(n) => query.bind(*n),
                report::Bound::List(list) => query.bind(list.as_slice()),
            };
        }
        // Stop the server's work too when the client gives up (18.16 does not
        // cancel a query whose HTTP client went away).
        query = query.with_setting(
            "max_execution_time",
            self.timeout.as_secs_f64().ceil().max(1.0).to_string(),
        );
        // A catalog of thousands of offers makes a long query; 256 KiB is the default
        // limit.
        if built.sql.len() > 200_000 {
            query = query.with_setting("max_query_size", (built.sql.len() * 2).to_string());
        }
        let body = self
            .call(|| {
                let query = query.clone();
                async move { query.fetch_bytes("JSONCompact")?.collect().await }
            })
            .await?;
        built
            .parse(&body)
            .map_err(|e| ClickHouseError::Protocol(self.scrub(e)))
    }

    /// Run the request `send` makes, within the configured timeout, mapping its
    /// error. A request that failed on the connection is sent once more: a pooled
    /// connection can have been closed by the server while this process could not
    /// notice (a runtime blocked past ClickHouse's 3 s keep-alive gets "connection
    /// closed before message completed" on the next insert). Every request here can
    /// be repeated: DDL is `IF NOT EXISTS`, reads read, and an insert sent twice
    /// stores the same versions twice, which the tables collapse.
    async fn call<T, Fut>(&self, send: impl Fn() -> Fut) -> Result<T, ClickHouseError>
    where
        Fut: Future<Output = clickhouse::error::Result<T>>,
    {
        let attempts = async {
            match send().await {
                Err(clickhouse::error::Error::Network(_)) => send().await,
                done => done,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(ClickHouseError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// A `JSONCompact` answer to `query`, deserialized.
    async fn fetch_json<T: for<'de> Deserialize<'de>>(
        &self,
        query: clickhouse::query::Query,
    ) -> Result<T, ClickHouseError> {
        let body = self
            .call(|| {
                let query = query.clone();
                async move { query.fetch_bytes("JSONCompact")?.collect().await }
            })
            .await?;
        serde_json::from_slice(&body).map_err(|e| ClickHouseError::Protocol(e.to_string()))
    }

    fn error(&self, e: clickhouse::error::Error) -> ClickHouseError {
        use clickhouse::error::Error;
        let message = self.scrub(error_chain(&e));
        match e {
            Error::Network(_) => ClickHouseError::Unreachable {
                url: self.url.clone(),
                reason: message,
            },
            Error::TimedOut => ClickHouseError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            },
            Error::BadResponse(_) => {
                ClickHouseError::Server(message.trim_start_matches("bad response: ").to_string())
            }
            _ => ClickHouseError::Protocol(message),
        }
    }

    /// `message` without the password, should any part of it echo one.
    fn scrub(&self, message: String) -> String {
        match &self.password {
            Some(password) if message.contains(&**password) => {
                message.replace(&**password, "<redacted>")
            }
            _ => message,
        }
    }
}

/// An error and its causes, each once ("network error: client error (Connect):
/// tcp connect error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text.trim_end().to_string()
}

/// Marks in [`schema::SETTLED_DAYS`].
const DIRTY: u8 = 0;
const CLEAN: u8 = 1;

/// The UTC days (`YYYYMMDD`) the clicks fall on, each once.
fn utc_days(clicks: &[ExportedClick]) -> Vec<u32> {
    let mut days: Vec<u32> = clicks
        .iter()
        .filter_map(|c| {
            let (y, m, d) = crate::report::params::civil_from_days(
                c.ts_ms.div_euclid(crate::report::params::DAY_MS),
            );
            u32::try_from(y * 10_000 + i64::from(m) * 100 + i64::from(d)).ok()
        })
        .collect();
    days.sort_unstable();
    days.dedup();
    days
}

#[cfg(test)]
mod day_tests {
    use super::*;

    #[test]
    fn click_days_are_utc_yyyymmdd_and_back() {
        let click = |ts_ms: i64| ExportedClick {
            click_id: String::new(),
            ts_ms,
            campaign_id: String::new(),
            source_id: String::new(),
            sub_ids: Default::default(),
            cost: None,
            ip: None,
            user_agent: None,
            last_offer_id: None,
            last_offer_ms: 0,
            traits: Default::default(),
        };
        // 2024-02-29 00:00:00 UTC is 1_709_164_800_000 ms.
        let midnight = 1_709_164_800_000;
        let days = utc_days(&[click(midnight + 5), click(midnight - 1), click(midnight)]);
        assert_eq!(days, [20240228, 20240229]);
        assert_eq!(day_start_ms("20240229"), Some(midnight));
        assert_eq!(day_start_ms("2024022"), None);
    }
}

/// Unix ms at the start of the UTC day `YYYYMMDD`.
fn day_start_ms(day: &str) -> Option<i64> {
    if day.len() != 8 {
        return None;
    }
    let date = format!("{}-{}-{}", &day[..4], &day[4..6], &day[6..]);
    crate::report::params::parse_date(&date).map(|d| d * crate::report::params::DAY_MS)
}

fn parse_u(text: &str) -> Result<u64, ClickHouseError> {
    text.parse()
        .map_err(|_| ClickHouseError::Protocol(format!("not a number: {text:?}")))
}

/// One-column answers (quoted as JSON strings).
#[derive(Deserialize)]
struct Answer1 {
    data: Vec<(String,)>,
}

/// Three-column answers, every cell a string.
#[derive(Deserialize)]
struct Answer3 {
    data: Vec<(String, String, String)>,
}

/// `system.tables` rows: (name, engine).
#[derive(Deserialize)]
struct Answer {
    data: Vec<(String, String)>,
}

/// `DESCRIBE TABLE` rows: name, type and more cells, which vary by version.
#[derive(Deserialize)]
struct DescribeAnswer {
    data: Vec<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, database: &str) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.into(),
            database: database.into(),
            user: Some("tracker".into()),
            password: Some("hunter2-secret".into()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn config_is_checked_without_echoing_secrets() {
        assert!(ClickHouse::new(&config("http://127.0.0.1:8123", "clickstamp")).is_ok());
        assert!(ClickHouse::new(&config("https://ch.example:8443/", "_x1")).is_ok());
        for (url, db) in [
            ("127.0.0.1:8123", "clickstamp"),
            ("ftp://127.0.0.1", "clickstamp"),
            ("http://127.0.0.1:8123", "click-stamp"),
            ("http://127.0.0.1:8123", "db`; DROP"),
            ("http://127.0.0.1:8123", ""),
            ("http://127.0.0.1:8123/?database=other", "clickstamp"),
        ] {
            assert!(
                matches!(
                    ClickHouse::new(&config(url, db)),
                    Err(ClickHouseError::Config(_))
                ),
                "{url} {db}"
            );
        }
        let e =
            ClickHouse::new(&config("http://u:hunter2-secret@127.0.0.1:8123", "d")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let mut zero = config("http://127.0.0.1:8123", "d");
        zero.timeout = Duration::ZERO;
        assert!(ClickHouse::new(&zero).is_err());
    }

    #[test]
    fn messages_are_scrubbed_of_the_password() {
        let ch = ClickHouse::new(&config("http://127.0.0.1:8123", "d")).unwrap();
        assert_eq!(
            ch.scrub("Code: 193. Wrong password hunter2-secret for tracker".into()),
            "Code: 193. Wrong password <redacted> for tracker"
        );
        assert!(!format!("{ch:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_as_such() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ch = ClickHouse::new(&config(&format!("http://127.0.0.1:{port}"), "d")).unwrap();
        match ch.ping().await {
            Err(ClickHouseError::Unreachable { url, reason }) => {
                assert!(url.contains(&port.to_string()) && !reason.is_empty());
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }
}
