//! Replays every fixture under `fixtures/networks` and `fixtures/sources`, and fails
//! when a built-in has no fixture: adding a plugin means adding its fixture.

use clickstamp_plugins::lint::lint_source_template;
use clickstamp_plugins::network::{builtin_network, builtin_network_kinds, Network};
use clickstamp_plugins::postback::{ConversionStatus, PostbackRequest};
use clickstamp_plugins::query::parse_query;
use clickstamp_plugins::source::{builtin_source, builtin_source_kinds, RelayConversion};
use clickstamp_plugins::template::Template;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const BASE: &str = "https://trk.example";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFixture {
    kind: String,
    network_id: String,
    offer_url: String,
    click_id: String,
    stamped_offer_url: String,
    postback_url: String,
    /// What the network substitutes for each of its macros when it fires.
    fills: BTreeMap<String, String>,
    postback: RequestFixture,
    expected: ExpectedPostback,
    #[serde(default)]
    rejects: Vec<RejectFixture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFixture {
    method: String,
    query: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectedPostback {
    click_id: String,
    payout: Option<f64>,
    currency: Option<String>,
    txid: Option<String>,
    status: Option<String>,
    event: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectFixture {
    query: String,
    reason: String,
    mentions: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFixture {
    kind: String,
    landing_query: String,
    expected_landing: ExpectedLanding,
    postback_template: String,
    conversion: ConversionFixture,
    expected_postback: String,
    #[serde(default)]
    lint: Vec<LintFixture>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedLanding {
    source_click_id: String,
    source_click_id_param: String,
    cost: Option<f64>,
    /// `""` stands for an absent sub ID.
    sub_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversionFixture {
    click_id: String,
    event: String,
    event_id: String,
    payout: Option<f64>,
    currency: Option<String>,
    txid: Option<String>,
    status: Option<String>,
    click_time_ms: Option<u64>,
    conversion_time_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LintFixture {
    template: String,
    codes: Vec<String>,
}

fn fixture_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn status_name(s: Option<ConversionStatus>) -> Option<String> {
    s.map(|s| s.as_str().to_string())
}

fn parse_expected(
    network: &dyn Network,
    method: &str,
    raw_query: &str,
    raw_body: &str,
) -> Result<ExpectedPostback, String> {
    let query = parse_query(raw_query);
    let body = parse_query(raw_body);
    let mut req = PostbackRequest::get(raw_query, &query);
    req.method = method;
    req.body = &body;
    req.raw_body = raw_body.as_bytes();
    network
        .parse_postback(&req)
        .map(|p| ExpectedPostback {
            click_id: p.click_id,
            payout: p.payout,
            currency: p.currency,
            txid: p.txid,
            status: status_name(p.status),
            event: p.event,
        })
        .map_err(|e| format!("{}: {e}", e.reason()))
}

fn replay_network(path: &Path) -> String {
    let f: NetworkFixture = load(path);
    let ctx = path.display();
    let n = builtin_network(&f.kind).unwrap_or_else(|| panic!("{ctx}: no built-in {}", f.kind));

    assert_eq!(
        n.stamp_offer_url(&f.offer_url, &f.click_id).unwrap(),
        f.stamped_offer_url,
        "{ctx}: stamped offer URL"
    );
    let url = n.postback_url(BASE, &f.network_id);
    assert_eq!(url, f.postback_url, "{ctx}: postback_url");

    // The network fires our postback URL with its macros substituted.
    let fired = Template::parse(&url, n.macro_style())
        .render(|name| f.fills.get(name).cloned())
        .text;
    let fired_query = fired.split_once('?').map_or("", |(_, q)| q);
    assert_eq!(
        parse_expected(n.as_ref(), "GET", fired_query, "").as_ref(),
        Ok(&f.expected),
        "{ctx}: fired {fired}"
    );
    assert_eq!(
        parse_expected(
            n.as_ref(),
            &f.postback.method,
            &f.postback.query,
            &f.postback.body
        )
        .as_ref(),
        Ok(&f.expected),
        "{ctx}: recorded postback"
    );
    for r in &f.rejects {
        let err = parse_expected(n.as_ref(), "GET", &r.query, "").expect_err(&r.query);
        assert!(
            err.starts_with(&format!("{}:", r.reason)),
            "{ctx}: {} gave {err}",
            r.query
        );
        if let Some(m) = &r.mentions {
            assert!(err.contains(m.as_str()), "{ctx}: {err} should mention {m}");
        }
    }
    f.kind
}

fn replay_source(path: &Path) -> String {
    let f: SourceFixture = load(path);
    let ctx = path.display();
    let s = builtin_source(&f.kind).unwrap_or_else(|| panic!("{ctx}: no built-in {}", f.kind));

    let landing = s.landing_params(&parse_query(&f.landing_query));
    let e = &f.expected_landing;
    assert_eq!(
        landing.source_click_id.as_deref(),
        Some(e.source_click_id.as_str()),
        "{ctx}"
    );
    assert_eq!(
        landing.source_click_id_param.as_deref(),
        Some(e.source_click_id_param.as_str()),
        "{ctx}"
    );
    assert_eq!(landing.cost, e.cost, "{ctx}: cost");
    let subs: Vec<String> = landing
        .sub_ids
        .iter()
        .map(|s| s.clone().unwrap_or_default())
        .collect();
    assert_eq!(subs, e.sub_ids, "{ctx}: sub ids");

    let c = &f.conversion;
    let mut conv = RelayConversion::new(&c.click_id, &c.event, &c.event_id);
    conv.source_click_id = landing.source_click_id.clone();
    conv.source_click_id_param = landing.source_click_id_param.clone();
    conv.sub_ids = landing.sub_ids.clone();
    conv.cost = landing.cost;
    conv.payout = c.payout;
    conv.currency = c.currency.clone();
    conv.txid = c.txid.clone();
    conv.click_time_ms = c.click_time_ms;
    conv.conversion_time_ms = c.conversion_time_ms;
    if let Some(st) = &c.status {
        conv.status = ConversionStatus::parse_lenient(st).unwrap_or_else(|| panic!("{ctx}: {st}"));
    }

    let findings = lint_source_template(s.as_ref(), &f.postback_template);
    assert!(findings.is_empty(), "{ctx}: template lints: {findings:?}");
    assert_eq!(
        s.render_postback(&f.postback_template, &conv).unwrap(),
        f.expected_postback,
        "{ctx}: rendered postback"
    );
    for l in &f.lint {
        let got: Vec<&str> = lint_source_template(s.as_ref(), &l.template)
            .iter()
            .map(|x| x.code)
            .collect();
        assert_eq!(got, l.codes, "{ctx}: lint of {}", l.template);
    }
    f.kind
}

#[test]
fn every_network_fixture_replays_and_every_builtin_has_one() {
    let covered: Vec<String> = fixture_files("networks")
        .iter()
        .map(|p| replay_network(p))
        .collect();
    for kind in builtin_network_kinds() {
        assert!(
            covered.iter().any(|c| c == kind),
            "built-in network {kind} has no fixture"
        );
    }
}

#[test]
fn every_source_fixture_replays_and_every_builtin_has_one() {
    let covered: Vec<String> = fixture_files("sources")
        .iter()
        .map(|p| replay_source(p))
        .collect();
    for kind in builtin_source_kinds() {
        assert!(
            covered.iter().any(|c| c == kind),
            "built-in source {kind} has no fixture"
        );
    }
}
