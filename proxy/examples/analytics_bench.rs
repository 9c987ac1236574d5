//! Analytics benchmark: the same reports read from the SQLite store and from ClickHouse,
//! on the same large data set, with the export between them.
//!
//! 1. **Fill.** Opens a fresh store with the real store code (so the file has the
//!    current schema), then bulk-inserts, through its own connection, clicks spread
//!    over the last `--days` days with a time-ordered key, a `/go` (outbound click) for
//!    about 40% of them, and `--conversions` conversions on random clicks. Cardinalities
//!    are those of a mid-sized tracker: 20 campaigns (Zipf-distributed volume) on 5
//!    traffic sources, 2–3 offers each on 5 networks, 500 `sub1` placements (zone ids
//!    belong to a traffic source, so 100 per source, Zipf-distributed within it as
//!    placement traffic is), 50 `sub2` creatives, `sub3` mostly empty, and one visitor
//!    (IP, User-Agent) per five clicks, so unique clicks are not simply clicks. The data
//!    is generated from a fixed seed: every run builds the same store.
//! 2. **Export.** Runs the real backfill (`clickstamp analytics backfill --restart`:
//!    [`clickstamp::analytics::backfill::run`]) into an empty ClickHouse database and
//!    times it: rows per second, and the CPU time this process spent per row (user +
//!    system over all its threads, from `/proc/self/stat`), plus the ClickHouse server's
//!    CPU per row when `--clickhouse-pid` names it. Then it waits for ClickHouse's
//!    background merges to settle, as they would have long before anyone reads a
//!    backfilled history.
//! 3. **Reports.** Times totals, by campaign, and by campaign × sub1 × day, all over
//!    the whole span, on the store (as `GET /api/report?source=store` reads it: a fresh
//!    read-only connection per report) and on ClickHouse (as `source=clickhouse` does),
//!    in interleaved runs after one warm-up each, and prints the medians and their
//!    ratio. The warm-up reports of the two backends must be identical, rows and
//!    totals: on a mismatch it stops with a diff, so this is also a correctness check
//!    on big data. Where the server keeps a query log (`bench/analytics` turns it on),
//!    it also splits ClickHouse's time into the query's own duration on the server and
//!    the client's rest (transfer, parsing, sorting), with rows read, answer size and
//!    memory.
//!
//! It ends with one summary line against the targets (campaign × sub1 × day on
//! ClickHouse under 1 s, and at least 20× faster than the store). `bench/analytics`
//! builds it, starts a throwaway ClickHouse server and runs it:
//!
//! ```text
//! bench/analytics [--clicks N] [--conversions N] [--days N] [--runs N] [--keep DIR]
//! cargo run --release -p clickstamp --example analytics_bench -- \
//!     --clickhouse http://127.0.0.1:8123 [--clickhouse-pid PID] [--dir DIR] \
//!     [--clicks 10000000] [--conversions 300000] [--days 90] [--runs 5] [--json FILE]
//! ```
//!
//! It needs an empty (or absent) database `clickstamp_bench` on that server; `--dir`
//! (default: a temp directory, removed afterwards) holds the config and the store.

use clickstamp::analytics::{backfill, ClickHouse};
use clickstamp::report::{Catalog, Figures, ReportParams, ReportRow};
use clickstamp_plugins::dedup::dedup_key;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 86_400_000;
const CAMPAIGNS: usize = 20;
const SOURCES: usize = 5;
const NETWORKS: usize = 5;
/// Placements (`sub1` zone ids) per traffic source: 500 in all.
const PLACEMENTS_PER_SOURCE: usize = 100;
const SUB2_CREATIVES: usize = 50;
const SUB3_VALUES: usize = 10;
/// One visitor per this many clicks.
const CLICKS_PER_VISITOR: u64 = 5;
/// Clicks per fill transaction: large enough that commits cost nothing, small enough
/// that the WAL stays a modest size between checkpoints.
const FILL_BATCH: u64 = 200_000;
const DATABASE: &str = "clickstamp_bench";
const SEED: u64 = 0x00c1_1c45_7a3b;

/// The reports timed, as `GET /api/report` query strings (the time range is added).
const REPORTS: [(&str, &str); 3] = [
    ("totals", ""),
    ("by campaign", "group_by=campaign"),
    ("by campaign × sub1 × day", "group_by=campaign,sub1,day"),
];

