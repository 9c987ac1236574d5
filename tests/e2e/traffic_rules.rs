//! Traffic quality against the real binary (docs/traffic-rules.md): what is flagged
//! and why, as the clicks table and the metrics show it; a campaign that excludes
//! flagged clicks keeps them and their conversions out of the report and the relay;
//! the visitor's country from a MaxMind-format database built here.

use clickstamp_e2e::browser::Browser;
use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::{FakeSource, Instance, TempDir};
use serde_json::Value;
use std::time::Duration;

const SECRET: &str = "traffic-secret-42";
/// What a current desktop Chrome on Linux sends as its user agent.
const LINUX_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const WINDOWS_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const IPHONE_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// Two campaigns on one source: `/lp` flags, `/strict` excludes; the client address
/// comes from `X-Forwarded-For` (so one test can be many visitors), and `traffic`
/// is the `[traffic]` section.
fn body(source: &FakeSource, traffic: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
postback_url = "http://{addr}/pb?clickid={{source_click_id}}&payout={{payout}}"

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}

[[campaigns]]
id = "strict"
path = "/strict"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
quality = "exclude"

[outbox]
backoff_base = "100ms"
backoff_max = "300ms"
poll_interval = "50ms"
timeout = "500ms"

[traffic]
{traffic}
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

const FORWARDED: &str = "client_ip_header = \"x-forwarded-for\"\ntrusted_proxies = [\"127.0.0.1\"]";

fn start(source: &FakeSource, traffic: &str) -> Instance {
    Instance::start_with_server(&body(source, traffic), FORWARDED)
}

