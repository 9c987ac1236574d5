//! The pixel SDK in a real headless Chromium against the real binary: landing page →
//! stamped link → thank-you page → SDK beacon → conversion in the store; with and
//! without WebAssembly; deduplicated against S2S in both orders; harmless when /px is
//! unreachable.

use clickstamp_e2e::browser::Browser;
use clickstamp_e2e::{FakeSource, Instance, TempDir};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &str = "network-secret-123";

/// Pages of a small advertiser site served from a landers directory.
fn landers() -> TempDir {
    let dir = TempDir::new("sdk-landers");
    let snippet = |config: &str| {
        format!(
            r#"<!doctype html><html><head><meta charset="utf-8"><title>Thanks</title>
<script>
window.__errors = [];
window.addEventListener('error', function (e) {{ window.__errors.push(String(e.message)); }});
window.addEventListener('unhandledrejection', function (e) {{ window.__errors.push(String(e.reason)); }});
window.clickstamp = window.clickstamp || function () {{ (clickstamp.q = clickstamp.q || []).push(arguments); }};
{config}
clickstamp('conversion', {{ event: 'purchase', txid: 'ORDER-1', value: 12.5, currency: 'USD' }});
window.__page_ok = true;
</script>
<script async src="/sdk/clickstamp.min.js"></script>
</head><body><h1>Thank you</h1></body></html>"#
        )
    };
    std::fs::write(
        dir.0.join("index.html"),
        r#"<!doctype html><html><body><a id="cta" href="/go/offer1">Get it</a></body></html>"#,
    )
    .unwrap();
    std::fs::write(dir.0.join("thanks.html"), snippet("")).unwrap();
    // Records every send the SDK attempts; the beacon "fails to queue", so the SDK
    // falls back to fetch, which fails too (nothing listens on port 9). A conversion
    // with a bad currency is queued first: the SDK must drop it without sending.
    std::fs::write(
        dir.0.join("thanks-down.html"),
        snippet(
            r#"window.__sends = [];
navigator.sendBeacon = function (url) { window.__sends.push({ via: 'beacon', url: String(url) }); return false; };
var realFetch = window.fetch;
window.fetch = function (url, init) {
  window.__sends.push({ via: 'fetch', url: String(url), body: String(init && init.body) });
  return realFetch.apply(window, arguments);
};
clickstamp('config', { endpoint: 'http://127.0.0.1:9' });
clickstamp('conversion', { event: 'signup', currency: 'DOLLARS' });"#,
        ),
    )
    .unwrap();
    dir
}

fn start(source: &FakeSource, site: &TempDir) -> Instance {
    let (landers, source_addr) = (site.0.display().to_string(), source.addr);
    Instance::start_templated(
        |main: SocketAddr| {
            format!(
                r#"
[[networks]]
id = "net"
click_id_param = "cid"
secret = "{SECRET}"
macros = {{ payout = "payout", txid = "txid", event = "event" }}

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
postback_url = "http://{source_addr}/conv?clickid={{source_click_id}}&payout={{payout}}&event_id={{event_id}}"

[[offers]]
id = "offer1"
url = "http://{main}/lp/thanks.html"
network = "net"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}

[outbox]
poll_interval = "50ms"

[pixel]
grace_period = "30s"
"#
            )
        },
        "",
    )
}

/// Landing page, then a real click on the CTA; returns the click ID the thank-you page got.
fn land_and_click(browser: &mut Browser, inst: &Instance) -> String {
    browser.navigate(&format!("http://{}/lp/?tsid=SRC-B", inst.main));
    assert!(browser.wait_until(
        "document.readyState === 'complete' && !!document.getElementById('cta')",
        Duration::from_secs(10)
    ));
    // Clicked from a timer so the evaluation returns before the navigation it starts.
    browser.eval("setTimeout(() => document.getElementById('cta').click(), 0); true");
    assert!(
        browser.wait_until(
            "location.pathname === '/lp/thanks.html' && document.readyState === 'complete'",
            Duration::from_secs(10)
        ),
        "the stamped link led to the thank-you page"
    );
    let cid = browser.eval("new URLSearchParams(location.search).get('cid')");
    cid.as_str()
        .expect("the offer link carried the click id")
        .to_string()
}

