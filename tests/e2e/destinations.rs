//! `[[destinations]]`: conversions delivered to Meta's Conversions API, Google Ads,
//! TikTok's Events API and a signed webhook, each a fake on loopback that checks
//! what the platform checks. Through the real binary: clicks and postbacks over
//! HTTP, the outbox in the real store.

use clickstamp_e2e::instance::{workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::platforms::{Canned, FakePlatform, Kind};
use clickstamp_e2e::{request, Instance, TempDir};
use clickstamp_plugins::query::{first_value, parse_query};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "network-secret-123";
const META_TOKEN: &str = "EAAG-meta-token-do-not-leak-7c1f";
const HOOK_KEY: &str = "whsec-hook-key-do-not-leak-91ab";
const TIKTOK_TOKEN: &str = "tt-token-do-not-leak-55de";
const GOOGLE_DEV_TOKEN: &str = "dev-token-do-not-leak-0b3c";
const GOOGLE_REFRESH: &str = "1//refresh-do-not-leak-6f0e";
const GOOGLE_CLIENT_SECRET: &str = "client-secret-do-not-leak-2aa1";
const GOOGLE_ACCESS: &str = "ya29.access-do-not-leak-77c2";

fn meta_fake() -> FakePlatform {
    FakePlatform::start(Kind::Meta {
        pixel_id: "1234567890".into(),
        access_token: META_TOKEN.into(),
    })
}

/// A network, sources `meta`, `google`, `tiktok`, each with a direct-link campaign
/// and offer of its own, then `tail` (destinations, outbox settings).
fn body(tail: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    let mut out = format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"
macros = {{ payout = "payout", txid = "txid", event = "event", status = "status" }}

[[traffic_sources]]
id = "meta"
kind = "meta"

[[traffic_sources]]
id = "google"
kind = "google"

[[traffic_sources]]
id = "tiktok"
kind = "tiktok"
"#
    );
    for source in ["meta", "google", "tiktok"] {
        out.push_str(&format!(
            r#"
[[offers]]
id = "offer-{source}"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 3.0

[[campaigns]]
id = "camp-{source}"
path = "/lp-{source}"
traffic_source = "{source}"
offers = [{{ offer = "offer-{source}" }}]
origin = {{ landers = "{landers}" }}
direct_linking = true
"#,
            landers = landers.display()
        ));
    }
    out.push_str(
        r#"
[outbox]
backoff_base = "50ms"
backoff_max = "200ms"
poll_interval = "25ms"
max_attempts = 50
"#,
    );
    out.push_str(tail);
    out
}

