//! Data that lives for months: `[store.retention]` prunes exactly what its rules say
//! while the node keeps answering, and `clickstamp backup` copies a serving store into
//! a file a node can be restarted on.

use clickstamp_e2e::instance::{workspace_root, write_config, write_config_for, CLICK_ID_KEY};
use clickstamp_e2e::store::StoreTarget;
use clickstamp_e2e::{binary, skip_on_postgres, Instance, TempDir};
use clickstamp_plugins::ClickIdCodec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "retention-secret-1";
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One campaign with a 30-day attribution window, a network that authenticates by
/// secret, and `extra` (e.g. a `[store.retention]` section).
fn body(extra: &str) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 2.0

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"
{extra}
"#,
        landers = landers.display()
    )
}

/// A click key recorded at `ts_ms`: its first 12 hex characters are the time.
fn click_key(ts_ms: i64, n: u64) -> String {
    format!("{ts_ms:012x}{n:020x}")
}

/// A landing click; returns (stored click key, the click ID a network sends back).
fn land(inst: &Instance, tsid: &str) -> (String, String) {
    let r = inst.get(&format!("/lp?tsid={tsid}"), &[]);
    assert_eq!(r.status, 200, "landing: {}", r.text());
    let cookie = r.cookie().expect("a new click sets its cookie");
    let token = cookie.split_once('=').unwrap().1.to_string();
    let key = ClickIdCodec::new(CLICK_ID_KEY.as_bytes())
        .verify(&token, now_ms() as u64, 86_400_000)
        .expect("a genuine click id")
        .to_hex();
    (key, token)
}

fn postback(inst: &Instance, token: &str, txid: &str) -> String {
    let r = inst.get(
        &format!("/postback/cake?cid={token}&payout=1&txid={txid}&secret={SECRET}"),
        &[],
    );
    assert_eq!(r.status, 200, "postback: {}", r.text());
    r.json()["status"].as_str().unwrap_or_default().to_string()
}

fn seed_click(inst: &Instance, key: &str, ts: i64, with_outbound: bool) {
    inst.execute(
        "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, entry)
         VALUES ($1, $2, 'camp', 'src', 'landing')",
        &[&key, &ts],
    );
    if with_outbound {
        inst.execute(
            "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id)
             VALUES ($1, $2, 0, 'camp', 'offer1')",
            &[&key, &(ts + 1000)],
        );
    }
}

fn seed_conversion(inst: &Instance, key: &str, ts: i64) {
    inst.execute(
        "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, network_id,
             offer_id, event, status, origin, duplicates, created_ms, updated_ms)
         VALUES ($1, $2, 'camp', 'src', 'cake', 'offer1', 'conversion', 'approved', 's2s', 0, $3, $3)",
        &[&format!("seed-{key}"), &key, &ts],
    );
}

fn seed_journal(inst: &Instance, ts: i64, marker: &str) {
    inst.execute(
        "INSERT INTO postback_journal (ts_ms, network_id, method, raw_query, origin, outcome)
         VALUES ($1, 'cake', 'GET', $2, 's2s', 'accepted')",
        &[&ts, &marker],
    );
}

fn seed_outbox(inst: &Instance, state: &str, due: i64, delivered: Option<i64>, marker: &str) {
    let delivered = delivered.map_or("NULL".to_string(), |d| d.to_string());
    inst.execute(
        &format!(
            "INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, attempts,
                 next_attempt_ms, created_ms, delivered_ms)
             VALUES (1, 'seeded', 'src', 'conversion', $1, $2, 1, $3, $3, {delivered})"
        ),
        &[&marker, &state, &due],
    );
}

fn pruned(inst: &Instance, table: &str) -> f64 {
    inst.metric(&format!(
        "clickstamp_store_pruned_rows_total{{table=\"{table}\"}}"
    ))
}

