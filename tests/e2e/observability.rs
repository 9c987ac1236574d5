//! The dashboards and alerts against a real Prometheus: the Debian `prometheus` binary
//! scrapes the real clickstamp binary's /metrics every second under synthetic traffic
//! (clicks, /go, postbacks with duplicates, status changes and rejections, pixel
//! conversions, a traffic source that answers 500 until its relays are dead-lettered,
//! a relay that cannot be rendered). Then every panel query and every alert rule of
//! `grafana/` is evaluated through Prometheus's HTTP API: each must parse, and each
//! panel must return at least one series with a finite value. promtool checks the
//! rules, the scrape config and the live exposition.

use clickstamp_e2e::instance::{free_addr, workspace_root};
use clickstamp_e2e::{
    get, require_program, FakeSource, Instance, Mode, OriginServer, Reply, TempDir,
};
use clickstamp_plugins::query::{first_value, parse_query};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Grafana's variables as the test evaluates them: every campaign, source, route and
/// network; windows that fit a 1-second scrape interval and a minute of data.
const SUBSTITUTIONS: [(&str, &str); 11] = [
    ("${datasource}", "unused"),
    ("${campaign}", ".*"),
    ("$campaign", ".*"),
    ("${source}", ".*"),
    ("$source", ".*"),
    ("$route", ".*"),
    ("$network", ".*"),
    ("$__rate_interval", "15s"),
    ("$__range", "10m"),
    ("$__interval", "2s"),
    ("${__range}", "10m"),
];

fn body(good: &FakeSource, bad: &FakeSource, origin: SocketAddr) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"

[[networks]]
id = "aff"
kind = "affise"

[[traffic_sources]]
id = "good-src"
click_id_params = ["tsid"]
cost_param = "cost"
sub_id_params = ["zone"]
postback_url = "http://{good}/conv?clickid={{source_click_id}}&payout={{payout}}"

[[traffic_sources]]
id = "bad-src"
click_id_params = ["tsid"]
cost_param = "cost"
postback_url = "http://{bad}/conv?clickid={{source_click_id}}&payout={{payout}}"

[[offers]]
id = "good-offer"
url = "https://network.example/good?a=1"
network = "cake"
payout = 1.5

[[offers]]
id = "aff-offer"
url = "https://affise.example/offer?a=2"
network = "aff"

[[campaigns]]
id = "good"
path = "/good"
traffic_source = "good-src"
offers = [{{ offer = "good-offer" }}]
origin = {{ landers = "{landers}" }}

[[campaigns]]
id = "bad"
path = "/bad"
traffic_source = "bad-src"
offers = [{{ offer = "aff-offer" }}]
origin = {{ landers = "{landers}" }}

[[campaigns]]
id = "proxied"
path = "/lp"
traffic_source = "good-src"
offers = [{{ offer = "good-offer" }}]
origin = {{ upstream = "http://{origin}" }}
rewrite = {{ max_memory_bytes = 4096 }}

[outbox]
poll_interval = "50ms"
backoff_base = "50ms"
backoff_max = "100ms"
max_attempts = 2

[pixel]
grace_period = "1s"
"#,
        good = good.addr,
        bad = bad.addr,
        origin = origin,
        landers = landers.display()
    )
}