struct Args {
    clicks: u64,
    conversions: u64,
    days: i64,
    runs: usize,
    clickhouse_url: String,
    clickhouse_pid: Option<u32>,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        clicks: 10_000_000,
        conversions: 300_000,
        days: 90,
        runs: 5,
        clickhouse_url: String::new(),
        clickhouse_pid: None,
        dir: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value; see the doc comment"));
        let number = |what: &str| -> u64 {
            value
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{flag} {what}: {value:?} is not a number"))
        };
        match flag.as_str() {
            "--clicks" => a.clicks = number("N").max(1),
            "--conversions" => a.conversions = number("N"),
            "--days" => a.days = number("N").max(1) as i64,
            "--runs" => a.runs = number("N").max(1) as usize,
            "--clickhouse" => a.clickhouse_url = value,
            "--clickhouse-pid" => a.clickhouse_pid = Some(number("PID") as u32),
            "--dir" => a.dir = Some(PathBuf::from(value)),
            "--json" => a.json = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}; see the doc comment"),
        }
    }
    assert!(
        !a.clickhouse_url.is_empty(),
        "--clickhouse URL (ClickHouse's HTTP interface) is required"
    );
    a.conversions = a.conversions.min(a.clicks);
    a
}

/// The campaigns, their offers and the offers' networks, as the generated rows use them.
struct Layout {
    /// Per campaign: its offers.
    offers: Vec<Vec<String>>,
    networks: Vec<String>,
}

impl Layout {
    fn new() -> Layout {
        Layout {
            offers: (0..CAMPAIGNS)
                .map(|c| (0..2 + c % 2).map(|o| format!("offer-{c}-{o}")).collect())
                .collect(),
            networks: (0..NETWORKS).map(|n| format!("network-{n}")).collect(),
        }
    }

    fn network_of(&self, campaign: usize, offer: usize) -> &str {
        &self.networks[(campaign + offer) % NETWORKS]
    }

    /// What a report needs to place clicks under offers and networks. Every campaign
    /// has several offers, so none has a sole offer to fall back to.
    fn catalog(&self) -> Catalog {
        Catalog {
            sole_offers: Vec::new(),
            offer_networks: self
                .offers
                .iter()
                .enumerate()
                .flat_map(|(c, offers)| {
                    offers
                        .iter()
                        .enumerate()
                        .map(move |(o, offer)| (offer.clone(), self.network_of(c, o).to_string()))
                })
                .collect(),
        }
    }
}

/// Draws `0..n` with probability proportional to `1 / (k + 1)^exponent`: a few values
/// take most of the mass and a long tail the rest, as placements and campaigns do.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(exponent);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut SmallRng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.cumulative.len() - 1)
    }
}

/// A fixed mixing of a visitor number into well-spread bits (SplitMix64's finaliser),
/// so a visitor keeps the same IP and User-Agent on every click.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn visitor_ip(visitor: u64) -> String {
    let bits = mix(visitor);
    format!(
        "{}.{}.{}.{}",
        1 + (bits % 223),
        (bits >> 8) & 0xff,
        (bits >> 16) & 0xff,
        1 + ((bits >> 24) % 254)
    )
}

/// A few dozen realistic User-Agent strings (desktop and mobile browsers over several
/// versions); a visitor keeps one.
fn user_agents() -> Vec<String> {
    let platforms = [
        ("Windows NT 10.0; Win64; x64", ""),
        ("Macintosh; Intel Mac OS X 10_15_7", ""),
        ("X11; Linux x86_64", ""),
        ("Linux; Android 10; K", " Mobile"),
        ("Linux; Android 14; SM-S918B", " Mobile"),
    ];
    let mut agents = Vec::new();
    for (platform, mobile) in platforms {
        for major in 118..126 {
            agents.push(format!(
                "Mozilla/5.0 ({platform}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0{mobile} Safari/537.36"
            ));
        }
    }
    for ios in ["16_6", "17_3", "17_4", "17_5"] {
        agents.push(format!(
            "Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{}.0 Mobile/15E148 Safari/604.1",
            &ios[..2]
        ));
    }
    agents
}

/// `count` distinct click numbers below `clicks`, ascending: the clicks that convert.
fn converting_clicks(rng: &mut SmallRng, clicks: u64, count: u64) -> Vec<u64> {
    let mut chosen: Vec<u64> = Vec::with_capacity(count as usize);
    while (chosen.len() as u64) < count {
        let missing = count - chosen.len() as u64;
        chosen.extend((0..missing).map(|_| rng.random_range(0..clicks)));
        chosen.sort_unstable();
        chosen.dedup();
    }
    chosen
}

