//! HTTPS on the main listener: certificates chosen by SNI, plain HTTP still served.

use clickstamp_e2e::instance::demo_body;
use clickstamp_e2e::{require_program, Instance, TempDir};
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

fn curl(host: &str, port: u16, ca: &Path) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-s",
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
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
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
    let (ok, _) = curl("lp2.test", tls_port, &ca1);
    assert!(!ok, "lp2 is not served lp1's certificate");
    assert_eq!(
        inst.get("/demo", &[]).status,
        200,
        "plain HTTP still answers"
    );
    let n: i64 = inst
        .db()
        .query_row(
            "SELECT count(*) FROM clicks WHERE source_click_id = 'TLS'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2, "clicks over https are recorded");
}
