//! Issue 14, defect 2 and the 255-character weak spot, end to end: a source click ID
//! from the visitor's landing URL can neither change the path of the relay it fills,
//! nor be cut on its way to it.

use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{binary, FakeSource, Instance, TempDir};
use clickstamp_plugins::query::{first_value, parse_query};
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "network-secret-123";

/// A source whose postback URL carries its click ID in the path, and one campaign.
fn body(source: &FakeSource) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
sub_id_params = ["zone"]
postback_url = "http://{addr}/pb/{{source_click_id}}/x?payout={{payout}}&zone={{sub1}}"

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"

[outbox]
backoff_base = "100ms"
backoff_max = "300ms"
poll_interval = "50ms"
timeout = "500ms"
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

/// A visitor lands with `landing_query`, then goes to the offer; returns our click id
/// as the network sees it.
fn click(inst: &Instance, landing_query: &str) -> String {
    let landing = inst.get(&format!("/lp?{landing_query}"), &[]);
    assert_eq!(
        landing.status, 200,
        "the landing page is served whatever the values"
    );
    let cookie = landing.cookie().expect("click cookie");
    let go = inst.get("/go/offer1", &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302);
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

/// The network's postback for `cid`; returns the JSON answer.
fn convert(inst: &Instance, cid: &str, txid: &str) -> serde_json::Value {
    let r = inst.get(
        &format!("/postback/cake?cid={cid}&payout=2.5&txid={txid}&secret={SECRET}"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn stored_source_click_id(inst: &Instance, cid: &str) -> Option<String> {
    inst.row(
        "SELECT source_click_id FROM clicks WHERE click_id = $1",
        &[&cid],
    )
    .get_opt_str(0)
    .map(str::to_string)
}

#[test]
fn a_path_token_carries_the_source_click_id_escaped_and_never_traversed() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source));
    // Landing values as the visitor's URL sends them, and the relay path each must give.
    let cases = [
        ("a%2Fb", "/pb/a%2Fb/x?"),
        ("a%5Cb", "/pb/a%5Cb/x?"),
        ("%252e%252e", "/pb/%252e%252e/x?"),
        ("%3Fq%23f", "/pb/%3Fq%23f/x?"),
    ];
    for (i, (tsid, want_prefix)) in cases.iter().enumerate() {
        let cid = click(&inst, &format!("tsid={tsid}&zone=z{i}"));
        let answer = convert(&inst, &cid, &format!("T{i}"));
        assert_eq!(answer["relayed"], true, "{tsid}: {answer}");
        let got = source.wait_for(Duration::from_secs(5), |r| r.len() > i);
        assert!(got[i].starts_with(want_prefix), "{tsid}: {got:?}");
        assert!(got[i].ends_with(&format!("&zone=z{i}")), "{got:?}");
    }

    // Dot segments cannot be escaped (parsers read `%2e` as a dot), so they are
    // refused: the conversion is kept, the relay is never sent, and the refusal is
    // counted with its reason.
    for (i, tsid) in ["..", "."].iter().enumerate() {
        let cid = click(&inst, &format!("tsid={tsid}"));
        let answer = convert(&inst, &cid, &format!("D{i}"));
        assert_eq!(answer["status"], "accepted", "{answer}");
        assert_eq!(answer["relayed"], false, "{tsid}: {answer}");
    }
    assert_eq!(
        inst.metric_at_least(
            "clickstamp_relay_render_failures_total{reason=\"dot_segment_value\",source=\"src\"}",
            2.0,
            Duration::from_secs(2)
        ),
        2.0
    );
    std::thread::sleep(Duration::from_millis(500)); // a relay would have arrived by now
    let got = source.received();
    assert_eq!(got.len(), cases.len(), "{got:?}");
    assert!(
        got.iter().all(|t| !t.contains("/..") && !t.contains("/./")),
        "{got:?}"
    );
    assert!(
        inst.log().contains("dot segment"),
        "the refusal is logged with its reason"
    );
}

#[test]
fn landing_values_are_kept_whole_up_to_the_limit_and_refused_past_it() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source));

    // 300 characters: once cut to 255, now relayed whole.
    let long: String = "AbCdEfGhIj0123456789-_.~"
        .chars()
        .cycle()
        .take(300)
        .collect();
    let cid = click(&inst, &format!("tsid={long}&zone=Z"));
    assert_eq!(
        stored_source_click_id(&inst, &cid).as_deref(),
        Some(long.as_str())
    );
    assert_eq!(convert(&inst, &cid, "T1")["relayed"], true);
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
    let path = got[0].split_once('?').unwrap().0;
    assert_eq!(path, format!("/pb/{long}/x"));

    // Past the limit (1024 bytes): the landing page and the click stay, the value is
    // refused (NULL, never a cut id) and counted per campaign and field.
    let too_long = "x".repeat(1025);
    let cid = click(&inst, &format!("tsid={too_long}&zone={too_long}"));
    assert_eq!(stored_source_click_id(&inst, &cid), None);
    let sub1 = inst.row("SELECT sub1 FROM clicks WHERE click_id = $1", &[&cid]);
    assert_eq!(sub1.get_opt_str(0), None);
    for field in ["source_click_id", "sub1"] {
        assert_eq!(
            inst.metric(&format!(
                "clickstamp_landing_values_refused_total{{campaign=\"camp\",field=\"{field}\"}}"
            )),
            1.0,
            "{field}"
        );
    }
    // Exactly at the limit is kept.
    let at_limit = "y".repeat(1024);
    let cid = click(&inst, &format!("tsid={at_limit}"));
    assert_eq!(
        stored_source_click_id(&inst, &cid).map(|v| v.len()),
        Some(1024)
    );
}