/// What the fill wrote.
#[derive(Debug, Default, Clone, Copy)]
struct Filled {
    clicks: u64,
    outbound: u64,
    conversions: u64,
}

/// Write the data set into the (empty, freshly created) store at `path`, in key
/// order, in transactions of [`FILL_BATCH`] clicks. Clicks are evenly spread over
/// `[start_ms, end_ms)`.
fn fill(
    path: &Path,
    clicks: u64,
    conversions: u64,
    start_ms: i64,
    end_ms: i64,
) -> rusqlite::Result<Filled> {
    let mut conn = Connection::open(path)?;
    // The store's own checkpointer runs beside this connection.
    conn.busy_timeout(Duration::from_secs(120))?;
    // Not what is measured: the fill only needs to be fast, and a crash midway means
    // running it again anyway.
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -262_144i64)?;
    let layout = Layout::new();
    let agents = user_agents();
    let campaigns = Zipf::new(CAMPAIGNS, 0.8);
    let placements = Zipf::new(PLACEMENTS_PER_SOURCE, 1.05);
    let visitors = (clicks / CLICKS_PER_VISITOR).max(1);
    let mut rng = SmallRng::seed_from_u64(SEED);
    let converting = converting_clicks(&mut rng, clicks, conversions);
    let mut next_conversion = converting.iter().copied().peekable();
    let span = end_ms - start_ms;
    let mut filled = Filled::default();
    let mut i = 0u64;
    while i < clicks {
        let tx = conn.transaction()?;
        {
            let mut insert_click = tx.prepare_cached(
                "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id,
                     source_click_param, cost, sub1, sub2, sub3, sub4, sub5, ip, user_agent,
                     referrer, entry)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'tsid', ?6, ?7, ?8, ?9, NULL, NULL, ?10, ?11, NULL,
                     'landing')",
            )?;
            let mut insert_outbound = tx.prepare_cached(
                "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id)
                 VALUES (?1, ?2, 0, ?3, ?4)",
            )?;
            let mut insert_conversion = tx.prepare_cached(
                "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, network_id,
                     offer_id, event, txid, payout, currency, status, origin, duplicates,
                     created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'conversion', ?7, ?8, 'USD', ?9, 's2s', 0, ?10,
                     ?11)",
            )?;
            let batch_end = (i + FILL_BATCH).min(clicks);
            while i < batch_end {
                let ts_ms = start_ms + (i as i128 * span as i128 / clicks as i128) as i64;
                // UUIDv7-shaped: 12 hex of the millisecond, then 20 random hex.
                let click_id = format!(
                    "{:012x}{:016x}{:04x}",
                    ts_ms,
                    rng.random::<u64>(),
                    rng.random::<u16>()
                );
                let campaign = campaigns.sample(&mut rng);
                let campaign_id = format!("campaign-{campaign}");
                let source = campaign % SOURCES;
                let source_id = format!("source-{source}");
                let source_click_id =
                    format!("{:016x}{:08x}", rng.random::<u64>(), rng.random::<u32>());
                // Organic clicks (one in twenty) carry no cost.
                let cost = (rng.random_range(0..20) != 0)
                    .then(|| f64::from(rng.random_range(10..100u32)) / 1000.0);
                // A campaign's busiest zones are not its neighbours' on the same source.
                let zone = (placements.sample(&mut rng) + campaign * 37) % PLACEMENTS_PER_SOURCE;
                let sub1 = format!("zone-{}", source * PLACEMENTS_PER_SOURCE + zone);
                let sub2 = format!("creative-{}", rng.random_range(0..SUB2_CREATIVES));
                let sub3 = (rng.random_range(0..10) == 0)
                    .then(|| format!("geo-{}", rng.random_range(0..SUB3_VALUES)));
                let visitor = rng.random_range(0..visitors);
                let agent = &agents[(mix(visitor ^ 0x5eed) % agents.len() as u64) as usize];
                insert_click.execute(params![
                    click_id,
                    ts_ms,
                    campaign_id,
                    source_id,
                    source_click_id,
                    cost,
                    sub1,
                    sub2,
                    sub3,
                    visitor_ip(visitor),
                    agent,
                ])?;
                filled.clicks += 1;
                let converts = next_conversion.next_if_eq(&i).is_some();
                // Most conversions come after a /go to the offer.
                let went_out = if converts {
                    rng.random_range(0..10) != 0
                } else {
                    rng.random_range(0..5) < 2
                };
                let offers = &layout.offers[campaign];
                let offer = rng.random_range(0..offers.len());
                let go_ms = ts_ms + rng.random_range(2_000..120_000);
                if went_out {
                    insert_outbound.execute(params![
                        click_id,
                        go_ms,
                        campaign_id,
                        offers[offer]
                    ])?;
                    filled.outbound += 1;
                }
                if converts {
                    let txid = format!("{:016x}", rng.random::<u64>());
                    let created_ms = (go_ms + rng.random_range(60_000..3 * DAY_MS)).min(end_ms);
                    let r = rng.random_range(0..100);
                    let status = match r {
                        0..80 => "approved",
                        80..92 => "pending",
                        92..98 => "rejected",
                        _ => "chargeback",
                    };
                    // A status other than the first one came later.
                    let updated_ms = if r < 92 {
                        created_ms
                    } else {
                        (created_ms + rng.random_range(DAY_MS..7 * DAY_MS)).min(end_ms)
                    };
                    let payout = f64::from(rng.random_range(100..=5_000u32)) / 100.0;
                    // Networks mostly send their offer; some leave it to the /go.
                    let (offer_id, network_id) = if went_out {
                        let sends_offer = rng.random_range(0..5) != 0;
                        (
                            sends_offer.then(|| offers[offer].as_str()),
                            layout.network_of(campaign, offer),
                        )
                    } else {
                        (None, layout.networks[campaign % NETWORKS].as_str())
                    };
                    insert_conversion.execute(params![
                        dedup_key(&click_id, "conversion", Some(&txid)),
                        click_id,
                        campaign_id,
                        source_id,
                        network_id,
                        offer_id,
                        txid,
                        payout,
                        status,
                        created_ms,
                        updated_ms,
                    ])?;
                    filled.conversions += 1;
                }
                i += 1;
            }
        }
        tx.commit()?;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(filled)
}

