//! The `TrafficSource` extension point: where the paid click came from.

use crate::query::first_value;
use std::fmt;

/// What a traffic source tells us on the landing URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LandingParams {
    /// The source's own click ID (relayed back in its postback).
    pub source_click_id: Option<String>,
    /// Cost of this click as the source reported it, if it does.
    pub cost: Option<f64>,
    /// Sub IDs (zone, placement, creative, ...), in configured order: sub1..subN.
    pub sub_ids: Vec<Option<String>>,
}

/// A traffic source (PropellerAds, ExoClick, ... or one described in the config).
pub trait TrafficSource: Send + Sync + fmt::Debug {
    /// The plugin kind. Stable: it names the plugin in configs and logs.
    fn kind(&self) -> &str;

    /// Read the source's click ID, cost and sub IDs from the decoded landing query.
    ///
    /// Guarantees: never fails; a missing or unparsable value is `None`; a cost that is
    /// negative, NaN or infinite is `None`.
    fn landing_params(&self, query: &[(String, String)]) -> LandingParams;
}

/// A source whose landing URL carries its click ID, cost and sub IDs in named query
/// parameters.
#[derive(Debug, Clone)]
pub struct ParamSource {
    kind: String,
    click_id_params: Vec<String>,
    cost_param: Option<String>,
    sub_id_params: Vec<String>,
}

impl ParamSource {
    /// A source of `kind`. The first present of `click_id_params` wins (Google Ads sends
    /// one of `gclid`, `gbraid`, `wbraid`).
    pub fn new(
        kind: impl Into<String>,
        click_id_params: Vec<String>,
        cost_param: Option<String>,
        sub_id_params: Vec<String>,
    ) -> Self {
        ParamSource {
            kind: kind.into(),
            click_id_params,
            cost_param,
            sub_id_params,
        }
    }
}

/// Parse a cost value; refuses negatives, NaN and infinities.
pub fn parse_cost(raw: &str) -> Option<f64> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|c| c.is_finite() && *c >= 0.0)
}

impl TrafficSource for ParamSource {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn landing_params(&self, query: &[(String, String)]) -> LandingParams {
        let non_empty = |name: &str| {
            first_value(query, name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        LandingParams {
            source_click_id: self.click_id_params.iter().find_map(|p| non_empty(p)),
            cost: self
                .cost_param
                .as_deref()
                .and_then(|p| first_value(query, p))
                .and_then(parse_cost),
            sub_ids: self.sub_id_params.iter().map(|p| non_empty(p)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_query;

    #[test]
    fn reads_click_id_cost_and_subs() {
        let src = ParamSource::new(
            "generic",
            vec!["tsid".into()],
            Some("cost".into()),
            vec!["zone".into(), "creative".into()],
        );
        let p = src.landing_params(&parse_query("tsid=ABC&cost=0.02&zone=42"));
        assert_eq!(p.source_click_id.as_deref(), Some("ABC"));
        assert_eq!(p.cost, Some(0.02));
        assert_eq!(p.sub_ids, vec![Some("42".to_string()), None]);
    }

    #[test]
    fn bad_costs_are_none() {
        for bad in ["-1", "NaN", "inf", "abc", ""] {
            assert_eq!(parse_cost(bad), None, "{bad}");
        }
    }
}
