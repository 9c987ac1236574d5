//! Hot reload of the config (SIGHUP, `clickstamp reload`, `POST /api/reload`) while
//! visitors, `/go` and postbacks keep coming: nothing fails, new campaigns answer at
//! once, an invalid file is refused with its errors, a restart-only change is named.

use clickstamp_e2e::instance::{write_config_for, ADMIN_TOKEN};
use clickstamp_e2e::{request, Instance};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Load threads; each stops at this many rounds (landing, `/go`, postback, flapping
/// campaign) or when the reloads are done, whichever comes first.
const LOAD_THREADS: usize = 3;
const MAX_ROUNDS_PER_THREAD: u64 = 3_000;
/// However the machine is loaded, the test ends.
const LOAD_DEADLINE: Duration = Duration::from_secs(120);
const RELOADS: usize = 20;

fn landers() -> String {
    clickstamp_e2e::instance::workspace_root()
        .join("config/demo/landers")
        .display()
        .to_string()
}

/// The config of reload `generation`: the steady campaign `steady` (what the load
/// generator uses), a campaign, offer and traffic source of this generation only
/// (`/gen{n}`; the previous one is gone), and `/flap`, present in even generations.
fn body(generation: usize) -> String {
    let landers = landers();
    let mut body = format!(
        r#"
[[networks]]
id = "cake"

[[traffic_sources]]
id = "steady-source"
click_id_params = ["tsid"]

[[traffic_sources]]
id = "source-{generation}"
click_id_params = ["sid"]

[[offers]]
id = "steady-offer"
url = "https://network.example/offer?a=1"
network = "cake"

[[offers]]
id = "offer-{generation}"
url = "https://network.example/gen{generation}?a=1"
network = "cake"

[[campaigns]]
id = "steady"
path = "/steady"
traffic_source = "steady-source"
offers = [{{ offer = "steady-offer", weight = 1 }}]
origin = {{ landers = "{landers}" }}

[[campaigns]]
id = "gen-{generation}"
path = "/gen{generation}"
traffic_source = "source-{generation}"
offers = [{{ offer = "offer-{generation}", weight = 1 }}]
origin = {{ landers = "{landers}" }}
direct_linking = true
"#
    );
    if generation.is_multiple_of(2) {
        body.push_str(&format!(
            r#"
[[campaigns]]
id = "flap"
path = "/flap"
traffic_source = "steady-source"
offers = [{{ offer = "steady-offer", weight = 1 }}]
origin = {{ landers = "{landers}" }}
"#
        ));
    }
    body
}

/// What the load generator saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    landings: AtomicU64,
    conversions: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

/// One round: a landing click, its `/go`, its postback, and the flapping campaign.
/// Every answer must be the one the request gets under the old or the new config.
fn round(inst_main: std::net::SocketAddr, thread: usize, n: u64, tally: &Tally) {
    let send = |target: &str, headers: &[(&str, &str)]| {
        tally.sent.fetch_add(1, Ordering::Relaxed);
        request(inst_main, "GET", target, headers, b"")
            .map_err(|e| tally.fail(format!("GET {target}: connection error {e}")))
            .ok()
    };
    let Some(landing) = send(&format!("/steady?tsid=t{thread}-{n}"), &[]) else {
        return;
    };
    let cookie = landing.cookie();
    let Some(cookie) = cookie.filter(|_| landing.status == 200) else {
        tally.fail(format!(
            "landing answered {} without a click cookie: {}",
            landing.status,
            landing.text()
        ));
        return;
    };
    tally.landings.fetch_add(1, Ordering::Relaxed);
    let cid = cookie
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    if let Some(go) = send("/go/steady-offer", &[("Cookie", &cookie)]) {
        let location = go.header("location").unwrap_or("");
        if go.status != 302 || !location.contains(&cid) {
            tally.fail(format!("/go answered {} to {location:?}", go.status));
        }
    }
    if let Some(postback) = send(
        &format!("/postback/cake?cid={cid}&payout=1&txid=t{thread}-{n}"),
        &[],
    ) {
        if postback.status == 200 && postback.json()["status"] == "accepted" {
            tally.conversions.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.fail(format!(
                "postback answered {}: {}",
                postback.status,
                postback.text()
            ));
        }
    }
    if let Some(flap) = send("/flap", &[]) {
        // Present in even generations, absent in odd ones: either is right mid-swap.
        if flap.status != 200 && flap.status != 404 {
            tally.fail(format!("/flap answered {}: {}", flap.status, flap.text()));
        }
    }
}

fn api_reload(inst: &Instance) -> clickstamp_e2e::Response {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    request(
        inst.admin,
        "POST",
        "/api/reload",
        &[("Authorization", &auth)],
        b"",
    )
    .expect("POST /api/reload")
}

fn hangup(inst: &Instance) {
    let pid = inst.pid().expect("the instance runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
}

/// Wait until the live config's generation is `generation` (a SIGHUP reload runs in
/// the background).
fn await_generation(inst: &Instance, generation: u64) {
    let seen = inst.metric_at_least(
        "clickstamp_config_generation",
        generation as f64,
        Duration::from_secs(20),
    );
    assert_eq!(seen, generation as f64, "generation after the reload");
}

#[test]
fn twenty_reloads_under_load_fail_no_request_and_bad_or_restart_only_files_are_reported() {
    let inst = Instance::start(&body(0));
    assert_eq!(inst.metric("clickstamp_config_generation"), 1.0);
    assert_eq!(inst.get("/gen0", &[]).status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let load: Vec<_> = (0..LOAD_THREADS)
        .map(|thread| {
            let (stop, tally, main) = (stop.clone(), tally.clone(), inst.main);
            std::thread::spawn(move || {
                for n in 0..MAX_ROUNDS_PER_THREAD {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_DEADLINE {
                        break;
                    }
                    round(main, thread, n, &tally);
                }
            })
        })
        .collect();
    // Reloads start once traffic flows.
    while tally.sent.load(Ordering::Relaxed) < 30 && started.elapsed() < LOAD_DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut generation = 1u64;
    let mut by = [0usize; 3];
    for n in 1..=RELOADS {
        inst.rewrite_config(&body(n));
        generation += 1;
        match n % 3 {
            0 => {
                let answer = api_reload(&inst);
                assert_eq!(answer.status, 200, "{}", answer.text());
                let answer = answer.json();
                assert_eq!(answer["status"], "reloaded");
                assert_eq!(answer["generation"], generation);
                assert_eq!(answer["restart_required"], serde_json::json!([]));
                by[0] += 1;
            }
            1 => {
                let (code, out, err) = inst.command(&["reload"]);
                assert_eq!(code, 0, "clickstamp reload: {out}{err}");
                assert!(
                    out.contains(&format!("reloaded (generation {generation},")),
                    "{out}"
                );
                by[1] += 1;
            }
            _ => {
                hangup(&inst);
                await_generation(&inst, generation);
                by[2] += 1;
            }
        }
        // The new campaign answers at once; the previous one is gone.
        let landing = inst.get(&format!("/gen{n}?sid=x"), &[]);
        assert_eq!(landing.status, 200, "reload {n}: {}", landing.text());
        assert!(
            landing
                .cookie()
                .is_some_and(|c| c.starts_with(&format!("cs_gen-{n}="))),
            "reload {n}: {:?}",
            landing.cookie()
        );
        let go = inst.get(&format!("/go/offer-{n}"), &[]);
        assert_eq!(go.status, 302, "reload {n}: /go/offer-{n}");
        assert!(
            go.header("location")
                .unwrap_or("")
                .starts_with(&format!("https://network.example/gen{n}?")),
            "{:?}",
            go.header("location")
        );
        assert_eq!(inst.get(&format!("/gen{}", n - 1), &[]).status, 404);
        assert_eq!(
            inst.get(&format!("/go/offer-{}", n - 1), &[]).status,
            404,
            "a removed offer is gone"
        );
    }
    assert_eq!(inst.metric("clickstamp_config_generation"), 21.0);
    assert_eq!(
        inst.metric("clickstamp_config_reloads_total{trigger=\"api\"}"),
        (by[0] + by[1]) as f64
    );
    assert_eq!(
        inst.metric("clickstamp_config_reloads_total{trigger=\"signal\"}"),
        by[2] as f64
    );

    // An invalid file: refused with its errors, by each trigger; the old config serves.
    let invalid = body(RELOADS + 1).replace(
        "offers = [{ offer = \"offer-21\", weight = 1 }]",
        "offers = [{ offer = \"no-such-offer\", weight = 1 }]",
    );
    assert!(invalid.contains("no-such-offer"));
    inst.rewrite_config(&invalid);
    let refused = api_reload(&inst);
    assert_eq!(refused.status, 422, "{}", refused.text());
    let refused = refused.json();
    assert_eq!(refused["status"], "refused");
    assert_eq!(refused["generation"], 21);
    let errors = refused["errors"].as_array().expect("errors").clone();
    assert!(!errors.is_empty());
    for e in &errors {
        for field in ["key", "problem", "fix"] {
            assert!(
                e[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} in {e}"
            );
        }
    }
    assert!(
        errors.iter().any(|e| e["problem"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-offer")
            || e["key"].as_str().unwrap_or("").starts_with("campaigns[1]")),
        "the error names the bad offer reference: {errors:?}"
    );
    assert_eq!(
        inst.metric("clickstamp_config_reload_failures_total{trigger=\"api\"}"),
        1.0
    );
    let (code, _, err) = inst.command(&["reload"]);
    assert_eq!(code, 2, "clickstamp reload of an invalid file: {err}");
    assert!(
        err.contains("not reloaded") && err.contains("fix:"),
        "{err}"
    );
    hangup(&inst);
    let failures = inst.metric_at_least(
        "clickstamp_config_reload_failures_total{trigger=\"signal\"}",
        1.0,
        Duration::from_secs(20),
    );
    assert_eq!(failures, 1.0, "the refused SIGHUP reload is counted");
    assert_eq!(inst.metric("clickstamp_config_generation"), 21.0);
    assert_eq!(inst.get("/gen20", &[]).status, 200, "the old config serves");
    assert!(inst.log().contains("config reload refused"));

    // A restart-only change: applied where it can be, the rest named.
    write_config_for(
        inst.store(),
        &inst.config_path,
        inst.main,
        inst.admin,
        "header_timeout = \"7s\"",
        "",
        &body(RELOADS + 2),
    );
    let answer = api_reload(&inst);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(
        answer["restart_required"],
        serde_json::json!(["server.header_timeout"])
    );
    assert_eq!(inst.get("/gen22", &[]).status, 200, "the rest applied");
    assert_eq!(inst.metric("clickstamp_config_restart_pending"), 1.0);
    let (code, out, err) = inst.command(&["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("restart required for: server.header_timeout"),
        "{out}"
    );
    assert!(inst.log().contains("only take effect after a restart"));

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let sent = tally.sent.load(Ordering::Relaxed);
    let landings = tally.landings.load(Ordering::Relaxed);
    let conversions = tally.conversions.load(Ordering::Relaxed);
    let failures = tally.failures.lock().unwrap().clone();
    println!(
        "reload under load: {sent} requests, {} failed, {} reloads ({} api, {} cli, {} SIGHUP) + 3 refused + 2 restart-only; {landings} landing clicks, {conversions} conversions",
        failures.len(),
        RELOADS,
        by[0],
        by[1],
        by[2]
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert!(
        sent >= 100,
        "the load ran during the reloads ({sent} requests)"
    );
    // What was answered is what was stored.
    let stored = inst.count(
        "SELECT count(*) FROM clicks WHERE campaign_id = 'steady'",
        &[],
    );
    assert_eq!(
        stored as u64, landings,
        "every landing click answered is stored"
    );
}

/// Whether process `pid` has a handler for SIGHUP (bit 0 of `SigCgt` in its status).
fn catches_sighup(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & 1 == 1)
}

#[test]
fn a_sighup_while_the_node_starts_is_a_reload_not_its_end() {
    use clickstamp_e2e::instance::free_addr;
    use clickstamp_e2e::store::StoreTarget;
    let dir = clickstamp_e2e::TempDir::new("early-hangup");
    let (main, admin) = (free_addr(), free_addr());
    let config = dir.0.join("clickstamp.toml");
    let store = StoreTarget::for_backend();
    write_config_for(&store, &config, main, admin, "", "", &body(0));
    let log_path = dir.0.join("clickstamp.log");
    let mut child = std::process::Command::new(clickstamp_e2e::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("spawn clickstamp");
    let pid = child.id();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let serving = || std::net::TcpStream::connect(admin).is_ok();

    // The handler must be there before the node listens: a hangup in between (a
    // `systemctl reload` during a slow store open) would otherwise end it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the node ended while starting ({status}): {}", log());
        }
        let caught = catches_sighup(pid);
        if caught {
            assert!(
                !serving(),
                "SIGHUP was caught only once the node was listening"
            );
            break;
        }
        assert!(
            !serving(),
            "the node listened before it caught SIGHUP: a hangup while starting would end it"
        );
        assert!(Instant::now() < deadline, "no SIGHUP handler: {}", log());
        std::thread::sleep(Duration::from_micros(200));
    }
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());

    let deadline = Instant::now() + Duration::from_secs(20);
    while !serving() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the SIGHUP ended the starting node ({status}): {}", log());
        }
        assert!(Instant::now() < deadline, "never served: {}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The hangup is honoured as a reload once the node is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log().contains("reloading the config") {
        assert!(Instant::now() < deadline, "no reload logged: {}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "the node still runs");
    let health = request(admin, "GET", "/healthz", &[], b"").unwrap();
    assert_eq!(health.status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}