/// User + system CPU time of process `pid` (all its threads), from `/proc/PID/stat`.
fn cpu_time(pid: &str, ticks_per_second: f64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    // Field 3 (state) comes first there; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(Duration::from_secs_f64(ticks / ticks_per_second))
}

/// The kernel's clock ticks per second for `/proc` times (`getconf CLK_TCK`; 100 on
/// every common Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A statement on ClickHouse's HTTP interface, answered as text (for the figures
/// around the benchmark, not for anything measured); the server's message if it
/// refuses.
fn clickhouse_answer(url: &str, sql: &str) -> Result<String, String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent
        .post(url)
        .send(sql)
        .map_err(|e| format!("ClickHouse at {url}: {e}"))?;
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if !response.status().is_success() {
        return Err(format!(
            "ClickHouse answered {} to {sql:?}: {body}",
            response.status()
        ));
    }
    Ok(body.trim().to_string())
}

fn clickhouse_text(url: &str, sql: &str) -> String {
    clickhouse_answer(url, sql).unwrap_or_else(|e| panic!("{e}"))
}

fn clickhouse_number(url: &str, sql: &str) -> u64 {
    let text = clickhouse_text(url, sql);
    text.parse()
        .unwrap_or_else(|_| panic!("{sql:?} gave {text:?}, not a number"))
}

/// What ClickHouse itself logged about one report query (`system.query_log`).
#[derive(Debug, Clone)]
struct ServerSide {
    query_id: String,
    /// Tells the three reports' queries apart (the same report sends the same text).
    text_hash: String,
    /// The query's duration on the server, as it measured it.
    ms: f64,
    read_rows: u64,
    result_rows: u64,
    /// The answer's size before HTTP (JSONCompact text).
    result_bytes: u64,
    memory_bytes: u64,
}

