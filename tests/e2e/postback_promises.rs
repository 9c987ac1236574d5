//! Issue 20: the postback promises of the README that had no test, each through real
//! HTTP against the real binary. HMAC signatures are computed here with an HMAC-SHA256
//! of the test's own (pinned by RFC 4231), never with the server's code.

use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{request, FakeSource, Instance, Response};
use clickstamp_plugins::query::{first_value, parse_query};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HMAC_KEY: &str = "e2e-hmac-key-of-the-signed-network";

/// One network per verification style, an offer and a campaign for each, and a
/// traffic source whose relays land on `relay` (when given). `extra` is appended.
fn config(relay: Option<&FakeSource>, extra: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    let postback_url = relay.map_or(String::new(), |s| {
        format!(
            "postback_url = \"http://{}/conv?clickid={{source_click_id}}&payout={{payout}}&currency={{currency}}&txid={{txid}}&status={{status}}&event_id={{event_id}}\"",
            s.addr
        )
    });
    format!(
        r#"
[[networks]]
id = "plain"
kind = "cake"
macros = {{ currency = "currency", status = "status", event = "event" }}

[[networks]]
id = "signed"
kind = "cake"
macros = {{ currency = "currency" }}
hmac_key = "{HMAC_KEY}"
hmac_window = "60s"

[[networks]]
id = "walled"
kind = "cake"
allow_ips = ["203.0.113.0/24", "2001:db8::/32"]

[[networks]]
id = "local"
kind = "cake"
allow_ips = ["127.0.0.1"]

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
{postback_url}

[[offers]]
id = "offer_plain"
url = "https://plain.example/offer?a=1"
network = "plain"
payout = 3.0
currency = "USD"

[[offers]]
id = "offer_signed"
url = "https://signed.example/offer?a=1"
network = "signed"

[[offers]]
id = "offer_walled"
url = "https://walled.example/offer?a=1"
network = "walled"

[[offers]]
id = "offer_local"
url = "https://local.example/offer?a=1"
network = "local"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer_plain" }}, {{ offer = "offer_signed", weight = 0 }}, {{ offer = "offer_walled", weight = 0 }}, {{ offer = "offer_local", weight = 0 }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"

{extra}
"#,
        landers = landers.display()
    )
}