fn wait_for_conversion(
    inst: &Instance,
    cid: &str,
) -> Option<(String, f64, String, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let row = inst
            .rows(
                "SELECT origin, payout, event, txid FROM conversions WHERE click_id = $1",
                &[&cid],
            )
            .first()
            .map(|r| {
                (
                    r.get_string(0),
                    r.get_f64(1),
                    r.get_string(2),
                    r.get_opt_str(3).map(str::to_string),
                )
            });
        if row.is_some() {
            return row;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn pixel_beacon_bodies(inst: &Instance) -> Vec<serde_json::Value> {
    let j = inst.admin_get("/api/journal?network=pixel").json();
    j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| serde_json::from_str(e["raw_body"].as_str()?).ok())
        .collect()
}

#[test]
fn landing_click_thank_you_page_and_the_wasm_sdk_record_the_conversion() {
    let site = landers();
    let source = FakeSource::start();
    let inst = start(&source, &site);
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    let cid = land_and_click(&mut browser, &inst);
    let conv = wait_for_conversion(&inst, &cid).expect("the SDK's conversion is in the store");
    assert_eq!(
        conv,
        (
            "pixel".to_string(),
            12.5,
            "purchase".to_string(),
            Some("ORDER-1".to_string())
        )
    );
    assert_eq!(browser.eval("window.__errors.length"), json!(0));
    assert_eq!(browser.eval("window.clickstamp('clickId')"), json!(cid));
    // The WASM core computed the event id, equal to the server's dedup key.
    let bodies = pixel_beacon_bodies(&inst);
    assert_eq!(bodies.len(), 1, "sent once: {bodies:?}");
    assert_eq!(
        bodies[0]["event_id"],
        json!(crate::pixel::expected_event_id(
            &cid,
            "purchase",
            Some("ORDER-1")
        ))
    );
}

#[test]
fn without_webassembly_the_pure_js_path_still_records_the_conversion() {
    let site = landers();
    let source = FakeSource::start();
    let inst = start(&source, &site);
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    browser.remove_webassembly();
    let cid = land_and_click(&mut browser, &inst);
    assert_eq!(
        browser.eval("typeof WebAssembly"),
        json!("undefined"),
        "WebAssembly is really off"
    );
    let conv =
        wait_for_conversion(&inst, &cid).expect("the pure-JS path's conversion is in the store");
    assert_eq!(conv.0, "pixel");
    assert_eq!(browser.eval("window.__errors.length"), json!(0));
    let bodies = pixel_beacon_bodies(&inst);
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0]["event_id"],
        serde_json::Value::Null,
        "the pure-JS path leaves the key to the server"
    );
}

#[test]
fn s2s_first_then_the_browser_pixel_is_one_conversion() {
    let site = landers();
    let source = FakeSource::start();
    let inst = start(&source, &site);
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    browser.navigate(&format!("http://{}/lp/?tsid=SRC-S", inst.main));
    assert!(browser.wait_until(
        "document.readyState === 'complete'",
        Duration::from_secs(10)
    ));
    let cookie = browser
        .eval("document.cookie")
        .as_str()
        .unwrap()
        .to_string();
    let cid = cookie.split("cs_camp=").nth(1).unwrap()[..32].to_string();
    let r = inst
        .get(
            &format!("/postback/net?cid={cid}&secret={SECRET}&event=purchase&payout=20"),
            &[],
        )
        .json();
    assert_eq!(r["status"], "accepted", "{r}");
    browser.navigate(&format!("http://{}/lp/thanks.html?cid={cid}", inst.main));
    let deadline = Instant::now() + Duration::from_secs(10);
    while pixel_beacon_bodies(&inst).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let j = inst.admin_get("/api/journal?network=pixel").json();
    assert_eq!(j["entries"][0]["outcome"], "duplicate", "{j}");
    let n: i64 = inst.value("SELECT count(*) FROM conversions", &[]);
    assert_eq!(n, 1);
    assert_eq!(
        wait_for_conversion(&inst, &cid).unwrap().1,
        20.0,
        "the S2S payout stands"
    );
}

