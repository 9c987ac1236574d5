//! The tracker: click capture and `/go`, independent of any HTTP framework.
//!
//! [`crate::service`] adapts it to Pingora; an existing server can call it directly.
//! Modules follow a request: [`route`] picks what a path means, [`visit`] reads what
//! the visitor sent, [`capture`] records landing clicks, [`go`] sends visitors to offers.

pub mod capture;
pub mod go;
pub mod path;
pub mod route;
pub mod test_click;
pub mod visit;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
use arc_swap::ArcSwap;
use clickstamp_plugins::{ClickId, ClickIdCodec, ClickIdError};
use rand::RngCore;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Shared state behind every request.
pub struct Tracker {
    /// The live config: replaced whole by [`crate::reload`]. A request reads it once,
    /// through [`Tracker::pin`], and keeps that one to its end.
    live_config: ArcSwap<Config>,
    /// From `secrets.click_id_key`, which only a restart changes (see [`crate::reload`]).
    pub codec: ClickIdCodec,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Woken when a relay is enqueued, so the outbox worker delivers it at once.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// Journal entries of unauthenticated postbacks, per client IP (see
    /// `postback::journal`).
    pub journal_limiter: crate::pixel::rate::RateLimiter,
    /// ClickHouse, when `[analytics]` is configured (restart-only).
    pub analytics: Option<crate::analytics::Analytics>,
    /// Traffic-quality state (per-IP windows) and metrics.
    pub traffic: crate::traffic::TrafficState,
}

/// The tracker under one config: what a request works with from its start to its
/// end, so that campaign and offer indices it holds always point into the config they
/// came from, even when a reload swaps the live one meanwhile. Everything else of the
/// tracker is reached through `Deref`.
pub struct Pinned<'a> {
    tracker: &'a Tracker,
    pub config: Arc<Config>,
}

impl std::ops::Deref for Pinned<'_> {
    type Target = Tracker;

    fn deref(&self) -> &Tracker {
        self.tracker
    }
}

impl Tracker {
    /// A tracker over a validated config and an open store.
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        let codec = ClickIdCodec::new(&config.secrets.click_id_key);
        let analytics_metrics =
            crate::analytics::AnalyticsMetrics::register_or_detached(metrics.registry());
        let analytics = config
            .analytics
            .as_ref()
            .and_then(|a| crate::analytics::Analytics::new(a, analytics_metrics));
        let traffic = crate::traffic::TrafficState::new(metrics.registry());
        Tracker {
            analytics,
            traffic,
            live_config: ArcSwap::new(config),
            codec,
            store,
            metrics,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            journal_limiter: crate::pixel::rate::RateLimiter::new(
                crate::postback::journal::UNAUTHENTICATED_JOURNAL_PER_MINUTE,
                crate::postback::journal::RATE_LIMITED_CLIENTS,
            ),
        }
    }

    /// The live config. A request takes it once (see [`Tracker::pin`]) and uses that
    /// one throughout.
    pub fn config(&self) -> Arc<Config> {
        self.live_config.load_full()
    }

    /// The tracker under the live config, for one request.
    pub fn pin(&self) -> Pinned<'_> {
        self.pinned(self.config())
    }

    /// The tracker under `config` (a request's config, taken when it started).
    pub fn pinned(&self, config: Arc<Config>) -> Pinned<'_> {
        Pinned {
            tracker: self,
            config,
        }
    }

    /// Make `config` the live one; requests already running keep theirs. Only
    /// [`crate::reload`] calls this, with a config whose restart-only parts are the
    /// running ones.
    pub(crate) fn replace_config(&self, config: Arc<Config>) {
        self.live_config.store(config);
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Mint a fresh click ID.
    pub fn mint(&self, now_ms: u64) -> ClickId {
        let mut random = [0u8; 6];
        rand::rng().fill_bytes(&mut random);
        self.codec.mint(now_ms, random)
    }

    /// Count and log a refused click ID.
    pub fn reject_click_id(&self, route: &str, e: ClickIdError) {
        self.metrics
            .click_ids_rejected
            .with_label_values(&[route, e.reason()])
            .inc();
        tracing::info!(route, reason = e.reason(), "click id refused");
    }
}

impl Pinned<'_> {
    /// Verify a click ID against the key and the longest attribution window. Campaign
    /// windows are checked again once the campaign is known.
    pub fn verify(&self, text: &str, now_ms: u64) -> Result<ClickId, ClickIdError> {
        let max_age_ms = self.config.max_attribution_window().as_millis() as u64;
        self.codec.verify(text, now_ms, max_age_ms)
    }

    /// Verify a click ID against one campaign's window.
    pub fn verify_for_campaign(
        &self,
        text: &str,
        campaign: usize,
        now_ms: u64,
    ) -> Result<ClickId, ClickIdError> {
        let window = self.config.campaigns[campaign]
            .attribution_window
            .as_millis() as u64;
        self.codec.verify(text, now_ms, window)
    }

    /// Name of the click cookie for `campaign`.
    pub fn cookie_name(&self, campaign: usize) -> String {
        format!(
            "{}{}",
            self.config.server.cookie_prefix, self.config.campaigns[campaign].id
        )
    }

    /// `Set-Cookie` value carrying `click_id` for `campaign`, living as long as its
    /// attribution window. Set by the server, so Safari's 7-day cap on script-written
    /// cookies does not apply. Not HttpOnly: the pixel SDK reads it.
    pub fn set_cookie(&self, campaign: usize, click_id: &ClickId) -> String {
        let max_age = self.config.campaigns[campaign].attribution_window.as_secs();
        format!(
            "{}={click_id}; Path=/; Max-Age={max_age}; SameSite=Lax",
            self.cookie_name(campaign)
        )
    }

    /// The click stored in `campaign`'s cookie: the first cookie of that name that
    /// verifies (MAC and the campaign's window), since a forged or stale one may come
    /// first. Every invalid one is counted under `route` and otherwise ignored: a
    /// visitor is never turned away for a stale cookie. Every reader of the click
    /// cookie (landing, `/go`, the rewrite hooks, the pixel) goes through here.
    pub fn click_from_cookie(
        &self,
        cookies: &str,
        campaign: usize,
        now_ms: u64,
        route: &str,
    ) -> Option<ClickId> {
        let name = self.cookie_name(campaign);
        // `name` must outlive the iterator, hence the binding.
        let click = visit::cookie_values(cookies, &name).find_map(|value| {
            self.verify_for_campaign(value, campaign, now_ms)
                .map_err(|e| self.reject_click_id(route, e))
                .ok()
        });
        click
    }
}
