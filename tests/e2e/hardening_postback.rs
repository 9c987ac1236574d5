//! Issue 14, the postback pipeline: hostile payouts, invalid UTF-8, postbacks through
//! the wrong network, journal floods, secrets in the journal, stray methods and
//! unparseable admin filters. Each test fails on the code before the fix.

use clickstamp_e2e::instance::{workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::{request, Instance};

const SECRET: &str = "network-secret-hardening-7f3a";

/// Two networks, an offer of each, and two campaigns: `/lp` (both offers) and `/solo`
/// (only CAKE's). `extra` is appended (e.g. a `[postbacks]` table).
fn config(extra: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"
macros = {{ status = "status" }}

[[networks]]
id = "hasoffers"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "offer_cake"
url = "https://cake.example/offer?a=1"
network = "cake"
payout = 3.0

[[offers]]
id = "offer_ho"
url = "https://ho.example/offer?a=1"
network = "hasoffers"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer_cake" }}, {{ offer = "offer_ho" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"

[[campaigns]]
id = "solo"
path = "/solo"
traffic_source = "src"
offers = [{{ offer = "offer_cake" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"

{extra}
"#,
        landers = landers.display()
    )
}

/// A visitor lands on `/lp` and goes to `offer`; returns our click id.
fn click_via(inst: &Instance, offer: &str) -> String {
    let landing = inst.get("/lp?tsid=T", &[]);
    let cookie = landing.cookie().expect("click cookie");
    let go = inst.get(&format!("/go/{offer}"), &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302);
    let location = go.header("location").unwrap();
    let click = cookie.split_once('=').unwrap().1.to_string();
    assert!(location.contains(&click), "{location}");
    click
}

/// A landing click on `path` without any `/go`.
fn landing_click(inst: &Instance, path: &str) -> String {
    let landing = inst.get(&format!("{path}?tsid=T"), &[]);
    landing
        .cookie()
        .expect("click cookie")
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

fn cake(inst: &Instance, query: &str) -> clickstamp_e2e::Response {
    inst.get(&format!("/postback/cake?{query}&secret={SECRET}"), &[])
}

fn conversions(inst: &Instance) -> i64 {
    inst.count("SELECT count(*) FROM conversions", &[])
}

fn journal(inst: &Instance, filter: &str) -> Vec<serde_json::Value> {
    let r = inst.admin_get(&format!("/api/journal?{filter}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

#[test]
fn absurd_negative_and_ambiguous_payouts_are_refused_naming_the_limit() {
    let inst = Instance::start(&config(""));
    let cid = click_via(&inst, "offer_cake");
    for (payout, names_limit) in [
        ("1e308", true),
        ("1e23", true),
        ("1000000.01", true),
        ("-1000", false),
        ("NaN", false),
        ("inf", false),
        ("1%2C500", false),
    ] {
        let r = cake(&inst, &format!("cid={cid}&payout={payout}&txid=T-{payout}"));
        assert_eq!(r.status, 400, "payout={payout}: {}", r.text());
        let j = r.json();
        assert_eq!(j["error"], "bad_payout", "payout={payout}");
        let message = j["message"].as_str().unwrap();
        if names_limit {
            assert!(message.contains("1000000"), "payout={payout}: {message}");
        }
        if payout == "1%2C500" {
            assert!(message.contains("ambiguous"), "{message}");
        }
    }
    assert_eq!(conversions(&inst), 0, "no absurd payout was stored");
    assert_eq!(journal(&inst, "reason=bad_payout").len(), 7);
    assert_eq!(
        inst.metric(r#"clickstamp_postback_rejections_total{network="cake",reason="bad_payout"}"#),
        7.0
    );

    // The limit itself is fine; a reversal may carry a negative amount, stored as sent.
    let r = cake(&inst, &format!("cid={cid}&payout=1000000&txid=BIG"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let r = cake(&inst, &format!("cid={cid}&payout=2.5&txid=T1"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let r = cake(
        &inst,
        &format!("cid={cid}&payout=-2.5&txid=T1&status=chargeback"),
    );
    assert_eq!(r.json()["status"], "status_changed", "{}", r.text());
    let row = inst.row(
        "SELECT payout, status FROM conversions WHERE txid = 'T1'",
        &[],
    );
    let (payout, status) = (row.get_f64(0), row.get_string(1));
    assert_eq!((payout, status.as_str()), (-2.5, "chargeback"));

    // The pixel's value has the same bound.
    let r = inst.get(&format!("/px?cid={cid}&event=lead&value=1e23"), &[]);
    assert_eq!(r.status, 400);
    let r = inst.get(&format!("/px?cid={cid}&event=lead&value=2000000"), &[]);
    assert_eq!(r.status, 400);
    assert_eq!(conversions(&inst), 2);
}

#[test]
fn different_invalid_utf8_txids_are_never_merged_and_are_journalled_as_sent() {
    let inst = Instance::start(&config(""));
    let cid = click_via(&inst, "offer_cake");
    for txid in ["%FF%FE%C0%AF", "%FE%FF%C0%AE"] {
        let r = cake(&inst, &format!("cid={cid}&payout=1&txid={txid}"));
        assert_eq!(r.status, 400, "txid={txid}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_utf8", "txid={txid}");
    }
    // A form body with raw bytes that are not UTF-8 is refused the same way.
    let body = [
        b"cid=".as_slice(),
        cid.as_bytes(),
        b"&txid=\xff\xfe&secret=",
        SECRET.as_bytes(),
    ]
    .concat();
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_utf8");
    assert_eq!(
        conversions(&inst),
        0,
        "neither value was stored as another's twin"
    );

    let entries = journal(&inst, "reason=invalid_utf8");
    assert_eq!(entries.len(), 3);
    let queries: Vec<&str> = entries
        .iter()
        .map(|e| e["raw_query"].as_str().unwrap())
        .collect();
    assert!(
        queries.iter().any(|q| q.contains("txid=%FF%FE%C0%AF")),
        "{queries:?}"
    );
    assert!(
        queries.iter().any(|q| q.contains("txid=%FE%FF%C0%AE")),
        "{queries:?}"
    );
    // The body's bytes are kept exactly: in the store, and in hex on the API.
    let stored = inst
        .row(
            "SELECT raw_body FROM postback_journal WHERE method = 'POST'",
            &[],
        )
        .get_bytes(0)
        .to_vec();
    assert!(stored.windows(2).any(|w| w == b"\xff\xfe"), "{stored:?}");
    assert!(entries.iter().any(|e| e["raw_body_hex"]
        .as_str()
        .is_some_and(|h| h.contains("fffe"))));

    // Distinct valid txids stay distinct conversions.
    for txid in ["%C3%A9", "%C3%A8"] {
        let r = cake(&inst, &format!("cid={cid}&payout=1&txid={txid}"));
        assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    }
    assert_eq!(conversions(&inst), 2);
}

#[test]
fn a_postback_through_another_network_than_the_clicks_offer_is_refused() {
    let inst = Instance::start(&config(""));
    let to_cake = click_via(&inst, "offer_cake");
    let r = inst.get(&format!("/postback/hasoffers?cid={to_cake}&txid=X"), &[]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"], "network_mismatch");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("allow_cross_network"));
    assert_eq!(journal(&inst, "reason=network_mismatch").len(), 1);
    assert_eq!(
        inst.metric(
            r#"clickstamp_postback_rejections_total{network="hasoffers",reason="network_mismatch"}"#
        ),
        1.0
    );
    // Through its own network it converts, for the offer it went to.
    let r = cake(&inst, &format!("cid={to_cake}&txid=X"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    // A click sent to HasOffers' offer converts through HasOffers, for that offer,
    // even though its campaign's first offer is CAKE's.
    let to_ho = click_via(&inst, "offer_ho");
    let r = inst.get(&format!("/postback/hasoffers?cid={to_ho}&txid=Y"), &[]);
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let offer = inst
        .row(
            "SELECT offer_id FROM conversions WHERE click_id = $1",
            &[&to_ho],
        )
        .get_string(0);
    assert_eq!(offer, "offer_ho");

    // Without a /go: accepted when the campaign has an offer of the network.
    let solo = landing_click(&inst, "/solo");
    let r = inst.get(&format!("/postback/hasoffers?cid={solo}&txid=Z"), &[]);
    assert_eq!(r.json()["error"], "network_mismatch", "{}", r.text());
    let r = cake(&inst, &format!("cid={solo}&txid=Z"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
}

#[test]
fn cross_network_postbacks_are_accepted_when_configured() {
    let inst = Instance::start(&config("[postbacks]\nallow_cross_network = true\n"));
    let to_cake = click_via(&inst, "offer_cake");
    let r = inst.get(&format!("/postback/hasoffers?cid={to_cake}&txid=X"), &[]);
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
}

#[test]
fn unauthenticated_floods_store_only_a_bounded_prefix_and_are_rate_limited() {
    let inst = Instance::start(&config(""));
    let pad = vec![b'x'; 65_000];
    let mut statuses = Vec::new();
    for _ in 0..300 {
        let r = request(
            inst.main,
            "POST",
            "/postback/nope",
            &[("Content-Type", "text/plain")],
            &pad,
        )
        .unwrap();
        statuses.push(r.status);
    }
    let refused = statuses.iter().filter(|s| **s == 404).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + limited, 300, "{statuses:?}");
    // 60 at once, and about one more a second while the flood lasts.
    assert!((60..=75).contains(&refused), "{refused} journalled");
    let row = inst.row(
        "SELECT count(*), sum(length(raw_body)) + sum(length(raw_query)) FROM postback_journal",
        &[],
    );
    let (rows, stored) = (row.get_i64(0), row.get_i64(1));
    assert_eq!(rows as usize, refused);
    assert!(stored <= refused as i64 * 1024, "{stored} bytes journalled");
    let entry = &journal(&inst, "limit=1")[0];
    assert_eq!(entry["reason"], "unknown_network");
    assert_eq!(entry["cut"]["body_len"], 65_000);
    assert_eq!(entry["cut"]["body_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(entry["raw_body"].as_str().unwrap().len(), 1024);
    assert!(
        inst.metric(r#"clickstamp_journal_bytes_cut_total{part="body"}"#)
            >= (refused * (65_000 - 1024)) as f64
    );
    assert_eq!(
        inst.metric(r#"clickstamp_postbacks_total{network="unknown",outcome="rate_limited"}"#),
        limited as f64
    );
    // A cut entry cannot be replayed as if it were whole.
    let id = entry["id"].as_i64().unwrap();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = request(
        inst.admin,
        "POST",
        &format!("/api/journal/{id}/replay"),
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());

    // An authenticated postback of a known network keeps its whole body.
    let cid = click_via(&inst, "offer_cake");
    let body = format!(
        "cid={cid}&txid=BODY&secret={SECRET}&note={}",
        "n".repeat(5000)
    );
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let kept = inst.count(
        "SELECT length(raw_body) FROM postback_journal WHERE method = 'POST' AND network_id = 'cake'",
        &[],
    );
    assert!(kept > 5000, "{kept}");
}

#[test]
fn secrets_in_the_query_never_reach_the_journal_and_replay_still_verifies() {
    let mut inst = Instance::start(&config(""));
    let cid = click_via(&inst, "offer_cake");
    let r = cake(&inst, &format!("cid={cid}&payout=2&txid=S1"));
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let accepted_id = r.json()["journal_id"].as_i64().unwrap();
    // A wrong secret (maybe a rotated one) is not stored either.
    let wrong = "old-secret-value-9c1d";
    let r = inst.get(
        &format!("/postback/cake?cid={cid}&payout=2&txid=S2&secret={wrong}"),
        &[],
    );
    assert_eq!(r.status, 401);
    // Nor one sent in a form body, or to an unknown network.
    let form = format!("cid={cid}&txid=S3&secret={SECRET}");
    request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap();
    inst.get(&format!("/postback/cak?cid={cid}&secret={SECRET}"), &[]);

    let listing = inst.admin_get("/api/journal").text();
    assert!(!listing.contains(SECRET), "{listing}");
    assert!(!listing.contains(wrong), "{listing}");
    assert!(listing.contains("secret=redacted~"), "{listing}");

    // Replay re-verifies the redacted secret: the entry is as genuine as on arrival.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let replay = |id: i64| {
        request(
            inst.admin,
            "POST",
            &format!("/api/journal/{id}/replay"),
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap()
    };
    let r = replay(accepted_id);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["status"], "duplicate", "{}", r.text());
    let wrong_id = journal(&inst, "reason=unauthorized_secret")[0]["id"]
        .as_i64()
        .unwrap();
    let r = replay(wrong_id);
    assert_eq!(r.status, 401, "a wrong secret stays wrong: {}", r.text());

    // Nothing stored holds the secret: on PostgreSQL no journal row; on SQLite no
    // byte of the database file or its write-ahead log.
    if inst.is_postgres() {
        for secret in [SECRET, wrong] {
            let holding = inst.count(
                "SELECT count(*) FROM postback_journal WHERE strpos(raw_query, $1) > 0
                     OR strpos(COALESCE(message, ''), $1) > 0",
                &[&secret],
            );
            assert_eq!(holding, 0, "the journal holds {secret}");
        }
        return;
    }
    inst.kill9();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", inst.db_path().display());
        let bytes = std::fs::read(&path).unwrap_or_default();
        for secret in [SECRET, wrong] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{path} holds {secret}"
            );
        }
    }
}

#[test]
fn methods_other_than_get_and_post_are_refused_with_405() {
    let inst = Instance::start(&config(""));
    let cid = click_via(&inst, "offer_cake");
    for method in ["PUT", "DELETE", "PATCH"] {
        let r = request(
            inst.main,
            method,
            &format!("/postback/cake?cid={cid}&txid={method}&secret={SECRET}"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert_eq!(r.header("allow"), Some("GET, POST"), "{method}");
        assert_eq!(r.json()["error"], "method_not_allowed");
    }
    assert_eq!(conversions(&inst), 0);
    assert_eq!(journal(&inst, "reason=method_not_allowed").len(), 3);
    assert_eq!(
        inst.metric(
            r#"clickstamp_postback_rejections_total{network="cake",reason="method_not_allowed"}"#
        ),
        3.0
    );
}

#[test]
fn admin_filters_that_do_not_parse_are_refused_naming_the_parameter() {
    let inst = Instance::start(&config(""));
    for (query, param) in [
        ("/api/journal?since_ms=abc", "since_ms"),
        ("/api/journal?until_ms=-1", "until_ms"),
        ("/api/journal?limit=ten", "limit"),
        ("/api/journal?outcome=acepted", "outcome"),
        ("/api/journal?sinse_ms=1", "sinse_ms"),
        ("/api/journal?since_ms=1&since_ms=2", "since_ms"),
        ("/api/outbox?state=sent", "state"),
        ("/api/stats?verbose=1", "verbose"),
    ] {
        let r = inst.admin_get(query);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let j = r.json();
        assert_eq!(j["error"], "bad_parameter", "{query}");
        assert_eq!(j["parameter"], param, "{query}");
        assert!(j["message"].as_str().unwrap().contains(param), "{query}");
    }
    let r = inst.admin_get("/api/report?form=2026-01-01");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("form"));
    // Well-formed filters still work.
    assert_eq!(
        inst.admin_get("/api/journal?since_ms=0&limit=5").status,
        200
    );
    let r = inst.admin_get("/api/journal?since_ms=0&outcome=rejected&until_ms=99999999999999");
    assert_eq!(r.status, 200, "{}", r.text());
}
