//! Profit reports against the real binary: known traffic (landing clicks with odd
//! costs, /go, S2S postbacks with duplicates, status changes and rejections) and every
//! figure checked to the cent, in JSON and CSV, by API and CLI, across group-bys and a
//! time-zone day boundary.

use clickstamp_e2e::instance::{workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::{binary, Instance};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Two campaigns: `c1` with a single offer (cake), `c2` with two offers (`o2` on
/// affise, `o3` on cake), each on its own traffic source.
pub fn report_body() -> String {
    let landers = workspace_root().join("config/demo/landers");
    let landers = landers.display();
    format!(
        r#"
[[networks]]
id = "cake"

[[networks]]
id = "aff"
kind = "affise"

[[traffic_sources]]
id = "src-a"
click_id_params = ["tsid"]
cost_param = "cost"
sub_id_params = ["zone"]

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

# k6 goes to o3 (cake) and converts through aff: the report's network is the
# conversion's. Such postbacks are refused (network_mismatch) unless allowed.
[postbacks]
allow_cross_network = true
"#
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

fn postback(inst: &Instance, target: &str, expect_status: u16) -> Value {
    let r = inst.get(target, &[]);
    assert_eq!(r.status, expect_status, "{target}: {}", r.text());
    r.json()
}

fn report(inst: &Instance, query: &str) -> Value {
    let r = inst.admin_get(&format!("/api/report?{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()
}

/// The row whose group-by values are `keys` (JSON values, `null` for none).
fn row<'a>(report: &'a Value, keys: &[(&str, Value)]) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| keys.iter().all(|(k, v)| &r[*k] == v))
        .unwrap_or_else(|| panic!("no row {keys:?} in {report:#}"))
}

/// Assert every figure of a row: clicks, uniques, conversions, cr, revenue, cost,
/// profit, roi, epc.
#[allow(clippy::too_many_arguments)]
fn assert_figures(
    what: &str,
    r: &Value,
    clicks: u64,
    uniques: u64,
    conversions: u64,
    cr: Value,
    revenue: f64,
    cost: f64,
    profit: f64,
    roi: Value,
    epc: Value,
) {
    let got = json!([
        r["clicks"],
        r["unique_clicks"],
        r["conversions"],
        r["cr"],
        r["revenue"],
        r["cost"],
        r["profit"],
        r["roi"],
        r["epc"]
    ]);
    let want = json!([
        clicks,
        uniques,
        conversions,
        cr,
        revenue,
        cost,
        profit,
        roi,
        epc
    ]);
    assert_eq!(
        got, want,
        "{what}: [clicks, uniques, conversions, cr, revenue, cost, profit, roi, epc] in {r:#}"
    );
}

fn offset_text(minutes: i64) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

fn date_text(days: u64) -> String {
    // Days since the epoch to a civil date (Hinnant), for the test's own expectations.
    let z = days as i64 + 719_468;
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

#[test]
fn reports_add_up_to_the_cent_by_any_grouping_in_json_csv_and_the_cli() {
    let inst = Instance::start(&report_body());

    // Campaign c1 (sole offer o1 on cake). Costs chosen so that per-row rounding would
    // be visibly wrong: 0.333 + 0.333 + 0.334 + 0.01 (campaign default) = 1.01.
    let (k1, _) = click(&inst, "/c1?tsid=A1&cost=0.333&zone=z1", "ua-1");
    let (_k2, _) = click(&inst, "/c1?tsid=A2&cost=0.333&zone=z1", "ua-1");
    let (k3, _) = click(&inst, "/c1?tsid=A3&cost=0.334&zone=z2", "ua-2");
    let (_k4, _) = click(&inst, "/c1?tsid=A4&zone=z2", "ua-3");
    // Campaign c2: k5 goes to o2 (affise), k6 to o3 (cake), k7 never clicks through.
    let (k5, cookie5) = click(&inst, "/c2?tsid=B5&cost=0.05&zone=z1", "ua-4");
    let (k6, cookie6) = click(&inst, "/c2?tsid=B6&cost=0.05&zone=z2", "ua-5");
    let (k7, _) = click(&inst, "/c2?tsid=B7&cost=0.0049", "ua-6");
    assert_eq!(inst.get("/go/o2", &[("Cookie", &cookie5)]).status, 302);
    assert_eq!(inst.get("/go/o3", &[("Cookie", &cookie6)]).status, 302);

    // Conversions, through the real postback route.
    postback(
        &inst,
        &format!("/postback/cake?cid={k1}&payout=2.5&txid=T1"),
        200,
    );
    let dup = postback(
        &inst,
        &format!("/postback/cake?cid={k1}&payout=2.5&txid=T1"),
        200,
    );
    assert_eq!(dup["status"], "duplicate");
    postback(
        &inst,
        &format!("/postback/cake?cid={k3}&payout=1.125&txid=T3"),
        200,
    );
    // k5: pending (counted). k6: approved, then rejected (not counted).
    postback(
        &inst,
        &format!("/postback/aff?cid={k5}&payout=10&status=2"),
        200,
    );
    postback(
        &inst,
        &format!("/postback/aff?cid={k6}&payout=4.2&status=1"),
        200,
    );
    let changed = postback(&inst, &format!("/postback/aff?cid={k6}&status=3"), 200);
    assert_eq!(changed["status"], "status_changed");
    postback(
        &inst,
        &format!("/postback/cake?cid={k7}&payout=0.7&txid=T7"),
        200,
    );
    // Refused postbacks count nowhere.
    postback(&inst, "/postback/cake?cid=not-a-click&payout=99", 400);
    postback(&inst, &format!("/postback/nowhere?cid={k1}&payout=99"), 404);

    // Wait for the next minute boundary M, then one more click after it: M becomes a
    // local midnight in a suitable fixed offset, to test day cuts and date ranges.
    let m = (now_ms() / 60_000 + 1) * 60_000;
    std::thread::sleep(Duration::from_millis(m + 30 - now_ms()));
    let (k8, _) = click(&inst, "/c1?tsid=A8&cost=0.02&zone=z3", "ua-7");
    postback(
        &inst,
        &format!("/postback/cake?cid={k8}&payout=1&txid=T8"),
        200,
    );

    // Everything before M: every figure, to the cent.
    let before = format!("to_ms={m}");
    let by_campaign = report(&inst, &format!("group_by=campaign&{before}"));
    assert_eq!(by_campaign["rows"].as_array().unwrap().len(), 2);
    assert_figures(
        "c1",
        row(&by_campaign, &[("campaign", json!("c1"))]),
        4,
        3,
        2,
        json!(50.0),
        3.63,
        1.01,
        2.62,
        json!(258.91),
        json!(0.9063),
    );
    assert_figures(
        "c2",
        row(&by_campaign, &[("campaign", json!("c2"))]),
        3,
        3,
        2,
        json!(66.67),
        10.70,
        0.10,
        10.60,
        json!(10100.19),
        json!(3.5667),
    );
    assert_figures(
        "totals",
        &by_campaign["totals"],
        7,
        6,
        4,
        json!(57.14),
        14.33,
        1.11,
        13.22,
        json!(1184.87),
        json!(2.0464),
    );
    assert_eq!(by_campaign["totals"]["revenue_micros"], 14_325_000);
    assert_eq!(by_campaign["totals"]["cost_micros"], 1_114_900);

    let by_sub = report(&inst, &format!("group_by=campaign,sub1&{before}"));
    assert_eq!(by_sub["rows"].as_array().unwrap().len(), 5);
    assert_figures(
        "c1/z1",
        row(&by_sub, &[("campaign", json!("c1")), ("sub1", json!("z1"))]),
        2,
        1,
        1,
        json!(50.0),
        2.50,
        0.67,
        1.83,
        json!(275.38),
        json!(1.25),
    );
    assert_figures(
        "c1/z2",
        row(&by_sub, &[("campaign", json!("c1")), ("sub1", json!("z2"))]),
        2,
        2,
        1,
        json!(50.0),
        1.13,
        0.34,
        0.79,
        json!(227.03),
        json!(0.5625),
    );
    assert_figures(
        "c2/z2 (rejected conversion)",
        row(&by_sub, &[("campaign", json!("c2")), ("sub1", json!("z2"))]),
        1,
        1,
        0,
        json!(0.0),
        0.0,
        0.05,
        -0.05,
        json!(-100.0),
        json!(0.0),
    );
    assert_figures(
        "c2/no sub1",
        row(&by_sub, &[("campaign", json!("c2")), ("sub1", Value::Null)]),
        1,
        1,
        1,
        json!(100.0),
        0.70,
        0.0,
        0.70,
        json!(14185.71),
        json!(0.7),
    );

    let by_offer = report(&inst, &format!("group_by=offer&{before}"));
    assert_figures(
        "o1",
        row(&by_offer, &[("offer", json!("o1"))]),
        4,
        3,
        2,
        json!(50.0),
        3.63,
        1.01,
        2.62,
        json!(258.91),
        json!(0.9063),
    );
    assert_figures(
        "o2 (pending counts)",
        row(&by_offer, &[("offer", json!("o2"))]),
        1,
        1,
        1,
        json!(100.0),
        10.0,
        0.05,
        9.95,
        json!(19900.0),
        json!(10.0),
    );
    assert_figures(
        "o3",
        row(&by_offer, &[("offer", json!("o3"))]),
        1,
        1,
        0,
        json!(0.0),
        0.0,
        0.05,
        -0.05,
        json!(-100.0),
        json!(0.0),
    );
    assert_figures(
        "no offer",
        row(&by_offer, &[("offer", Value::Null)]),
        1,
        1,
        1,
        json!(100.0),
        0.70,
        0.0,
        0.70,
        json!(14185.71),
        json!(0.7),
    );

    let by_network = report(&inst, &format!("group_by=network,source&{before}"));
    assert_figures(
        "cake/src-a",
        row(
            &by_network,
            &[("network", json!("cake")), ("source", json!("src-a"))],
        ),
        4,
        3,
        2,
        json!(50.0),
        3.63,
        1.01,
        2.62,
        json!(258.91),
        json!(0.9063),
    );
    assert_figures(
        "aff/src-b",
        row(
            &by_network,
            &[("network", json!("aff")), ("source", json!("src-b"))],
        ),
        1,
        1,
        1,
        json!(100.0),
        10.0,
        0.05,
        9.95,
        json!(19900.0),
        json!(10.0),
    );
    // k6's click went to o3 (cake); k7's conversion came from cake though its click
    // had no offer: it counts under cake, its click under no network.
    assert_figures(
        "cake/src-b",
        row(
            &by_network,
            &[("network", json!("cake")), ("source", json!("src-b"))],
        ),
        1,
        1,
        1,
        json!(100.0),
        0.70,
        0.05,
        0.65,
        json!(1300.0),
        json!(0.7),
    );
    assert_figures(
        "none/src-b",
        row(
            &by_network,
            &[("network", Value::Null), ("source", json!("src-b"))],
        ),
        1,
        1,
        0,
        json!(0.0),
        0.0,
        0.0,
        0.0,
        json!(-100.0),
        json!(0.0),
    );

    // CSV: same figures, money with exactly two decimals, no totals line.
    let csv = inst.admin_get(&format!(
        "/api/report?group_by=campaign&format=csv&{before}"
    ));
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(
        csv.text(),
        "campaign,clicks,unique_clicks,conversions,cr,revenue,cost,profit,roi,epc\r\n\
         c1,4,3,2,50.00,3.63,1.01,2.62,258.91,0.9063\r\n\
         c2,3,3,2,66.67,10.70,0.10,10.60,10100.19,3.5667\r\n"
    );

    // The time-zone boundary: in the offset where M is midnight, k8 is on day D and
    // everything else on D-1.
    let minute_of_day = ((m % DAY_MS) / 60_000) as i64;
    let offset = if minute_of_day <= 840 {
        -minute_of_day
    } else {
        1440 - minute_of_day
    };
    let tz = offset_text(offset).replace('+', "%2B");
    let local_m = (m as i64 + offset * 60_000) as u64;
    assert_eq!(local_m % DAY_MS, 0);
    let (d_prev, d) = (date_text(local_m / DAY_MS - 1), date_text(local_m / DAY_MS));
    let by_day = report(&inst, &format!("group_by=day&tz={tz}"));
    assert_eq!(by_day["tz"], offset_text(offset));
    let days: Vec<&Value> = by_day["rows"].as_array().unwrap().iter().collect();
    assert_eq!(
        days.len(),
        2,
        "one day either side of local midnight: {by_day:#}"
    );
    assert_figures(
        "day before",
        row(&by_day, &[("day", json!(d_prev))]),
        7,
        6,
        4,
        json!(57.14),
        14.33,
        1.11,
        13.22,
        json!(1184.87),
        json!(2.0464),
    );
    assert_figures(
        "day of k8",
        row(&by_day, &[("day", json!(d))]),
        1,
        1,
        1,
        json!(100.0),
        1.0,
        0.02,
        0.98,
        json!(4900.0),
        json!(1.0),
    );
    let only_d = report(&inst, &format!("from={d}&to={d}&tz={tz}"));
    assert_figures(
        "from=to=D",
        &only_d["totals"],
        1,
        1,
        1,
        json!(100.0),
        1.0,
        0.02,
        0.98,
        json!(4900.0),
        json!(1.0),
    );
    assert_eq!(only_d["rows"].as_array().unwrap().len(), 1);
    let only_prev = report(&inst, &format!("to={d_prev}&tz={tz}"));
    assert_eq!(
        only_prev["totals"]["clicks"], 7,
        "`to` covers its whole day and no more"
    );
    let all = report(&inst, "");
    assert_figures(
        "all time",
        &all["totals"],
        8,
        7,
        5,
        json!(62.5),
        15.33,
        1.13,
        14.2,
        json!(1250.34),
        json!(1.9156),
    );

    // The CLI asks the running instance and prints the same report.
    let out = std::process::Command::new(binary())
        .args(["report", "--config"])
        .arg(&inst.config_path)
        .args([
            "--group-by",
            "campaign",
            "--format",
            "csv",
            "--tz",
            &offset_text(offset),
            "--to",
            &d_prev,
        ])
        .output()
        .expect("run clickstamp report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), csv.text());
    let out = std::process::Command::new(binary())
        .args(["report", "--config"])
        .arg(&inst.config_path)
        .args([
            "--group-by",
            "campaign,sub1,day",
            "--tz",
            &offset_text(offset),
        ])
        .output()
        .expect("run clickstamp report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_json: Value = serde_json::from_slice(&out.stdout).expect("the CLI prints JSON");
    assert_eq!(cli_json["rows"].as_array().unwrap().len(), 6);
    assert_eq!(cli_json["totals"], all["totals"]);
    let _ = k8;
}

#[test]
fn bad_report_requests_get_a_reason_and_need_the_token() {
    let inst = Instance::start(&report_body());
    let r = inst.admin_get("/api/report?group_by=planet");
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["error"], "bad_request");
    assert!(body["message"].as_str().unwrap().contains("sub1"), "{body}");
    let r = inst.admin_get("/api/report?tz=Europe/Paris");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("+02:00"), "{}", r.text());
    let r = clickstamp_e2e::get(inst.admin, "/api/report", &[]);
    assert_eq!(r.status, 401, "reports are behind the admin token");
    let r = clickstamp_e2e::get(
        inst.admin,
        "/api/report",
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}x"))],
    );
    assert_eq!(r.status, 401);
    // An empty store answers an empty report, not an error.
    let empty = inst.admin_get("/api/report?group_by=campaign").json();
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["totals"]["clicks"], 0);
    // The CLI refuses a bad argument before connecting, naming the flag.
    let out = std::process::Command::new(binary())
        .args(["report", "--config"])
        .arg(&inst.config_path)
        .args(["--group-by", "planet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--group-by"));
}
