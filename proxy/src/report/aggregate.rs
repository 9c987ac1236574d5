//! Aggregating a report from the rows a store reads: group keys, figures and distinct
//! visitors, the same for every backend. A store reads the clicks of the range (each
//! with its latest `/go` offer) and their counted conversions (each with its click's
//! attributes), in any order, and feeds them here; the figures do not depend on how
//! the rows were found.
//!
//! Grouping happens here rather than in SQL because unique visitors need a distinct
//! count per group, which a database does with a temporary sort or B-tree per query
//! (seconds on a million clicks); a hash set does it in one pass.

use super::params::{format_date, Dimension, ReportParams, Trait, DAY_MS};
use super::{Catalog, Figures, ReportRow};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Statuses counted as conversions: the network has not (yet) taken them back.
pub const COUNTED_STATUSES: [&str; 2] = ["approved", "pending"];

/// The click-key range `[lo, hi)` for a time range: the key's first 12 hex characters
/// are its millisecond timestamp, and every key is longer than the 12-character bound,
/// so `key >= hex(from)` keeps exactly the clicks at or after `from`, and
/// `key < hex(to)` exactly those before `to`. (Keys compare bytewise: a store whose
/// text comparison follows a locale must compare these columns in the C collation.)
pub fn key_range(from_ms: Option<i64>, to_ms: Option<i64>) -> (String, String) {
    let bound = |ms: i64| format!("{:012x}", ms.clamp(0, 0xffff_ffff_ffff));
    (
        from_ms.map(bound).unwrap_or_default(),
        // "g" sorts after every hex digit.
        to_ms.map(bound).unwrap_or_else(|| "g".to_string()),
    )
}

/// A stored amount in integer micro-units, rounded once (half away from zero).
/// Amounts are bounded on the way in (`MAX_AMOUNT`); one stored before that bound (or
/// written by hand) saturates at ±2^63 micro-units rather than wrapping, and the
/// 128-bit sums cannot overflow on any number of rows.
pub fn amount_micros(amount: f64) -> i128 {
    // `as` saturates (and maps NaN to 0).
    i128::from((amount * 1e6).round() as i64)
}

/// Which click columns the report's keys need: a store may skip reading the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needed {
    /// The click's offer (its latest `/go`), for the offer or network dimension.
    pub offer: bool,
    pub day: bool,
    pub campaign: bool,
    pub source: bool,
    pub subs: [bool; 5],
    /// The click traits, in [`Trait::ALL`] order.
    pub traits: [bool; 6],
}

impl Needed {
    /// What `params` groups by needs.
    pub fn of(params: &ReportParams) -> Needed {
        let dims = &params.group_by;
        let offer = dims
            .iter()
            .any(|d| matches!(d, Dimension::Offer | Dimension::Network));
        let mut subs = [false; 5];
        for (i, s) in subs.iter_mut().enumerate() {
            *s = dims.contains(&Dimension::Sub(i as u8 + 1));
        }
        let mut traits = [false; 6];
        for (t, needed) in Trait::ALL.iter().zip(traits.iter_mut()) {
            *needed = dims.contains(&Dimension::Trait(*t));
        }
        Needed {
            traits,
            offer,
            day: dims.contains(&Dimension::Day),
            // A click's sole offer comes from its campaign.
            campaign: offer || dims.contains(&Dimension::Campaign),
            source: dims.contains(&Dimension::Source),
            subs,
        }
    }
}

/// One click of the range, as a store read it.
#[derive(Debug, Default)]
pub struct ClickFacts<'a> {
    pub ts_ms: i64,
    pub campaign: Option<&'a str>,
    pub source: Option<&'a str>,
    pub subs: [Option<&'a str>; 5],
    /// The offer of the click's latest `/go`, if any.
    pub offer: Option<&'a str>,
    pub cost_micros: i128,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The click's traits, in [`Trait::ALL`] order (empty text: unknown).
    pub traits: [Option<&'a str>; 6],
}

/// One counted conversion of a click in the range, with its click's attributes.
#[derive(Debug, Default)]
pub struct ConversionFacts<'a> {
    /// The click's time (the report's time basis).
    pub ts_ms: i64,
    pub campaign: Option<&'a str>,
    pub source: Option<&'a str>,
    pub subs: [Option<&'a str>; 5],
    /// The conversion's offer, else its click's latest `/go` offer.
    pub offer: Option<&'a str>,
    /// The conversion's network.
    pub network: Option<&'a str>,
    pub payout_micros: i128,
    /// Its click's traits, in [`Trait::ALL`] order.
    pub traits: [Option<&'a str>; 6],
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
    traits: [Option<&'a str>; 6],
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
            Dimension::Trait(t) => Part::Text(a.traits[t as usize].filter(|s| !s.is_empty())),
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

/// Builds a report from the rows a store feeds it.
pub struct Aggregator<'c> {
    groups: Groups<'c>,
    totals: Figures,
    visitors: Visitors,
    /// Visitors seen per group, and overall.
    seen: PrehashedSet<(usize, u64)>,
    seen_total: PrehashedSet<u64>,
    /// Without grouping the one group is the total.
    grouped: bool,
}

impl<'c> Aggregator<'c> {
    pub fn new(catalog: &'c Catalog, params: &ReportParams) -> Self {
        Aggregator {
            groups: Groups::new(catalog, params),
            totals: Figures::default(),
            visitors: Visitors::new(),
            seen: PrehashedSet::default(),
            seen_total: PrehashedSet::default(),
            grouped: !params.group_by.is_empty(),
        }
    }

    /// Count one click.
    pub fn add_click(&mut self, c: &ClickFacts<'_>) {
        let a = Attrs {
            ts_ms: c.ts_ms,
            campaign: c.campaign,
            source: c.source,
            subs: c.subs,
            offer: c.offer,
            network: None,
            traits: c.traits,
        };
        let g = self.groups.group(&a);
        let who = self.visitors.id(c.ip, c.user_agent);
        let f = &mut self.groups.rows[g].figures;
        f.add_click(c.cost_micros);
        let new_visitor = self.seen_total.insert(who);
        if if self.grouped {
            self.seen.insert((g, who))
        } else {
            new_visitor
        } {
            f.unique_clicks += 1;
        }
        self.totals.add_click(c.cost_micros);
        if new_visitor {
            self.totals.unique_clicks += 1;
        }
    }

    /// Count one conversion.
    pub fn add_conversion(&mut self, v: &ConversionFacts<'_>) {
        let a = Attrs {
            ts_ms: v.ts_ms,
            campaign: v.campaign,
            source: v.source,
            subs: v.subs,
            offer: v.offer,
            network: v.network,
            traits: v.traits,
        };
        let g = self.groups.group(&a);
        self.groups.rows[g].figures.add_conversion(v.payout_micros);
        self.totals.add_conversion(v.payout_micros);
    }

    /// The rows, sorted by key, and the totals.
    pub fn finish(self) -> (Vec<ReportRow>, Figures) {
        let mut out = self.groups.rows;
        out.sort_unstable_by(|a, b| a.keys.cmp(&b.keys));
        (out, self.totals)
    }
}

#[cfg(test)]
mod tests {
    use super::{amount_micros, key_range};
    use crate::report::Figures;
    use clickstamp_plugins::postback::MAX_AMOUNT;

    #[test]
    fn ten_million_conversions_at_the_payout_limit_add_up_exactly() {
        let at_limit = amount_micros(MAX_AMOUNT);
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
