//! Many nodes on one PostgreSQL database: what a load balancer in front of several
//! clickstamp nodes relies on. Each test starts its own throwaway cluster (skipping
//! loudly without PostgreSQL 15, failing under CI) and real nodes on it.

use clickstamp_e2e::instance::workspace_root;
use clickstamp_e2e::postgres::PgCluster;
use clickstamp_e2e::{request, FakeSource, Instance, Mode, Response};
use clickstamp_plugins::query::{first_value, parse_query};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "multinode-secret-123";

/// Campaign, offer, network and a source relaying to `source`; the outbox polls fast so
/// a node notices due work (another node's) within tens of milliseconds.
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

[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "src"
offers = [{{ offer = "offer1" }}]
origin = {{ landers = "{landers}" }}
attribution_window = "30d"

[outbox]
backoff_base = "100ms"
backoff_max = "300ms"
poll_interval = "100ms"
timeout = "1s"
"#,
        addr = source.addr,
        landers = landers.display()
    )
}

/// A cluster and `n` nodes sharing one database on it; `None` to skip.
struct Fleet {
    nodes: Vec<Instance>,
    url: String,
    cluster: PgCluster,
}

fn fleet(n: usize, source: &FakeSource, store_extra: &str) -> Option<Fleet> {
    let cluster = PgCluster::start()?;
    let url = cluster.create_database();
    let nodes = (0..n)
        .map(|_| Instance::start_shared(&url, &body(source), store_extra))
        .collect();
    Some(Fleet {
        nodes,
        url,
        cluster,
    })
}

