//! Promises of the README that had no test: `/go` without direct linking, campaigns
//! told apart by host, the landing origin's timeout, `recompress = false`, brotli,
//! templates off, the `replay` CLI, journal filters, `/api/conversions` and
//! `durability = "async"`. Each through real HTTP against the real binary.

use crate::pixel::expected_event_id;
use clickstamp_e2e::instance::{workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::origin::{landing_page, OriginServer, Reply};
use clickstamp_e2e::{binary, request, FakeSource, Instance, Mode, TempDir};
use clickstamp_plugins::query::{first_value, parse_query};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "network-secret-123";

/// The click ID the origin's page generator is given before the real one is known.
const PLACEHOLDER: &str = "CLICKIDCLICKIDCLICKIDCLICKIDCLIC";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn cookie_click(resp: &clickstamp_e2e::Response) -> String {
    resp.cookie()
        .expect("a landing visitor gets a click cookie")
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

fn click_count(inst: &Instance) -> i64 {
    inst.value("SELECT count(*) FROM clicks", &[])
}

/// One CAKE offer on net.example/offer and one campaign at `/lp` proxied to `origin`
/// with `origin_extra` in its origin table and `rewrite` as its rewrite table.
fn proxied(origin: &str, origin_extra: &str, rewrite: &str) -> String {
    format!(
        r#"
[[networks]]
id = "cake"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "demo"
url = "https://net.example/offer?a=1"
network = "cake"

[[campaigns]]
id = "lp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "demo" }}]
origin = {{ upstream = "{origin}" {origin_extra} }}
rewrite = {{ {rewrite} }}
"#
    )
}

#[test]
fn go_without_a_click_sends_the_visitor_to_the_landing_page_when_direct_linking_is_off() {
    let landers = workspace_root().join("config/demo/landers");
    let inst = Instance::start(&format!(
        r#"
[[networks]]
id = "cake"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "strict-offer"
url = "https://net.example/strict?a=1"
network = "cake"

[[offers]]
id = "open-offer"
url = "https://net.example/open?a=1"
network = "cake"

[[campaigns]]
id = "strict"
path = "/strict"
traffic_source = "src"
offers = [{{ offer = "strict-offer" }}]
origin = {{ landers = "{landers}" }}
direct_linking = false

[[campaigns]]
id = "open"
path = "/open"
traffic_source = "src"
offers = [{{ offer = "open-offer" }}]
origin = {{ landers = "{landers}" }}
"#,
        landers = landers.display()
    ));
    for target in ["/go/strict-offer?tsid=X", "/go/strict"] {
        let r = inst.get(target, &[]);
        assert_eq!(r.status, 302, "{target}");
        assert_eq!(r.header("location"), Some("/strict"), "{target}");
        assert!(r.cookie().is_none(), "{target}: no click is minted");
    }
    assert_eq!(click_count(&inst), 0, "no click without a landing visit");
    // The same request on a campaign that allows direct linking mints a click.
    let r = inst.get("/go/open-offer", &[]);
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with("https://net.example/open?a=1&s2="),
        "{location}"
    );
    assert_eq!(click_count(&inst), 1);
    // After the landing page, the strict campaign's /go goes to the offer with that click.
    let landing = inst.get("/strict/?tsid=LANDED", &[]);
    assert_eq!(landing.status, 200);
    let cid = cookie_click(&landing);
    let cookie = landing.cookie().unwrap();
    let r = inst.get("/go/strict-offer", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("https://net.example/strict?a=1&s2={cid}").as_str())
    );
}

/// `GET target` with `host` as the Host header (the harness's client always sends the
/// listener's address); (status, Set-Cookie, body).
fn get_on_host(inst: &Instance, host: &str, target: &str) -> (u16, Option<String>, String) {
    let mut stream = std::net::TcpStream::connect(inst.main).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .map(|c| c.split(';').next().unwrap().to_string());
    (status, cookie, body.to_string())
}

