//! Analytics: every click, outbound click, conversion and status change streamed from
//! the store to ClickHouse, and reports read from there.
//!
//! ```text
//!  write transaction ──► analytics_queue (same transaction, store)
//!                              │ claim (oldest first; a lease on PostgreSQL)
//!                              ▼
//!                        exporter ──► ClickHouse  (RowBinary insert)
//!                              │ then
//!                              ▼
//!                        queue rows deleted, cursor advanced (store)
//! ```
//!
//! - **At least once, idempotent.** Queue rows go only after ClickHouse has the rows,
//!   so a crash or an outage repeats a batch rather than losing it; the ClickHouse
//!   tables (`ReplacingMergeTree` keyed by click and by conversion, with a version
//!   from the data itself) collapse repeats, and reports read the latest version.
//! - **Outage.** While ClickHouse does not answer, the exporter retries with a
//!   doubling pause (1 s up to `analytics.retry_max`); the queue holds everything
//!   meanwhile, and `clickstamp_analytics_lag_seconds` shows how far behind it is.
//! - **History.** The queue starts when `[analytics]` does; `clickstamp analytics
//!   backfill` sends what the store held before (resumable, and harmless to repeat).
//!   Until it has finished, reports keep reading the store.
//! - **Reports.** With analytics configured and backfilled, `/api/report` and
//!   `clickstamp report` read ClickHouse (same parameters, columns and rounding as the
//!   store's report); `source=store` reads the store, `source=clickhouse` insists on
//!   ClickHouse. An automatic report whose ClickHouse read fails falls back to the
//!   store and says so in its `source` field.

pub mod backfill;
pub mod clickhouse;
pub mod exporter;

pub use self::clickhouse::{ClickHouse, ClickHouseError};
pub use exporter::{Analytics, AnalyticsMetrics, Exporter};
