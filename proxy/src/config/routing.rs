//! `campaigns[].routing`: ordered rules sending each visitor to a lander set and an
//! offer set, rotation by weight and the bandit (docs/traffic-rules.md).
//!
//! ```toml
//! [campaigns.routing]
//! time_zone = "+02:00"
//! landers = [{ lander = "/", weight = 1 }]     # the default path's landers
//! optimise = "thompson"                        # the default path's offers
//!
//! [[campaigns.routing.rules]]
//! name = "de-mobile"
//! country = ["DE", "AT"]
//! device = ["mobile"]
//! landers = [{ lander = "/de-mobile.html" }]
//! offers = [{ offer = "o-de", weight = 2 }, { offer = "o-eu" }]
//! ```
//!
//! The default path is always there: the campaign's own `offers`, with the routing's
//! `landers` (or the page asked for). A rule without `landers` or `offers` takes the
//! default path's.

use super::raw::RawOfferRef;
use super::{ConfigError, Offer};
use crate::traffic::routing::Conditions;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `campaigns[].routing` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Fixed UTC offset that rules' `hours` are read in (default `Z`).
    pub time_zone: Option<String>,
    /// The default path's landers (paths below the campaign's).
    #[serde(default)]
    pub landers: Vec<RawLanderRef>,
    /// `thompson`: shift the default path's offer weights toward the best converting.
    pub optimise: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// A lander and its weight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLanderRef {
    pub lander: String,
    pub weight: Option<u32>,
}

/// One rule as written: conditions, then what it picks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    #[serde(default)]
    pub country: Vec<String>,
    #[serde(default)]
    pub region: Vec<String>,
    #[serde(default)]
    pub device: Vec<String>,
    #[serde(default)]
    pub os: Vec<String>,
    #[serde(default)]
    pub browser: Vec<String>,
    #[serde(default)]
    pub language: Vec<String>,
    #[serde(default)]
    pub referrer_host: Vec<String>,
    /// Landing query parameter → allowed values (`"*"`: any).
    #[serde(default)]
    pub query: BTreeMap<String, Vec<String>>,
    /// Local hours `"HH-HH"`, from inclusive to exclusive.
    pub hours: Option<String>,
    /// `flagged` or `ok`: only visitors of that quality.
    pub quality: Option<String>,
    #[serde(default)]
    pub landers: Vec<RawLanderRef>,
    #[serde(default)]
    pub offers: Vec<RawOfferRef>,
    pub optimise: Option<String>,
}

/// How a path's offer weights are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Optimise {
    /// The configured weights.
    #[default]
    Off,
    /// Thompson sampling over each offer's conversions per outbound click.
    Thompson,
}

/// A lander set and an offer set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    /// `default`, or the rule's name: recorded on the click (`clicks.route`), so `/go`
    /// picks from the offers of the path the visitor was routed to.
    pub name: String,
    /// `(path below the campaign, weight)`; empty: the page the visitor asked for.
    pub landers: Vec<(String, u32)>,
    /// `(index into Config::offers, weight)`.
    pub offers: Vec<(usize, u32)>,
    pub optimise: Optimise,
}

/// A rule: its conditions and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub when: Conditions,
    pub path: RoutePath,
}

/// A campaign's routing, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// Minutes east of UTC.
    pub time_zone_offset_min: i32,
    pub rules: Vec<Rule>,
    pub default_path: RoutePath,
}

impl Default for RoutePath {
    fn default() -> Self {
        RoutePath {
            name: "default".into(),
            landers: Vec::new(),
            offers: Vec::new(),
            optimise: Optimise::Off,
        }
    }
}

impl Routing {
    /// The path named `name` (a rule's, or the default).
    pub fn path(&self, name: &str) -> &RoutePath {
        self.rules
            .iter()
            .map(|r| &r.path)
            .find(|p| p.name == name)
            .unwrap_or(&self.default_path)
    }

    /// Every path, rules first.
    pub fn paths(&self) -> impl Iterator<Item = &RoutePath> {
        self.rules
            .iter()
            .map(|r| &r.path)
            .chain([&self.default_path])
    }
}

fn problem(
    errors: &mut Vec<ConfigError>,
    key: String,
    problem: impl Into<String>,
    fix: impl Into<String>,
) {
    errors.push(ConfigError {
        key,
        problem: problem.into(),
        fix: fix.into(),
    });
}

