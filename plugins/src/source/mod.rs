//! The `TrafficSource` extension point: where the paid click came from, and where its
//! conversion is relayed.
//!
//! Every built-in is a [`SourceSpec`] (one module each below) run by [`SpecSource`]; a
//! source described in the config is the same thing ([`CustomSource`]).

mod exoclick;
mod google;
pub mod meta;
mod mgid;
mod microsoft;
mod outbrain;
mod popads;
mod propellerads;
mod relay;
mod richads;
mod spec;
mod taboola;
mod tiktok;
mod trafficstars;
mod zeropark;

pub use relay::{format_amount, RelayConversion, RelayField, RenderError, TimeFormat};
pub use spec::{CustomSource, CustomSourceSpec, SourceSpec, SourceToken, SpecSource};

use crate::query::first_value;
use crate::template::{CaseRule, Template, TokenStyle};
use std::fmt;

/// What a traffic source tells us on the landing URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LandingParams {
    /// The source's own click ID (relayed back in its postback).
    pub source_click_id: Option<String>,
    /// Which landing parameter carried it (Google Ads: `gclid`, `gbraid` or `wbraid`).
    pub source_click_id_param: Option<String>,
    /// Cost of this click as the source reported it, if it does.
    pub cost: Option<f64>,
    /// Sub IDs (zone, placement, creative, ...), in configured order: sub1..subN.
    pub sub_ids: Vec<Option<String>>,
}

/// A traffic source (PropellerAds, ExoClick, ... or one described in the config).
///
/// Implementations are pure: no I/O, no clock, no randomness.
pub trait TrafficSource: Send + Sync + fmt::Debug {
    /// The plugin kind. Stable: it names the plugin in configs and logs.
    fn kind(&self) -> &str;

    /// Read the source's click ID, cost and sub IDs from the decoded landing query.
    ///
    /// Guarantees: never fails; a missing or unparsable value is `None`; a cost that is
    /// negative, NaN or infinite is `None`; a value still holding a macro (the source
    /// did not fill its own token) is `None`.
    fn landing_params(&self, query: &[(String, String)]) -> LandingParams;

    /// The delimiter style of the source's postback tokens.
    fn token_style(&self) -> TokenStyle {
        TokenStyle::Brace
    }

    /// Whether the source's token names are case-sensitive.
    fn token_case(&self) -> CaseRule {
        CaseRule::Insensitive
    }

    /// The tokens this source's postback templates may hold, and what fills each.
    /// The default is the generic vocabulary ([`RelayField::generic_tokens`]).
    fn postback_tokens(&self) -> Vec<SourceToken> {
        RelayField::generic_tokens()
    }

    /// The configured postback template, if any (operators paste the source's own).
    fn postback_template(&self) -> Option<&str> {
        None
    }

    /// Whether status changes (approved → rejected, ...) are relayed to this source,
    /// not only the first conversion.
    fn relays_status_changes(&self) -> bool {
        false
    }

    /// Landing-URL parameters with the source's own macros, for the campaign URL the
    /// operator pastes into the source (`subid=${SUBID}`).
    fn landing_tokens(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// `landing_url` with [`TrafficSource::landing_tokens`] appended, macros raw.
    fn campaign_url(&self, landing_url: &str) -> String {
        let mut url = landing_url.to_string();
        for (param, token) in self.landing_tokens() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&param);
            url.push('=');
            url.push_str(&token);
        }
        url
    }

    /// Fill `template` (pasted verbatim from the source) with `conv`.
    ///
    /// Guarantees: only tokens in the source's style are touched; each value is
    /// percent-encoded exactly once for the part of the URL it lands in
    /// ([`Template::render_url`]); an unknown token of the source's style, a template
    /// that is not an absolute http(s) URL, a conversion without the source click ID
    /// the template needs, a token in the host, or a path value that is `.`, `..` or
    /// empty is an error, never a request with a literal macro in it or one that goes
    /// to another host or path than the template's.
    fn render_postback(
        &self,
        template: &str,
        conv: &RelayConversion,
    ) -> Result<String, RenderError> {
        render_with_tokens(
            template,
            self.token_style(),
            self.token_case(),
            &self.postback_tokens(),
            conv,
        )
    }
}

