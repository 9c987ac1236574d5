//! Click capture, cookies, /go, open-redirect attempts, durability under kill -9.

use clickstamp_e2e::instance::{demo_body, CLICK_ID_KEY};
use clickstamp_e2e::{request, skip_on_postgres, Instance};
use clickstamp_plugins::query::{first_value, parse_query};
use clickstamp_plugins::ClickIdCodec;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const OFFER_PREFIX: &str = "https://network.example/offer?a=1&s2=";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn codec() -> ClickIdCodec {
    ClickIdCodec::new(CLICK_ID_KEY.as_bytes())
}

/// The click ID stamped into a /go redirect, checked to be genuine.
fn stamped_click(location: &str) -> String {
    assert!(
        location.starts_with(OFFER_PREFIX),
        "redirect left the configured offer: {location}"
    );
    let query = location.split_once('?').unwrap().1;
    let cid = first_value(&parse_query(query), "s2")
        .expect("s2 stamped")
        .to_string();
    codec()
        .verify(&cid, now_ms(), 86_400_000)
        .expect("stamped click id is genuine");
    cid
}

#[test]
fn landing_click_then_go_redirects_with_the_same_stamped_click_stored_on_disk() {
    let inst = Instance::start(&demo_body());
    let landing = inst.get(
        "/demo?tsid=ABC&cost=0.02&zone=42",
        &[
            ("User-Agent", "e2e-agent"),
            ("Referer", "https://ads.example/"),
        ],
    );
    assert_eq!(landing.status, 200);
    assert!(landing.text().contains("The summer deal"));
    let cookie = landing.cookie().expect("landing sets the click cookie");
    assert!(cookie.starts_with("cs_demo-campaign="), "{cookie}");
    let set_cookie = landing.header("set-cookie").unwrap();
    assert!(
        set_cookie.contains("Max-Age=2592000") && set_cookie.contains("Path=/"),
        "{set_cookie}"
    );
    let cid = cookie.split_once('=').unwrap().1.to_string();

    let go = inst.get("/go/demo", &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302);
    assert_eq!(
        stamped_click(go.header("location").unwrap()),
        cid,
        "/go stamps the visitor's own click"
    );
    assert!(
        go.header("set-cookie").is_none(),
        "an existing click is not replaced"
    );

    let click = inst
        .rows(
            "SELECT campaign_id, source_id, source_click_id, cost, sub1, user_agent, referrer, entry FROM clicks WHERE click_id = $1",
            &[&cid],
        )
        .pop()
        .expect("the click row is in the store");
    assert_eq!(
        (click.get_str(0), click.get_str(1), click.get_str(2)),
        ("demo-campaign", "demo-source", "ABC")
    );
    assert_eq!(
        (click.get_f64(3), click.get_str(4), click.get_str(5)),
        (0.02, "42", "e2e-agent")
    );
    assert_eq!(
        (click.get_str(6), click.get_str(7)),
        ("https://ads.example/", "landing")
    );
    let outbound = inst.count(
        "SELECT count(*) FROM outbound_clicks WHERE click_id = $1 AND offer_id = 'demo'",
        &[&cid],
    );
    assert_eq!(outbound, 1, "the outbound click is recorded");

    assert_eq!(
        inst.metric("clickstamp_clicks_total{campaign=\"demo-campaign\",source=\"demo-source\"}"),
        1.0
    );
    assert_eq!(
        inst.metric("clickstamp_outbound_clicks_total{campaign=\"demo-campaign\",offer=\"demo\"}"),
        1.0
    );
    let api = inst.admin_get(&format!("/api/clicks/{cid}")).json();
    assert_eq!(api["source_click_id"], "ABC");
}

#[test]
fn reloads_with_the_cookie_keep_the_click_and_assets_record_none() {
    let inst = Instance::start(&demo_body());
    let first = inst.get("/demo?tsid=A", &[]);
    let cookie = first.cookie().unwrap();
    for _ in 0..5 {
        let again = inst.get("/demo?tsid=A", &[("Cookie", &cookie)]);
        assert_eq!(again.status, 200);
        assert!(again.header("set-cookie").is_none());
    }
    let css = inst.get("/demo/style.css", &[]);
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(
        css.header("set-cookie").is_none(),
        "assets never mint clicks"
    );
    let n = inst.count("SELECT count(*) FROM clicks", &[]);
    assert_eq!(n, 1, "reloads and assets do not inflate clicks");
}