fn optimise(key: String, raw: Option<&str>, errors: &mut Vec<ConfigError>) -> Optimise {
    match raw {
        None | Some("off") | Some("none") => Optimise::Off,
        Some("thompson") => Optimise::Thompson,
        Some(other) => {
            problem(
                errors,
                key,
                format!("{other:?} is not an optimiser"),
                "use \"thompson\" or leave it out",
            );
            Optimise::Off
        }
    }
}

fn landers(key: &str, raw: &[RawLanderRef], errors: &mut Vec<ConfigError>) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for (j, l) in raw.iter().enumerate() {
        let path = l.lander.trim();
        if !path.starts_with('/') || path.contains("..") || path.contains(['?', '#', ' ', '\\']) {
            problem(
                errors,
                format!("{key}[{j}].lander"),
                format!("{path:?} is not a plain path below the campaign"),
                "write it like \"/v2/\" or \"/de.html\" (below the campaign's path)",
            );
            continue;
        }
        out.push((path.to_string(), l.weight.unwrap_or(1)));
    }
    if !out.is_empty() && out.iter().all(|(_, w)| *w == 0) {
        problem(
            errors,
            key.to_string(),
            "lander weights sum to 0",
            "give at least one lander a positive weight",
        );
    }
    out
}

fn offers(
    key: &str,
    raw: &[RawOfferRef],
    all: &[Offer],
    errors: &mut Vec<ConfigError>,
) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for (j, r) in raw.iter().enumerate() {
        match all.iter().position(|o| o.id == r.offer) {
            Some(o) => out.push((o, r.weight.unwrap_or(1))),
            None => {
                let known: Vec<&str> = all.iter().map(|o| o.id.as_str()).take(20).collect();
                problem(
                    errors,
                    format!("{key}[{j}].offer"),
                    format!("unknown offer \"{}\"", r.offer),
                    format!("use one of the configured offer ids ({})", known.join(", ")),
                );
            }
        }
    }
    if !out.is_empty() && out.iter().all(|(_, w)| *w == 0) {
        problem(
            errors,
            key.to_string(),
            "offer weights sum to 0",
            "give at least one offer a positive weight",
        );
    }
    out
}

fn hours(key: String, raw: &str, errors: &mut Vec<ConfigError>) -> Option<(u8, u8)> {
    let parsed = raw.split_once('-').and_then(|(a, b)| {
        let (a, b) = (a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?);
        (a < 24 && b <= 24 && a != b).then_some((a, b % 24))
    });
    if parsed.is_none() {
        problem(
            errors,
            key,
            format!("{raw:?} is not an hour range"),
            "write \"HH-HH\" in the routing's time zone, e.g. \"09-17\" or \"22-06\"",
        );
    }
    parsed
}

