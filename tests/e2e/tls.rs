//! TLS and addresses: HTTPS on the main listener (certificates chosen by SNI, plain HTTP
//! still served), the client address behind a trusted load balancer, and https origins.

use clickstamp_e2e::instance::demo_body;
use clickstamp_e2e::{require_program, Instance, KillOnDrop, TempDir};
use std::path::Path;
use std::process::Command;

fn self_signed(dir: &Path, host: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            &format!("/CN={host}"),
            "-addext",
            &format!("subjectAltName=DNS:{host}"),
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{host}.key")))
        .arg("-out")
        .arg(dir.join(format!("{host}.pem")))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "openssl could not make a test certificate"
    );
}

/// curl's exit code for a certificate it cannot verify (CURLE_PEER_FAILED_VERIFICATION).
const CURL_BAD_CERTIFICATE: i32 = 60;

/// `GET /demo` over HTTPS to `host` on `port`, trusting only `ca`: curl's exit code and
/// what it printed (the response, or its error).
fn curl_code(host: &str, port: u16, ca: &Path) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--max-time",
            "10",
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            "--cacert",
        ])
        .arg(ca)
        .arg(format!("https://{host}:{port}/demo?tsid=TLS"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn curl(host: &str, port: u16, ca: &Path) -> (bool, String) {
    let (code, out) = curl_code(host, port, ca);
    (code == Some(0), out)
}

/// The subject of the certificate the server presents for `servername` (`None`: no
/// SNI at all), read with `openssl s_client`.
fn presented_subject(port: u16, servername: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match servername {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no certificate presented: {text}"))
        .to_string()
}

#[test]
fn https_serves_each_host_its_own_certificate_and_plain_http_stays() {
    if require_program("openssl").is_none() || require_program("curl").is_none() {
        return;
    }
    let certs = TempDir::new("tls-certs");
    for host in ["lp1.test", "lp2.test"] {
        self_signed(&certs.0, host);
    }
    let tls_port = clickstamp_e2e::instance::free_addr().port();
    let body = format!(
        "{}\n[tls]\nlisten = \"127.0.0.1:{tls_port}\"\n[[tls.certificates]]\nhosts = [\"lp1.test\"]\ncert = \"{d}/lp1.test.pem\"\nkey = \"{d}/lp1.test.key\"\n[[tls.certificates]]\nhosts = [\"lp2.test\"]\ncert = \"{d}/lp2.test.pem\"\nkey = \"{d}/lp2.test.key\"\n",
        demo_body(),
        d = certs.0.display()
    );
    let inst = Instance::start(&body);
    let ca1 = certs.0.join("lp1.test.pem");
    let ca2 = certs.0.join("lp2.test.pem");
    let (ok, out) = curl("lp1.test", tls_port, &ca1);
    assert!(ok, "lp1 over https: {out}");
    assert!(
        out.starts_with("HTTP/1.1 200")
            && out
                .to_ascii_lowercase()
                .contains("set-cookie: cs_demo-campaign="),
        "{out}"
    );
    let (ok, out) = curl("lp2.test", tls_port, &ca2);
    assert!(ok, "lp2 gets its own certificate: {out}");
    let (code, out) = curl_code("lp2.test", tls_port, &ca1);
    assert_eq!(
        code,
        Some(CURL_BAD_CERTIFICATE),
        "lp2 is served its own certificate, which lp1's CA does not vouch for: {out}"
    );
    assert!(out.contains("SSL certificate problem"), "{out}");
    // A client without SNI, or naming a host no certificate lists, gets the first one.
    assert!(presented_subject(tls_port, None).contains("CN = lp1.test"));
    assert!(presented_subject(tls_port, Some("unknown.test")).contains("CN = lp1.test"));
    assert!(presented_subject(tls_port, Some("lp2.test")).contains("CN = lp2.test"));
    assert_eq!(
        inst.get("/demo", &[]).status,
        200,
        "plain HTTP still answers"
    );
    let n: i64 = inst.value(
        "SELECT count(*) FROM clicks WHERE source_click_id = 'TLS'",
        &[],
    );
    assert_eq!(n, 2, "clicks over https are recorded");
}

/// The click's stored address: the one named by `source_click_id`.
fn click_ip(inst: &Instance, source_click_id: &str) -> String {
    inst.value(
        "SELECT ip FROM clicks WHERE source_click_id = $1",
        &[&source_click_id],
    )
}

#[test]
fn behind_a_load_balancer_the_client_address_comes_from_the_trusted_header_only() {
    let behind_lb =
        Instance::start_with_server(&demo_body(), "client_ip_header = \"X-Forwarded-For\"");
    let resp = behind_lb.get(
        "/demo?tsid=LB",
        &[("X-Forwarded-For", "198.51.100.7, 203.0.113.9")],
    );
    assert_eq!(resp.status, 200, "{}", behind_lb.log());
    assert_eq!(
        click_ip(&behind_lb, "LB"),
        "203.0.113.9",
        "the balancer's hop (the last one) is the client"
    );

    // Without the setting the header is anyone's to forge: the TCP peer counts.
    let direct = Instance::start(&demo_body());
    direct.get("/demo?tsid=DIRECT", &[("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(click_ip(&direct, "DIRECT"), "127.0.0.1");
}

#[test]
fn an_https_origin_is_proxied_and_its_certificate_checked_unless_verify_tls_is_off() {
    if require_program("openssl").is_none() {
        return;
    }
    let dir = TempDir::new("tls-origin");
    self_signed(&dir.0, "origin.test");
    let www = dir.0.join("www");
    std::fs::create_dir(&www).unwrap();
    // s_server -WWW reads the whole target as a file name, so the test asks without a
    // query.
    let page = "<html><body><a href=\"https://net.example/offer?a=1\">offer</a> \
                <a href=\"https://elsewhere.example/\">other</a></body></html>";
    std::fs::write(www.join("page.html"), page).unwrap();
    let origin = clickstamp_e2e::instance::free_addr();
    // `openssl s_server -WWW`: a real TLS origin serving the files of a directory.
    let _server = KillOnDrop(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(origin.to_string())
            .arg("-cert")
            .arg(dir.0.join("origin.test.pem"))
            .arg("-key")
            .arg(dir.0.join("origin.test.key"))
            .current_dir(&www)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(origin).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let campaign = |id: &str, origin_table: String| {
        format!(
            "[[campaigns]]\nid = \"{id}\"\npath = \"/{id}\"\ntraffic_source = \"src\"\n\
             offers = [{{ offer = \"demo\" }}]\norigin = {{ {origin_table} }}\n"
        )
    };
    let body = format!(
        "[[networks]]\nid = \"cake\"\n\n[[traffic_sources]]\nid = \"src\"\nclick_id_params = [\"tsid\"]\n\n\
         [[offers]]\nid = \"demo\"\nurl = \"https://net.example/offer?a=1\"\nnetwork = \"cake\"\n\n{}\n{}",
        campaign(
            "tolerant",
            format!("upstream = \"https://{origin}\", verify_tls = false")
        ),
        campaign("strict", format!("upstream = \"https://{origin}\"")),
    );
    let inst = Instance::start(&body);

    let resp = inst.get("/tolerant/page.html", &[]);
    assert_eq!(resp.status, 200, "{}", inst.log());
    let cid = resp
        .cookie()
        .expect("a click cookie")
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    assert_eq!(
        resp.text(),
        page.replace("offer?a=1\"", &format!("offer?a=1&s2={cid}\"")),
        "the page fetched over https has its offer link stamped and nothing else changed"
    );

    // verify_tls defaults to true: a certificate nobody vouches for is refused, the
    // visitor gets the 502 page, and the click is still recorded.
    let refused = inst.get("/strict/page.html", &[]);
    assert_eq!(refused.status, 502, "{}", refused.text());
    let n: i64 = inst.value(
        "SELECT count(*) FROM clicks WHERE campaign_id IN ('tolerant', 'strict')",
        &[],
    );
    assert_eq!(n, 2);
}
