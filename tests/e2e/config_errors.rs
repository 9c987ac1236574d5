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

#[test]
fn campaign_url_is_the_landing_url_with_the_sources_own_macros() {
    let dir = TempDir::new("campaign-url");
    let landers = dir.0.join("landers");
    std::fs::create_dir_all(&landers).unwrap();
    std::fs::write(landers.join("index.html"), "<p>hi</p>").unwrap();
    let path = dir.0.join("c.toml");
    let config = format!(
        r#"{SECRETS}
[server]
public_url = "https://trk.example/"

[[networks]]
id = "cake"

[[traffic_sources]]
id = "propeller"
kind = "propellerads"

[[traffic_sources]]
id = "own"
click_id_params = ["tsid"]

[[offers]]
id = "o1"
url = "https://network.example/offer"
network = "cake"

[[campaigns]]
id = "summer"
path = "/summer"
traffic_source = "propeller"
offers = [{{ offer = "o1", weight = 1 }}]
origin = {{ landers = "{landers}" }}

[[campaigns]]
id = "hosted"
host = "lp.example"
path = "/"
traffic_source = "own"
offers = [{{ offer = "o1", weight = 1 }}]
origin = {{ landers = "{landers}" }}
"#,
        landers = landers.display()
    );
    std::fs::write(&path, config).unwrap();
    let run = |campaign: &str| {
        let out = Command::new(binary())
            .args(["campaign-url", "--config"])
            .arg(&path)
            .args(["--campaign", campaign])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, url, err) = run("summer");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        url,
        "https://trk.example/summer?subid=${SUBID}&zoneid=${ZONEID}&campaignid=${CAMPAIGNID}"
    );
    let (code, url, err) = run("hosted");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(url, "https://lp.example/", "the campaign's own host");
    let (code, _, err) = run("winter");
    assert_ne!(code, Some(0));
    assert!(
        err.contains("no campaign with id \"winter\"") && err.contains("summer, hosted"),
        "names the campaigns there are: {err}"
    );
}

/// One broken config and what `check` must say about it.
struct Rule {
    /// Lines for `[server]`, `[store]` and `[secrets]`, other tables, and the body
    /// (networks, sources, offers, campaigns). Empty body: the demo's.
    server: &'static str,
    store: &'static str,
    secrets: &'static str,
    tables: &'static str,
    body: String,
    /// The key the problem is reported under, and a piece of its message.
    key: &'static str,
    says: &'static str,
}

fn rule(key: &'static str, says: &'static str) -> Rule {
    Rule {
        server: "",
        store: "",
        secrets: "click_id_key = \"0123456789abcdef0123\"\nadmin_token = \"0123456789abcdef0123\"",
        tables: "",
        body: String::new(),
        key,
        says,
    }
}

impl Rule {
    fn server(mut self, lines: &'static str) -> Rule {
        self.server = lines;
        self
    }
    fn store(mut self, lines: &'static str) -> Rule {
        self.store = lines;
        self
    }
    fn secrets(mut self, lines: &'static str) -> Rule {
        self.secrets = lines;
        self
    }
    fn tables(mut self, text: &'static str) -> Rule {
        self.tables = text;
        self
    }
    /// The demo's body with `extra` appended (its items come after the demo's: index 1).
    fn plus(mut self, extra: &str) -> Rule {
        self.body = format!("{}\n{extra}", demo_body());
        self
    }
    /// The demo's body with `from` replaced by `to`.
    fn edit(mut self, from: &str, to: &str) -> Rule {
        let demo = demo_body();
        assert!(demo.contains(from), "the demo body holds {from:?}");
        self.body = demo.replacen(from, to, 1);
        self
    }
    fn config(&self) -> String {
        let body = if self.body.is_empty() {
            demo_body()
        } else {
            self.body.clone()
        };
        format!(
            "[server]\n{}\n[store]\n{}\n[secrets]\n{}\n{}\n{body}",
            self.server, self.store, self.secrets, self.tables
        )
    }
}

const CAMPAIGN: &str = "[[campaigns]]\nid = \"c2\"\npath = \"/c2\"\ntraffic_source = \"demo-source\"\noffers = [{ offer = \"demo\" }]\n";

