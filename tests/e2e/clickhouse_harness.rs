//! The throwaway ClickHouse server the export tests run on: a ReplacingMergeTree
//! collapses repeated rows to their latest version, the password of the second user
//! is checked, a crash and a clean restart keep the data, and nothing is left behind.

use clickstamp_e2e::clickhouse::{ClickHouseServer, EXPORTER_PASSWORD, EXPORTER_USER};
use std::net::TcpListener;

/// The table's rows as ClickHouse sees them after collapsing repeats.
fn latest_rows(server: &ClickHouseServer) -> String {
    server.query(
        "SELECT click_id, payout, version FROM harness.clicks FINAL ORDER BY click_id FORMAT TSV",
    )
}

/// Who ClickHouse runs a query as (18.16 has no `currentUser()`): the pattern is part of
/// the query's own text, so the one row of `system.processes` it matches is this query.
const WHO_AM_I: &str = "SELECT user FROM system.processes WHERE query LIKE '%who-am-i%'";

const LATEST: &str = "a\t110\t2\nb\t190\t3\nc\t300\t1\n";

#[test]
fn a_server_collapses_versions_checks_passwords_survives_restarts_and_leaves_nothing_behind() {
    let Some(server) = ClickHouseServer::start() else {
        return;
    };

    let version = server.query("SELECT version()");
    let major: u32 = version
        .trim()
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected version {version:?}"));
    assert!(major >= 18, "ClickHouse 18 or later, got {version:?}");

    server.query("CREATE DATABASE IF NOT EXISTS harness");
    server.query(
        "CREATE TABLE harness.clicks (click_id String, payout UInt64, version UInt64) \
         ENGINE = ReplacingMergeTree(version) ORDER BY click_id",
    );
    server.query("INSERT INTO harness.clicks VALUES ('a', 100, 1), ('b', 200, 1), ('c', 300, 1)");
    // A newer version of a and b, and an older one of c, which must lose.
    server.query("INSERT INTO harness.clicks VALUES ('a', 110, 2), ('b', 190, 3), ('c', 999, 0)");
    assert_eq!(
        latest_rows(&server),
        LATEST,
        "FINAL keeps each row's latest version"
    );

    let as_exporter = server.query_as(EXPORTER_USER, EXPORTER_PASSWORD, WHO_AM_I);
    assert_eq!(
        (as_exporter.status, as_exporter.text().trim()),
        (200, EXPORTER_USER),
        "the exporter user signs in with its password (headers): {}",
        as_exporter.text()
    );
    let by_url = server.post(
        &format!("/?user={EXPORTER_USER}&password={EXPORTER_PASSWORD}"),
        &[],
        WHO_AM_I.as_bytes(),
    );
    assert_eq!(
        (by_url.status, by_url.text().trim()),
        (200, EXPORTER_USER),
        "the exporter user signs in with its password (URL parameters): {}",
        by_url.text()
    );
    let wrong = server.query_as(EXPORTER_USER, "not-the-password", "SELECT 1");
    assert_ne!(wrong.status, 200, "a wrong password is refused");
    assert!(
        wrong.text().contains("password"),
        "the refusal says why: {}",
        wrong.text()
    );
    let anonymous_exporter = server.query_as(EXPORTER_USER, "", "SELECT 1");
    assert_ne!(
        anonymous_exporter.status, 200,
        "the exporter user needs its password"
    );

    let pid = server.pid().expect("the server runs");
    server.kill9();
    assert!(!server.answers_ping(), "the server is down after kill9()");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the killed server {pid} is gone"
    );
    server.start_again();
    assert_eq!(
        latest_rows(&server),
        LATEST,
        "the rows survive a crash:\n{}",
        server.log()
    );

    server.stop();
    assert!(!server.answers_ping(), "the server is down after stop()");
    server.start_again();
    assert_eq!(
        latest_rows(&server),
        LATEST,
        "the rows survive a clean restart"
    );

    let data_dir = server.data_dir();
    let ports = [server.port(), server.tcp_port()];
    let pid = server.pid().expect("the server runs");
    drop(server);
    assert!(!data_dir.exists(), "{} is removed", data_dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server {pid} is gone after drop"
    );
    for port in ports {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is free again"
        );
    }
}
