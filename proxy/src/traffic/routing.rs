//! Routing rules: which lander set and offer set a visitor gets (docs/traffic-rules.md).
//! Pure: a rule is matched against what the tracker already knows of the visit, and a
//! set is picked from by weight; nothing here does I/O.

use super::ClickTraits;

/// The conditions of a rule; an empty list (or `None`) matches every visitor. Values
/// are stored as the visit's are compared: countries and regions uppercase, the rest
/// lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub country: Vec<String>,
    pub region: Vec<String>,
    pub device: Vec<String>,
    pub os: Vec<String>,
    pub browser: Vec<String>,
    pub language: Vec<String>,
    pub referrer_host: Vec<String>,
    /// Landing query parameters and the values each may have (`*`: any value, as
    /// long as the parameter is there).
    pub query: Vec<(String, Vec<String>)>,
    /// Local hours `[from, to)` in the campaign's time zone; `from > to` wraps past
    /// midnight (`22-06`).
    pub hours: Option<(u8, u8)>,
    /// Only flagged (`Some(true)`) or only unflagged (`Some(false)`) visitors.
    pub flagged: Option<bool>,
}

/// What a visit offers to the conditions.
#[derive(Debug, Clone, Copy)]
pub struct VisitFacts<'a> {
    pub traits: &'a ClickTraits,
    /// The referrer's host, lowercase, or empty.
    pub referrer_host: &'a str,
    pub query: &'a [(String, String)],
    /// The hour (0..24) in the campaign's time zone.
    pub local_hour: u8,
}

fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v == value)
}

fn hour_within((from, to): (u8, u8), hour: u8) -> bool {
    if from <= to {
        (from..to).contains(&hour)
    } else {
        hour >= from || hour < to
    }
}

impl Conditions {
    /// Whether the visit meets every condition.
    pub fn matches(&self, v: &VisitFacts<'_>) -> bool {
        let t = v.traits;
        listed(&self.country, &t.country)
            && listed(&self.region, &t.region)
            && listed(&self.device, t.device.device)
            && listed(&self.os, t.device.os)
            && listed(&self.browser, t.device.browser)
            && listed(&self.language, &t.language)
            && listed(&self.referrer_host, v.referrer_host)
            && self.query.iter().all(|(key, allowed)| {
                v.query
                    .iter()
                    .any(|(k, value)| k == key && allowed.iter().any(|a| a == "*" || a == value))
            })
            && self.hours.is_none_or(|h| hour_within(h, v.local_hour))
            && self.flagged.is_none_or(|f| f == t.quality.is_flagged())
    }

    /// Whether every visit `later` matches is matched by `self` too: a rule after
    /// one that covers it can never be reached.
    pub fn covers(&self, later: &Conditions) -> bool {
        let list = |mine: &[String], theirs: &[String]| {
            mine.is_empty() || (!theirs.is_empty() && theirs.iter().all(|t| mine.contains(t)))
        };
        list(&self.country, &later.country)
            && list(&self.region, &later.region)
            && list(&self.device, &later.device)
            && list(&self.os, &later.os)
            && list(&self.browser, &later.browser)
            && list(&self.language, &later.language)
            && list(&self.referrer_host, &later.referrer_host)
            && self.query.iter().all(|(key, allowed)| {
                later.query.iter().any(|(k, theirs)| {
                    k == key
                        && (allowed.iter().any(|a| a == "*")
                            || (!theirs.iter().any(|t| t == "*")
                                && theirs.iter().all(|t| allowed.contains(t))))
                })
            })
            && match (self.hours, later.hours) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(mine), Some((from, to))) => {
                    let theirs: Vec<u8> = (0..24).filter(|h| hour_within((from, to), *h)).collect();
                    theirs.iter().all(|h| hour_within(mine, *h))
                }
            }
            && (self.flagged.is_none() || self.flagged == later.flagged)
    }
}

/// The host of a `Referer` header value, lowercase, without port; empty without one.
pub fn referrer_host(referrer: Option<&str>) -> String {
    let Some(r) = referrer else {
        return String::new();
    };
    let rest = r.split_once("://").map_or(r, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
        _ => host,
    };
    host.to_ascii_lowercase()
}

/// The hour of `now_ms` at `offset_min` minutes east of UTC.
pub fn local_hour(now_ms: u64, offset_min: i32) -> u8 {
    let local_ms = now_ms as i64 + i64::from(offset_min) * 60_000;
    (local_ms.div_euclid(3_600_000).rem_euclid(24)) as u8
}

