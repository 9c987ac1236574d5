//! The `clickstamp` command line.

use crate::config::{self, Config, LogFormat};
use crate::metrics::Metrics;
use crate::store::sqlite::SqliteStore;
use crate::tracker::Tracker;
use crate::{admin, service};
use clap::{Parser, Subcommand};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Print a profit report (clicks, conversions, revenue, cost, ROI...) from a running
    /// instance's admin API.
    Report(crate::report::cli::ReportArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Report(args) => crate::report::cli::run(&args),
        Command::Check { config } => match config::load(&config) {
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
        Command::Serve { config } => match config::load(&config) {
            Ok(c) => serve(c),
            Err(errors) => {
                eprint!("{}: refusing to serve: {errors}", config.display());
                ExitCode::from(2)
            }
        },
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (embedding, tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Build every service for `config` and run until told to stop.
fn serve(config: Config) -> ExitCode {
    init_logging(config.server.log_format);
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let store = match SqliteStore::open(&config.store, metrics.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("clickstamp: {e}");
            return ExitCode::from(1);
        }
    };
    let tracker = Arc::new(Tracker::new(config.clone(), store, metrics));

    let Some(mut conf) = ServerConf::new() else {
        eprintln!("clickstamp: cannot build the server configuration");
        return ExitCode::from(1);
    };
    conf.threads = config.server.threads;
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(5);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut main = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        service::MainService::new(tracker.clone()),
        "clickstamp main",
    );
    main.add_tcp(&config.server.listen.to_string());
    let mut admin = pingora::services::listening::Service::new(
        "clickstamp admin".to_string(),
        pingora::apps::http_app::HttpServer::new_app(admin::AdminApp::new(tracker.clone())),
    );
    admin.add_tcp(&config.server.admin_listen.to_string());
    let outbox = pingora::services::background::background_service(
        "clickstamp outbox",
        crate::outbox::OutboxWorker::new(tracker.clone()),
    );
    server.add_service(main);
    server.add_service(admin);
    server.add_service(outbox);
    tracing::info!(listen = %config.server.listen, admin = %config.server.admin_listen, store = %config.store.path.display(), "clickstamp serving");
    server.run_forever()
}
