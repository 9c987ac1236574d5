//! `[traffic]` and `campaigns[].quality`: traffic-quality signals and what a campaign
//! does with a flagged click (docs/traffic-rules.md). Raw TOML → validated here, so
//! `validate/` only calls in.

use super::validate::parse_duration;
use super::ConfigError;
use crate::traffic::cidr::CidrSet;
use crate::traffic::geoip::GeoIp;
use crate::traffic::signals::SHIPPED_BOT_USER_AGENTS;
use crate::traffic::{BotList, QualityPolicy};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `[traffic]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraffic {
    /// More user-agent fragments that mark a bot, added to the shipped list.
    #[serde(default)]
    pub bot_user_agents: Vec<String>,
    /// Use the list shipped with clickstamp (default true).
    pub shipped_bot_list: Option<bool>,
    /// Data-centre / hosting networks written inline (`203.0.113.0/24`).
    #[serde(default)]
    pub datacenter_networks: Vec<String>,
    /// Files listing such networks, one a line (relative to the config file).
    #[serde(default)]
    pub datacenter_network_files: Vec<String>,
    /// Flag a click whose request has no `Accept-Language` (default true).
    pub require_accept_language: Option<bool>,
    /// The per-IP click window (default `60s`).
    pub rate_window: Option<String>,
    /// Clicks one IP may make per window before further ones are flagged (default
    /// 60; 0 turns the check off).
    pub rate_max_clicks: Option<u32>,
    /// The shortest time between two clicks of one visitor (IP and user agent) that a
    /// person could manage (default `1s`; `0s` turns the check off).
    pub min_click_interval: Option<String>,
    /// A MaxMind-format country or city database (`.mmdb`).
    pub geoip_database: Option<String>,
    /// How often optimising paths' offer weights are recomputed (default `60s`).
    pub optimise_interval: Option<String>,
    /// The share every offer of an optimising path keeps (default 0.05).
    pub optimise_floor: Option<f64>,
    /// Clicks each offer needs before its path's weights move (default 100).
    pub optimise_min_clicks: Option<u64>,
}

/// `[traffic]`, validated.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// The bot list: the shipped one (unless turned off) plus `bot_user_agents`.
    pub bot_user_agents: Arc<BotList>,
    /// Data-centre networks, inline and from the files.
    pub datacenter: Arc<CidrSet>,
    pub require_accept_language: bool,
    pub rate_window: Duration,
    /// 0: no per-IP limit.
    pub rate_max_clicks: u32,
    /// Zero: no check.
    pub min_click_interval: Duration,
    /// The open GeoIP database, when configured.
    pub geoip: Option<Arc<GeoIp>>,
    pub optimise_interval: Duration,
    /// In `[0, 0.5]`.
    pub optimise_floor: f64,
    pub optimise_min_clicks: u64,
}

const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);
/// A person opens a landing page a few times a minute at most; a shared address
/// (office, carrier NAT) more, hence the headroom.
const DEFAULT_RATE_MAX_CLICKS: u32 = 60;
const DEFAULT_MIN_CLICK_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_OPTIMISE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_OPTIMISE_FLOOR: f64 = 0.05;
/// At 2 % conversion, 100 clicks hold two conversions: less says nothing.
const DEFAULT_OPTIMISE_MIN_CLICKS: u64 = 100;

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            bot_user_agents: Arc::new(BotList::new(SHIPPED_BOT_USER_AGENTS, &[])),
            datacenter: Arc::new(CidrSet::default()),
            require_accept_language: true,
            rate_window: DEFAULT_RATE_WINDOW,
            rate_max_clicks: DEFAULT_RATE_MAX_CLICKS,
            min_click_interval: DEFAULT_MIN_CLICK_INTERVAL,
            geoip: None,
            optimise_interval: DEFAULT_OPTIMISE_INTERVAL,
            optimise_floor: DEFAULT_OPTIMISE_FLOOR,
            optimise_min_clicks: DEFAULT_OPTIMISE_MIN_CLICKS,
        }
    }
}

fn problem(
    errors: &mut Vec<ConfigError>,
    key: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) {
    errors.push(ConfigError {
        key: key.into(),
        problem: problem.into(),
        fix: fix.into(),
    });
}

fn duration(
    key: &str,
    raw: Option<&str>,
    default: Duration,
    allow_zero: bool,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    let Some(text) = raw else {
        return default;
    };
    if allow_zero
        && text
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            == "0"
    {
        return Duration::ZERO;
    }
    parse_duration(text).unwrap_or_else(|| {
        problem(
            errors,
            key,
            format!("{text:?} is not a duration"),
            "write a duration like \"60s\", \"500ms\" or \"5m\"",
        );
        default
    })
}

/// Validate `[traffic]`; list files and the GeoIP database are read here, so a
/// reload picks up refreshed ones and a broken one is refused before it is live.
pub(super) fn traffic(
    raw: &RawTraffic,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> TrafficConfig {
    for (i, fragment) in raw.bot_user_agents.iter().enumerate() {
        if fragment.trim().len() < 3 {
            problem(
                errors,
                format!("traffic.bot_user_agents[{i}]"),
                format!("{fragment:?} is too short: it would flag ordinary browsers"),
                "give a distinctive part of the bot's user agent, e.g. \"acmemonitor/\"",
            );
        }
    }
    let shipped = if raw.shipped_bot_list.unwrap_or(true) {
        SHIPPED_BOT_USER_AGENTS
    } else {
        ""
    };
    let mut datacenter = CidrSet::default();
    for (i, network) in raw.datacenter_networks.iter().enumerate() {
        if let Err(e) = datacenter.insert(network) {
            problem(
                errors,
                format!("traffic.datacenter_networks[{i}]"),
                e.to_string(),
                "write networks like \"203.0.113.0/24\" or \"2001:db8::/32\"",
            );
        }
    }
    for (i, file) in raw.datacenter_network_files.iter().enumerate() {
        let key = format!("traffic.datacenter_network_files[{i}]");
        let path = base_dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Err((line, e)) = datacenter.insert_list(&text) {
                    problem(
                        errors,
                        key,
                        format!("{} line {line}: {e}", path.display()),
                        "list one network a line (# starts a comment); see docs/traffic-rules.md for where cloud providers publish theirs",
                    );
                }
            }
            Err(e) => problem(
                errors,
                key,
                format!("cannot read {}: {e}", path.display()),
                "point it at a readable file (relative paths start at the config file's directory)",
            ),
        }
    }
    let geoip = raw.geoip_database.as_ref().and_then(|file| {
        let path = base_dir.join(file);
        match GeoIp::open(&path) {
            Ok(db) => Some(Arc::new(db)),
            Err(e) => {
                problem(
                    errors,
                    "traffic.geoip_database",
                    format!("cannot read {} as a MaxMind database: {e}", path.display()),
                    "point it at a GeoLite2 or DB-IP Lite .mmdb file, or leave the key out",
                );
                None
            }
        }
    });
    let optimise_floor = raw.optimise_floor.unwrap_or(DEFAULT_OPTIMISE_FLOOR);
    if !(0.0..=0.5).contains(&optimise_floor) {
        problem(
            errors,
            "traffic.optimise_floor",
            format!("{optimise_floor} is not a share between 0 and 0.5"),
            "use the share each offer keeps, e.g. 0.05 for 5 %",
        );
    }
    TrafficConfig {
        optimise_interval: duration(
            "traffic.optimise_interval",
            raw.optimise_interval.as_deref(),
            DEFAULT_OPTIMISE_INTERVAL,
            false,
            errors,
        ),
        optimise_floor: optimise_floor.clamp(0.0, 0.5),
        optimise_min_clicks: raw
            .optimise_min_clicks
            .unwrap_or(DEFAULT_OPTIMISE_MIN_CLICKS),
        bot_user_agents: Arc::new(BotList::new(shipped, &raw.bot_user_agents)),
        datacenter: Arc::new(datacenter),
        require_accept_language: raw.require_accept_language.unwrap_or(true),
        rate_window: duration(
            "traffic.rate_window",
            raw.rate_window.as_deref(),
            DEFAULT_RATE_WINDOW,
            false,
            errors,
        ),
        rate_max_clicks: raw.rate_max_clicks.unwrap_or(DEFAULT_RATE_MAX_CLICKS),
        min_click_interval: duration(
            "traffic.min_click_interval",
            raw.min_click_interval.as_deref(),
            DEFAULT_MIN_CLICK_INTERVAL,
            true,
            errors,
        ),
        geoip,
    }
}

/// `campaigns[i].quality`: `flag` (default) or `exclude`.
pub(super) fn quality_policy(
    i: usize,
    raw: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> QualityPolicy {
    match raw.map(str::trim) {
        None | Some("flag") => QualityPolicy::Flag,
        Some("exclude") => QualityPolicy::Exclude,
        Some(other) => {
            problem(
                errors,
                format!("campaigns[{i}].quality"),
                format!("{other:?} is not a quality policy"),
                "use \"flag\" (record flagged clicks as such) or \"exclude\" (also keep them out of reports and relays)",
            );
            QualityPolicy::Flag
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_key() {
        let mut errors = Vec::new();
        let t = traffic(&RawTraffic::default(), Path::new("."), &mut errors);
        assert!(errors.is_empty());
        assert!(t.bot_user_agents.matches("curl/8"));
        assert_eq!(
            (t.rate_max_clicks, t.min_click_interval),
            (60, Duration::from_secs(1))
        );
        let raw = RawTraffic {
            bot_user_agents: vec!["ab".into()],
            datacenter_networks: vec!["10.0.0.0/8".into(), "10.0.0.0/99".into()],
            datacenter_network_files: vec!["/nonexistent/ranges.txt".into()],
            rate_window: Some("soon".into()),
            min_click_interval: Some("0s".into()),
            geoip_database: Some("/nonexistent/db.mmdb".into()),
            ..Default::default()
        };
        let t = traffic(&raw, Path::new("."), &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "traffic.bot_user_agents[0]",
                "traffic.datacenter_networks[1]",
                "traffic.datacenter_network_files[0]",
                "traffic.geoip_database",
                "traffic.rate_window",
            ]
        );
        assert_eq!(t.min_click_interval, Duration::ZERO);
        assert!(t.datacenter.contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn quality_policies() {
        let mut errors = Vec::new();
        assert_eq!(quality_policy(0, None, &mut errors), QualityPolicy::Flag);
        assert_eq!(
            quality_policy(0, Some("exclude"), &mut errors),
            QualityPolicy::Exclude
        );
        assert!(errors.is_empty());
        quality_policy(3, Some("drop"), &mut errors);
        assert_eq!(errors[0].key, "campaigns[3].quality");
    }
}