/// A file holding `secret` (for `*_file` keys).
fn secret_file(dir: &TempDir, name: &str, secret: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

/// A visitor from `source` arrives through /go with `param=value`; returns our click id.
fn click(inst: &Instance, source: &str, param: &str, value: &str) -> String {
    let go = inst.get(
        &format!("/go/offer-{source}?{param}={value}"),
        &[("User-Agent", "Mozilla/5.0 (destinations test)")],
    );
    assert_eq!(go.status, 302, "{}", go.text());
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn postback(inst: &Instance, query: &str) -> Value {
    let r = inst.get(&format!("/postback/cake?{query}&secret={SECRET}"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn outbox(inst: &Instance, state: &str) -> Vec<Value> {
    inst.admin_get(&format!("/api/outbox?state={state}&limit=10000"))
        .json()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

fn wait_outbox(inst: &Instance, state: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let entries = outbox(inst, state);
        if entries.len() >= n || Instant::now() >= deadline {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn dedup_key_of(inst: &Instance, cid: &str) -> String {
    inst.value(
        "SELECT dedup_key FROM conversions WHERE click_id = $1",
        &[&cid],
    )
}

/// How a receiver checks the webhook: HMAC-SHA256 of "{timestamp}.{body}" under the
/// shared key, compared in constant time, and a timestamp within five minutes.
fn verify_webhook(key: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - ts).abs() > 300 {
        return false;
    }
    let Some(hex_sig) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The `[[destinations]]` entry of the Meta fake at `url`, its token in a file under
/// `dir`, batches lingering `linger`.
fn meta_destination(url: &str, dir: &TempDir, linger: &str) -> String {
    format!(
        r#"
[[destinations]]
id = "meta-main"
kind = "meta_capi"
source = "meta"
endpoint = "{url}"
pixel_id = "1234567890"
access_token_file = "{}"
linger = "{linger}"
"#,
        secret_file(dir, "meta-token", META_TOKEN)
    )
}

#[test]
fn one_conversion_reaches_meta_and_the_webhook_with_one_event_id_and_a_verifiable_signature() {
    let meta = meta_fake();
    let hook = FakePlatform::start(Kind::Webhook);
    let tail = format!(
        r#"
[[destinations]]
id = "meta-main"
kind = "meta_capi"
source = "meta"
endpoint = "{meta}"
pixel_id = "1234567890"
access_token_env = "META_TOKEN"
linger = "100ms"

[[destinations]]
id = "hook"
kind = "webhook"
source = "meta"
endpoint = "{hook}/clickstamp"
secret_env = "HOOK_KEY"
"#,
        meta = meta.url(),
        hook = hook.url()
    );
    let inst = Instance::start_with_env(
        &body(&tail),
        &[("META_TOKEN", META_TOKEN), ("HOOK_KEY", HOOK_KEY)],
    );
    let cid = click(&inst, "meta", "fbclid", "IwAR-fb-click-1");
    postback(&inst, &format!("cid={cid}&txid=ORDER-1&payout=12.5"));
    let events = meta.wait_accepted(1, Duration::from_secs(10));
    let hooks = hook.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(
        events.len(),
        1,
        "Meta got the conversion: {:?}",
        meta.requests()
    );
    assert_eq!(hooks.len(), 1, "the webhook got the conversion");
    let key = dedup_key_of(&inst, &cid);
    let e = &events[0];
    assert_eq!(e["event_id"], json!(key));
    assert_eq!(hooks[0]["event_id"], json!(key), "one event id for both");
    assert_eq!(e["event_name"], json!("Purchase"));
    assert_eq!(e["action_source"], json!("website"));
    let click_ms: i64 = inst.value("SELECT ts_ms FROM clicks WHERE click_id = $1", &[&cid]);
    assert_eq!(
        e["user_data"]["fbc"],
        json!(format!("fb.1.{click_ms}.IwAR-fb-click-1"))
    );
    assert_eq!(e["user_data"]["client_ip_address"], json!("127.0.0.1"));
    assert_eq!(
        e["user_data"]["client_user_agent"],
        json!("Mozilla/5.0 (destinations test)")
    );
    assert_eq!(
        e["custom_data"],
        json!({"value": 12.5, "currency": "USD", "order_id": "ORDER-1"})
    );

    // The receiver's side: the signature verifies, and fails for any other body.
    let received = &hook.requests()[0];
    assert_eq!(received.path, "/clickstamp");
    let ts = received.header("X-Clickstamp-Timestamp").unwrap();
    let sig = received.header("X-Clickstamp-Signature").unwrap();
    assert!(verify_webhook(HOOK_KEY, ts, &received.body, sig));
    let mut tampered = received.body.clone();
    tampered.extend_from_slice(b" ");
    assert!(!verify_webhook(HOOK_KEY, ts, &tampered, sig));
    assert!(!verify_webhook("another-key", ts, &received.body, sig));
    let h = &hooks[0];
    assert_eq!(
        (
            h["kind"].clone(),
            h["status"].clone(),
            h["payout"].clone(),
            h["click_id"].clone()
        ),
        (
            json!("conversion"),
            json!("approved"),
            json!(12.5),
            json!(cid)
        )
    );
    assert_eq!(h["source_click_id"], json!("IwAR-fb-click-1"));

    // Each destination is its own outbox entry, named in the API and the metrics.
    let delivered = wait_outbox(&inst, "delivered", 2, Duration::from_secs(5));
    let mut ids: Vec<&str> = delivered
        .iter()
        .filter_map(|e| e["destination_id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["hook", "meta-main"], "{delivered:?}");
    assert_eq!(
        inst.metric(
            "clickstamp_destination_deliveries_total{destination=\"meta-main\",outcome=\"delivered\"}"
        ),
        1.0
    );
}

#[test]
fn twenty_five_hundred_conversions_reach_meta_in_at_most_three_requests() {
    let meta = meta_fake();
    let dir = TempDir::new("dest-secrets");
    let tail = meta_destination(&meta.url(), &dir, "10s");
    let inst = Instance::start(&body(&tail));
    let cid = click(&inst, "meta", "fbclid", "IwAR-bulk");
    // One visitor, 2,500 orders: 2,500 conversions, posted from four threads.
    std::thread::scope(|s| {
        for t in 0..4 {
            let inst = &inst;
            let cid = &cid;
            s.spawn(move || {
                for i in (t..2500).step_by(4) {
                    postback(inst, &format!("cid={cid}&txid=BULK-{i}&payout=1"));
                }
            });
        }
    });
    let events = meta.wait_accepted(2500, Duration::from_secs(60));
    assert_eq!(events.len(), 2500);
    let requests = meta.event_requests();
    assert!(requests.len() <= 3, "{} requests", requests.len());
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        2500,
        "each conversion once, with its own event id"
    );
}

fn google_tail(google: &FakePlatform, dir: &TempDir) -> String {
    format!(
        r#"
[[destinations]]
id = "gads"
kind = "google_ads"
source = "google"
endpoint = "{url}"
customer_id = "123-456-7890"
conversion_action = "987654"
developer_token_file = "{dev}"
client_id_env = "GOOGLE_CLIENT_ID"
client_secret_file = "{client}"
refresh_token_file = "{refresh}"
token_endpoint = "{url}/token"
linger = "500ms"
"#,
        url = google.url(),
        dev = secret_file(dir, "dev", GOOGLE_DEV_TOKEN),
        client = secret_file(dir, "client", GOOGLE_CLIENT_SECRET),
        refresh = secret_file(dir, "refresh", GOOGLE_REFRESH),
    )
}

#[test]
fn a_google_ads_partial_failure_dead_letters_only_the_failing_rows_and_a_rejection_retracts() {
    let google = FakePlatform::start(Kind::GoogleAds {
        customer_id: "1234567890".into(),
        developer_token: GOOGLE_DEV_TOKEN.into(),
        access_token: GOOGLE_ACCESS.into(),
        refresh_token: GOOGLE_REFRESH.into(),
    });
    google.fail_click_id("GCLID-BAD");
    let dir = TempDir::new("dest-secrets");
    let inst = Instance::start_with_env(
        &body(&google_tail(&google, &dir)),
        &[("GOOGLE_CLIENT_ID", "client-1.apps.example")],
    );
    let good1 = click(&inst, "google", "gclid", "GCLID-GOOD-1");
    let bad = click(&inst, "google", "gclid", "GCLID-BAD");
    let good2 = click(&inst, "google", "gbraid", "GBRAID-GOOD-2");
    for cid in [&good1, &bad, &good2] {
        postback(&inst, &format!("cid={cid}&txid=T-{cid}&payout=20"));
    }
    let accepted = google.wait_accepted(2, Duration::from_secs(10));
    let dead = wait_outbox(&inst, "dead", 1, Duration::from_secs(10));
    let delivered = wait_outbox(&inst, "delivered", 2, Duration::from_secs(5));
    assert_eq!(
        accepted.len(),
        2,
        "requests: {:?}; outbox: {:?}",
        google
            .requests()
            .iter()
            .map(|r| (r.path.clone(), r.status))
            .collect::<Vec<_>>(),
        outbox(&inst, "pending")
    );
    assert_eq!(dead.len(), 1, "only the failing row is dead: {dead:?}");
    assert_eq!(dead[0]["click_id"], json!(bad));
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("UNPARSEABLE_GCLID"),
        "the platform's message is kept: {error}"
    );
    assert_eq!(delivered.len(), 2);
    let uploads: Vec<_> = google
        .event_requests()
        .into_iter()
        .filter(|r| r.path.ends_with(":uploadClickConversions"))
        .collect();
    assert_eq!(uploads.len(), 1, "the three rows travelled together");
    let rows = uploads[0].json()["conversions"].clone();
    let good1_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["gclid"] == json!("GCLID-GOOD-1"))
        .unwrap()
        .clone();
    assert_eq!(good1_row["orderId"], json!(dedup_key_of(&inst, &good1)));
    assert_eq!(
        good1_row["conversionAction"],
        json!("customers/1234567890/conversionActions/987654")
    );
    assert_eq!(good1_row["conversionValue"], json!(20.0));
    assert_eq!(good1_row["currencyCode"], json!("USD"));
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["gbraid"] == json!("GBRAID-GOOD-2")));
    assert_eq!(
        google
            .requests()
            .iter()
            .filter(|r| r.path == "/token")
            .count(),
        1,
        "one token, refreshed from the refresh token and reused"
    );

    // A rejection retracts the uploaded conversion by its order id.
    postback(
        &inst,
        &format!("cid={good1}&txid=T-{good1}&payout=20&status=rejected"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let retraction = loop {
        let found = google
            .event_requests()
            .into_iter()
            .find(|r| r.path.ends_with(":uploadConversionAdjustments"));
        if found.is_some() || Instant::now() >= deadline {
            break found.expect("a retraction was uploaded");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let adj = &retraction.json()["conversionAdjustments"][0];
    assert_eq!(adj["adjustmentType"], json!("RETRACTION"));
    assert_eq!(adj["orderId"], json!(dedup_key_of(&inst, &good1)));
    assert_eq!(retraction.status, 200);
}

#[test]
fn a_429_backs_off_for_its_retry_after_and_a_500_is_retried() {
    let meta = meta_fake();
    meta.queue(vec![
        Canned {
            status: 429,
            headers: vec![("Retry-After".into(), "2".into())],
            body: r#"{"error":{"message":"Calls to this api have exceeded the rate limit.","type":"OAuthException","code":4}}"#.into(),
        },
        Canned {
            status: 500,
            headers: Vec::new(),
            body: r#"{"error":{"message":"An unexpected error has occurred.","code":2,"is_transient":true}}"#.into(),
        },
    ]);
    let dir = TempDir::new("dest-secrets");
    let tail = meta_destination(&meta.url(), &dir, "50ms");
    let inst = Instance::start(&body(&tail));
    let cid = click(&inst, "meta", "fbclid", "IwAR-429");
    postback(&inst, &format!("cid={cid}&txid=R-1&payout=5"));
    let events = meta.wait_accepted(1, Duration::from_secs(15));
    assert_eq!(events.len(), 1);
    let requests = meta.event_requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 500, 200]
    );
    let waited = requests[1].at - requests[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 was honoured: retried after {waited:?}"
    );
    assert_eq!(
        requests[0].json()["data"][0]["event_id"],
        requests[2].json()["data"][0]["event_id"]
    );
    let delivered = wait_outbox(&inst, "delivered", 1, Duration::from_secs(5));
    assert_eq!(delivered[0]["attempts"], json!(3));
    assert_eq!(
        inst.metric(
            "clickstamp_destination_deliveries_total{destination=\"meta-main\",outcome=\"retry\"}"
        ),
        2.0
    );
}

#[test]
fn a_refusal_is_dead_lettered_with_the_platforms_message_and_replays() {
    let meta = meta_fake();
    meta.queue(vec![Canned {
        status: 400,
        headers: Vec::new(),
        body: r#"{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,"error_user_msg":"The pixel is not available for this token.","fbtrace_id":"x"}}"#.into(),
    }]);
    let dir = TempDir::new("dest-secrets");
    let tail = meta_destination(&meta.url(), &dir, "50ms");
    let inst = Instance::start(&body(&tail));
    let cid = click(&inst, "meta", "fbclid", "IwAR-400");
    postback(&inst, &format!("cid={cid}&txid=D-1&payout=5"));
    let dead = wait_outbox(&inst, "dead", 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["destination_id"], json!("meta-main"));
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("The pixel is not available for this token"),
        "{error}"
    );
    assert_eq!(meta.event_requests().len(), 1, "a refusal is not retried");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let id = dead[0]["id"].as_i64().unwrap();
    let r = request(
        inst.admin,
        "POST",
        &format!("/api/outbox/{id}/replay"),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let events = meta.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(events.len(), 1, "the replayed dead letter went through");
}

#[test]
fn tiktok_receives_the_conversion_with_its_ttclid_event_id_and_access_token_header() {
    let tiktok = FakePlatform::start(Kind::TikTok {
        pixel_code: "CPIXEL123".into(),
        access_token: TIKTOK_TOKEN.into(),
    });
    let dir = TempDir::new("dest-secrets");
    let tail = format!(
        r#"
[[destinations]]
id = "tt"
kind = "tiktok"
source = "tiktok"
endpoint = "{}"
pixel_code = "CPIXEL123"
access_token_file = "{}"
linger = "50ms"
event_names = {{ signup = "CompleteRegistration" }}
"#,
        tiktok.url(),
        secret_file(&dir, "tt", TIKTOK_TOKEN)
    );
    let inst = Instance::start(&body(&tail));
    let cid = click(&inst, "tiktok", "ttclid", "E.C.P.tt-click-1");
    postback(
        &inst,
        &format!("cid={cid}&txid=TT-1&payout=7.5&event=signup"),
    );
    let events = tiktok.wait_accepted(1, Duration::from_secs(10));
    assert_eq!(events.len(), 1, "{:?}", tiktok.requests());
    let e = &events[0];
    assert_eq!(e["event"], json!("CompleteRegistration"));
    assert_eq!(e["event_id"], json!(dedup_key_of(&inst, &cid)));
    assert_eq!(e["user"]["ttclid"], json!("E.C.P.tt-click-1"));
    assert_eq!(
        e["user"]["user_agent"],
        json!("Mozilla/5.0 (destinations test)")
    );
    assert_eq!(e["properties"]["value"], json!(7.5));
    assert_eq!(e["properties"]["currency"], json!("USD"));
    let delivered = wait_outbox(&inst, "delivered", 1, Duration::from_secs(5));
    assert_eq!(delivered[0]["destination_id"], json!("tt"));
}

#[test]
fn kill_9_mid_batch_still_delivers_each_conversion_at_least_once_with_its_event_id() {
    let meta = meta_fake();
    // The first request is answered only after the node is gone: Meta has the events,
    // the node never learns it.
    meta.queue(vec![Canned {
        status: 200,
        headers: vec![("X-Delay-Ms".into(), "3000".into())],
        body: r#"{"events_received":0}"#.into(),
    }]);
    let dir = TempDir::new("dest-secrets");
    let tail = meta_destination(&meta.url(), &dir, "300ms");
    let mut inst = Instance::start_with(&body(&tail), "outbox_lease = \"2s\"");
    let cid = click(&inst, "meta", "fbclid", "IwAR-kill");
    for i in 0..50 {
        postback(&inst, &format!("cid={cid}&txid=K-{i}&payout=1"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta.event_requests().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!meta.event_requests().is_empty(), "a batch is in flight");
    inst.kill9();
    inst.restart();
    let keys: Vec<String> = inst
        .rows(
            "SELECT dedup_key FROM conversions WHERE click_id = $1",
            &[&cid],
        )
        .iter()
        .map(|r| r.get_string(0))
        .collect();
    assert_eq!(keys.len(), 50);
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        // Accepted events only: those of requests answered after the restart.
        let mut seen: Vec<String> = meta
            .accepted()
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_string))
            .collect();
        seen.sort();
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| seen.binary_search(k).is_err())
            .collect();
        let settled = outbox(&inst, "pending").is_empty();
        if (missing.is_empty() && settled) || Instant::now() >= deadline {
            break missing.len();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(missing, 0, "every conversion reached Meta, by its event id");
    assert_eq!(outbox(&inst, "dead").len(), 0);
    assert!(
        meta.event_requests().len() >= 2,
        "the batch cut off by the kill was sent again"
    );
}

#[test]
fn secrets_never_appear_in_the_log_the_api_or_the_metrics() {
    let meta = meta_fake();
    let hook = FakePlatform::start(Kind::Webhook);
    // A platform that echoes the token in its error (some do, in their messages).
    meta.queue(vec![Canned {
        status: 400,
        headers: Vec::new(),
        body: format!(r#"{{"error":{{"message":"Malformed access token {META_TOKEN}","type":"OAuthException","code":190}}}}"#),
    }]);
    let tail = format!(
        r#"
[[destinations]]
id = "meta-main"
kind = "meta_capi"
source = "meta"
endpoint = "{meta}"
pixel_id = "1234567890"
access_token_env = "META_TOKEN"
linger = "50ms"

[[destinations]]
id = "hook"
kind = "webhook"
source = "meta"
endpoint = "{hook}/in"
secret_env = "HOOK_KEY"
"#,
        meta = meta.url(),
        hook = hook.url()
    );
    let inst = Instance::start_with_env(
        &body(&tail),
        &[("META_TOKEN", META_TOKEN), ("HOOK_KEY", HOOK_KEY)],
    );
    let cid = click(&inst, "meta", "fbclid", "IwAR-secret");
    postback(&inst, &format!("cid={cid}&txid=S-1&payout=1"));
    let dead = wait_outbox(&inst, "dead", 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1);
    assert!(hook.wait_accepted(1, Duration::from_secs(10)).len() == 1);
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("<redacted>"),
        "the echoed token was scrubbed: {error}"
    );
    let mut seen = vec![
        ("log", inst.log()),
        ("metrics", inst.admin_get("/metrics").text()),
    ];
    for state in ["pending", "delivered", "dead"] {
        seen.push((
            "outbox API",
            inst.admin_get(&format!("/api/outbox?state={state}")).text(),
        ));
    }
    seen.push(("stats API", inst.admin_get("/api/stats").text()));
    for (place, text) in &seen {
        for secret in [META_TOKEN, HOOK_KEY] {
            assert!(!text.contains(secret), "a secret in the {place}");
        }
    }
    // The check command validates without printing them either.
    let (code, out, err) = inst.command(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(META_TOKEN) && !err.contains(META_TOKEN));
}

#[test]
fn meta_gets_the_event_id_the_pixel_computed_in_a_real_browser() {
    use clickstamp_e2e::browser::Browser;
    let meta = meta_fake();
    let site = TempDir::new("dest-landers");
    std::fs::write(
        site.0.join("index.html"),
        r#"<!doctype html><html><body><a id="cta" href="/go/offer-meta">Get it</a></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        site.0.join("thanks.html"),
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Thanks</title>
<script>
window.clickstamp = window.clickstamp || function () { (clickstamp.q = clickstamp.q || []).push(arguments); };
clickstamp('conversion', { event: 'purchase', txid: 'ORDER-B', value: 19.5, currency: 'EUR' });
</script>
<script async src="/sdk/clickstamp.min.js"></script>
</head><body><h1>Thank you</h1></body></html>"#,
    )
    .unwrap();
    let secrets = TempDir::new("dest-secrets");
    let token = secret_file(&secrets, "meta-token", META_TOKEN);
    let (landers, meta_url) = (site.0.display().to_string(), meta.url());
    let inst = Instance::start_templated(
        |main| {
            format!(
                r#"
[[networks]]
id = "net"
click_id_param = "cid"
secret = "{SECRET}"

[[traffic_sources]]
id = "meta"
kind = "meta"

[[offers]]
id = "offer-meta"
url = "http://{main}/lp-meta/thanks.html"
network = "net"

[[campaigns]]
id = "camp-meta"
path = "/lp-meta"
traffic_source = "meta"
offers = [{{ offer = "offer-meta" }}]
origin = {{ landers = "{landers}" }}

[pixel]
grace_period = "1s"

[[destinations]]
id = "meta-main"
kind = "meta_capi"
source = "meta"
endpoint = "{meta_url}"
pixel_id = "1234567890"
access_token_file = "{token}"
linger = "50ms"
"#
            )
        },
        "",
    );
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    browser.navigate(&format!(
        "http://{}/lp-meta/?fbclid=IwAR-browser-1",
        inst.main
    ));
    assert!(browser.wait_until(
        "document.readyState === 'complete' && !!document.getElementById('cta')",
        Duration::from_secs(10)
    ));
    browser.eval("setTimeout(() => document.getElementById('cta').click(), 0); true");
    assert!(browser.wait_until(
        "location.pathname === '/lp-meta/thanks.html' && document.readyState === 'complete'",
        Duration::from_secs(10)
    ));
    let events = meta.wait_accepted(1, Duration::from_secs(15));
    assert_eq!(events.len(), 1, "{:?}", meta.requests());
    // The event id the WASM core computed in the page, as its beacon carried it.
    let journal = inst.admin_get("/api/journal?network=pixel").json();
    let beacon: Value =
        serde_json::from_str(journal["entries"][0]["raw_body"].as_str().unwrap()).unwrap();
    let pixel_event_id = beacon["event_id"]
        .as_str()
        .expect("the pixel computed an event id");
    assert_eq!(events[0]["event_id"], json!(pixel_event_id));
    assert_eq!(events[0]["custom_data"]["currency"], json!("EUR"));
    let ua = browser.eval("navigator.userAgent");
    assert_eq!(events[0]["user_data"]["client_user_agent"], ua);
    assert!(events[0]["user_data"]["fbc"]
        .as_str()
        .unwrap()
        .ends_with(".IwAR-browser-1"));
}

#[test]
fn check_names_each_destination_problem_with_its_key_and_fix() {
    let dir = TempDir::new("dest-check");
    let path = dir.0.join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[secrets]\nclick_id_key = \"0123456789abcdef0123\"\nadmin_token = \"0123456789abcdef0123\"\n{}\n{}",
            body(""),
            r#"
[[destinations]]
id = "tt"
kind = "tiktok"
source = "tiktok"
pixel_id = "123"
access_token_env = "CLICKSTAMP_TEST_UNSET_TOKEN"

[[destinations]]
id = "g"
kind = "google_ads"
source = "nowhere"
customer_id = "123-456-7890"

[[destinations]]
id = "h"
kind = "webhook"
source = "meta"
secret_env = "HOOK"
secret_file = "hook.key"
"#
        ),
    )
    .unwrap();
    let out = std::process::Command::new(clickstamp_e2e::binary())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("CLICKSTAMP_TEST_UNSET_TOKEN")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for expected in [
        "destinations[0].pixel_code: no pixel_code",
        "destinations[0].pixel_id: pixel_id is not used by kind = \"tiktok\"",
        "destinations[0].access_token_env: the environment variable CLICKSTAMP_TEST_UNSET_TOKEN is not set",
        "destinations[1].source: unknown traffic source \"nowhere\"",
        "destinations[1].conversion_action: no conversion_action",
        "destinations[1].developer_token_env: no developer_token",
        "destinations[2].endpoint: a webhook needs the URL to POST to",
        "destinations[2].secret_env: both secret_env and secret_file are set",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.contains("fix:"), "{text}");
}
