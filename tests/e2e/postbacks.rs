//! Postbacks end to end: network → clickstamp → traffic source, against a fake source
//! on loopback that can fail in every way a real one does.

use clickstamp_e2e::instance::{workspace_root, CLICK_ID_KEY};
use clickstamp_e2e::{request, FakeSource, Instance, Mode};
use clickstamp_plugins::query::{first_value, parse_query};
use clickstamp_plugins::ClickIdCodec;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "network-secret-123";

fn body(source: &FakeSource, extra_outbox: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"
# CAKE has no status macro of its own; this operator's CAKE instance sends one.
macros = {{ status = "status", event = "event" }}

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
cost_param = "cost"
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&payout={{payout}}&txid={{txid}}&status={{status}}&event_id={{event_id}}"
relay_status_changes = true

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 3.0
currency = "USD"

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
{extra_outbox}
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

/// A visitor lands with the source's click id `tsid`, then goes to the offer; returns
/// our click id as the network would see it (`s2`).
fn click(inst: &Instance, tsid: &str) -> String {
    let landing = inst.get(&format!("/lp?tsid={tsid}&cost=0.05"), &[]);
    let cookie = landing.cookie().expect("click cookie");
    let go = inst.get("/go/offer1", &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302);
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn postback(inst: &Instance, query: &str) -> clickstamp_e2e::Response {
    inst.get(&format!("/postback/cake?{query}"), &[])
}

fn count_for(received: &[String], needle: &str) -> usize {
    received.iter().filter(|r| r.contains(needle)).count()
}

fn conversions(inst: &Instance) -> i64 {
    inst.count("SELECT count(*) FROM conversions", &[])
}

#[test]
fn click_to_postback_to_exactly_one_relay_with_the_sources_own_click_id() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, ""));
    let cid = click(&inst, "SRC-1");
    let r = postback(
        &inst,
        &format!("cid={cid}&payout=2.5&txid=T1&secret={SECRET}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "accepted");
    assert_eq!(j["relayed"], true);
    source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    std::thread::sleep(Duration::from_millis(300)); // a second relay would arrive by now
    let got = source.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let q = parse_query(got[0].split_once('?').unwrap().1);
    assert_eq!(first_value(&q, "clickid"), Some("SRC-1"));
    assert_eq!(first_value(&q, "payout"), Some("2.5"));
    assert_eq!(first_value(&q, "txid"), Some("T1"));
    assert_eq!(first_value(&q, "status"), Some("approved"));
    assert_eq!(
        first_value(&q, "event_id").unwrap(),
        crate::pixel::expected_event_id(&cid, "conversion", Some("T1"))
    );
    // The conversion, its offer default currency, and the delivered outbox entry.
    let conversion = inst.row(
        "SELECT payout, currency, status FROM conversions WHERE click_id = $1",
        &[&cid],
    );
    assert_eq!(
        (
            conversion.get_f64(0),
            conversion.get_str(1),
            conversion.get_str(2)
        ),
        (2.5, "USD", "approved")
    );
    let outbox = inst.admin_get("/api/outbox?state=delivered").json();
    assert_eq!(outbox["entries"].as_array().unwrap().len(), 1);
    assert_eq!(
        inst.metric("clickstamp_postbacks_total{network=\"cake\",outcome=\"accepted\"}"),
        1.0
    );
    assert_eq!(
        inst.metric("clickstamp_revenue_total{campaign=\"camp\",source=\"src\"}"),
        2.5
    );
}

#[test]
fn duplicates_are_answered_200_counted_once_and_relayed_once() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, ""));
    // The same txid twice.
    let cid = click(&inst, "SRC-D1");
    for expected in ["accepted", "duplicate"] {
        let r = postback(
            &inst,
            &format!("cid={cid}&payout=1&txid=TX&secret={SECRET}"),
        );
        assert_eq!(
            (r.status, r.json()["status"].as_str().unwrap().to_string()),
            (200, expected.to_string())
        );
    }
    // No txid twice.
    let cid2 = click(&inst, "SRC-D2");
    for expected in ["accepted", "duplicate"] {
        let r = postback(&inst, &format!("cid={cid2}&payout=1&secret={SECRET}"));
        assert_eq!(r.json()["status"], expected);
    }
    // A distinct txid on the same click is a second conversion (a rebill).
    assert_eq!(
        postback(
            &inst,
            &format!("cid={cid}&payout=1&txid=TX2&secret={SECRET}")
        )
        .json()["status"],
        "accepted"
    );
    // One event however the network spells it: stored once, in the dedup key's form.
    let cid4 = click(&inst, "SRC-D4");
    for (event, expected) in [
        ("Sale", "accepted"),
        ("SALE", "duplicate"),
        ("sale", "duplicate"),
    ] {
        let r = postback(
            &inst,
            &format!("cid={cid4}&payout=1&txid=TX4&event={event}&secret={SECRET}"),
        );
        assert_eq!(r.json()["status"], expected, "event {event}");
    }
    let stored = inst
        .row(
            "SELECT event FROM conversions WHERE click_id = $1",
            &[&cid4],
        )
        .get_string(0);
    assert_eq!(stored, "sale");
    // The same postback 50 times at once.
    let cid3 = click(&inst, "SRC-D3");
    let main = inst.main;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (outcomes, cid3) = (outcomes.clone(), cid3.clone());
            std::thread::spawn(move || {
                let r = request(
                    main,
                    "GET",
                    &format!("/postback/cake?cid={cid3}&payout=4&txid=C&secret={SECRET}"),
                    &[],
                    b"",
                )
                .unwrap();
                outcomes
                    .lock()
                    .unwrap()
                    .push((r.status, r.json()["status"].as_str().unwrap().to_string()));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    assert!(outcomes.iter().all(|(s, _)| *s == 200));
    assert_eq!(
        outcomes.iter().filter(|(_, o)| o == "accepted").count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|(_, o)| o == "duplicate").count(),
        49
    );

    assert_eq!(conversions(&inst), 5);
    source.wait_for(Duration::from_secs(5), |r| r.len() >= 5);
    std::thread::sleep(Duration::from_millis(500));
    let got = source.received();
    assert_eq!(got.len(), 5, "exactly one relay per conversion: {got:?}");
    assert_eq!(count_for(&got, "clickid=SRC-D3"), 1);
    let dups = inst.count(
        "SELECT duplicates FROM conversions WHERE click_id = $1",
        &[&cid3],
    );
    assert_eq!(dups, 49);
    assert_eq!(
        inst.metric("clickstamp_postbacks_total{network=\"cake\",outcome=\"duplicate\"}"),
        53.0
    );
}

