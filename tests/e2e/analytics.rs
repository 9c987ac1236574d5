//! ClickHouse analytics against the real binary and a real ClickHouse server: the same
//! traffic gives the same report from the store and from ClickHouse, to the byte; a
//! kill -9 mid-export and a ClickHouse outage lose nothing and double nothing; history
//! arrives by backfill; credentials stay secret. Runs on either store (the PostgreSQL
//! rerun in `on_postgres` includes this suite).

use clickstamp_e2e::clickhouse::{ClickHouseServer, EXPORTER_PASSWORD, EXPORTER_USER};
use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{request, Instance};
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 86_400_000;
const SECRET: &str = "cake-secret";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Two campaigns (`c1` with one offer on cake, `c2` with two offers on two networks),
/// the pixel on, and analytics into `clickhouse`.
fn body(clickhouse: &ClickHouseServer, credentials: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"
# This operator's CAKE instance sends a status and an event.
macros = {{ status = "status", event = "event" }}

[[networks]]
id = "aff"
kind = "affise"

[[traffic_sources]]
id = "src-a"
click_id_params = ["tsid"]
cost_param = "cost"
sub_id_params = ["zone", "site", "kw"]

[[traffic_sources]]
id = "src-b"
click_id_params = ["tsid"]
cost_param = "cost"
sub_id_params = ["zone"]

[[offers]]
id = "o1"
url = "https://network.example/o1?a=1"
network = "cake"

[[offers]]
id = "o2"
url = "https://affise.example/o2?a=2"
network = "aff"

[[offers]]
id = "o3"
url = "https://network.example/o3?a=3"
network = "cake"

[[campaigns]]
id = "c1"
path = "/c1"
traffic_source = "src-a"
offers = [{{ offer = "o1" }}]
origin = {{ landers = "{landers}" }}
cost = 0.01

[[campaigns]]
id = "c2"
path = "/c2"
traffic_source = "src-b"
offers = [{{ offer = "o2", weight = 1 }}, {{ offer = "o3", weight = 1 }}]
origin = {{ landers = "{landers}" }}

[postbacks]
allow_cross_network = true

[pixel]
grace_period = "1h"
allowed_origins = ["https://shop.example"]

[analytics]
clickhouse = {{ url = "{url}", database = "clickstamp"{credentials} }}
flush_interval = "50ms"
retry_max = "1s"
"#,
        landers = landers.display(),
        url = clickhouse.http_url(),
    )
}

/// A landing click; returns (click id, cookie).
fn click(inst: &Instance, target: &str, user_agent: &str) -> (String, String) {
    let r = inst.get(target, &[("User-Agent", user_agent)]);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    let cookie = r.cookie().expect("a new click sets its cookie");
    let id = cookie.split_once('=').unwrap().1.to_string();
    (id, cookie)
}

fn postback(inst: &Instance, target: &str) -> Value {
    let r = inst.get(target, &[]);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r.json()
}

fn beacon(inst: &Instance, json: &str) -> Value {
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
}

