//! The proxy hop under hostile input: request paths that try to leave the upstream's
//! base, forged forwarding headers, an origin's hop-by-hop headers, an HTTP/1.0 origin
//! and HTTP/1.0 visitors, clients that trickle their requests, and connection floods.

use clickstamp_e2e::browser::Browser;
use clickstamp_e2e::origin::{OriginServer, Reply};
use clickstamp_e2e::{request, Instance};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE: &str = "<!doctype html><html><head><title>lp</title></head><body>\
<a id=cta href=\"https://net.example/offer?a=1\">Go</a></body></html>";

/// A CAKE offer on net.example/offer and campaigns proxied to upstreams, each
/// `(id, path, upstream, extra origin keys)`.
fn body(campaigns: &[(&str, &str, String, &str)]) -> String {
    let mut out = String::from(
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
"#,
    );
    for (id, path, upstream, extra) in campaigns {
        out.push_str(&format!(
            r#"
[[campaigns]]
id = "{id}"
path = "{path}"
traffic_source = "src"
offers = [{{ offer = "demo" }}]
origin = {{ upstream = "{upstream}"{extra} }}
"#
        ));
    }
    out
}

fn clicks(inst: &Instance) -> i64 {
    inst.count("SELECT count(*) FROM clicks", &[])
}

#[test]
fn proxied_paths_never_leave_the_upstream_base() {
    let origin = OriginServer::start(|seen| {
        if seen.target.starts_with("/base/") {
            Reply::ok("text/html", PAGE)
        } else {
            // What a real origin would serve outside the campaign's base.
            Reply::ok("text/plain", "OUTSIDE THE BASE")
        }
    });
    let upstream = format!("http://{}/base", origin.addr);
    let inst = Instance::start(&body(&[("lp", "/lp", upstream, "")]));
    let hostile = [
        "/lp/../outside.html",
        "/lp/%2e%2e/outside.html",
        "/lp/%2E%2E/outside.html",
        "/lp/..%2foutside.html",
        "/lp/..%2Foutside.html",
        "/lp/x/../../outside.html",
        "/lp/x/%2e%2e/%2e%2e/outside.html",
        "/lp/..\\outside.html",
        "/lp/%5c..%5coutside.html",
        "/lp/../../../etc/passwd",
        "/lp/a%00.html",
    ];
    for target in hostile {
        let r = request(inst.main, "GET", target, &[], b"").unwrap();
        assert_eq!(r.status, 404, "{target}: {}", r.text());
        assert!(!r.text().contains("OUTSIDE"), "{target}");
    }
    assert!(
        origin.seen().is_empty(),
        "nothing reached the origin: {:?}",
        origin.seen()
    );
    assert_eq!(clicks(&inst), 0, "a refused path records no click");

    // Dot segments that stay inside the campaign resolve before the request leaves.
    let r = request(inst.main, "GET", "/lp/a/../page.html?x=1", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let targets: Vec<String> = origin.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/base/page.html?x=1"]);
    assert_eq!(clicks(&inst), 1);
    let refused = inst
        .metric("clickstamp_requests_total{outcome=\"path_escape\",route=\"not_found\"}")
        + inst.metric("clickstamp_requests_total{outcome=\"path_separator\",route=\"not_found\"}");
    assert!(
        refused >= 6.0,
        "refusals are counted ({refused}): {}",
        clickstamp_e2e::get(inst.admin, "/metrics", &[]).text()
    );
}

#[test]
fn a_campaign_on_the_root_path_cannot_climb_out_of_its_base() {
    let origin = OriginServer::start(|_| Reply::ok("text/plain", "served"));
    let upstream = format!("http://{}/base", origin.addr);
    let inst = Instance::start(&body(&[("root", "/", upstream, "")]));
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/a/../../secret.txt",
    ] {
        let r = request(inst.main, "GET", target, &[], b"").unwrap();
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.json()["error"], "path_escape", "{target}");
    }
    let reached: Vec<String> = origin
        .seen()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t != "/base/__ready") // the harness's readiness probe
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
}

/// An origin that answers every request and keeps its request headers.
fn echo_origin() -> OriginServer {
    OriginServer::start(|_| Reply::ok("text/html", PAGE))
}

fn forwarded(
    origin: &OriginServer,
) -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    let seen = origin.seen();
    let last = seen.last().expect("the origin was asked");
    let h = |n: &str| last.header(n).map(str::to_owned);
    (
        h("x-forwarded-for"),
        h("x-forwarded-proto"),
        h("x-forwarded-host"),
        h("forwarded"),
    )
}