/// The headers a desktop Chrome on Windows sends with a page view.
fn chrome_headers(ip: &str) -> Vec<(&str, &str)> {
    vec![
        ("User-Agent", WINDOWS_CHROME),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.9"),
        (
            "Sec-CH-UA",
            "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        ),
        ("Sec-CH-UA-Mobile", "?0"),
        ("Sec-CH-UA-Platform", "\"Windows\""),
        ("Sec-Fetch-Dest", "document"),
        ("X-Forwarded-For", ip),
    ]
}

/// A page view on `path` with `headers`; the click id from its cookie.
fn land(inst: &Instance, path: &str, headers: &[(&str, &str)]) -> String {
    let r = inst.get(path, headers);
    assert_eq!(
        r.status,
        200,
        "flagged or not, the visitor is served: {}",
        r.text()
    );
    let cookie = r.cookie().expect("a click cookie");
    cookie.split_once('=').expect("name=value").1.to_string()
}

/// (quality, quality_reasons, device, os, browser, excluded) of a click.
fn quality(inst: &Instance, click_id: &str) -> (String, String, String, String, String, bool) {
    let row = inst.row(
        "SELECT quality, quality_reasons, device, os, browser, CASE WHEN excluded THEN 1 ELSE 0 END FROM clicks WHERE click_id = $1",
        &[&click_id],
    );
    (
        row.get_string(0),
        row.get_string(1),
        row.get_string(2),
        row.get_string(3),
        row.get_string(4),
        row.get_i64(5) == 1,
    )
}

fn reasons(inst: &Instance, click_id: &str) -> Vec<String> {
    let (_, reasons, ..) = quality(inst, click_id);
    reasons
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn curl_and_crawlers_are_flagged_and_a_desktop_chrome_is_not() {
    let source = FakeSource::start();
    let inst = start(&source, "datacenter_networks = [\"203.0.113.0/24\"]");

    let curl = land(
        &inst,
        "/lp?tsid=c1",
        &[
            ("User-Agent", "curl/8.5.0"),
            ("X-Forwarded-For", "198.51.100.1"),
        ],
    );
    let (q, _, device, ..) = quality(&inst, &curl);
    assert_eq!(q, "flagged");
    assert_eq!(
        reasons(&inst, &curl),
        ["bot_user_agent", "no_accept_language"]
    );
    assert_eq!(device, "other", "an HTTP library is no browser");

    let googlebot = land(
        &inst,
        "/lp?tsid=c2",
        &[
            (
                "User-Agent",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            ),
            ("Accept-Language", "en"),
            ("X-Forwarded-For", "198.51.100.2"),
        ],
    );
    assert_eq!(reasons(&inst, &googlebot), ["bot_user_agent"]);

    let person = land(&inst, "/lp?tsid=c3", &chrome_headers("198.51.100.3"));
    assert_eq!(
        quality(&inst, &person),
        (
            "ok".into(),
            "".into(),
            "desktop".into(),
            "windows".into(),
            "chrome".into(),
            false
        )
    );

    // The same browser from a data-centre address, and one whose hints say Linux.
    let hosted = land(&inst, "/lp?tsid=c4", &chrome_headers("203.0.113.9"));
    assert_eq!(reasons(&inst, &hosted), ["datacenter"]);
    let mut spoofed = chrome_headers("198.51.100.4");
    spoofed[5] = ("Sec-CH-UA-Platform", "\"Linux\"");
    let spoofed = land(&inst, "/lp?tsid=c5", &spoofed);
    assert_eq!(reasons(&inst, &spoofed), ["client_hints_mismatch"]);

    // A phone, from its user agent alone.
    let phone = land(
        &inst,
        "/lp?tsid=c6",
        &[
            ("User-Agent", IPHONE_SAFARI),
            ("Accept-Language", "de-DE"),
            ("X-Forwarded-For", "198.51.100.5"),
        ],
    );
    let (q, _, device, os, browser, _) = quality(&inst, &phone);
    assert_eq!(
        (q.as_str(), device.as_str(), os.as_str(), browser.as_str()),
        ("ok", "mobile", "ios", "safari")
    );

    let flagged =
        "clickstamp_click_quality_total{campaign=\"camp\",quality=\"flagged\",source=\"src\"}";
    assert_eq!(inst.metric(flagged), 4.0);
    let ok = "clickstamp_click_quality_total{campaign=\"camp\",quality=\"ok\",source=\"src\"}";
    assert_eq!(inst.metric(ok), 2.0);
    assert_eq!(
        inst.metric(
            "clickstamp_click_quality_reasons_total{campaign=\"camp\",reason=\"bot_user_agent\"}"
        ),
        2.0
    );
    assert_eq!(
        inst.metric(
            "clickstamp_click_quality_reasons_total{campaign=\"camp\",reason=\"datacenter\"}"
        ),
        1.0
    );
    // The click counter itself is unchanged: every click counts there.
    assert_eq!(
        inst.metric("clickstamp_clicks_total{campaign=\"camp\",source=\"src\"}"),
        6.0
    );
}

#[test]
fn headless_chromium_is_flagged_unless_it_presents_a_desktop_user_agent() {
    let source = FakeSource::start();
    let inst = start(&source, "");
    let url = format!("http://{}/lp?tsid=headless", inst.main);

    // Chromium as it starts headless says so in its user agent: flagged.
    let Some(mut headless) = Browser::start(&[]) else {
        return;
    };
    headless.navigate(&url);
    assert!(
        headless.wait_for_selector("a", Duration::from_secs(10)),
        "the lander loaded"
    );
    let cid = wait_for_click(&inst, "headless");
    assert!(
        reasons(&inst, &cid).contains(&"bot_user_agent".to_string()),
        "{:?}",
        reasons(&inst, &cid)
    );

    // The same browser with the user agent of a desktop Chrome on its own platform,
    // sending its own Accept-Language and Client Hints: a person as far as the request
    // can tell, so not flagged.
    drop(headless);
    let Some(mut browser) = Browser::start(&[&format!("--user-agent={LINUX_CHROME}")]) else {
        return;
    };
    browser.navigate(&url.replace("headless", "desktop"));
    assert!(browser.wait_for_selector("a", Duration::from_secs(10)));
    let cid = wait_for_click(&inst, "desktop");
    let (q, reasons_text, device, os, ..) = quality(&inst, &cid);
    assert_eq!(
        (q.as_str(), reasons_text.as_str()),
        ("ok", ""),
        "a desktop Chrome with its usual headers"
    );
    assert_eq!((device.as_str(), os.as_str()), ("desktop", "linux"));
}

/// The click whose source click id is `tsid`, once it is recorded.
fn wait_for_click(inst: &Instance, tsid: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = inst.rows(
            "SELECT click_id FROM clicks WHERE source_click_id = $1",
            &[&tsid],
        );
        if let Some(row) = rows.first() {
            return row.get_string(0);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no click with tsid={tsid}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_burst_from_one_address_is_flagged_past_the_rate() {
    let source = FakeSource::start();
    let inst = start(
        &source,
        "rate_max_clicks = 5\nrate_window = \"60s\"\nmin_click_interval = \"0s\"",
    );
    let burst: Vec<String> = (0..8)
        .map(|i| {
            land(
                &inst,
                &format!("/lp?tsid=b{i}"),
                &chrome_headers("192.0.2.77"),
            )
        })
        .collect();
    for (i, cid) in burst.iter().enumerate() {
        let expected: &[&str] = if i < 5 { &[] } else { &["rate"] };
        assert_eq!(reasons(&inst, cid), expected, "click {i} of the burst");
    }
    let other = land(&inst, "/lp?tsid=other", &chrome_headers("192.0.2.78"));
    assert!(
        reasons(&inst, &other).is_empty(),
        "the window is per address"
    );
    assert_eq!(
        inst.metric("clickstamp_click_quality_reasons_total{campaign=\"camp\",reason=\"rate\"}"),
        3.0
    );

    // With the interval check on, the same visitor twice within it is too fast.
    let source = FakeSource::start();
    let inst = start(&source, "min_click_interval = \"10s\"");
    land(&inst, "/lp?tsid=t1", &chrome_headers("192.0.2.90"));
    let second = land(&inst, "/lp?tsid=t2", &chrome_headers("192.0.2.90"));
    assert_eq!(reasons(&inst, &second), ["too_fast"]);
}

fn convert(inst: &Instance, cid: &str, txid: &str) -> Value {
    let r = inst.get(
        &format!("/postback/cake?cid={cid}&payout=5&txid={txid}&secret={SECRET}"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn exclude_keeps_flagged_clicks_and_their_conversions_out_of_reports_and_relays() {
    let source = FakeSource::start();
    let inst = start(&source, "");
    let bot = land(
        &inst,
        "/strict?tsid=BOT",
        &[
            ("User-Agent", "python-requests/2.32"),
            ("X-Forwarded-For", "198.51.100.20"),
        ],
    );
    let person = land(
        &inst,
        "/strict?tsid=PERSON",
        &chrome_headers("198.51.100.21"),
    );
    let flagged_elsewhere = land(
        &inst,
        "/lp?tsid=FLAGGED",
        &[
            ("User-Agent", "curl/8"),
            ("X-Forwarded-For", "198.51.100.22"),
        ],
    );
    let (_, _, _, _, _, excluded) = quality(&inst, &bot);
    assert!(
        excluded,
        "a flagged click of an excluding campaign is recorded as excluded"
    );
    assert!(!quality(&inst, &person).5);
    assert!(!quality(&inst, &flagged_elsewhere).5, "`flag` only flags");

    // Every conversion is recorded; only the counted ones are relayed.
    let answer = convert(&inst, &bot, "T-BOT");
    assert_eq!(
        (answer["status"].as_str(), answer["relayed"].as_bool()),
        (Some("accepted"), Some(false)),
        "{answer}"
    );
    let answer = convert(&inst, &person, "T-PERSON");
    assert_eq!(answer["relayed"], true, "{answer}");
    let answer = convert(&inst, &flagged_elsewhere, "T-FLAGGED");
    assert_eq!(
        answer["relayed"], true,
        "a flagged click of a `flag` campaign still relays: {answer}"
    );
    let received = source.wait_for(Duration::from_secs(10), |r| r.len() >= 2);
    std::thread::sleep(Duration::from_millis(500)); // a third relay would have arrived by now
    let received = if source.received().len() > received.len() {
        source.received()
    } else {
        received
    };
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(
        received.iter().all(|r| !r.contains("clickid=BOT")),
        "{received:?}"
    );
    assert_eq!(
        inst.count("SELECT count(*) FROM conversions", &[]),
        3,
        "all recorded"
    );
    assert_eq!(
        inst.metric("clickstamp_relays_withheld_total{reason=\"quality\",source=\"src\"}"),
        1.0
    );
    assert_eq!(
        inst.metric("clickstamp_clicks_excluded_total{campaign=\"strict\",reason=\"quality\"}"),
        1.0
    );

    // The report: the excluded click and its conversion are nowhere; the flagged
    // click of `camp` is there, under quality = flagged.
    let r = inst.admin_get("/api/report?group_by=campaign,quality&source=store");
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    let rows: Vec<(String, String, u64, u64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["campaign"].as_str().unwrap().to_string(),
                row["quality"].as_str().unwrap().to_string(),
                row["clicks"].as_u64().unwrap(),
                row["conversions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("camp".to_string(), "flagged".to_string(), 1, 1),
            ("strict".to_string(), "ok".to_string(), 1, 1),
        ],
        "{report}"
    );
    assert_eq!(report["totals"]["clicks"], 2);
    assert_eq!(report["totals"]["conversions"], 2);
    let r = inst.admin_get("/api/report?group_by=device,os,browser&source=store");
    assert_eq!(r.status, 200, "{}", r.text());
    let devices = r.json();
    assert!(
        devices["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["device"] == "desktop"
                && row["os"] == "windows"
                && row["browser"] == "chrome"),
        "{devices}"
    );
}

#[test]
fn the_visitors_country_comes_from_the_geoip_database() {
    let dir = TempDir::new("geoip");
    let db = dir.0.join("countries.mmdb");
    std::fs::write(
        &db,
        clickstamp_e2e::mmdb::country_database(&[
            ("198.51.100.0", 24, "DE", Some("BY")),
            ("203.0.113.0", 24, "FR", None),
        ]),
    )
    .unwrap();
    let source = FakeSource::start();
    let inst = start(&source, &format!("geoip_database = \"{}\"", db.display()));
    let german = land(&inst, "/lp?tsid=de", &chrome_headers("198.51.100.40"));
    let french = land(&inst, "/lp?tsid=fr", &chrome_headers("203.0.113.40"));
    let unknown = land(&inst, "/lp?tsid=xx", &chrome_headers("192.0.2.40"));
    let country = |cid: &str| {
        inst.row("SELECT country FROM clicks WHERE click_id = $1", &[&cid])
            .get_string(0)
    };
    assert_eq!(
        (
            country(&german).as_str(),
            country(&french).as_str(),
            country(&unknown).as_str()
        ),
        ("DE", "FR", "")
    );
    let report = inst
        .admin_get("/api/report?group_by=country&source=store")
        .json();
    let rows: Vec<(Value, Value)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["country"].clone(), r["clicks"].clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (Value::Null, 1.into()),
            ("DE".into(), 1.into()),
            ("FR".into(), 1.into())
        ],
        "{report}"
    );
    // A database that is not one is refused by `check`, naming the key.
    std::fs::write(&db, b"not a database").unwrap();
    let (code, out, err) = inst.command(&["check"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("traffic.geoip_database"),
        "{out}{err}"
    );
}

/// A landers directory with one page per lander, each naming itself.
fn landers(dir: &TempDir) -> std::path::PathBuf {
    let root = dir.0.join("landers");
    std::fs::create_dir_all(&root).unwrap();
    for name in ["index", "de", "mobile", "chromeos", "a", "b"] {
        std::fs::write(
            root.join(format!("{name}.html")),
            format!("<html><body><h1>lander {name}</h1><a href=\"/go/camp\">go</a></body></html>"),
        )
        .unwrap();
    }
    root
}

/// A campaign routed by country, device and OS; `[traffic]` reads `geoip`.
fn routed_body(root: &std::path::Path, geoip: &std::path::Path) -> String {
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "o-de"
url = "https://network.example/de"
network = "cake"

[[offers]]
id = "o-mobile"
url = "https://network.example/mobile"
network = "cake"

[[offers]]
id = "o-a"
url = "https://network.example/a"
network = "cake"

[[offers]]
id = "o-b"
url = "https://network.example/b"
network = "cake"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "o-a" }}, {{ offer = "o-b" }}]
origin = {{ landers = "{root}" }}

[campaigns.routing]
landers = [{{ lander = "/a.html" }}, {{ lander = "/b.html" }}]

[[campaigns.routing.rules]]
name = "germany"
country = ["DE"]
landers = [{{ lander = "/de.html" }}]
offers = [{{ offer = "o-de" }}]

[[campaigns.routing.rules]]
name = "phones"
device = ["mobile"]
landers = [{{ lander = "/mobile.html" }}]
offers = [{{ offer = "o-mobile" }}]

[[campaigns.routing.rules]]
name = "chromebooks"
os = ["chromeos"]
landers = [{{ lander = "/chromeos.html" }}]

[traffic]
geoip_database = "{geoip}"
"#,
        root = root.display(),
        geoip = geoip.display()
    )
}

/// (the lander's name, the click cookie) of a page view of `/lp`.
fn lander_seen(inst: &Instance, headers: &[(&str, &str)]) -> (String, String) {
    let r = inst.get("/lp?tsid=r", headers);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let name = text
        .split("<h1>lander ")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("a lander page: {text}"))
        .to_string();
    let cookie = r
        .cookie()
        .or_else(|| {
            headers
                .iter()
                .find(|(k, _)| *k == "Cookie")
                .map(|(_, v)| v.to_string())
        })
        .expect("a click cookie");
    (name, cookie)
}

/// Where `/go/camp` sends the visitor with `cookie`.
fn offer_seen(inst: &Instance, cookie: &str) -> String {
    let r = inst.get("/go/camp", &[("Cookie", cookie)]);
    assert_eq!(r.status, 302, "{}", r.text());
    let location = r.header("location").expect("a redirect").to_string();
    location
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn visitors_are_routed_by_country_device_and_client_hints_and_stay_on_what_they_saw() {
    let dir = TempDir::new("routing");
    let root = landers(&dir);
    let db = dir.0.join("countries.mmdb");
    std::fs::write(
        &db,
        clickstamp_e2e::mmdb::country_database(&[("198.51.100.0", 24, "DE", None)]),
    )
    .unwrap();
    let inst = Instance::start_with_server(&routed_body(&root, &db), FORWARDED);

    // By country, from the database: a German desktop visitor.
    let (lander, cookie) = lander_seen(&inst, &chrome_headers("198.51.100.7"));
    assert_eq!(lander, "de");
    assert_eq!(offer_seen(&inst, &cookie), "de");
    // By device, from the user agent: a phone elsewhere.
    let phone = [
        ("User-Agent", IPHONE_SAFARI),
        ("Accept-Language", "en"),
        ("X-Forwarded-For", "192.0.2.7"),
    ];
    let (lander, cookie) = lander_seen(&inst, &phone);
    assert_eq!(lander, "mobile");
    assert_eq!(offer_seen(&inst, &cookie), "mobile");
    // By OS from the Client Hints: a Linux user agent whose platform hint is Chrome OS.
    let mut chromebook = chrome_headers("192.0.2.8");
    chromebook[0] = ("User-Agent", LINUX_CHROME);
    chromebook[5] = ("Sec-CH-UA-Platform", "\"Chrome OS\"");
    let (lander, cookie) = lander_seen(&inst, &chromebook);
    assert_eq!(lander, "chromeos");
    let offer = offer_seen(&inst, &cookie);
    assert!(
        offer == "a" || offer == "b",
        "no offers of its own: the default path's ({offer})"
    );
    let route = |cookie: &str| {
        let cid = cookie.split_once('=').unwrap().1.to_string();
        inst.row(
            "SELECT route, lander, country FROM clicks WHERE click_id = $1",
            &[&cid],
        )
    };
    let row = route(&cookie);
    assert_eq!(
        (row.get_str(0), row.get_str(1)),
        ("chromebooks", "/chromeos.html")
    );

    // Everyone else rotates over the default landers and offers by weight, and a
    // returning visitor (the click cookie) keeps the lander and offer seen first.
    let mut landers_seen = std::collections::BTreeSet::new();
    let mut offers_seen = std::collections::BTreeSet::new();
    for i in 0..24 {
        let ip = format!("192.0.2.{}", 100 + i);
        let (first, cookie) = lander_seen(&inst, &chrome_headers(&ip));
        let offer = offer_seen(&inst, &cookie);
        for _ in 0..3 {
            let mut again = chrome_headers(&ip);
            again.push(("Cookie", &cookie));
            assert_eq!(lander_seen(&inst, &again).0, first, "sticky lander");
            assert_eq!(offer_seen(&inst, &cookie), offer, "sticky offer");
        }
        landers_seen.insert(first);
        offers_seen.insert(offer);
    }
    assert_eq!(
        landers_seen.into_iter().collect::<Vec<_>>(),
        ["a", "b"],
        "both landers rotate"
    );
    assert_eq!(
        offers_seen.into_iter().collect::<Vec<_>>(),
        ["a", "b"],
        "both offers rotate"
    );
    let report = inst
        .admin_get("/api/report?group_by=lander&source=store")
        .json();
    let landers_in_report: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["lander"].as_str())
        .collect();
    assert!(
        landers_in_report.contains(&"/de.html") && landers_in_report.contains(&"/a.html"),
        "{report}"
    );

    // A rule that can never match is refused by `check`, naming it.
    let unreachable = routed_body(&root, &db).replace(
        "[traffic]",
        "[[campaigns.routing.rules]]\nname = \"berlin\"\ncountry = [\"DE\"]\ndevice = [\"desktop\"]\n\n[traffic]",
    );
    std::fs::write(&inst.config_path, inst_config_with(&inst, &unreachable)).unwrap();
    let (code, out, err) = inst.command(&["check"]);
    assert_ne!(code, 0, "{out}{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("campaigns[0].routing.rules[3]") && said.contains("unreachable"),
        "{said}"
    );
}

/// The running config's `[server]`, `[store]` and `[secrets]` with another body.
fn inst_config_with(inst: &Instance, body: &str) -> String {
    let current = std::fs::read_to_string(&inst.config_path).unwrap();
    let head = current.split("\n[[networks]]").next().unwrap();
    format!("{head}\n{body}")
}

#[test]
fn thompson_shifts_traffic_to_the_better_offer_and_shows_its_data() {
    let landers_dir = workspace_root().join("config/demo/landers");
    let body = format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "weak"
url = "https://network.example/weak"
network = "cake"

[[offers]]
id = "strong"
url = "https://network.example/strong"
network = "cake"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "weak" }}, {{ offer = "strong" }}]
origin = {{ landers = "{landers}" }}

