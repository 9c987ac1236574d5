//! Profit reports: "am I making money?", per campaign, offer, network, source, sub id
//! and day. Served as `GET /api/report` on the admin listener and by `clickstamp report`.
//!
//! # What the figures mean (guaranteed)
//!
//! - **Time basis: the click.** The range and the `day` column select and group by the
//!   time of the *click*; a click's conversions count with it whenever they arrive (the
//!   cohort view). So CR and EPC of a day compare like with like, and a day's figures
//!   can still grow while its conversions come in.
//! - **clicks**: clicks recorded (landing views that minted a click, and direct-link
//!   clicks from `/go`). Reloads with the click cookie are not clicks. Clicks recorded
//!   as excluded (`clicks.excluded`: a flagged click of a campaign that excludes them)
//!   count nowhere, nor do their conversions.
//! - **unique_clicks**: distinct visitors among those clicks, a visitor being the pair
//!   (IP address, User-Agent), compared by a 64-bit keyed hash (a million visitors
//!   come out one short with probability about 1 in 37 million). Counted within each row, so rows do not add up to the
//!   total (one visitor can be in several rows); the total is its own distinct count.
//! - **conversions**: conversions of those clicks whose current status is `approved` or
//!   `pending`. Rejected ones and chargebacks are excluded, so a chargeback takes its
//!   conversion (and its payout) out of the report. A pixel conversion and its S2S
//!   twin are one conversion (the store merges them).
//! - **revenue**: the sum of the payouts of the counted conversions; **cost**: the sum
//!   of the click costs; both in the account currency (payouts are summed as stored,
//!   whatever currency a network named).
//! - **profit** = revenue − cost; **cr** = conversions ÷ clicks × 100 (percent);
//!   **roi** = profit ÷ cost × 100 (percent, `null` without cost); **epc** = revenue ÷
//!   clicks (`null` without clicks).
//!
//! # Money is exact to the cent
//!
//! Each stored amount is rounded once to an integer number of micro-units (1e-6) and
//! summed as integers, so no float error accumulates over a million clicks. Revenue
//! and cost are then rounded once to cents (half away from zero); profit is revenue
//! minus cost *in cents*, so the three columns always add up as displayed. Ratios are
//! computed from the exact micro sums and rounded for display (cr and roi to 2
//! decimals, epc to 4). JSON also carries `revenue_micros` and `cost_micros` for exact
//! re-aggregation.
//!
//! # Offer and network of a click
//!
//! A click's offer is the offer of its latest `/go`, or its campaign's offer when the
//! campaign has only one; a conversion's offer is the one recorded with it (falling
//! back to its click's). The network is the conversion's network, else the offer's.
//! Clicks with no known offer are grouped under `null` (an empty CSV cell).
//!
//! # Cost to the tracker
//!
//! Each store reads a report from one consistent snapshot, off the click path (the
//! embedded store through its own read-only connection on a blocking thread, the
//! shared store through its pool), and adds no index for it; [`aggregate`] turns the
//! rows into figures the same way for every store.

pub mod aggregate;
pub mod cli;
pub mod http;
pub mod params;
pub mod render;

use crate::config::Config;
pub use params::{Dimension, Format, ParamError, ReportParams, ReportSource};

/// The additive figures of one row; everything else is derived from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub clicks: u64,
    pub unique_clicks: u64,
    pub conversions: u64,
    /// Sum of counted payouts, in micro-units. 128 bits: an `i64` holds only about
    /// 9 million conversions at the payout limit, and a sum must never wrap.
    pub revenue_micros: i128,
    /// Sum of click costs, in micro-units (128 bits, as revenue).
    pub cost_micros: i128,
}

