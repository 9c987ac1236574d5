//! Checks against a real ClickHouse: the same data put in the SQLite store and sent
//! to ClickHouse (with stale, repeated and out-of-order versions) must give the
//! same reports. Run with a server's HTTP URL:
//!
//! ```text
//! CLICKSTAMP_TEST_CLICKHOUSE_URL=http://127.0.0.1:18123 \
//!     cargo test -p clickstamp --lib analytics::clickhouse::live -- --ignored --nocapture
//! ```
//!
//! Each run uses a database of its own and drops it afterwards. Skipped (passing)
//! without the variable.

use super::{ClickHouse, ClickHouseError};
use crate::config::ClickHouseConfig;
use crate::report::params::{Dimension, DAY_MS};
use crate::report::{Catalog, ReportParams};
use crate::store::export::{ExportedClick, ExportedConversion};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{params, Connection};
use std::future::Future;
use std::time::{Duration, Instant};

const URL_VAR: &str = "CLICKSTAMP_TEST_CLICKHOUSE_URL";

/// A client on a fresh database of its own, or `None` when no server is given.
fn server() -> Option<ClickHouse> {
    let url = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty())?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let cfg = ClickHouseConfig {
        url,
        database: format!("clickstamp_test_{}_{nanos}", std::process::id()),
        user: std::env::var("CLICKSTAMP_TEST_CLICKHOUSE_USER").ok(),
        password: std::env::var("CLICKSTAMP_TEST_CLICKHOUSE_PASSWORD").ok(),
        timeout: Duration::from_secs(60),
    };
    Some(ClickHouse::new(&cfg).unwrap())
}

/// Run `body` on a fresh database, dropped afterwards whether `body` passes or
/// panics. Skips (passing) without a server.
async fn on_fresh_database<Body, Fut>(body: Body)
where
    Body: FnOnce(ClickHouse) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(ch) = server() else {
        eprintln!("{URL_VAR} not set: skipped");
        return;
    };
    let outcome = tokio::spawn(body(ch.clone())).await;
    ch.call(|| {
        ch.server
            .query("DROP DATABASE IF EXISTS ?")
            .bind(clickhouse::sql::Identifier(&ch.database))
            .execute()
    })
    .await
    .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn catalog() -> Catalog {
    Catalog {
        // c2 has two offers (no sole one), c4 is not in the config any more.
        sole_offers: vec![("c1".into(), "o1".into()), ("c3".into(), "o4".into())],
        // o4 has no network on record (a removed offer); o6 is never clicked.
        offer_networks: vec![
            ("o1".into(), "n1".into()),
            ("o2".into(), "n1".into()),
            ("o3".into(), "n2".into()),
            ("o5".into(), "n3".into()),
            ("o6".into(), "n3".into()),
        ],
    }
}