#[test]
fn the_pruner_deletes_exactly_what_the_rules_say_while_traffic_is_answered() {
    let inst = Instance::start(&body(
        r#"
[store.retention]
clicks_margin = "1d"
journal_max_age = "7d"
delivered_outbox_max_age = "3d"
interval = "300ms"
batch = 7
pause = "5ms"
"#,
    ));
    let now = now_ms();
    let started = now;

    // The journal first: its ids grow with time, as they do when postbacks arrive.
    for i in 0..15 {
        seed_journal(&inst, now - 10 * DAY_MS + i, "old-entry");
    }
    for i in 0..5 {
        seed_journal(&inst, now - DAY_MS + i, "recent-entry");
    }

    // Traffic from here on: every landing and postback must be answered.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            let mut answered = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let (key, token) = land(&inst, &format!("live-{n}"));
                if n % 3 == 0 {
                    assert_eq!(postback(&inst, &token, &format!("T{n}")), "accepted");
                }
                answered.push((key, n % 3 == 0));
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            answered
        });

        // Clicks: past the window plus the margin without a conversion (half with a /go
        // record), past it with one, and inside the margin or the window.
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let mut doomed = Vec::new();
        let mut kept = Vec::new();
        for i in 0..25 {
            let ts = now - 40 * DAY_MS + i * 60_000;
            let key = click_key(ts, next());
            seed_click(&inst, &key, ts, i % 2 == 0);
            if i % 5 == 4 {
                seed_conversion(&inst, &key, ts + 5_000);
                kept.push(key);
            } else {
                doomed.push(key);
            }
        }
        for age in [30 * DAY_MS + DAY_MS / 2, 29 * DAY_MS] {
            for i in 0..5 {
                let ts = now - age + i * 60_000;
                let key = click_key(ts, next());
                seed_click(&inst, &key, ts, true);
                kept.push(key);
            }
        }
        let doomed_outbound = (0..25).filter(|i| i % 5 != 4 && i % 2 == 0).count() as f64;
        inst.execute(
            "INSERT INTO conversion_history (conversion_id, ts_ms, status, origin)
         SELECT id, created_ms, 'approved', 's2s' FROM conversions",
            &[],
        );

        // The outbox: delivered long ago (due and delivered 5 days ago), delivered late
        // (due 5 days ago, delivered yesterday), delivered recently, still pending, dead.
        for _ in 0..12 {
            seed_outbox(
                &inst,
                "delivered",
                now - 5 * DAY_MS,
                Some(now - 5 * DAY_MS),
                "old-delivered",
            );
        }
        for _ in 0..3 {
            seed_outbox(
                &inst,
                "delivered",
                now - 5 * DAY_MS,
                Some(now - DAY_MS),
                "late-delivered",
            );
        }
        for _ in 0..2 {
            seed_outbox(
                &inst,
                "delivered",
                now - DAY_MS,
                Some(now - DAY_MS),
                "recent-delivered",
            );
        }
        for _ in 0..4 {
            // Due in ten days: the worker leaves it alone, the pruner must too.
            seed_outbox(&inst, "pending", now + 10 * DAY_MS, None, "pending");
        }
        for _ in 0..3 {
            seed_outbox(&inst, "dead", now - 10 * DAY_MS, None, "dead");
        }

        let deadline = Instant::now() + Duration::from_secs(60);
        while (pruned(&inst, "clicks") < doomed.len() as f64
            || pruned(&inst, "postback_journal") < 15.0
            || pruned(&inst, "outbox") < 12.0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        // Two more runs: nothing else goes.
        let runs = inst.metric("clickstamp_store_prune_runs_total");
        inst.metric_at_least(
            "clickstamp_store_prune_runs_total",
            runs + 2.0,
            Duration::from_secs(30),
        );
        stop.store(true, Ordering::Relaxed);
        let answered = traffic.join().expect("every request was answered");
        assert!(
            answered.len() > 5,
            "traffic kept flowing: {}",
            answered.len()
        );
        check_what_is_left(&inst, started, &doomed, doomed_outbound, &kept, &answered);
    });
}