#[test]
fn approved_then_chargeback_is_one_status_change_relayed_once_with_history() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, ""));
    let cid = click(&inst, "SRC-CB");
    let q = |status: &str| format!("cid={cid}&payout=5&txid=S1&status={status}&secret={SECRET}");
    assert_eq!(postback(&inst, &q("pending")).json()["status"], "accepted");
    assert_eq!(
        postback(&inst, &q("approved")).json()["status"],
        "status_changed"
    );
    assert_eq!(
        postback(&inst, &q("approved")).json()["status"],
        "duplicate"
    );
    assert_eq!(
        postback(&inst, &q("chargeback")).json()["status"],
        "status_changed"
    );
    assert_eq!(
        postback(&inst, &q("chargeback")).json()["status"],
        "duplicate"
    );
    // A chargeback is final.
    assert_eq!(
        postback(&inst, &q("approved")).json()["status"],
        "duplicate"
    );
    source.wait_for(Duration::from_secs(5), |r| r.len() >= 3);
    std::thread::sleep(Duration::from_millis(500));
    let got = source.received();
    let statuses: Vec<&str> = got
        .iter()
        .map(|r| {
            if r.contains("status=pending") {
                "pending"
            } else if r.contains("status=approved") {
                "approved"
            } else {
                "chargeback"
            }
        })
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["approved", "chargeback", "pending"], "{got:?}");
    let history: Vec<String> = inst
        .rows("SELECT status FROM conversion_history ORDER BY id", &[])
        .iter()
        .map(|row| row.get_string(0))
        .collect();
    assert_eq!(history, vec!["pending", "approved", "chargeback"]);
    assert_eq!(conversions(&inst), 1);
    // The dashboards see one new conversion and two status changes, by new status.
    let series = |name: &str, status: &str| {
        inst.metric(&format!(
            "{name}{{campaign=\"camp\",source=\"src\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(
        series("clickstamp_conversion_status_changes_total", "approved"),
        1.0
    );
    assert_eq!(
        series("clickstamp_conversion_status_changes_total", "chargeback"),
        1.0
    );
    assert_eq!(
        series("clickstamp_conversion_status_changes_total", "pending"),
        0.0,
        "the first postback is a new conversion, not a change"
    );
}

#[test]
fn bad_postbacks_get_the_right_4xx_and_reason_and_are_journalled() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, ""));
    let cid = click(&inst, "SRC-BAD");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let codec = ClickIdCodec::new(CLICK_ID_KEY.as_bytes());
    let unknown = codec.mint(now, [9; 6]).to_string();
    let expired = codec.mint(now - 40 * 86_400_000, [8; 6]).to_string();
    let forged = ClickIdCodec::new(b"some-other-key-entirely")
        .mint(now, [7; 6])
        .to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("/postback/cake?cid={cid}&payout=1&secret=wrong-secret"),
            401,
            "unauthorized_secret",
        ),
        (
            format!("/postback/cake?cid={cid}&payout=1"),
            401,
            "unauthorized_secret",
        ),
        (
            format!("/postback/cake?cid={cid}&payout=abc&secret={SECRET}"),
            400,
            "bad_payout",
        ),
        (
            format!("/postback/cake?payout=1&secret={SECRET}"),
            400,
            "missing_click_id",
        ),
        (
            format!("/postback/cake?cid=%23s2%23&payout=1&secret={SECRET}"),
            400,
            "unreplaced_macro",
        ),
        (
            format!("/postback/cake?cid={unknown}&payout=1&secret={SECRET}"),
            404,
            "unknown_click",
        ),
        (
            format!("/postback/cake?cid={expired}&payout=1&secret={SECRET}"),
            410,
            "click_id_expired",
        ),
        (
            format!("/postback/cake?cid={forged}&payout=1&secret={SECRET}"),
            400,
            "click_id_bad_mac",
        ),
        (
            format!("/postback/cake?cid={}&payout=1&secret={SECRET}", &cid[..20]),
            400,
            "click_id_malformed",
        ),
        (
            format!("/postback/nosuchnet?cid={cid}&payout=1"),
            404,
            "unknown_network",
        ),
    ];
    for (target, status, reason) in &cases {
        let r = inst.get(target, &[]);
        assert_eq!(r.status, *status, "{target}: {}", r.text());
        let j = r.json();
        assert_eq!(j["error"], *reason, "{target}");
        assert!(
            j["message"].as_str().unwrap().len() > 10,
            "a reason a human can act on: {j}"
        );
        assert!(j["journal_id"].as_i64().is_some(), "journalled: {j}");
    }
    // The unreplaced macro names the macro and the fix.
    let r = inst
        .get(&format!("/postback/cake?cid=%23s2%23&secret={SECRET}"), &[])
        .json();
    assert!(r["message"].as_str().unwrap().contains("#s2#"), "{r}");
    // Malformed JSON body and an oversized body.
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/json")],
        b"{not json",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (400, "malformed_body")
    );
    let big = vec![b'a'; 70_000];
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &big,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["error"].as_str().unwrap()),
        (413, "body_too_large")
    );

    let journal = inst
        .admin_get("/api/journal?outcome=rejected&limit=100")
        .json();
    let entries = journal["entries"].as_array().unwrap();
    assert_eq!(entries.len(), cases.len() + 3);
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for (_, _, reason) in &cases {
        assert!(reasons.contains(reason), "{reason} not journalled");
    }
    let unknown_net = inst.admin_get("/api/journal?network=nosuchnet").json();
    assert_eq!(unknown_net["entries"][0]["reason"], "unknown_network");
    assert_eq!(conversions(&inst), 0);
    assert!(source.received().is_empty());
    assert_eq!(
        inst.metric(
            "clickstamp_postback_rejections_total{network=\"cake\",reason=\"unauthorized_secret\"}"
        ),
        2.0
    );
    assert_eq!(
        inst.metric(
            "clickstamp_postback_rejections_total{network=\"unknown\",reason=\"unknown_network\"}"
        ),
        1.0
    );
}