/// One click as both stores see it, with its history of versions.
struct Generated {
    /// Final state, and an older state when it had one (an earlier `/go`).
    clicks: Vec<(ExportedClick, Option<ExportedClick>)>,
    conversions: Vec<(ExportedConversion, Option<ExportedConversion>)>,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// `n` clicks over five days from `start_ms`, written to `conn` (an empty SQLite
/// store) and returned as the exporter would send them.
fn generate(conn: &mut Connection, rng: &mut StdRng, n: usize, start_ms: i64) -> Generated {
    let text = |v: &[Option<&str>], rng: &mut StdRng| pick(rng, v).map(str::to_string);
    let subs: &[Option<&str>] = &[None, Some(""), Some("a"), Some("b"), Some("ü/\"'\\")];
    let ips: &[Option<&str>] = &[
        None,
        Some(""),
        Some("10.0.0.1"),
        Some("10.0.0.2"),
        Some("::1"),
    ];
    let agents: &[Option<&str>] = &[None, Some(""), Some("Mozilla"), Some("curl")];
    let costs: &[Option<f64>] = &[
        None,
        Some(0.0),
        Some(0.01),
        Some(0.0125),
        Some(1.234_567_5),
        Some(-0.5),
    ];
    let payouts: &[Option<f64>] = &[None, Some(2.5), Some(0.000_000_4), Some(1e12), Some(-3.0)];
    let statuses = ["pending", "approved", "rejected", "chargeback"];
    let tx = conn.transaction().unwrap();
    let mut out = Generated {
        clicks: Vec::new(),
        conversions: Vec::new(),
    };
    let mut conversion_id = 0i64;
    let mut ts_list: Vec<i64> = (0..n)
        .map(|_| start_ms + rng.random_range(0..5 * DAY_MS))
        .collect();
    ts_list.sort_unstable();
    for (i, ts_ms) in ts_list.into_iter().enumerate() {
        let click_id = format!("{ts_ms:012x}{i:020x}");
        let campaign = *pick(rng, &["c1", "c2", "c3", "c4"]);
        let source = *pick(rng, &["s1", "s2"]);
        let sub_ids: [Option<String>; 5] = std::array::from_fn(|_| text(subs, rng));
        // Now and then an amount stored before the limit: it saturates, and sums of
        // a few of them go beyond i64.
        let cost = if rng.random_range(0..200) == 0 {
            Some(if rng.random_bool(0.5) { 1e300 } else { -1e300 })
        } else {
            *pick(rng, costs)
        };
        let (ip, user_agent) = (text(ips, rng), text(agents, rng));
        tx.execute(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, cost, sub1, sub2, sub3,
                sub4, sub5, ip, user_agent, entry) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'landing')",
            params![click_id, ts_ms, campaign, source, cost, sub_ids[0], sub_ids[1], sub_ids[2],
                sub_ids[3], sub_ids[4], ip, user_agent],
        )
        .unwrap();
        // Zero to three /go, each later than the last.
        let mut gos: Vec<(i64, String)> = Vec::new();
        let mut go_ms = ts_ms;
        for seq in 0..rng.random_range(0..4) {
            go_ms += rng.random_range(1..3);
            let offer = pick(rng, &["o1", "o2", "o3", "o5"]).to_string();
            tx.execute(
                "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![click_id, go_ms, seq, campaign, offer],
            )
            .unwrap();
            gos.push((go_ms, offer));
        }
        let click = ExportedClick {
            click_id: click_id.clone(),
            ts_ms,
            campaign_id: campaign.into(),
            source_id: source.into(),
            sub_ids: sub_ids.clone(),
            cost,
            ip,
            user_agent,
            last_offer_id: gos.last().map(|g| g.1.clone()),
            last_offer_ms: gos.last().map_or(0, |g| g.0),
        };
        let older = (gos.len() >= 2).then(|| ExportedClick {
            last_offer_id: Some(gos[0].1.clone()),
            last_offer_ms: gos[0].0,
            ..click.clone()
        });
        out.clicks.push((click, older));

        for k in 0..rng.random_range(0..3) {
            conversion_id += 1;
            let status = *pick(rng, &statuses);
            let payout = *pick(rng, payouts);
            let offer_id = rng
                .random_bool(0.3)
                .then(|| pick(rng, &["o1", "o3", "o4", "o9"]).to_string());
            let network_id = rng
                .random_bool(0.3)
                .then(|| pick(rng, &["n1", "n2", "n7"]).to_string());
            let updated_ms = ts_ms + 10_000 + k;
            tx.execute(
                "INSERT INTO conversions (id, dedup_key, click_id, campaign_id, source_id, network_id,
                    offer_id, event, payout, status, origin, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'conversion', ?8, ?9, 's2s', ?10, ?10)",
                params![conversion_id, format!("k{conversion_id}"), click_id, campaign, source,
                    network_id, offer_id, payout, status, updated_ms],
            )
            .unwrap();
            let conversion = ExportedConversion {
                id: conversion_id,
                click_id: click_id.clone(),
                click_ts_ms: ts_ms,
                campaign_id: campaign.into(),
                source_id: source.into(),
                sub_ids: sub_ids.clone(),
                offer_id: offer_id.or_else(|| gos.last().map(|g| g.1.clone())),
                network_id,
                payout,
                status: status.into(),
                updated_ms,
                last_offer_ms: gos.last().map_or(0, |g| g.0),
            };
            // An earlier state: counted when the final one is not, and the reverse.
            let older = rng.random_bool(0.5).then(|| ExportedConversion {
                status: if matches!(status, "pending" | "approved") {
                    "rejected"
                } else {
                    "approved"
                }
                .into(),
                payout: Some(99.0),
                updated_ms: updated_ms - 5_000,
                last_offer_ms: 0,
                ..conversion.clone()
            });
            out.conversions.push((conversion, older));
        }
    }
    tx.commit().unwrap();
    out
}

