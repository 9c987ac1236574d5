//! `/px` against S2S postbacks: one conversion per (click, event) whichever arrives
//! first, S2S authoritative, pixel-only relays held for the grace period.

use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{request, FakeSource, Instance};
use clickstamp_plugins::query::{first_value, parse_query};
use std::time::{Duration, Instant};

const SECRET: &str = "network-secret-123";

fn body(source: &FakeSource, grace: &str, rate: u32) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&payout={{payout}}&event_id={{event_id}}"

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 3.0

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}

[outbox]
poll_interval = "50ms"
backoff_base = "100ms"

[pixel]
grace_period = "{grace}"
rate_limit_per_minute = {rate}
allowed_origins = ["https://shop.example"]
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

fn click(inst: &Instance, tsid: &str) -> String {
    let go = inst.get(&format!("/go/offer1?tsid={tsid}"), &[]);
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn beacon(inst: &Instance, json: &str) -> clickstamp_e2e::Response {
    request(
        inst.main,
        "POST",
        "/px",
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "https://shop.example"),
        ],
        json.as_bytes(),
    )
    .unwrap()
}

fn conversions(inst: &Instance, cid: &str) -> Vec<(String, f64, String)> {
    let db = inst.db();
    let mut stmt = db
        .prepare("SELECT origin, payout, status FROM conversions WHERE click_id = ?1")
        .unwrap();
    stmt.query_map([cid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn s2s_first_then_pixel_is_one_conversion() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "1s", 1000));
    let cid = click(&inst, "A1");
    assert_eq!(
        inst.get(
            &format!("/postback/cake?cid={cid}&payout=9.5&secret={SECRET}"),
            &[]
        )
        .json()["status"],
        "accepted"
    );
    let r = beacon(&inst, &format!(r#"{{"cid":"{cid}","value":7}}"#));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(r.json()["status"], "duplicate");
    assert_eq!(
        conversions(&inst, &cid),
        vec![("s2s".into(), 9.5, "approved".into())]
    );
    source.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        source.received().len(),
        1,
        "one relay: {:?}",
        source.received()
    );
}

#[test]
fn pixel_first_then_s2s_is_one_conversion_with_the_s2s_payout_relayed_once() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "30s", 1000));
    let cid = click(&inst, "B1");
    let r = beacon(
        &inst,
        &format!(r#"{{"cid":"{cid}","value":7,"currency":"EUR"}}"#),
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(
        conversions(&inst, &cid),
        vec![("pixel".into(), 7.0, "approved".into())]
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        source.received().is_empty(),
        "a pixel-only conversion waits for its S2S twin"
    );
    let r = inst
        .get(
            &format!("/postback/cake?cid={cid}&payout=9.5&txid=ORDER1&secret={SECRET}"),
            &[],
        )
        .json();
    assert_eq!(r["status"], "status_changed", "{r}");
    assert_eq!(
        conversions(&inst, &cid),
        vec![("s2s".into(), 9.5, "approved".into())]
    );
    source.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let got = source.received();
    assert_eq!(got.len(), 1, "relayed once: {got:?}");
    assert!(
        got[0].contains("clickid=B1") && got[0].contains("payout=9.5"),
        "with the S2S payout: {got:?}"
    );
    // Later duplicates of either kind change nothing.
    assert_eq!(
        beacon(&inst, &format!(r#"{{"cid":"{cid}"}}"#)).json()["status"],
        "duplicate"
    );
    assert_eq!(
        inst.get(
            &format!("/postback/cake?cid={cid}&payout=9.5&txid=ORDER1&secret={SECRET}"),
            &[]
        )
        .json()["status"],
        "duplicate"
    );
}

#[test]
fn a_pixel_only_conversion_is_relayed_after_the_grace_period() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "1s", 1000));
    let cid = click(&inst, "C1");
    let started = Instant::now();
    // The image pixel works without the SDK.
    let r = inst.get(&format!("/px?cid={cid}&event=lead&value=2"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert_eq!(&r.body[..6], b"GIF89a");
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(got.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held for the grace period"
    );
    let event_id = first_value(&parse_query(got[0].split_once('?').unwrap().1), "event_id")
        .unwrap()
        .to_string();
    assert_eq!(
        event_id,
        clickstamp_plugins::dedup_key(&cid, "lead", None),
        "the platform event id is the shared dedup key"
    );
    assert_eq!(inst.metric("clickstamp_conversions_total{campaign=\"camp\",origin=\"pixel\",source=\"src\",status=\"approved\"}"), 1.0);
}

#[test]
fn bad_pixel_hits_are_refused_journalled_and_rate_limited() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "1s", 5));
    let cid = click(&inst, "D1");
    let r = beacon(&inst, "{not json");
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (400, "malformed_beacon")
    );
    let r = beacon(&inst, r#"{"cid":"0123456789abcdef0123456789abcdef"}"#);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "click_id_not_uuidv7");
    let r = inst.get(&format!("/px?cid={cid}&value=-3"), &[]);
    assert_eq!(
        (r.status, r.header("content-type")),
        (400, Some("image/gif"))
    );
    // CORS: a preflight from an allowed origin passes; a foreign origin gets no grant.
    let pre = request(
        inst.main,
        "OPTIONS",
        "/px",
        &[
            ("Origin", "https://shop.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let foreign = request(
        inst.main,
        "POST",
        "/px",
        &[("Origin", "https://evil.example")],
        b"{}",
    )
    .unwrap();
    assert!(foreign.header("access-control-allow-origin").is_none());
    // Five a minute: the sixth and later are refused.
    let statuses: Vec<u16> = (0..3)
        .map(|_| inst.get(&format!("/px?cid={cid}"), &[]).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let journal = inst
        .admin_get("/api/journal?network=pixel&outcome=rejected")
        .json();
    let reasons: Vec<&str> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"malformed_beacon") && reasons.contains(&"click_id_not_uuidv7"),
        "{reasons:?}"
    );
    assert!(
        inst.metric(
            "clickstamp_postback_rejections_total{network=\"pixel\",reason=\"rate_limited\"}"
        ) >= 1.0
    );
}
