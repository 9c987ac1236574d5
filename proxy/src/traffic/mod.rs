//! Traffic quality: whether a click looks like a person, decided on the request path
//! with no external service (docs/traffic-rules.md).
//!
//! Each signal has a named [`Reason`]. A click with any reason is `flagged`; what
//! that does is the campaign's `quality` policy: `flag` records it as such, `exclude`
//! also keeps it (and its conversions) out of reports and relays. Nothing is ever
//! dropped: a flagged visitor is served like any other.
//!
//! [`signals`] holds the pure checks (user agent list, headers, Client Hints,
//! device); [`cidr`] the data-centre networks; [`rate`] the in-process per-IP state;
//! [`geoip`] the country database.

pub mod bandit;
pub mod cidr;
pub mod geoip;
pub mod pick;
pub mod rate;
pub mod rotation;
pub mod routing;
pub mod signals;

use crate::config::traffic::TrafficConfig;
use crate::tracker::visit::Visit;
use prometheus::{IntCounterVec, Opts, Registry};
pub use signals::{BotList, Device, HeaderSignals};

/// Why a click was flagged. The names are stable: they are stored in
/// `clicks.quality_reasons`, shown in reports and used as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The user agent is on the bot / crawler / HTTP-library / headless list.
    BotUserAgent,
    /// No user agent at all.
    NoUserAgent,
    /// `Sec-CH-UA` names a headless browser.
    Headless,
    /// No `Accept-Language` (every browser sends one).
    NoAcceptLanguage,
    /// Client Hints that contradict the user agent.
    ClientHintsMismatch,
    /// The address is in a configured data-centre network.
    Datacenter,
    /// More clicks from the address within the window than allowed.
    Rate,
    /// The same visitor clicked again sooner than a person could.
    TooFast,
}