/// A Prometheus process, killed on drop.
struct Prometheus {
    addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Prometheus {
    fn start(program: &Path, target: SocketAddr) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let alerts = workspace_root().join("grafana/alerts.yml");
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {alerts}\n\
                 scrape_configs:\n  - job_name: clickstamp\n    static_configs:\n      - targets: [\"{target}\"]\n",
                alerts = alerts.display()
            ),
        )
        .unwrap();
        let addr = free_addr();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            addr,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while clickstamp_e2e::request(addr, "GET", "/-/ready", &[], b"")
            .map(|r| r.status)
            .unwrap_or(0)
            != 200
        {
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query` at the current time: Ok(result array) or Err(error text).
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let r = get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(expr)),
            &[],
        );
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("{e}: {}", r.text()))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            // A scalar result is one value.
            other => vec![serde_json::json!({ "value": other })],
        })
    }

    fn value(&self, expr: &str) -> f64 {
        self.query(expr)
            .ok()
            .and_then(|r| r.first().and_then(sample_value))
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_value(series: &Value) -> Option<f64> {
    series["value"][1].as_str().and_then(|v| v.parse().ok())
}

/// Percent-encode a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn substitute(expr: &str) -> String {
    let mut e = expr.to_string();
    for (var, value) in SUBSTITUTIONS {
        e = e.replace(var, value);
    }
    e
}

/// Every (dashboard, panel title, expr) in the dashboard files, nested rows included.
fn panel_queries() -> Vec<(String, String, String)> {
    fn walk(board: &str, panels: &[Value], out: &mut Vec<(String, String, String)>) {
        for p in panels {
            if let Some(nested) = p["panels"].as_array() {
                walk(board, nested, out);
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let title = p["title"].as_str().unwrap_or("").to_string();
                    out.push((board.to_string(), title, expr.to_string()));
                }
            }
        }
    }
    let mut out = Vec::new();
    for board in dashboards() {
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&board).unwrap()).unwrap();
        let name = board.file_name().unwrap().to_string_lossy().into_owned();
        walk(&name, json["panels"].as_array().unwrap(), &mut out);
    }
    out
}

fn dashboards() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("grafana/dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// The `expr` of every rule in grafana/alerts.yml (a YAML block scalar or a one-liner).
fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("grafana/alerts.yml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut name = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(n) = t.strip_prefix("- alert:") {
            name = n.trim().to_string();
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let indent = lines[i].len() - t.len();
            let rest = rest.trim();
            if rest == "|" || rest == ">" {
                let mut expr = String::new();
                i += 1;
                while i < lines.len() {
                    let l = lines[i];
                    let li = l.len() - l.trim_start().len();
                    if !l.trim().is_empty() && li <= indent {
                        break;
                    }
                    expr.push_str(l.trim());
                    expr.push('\n');
                    i += 1;
                }
                out.push((name.clone(), expr));
                continue;
            }
            out.push((name.clone(), rest.to_string()));
        }
        i += 1;
    }
    out
}

fn landing(main: SocketAddr, target: &str, ua: &str) -> (String, String) {
    let r = get(main, target, &[("User-Agent", ua)]);
    assert_eq!(r.status, 200, "{target}");
    let cookie = r.cookie().expect("click cookie");
    (cookie.split_once('=').unwrap().1.to_string(), cookie)
}

fn go(main: SocketAddr, offer: &str, cookie: &str) {
    let r = get(main, &format!("/go/{offer}"), &[("Cookie", cookie)]);
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap();
    let q = parse_query(location.split_once('?').unwrap().1);
    assert!(
        first_value(&q, "s2")
            .or_else(|| first_value(&q, "sub1"))
            .is_some(),
        "the offer link carries the click id: {location}"
    );
}

/// One round of the steady traffic every rate() panel needs: a paid click through
/// /go, its postback and a duplicate, a refused postback, a pixel conversion, a
/// proxied landing page with a stamped offer link.
fn steady_round(main: SocketAddr, n: u64) {
    let (cid, cookie) = landing(
        main,
        &format!("/good?tsid=G{n}&cost=0.05&zone=z{}", n % 3),
        &format!("ua-{}", n % 5),
    );
    go(main, "good-offer", &cookie);
    let pb = format!("/postback/cake?cid={cid}&payout=2&txid=T{n}");
    assert_eq!(get(main, &pb, &[]).status, 200);
    assert_eq!(get(main, &pb, &[]).json()["status"], "duplicate");
    assert_eq!(
        get(main, "/postback/cake?cid=forged0000&payout=1", &[]).status,
        400
    );
    let (pcid, _) = landing(main, &format!("/good?tsid=P{n}&cost=0.01"), "ua-pixel");
    let px = get(main, &format!("/px?cid={pcid}&event=lead&value=1.5"), &[]);
    assert_eq!(px.status, 200, "pixel: {}", px.text());
    let proxied = get(main, &format!("/lp/?tsid=L{n}"), &[]);
    assert!(proxied.text().contains("s2="), "the offer link is stamped");
}

#[test]
fn every_dashboard_panel_and_alert_rule_evaluates_on_a_real_prometheus() {
    let Some(prometheus) = require_program("prometheus") else {
        return;
    };
    let Some(promtool) = require_program("promtool") else {
        return;
    };

    // Static checks of the shipped files.
    let grafana = workspace_root().join("grafana");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&grafana)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let good = FakeSource::start();
    let bad = FakeSource::start();
    bad.set_mode(Mode::ServerError);
    // A proxied landing page whose second link has an attribute larger than the
    // rewriter's memory limit: stamped up to there, then passed through and counted.
    let page = format!(
        "<a href=\"https://network.example/good?a=1\">1</a><a title=\"{}\" href=\"https://network.example/good?a=1\">2</a><p>tail</p>",
        "x".repeat(20_000)
    );
    let origin = OriginServer::start(move |seen| {
        if seen.target.contains("broken") {
            // Split inside the big attribute: lol-html must hold the unfinished tag
            // across pieces, past its limit (one read holding the whole tag would not).
            Reply::ok("text/html", page.clone()).chunked(
                std::iter::once(70)
                    .chain((1..=20).map(|k| k * 1_000))
                    .collect(),
            )
        } else {
            Reply::ok(
                "text/html",
                "<p>offer: <a href=\"https://network.example/good?a=1\">buy</a></p>",
            )
        }
    });
    let inst = Instance::start(&body(&good, &bad, origin.addr));
    let prom = Prometheus::start(&prometheus, inst.admin);

    // Burst traffic: the failing source (relays retried, then dead-lettered), a relay
    // that cannot be rendered (no source click id), status changes, forged click ids,
    // an unknown network.
    for n in 0..3 {
        let (cid, cookie) = landing(inst.main, &format!("/bad?tsid=B{n}&cost=0.02"), "ua-bad");
        go(inst.main, "aff-offer", &cookie);
        assert_eq!(
            inst.get(&format!("/postback/aff?cid={cid}&payout=3&status=2"), &[])
                .status,
            200
        );
        let changed = inst
            .get(&format!("/postback/aff?cid={cid}&status=1"), &[])
            .json();
        assert_eq!(changed["status"], "status_changed");
    }
    let (no_tsid, _) = landing(inst.main, "/bad?cost=0.02", "ua-bad");
    assert_eq!(
        inst.get(
            &format!("/postback/aff?cid={no_tsid}&payout=1&status=1"),
            &[]
        )
        .status,
        200
    );
    assert_eq!(
        inst.get("/go/good-offer?click=not-a-click-id", &[]).status,
        302
    );
    assert_eq!(inst.get("/postback/nowhere?cid=x", &[]).status, 404);
    let proxied = inst.get("/lp/broken?tsid=L1", &[]);
    assert_eq!(proxied.status, 200);
    assert!(proxied.text().ends_with("<p>tail</p>"), "the page is whole");
    assert_eq!(
        inst.metric("clickstamp_html_rewrite_failures_total{campaign=\"proxied\"}"),
        1.0,
        "the rewrite failure is counted"
    );

    // Steady traffic in the background while Prometheus scrapes and we evaluate.
    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let stop = stop.clone();
        let main = inst.main;
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                steady_round(main, n);
                n += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    // Wait for the dead letters and for enough scrapes for 15s rate windows.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let dead = prom.value("sum(clickstamp_outbox_entries{state=\"dead\"})");
        let samples = prom.value("count_over_time(up{job=\"clickstamp\"}[1m])");
        let up = prom.value("up{job=\"clickstamp\"}");
        if dead >= 3.0 && samples >= 20.0 && up == 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letters or scrapes yet (dead {dead}, samples {samples}, up {up}); prometheus log:\n{}\nclickstamp log:\n{}",
            prom.log(),
            inst.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every panel query parses and returns data.
    let queries = panel_queries();
    assert!(
        queries.len() >= 40,
        "found only {} panel queries",
        queries.len()
    );
    let mut failures = Vec::new();
    // A panel may lack data only because a scrape fell behind on a loaded machine:
    // the ones without data are asked again after a few more scrapes, up to 3 times.
    let mut pending: Vec<&(String, String, String)> = queries.iter().collect();
    let mut no_data = Vec::new();
    for attempt in 0..4 {
        let mut still = Vec::new();
        no_data.clear();
        for q in pending {
            let (board, title, expr) = q;
            let e = substitute(expr);
            assert!(
                !e.contains('$'),
                "unsubstituted variable in {board} / {title}: {e}"
            );
            match prom.query(&e) {
                Err(err) => failures.push(format!(
                    "{board} / {title}: does not evaluate: {err}\n    {e}"
                )),
                Ok(series)
                    if !series
                        .iter()
                        .any(|s| sample_value(s).is_some_and(f64::is_finite)) =>
                {
                    no_data.push(format!(
                        "{board} / {title}: no data ({} series)\n    {e}",
                        series.len()
                    ));
                    still.push(q);
                }
                Ok(_) => {}
            }
        }
        pending = still;
        if pending.is_empty() || attempt == 3 {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    failures.extend(no_data);
    // The traffic produced what the pixel-vs-S2S and outbox panels are about.
    let origins = prom
        .query("sum by (origin) (clickstamp_conversions_total)")
        .unwrap_or_default();
    for origin in ["s2s", "pixel"] {
        if !origins.iter().any(|s| s["metric"]["origin"] == origin) {
            failures.push(format!("no {origin} conversions scraped: {origins:?}"));
        }
    }
    for (expr, what) in [
        (
            "sum(clickstamp_outbox_deliveries_total{outcome=\"retry\"})",
            "retries",
        ),
        (
            "sum(clickstamp_relay_render_failures_total)",
            "render failures",
        ),
        (
            "sum(clickstamp_postbacks_total{outcome=\"duplicate\"})",
            "duplicates",
        ),
        (
            "sum(clickstamp_postbacks_total{outcome=\"status_changed\"})",
            "status changes",
        ),
        (
            "sum(clickstamp_click_ids_rejected_total)",
            "refused click ids",
        ),
    ] {
        // NaN (no series) fails too.
        if prom.value(expr).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            failures.push(format!("the traffic produced no {what}: {expr}"));
        }
    }
    // Every metric a panel names exists (so `or vector(0)` cannot hide a typo).
    let exposed = get(inst.admin, "/metrics", &[]).text();
    for (board, title, expr) in &queries {
        for name in metric_names(expr) {
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            if !exposed.contains(&format!("# TYPE {family} ")) {
                failures.push(format!(
                    "{board} / {title}: names {name}, which /metrics does not export"
                ));
            }
        }
    }
    // Template variables resolve to the values the traffic produced.
    for (var, expected) in [
        ("campaign", "good"),
        ("source", "good-src"),
        ("route", "postback"),
        ("network", "cake"),
    ] {
        let r = get(prom.addr, &format!("/api/v1/label/{var}/values"), &[]).json();
        if !r["data"].as_array().unwrap().iter().any(|v| v == expected) {
            failures.push(format!("variable ${var}: {expected} missing from {r}"));
        }
    }

    // Every alert rule parses and evaluates; Prometheus loaded them all, healthy, and
    // the dead-letter alert is on its way to firing.
    let alerts = alert_exprs();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for (name, expr) in &alerts {
        if let Err(err) = prom.query(expr) {
            failures.push(format!("alert {name}: does not evaluate: {err}"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        let r = get(prom.addr, "/api/v1/rules", &[]).json();
        let rules: Vec<Value> = r["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        let dead = rules.iter().find(|r| r["name"] == "ClickstampDeadLetters");
        if dead.is_some_and(|d| d["state"] != "inactive") || Instant::now() > deadline {
            break rules;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(rules.len(), 7);
    for r in &rules {
        if r["health"] != "ok" {
            failures.push(format!(
                "alert {} unhealthy in prometheus: {}",
                r["name"], r["lastError"]
            ));
        }
    }
    let dead_alert = rules
        .iter()
        .find(|r| r["name"] == "ClickstampDeadLetters")
        .unwrap();
    if !matches!(dead_alert["state"].as_str(), Some("pending" | "firing")) {
        failures.push(format!(
            "ClickstampDeadLetters did not trigger with dead letters: {dead_alert}"
        ));
    }
    let quiet = rules
        .iter()
        .find(|r| r["name"] == "ClickstampStoreErrors")
        .unwrap();
    if quiet["state"] != "inactive" {
        failures.push(format!(
            "ClickstampStoreErrors fired without store errors: {quiet}"
        ));
    }

    // promtool lints the live exposition.
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(exposed.as_bytes())
            .unwrap();
    }
    let lint = lint.wait_with_output().unwrap();
    if !lint.status.success() {
        failures.push(format!(
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&lint.stdout),
            String::from_utf8_lossy(&lint.stderr)
        ));
    }

    stop.store(true, Ordering::Relaxed);
    steady.join().expect("steady traffic ran without failing");
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The traffic really exercised what the panels show.
    assert!(good.received().len() >= 3, "relays reached the good source");
    assert!(
        bad.received().len() >= 6,
        "the failing source was retried: {:?}",
        bad.received()
    );
}

/// The `clickstamp_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("clickstamp_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names.sort();
    names.dedup();
    names
}
