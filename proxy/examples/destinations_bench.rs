//! Destinations benchmark: conversions delivered per second to a Meta Conversions API
//! fake, batched (up to 1,000 events a request) against one request per conversion,
//! in the same run, with the worker's CPU time per conversion.
//!
//! For each mode it opens a fresh embedded store with the real store code, writes
//! `--conversions` conversions through the real postback write path (so each gets its
//! destination outbox entry as in production, its click beside it), then starts the
//! real destination worker and times it until the outbox is empty: conversions per
//! second, requests sent, and the CPU time this process spent per conversion (user +
//! system over all its threads, from `/proc/self/stat`: the worker, its HTTP client
//! and the store's writer). The fake runs in a child process (this same binary with
//! `--fake-meta`), so its parsing is not counted; it checks each request's path,
//! token and events as the e2e fake does, and answers `{"events_received": n}`.
//!
//! ```text
//! bench/destinations [--conversions N] [--concurrency N]
//! cargo run --release -p clickstamp --example destinations_bench -- \
//!     [--conversions 20000] [--concurrency 4] [--json FILE]
//! ```

use clickstamp::config::Config;
use clickstamp::metrics::Metrics;
use clickstamp::outbox::destinations::DestinationWorker;
use clickstamp::store::sqlite::SqliteStore;
use clickstamp::store::{
    ConversionCandidate, DestinationTarget, JournalEntry, PostbackWrite, Store, Verdict, WriteOp,
};
use clickstamp::tracker::Tracker;
use clickstamp_plugins::dedup::dedup_key;
use pingora::services::background::BackgroundService;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
const PIXEL: &str = "1234567890";

struct Args {
    conversions: u64,
    concurrency: usize,
    json: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        conversions: 20_000,
        concurrency: 4,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--conversions" => a.conversions = value().parse().expect("--conversions N"),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency N"),
            "--json" => a.json = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The fake Meta: `--fake-meta` prints its port, then serves until stdin closes.
fn fake_meta() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let events = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    {
        let (events, requests) = (events.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (events, requests) = (events.clone(), requests.clone());
                std::thread::spawn(move || serve(stream, &events, &requests));
            }
        });
    }
    // One line per command on stdin: anything prints the counters; EOF ends.
    for _ in std::io::stdin().lock().lines() {
        println!(
            "{} {}",
            requests.load(Ordering::SeqCst),
            events.load(Ordering::SeqCst)
        );
        std::io::stdout().flush().unwrap();
    }
}