/// The shared renderer behind [`TrafficSource::render_postback`].
pub fn render_with_tokens(
    template: &str,
    style: TokenStyle,
    case: CaseRule,
    tokens: &[SourceToken],
    conv: &RelayConversion,
) -> Result<String, RenderError> {
    if !crate::network::is_absolute_http_url(template) {
        return Err(RenderError::NotHttpUrl(template.to_string()));
    }
    let parsed = Template::parse(template, style);
    let mut failure: Option<RenderError> = None;
    let rendered = parsed.render_url(|name| {
        let Some(tok) = lookup_token(tokens, case, name) else {
            failure.get_or_insert(RenderError::UnknownToken {
                token: style.wrap(name),
                known: tokens
                    .iter()
                    .map(|t| style.wrap(&t.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
            return None;
        };
        match conv.value_of(&tok.field) {
            Some(v) => Some(v),
            None if tok.field.is_source_click_id() => {
                failure.get_or_insert(RenderError::MissingSourceClickId {
                    token: style.wrap(name),
                });
                None
            }
            None => Some(String::new()),
        }
    });
    match (failure, rendered) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(e.into()),
        (None, Ok(r)) => Ok(r.text),
    }
}

/// The token of `tokens` named `name` under `case`; an exact match wins over a
/// case-insensitive one.
pub fn lookup_token<'a>(
    tokens: &'a [SourceToken],
    case: CaseRule,
    name: &str,
) -> Option<&'a SourceToken> {
    tokens
        .iter()
        .find(|t| t.name == name)
        .or_else(|| tokens.iter().find(|t| case.matches(&t.name, name)))
}

/// Parse a cost value; refuses negatives, NaN and infinities.
pub fn parse_cost(raw: &str) -> Option<f64> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|c| c.is_finite() && *c >= 0.0)
}

/// Read landing params by parameter names: the shared logic of every source.
pub fn read_landing_params(
    query: &[(String, String)],
    click_id_params: &[String],
    cost_param: Option<&str>,
    sub_id_params: &[String],
) -> LandingParams {
    let filled = |name: &str| {
        first_value(query, name)
            .map(str::trim)
            .filter(|v| !v.is_empty() && crate::template::find_unreplaced_macro(v).is_none())
            .map(str::to_owned)
    };
    let click = click_id_params
        .iter()
        .find_map(|p| filled(p).map(|v| (p.clone(), v)));
    LandingParams {
        source_click_id_param: click.as_ref().map(|(p, _)| p.clone()),
        source_click_id: click.map(|(_, v)| v),
        cost: cost_param
            .and_then(|p| first_value(query, p))
            .and_then(parse_cost),
        sub_ids: sub_id_params.iter().map(|p| filled(p)).collect(),
    }
}

/// A source whose landing URL carries its click ID, cost and sub IDs in named query
/// parameters, with the generic `{x}` postback vocabulary. A thin wrapper over
/// [`SpecSource`].
#[derive(Debug, Clone)]
pub struct ParamSource(SpecSource);

impl ParamSource {
    /// A source of `kind`. The first present of `click_id_params` wins (Google Ads sends
    /// one of `gclid`, `gbraid`, `wbraid`).
    pub fn new(
        kind: impl Into<String>,
        click_id_params: Vec<String>,
        cost_param: Option<String>,
        sub_id_params: Vec<String>,
    ) -> Self {
        let mut spec = SourceSpec::new(kind, click_id_params, TokenStyle::Brace);
        spec.cost_param = cost_param;
        spec.sub_id_params = sub_id_params;
        ParamSource(SpecSource::from_trusted(spec))
    }
}

impl TrafficSource for ParamSource {
    fn kind(&self) -> &str {
        self.0.kind()
    }
    fn landing_params(&self, query: &[(String, String)]) -> LandingParams {
        self.0.landing_params(query)
    }
    fn token_style(&self) -> TokenStyle {
        self.0.token_style()
    }
    fn token_case(&self) -> CaseRule {
        self.0.token_case()
    }
    fn postback_tokens(&self) -> Vec<SourceToken> {
        self.0.postback_tokens()
    }
}

/// The built-in traffic-source kinds.
pub const BUILTIN_SOURCES: &[&str] = &[
    "propellerads",
    "exoclick",
    "zeropark",
    "mgid",
    "taboola",
    "outbrain",
    "richads",
    "trafficstars",
    "popads",
    "google",
    "microsoft",
    "meta",
    "tiktok",
];

/// The built-in traffic-source kinds, in [`BUILTIN_SOURCES`] order.
pub fn builtin_source_kinds() -> impl Iterator<Item = &'static str> {
    BUILTIN_SOURCES.iter().copied()
}