/// Pick an index into `weights` with probability proportional to its weight, from
/// `ticket` (uniform in `0..total`); `None` when every weight is 0.
pub fn pick_by_weight(weights: &[u32], ticket: u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = ticket % total;
    for (i, w) in weights.iter().enumerate() {
        if ticket < u64::from(*w) {
            return Some(i);
        }
        ticket -= u64::from(*w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Device, Quality, Reason};

    fn traits(country: &str, device: &'static str) -> ClickTraits {
        ClickTraits {
            country: country.into(),
            device: Device {
                device,
                os: "android",
                browser: "chrome",
            },
            language: "de".into(),
            ..Default::default()
        }
    }

    fn facts<'a>(t: &'a ClickTraits, query: &'a [(String, String)], hour: u8) -> VisitFacts<'a> {
        VisitFacts {
            traits: t,
            referrer_host: "news.example",
            query,
            local_hour: hour,
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let rule = Conditions {
            country: vec!["DE".into(), "AT".into()],
            device: vec!["mobile".into()],
            query: vec![("zone".into(), vec!["42".into()])],
            hours: Some((22, 6)),
            ..Default::default()
        };
        let de_mobile = traits("DE", "mobile");
        let q = [("zone".to_string(), "42".to_string())];
        assert!(rule.matches(&facts(&de_mobile, &q, 23)));
        assert!(rule.matches(&facts(&de_mobile, &q, 5)));
        assert!(
            !rule.matches(&facts(&de_mobile, &q, 12)),
            "outside the hours"
        );
        assert!(!rule.matches(&facts(&de_mobile, &[], 23)), "no zone");
        assert!(!rule.matches(&facts(&traits("FR", "mobile"), &q, 23)));
        assert!(!rule.matches(&facts(&traits("DE", "desktop"), &q, 23)));
        assert!(Conditions::default().matches(&facts(&de_mobile, &[], 0)));
        let mut bot = traits("DE", "mobile");
        bot.quality.add(Reason::Datacenter);
        let flagged_only = Conditions {
            flagged: Some(true),
            ..Default::default()
        };
        assert!(flagged_only.matches(&facts(&bot, &[], 0)));
        assert!(!flagged_only.matches(&facts(&de_mobile, &[], 0)));
        assert_eq!(de_mobile.quality, Quality::OK);
    }

    #[test]
    fn a_broader_earlier_rule_covers_a_narrower_later_one() {
        let de = Conditions {
            country: vec!["DE".into()],
            ..Default::default()
        };
        let de_mobile = Conditions {
            country: vec!["DE".into()],
            device: vec!["mobile".into()],
            ..Default::default()
        };
        assert!(de.covers(&de_mobile));
        assert!(!de_mobile.covers(&de));
        assert!(Conditions::default().covers(&de));
        let night = Conditions {
            hours: Some((22, 6)),
            ..Default::default()
        };
        let late = Conditions {
            hours: Some((23, 2)),
            ..Default::default()
        };
        assert!(night.covers(&late) && !late.covers(&night));
        let any_zone = Conditions {
            query: vec![("zone".into(), vec!["*".into()])],
            ..Default::default()
        };
        let zone_42 = Conditions {
            query: vec![("zone".into(), vec!["42".into()])],
            ..Default::default()
        };
        assert!(any_zone.covers(&zone_42) && !zone_42.covers(&any_zone));
    }

    #[test]
    fn referrer_hosts_and_local_hours() {
        assert_eq!(
            referrer_host(Some("https://News.Example:8443/a?b")),
            "news.example"
        );
        assert_eq!(
            referrer_host(Some("http://user@host.example/")),
            "host.example"
        );
        assert_eq!(referrer_host(None), "");
        // 2024-01-01T23:30Z is 01:30 at +02:00.
        let t = 1_704_151_800_000;
        assert_eq!(local_hour(t, 0), 23);
        assert_eq!(local_hour(t, 120), 1);
        assert_eq!(local_hour(t, -300), 18);
    }

    #[test]
    fn weights_are_respected() {
        assert_eq!(pick_by_weight(&[0, 3], 2), Some(1));
        assert_eq!(pick_by_weight(&[0, 0], 2), None);
        let mut hits = [0u32; 2];
        for ticket in 0..4_000 {
            hits[pick_by_weight(&[1, 3], ticket).unwrap()] += 1;
        }
        assert_eq!(hits, [1_000, 3_000]);
    }
}