/// Send `data` as an exporter would, at least once and not in version order:
/// older versions before and after the final ones, finals twice, in several
/// inserts (so several parts that only `FINAL` reconciles).
async fn export(ch: &ClickHouse, data: &Generated) -> Duration {
    let started = Instant::now();
    let older_clicks: Vec<ExportedClick> =
        data.clicks.iter().filter_map(|(_, o)| o.clone()).collect();
    let older_conversions: Vec<ExportedConversion> = data
        .conversions
        .iter()
        .filter_map(|(_, o)| o.clone())
        .collect();
    let (half_clicks, half_conversions) = (older_clicks.len() / 2, older_conversions.len() / 2);
    ch.insert(
        &older_clicks[..half_clicks],
        &older_conversions[..half_conversions],
    )
    .await
    .unwrap();
    let clicks: Vec<ExportedClick> = data.clicks.iter().map(|(c, _)| c.clone()).collect();
    let conversions: Vec<ExportedConversion> =
        data.conversions.iter().map(|(c, _)| c.clone()).collect();
    ch.insert(&clicks, &conversions).await.unwrap();
    ch.insert(
        &older_clicks[half_clicks..],
        &older_conversions[half_conversions..],
    )
    .await
    .unwrap();
    let third = clicks.len() / 3;
    ch.insert(&clicks[..third], &conversions[..conversions.len() / 3])
        .await
        .unwrap();
    ch.insert(&[], &[]).await.unwrap();
    started.elapsed()
}

fn dimension_sets() -> Vec<Vec<Dimension>> {
    use Dimension::*;
    vec![
        vec![],
        vec![Campaign],
        vec![Offer],
        vec![Network],
        vec![Source],
        vec![Day],
        vec![Sub(1)],
        vec![Sub(5), Sub(2)],
        vec![Network, Offer],
        vec![Day, Campaign, Network],
        vec![
            Offer,
            Network,
            Campaign,
            Source,
            Sub(1),
            Sub(2),
            Sub(3),
            Sub(4),
            Sub(5),
            Day,
        ],
    ]
}

#[tokio::test]
#[ignore = "needs a ClickHouse server: set CLICKSTAMP_TEST_CLICKHOUSE_URL"]
async fn reports_match_the_store_on_the_same_data() {
    on_fresh_database(reports_match).await;
}

