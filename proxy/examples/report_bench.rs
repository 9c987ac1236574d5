//! Report benchmark: builds a store with the real schema holding 1,000,000 clicks over
//! 30 days and 30,000 conversions (generated in SQL, in a temp file), then times each
//! report the way `GET /api/report` runs it (own read-only connection, one snapshot).
//!
//! ```text
//! cargo run --release -p clickstamp --example report_bench [-- --clicks N --conversions N --keep FILE]
//! cargo run --release -p clickstamp --example report_bench -- --existing FILE   # time reports on a kept store
//! ```

use clickstamp::report::{self, Catalog, ReportParams};
use rusqlite::Connection;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SCHEMA: &str = include_str!("../src/store/sqlite/schema.sql");
const DAY_MS: i64 = 86_400_000;
const CAMPAIGNS: usize = 20;
const OFFERS: usize = 40;
const NETWORKS: usize = 5;

struct Args {
    clicks: u64,
    conversions: u64,
    keep: Option<PathBuf>,
    existing: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        clicks: 1_000_000,
        conversions: 30_000,
        keep: None,
        existing: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--clicks" => a.clicks = value.parse().expect("--clicks N"),
            "--conversions" => a.conversions = value.parse().expect("--conversions N"),
            "--keep" => a.keep = Some(PathBuf::from(value)),
            "--existing" => a.existing = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}; see the doc comment"),
        }
    }
    a
}

/// Campaigns 0..9 have one offer each; 10..19 share pairs of offers, so `offer`
/// grouping exercises both the /go lookup and the sole-offer fallback.
fn catalog() -> Catalog {
    Catalog {
        sole_offers: (0..CAMPAIGNS / 2)
            .map(|c| (format!("campaign-{c}"), format!("offer-{c}")))
            .collect(),
        offer_networks: (0..OFFERS)
            .map(|o| (format!("offer-{o}"), format!("network-{}", o % NETWORKS)))
            .collect(),
    }
}

fn build(conn: &Connection, clicks: u64, conversions: u64, end_ms: i64) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let span = 30 * DAY_MS;
    let start = end_ms - span;
    let step = span as f64 / clicks as f64;
    conn.execute_batch("BEGIN")?;
    // UUIDv7-shaped keys: 12 hex of the millisecond, then 20 random hex.
    conn.execute(
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
             INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id, cost,
                 sub1, sub2, sub3, ip, user_agent, entry)
             SELECT printf('%012x', ts) || lower(hex(randomblob(10))), ts,
                 'campaign-' || (i % {CAMPAIGNS}), 'source-' || (i % {CAMPAIGNS} % 5),
                 'tsid-' || i, (abs(random()) % 500 + 1) / 10000.0,
                 'zone-' || (abs(random()) % 200), 'creative-' || (abs(random()) % 50),
                 CASE WHEN i % 3 = 0 THEN NULL ELSE 'x' || (i % 7) END,
                 '10.' || (abs(random()) % 256) || '.' || (abs(random()) % 256) || '.' || (abs(random()) % 8),
                 'Mozilla/5.0 agent-' || (abs(random()) % 40), 'landing'
             FROM (SELECT i, {start} + CAST(i * {step} AS INTEGER) AS ts FROM n)",
            last = clicks - 1
        ),
        [],
    )?;
    // 40% of clicks went through /go to one of their campaign's offers.
    conn.execute(
        &format!(
            "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id)
             SELECT click_id, ts_ms + 5000, 0, campaign_id,
                 'offer-' || CASE WHEN CAST(substr(campaign_id, 10) AS INTEGER) < {half}
                     THEN CAST(substr(campaign_id, 10) AS INTEGER)
                     ELSE {half} + (CAST(substr(campaign_id, 10) AS INTEGER) - {half}) * 2 + (abs(random()) % 2) END
             FROM clicks WHERE abs(random()) % 5 < 2",
            half = CAMPAIGNS / 2
        ),
        [],
    )?;
    // Conversions on random clicks: 70% approved, 20% pending, 7% rejected, 3% chargeback.
    conn.execute(
        &format!(
            "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, network_id, offer_id,
                 event, txid, payout, currency, status, origin, created_ms, updated_ms)
             SELECT c.click_id || ':conversion', c.click_id, c.campaign_id, c.source_id,
                 'network-' || (abs(random()) % {NETWORKS}), o.offer_id, 'conversion', NULL,
                 (abs(random()) % 5000 + 1) / 100.0, 'USD',
                 CASE WHEN r < 70 THEN 'approved' WHEN r < 90 THEN 'pending'
                      WHEN r < 97 THEN 'rejected' ELSE 'chargeback' END,
                 CASE WHEN r % 4 = 0 THEN 'pixel' ELSE 's2s' END,
                 c.ts_ms + 60000, c.ts_ms + 60000
             FROM (SELECT click_id, campaign_id, source_id, ts_ms, abs(random()) % 100 AS r
                   FROM clicks ORDER BY random() LIMIT {conversions}) c
             LEFT JOIN outbound_clicks o ON o.click_id = c.click_id"
        ),
        [],
    )?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