impl Fleet {
    fn db(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    fn count(&self, sql: &str) -> i64 {
        self.db().query_one(sql, &[]).expect("count query").get(0)
    }
}

/// A visitor lands on `node` with the source's click id `tsid`; returns our click id
/// and the cookie.
fn land(node: &Instance, tsid: &str) -> (String, String) {
    let landing = node.get(&format!("/lp?tsid={tsid}&cost=0.05"), &[]);
    assert_eq!(landing.status, 200, "{}", landing.text());
    let cookie = landing.cookie().expect("click cookie");
    let cid = cookie.split('=').nth(1).expect("cookie value").to_string();
    (cid, cookie)
}

fn postback(node: &Instance, query: &str) -> Response {
    node.get(&format!("/postback/cake?{query}&secret={SECRET}"), &[])
}

fn admin_json(node: &Instance, target: &str) -> serde_json::Value {
    let r = node.admin_get(target);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    r.json()
}

#[test]
fn a_click_from_one_node_is_reused_and_attributed_on_the_others_and_all_answer_alike() {
    let source = FakeSource::start();
    let Some(f) = fleet(3, &source, "") else {
        return;
    };
    let (a, b, c) = (&f.nodes[0], &f.nodes[1], &f.nodes[2]);
    let (cid, _) = land(a, "SRC-X");
    // /go on B with the click in the query: B never saw it, it reads it from the database.
    let go = b.get(&format!("/go/offer1?click={cid}"), &[]);
    assert_eq!(go.status, 302, "{}", go.text());
    let location = go.header("location").unwrap();
    assert_eq!(
        first_value(&parse_query(location.split_once('?').unwrap().1), "s2"),
        Some(cid.as_str()),
        "B reused A's click instead of minting one: {location}"
    );
    assert_eq!(f.count("SELECT count(*) FROM clicks"), 1);
    // The postback on C is attributed to A's click and relayed with its source click id.
    let r = postback(c, &format!("cid={cid}&payout=4.5&txid=T1"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "accepted");
    let got = source.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("clickid=SRC-X") && got[0].contains("payout=4.5"),
        "{got:?}"
    );
    // Every node gives the same report, journal, outbox and click explainer.
    for target in [
        "/api/report?group_by=campaign,offer".to_string(),
        "/api/journal?limit=10".to_string(),
        format!("/api/clicks/{cid}"),
    ] {
        let answers: Vec<serde_json::Value> =
            f.nodes.iter().map(|n| admin_json(n, &target)).collect();
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{target} differs between nodes: {answers:#?}"
        );
    }
    let report = admin_json(a, "/api/report?group_by=offer");
    assert_eq!(report["totals"]["clicks"], 1);
    assert_eq!(report["totals"]["conversions"], 1);
    assert_eq!(
        report["rows"][0]["offer"], "offer1",
        "B's /go offer counts on A: {report}"
    );
    // The delivered relay shows on every node's outbox listing.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let outbox: Vec<_> = f
            .nodes
            .iter()
            .map(|n| admin_json(n, "/api/outbox")["entries"].clone())
            .collect();
        if outbox.iter().all(|o| o[0]["state"] == "delivered") {
            assert!(outbox.windows(2).all(|w| w[0] == w[1]), "{outbox:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "{outbox:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fifty_identical_postbacks_spread_over_three_nodes_are_one_conversion_and_one_relay() {
    let source = FakeSource::start();
    let Some(f) = fleet(3, &source, "") else {
        return;
    };
    let (cid, _) = land(&f.nodes[0], "SRC-50");
    let query = format!("cid={cid}&payout=2.5&txid=ORDER-1");
    let start = Arc::new(Barrier::new(50));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for i in 0..50 {
            let (node, start, outcomes, query) =
                (&f.nodes[i % 3], start.clone(), outcomes.clone(), &query);
            s.spawn(move || {
                start.wait();
                let r = postback(node, query);
                outcomes.lock().unwrap().push((
                    r.status,
                    r.json()["status"].as_str().unwrap_or("").to_string(),
                ));
            });
        }
    });
    let outcomes = outcomes.lock().unwrap().clone();
    let mut tally: HashMap<String, usize> = HashMap::new();
    for (status, outcome) in &outcomes {
        assert_eq!(*status, 200, "{outcomes:?}");
        *tally.entry(outcome.clone()).or_default() += 1;
    }
    assert_eq!(tally.get("accepted"), Some(&1), "{tally:?}");
    assert_eq!(tally.get("duplicate"), Some(&49), "{tally:?}");
    assert_eq!(f.count("SELECT count(*) FROM conversions"), 1);
    assert_eq!(f.count("SELECT count(*) FROM postback_journal"), 50);
    assert_eq!(f.count("SELECT max(duplicates)::int8 FROM conversions"), 49);
    assert_eq!(f.count("SELECT count(*) FROM outbox"), 1);
    source.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    std::thread::sleep(Duration::from_millis(500)); // a second relay would arrive by now
    assert_eq!(source.received().len(), 1, "{:?}", source.received());
}

/// The txids the source was sent, with how many times each.
fn relayed_txids(received: &[String]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in received {
        if let Some(txid) = r
            .split_once('?')
            .and_then(|(_, q)| first_value(&parse_query(q), "txid").map(str::to_string))
        {
            *seen.entry(txid).or_insert(0) += 1;
        }
    }
    seen
}

/// Wait until every outbox entry is delivered.
fn wait_all_delivered(f: &Fleet, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while f.count("SELECT count(*) FROM outbox WHERE state <> 'delivered'") > 0 {
        assert!(
            Instant::now() < deadline,
            "undelivered: {:?}",
            f.db()
                .query("SELECT id, state, attempts, lease_owner, last_error FROM outbox WHERE state <> 'delivered'", &[])
                .unwrap()
                .iter()
                .map(|r| format!("{} {} {} {:?} {:?}", r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, i32>(2), r.get::<_, Option<String>>(3), r.get::<_, Option<String>>(4)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn relays_of_a_node_killed_mid_delivery_are_delivered_once_by_another_node() {
    let source = FakeSource::start();
    source.set_mode(Mode::Hang);
    // Short leases, so the test does not wait minutes for the dead node's to run out.
    let Some(mut f) = fleet(2, &source, "outbox_lease = \"3s\"") else {
        return;
    };
    let mut txids = Vec::new();
    for i in 0..10 {
        let (cid, _) = land(&f.nodes[0], &format!("SRC-K{i}"));
        let txid = format!("K-{i}");
        let r = postback(&f.nodes[0], &format!("cid={cid}&payout=1&txid={txid}"));
        assert_eq!(r.status, 200, "{}", r.text());
        txids.push(txid);
    }
    // The accepting node is woken by its own relays and claims them at once; the source
    // holds every delivery open.
    let held = format!(
        "SELECT count(*) FROM outbox WHERE lease_owner LIKE '%/{}'",
        f.nodes[0].main
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.count(&held) == 0 {
        assert!(Instant::now() < deadline, "node 0 never claimed its relays");
        std::thread::sleep(Duration::from_millis(20));
    }
    f.nodes[0].kill9();
    let before = source.received().len();
    source.set_mode(Mode::Ok);
    wait_all_delivered(&f, Duration::from_secs(30));
    let answered = relayed_txids(&source.received()[before..]);
    for txid in &txids {
        assert_eq!(
            answered.get(txid),
            Some(&1),
            "{txid} after the kill: {answered:?}"
        );
    }
}

#[test]
fn a_source_down_then_back_gets_each_relay_exactly_once_from_three_nodes() {
    let source = FakeSource::start();
    source.set_mode(Mode::Refuse);
    let Some(f) = fleet(3, &source, "") else {
        return;
    };
    let mut txids = Vec::new();
    for i in 0..21 {
        let node = &f.nodes[i % 3];
        let (cid, _) = land(node, &format!("SRC-D{i}"));
        let txid = format!("D-{i}");
        assert_eq!(
            postback(node, &format!("cid={cid}&payout=1&txid={txid}")).status,
            200
        );
        txids.push(txid);
    }
    // Every node retries while the source refuses connections.
    std::thread::sleep(Duration::from_millis(800));
    assert!(f.count("SELECT count(*) FROM outbox WHERE attempts > 0") > 0);
    source.set_mode(Mode::Ok);
    wait_all_delivered(&f, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let got = relayed_txids(&source.received());
    for txid in &txids {
        assert_eq!(got.get(txid), Some(&1), "{txid}: {got:?}");
    }
    assert_eq!(got.len(), txids.len(), "{got:?}");
}

/// Load on `nodes` from a few threads until `stop`: landings (acknowledged clicks by
/// cookie) and postbacks (acknowledged txids), each recorded only when answered 200.
struct Load {
    clicks: Mutex<HashSet<String>>,
    txids: Mutex<HashSet<String>>,
    refused: Mutex<usize>,
    stop: std::sync::atomic::AtomicBool,
}

impl Load {
    fn new() -> Arc<Load> {
        Arc::new(Load {
            clicks: Mutex::new(HashSet::new()),
            txids: Mutex::new(HashSet::new()),
            refused: Mutex::new(0),
            stop: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// One worker's loop against `addr` (a node's main listener), bounded to `max`.
    fn run(&self, addr: std::net::SocketAddr, worker: usize, max: usize) {
        for i in 0..max {
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let Ok(landing) = request(addr, "GET", &format!("/lp?tsid=L{worker}-{i}"), &[], b"")
            else {
                continue;
            };
            if landing.status != 200 {
                *self.refused.lock().unwrap() += 1;
                continue;
            }
            let Some(cid) = landing
                .cookie()
                .and_then(|c| c.split('=').nth(1).map(str::to_string))
            else {
                continue;
            };
            self.clicks.lock().unwrap().insert(cid.clone());
            let txid = format!("T{worker}-{i}");
            match request(
                addr,
                "GET",
                &format!("/postback/cake?cid={cid}&payout=1&txid={txid}&secret={SECRET}"),
                &[],
                b"",
            ) {
                Ok(r) if r.status == 200 => {
                    self.txids.lock().unwrap().insert(txid);
                }
                Ok(_) => *self.refused.lock().unwrap() += 1,
                Err(_) => {}
            }
        }
    }
}

/// Acknowledged clicks and txids missing from the database `db`.
fn missing(db: &mut postgres::Client, load: &Load) -> (Vec<String>, Vec<String>) {
    let stored: HashSet<String> = db
        .query("SELECT click_id FROM clicks", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let txids: HashSet<String> = db
        .query("SELECT txid FROM conversions WHERE txid IS NOT NULL", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (
        load.clicks
            .lock()
            .unwrap()
            .difference(&stored)
            .cloned()
            .collect(),
        load.txids
            .lock()
            .unwrap()
            .difference(&txids)
            .cloned()
            .collect(),
    )
}

#[test]
fn a_node_killed_under_load_loses_nothing_it_answered() {
    let source = FakeSource::start();
    let Some(mut f) = fleet(2, &source, "") else {
        return;
    };
    let load = Load::new();
    let addr = f.nodes[0].main;
    std::thread::scope(|s| {
        for w in 0..4 {
            let load = load.clone();
            s.spawn(move || load.run(addr, w, 2_000));
        }
        std::thread::sleep(Duration::from_millis(1_500));
        f.nodes[0].kill9();
        load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let (clicks, txids) = missing(&mut f.db(), &load);
    assert!(
        load.txids.lock().unwrap().len() > 50,
        "too little load to mean anything: {} postbacks",
        load.txids.lock().unwrap().len()
    );
    assert!(clicks.is_empty(), "acknowledged clicks lost: {clicks:?}");
    assert!(txids.is_empty(), "acknowledged postbacks lost: {txids:?}");
    // The surviving node still serves.
    let (cid, _) = land(&f.nodes[1], "AFTER");
    assert_eq!(
        postback(&f.nodes[1], &format!("cid={cid}&payout=1&txid=AFTER")).status,
        200
    );
}

#[test]
fn restarting_postgres_under_load_loses_nothing_acknowledged_and_the_nodes_recover() {
    let source = FakeSource::start();
    let Some(f) = fleet(2, &source, "connect_timeout = \"1s\"") else {
        return;
    };
    let load = Load::new();
    let addrs = [f.nodes[0].main, f.nodes[1].main];
    std::thread::scope(|s| {
        for w in 0..4 {
            let (load, addr) = (load.clone(), addrs[w % 2]);
            s.spawn(move || load.run(addr, w, 5_000));
        }
        std::thread::sleep(Duration::from_millis(800));
        f.cluster.stop();
        std::thread::sleep(Duration::from_millis(1_500));
        f.cluster.start_again();
        std::thread::sleep(Duration::from_millis(1_500));
        load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // Clicks taken during the outage were spooled and are forwarded by now (or soon).
    for node in &f.nodes {
        let depth = node.metric("clickstamp_store_spool_depth");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut d = depth;
        while d > 0.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            d = node.metric("clickstamp_store_spool_depth");
        }
        assert_eq!(d, 0.0, "spool not drained; log:\n{}", node.log());
    }
    let (clicks, txids) = missing(&mut f.db(), &load);
    assert!(clicks.is_empty(), "acknowledged clicks lost: {clicks:?}");
    assert!(txids.is_empty(), "acknowledged postbacks lost: {txids:?}");
    let spooled: f64 = f
        .nodes
        .iter()
        .map(|n| n.metric("clickstamp_store_spooled_total"))
        .sum();
    let unavailable: f64 = f
        .nodes
        .iter()
        .map(|n| n.metric("clickstamp_store_unavailable_total"))
        .sum();
    assert!(
        spooled > 0.0,
        "no click was taken during the outage: the test proved nothing"
    );
    assert!(unavailable > 0.0);
    assert!(
        *load.refused.lock().unwrap() > 0,
        "no postback was refused during the outage"
    );
    // No restart of the nodes: both answer postbacks again.
    for (i, node) in f.nodes.iter().enumerate() {
        let (cid, _) = land(node, &format!("BACK{i}"));
        let r = postback(node, &format!("cid={cid}&payout=1&txid=BACK{i}"));
        assert_eq!(r.status, 200, "node {i}: {}", r.text());
    }
}

#[test]
fn failing_over_to_a_synchronous_standby_keeps_every_acknowledged_write() {
    let Some(primary) = PgCluster::start() else {
        return;
    };
    let standby = primary.start_synchronous_standby();
    let primary_url = primary.create_database();
    let database = primary_url
        .rsplit('/')
        .next()
        .expect("a database name")
        .to_string();
    // Both hosts; libpq's rule picks whichever accepts writes.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let source = FakeSource::start();
    let node = Instance::start_shared(&url, &body(&source), "connect_timeout = \"1s\"");
    let load = Load::new();
    let addr = node.main;
    std::thread::scope(|s| {
        for w in 0..4 {
            let load = load.clone();
            s.spawn(move || load.run(addr, w, 5_000));
        }
        std::thread::sleep(Duration::from_millis(1_000));
        primary.kill9();
        standby.promote();
        std::thread::sleep(Duration::from_millis(2_000));
        load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.metric("clickstamp_store_spool_depth") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "spool not drained; log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the promoted standby holds is what the node acknowledged.
    let mut db = postgres::Client::connect(&standby.url(&database), postgres::NoTls)
        .expect("connect to the promoted standby");
    let acked = load.txids.lock().unwrap().len();
    assert!(acked > 20, "too little load: {acked} postbacks");
    let (lost_clicks, lost_txids) = missing(&mut db, &load);
    assert!(
        lost_clicks.is_empty(),
        "acknowledged clicks lost: {lost_clicks:?}"
    );
    assert!(
        lost_txids.is_empty(),
        "acknowledged postbacks lost: {lost_txids:?}"
    );
    // And the node writes to the promoted server without a restart.
    let (cid, _) = land(&node, "AFTER-FAILOVER");
    let r = postback(&node, &format!("cid={cid}&payout=1&txid=AFTER-FAILOVER"));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), node.log());
}

#[test]
fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let source = FakeSource::start();
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let url = cluster.create_database();
    // Three nodes on an empty database at the same moment: each waits for the
    // migration lock, one applies the schema, the others find it applied.
    let nodes: Vec<Instance> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Instance::start_shared(&url, &body(&source), "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Every migration this binary has (1: the store, 2: the analytics export queue,
    // 3: destinations, ...), each once: its latest is what the nodes wrote.
    let latest = *versions.last().expect("migrations applied");
    assert!(latest >= 3, "{versions:?}");
    assert_eq!(
        versions,
        (1..=latest).collect::<Vec<i32>>(),
        "each migration applied once"
    );
    let (cid, _) = land(&nodes[2], "MIGRATED");
    assert_eq!(
        postback(&nodes[0], &format!("cid={cid}&payout=1&txid=M1")).status,
        200
    );
    drop(nodes);

    // A newer clickstamp migrated this database: this one must not write to it.
    db.batch_execute(
        "INSERT INTO schema_migrations (version, description) VALUES (99, 'from the future')",
    )
    .unwrap();
    let dir = clickstamp_e2e::TempDir::new("newer-schema");
    let config = dir.0.join("clickstamp.toml");
    clickstamp_e2e::instance::write_config_for(
        &clickstamp_e2e::store::StoreTarget::SharedPostgres(url.clone()),
        &config,
        clickstamp_e2e::instance::free_addr(),
        clickstamp_e2e::instance::free_addr(),
        "",
        "",
        &body(&source),
    );
    let out = std::process::Command::new(clickstamp_e2e::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run clickstamp serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("version 99, newer than this binary's {latest}")),
        "{stderr}"
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made by `openssl` in `dir`;
/// `None` (skipping) without openssl.
fn test_certificates(
    dir: &std::path::Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    clickstamp_e2e::require_program("openssl")?;
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=clickstamp e2e CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    Some((
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    ))
}

#[test]
fn with_sslmode_require_the_node_talks_tls_and_refuses_a_server_it_cannot_verify() {
    let source = FakeSource::start();
    let certs = clickstamp_e2e::TempDir::new("pg-tls");
    let Some((ca, cert, key)) = test_certificates(&certs.0) else {
        return;
    };
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    cluster.enable_tls(&cert, &key);
    let url = format!("{}?sslmode=require", cluster.create_database());
    let node = Instance::start_shared(
        &url,
        &body(&source),
        &format!("tls_ca_file = \"{}\"", ca.display()),
    );
    let (cid, _) = land(&node, "TLS");
    let r = postback(&node, &format!("cid={cid}&payout=1&txid=TLS-1"));
    assert_eq!(r.status, 200, "{}", r.text());
    // Every connection the node holds is encrypted.
    let mut db =
        postgres::Client::connect(&url.replace("?sslmode=require", ""), postgres::NoTls).unwrap();
    let (tls, plain): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'clickstamp'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        tls > 0 && plain == 0,
        "{tls} TLS and {plain} plain connections"
    );

    // Without the CA the server's certificate cannot be verified: the node does not
    // start, rather than talk to a server it cannot trust.
    let dir = clickstamp_e2e::TempDir::new("pg-tls-unverified");
    let config = dir.0.join("clickstamp.toml");
    clickstamp_e2e::instance::write_config_for(
        &clickstamp_e2e::store::StoreTarget::SharedPostgres(url.clone()),
        &config,
        clickstamp_e2e::instance::free_addr(),
        clickstamp_e2e::instance::free_addr(),
        "",
        "connect_timeout = \"2s\"",
        &body(&source),
    );
    let out = std::process::Command::new(clickstamp_e2e::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run clickstamp serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}
