//! Landing clicks: mint, record, cookie.

use super::visit::Visit;
use super::Tracker;
use crate::store::{ClickRecord, StoreError, WriteOp};
use clickstamp_plugins::ClickId;

/// The result of a page view on a campaign's landing path.
#[derive(Debug, Clone)]
pub struct LandingClick {
    pub click_id: ClickId,
    /// `Set-Cookie` to send, when a new click was minted.
    pub set_cookie: Option<String>,
    /// False when the visitor's cookie already held a valid click for this campaign.
    pub new_click: bool,
}

impl Tracker {
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
        let mut sub_ids: [Option<String>; 5] = Default::default();
        for (slot, value) in sub_ids.iter_mut().zip(params.sub_ids) {
            *slot = value.map(|v| truncate(v, 255));
        }
        ClickRecord {
            click_id,
            ts_ms: now_ms,
            campaign_id: c.id.clone(),
            source_id: source.id.clone(),
            source_click_id: params.source_click_id.map(|v| truncate(v, 255)),
            source_click_param: params.source_click_id_param,
            cost: params.cost.or(c.cost),
            sub_ids,
            ip: visit.ip.clone(),
            user_agent: visit.user_agent.clone().map(|v| truncate(v, 512)),
            referrer: visit.referrer.clone().map(|v| truncate(v, 2048)),
            entry,
        }
    }

    /// Count a recorded click in the business metrics.
    pub fn count_click(&self, campaign: usize, record: &ClickRecord) {
        let c = &self.config.campaigns[campaign];
        let source = &self.config.sources[c.source].id;
        self.metrics
            .clicks
            .with_label_values(&[&c.id, source])
            .inc();
        if let Some(cost) = record.cost {
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
        let now = Self::now_ms();
        if let Some(click_id) =
            self.click_from_cookie(&visit.cookies, campaign, now, super::route::label::LANDING)
        {
            return Ok(LandingClick {
                click_id,
                set_cookie: None,
                new_click: false,
            });
        }
        let click_id = self.mint(now);
        let record = self.click_record(campaign, visit, click_id, now, "landing");
        tracing::debug!(click_id = %click_id, campaign = %self.config.campaigns[campaign].id, "landing click");
        self.count_click(campaign, &record);
        self.store
            .write(vec![WriteOp::Click(Box::new(record))])
            .await?;
        Ok(LandingClick {
            click_id,
            set_cookie: Some(self.set_cookie(campaign, &click_id)),
            new_click: true,
        })
    }
}

/// Cap operator-visible strings: a hostile client must not fill the disk one click at a time.
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
