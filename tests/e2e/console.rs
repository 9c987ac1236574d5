//! The web console on the admin listener, in a real headless Chromium against the real
//! binary: log in, filter the journal (hostile entries shown as text), replay a dead
//! letter and see the fake source receive it, explain a click, download the report's
//! CSV with the session cookie and compare it with the API's, the postback URL and
//! test postback, the config without secrets. Plus the refusals: no session, no or a
//! wrong CSRF token. Screenshots go to `target/e2e-screenshots/console-<store>/`.

use clickstamp_e2e::browser::Browser;
use clickstamp_e2e::instance::{workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::{request, FakeSource, Instance, Mode, Response};
use clickstamp_plugins::query::{first_value, parse_query};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECRET: &str = "network-secret-123";
const WAIT: Duration = Duration::from_secs(15);

/// One network, one source relaying to `source`, one direct-linking campaign, and an
/// outbox that gives up after two quick attempts.
fn start(source: &FakeSource) -> Instance {
    let landers = workspace_root().join("config/demo/landers");
    Instance::start(&format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"
macros = {{ status = "status", event = "event" }}

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
cost_param = "cost"
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&status={{status}}&event_id={{event_id}}"

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 3.0

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"
direct_linking = true

[outbox]
backoff_base = "50ms"
backoff_max = "100ms"
poll_interval = "25ms"
timeout = "500ms"
max_attempts = 2
"#,
        addr = source.addr,
        landers = landers.display()
    ))
}