async fn reports_match(ch: ClickHouse) {
    eprintln!("ClickHouse {}", ch.ping().await.unwrap());
    ch.ensure_schema().await.unwrap();
    ch.ensure_schema().await.expect("idempotent");

    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let start_ms = 0x0190_0000_0000;
    let data = generate(&mut conn, &mut rng, 3_000, start_ms);
    let took = export(&ch, &data).await;
    eprintln!(
        "exported {} clicks, {} conversions (with older versions) in {took:?}",
        data.clicks.len(),
        data.conversions.len()
    );

    let catalog = catalog();
    let ranges = [
        (None, None),
        (Some(start_ms + DAY_MS), None),
        (None, Some(start_ms + 2 * DAY_MS + 12_345)),
        (Some(start_ms + DAY_MS / 2), Some(start_ms + 3 * DAY_MS)),
        (Some(start_ms + 10 * DAY_MS), None),
    ];
    let mut checked = 0;
    let mut slowest = Duration::ZERO;
    for dims in dimension_sets() {
        for (i, (from_ms, to_ms)) in ranges.iter().enumerate() {
            for tz_offset_min in [0, 120, -330, 840] {
                if i > 1 && tz_offset_min != 120 {
                    continue;
                }
                let params = ReportParams {
                    group_by: dims.clone(),
                    from_ms: *from_ms,
                    to_ms: *to_ms,
                    tz_offset_min,
                    ..Default::default()
                };
                let store = crate::store::sqlite::report::run(&conn, &catalog, &params).unwrap();
                let started = Instant::now();
                let ours = ch.report(&catalog, &params).await.unwrap();
                slowest = slowest.max(started.elapsed());
                assert_eq!(ours.1, store.1, "totals of {params:?}");
                assert_eq!(ours.0, store.0, "rows of {params:?}");
                checked += 1;
            }
        }
    }
    // The data reached what it was meant to test.
    let (rows, totals) = crate::store::sqlite::report::run(
        &conn,
        &catalog,
        &ReportParams {
            group_by: vec![Dimension::Network],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rows.iter().any(|r| r.keys == [None]) && rows.len() >= 4);
    assert!(
        totals.cost_micros.abs() > i128::from(i64::MAX)
            || rows
                .iter()
                .any(|r| r.figures.cost_micros.abs() > i128::from(i64::MAX))
    );
    eprintln!("{checked} reports identical; slowest {slowest:?}");
}

#[tokio::test]
#[ignore = "needs a ClickHouse server: set CLICKSTAMP_TEST_CLICKHOUSE_URL"]
async fn errors_name_the_problem_without_the_password() {
    let Some(ch) = server() else {
        eprintln!("{URL_VAR} not set: skipped");
        return;
    };
    // Tables missing: the server's own message.
    match ch.report(&catalog(), &ReportParams::default()).await {
        Err(ClickHouseError::Server(message)) => assert!(
            message.contains("Code: 81") || message.contains("Code: 60"),
            "{message}"
        ),
        other => panic!("expected a server error, got {other:?}"),
    }
    // A wrong password.
    let mut cfg = ClickHouseConfig {
        url: std::env::var(URL_VAR).unwrap(),
        database: "default".into(),
        user: Some("default".into()),
        password: Some("not-the-password-x1".into()),
        timeout: Duration::from_secs(10),
    };
    let e = ClickHouse::new(&cfg).unwrap().ping().await.unwrap_err();
    assert!(matches!(e, ClickHouseError::Server(_)), "{e:?}");
    assert!(!e.to_string().contains("not-the-password-x1"), "{e}");
    // A query cut short by the timeout.
    cfg.password = std::env::var("CLICKSTAMP_TEST_CLICKHOUSE_PASSWORD").ok();
    cfg.user = std::env::var("CLICKSTAMP_TEST_CLICKHOUSE_USER").ok();
    cfg.timeout = Duration::from_millis(300);
    let slow = ClickHouse::new(&cfg).unwrap();
    let e = slow
        .call(|| slow.server.query("SELECT sleep(2)").execute())
        .await
        .unwrap_err();
    assert!(matches!(e, ClickHouseError::Timeout { .. }), "{e:?}");
}

#[tokio::test]
#[ignore = "needs a ClickHouse server: set CLICKSTAMP_TEST_CLICKHOUSE_URL"]
async fn tables_that_are_not_ours_are_refused() {
    on_fresh_database(|ch: ClickHouse| async move {
        let run = |sql: &'static str| {
            let ch = ch.clone();
            async move { ch.call(|| ch.db.query(sql).execute()).await.unwrap() }
        };
        ch.call(|| {
            ch.server
                .query("CREATE DATABASE ?")
                .bind(clickhouse::sql::Identifier(&ch.database))
                .execute()
        })
        .await
        .unwrap();
        // An older layout: cost as a float, no visitor.
        run(
            "CREATE TABLE clicks (click_id String, ts_ms Int64, cost Float64, version UInt64) \
             ENGINE = ReplacingMergeTree(version) ORDER BY click_id",
        )
        .await;
        match ch.ensure_schema().await {
            Err(ClickHouseError::Schema(why)) => {
                assert!(why.contains("campaign_id (String) is missing"), "{why}");
                assert!(why.contains("visitor (UInt64) is missing"), "{why}");
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
        run("DROP TABLE clicks").await;
        run("CREATE TABLE clicks (click_id String) ENGINE = Log").await;
        match ch.ensure_schema().await {
            Err(ClickHouseError::Schema(why)) => assert!(why.contains("engine Log"), "{why}"),
            other => panic!("expected a schema error, got {other:?}"),
        }
        run("DROP TABLE clicks").await;
        ch.ensure_schema().await.unwrap();
    })
    .await;
}

/// Volume: `CLICKSTAMP_TEST_CLICKHOUSE_ROWS` clicks (default 200000) through
/// insert and a few reports, with timings.
#[tokio::test]
#[ignore = "needs a ClickHouse server: set CLICKSTAMP_TEST_CLICKHOUSE_URL"]
async fn timings_at_volume() {
    on_fresh_database(timings).await;
}

async fn timings(ch: ClickHouse) {
    let n: usize = std::env::var("CLICKSTAMP_TEST_CLICKHOUSE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    ch.ensure_schema().await.unwrap();
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let data = generate(&mut conn, &mut rng, n, 0x0190_0000_0000);
    let clicks: Vec<ExportedClick> = data.clicks.iter().map(|(c, _)| c.clone()).collect();
    let conversions: Vec<ExportedConversion> =
        data.conversions.iter().map(|(c, _)| c.clone()).collect();
    let started = Instant::now();
    for batch in clicks.chunks(10_000) {
        ch.insert(batch, &[]).await.unwrap();
    }
    for batch in conversions.chunks(10_000) {
        ch.insert(&[], batch).await.unwrap();
    }
    eprintln!(
        "inserted {} clicks + {} conversions in batches of 10000: {:?}",
        clicks.len(),
        conversions.len(),
        started.elapsed()
    );
    let catalog = catalog();
    for dims in [
        vec![],
        vec![Dimension::Campaign, Dimension::Day],
        vec![Dimension::Sub(1), Dimension::Network],
    ] {
        let params = ReportParams {
            group_by: dims,
            ..Default::default()
        };
        let started = Instant::now();
        let ours = ch.report(&catalog, &params).await.unwrap();
        let clickhouse_took = started.elapsed();
        let started = Instant::now();
        let store = crate::store::sqlite::report::run(&conn, &catalog, &params).unwrap();
        let store_took = started.elapsed();
        assert_eq!(ours, store);
        eprintln!(
            "report {:?}: {} rows, ClickHouse {clickhouse_took:?}, SQLite (in memory) {store_took:?}",
            params.group_by,
            ours.0.len()
        );
    }
}
