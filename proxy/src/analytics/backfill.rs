//! `clickstamp analytics backfill`: send the store's history to ClickHouse.
//!
//! Clicks go in key (time) order, then conversions in id order, a page at a time;
//! after each page the store records where it got to, so an interrupted backfill
//! resumes there. Sending a row twice (a resumed page, or a row the exporter also
//! sends) changes no figure: the tables collapse repeats. It can run beside a serving
//! node; until it finishes, that node's reports read the store.

use super::{ClickHouse, ClickHouseError};
use crate::store::export::BackfillCursor;
use crate::store::{Store, StoreError};
use std::io::Write;
use std::time::Instant;

/// Rows per page.
pub const PAGE: usize = 20_000;

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] ClickHouseError),
}

/// What a backfill sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backfilled {
    pub clicks: u64,
    pub conversions: u64,
}

/// Run the backfill, printing progress to `out`. `restart` starts from the first
/// click even when an earlier backfill finished.
pub async fn run(
    store: &dyn Store,
    clickhouse: &ClickHouse,
    restart: bool,
    out: &mut dyn Write,
) -> Result<Backfilled, BackfillError> {
    clickhouse.ensure_schema().await?;
    let mut cursor = store.backfill_cursor().await?;
    if restart {
        cursor = BackfillCursor::default();
    } else if cursor.done {
        let _ = writeln!(
            out,
            "analytics backfill: already complete (pass --restart to send everything again)"
        );
        return Ok(Backfilled::default());
    } else if cursor != BackfillCursor::default() {
        let _ = writeln!(
            out,
            "analytics backfill: resuming after click {} / conversion {}",
            cursor.click_after.as_deref().unwrap_or("-"),
            cursor
                .conversion_after
                .map_or("-".to_string(), |c| c.to_string())
        );
    }
    let started = Instant::now();
    let mut sent = Backfilled::default();
    let mut last_report = Instant::now();
    loop {
        let page = store.backfill_page(&cursor, PAGE).await?;
        clickhouse.insert(&page.clicks, &page.conversions).await?;
        sent.clicks += page.clicks.len() as u64;
        sent.conversions += page.conversions.len() as u64;
        store.backfill_progress(&page.next).await?;
        cursor = page.next;
        if cursor.done {
            break;
        }
        if last_report.elapsed().as_secs() >= 5 {
            let _ = writeln!(
                out,
                "analytics backfill: {} clicks, {} conversions sent ({:.0} rows/s)",
                sent.clicks,
                sent.conversions,
                (sent.clicks + sent.conversions) as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Merge every day the backfill wrote, so reports read history without FINAL.
    let settling = Instant::now();
    let settled = clickhouse.settle(std::time::Duration::ZERO).await?;
    let _ = writeln!(
        out,
        "analytics backfill: done: {} clicks, {} conversions in {:.1} s ({:.0} rows/s); {settled} days merged in {:.1} s; reports now read ClickHouse",
        sent.clicks,
        sent.conversions,
        secs,
        (sent.clicks + sent.conversions) as f64 / secs.max(1e-9),
        settling.elapsed().as_secs_f64()
    );
    Ok(sent)
}
