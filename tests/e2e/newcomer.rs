//! What a newcomer meets first: the demo config as shipped (a click, a stamped offer
//! link, a postback and the relay it causes, delivered to the demo's own relay sink),
//! logs that are readable in a file, and the listing commands' tables.

use clickstamp_e2e::http::{get, request};
use clickstamp_e2e::instance::{free_addr, workspace_root, ADMIN_TOKEN};
use clickstamp_e2e::{binary, KillOnDrop, TempDir};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `config/demo.toml` as shipped, moved to free ports, its landers and store given
/// absolute places, and the admin token the harness uses.
struct Demo {
    dir: TempDir,
    main: SocketAddr,
    admin: SocketAddr,
    config: std::path::PathBuf,
    _process: KillOnDrop,
}

impl Demo {
    fn start() -> Demo {
        let shipped = std::fs::read_to_string(workspace_root().join("config/demo.toml"))
            .expect("config/demo.toml");
        let (main, admin) = (free_addr(), free_addr());
        let landers = workspace_root().join("config/demo/landers");
        let config = shipped
            .replace("127.0.0.1:8080", &main.to_string())
            .replace("127.0.0.1:9091", &admin.to_string())
            .replace(
                "\"demo/landers\"",
                &format!("{:?}", landers.display().to_string()),
            )
            .replace("demo-admin-token-change-me", ADMIN_TOKEN);
        assert!(
            config.contains(&format!("http://{admin}/demo/relay")),
            "the demo's traffic source relays to the demo relay sink:\n{config}"
        );
        let dir = TempDir::new("demo");
        let path = dir.0.join("demo.toml");
        std::fs::write(&path, config).unwrap();
        // stderr is a file here, as under systemd or docker.
        let log = std::fs::File::create(dir.0.join("demo.log")).unwrap();
        let process = KillOnDrop(
            Command::new(binary())
                .args(["serve", "--config"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn clickstamp"),
        );
        let demo = Demo {
            dir,
            main,
            admin,
            config: path,
            _process: process,
        };
        demo.wait_until(Duration::from_secs(20), "healthy", || {
            request(demo.admin, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
        });
        demo
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("demo.log")).unwrap_or_default()
    }

    fn wait_until(&self, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "not {what} within {timeout:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn api(&self, target: &str) -> serde_json::Value {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let r = get(self.admin, target, &[("Authorization", &auth)]);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        r.json()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn the_demo_shows_a_click_a_stamped_link_a_postback_and_its_relay_delivered() {
    let demo = Demo::start();
    let sink = format!("http://{}/demo/relay", demo.admin);
    assert!(
        demo.log().contains(&format!(
            "demo relay sink on: traffic sources may relay to {sink}"
        )),
        "serve says where the sink is:\n{}",
        demo.log()
    );

    let page = get(demo.main, "/demo?tsid=newcomer-1&cost=0.02&zone=42", &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    let cookie = page.cookie().expect("the visit sets the click cookie");
    let click_id = cookie
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .expect("cookie value");
    let direct_link = page
        .text()
        .lines()
        .find(|l| l.contains("class=\"direct\""))
        .map(str::to_string)
        .expect("the demo lander has a direct offer link");
    assert!(
        direct_link.contains("https://network.example/offer?a=1&")
            && direct_link.contains(&format!("s2={click_id}\"")),
        "the lander's direct offer link carries the click id: {direct_link}"
    );

    let go = get(demo.main, "/go/demo", &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302);
    assert_eq!(
        go.header("location"),
        Some(format!("https://network.example/offer?a=1&s2={click_id}").as_str())
    );

    let postback = get(
        demo.main,
        &format!("/postback/cake?cid={click_id}&payout=2.5&txid=T1"),
        &[],
    );
    assert_eq!(postback.status, 200, "{}", postback.text());
    assert_eq!(postback.json()["status"], "accepted");

    demo.wait_until(Duration::from_secs(10), "relayed to the sink", || {
        demo.log()
            .contains("demo relay received: clickid=newcomer-1&payout=2.5&txid=T1")
    });
    demo.wait_until(Duration::from_secs(10), "delivered in the outbox", || {
        let outbox = demo.api("/api/outbox?state=delivered");
        outbox["entries"].as_array().is_some_and(|entries| {
            entries.iter().any(|e| {
                e["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&sink) && u.contains("clickid=newcomer-1"))
                    && e["last_status"] == 200
            })
        })
    });

    // The listing commands line their columns up and give times a person can read.
    let outbox = demo.cli(&["outbox", "--state", "delivered"]);
    let mut lines = outbox.lines();
    let header = lines.next().expect("a header line");
    let row = lines.next().expect("the delivered relay");
    assert!(header.starts_with("id  created (UTC)"), "{outbox}");
    assert_eq!(
        header.find("source"),
        row.find("demo-source"),
        "aligned columns:\n{outbox}"
    );
    let journal = demo.cli(&["journal"]);
    let row = journal.lines().nth(1).expect("the journalled postback");
    let time = row.split_whitespace().nth(1).unwrap_or_default();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "ISO-8601 UTC time in {row:?}"
    );

    let log = demo.log();
    assert!(
        !log.contains("\x1b["),
        "no terminal colour codes in a log file:\n{log}"
    );
}

#[test]
fn the_sink_is_off_unless_the_config_turns_it_on_and_loopback_only() {
    let dir = TempDir::new("sink-check");
    let path = dir.0.join("c.toml");
    std::fs::write(
        &path,
        "[server]\nadmin_listen = \"0.0.0.0:9091\"\ndemo_relay_sink = true\n\
         [secrets]\nclick_id_key = \"0123456789abcdef0123\"\nadmin_token = \"0123456789abcdef0123\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("server.demo_relay_sink:") && stderr.contains("loopback"),
        "{stderr}"
    );
}

#[test]
fn json_logs_name_no_source_files_of_the_build_machine() {
    let dir = TempDir::new("json-log");
    let (main, admin) = (free_addr(), free_addr());
    let path = dir.0.join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"{main}\"\nadmin_listen = \"{admin}\"\nlog_format = \"json\"\n\
             [store]\npath = \"data/c.sqlite\"\n\
             [secrets]\nclick_id_key = \"0123456789abcdef0123\"\nadmin_token = \"0123456789abcdef0123\"\n"
        ),
    )
    .unwrap();
    let log_path = dir.0.join("log");
    let _process = KillOnDrop(
        Command::new(binary())
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    // Pingora's own start-up lines come through the `log` bridge, which is where
    // source paths used to appear.
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("Starting service") {
            break log;
        }
        assert!(Instant::now() < deadline, "no start-up lines:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["target"].is_string(), "{line}");
        assert!(
            !line.contains(".rs\"") && !line.contains("\"log."),
            "a source path in {line}"
        );
    }
}
