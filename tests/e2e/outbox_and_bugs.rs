//! The outbox's documented promises (`max_age`, a source's 4xx is final,
//! `relay_status_changes = false`) and the bugs found while reading for them, each
//! through real HTTP against a fake source on loopback.

use clickstamp_e2e::instance::{workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::{request, FakeSource, Instance, Mode};
use clickstamp_plugins::query::{first_value, parse_query};
use std::time::{Duration, Instant};

const SECRET: &str = "network-secret-123";

/// One network, one source relaying to `source`, one offer, one campaign; `outbox`,
/// `source_extra`, `offer_extra` and `tail` (whole sections) are appended where named.
fn body(source: &FakeSource, source_extra: &str, offer_extra: &str, tail: &str) -> String {
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
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&status={{status}}&event_id={{event_id}}"
{source_extra}

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 3.0
{offer_extra}

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"
direct_linking = true

{tail}
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

/// An outbox that retries fast, so age and attempts run out within a test.
const FAST_OUTBOX: &str = r#"
[outbox]
backoff_base = "50ms"
backoff_max = "150ms"
poll_interval = "25ms"
timeout = "500ms"
"#;

/// A visitor arrives through `/go` with the source's click id `tsid`; returns our click
/// id as the network sees it (`s2`).
fn click(inst: &Instance, tsid: &str) -> String {
    let go = inst.get(&format!("/go/offer1?tsid={tsid}"), &[]);
    assert_eq!(go.status, 302, "{}", go.text());
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn postback(inst: &Instance, query: &str) -> serde_json::Value {
    let r = inst.get(&format!("/postback/cake?{query}"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn admin_post(inst: &Instance, path: &str) -> clickstamp_e2e::Response {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    request(inst.admin, "POST", path, &[("Authorization", &auth)], b"").unwrap()
}

fn outbox(inst: &Instance, state: &str) -> Vec<serde_json::Value> {
    inst.admin_get(&format!("/api/outbox?state={state}")).json()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Poll until `n` entries are in `state` (or `timeout` passes); returns them.
fn wait_for_outbox(
    inst: &Instance,
    state: &str,
    n: usize,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let entries = outbox(inst, state);
        if entries.len() >= n || Instant::now() >= deadline {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn conversions(inst: &Instance) -> i64 {
    inst.count("SELECT count(*) FROM conversions", &[])
}

#[test]
fn a_failing_relay_older_than_max_age_is_dead_lettered_with_its_reason() {
    let source = FakeSource::start();
    source.set_mode(Mode::ServerError);
    let outbox_cfg = format!("{FAST_OUTBOX}max_attempts = 1000\nmax_age = \"1s\"\n");
    let inst = Instance::start(&body(&source, "", "", &outbox_cfg));
    let cid = click(&inst, "SRC-OLD");
    let sent = Instant::now();
    postback(&inst, &format!("cid={cid}&txid=OLD1&secret={SECRET}"));

    let dead = wait_for_outbox(&inst, "dead", 1, Duration::from_secs(10));
    let died_after = sent.elapsed();
    assert_eq!(dead.len(), 1, "the entry was never dead-lettered by age");
    assert!(
        died_after >= Duration::from_secs(1),
        "dead-lettered after {died_after:?}, before max_age passed"
    );
    let entry = &dead[0];
    let attempts = entry["attempts"].as_u64().unwrap();
    assert!(
        (2..1000).contains(&attempts),
        "retried until max_age, far short of max_attempts: {entry}"
    );
    assert_eq!(entry["last_status"], 500);
    let reason = entry["last_error"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 500") && reason.contains("outbox.max_age"),
        "the dead letter says why it died: {reason:?}"
    );
    let gauge = inst.metric_at_least(
        "clickstamp_outbox_entries{state=\"dead\"}",
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(gauge, 1.0, "the dead-letter gauge shows it");
    // Dead letters are not retried by themselves.
    let tried = source.received().len();
    assert_eq!(tried as u64, attempts);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(source.received().len(), tried);
}

#[test]
fn a_sources_4xx_answer_is_final_dead_lettered_at_once_without_retries() {
    let source = FakeSource::start();
    source.set_mode(Mode::ClientError(400));
    let inst = Instance::start(&body(&source, "", "", FAST_OUTBOX));
    let cid = click(&inst, "SRC-4XX");
    postback(&inst, &format!("cid={cid}&txid=R1&secret={SECRET}"));

    let dead = wait_for_outbox(&inst, "dead", 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1, "a refused relay is dead-lettered");
    let entry = &dead[0];
    assert_eq!(entry["attempts"], 1, "{entry}");
    assert_eq!(entry["last_status"], 400);
    let reason = entry["last_error"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 400") && reason.contains("final"),
        "the dead letter says why it died: {reason:?}"
    );
    // With retries at 50-150 ms, a retried entry would have been sent again by now.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(source.received().len(), 1, "a 4xx is never retried");
    assert_eq!(
        inst.metric("clickstamp_outbox_deliveries_total{outcome=\"dead_refused\",source=\"src\"}"),
        1.0
    );
    assert_eq!(
        inst.metric("clickstamp_outbox_deliveries_total{outcome=\"retry\",source=\"src\"}"),
        0.0
    );
    // 429 is the one 4xx that means "later", not "never": it is retried.
    source.set_mode(Mode::TooManyRequests);
    let cid2 = click(&inst, "SRC-429");
    postback(&inst, &format!("cid={cid2}&txid=R2&secret={SECRET}"));
    let got = source.wait_for(Duration::from_secs(5), |r| {
        r.iter().filter(|t| t.contains("SRC-429")).count() >= 2
    });
    assert!(
        got.iter().filter(|t| t.contains("SRC-429")).count() >= 2,
        "{got:?}"
    );
}

#[test]
fn with_relay_status_changes_off_a_status_change_is_recorded_but_not_relayed() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(
        &source,
        "relay_status_changes = false",
        "",
        FAST_OUTBOX,
    ));
    let cid = click(&inst, "SRC-STATUS");
    let first = postback(
        &inst,
        &format!("cid={cid}&txid=S1&status=pending&secret={SECRET}"),
    );
    assert_eq!(
        (first["status"].as_str(), first["relayed"].as_bool()),
        (Some("accepted"), Some(true))
    );
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("status=pending"), "{got:?}");

    let change = postback(
        &inst,
        &format!("cid={cid}&txid=S1&status=approved&secret={SECRET}"),
    );
    assert_eq!(change["status"], "status_changed", "{change}");
    assert_eq!(change["relayed"], false, "{change}");
    let status = inst
        .row(
            "SELECT status FROM conversions WHERE click_id = $1",
            &[&cid],
        )
        .get_string(0);
    assert_eq!(status, "approved", "the change itself is recorded");
    // A relay due at once would have reached the source by now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(source.received().len(), 1, "{:?}", source.received());
    assert_eq!(
        outbox(&inst, "pending").len() + outbox(&inst, "dead").len(),
        0
    );
    assert_eq!(outbox(&inst, "delivered").len(), 1);
}

#[test]
fn a_replayed_dead_letter_gets_a_fresh_lease_on_life() {
    let source = FakeSource::start();
    source.set_mode(Mode::ServerError);
    let outbox_cfg = format!("{FAST_OUTBOX}max_attempts = 1000\nmax_age = \"1s\"\n");
    let inst = Instance::start(&body(&source, "", "", &outbox_cfg));
    let cid = click(&inst, "SRC-LEASE");
    postback(&inst, &format!("cid={cid}&txid=L1&secret={SECRET}"));
    let dead = wait_for_outbox(&inst, "dead", 1, Duration::from_secs(10));
    assert_eq!(dead.len(), 1);
    let id = dead[0]["id"].as_i64().unwrap();
    let created_ms = dead[0]["created_ms"].as_u64().unwrap();
    let tried_before = source.received().len();

    // The source is still failing: a replayed entry must retry for another max_age,
    // not die after its first attempt because it was created long ago.
    let replayed = Instant::now();
    let r = admin_post(&inst, &format!("/api/outbox/{id}/replay"));
    assert_eq!((r.status, r.json()["requeued"].as_u64()), (200, Some(1)));
    let dead_again = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = outbox(&inst, "dead");
            if !d.is_empty() || Instant::now() >= deadline {
                break d;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let lived = replayed.elapsed();
    assert_eq!(dead_again.len(), 1, "dead again once its new lease ran out");
    let tried_after = source.received().len() - tried_before;
    assert!(
        tried_after >= 2 && lived >= Duration::from_secs(1),
        "a replayed dead letter died after {tried_after} attempt(s) and {lived:?}: its age was not reset"
    );
    let entry = &dead_again[0];
    assert_eq!(entry["attempts"].as_u64().unwrap() as usize, tried_after);
    assert_eq!(
        entry["created_ms"].as_u64(),
        Some(created_ms),
        "creation time is kept"
    );
    assert!(
        entry["replayed_ms"].as_u64().unwrap() > created_ms,
        "{entry}"
    );

    // Replayed once the source is back, it is delivered.
    source.set_mode(Mode::Ok);
    assert_eq!(
        admin_post(&inst, &format!("/api/outbox/{id}/replay")).status,
        200
    );
    assert_eq!(
        wait_for_outbox(&inst, "delivered", 1, Duration::from_secs(5)).len(),
        1
    );
}

#[test]
fn a_journalled_413_is_refused_on_replay_never_processed_as_the_whole_body() {
    let source = FakeSource::start();
    let inst = Instance::start(&body(
        &source,
        "",
        "",
        &format!("{FAST_OUTBOX}\n[postbacks]\nmax_body_bytes = 2048\n"),
    ));
    let cid = click(&inst, "SRC-BIG");
    // A body whose first bytes are a complete, valid postback: processed as the whole
    // body, they would convert.
    let mut big = format!("cid={cid}&payout=5&txid=BIG&secret={SECRET}&pad=").into_bytes();
    big.resize(4000, b'x');
    let r = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &big,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    let journal_id = r.json()["journal_id"].as_i64().unwrap();
    let entry = inst.admin_get(&format!("/api/journal/{journal_id}")).json();
    assert_eq!(entry["reason"], "body_too_large");
    assert!(entry["cut"]["body_len"].as_u64().unwrap() > 2048, "{entry}");

    let replay = admin_post(&inst, &format!("/api/journal/{journal_id}/replay"));
    assert_eq!(replay.status, 409, "{}", replay.text());
    assert_eq!(replay.json()["error"], "entry_cut");
    assert_eq!(conversions(&inst), 0);

    // An entry journalled by a version before cut records held the body's prefix and
    // nothing saying it was cut; it too is refused, by its reason. (Such entries only
    // exist in embedded stores: the shared store came after cut records.)
    if inst.is_postgres() {
        return;
    }
    let mut inst = inst;
    inst.kill9();
    {
        let db = rusqlite::Connection::open(inst.db_path()).unwrap();
        db.execute(
            "UPDATE postback_journal SET cut = NULL, raw_body = ?2 WHERE id = ?1",
            rusqlite::params![journal_id, &big[..2048]],
        )
        .unwrap();
    }
    inst.restart();
    let replay = admin_post(&inst, &format!("/api/journal/{journal_id}/replay"));
    assert_eq!(replay.status, 409, "{}", replay.text());
    assert_eq!(replay.json()["error"], "entry_cut");
    assert_eq!(conversions(&inst), 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(source.received().is_empty(), "{:?}", source.received());
}

#[test]
fn a_click_the_store_could_not_write_is_answered_503_and_not_counted() {
    if clickstamp_e2e::skip_on_postgres("holds the SQLite file's write lock") {
        return;
    }
    let source = FakeSource::start();
    let inst = Instance::start(&body(&source, "", "", ""));
    let clicks = "clickstamp_clicks_total{campaign=\"camp\",source=\"src\"}";
    let cost = "clickstamp_click_cost_total{campaign=\"camp\",source=\"src\"}";

    // Another process holds the database's write lock (a backup tool, an operator's
    // shell): the writer's busy timeout runs out and the click cannot be written.
    let locker = rusqlite::Connection::open(inst.db_path()).unwrap();
    locker.busy_timeout(Duration::from_secs(5)).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let landing = std::thread::scope(|s| {
        let landing = s.spawn(|| inst.get("/lp?tsid=LOCKED-1&cost=0.25", &[]));
        let go = s.spawn(|| inst.get("/go/offer1?tsid=LOCKED-2&cost=0.25", &[]));
        (landing.join().unwrap(), go.join().unwrap())
    });
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(landing.0.status, 503, "{}", landing.0.text());
    assert_eq!(landing.1.status, 503, "{}", landing.1.text());
    assert_eq!(
        inst.metric(clicks),
        0.0,
        "a click never written is not counted"
    );
    assert_eq!(inst.metric(cost), 0.0, "nor is its cost");

    // Once the store is writable again, clicks count as they are written.
    assert_eq!(inst.get("/lp?tsid=OK-1&cost=0.25", &[]).status, 200);
    assert_eq!(inst.get("/go/offer1?tsid=OK-2&cost=0.25", &[]).status, 302);
    assert_eq!(inst.metric(clicks), 2.0);
    assert_eq!(inst.metric(cost), 0.5);
    let stored = inst.count("SELECT count(*) FROM clicks", &[]);
    assert_eq!(stored, 2, "the metric and the store agree");
}

#[test]
fn the_pixel_event_id_is_the_stored_and_relayed_key_when_multiple_conversions_is_off() {
    let source = FakeSource::start();
    let tail = format!(
        "{FAST_OUTBOX}\n[pixel]\ngrace_period = \"200ms\"\nallowed_origins = [\"https://shop.example\"]\n"
    );
    let inst = Instance::start(&body(&source, "", "multiple_conversions = false", &tail));
    let cid = click(&inst, "SRC-PX");
    let beacon = |txid: &str| {
        let json = format!(
            r#"{{"cid":"{cid}","event":"purchase","txid":"{txid}","value":9.5,"currency":"USD"}}"#
        );
        let r = request(
            inst.main,
            "POST",
            "/px",
            &[
                ("Content-Type", "text/plain"),
                ("Origin", "https://shop.example"),
            ],
            json.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let first = beacon("ORDER-1");
    assert_eq!(first["status"], "accepted", "{first}");
    let event_id = first["event_id"].as_str().unwrap().to_string();
    // The offer counts one conversion per click and event: another order is the same
    // conversion, and its reply names the same event.
    let second = beacon("ORDER-2");
    assert_eq!(second["status"], "duplicate", "{second}");
    assert_eq!(second["event_id"].as_str(), Some(event_id.as_str()));

    let stored = inst
        .row(
            "SELECT dedup_key FROM conversions WHERE click_id = $1",
            &[&cid],
        )
        .get_string(0);
    assert_eq!(stored, event_id, "the reply names the conversion as stored");
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
    let q = parse_query(got[0].split_once('?').unwrap().1);
    assert_eq!(
        first_value(&q, "event_id"),
        Some(event_id.as_str()),
        "the SDK's event_id is the one the source receives"
    );
}
