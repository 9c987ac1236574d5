//! Landing clicks: mint, record, cookie.

use super::visit::Visit;
use super::{Pinned, Tracker};
use crate::store::{ClickProfile, ClickRecord, StoreError, WriteOp};
use clickstamp_plugins::ClickId;

/// Longest source click id or sub id kept from a landing URL, in bytes (the same bound
/// postback values have). Real ids are far shorter; a longer value is never cut (a cut
/// id would be relayed and attributed to nobody): the click is recorded with the value
/// NULL and `clickstamp_landing_values_refused_total` counts it.
pub const MAX_LANDING_VALUE_LEN: usize = 1024;

/// The `field` label of each sub id slot.
const SUB_ID_FIELDS: [&str; 5] = ["sub1", "sub2", "sub3", "sub4", "sub5"];

/// The result of a page view on a campaign's landing path.
#[derive(Debug, Clone)]
pub struct LandingClick {
    pub click_id: ClickId,
    /// `Set-Cookie` to send, when a new click was minted.
    pub set_cookie: Option<String>,
    /// False when the visitor's cookie already held a valid click for this campaign.
    pub new_click: bool,
    /// The lander to serve for the campaign's own page (the click's, so a returning
    /// visitor sees the same one); `None`: the page asked for.
    pub lander: Option<String>,
}

impl Pinned<'_> {
    /// Build the click record for a visit to `campaign`, reading the traffic source's
    /// parameters from the visit's query.
    pub fn click_record(
        &self,
        campaign: usize,
        visit: &Visit,
        click_id: ClickId,
        now_ms: u64,
        entry: &'static str,
    ) -> ClickRecord {
        let c = &self.config.campaigns[campaign];
        let source = &self.config.sources[c.source];
        let params = source.plugin.landing_params(&visit.query);
        if visit.dropped_params > 0 {
            self.metrics
                .landing_values_refused
                .with_label_values(&[&c.id, "invalid_utf8"])
                .inc_by(visit.dropped_params as u64);
            tracing::warn!(campaign = %c.id, parameters = visit.dropped_params, "landing URL parameters that are not UTF-8 were left out of the click");
        }
        let within_limit = |field: &'static str, value: Option<String>| {
            let value = value?;
            if value.len() <= MAX_LANDING_VALUE_LEN {
                return Some(value);
            }
            self.metrics
                .landing_values_refused
                .with_label_values(&[&c.id, field])
                .inc();
            tracing::warn!(campaign = %c.id, field, bytes = value.len(), max = MAX_LANDING_VALUE_LEN, "landing value over the limit: the click is recorded without it");
            None
        };
        let traits = self.traffic.assess(&self.config.traffic, visit, now_ms);
        let test = super::test_click::is_marked(
            visit.test_click_marker.as_deref(),
            &self.config.secrets.admin_token,
        );
        let excluded = if test {
            tracing::info!(campaign = %c.id, "test click (postback-test): recorded, kept out of reports and relays");
            Some(super::test_click::EXCLUDED_AS_TEST.to_string())
        } else {
            (traits.quality.is_flagged() && c.quality == crate::traffic::QualityPolicy::Exclude)
                .then(|| crate::traffic::EXCLUDED_FOR_QUALITY.to_string())
        };
        let path = self.route_for(campaign, visit, &traits, now_ms);
        let profile = crate::store::ClickProfile {
            route: path.name.clone(),
            lander: crate::traffic::pick::pick_lander(path),
            quality: traits.quality.label().to_string(),
            quality_reasons: traits.quality.reasons_text(),
            excluded,
            country: traits.country,
            device: traits.device.device.to_string(),
            os: traits.device.os.to_string(),
            browser: traits.device.browser.to_string(),
        };
        let mut sub_ids: [Option<String>; 5] = Default::default();
        for ((slot, value), field) in sub_ids.iter_mut().zip(params.sub_ids).zip(SUB_ID_FIELDS) {
            *slot = within_limit(field, value);
        }
        ClickRecord {
            click_id,
            ts_ms: now_ms,
            campaign_id: c.id.clone(),
            source_id: source.id.clone(),
            source_click_id: within_limit("source_click_id", params.source_click_id),
            source_click_param: params.source_click_id_param,
            cost: params.cost.or(c.cost),
            sub_ids,
            ip: visit.ip.clone(),
            user_agent: visit.user_agent.clone().map(|v| truncate(v, 512)),
            referrer: visit.referrer.clone().map(|v| truncate(v, 2048)),
            entry,
            profile,
        }
    }

    /// Count a click in the business metrics, once its write has succeeded: a click
    /// answered 503 was never recorded and must not count (nor its cost).
    pub fn count_click(&self, campaign: usize, cost: Option<f64>, profile: &ClickProfile) {
        let c = &self.config.campaigns[campaign];
        let source = &self.config.sources[c.source].id;
        self.metrics
            .clicks
            .with_label_values(&[&c.id, source])
            .inc();
        self.count_quality(campaign, profile);
        if let Some(cost) = cost {
            self.metrics
                .click_cost
                .with_label_values(&[&c.id, source])
                .inc_by(cost);
        }
    }

    /// A page view on `campaign`'s landing path. A returning visitor whose cookie holds
    /// a valid click keeps it (reloads do not inflate clicks); anyone else gets a new
    /// click, committed before this returns.
    pub async fn landing_click(
        &self,
        campaign: usize,
        visit: &Visit,
    ) -> Result<LandingClick, StoreError> {
        let now = Tracker::now_ms();
        if let Some(click_id) =
            self.click_from_cookie(&visit.cookies, campaign, now, super::route::label::LANDING)
        {
            // A lookup only where landers rotate; the recent-click cache answers most.
            let lander = if self.rotates_landers(campaign) {
                match self.store.click(&click_id).await {
                    Ok(found) => found.map(|k| k.profile.lander).filter(|l| !l.is_empty()),
                    Err(e) => {
                        tracing::warn!(error = %e, "returning visitor's lander not found; serving the page asked for");
                        None
                    }
                }
            } else {
                None
            };
            return Ok(LandingClick {
                click_id,
                set_cookie: None,
                new_click: false,
                lander,
            });
        }
        let click_id = self.mint(now);
        let record = self.click_record(campaign, visit, click_id, now, "landing");
        tracing::debug!(click_id = %click_id, campaign = %self.config.campaigns[campaign].id, "landing click");
        let cost = record.cost;
        let profile = record.profile.clone();
        let lander = Some(profile.lander.clone()).filter(|l| !l.is_empty());
        self.store
            .write(vec![WriteOp::Click(Box::new(record))])
            .await?;
        self.count_click(campaign, cost, &profile);
        Ok(LandingClick {
            click_id,
            set_cookie: Some(self.set_cookie(campaign, &click_id)),
            new_click: true,
            lander,
        })
    }
}

/// Cap strings that are only shown to the operator, never relayed (user agent, referrer):
/// a hostile client must not fill the disk one click at a time.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