/// A visitor lands on `/lp` with the source's click id `tsid` and goes to `offer`;
/// returns our click id.
fn click_via(inst: &Instance, tsid: &str, offer: &str) -> String {
    let landing = inst.get(&format!("/lp?tsid={tsid}"), &[]);
    let cookie = landing.cookie().expect("click cookie");
    let go = inst.get(&format!("/go/{offer}"), &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302, "{}", go.text());
    cookie.split_once('=').unwrap().1.to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn journal(inst: &Instance, filter: &str) -> Vec<serde_json::Value> {
    let r = inst.admin_get(&format!("/api/journal?{filter}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

fn conversions(inst: &Instance) -> i64 {
    inst.count("SELECT count(*) FROM conversions", &[])
}

/// `(payout, currency, txid, status)` of the one conversion with `txid`.
fn stored(inst: &Instance, txid: &str) -> (f64, Option<String>, String, String) {
    let r = inst.row(
        "SELECT payout, currency, txid, status FROM conversions WHERE txid = $1",
        &[&txid],
    );
    (
        r.get_f64(0),
        r.get_opt_str(1).map(str::to_string),
        r.get_string(2),
        r.get_string(3),
    )
}

/// Assert a refusal's status and reason, and that it tells a human why.
fn assert_refused(r: &Response, status: u16, reason: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let j = r.json();
    assert_eq!(j["error"], reason, "{what}: {j}");
    assert!(
        j["message"].as_str().is_some_and(|m| m.len() > 10),
        "{what}: a message a human can act on: {j}"
    );
}

fn post(inst: &Instance, target: &str, content_type: &str, body: &[u8]) -> Response {
    request(
        inst.main,
        "POST",
        target,
        &[("Content-Type", content_type)],
        body,
    )
    .unwrap()
}

// ---- An HMAC-SHA256 of the test's own (FIPS 180-4, RFC 2104) --------------------

fn sha256(message: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut data = message.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    for block in data.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = sha256(&[pad(0x36), message.to_vec()].concat());
    let outer = sha256(&[pad(0x5c), inner.to_vec()].concat());
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The README's canonical form for pairs whose keys and values are all RFC 3986
/// unreserved characters (what these tests send): `key=value`, sorted, joined by `&`.
fn canonical(pairs: &[(&str, &str)]) -> String {
    for (k, v) in pairs {
        assert!(
            format!("{k}{v}")
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
            "canonical() only handles unreserved characters: {k}={v}"
        );
    }
    let mut parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.sort();
    parts.join("&")
}

/// `pairs` as a query string signed with `key` in `sig`.
fn signed_query(key: &str, pairs: &[(&str, &str)]) -> String {
    let sig = hmac_sha256_hex(key.as_bytes(), canonical(pairs).as_bytes());
    let mut query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.push(format!("sig={sig}"));
    query.join("&")
}

#[test]
fn the_tests_hmac_matches_rfc_4231() {
    // RFC 4231 test cases 2 and 6 (a key longer than a block).
    assert_eq!(
        hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hmac_sha256_hex(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        ),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

// ---- HMAC with a timestamp window ------------------------------------------------

#[test]
fn hmac_signed_postbacks_are_accepted_inside_the_window_and_refused_outside_it() {
    let inst = Instance::start(&config(None, ""));
    let cid = click_via(&inst, "H", "offer_signed");
    let now = now_secs();
    let ts = now.to_string();
    let send = |query: &str| inst.get(&format!("/postback/signed?{query}"), &[]);

    // Inside the window, in seconds and in milliseconds.
    let r = send(&signed_query(
        HMAC_KEY,
        &[
            ("cid", &cid),
            ("payout", "2.5"),
            ("txid", "H1"),
            ("ts", &ts),
        ],
    ));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let ts_ms = (now * 1000).to_string();
    let r = send(&signed_query(
        HMAC_KEY,
        &[("cid", &cid), ("txid", "H2"), ("ts", &ts_ms)],
    ));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    // Parameter order does not matter: the canonical form is sorted.
    let sig = hmac_sha256_hex(
        HMAC_KEY.as_bytes(),
        canonical(&[("cid", &cid), ("txid", "H3"), ("ts", &ts)]).as_bytes(),
    );
    let r = send(&format!("sig={sig}&ts={ts}&txid=H3&cid={cid}"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    // A signed form body: the body's pairs are signed like the query's.
    let body = signed_query(HMAC_KEY, &[("cid", &cid), ("txid", "H4"), ("ts", &ts)]);
    let r = post(
        &inst,
        "/postback/signed",
        "application/x-www-form-urlencoded",
        body.as_bytes(),
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());

    // Outside the 60 s window, either side of now: a replay, or a wrong clock.
    for (skew, what) in [(-120i64, "two minutes old"), (120, "two minutes ahead")] {
        let ts = (now as i64 + skew).to_string();
        let r = send(&signed_query(
            HMAC_KEY,
            &[("cid", &cid), ("txid", "H-stale"), ("ts", &ts)],
        ));
        assert_refused(&r, 401, "stale_timestamp", what);
        assert!(
            r.json()["message"].as_str().unwrap().contains("60s"),
            "names the window: {}",
            r.text()
        );
    }
    // Correctly signed but without a timestamp, or with one that is not a time.
    let r = send(&signed_query(
        HMAC_KEY,
        &[("cid", &cid), ("txid", "H-nots")],
    ));
    assert_refused(&r, 401, "missing_timestamp", "no ts");
    let r = send(&signed_query(
        HMAC_KEY,
        &[("cid", &cid), ("txid", "H-badts"), ("ts", "yesterday")],
    ));
    assert_refused(&r, 401, "missing_timestamp", "ts=yesterday");
    // Signed with another key; signed, then tampered with; not signed at all.
    let r = send(&signed_query(
        "not-the-networks-key",
        &[("cid", &cid), ("txid", "H-wrongkey"), ("ts", &ts)],
    ));
    assert_refused(&r, 401, "bad_signature", "another key");
    let tampered = signed_query(
        HMAC_KEY,
        &[
            ("cid", &cid),
            ("payout", "1"),
            ("txid", "H-tamper"),
            ("ts", &ts),
        ],
    )
    .replace("payout=1&", "payout=1000&");
    let r = send(&tampered);
    assert_refused(&r, 401, "bad_signature", "tampered payout");
    let r = send(&format!("cid={cid}&txid=H-unsigned&ts={ts}"));
    assert_refused(&r, 401, "missing_signature", "unsigned");
    let r = send(&format!("cid={cid}&txid=H-nothex&ts={ts}&sig=zz"));
    assert_refused(&r, 401, "bad_signature", "sig not hex");

    assert_eq!(conversions(&inst), 4, "only the four genuine ones");
    let (payout, _, _, _) = stored(&inst, "H1");
    assert_eq!(payout, 2.5);
    let refused = journal(&inst, "network=signed&outcome=rejected&limit=100");
    let reasons: Vec<&str> = refused
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for (reason, n) in [
        ("stale_timestamp", 2),
        ("missing_timestamp", 2),
        ("bad_signature", 3),
        ("missing_signature", 1),
    ] {
        assert_eq!(
            reasons.iter().filter(|r| **r == reason).count(),
            n,
            "{reason}: {reasons:?}"
        );
        assert_eq!(
            inst.metric(&format!(
                "clickstamp_postback_rejections_total{{network=\"signed\",reason=\"{reason}\"}}"
            )),
            n as f64,
            "{reason}"
        );
    }
}

/// Run the real `clickstamp` binary against `inst`'s config; returns stdout.
fn cli(inst: &Instance, args: &[&str]) -> String {
    let out = std::process::Command::new(clickstamp_e2e::binary())
        .args(args)
        .arg("--config")
        .arg(&inst.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn postback_url_and_postback_test_produce_signatures_that_verify() {
    let inst = Instance::start(&config(None, ""));

    // postback-url: the URL for the network's dashboard. The network fills the macros,
    // adds its timestamp and signs: done here as a network would, with our own HMAC.
    let url = cli(&inst, &["postback-url", "--network", "signed"]);
    let url = url.trim();
    let (base, query) = url.split_once('?').expect("a query string");
    assert_eq!(
        base,
        format!("http://{}/postback/signed", inst.main),
        "{url}"
    );
    let cid = click_via(&inst, "U", "offer_signed");
    let fill = |value: &str| -> String {
        match value {
            "#s2#" => cid.clone(),
            "#price#" => "4.5".into(),
            "#currency#" => "EUR".into(),
            "#tid#" => "URL-1".into(),
            other => panic!("an unexpected macro {other} in {url}"),
        }
    };
    let filled: Vec<(String, String)> = parse_query(query)
        .into_iter()
        .map(|(k, v)| (k, fill(&v)))
        .collect();
    let ts = now_secs().to_string();
    let mut pairs: Vec<(&str, &str)> = filled
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("ts", &ts));
    let r = inst.get(
        &format!("/postback/signed?{}", signed_query(HMAC_KEY, &pairs)),
        &[],
    );
    assert_eq!(r.json()["status"], "accepted", "{url}: {}", r.text());
    assert_eq!(
        stored(&inst, "URL-1"),
        (4.5, Some("EUR".into()), "URL-1".into(), "approved".into())
    );

    // postback-test: mints a click, signs, sends it and its duplicate.
    let run = cli(&inst, &["postback-test", "--network", "signed"]);
    assert!(
        run.contains("ok: accepted once, duplicate recognised"),
        "{run}"
    );
    let sent = run
        .lines()
        .find_map(|l| l.strip_prefix("postback:"))
        .expect("the postback URL is printed")
        .trim();
    let (_, query) = sent.split_once('?').unwrap();
    let sent_pairs = parse_query(query);
    let sig = first_value(&sent_pairs, "sig").expect("signed").to_string();
    let ts = first_value(&sent_pairs, "ts").expect("timestamped");
    let age = now_secs().abs_diff(ts.parse::<u64>().unwrap());
    assert!(age < 30, "a current Unix time in seconds: {ts}");
    let unsigned: Vec<(&str, &str)> = sent_pairs
        .iter()
        .filter(|(k, _)| k != "sig")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        sig,
        hmac_sha256_hex(HMAC_KEY.as_bytes(), canonical(&unsigned).as_bytes()),
        "the signature is the README's HMAC of the canonical form: {sent}"
    );
    let txid = first_value(&sent_pairs, "txid").unwrap();
    let (payout, currency, _, _) = stored(&inst, txid);
    assert_eq!((payout, currency.as_deref()), (1.23, Some("USD")), "{sent}");
    // The signature is checked, not merely present: the same URL with another payout
    // is refused.
    let forged = query.replace("payout=1.23", "payout=9.99");
    assert_ne!(forged, query);
    let r = inst.get(&format!("/postback/signed?{forged}"), &[]);
    assert_refused(&r, 401, "bad_signature", "postback-test's URL, tampered");
    assert_eq!(conversions(&inst), 2);
}

// ---- IP allowlists and the client IP header --------------------------------------

#[test]
fn a_network_with_an_ip_allowlist_refuses_other_addresses_with_403() {
    let inst = Instance::start(&config(None, ""));
    let cid = click_via(&inst, "IP", "offer_walled");
    let r = inst.get(&format!("/postback/walled?cid={cid}&txid=W1"), &[]);
    assert_refused(&r, 403, "ip_not_allowed", "127.0.0.1 is outside the list");
    assert!(r.json()["message"].as_str().unwrap().contains("127.0.0.1"));
    // Without trusted proxies configured, a forwarding header changes nothing.
    let r = inst.get(
        &format!("/postback/walled?cid={cid}&txid=W2"),
        &[("X-Forwarded-For", "203.0.113.7")],
    );
    assert_refused(&r, 403, "ip_not_allowed", "no client_ip_header configured");
    let entries = journal(&inst, "reason=ip_not_allowed");
    assert_eq!(entries.len(), 2);
    assert_eq!(
        inst.metric(
            r#"clickstamp_postback_rejections_total{network="walled",reason="ip_not_allowed"}"#
        ),
        2.0
    );
    // An allowlist holding the address accepts it.
    let local = click_via(&inst, "IP2", "offer_local");
    let r = inst.get(&format!("/postback/local?cid={local}&txid=L1"), &[]);
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(conversions(&inst), 1);
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_decides_the_allowlist() {
    let inst = Instance::start_with_server(
        &config(None, ""),
        "client_ip_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    let cid = click_via(&inst, "XFF", "offer_walled");
    let send = |txid: &str, xff: Option<&str>| {
        let headers: Vec<(&str, &str)> = xff.map(|v| ("X-Forwarded-For", v)).into_iter().collect();
        inst.get(&format!("/postback/walled?cid={cid}&txid={txid}"), &headers)
    };
    let r = send("X1", Some("203.0.113.7"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    // The last hop is the one the trusted proxy wrote; an address the network put
    // before it proves nothing.
    let r = send("X2", Some("198.51.100.9, 2001:db8::5"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let r = send("X3", Some("203.0.113.7, 198.51.100.9"));
    assert_refused(&r, 403, "ip_not_allowed", "forwarded 198.51.100.9");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("198.51.100.9"));
    // Without the header the proxy itself (127.0.0.1) is the client: not allowed.
    let r = send("X4", None);
    assert_refused(&r, 403, "ip_not_allowed", "no header");
    assert_eq!(conversions(&inst), 2);
    let accepted = journal(&inst, "network=walled&outcome=accepted");
    let mut ips: Vec<&str> = accepted
        .iter()
        .map(|e| e["remote_ip"].as_str().unwrap())
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        vec!["2001:db8::5", "203.0.113.7"],
        "journalled as the client"
    );
}

#[test]
fn a_forwarding_header_from_an_untrusted_peer_is_ignored_by_the_allowlist() {
    // The header is configured, but only 10.0.0.0/8 may set it; the test connects from
    // 127.0.0.1, so it is the client whatever the header claims.
    let inst = Instance::start_with_server(
        &config(None, ""),
        "client_ip_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
    );
    let walled = click_via(&inst, "UT", "offer_walled");
    let r = inst.get(
        &format!("/postback/walled?cid={walled}&txid=U1"),
        &[("X-Forwarded-For", "203.0.113.7")],
    );
    assert_refused(&r, 403, "ip_not_allowed", "spoofed header");
    assert!(r.json()["message"].as_str().unwrap().contains("127.0.0.1"));
    // ...and a spoofed address cannot lock the real client out either.
    let local = click_via(&inst, "UT2", "offer_local");
    let r = inst.get(
        &format!("/postback/local?cid={local}&txid=U2"),
        &[("X-Forwarded-For", "203.0.113.7")],
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(conversions(&inst), 1);
}

// ---- Field refusals, bodies, campaigns -------------------------------------------

#[test]
fn values_too_long_bad_currencies_and_unknown_statuses_are_refused_with_400() {
    let inst = Instance::start(&config(None, ""));
    let cid = click_via(&inst, "F", "offer_plain");
    let long = "t".repeat(1025);
    let cases = [
        (format!("txid={long}"), "value_too_long", "txid"),
        (format!("txid=T&event={long}"), "value_too_long", "event"),
        ("txid=T&currency=US".to_string(), "bad_currency", "US"),
        ("txid=T&currency=EURO".to_string(), "bad_currency", "EURO"),
        ("txid=T&currency=U5D".to_string(), "bad_currency", "U5D"),
        ("txid=T&status=maybe".to_string(), "bad_status", "maybe"),
        (
            "txid=T&status=approvedd".to_string(),
            "bad_status",
            "approvedd",
        ),
    ];
    for (query, reason, named) in &cases {
        let r = inst.get(&format!("/postback/plain?cid={cid}&{query}"), &[]);
        assert_refused(&r, 400, reason, reason);
        assert!(
            r.json()["message"].as_str().unwrap().contains(named),
            "names {named}: {}",
            r.text()
        );
    }
    assert_eq!(conversions(&inst), 0);
    for (reason, n) in [
        ("value_too_long", 2),
        ("bad_currency", 3),
        ("bad_status", 2),
    ] {
        assert_eq!(
            journal(&inst, &format!("reason={reason}")).len(),
            n,
            "{reason}"
        );
        assert_eq!(
            inst.metric(&format!(
                "clickstamp_postback_rejections_total{{network=\"plain\",reason=\"{reason}\"}}"
            )),
            n as f64,
            "{reason}"
        );
    }
    // At the limits: 1024 bytes, a lower-case code, a known status word in any case.
    let longest = "t".repeat(1024);
    let r = inst.get(
        &format!("/postback/plain?cid={cid}&txid={longest}&currency=eur&status=Pending"),
        &[],
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let (_, currency, txid, status) = stored(&inst, &longest);
    assert_eq!(
        (currency.as_deref(), txid.len(), status.as_str()),
        (Some("EUR"), 1024, "pending")
    );
}

#[test]
fn form_and_json_bodies_reach_the_store_and_the_relay_as_parsed() {
    let source = FakeSource::start();
    let inst = Instance::start(&config(Some(&source), ""));
    let form_click = click_via(&inst, "SRC-FORM", "offer_plain");
    let json_click = click_via(&inst, "SRC-JSON", "offer_plain");
    let text_click = click_via(&inst, "SRC-TEXT", "offer_plain");

    let form = format!(
        "cid={form_click}&payout=1.75&currency=eur&txid=F+1%2Fa&status=pending&note=ignored"
    );
    let r = post(
        &inst,
        "/postback/plain",
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    // A number payout, nested values skipped, a charset parameter on the type.
    let json = format!(
        r#"{{"cid":"{json_click}","payout":2.25,"currency":"GBP","txid":"J-1","status":"approved","extra":{{"x":1}}}}"#
    );
    let r = post(
        &inst,
        "/postback/plain",
        "application/json; charset=utf-8",
        json.as_bytes(),
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    // A JSON payout sent as a string, and no currency: the offer's default applies.
    let json = format!(r#"{{"cid":"{text_click}","payout":"3.10","txid":"J-2"}}"#);
    let r = post(
        &inst,
        "/postback/plain",
        "application/json",
        json.as_bytes(),
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());

    assert_eq!(
        stored(&inst, "F 1/a"),
        (1.75, Some("EUR".into()), "F 1/a".into(), "pending".into())
    );
    assert_eq!(
        stored(&inst, "J-1"),
        (2.25, Some("GBP".into()), "J-1".into(), "approved".into())
    );
    assert_eq!(
        stored(&inst, "J-2"),
        (3.1, Some("USD".into()), "J-2".into(), "approved".into())
    );

    let got = source.wait_for(Duration::from_secs(10), |r| r.len() >= 3);
    assert_eq!(got.len(), 3, "{got:?}");
    let relay = |clickid: &str| {
        let line = got
            .iter()
            .find(|r| r.contains(&format!("clickid={clickid}&")))
            .unwrap_or_else(|| panic!("no relay for {clickid}: {got:?}"));
        parse_query(line.split_once('?').unwrap().1)
    };
    for (clickid, payout, currency, txid, status) in [
        ("SRC-FORM", "1.75", "EUR", "F 1/a", "pending"),
        ("SRC-JSON", "2.25", "GBP", "J-1", "approved"),
        ("SRC-TEXT", "3.1", "USD", "J-2", "approved"),
    ] {
        let q = relay(clickid);
        assert_eq!(first_value(&q, "payout"), Some(payout), "{clickid}: {q:?}");
        assert_eq!(first_value(&q, "currency"), Some(currency), "{clickid}");
        assert_eq!(first_value(&q, "txid"), Some(txid), "{clickid}");
        assert_eq!(first_value(&q, "status"), Some(status), "{clickid}");
    }
    // The txid with a space and a slash travels as one escaped query value.
    assert!(got.iter().any(|r| r.contains("txid=F%201%2Fa&")), "{got:?}");
}

#[test]
fn a_body_of_an_unsupported_type_is_refused_with_415_and_journalled() {
    let inst = Instance::start(&config(None, ""));
    let cid = click_via(&inst, "B", "offer_plain");
    for ctype in ["application/xml", "multipart/form-data; boundary=x"] {
        let body = format!("<postback><cid>{cid}</cid></postback>");
        let r = post(&inst, "/postback/plain", ctype, body.as_bytes());
        assert_refused(&r, 415, "unsupported_body", ctype);
        assert!(r.json()["journal_id"].as_i64().is_some());
    }
    let entries = journal(&inst, "reason=unsupported_body");
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0]["content_type"],
        "multipart/form-data; boundary=x"
    );
    assert_eq!(conversions(&inst), 0);
}

#[test]
fn a_click_of_a_campaign_no_longer_configured_is_unknown_campaign_404() {
    let campaign = |id: &str, path: &str| {
        format!(
            "[[campaigns]]\nid = \"{id}\"\npath = \"{path}\"\ntraffic_source = \"src\"\noffers = [{{ offer = \"offer_plain\" }}]\norigin = {{ landers = \"{}\" }}\n",
            workspace_root().join("config/demo/landers").display()
        )
    };
    let mut inst = Instance::start(&config(None, &campaign("retired", "/old")));
    let landing = inst.get("/old?tsid=R", &[]);
    let cid = landing
        .cookie()
        .expect("click cookie")
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    // The operator removes the campaign; the network reports a conversion later.
    let config_text = std::fs::read_to_string(&inst.config_path).unwrap();
    let without = config_text.replace(&campaign("retired", "/old"), "");
    assert_ne!(without, config_text);
    std::fs::write(&inst.config_path, without).unwrap();
    inst.kill9();
    inst.restart();
    let r = inst.get(&format!("/postback/plain?cid={cid}&txid=R1"), &[]);
    assert_refused(&r, 404, "unknown_campaign", "campaign removed");
    assert!(r.json()["message"].as_str().unwrap().contains("retired"));
    assert_eq!(journal(&inst, "reason=unknown_campaign").len(), 1);
    assert_eq!(conversions(&inst), 0);
}

#[test]
fn a_click_outside_its_campaigns_attribution_window_is_expired_410() {
    // `camp` keeps its clicks 1 s; another campaign keeps them 30 days, so the click id
    // itself is still valid (its MAC age is checked against the longest window) and it
    // is the campaign's own window that refuses it.
    let long_lived = format!(
        "[[campaigns]]\nid = \"longlived\"\npath = \"/long\"\ntraffic_source = \"src\"\noffers = [{{ offer = \"offer_plain\" }}]\norigin = {{ landers = \"{}\" }}\nattribution_window = \"30d\"\n",
        workspace_root().join("config/demo/landers").display()
    );
    let body = config(None, "").replace(
        "attribution_window = \"30d\"",
        "attribution_window = \"1s\"",
    ) + &long_lived;
    let inst = Instance::start(&body);
    let cid = click_via(&inst, "E", "offer_plain");
    std::thread::sleep(Duration::from_millis(1300));
    let r = inst.get(&format!("/postback/plain?cid={cid}&txid=E1"), &[]);
    assert_refused(&r, 410, "expired", "1.3 s after a click with a 1 s window");
    assert!(r.json()["message"].as_str().unwrap().contains("camp"));
    // A fresh click of the same campaign converts.
    let fresh = click_via(&inst, "E2", "offer_plain");
    let r = inst.get(&format!("/postback/plain?cid={fresh}&txid=E2"), &[]);
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(conversions(&inst), 1);
}

#[test]
fn one_conversion_per_click_and_event_when_multiple_conversions_is_off() {
    let source = FakeSource::start();
    let body = config(Some(&source), "").replace(
        "payout = 3.0\ncurrency = \"USD\"",
        "payout = 3.0\ncurrency = \"USD\"\nmultiple_conversions = false",
    );
    assert!(body.contains("multiple_conversions = false"));
    let inst = Instance::start(&body);
    let cid = click_via(&inst, "SRC-ONCE", "offer_plain");
    let send = |q: &str| inst.get(&format!("/postback/plain?cid={cid}&{q}"), &[]);
    assert_eq!(send("txid=M1&payout=5").json()["status"], "accepted");
    // Another txid of the same event is the same conversion: a duplicate, not a rebill.
    let r = send("txid=M2&payout=7");
    assert_eq!(r.json()["status"], "duplicate", "{}", r.text());
    assert_eq!(send("payout=7").json()["status"], "duplicate");
    // Another event is another conversion.
    assert_eq!(send("txid=M3&event=upsell").json()["status"], "accepted");
    assert_eq!(conversions(&inst), 2);
    let (payout, _, _, _) = stored(&inst, "M1");
    assert_eq!(payout, 5.0, "the duplicate did not overwrite the first");
    let got = source.wait_for(Duration::from_secs(10), |r| r.len() >= 2);
    std::thread::sleep(Duration::from_millis(300)); // a third relay would arrive by now
    let got = if got.len() >= 2 {
        source.received()
    } else {
        got
    };
    assert_eq!(got.len(), 2, "one relay per conversion: {got:?}");
    assert!(got.iter().any(|r| r.contains("txid=M1&")), "{got:?}");
    assert!(!got.iter().any(|r| r.contains("txid=M2&")), "{got:?}");
}

// ---- The store failing -----------------------------------------------------------

#[test]
fn a_postback_the_store_cannot_write_is_answered_503_and_never_acknowledged() {
    if clickstamp_e2e::skip_on_postgres("holds the SQLite file's write lock") {
        return;
    }
    let source = FakeSource::start();
    let inst = Instance::start(&config(Some(&source), ""));
    let cid = click_via(&inst, "SRC-503", "offer_plain");
    // Another process holds SQLite's write lock (an operator's `sqlite3` shell in the
    // middle of a transaction, say) past the writer's busy timeout, so the store's
    // writes fail for real. (Making the file read-only does not do it: the server's
    // descriptors are already open, and the tests may run as root.)
    let blocker = rusqlite::Connection::open(inst.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let r = inst.get(&format!("/postback/plain?cid={cid}&payout=2&txid=S1"), &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], "store_unavailable", "{j}");
    assert_ne!(j["status"], "accepted");
    assert!(j["journal_id"].is_null(), "not journalled either: {j}");
    assert!(j["message"].as_str().unwrap().contains("retry"), "{j}");
    assert!(started.elapsed() < Duration::from_secs(25));
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);

    // Nothing of it was stored: no conversion, no journal row, no relay.
    assert_eq!(conversions(&inst), 0);
    assert!(journal(&inst, "network=plain").is_empty());
    assert_eq!(
        inst.metric(r#"clickstamp_postbacks_total{network="plain",outcome="store_unavailable"}"#),
        1.0
    );
    assert!(inst.metric("clickstamp_store_errors_total") >= 1.0);
    assert!(inst.log().contains("postback not stored"), "logged");
    std::thread::sleep(Duration::from_millis(300));
    assert!(source.received().is_empty());

    // The network retries once the store is back: accepted once, relayed once.
    let r = inst.get(&format!("/postback/plain?cid={cid}&payout=2&txid=S1"), &[]);
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(conversions(&inst), 1);
    let got = source.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
}

#[test]
fn a_signed_postback_replays_as_of_its_arrival_after_its_window_has_passed() {
    let body = config(None, "").replace("hmac_window = \"60s\"", "hmac_window = \"2s\"");
    let mut inst = Instance::start(&body);
    // The click went to the plain network's offer; the signed network reports it.
    let cid = click_via(&inst, "RP", "offer_plain");
    let ts = now_secs().to_string();
    let query = signed_query(
        HMAC_KEY,
        &[("cid", &cid), ("payout", "6"), ("txid", "RP1"), ("ts", &ts)],
    );
    let r = inst.get(&format!("/postback/signed?{query}"), &[]);
    assert_refused(&r, 409, "network_mismatch", "signed, other network's click");
    let journal_id = r.json()["journal_id"].as_i64().unwrap();
    // The operator allows cross-network postbacks; by the time of the replay the
    // signature's timestamp is long outside the 2 s window.
    let config_text = std::fs::read_to_string(&inst.config_path).unwrap();
    std::fs::write(
        &inst.config_path,
        format!("{config_text}\n[postbacks]\nallow_cross_network = true\n"),
    )
    .unwrap();
    inst.kill9();
    inst.restart();
    std::thread::sleep(Duration::from_millis(3100));
    let r = inst.get(&format!("/postback/signed?{query}"), &[]);
    assert_refused(
        &r,
        401,
        "stale_timestamp",
        "the same request sent again now",
    );
    let auth = format!("Bearer {}", clickstamp_e2e::instance::ADMIN_TOKEN);
    let r = request(
        inst.admin,
        "POST",
        &format!("/api/journal/{journal_id}/replay"),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["status"], "accepted", "{}", r.text());
    let (payout, _, _, _) = stored(&inst, "RP1");
    assert_eq!(payout, 6.0);
}

#[test]
fn postbacks_queued_behind_a_held_write_lock_are_all_answered_503_promptly() {
    if clickstamp_e2e::skip_on_postgres("holds the SQLite file's write lock") {
        return;
    }
    let inst = Instance::start(&config(None, ""));
    let cids: Vec<String> = (0..4)
        .map(|i| click_via(&inst, &format!("Q{i}"), "offer_plain"))
        .collect();
    let blocker = rusqlite::Connection::open(inst.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let main = inst.main;
    let answers: Vec<(u16, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = cids
            .iter()
            .map(|cid| {
                s.spawn(move || {
                    let target = format!("/postback/plain?cid={cid}&payout=2&txid=Q");
                    let r = clickstamp_e2e::get(main, &target, &[]);
                    (r.status, started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    blocker.execute_batch("ROLLBACK").unwrap();
    for (status, after) in &answers {
        assert_eq!(*status, 503, "{answers:?}");
        // One busy timeout (5 s) per batch, not one per queued write: the fourth
        // network used to wait 30 s for its 503.
        assert!(*after < Duration::from_secs(16), "{answers:?}");
    }
}