[campaigns.routing]
optimise = "thompson"

[traffic]
optimise_interval = "1s"
optimise_min_clicks = 40
optimise_floor = 0.1
min_click_interval = "0s"
rate_max_clicks = 0
"#,
        landers = landers_dir.display()
    );
    let inst = Instance::start(&body);
    // Before any data the configured weights hold.
    let r = inst.admin_get("/api/rotation");
    assert_eq!(r.status, 200, "{}", r.text());
    let rotation = r.json();
    assert_eq!(rotation["paths"][0]["moving"], false, "{rotation}");

    // 50 visitors to each offer; `weak` converts one in ten, `strong` four in ten.
    for (offer, every) in [("weak", 10), ("strong", 5)] {
        for i in 0..50 {
            let r = inst.get(
                &format!("/lp?tsid={offer}{i}"),
                &chrome_headers("127.0.0.1"),
            );
            let cookie = r.cookie().expect("cookie");
            let go = inst.get(&format!("/go/{offer}"), &[("Cookie", &cookie)]);
            assert_eq!(go.status, 302);
            let converts = if offer == "weak" {
                i % every == 0
            } else {
                i % every < 2
            };
            if converts {
                let cid = cookie.split_once('=').unwrap().1;
                let pb = inst.get(
                    &format!("/postback/cake?cid={cid}&payout=1&txid={offer}{i}&secret={SECRET}"),
                    &[],
                );
                assert_eq!(pb.status, 200, "{}", pb.text());
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1_100));
    let rotation = inst.admin_get("/api/rotation").json();
    let path = &rotation["paths"][0];
    assert_eq!(
        (path["campaign"].as_str(), path["path"].as_str()),
        (Some("camp"), Some("default"))
    );
    assert_eq!(path["moving"], true, "{rotation}");
    let arm = |id: &str| {
        path["arms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["offer"] == id)
            .unwrap_or_else(|| panic!("{id} in {rotation}"))
            .clone()
    };
    let (weak, strong) = (arm("weak"), arm("strong"));
    assert_eq!(
        (weak["clicks"].as_u64(), weak["conversions"].as_u64()),
        (Some(50), Some(5))
    );
    assert_eq!(
        (strong["clicks"].as_u64(), strong["conversions"].as_u64()),
        (Some(50), Some(20))
    );
    let (weak_share, strong_share) = (
        weak["share"].as_f64().unwrap(),
        strong["share"].as_f64().unwrap(),
    );
    assert!(strong_share > 0.8, "{rotation}");
    assert!(weak_share >= 0.099, "the floor holds: {rotation}");

    // New visitors of /go/camp now mostly get the strong offer, the weak one still some.
    let mut sent = std::collections::BTreeMap::new();
    for i in 0..60 {
        let r = inst.get(&format!("/lp?tsid=new{i}"), &chrome_headers("127.0.0.1"));
        let cookie = r.cookie().expect("cookie");
        let go = inst.get("/go/camp", &[("Cookie", &cookie)]);
        let location = go.header("location").unwrap().to_string();
        let offer = location
            .split('?')
            .next()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        *sent.entry(offer.to_string()).or_insert(0) += 1;
    }
    let strong_sent = sent.get("strong").copied().unwrap_or(0);
    assert!(
        strong_sent >= 40,
        "most traffic goes to the better offer: {sent:?}"
    );
}