#[test]
fn campaigns_on_the_same_path_are_told_apart_by_host() {
    let (site_a, site_b) = (TempDir::new("host-a"), TempDir::new("host-b"));
    std::fs::write(
        site_a.0.join("index.html"),
        "<html><body>site A</body></html>",
    )
    .unwrap();
    std::fs::write(
        site_b.0.join("index.html"),
        "<html><body>site B</body></html>",
    )
    .unwrap();
    let campaign = |id: &str, host: &str, dir: &TempDir| {
        format!(
            r#"
[[campaigns]]
id = "{id}"
host = "{host}"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "demo" }}]
origin = {{ landers = "{}" }}
"#,
            dir.0.display()
        )
    };
    let inst = Instance::start(&format!(
        r#"
[[networks]]
id = "cake"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "demo"
url = "https://net.example/offer?a=1"
network = "cake"
{}{}"#,
        campaign("camp-a", "a.example", &site_a),
        campaign("camp-b", "b.example", &site_b)
    ));
    for (host, want_campaign, want_page) in [
        ("a.example", "camp-a", "site A"),
        ("b.example", "camp-b", "site B"),
        ("A.Example:8080", "camp-a", "site A"),
    ] {
        let (status, cookie, page) = get_on_host(&inst, host, "/lp/?tsid=T");
        assert_eq!(status, 200, "{host}: {page}");
        assert!(page.contains(want_page), "{host}: {page}");
        let cookie = cookie.expect("a click cookie");
        let cid = cookie
            .strip_prefix(&format!("cs_{want_campaign}="))
            .unwrap_or_else(|| panic!("{host}: {cookie}"))
            .to_string();
        let stored: String = inst.value(
            "SELECT campaign_id FROM clicks WHERE click_id = $1",
            &[&cid],
        );
        assert_eq!(stored, want_campaign, "{host}");
    }
    let (status, _, _) = get_on_host(&inst, "c.example", "/lp/");
    assert_eq!(status, 404, "no campaign answers on c.example");
    assert_eq!(click_count(&inst), 3);
}

#[test]
fn an_origin_that_never_answers_gets_a_504_after_origin_timeout() {
    // Accepts connections, reads nothing, answers nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let inst = Instance::start(&proxied(
        &format!("http://{silent}"),
        ", timeout = \"1s\"",
        "",
    ));
    let started = Instant::now();
    let r = inst.get("/lp/?tsid=SLOW", &[]);
    let waited = started.elapsed();
    assert_eq!(r.status, 504, "{}", inst.log());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "answered after the 1s timeout, not the 30s default: {waited:?}"
    );
    let cid = cookie_click(&r);
    let scid: String = inst.value(
        "SELECT source_click_id FROM clicks WHERE click_id = $1",
        &[&cid],
    );
    assert_eq!(scid, "SLOW");
}

#[test]
fn check_refuses_an_origin_timeout_that_is_not_a_sane_duration() {
    let landers = workspace_root().join("config/demo/landers");
    for (origin, problem) in [
        (
            "upstream = \"http://127.0.0.1:9\", timeout = \"soon\"".to_string(),
            "\"soon\" is not a duration",
        ),
        (
            "upstream = \"http://127.0.0.1:9\", timeout = \"0s\"".to_string(),
            "\"0s\" is not a duration",
        ),
        (
            "upstream = \"http://127.0.0.1:9\", timeout = \"11m\"".to_string(),
            "longer than the 10m limit",
        ),
        (
            format!("landers = \"{}\", timeout = \"5s\"", landers.display()),
            "timeout is set for a landers directory",
        ),
    ] {
        let dir = TempDir::new("origin-timeout");
        let path = dir.0.join("clickstamp.toml");
        let body = proxied("x", "", "").replace("upstream = \"x\"  ", &origin);
        clickstamp_e2e::instance::write_config(
            &path,
            clickstamp_e2e::instance::free_addr(),
            clickstamp_e2e::instance::free_addr(),
            "",
            "",
            &body,
        );
        let out = std::process::Command::new(binary())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{origin}: {text}");
        assert!(
            text.contains("campaigns[0].origin.timeout") && text.contains(problem),
            "{origin}: {text}"
        );
    }
}