impl Reason {
    /// Every reason, in the order they are listed.
    pub const ALL: [Reason; 8] = [
        Reason::BotUserAgent,
        Reason::NoUserAgent,
        Reason::Headless,
        Reason::NoAcceptLanguage,
        Reason::ClientHintsMismatch,
        Reason::Datacenter,
        Reason::Rate,
        Reason::TooFast,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::BotUserAgent => "bot_user_agent",
            Reason::NoUserAgent => "no_user_agent",
            Reason::Headless => "headless",
            Reason::NoAcceptLanguage => "no_accept_language",
            Reason::ClientHintsMismatch => "client_hints_mismatch",
            Reason::Datacenter => "datacenter",
            Reason::Rate => "rate",
            Reason::TooFast => "too_fast",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The reasons a click was flagged (none: `ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quality(u16);

impl Quality {
    pub const OK: Quality = Quality(0);

    pub fn add(&mut self, reason: Reason) {
        self.0 |= reason.bit();
    }

    pub fn has(self, reason: Reason) -> bool {
        self.0 & reason.bit() != 0
    }

    pub fn is_flagged(self) -> bool {
        self.0 != 0
    }

    /// `ok` or `flagged`: the `clicks.quality` column and the metric label.
    pub fn label(self) -> &'static str {
        if self.is_flagged() {
            "flagged"
        } else {
            "ok"
        }
    }

    pub fn reasons(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.has(*r))
    }

    /// Reason names joined with commas (`clicks.quality_reasons`); empty when ok.
    pub fn reasons_text(self) -> String {
        self.reasons()
            .map(Reason::name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a campaign does with a flagged click (`campaigns[].quality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QualityPolicy {
    /// Record it, with `quality = flagged` and its reasons (the default).
    #[default]
    Flag,
    /// Record it, and keep it and its conversions out of reports and relays.
    Exclude,
}

/// The value of `clicks.excluded_reason` for a click excluded by its campaign's
/// quality policy. Exclusion is general ("recorded, never counted or relayed"):
/// other reasons may mark a click so too.
pub const EXCLUDED_FOR_QUALITY: &str = "quality";

/// What the tracker learned about one click.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClickTraits {
    pub quality: Quality,
    /// ISO country code, or empty (no GeoIP database, or an unknown address).
    pub country: String,
    /// ISO subdivision code, or empty.
    pub region: String,
    /// The first language asked for (`de`), or empty.
    pub language: String,
    pub device: Device,
}

/// Traffic state shared by every request: the per-IP windows and the metrics.
pub struct TrafficState {
    rate: rate::RateState,
    pub metrics: TrafficMetrics,
    /// The optimising paths' current offer weights.
    pub rotation: std::sync::Arc<rotation::Rotation>,
}

impl TrafficState {
    /// State with its metrics registered in `registry` (or kept apart when a metric
    /// of the same name is there already, as in tests that build several trackers).
    pub fn new(registry: &Registry) -> TrafficState {
        TrafficState {
            rotation: Default::default(),
            rate: rate::RateState::default(),
            metrics: TrafficMetrics::register(registry).unwrap_or_else(|_| {
                TrafficMetrics::register(&Registry::new()).expect("a fresh registry takes them")
            }),
        }
    }

    /// Assess a visit that is about to become a click at `now_ms`: every signal,
    /// GeoIP and the device. Counts the click in the per-IP window.
    pub fn assess(&self, config: &TrafficConfig, visit: &Visit, now_ms: u64) -> ClickTraits {
        let ua = visit.user_agent.as_deref();
        let parsed = signals::parse_agent(ua);
        let mut quality = signals::header_quality(
            ua,
            &parsed,
            &visit.signals,
            &config.bot_user_agents,
            config.require_accept_language,
        );
        let ip = visit
            .ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = ip {
            if config.datacenter.contains(ip) {
                quality.add(Reason::Datacenter);
            }
        }
        if let Some(text) = visit.ip.as_deref() {
            let verdict = self.rate.observe(
                text,
                ua.unwrap_or(""),
                now_ms,
                config.rate_window.as_millis() as u64,
                config.rate_max_clicks,
                config.min_click_interval.as_millis() as u64,
            );
            if verdict.over_rate {
                quality.add(Reason::Rate);
            }
            if verdict.too_fast {
                quality.add(Reason::TooFast);
            }
        }
        let location = match (&config.geoip, ip) {
            (Some(db), Some(ip)) => db.locate(ip),
            _ => geoip::Location::default(),
        };
        ClickTraits {
            quality,
            country: location.country,
            region: location.region,
            language: visit.signals.primary_language(),
            device: signals::device(&parsed, &visit.signals),
        }
    }
}

/// The traffic metrics. Labels: configured ids and the fixed sets above.
pub struct TrafficMetrics {
    /// `clickstamp_click_quality_total{campaign, source, quality}`: recorded clicks
    /// by quality (`ok`, `flagged`).
    pub click_quality: IntCounterVec,
    /// `clickstamp_click_quality_reasons_total{campaign, reason}`: flagged clicks by
    /// reason (a click with two reasons counts under both).
    pub quality_reasons: IntCounterVec,
    /// `clickstamp_clicks_excluded_total{campaign, reason}`: clicks recorded as
    /// excluded from reports and relays.
    pub clicks_excluded: IntCounterVec,
    /// `clickstamp_relays_withheld_total{source, reason}`: conversions recorded
    /// but not relayed because their click is excluded.
    pub relays_withheld: IntCounterVec,
}

impl TrafficMetrics {
    fn register(registry: &Registry) -> prometheus::Result<TrafficMetrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        Ok(TrafficMetrics {
            click_quality: counter(
                "clickstamp_click_quality_total",
                "Clicks recorded, by campaign, traffic source and quality (ok, flagged).",
                &["campaign", "source", "quality"],
            )?,
            quality_reasons: counter(
                "clickstamp_click_quality_reasons_total",
                "Flagged clicks by campaign and reason.",
                &["campaign", "reason"],
            )?,
            clicks_excluded: counter(
                "clickstamp_clicks_excluded_total",
                "Clicks recorded but excluded from reports and relays, by campaign and reason.",
                &["campaign", "reason"],
            )?,
            relays_withheld: counter(
                "clickstamp_relays_withheld_total",
                "Conversions recorded but not relayed because their click is excluded, by traffic source and reason.",
                &["source", "reason"],
            )?,
        })
    }
}

impl crate::tracker::Pinned<'_> {
    /// The relay of a conversion of `click`, unless the click is excluded: then the
    /// conversion is recorded but not relayed, and the withheld relay is counted
    /// (`clickstamp_relays_withheld_total`) and logged with the reason.
    pub fn withhold_relay(
        &self,
        click: &crate::store::StoredClick,
        source_id: &str,
        relay_url: Option<String>,
    ) -> Option<String> {
        let Some(reason) = click.profile.excluded.as_deref() else {
            return relay_url;
        };
        // Only fixed reasons become a label; anything else stored is `other`.
        let label = match reason {
            EXCLUDED_FOR_QUALITY | "test" => reason,
            _ => "other",
        };
        self.traffic
            .metrics
            .relays_withheld
            .with_label_values(&[source_id, label])
            .inc();
        tracing::info!(click_id = %click.click_id, source = source_id, reason, "conversion of an excluded click: recorded, not relayed");
        None
    }
}

impl crate::tracker::Pinned<'_> {
    /// Count a recorded click's quality, its reasons and its exclusion.
    pub fn count_quality(&self, campaign: usize, profile: &crate::store::ClickProfile) {
        let c = &self.config.campaigns[campaign];
        let source = &self.config.sources[c.source].id;
        let m = &self.traffic.metrics;
        let label = if profile.quality == "flagged" {
            "flagged"
        } else {
            "ok"
        };
        m.click_quality
            .with_label_values(&[&c.id, source, label])
            .inc();
        for reason in Reason::ALL {
            // The stored text is ours, but match names rather than trust it as a label.
            if profile
                .quality_reasons
                .split(',')
                .any(|r| r == reason.name())
            {
                m.quality_reasons
                    .with_label_values(&[&c.id, reason.name()])
                    .inc();
            }
        }
        if let Some(reason) = profile.excluded.as_deref() {
            let label = match reason {
                EXCLUDED_FOR_QUALITY | "test" => reason,
                _ => "other",
            };
            m.clicks_excluded.with_label_values(&[&c.id, label]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_a_fixed_order() {
        let mut q = Quality::OK;
        assert_eq!((q.label(), q.reasons_text().as_str()), ("ok", ""));
        q.add(Reason::TooFast);
        q.add(Reason::BotUserAgent);
        q.add(Reason::BotUserAgent);
        assert_eq!(q.label(), "flagged");
        assert_eq!(q.reasons_text(), "bot_user_agent,too_fast");
        let names: Vec<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), 8);
    }
}