/// After the runs: exactly the doomed rows are gone.
fn check_what_is_left(
    inst: &Instance,
    started: i64,
    doomed: &[String],
    doomed_outbound: f64,
    kept: &[String],
    answered: &[(String, bool)],
) {
    assert_eq!(pruned(inst, "clicks"), doomed.len() as f64);
    assert_eq!(pruned(inst, "outbound_clicks"), doomed_outbound);
    assert_eq!(pruned(inst, "postback_journal"), 15.0);
    assert_eq!(pruned(inst, "outbox"), 12.0);
    assert_eq!(inst.metric("clickstamp_store_prune_failures_total"), 0.0);

    for key in doomed {
        assert!(
            !inst.exists("SELECT 1 FROM clicks WHERE click_id = $1", &[key]),
            "{key} is past the window and the margin, without a conversion"
        );
        assert!(!inst.exists("SELECT 1 FROM outbound_clicks WHERE click_id = $1", &[key]));
    }
    for key in kept {
        assert!(
            inst.exists("SELECT 1 FROM clicks WHERE click_id = $1", &[key]),
            "{key} is converted or within the window plus the margin"
        );
    }
    assert_eq!(
        inst.count("SELECT count(*) FROM outbound_clicks", &[]),
        (25.0 / 2.0f64).ceil() as i64 - doomed_outbound as i64 + 10,
        "the /go records of kept clicks stay"
    );
    let live_bound = click_key(started - 60_000, 0);
    let live = inst.count(
        "SELECT count(*) FROM clicks WHERE click_id > $1",
        &[&live_bound],
    );
    assert_eq!(live as usize, answered.len(), "every live click is stored");
    let live_converted = answered.iter().filter(|(_, c)| *c).count() as i64;
    assert_eq!(
        inst.count("SELECT count(*) FROM conversions", &[]),
        5 + live_converted
    );
    assert!(inst.count("SELECT count(*) FROM conversion_history", &[]) >= 5);

    let journal = |marker: &str| {
        inst.count(
            "SELECT count(*) FROM postback_journal WHERE raw_query = $1",
            &[&marker],
        )
    };
    assert_eq!(journal("old-entry"), 0);
    assert_eq!(journal("recent-entry"), 5);
    assert_eq!(
        inst.count(
            "SELECT count(*) FROM postback_journal WHERE ts_ms >= $1",
            &[&started]
        ),
        live_converted,
        "live postbacks are all journalled"
    );
    let outbox =
        |marker: &str| inst.count("SELECT count(*) FROM outbox WHERE url = $1", &[&marker]);
    assert_eq!(outbox("old-delivered"), 0);
    assert_eq!(outbox("late-delivered"), 3);
    assert_eq!(outbox("recent-delivered"), 2);
    assert_eq!(outbox("pending"), 4);
    assert_eq!(outbox("dead"), 3);
    assert!(
        inst.log().contains("retention run done"),
        "each run logs its counts"
    );
}

#[test]
fn bad_retention_keys_are_named_with_their_fix() {
    let dir = TempDir::new("retention-check");
    let path = dir.0.join("clickstamp.toml");
    let (main, admin) = (
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:10".parse().unwrap(),
    );
    write_config(
        &path,
        main,
        admin,
        "",
        "",
        &body(
            r#"
[store.retention]
journal_max_age = "90m"
delivered_outbox_max_age = "soon"
batch = 0
"#,
        ),
    );
    let out = std::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in [
        "store.retention.journal_max_age",
        "store.retention.delivered_outbox_max_age",
        "store.retention.batch",
    ] {
        assert!(stderr.contains(key), "{key} is named: {stderr}");
    }
    assert!(stderr.contains("at least"), "{stderr}");

    write_config(&path, main, admin, "", "", &body("[store.retention]\n"));
    let out = std::process::Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no rule"), "{stderr}");
}

