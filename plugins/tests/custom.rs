//! Networks and sources defined entirely from config-shaped values (strings and lists),
//! the way the proxy builds them from TOML, with no Rust per platform.

use clickstamp_plugins::lint::{lint_network, lint_source_template};
use clickstamp_plugins::network::{
    builtin_network_spec, postback_url_with_secret, CustomNetwork, CustomNetworkSpec, FieldSpec,
    Network,
};
use clickstamp_plugins::postback::{ConversionStatus, PostbackRequest};
use clickstamp_plugins::query::parse_query;
use clickstamp_plugins::source::{
    CustomSource, CustomSourceSpec, RelayConversion, SourceToken, TrafficSource,
};
use clickstamp_plugins::template::TokenStyle;
use clickstamp_plugins::verify::Verification;
use clickstamp_plugins::{dedup_key, CaseRule};

#[test]
fn a_network_from_config_values_round_trips_its_postback_url() {
    // As if read from [networks.mynet] in the config.
    let style = TokenStyle::from_name("<x>").unwrap();
    let mut spec = CustomNetworkSpec::new("mynet", "subid", style);
    spec.click_id = FieldSpec::new("clickid", "subid");
    spec.payout = Some(FieldSpec::new("amount", "payout"));
    spec.txid = Some(FieldSpec::new("tx", "conversion_id"));
    spec.status = Some(FieldSpec::new("state", "status"));
    spec.status_map = vec![("ok".into(), ConversionStatus::Approved)];
    let net = CustomNetwork::new(spec).unwrap();
    assert!(lint_network(&net).is_empty());

    let v = Verification::none().with_secret("key", "s3cr3t");
    let url = postback_url_with_secret(&net, "https://trk.example", "mynet", &v);
    assert_eq!(
        url,
        "https://trk.example/postback/mynet?clickid=<subid>&amount=<payout>&tx=<conversion_id>&state=<status>&key=s3cr3t"
    );

    let fired = url
        .replace("<subid>", "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b")
        .replace("<payout>", "9.99")
        .replace("<conversion_id>", "X1")
        .replace("<status>", "OK");
    let q = fired.split_once('?').unwrap().1;
    let pairs = parse_query(q);
    let got = net
        .accept_postback(&PostbackRequest::get(q, &pairs), &v, 0)
        .unwrap();
    assert_eq!(got.click_id, "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b");
    assert_eq!(got.payout, Some(9.99));
    assert_eq!(got.txid.as_deref(), Some("X1"));
    assert_eq!(got.status, Some(ConversionStatus::Approved));

    let bad = q.replace("s3cr3t", "guess");
    let pairs = parse_query(&bad);
    let err = net
        .accept_postback(&PostbackRequest::get(&bad, &pairs), &v, 0)
        .unwrap_err();
    assert_eq!(err.reason(), "unauthorized_secret");
}

#[test]
fn a_builtin_spec_can_be_overridden_from_config() {
    let mut spec = builtin_network_spec("cake").unwrap();
    spec.click_id_param = "s3".into();
    spec.click_id.macro_name = "s3".into();
    let net = CustomNetwork::new(spec).unwrap();
    assert_eq!(
        net.postback_url("https://t.example", "cake"),
        "https://t.example/postback/cake?cid=#s3#&payout=#price#&txid=#tid#"
    );
}

#[test]
fn bad_config_values_are_refused_with_the_fix() {
    let spec = CustomNetworkSpec::new("", "sub", TokenStyle::Brace);
    assert!(CustomNetwork::new(spec)
        .unwrap_err()
        .to_string()
        .contains("kind"));
    let err = SourceToken::parse("CID", "clickid")
        .unwrap_err()
        .to_string();
    assert!(err.contains("source_click_id"), "{err}");
}

#[test]
fn a_source_from_config_values_fills_its_own_tokens() {
    // As if read from [sources.adnet]: token style %%X%%, tokens mapped by field name.
    let mut spec = CustomSourceSpec::new(
        "adnet",
        vec!["visit".into()],
        TokenStyle::from_name("double_percent").unwrap(),
    );
    spec.token_case = CaseRule::Sensitive;
    spec.cost_param = Some("price".into());
    spec.sub_id_params = vec!["zone".into()];
    spec.tokens = vec![
        SourceToken::parse("VISIT", "source_click_id").unwrap(),
        SourceToken::parse("REVENUE", "payout").unwrap(),
        SourceToken::parse("EID", "event_id").unwrap(),
        SourceToken::parse("ZONE", "sub1").unwrap(),
    ];
    spec.relays_status_changes = true;
    let template = "https://adnet.example/pb?v=%%VISIT%%&r=%%REVENUE%%&e=%%EID%%&z=%%ZONE%%";
    spec.postback_template = Some(template.into());
    let src = CustomSource::new(spec).unwrap();
    assert!(src.relays_status_changes());
    assert!(lint_source_template(&src, template).is_empty());

    let landing = src.landing_params(&parse_query("visit=v%201&price=0.01&zone=z9"));
    let mut conv = RelayConversion::new("c1", "conversion", dedup_key("c1", "conversion", None));
    conv.source_click_id = landing.source_click_id;
    conv.sub_ids = landing.sub_ids;
    conv.payout = Some(1.5);
    let out = src
        .render_postback(src.postback_template().unwrap(), &conv)
        .unwrap();
    assert_eq!(
        out,
        format!(
            "https://adnet.example/pb?v=v%201&r=1.5&e={}&z=z9",
            dedup_key("c1", "conversion", None)
        )
    );

    let codes: Vec<&str> = lint_source_template(&src, "https://adnet.example/pb?v={visit}")
        .iter()
        .map(|f| f.code)
        .collect();
    assert_eq!(codes, vec!["foreign_token", "no_click_id_token"]);
}
