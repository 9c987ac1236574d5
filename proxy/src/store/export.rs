//! What a store hands the analytics exporter: the clicks and conversions a write
//! changed, read back in their current state, and the queue that says which ones.
//!
//! # The export queue
//!
//! When analytics is configured, every write transaction that records a click, an
//! outbound click or a conversion change also inserts one row into `analytics_queue`,
//! in the same transaction: the key range of the clicks it wrote, the clicks whose
//! latest `/go` offer it changed, and the conversions it created or changed. One row
//! per *transaction*, not per click, so group commit keeps the cost to a fraction of
//! a row per click; with analytics off nothing is written.
//!
//! The exporter claims queue rows oldest first, reads their clicks and conversions in
//! their *current* state, sends them to the analytics database, and only then deletes
//! the rows (at least once). Rows read twice — a crash between send and delete, two
//! overlapping ranges, a click that was re-read because of a later `/go` — are the
//! same facts again, and the analytics tables collapse repeats by key and version
//! ([`ExportedClick::version`], [`ExportedConversion::version`]). On PostgreSQL, where
//! several nodes export, a claim is a lease (as the outbox's): a node killed mid-export
//! loses its claim when the lease runs out and another node sends the same rows again.

/// A click, as the analytics database keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedClick {
    pub click_id: String,
    pub ts_ms: i64,
    pub campaign_id: String,
    pub source_id: String,
    pub sub_ids: [Option<String>; 5],
    pub cost: Option<f64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The offer of the click's latest `/go`, if any.
    pub last_offer_id: Option<String>,
    /// When that `/go` happened (Unix ms; 0 without one).
    pub last_offer_ms: i64,
    pub traits: ExportedTraits,
}

/// A click's quality, exclusion and visitor traits (docs/traffic-rules.md), as
/// reports group and filter by them; conversions carry their click's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedTraits {
    pub quality: String,
    pub lander: String,
    pub country: String,
    pub device: String,
    pub os: String,
    pub browser: String,
    /// Kept out of reports (see `store::ClickProfile::excluded`).
    pub excluded: bool,
}

impl Default for ExportedTraits {
    fn default() -> Self {
        ExportedTraits {
            quality: "ok".into(),
            lander: String::new(),
            country: String::new(),
            device: String::new(),
            os: String::new(),
            browser: String::new(),
            excluded: false,
        }
    }
}

impl ExportedClick {
    /// Clicks are immutable but for their latest offer, which only moves forward in
    /// time: the later `/go` is the newer version.
    pub fn version(&self) -> u64 {
        self.last_offer_ms.max(0) as u64
    }
}

/// A conversion in its current state, with the attributes of its click that reports
/// group by (the click's time is the report's time basis).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedConversion {
    /// The store's id of the conversion: unique, never reused.
    pub id: i64,
    pub click_id: String,
    pub click_ts_ms: i64,
    pub campaign_id: String,
    pub source_id: String,
    pub sub_ids: [Option<String>; 5],
    /// The conversion's offer, else its click's latest `/go` offer.
    pub offer_id: Option<String>,
    pub network_id: Option<String>,
    pub payout: Option<f64>,
    /// `pending` | `approved` | `rejected` | `chargeback`.
    pub status: String,
    /// When the conversion last changed (Unix ms).
    pub updated_ms: i64,
    /// When its click's latest `/go` happened (0 without one): a later `/go` can
    /// change the offer the conversion falls back to.
    pub last_offer_ms: i64,
    /// Its click's.
    pub traits: ExportedTraits,
}

impl ExportedConversion {
    /// Every change moves `updated_ms` or the click's latest `/go` forward, so the
    /// larger of the two orders this conversion's states.
    pub fn version(&self) -> u64 {
        self.updated_ms.max(self.last_offer_ms).max(0) as u64
    }
}

/// Queue rows claimed by one exporter, and what they point at.
#[derive(Debug, Clone, Default)]
pub struct ExportBatch {
    /// The queue rows this batch covers: give them back to [`Store::export_done`]
    /// once sent.
    ///
    /// [`Store::export_done`]: super::Store::export_done
    pub queue_ids: Vec<i64>,
    /// How many changes those rows counted (for the rows-exported figures).
    pub changes: u64,
    /// When the oldest of them was committed (Unix ms).
    pub oldest_ms: i64,
    /// When the newest of them was committed (Unix ms).
    pub newest_ms: i64,
    pub clicks: Vec<ExportedClick>,
    pub conversions: Vec<ExportedConversion>,
}

/// What is waiting to be exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportBacklog {
    /// Queue rows (write transactions) not yet exported.
    pub entries: u64,
    /// Changes they hold (clicks, outbound clicks, conversion changes).
    pub changes: u64,
    /// When the oldest was committed (Unix ms), if any is waiting.
    pub oldest_ms: Option<i64>,
}

/// Where a backfill stands: it walks clicks in key order, then conversions in id
/// order, and records each page's end in the store, so an interrupted backfill
/// resumes there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillCursor {
    /// The last click sent (`None` before the first).
    pub click_after: Option<String>,
    /// The last conversion sent (`None` before the first).
    pub conversion_after: Option<i64>,
    /// Clicks and conversions are both done.
    pub done: bool,
}