/// A fixed UTC offset: `Z`, `+02:00`, `-05:30`.
fn offset_minutes(text: &str) -> Option<i32> {
    let t = text.trim();
    if t == "Z" || t == "UTC" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m) = (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

/// Validate campaign `i`'s routing over its default `offers`.
pub(super) fn routing(
    i: usize,
    raw: Option<&RawRouting>,
    default_offers: &[(usize, u32)],
    all_offers: &[Offer],
    errors: &mut Vec<ConfigError>,
) -> Routing {
    let Some(raw) = raw else {
        return Routing {
            default_path: RoutePath {
                offers: default_offers.to_vec(),
                ..Default::default()
            },
            ..Default::default()
        };
    };
    let base = format!("campaigns[{i}].routing");
    let time_zone_offset_min = match raw.time_zone.as_deref() {
        None => 0,
        Some(tz) => offset_minutes(tz).unwrap_or_else(|| {
            problem(
                errors,
                format!("{base}.time_zone"),
                format!("{tz:?} is not a fixed UTC offset"),
                "write it like \"+02:00\", \"-05:30\" or \"Z\"",
            );
            0
        }),
    };
    let default_path = RoutePath {
        name: "default".into(),
        landers: landers(&format!("{base}.landers"), &raw.landers, errors),
        offers: default_offers.to_vec(),
        optimise: optimise(format!("{base}.optimise"), raw.optimise.as_deref(), errors),
    };
    let mut rules: Vec<Rule> = Vec::new();
    for (j, r) in raw.rules.iter().enumerate() {
        let key = format!("{base}.rules[{j}]");
        let name = r.name.trim().to_string();
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain || name == "default" || rules.iter().any(|x| x.path.name == name) {
            problem(
                errors,
                format!("{key}.name"),
                format!("{name:?} is not a unique rule name"),
                "name each rule with letters, digits, - or _ (not \"default\"), once per campaign",
            );
        }
        let upper = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_uppercase()).collect();
        let lower = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        let flagged = match r.quality.as_deref() {
            None => None,
            Some("flagged") => Some(true),
            Some("ok") => Some(false),
            Some(other) => {
                problem(
                    errors,
                    format!("{key}.quality"),
                    format!("{other:?} is not a quality"),
                    "use \"flagged\" or \"ok\"",
                );
                None
            }
        };
        let when = Conditions {
            country: upper(&r.country),
            region: upper(&r.region),
            device: lower(&r.device),
            os: lower(&r.os),
            browser: lower(&r.browser),
            language: lower(&r.language),
            referrer_host: lower(&r.referrer_host),
            query: r
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            hours: r
                .hours
                .as_deref()
                .and_then(|h| hours(format!("{key}.hours"), h, errors)),
            flagged,
        };
        let rule_landers = landers(&format!("{key}.landers"), &r.landers, errors);
        let rule_offers = offers(&format!("{key}.offers"), &r.offers, all_offers, errors);
        let path = RoutePath {
            name,
            landers: if r.landers.is_empty() {
                default_path.landers.clone()
            } else {
                rule_landers
            },
            offers: if r.offers.is_empty() {
                default_path.offers.clone()
            } else {
                rule_offers
            },
            optimise: optimise(format!("{key}.optimise"), r.optimise.as_deref(), errors),
        };
        if let Some((k, earlier)) = rules.iter().enumerate().find(|(_, e)| e.when.covers(&when)) {
            problem(
                errors,
                key.clone(),
                format!("rule \"{}\" is unreachable: rules[{k}] (\"{}\") matches every visitor it would", path.name, earlier.path.name),
                format!("move it above rules[{k}], narrow rules[{k}], or remove it"),
            );
        }
        rules.push(Rule { when, path });
    }
    Routing {
        time_zone_offset_min,
        rules,
        default_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawRouting {
        toml::from_str(toml_text).expect("valid routing TOML")
    }

    #[test]
    fn rules_take_the_default_path_where_they_say_nothing() {
        let mut errors = Vec::new();
        let r = routing(
            0,
            Some(&raw(r#"
time_zone = "+02:00"
landers = [{ lander = "/a.html" }, { lander = "/b.html", weight = 3 }]
[[rules]]
name = "de"
country = ["de"]
hours = "22-06"
"#)),
            &[(0, 1)],
            &[],
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(r.time_zone_offset_min, 120);
        assert_eq!(r.rules[0].when.country, ["DE"]);
        assert_eq!(r.rules[0].when.hours, Some((22, 6)));
        assert_eq!(r.rules[0].path.landers, r.default_path.landers);
        assert_eq!(r.path("de").offers, [(0, 1)]);
        assert_eq!(r.path("nope").name, "default");
    }

    #[test]
    fn unreachable_and_malformed_rules_name_their_key() {
        let mut errors = Vec::new();
        routing(
            2,
            Some(&raw(r#"
time_zone = "Paris"
[[rules]]
name = "de"
country = ["DE"]
[[rules]]
name = "de-mobile"
country = ["DE"]
device = ["mobile"]
hours = "25-3"
quality = "meh"
landers = [{ lander = "../x" }]
offers = [{ offer = "ghost" }]
"#)),
            &[(0, 1)],
            &[],
            &mut errors,
        );
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "campaigns[2].routing.time_zone",
                "campaigns[2].routing.rules[1].quality",
                "campaigns[2].routing.rules[1].hours",
                "campaigns[2].routing.rules[1].landers[0].lander",
                "campaigns[2].routing.rules[1].offers[0].offer",
                "campaigns[2].routing.rules[1]",
            ]
        );
        assert!(
            errors[5].problem.contains("unreachable"),
            "{}",
            errors[5].problem
        );
    }
}