fn rules() -> Vec<Rule> {
    let upstream = "origin = { upstream = \"http://127.0.0.1:9\" }";
    vec![
        // [server]
        rule("server.listen", "is not an address:port").server("listen = \"nowhere\""),
        rule("server.admin_listen", "same address as the main listener")
            .server("listen = \"127.0.0.1:7001\"\nadmin_listen = \"127.0.0.1:7001\""),
        rule("server.threads", "0 worker threads").server("threads = 0"),
        rule("server.public_url", "is not an http(s) URL").server("public_url = \"ftp://x\""),
        rule("server.cookie_prefix", "not a valid cookie-name prefix").server("cookie_prefix = \"a b\""),
        rule("server.log_format", "unknown log format").server("log_format = \"xml\""),
        rule("server.trusted_proxies[0]", "prefix in")
            .server("client_ip_header = \"X-Forwarded-For\"\ntrusted_proxies = [\"10.0.0.0/99x\"]"),
        rule("server.trusted_proxies", "client_ip_header is not")
            .server("trusted_proxies = [\"10.0.0.0/8\"]"),
        rule("server.max_connections", "would refuse every visitor").server("max_connections = 0"),
        rule("server.admin_max_connections", "would refuse every scrape")
            .server("admin_max_connections = 0"),
        rule("server.header_timeout", "is not a duration").server("header_timeout = \"soon\""),
        rule("server.body_timeout", "is not a duration").server("body_timeout = \"0s\""),
        // [store]
        rule("store.durability", "unknown durability").store("durability = \"maybe\""),
        rule("store.sync", "unknown sync mode").store("sync = \"sometimes\""),
        rule("store.batch_max", "a batch of 0 writes").store("batch_max = 0"),
        rule("store.wal_max_bytes", "10 bytes").store("wal_max_bytes = 10"),
        rule("store.backend", "unknown backend").store("backend = \"mysql\""),
        rule("store.url", "only the postgres backend reads it")
            .store("url = \"postgres://u@127.0.0.1/db\""),
        rule("store.path", "keeps no store file")
            .store("backend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db\"\npath = \"x.sqlite\""),
        rule("store.url", "missing secret").store("backend = \"postgres\""),
        rule("store.url_env", "environment variable CS_E2E_NO_DB_URL is not set")
            .store("backend = \"postgres\"\nurl_env = \"CS_E2E_NO_DB_URL\""),
        rule("store.url", "not a PostgreSQL connection URL")
            .store("backend = \"postgres\"\nurl = \"postgres://u@127.0.0.1:notaport/db\""),
        rule("store.pool_size", "1 connections")
            .store("backend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db\"\npool_size = 1"),
        rule("store.statement_timeout", "is not a duration")
            .store("backend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db\"\nstatement_timeout = \"forever\""),
        rule("store.outbox_lease", "use at least")
            .store("backend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db\"\noutbox_lease = \"100ms\""),
        // [secrets]
        rule("secrets.click_id_key", "bytes long")
            .secrets("click_id_key = \"short\"\nadmin_token = \"0123456789abcdef0123\""),
        rule("secrets.admin_token", "characters long")
            .secrets("click_id_key = \"0123456789abcdef0123\"\nadmin_token = \"short\""),
        rule("secrets.click_id_key_env", "environment variable CS_E2E_NEVER_SET is not set").secrets(
            "click_id_key_env = \"CS_E2E_NEVER_SET\"\nadmin_token = \"0123456789abcdef0123\"",
        ),
        rule("secrets.click_id_key", "are set").secrets(
            "click_id_key = \"0123456789abcdef0123\"\nclick_id_key_env = \"HOME\"\nadmin_token = \"0123456789abcdef0123\"",
        ),
        rule("secrets.click_id_key", "missing secret")
            .secrets("admin_token = \"0123456789abcdef0123\""),
        // [postbacks], [pixel], [outbox]
        rule("postbacks.max_body_bytes", "0 bytes").tables("[postbacks]\nmax_body_bytes = 0\n"),
        rule("pixel.rate_limit_per_minute", "refuses every pixel")
            .tables("[pixel]\nrate_limit_per_minute = 0\n"),
        rule("pixel.allowed_origins[0]", "is not an origin")
            .tables("[pixel]\nallowed_origins = [\"shop.example/path\"]\n"),
        rule("outbox.concurrency", "0 deliveries in flight").tables("[outbox]\nconcurrency = 0\n"),
        rule("outbox.max_attempts", "0 attempts").tables("[outbox]\nmax_attempts = 0\n"),
        rule("outbox.timeout", "is not a duration").tables("[outbox]\ntimeout = \"later\"\n"),
        rule("outbox.max_age", "is not a duration").tables("[outbox]\nmax_age = \"10w\"\n"),
        // [tls]
        rule("tls.listen", "shares an address").server("listen = \"127.0.0.1:7002\"").tables(
            "[tls]\nlisten = \"127.0.0.1:7002\"\n[[tls.certificates]]\nhosts = [\"a.example\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        ),
        rule("tls.certificates", "no certificates").tables("[tls]\nlisten = \"127.0.0.1:7443\"\n"),
        rule("tls.certificates[0].key", "missing").tables(
            "[tls]\nlisten = \"127.0.0.1:7443\"\n[[tls.certificates]]\nhosts = [\"a.example\"]\ncert = \"c.pem\"\n",
        ),
        rule("tls.certificates[0].hosts", "no host names").tables(
            "[tls]\nlisten = \"127.0.0.1:7443\"\n[[tls.certificates]]\nhosts = []\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        ),
        rule("tls.certificates[1].hosts", "served by another certificate too").tables(
            "[tls]\nlisten = \"127.0.0.1:7443\"\n[[tls.certificates]]\nhosts = [\"a.example\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[[tls.certificates]]\nhosts = [\"a.example\"]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        ),
        // [[networks]]
        rule("networks[1].kind", "unknown network kind").plus("[[networks]]\nid = \"n2\"\nkind = \"nope\"\n"),
        rule("networks[1].id", "duplicate network id \"cake\"").plus("[[networks]]\nid = \"cake\"\n"),
        rule("networks[1].id", "is not 1-64 characters").plus("[[networks]]\nid = \"bad id!\"\nkind = \"cake\"\n"),
        rule("networks[1].macros.bogus", "unknown postback field").plus(
            "[[networks]]\nid = \"n2\"\nclick_id_param = \"sub\"\nmacro_style = \"{x}\"\nmacros = { click_id = \"sub\", bogus = \"b\" }\n",
        ),
        rule("networks[0].secret", "shorter than 8 characters")
            .edit("id = \"cake\"\n", "id = \"cake\"\nsecret = \"short\"\n"),
        rule("networks[0].allow_ips", "")
            .edit("id = \"cake\"\n", "id = \"cake\"\nallow_ips = [\"999.1.1.1\"]\n"),
        rule("networks[0].default_status", "is not a conversion status")
            .edit("id = \"cake\"\n", "id = \"cake\"\ndefault_status = \"wat\"\n"),
        // [[traffic_sources]]
        rule("traffic_sources[1].kind", "unknown traffic source kind")
            .plus("[[traffic_sources]]\nid = \"s2\"\nkind = \"nope\"\n"),
        rule("traffic_sources[1].click_id_params", "no landing-URL parameter carries")
            .plus("[[traffic_sources]]\nid = \"s2\"\n"),
        rule("traffic_sources[1].sub_id_params", "6 sub id parameters").plus(
            "[[traffic_sources]]\nid = \"s2\"\nclick_id_params = [\"t\"]\nsub_id_params = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"]\n",
        ),
        rule("traffic_sources[1].token_style", "is not a token style").plus(
            "[[traffic_sources]]\nid = \"s2\"\nclick_id_params = [\"t\"]\ntoken_style = \"??\"\n",
        ),
        rule("traffic_sources[1].postback_url", "is not an absolute http(s) URL").plus(
            "[[traffic_sources]]\nid = \"s2\"\nclick_id_params = [\"t\"]\npostback_url = \"/pb?c=1\"\n",
        ),
        // [[offers]]
        rule("offers[1].url", "is not an absolute http(s) URL")
            .plus("[[offers]]\nid = \"o2\"\nurl = \"network.example/x\"\nnetwork = \"cake\"\n"),
        rule("offers[1].network", "unknown network \"nowhere\"")
            .plus("[[offers]]\nid = \"o2\"\nurl = \"https://n.example/x\"\nnetwork = \"nowhere\"\n"),
        rule("offers[1].payout", "the default payout is refused").plus(
            "[[offers]]\nid = \"o2\"\nurl = \"https://n.example/x\"\nnetwork = \"cake\"\npayout = 1e12\n",
        ),
        rule("offers[1].currency", "is not an ISO 4217 code").plus(
            "[[offers]]\nid = \"o2\"\nurl = \"https://n.example/x\"\nnetwork = \"cake\"\ncurrency = \"EURO\"\n",
        ),
        rule("offers[1].match[0]", "")
            .plus("[[offers]]\nid = \"o2\"\nurl = \"https://n.example/x\"\nnetwork = \"cake\"\nmatch = [\"\"]\n"),
        // [[campaigns]]
        rule("campaigns[1].id", "is also an offer id")
            .plus(&(CAMPAIGN.replace("id = \"c2\"", "id = \"demo\"") + upstream)),
        rule("campaigns[1].path", "is reserved for clickstamp's own routes")
            .plus(&(CAMPAIGN.replace("\"/c2\"", "\"/go\"") + upstream)),
        rule("campaigns[1].path", "is not a plain absolute path")
            .plus(&(CAMPAIGN.replace("\"/c2\"", "\"c2\"") + upstream)),
        rule("campaigns[1].path", "another campaign already answers on")
            .plus(&(CAMPAIGN.replace("\"/c2\"", "\"/demo\"") + upstream)),
        rule("campaigns[1].traffic_source", "unknown traffic source \"ghost\"")
            .plus(&(CAMPAIGN.replace("\"demo-source\"", "\"ghost\"") + upstream)),
        rule("campaigns[1].offers[0].offer", "unknown offer \"ghost\"")
            .plus(&(CAMPAIGN.replace("offer = \"demo\"", "offer = \"ghost\"") + upstream)),
        rule("campaigns[1].offers", "the campaign has no offers")
            .plus(&(CAMPAIGN.replace("[{ offer = \"demo\" }]", "[]") + upstream)),
        rule("campaigns[1].offers", "offer weights sum to 0")
            .plus(&(CAMPAIGN.replace("{ offer = \"demo\" }", "{ offer = \"demo\", weight = 0 }") + upstream)),
        rule("campaigns[1].attribution_window", "is not a duration")
            .plus(&(CAMPAIGN.to_string() + upstream + "\nattribution_window = \"forever\"")),
        rule("campaigns[1].cost", "is negative")
            .plus(&(CAMPAIGN.to_string() + upstream + "\ncost = -1.0")),
        rule("campaigns[1].rewrite.links", "unknown link mode")
            .plus(&(CAMPAIGN.to_string() + upstream + "\nrewrite = { links = \"teleport\" }")),
        rule("campaigns[1].origin.upstream", "is not an http:// or https:// URL")
            .plus(&(CAMPAIGN.to_string() + "origin = { upstream = \"ftp://127.0.0.1\" }")),
        rule("campaigns[1].origin.verify_tls", "plain http:// upstream").plus(
            &(CAMPAIGN.to_string() + "origin = { upstream = \"http://127.0.0.1:9\", verify_tls = false }"),
        ),
        rule("campaigns[1].origin.forwarded_headers", "is not a forwarding-header choice").plus(
            &(CAMPAIGN.to_string()
                + "origin = { upstream = \"http://127.0.0.1:9\", forwarded_headers = \"all\" }"),
        ),
        rule("campaigns[1].origin.landers", "is not a directory")
            .plus(&(CAMPAIGN.to_string() + "origin = { landers = \"/nonexistent/landers\" }")),
        rule("campaigns[1].origin", "both upstream and landers are set").plus(
            &(CAMPAIGN.to_string() + "origin = { upstream = \"http://127.0.0.1:9\", landers = \"/tmp\" }"),
        ),
        rule("campaigns[1].origin", "no origin").plus(&(CAMPAIGN.to_string() + "origin = {}")),
    ]
}

#[test]
fn every_validation_rule_names_its_key_and_fix() {
    let mut failures = Vec::new();
    for r in rules() {
        let (ok, out) = check(&r.config());
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("- {}: ", r.key)) && l.contains(r.says));
        match (ok, line) {
            (false, Some(line)) if line.contains("(fix: ") => {}
            (ok, _) => failures.push(format!(
                "{} / {:?}: check {} and said:\n{out}",
                r.key,
                r.says,
                if ok { "passed" } else { "failed" }
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_entry_with_its_own_error_still_counts_for_references() {
    // A mistyped network kind: the network is refused, but it exists, so the offer
    // naming it and the campaign naming that offer get no follow-on errors.
    let config = format!(
        "{SECRETS}{}",
        demo_body().replacen("id = \"cake\"", "id = \"cake\"\nkind = \"caek\"", 1)
    );
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("networks[0].kind: unknown network kind \"caek\""),
        "{out}"
    );
    assert!(
        out.contains("1 problem(s)"),
        "one problem, not three:\n{out}"
    );
    assert!(
        !out.contains("unknown network \"cake\"") && !out.contains("unknown offer \"demo\""),
        "{out}"
    );

    // The same for a refused traffic source (no click-id parameter) and an offer with
    // a bad URL scheme: the campaign naming them is not blamed.
    let config = format!(
        "{SECRETS}{}",
        demo_body()
            .replacen("click_id_params = [\"tsid\"]\n", "", 1)
            .replacen(
                "url = \"https://network.example",
                "url = \"ftp://network.example",
                1
            )
    );
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    assert!(
        out.contains("traffic_sources[0].click_id_params:") && out.contains("offers[0].url:"),
        "{out}"
    );
    assert!(!out.contains("campaigns[0]"), "{out}");
}

#[test]
fn unknown_ids_are_answered_with_the_ids_that_exist() {
    let config = format!(
        "{SECRETS}{}",
        demo_body()
            .replacen("network = \"cake\"", "network = \"kake\"", 1)
            .replacen(
                "traffic_source = \"demo-source\"",
                "traffic_source = \"demo-src\"",
                1
            )
    );
    let (ok, out) = check(&config);
    assert!(!ok, "{out}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.contains(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
            .to_string()
    };
    let network = line("offers[0].network");
    assert!(
        network.contains("unknown network \"kake\"")
            && network.contains("use one of the configured network ids (\"cake\")"),
        "{network}"
    );
    let source = line("campaigns[0].traffic_source");
    assert!(
        source.contains("unknown traffic source \"demo-src\"")
            && source.contains("(\"demo-source\")"),
        "{source}"
    );
}

#[test]
fn toml_errors_give_line_column_and_key_path() {
    // A syntax error: where it is, to the column.
    let (ok, out) = check("[server]\nlisten = \"127.0.0.1:1\"\nthreads = = 2\n");
    assert!(!ok);
    assert!(out.contains("(line 3, column 11)"), "{out}");
    // A value of the wrong type deep in an array of tables: the key path too.
    let config = format!(
        "{SECRETS}{}",
        demo_body().replacen("cost = 0.01", "cost = \"cheap\"", 1)
    );
    let (ok, out) = check(&config);
    assert!(!ok);
    let line = out
        .lines()
        .find(|l| l.contains("line "))
        .unwrap_or_else(|| panic!("no position in:\n{out}"));
    assert!(
        line.contains("campaigns[0].cost (line ") && line.contains("column"),
        "{line}"
    );
}

#[test]
fn every_misspelt_key_and_mistyped_value_is_reported_in_one_run() {
    let config = format!(
        "{SECRETS}\n[server]\nlisen = \"127.0.0.1:1\"\nthreads = \"two\"\n{}",
        demo_body().replacen("cost = 0.01", "cost = \"cheap\"", 1)
    );
    let (ok, out) = check(&config);
    assert!(!ok);
    assert!(out.contains("3 problem(s)"), "{out}");
    for (key, says) in [
        ("server.lisen (line 6, column 1)", "unknown field `lisen`"),
        ("server.threads (line 7, column 11)", "invalid type"),
        ("campaigns[0].cost (line ", "invalid type: string \"cheap\""),
    ] {
        assert!(
            out.lines().any(|l| l.contains(key) && l.contains(says)),
            "{key} / {says} in:\n{out}"
        );
    }
}
