//! The `clickstamp` command line.

mod logging;
pub mod ops;
mod table;

use crate::config::{self, Config, LogFormat};
use crate::metrics::Metrics;
use crate::tracker::Tracker;
use crate::{admin, service};
use clap::{Parser, Subcommand};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use table::Align;

#[derive(Debug, Parser)]
#[command(name = "clickstamp", version, about = "A conversion-tracking edge.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the tracker.
    Serve {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file and report every problem, without serving.
    Check {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the URL to paste into a campaign's traffic source as the ad's target: the
    /// landing URL with the source's own click-ID, cost and sub-ID macros.
    CampaignUrl {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// The campaign's id in the config.
        #[arg(long)]
        campaign: String,
    },
    /// Print the postback URL to paste into a network's dashboard.
    PostbackUrl {
        /// The TOML config file.
        #[arg(long)]
        config: PathBuf,
        /// The network's id in the config.
        #[arg(long)]
        network: String,
    },
    /// Fire a realistic test postback and then its duplicate at the running instance,
    /// on a test click kept out of reports and relays.
    PostbackTest {
        /// The TOML config file of the running instance (its admin listener is called).
        #[arg(long)]
        config: PathBuf,
        /// The network's id in the config.
        #[arg(long)]
        network: String,
    },
    /// List journalled postbacks (newest first).
    Journal {
        /// The TOML config file of the running instance (its admin listener is called).
        #[arg(long)]
        config: PathBuf,
        /// Only postbacks of this network id.
        #[arg(long)]
        network: Option<String>,
        /// accepted, duplicate, status_changed or rejected.
        #[arg(long)]
        outcome: Option<String>,
        /// Only refusals with this reason (e.g. bad_signature, unknown_click).
        #[arg(long)]
        reason: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// List outbox entries (relays to traffic sources), newest first.
    Outbox {
        /// The TOML config file of the running instance (its admin listener is called).
        #[arg(long)]
        config: PathBuf,
        /// pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Replay a dead letter, all dead letters, or a journalled postback.
    Replay {
        /// The TOML config file of the running instance (its admin listener is called).
        #[arg(long)]
        config: PathBuf,
        /// Requeue this dead outbox entry.
        #[arg(long, conflicts_with_all = ["all_dead", "journal"])]
        dead: Option<i64>,
        /// Requeue every dead outbox entry.
        #[arg(long, conflicts_with = "journal")]
        all_dead: bool,
        /// Run this journalled postback through the pipeline again.
        #[arg(long)]
        journal: Option<i64>,
    },
    /// Print a profit report (clicks, conversions, revenue, cost, ROI...) from a running
    /// instance's admin API.
    Report(crate::report::cli::ReportArgs),
    /// Make the running instance re-read its config file (as SIGHUP does): checked as
    /// `check` does; when invalid, the running config keeps serving and the problems
    /// are printed (exit 2). Keys that only a restart applies are listed.
    Reload {
        /// The running instance's config file (for its admin address and token).
        #[arg(long)]
        config: PathBuf,
    },
    /// Analytics (ClickHouse): export history, or show where the export stands.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Copy an embedded (SQLite) store into the PostgreSQL database the config names.
    /// Idempotent and resumable: run it again after an interruption.
    Migrate {
        /// The TOML config file; its [store] has backend = "postgres".
        #[arg(long)]
        config: PathBuf,
        /// The embedded store's file (store.path of the SQLite config, by default
        /// data/clickstamp.sqlite beside it).
        #[arg(long)]
        from_sqlite: PathBuf,
    },
    /// Copy the embedded (SQLite) store to a file while it serves: one consistent
    /// snapshot, checked before it is moved into place. (PostgreSQL: use pg_dump or
    /// pg_basebackup.)
    Backup {
        /// The TOML config file; the store is its store.path.
        #[arg(long)]
        config: PathBuf,
        /// The backup file to write (replaced if it exists).
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Send the store's history (clicks, then conversions) to ClickHouse. Resumable;
    /// harmless to repeat; can run beside a serving node.
    Backfill {
        /// The TOML config file; it has an [analytics] section.
        #[arg(long)]
        config: PathBuf,
        /// Send everything again, even after a finished backfill.
        #[arg(long)]
        restart: bool,
    },
    /// Print the export backlog, the backfill's state and whether ClickHouse answers.
    Status {
        /// The TOML config file; it has an [analytics] section.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Report(args) => crate::report::cli::run(&args),
        Command::Reload { config } => crate::reload::run_cli(&config),
        Command::Check { config } => match config::load(&config) {
            Ok(c)
                if c.tls
                    .as_ref()
                    .is_some_and(|t| crate::tls::resolver(t).is_err()) =>
            {
                if let Some(Err(e)) = c.tls.as_ref().map(crate::tls::resolver) {
                    eprintln!("{}: {e} (fix: use PEM files holding the certificate chain and its private key)", config.display());
                }
                ExitCode::from(2)
            }
            Ok(c) => {
                println!(
                    "{}: ok ({} campaigns, {} offers, {} networks, {} traffic sources)",
                    config.display(),
                    c.campaigns.len(),
                    c.offers.len(),
                    c.networks.len(),
                    c.sources.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{}: {errors}", config.display());
                ExitCode::from(2)
            }
        },
        Command::CampaignUrl { config, campaign } => with_config(&config, |c| {
            println!("{}", ops::campaign_url(c, &campaign)?);
            Ok(())
        }),
        Command::PostbackUrl { config, network } => with_config(&config, |c| {
            println!("{}", ops::postback_url(c, &network)?);
            Ok(())
        }),
        Command::PostbackTest { config, network } => with_config(&config, |c| {
            let run = ops::postback_test(c, &network)?;
            println!("click id:  {}", run.click_id);
            println!("postback:  {}", run.url);
            println!("first:     HTTP {} {}", run.first.0, run.first.1);
            println!("duplicate: HTTP {} {}", run.second.0, run.second.1);
            let ok =
                run.first.0 == 200 && run.second.0 == 200 && run.second.1["status"] == "duplicate";
            println!(
                "{}",
                if ok {
                    "ok: accepted once, duplicate recognised"
                } else {
                    "unexpected: see the answers above and `clickstamp journal`"
                }
            );
            println!("a test click: its conversion is journalled but kept out of reports and not relayed to the traffic source");
            Ok(())
        }),
        Command::Journal {
            config,
            network,
            outcome,
            reason,
            limit,
        } => with_config(&config, |c| {
            let mut q = format!("/api/journal?limit={limit}");
            for (k, v) in [
                ("network", network),
                ("outcome", outcome),
                ("reason", reason),
            ] {
                if let Some(v) = v {
                    q.push_str(&format!(
                        "&{k}={}",
                        clickstamp_plugins::query::encode_query_value(&v)
                    ));
                }
            }
            let v = ops::admin(c, "GET", &q)?;
            let rows: Vec<Vec<String>> = v["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    vec![
                        e["id"].to_string(),
                        table::utc_time(e["ts_ms"].as_u64()),
                        text(&e["network_id"]),
                        text(&e["outcome"]),
                        text(&e["reason"]),
                        text(&e["raw_query"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        ("id", Align::Right),
                        ("time (UTC)", Align::Left),
                        ("network", Align::Left),
                        ("outcome", Align::Left),
                        ("reason", Align::Left),
                        ("query", Align::Left),
                    ],
                    &rows
                )
            );
            Ok(())
        }),
        Command::Outbox {
            config,
            state,
            limit,
        } => with_config(&config, |c| {
            let mut q = format!("/api/outbox?limit={limit}");
            if let Some(s) = state {
                q.push_str(&format!(
                    "&state={}",
                    clickstamp_plugins::query::encode_query_value(&s)
                ));
            }
            let v = ops::admin(c, "GET", &q)?;
            let rows: Vec<Vec<String>> = v["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let error = text(&e["last_error"]);
                    // A destination's entry has no URL: its request is built when sent.
                    let target = match e["destination_id"].as_str() {
                        Some(d) => format!("destination {d}"),
                        None => text(&e["url"]),
                    };
                    vec![
                        e["id"].to_string(),
                        table::utc_time(e["created_ms"].as_u64()),
                        text(&e["source_id"]),
                        text(&e["state"]),
                        e["attempts"].to_string(),
                        text(&e["last_status"]),
                        if error == "-" {
                            target
                        } else {
                            format!("{target}  ({error})")
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        ("id", Align::Right),
                        ("created (UTC)", Align::Left),
                        ("source", Align::Left),
                        ("state", Align::Left),
                        ("attempts", Align::Right),
                        ("status", Align::Right),
                        ("url (last error)", Align::Left),
                    ],
                    &rows
                )
            );
            Ok(())
        }),
        Command::Replay {
            config,
            dead,
            all_dead,
            journal,
        } => with_config(&config, |c| {
            let path = match (dead, all_dead, journal) {
                (Some(id), _, _) => format!("/api/outbox/{id}/replay"),
                (None, true, _) => "/api/outbox/replay-dead".to_string(),
                (None, false, Some(id)) => format!("/api/journal/{id}/replay"),
                (None, false, None) => {
                    return Err(ops::OpsError::Setup(
                        "pass --dead ID, --all-dead or --journal ID".into(),
                    ))
                }
            };
            println!("{}", ops::admin(c, "POST", &path)?);
            Ok(())
        }),
        Command::Analytics { command } => {
            let (path, restart, backfill) = match &command {
                AnalyticsCommand::Backfill { config, restart } => (config, *restart, true),
                AnalyticsCommand::Status { config } => (config, false, false),
            };
            match config::load(path) {
                Ok(c) => analytics_command(c, backfill, restart),
                Err(errors) => {
                    eprint!("{}: {errors}", path.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Migrate {
            config,
            from_sqlite,
        } => match config::load(&config) {
            Ok(c) => {
                let mut out = std::io::stdout().lock();
                match crate::store::postgres::import::run(&c.store, &from_sqlite, &mut out) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("clickstamp migrate: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(errors) => {
                eprint!("{}: {errors}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Backup { config, to } => match config::load(&config) {
            Ok(c) => match crate::store::backup::run(&c.store, &to) {
                Ok(done) => {
                    println!(
                        "backed up {} to {} ({} bytes, integrity ok, {} ms)",
                        c.store.path.display(),
                        done.path.display(),
                        done.bytes,
                        done.took.as_millis()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("clickstamp backup: {e}");
                    ExitCode::from(1)
                }
            },
            Err(errors) => {
                eprint!("{}: {errors}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            // First thing: a SIGHUP's default action ends the process, and an operator's
            // `systemctl reload` can come while the store is still opening.
            let early_hangup = crate::reload::catch_hangups_early();
            match config::load(&config) {
                Ok(c) => serve(c, &config, early_hangup),
                Err(errors) => {
                    eprint!("{}: refusing to serve: {errors}", config.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// `clickstamp analytics backfill|status`: opens the store itself (as a node named
/// after the command, so a serving node's leases are left alone).
fn analytics_command(config: Config, backfill: bool, restart: bool) -> ExitCode {
    init_logging(config.server.log_format);
    let Some(analytics_config) = config.analytics.clone() else {
        eprintln!("clickstamp analytics: the config has no [analytics] section");
        return ExitCode::from(2);
    };
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("clickstamp analytics: cannot start a runtime");
        return ExitCode::from(1);
    };
    let metrics = Arc::new(Metrics::new());
    let node = if backfill {
        "analytics-backfill"
    } else {
        "analytics-status"
    };
    let store = match crate::store::open(&config.store, node, metrics.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clickstamp analytics: {e}");
            return ExitCode::from(1);
        }
    };
    let client = match crate::analytics::ClickHouse::new(&analytics_config.clickhouse) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clickstamp analytics: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let mut out = std::io::stdout().lock();
        if backfill {
            crate::analytics::backfill::run(store.as_ref(), &client, restart, &mut out)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        } else {
            analytics_status(store.as_ref(), &client, &mut out).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clickstamp analytics: {e}");
            ExitCode::from(1)
        }
    }
}

async fn analytics_status(
    store: &dyn crate::store::Store,
    client: &crate::analytics::ClickHouse,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    let backlog = store.export_backlog().await.map_err(|e| e.to_string())?;
    let cursor = store.backfill_cursor().await.map_err(|e| e.to_string())?;
    let lag = backlog
        .oldest_ms
        .map_or(0, |t| (crate::store::export::now_ms() - t).max(0));
    let _ = writeln!(
        out,
        "export queue: {} transactions, {} changes waiting; oldest {:.1} s ago",
        backlog.entries,
        backlog.changes,
        lag as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "backfill:     {}",
        if cursor.done {
            "complete (reports read ClickHouse)".to_string()
        } else {
            format!(
                "not complete (reports read the store); run `clickstamp analytics backfill` (at click {}, conversion {})",
                cursor.click_after.as_deref().unwrap_or("-"),
                cursor.conversion_after.map_or("-".into(), |c| c.to_string())
            )
        }
    );
    match client.ping().await {
        Ok(version) => {
            let _ = writeln!(out, "clickhouse:   answers (version {version})");
            Ok(())
        }
        Err(e) => {
            let _ = writeln!(out, "clickhouse:   NOT answering: {e}");
            Err("ClickHouse does not answer".into())
        }
    }
}

/// A JSON value as a table cell: strings without quotes, numbers as written, `-` for
/// a missing value.
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) if s.is_empty() => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Load the config, run `f`, and turn its error into a message and exit code 1.
fn with_config(
    path: &std::path::Path,
    f: impl FnOnce(&Config) -> Result<(), ops::OpsError>,
) -> ExitCode {
    match config::load(path) {
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            ExitCode::from(2)
        }
        Ok(c) => match f(&c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("clickstamp: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, as documented: stdout is for what a command prints. Colour
    // codes only reach a terminal: in a file or journald they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (embedding, tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .event_format(logging::JsonWithoutSourcePaths(
                tracing_subscriber::fmt::format().json(),
            ))
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Build every service for `config` and run until told to stop.
fn serve(
    config: Config,
    config_path: &std::path::Path,
    early_hangup: crate::reload::EarlyHangup,
) -> ExitCode {
    init_logging(config.server.log_format);
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let store = match crate::store::open(
        &config.store,
        &config.server.listen.to_string(),
        metrics.clone(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clickstamp: {e}");
            return ExitCode::from(1);
        }
    };
    let tracker = Arc::new(Tracker::new(config.clone(), store, metrics));
    let reloader = Arc::new(crate::reload::Reloader::new(tracker.clone(), config_path));
    // Every connection is a file descriptor: ask for all the kernel allows, and say
    // what it is, so a cap that does not fit is visible in the first lines of the log.
    match crate::conn::raise_file_limit() {
        Ok((soft, hard)) => {
            let wanted =
                (config.server.max_connections + config.server.admin_max_connections) as u64;
            if soft < wanted.saturating_add(256) {
                tracing::warn!(open_files = soft, hard_limit = hard, max_connections = config.server.max_connections, admin_max_connections = config.server.admin_max_connections, "the open-file limit is below the connection caps plus room for the store and upstreams; raise the hard limit (ulimit -Hn) or lower server.max_connections");
            } else {
                tracing::info!(open_files = soft, hard_limit = hard, "open-file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read or raise the open-file limit"),
    }

    let Some(mut conf) = ServerConf::new() else {
        eprintln!("clickstamp: cannot build the server configuration");
        return ExitCode::from(1);
    };
    conf.threads = config.server.threads;
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(5);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let connections = match crate::conn::ConnectionMetrics::register(tracker.metrics.registry()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("clickstamp: cannot register the connection metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let limits = |max_connections| crate::conn::ConnectionLimits {
        max_connections,
        deadlines: config.server.deadlines,
    };
    let proxy = pingora::proxy::http_proxy(
        &server.configuration,
        service::MainService::new(tracker.clone()),
    );
    let mut main = pingora::services::listening::Service::new(
        "clickstamp main".to_string(),
        crate::conn::Guarded::new(
            proxy,
            limits(config.server.max_connections),
            connections.listener("main"),
        ),
    );
    main.add_tcp(&config.server.listen.to_string());
    if let Some(tls) = &config.tls {
        match crate::tls::settings(tls) {
            Ok(settings) => main.add_tls_with_settings(&tls.listen.to_string(), None, settings),
            Err(e) => {
                eprintln!("clickstamp: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut admin = pingora::services::listening::Service::new(
        "clickstamp admin".to_string(),
        crate::conn::Guarded::new(
            pingora::apps::http_app::HttpServer::new_app(
                admin::AdminApp::new(tracker.clone()).with_reloader(reloader.clone()),
            ),
            limits(config.server.admin_max_connections),
            connections.listener("admin"),
        ),
    );
    admin.add_tcp(&config.server.admin_listen.to_string());
    let outbox = pingora::services::background::background_service(
        "clickstamp outbox",
        crate::outbox::OutboxWorker::new(tracker.clone()),
    );
    server.add_service(main);
    server.add_service(admin);
    server.add_service(outbox);
    // Always running (idle without destinations), so a reload can add some.
    server.add_service(pingora::services::background::background_service(
        "clickstamp destinations",
        crate::outbox::destinations::DestinationWorker::new(tracker.clone()),
    ));
    if config.store.retention.is_enabled() {
        match crate::store::retention::RetentionMetrics::register(tracker.metrics.registry()) {
            Ok(retention_metrics) => {
                let live = tracker.clone();
                server.add_service(pingora::services::background::background_service(
                    "clickstamp retention",
                    crate::store::retention::Pruner::new(
                        tracker.store.clone(),
                        config.store.retention.clone(),
                        Arc::new(move || live.config().max_attribution_window()),
                        retention_metrics,
                    ),
                ));
            }
            Err(e) => {
                eprintln!("clickstamp: cannot register the retention metrics: {e}");
                return ExitCode::from(1);
            }
        }
    }
    server.add_service(pingora::services::background::background_service(
        "clickstamp reload",
        crate::reload::ReloadOnHangup::new(reloader, early_hangup),
    ));
    if tracker.analytics.is_some() {
        server.add_service(pingora::services::background::background_service(
            "clickstamp analytics",
            crate::analytics::Exporter::new(tracker.clone()),
        ));
    }
    let store_name = match &config.store.backend {
        crate::config::StoreBackend::Sqlite => config.store.path.display().to_string(),
        crate::config::StoreBackend::Postgres(_) => "postgres".to_string(),
    };
    tracing::info!(listen = %config.server.listen, admin = %config.server.admin_listen, store = %store_name, "clickstamp serving");
    if let Some(url) = config.server.demo_relay_sink_url() {
        tracing::info!("demo relay sink on: traffic sources may relay to {url}; each relay it receives is logged");
    }
    server.run_forever()
}