fn last_click_ip(inst: &Instance) -> Option<String> {
    inst.row("SELECT ip FROM clicks ORDER BY click_id DESC LIMIT 1", &[])
        .get_opt_str(0)
        .map(str::to_string)
}

#[test]
fn the_origin_learns_who_a_direct_visitor_is_and_never_a_forged_address() {
    let origin = echo_origin();
    let upstream = format!("http://{}", origin.addr);
    let inst = Instance::start(&body(&[("lp", "/lp", upstream, "")]));
    let r = request(
        inst.main,
        "GET",
        "/lp/?tsid=a",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let (xff, proto, host, rfc) = forwarded(&origin);
    assert_eq!(xff.as_deref(), Some("127.0.0.1"));
    assert_eq!(proto.as_deref(), Some("http"));
    assert_eq!(
        host,
        Some(inst.main.to_string()),
        "the Host the visitor asked for"
    );
    assert_eq!(rfc, None, "the forged Forwarded header is dropped");
    assert_eq!(origin.seen()[0].header("x-real-ip"), None);
    assert_eq!(last_click_ip(&inst).as_deref(), Some("127.0.0.1"));
}

#[test]
fn behind_a_trusted_proxy_the_chain_is_kept_and_extended() {
    let origin = echo_origin();
    let upstream = format!("http://{}", origin.addr);
    let inst = Instance::start_with_server(
        &body(&[("lp", "/lp", upstream, ", forwarded_headers = \"both\"")]),
        "client_ip_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
    );
    let r = request(
        inst.main,
        "GET",
        "/lp/?tsid=a",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "for=203.0.113.9;proto=https"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let (xff, proto, _, rfc) = forwarded(&origin);
    assert_eq!(xff.as_deref(), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(
        proto.as_deref(),
        Some("https"),
        "the proxy's word on the scheme"
    );
    assert_eq!(
        rfc,
        Some(format!(
            "for=203.0.113.9;proto=https, for=127.0.0.1;host=\"{}\";proto=http",
            inst.main
        ))
    );
    assert_eq!(
        last_click_ip(&inst).as_deref(),
        Some("203.0.113.9"),
        "the same trust rule names the visitor in the click row"
    );
}

#[test]
fn a_peer_outside_trusted_proxies_cannot_set_the_visitors_address() {
    let origin = echo_origin();
    let upstream = format!("http://{}", origin.addr);
    let inst = Instance::start_with_server(
        &body(&[("lp", "/lp", upstream, "")]),
        "client_ip_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
    );
    let r = request(
        inst.main,
        "GET",
        "/lp/?tsid=a",
        &[("X-Forwarded-For", "6.6.6.6")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(forwarded(&origin).0.as_deref(), Some("127.0.0.1"));
    assert_eq!(last_click_ip(&inst).as_deref(), Some("127.0.0.1"));
}

#[test]
fn origin_hop_by_hop_headers_never_reach_the_visitor() {
    let hop = |r: Reply| {
        r.header("Connection", "keep-alive, X-Hop")
            .header("X-Hop", "origin-internal")
            .header("Keep-Alive", "timeout=5")
            .header("Proxy-Connection", "keep-alive")
            .header("X-Kept", "yes")
    };
    let origin = OriginServer::start(move |seen| {
        if seen.target.ends_with(".css") {
            hop(Reply::ok("text/css", "a{}"))
        } else if seen.target.contains("missing") {
            let mut r = hop(Reply::ok("text/html", "<p>gone</p>"));
            r.status = 404;
            r
        } else {
            hop(Reply::ok("text/html", PAGE))
        }
    });
    let upstream = format!("http://{}", origin.addr);
    let inst = Instance::start(&body(&[("lp", "/lp", upstream, "")]));
    for (target, expect_status, rewritten) in [
        ("/lp/page.html?tsid=a", 200, true),
        ("/lp/style.css", 200, false),
        ("/lp/missing.html", 404, false),
    ] {
        let r = request(inst.main, "GET", target, &[], b"").unwrap();
        assert_eq!(r.status, expect_status, "{target}");
        assert_eq!(r.header("x-hop"), None, "{target}: {:?}", r.headers);
        assert_eq!(r.header("keep-alive"), None, "{target}");
        assert_eq!(r.header("proxy-connection"), None, "{target}");
        assert_eq!(r.header("x-kept"), Some("yes"), "{target}");
        let connection = r.header("connection").unwrap_or("");
        assert!(
            !connection.to_ascii_lowercase().contains("x-hop"),
            "{target}: {connection}"
        );
        assert_eq!(r.text().contains("s2="), rewritten, "{target}");
    }
}

/// A raw TCP origin for what the threaded test origin cannot speak (HTTP/1.0, an
/// upgrade): each connection's request header is read, then `answer` has the
/// connection. Stops accepting when dropped.
struct RawOrigin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl RawOrigin {
    fn start(answer: fn(TcpStream)) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                std::thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    answer(s);
                });
            }
        });
        RawOrigin { addr, stop }
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A minimal HTTP/1.0 origin: answers with `PAGE` as `text/html`, no Content-Length,
/// and closes the connection to end the body.
fn http10_origin() -> RawOrigin {
    RawOrigin::start(|mut s| {
        let _ = s.write_all(
            format!("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n{PAGE}").as_bytes(),
        );
    })
}

/// Send a raw request and read the whole answer until the server closes.
fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn an_http10_origins_page_is_framed_for_each_visitor() {
    let origin = http10_origin();
    let upstream = format!("http://{}", origin.addr);
    let inst = Instance::start(&body(&[("lp", "/lp", upstream, "")]));

    // An HTTP/1.1 visitor: an HTTP/1.1 answer (chunked is then fine), the page whole.
    let answer = raw_exchange(
        inst.main,
        &format!(
            "GET /lp/?tsid=a HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            inst.main
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("s2="), "{answer}");

    // An HTTP/1.0 visitor: no chunked framing, the body is exactly the stamped page,
    // ended by closing the connection.
    let answer = raw_exchange(
        inst.main,
        &format!("GET /lp/?tsid=a HTTP/1.0\r\nHost: {}\r\n\r\n", inst.main),
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a header and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "no chunked framing for HTTP/1.0: {head}"
    );
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(body.ends_with("</html>"), "{body}");
    assert!(
        body.contains("href=\"https://net.example/offer?a=1&s2="),
        "{body}"
    );

    // A browser finishes loading the page.
    let Some(mut browser) = Browser::start(&[]) else {
        return;
    };
    browser.navigate(&format!("http://{}/lp/?tsid=b", inst.main));
    assert!(
        browser.wait_until(
            "document.readyState === 'complete' && \
             document.getElementById('cta') !== null && \
             document.getElementById('cta').href.includes('s2=')",
            Duration::from_secs(15)
        ),
        "the page from an HTTP/1.0 origin finished loading in Chromium"
    );
}

/// Whether the server closed `stream` within `within` (reads until EOF or error).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

const SLOW: &str = "header_timeout = \"1s\"\nbody_timeout = \"2s\"\nmax_connections = 40";

fn demo_instance(server_extra: &str) -> Instance {
    Instance::start_with_server(&clickstamp_e2e::instance::demo_body(), server_extra)
}

#[test]
fn a_client_trickling_its_header_is_cut_at_the_deadline() {
    let inst = demo_instance(SLOW);
    let mut s = TcpStream::connect(inst.main).unwrap();
    s.write_all(b"GET /demo HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    // One header byte every 200 ms: each read is quick, the whole header never ends.
    while started.elapsed() < Duration::from_secs(5) {
        if s.write_all(b"X").is_err() || closed_within(&mut s, Duration::from_millis(200)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "the trickling connection was closed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        inst.metric_at_least(
            "clickstamp_slow_clients_closed_total{listener=\"main\",phase=\"header\"}",
            1.0,
            Duration::from_secs(5)
        ) >= 1.0
    );
    // A normal visitor is served meanwhile.
    assert_eq!(inst.get("/demo?tsid=a", &[]).status, 200);
}

#[test]
fn a_client_trickling_its_body_is_cut_at_the_deadline() {
    let inst = demo_instance(SLOW);
    let mut s = TcpStream::connect(inst.main).unwrap();
    s.write_all(
        b"POST /postback/cake HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(8) {
        if s.write_all(b"a").is_err() || closed_within(&mut s, Duration::from_millis(250)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "the trickling body was cut");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_connection_flood_is_refused_while_the_admin_listener_answers() {
    let inst = demo_instance(SLOW);
    assert!(
        inst.log().contains("open-file limit") || inst.log().contains("open_files"),
        "the file limit is logged at start: {}",
        inst.log()
    );
    // Hold the main listener's 40 slots with idle connections, then knock more.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..40 {
        held.push(TcpStream::connect(inst.main).unwrap());
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut refused = 0;
    for _ in 0..10 {
        let mut s = TcpStream::connect(inst.main).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 503") && answer.contains("too_many_connections") {
            refused += 1;
        }
    }
    assert_eq!(refused, 10, "every connection over the cap is told why");
    let health = request(inst.admin, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(health.status, 200, "the admin listener keeps answering");
    assert!(inst.metric("clickstamp_connections_refused_total{listener=\"main\"}") >= 10.0);
    // The idle connections hit their header deadline, and visitors get in again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match request(inst.main, "GET", "/demo?tsid=a", &[], b"") {
            Ok(r) if r.status == 200 => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!(
                "the listener did not recover: {:?}",
                other.map(|r| r.status)
            ),
        }
    }
    drop(held);
}

#[test]
fn a_large_lander_file_streams_and_head_and_304_read_nothing() {
    const SIZE: usize = 48 << 20;
    let site = clickstamp_e2e::TempDir::new("big-lander");
    let video: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.0.join("clip.mp4"), &video).unwrap();
    let body = clickstamp_e2e::instance::demo_body().replace(
        &format!(
            "origin = {{ landers = \"{}\" }}",
            clickstamp_e2e::instance::workspace_root()
                .join("config/demo/landers")
                .display()
        ),
        &format!("origin = {{ landers = \"{}\" }}", site.0.display()),
    );
    let inst = Instance::start(&body);

    let head = request(inst.main, "HEAD", "/demo/clip.mp4", &[], b"").unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(head.header("content-type"), Some("video/mp4"));
    let etag = head.header("etag").unwrap().to_string();
    let cached = request(
        inst.main,
        "GET",
        "/demo/clip.mp4",
        &[("If-None-Match", &etag)],
        b"",
    )
    .unwrap();
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    // Four visitors start the file and stop reading: the server holds what the socket
    // buffers take plus a chunk each, not four copies of the file.
    let before = inst.rss_kib().expect("the server's memory is readable");
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(inst.main).unwrap();
        s.write_all(b"GET /demo/clip.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 1024];
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(s.read(&mut first).unwrap() > 0);
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = inst.rss_kib().unwrap();
    let grown_mib = during.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "serving a 48 MiB file to 4 stalled visitors grew the server by {grown_mib} MiB"
    );
    drop(stalled);

    // And the whole file arrives intact.
    let full = request(inst.main, "GET", "/demo/clip.mp4", &[], b"").unwrap();
    assert_eq!(full.status, 200);
    assert!(full.body == video, "the streamed file is byte-identical");
}

#[test]
fn request_smuggling_shapes_never_reach_the_origin() {
    let origin = echo_origin();
    let upstream = format!("http://{}", origin.addr);
    let inst = Instance::start(&body(&[("lp", "/lp", upstream, "")]));
    let smuggled = "GET /lp/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let shapes = [
        format!(
            "POST /lp/a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        format!(
            "POST /lp/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        format!(
            "POST /lp/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\nabc{smuggled}"
        ),
        format!("POST /lp/a HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc{smuggled}"),
    ];
    for shape in &shapes {
        let answer = raw_exchange(inst.main, shape);
        assert!(
            !answer.starts_with("HTTP/1.1 200") || !answer[12..].contains("HTTP/1.1 200"),
            "two answers for one request: {answer}"
        );
    }
    let reached: Vec<String> = origin
        .seen()
        .into_iter()
        .map(|s| s.target)
        .filter(|t| t.contains("smuggled"))
        .collect();
    assert!(
        reached.is_empty(),
        "a smuggled request reached the origin: {reached:?}"
    );
}

/// An origin that answers every request with `101 Switching Protocols` and then
/// echoes the pings it receives (a WebSocket server, minus the framing).
fn upgrading_origin() -> RawOrigin {
    RawOrigin::start(|mut s| {
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        // Echo pings; take anything else in silence (a client's message that needs no
        // answer).
        let mut buf = [0u8; 256];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                return;
            }
            if buf[..n].starts_with(b"ping") && s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

#[test]
fn an_upgraded_connection_is_not_timed_as_an_http_request() {
    let origin = upgrading_origin();
    let inst = Instance::start_with_server(
        &body(&[("lp", "/lp", format!("http://{}", origin.addr), "")]),
        "header_timeout = \"1s\"\nbody_timeout = \"1s\"",
    );
    let mut s = TcpStream::connect(inst.main).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /lp/socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Messages without any blank line, with pauses longer than both deadlines between
    // them: an HTTP/1 header deadline applied to the upgraded stream would cut it while
    // it waits for the second one.
    for message in [b"ping-1", b"ping-2"] {
        // A message the server does not answer, then a pause past the deadlines.
        s.write_all(b"note").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        s.write_all(message).unwrap();
        let mut echo = [0u8; 6];
        s.read_exact(&mut echo)
            .expect("the upgraded connection is still open");
        assert_eq!(&echo, message);
    }
}