/// Round micro-units to cents, half away from zero.
pub fn micros_to_cents(micros: i128) -> i128 {
    (micros + 5_000 * micros.signum()) / 10_000
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl Figures {
    /// Count one conversion paying `payout_micros`.
    pub fn add_conversion(&mut self, payout_micros: i128) {
        self.conversions += 1;
        self.revenue_micros += payout_micros;
    }

    /// Count one click costing `cost_micros`.
    pub fn add_click(&mut self, cost_micros: i128) {
        self.clicks += 1;
        self.cost_micros += cost_micros;
    }

    /// Revenue in cents.
    pub fn revenue_cents(&self) -> i128 {
        micros_to_cents(self.revenue_micros)
    }

    /// Cost in cents.
    pub fn cost_cents(&self) -> i128 {
        micros_to_cents(self.cost_micros)
    }

    /// Profit in cents: revenue minus cost as displayed, so the columns add up.
    pub fn profit_cents(&self) -> i128 {
        self.revenue_cents() - self.cost_cents()
    }

    /// Conversion rate in percent, 2 decimals; `None` without clicks.
    pub fn cr_percent(&self) -> Option<f64> {
        (self.clicks > 0).then(|| round_to(self.conversions as f64 * 100.0 / self.clicks as f64, 2))
    }

    /// Return on investment in percent, 2 decimals; `None` without cost.
    pub fn roi_percent(&self) -> Option<f64> {
        (self.cost_micros != 0).then(|| {
            let profit = (self.revenue_micros - self.cost_micros) as f64;
            round_to(profit * 100.0 / self.cost_micros as f64, 2)
        })
    }

    /// Earnings per click, 4 decimals; `None` without clicks.
    pub fn epc(&self) -> Option<f64> {
        (self.clicks > 0)
            .then(|| round_to(self.revenue_micros as f64 / 1e6 / self.clicks as f64, 4))
    }
}

/// One row: its key (one value per group-by dimension, `None` when the click has no
/// value there) and its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub keys: Vec<Option<String>>,
    pub figures: Figures,
}

/// A finished report: rows sorted by key, and totals over the whole range.
#[derive(Debug, Clone)]
pub struct Report {
    pub params: ReportParams,
    pub rows: Vec<ReportRow>,
    pub totals: Figures,
}

/// A report and where it was read (`store` or `clickhouse`), for the answer.
#[derive(Debug, Clone)]
pub struct Answered {
    pub report: Report,
    pub source: &'static str,
    /// Why an automatic report did not read ClickHouse, when it could have.
    pub note: Option<String>,
}

/// What a report needs from the config to place clicks under offers and networks.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// `(campaign, offer)` for each campaign with exactly one offer.
    pub sole_offers: Vec<(String, String)>,
    /// `(offer, network)` for every offer.
    pub offer_networks: Vec<(String, String)>,
}

impl Catalog {
    /// The catalog of a running config.
    pub fn from_config(config: &Config) -> Catalog {
        Catalog {
            sole_offers: config
                .campaigns
                .iter()
                .filter_map(|c| match c.offers.as_slice() {
                    [(offer, _)] => Some((c.id.clone(), config.offers[*offer].id.clone())),
                    _ => None,
                })
                .collect(),
            offer_networks: config
                .offers
                .iter()
                .map(|o| (o.id.clone(), config.networks[o.network].id.clone()))
                .collect(),
        }
    }
}

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The request itself is wrong (a 400).
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The store could not produce it.
    #[error("report failed: {0}")]
    Store(#[from] crate::store::StoreError),
    /// ClickHouse was asked for (`source=clickhouse`) and could not produce it.
    #[error("report from ClickHouse failed: {0}")]
    ClickHouse(#[from] crate::analytics::ClickHouseError),
    /// ClickHouse was asked for but analytics is not configured.
    #[error(
        "source=clickhouse: analytics is not configured; add [analytics] or ask for source=store"
    )]
    NoAnalytics,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_round_half_away_from_zero_once() {
        assert_eq!(micros_to_cents(12_345_000), 1235, "12.345 → 12.35");
        assert_eq!(micros_to_cents(12_344_999), 1234);
        assert_eq!(micros_to_cents(-12_345_000), -1235);
        assert_eq!(micros_to_cents(0), 0);
    }

    #[test]
    fn derived_figures() {
        let f = Figures {
            clicks: 3,
            unique_clicks: 2,
            conversions: 1,
            revenue_micros: 2_500_000,
            cost_micros: 30_000,
        };
        assert_eq!(
            (f.revenue_cents(), f.cost_cents(), f.profit_cents()),
            (250, 3, 247)
        );
        assert_eq!(f.cr_percent(), Some(33.33));
        assert_eq!(f.roi_percent(), Some(8233.33));
        assert_eq!(f.epc(), Some(0.8333));
        let empty = Figures::default();
        assert_eq!(
            (empty.cr_percent(), empty.roi_percent(), empty.epc()),
            (None, None, None)
        );
    }
}
