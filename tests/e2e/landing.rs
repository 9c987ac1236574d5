//! Landing pages through the real binary: a loopback origin serves a ~50 KB
//! real-world-shaped page (plain or gzip'd, Content-Length or chunked, in awkward
//! pieces); exactly the offer links change and every other byte is identical.

use clickstamp_e2e::origin::{awkward_splits, landing_page, OriginServer, Reply};
use clickstamp_e2e::{request, Instance, KillOnDrop, TempDir};
use std::io::{Read, Write};

/// Config body: one CAKE offer on net.example/offer, one campaign at `/lp` proxied to
/// `origin`, with `rewrite` as the campaign's rewrite table (TOML inline table body).
fn body(origin: &str, rewrite: &str) -> String {
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
origin = {{ upstream = "{origin}" }}
rewrite = {{ {rewrite} }}
"#
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Byte-for-byte equality, reporting the first difference with context.
fn assert_same(name: &str, got: &str, expected: &str) {
    if got == expected {
        return;
    }
    let (g, e) = (got.as_bytes(), expected.as_bytes());
    let at = g
        .iter()
        .zip(e)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(e.len()));
    let around = |b: &[u8]| {
        String::from_utf8_lossy(&b[at.saturating_sub(60)..(at + 60).min(b.len())]).into_owned()
    };
    panic!(
        "{name}: body differs at byte {at} (lengths {} vs {}):\n got: {:?}\nwant: {:?}",
        g.len(),
        e.len(),
        around(g),
        around(e)
    );
}

