//! What every traffic source promises through the `TrafficSource` trait: the defaults a
//! plugin author gets by implementing only `kind` and `landing_params`, what the
//! built-in specs and `ParamSource` answer, the campaign URL an operator pastes into
//! the source, and how a relay template treats a value the conversion lacks.

use clickstamp_plugins::source::BUILTIN_SOURCES;
use clickstamp_plugins::{
    builtin_source, builtin_source_kinds, builtin_source_spec, CaseRule, LandingParams,
    ParamSource, RelayConversion, RelayField, SpecSource, TokenStyle, TrafficSource,
};

/// A source that implements only what the trait requires.
#[derive(Debug)]
struct Bare;

impl TrafficSource for Bare {
    fn kind(&self) -> &str {
        "bare"
    }
    fn landing_params(&self, _query: &[(String, String)]) -> LandingParams {
        LandingParams::default()
    }
}

fn names(tokens: &[clickstamp_plugins::SourceToken]) -> Vec<String> {
    tokens.iter().map(|t| t.name.clone()).collect()
}

/// The generic `{x}` vocabulary (the field names `docs/configuration.md` lists), written out here so
/// the defaults are checked against the documentation, not against themselves.
const GENERIC_VOCABULARY: &[&str] = &[
    "source_click_id",
    "click_id",
    "payout",
    "currency",
    "txid",
    "status",
    "event",
    "event_id",
    "cost",
    "timestamp",
    "timestamp_ms",
    "time_rfc3339",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
];

#[test]
fn a_source_implementing_only_the_required_methods_gets_the_documented_defaults() {
    let bare = Bare;
    assert_eq!(bare.token_style(), TokenStyle::Brace);
    assert_eq!(bare.token_case(), CaseRule::Insensitive);
    assert_eq!(
        names(&bare.postback_tokens()),
        GENERIC_VOCABULARY,
        "the generic vocabulary"
    );
    assert_eq!(bare.postback_template(), None);
    assert!(!bare.relays_status_changes());
    assert!(bare.landing_tokens().is_empty());
    assert_eq!(
        bare.campaign_url("https://t.example/lp?x=1"),
        "https://t.example/lp?x=1",
        "no landing tokens: the URL as given"
    );
    // The defaults render: the generic `{cid}` in another case still matches.
    let mut conv = RelayConversion::new("c1", "conversion", "k1");
    conv.source_click_id = Some("S1".into());
    let cid = RelayField::generic_tokens()
        .into_iter()
        .find(|t| t.field.is_source_click_id())
        .unwrap()
        .name;
    let template = format!("https://s.example/pb?c={{{}}}", cid.to_ascii_uppercase());
    assert_eq!(
        bare.render_postback(&template, &conv).unwrap(),
        "https://s.example/pb?c=S1"
    );
}

#[test]
fn every_builtin_kind_is_listed_and_answers_to_its_own_name() {
    let listed: Vec<&str> = builtin_source_kinds().collect();
    assert_eq!(listed, BUILTIN_SOURCES);
    assert!(listed.len() >= 13);
    for kind in listed {
        let source = builtin_source(kind).unwrap();
        assert_eq!(source.kind(), kind);
        assert!(
            !source.postback_tokens().is_empty(),
            "{kind} has postback tokens"
        );
    }
}

#[test]
fn the_campaign_url_carries_the_sources_landing_macros() {
    let propeller = builtin_source("propellerads").unwrap();
    assert_eq!(
        propeller.landing_tokens(),
        vec![
            ("subid".to_string(), "${SUBID}".to_string()),
            ("zoneid".to_string(), "${ZONEID}".to_string()),
            ("campaignid".to_string(), "${CAMPAIGNID}".to_string()),
        ]
    );
    assert_eq!(
        propeller.campaign_url("https://t.example/lp"),
        "https://t.example/lp?subid=${SUBID}&zoneid=${ZONEID}&campaignid=${CAMPAIGNID}"
    );
    assert_eq!(
        propeller.campaign_url("https://t.example/lp?a=1"),
        "https://t.example/lp?a=1&subid=${SUBID}&zoneid=${ZONEID}&campaignid=${CAMPAIGNID}",
        "appended to a query already there"
    );
}

#[test]
fn a_spec_source_answers_what_its_spec_says() {
    let mut spec = builtin_source_spec("zeropark").unwrap();
    let plain = SpecSource::new(spec.clone()).unwrap();
    assert!(!plain.relays_status_changes());
    assert_eq!(plain.postback_template(), None);
    spec.relays_status_changes = true;
    spec.postback_template = Some("https://src.example/pb?c={cid}".into());
    let configured = SpecSource::new(spec).unwrap();
    assert!(configured.relays_status_changes());
    assert_eq!(
        configured.postback_template(),
        Some("https://src.example/pb?c={cid}")
    );
}

#[test]
fn case_sensitive_sources_refuse_a_token_in_another_case_and_the_others_take_it() {
    let mut conv = RelayConversion::new("c1", "conversion", "k1");
    conv.source_click_id = Some("S1".into());
    let propeller = builtin_source("propellerads").unwrap();
    assert_eq!(propeller.token_case(), CaseRule::Sensitive);
    assert_eq!(
        propeller
            .render_postback("https://p.example/c?v=${subid}", &conv)
            .unwrap_err()
            .reason(),
        "unknown_token"
    );
    let insensitive = BUILTIN_SOURCES
        .iter()
        .map(|k| builtin_source(k).unwrap())
        .find(|s| s.token_case() == CaseRule::Insensitive)
        .expect("a case-insensitive built-in");
    let token = insensitive
        .postback_tokens()
        .into_iter()
        .find(|t| t.field.is_source_click_id())
        .unwrap();
    let style = insensitive.token_style();
    let flipped: String = token
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    assert_ne!(flipped, token.name);
    let template = format!("https://s.example/pb?c={}", style.wrap(&flipped));
    assert_eq!(
        insensitive.render_postback(&template, &conv).unwrap(),
        "https://s.example/pb?c=S1",
        "{} takes {} as {}",
        insensitive.kind(),
        flipped,
        token.name
    );
}

#[test]
fn param_source_is_the_generic_vocabulary_under_its_own_kind() {
    let src = ParamSource::new("my-network", vec!["tsid".into()], None, vec![]);
    assert_eq!(src.kind(), "my-network");
    assert_eq!(src.token_case(), CaseRule::Insensitive);
    assert_eq!(names(&src.postback_tokens()), GENERIC_VOCABULARY);
    assert_eq!(
        src.campaign_url("https://t.example/a"),
        "https://t.example/a"
    );
}

#[test]
fn a_value_the_conversion_lacks_renders_empty_but_a_missing_source_click_id_refuses() {
    let src = builtin_source("propellerads").unwrap();
    let mut conv = RelayConversion::new("c1", "conversion", "k1");
    conv.source_click_id = Some("S1".into());
    conv.payout = None;
    assert_eq!(
        src.render_postback("https://p.example/c?v=${SUBID}&payout=${PAYOUT}", &conv)
            .unwrap(),
        "https://p.example/c?v=S1&payout=",
        "no payout: an empty value, not a refusal"
    );
}