fn time_report(
    path: &std::path::Path,
    label: &str,
    query: &str,
    runs: usize,
) -> (Duration, report::Report) {
    let params = ReportParams::from_query(query).expect("valid benchmark query");
    let catalog = catalog();
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        // As the admin API does it: a fresh read-only connection per report.
        let r = clickstamp::store::sqlite::report_file(path, &catalog, &params).expect("report");
        best = best.min(started.elapsed());
        last = Some(r);
    }
    let r = last.expect("at least one run");
    let t = &r.totals;
    println!(
        "{label:<44} {:>8.1} ms  rows {:>6}  clicks {:>8}  uniques {:>8}  conv {:>6}  revenue {:>11}  cost {:>10}  profit {:>11}  roi {:>8}  epc {}",
        best.as_secs_f64() * 1e3,
        r.rows.len(),
        t.clicks,
        t.unique_clicks,
        t.conversions,
        report::render::format_cents(t.revenue_cents()),
        report::render::format_cents(t.cost_cents()),
        report::render::format_cents(t.profit_cents()),
        t.roi_percent().map_or("-".into(), |v| format!("{v:.2}%")),
        t.epc().map_or("-".into(), |v| format!("{v:.4}")),
    );
    (best, r)
}

fn main() {
    let a = args();
    let dir = std::env::temp_dir().join(format!("clickstamp-report-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = a
        .existing
        .clone()
        .or(a.keep.clone())
        .unwrap_or_else(|| dir.join("bench.sqlite"));
    if a.existing.is_none() {
        let _ = std::fs::remove_file(&path);
    }
    let end_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let started = Instant::now();
    let end_ms = match &a.existing {
        // A kept store ends when its last click was generated.
        Some(_) => Connection::open(&path)
            .and_then(|c| c.query_row("SELECT max(ts_ms) FROM clicks", [], |r| r.get(0)))
            .expect("read the kept store"),
        None => end_ms,
    };
    if a.existing.is_none() {
        let conn = Connection::open(&path).expect("create the store");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        build(&conn, a.clicks, a.conversions, end_ms).expect("generate rows");
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
            .expect("checkpoint");
    }
    {
        let conn = Connection::open(&path).expect("open the store");
        let (c, v, o): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM clicks), (SELECT count(*) FROM conversions), (SELECT count(*) FROM outbound_clicks)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("count rows");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "store: {c} clicks, {v} conversions, {o} outbound clicks, {:.0} MB, ready in {:.1}s ({})",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            path.display()
        );
    }
    let week_ago = end_ms - 7 * DAY_MS;
    let yesterday = end_ms - DAY_MS;
    let cases = [
        ("totals, all 30 days", String::new()),
        ("by campaign, all 30 days", "group_by=campaign".into()),
        (
            "by campaign,sub1, all 30 days",
            "group_by=campaign,sub1".into(),
        ),
        (
            "by day (tz +02:00), all 30 days",
            "group_by=day&tz=%2B02:00".into(),
        ),
        ("by offer, all 30 days", "group_by=offer".into()),
        (
            "by network,source, all 30 days",
            "group_by=network,source".into(),
        ),
        (
            "by campaign,sub1,sub2,day, all 30 days",
            "group_by=campaign,sub1,sub2,day".into(),
        ),
        (
            "by campaign, last 7 days",
            format!("group_by=campaign&from_ms={week_ago}"),
        ),
        (
            "by sub1, last 24 hours",
            format!("group_by=sub1&from_ms={yesterday}"),
        ),
        (
            "CSV by campaign,day, all 30 days",
            "group_by=campaign,day&format=csv".into(),
        ),
    ];
    println!("best of 3 runs each:");
    let mut rendered = None;
    for (label, q) in &cases {
        let (_, r) = time_report(&path, label, q, 3);
        if q.contains("csv") {
            let t = Instant::now();
            let csv = report::render::to_csv(&r);
            rendered = Some((csv.len(), t.elapsed()));
        }
    }
    if let Some((bytes, t)) = rendered {
        println!(
            "CSV rendering: {bytes} bytes in {:.2} ms",
            t.as_secs_f64() * 1e3
        );
    }
    if a.keep.is_none() && a.existing.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