#[test]
fn templates_with_a_token_in_their_host_are_refused_by_check() {
    let dir = TempDir::new("check-host-token");
    let path = dir.0.join("c.toml");
    let config = r#"
[secrets]
click_id_key = "0123456789abcdef0123"
admin_token = "0123456789abcdef0123"

[[networks]]
id = "cake"

[[networks]]
id = "mon"
kind = "monetizer"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
postback_url = "https://{source_click_id}.src.example/pb?c={source_click_id}"

[[offers]]
id = "o1"
url = "https://network.example/offer?a=1"
network = "cake"

[[offers]]
id = "o2"
url = "https://{clickID}.network.example/offer"
network = "mon"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{ offer = "o1" }]
origin = { upstream = "http://127.0.0.1:9" }
"#;
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for key in ["traffic_sources[0].postback_url", "offers[1].url"] {
        let line = text.lines().find(|l| l.contains(key));
        assert!(
            line.is_some_and(|l| l.contains("scheme or host")),
            "{key}: {text}"
        );
    }
    assert!(!text.contains("offers[0].url"), "{text}");
}

#[test]
fn a_landing_value_that_is_not_utf8_is_left_out_never_replaced() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source));
    // Two different ids that a lossy decoder turns into the same four U+FFFD.
    let first = click(&inst, "tsid=%FF%FE%C0%AF&zone=Z");
    let second = click(&inst, "tsid=%FE%FF%C0%AE&zone=Z");
    assert_ne!(first, second);
    for cid in [&first, &second] {
        assert_eq!(stored_source_click_id(&inst, cid), None, "{cid}");
    }
    assert_eq!(
        inst.metric(
            "clickstamp_landing_values_refused_total{campaign=\"camp\",field=\"invalid_utf8\"}"
        ),
        2.0
    );
    // The rest of the URL still counts: the sub id was kept.
    let sub1 = inst.row("SELECT sub1 FROM clicks WHERE click_id = $1", &[&first]);
    assert_eq!(sub1.get_opt_str(0), Some("Z"));
}