fn serve(stream: TcpStream, events: &AtomicU64, requests: &AtomicU64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let data = parsed["data"].as_array().map_or(0, Vec::len);
        let ok = path == format!("/v21.0/{PIXEL}/events")
            && parsed["access_token"] == TOKEN
            && (1..=1000).contains(&data)
            && parsed["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["event_id"].is_string() && e["event_time"].is_u64());
        let answer = if ok {
            requests.fetch_add(1, Ordering::SeqCst);
            events.fetch_add(data as u64, Ordering::SeqCst);
            format!("{{\"events_received\":{data},\"messages\":[],\"fbtrace_id\":\"b\"}}")
        } else {
            r#"{"error":{"message":"bad request","type":"OAuthException","code":100}}"#.into()
        };
        let status = if ok { "200 OK" } else { "400 Bad Request" };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

struct Fake {
    child: Child,
    port: u16,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Fake {
    fn start() -> Fake {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--fake-meta")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the fake");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap().parse().unwrap();
        Fake { child, port, lines }
    }

    /// (requests, events) accepted so far.
    fn counters(&mut self) -> (u64, u64) {
        writeln!(self.child.stdin.as_mut().unwrap(), "?").unwrap();
        let line = self.lines.next().unwrap().unwrap();
        let mut parts = line.split(' ').map(|n| n.parse::<u64>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of this process, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

fn config(dir: &Path, port: u16, batch_size: usize, concurrency: usize) -> Config {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:1"
admin_listen = "127.0.0.1:2"
[store]
path = "{store}"
[secrets]
click_id_key = "bench-click-id-key-0123456789abcdef"
admin_token = "bench-admin-token-0123456789"
[[networks]]
id = "cake"
[[traffic_sources]]
id = "meta"
kind = "meta"
[[offers]]
id = "offer"
url = "https://network.example/offer"
network = "cake"
[[campaigns]]
id = "camp"
path = "/lp"
traffic_source = "meta"
offers = [{{ offer = "offer" }}]
origin = {{ upstream = "http://127.0.0.1:3" }}
[outbox]
backoff_base = "50ms"
backoff_max = "1s"
[[destinations]]
id = "meta-bench"
kind = "meta_capi"
source = "meta"
endpoint = "http://127.0.0.1:{port}"
pixel_id = "{PIXEL}"
access_token_file = "{token}"
batch_size = {batch_size}
linger = "100ms"
concurrency = {concurrency}
"#,
        store = dir.join("store.sqlite").display(),
        token = token.display(),
    );
    let path = dir.join("clickstamp.toml");
    std::fs::write(&path, text).unwrap();
    clickstamp::config::load(&path).unwrap_or_else(|e| panic!("bench config: {e}"))
}

/// Clicks (through the store file's own connection: the click path is not measured)
/// and their conversions through the real postback write path.
async fn fill(store: &SqliteStore, db: &Path, n: u64) {
    let now = Tracker::now_ms();
    // Time-ordered like the real ones: 48 bits of milliseconds, version 7, variant 8.
    let click_id = |i: u64| format!("{:012x}7000{:016x}", now & 0xffff_ffff_ffff, (8 << 60) | i);
    {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..n.div_ceil(1000) {
            conn.execute(
                "INSERT OR IGNORE INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id, source_click_param, ip, user_agent, entry)
                 VALUES (?1, ?2, 'camp', 'meta', ?3, 'fbclid', '203.0.113.7', 'Mozilla/5.0 (bench)', 'landing')",
                rusqlite::params![click_id(i), now as i64, format!("IwAR-bench-{i}")],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let target = DestinationTarget {
        id: "meta-bench".into(),
        status_changes: false,
    };
    let mut ops = Vec::new();
    for i in 0..n {
        let cid = click_id(i / 1000);
        let txid = format!("BENCH-{i}");
        ops.push(WriteOp::Postback(Box::new(PostbackWrite {
            journal: JournalEntry {
                ts_ms: now,
                network_id: "cake".into(),
                method: "GET".into(),
                remote_ip: None,
                raw_query: format!("cid={cid}&txid={txid}"),
                raw_body: Vec::new(),
                content_type: None,
                origin: "s2s",
                replay_of: None,
                cut: None,
            },
            verdict: Verdict::Convert(Box::new(ConversionCandidate {
                dedup_key: dedup_key(&cid, "purchase", Some(&txid)),
                click_id: cid,
                campaign_id: "camp".into(),
                source_id: "meta".into(),
                network_id: Some("cake".into()),
                offer_id: Some("offer".into()),
                event: "purchase".into(),
                txid: Some(txid),
                payout: Some(2.5),
                currency: Some("USD".into()),
                status: "approved",
                origin: "s2s",
                relay_url: None,
                relay_status_changes: false,
                relay_not_before_ms: None,
                destinations: vec![target.clone()],
            })),
        })));
        if ops.len() == 1000 {
            store.write(std::mem::take(&mut ops)).await.unwrap();
        }
    }
    if !ops.is_empty() {
        store.write(ops).await.unwrap();
    }
}

struct Run {
    mode: &'static str,
    seconds: f64,
    per_second: f64,
    requests: u64,
    cpu_us_per_conversion: f64,
}

async fn run(mode: &'static str, batch_size: usize, a: &Args, fake: &mut Fake) -> Run {
    let dir = std::env::temp_dir().join(format!(
        "clickstamp-destinations-bench-{}-{mode}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = Arc::new(config(&dir, fake.port, batch_size, a.concurrency));
    let metrics = Arc::new(Metrics::new());
    let store =
        Arc::new(SqliteStore::open(&config.store, metrics.clone()).expect("open the store"));
    fill(&store, &dir.join("store.sqlite"), a.conversions).await;
    let (requests_before, events_before) = fake.counters();
    let tracker = Arc::new(Tracker::new(config, store.clone(), metrics));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let cpu_before = cpu_time();
    let started = Instant::now();
    let worker = tokio::spawn(async move { DestinationWorker::new(tracker).start(shutdown).await });
    loop {
        let backlog = store.outbox_backlog().await.unwrap();
        if backlog.pending == 0 {
            break;
        }
        assert_eq!(backlog.dead, 0, "{mode}: entries were dead-lettered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu_before;
    let _ = stop.send(true);
    let _ = worker.await;
    let (requests, events) = fake.counters();
    assert_eq!(
        events - events_before,
        a.conversions,
        "{mode}: every conversion arrived"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        mode,
        seconds,
        per_second: a.conversions as f64 / seconds,
        requests: requests - requests_before,
        cpu_us_per_conversion: cpu.as_secs_f64() * 1e6 / a.conversions as f64,
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--fake-meta") {
        fake_meta();
        return;
    }
    let a = args();
    let mut fake = Fake::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runs = rt.block_on(async {
        let batched = run("batched", 1000, &a, &mut fake).await;
        let single = run("one per request", 1, &a, &mut fake).await;
        vec![batched, single]
    });
    println!(
        "{} conversions to the Meta fake, concurrency {}:",
        a.conversions, a.concurrency
    );
    for r in &runs {
        println!(
            "  {:<16} {:>9.0} conversions/s  {:>6.2} s  {:>6} requests  {:>8.1} µs CPU/conversion",
            r.mode, r.per_second, r.seconds, r.requests, r.cpu_us_per_conversion
        );
    }
    println!(
        "  batching: {:.1}× the throughput, {:.1}× less CPU per conversion",
        runs[0].per_second / runs[1].per_second,
        runs[1].cpu_us_per_conversion / runs[0].cpu_us_per_conversion
    );
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "conversions": a.conversions,
            "concurrency": a.concurrency,
            "runs": runs.iter().map(|r| serde_json::json!({
                "mode": r.mode, "seconds": r.seconds, "conversions_per_second": r.per_second,
                "requests": r.requests, "cpu_us_per_conversion": r.cpu_us_per_conversion,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
}
