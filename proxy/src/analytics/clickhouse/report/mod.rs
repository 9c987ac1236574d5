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
//!   uncounted conversion becomes `kind = 0`, which no figure counts. (A filter on
//!   status would be right only as long as no optimizer moved it below `FINAL`,
//!   where a stale version would survive.) Groups left with nothing counted are
//!   dropped here, as the store never forms them.
//! - **Constants in the union are materialized** (`materialize(0)`): 18.16 refuses
//!   to unite a constant column of one branch with a computed one of the other.
//! - **Offer and network** come from the catalog, bound as arrays to `transform`:
//!   the recorded offer, else the campaign's sole offer; the conversion's network,
//!   else the offer's. `transform` needs a non-null default, so "not found" is a
//!   sentinel string chosen to differ from every catalog value, mapped to `NULL`.
//! - **Exact sums.** ClickHouse sums `Int64` in `Int64`, which about nine million
//!   payouts at the limit overflow. Each amount `x` is split into `x >> 32` (arithmetic:
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

mod answer;
mod sql;

pub(super) use sql::build;

use crate::report::params::Dimension;

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
    /// The grouping, whose keys lead each row of the answer.
    dims: Vec<Dimension>,
}
