//! Issue 14, the pixel, cookie, CSV and logging items: distinct pixel orders stay
//! distinct conversions, the pixel/S2S merge pairs only what can be one conversion,
//! foreign pages cannot record pixel hits, an image pixel always gets an image, a
//! forged click cookie cannot push the real one aside, CSV cells cannot run as
//! formulas, and logs go to stderr.

use clickstamp_e2e::instance::{workspace_root, CLICK_ID_KEY};
use clickstamp_e2e::{request, FakeSource, Instance, Response};
use clickstamp_plugins::query::{first_value, parse_query};
use clickstamp_plugins::ClickIdCodec;
use std::time::{Duration, Instant};

const SECRET: &str = "network-secret-123";
const SHOP: &str = "https://shop.example";

fn config(source: &FakeSource, grace: &str, rate: u32) -> String {
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
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&payout={{payout}}&event_id={{event_id}}"

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

[outbox]
poll_interval = "50ms"
backoff_base = "100ms"

[pixel]
grace_period = "{grace}"
rate_limit_per_minute = {rate}
allowed_origins = ["{SHOP}"]
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

/// A click through `/go` (direct linking); its click ID.
fn click(inst: &Instance, tsid: &str) -> String {
    let go = inst.get(&format!("/go/offer1?tsid={tsid}"), &[]);
    stamped_click(&go)
}

/// The click ID `/go` stamped into the offer URL it redirected to.
fn stamped_click(go: &Response) -> String {
    assert_eq!(go.status, 302, "{}", go.text());
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn beacon_from(inst: &Instance, origin: Option<&str>, json: &str) -> Response {
    let mut headers = vec![("Content-Type", "text/plain")];
    if let Some(o) = origin {
        headers.push(("Origin", o));
    }
    request(inst.main, "POST", "/px", &headers, json.as_bytes()).unwrap()
}

fn beacon(inst: &Instance, json: &str) -> Response {
    beacon_from(inst, Some(SHOP), json)
}

fn postback(inst: &Instance, cid: &str, extra: &str) -> serde_json::Value {
    inst.get(
        &format!("/postback/cake?cid={cid}&secret={SECRET}{extra}"),
        &[],
    )
    .json()
}

/// (origin, txid, payout) of every conversion of `cid`, oldest first.
fn conversions(inst: &Instance, cid: &str) -> Vec<(String, Option<String>, f64)> {
    inst.rows(
        "SELECT origin, txid, payout FROM conversions WHERE click_id = $1 ORDER BY id",
        &[&cid],
    )
    .iter()
    .map(|r| {
        (
            r.get_string(0),
            r.get_opt_str(1).map(str::to_string),
            r.get_f64(2),
        )
    })
    .collect()
}

fn conversion_count(inst: &Instance, cid: &str) -> i64 {
    inst.count(
        "SELECT count(*) FROM conversions WHERE click_id = $1",
        &[&cid],
    )
}

fn event_id(relay: &str) -> String {
    first_value(&parse_query(relay.split_once('?').unwrap().1), "event_id")
        .unwrap()
        .to_string()
}

#[test]
fn pixel_orders_with_different_txids_are_distinct_conversions_each_relayed() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "1s", 1000));
    let cid = click(&inst, "ORD");
    let started = Instant::now();
    for (txid, value) in [("ORDER-1", 10), ("ORDER-2", 20), ("ORDER-3", 30)] {
        let r = beacon(
            &inst,
            &format!(r#"{{"cid":"{cid}","event":"purchase","txid":"{txid}","value":{value}}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "accepted", "{txid}: {}", r.text());
        assert_eq!(
            r.json()["event_id"],
            crate::pixel::expected_event_id(&cid, "purchase", Some(txid)),
            "the event id the beacon is answered with is the conversion's key"
        );
    }
    // The same order again is still one conversion.
    let again = beacon(
        &inst,
        &format!(r#"{{"cid":"{cid}","event":"purchase","txid":"ORDER-2","value":20}}"#),
    );
    assert_eq!(again.json()["status"], "duplicate");
    let stored = conversions(&inst, &cid);
    assert_eq!(
        stored
            .iter()
            .map(|(o, t, p)| (o.as_str(), t.as_deref(), *p))
            .collect::<Vec<_>>(),
        [
            ("pixel", Some("ORDER-1"), 10.0),
            ("pixel", Some("ORDER-2"), 20.0),
            ("pixel", Some("ORDER-3"), 30.0)
        ]
    );
    source.wait_for(Duration::from_secs(10), |r| r.len() >= 3);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "pixel-only relays wait for the grace period"
    );
    std::thread::sleep(Duration::from_millis(500));
    let relays = source.received();
    let mut ids: Vec<String> = relays.iter().map(|r| event_id(r)).collect();
    ids.sort();
    let mut expected: Vec<String> = ["ORDER-1", "ORDER-2", "ORDER-3"]
        .iter()
        .map(|t| crate::pixel::expected_event_id(&cid, "purchase", Some(t)))
        .collect();
    expected.sort();
    assert_eq!(ids, expected, "one relay per order: {relays:?}");
    assert_eq!(
        inst.metric("clickstamp_revenue_total{campaign=\"camp\",source=\"src\"}"),
        60.0
    );
    let report = inst.admin_get("/api/report").json();
    assert_eq!(report["totals"]["conversions"], 3, "{report}");
    assert_eq!(report["totals"]["revenue"], 60.0, "{report}");
}

#[test]
fn pixel_and_s2s_merge_only_when_they_can_be_one_conversion() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 1000));

    // A pixel without a txid and an S2S order: one conversion, the S2S figures.
    let a = click(&inst, "MA");
    assert_eq!(
        beacon(&inst, &format!(r#"{{"cid":"{a}","value":7}}"#)).json()["status"],
        "accepted"
    );
    assert_eq!(
        postback(&inst, &a, "&payout=9&txid=T-A")["status"],
        "status_changed"
    );
    assert_eq!(
        conversions(&inst, &a),
        [("s2s".into(), Some("T-A".into()), 9.0)]
    );

    // Pixel ORDER-1 and S2S ORDER-2: two orders, two conversions.
    let b = click(&inst, "MB");
    assert_eq!(
        beacon(
            &inst,
            &format!(r#"{{"cid":"{b}","txid":"ORDER-1","value":5}}"#)
        )
        .json()["status"],
        "accepted"
    );
    assert_eq!(
        postback(&inst, &b, "&payout=6&txid=ORDER-2")["status"],
        "accepted"
    );
    assert_eq!(
        conversions(&inst, &b),
        [
            ("pixel".into(), Some("ORDER-1".into()), 5.0),
            ("s2s".into(), Some("ORDER-2".into()), 6.0)
        ]
    );

    // S2S without a txid, then pixel ORDER-1: one conversion, which learns the txid;
    // a second pixel order is then a conversion of its own.
    let c = click(&inst, "MC");
    assert_eq!(postback(&inst, &c, "&payout=4")["status"], "accepted");
    assert_eq!(
        beacon(
            &inst,
            &format!(r#"{{"cid":"{c}","txid":"ORDER-1","value":3}}"#)
        )
        .json()["status"],
        "duplicate"
    );
    assert_eq!(
        beacon(
            &inst,
            &format!(r#"{{"cid":"{c}","txid":"ORDER-2","value":8}}"#)
        )
        .json()["status"],
        "accepted"
    );
    assert_eq!(
        conversions(&inst, &c),
        [
            ("s2s".into(), Some("ORDER-1".into()), 4.0),
            ("pixel".into(), Some("ORDER-2".into()), 8.0)
        ]
    );

    // S2S ORDER-1 first, then the pixels of ORDER-1 (its twin) and ORDER-2 (another).
    let d = click(&inst, "MD");
    assert_eq!(
        postback(&inst, &d, "&payout=11&txid=ORDER-1")["status"],
        "accepted"
    );
    assert_eq!(
        beacon(
            &inst,
            &format!(r#"{{"cid":"{d}","txid":"ORDER-1","value":11}}"#)
        )
        .json()["status"],
        "duplicate"
    );
    assert_eq!(
        beacon(
            &inst,
            &format!(r#"{{"cid":"{d}","txid":"ORDER-2","value":12}}"#)
        )
        .json()["status"],
        "accepted"
    );
    assert_eq!(conversions(&inst, &d).len(), 2);

    // Pixels ORDER-1 and ORDER-2, then S2S ORDER-2: it upgrades its own twin, not the
    // older pixel.
    let e = click(&inst, "ME");
    for (txid, v) in [("ORDER-1", 1), ("ORDER-2", 2)] {
        assert_eq!(
            beacon(
                &inst,
                &format!(r#"{{"cid":"{e}","txid":"{txid}","value":{v}}}"#)
            )
            .json()["status"],
            "accepted"
        );
    }
    assert_eq!(
        postback(&inst, &e, "&payout=2.5&txid=ORDER-2")["status"],
        "status_changed"
    );
    assert_eq!(
        conversions(&inst, &e),
        [
            ("pixel".into(), Some("ORDER-1".into()), 1.0),
            ("s2s".into(), Some("ORDER-2".into()), 2.5)
        ]
    );
}

fn journal_reasons(inst: &Instance) -> Vec<String> {
    inst.admin_get("/api/journal?network=pixel&outcome=rejected")
        .json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn pixel_hits_from_pages_outside_the_allowed_origins_are_refused_and_journalled() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 1000));
    let cid = click(&inst, "OR");
    let json = format!(r#"{{"cid":"{cid}","txid":"EVIL-1","value":100}}"#);
    let r = beacon_from(&inst, Some("https://evil.example"), &json);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "origin_not_allowed");
    assert!(r.header("access-control-allow-origin").is_none());
    let r = beacon_from(&inst, Some("null"), &json);
    assert_eq!(r.status, 403, "an opaque origin is not an allowed one");
    // An image pixel on a foreign page: no Origin, but its Referer names the page.
    let img = inst.get(
        &format!("/px?cid={cid}&txid=EVIL-2&value=100"),
        &[("Referer", "https://evil.example/checkout")],
    );
    assert_eq!(
        (img.status, img.header("content-type")),
        (403, Some("image/gif"))
    );
    assert!(
        conversion_count(&inst, &cid) == 0,
        "nothing from a foreign page is recorded"
    );
    let reasons = journal_reasons(&inst);
    assert_eq!(
        reasons
            .iter()
            .filter(|r| *r == "origin_not_allowed")
            .count(),
        3,
        "{reasons:?}"
    );
    assert_eq!(
        inst.metric(
            "clickstamp_postback_rejections_total{network=\"pixel\",reason=\"origin_not_allowed\"}"
        ),
        3.0
    );
    // Allowed: a listed origin, the tracker's own host, and a request naming no page.
    assert_eq!(
        beacon(&inst, &format!(r#"{{"cid":"{cid}","txid":"OK-1"}}"#)).json()["status"],
        "accepted"
    );
    let own = format!("http://{}", inst.main);
    assert_eq!(
        beacon_from(
            &inst,
            Some(&own),
            &format!(r#"{{"cid":"{cid}","txid":"OK-2"}}"#)
        )
        .json()["status"],
        "accepted"
    );
    assert_eq!(
        beacon_from(&inst, None, &format!(r#"{{"cid":"{cid}","txid":"OK-3"}}"#)).json()["status"],
        "accepted"
    );
    let img = inst.get(
        &format!("/px?cid={cid}&txid=OK-4"),
        &[("Referer", "https://shop.example/thanks")],
    );
    assert_eq!(img.status, 200);
    assert_eq!(conversion_count(&inst, &cid), 4);
}

#[test]
fn every_answer_to_an_image_pixel_is_the_gif() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 4));
    let cid = click(&inst, "GIF");
    // A genuine click ID that was never stored.
    let unknown = ClickIdCodec::new(CLICK_ID_KEY.as_bytes())
        .mint(now_ms(), [7; 6])
        .to_hex();
    for (target, status) in [
        (format!("/px?cid={cid}&value=-3"), 400),
        (format!("/px?cid={}", forge_from(&cid)), 400),
        (format!("/px?cid={unknown}"), 404),
    ] {
        let r = inst.get(&target, &[]);
        assert_eq!(
            (r.status, r.header("content-type")),
            (status, Some("image/gif")),
            "{target}"
        );
        assert_eq!(&r.body[..6], b"GIF89a", "{target}");
    }
    // Four a minute: the fifth and later are rate-limited, and still images.
    let limited = (0..3)
        .map(|_| inst.get(&format!("/px?cid={cid}"), &[]))
        .find(|r| r.status == 429)
        .expect("rate limited");
    assert_eq!(limited.header("content-type"), Some("image/gif"));
    assert_eq!(&limited.body[..6], b"GIF89a");
    assert_eq!(limited.header("retry-after"), Some("60"));
    // A beacon keeps its JSON answer.
    let post = beacon(&inst, &format!(r#"{{"cid":"{cid}"}}"#));
    assert_eq!(post.status, 429);
    assert_eq!(post.json()["error"], "rate_limited");
}

#[test]
fn image_pixel_txids_that_are_not_utf8_are_refused_never_merged() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 60));
    let cid = click(&inst, "UTF8");
    // Two different orders that a lossy decoder would both read as four U+FFFD.
    for txid in ["%FF%FE%C0%AF", "%FE%FF%C0%AE"] {
        let r = inst.get(&format!("/px?cid={cid}&event=purchase&txid={txid}"), &[]);
        assert_eq!(
            (r.status, r.header("content-type")),
            (400, Some("image/gif")),
            "{txid}"
        );
    }
    assert_eq!(
        conversion_count(&inst, &cid),
        0,
        "nothing was merged or stored"
    );
    let ok = inst.get(&format!("/px?cid={cid}&event=purchase&txid=ORDER-1"), &[]);
    assert_eq!(ok.status, 200);
    assert_eq!(conversion_count(&inst, &cid), 1);
}

/// `real` a millisecond later with its MAC broken: well-formed, newer, forged.
fn forge_from(real: &str) -> String {
    let ts = u64::from_str_radix(&real[..12], 16).unwrap() + 1;
    let last = if real.ends_with('0') { "1" } else { "0" };
    format!("{ts:012x}{}{last}", &real[12..31])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_forged_click_cookie_in_front_of_the_real_one_is_skipped() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 1000));
    let landing = inst.get("/lp?tsid=COOKIE", &[]);
    assert_eq!(landing.status, 200);
    let cookie = landing.cookie().expect("click cookie");
    let real = cookie.strip_prefix("cs_camp=").unwrap().to_string();
    let forged = forge_from(&real);
    assert!(forged > real, "the forged ID looks newer");
    let both = format!("cs_camp={forged}; cs_camp={real}");
    let clicks = |inst: &Instance| -> i64 { inst.count("SELECT count(*) FROM clicks", &[]) };
    assert_eq!(clicks(&inst), 1);

    // `/go` takes the real click, mints none and sets no cookie.
    let go = inst.get("/go/offer1", &[("Cookie", &both)]);
    assert_eq!(stamped_click(&go), real);
    assert!(go.header("set-cookie").is_none());
    // A reload of the landing page keeps the real click.
    let reload = inst.get("/lp?tsid=COOKIE", &[("Cookie", &both)]);
    assert_eq!(reload.status, 200);
    assert!(reload.header("set-cookie").is_none(), "no new click");
    assert_eq!(clicks(&inst), 1);
    // An image pixel without cid= converts on the real click, not the newer forgery.
    let px = inst.get("/px?event=lead&value=1", &[("Cookie", &both)]);
    assert_eq!(px.status, 200);
    assert_eq!(conversions(&inst, &real).len(), 1);
    assert!(
        inst.metric(
            "clickstamp_click_ids_rejected_total{reason=\"click_id_bad_mac\",route=\"go\"}"
        ) >= 1.0
    );
}

#[test]
fn csv_cells_that_a_spreadsheet_would_run_are_defused() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 1000));
    for zone in ["-2%2B3%2Bcmd%7C'%20%2FC%20calc'!A0", "plain-zone"] {
        assert_eq!(
            inst.get(&format!("/lp?tsid=CSV&zone={zone}"), &[]).status,
            200
        );
    }
    let csv = inst
        .admin_get("/api/report?group_by=sub1&format=csv")
        .text();
    let cells: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert!(cells.contains(&"'-2+3+cmd|' /C calc'!A0"), "{csv}");
    assert!(cells.contains(&"plain-zone"), "{csv}");
}

#[test]
fn logs_are_written_to_stderr() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(&source, "30s", 1000));
    let r = beacon_from(&inst, None, "{not json");
    assert_eq!(r.status, 400);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !inst.log().contains("pixel hit refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = inst.log();
    assert!(log.contains("clickstamp serving"), "stderr:\n{log}");
    assert!(log.contains("pixel hit refused"), "stderr:\n{log}");
}
