//! The throwaway PostgreSQL cluster the store tests run on: databases of its own, a
//! clean restart and a crash keep the data, and nothing is left behind.

use clickstamp_e2e::store::connect;
use clickstamp_e2e::PgCluster;
use std::net::TcpListener;

/// The one value a database's `marker` table holds.
fn marker(url: &str) -> String {
    connect(url)
        .query_one("SELECT value FROM marker", &[])
        .unwrap_or_else(|e| panic!("read the marker of {url}: {e}"))
        .get(0)
}

#[test]
fn a_cluster_serves_separate_databases_survives_restarts_and_leaves_nothing_behind() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let first = cluster.create_database();
    let second = cluster.create_database();
    assert_ne!(first, second, "each database is new");
    for (url, value) in [(&first, "first"), (&second, "second")] {
        let mut client = connect(url);
        client
            .batch_execute("CREATE TABLE marker (value TEXT NOT NULL)")
            .unwrap();
        client
            .execute("INSERT INTO marker (value) VALUES ($1)", &[&value])
            .unwrap();
    }
    assert_eq!(marker(&first), "first");
    assert_eq!(marker(&second), "second", "the databases are separate");

    cluster.stop();
    assert!(
        connect_fails(&cluster.url("postgres")),
        "the server is down after stop()"
    );
    cluster.start_again();
    assert_eq!(marker(&first), "first", "a clean restart keeps the data");

    cluster.kill9();
    assert!(
        connect_fails(&cluster.url("postgres")),
        "the server is down after kill9()"
    );
    cluster.start_again();
    assert_eq!(
        marker(&second),
        "second",
        "crash recovery keeps committed data:\n{}",
        cluster.log()
    );

    let data_dir = cluster.data_dir();
    let port = cluster.port();
    drop(cluster);
    assert!(!data_dir.exists(), "{} is removed", data_dir.display());
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port {port} is free again"
    );
}

fn connect_fails(url: &str) -> bool {
    let mut config: postgres::Config = url.parse().unwrap();
    config.connect_timeout(std::time::Duration::from_secs(2));
    config.connect(postgres::NoTls).is_err()
}