#[test]
fn a_backup_taken_under_load_is_consistent_and_a_node_restored_from_it_serves_its_data() {
    if skip_on_postgres("clickstamp backup copies the SQLite store (pg_dump covers PostgreSQL)") {
        return;
    }
    let mut inst = Instance::start(&body(""));
    let stop = AtomicBool::new(false);
    // (click key, converted) for every request answered so far.
    let acked: Mutex<Vec<(String, bool)>> = Mutex::default();
    let backup = inst.dir.0.join("backup.sqlite");
    let before = std::thread::scope(|scope| {
        for worker in 0..2 {
            let (stop, acked, inst) = (&stop, &acked, &inst);
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (key, token) = land(inst, &format!("w{worker}-{n}"));
                    let converted = n % 2 == 0;
                    if converted {
                        let txid = format!("T{worker}-{n}");
                        assert_eq!(postback(inst, &token, &txid), "accepted");
                    }
                    acked.lock().unwrap().push((key, converted));
                    n += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        let before: Vec<(String, bool)> = acked.lock().unwrap().clone();
        assert!(!before.is_empty(), "the load generator is running");
        let (code, stdout, stderr) = inst.command(&["backup", "--to", backup.to_str().unwrap()]);
        assert_eq!(code, 0, "backup: {stdout}{stderr}");
        assert!(stdout.contains("integrity ok"), "{stdout}");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        before
    });

    {
        let copy = rusqlite::Connection::open(&backup).unwrap();
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let clicks: i64 = copy
            .query_row("SELECT count(*) FROM clicks", [], |r| r.get(0))
            .unwrap();
        assert!(clicks as usize >= before.len());
    }
    assert!(
        !std::path::Path::new(&format!("{}.partial", backup.display())).exists(),
        "no partial copy is left behind"
    );
    assert!(
        !std::path::Path::new(&format!("{}-wal", backup.display())).exists(),
        "the backup is one self-contained file"
    );

    // Restore as documented: stop, copy into place (without the old WAL), start.
    inst.kill9();
    let db = inst.db_path();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    inst.restart();
    let stored = inst.count("SELECT count(*) FROM clicks", &[]);
    for (key, converted) in &before {
        assert!(
            inst.exists("SELECT 1 FROM clicks WHERE click_id = $1", &[key]),
            "click {key} was acknowledged before the backup began"
        );
        if *converted {
            assert!(inst.exists("SELECT 1 FROM conversions WHERE click_id = $1", &[key]));
        }
    }
    let report = inst.admin_get("/api/report?group_by=campaign");
    assert_eq!(report.status, 200, "{}", report.text());
    let totals = &report.json()["totals"];
    assert_eq!(totals["clicks"].as_i64(), Some(stored), "{totals}");
    let converted_before = before.iter().filter(|(_, c)| *c).count() as i64;
    assert!(
        totals["conversions"].as_i64().unwrap() >= converted_before,
        "{totals}"
    );
    // And it takes new traffic.
    land(&inst, "after-restore");
}

#[test]
fn a_backup_of_the_shared_store_is_refused_with_the_tools_to_use_instead() {
    let dir = TempDir::new("backup-postgres");
    let path = dir.0.join("clickstamp.toml");
    let (main, admin) = (
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:10".parse().unwrap(),
    );
    // The command refuses before it connects: no database needs to answer.
    let store = StoreTarget::SharedPostgres("postgres://nobody@127.0.0.1:9/none".into());
    write_config_for(&store, &path, main, admin, "", "", &body(""));
    let to = dir.0.join("backup.sqlite");
    let out = std::process::Command::new(binary())
        .args(["backup", "--config"])
        .arg(&path)
        .arg("--to")
        .arg(&to)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("pg_dump") && stderr.contains("pg_basebackup"),
        "{stderr}"
    );
    assert!(!to.exists(), "nothing is written");
}