fn cookie_click(resp: &clickstamp_e2e::Response) -> String {
    resp.cookie()
        .expect("a new visitor gets a click cookie")
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// The click ID is only known once the response arrives; the page generator needs it,
/// so the origin builds the page lazily for a placeholder and the test substitutes.
const PLACEHOLDER: &str = "CLICKIDCLICKIDCLICKIDCLICKIDCLIC";

fn clicks(inst: &Instance) -> i64 {
    inst.value("SELECT count(*) FROM clicks WHERE campaign_id = 'lp'", &[])
}

#[test]
fn exactly_the_offer_links_change_in_every_framing_and_encoding() {
    let (page, _, _) = landing_page(PLACEHOLDER);
    let splits = awkward_splits(&page);
    let zipped = gzip(page.as_bytes());
    let variants: Vec<(&str, Reply)> = vec![
        (
            "identity, Content-Length, one write",
            Reply::ok("text/html; charset=utf-8", page.clone()),
        ),
        (
            "identity, Content-Length, awkward pieces",
            Reply::ok("text/html; charset=utf-8", page.clone()).pieces(splits.clone()),
        ),
        (
            "identity, chunked, awkward chunks",
            Reply::ok("text/html", page.clone()).chunked(splits.clone()),
        ),
        (
            "gzip despite identity asked, chunked in 50-byte chunks",
            Reply::ok("text/html; charset=utf-8", zipped.clone())
                .header("Content-Encoding", "gzip")
                .chunked((1..zipped.len() / 50).map(|k| k * 50).collect()),
        ),
    ];
    for (name, reply) in variants {
        let reply = reply
            .header("ETag", "\"v1\"")
            .header("Accept-Ranges", "bytes");
        let origin = OriginServer::start(move |_| reply.clone());
        let inst = Instance::start(&body(&format!("http://{}", origin.addr), ""));
        let resp = inst.get("/lp/?tsid=T1", &[]);
        assert_eq!(resp.status, 200, "{name}: {}", inst.log());
        let cid = cookie_click(&resp);
        let (_, expected, changed) = landing_page(&cid);
        let got = String::from_utf8(resp.body.clone()).expect("utf-8 body");
        assert_same(name, &got, &expected);
        assert_eq!(got.matches(&cid).count(), changed, "{name}: links stamped");
        assert!(changed > 100, "the page has many stamped links ({changed})");
        assert!(resp.header("content-length").is_none(), "{name}");
        assert_eq!(resp.header("transfer-encoding"), Some("chunked"), "{name}");
        assert!(
            resp.header("content-encoding").is_none(),
            "{name}: no gzip asked"
        );
        assert_eq!(resp.header("etag"), Some("W/\"v1\""), "{name}: weak ETag");
        assert!(resp.header("accept-ranges").is_none(), "{name}");
        assert_eq!(resp.header("cache-control"), Some("private, no-cache"));
        let seen = origin.seen();
        assert_eq!(
            seen[0].header("accept-encoding"),
            Some("identity"),
            "{name}"
        );
        assert_eq!(seen[0].target, "/?tsid=T1");
        assert_eq!(
            seen[0].header("host"),
            Some(origin.addr.to_string().as_str())
        );
        assert_eq!(clicks(&inst), 1, "{name}: the click is recorded");
        assert_eq!(
            inst.metric("clickstamp_links_stamped_total{campaign=\"lp\"}"),
            changed as f64
        );
    }
}

#[test]
fn gzip_clients_get_the_rewritten_page_recompressed_and_connections_are_reused() {
    let (page, _, _) = landing_page(PLACEHOLDER);
    let origin = OriginServer::start(move |_| Reply::ok("text/html; charset=utf-8", page.clone()));
    let inst = Instance::start(&body(&format!("http://{}", origin.addr), ""));
    let resp = inst.get("/lp/", &[("Accept-Encoding", "gzip")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    let cid = cookie_click(&resp);
    let (_, expected, _) = landing_page(&cid);
    assert_same(
        "gzip client",
        &String::from_utf8(gunzip(&resp.body)).unwrap(),
        &expected,
    );
    assert!(resp.body.len() < expected.len() / 2, "actually compressed");
    // Pingora pools the upstream connection: later requests reuse it.
    for _ in 0..5 {
        assert_eq!(inst.get("/lp/", &[]).status, 200);
    }
    assert_eq!(origin.seen().len(), 6);
    assert!(
        origin.connections() < 6,
        "keep-alive to the origin ({} connections)",
        origin.connections()
    );
}

#[test]
fn go_mode_and_sdk_injection() {
    let page = "<html><head><title>t</title></head><body>\
        <a href=\"https://net.example/offer?a=1\">offer</a>\
        <a href=\"https://elsewhere.example/\">other</a></body></html>";
    let origin = OriginServer::start(move |_| Reply::ok("text/html", page));
    let inst = Instance::start(&body(
        &format!("http://{}", origin.addr),
        "links = \"go\", inject_sdk = true, sdk_src = \"/sdk/clickstamp.js?v=2\"",
    ));
    let resp = inst.get("/lp/", &[]);
    let cid = cookie_click(&resp);
    assert_eq!(
        resp.text(),
        format!(
            "<html><head><title>t</title><script src=\"/sdk/clickstamp.js?v=2\" async></script></head><body>\
             <a href=\"/go/demo?click={cid}\">offer</a>\
             <a href=\"https://elsewhere.example/\">other</a></body></html>"
        )
    );
    // The rewritten link works: /go records the outbound click for this visitor.
    let go = inst.get(&format!("/go/demo?click={cid}"), &[]);
    assert_eq!(go.status, 302);
    assert_eq!(
        go.header("location"),
        Some(format!("https://net.example/offer?a=1&s2={cid}").as_str())
    );
}

#[test]
fn rewriting_off_passes_the_page_through_byte_identical() {
    let (page, _, _) = landing_page(PLACEHOLDER);
    let p = page.clone();
    let origin = OriginServer::start(move |_| {
        Reply::ok("text/html; charset=utf-8", p.clone()).header("ETag", "\"v1\"")
    });
    let inst = Instance::start(&body(&format!("http://{}", origin.addr), "enabled = false"));
    let resp = inst.get("/lp/", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), page);
    assert_eq!(
        resp.header("content-length"),
        Some(page.len().to_string().as_str())
    );
    assert_eq!(resp.header("etag"), Some("\"v1\""));
    assert!(resp.cookie().is_some(), "the click is still recorded");
    assert_eq!(clicks(&inst), 1);
}

#[test]
fn head_304_range_non_html_and_oversized_pass_through_untouched() {
    let html = "<a href=\"https://net.example/offer\">x</a>";
    let origin = OriginServer::start(move |req| {
        let path = req.target.split('?').next().unwrap_or("");
        match path {
            "/style.css" => Reply::ok("text/css", "a{background:url(https://net.example/offer)}"),
            "/big" => Reply::ok("text/html", format!("{html}{}", " ".repeat(5000))),
            "/range" if req.header("range").is_some() => {
                let mut r = Reply::ok("text/html", &html[0..10]);
                r.status = 206;
                r.header("Content-Range", &format!("bytes 0-9/{}", html.len()))
            }
            "/cached" if req.header("if-none-match") == Some("W/\"v7\"") => {
                let mut r = Reply::ok("text/html", "");
                r.status = 304;
                r.header("ETag", "\"v7\"")
            }
            "/empty" => {
                let mut r = Reply::ok("text/html", "");
                r.status = 204;
                r
            }
            _ => Reply::ok("text/html", html).header("ETag", "\"v7\""),
        }
    });
    let inst = Instance::start(&body(
        &format!("http://{}", origin.addr),
        "max_body_bytes = 1000",
    ));
    let first = inst.get("/lp/page", &[]);
    let cid = cookie_click(&first);
    let cookie = first.cookie().unwrap();
    let c = [("Cookie", cookie.as_str())];
    let css = inst.get("/lp/style.css", &c);
    assert_eq!(css.text(), "a{background:url(https://net.example/offer)}");
    assert!(css.header("content-length").is_some());

    let big = inst.get("/lp/big", &c);
    assert!(
        big.text().starts_with(html),
        "over max_body_bytes: untouched"
    );

    let range = inst.get("/lp/range", &[("Range", "bytes=0-9"), c[0]]);
    assert_eq!(range.status, 206);
    assert_eq!(range.text(), &html[0..10]);

    let head = request(inst.main, "HEAD", "/lp/page", &c, b"").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("etag"),
        Some("\"v7\""),
        "HEAD: origin headers as they are"
    );

    let cached = inst.get("/lp/cached", &[("If-None-Match", "W/\"v7\""), c[0]]);
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    let empty = inst.get("/lp/empty", &c);
    assert_eq!(empty.status, 204);

    let page = first;
    assert_eq!(
        page.text(),
        format!("<a href=\"https://net.example/offer?s2={cid}\">x</a>")
    );
    for action in [
        "skipped_not_html",
        "skipped_too_large",
        "skipped_range",
        "skipped_head",
        "skipped_status",
        "rewritten",
    ] {
        assert!(
            inst.metric(&format!(
                "clickstamp_html_responses_total{{action=\"{action}\",campaign=\"lp\"}}"
            )) >= 1.0,
            "{action} counted"
        );
    }
}

#[test]
fn a_rewrite_failure_keeps_the_page_whole_and_is_counted() {
    // One start tag larger than the rewriter's memory limit makes lol-html give up.
    let huge = "x".repeat(20_000);
    let page = format!(
        "<a href=\"https://net.example/offer\">1</a><a title=\"{huge}\" href=\"https://net.example/offer\">2</a><p>tail</p>"
    );
    let p = page.clone();
    let origin = OriginServer::start(move |_| {
        Reply::ok("text/html", p.clone()).chunked((1..30).map(|k| k * 1000).collect())
    });
    let inst = Instance::start(&body(
        &format!("http://{}", origin.addr),
        "max_memory_bytes = 4096",
    ));
    let resp = inst.get("/lp/", &[]);
    assert_eq!(resp.status, 200);
    let cid = cookie_click(&resp);
    let stamped_first = page.replacen(
        "https://net.example/offer\">1",
        &format!("https://net.example/offer?s2={cid}\">1"),
        1,
    );
    assert_eq!(resp.text(), stamped_first, "nothing lost after the failure");
    assert_eq!(
        inst.metric("clickstamp_html_rewrite_failures_total{campaign=\"lp\"}"),
        1.0
    );
}

#[test]
fn origin_down_gives_a_502_page_and_the_click_is_still_recorded() {
    let dead = clickstamp_e2e::instance::free_addr();
    let inst = Instance::start(&body(&format!("http://{dead}"), ""));
    let resp = inst.get("/lp/?tsid=DOWN", &[]);
    assert_eq!(resp.status, 502, "{}", inst.log());
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(resp.text().contains("temporarily unavailable"));
    let cid = cookie_click(&resp);
    let scid: String = inst.value(
        "SELECT source_click_id FROM clicks WHERE click_id = $1",
        &[&cid],
    );
    assert_eq!(scid, "DOWN");
}

#[test]
fn a_visitor_who_hangs_up_is_counted_as_gone_and_the_origin_is_not_blamed() {
    let origin = OriginServer::start(|_| {
        std::thread::sleep(std::time::Duration::from_millis(800));
        // Large enough that writing it into the closed connection fails.
        let filler = "<p>slow but fine</p>".repeat(200_000);
        Reply::ok("text/html", format!("<html><body>{filler}</body></html>"))
    });
    let inst = Instance::start(&body(&format!("http://{}", origin.addr), ""));
    let mut visitor = std::net::TcpStream::connect(inst.main).unwrap();
    visitor
        .write_all(b"GET /lp/?tsid=GONE HTTP/1.1\r\nHost: lp.example\r\n\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(visitor);

    let closed = inst.metric_at_least(
        "clickstamp_requests_total{outcome=\"client_closed\",route=\"landing\"}",
        1.0,
        std::time::Duration::from_secs(5),
    );
    assert_eq!(closed, 1.0, "{}", inst.log());
    assert_eq!(
        inst.metric("clickstamp_requests_total{outcome=\"origin_error\",route=\"landing\"}"),
        0.0
    );
    let log = inst.log();
    assert!(!log.contains("origin unreachable"), "{log}");
    assert!(!log.contains("request failed"), "{log}");
    // The visit still counts: the click was recorded before the page was fetched.
    let clicks: i64 = inst.value(
        "SELECT COUNT(*) FROM clicks WHERE source_click_id = 'GONE'",
        &[],
    );
    assert_eq!(clicks, 1);
}

#[test]
fn landers_directory_refuses_traversal_and_answers_conditional_gets() {
    let dir = TempDir::new("landers");
    let root = dir.0.join("landers");
    std::fs::create_dir_all(root.join("summer")).unwrap();
    std::fs::write(dir.0.join("secret.txt"), "top secret").unwrap();
    std::fs::write(
        root.join("summer/index.html"),
        "<html><head></head><body><a href=\"https://net.example/offer?a=1\">x</a></body></html>",
    )
    .unwrap();
    std::fs::write(root.join("summer/app.js"), "console.log(1)").unwrap();
    let cfg = body("http://127.0.0.1:9", "").replace(
        "origin = { upstream = \"http://127.0.0.1:9\" }",
        &format!("origin = {{ landers = \"{}\" }}", root.display()),
    );
    let inst = Instance::start(&cfg);
    for bad in [
        "/lp/../secret.txt",
        "/lp/%2e%2e/secret.txt",
        "/lp/summer/..%2f..%2fsecret.txt",
        "/lp/..%5csecret.txt",
        "/lp/.%2e/secret.txt",
        "/lp/summer/%00",
    ] {
        let r = inst.get(bad, &[]);
        assert_eq!(r.status, 404, "{bad}");
        assert!(!r.text().contains("top secret"), "{bad}");
    }
    let page = inst.get("/lp/summer/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let cid = cookie_click(&page);
    assert!(
        page.text()
            .contains(&format!("https://net.example/offer?a=1&s2={cid}")),
        "lander pages are stamped too: {}",
        page.text()
    );
    let js = inst.get("/lp/summer/app.js", &[]);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let etag = js.header("etag").unwrap().to_string();
    let modified = js
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert_eq!(
        inst.get("/lp/summer/app.js", &[("If-None-Match", &etag)])
            .status,
        304
    );
    assert_eq!(
        inst.get("/lp/summer/app.js", &[("If-Modified-Since", &modified)])
            .status,
        304
    );
    assert_eq!(
        inst.get(
            "/lp/summer/app.js",
            &[("If-Modified-Since", "Thu, 01 Jan 1998 00:00:00 GMT")]
        )
        .status,
        200
    );
    let head = request(inst.main, "HEAD", "/lp/summer/app.js", &[], b"").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("14"));
}

#[test]
fn a_page_seen_before_is_replayed_byte_exact_and_a_changed_page_is_rewritten_afresh() {
    // The origin serves version 1 of the page three times, then version 2, whose only
    // change sits inside a stamped link in the middle of the page.
    let (v1, _, _) = landing_page(PLACEHOLDER);
    let change = |p: &str| p.replace("data-pos=\"37\"", "data-pos=\"37-new\"");
    let v2 = change(&v1);
    assert_ne!(v1, v2);
    let served = std::sync::atomic::AtomicUsize::new(0);
    let (s1, s2) = (awkward_splits(&v1), awkward_splits(&v2));
    let origin = OriginServer::start(move |_| {
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < 3 {
            Reply::ok("text/html; charset=utf-8", v1.clone()).chunked(s1.clone())
        } else {
            Reply::ok("text/html; charset=utf-8", v2.clone()).chunked(s2.clone())
        }
    });
    let inst = Instance::start(&body(&format!("http://{}", origin.addr), ""));
    let template = |outcome: &str| {
        inst.metric(&format!(
            "clickstamp_html_templates_total{{campaign=\"lp\",outcome=\"{outcome}\"}}"
        ))
    };
    let mut seen_clicks = Vec::new();
    for (visitor, version) in [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)] {
        let resp = inst.get(&format!("/lp/?tsid=V{visitor}"), &[]);
        assert_eq!(resp.status, 200, "{}", inst.log());
        let cid = cookie_click(&resp);
        let (_, mut expected, changed) = landing_page(&cid);
        if version == 2 {
            expected = change(&expected);
        }
        let got = String::from_utf8(resp.body.clone()).expect("utf-8 body");
        assert_same(&format!("visitor {visitor}"), &got, &expected);
        assert_eq!(got.matches(&cid).count(), changed, "visitor {visitor}");
        seen_clicks.push(cid);
    }
    seen_clicks.dedup();
    assert_eq!(seen_clicks.len(), 5, "every visitor got their own click ID");
    assert_eq!(template("recorded"), 1.0, "visitor 1 recorded the page");
    assert_eq!(
        template("replayed"),
        3.0,
        "visitors 2, 3 and 5 were replayed"
    );
    assert_eq!(template("diverged"), 1.0, "visitor 4 met the changed page");
    assert_eq!(
        inst.metric("clickstamp_html_rewrite_failures_total{campaign=\"lp\"}"),
        0.0
    );
}

#[test]
fn a_lander_file_is_replayed_from_its_template_until_it_is_edited() {
    // A landers-directory campaign: the file is rewritten by lol-html once, replayed for
    // later visitors, and rewritten afresh (and re-recorded) once someone edits it.
    let dir = TempDir::new("lander-templates");
    let root = dir.0.join("landers");
    std::fs::create_dir_all(&root).unwrap();
    let (v1, _, _) = landing_page(PLACEHOLDER);
    let change = |p: &str| p.replace("data-pos=\"37\"", "data-pos=\"37-new\"");
    std::fs::write(root.join("index.html"), &v1).unwrap();
    let cfg = body("http://127.0.0.1:9", "").replace(
        "origin = { upstream = \"http://127.0.0.1:9\" }",
        &format!("origin = {{ landers = \"{}\" }}", root.display()),
    );
    let inst = Instance::start(&cfg);
    let template = |outcome: &str| {
        inst.metric(&format!(
            "clickstamp_html_templates_total{{campaign=\"lp\",outcome=\"{outcome}\"}}"
        ))
    };
    for visitor in 1..=6 {
        if visitor == 4 {
            std::fs::write(root.join("index.html"), change(&v1)).unwrap();
        }
        let resp = inst.get(&format!("/lp/?tsid=L{visitor}"), &[]);
        assert_eq!(resp.status, 200, "{}", inst.log());
        let cid = cookie_click(&resp);
        let (_, mut expected, changed) = landing_page(&cid);
        if visitor >= 4 {
            expected = change(&expected);
        }
        let got = String::from_utf8(resp.body.clone()).expect("utf-8 body");
        assert_same(&format!("visitor {visitor}"), &got, &expected);
        assert_eq!(got.matches(&cid).count(), changed, "visitor {visitor}");
        assert_eq!(
            resp.header("content-length"),
            Some(got.len().to_string().as_str()),
            "a lander keeps an exact Content-Length"
        );
    }
    assert_eq!(template("recorded"), 1.0, "visitor 1 recorded the file");
    assert_eq!(template("diverged"), 1.0, "visitor 4 met the edited file");
    assert_eq!(
        template("replayed"),
        4.0,
        "visitors 2, 3, 5 and 6 were replayed"
    );
    assert_eq!(
        inst.metric("clickstamp_html_rewrite_failures_total{campaign=\"lp\"}"),
        0.0
    );
}

/// `proxy/examples/embed_landing.rs`, the README's recipe for adding clickstamp to an
/// existing Pingora proxy, run as a user would run it: its landing path gets the click
/// cookie, a recorded click and exactly the offer links stamped; the rest of the site
/// is proxied as before.
#[test]
fn the_embedding_example_stamps_landing_pages_in_someone_elses_proxy() {
    use clickstamp_e2e::instance::{embed_landing_example, free_addr, write_config};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let (page, _, _) = landing_page(PLACEHOLDER);
    let origin = OriginServer::start(move |seen| {
        if seen.target.starts_with("/lp") {
            Reply::ok("text/html; charset=utf-8", page.clone())
        } else {
            Reply::ok(
                "text/html",
                "<a href=\"https://net.example/offer?a=1\">not a landing page</a>",
            )
        }
    });
    let dir = TempDir::new("embed");
    // The example reads the campaigns, offers, store and secrets from a clickstamp
    // config; it listens and proxies where its own arguments say.
    let config = dir.0.join("clickstamp.toml");
    write_config(
        &config,
        free_addr(),
        free_addr(),
        "",
        "",
        &body("http://127.0.0.1:9", ""),
    );
    let listen = free_addr();
    let log_path = dir.0.join("embed.log");
    let mut proxy = KillOnDrop(
        Command::new(embed_landing_example())
            .arg(&config)
            .arg(listen.to_string())
            .arg(origin.addr.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("spawn the embed_landing example"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(listen, "GET", "/ready", &[], b"").is_err() {
        if let Ok(Some(status)) = proxy.0.try_wait() {
            panic!("the example exited ({status}); log:\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "the example never listened; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let resp = request(listen, "GET", "/lp/?tsid=E1", &[], b"").unwrap();
    assert_eq!(resp.status, 200, "{}", log());
    let cid = cookie_click(&resp);
    let (_, expected, changed) = landing_page(&cid);
    let got = String::from_utf8(resp.body.clone()).expect("utf-8 body");
    assert_same("through the example", &got, &expected);
    assert_eq!(got.matches(&cid).count(), changed);
    assert!(resp.header("content-length").is_none());

    let other = request(listen, "GET", "/about", &[], b"").unwrap();
    assert_eq!(other.status, 200);
    assert!(
        other.cookie().is_none(),
        "no click outside the landing path"
    );
    assert_eq!(
        other.text(),
        "<a href=\"https://net.example/offer?a=1\">not a landing page</a>",
        "the rest of the site passes through untouched"
    );
    let targets: Vec<String> = origin
        .seen()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t != "/ready")
        .collect();
    assert_eq!(
        targets,
        ["/lp/?tsid=E1", "/about"],
        "the origin sees the paths as sent"
    );

    drop(proxy);
    let db = rusqlite::Connection::open(dir.0.join("data/clickstamp.sqlite")).unwrap();
    let stored: (String, String) = db
        .query_row(
            "SELECT click_id, source_click_id FROM clicks WHERE campaign_id = 'lp'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the landing click is in the store");
    assert_eq!(stored, (cid, "E1".to_string()));
}

/// Latin-1 text as windows-1252 bytes (every char of `s` is below U+0100).
fn windows_1252(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("a Latin-1 char"))
        .collect()
}

/// A page in windows-1252 (é is the single byte 0xE9, not valid UTF-8): its bytes
/// survive, and its offer link's non-ASCII query keeps its encoding, whether the
/// charset comes in `Content-Type` or only in a `<meta charset>`.
#[test]
fn a_windows_1252_page_keeps_its_bytes_whether_the_charset_is_in_the_header_or_a_meta_tag() {
    let page = |meta: &str| {
        format!(
            "<html><head>{meta}<title>Café crème</title></head><body><p>Déjà vu, à bientôt.</p>\
             <a href=\"https://net.example/offer?a=1&amp;t=café\">Voilà</a> \
             <a href=\"https://elsewhere.example/crème\">autre</a></body></html>"
        )
    };
    let cases = [
        (
            "charset in Content-Type",
            "text/html; charset=windows-1252",
            page(""),
        ),
        (
            "charset in a meta tag only",
            "text/html",
            page("<meta charset=\"windows-1252\">"),
        ),
    ];
    for (name, content_type, text) in cases {
        let served = windows_1252(&text);
        let origin = OriginServer::start(move |_| Reply::ok(content_type, served.clone()));
        let inst = Instance::start(&body(&format!("http://{}", origin.addr), ""));
        let resp = inst.get("/lp/", &[]);
        assert_eq!(resp.status, 200, "{name}: {}", inst.log());
        let cid = cookie_click(&resp);
        let expected = windows_1252(&text.replace("t=café\"", &format!("t=café&amp;s2={cid}\"")));
        assert_eq!(
            resp.body,
            expected,
            "{name}: got {:?}",
            String::from_utf8_lossy(&resp.body)
        );
    }
}