#[test]
fn forged_mistyped_truncated_and_expired_click_ids_are_refused_from_the_id_alone() {
    let inst = Instance::start(&demo_body());
    let genuine = inst
        .get("/demo", &[])
        .cookie()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let mut typo = genuine.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let forged = ClickIdCodec::new(b"not-the-configured-key!!")
        .mint(now_ms(), [1; 6])
        .to_string();
    let expired = codec().mint(now_ms() - 31 * 86_400_000, [2; 6]).to_string();
    let cases = [
        (typo.as_str(), "click_id_bad_mac"),
        (forged.as_str(), "click_id_bad_mac"),
        (&genuine[..30], "click_id_malformed"),
        (expired.as_str(), "click_id_expired"),
    ];
    for (bad, reason) in cases {
        // The admin API explains the refusal.
        let api = inst.admin_get(&format!("/api/clicks/{bad}"));
        assert_eq!(api.status, 400, "{bad}");
        assert_eq!(api.json()["error"], reason, "{bad}");
        // /go never stamps a refused ID: the visitor gets a fresh, genuine one.
        let go = inst.get(&format!("/go/demo?click={bad}"), &[]);
        assert_eq!(go.status, 302);
        let stamped = stamped_click(go.header("location").unwrap());
        assert_ne!(stamped, bad);
        let go = inst.get(
            "/go/demo",
            &[("Cookie", &format!("cs_demo-campaign={bad}"))],
        );
        assert_ne!(stamped_click(go.header("location").unwrap()), bad);
    }
    assert_eq!(
        inst.metric(
            "clickstamp_click_ids_rejected_total{reason=\"click_id_expired\",route=\"go\"}"
        ),
        2.0
    );
    assert_eq!(
        inst.metric(
            "clickstamp_click_ids_rejected_total{reason=\"click_id_bad_mac\",route=\"go\"}"
        ),
        4.0
    );
    // A genuine ID passed by query is honoured.
    let go = inst.get(&format!("/go/demo?click={genuine}"), &[]);
    assert_eq!(stamped_click(go.header("location").unwrap()), genuine);
}

#[test]
fn go_never_becomes_an_open_redirect() {
    let inst = Instance::start(&demo_body());
    let attempts = [
        "/go/demo?url=https://evil.example/",
        "/go/demo?redirect=//evil.example&to=https%3A%2F%2Fevil.example",
        "/go//evil.example",
        "/go/%2F%2Fevil.example",
        "/go/%2f%2fevil.example%2f",
        "/go/\\\\evil.example",
        "/go/%5C%5Cevil.example",
        "/go/https:%2F%2Fevil.example",
        "/go/demo%2F..%2F..%2Fevil",
        "/go/demo/../../evil.example",
        "/go/demo%00evil",
        "/go/evil.example",
        "/go/",
    ];
    for target in attempts {
        let r = inst.get(target, &[]);
        match r.status {
            302 => {
                let location = r.header("location").unwrap();
                assert!(
                    location.starts_with(OFFER_PREFIX),
                    "{target} redirected to {location}"
                );
            }
            400 | 404 => assert!(r.header("location").is_none(), "{target}"),
            other => panic!("{target}: unexpected status {other}"),
        }
    }
    assert!(inst.get("/go/evil.example", &[]).json()["error"] == "unknown_offer");
}

#[test]
fn go_to_a_campaign_picks_a_configured_offer_and_direct_links_mint_a_click() {
    let inst = Instance::start(&demo_body());
    let r = inst.get("/go/demo-campaign?tsid=DIRECT1", &[]);
    assert_eq!(r.status, 302);
    let cid = stamped_click(r.header("location").unwrap());
    assert!(
        r.cookie().unwrap().ends_with(&cid),
        "the minted click is also set as the cookie"
    );
    let click = inst.row(
        "SELECT entry, source_click_id FROM clicks WHERE click_id = $1",
        &[&cid],
    );
    assert_eq!((click.get_str(0), click.get_str(1)), ("direct", "DIRECT1"));
}

#[test]
fn lander_traversal_attempts_answer_404() {
    // A landers directory with real files beside it: every escape below would find one.
    let site = clickstamp_e2e::TempDir::new("landers-escape");
    let landers = site.0.join("landers");
    std::fs::create_dir_all(landers.join("sub")).unwrap();
    std::fs::write(landers.join("index.html"), "<p>inside</p>").unwrap();
    std::fs::write(landers.join("sub/page.html"), "<p>sub</p>").unwrap();
    std::fs::write(landers.join(".env"), "SECRET=dotfile").unwrap();
    std::fs::write(site.0.join("secret.txt"), "SECRET=outside").unwrap();
    std::os::unix::fs::symlink(site.0.join("secret.txt"), landers.join("link.txt")).unwrap();
    let body = demo_body().replace(
        &format!(
            "origin = {{ landers = \"{}\" }}",
            clickstamp_e2e::instance::workspace_root()
                .join("config/demo/landers")
                .display()
        ),
        &format!("origin = {{ landers = \"{}\" }}", landers.display()),
    );
    // A second campaign on the root path: there a `..` would leave the directory itself.
    let body = format!(
        "{body}\n[[campaigns]]\nid = \"root\"\npath = \"/\"\ntraffic_source = \"demo-source\"\n\
         offers = [{{ offer = \"demo\" }}]\norigin = {{ landers = \"{}\" }}\n",
        landers.join("sub").display()
    );
    let inst = Instance::start(&body);
    assert!(inst.get("/demo/sub/page.html", &[]).text().contains("sub"));
    assert!(inst.get("/page.html", &[]).text().contains("sub"));
    for (target, reason) in [
        ("/../page.html", "path_escape"),
        ("/%2e%2e/index.html", "path_escape"),
        ("/%2E%2E/%2e%2e/secret.txt", "path_escape"),
        ("/demo/../../secret.txt", "path_escape"),
        ("/demo/..%2f..%2fsecret.txt", "path_separator"),
        ("/demo/..%5c..%5csecret.txt", "path_separator"),
        ("/demo/..\\..\\secret.txt", "path_separator"),
        ("/demo/index.html%00.txt", "path_separator"),
    ] {
        let r = inst.get(target, &[]);
        assert_eq!(r.status, 404, "{target}: {}", r.text());
        assert_eq!(r.json()["error"], reason, "{target}");
    }
    // Inside the directory, but not to be served: a dotfile, a symlink out of it.
    for target in ["/demo/.env", "/demo/link.txt", "/demo/%2eenv"] {
        let r = inst.get(target, &[]);
        assert_eq!(r.status, 404, "{target}");
        assert!(!r.text().contains("SECRET"), "{target}: {}", r.text());
    }
}