/// A visitor through `/go` with the source's click id `tsid` and a cost; returns our
/// click id as the network sees it.
fn click(inst: &Instance, tsid: &str) -> String {
    let go = inst.get(&format!("/go/offer1?tsid={tsid}&cost=0.25"), &[]);
    assert_eq!(go.status, 302, "{}", go.text());
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn outbox(inst: &Instance, state: &str) -> Vec<serde_json::Value> {
    inst.admin_get(&format!("/api/outbox?state={state}")).json()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

fn wait_for_outbox(inst: &Instance, state: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let entries = outbox(inst, state);
        if !entries.is_empty() || Instant::now() >= deadline {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Where this run's screenshots go (kept after the test, unlike its temp dirs).
fn screenshot_dir() -> PathBuf {
    let store = if clickstamp_e2e::store::on_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = workspace_root()
        .join("target/e2e-screenshots")
        .join(format!("console-{store}"));
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

fn js_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Run `action` (which navigates, e.g. submits a form) and wait until `arrived` holds.
fn act_and_wait(b: &mut Browser, action: &str, arrived: &str) {
    let _ = b.eval(action);
    assert!(
        b.wait_until(arrived, WAIT),
        "after `{action}`, never `{arrived}`; page: {}",
        b.eval("document.body ? document.body.innerText : ''")
    );
}

fn go_to(b: &mut Browser, url: &str, selector: &str) {
    b.navigate(url);
    assert!(
        b.wait_for_selector(selector, WAIT),
        "{url}: no {selector}; page: {}",
        b.eval("document.body ? document.body.innerText : ''")
    );
}

#[test]
fn an_operator_logs_in_and_works_through_every_page_in_chromium() {
    let Some(mut b) = Browser::start(&[]) else {
        return;
    };
    b.set_viewport(1280, 900);
    let source = FakeSource::start();
    source.set_mode(Mode::ServerError);
    let inst = start(&source);
    let shots = screenshot_dir();

    // A converted click whose relay dies, and a hostile postback journalled as refused.
    let cid = click(&inst, "TS-1");
    let accepted = inst.get(
        &format!("/postback/cake?cid={cid}&txid=T1&secret={SECRET}"),
        &[],
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    let hostile = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>";
    // The query's `<` arrives percent-encoded; a form body keeps it raw.
    let refused = request(
        inst.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("cid={hostile}&secret=wrong").as_bytes(),
    )
    .expect("send the hostile postback");
    assert!(refused.status >= 400, "{}", refused.text());
    let dead = wait_for_outbox(&inst, "dead");
    assert_eq!(dead.len(), 1, "the relay was never dead-lettered");
    let dead_id = dead[0]["id"].as_i64().unwrap();

    // Without a session the console sends the browser to the login page.
    let admin = format!("http://{}", inst.admin);
    go_to(&mut b, &format!("{admin}/console"), "#login-form");
    act_and_wait(
        &mut b,
        "document.querySelector('#token').value = 'not the token'; document.querySelector('#login-form').submit()",
        "document.querySelector('#login-error') !== null",
    );
    act_and_wait(
        &mut b,
        &format!(
            "document.querySelector('#token').value = {}; document.querySelector('#login-form').submit()",
            js_string(ADMIN_TOKEN)
        ),
        "location.pathname === '/console' && document.querySelector('#today') !== null",
    );
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "clickstamp_console")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(session["httpOnly"], json!(true), "{session}");
    assert_eq!(session["sameSite"], json!("Strict"), "{session}");
    assert_eq!(
        b.eval("document.cookie"),
        json!(""),
        "page scripts cannot read the session cookie"
    );
    let session_cookie = format!("clickstamp_console={}", session["value"].as_str().unwrap());
    assert_eq!(
        b.eval("document.querySelector('#today-clicks .value').textContent"),
        json!("1"),
        "today's clicks"
    );
    assert_eq!(
        b.eval("document.querySelector('#today-conversions .value').textContent"),
        json!("1")
    );
    assert_eq!(
        b.eval("document.querySelector('#today-revenue .value').textContent"),
        json!("3.00")
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#chart rect.clicks').length"),
        json!(24),
        "one bar per hour"
    );
    b.screenshot(&shots.join("01-today.png"));

    // The journal, filtered to refusals: the hostile query is shown as text, never run.
    go_to(
        &mut b,
        &format!("{admin}/console/journal"),
        "#journal-filter",
    );
    act_and_wait(
        &mut b,
        "const day = (offset) => new Date(Date.now() + offset * 864e5).toISOString().slice(0, 10); \
         document.querySelector('input[name=from]').value = day(-1); \
         document.querySelector('input[name=to]').value = day(1); \
         document.querySelector('select[name=outcome]').value = 'rejected'; \
         document.querySelector('#journal-filter').submit()",
        "location.search.includes('outcome=rejected') && location.search.includes('from=') \
         && document.querySelector('#journal') !== null",
    );
    let outcomes = b.eval(
        "Array.from(document.querySelectorAll('#journal tbody tr')).map(r => r.cells[4].innerText)",
    );
    assert!(
        !outcomes.as_array().unwrap().is_empty()
            && outcomes.as_array().unwrap().iter().all(|o| o == "rejected"),
        "the filter shows refusals only: {outcomes}"
    );
    let journal_text = b.eval("document.querySelector('#journal').innerText");
    assert!(
        journal_text
            .as_str()
            .unwrap()
            .contains("<script>window.__pwned=1</script>"),
        "the hostile query is shown as text: {journal_text}"
    );
    assert_eq!(b.eval("typeof window.__pwned"), json!("undefined"));
    assert_eq!(
        b.eval("document.querySelectorAll('#journal script, #journal img').length"),
        json!(0),
        "no element came out of the journal entry"
    );
    b.screenshot(&shots.join("02-journal-rejected.png"));

    // The outbox: the dead letter with its reason; replayed, the source now answers.
    go_to(&mut b, &format!("{admin}/console/outbox"), "#outbox");
    let failure = b.eval("document.querySelector('#outbox tbody tr .failure').innerText");
    assert!(
        failure.as_str().unwrap().contains("500"),
        "the last failure is shown: {failure}"
    );
    b.screenshot(&shots.join("03-outbox-dead.png"));
    source.set_mode(Mode::Ok);
    let before = source.received().len();
    act_and_wait(
        &mut b,
        &format!(
            "document.querySelector('form[action=\"/console/outbox/{dead_id}/replay\"] button').click()"
        ),
        "document.querySelector('#notice.ok') !== null",
    );
    assert!(
        b.eval("document.querySelector('#notice').innerText")
            .as_str()
            .unwrap()
            .contains("1 dead letter"),
        "the replay says what it did"
    );
    let got = source.wait_for(WAIT, |r| r.len() > before);
    assert!(got.len() > before, "the fake source never got the replay");
    assert!(got.last().unwrap().contains("clickid=TS-1"), "{got:?}");
    assert!(
        !wait_for_outbox(&inst, "delivered").is_empty(),
        "the replayed relay is delivered"
    );
    go_to(
        &mut b,
        &format!("{admin}/console/outbox?state=delivered"),
        "#outbox",
    );
    assert!(b
        .eval("document.querySelector('#outbox').innerText")
        .as_str()
        .unwrap()
        .contains("delivered"));
    b.screenshot(&shots.join("04-outbox-delivered.png"));

    // The click explainer: a genuine click with its conversion and relay; and junk.
    go_to(&mut b, &format!("{admin}/console/explain"), "#explain-form");
    act_and_wait(
        &mut b,
        &format!(
            "document.querySelector('#click').value = {}; document.querySelector('#explain-form').submit()",
            js_string(&cid)
        ),
        "document.querySelector('#verdict.valid') !== null",
    );
    assert_eq!(
        b.eval("document.querySelector('#outbound').innerText"),
        json!("offer1")
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#conversions tbody tr').length"),
        json!(1)
    );
    assert!(b
        .eval("document.querySelector('#relays').innerText")
        .as_str()
        .unwrap()
        .contains("delivered"));
    b.screenshot(&shots.join("05-explain-click.png"));
    go_to(
        &mut b,
        &format!("{admin}/console/explain?click=not-a-click-id"),
        "#verdict.refused",
    );
    b.screenshot(&shots.join("06-explain-refused.png"));

    // The report, and its CSV fetched with the session cookie equals the API's.
    go_to(
        &mut b,
        &format!("{admin}/console/report?group_by=campaign,source"),
        "#report",
    );
    assert!(b
        .eval("document.querySelector('#report tbody tr').innerText")
        .as_str()
        .unwrap()
        .starts_with("camp"));
    b.screenshot(&shots.join("07-report.png"));
    let href = b
        .eval("document.querySelector('#csv-download').getAttribute('href')")
        .as_str()
        .unwrap()
        .to_string();
    let download = request(
        inst.admin,
        "GET",
        &href,
        &[("Cookie", &session_cookie)],
        b"",
    )
    .unwrap();
    assert_eq!(download.status, 200, "{}", download.text());
    assert!(download
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let api = inst.admin_get("/api/report?group_by=campaign,source&format=csv");
    assert_eq!(api.status, 200);
    assert_eq!(
        download.text(),
        api.text(),
        "the console's CSV is the API's"
    );
    assert!(download.text().contains("camp,src,"), "{}", download.text());

    // Networks: the URL to paste, and a test postback through the main listener.
    go_to(
        &mut b,
        &format!("{admin}/console/networks"),
        "#postback-url-0",
    );
    let url = b.eval("document.querySelector('#postback-url-0').value");
    assert!(
        url.as_str().unwrap().contains("/postback/cake"),
        "the postback URL: {url}"
    );
    let campaign_url = b.eval("document.querySelector('#campaign-url-0').value");
    assert!(
        campaign_url.as_str().unwrap().ends_with("/lp"),
        "the campaign URL to paste into the source: {campaign_url}"
    );
    let _ = b.eval("document.querySelector('button.copy').click()");
    assert!(
        b.wait_until(
            "document.querySelector('button.copy').textContent === 'Copied'",
            WAIT
        ),
        "the copy button answers"
    );
    act_and_wait(
        &mut b,
        "document.querySelector('button.test-postback').click()",
        "document.querySelector('#test-result') !== null",
    );
    assert!(
        b.eval("document.querySelector('#notice').className")
            .as_str()
            .unwrap()
            .contains("ok"),
        "the test postback: {}",
        b.eval("document.querySelector('#test-result').innerText")
    );
    b.screenshot(&shots.join("08-networks-test.png"));

    // The running config, with no secret in it.
    go_to(
        &mut b,
        &format!("{admin}/console/config"),
        "#config-networks",
    );
    let page = b.eval("document.documentElement.outerHTML");
    let page = page.as_str().unwrap();
    assert!(page.contains("cake") && page.contains("offer1"));
    for secret in [SECRET, ADMIN_TOKEN] {
        assert!(!page.contains(secret), "the config page shows {secret:?}");
    }
    b.screenshot(&shots.join("09-config.png"));

    // Logging out ends the session.
    act_and_wait(
        &mut b,
        "document.querySelector('button.logout').click()",
        "document.querySelector('#login-form') !== null",
    );
    let after = request(
        inst.admin,
        "GET",
        "/console",
        &[("Cookie", &session_cookie)],
        b"",
    )
    .unwrap();
    assert_eq!(
        after.status, 303,
        "the old cookie no longer opens the console"
    );
    println!("console screenshots: {}", shots.display());
}

fn post(inst: &Instance, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(inst.admin, "POST", path, &all, body.as_bytes()).unwrap()
}

#[test]
fn without_a_session_or_its_csrf_token_the_console_refuses_everything() {
    let source = FakeSource::start();
    let inst = start(&source);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let pages = [
        "/console",
        "/console/journal",
        "/console/outbox",
        "/console/explain?click=x",
        "/console/report",
        "/console/report.csv",
        "/console/networks",
        "/console/config",
    ];
    let actions = [
        "/logout",
        "/console/journal/1/replay",
        "/console/outbox/1/replay",
        "/console/outbox/replay-dead",
        "/console/networks/cake/test",
    ];
    // No session (the bearer token does not open the console either).
    for page in pages {
        for headers in [vec![], vec![("Authorization", bearer.as_str())]] {
            let r = request(inst.admin, "GET", page, &headers, b"").unwrap();
            assert_eq!(r.status, 303, "{page}: {}", r.text());
            assert_eq!(r.header("location"), Some("/login"), "{page}");
        }
    }
    for action in actions {
        let r = post(&inst, action, &[("Authorization", &bearer)], "csrf=x");
        assert_eq!(r.status, 403, "{action}: {}", r.text());
    }
    let forged = post(
        &inst,
        "/console/outbox/replay-dead",
        &[("Cookie", "clickstamp_console=forged")],
        "csrf=x",
    );
    assert_eq!(forged.status, 403, "an unknown session id is no session");

    // A wrong token opens nothing; the right one a session cookie.
    let wrong = post(&inst, "/login", &[], "token=nope");
    assert_eq!(wrong.status, 403);
    assert!(wrong.header("set-cookie").is_none());
    let login = post(&inst, "/login", &[], &format!("token={ADMIN_TOKEN}"));
    assert_eq!(login.status, 303, "{}", login.text());
    let set_cookie = login.header("set-cookie").unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP: a Secure cookie would never come back: {set_cookie}"
    );
    let behind_tls = post(
        &inst,
        "/login",
        &[("X-Forwarded-Proto", "https")],
        &format!("token={ADMIN_TOKEN}"),
    );
    assert!(
        behind_tls
            .header("set-cookie")
            .unwrap()
            .contains("; Secure"),
        "behind a TLS proxy the cookie is Secure"
    );
    let cookie = login.cookie().unwrap();
    let page = request(
        inst.admin,
        "GET",
        "/console/outbox",
        &[("Cookie", &cookie)],
        b"",
    )
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field in the page")
        .to_string();

    // With the session, a POST still needs its CSRF token: none, wrong, another's.
    let other_login = post(&inst, "/login", &[], &format!("token={ADMIN_TOKEN}"));
    let other_cookie = other_login.cookie().unwrap();
    let other_page = request(
        inst.admin,
        "GET",
        "/console",
        &[("Cookie", &other_cookie)],
        b"",
    )
    .unwrap();
    let other_csrf = other_page
        .text()
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert_ne!(csrf, other_csrf, "CSRF tokens are per session");
    for action in actions {
        for body in [
            String::new(),
            "csrf=".to_string(),
            "csrf=0000".to_string(),
            format!("csrf={other_csrf}"),
        ] {
            let r = post(&inst, action, &[("Cookie", &cookie)], &body);
            assert_eq!(r.status, 403, "{action} with {body:?}: {}", r.text());
        }
    }
    let ok = post(
        &inst,
        "/console/outbox/replay-dead",
        &[("Cookie", &cookie)],
        &format!("csrf={csrf}"),
    );
    assert_eq!(ok.status, 200, "the right token is accepted: {}", ok.text());
    assert!(
        ok.text().contains("0 dead letter(s) requeued"),
        "{}",
        ok.text()
    );

    assert!(
        inst.metric("clickstamp_requests_total{outcome=\"unauthorized\",route=\"console\"}")
            >= (pages.len() * 2 + actions.len() * 5 + 2) as f64,
        "refusals are counted"
    );

    // The bearer API is unchanged.
    let stats = inst.admin_get("/api/stats");
    assert_eq!(stats.status, 200);
    assert!(stats.json()["outbox"].is_object());
    let no_token = request(inst.admin, "GET", "/api/stats", &[("Cookie", &cookie)], b"").unwrap();
    assert_eq!(
        no_token.status, 401,
        "a console session does not open the API"
    );
}

#[test]
fn wrong_admin_tokens_lock_the_address_out_of_the_login_and_the_api() {
    let source = FakeSource::start();
    let inst = start(&source);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    // Requests without any token guess nothing and count for nothing.
    for _ in 0..20 {
        let r = request(inst.admin, "GET", "/api/stats", &[], b"").unwrap();
        assert_eq!(r.status, 401);
    }
    assert_eq!(inst.admin_get("/api/stats").status, 200);

    // Nine wrong logins and one wrong bearer token: the limit is shared.
    for i in 0..9 {
        let wrong = post(&inst, "/login", &[], &format!("token=guess-{i}"));
        assert_eq!(wrong.status, 403, "guess {i} is refused as wrong");
    }
    let wrong_api = request(
        inst.admin,
        "GET",
        "/api/stats",
        &[("Authorization", "Bearer guess-9")],
        b"",
    )
    .unwrap();
    assert_eq!(wrong_api.status, 401);

    // From now on this address is refused, the right token included, with a wait.
    let login = post(&inst, "/login", &[], &format!("token={ADMIN_TOKEN}"));
    assert_eq!(login.status, 429, "{}", login.text());
    assert!(login.header("set-cookie").is_none(), "no session opened");
    let wait: u64 = login.header("retry-after").unwrap().parse().unwrap();
    assert!((290..=300).contains(&wait), "Retry-After {wait}");
    assert!(
        login.text().contains("Too many wrong tokens"),
        "{}",
        login.text()
    );
    let api = request(
        inst.admin,
        "GET",
        "/api/stats",
        &[("Authorization", &bearer)],
        b"",
    )
    .unwrap();
    assert_eq!(api.status, 429, "{}", api.text());
    assert_eq!(api.json()["error"], "too_many_attempts");
    assert!(api.header("retry-after").is_some());
    assert!(
        !api.text().contains(ADMIN_TOKEN) && !login.text().contains(ADMIN_TOKEN),
        "the refusal never echoes the token"
    );

    // Health and metrics stay open; the refusals are counted and logged.
    assert_eq!(
        request(inst.admin, "GET", "/healthz", &[], b"")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        inst.metric("clickstamp_requests_total{outcome=\"throttled\",route=\"console\"}"),
        1.0
    );
    assert_eq!(
        inst.metric("clickstamp_requests_total{outcome=\"throttled\",route=\"admin_api\"}"),
        1.0
    );
    let log = inst.log();
    assert!(log.contains("too many wrong admin tokens"), "{log}");
    assert!(!log.contains(ADMIN_TOKEN), "the log never holds the token");
}

#[test]
fn a_clicks_relays_are_explained_however_many_relays_came_after_them() {
    let source = FakeSource::start();
    let inst = start(&source);
    let cid = click(&inst, "TS-OLD");
    let accepted = inst.get(
        &format!("/postback/cake?cid={cid}&txid=OLD1&secret={SECRET}"),
        &[],
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    let delivered = wait_for_outbox(&inst, "delivered");
    assert_eq!(delivered.len(), 1, "the relay was not delivered");
    // Months of other clicks' relays after it (written directly: thousands of
    // postbacks would only make the test slow).
    inst.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, \
         attempts, next_attempt_ms, created_ms) \
         SELECT 900000 + i, 'another-click', 'src', 'conversion', 'http://127.0.0.1:9/', \
         'delivered', 1, 0, 0 FROM n",
        &[],
    );

    let answer = inst.admin_get(&format!("/api/outbox?click={cid}"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let entries = answer.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "exactly this click's relay: {entries:?}");
    assert_eq!(entries[0]["click_id"], json!(cid));
    assert_eq!(entries[0]["state"], json!("delivered"));
    let both = inst.admin_get(&format!("/api/outbox?click={cid}&state=dead"));
    assert_eq!(both.status, 400, "{}", both.text());

    let login = post(&inst, "/login", &[], &format!("token={ADMIN_TOKEN}"));
    let cookie = login.cookie().unwrap();
    let page = request(
        inst.admin,
        "GET",
        &format!("/console/explain?click={cid}"),
        &[("Cookie", &cookie)],
        b"",
    )
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let relays = html
        .split("id=\"relays\"")
        .nth(1)
        .expect("a relays table on the explain page");
    assert!(
        relays.contains("delivered") && relays.contains(&source.addr.to_string()),
        "the click's relay is listed: {relays}"
    );
    assert!(!relays.contains("another-click"), "no other click's relays");
}
