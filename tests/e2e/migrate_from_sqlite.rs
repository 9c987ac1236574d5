//! `clickstamp migrate --from-sqlite`: an embedded store copied into PostgreSQL row for
//! row, a second run changing nothing, an interrupted run finished by the next, a node
//! on the copy answering as the embedded instance did, and the refusals.

use clickstamp_e2e::instance::{free_addr, workspace_root, write_config_for};
use clickstamp_e2e::store::{connect, postgres_rows, sqlite_rows, Row, StoreTarget};
use clickstamp_e2e::{
    binary, request, skip_on_postgres, FakeSource, Instance, KillOnDrop, Mode, PgCluster, TempDir,
};
use clickstamp_plugins::query::{first_value, parse_query};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "migrate-secret-123";

/// The store's tables and their keys (the order rows are compared in).
const TABLES: [(&str, &str); 6] = [
    ("clicks", "click_id"),
    ("outbound_clicks", "click_id, ts_ms, seq"),
    ("postback_journal", "id"),
    ("conversions", "id"),
    ("conversion_history", "id"),
    ("outbox", "id"),
];

/// A password in the target's URL: the cluster trusts loopback, so it is never asked
/// for, and the import must not print it.
const PASSWORD: &str = "never-printed-pw";

fn body(source: &FakeSource) -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"
secret = "{SECRET}"
macros = {{ status = "status" }}

[[traffic_sources]]
id = "src"
click_id_params = ["tsid"]
cost_param = "cost"
postback_url = "http://{addr}/conv?clickid={{source_click_id}}&payout={{payout}}&txid={{txid}}&status={{status}}"
relay_status_changes = true

[[offers]]
id = "offer1"
url = "https://network.example/offer?a=1"
network = "cake"
payout = 3.0
currency = "USD"

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"

[outbox]
backoff_base = "100ms"
backoff_max = "200ms"
poll_interval = "50ms"
timeout = "500ms"
max_attempts = 2

[pixel]
# A pixel-only conversion's relay waits this long for its S2S twin: pending throughout.
grace_period = "1h"
allowed_origins = ["https://shop.example"]
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

/// A visitor lands with the source's click id `tsid` and goes to the offer; returns our
/// click id.
fn click(inst: &Instance, tsid: &str) -> String {
    let landing = inst.get(&format!("/lp?tsid={tsid}&cost=0.05"), &[]);
    assert_eq!(landing.status, 200, "{}", landing.text());
    let cookie = landing.cookie().expect("click cookie");
    let go = inst.get("/go/offer1", &[("Cookie", &cookie)]);
    assert_eq!(go.status, 302, "{}", go.text());
    let location = go.header("location").unwrap();
    first_value(&parse_query(location.split_once('?').unwrap().1), "s2")
        .unwrap()
        .to_string()
}

fn postback_target(cid: &str, txid: &str, status: &str) -> String {
    format!("/postback/cake?cid={cid}&payout=5&txid={txid}&status={status}&secret={SECRET}")
}

fn postback(inst: &Instance, cid: &str, txid: &str, status: &str) -> serde_json::Value {
    let r = inst.get(&postback_target(cid, txid, status), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn outbox_count(inst: &Instance, state: &str) -> u64 {
    inst.admin_get("/api/stats").json()["outbox"][state]
        .as_u64()
        .unwrap_or(0)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `url` with [`PASSWORD`] as the user's password.
fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, host) = rest.split_once('@').expect("a user in the URL");
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

/// A config whose store is the PostgreSQL database at `url`.
fn postgres_config(dir: &Path, url: &str, source: &FakeSource) -> PathBuf {
    let path = dir.join("postgres.toml");
    write_config_for(
        &StoreTarget::SharedPostgres(url.to_string()),
        &path,
        free_addr(),
        free_addr(),
        "",
        "",
        &body(source),
    );
    path
}

fn migrate(config: &Path, sqlite: &Path) -> Output {
    Command::new(binary())
        .args(["migrate", "--config"])
        .arg(config)
        .arg("--from-sqlite")
        .arg(sqlite)
        .output()
        .expect("run clickstamp migrate")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A run that succeeded: its stdout, after checking that neither stream shows the URL.
fn succeeded(out: &Output, url: &str) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "migrate failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for printed in [&stdout, &stderr] {
        assert!(
            !printed.contains(PASSWORD) && !printed.contains(url),
            "the URL was printed:\n{printed}"
        );
    }
    stdout
}

/// The (read, inserted, already there) the import printed for each table.
fn printed_counts(stdout: &str) -> HashMap<String, (u64, u64, u64)> {
    stdout
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (table, numbers) = words.split_first()?;
            TABLES.iter().find(|(t, _)| t == table)?;
            let n = |i: usize| numbers.get(i)?.parse::<u64>().ok();
            Some((table.to_string(), (n(0)?, n(1)?, n(2)?)))
        })
        .collect()
}

