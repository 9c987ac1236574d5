//! Reading a report out of the store: one ordered pass over the clicks in range, one
//! over their counted conversions, aggregated in memory by group key.
//!
//! The clicks table has no secondary index, on purpose (every index would add pages
//! to each click's commit). It needs none here: its key is a UUIDv7 in lowercase hex
//! whose first 12 characters are the click's Unix millisecond timestamp, so a time
//! range *is* a key range, read in key order. A click's `/go` offer comes from
//! `outbound_clicks`, whose primary key starts with the click id, walked in the same
//! order beside the clicks (a merge join: no per-click lookup). Conversions are reached
//! through the `conversions_by_click_key` index over the same key range. So the
//! report adds no index and nothing to the click path.
//!
//! Grouping happens here rather than in SQL because unique visitors need a distinct
//! count per group, which SQLite does with a temporary B-tree per query (seconds on a
//! million clicks); a hash set does it in one pass.

use super::params::{format_date, Dimension, ReportParams, DAY_MS};
use super::{Catalog, Figures, ReportRow};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Statuses counted as conversions: the network has not (yet) taken them back.
pub const COUNTED_STATUSES: [&str; 2] = ["approved", "pending"];

/// The click-key range `[lo, hi)` for a time range: the key's first 12 hex characters
/// are its millisecond timestamp, and every key is longer than the 12-character bound,
/// so `key >= hex(from)` keeps exactly the clicks at or after `from`, and
/// `key < hex(to)` exactly those before `to`.
pub fn key_range(from_ms: Option<i64>, to_ms: Option<i64>) -> (String, String) {
    let bound = |ms: i64| format!("{:012x}", ms.clamp(0, 0xffff_ffff_ffff));
    (
        from_ms.map(bound).unwrap_or_default(),
        // "g" sorts after every hex digit.
        to_ms.map(bound).unwrap_or_else(|| "g".to_string()),
    )
}

/// A stored amount in integer micro-units, rounded once (half away from zero, as
/// SQLite's `round`). Amounts are bounded on the way in (`MAX_AMOUNT`); one stored
/// before that bound (or written by hand) saturates at ±2^63 micro-units rather than
/// wrapping, and the 128-bit sums below cannot overflow on any number of rows.
fn micros(v: ValueRef<'_>) -> i128 {
    match v {
        // `as` saturates (and maps NaN to 0).
        ValueRef::Real(f) => i128::from((f * 1e6).round() as i64),
        ValueRef::Integer(i) => i128::from(i) * 1_000_000,
        _ => 0,
    }
}

fn text(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

/// The columns of one click (or of a conversion's click) that keys are made of.
#[derive(Default)]
struct Attrs<'a> {
    ts_ms: i64,
    campaign: Option<&'a str>,
    source: Option<&'a str>,
    subs: [Option<&'a str>; 5],
    /// The recorded offer (a conversion's, or the click's latest `/go`).
    offer: Option<&'a str>,
    /// The recorded network (a conversion's); clicks have none.
    network: Option<&'a str>,
}

/// Builds group keys and keeps the groups.
struct Groups<'c> {
    dims: Vec<Dimension>,
    offset_ms: i64,
    sole_offer: HashMap<&'c str, &'c str>,
    offer_network: HashMap<&'c str, &'c str>,
    /// Encoded key → index into `rows`.
    index: HashMap<Vec<u8>, usize>,
    rows: Vec<ReportRow>,
    buf: Vec<u8>,
}

enum Part<'a> {
    Text(Option<&'a str>),
    Day(i64),
}

impl<'c> Groups<'c> {
    fn new(catalog: &'c Catalog, params: &ReportParams) -> Self {
        Groups {
            dims: params.group_by.clone(),
            offset_ms: i64::from(params.tz_offset_min) * 60_000,
            sole_offer: catalog
                .sole_offers
                .iter()
                .map(|(c, o)| (c.as_str(), o.as_str()))
                .collect(),
            offer_network: catalog
                .offer_networks
                .iter()
                .map(|(o, n)| (o.as_str(), n.as_str()))
                .collect(),
            index: HashMap::new(),
            rows: Vec::new(),
            buf: Vec::with_capacity(256),
        }
    }