/// Live traffic through the real routes: landing clicks with sub ids and costs, /go,
/// S2S postbacks with duplicates, several events per click, a status change, a
/// chargeback, and a pixel conversion upgraded by its S2S twin. Returns the clicks.
fn live_traffic(inst: &Instance) -> usize {
    let (k1, _) = click(inst, "/c1?tsid=A1&cost=0.333&zone=z1&site=s1", "ua-1");
    let (_k2, _) = click(inst, "/c1?tsid=A2&cost=0.333&zone=z1&kw=", "ua-1");
    let (k3, cookie3) = click(inst, "/c1?tsid=A3&cost=0.334&zone=z2", "ua-2");
    let (k4, _) = click(inst, "/c1?tsid=A4&zone=z2&site=s2&kw=k%2C1", "ua-3");
    let (k5, cookie5) = click(inst, "/c2?tsid=B5&cost=0.05&zone=z1", "ua-4");
    let (k6, cookie6) = click(inst, "/c2?tsid=B6&cost=0.05&zone=z2", "ua-5");
    let (k7, _) = click(inst, "/c2?tsid=B7&cost=0.0049", "ua-6");
    assert_eq!(inst.get("/go/o2", &[("Cookie", &cookie5)]).status, 302);
    assert_eq!(inst.get("/go/o3", &[("Cookie", &cookie6)]).status, 302);
    assert_eq!(inst.get("/go/c1", &[("Cookie", &cookie3)]).status, 302);
    // Direct links mint their own clicks.
    for n in 0..3 {
        let r = inst.get(&format!("/go/c2?tsid=D{n}&cost=0.1"), &[]);
        assert_eq!(r.status, 302);
    }
    let s = SECRET;
    postback(
        inst,
        &format!("/postback/cake?cid={k1}&payout=2.5&txid=T1&secret={s}"),
    );
    let dup = postback(
        inst,
        &format!("/postback/cake?cid={k1}&payout=2.5&txid=T1&secret={s}"),
    );
    assert_eq!(dup["status"], "duplicate");
    // A second event on the same click.
    postback(
        inst,
        &format!("/postback/cake?cid={k1}&payout=0.75&event=upsell&txid=T1b&secret={s}"),
    );
    postback(
        inst,
        &format!("/postback/cake?cid={k3}&payout=1.125&txid=T3&secret={s}"),
    );
    // k5 pending (counted); k6 approved then rejected (not counted); k7 charged back.
    postback(inst, &format!("/postback/aff?cid={k5}&payout=10&status=2"));
    postback(inst, &format!("/postback/aff?cid={k6}&payout=4.2&status=1"));
    let changed = postback(inst, &format!("/postback/aff?cid={k6}&status=3"));
    assert_eq!(changed["status"], "status_changed");
    postback(
        inst,
        &format!("/postback/cake?cid={k7}&payout=0.7&txid=T7&secret={s}"),
    );
    let chargeback = postback(
        inst,
        &format!("/postback/cake?cid={k7}&payout=0.7&txid=T7&status=chargeback&secret={s}"),
    );
    assert_eq!(chargeback["status"], "status_changed", "{chargeback}");
    // Pixel first, then its S2S twin: one conversion with the S2S payout.
    let px = beacon(inst, &format!(r#"{{"cid":"{k4}","value":7}}"#));
    assert_eq!(px["status"], "accepted", "{px}");
    let upgraded = postback(
        inst,
        &format!("/postback/cake?cid={k4}&payout=9.5&txid=ORDER4&secret={s}"),
    );
    assert_eq!(upgraded["status"], "status_changed", "{upgraded}");
    10
}

/// History no request could make: clicks on each of the last `days` days (around
/// midnight UTC, so offsets move them across days), with their /go and conversions in
/// every status, written straight into the store. Returns the clicks written.
fn seed_history(inst: &Instance, days: i64) -> usize {
    let today = now_ms().div_euclid(DAY_MS) * DAY_MS;
    let mut n = 0;
    for day in 1..=days {
        for (i, minutes) in [-300i64, -20, 10, 200, 700].iter().enumerate() {
            let ts = today - day * DAY_MS + minutes * 60_000 + i as i64;
            let id = format!("{ts:012x}{:020x}", 0xabc0_0000 + n);
            let campaign = if i % 2 == 0 { "c1" } else { "c2" };
            let source = if campaign == "c1" { "src-a" } else { "src-b" };
            let sub1 = ["z1", "z2", "", "z3", "z1"][i];
            let sub2: Option<&str> = [Some("s1"), None, Some("s2"), None, Some("")][i];
            let cost = [0.0125, 0.3333, 0.0, 1.005, 0.01][i].to_string();
            inst.execute(
                "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, cost, sub1, sub2,
                     ip, user_agent, entry)
                 VALUES ($1, $2, $3, $4, CAST(CAST($5 AS TEXT) AS DOUBLE PRECISION), NULLIF($6, '~'), NULLIF($7, '~'), $8, $9, 'landing')",
                &[
                    &id,
                    &ts,
                    &campaign,
                    &source,
                    &cost,
                    &sub1,
                    &sub2.unwrap_or("~"),
                    &format!("10.0.0.{}", i % 3),
                    &format!("ua-{}", (n + i as i64) % 4),
                ],
            );
            n += 1;
            if campaign == "c2" {
                let offer = if day % 2 == 0 { "o2" } else { "o3" };
                inst.execute(
                    "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id)
                     VALUES ($1, $2, $3, 'c2', $4)",
                    &[&id, &(ts + 1000), &(n * 7), &offer],
                );
            }
            // Conversions: two of five clicks convert, in a status that depends on the
            // day; some carry no offer (the click's /go decides) or no network.
            if i == 0 || i == 3 {
                let status = ["approved", "pending", "rejected", "chargeback"][(day % 4) as usize];
                let (network, offer): (&str, &str) = if campaign == "c1" {
                    ("cake", "o1")
                } else if day % 3 == 0 {
                    ("~", "~")
                } else {
                    ("aff", "~")
                };
                let payout = format!("{}.{:03}", day, 5 + i);
                inst.execute(
                    "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, network_id,
                         offer_id, event, txid, payout, currency, status, origin, duplicates,
                         created_ms, updated_ms)
                     VALUES ($1, $2, $3, $4, NULLIF($5, '~'), NULLIF($6, '~'), 'conversion', NULL,
                         CAST(CAST($7 AS TEXT) AS DOUBLE PRECISION), 'USD', $8, 's2s', 0, $9, $9)",
                    &[
                        &format!("seed-{id}"),
                        &id,
                        &campaign,
                        &source,
                        &network,
                        &offer,
                        &payout,
                        &status,
                        &(ts + 5000),
                    ],
                );
            }
        }
    }
    n as usize
}

