//! The tracker's use of routing: which path a new click goes down and which lander it
//! sees, and which offer `/go/{campaign}` sends a visitor to (sticky by click).

use super::routing::{local_hour, pick_by_weight, referrer_host, VisitFacts};
use super::ClickTraits;
use crate::config::routing::RoutePath;
use crate::store::{StoreError, StoredClick};
use crate::tracker::visit::Visit;
use crate::tracker::Pinned;
use rand::Rng;

impl Pinned<'_> {
    /// The path `visit` goes down in `campaign`: the first rule it matches, else the
    /// default path.
    pub fn route_for(
        &self,
        campaign: usize,
        visit: &Visit,
        traits: &ClickTraits,
        now_ms: u64,
    ) -> &RoutePath {
        let routing = &self.config.campaigns[campaign].routing;
        if routing.rules.is_empty() {
            return &routing.default_path;
        }
        let referrer = referrer_host(visit.referrer.as_deref());
        let facts = VisitFacts {
            traits,
            referrer_host: &referrer,
            query: &visit.query,
            local_hour: local_hour(now_ms, routing.time_zone_offset_min),
        };
        routing
            .rules
            .iter()
            .find(|r| r.when.matches(&facts))
            .map_or(&routing.default_path, |r| &r.path)
    }

    /// Whether any path of `campaign` names landers (so a returning visitor's lander
    /// is looked up to keep it).
    pub fn rotates_landers(&self, campaign: usize) -> bool {
        self.config.campaigns[campaign]
            .routing
            .paths()
            .any(|p| !p.landers.is_empty())
    }

    /// The offer `/go/{campaign}` sends the visitor of `click` to: the offer the click
    /// last went to while it is still on its path (a returning visitor sees the same
    /// offer), else one picked by the path's weights (the bandit's, when it has moved).
    /// `click` is `None` for a click minted by this very `/go`, of path `route`.
    pub async fn offer_for(
        &self,
        campaign: usize,
        click: Option<&StoredClick>,
        route: &str,
        now_ms: u64,
    ) -> Result<Option<usize>, StoreError> {
        let c = &self.config.campaigns[campaign];
        let path = c
            .routing
            .path(click.map_or(route, |k| k.profile.route.as_str()));
        if path.offers.len() == 1 {
            return Ok(Some(path.offers[0].0));
        }
        if let Some(last) = click.and_then(|k| k.last_offer_id.as_deref()) {
            if let Some((o, _)) = path
                .offers
                .iter()
                .find(|(o, _)| self.config.offers[*o].id == last)
            {
                return Ok(Some(*o));
            }
        }
        self.traffic
            .rotation
            .refresh_if_stale(&self.config, &self.store, now_ms);
        let snapshot = self.traffic.rotation.snapshot();
        let moved = snapshot.weights(&c.id, &path.name);
        let weights: Vec<u32> = path
            .offers
            .iter()
            .map(|(o, w)| {
                moved
                    .as_ref()
                    .and_then(|m| m.get(self.config.offers[*o].id.as_str()).copied())
                    .unwrap_or(*w)
            })
            .collect();
        let ticket = rand::rng().random::<u64>();
        Ok(pick_by_weight(&weights, ticket).map(|i| path.offers[i].0))
    }
}

/// A lander of `path` by weight; empty when the path names none (the page asked for
/// is served).
pub fn pick_lander(path: &RoutePath) -> String {
    let weights: Vec<u32> = path.landers.iter().map(|(_, w)| *w).collect();
    pick_by_weight(&weights, rand::rng().random::<u64>())
        .map(|i| path.landers[i].0.clone())
        .unwrap_or_default()
}