#[test]
fn the_browser_pixel_first_then_s2s_is_one_conversion_with_the_s2s_payout_relayed_once() {
    let site = landers();
    let source = FakeSource::start();
    let inst = start(&source, &site);
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    let cid = land_and_click(&mut browser, &inst);
    assert_eq!(wait_for_conversion(&inst, &cid).unwrap().0, "pixel");
    let r = inst
        .get(
            &format!(
                "/postback/net?cid={cid}&secret={SECRET}&event=purchase&payout=20&txid=ORDER-1"
            ),
            &[],
        )
        .json();
    assert_eq!(r["status"], "status_changed", "{r}");
    let conv = wait_for_conversion(&inst, &cid).unwrap();
    assert_eq!((conv.0.as_str(), conv.1), ("s2s", 20.0));
    source.wait_for(Duration::from_secs(5), |r| !r.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let got = source.received();
    assert_eq!(got.len(), 1, "relayed once: {got:?}");
    assert!(
        got[0].contains("clickid=SRC-B") && got[0].contains("payout=20"),
        "{got:?}"
    );
}

#[test]
fn an_unreachable_px_endpoint_throws_nothing_into_the_page() {
    let site = landers();
    let source = FakeSource::start();
    let inst = start(&source, &site);
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    browser.navigate(&format!("http://{}/lp/?tsid=SRC-D", inst.main));
    assert!(browser.wait_until(
        "document.readyState === 'complete'",
        Duration::from_secs(10)
    ));
    let cookie = browser.eval("document.cookie");
    let cid = cookie.as_str().unwrap().split("cs_camp=").nth(1).unwrap()[..32].to_string();
    browser.navigate(&format!("http://{}/lp/thanks-down.html", inst.main));
    assert!(browser.wait_until(
        "document.readyState === 'complete' && window.__page_ok === true",
        Duration::from_secs(10)
    ));
    // The SDK loaded (it replaced the snippet's stub), found the visitor's click and
    // tried to send the valid conversion: beacon first, then fetch.
    assert!(
        browser.wait_until(
            "window.__sends.some(function (s) { return s.via === 'fetch'; })",
            Duration::from_secs(10)
        ),
        "the SDK never tried to send: {}",
        browser.eval("JSON.stringify(window.__sends)")
    );
    assert_eq!(
        browser.eval("window.clickstamp.loaded === true"),
        json!(true)
    );
    assert_eq!(browser.eval("window.clickstamp('clickId')"), json!(cid));
    // The SDK's own loading of its core (glue and .wasm from /sdk/) is not a send.
    let sends =
        browser.eval("window.__sends.filter(function (s) { return s.url.indexOf('/sdk/') < 0; })");
    let sends = sends.as_array().unwrap();
    assert_eq!(
        sends
            .iter()
            .map(|s| (s["via"].as_str().unwrap(), s["url"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("beacon", "http://127.0.0.1:9/px"),
            ("fetch", "http://127.0.0.1:9/px")
        ],
        "one conversion sent, to the configured endpoint; the bad-currency one dropped"
    );
    let sent: serde_json::Value = serde_json::from_str(sends[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&sent["cid"], &sent["event"], &sent["txid"]),
        (&json!(cid), &json!("purchase"), &json!("ORDER-1"))
    );
    // The failed fetch settles without surfacing in the page.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(browser.eval("window.__errors"), json!([]));
    assert_eq!(
        browser.eval(
            "window.__sends.filter(function (s) { return s.url.indexOf('/sdk/') < 0; }).length"
        ),
        json!(2),
        "no retries, no image fallback"
    );
    assert_eq!(
        browser.eval("document.querySelector('h1').textContent"),
        json!("Thank you")
    );
    assert!(
        pixel_beacon_bodies(&inst).is_empty(),
        "nothing reached this /px"
    );
    let n: i64 = inst.value("SELECT count(*) FROM conversions", &[]);
    assert_eq!(n, 0);
}