/// Wait until the exporter has sent everything queued (its lag metric reads 0 after
/// rows went out).
fn wait_for_export(inst: &Instance, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let exported = inst.metric("clickstamp_analytics_rows_exported_total{table=\"clicks\"}");
        let lag = inst.metric("clickstamp_analytics_lag_rows");
        if exported > 0.0 && lag == 0.0 {
            // One more refresh period, so a batch claimed just now is counted.
            std::thread::sleep(Duration::from_millis(1200));
            if inst.metric("clickstamp_analytics_lag_rows") == 0.0 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the export did not catch up: lag {lag} rows, {exported} click rows sent; log:\n{}",
            inst.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report_text(inst: &Instance, query: &str) -> (u16, String) {
    let r = inst.admin_get(&format!("/api/report?{query}"));
    (r.status, r.text())
}

/// The report `query` asks for from both sources; asserts they agree (JSON rows and
/// totals equal, CSV bodies byte-identical) and returns the store's JSON.
fn assert_sources_agree(inst: &Instance, query: &str) -> Value {
    let json = |source: &str| {
        let (status, text) = report_text(inst, &format!("{query}&source={source}"));
        assert_eq!(status, 200, "{query} from {source}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["source"], source, "{query}: {text}");
        v
    };
    let (store, clickhouse) = (json("store"), json("clickhouse"));
    assert_eq!(
        store["rows"], clickhouse["rows"],
        "rows of {query}: store (left) vs ClickHouse (right)"
    );
    assert_eq!(
        store["totals"], clickhouse["totals"],
        "totals of {query}: store (left) vs ClickHouse (right)"
    );
    let csv = |source: &str| {
        let (status, text) = report_text(inst, &format!("{query}&format=csv&source={source}"));
        assert_eq!(status, 200, "{query} as CSV from {source}: {text}");
        text
    };
    assert_eq!(csv("store"), csv("clickhouse"), "CSV of {query}");
    store
}

/// Every grouping (single dimensions, the benchmark's, several at once), in several
/// offsets, over everything and over a range of days.
fn assert_every_report_agrees(inst: &Instance) {
    let groupings = [
        "",
        "campaign",
        "offer",
        "network",
        "source",
        "sub1",
        "sub2",
        "sub3",
        "day",
        "campaign,sub1,day",
        "network,offer,sub2",
        "day,source,sub3,campaign",
        "campaign,offer,network,source,sub1,sub2,sub3,sub4,sub5,day",
    ];
    let today = now_ms().div_euclid(DAY_MS);
    let ranges = [
        String::new(),
        format!("&from={}&to={}", date(today - 3), date(today - 1)),
        format!(
            "&from_ms={}&to_ms={}",
            (today - 2) * DAY_MS + 1,
            now_ms() + 60_000
        ),
    ];
    for tz in ["Z", "%2B05:30", "-08:00", "%2B14:00"] {
        for g in groupings {
            for range in &ranges {
                assert_sources_agree(inst, &format!("group_by={g}&tz={tz}{range}"));
            }
        }
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn backfill(inst: &Instance, extra: &[&str]) -> String {
    let mut args = vec!["analytics", "backfill"];
    args.extend_from_slice(extra);
    let (code, out, err) = inst.command(&args);
    assert_eq!(code, 0, "analytics backfill: {out}{err}");
    out
}

#[test]
fn the_same_traffic_gives_byte_identical_reports_from_the_store_and_from_clickhouse() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    let inst = Instance::start(&body(&ch, ""));
    let history = seed_history(&inst, 6);
    let live = live_traffic(&inst);
    wait_for_export(&inst, Duration::from_secs(30));
    // The history went in behind the exporter's back: only a backfill sends it.
    let out = backfill(&inst, &["--restart"]);
    assert!(out.contains("done"), "{out}");

    let totals = assert_sources_agree(&inst, "group_by=campaign");
    assert_eq!(
        totals["totals"]["clicks"],
        (history + live) as u64,
        "every click counted once: {totals}"
    );
    assert!(totals["totals"]["conversions"].as_u64().unwrap() >= 6);
    assert_every_report_agrees(&inst);

    // The backfill merged every day it wrote ("settled" days are read without
    // FINAL); new traffic lands on today again, which is read FINAL until it is
    // quiet. Both kinds of day in one report still agree with the store.
    assert!(out.contains("days merged"), "{out}");
    let more = live_traffic(&inst);
    wait_for_export(&inst, Duration::from_secs(30));
    let both = assert_sources_agree(&inst, "group_by=campaign,day");
    assert_eq!(both["totals"]["clicks"], (history + live + more) as u64);
    assert_every_report_agrees(&inst);

    // Reports read ClickHouse unless told otherwise.
    let (status, auto) = report_text(&inst, "group_by=campaign");
    assert_eq!(status, 200);
    assert!(auto.contains(r#""source":"clickhouse""#), "{auto}");
    let m = inst.metric("clickstamp_analytics_rows_exported_total{table=\"conversions\"}");
    assert!(m >= 6.0, "conversions exported: {m}");
}

#[test]
fn kill_9_mid_export_and_a_clickhouse_outage_lose_nothing_and_double_nothing() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    let mut inst = Instance::start(&body(&ch, ""));
    live_traffic(&inst);
    wait_for_export(&inst, Duration::from_secs(30));

    // ClickHouse goes away; traffic goes on and is acknowledged as usual.
    ch.stop();
    let mut clicks = 10;
    for n in 0..120 {
        let (id, cookie) = click(
            &inst,
            &format!("/c2?tsid=OUT{n}&cost=0.02&zone=z{}", n % 7),
            "ua-out",
        );
        clicks += 1;
        if n % 3 == 0 {
            assert_eq!(inst.get("/go/o2", &[("Cookie", &cookie)]).status, 302);
        }
        if n % 4 == 0 {
            postback(
                &inst,
                &format!("/postback/aff?cid={id}&payout=1.01&status=1"),
            );
        }
        if n % 8 == 0 {
            postback(&inst, &format!("/postback/aff?cid={id}&status=3"));
        }
    }
    let failures = inst.metric_at_least(
        "clickstamp_analytics_export_failures_total{stage=\"clickhouse\"}",
        1.0,
        Duration::from_secs(15),
    );
    assert!(failures >= 1.0);
    assert_eq!(inst.metric("clickstamp_analytics_up"), 0.0);
    // The outage's changes wait in the queue: 120 clicks, 40 /go, 30 conversions, 15
    // status changes.
    let lag = inst.metric_at_least(
        "clickstamp_analytics_lag_rows",
        205.0,
        Duration::from_secs(10),
    );
    assert!(lag >= 205.0, "{lag}");
    // An automatic report still answers, from the store, and says why.
    let (status, auto) = report_text(&inst, "group_by=campaign");
    assert_eq!(status, 200, "{auto}");
    assert!(auto.contains(r#""source":"store""#), "{auto}");
    // Asked for ClickHouse explicitly, it is a 503 with a reason.
    let (status, text) = report_text(&inst, "group_by=campaign&source=clickhouse");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("clickhouse_unavailable"), "{text}");

    // Killed while it retries, the node restarts with the queue intact; ClickHouse
    // comes back and the exporter catches up.
    inst.kill9();
    ch.start_again();
    inst.restart();
    wait_for_export(&inst, Duration::from_secs(60));
    let after = assert_sources_agree(&inst, "group_by=campaign,sub1");
    assert_eq!(after["totals"]["clicks"], clicks as u64, "{after}");

    // Now a kill -9 in the middle of exports: traffic in a steady stream, the node
    // killed under it, restarted, and everything it acknowledged counted once.
    let stream = |inst: &Instance, from: usize, count: usize| {
        for n in from..from + count {
            let (id, _) = click(
                inst,
                &format!("/c1?tsid=K{n}&cost=0.003&zone=k{}", n % 5),
                "ua-k",
            );
            if n % 5 == 0 {
                postback(
                    inst,
                    &format!("/postback/cake?cid={id}&payout=0.5&txid=K{n}&secret={SECRET}"),
                );
            }
        }
    };
    stream(&inst, 0, 150);
    inst.kill9();
    inst.restart();
    stream(&inst, 150, 50);
    clicks += 200;
    wait_for_export(&inst, Duration::from_secs(60));
    let after = assert_sources_agree(&inst, "group_by=campaign,sub1");
    assert_eq!(after["totals"]["clicks"], clicks as u64, "{after}");
    assert_every_report_agrees(&inst);
}

#[test]
fn history_arrives_by_backfill_and_reports_read_the_store_until_it_has() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    // A store that ran without analytics, then gets it.
    let full = body(&ch, "");
    let without = &full[..full.find("[analytics]").unwrap()];
    let mut inst = Instance::start(without);
    let live = live_traffic(&inst);
    inst.kill9();
    inst.rewrite_config(&full);
    inst.restart();

    let (code, status, _) = inst.command(&["analytics", "status"]);
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("backfill:     not complete"), "{status}");
    assert!(status.contains("clickhouse:   answers"), "{status}");
    let (_, auto) = report_text(&inst, "group_by=campaign");
    assert!(
        auto.contains(r#""source":"store""#) && auto.contains("analytics backfill"),
        "{auto}"
    );

    let out = backfill(&inst, &[]);
    assert!(out.contains(&format!("done: {live} clicks")), "{out}");
    let again = backfill(&inst, &[]);
    assert!(again.contains("already complete"), "{again}");
    let (_, status, _) = inst.command(&["analytics", "status"]);
    assert!(status.contains("backfill:     complete"), "{status}");
    let (_, auto) = report_text(&inst, "group_by=campaign");
    assert!(auto.contains(r#""source":"clickhouse""#), "{auto}");
    assert_sources_agree(&inst, "group_by=campaign,offer,network,sub1,day");

    // New traffic after the backfill goes by the exporter.
    let (id, _) = click(&inst, "/c1?tsid=NEW&cost=1&zone=new", "ua-new");
    postback(
        &inst,
        &format!("/postback/cake?cid={id}&payout=3&txid=NEW&secret={SECRET}"),
    );
    wait_for_export(&inst, Duration::from_secs(30));
    let after = assert_sources_agree(&inst, "group_by=sub1");
    assert_eq!(after["totals"]["clicks"], (live + 1) as u64);
}

#[test]
fn credentials_come_from_the_environment_and_never_show() {
    let Some(ch) = ClickHouseServer::start() else {
        return;
    };
    let credentials = r#", user_env = "CH_USER", password_env = "CH_PASSWORD""#;
    let inst = Instance::start_with_env(
        &body(&ch, credentials),
        &[
            ("CH_USER", EXPORTER_USER),
            ("CH_PASSWORD", EXPORTER_PASSWORD),
        ],
    );
    live_traffic(&inst);
    wait_for_export(&inst, Duration::from_secs(30));
    assert_sources_agree(&inst, "group_by=campaign");

    // A wrong password: the exporter is refused, says so, and leaks nothing.
    let wrong = "wrong-pw-6d1f";
    let bad = Instance::start_with_env(
        &body(&ch, credentials),
        &[("CH_USER", EXPORTER_USER), ("CH_PASSWORD", wrong)],
    );
    live_traffic(&bad);
    bad.metric_at_least(
        "clickstamp_analytics_export_failures_total{stage=\"clickhouse\"}",
        1.0,
        Duration::from_secs(15),
    );
    assert_eq!(bad.metric("clickstamp_analytics_up"), 0.0);
    let (status, text) = report_text(&bad, "source=clickhouse");
    assert_eq!(status, 503, "{text}");
    let metrics = bad.admin_get("/metrics").text();
    for (what, text) in [("log", bad.log()), ("metrics", metrics), ("report", text)] {
        assert!(!text.contains(wrong), "the password shows in the {what}");
        assert!(
            !text.contains(EXPORTER_PASSWORD),
            "a password shows in the {what}"
        );
    }
    let (code, _, err) = bad.command(&["analytics", "status"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn bad_analytics_sections_are_refused_by_check_with_the_key_and_the_fix() {
    let cases = [
        ("[analytics]\nflush_interval = \"1s\"\n", "analytics.clickhouse", "add clickhouse"),
        (
            "[analytics]\nclickhouse = { url = \"http://u:p@127.0.0.1:8123\" }\n",
            "analytics.clickhouse.url",
            "user_env and password_env",
        ),
        (
            "[analytics]\nclickhouse = { url = \"ftp://127.0.0.1\" }\n",
            "analytics.clickhouse.url",
            "HTTP interface",
        ),
        (
            "[analytics]\nclickhouse = { url = \"http://127.0.0.1:8123\", database = \"a-b; DROP\" }\n",
            "analytics.clickhouse.database",
            "letters, digits and underscores",
        ),
        (
            "[analytics]\nclickhouse = { url = \"http://127.0.0.1:8123\", password_env = \"CLICKSTAMP_TEST_UNSET_VAR\" }\n",
            "analytics.clickhouse.password_env",
            "export CLICKSTAMP_TEST_UNSET_VAR",
        ),
        (
            "[analytics]\nclickhouse = { url = \"http://127.0.0.1:8123\", timeout = \"2m\" }\nlease = \"1m\"\n",
            "analytics.lease",
            "longer than analytics.clickhouse.timeout",
        ),
        (
            "[analytics]\nclickhouse = { url = \"http://127.0.0.1:8123\" }\nbatch_max = 0\n",
            "analytics.batch_max",
            "use 1 to 100000",
        ),
    ];
    for (section, key, fix) in cases {
        let dir = clickstamp_e2e::TempDir::new("analytics-check");
        let path = dir.0.join("clickstamp.toml");
        clickstamp_e2e::instance::write_config(
            &path,
            clickstamp_e2e::instance::free_addr(),
            clickstamp_e2e::instance::free_addr(),
            "",
            "",
            section,
        );
        let out = std::process::Command::new(clickstamp_e2e::binary())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{section}: {err}");
        assert!(err.contains(key) && err.contains(fix), "{section}: {err}");
        assert!(!err.contains("u:p@"), "credentials echoed: {err}");
    }
}