fn page_origin() -> OriginServer {
    let (page, _, _) = landing_page(PLACEHOLDER);
    OriginServer::start(move |_| Reply::ok("text/html; charset=utf-8", page.clone()))
}

#[test]
fn recompress_off_answers_compressing_clients_with_the_plain_rewritten_page() {
    let origin = page_origin();
    let inst = Instance::start(&proxied(
        &format!("http://{}", origin.addr),
        "",
        "recompress = false",
    ));
    let r = inst.get("/lp/", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None, "sent as identity");
    let (_, expected, changed) = landing_page(&cookie_click(&r));
    assert_eq!(r.text(), expected);
    assert!(changed > 0);
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .expect("a valid brotli stream");
    out
}

#[test]
fn brotli_clients_get_a_page_that_decodes_and_a_brotli_origin_is_decoded() {
    let origin = page_origin();
    let inst = Instance::start(&proxied(&format!("http://{}", origin.addr), "", ""));
    // Pingora's brotli encoder leaves its stream unterminated (see rewrite/hooks.rs):
    // a br-only client gets the page whole, as identity; one that also takes gzip
    // gets gzip.
    let r = inst.get("/lp/", &[("Accept-Encoding", "br")]);
    assert_eq!(r.status, 200);
    let (_, expected, _) = landing_page(&cookie_click(&r));
    let page = match r.header("content-encoding") {
        Some("br") => unbrotli(&r.body),
        None => r.body.clone(),
        Some(other) => panic!("a br-only client got {other}"),
    };
    assert_eq!(String::from_utf8(page).unwrap(), expected);
    let r = inst.get("/lp/", &[("Accept-Encoding", "br, gzip")]);
    let (_, expected, _) = landing_page(&cookie_click(&r));
    let page = match r.header("content-encoding") {
        Some("br") => unbrotli(&r.body),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        None => r.body.clone(),
        Some(other) => panic!("got {other}"),
    };
    assert_eq!(String::from_utf8(page).unwrap(), expected);

    // An origin that sends brotli although asked for identity: decoded, stamped, and
    // sent as identity to a client that accepts no coding.
    let (page, _, _) = landing_page(PLACEHOLDER);
    let compressed = brotli(page.as_bytes());
    let br_origin = OriginServer::start(move |_| {
        Reply::ok("text/html; charset=utf-8", compressed.clone()).header("Content-Encoding", "br")
    });
    let inst = Instance::start(&proxied(&format!("http://{}", br_origin.addr), "", ""));
    let r = inst.get("/lp/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    let (_, expected, _) = landing_page(&cookie_click(&r));
    assert_eq!(r.text(), expected);
}

#[test]
fn with_template_cache_bytes_0_every_page_is_rewritten_by_lol_html() {
    let origin = page_origin();
    let inst = Instance::start(&proxied(
        &format!("http://{}", origin.addr),
        "",
        "template_cache_bytes = 0",
    ));
    for visitor in 0..3 {
        let r = inst.get(&format!("/lp/?tsid=V{visitor}"), &[]);
        assert_eq!(r.status, 200);
        let (_, expected, _) = landing_page(&cookie_click(&r));
        assert_eq!(r.text(), expected, "visitor {visitor}");
    }
    for outcome in ["recorded", "replayed", "diverged"] {
        assert_eq!(
            inst.metric(&format!(
                "clickstamp_html_templates_total{{campaign=\"lp\",outcome=\"{outcome}\"}}"
            )),
            0.0,
            "{outcome}: templates are off"
        );
    }
}

/// A postback network with a secret, a source relaying to `source`, and the demo landers.
fn tracked(source: &FakeSource, outbox: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&txid={{txid}}"

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
currency = "EUR"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}

[outbox]
poll_interval = "50ms"
backoff_base = "50ms"
{outbox}
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

/// Run `clickstamp replay --config <instance's config> args`; (exit code, output).
fn replay_cli(inst: &Instance, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(binary())
        .args(["replay", "--config"])
        .arg(&inst.config_path)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn wait_for_dead(inst: &Instance, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = inst.admin_get("/api/outbox?state=dead").json();
        let entries = dead["entries"].as_array().unwrap().clone();
        if entries.len() == n || Instant::now() > deadline {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_replay_cli_requeues_one_dead_letter_all_of_them_and_replays_a_journal_entry() {
    let source = FakeSource::start();
    let mut inst = Instance::start(&tracked(&source, "max_attempts = 1"));
    source.set_mode(Mode::ServerError);
    for (tsid, txid) in [("S1", "T1"), ("S2", "T2")] {
        let cid = click(&inst, tsid);
        let r = inst.get(
            &format!("/postback/cake?cid={cid}&payout=1&txid={txid}&secret={SECRET}"),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let dead = wait_for_dead(&inst, 2);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(source.received().len(), 2, "one attempt each");
    source.set_mode(Mode::Ok);

    let one = dead[0]["id"].as_i64().unwrap();
    let (code, out) = replay_cli(&inst, &["--dead", &one.to_string()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"requeued\":1"), "{out}");
    let got = source.wait_for(Duration::from_secs(5), |r| r.len() >= 3);
    assert_eq!(got.len(), 3, "the requeued entry was sent again");
    assert_eq!(
        wait_for_dead(&inst, 1).len(),
        1,
        "the other one is still dead"
    );

    let (code, out) = replay_cli(&inst, &["--all-dead"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"requeued\":1"), "{out}");
    let got = source.wait_for(Duration::from_secs(5), |r| r.len() >= 4);
    let mut txids: Vec<&str> = got[2..]
        .iter()
        .map(|r| r.split("txid=").nth(1).unwrap())
        .collect();
    txids.sort_unstable();
    assert_eq!(
        txids,
        ["T1", "T2"],
        "each dead letter delivered once: {got:?}"
    );
    assert_eq!(wait_for_dead(&inst, 0).len(), 0);

    let (code, out) = replay_cli(&inst, &["--dead", "999999"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("no dead letter with this id"), "{out}");
    let (code, out) = replay_cli(&inst, &[]);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("--dead ID, --all-dead or --journal ID"),
        "{out}"
    );

    // A postback sent with a secret the config does not know yet is refused and
    // journalled; once the config has it, `replay --journal` records the conversion.
    let cid = click(&inst, "S3");
    let r = inst.get(
        &format!("/postback/cake?cid={cid}&payout=4&txid=T3&secret=next-secret-789"),
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let journal_id = r.json()["journal_id"].as_i64().unwrap();
    let config = std::fs::read_to_string(&inst.config_path).unwrap();
    std::fs::write(
        &inst.config_path,
        config.replace(
            &format!("secret = \"{SECRET}\""),
            "secret = \"next-secret-789\"",
        ),
    )
    .unwrap();
    inst.kill9();
    inst.restart();
    let (code, out) = replay_cli(&inst, &["--journal", &journal_id.to_string()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"accepted\""), "{out}");
    let payout: f64 = inst.value(
        "SELECT payout FROM conversions WHERE click_id = $1 AND txid = 'T3'",
        &[&cid],
    );
    assert_eq!(payout, 4.0);
}

#[test]
fn the_journal_filters_by_reason_and_time() {
    let source = FakeSource::start();
    let inst = Instance::start(&tracked(&source, ""));
    let cid = click(&inst, "J1");
    let postback = |query: &str| {
        let r = inst.get(&format!("/postback/cake?{query}&secret={SECRET}"), &[]);
        r.json()["journal_id"].as_i64().unwrap()
    };
    let early = postback("payout=1");
    std::thread::sleep(Duration::from_millis(50));
    let middle = now_ms();
    std::thread::sleep(Duration::from_millis(50));
    let late = postback("payout=2");
    let bad_payout = postback(&format!("cid={cid}&payout=lots"));
    let accepted = postback(&format!("cid={cid}&payout=3&txid=J"));
    let ids = |query: &str| -> Vec<i64> {
        let r = inst.admin_get(&format!("/api/journal?{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        let mut ids: Vec<i64> = r.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids("reason=missing_click_id"), [early, late]);
    assert_eq!(ids("reason=bad_payout"), [bad_payout]);
    assert_eq!(
        ids(&format!("reason=missing_click_id&since_ms={middle}")),
        [late]
    );
    assert_eq!(
        ids(&format!("reason=missing_click_id&until_ms={middle}")),
        [early]
    );
    assert_eq!(
        ids(&format!("network=cake&since_ms={middle}")),
        [late, bad_payout, accepted]
    );
    assert_eq!(ids("outcome=accepted"), [accepted]);
    let r = inst.admin_get("/api/journal?since_ms=yesterday");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("since_ms"), "{}", r.text());
}

#[test]
fn api_conversions_lists_a_clicks_conversions() {
    let source = FakeSource::start();
    let inst = Instance::start(&tracked(&source, ""));
    let cid = click(&inst, "C1");
    for (txid, payout) in [("ORDER-1", "2.5"), ("ORDER-2", "7")] {
        let r = inst.get(
            &format!("/postback/cake?cid={cid}&payout={payout}&txid={txid}&secret={SECRET}"),
            &[],
        );
        assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    }
    let r = inst.admin_get(&format!("/api/conversions?click={cid}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut got: Vec<_> = r.json()["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["txid"].as_str().unwrap().to_string(),
                c["payout"].as_f64().unwrap(),
                c["currency"].as_str().unwrap().to_string(),
                c["event"].as_str().unwrap().to_string(),
                c["origin"].as_str().unwrap().to_string(),
                c["campaign_id"].as_str().unwrap().to_string(),
                c["dedup_key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let row = |txid: &str, payout: f64| {
        (
            txid.to_string(),
            payout,
            "EUR".to_string(),
            "conversion".to_string(),
            "s2s".to_string(),
            "camp".to_string(),
            expected_event_id(&cid, "conversion", Some(txid)),
        )
    };
    assert_eq!(got, [row("ORDER-1", 2.5), row("ORDER-2", 7.0)]);
    let other = click(&inst, "C2");
    let r = inst.admin_get(&format!("/api/conversions?click={other}"));
    assert_eq!(r.json()["conversions"], serde_json::json!([]));
    let r = inst.admin_get("/api/conversions");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request(
        inst.admin,
        "GET",
        &format!("/api/conversions?click={cid}"),
        &[("Authorization", "Bearer wrong-token-0000000")],
        b"",
    )
    .unwrap();
    assert_eq!(
        r.status, 401,
        "the admin token guards it ({ADMIN_TOKEN} is right)"
    );
}

#[test]
fn async_durability_answers_clicks_at_once_and_still_stores_them() {
    let source = FakeSource::start();
    let inst = Instance::start_with(&tracked(&source, ""), "durability = \"async\"");
    let landing = inst.get("/lp/?tsid=ASYNC", &[]);
    assert_eq!(landing.status, 200);
    let cid = cookie_click(&landing);
    // Answered before the commit: the click reaches the store a moment later.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored = loop {
        let row: Option<String> = inst.value(
            "SELECT source_click_id FROM clicks WHERE click_id = $1",
            &[&cid],
        );
        if row.is_some() || Instant::now() > deadline {
            break row;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(stored.as_deref(), Some("ASYNC"));
    let go = inst.get("/go/offer1", &[("Cookie", &landing.cookie().unwrap())]);
    assert_eq!(
        go.header("location"),
        Some(format!("https://network.example/offer?a=1&s2={cid}").as_str())
    );
    // Postbacks always wait for their commit: the conversion is there when answered.
    let r = inst.get(
        &format!("/postback/cake?cid={cid}&payout=5&txid=A1&secret={SECRET}"),
        &[],
    );
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    let n: i64 = inst.value(
        "SELECT count(*) FROM conversions WHERE click_id = $1",
        &[&cid],
    );
    assert_eq!(n, 1);
    let got = source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    assert!(got[0].contains("clickid=ASYNC"), "{got:?}");
}