/// One page of history for a backfill.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub clicks: Vec<ExportedClick>,
    pub conversions: Vec<ExportedConversion>,
    /// Where the next page starts.
    pub next: BackfillCursor,
}

/// The wall clock in Unix ms (queue rows and the cursor record commit times).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Key ranges `[lo, hi]` (inclusive) merged where they overlap, in key order: each
/// part of the key space is read once.
pub(crate) fn merge_ranges(mut ranges: Vec<(String, String)>) -> Vec<(String, String)> {
    ranges.sort();
    let mut merged: Vec<(String, String)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some((_, last_hi)) if lo <= *last_hi => {
                if hi > *last_hi {
                    *last_hi = hi;
                }
            }
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// The click ids in `text` (the queue's space-separated lists).
pub(crate) fn split_ids(text: &str) -> impl Iterator<Item = &str> {
    text.split(' ').filter(|s| !s.is_empty())
}

/// What one write transaction changed, for its queue row.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub click_lo: Option<String>,
    pub click_hi: Option<String>,
    /// Clicks whose latest `/go` changed (space-separated ids).
    pub outbound: String,
    /// Conversions created or changed (space-separated ids).
    pub conversions: String,
    pub count: u64,
}

impl Changes {
    pub fn click(&mut self, id: &str) {
        if self.click_lo.as_deref().is_none_or(|lo| id < lo) {
            self.click_lo = Some(id.to_string());
        }
        if self.click_hi.as_deref().is_none_or(|hi| id > hi) {
            self.click_hi = Some(id.to_string());
        }
        self.count += 1;
    }

    pub fn outbound(&mut self, click_id: &str) {
        if !split_ids(&self.outbound).any(|c| c == click_id) {
            if !self.outbound.is_empty() {
                self.outbound.push(' ');
            }
            self.outbound.push_str(click_id);
        }
        self.count += 1;
    }

    pub fn conversion(&mut self, id: i64) {
        let id = id.to_string();
        if !split_ids(&self.conversions).any(|c| c == id) {
            if !self.conversions.is_empty() {
                self.conversions.push(' ');
            }
            self.conversions.push_str(&id);
        }
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The changes of `ops` and what they produced.
    pub fn of<'a>(
        ops: impl Iterator<Item = (&'a super::WriteOp, Option<&'a super::WriteResult>)>,
    ) -> Changes {
        use super::{WriteOp, WriteResult};
        let mut changes = Changes::default();
        for (op, result) in ops {
            match op {
                WriteOp::Click(c) => changes.click(&c.click_id.to_hex()),
                WriteOp::Outbound(o) => changes.outbound(&o.click_id.to_hex()),
                WriteOp::Postback(_) => {
                    if let Some(WriteResult::Postback(commit)) = result {
                        if let Some(id) = commit.conversion_id {
                            changes.conversion(id);
                        }
                    }
                }
                _ => {}
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_the_click_range_and_each_id_once() {
        let mut c = Changes::default();
        assert!(c.is_empty());
        c.click("0190b");
        c.click("0190a");
        c.click("0190c");
        c.outbound("0190a");
        c.outbound("0190a");
        c.conversion(7);
        c.conversion(7);
        c.conversion(12);
        assert_eq!(c.click_lo.as_deref(), Some("0190a"));
        assert_eq!(c.click_hi.as_deref(), Some("0190c"));
        assert_eq!(c.outbound, "0190a");
        assert_eq!(c.conversions, "7 12");
        assert_eq!(c.count, 8, "every change counts, repeats too");
    }

    #[test]
    fn overlapping_ranges_merge_and_disjoint_ones_stay_apart() {
        let r = |lo: &str, hi: &str| (lo.to_string(), hi.to_string());
        assert_eq!(
            merge_ranges(vec![
                r("c", "e"),
                r("a", "b"),
                r("d", "f"),
                r("f", "g"),
                r("x", "y")
            ]),
            vec![r("a", "b"), r("c", "g"), r("x", "y")]
        );
        assert_eq!(
            merge_ranges(vec![r("a", "z"), r("b", "c")]),
            vec![r("a", "z")]
        );
        assert!(merge_ranges(Vec::new()).is_empty());
    }

    #[test]
    fn versions_move_with_the_latest_change() {
        let click = ExportedClick {
            click_id: "c".into(),
            ts_ms: 5,
            campaign_id: "camp".into(),
            source_id: "src".into(),
            sub_ids: Default::default(),
            cost: None,
            ip: None,
            user_agent: None,
            last_offer_id: None,
            last_offer_ms: 0,
            traits: Default::default(),
        };
        assert_eq!(click.version(), 0);
        let conv = ExportedConversion {
            id: 1,
            click_id: "c".into(),
            click_ts_ms: 5,
            campaign_id: "camp".into(),
            source_id: "src".into(),
            sub_ids: Default::default(),
            offer_id: None,
            network_id: None,
            payout: None,
            status: "approved".into(),
            updated_ms: 100,
            last_offer_ms: 250,
            traits: Default::default(),
        };
        assert_eq!(conv.version(), 250);
        assert_eq!(
            ExportedConversion {
                updated_ms: 300,
                ..conv
            }
            .version(),
            300
        );
    }
}