#[test]
fn kill_9_under_load_loses_no_click_that_got_a_redirect() {
    let mut inst = Instance::start(&demo_body());
    let main = inst.main;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                    sent += 1;
                    match request(main, "GET", "/go/demo-campaign?tsid=load", &[], b"") {
                        Ok(r) if r.status == 302 => {
                            let location = r.header("location").unwrap().to_string();
                            acknowledged.lock().unwrap().push(stamped_click(&location));
                        }
                        Ok(r) => panic!("unexpected status {}", r.status),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    inst.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "the load generator got only {} redirects",
        acknowledged.len()
    );

    inst.restart();
    // One read of every stored click rather than a query per acknowledged one.
    let stored: HashSet<String> = inst
        .rows("SELECT click_id FROM clicks", &[])
        .iter()
        .map(|row| row.get_string(0))
        .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|cid| !stored.contains(*cid))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged clicks lost, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        missing.first()
    );
    // And the restarted service still serves them.
    let last = acknowledged.last().unwrap();
    assert_eq!(inst.admin_get(&format!("/api/clicks/{last}")).status, 200);
}

#[test]
fn admin_api_requires_the_bearer_token_and_unknown_paths_get_a_json_404() {
    let inst = Instance::start(&demo_body());
    assert_eq!(
        clickstamp_e2e::get(inst.admin, "/api/stats", &[]).status,
        401
    );
    assert_eq!(
        clickstamp_e2e::get(
            inst.admin,
            "/api/stats",
            &[("Authorization", "Bearer wrong-token-xxxxxxxx")]
        )
        .status,
        401
    );
    assert_eq!(inst.admin_get("/api/stats").status, 200);
    assert_eq!(clickstamp_e2e::get(inst.admin, "/healthz", &[]).status, 200);
    let nf = inst.get("/nowhere", &[]);
    assert_eq!(nf.status, 404);
    assert_eq!(nf.json()["error"], "not_found");
    let metrics = clickstamp_e2e::get(inst.admin, "/metrics", &[]).text();
    assert!(metrics.contains("clickstamp_store_commit_duration_seconds_bucket"));
    assert!(metrics.contains("clickstamp_request_duration_seconds_bucket{route=\"not_found\""));
}

#[test]
fn sustained_writes_restart_the_wal_and_lose_nothing() {
    if skip_on_postgres("SQLite's write-ahead log and its wal_max_bytes bound") {
        return;
    }
    // A 1 MiB bound (the smallest allowed): a few seconds of clicks outgrow it many
    // times; each time the log is checkpointed in full and started over while writes
    // wait, and every click that got its redirect is still stored.
    let inst = Instance::start_with(&demo_body(), "wal_max_bytes = 1048576");
    let main = inst.main;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                while std::time::Instant::now() < deadline {
                    let r = request(main, "GET", "/go/demo-campaign?tsid=wal", &[], b"")
                        .expect("the server answers");
                    assert_eq!(r.status, 302, "{}", r.text());
                    let location = r.header("location").unwrap().to_string();
                    acknowledged.lock().unwrap().push(stamped_click(&location));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let restarts = inst.metric_at_least(
        "clickstamp_store_wal_restarts_total",
        1.0,
        Duration::from_secs(10),
    );
    assert!(
        restarts >= 1.0,
        "the WAL was never restarted:\n{}",
        inst.log()
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = inst.count("SELECT count(*) FROM clicks", &[]);
    assert!(
        acknowledged.len() > 500,
        "only {} redirects",
        acknowledged.len()
    );
    assert_eq!(
        stored as usize,
        acknowledged.len(),
        "every redirected click is stored"
    );
    assert_eq!(inst.metric("clickstamp_store_errors_total"), 0.0);
    let wal = std::fs::metadata(inst.db_path().with_extension("sqlite-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        wal <= 64 << 20,
        "the WAL file is cut back when it starts over ({wal} bytes)"
    );
}
