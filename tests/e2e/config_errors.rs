//! `clickstamp check` and `serve` on broken configs: every problem at once, each naming
//! the key and the fix.

use clickstamp_e2e::instance::demo_body;
use clickstamp_e2e::{binary, TempDir};
use std::process::Command;

fn check(config: &str) -> (bool, String) {
    let dir = TempDir::new("check");
    let path = dir.0.join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

const SECRETS: &str =
    "[secrets]\nclick_id_key = \"0123456789abcdef0123\"\nadmin_token = \"0123456789abcdef0123\"\n";

#[test]
fn the_demo_config_passes() {
    let (ok, out) = check(&format!("{SECRETS}{}", demo_body()));
    assert!(ok, "{out}");
    let demo = clickstamp_e2e::instance::workspace_root().join("config/demo.toml");
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(demo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_class_of_error_is_reported_at_once_with_key_and_fix() {
    let config = r#"
[secrets]
admin_token = "short"

[[networks]]
id = "mystery"

[[networks]]
id = "cake"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "o1"
url = "ftp://network.example/offer"
network = "cake"

[[offers]]
id = "o1"
url = "https://network.example/offer"
network = "nowhere"

[[campaigns]]
id = "c1"
path = "/c1"
traffic_source = "src"
offers = [{ offer = "o1", weight = 0 }]
origin = { landers = "does/not/exist" }
attribution_window = "forever"
"#;
    let (ok, out) = check(config);
    assert!(!ok, "a broken config must fail the check");
    let expected = [
        ("secrets.click_id_key", "missing secret"),
        ("secrets.admin_token", "characters long"),
        ("networks[0].kind", "unknown network kind \"mystery\""),
        ("offers[0].url", "not an absolute http(s) URL"),
        ("offers[1].id", "duplicate offer id \"o1\""),
        ("offers[1].network", "unknown network \"nowhere\""),
        ("campaigns[0].offers", "weights sum to 0"),
        ("campaigns[0].origin.landers", "is not a directory"),
        ("campaigns[0].attribution_window", "not a duration"),
    ];
    for (key, message) in expected {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no error for {key} in:\n{out}"));
        assert!(
            line.contains(message),
            "{key}: expected {message:?} in {line:?}"
        );
        assert!(line.contains("(fix: "), "{key}: no fix in {line:?}");
    }
}

#[test]
fn syntax_and_unknown_keys_name_the_line() {
    let (ok, out) = check("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
    assert!(!ok);
    assert!(out.contains("line 3") && out.contains("lisen"), "{out}");
}

#[test]
fn serve_refuses_an_invalid_config() {
    let dir = TempDir::new("serve-refuses");
    let path = dir.0.join("c.toml");
    std::fs::write(&path, "[secrets]\n").unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to serve"));
}

#[test]
fn check_lints_traffic_source_templates_and_networks() {
    let config = format!(
        r#"{SECRETS}
[[networks]]
id = "custom-net"
click_id_param = "sub9"
macro_style = "not a style"

[[traffic_sources]]
id = "propeller"
kind = "propellerads"
postback_url = "http://ad.propellerads.com/conversion.php?aid=1&visitor_id={{clickid}}&payout=${{PAYOUT}}"

[[traffic_sources]]
id = "exo"
kind = "exoclick"
postback_url = "https://s.exoclick.com/tag.php?goal=abc&tag={{conversions_tracking}}&x={{nonsense_token}}"

[[traffic_sources]]
id = "mystery"
kind = "adnetwork-from-mars"
"#
    );
    let (ok, out) = check(&config);
    assert!(!ok);
    let line = |key: &str| {
        out.lines()
            .find(|l| l.contains(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no error for {key}:\n{out}"))
            .to_string()
    };
    let propeller = line("traffic_sources[0].postback_url");
    assert!(
        propeller.contains("{clickid}"),
        "names the foreign token: {propeller}"
    );
    let exo = line("traffic_sources[1].postback_url");
    assert!(
        exo.contains("nonsense_token"),
        "names the unknown token: {exo}"
    );
    assert!(line("traffic_sources[2].kind").contains("adnetwork-from-mars"));
    assert!(line("networks[0].macro_style").contains("not a style"));
}

#[test]
fn postback_url_prints_the_networks_own_macros_and_the_secret() {
    let dir = TempDir::new("postback-url");
    let path = dir.0.join("c.toml");
    let config = format!(
        "{SECRETS}\n[server]\npublic_url = \"https://trk.example\"\n\n[[networks]]\nid = \"cake\"\nsecret = \"s3cret-value-123\"\n\n[[networks]]\nid = \"sas\"\nkind = \"shareasale\"\n"
    );
    std::fs::write(&path, config).unwrap();
    let run = |net: &str| {
        let out = Command::new(binary())
            .args(["postback-url", "--config"])
            .arg(&path)
            .args(["--network", net])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run("cake"), "https://trk.example/postback/cake?cid=#s2#&payout=#price#&txid=#tid#&secret=s3cret-value-123");
    assert_eq!(
        run("sas"),
        "https://trk.example/postback/sas?cid=!!afftrack!!&payout=!!commission!!&txid=!!transID!!"
    );
}
