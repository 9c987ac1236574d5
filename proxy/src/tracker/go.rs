//! `/go/{offer}` and `/go/{campaign}`: record the outbound click, redirect to the offer.
//!
//! The redirect target is always a configured offer URL with our click ID stamped in
//! by the offer's network plugin. Nothing from the request (no `?url=`, no path trick)
//! can change the scheme, host or path of the target: the `{target}` segment is only
//! ever compared for equality against configured ids.

use super::route::label;
use super::visit::Visit;
use super::{Pinned, Tracker};
use crate::store::{OutboundRecord, StoreError, WriteOp};
use clickstamp_plugins::query::first_value;
use clickstamp_plugins::{ClickId, StampError};

/// What `/go` answers.
#[derive(Debug, Clone)]
pub enum GoOutcome {
    /// 302 to `location`.
    Redirect {
        location: String,
        click_id: ClickId,
        /// Set when a click was minted here (direct linking).
        set_cookie: Option<String>,
        /// `reused` or `direct`: how the click was found.
        how: &'static str,
    },
    /// No click and no campaign allows direct linking: send the visitor to the
    /// campaign's landing page, which mints one.
    ToLanding { location: String },
}

/// Why `/go` refused.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("no offer or campaign with this id")]
    UnknownTarget,
    #[error("the offer URL could not be stamped: {0}")]
    Stamp(#[from] StampError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl GoError {
    /// Stable reason for metrics and JSON bodies.
    pub fn reason(&self) -> &'static str {
        match self {
            GoError::UnknownTarget => "unknown_offer",
            GoError::Stamp(_) => "offer_url_invalid",
            GoError::Store(_) => "store_unavailable",
        }
    }
}

impl Pinned<'_> {
    /// Handle `/go/{target}`.
    pub async fn go(&self, target: &str, visit: &Visit) -> Result<GoOutcome, GoError> {
        let config = &self.config;
        let now = Tracker::now_ms();
        // Which campaigns may this click belong to, and which offer (if fixed)?
        let (candidates, fixed_offer): (Vec<usize>, Option<usize>) =
            match config.offer_index(target) {
                Some(offer) => (
                    (0..config.campaigns.len())
                        .filter(|&c| config.campaigns[c].offers.iter().any(|(o, _)| *o == offer))
                        .collect(),
                    Some(offer),
                ),
                None => match config.campaign_index(target) {
                    Some(c) => (vec![c], None),
                    None => return Err(GoError::UnknownTarget),
                },
            };
        if candidates.is_empty() {
            // An offer no campaign uses: nothing to attribute the visit to.
            return Err(GoError::UnknownTarget);
        }

        let mut found: Option<(usize, ClickId, &'static str)> = None;
        if let Some(text) = first_value(&visit.query, "click") {
            match self.verify(text, now) {
                Ok(id) => {
                    if let Some(row) = self.store.click(&id).await? {
                        if let Some(c) = candidates
                            .iter()
                            .copied()
                            .find(|&c| config.campaigns[c].id == row.campaign_id)
                        {
                            found = Some((c, id, "reused"));
                        }
                    }
                }
                Err(e) => self.reject_click_id(label::GO, e),
            }
        }
        if found.is_none() {
            found = candidates.iter().find_map(|&c| {
                self.click_from_cookie(&visit.cookies, c, now, label::GO)
                    .map(|id| (c, id, "reused"))
            });
        }

        let mut ops = Vec::with_capacity(2);
        let mut set_cookie = None;
        // A click minted here, counted only once the write below has succeeded.
        let mut minted: Option<(usize, Option<f64>, crate::store::ClickProfile)> = None;
        let (campaign, click_id, how) = match found {
            Some(f) => f,
            None => match candidates
                .iter()
                .copied()
                .find(|&c| config.campaigns[c].direct_linking)
            {
                Some(c) => {
                    let id = self.mint(now);
                    let record = self.click_record(c, visit, id, now, "direct");
                    minted = Some((c, record.cost, record.profile.clone()));
                    ops.push(WriteOp::Click(Box::new(record)));
                    set_cookie = Some(self.set_cookie(c, &id));
                    (c, id, "direct")
                }
                None => {
                    let c = &config.campaigns[candidates[0]];
                    return Ok(GoOutcome::ToLanding {
                        location: c.path.clone(),
                    });
                }
            },
        };

        let offer = match fixed_offer {
            Some(o) => o,
            // The path's offers, sticky by click (see `traffic::pick`).
            None => {
                // Only a choice among offers needs the click (its path and last
                // offer): where every path has the same single offer, nothing is read.
                let routing = &config.campaigns[campaign].routing;
                let first = &routing.default_path.offers;
                let chooses = routing
                    .paths()
                    .any(|p| p.offers.len() > 1 || p.offers != *first);
                let stored = match &minted {
                    None if chooses => self.store.click(&click_id).await?,
                    _ => None,
                };
                let route = minted.as_ref().map_or("", |(_, _, p)| p.route.as_str());
                self.offer_for(campaign, stored.as_ref(), route, now)
                    .await?
                    .ok_or(GoError::UnknownTarget)?
            }
        };
        let offer_cfg = &config.offers[offer];
        let network = &config.networks[offer_cfg.network];
        let location = network
            .plugin
            .stamp_offer_url(&offer_cfg.url, &click_id.to_hex())?;
        let campaign_id = &config.campaigns[campaign].id;
        ops.push(WriteOp::Outbound(OutboundRecord {
            click_id,
            ts_ms: now,
            campaign_id: campaign_id.clone(),
            offer_id: offer_cfg.id.clone(),
        }));
        self.store.write(ops).await?;
        if let Some((c, cost, profile)) = minted {
            self.count_click(c, cost, &profile);
        }
        tracing::debug!(click_id = %click_id, campaign = %campaign_id, offer = %offer_cfg.id, how, "outbound click");
        self.metrics
            .outbound_clicks
            .with_label_values(&[campaign_id, &offer_cfg.id])
            .inc();
        Ok(GoOutcome::Redirect {
            location,
            click_id,
            set_cookie,
            how,
        })
    }
}