#[test]
fn json_and_form_bodies_are_accepted() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, ""));
    let cid = click(&inst, "SRC-BODY");
    let form = format!("cid={cid}&payout=1.5&txid=F1&secret={SECRET}");
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let json = format!(r#"{{"cid":"{cid}","payout":2.25,"txid":"J1","secret":"{SECRET}"}}"#);
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(conversions(&inst), 2);
}

#[test]
fn a_source_down_for_a_while_gets_every_relay_exactly_once_after_recovery() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "max_attempts = 50"));
    for (round, mode) in [
        (0, Mode::ServerError),
        (1, Mode::TooManyRequests),
        (2, Mode::Refuse),
        (3, Mode::Hang),
    ] {
        source.set_mode(mode);
        let tag = format!("R{round}-");
        for i in 0..4 {
            let cid = click(&inst, &format!("{tag}{i}"));
            assert_eq!(
                postback(
                    &inst,
                    &format!("cid={cid}&payout=1&txid={tag}{i}&secret={SECRET}")
                )
                .status,
                200
            );
        }
        std::thread::sleep(Duration::from_millis(1200)); // several failed attempts
        let pending = inst.admin_get("/api/outbox?state=pending").json();
        assert_eq!(
            pending["entries"].as_array().unwrap().len(),
            4,
            "{mode:?}: {pending}"
        );
        source.set_mode(Mode::Ok);
        for _ in 0..200 {
            if inst_delivered(&inst) >= 4 * (round + 1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            inst_delivered(&inst),
            4 * (round + 1),
            "{mode:?}: every relay delivered"
        );
    }
    // Delivered exactly once each: a success is never repeated.
    std::thread::sleep(Duration::from_millis(500));
    let attempts = source.received();
    let mut successes: HashMap<String, usize> = HashMap::new();
    let outbox = inst
        .admin_get("/api/outbox?state=delivered&limit=100")
        .json();
    for e in outbox["entries"].as_array().unwrap() {
        *successes
            .entry(e["url"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(successes.len(), 16);
    assert!(successes.values().all(|n| *n == 1));
    assert!(
        attempts.len() > 16,
        "failures were retried: {} attempts",
        attempts.len()
    );
    let retries =
        inst.metric("clickstamp_outbox_deliveries_total{outcome=\"retry\",source=\"src\"}");
    assert!(retries >= 4.0, "{retries}");
}

fn inst_delivered(inst: &Instance) -> usize {
    inst.admin_get("/api/stats").json()["outbox"]["delivered"]
        .as_u64()
        .unwrap() as usize
}

#[test]
fn a_source_that_never_recovers_dead_letters_and_dead_letters_replay() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "max_attempts = 3"));
    source.set_mode(Mode::ServerError);
    let cid = click(&inst, "SRC-DEAD");
    assert_eq!(
        postback(
            &inst,
            &format!("cid={cid}&payout=1&txid=D1&secret={SECRET}")
        )
        .status,
        200
    );
    let cid2 = click(&inst, "SRC-DEAD2");
    assert_eq!(
        postback(
            &inst,
            &format!("cid={cid2}&payout=1&txid=D2&secret={SECRET}")
        )
        .status,
        200
    );
    let mut dead = serde_json::Value::Null;
    for _ in 0..100 {
        dead = inst.admin_get("/api/outbox?state=dead").json();
        if dead["entries"].as_array().unwrap().len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let entries = dead["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{dead}");
    assert_eq!(entries[0]["attempts"], 3);
    assert_eq!(entries[0]["last_status"], 500);
    assert_eq!(source.received().len(), 6, "3 attempts each, then nothing");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        source.received().len(),
        6,
        "dead letters are not retried by themselves"
    );
    let gauge = inst.metric_at_least(
        "clickstamp_outbox_entries{state=\"dead\"}",
        2.0,
        Duration::from_secs(10),
    );
    assert_eq!(gauge, 2.0, "the dead-letter gauge shows them");

    source.set_mode(Mode::Ok);
    // Replay one, then all.
    let one = entries[0]["id"].as_i64().unwrap();
    assert_eq!(
        inst_post(&inst, &format!("/api/outbox/{one}/replay"))["requeued"],
        1
    );
    source.wait_for(Duration::from_secs(5), |r| r.len() >= 7);
    assert_eq!(inst_post(&inst, "/api/outbox/replay-dead")["requeued"], 1);
    let got = source.wait_for(Duration::from_secs(5), |r| r.len() >= 8);
    assert_eq!(got.len(), 8);
    // The source has answered; the result is committed a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while inst_delivered(&inst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(inst_delivered(&inst), 2);
    assert_eq!(
        inst.admin_get("/api/outbox?state=dead").json()["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

fn inst_post(inst: &Instance, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {}", clickstamp_e2e::instance::ADMIN_TOKEN);
    let r = request(inst.admin, "POST", path, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

#[test]
fn a_postback_rejected_under_an_old_secret_replays_after_the_fix() {
    let source = FakeSource::start();
    let mut inst = Instance::start(&body(&source, ""));
    let cid = click(&inst, "SRC-REPLAY");
    let r = postback(
        &inst,
        &format!("cid={cid}&payout=7&txid=RP&secret=rotated-secret-456"),
    );
    assert_eq!(r.status, 401);
    let journal_id = r.json()["journal_id"].as_i64().unwrap();
    // The operator learns the network uses the rotated secret and fixes the config.
    let config = std::fs::read_to_string(&inst.config_path)
        .unwrap()
        .replace(SECRET, "rotated-secret-456");
    std::fs::write(&inst.config_path, config).unwrap();
    inst.kill9();
    inst.restart();
    let replay = inst_post(&inst, &format!("/api/journal/{journal_id}/replay"));
    assert_eq!(replay["result"]["status"], "accepted", "{replay}");
    assert_eq!(conversions(&inst), 1);
    let entry = inst
        .admin_get(&format!("/api/journal/{}", replay["result"]["journal_id"]))
        .json();
    assert_eq!(entry["replay_of"], journal_id);
    assert_eq!(entry["origin"], "replay");
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(count_for(&got, "clickid=SRC-REPLAY"), 1);
}

#[test]
fn kill_9_under_postback_load_loses_no_acknowledged_conversion_and_relays_resume() {
    let source = FakeSource::start();
    source.set_mode(Mode::ServerError); // keep relays pending across the crash
                                        // On PostgreSQL the relays the killed process had claimed wait out its lease
                                        // (2 minutes by default) before the restarted one may take them: a short one lets
                                        // them resume within the wait below. SQLite has no leases (the key is dropped).
    let mut inst = Instance::start_with(
        &body(&source, "max_attempts = 1000"),
        "outbox_lease = \"2s\"",
    );
    let clicks: Vec<String> = (0..8).map(|i| click(&inst, &format!("K{i}"))).collect();
    let main = inst.main;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = clicks
        .into_iter()
        .enumerate()
        .map(|(w, cid)| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                for n in 0..5_000 {
                    let txid = format!("K{w}-{n}");
                    match request(
                        main,
                        "GET",
                        &format!("/postback/cake?cid={cid}&payout=1&txid={txid}&secret={SECRET}"),
                        &[],
                        b"",
                    ) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().push(txid),
                        Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    inst.kill9();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} postbacks acknowledged",
        acked.len()
    );
    inst.restart();
    {
        // One read of every stored txid rather than a query per acknowledged one.
        let stored: HashSet<String> = inst
            .rows("SELECT txid FROM conversions WHERE txid IS NOT NULL", &[])
            .iter()
            .map(|row| row.get_string(0))
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|t| !stored.contains(*t)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged conversions lost",
            missing.len(),
            acked.len()
        );
        let outbox = inst.count("SELECT count(*) FROM outbox", &[]);
        let conv = inst.count("SELECT count(*) FROM conversions", &[]);
        assert_eq!(
            outbox, conv,
            "every conversion has its relay, and no relay lacks its conversion"
        );
    }
    // The source recovers: every relay written before the crash is delivered.
    source.set_mode(Mode::Ok);
    let total = inst.count("SELECT count(*) FROM outbox", &[]) as usize;
    for _ in 0..600 {
        if inst_delivered(&inst) == total {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(inst_delivered(&inst), total);
    let received = source.received();
    for txid in &acked {
        assert!(
            received
                .iter()
                .any(|r| r.contains(&format!("txid={txid}&"))),
            "{txid} never relayed"
        );
    }
}

#[test]
fn the_operator_cli_fires_a_test_postback_and_lists_journal_and_outbox() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, ""));
    let cli = |args: &[&str]| {
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
    };
    let run = cli(&["postback-test", "--network", "cake"]);
    assert!(
        run.contains("ok: accepted once, duplicate recognised"),
        "{run}"
    );
    assert!(
        run.contains("\"status\":\"accepted\"") && run.contains("\"status\":\"duplicate\""),
        "{run}"
    );
    assert!(run.contains("kept out of reports"), "{run}");
    let journal = cli(&["journal"]);
    assert!(
        journal.contains("accepted") && journal.contains("duplicate"),
        "{journal}"
    );
    // The test click is recorded as one, and its conversion counts nowhere.
    let test_click = run
        .lines()
        .find_map(|l| l.strip_prefix("click id:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        inst.value::<String>(
            "SELECT excluded_reason FROM clicks WHERE click_id = $1",
            &[&test_click]
        ),
        "test"
    );
    assert!(run.contains("\"relayed\":false"), "{run}");
    let report = inst.admin_get("/api/report?group_by=campaign").json();
    assert_eq!(report["totals"]["conversions"], 0, "{report}");
    assert_eq!(report["totals"]["clicks"], 0, "{report}");
    assert_eq!(
        inst.metric("clickstamp_clicks_excluded_total{campaign=\"camp\",reason=\"test\"}"),
        1.0
    );

    // A real conversion is relayed, and the outbox command lists it.
    let cid = click(&inst, "SRC-REAL");
    let real = postback(&inst, &format!("cid={cid}&txid=REAL1&secret={SECRET}"));
    assert_eq!(real.json()["relayed"], true, "{}", real.text());
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(
        got.len(),
        1,
        "only the real conversion reaches the source: {got:?}"
    );
    assert!(got[0].contains("clickid=SRC-REAL"), "{got:?}");
    let mut outbox = String::new();
    for _ in 0..50 {
        outbox = cli(&["outbox", "--state", "delivered"]);
        if outbox.contains("delivered") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        outbox.contains("delivered") && outbox.contains("clickid=SRC-REAL"),
        "{outbox}"
    );
    assert!(!outbox.contains("clickid=postback-test"), "{outbox}");

    // A /go with a marker that is not this instance's is an ordinary click.
    let forged = inst.get(
        "/go/offer1?tsid=FORGED",
        &[(
            "X-Clickstamp-Test-Click",
            "0000000000000000000000000000000000000000000000000000000000000000",
        )],
    );
    assert_eq!(forged.status, 302);
    assert_eq!(
        inst.count(
            "SELECT count(*) FROM clicks WHERE source_click_id = 'FORGED' AND excluded_reason IS NULL",
            &[]
        ),
        1,
        "a wrong marker excludes nothing"
    );
}

#[test]
fn relays_to_a_busy_source_reuse_keep_alive_connections() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "concurrency = 4"));
    let relays = 30;
    for i in 0..relays {
        let cid = click(&inst, &format!("KA-{i}"));
        let r = postback(&inst, &format!("cid={cid}&txid=KA{i}&secret={SECRET}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let got = source.wait_for(Duration::from_secs(10), |r| r.len() >= relays);
    assert_eq!(got.len(), relays, "every relay arrives once");
    let connections = source.connections();
    assert!(
        connections <= 4,
        "{relays} relays took {connections} connections; at most one per concurrent delivery (4) expected"
    );
}
