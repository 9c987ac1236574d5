//! End-to-end tests: the real binary on loopback. One test binary for all of them, so
//! the workspace links the world once.

mod analytics;
mod clickhouse_harness;
mod config_errors;
mod console;
mod destinations;
mod foundation;
mod hardening_pixel;
mod hardening_postback;
mod hardening_proxy;
mod hardening_relay;
mod landing;
mod landing_go_cli;
mod migrate_from_sqlite;
mod multinode;
mod newcomer;
mod observability;
mod on_postgres;
mod outbox_and_bugs;
mod packaging;
mod pg_harness;
mod pixel;
mod postback_promises;
mod postbacks;
mod reload;
mod reports;
mod retention;
mod sdk_browser;
mod tls;
mod traffic_rules;