    fn part<'a>(&self, d: Dimension, a: &Attrs<'a>) -> Part<'a>
    where
        'c: 'a,
    {
        let offer = || {
            a.offer
                .or_else(|| a.campaign.and_then(|c| self.sole_offer.get(c).copied()))
        };
        match d {
            Dimension::Campaign => Part::Text(a.campaign),
            Dimension::Source => Part::Text(a.source),
            Dimension::Sub(n) => Part::Text(a.subs[usize::from(n - 1)]),
            Dimension::Day => Part::Day((a.ts_ms + self.offset_ms).div_euclid(DAY_MS)),
            Dimension::Offer => Part::Text(offer()),
            Dimension::Network => Part::Text(
                a.network
                    .or_else(|| offer().and_then(|o| self.offer_network.get(o).copied())),
            ),
        }
    }

    /// The group `a` belongs to (created on first sight).
    fn group(&mut self, a: &Attrs<'_>) -> usize {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for d in &self.dims {
            // Length-prefixed, so no value can forge a neighbour's boundary.
            match self.part(*d, a) {
                Part::Text(None) => buf.push(0),
                Part::Text(Some(s)) => {
                    buf.push(1);
                    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    buf.extend_from_slice(s.as_bytes());
                }
                Part::Day(day) => buf.extend_from_slice(&day.to_le_bytes()),
            }
        }
        let i = match self.index.get(buf.as_slice()) {
            Some(i) => *i,
            None => {
                let keys = self
                    .dims
                    .iter()
                    .map(|d| match self.part(*d, a) {
                        Part::Text(t) => t.map(str::to_owned),
                        Part::Day(day) => Some(format_date(day)),
                    })
                    .collect();
                self.rows.push(ReportRow {
                    keys,
                    figures: Figures::default(),
                });
                self.index.insert(buf.clone(), self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        self.buf = buf;
        i
    }
}

/// Visitors: (IP, User-Agent) hashed to 64 bits by a SipHash with a random key, new
/// for every report, so nobody can craft a collision. Two distinct visitors share an id
/// with probability about n²/2⁶⁵: for a million visitors, one chance in 37 million that
/// the unique count is one short.
struct Visitors(RandomState);

impl Visitors {
    fn new() -> Self {
        Visitors(RandomState::new())
    }

    fn id(&self, ip: Option<&str>, ua: Option<&str>) -> u64 {
        self.0.hash_one((ip, ua))
    }
}

/// Hasher for sets of visitor ids, which are already uniformly random: folding them is
/// enough, and hashing them again would be most of a report's time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PrehashedSet<T> = HashSet<T, BuildHasherDefault<Prehashed>>;

/// Run the report on `conn` (a read-only connection; one read transaction, so clicks
/// and conversions come from the same snapshot). Rows come back sorted by key.
pub fn run(
    conn: &Connection,
    catalog: &Catalog,
    params: &ReportParams,
) -> rusqlite::Result<(Vec<ReportRow>, Figures)> {
    conn.execute_batch("BEGIN")?;
    let result = run_in_snapshot(conn, catalog, params);
    // A read transaction: ending it cannot lose anything.
    let _ = conn.execute_batch("COMMIT");
    result
}

fn run_in_snapshot(
    conn: &Connection,
    catalog: &Catalog,
    params: &ReportParams,
) -> rusqlite::Result<(Vec<ReportRow>, Figures)> {
    let (lo, hi) = key_range(params.from_ms, params.to_ms);
    let needs_offer = params
        .group_by
        .iter()
        .any(|d| matches!(d, Dimension::Offer | Dimension::Network));
    let mut groups = Groups::new(catalog, params);
    let mut totals = Figures::default();
    // Visitors seen per group, and overall.
    let visitors = Visitors::new();
    let mut seen: PrehashedSet<(usize, u64)> = PrehashedSet::default();
    let mut seen_total: PrehashedSet<u64> = PrehashedSet::default();
    // Without grouping the one group is the total.
    let grouped = !params.group_by.is_empty();

    // Clicks, in key order, with their latest /go offer merged in from outbound_clicks
    // (same key order) when an offer is needed.
    // Columns no key needs are selected as NULL: SQLite then skips decoding them,
    // which is most of the scan's cost.
    let dims = &params.group_by;
    let col = |name: &str, needed: bool| {
        if needed {
            name.to_string()
        } else {
            "NULL".into()
        }
    };
    let mut clicks = conn.prepare(&format!(
        "SELECT {}, {}, {}, {}, {}, {}, {}, {}, {}, cost, ip, user_agent
         FROM clicks WHERE click_id >= ?1 AND click_id < ?2 ORDER BY click_id",
        col("click_id", needs_offer),
        col("ts_ms", dims.contains(&Dimension::Day)),
        col(
            "campaign_id",
            needs_offer || dims.contains(&Dimension::Campaign)
        ),
        col("source_id", dims.contains(&Dimension::Source)),
        col("sub1", dims.contains(&Dimension::Sub(1))),
        col("sub2", dims.contains(&Dimension::Sub(2))),
        col("sub3", dims.contains(&Dimension::Sub(3))),
        col("sub4", dims.contains(&Dimension::Sub(4))),
        col("sub5", dims.contains(&Dimension::Sub(5))),
    ))?;
    let mut outbound = conn.prepare(
        "SELECT click_id, offer_id FROM outbound_clicks
         WHERE click_id >= ?1 AND click_id < ?2 ORDER BY click_id, ts_ms, seq",
    )?;
    let mut out_rows = if needs_offer {
        Some(outbound.query([&lo, &hi])?)
    } else {
        None
    };
    // The outbound row the merge stands on: (click id, offer).
    let mut out_head: Option<(String, String)> = None;
    let mut out_done = false;
    let mut rows = clicks.query([&lo, &hi])?;
    while let Some(r) = rows.next()? {
        let click_id = text(r.get_ref(0)?).unwrap_or("");
        let mut offer: Option<String> = None;
        if let Some(out) = out_rows.as_mut() {
            loop {
                if out_head.is_none() && !out_done {
                    match out.next()? {
                        Some(o) => {
                            out_head = Some((o.get(0)?, o.get(1)?));
                        }
                        None => out_done = true,
                    }
                }
                match &out_head {
                    Some((id, _)) if id.as_str() < click_id => out_head = None,
                    Some((id, o)) if id == click_id => {
                        // Rows of one click come in time order: the last one wins.
                        offer = Some(o.clone());
                        out_head = None;
                    }
                    _ => break,
                }
            }
        }
        let mut a = Attrs {
            ts_ms: r.get::<_, Option<i64>>(1)?.unwrap_or_default(),
            campaign: text(r.get_ref(2)?),
            source: text(r.get_ref(3)?),
            offer: offer.as_deref(),
            network: None,
            ..Default::default()
        };
        for (i, s) in a.subs.iter_mut().enumerate() {
            *s = text(r.get_ref(4 + i)?);
        }
        let g = groups.group(&a);
        let cost = micros(r.get_ref(9)?);
        let who = visitors.id(text(r.get_ref(10)?), text(r.get_ref(11)?));
        let f = &mut groups.rows[g].figures;
        f.add_click(cost);
        let new_visitor = seen_total.insert(who);
        if if grouped {
            seen.insert((g, who))
        } else {
            new_visitor
        } {
            f.unique_clicks += 1;
        }
        totals.add_click(cost);
        if new_visitor {
            totals.unique_clicks += 1;
        }
    }
    drop(rows);
    drop(out_rows);

    // Counted conversions of those clicks. The conversions table is the outer loop
    // (CROSS JOIN fixes the order): its click_id index covers the same key range, and
    // each conversion finds its click by primary key.
    let statuses = COUNTED_STATUSES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut convs = conn.prepare(&format!(
        "SELECT c.ts_ms, c.campaign_id, c.source_id, c.sub1, c.sub2, c.sub3, c.sub4, c.sub5,
                v.payout, v.network_id,
                COALESCE(v.offer_id, (SELECT o.offer_id FROM outbound_clicks o WHERE o.click_id = c.click_id
                                      ORDER BY o.ts_ms DESC, o.seq DESC LIMIT 1))
         FROM conversions v CROSS JOIN clicks c ON c.click_id = v.click_id
         WHERE v.click_id >= ?1 AND v.click_id < ?2 AND v.status IN ({statuses})"
    ))?;
    let mut rows = convs.query([&lo, &hi])?;
    while let Some(r) = rows.next()? {
        let mut a = Attrs {
            ts_ms: r.get(0)?,
            campaign: text(r.get_ref(1)?),
            source: text(r.get_ref(2)?),
            network: text(r.get_ref(9)?),
            offer: text(r.get_ref(10)?),
            ..Default::default()
        };
        for (i, s) in a.subs.iter_mut().enumerate() {
            *s = text(r.get_ref(3 + i)?);
        }
        let g = groups.group(&a);
        let payout = micros(r.get_ref(8)?);
        groups.rows[g].figures.add_conversion(payout);
        totals.add_conversion(payout);
    }

    let mut out = groups.rows;
    out.sort_unstable_by(|a, b| a.keys.cmp(&b.keys));
    Ok((out, totals))
}

#[cfg(test)]
mod tests {
    use super::{key_range, micros, run};
    use crate::report::{Catalog, Figures, ReportParams};
    use clickstamp_plugins::postback::MAX_AMOUNT;
    use rusqlite::types::ValueRef;
    use rusqlite::{params, Connection};

    #[test]
    fn ten_million_conversions_at_the_payout_limit_add_up_exactly() {
        let at_limit = micros(ValueRef::Real(MAX_AMOUNT));
        assert_eq!(at_limit, 1_000_000_000_000);
        let mut f = Figures::default();
        for _ in 0..10_000_000 {
            f.add_conversion(at_limit);
        }
        assert_eq!(f.revenue_micros, 10_000_000 * 1_000_000_000_000);
        assert!(
            f.revenue_micros > i128::from(i64::MAX),
            "beyond what i64 holds"
        );
        assert_eq!(f.revenue_cents(), 1_000_000_000_000_000);
        assert_eq!(f.profit_cents(), 1_000_000_000_000_000);
    }

    #[test]
    fn amounts_stored_before_the_limit_cannot_wrap_a_report() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
        let click = format!("{:012x}7abc8def0123456789abcdef0123", 0x0190_0000_0000u64);
        conn.execute(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, cost, entry)
             VALUES (?1, ?2, 'camp', 'src', 1e300, 'landing')",
            params![click, 0x0190_0000_0000i64],
        )
        .unwrap();
        for (i, payout) in [1e308, 1e23, 9.2e12, 2.5].iter().enumerate() {
            conn.execute(
                "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, event, payout,
                    status, origin, created_ms, updated_ms)
                 VALUES (?1, ?2, 'camp', 'src', 'conversion', ?3, 'approved', 's2s', 0, 0)",
                params![format!("k{i}"), click, payout],
            )
            .unwrap();
        }
        let catalog = Catalog {
            sole_offers: Vec::new(),
            offer_networks: Vec::new(),
        };
        let (_, totals) = run(&conn, &catalog, &ReportParams::default()).unwrap();
        assert_eq!(totals.conversions, 4);
        // Each saturates at i64::MAX micro-units instead of wrapping the sum negative.
        let saturated = i128::from(i64::MAX);
        assert_eq!(
            totals.revenue_micros,
            2 * saturated + 9_200_000_000_000_000_000 + 2_500_000
        );
        assert!(totals.revenue_cents() > 0 && totals.cost_micros == saturated);
    }

    #[test]
    fn key_range_brackets_exactly_the_milliseconds_asked_for() {
        let (lo, hi) = key_range(Some(0x0190_0000_0000), Some(0x0190_0000_0002));
        let id = |ms: u64| format!("{ms:012x}7abc8def0123456789abcdef0123");
        assert!(id(0x0190_0000_0000).as_str() >= lo.as_str());
        assert!(id(0x018f_ffff_ffff).as_str() < lo.as_str());
        assert!(id(0x0190_0000_0001).as_str() < hi.as_str());
        assert!(
            id(0x0190_0000_0002).as_str() >= hi.as_str(),
            "to is exclusive"
        );
        let (lo, hi) = key_range(None, None);
        assert!(id(0).as_str() >= lo.as_str() && id(0xffff_ffff_ffff).as_str() < hi.as_str());
    }
}