/// The columns the SQLite file has in `table`.
fn sqlite_columns(db: &rusqlite::Connection, table: &str) -> Vec<String> {
    sqlite_rows(
        db,
        "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        &[&table],
    )
    .iter()
    .map(|r| r.get_string(0))
    .collect()
}

/// Every row of every table of the SQLite file, whole, in key order; with the columns
/// read, so PostgreSQL can be read the same way.
fn sqlite_dump(file: &Path) -> Vec<(&'static str, Vec<String>, Vec<Row>)> {
    let db =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store file");
    TABLES
        .iter()
        .map(|(table, key)| {
            let columns = sqlite_columns(&db, table);
            let sql = format!("SELECT {} FROM {table} ORDER BY {key}", columns.join(", "));
            let rows = sqlite_rows(&db, &sql, &[]);
            (*table, columns, rows)
        })
        .collect()
}

/// PostgreSQL's rows of the same tables and columns, in the same order.
fn postgres_dump(
    url: &str,
    like: &[(&'static str, Vec<String>, Vec<Row>)],
) -> Vec<(&'static str, Vec<String>, Vec<Row>)> {
    let mut client = connect(url);
    like.iter()
        .map(|(table, columns, _)| {
            let key = TABLES.iter().find(|(t, _)| t == table).unwrap().1;
            let sql = format!("SELECT {} FROM {table} ORDER BY {key}", columns.join(", "));
            let rows = postgres_rows(&mut client, &sql, &[]).expect("read PostgreSQL");
            (*table, columns.clone(), rows)
        })
        .collect()
}

fn assert_same_rows(
    postgres: &[(&'static str, Vec<String>, Vec<Row>)],
    sqlite: &[(&'static str, Vec<String>, Vec<Row>)],
) {
    for ((table, columns, got), (_, _, want)) in postgres.iter().zip(sqlite) {
        assert_eq!(got.len(), want.len(), "{table}: row count");
        for (got, want) in got.iter().zip(want) {
            assert_eq!(got, want, "{table} ({})", columns.join(", "));
        }
    }
}

/// Everything the import could change in PostgreSQL: every table whole (leases too),
/// the sequences, the import records.
fn postgres_state(url: &str) -> (Vec<Vec<Row>>, Vec<Row>) {
    let mut client = connect(url);
    let tables = TABLES
        .iter()
        .map(|(table, key)| {
            postgres_rows(
                &mut client,
                &format!("SELECT * FROM {table} ORDER BY {key}"),
                &[],
            )
            .unwrap()
        })
        .collect();
    let sequences = postgres_rows(
        &mut client,
        "SELECT sequencename::text, last_value FROM pg_sequences
         WHERE sequencename <> 'sqlite_imports_id_seq' ORDER BY 1",
        &[],
    )
    .unwrap();
    (tables, sequences)
}

/// How many import runs `sqlite_imports` records, and how many finished.
fn import_runs(url: &str) -> (i64, i64) {
    let row = connect(url)
        .query_one(
            "SELECT count(*), count(finished_at) FROM sqlite_imports",
            &[],
        )
        .expect("read sqlite_imports");
    (row.get(0), row.get(1))
}

fn max_id(url: &str, table: &str) -> i64 {
    connect(url)
        .query_one(&format!("SELECT COALESCE(max(id), 0) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn an_embedded_store_moves_row_for_row_idempotently_and_a_node_on_the_copy_answers_alike() {
    if skip_on_postgres("the import's source is an embedded SQLite store") {
        return;
    }
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let source = FakeSource::start();
    let mut embedded = Instance::start(&body(&source));

    // A: pending, then approved (a status change, relayed), then the same again.
    let a = click(&embedded, "SRC-A");
    assert_eq!(
        postback(&embedded, &a, "TA", "pending")["status"],
        "accepted"
    );
    assert_eq!(
        postback(&embedded, &a, "TA", "approved")["status"],
        "status_changed"
    );
    let duplicate_before = postback(&embedded, &a, "TA", "approved");
    assert_eq!(duplicate_before["status"], "duplicate");
    // C: a POST with a form body (the journal keeps the bytes).
    let c = click(&embedded, "SRC-C");
    let r = request(
        embedded.main,
        "POST",
        "/postback/cake",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("cid={c}&payout=2.25&txid=TC&secret={SECRET}").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    wait_until("three relays delivered", || {
        outbox_count(&embedded, "delivered") == 3
    });
    // B: the source is down, so its relay is dead-lettered after two attempts.
    source.set_mode(Mode::ServerError);
    let b = click(&embedded, "SRC-B");
    assert_eq!(
        postback(&embedded, &b, "TB", "approved")["status"],
        "accepted"
    );
    wait_until("a dead letter", || outbox_count(&embedded, "dead") == 1);
    source.set_mode(Mode::Ok);
    // D: pixel only: its relay waits for the grace period.
    let d = click(&embedded, "SRC-D");
    let r = request(
        embedded.main,
        "POST",
        "/px",
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "https://shop.example"),
        ],
        format!(r#"{{"cid":"{d}","value":7,"currency":"EUR"}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.json()["status"], "accepted", "{}", r.text());
    assert_eq!(outbox_count(&embedded, "pending"), 1);
    // A rejected postback, and a click that never went to the offer.
    let rejected = embedded.get(
        &format!("/postback/cake?cid={a}&payout=1&secret=wrong"),
        &[],
    );
    assert_eq!(rejected.json()["status"], "rejected", "{}", rejected.text());
    assert_eq!(embedded.get("/lp?tsid=SRC-E&cost=0.05", &[]).status, 200);

    let report_target = "/api/report?group_by=campaign,offer&from_ms=0&to_ms=4102444800000";
    let report_before = embedded.admin_get(report_target).json();
    let explained = |inst: &Instance| -> Vec<serde_json::Value> {
        [&a, &b, &c, &d]
            .iter()
            .map(|cid| {
                let r = inst.admin_get(&format!("/api/clicks/{cid}"));
                assert_eq!(r.status, 200, "{}", r.text());
                r.json()
            })
            .collect()
    };
    let explained_before = explained(&embedded);
    // Stopped hard: everything it answered is committed all the same.
    embedded.kill9();

    let file = embedded.db_path();
    let expected = sqlite_dump(&file);
    for (table, _, rows) in &expected {
        assert!(!rows.is_empty(), "the embedded store has no {table}");
    }
    let url = with_password(&cluster.create_database());
    let dir = TempDir::new("migrate");
    let config = postgres_config(&dir.0, &url, &source);

    // The first run copies everything.
    let stdout = succeeded(&migrate(&config, &file), &url);
    println!("--- first run ---\n{stdout}");
    let counts = printed_counts(&stdout);
    for (table, _, rows) in &expected {
        let n = rows.len() as u64;
        assert_eq!(counts.get(*table), Some(&(n, n, 0)), "{table}:\n{stdout}");
    }
    assert!(
        stdout.contains("earlier imports of this store: none"),
        "{stdout}"
    );
    assert_same_rows(&postgres_dump(&url, &expected), &expected);
    assert_eq!(import_runs(&url), (1, 1));

    // The second finds everything there and changes nothing.
    let before = postgres_state(&url);
    let stdout = succeeded(&migrate(&config, &file), &url);
    println!("--- second run ---\n{stdout}");
    let counts = printed_counts(&stdout);
    for (table, _, rows) in &expected {
        let n = rows.len() as u64;
        assert_eq!(counts.get(*table), Some(&(n, 0, n)), "{table}:\n{stdout}");
    }
    assert!(stdout.contains("everything was already there"), "{stdout}");
    assert!(stdout.contains("finished"), "{stdout}");
    assert_eq!(
        postgres_state(&url),
        before,
        "a second run changed PostgreSQL"
    );
    assert_eq!(import_runs(&url), (2, 2));

    // A run interrupted in the history (its last rows, and all of the outbox after it,
    // never written) is finished by the next.
    let history = expected
        .iter()
        .find(|(t, _, _)| *t == "conversion_history")
        .map_or(0, |(_, _, rows)| rows.len() as u64);
    let outbox = expected
        .iter()
        .find(|(t, _, _)| *t == "outbox")
        .map_or(0, |(_, _, rows)| rows.len() as u64);
    connect(&url)
        .batch_execute(
            "DELETE FROM conversion_history WHERE id > (SELECT min(id) FROM conversion_history);
             DELETE FROM outbox;
             UPDATE sqlite_imports SET finished_at = NULL;",
        )
        .unwrap();
    let stdout = succeeded(&migrate(&config, &file), &url);
    println!("--- after an interruption ---\n{stdout}");
    assert!(stdout.contains("interrupted; resuming"), "{stdout}");
    let counts = printed_counts(&stdout);
    assert_eq!(counts["conversion_history"], (history, history - 1, 1));
    assert_eq!(counts["outbox"], (outbox, outbox, 0));
    let clicks = counts["clicks"].0;
    assert_eq!(counts["clicks"], (clicks, 0, clicks));
    assert_same_rows(&postgres_dump(&url, &expected), &expected);
    assert_eq!(postgres_state(&url), before);

    // A node on the copy: the same report, the same explainer, the same duplicate.
    let migrated_conversions = max_id(&url, "conversions");
    let migrated_journal = max_id(&url, "postback_journal");
    let node = Instance::start_shared(&url, &body(&source), "");
    assert_eq!(node.admin_get(report_target).json(), report_before);
    assert_eq!(explained(&node), explained_before);
    let duplicate_after = postback(&node, &a, "TA", "approved");
    for field in [
        "status",
        "conversion_id",
        "conversion_status",
        "click_id",
        "event",
        "relayed",
    ] {
        assert_eq!(
            duplicate_after[field], duplicate_before[field],
            "{field}: {duplicate_after} vs {duplicate_before}"
        );
    }
    assert!(
        duplicate_after["journal_id"].as_i64().unwrap() > migrated_journal,
        "{duplicate_after}"
    );
    // A new conversion is numbered past the migrated ones.
    let f = click(&node, "SRC-F");
    let fresh = postback(&node, &f, "TF", "approved");
    assert_eq!(fresh["status"], "accepted", "{fresh}");
    assert!(
        fresh["conversion_id"].as_i64().unwrap() > migrated_conversions,
        "{fresh} (migrated up to {migrated_conversions})"
    );
    // The dead letter came along as one, and the pixel relay still waits.
    let dead = node.admin_get("/api/outbox?state=dead").json();
    assert_eq!(dead["entries"].as_array().unwrap().len(), 1, "{dead}");
    let pending = node.admin_get("/api/outbox?state=pending").json();
    assert!(
        pending["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["click_id"] == d.as_str()),
        "{pending}"
    );
}

#[test]
fn an_import_into_a_database_nodes_wrote_to_is_refused_and_so_are_wrong_arguments() {
    if skip_on_postgres("the import's source is an embedded SQLite store") {
        return;
    }
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let source = FakeSource::start();
    let mut embedded = Instance::start(&body(&source));
    let cid = click(&embedded, "SRC-1");
    assert_eq!(
        postback(&embedded, &cid, "T1", "approved")["status"],
        "accepted"
    );
    embedded.kill9();

    // A node has already taken conversions in the target.
    let url = cluster.create_database();
    let node = Instance::start_shared(&url, &body(&source), "");
    let theirs = click(&node, "SRC-2");
    assert_eq!(
        postback(&node, &theirs, "T2", "approved")["status"],
        "accepted"
    );
    drop(node);
    let before = postgres_state(&url);
    let dir = TempDir::new("migrate-refused");
    let config = postgres_config(&dir.0, &url, &source);

    let out = migrate(&config, &embedded.db_path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    println!("--- refused ---\n{stderr}");
    for needle in [
        "refusing to import",
        "1 postback_journal",
        "1 conversions",
        "no import of this SQLite store",
        "empty database",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert_eq!(postgres_state(&url), before, "a refused import wrote");
    assert_eq!(import_runs(&url), (0, 0));

    // The embedded store's own config names no PostgreSQL.
    let out = migrate(&embedded.config_path, &embedded.db_path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backend = \"postgres\""), "{stderr}");
    // A file that is not there, and one that is no store.
    let out = migrate(&config, &dir.0.join("missing.sqlite"));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    let out = migrate(&config, &config);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not a clickstamp store"), "{stderr}");
    assert_eq!(import_runs(&url), (0, 0));
}

/// Clicks in the synthetic store: enough chunks that the import can be killed midway.
const MANY_CLICKS: i64 = 300_000;

/// A store as an older clickstamp wrote it (no `cut`, no `replayed_ms`), with many
/// clicks and a few rows of everything else.
fn older_store(file: &Path) {
    let db = rusqlite::Connection::open(file).expect("create the store file");
    db.execute_batch(include_str!("../../proxy/src/store/sqlite/schema.sql"))
        .expect("the embedded schema");
    db.execute_batch(&format!(
        "ALTER TABLE postback_journal DROP COLUMN cut;
         ALTER TABLE outbox DROP COLUMN replayed_ms;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {MANY_CLICKS})
         INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id, cost, sub1, entry)
             SELECT printf('%032x', i), 1700000000000 + i, 'camp', 'src', 'S' || i, 0.01 * (i % 7),
                    CASE WHEN i % 3 = 0 THEN 'zone' END, 'landing'
             FROM n;
         INSERT INTO outbound_clicks VALUES
             (printf('%032x', 1), 1700000000001, 1700000000001000000, 'camp', 'offer1');
         INSERT INTO postback_journal (id, ts_ms, network_id, method, raw_query, raw_body, origin, outcome, click_id, conversion_id)
             VALUES (1, 1700000001000, 'cake', 'GET', 'cid=1', NULL, 's2s', 'accepted', printf('%032x', 1), 1),
                    (2, 1700000002000, 'cake', 'POST', '', X'6369643d32', 's2s', 'accepted', printf('%032x', 2), 2),
                    (3, 1700000003000, 'cake', 'GET', 'cid=x', NULL, 's2s', 'rejected', NULL, NULL);
         INSERT INTO conversions VALUES
             (1, 'k1', printf('%032x', 1), 'camp', 'src', 'cake', 'offer1', 'conversion', 'T1', 3.0, 'USD', 'approved', 's2s', 0, 1700000001000, 1700000001000),
             (2, 'k2', printf('%032x', 2), 'camp', 'src', 'cake', 'offer1', 'conversion', NULL, 1.5, 'USD', 'pending', 's2s', 2, 1700000002000, 1700000002500);
         INSERT INTO conversion_history VALUES
             (1, 1, 1700000001000, 'approved', 3.0, 's2s', 1),
             (2, 2, 1700000002000, 'pending', 1.5, 's2s', 2);
         INSERT INTO outbox (id, conversion_id, click_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms, last_status, last_error)
             VALUES (1, 1, printf('%032x', 1), 'src', 'conversion', 'http://127.0.0.1:9/a', 'dead', 8, 1700000009000, 1700000001000, 500, 'HTTP 500'),
                    (2, 2, printf('%032x', 2), 'src', 'conversion', 'http://127.0.0.1:9/b', 'pending', 1, 1700000005000, 1700000002000, NULL, 'connection refused');"
    ))
    .expect("fill the older store");
}

#[test]
fn a_killed_import_is_finished_by_the_next_run_and_an_older_store_is_copied_whole() {
    if skip_on_postgres("the import's source is an embedded SQLite store") {
        return;
    }
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let dir = TempDir::new("migrate-killed");
    let file = dir.0.join("older.sqlite");
    older_store(&file);
    let expected = sqlite_dump(&file);
    let source = FakeSource::start();
    let url = cluster.create_database();
    let config = postgres_config(&dir.0, &url, &source);

    let log = std::fs::File::create(dir.0.join("killed.log")).unwrap();
    let mut run = KillOnDrop(
        Command::new(binary())
            .args(["migrate", "--config"])
            .arg(&config)
            .arg("--from-sqlite")
            .arg(&file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn clickstamp migrate"),
    );
    let mut db = connect(&url);
    let copied = |db: &mut postgres::Client| -> i64 {
        // Before the migrations ran there is no table yet: nothing copied.
        db.query_one(
            "SELECT CASE WHEN to_regclass('clicks') IS NULL THEN 0
                    ELSE (SELECT count(*) FROM clicks) END",
            &[],
        )
        .map_or(0, |r| r.get(0))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed_at = loop {
        let n = copied(&mut db);
        if n > 0 && n < MANY_CLICKS {
            run.0.kill().expect("kill the import");
            run.0.wait().unwrap();
            break copied(&mut db);
        }
        if let Some(status) = run.0.try_wait().unwrap() {
            panic!(
                "the import ended ({status}) before it could be killed midway; log:\n{}",
                std::fs::read_to_string(dir.0.join("killed.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the import copied nothing");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(killed_at > 0 && killed_at < MANY_CLICKS, "{killed_at}");
    assert_eq!(
        import_runs(&url),
        (1, 0),
        "the killed run is recorded unfinished"
    );

    let stdout = succeeded(&migrate(&config, &file), &url);
    println!("--- after the kill ---\n{stdout}");
    assert!(stdout.contains("interrupted; resuming"), "{stdout}");
    let counts = printed_counts(&stdout);
    let total = MANY_CLICKS as u64;
    let there = killed_at as u64;
    assert_eq!(counts["clicks"], (total, total - there, there), "{stdout}");
    assert_eq!(counts["postback_journal"], (3, 3, 0), "{stdout}");
    assert_eq!(counts["outbox"], (2, 2, 0), "{stdout}");
    assert_same_rows(&postgres_dump(&url, &expected), &expected);
    assert_eq!(import_runs(&url), (2, 1));

    // The columns the older store lacked are empty, and the ids go on past its own.
    let mut db = connect(&url);
    let filled: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM postback_journal WHERE cut IS NOT NULL)
                  + (SELECT count(*) FROM outbox WHERE replayed_ms IS NOT NULL
                        OR lease_owner IS NOT NULL OR lease_until_ms IS NOT NULL)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(filled, 0);
    let next: Vec<i64> = [
        "postback_journal",
        "conversions",
        "conversion_history",
        "outbox",
    ]
    .iter()
    .map(|t| {
        db.query_one(
            &format!("SELECT nextval(pg_get_serial_sequence('{t}', 'id'))"),
            &[],
        )
        .unwrap()
        .get(0)
    })
    .collect();
    assert_eq!(next, [4, 3, 3, 3]);
    let next_seq: i64 = db
        .query_one("SELECT nextval('outbound_clicks_seq')", &[])
        .unwrap()
        .get(0);
    assert_eq!(next_seq, 1_700_000_000_001_000_001);
}
