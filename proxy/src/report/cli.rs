//! `clickstamp report`: ask a running instance's admin API for a report and print it.
//!
//! The CLI reads the same config file as `serve` for the admin address and token, so
//! it reports on exactly the store that instance writes, through the same code path
//! as the API (and never opens the store file itself).

use super::params::ReportParams;
use crate::config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `clickstamp report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The config file of the running instance (for its admin address and token).
    #[arg(long)]
    pub config: PathBuf,
    /// Comma-separated columns to group by: campaign, offer, network, source,
    /// sub1..sub5, day.
    #[arg(long, value_name = "COLUMNS")]
    pub group_by: Option<String>,
    /// First day (YYYY-MM-DD, in --tz), inclusive.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, in --tz), inclusive.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Fixed UTC offset days are cut in: +02:00, -05:30, Z.
    #[arg(
        long,
        value_name = "OFFSET",
        default_value = "Z",
        allow_hyphen_values = true
    )]
    pub tz: String,
    /// json or csv.
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Where the instance reads it: auto (ClickHouse when analytics is configured
    /// and backfilled, else the store), store, or clickhouse.
    #[arg(long, default_value = "auto")]
    pub source: String,
}

impl ReportArgs {
    /// The request these arguments describe, validated locally so a typo is reported
    /// before any connection is made.
    pub fn params(&self) -> Result<ReportParams, super::ParamError> {
        let enc = |v: &str| {
            v.replace('%', "%25")
                .replace('+', "%2B")
                .replace('&', "%26")
        };
        let mut q = vec![
            format!("tz={}", enc(&self.tz)),
            format!("format={}", enc(&self.format)),
            format!("source={}", enc(&self.source)),
        ];
        if let Some(g) = &self.group_by {
            q.push(format!("group_by={}", enc(g)));
        }
        if let Some(f) = &self.from {
            q.push(format!("from={}", enc(f)));
        }
        if let Some(t) = &self.to {
            q.push(format!("to={}", enc(t)));
        }
        ReportParams::from_query(&q.join("&"))
    }
}

/// Where to reach an admin listener bound to `addr` from this host.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Run `clickstamp report`: print the report on stdout; exit 2 on a bad config or
/// argument, 1 when the instance cannot answer.
pub fn run(args: &ReportArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}: {errors}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let params = match args.params() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("clickstamp report: --{}", e.to_string().replace('_', "-"));
            return ExitCode::from(2);
        }
    };
    let url = format!(
        "http://{}/api/report?{}",
        reachable(config.server.admin_listen),
        params.to_query()
    );
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let response = agent
        .get(&url)
        .header(
            "Authorization",
            format!("Bearer {}", config.secrets.admin_token),
        )
        .call();
    match response {
        Ok(mut resp) => {
            let status = resp.status();
            let body = match resp
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
            {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("clickstamp report: reading the answer from {url}: {e}");
                    return ExitCode::from(1);
                }
            };
            if status.is_success() {
                print!("{body}");
                if !body.ends_with('\n') {
                    println!();
                }
                ExitCode::SUCCESS
            } else {
                eprintln!("clickstamp report: the instance answered {status}: {body}");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!(
                "clickstamp report: cannot reach the admin listener at {}: {e} (is `clickstamp serve --config {}` running?)",
                reachable(config.server.admin_listen),
                args.config.display()
            );
            ExitCode::from(1)
        }
    }
}