/// Every report query the client finished, from the server's query log (the
/// `clickhouse-rs` user agent's reads of `clicks`), once at least `expected` are
/// there. The server logs a query's end just after its answer went out, so the last
/// ones may take a moment to appear. `None` without a query log, or if the entries
/// do not all show up within 10 s.
fn logged_reports(url: &str, expected: usize) -> Option<Vec<ServerSide>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        clickhouse_answer(url, "SYSTEM FLUSH LOGS").ok()?;
        let text = clickhouse_answer(
            url,
            "SELECT query_id, cityHash64(query), query_duration_ms, read_rows, result_rows,
                 result_bytes, memory_usage
             FROM system.query_log
             WHERE type = 2 AND http_user_agent LIKE '%clickhouse-rs/%'
                 AND query LIKE 'SELECT %' AND query LIKE '%clicks%'
                 AND query NOT LIKE '%system.%'
             ORDER BY event_time, query_start_time
             FORMAT TSV",
        )
        .ok()?;
        let entries: Vec<ServerSide> = text
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('\t').collect();
                let [id, hash, ms, read, rows, bytes, memory] = cells.as_slice() else {
                    return None;
                };
                Some(ServerSide {
                    query_id: id.to_string(),
                    text_hash: hash.to_string(),
                    ms: ms.parse().ok()?,
                    read_rows: read.parse().ok()?,
                    result_rows: rows.parse().ok()?,
                    result_bytes: bytes.parse().ok()?,
                    memory_bytes: memory.parse().ok()?,
                })
            })
            .collect();
        if entries.len() >= expected {
            return Some(entries);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The timed runs' log entries (those not in `warm_up`), one list per report in the
/// order of `timed`, or `None` unless each report has exactly `runs` of them. The
/// reports' queries are told apart by their text and matched to the reports by
/// their answer's size (totals < by campaign < by campaign × sub1 × day).
fn server_side_runs(
    logged: Vec<ServerSide>,
    warm_up: &[ServerSide],
    timed: &[Timed],
    runs: usize,
) -> Option<Vec<Vec<ServerSide>>> {
    let mut by_query: std::collections::BTreeMap<String, Vec<ServerSide>> = Default::default();
    for entry in logged {
        if !warm_up.iter().any(|w| w.query_id == entry.query_id) {
            by_query
                .entry(entry.text_hash.clone())
                .or_default()
                .push(entry);
        }
    }
    let mut groups: Vec<Vec<ServerSide>> = by_query.into_values().collect();
    if groups.len() != timed.len() || groups.iter().any(|g| g.len() != runs) {
        return None;
    }
    groups.sort_by_key(|g| g[0].result_rows);
    let mut order: Vec<usize> = (0..timed.len()).collect();
    order.sort_by_key(|&i| timed[i].rows);
    let mut matched: Vec<Vec<ServerSide>> = vec![Vec::new(); timed.len()];
    for (group, i) in groups.into_iter().zip(order) {
        matched[i] = group;
    }
    Some(matched)
}

/// Wait (at most `limit`) until ClickHouse runs no merge on the benchmark's tables
/// for a full second. Returns how long that took.
fn wait_for_merges(url: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    let sql = format!("SELECT count() FROM system.merges WHERE database = '{DATABASE}'");
    while started.elapsed() < limit {
        if clickhouse_number(url, &sql) == 0 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                break;
            }
        } else {
            quiet_since = None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    started.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn describe(figures: &Figures) -> String {
    format!(
        "clicks {} unique {} conversions {} revenue {} µ cost {} µ",
        figures.clicks,
        figures.unique_clicks,
        figures.conversions,
        figures.revenue_micros,
        figures.cost_micros
    )
}

fn key_text(keys: &[Option<String>]) -> String {
    keys.iter()
        .map(|k| k.as_deref().unwrap_or("(none)"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Panic, with the first differences, unless both backends gave the same report.
fn assert_same(label: &str, store: (&[ReportRow], &Figures), clickhouse: (&[ReportRow], &Figures)) {
    let (store_rows, store_totals) = store;
    let (ch_rows, ch_totals) = clickhouse;
    if store_rows == ch_rows && store_totals == ch_totals {
        return;
    }
    let mut diff = Vec::new();
    if store_totals != ch_totals {
        diff.push(format!(
            "  totals:\n    store      {}\n    clickhouse {}",
            describe(store_totals),
            describe(ch_totals)
        ));
    }
    let by_key = |rows: &[ReportRow]| -> std::collections::BTreeMap<Vec<Option<String>>, Figures> {
        rows.iter().map(|r| (r.keys.clone(), r.figures)).collect()
    };
    let (store_map, ch_map) = (by_key(store_rows), by_key(ch_rows));
    let mut shown = 0;
    for key in store_map
        .keys()
        .chain(ch_map.keys().filter(|k| !store_map.contains_key(*k)))
    {
        let (s, c) = (store_map.get(key), ch_map.get(key));
        if s != c && shown < 10 {
            shown += 1;
            let show = |f: Option<&Figures>| f.map_or("(no row)".to_string(), describe);
            diff.push(format!(
                "  row {}:\n    store      {}\n    clickhouse {}",
                key_text(key),
                show(s),
                show(c)
            ));
        }
    }
    if shown == 0 && store_rows != ch_rows {
        diff.push("  the same rows, in another order".to_string());
    }
    panic!(
        "report {label:?} differs between the store ({} rows) and ClickHouse ({} rows):\n{}",
        store_rows.len(),
        ch_rows.len(),
        diff.join("\n")
    );
}

/// One report's timings.
struct Timed {
    label: &'static str,
    rows: usize,
    store_ms: Vec<f64>,
    clickhouse_ms: Vec<f64>,
}

fn main() {
    let a = args();
    let ticks = clock_ticks();
    let temp =
        std::env::temp_dir().join(format!("clickstamp-analytics-bench-{}", std::process::id()));
    let dir = a.dir.clone().unwrap_or_else(|| temp.clone());
    std::fs::create_dir_all(&dir).expect("create the benchmark directory");
    let store_path = dir.join("data").join("clickstamp.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
    }
    let config_text = format!(
        "[store]\npath = \"data/clickstamp.sqlite\"\n\
         [secrets]\nclick_id_key = \"analytics-bench-click-id-key-0123456789\"\n\
         admin_token = \"analytics-bench-admin-token-0123456789\"\n\
         [analytics]\nclickhouse = {{ url = \"{url}\", database = \"{DATABASE}\", timeout = \"10m\" }}\n\
         lease = \"11m\"\n",
        url = a.clickhouse_url
    );
    std::fs::write(dir.join("clickstamp.toml"), &config_text).expect("write the config");
    let config = clickstamp::config::parse(&config_text, &dir)
        .unwrap_or_else(|e| panic!("the benchmark's config is refused: {e}"));
    let analytics = config
        .analytics
        .clone()
        .expect("the config has [analytics]");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a runtime");
    let clickhouse = ClickHouse::new(&analytics.clickhouse).expect("a ClickHouse client");
    let version = runtime
        .block_on(clickhouse.ping())
        .unwrap_or_else(|e| panic!("ClickHouse at {}: {e}", a.clickhouse_url));
    let existing = clickhouse_number(
        &a.clickhouse_url,
        &format!("SELECT count() FROM system.tables WHERE database = '{DATABASE}'"),
    );
    assert_eq!(
        existing, 0,
        "database {DATABASE} already holds tables; start from an empty server"
    );
    println!(
        "ClickHouse {version} at {}; store {}",
        a.clickhouse_url,
        store_path.display()
    );

    // 1. Fill: the store creates its file (schema and all), then the rows go in
    // through a connection of our own, beside the idle store.
    let metrics = Arc::new(clickstamp::metrics::Metrics::new());
    let store =
        clickstamp::store::open(&config.store, "analytics-bench", metrics).expect("open the store");
    let end_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let start_ms = end_ms - a.days * DAY_MS;
    let started = Instant::now();
    let filled =
        fill(&store_path, a.clicks, a.conversions, start_ms, end_ms).expect("fill the store");
    let fill_secs = started.elapsed().as_secs_f64();
    let store_bytes = std::fs::metadata(&store_path).map_or(0, |m| m.len());
    println!(
        "fill: {} clicks, {} outbound clicks, {} conversions over {} days in {:.1} s ({:.0} MB)",
        filled.clicks,
        filled.outbound,
        filled.conversions,
        a.days,
        fill_secs,
        store_bytes as f64 / 1e6
    );

    // 2. Export: the real backfill, from the first click.
    let own_pid = std::process::id().to_string();
    let server_pid = a.clickhouse_pid.map(|p| p.to_string());
    let server_cpu = || server_pid.as_deref().and_then(|p| cpu_time(p, ticks));
    let (own_before, server_before) = (cpu_time(&own_pid, ticks), server_cpu());
    let started = Instant::now();
    let sent = runtime
        .block_on(async {
            let mut out = std::io::stdout();
            backfill::run(store.as_ref(), &clickhouse, true, &mut out).await
        })
        .expect("backfill");
    let export_secs = started.elapsed().as_secs_f64();
    let (own_after, server_after) = (cpu_time(&own_pid, ticks), server_cpu());
    let exported = sent.clicks + sent.conversions;
    let rows_per_s = exported as f64 / export_secs.max(1e-9);
    let per_row_us = |before: Option<Duration>, after: Option<Duration>| {
        Some((after?.saturating_sub(before?)).as_secs_f64() * 1e6 / exported.max(1) as f64)
    };
    let exporter_us = per_row_us(own_before, own_after);
    let server_us = per_row_us(server_before, server_after);
    println!(
        "export: {exported} rows ({} clicks + {} conversions) in {export_secs:.1} s = {rows_per_s:.0} rows/s; \
         CPU per row: exporter {} µs, ClickHouse server {}",
        sent.clicks,
        sent.conversions,
        exporter_us.map_or("?".into(), |us| format!("{us:.2}")),
        server_us.map_or("not measured (no --clickhouse-pid)".into(), |us| format!("{us:.2} µs")),
    );
    let settle = wait_for_merges(&a.clickhouse_url, Duration::from_secs(300));
    let count = |sql: String| clickhouse_number(&a.clickhouse_url, &sql);
    let parts = |table: &str| {
        count(format!(
            "SELECT count() FROM system.parts WHERE database = '{DATABASE}' AND table = '{table}' AND active"
        ))
    };
    let ch_clicks = count(format!("SELECT count() FROM {DATABASE}.clicks FINAL"));
    let ch_conversions = count(format!("SELECT count() FROM {DATABASE}.conversions FINAL"));
    println!(
        "ClickHouse after {:.1} s of merges: {ch_clicks} clicks ({} parts), {ch_conversions} conversions ({} parts)",
        settle.as_secs_f64(),
        parts("clicks"),
        parts("conversions")
    );
    assert_eq!(
        (ch_clicks, ch_conversions),
        (filled.clicks, filled.conversions),
        "ClickHouse should hold every click and conversion once"
    );

    // 3. Reports: one warm-up each (compared), then interleaved timed runs.
    let catalog = Layout::new().catalog();
    let range = format!("from_ms={start_ms}&to_ms={}", end_ms + 1);
    let reports: Vec<(&'static str, ReportParams)> = REPORTS
        .iter()
        .map(|(label, query)| {
            let query = if query.is_empty() {
                range.clone()
            } else {
                format!("{query}&{range}")
            };
            (
                *label,
                ReportParams::from_query(&query).expect("a valid report query"),
            )
        })
        .collect();
    let time_store = |params: &ReportParams| {
        let started = Instant::now();
        let report = clickstamp::store::sqlite::report_file(&store_path, &catalog, params)
            .expect("store report");
        (
            started.elapsed().as_secs_f64() * 1e3,
            report.rows,
            report.totals,
        )
    };
    let time_clickhouse = |params: &ReportParams| {
        let started = Instant::now();
        let (rows, totals) = runtime
            .block_on(clickhouse.report(&catalog, params))
            .expect("ClickHouse report");
        (started.elapsed().as_secs_f64() * 1e3, rows, totals)
    };
    let mut timed: Vec<Timed> = Vec::new();
    for (label, params) in &reports {
        let (_, store_rows, store_totals) = time_store(params);
        let (_, ch_rows, ch_totals) = time_clickhouse(params);
        assert_same(label, (&store_rows, &store_totals), (&ch_rows, &ch_totals));
        timed.push(Timed {
            label,
            rows: store_rows.len(),
            store_ms: Vec::new(),
            clickhouse_ms: Vec::new(),
        });
    }
    // The warm-up queries are not among the timed ones.
    let warm_up = logged_reports(&a.clickhouse_url, timed.len()).unwrap_or_default();
    println!(
        "reports identical on both backends (rows and totals); timing {} runs each",
        a.runs
    );
    for run in 0..a.runs {
        for (t, (_, params)) in timed.iter_mut().zip(&reports) {
            // Alternate which backend goes first, so neither always follows the other's
            // page-cache and CPU-frequency footprint.
            if run % 2 == 0 {
                t.store_ms.push(time_store(params).0);
                t.clickhouse_ms.push(time_clickhouse(params).0);
            } else {
                t.clickhouse_ms.push(time_clickhouse(params).0);
                t.store_ms.push(time_store(params).0);
            }
        }
    }
    println!();
    println!(
        "{:<28}{:>8}{:>14}{:>20}{:>16}{:>20}{:>10}",
        "report", "rows", "store ms", "(min–max)", "clickhouse ms", "(min–max)", "ratio"
    );
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("({lo:.1}–{hi:.1})")
    };
    let server_runs = logged_reports(&a.clickhouse_url, timed.len() * (a.runs + 1))
        .and_then(|logged| server_side_runs(logged, &warm_up, &timed, a.runs));
    let mut results = Vec::new();
    for (i, t) in timed.iter().enumerate() {
        let (store_med, ch_med) = (median(t.store_ms.clone()), median(t.clickhouse_ms.clone()));
        let ratio = store_med / ch_med.max(1e-9);
        println!(
            "{:<28}{:>8}{:>14.1}{:>20}{:>16.1}{:>20}{:>9.1}×",
            t.label,
            t.rows,
            store_med,
            spread(&t.store_ms),
            ch_med,
            spread(&t.clickhouse_ms),
            ratio
        );
        results.push(serde_json::json!({
            "report": t.label, "rows": t.rows,
            "store_ms": t.store_ms, "clickhouse_ms": t.clickhouse_ms,
            "store_median_ms": store_med, "clickhouse_median_ms": ch_med, "ratio": ratio,
            "clickhouse_server_ms": server_runs
                .as_ref()
                .map(|runs| runs[i].iter().map(|s| s.ms).collect::<Vec<_>>()),
        }));
    }
    println!(
        "medians of {} runs; ratio = store / ClickHouse; {} cores shared by this process and the server",
        a.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Some(server_runs) = &server_runs {
        println!();
        println!(
            "{:<28}{:>12}{:>12}{:>14}{:>12}{:>12}",
            "ClickHouse's own account",
            "server ms",
            "rest ms",
            "rows read",
            "answer MB",
            "memory MB"
        );
        for (t, server) in timed.iter().zip(server_runs) {
            let server_med = median(server.iter().map(|s| s.ms).collect());
            let last = &server[server.len() - 1];
            println!(
                "{:<28}{:>12.1}{:>12.1}{:>14}{:>12.1}{:>12.0}",
                t.label,
                server_med,
                median(t.clickhouse_ms.clone()) - server_med,
                last.read_rows,
                last.result_bytes as f64 / 1e6,
                last.memory_bytes as f64 / 1e6,
            );
        }
        println!(
            "server ms: the query's duration in system.query_log (median); rest: the client's \
             time beyond it (HTTP transfer, parsing the answer, sorting the rows)"
        );
    } else {
        println!(
            "(ClickHouse's query log did not account for every run: server-side times not shown)"
        );
    }

    let headline = timed.last().expect("three reports");
    let ch_secs = median(headline.clickhouse_ms.clone()) / 1e3;
    let ratio = median(headline.store_ms.clone()) / 1e3 / ch_secs.max(1e-12);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "analytics bench: ch campaign×sub1×day {ch_secs:.2} s (target < 1 s: {}), {ratio:.0}× the SQLite store \
         (target ≥ 20×: {}), export {:.0}k rows/s, {} µs CPU/row",
        verdict(ch_secs < 1.0),
        verdict(ratio >= 20.0),
        rows_per_s / 1e3,
        exporter_us.map_or("?".into(), |us| format!("{us:.1}"))
    );
    if let Some(path) = &a.json {
        let summary = serde_json::json!({
            "clickhouse_version": version,
            "clicks": filled.clicks, "outbound_clicks": filled.outbound,
            "conversions": filled.conversions, "days": a.days, "runs": a.runs,
            "fill_s": fill_secs, "store_bytes": store_bytes,
            "export": {
                "rows": exported, "seconds": export_secs, "rows_per_s": rows_per_s,
                "exporter_cpu_us_per_row": exporter_us, "server_cpu_us_per_row": server_us,
            },
            "merge_settle_s": settle.as_secs_f64(),
            "reports": results,
            "targets": {
                "clickhouse_campaign_sub1_day_s": ch_secs, "under_1_s": ch_secs < 1.0,
                "ratio": ratio, "at_least_20x": ratio >= 20.0,
            },
        });
        std::fs::write(path, serde_json::to_string_pretty(&summary).expect("JSON"))
            .expect("write the JSON summary");
    }
    drop(store);
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
}