/// The spec of built-in source `kind` (a few aliases accepted: `google_ads`, `bing`,
/// `microsoft_ads`, `facebook`): start from it to override defaults from the config.
pub fn builtin_source_spec(kind: &str) -> Option<SourceSpec> {
    Some(match kind {
        "propellerads" => propellerads::spec(),
        "exoclick" => exoclick::spec(),
        "zeropark" => zeropark::spec(),
        "mgid" => mgid::spec(),
        "taboola" => taboola::spec(),
        "outbrain" => outbrain::spec(),
        "richads" => richads::spec(),
        "trafficstars" => trafficstars::spec(),
        "popads" => popads::spec(),
        "google" | "google_ads" => google::spec(),
        "microsoft" | "microsoft_ads" | "bing" => microsoft::spec(),
        "meta" | "facebook" => meta::spec(),
        "tiktok" => tiktok::spec(),
        _ => return None,
    })
}

/// The built-in traffic source of `kind`, if there is one.
pub fn builtin_source(kind: &str) -> Option<Box<dyn TrafficSource>> {
    builtin_source_spec(kind)
        .map(|s| Box::new(SpecSource::from_trusted(s)) as Box<dyn TrafficSource>)
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
        assert_eq!(p.source_click_id_param.as_deref(), Some("tsid"));
        assert_eq!(p.cost, Some(0.02));
        assert_eq!(p.sub_ids, vec![Some("42".to_string()), None]);
    }

    #[test]
    fn unfilled_landing_macros_are_none() {
        let src = builtin_source("propellerads").unwrap();
        let p = src.landing_params(&parse_query("subid=%24%7BSUBID%7D&zoneid=7"));
        assert_eq!(p.source_click_id, None);
    }

    #[test]
    fn bad_costs_are_none() {
        for bad in ["-1", "NaN", "inf", "abc", ""] {
            assert_eq!(parse_cost(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_builtin_spec_is_valid() {
        for kind in BUILTIN_SOURCES {
            let spec = builtin_source_spec(kind).unwrap();
            assert_eq!(spec.kind, *kind);
            SpecSource::new(spec).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
        assert!(builtin_source("nope").is_none());
    }

    #[test]
    fn propellerads_renders_and_refuses_unknown_tokens() {
        let src = builtin_source("propellerads").unwrap();
        let mut conv = RelayConversion::new("c1", "conversion", "k1");
        conv.source_click_id = Some("v 1&x".into());
        conv.payout = Some(2.5);
        let t = "https://ad.example/conversion.php?aid=1&visitor_id=${SUBID}&payout=${PAYOUT}";
        assert_eq!(
            src.render_postback(t, &conv).unwrap(),
            "https://ad.example/conversion.php?aid=1&visitor_id=v%201%26x&payout=2.5"
        );
        let bad = "https://ad.example/c?v=${SUBID}&z=${NOPE}";
        assert_eq!(
            src.render_postback(bad, &conv).unwrap_err().reason(),
            "unknown_token"
        );
        conv.source_click_id = None;
        assert_eq!(
            src.render_postback(t, &conv).unwrap_err().reason(),
            "missing_source_click_id"
        );
    }

    #[test]
    fn a_relayed_value_never_changes_the_relays_path() {
        let src = builtin_source("zeropark").unwrap();
        let style = src.token_style();
        let token = src
            .postback_tokens()
            .into_iter()
            .find(|t| t.field.is_source_click_id())
            .unwrap();
        let template = format!("https://src.example/pb/{}/x?e=1", style.wrap(&token.name));
        let mut conv = RelayConversion::new("c1", "conversion", "k1");
        let mut render = |id: &str| {
            conv.source_click_id = Some(id.to_string());
            src.render_postback(&template, &conv)
        };
        assert_eq!(render("a/b").unwrap(), "https://src.example/pb/a%2Fb/x?e=1");
        assert_eq!(
            render("a\\b").unwrap(),
            "https://src.example/pb/a%5Cb/x?e=1"
        );
        assert_eq!(
            render("%2e%2e").unwrap(),
            "https://src.example/pb/%252e%252e/x?e=1"
        );
        assert_eq!(
            render("?x#y").unwrap(),
            "https://src.example/pb/%3Fx%23y/x?e=1"
        );
        for dots in ["..", "."] {
            let err = render(dots).unwrap_err();
            assert_eq!(err.reason(), "dot_segment_value", "{dots}");
            assert!(err.to_string().contains("dot segment"), "{err}");
        }
    }

    #[test]
    fn a_source_template_with_a_token_in_the_host_is_refused() {
        let mut spec = builtin_source_spec("zeropark").unwrap();
        spec.postback_template = Some("https://{cid}.src.example/pb".into());
        let err = SpecSource::new(spec.clone()).unwrap_err();
        assert!(err.to_string().contains("scheme or host"), "{err}");
        spec.postback_template = Some("https://src.example/pb/{cid}".into());
        assert!(SpecSource::new(spec).is_ok());
    }
}
