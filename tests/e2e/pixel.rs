//! `/px` against S2S postbacks: one conversion per (click, event) whichever arrives
//! first, S2S authoritative, pixel-only relays held for the grace period.

use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{request, FakeSource, Instance};
use clickstamp_plugins::query::{first_value, parse_query};
use std::time::{Duration, Instant};

const SECRET: &str = "network-secret-123";

/// The dedup key (the `event_id` relays carry) as README and `plugins/src/dedup.rs`
/// define it, written out here on its own: SHA-256 over `clickstamp-dedup-v1`, then the
/// click ID and event each as a 4-byte big-endian length and bytes, then `0x00` (no
/// txid) or `0x01`, length, bytes; the first 16 bytes in hex. Tests compare the
/// server's `event_id` with this, never with the server's own function. Inputs are in
/// normal form already (lowercase 32-hex click ID, lowercase event, trimmed txid).
pub(crate) fn expected_event_id(click_id: &str, event: &str, txid: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let with_length = |bytes: &mut Vec<u8>, field: &str| {
        bytes.extend_from_slice(&u32::try_from(field.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(field.as_bytes());
    };
    let mut bytes = b"clickstamp-dedup-v1".to_vec();
    with_length(&mut bytes, click_id);
    with_length(&mut bytes, event);
    match txid {
        None => bytes.push(0),
        Some(t) => {
            bytes.push(1);
            with_length(&mut bytes, t);
        }
    }
    hex::encode(&Sha256::digest(&bytes)[..16])
}

#[test]
fn the_event_id_oracle_matches_a_vector_computed_with_sha256sum() {
    // printf 'clickstamp-dedup-v1\x00\x00\x00\x200190a1b2c3d47e5f8a9b0c1d2e3f4a5b\x00\x00\x00\x08purchase\x01\x00\x00\x00\x02T1' | sha256sum
    assert_eq!(
        expected_event_id("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "purchase", Some("T1")),
        "ee0920fdc4cdb41bc895208725129ca5"
    );
    // printf 'clickstamp-dedup-v1\x00\x00\x00\x01c\x00\x00\x00\x01e\x00' | sha256sum
    assert_eq!(
        expected_event_id("c", "e", None),
        "1d31e355b9c07840b1b451e558eea821"
    );
}

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
    inst.rows(
        "SELECT origin, payout, status FROM conversions WHERE click_id = $1",
        &[&cid],
    )
    .iter()
    .map(|row| (row.get_string(0), row.get_f64(1), row.get_string(2)))
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
        expected_event_id(&cid, "lead", None),
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
    // Five a minute: the four hits above (the preflight aside) and one more pass, the
    // sixth and later are refused.
    let statuses: Vec<u16> = (0..3)
        .map(|_| inst.get(&format!("/px?cid={cid}"), &[]).status)
        .collect();
    assert_eq!(statuses, [200, 429, 429]);
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
    assert_eq!(
        inst.metric(
            "clickstamp_postback_rejections_total{network=\"pixel\",reason=\"rate_limited\"}"
        ),
        2.0
    );
}

/// An image-pixel hit for `event` from the client `ip` (behind the trusted proxy).
fn hit_from(inst: &Instance, ip: &str, cid: &str, event: &str) -> clickstamp_e2e::Response {
    inst.get(
        &format!("/px?cid={cid}&event={event}"),
        &[("X-Forwarded-For", ip)],
    )
}

fn pixel_conversion_events(inst: &Instance, cid: &str) -> Vec<String> {
    inst.rows(
        "SELECT event FROM conversions WHERE click_id = $1 AND origin = 'pixel' ORDER BY event",
        &[&cid],
    )
    .iter()
    .map(|row| row.get_string(0))
    .collect()
}

#[test]
fn the_pixel_rate_limit_allows_exactly_its_allowance_per_client_ip_and_refills() {
    // 20 a minute: a burst of 20, then one hit back every 3 s, observable in a test.
    const PER_MINUTE: usize = 20;
    let source = FakeSource::start();
    let inst = Instance::start_with_server(
        &body(&source, "1s", PER_MINUTE as u32),
        "client_ip_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    let cid = click(&inst, "RL1");
    let (a, b) = ("203.0.113.7", "198.51.100.9");
    let burst_started = Instant::now();
    for i in 0..PER_MINUTE {
        let r = hit_from(&inst, a, &cid, &format!("a{i:02}"));
        assert_eq!(r.status, 200, "hit {i} of the allowance");
    }
    let refused = hit_from(&inst, a, &cid, "a-over");
    let refused_at = Instant::now();
    assert!(
        burst_started.elapsed() < Duration::from_millis(2_500),
        "the burst must finish well inside one refill period for the counts below"
    );
    assert_eq!(
        refused.status,
        429,
        "hit {} is over the allowance",
        PER_MINUTE + 1
    );
    assert_eq!(refused.header("content-type"), Some("image/gif"));
    assert!(refused.header("retry-after").is_some());
    // Every allowed hit was recorded, the refused one not.
    let mut want: Vec<String> = (0..PER_MINUTE).map(|i| format!("a{i:02}")).collect();
    assert_eq!(pixel_conversion_events(&inst, &cid), want);
    // Another client has a bucket of its own.
    assert_eq!(
        hit_from(&inst, b, &cid, "b00").status,
        200,
        "{b} is not {a}"
    );
    want.push("b00".into());
    // The journal names the client the trusted proxy reported, not the proxy.
    let journal = inst
        .admin_get("/api/journal?network=pixel&limit=100")
        .json();
    let mut ips: Vec<&str> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["remote_ip"].as_str().unwrap_or("none"))
        .collect();
    ips.sort_unstable();
    ips.dedup();
    assert_eq!(ips, [b, a], "{journal}");
    // A second later (a third of a token back) it is still refused: the refill is
    // per minute, not per second.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(hit_from(&inst, a, &cid, "a-early").status, 429);
    // Three seconds after the refusal one token is back: one hit passes, the next not.
    std::thread::sleep(Duration::from_millis(3_300).saturating_sub(refused_at.elapsed()));
    assert_eq!(
        hit_from(&inst, a, &cid, "a-refilled").status,
        200,
        "refilled"
    );
    assert_eq!(
        hit_from(&inst, a, &cid, "a-again").status,
        429,
        "one token only"
    );
    want.push("a-refilled".into());
    want.sort();
    assert_eq!(pixel_conversion_events(&inst, &cid), want);
    assert_eq!(
        inst.metric(
            "clickstamp_postback_rejections_total{network=\"pixel\",reason=\"rate_limited\"}"
        ),
        3.0,
        "each refusal counted once"
    );
}
