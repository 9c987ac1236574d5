//! Configuration: a TOML file parsed into [`raw::RawConfig`], then validated into the
//! typed [`Config`] the service runs on.
//!
//! Validation collects every problem before giving up, and each [`ConfigError`] names
//! the key (`campaigns[0].offers[1].weight`), what is wrong, and the fix, so one run of
//! `clickstamp check` tells an operator everything to change.

pub mod destinations;
pub mod raw;
pub mod routing;
mod secret;
pub mod traffic;
mod validate;

use clickstamp_plugins::postback::ConversionStatus;
use clickstamp_plugins::verify::Verification;
use clickstamp_plugins::{Network, TrafficSource};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use validate::validate;

/// `campaigns[].origin.timeout` when unset: the longest wait for each read from an
/// upstream origin (its response header, then each piece of its body).
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest `campaigns[].origin.timeout`: a landing page slower than this has
/// lost its visitor long before.
pub const MAX_ORIGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The TOML key the problem is at, e.g. `offers[2].url`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.key, self.problem, self.fix)
    }
}

/// Every problem found in a config file; never empty.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the config:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Load, parse and validate the config file at `path`. Relative paths inside the file
/// (store path, landers directories) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            key: "(file)".into(),
            problem: format!("cannot read {}: {e}", path.display()),
            fix: "pass an existing, readable file to --config".into(),
        }])
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base_dir)
}

/// Parse and validate config `text`; `base_dir` anchors relative paths.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| toml_errors(e, text))?;
    validate(raw, base_dir, &|name| std::env::var(name).ok())
}

/// Every TOML-level problem that can be told apart, starting from `first`. A broken
/// syntax stops the parser for good; a misspelt key or a value of the wrong type does
/// not, so the line holding it is set aside and the file read again, as long as that
/// cannot invent problems of its own (a dropped table header would move its keys into
/// the table above; a dropped required key would be reported missing).
fn toml_errors(first: toml::de::Error, text: &str) -> ConfigErrors {
    /// Enough for any real file; bounds the re-reads of a pathological one.
    const MAX_REPORTED: usize = 20;
    let mut errors = vec![toml_error(&first, text)];
    if text.parse::<toml::Table>().is_err() {
        return ConfigErrors(errors);
    }
    let mut remaining = text.to_string();
    let mut error = first;
    while errors.len() < MAX_REPORTED {
        let Some(span) = error.span() else { break };
        let at = span.start.min(remaining.len());
        let start = remaining[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = remaining[at..]
            .find('\n')
            .map_or(remaining.len(), |i| at + i);
        let line = remaining[start..end].trim_start();
        if line.is_empty() || line.starts_with(['[', '#']) {
            break;
        }
        // Blanked with spaces, not removed: spans in the re-read text stay those of
        // the original.
        remaining.replace_range(start..end, &" ".repeat(end - start));
        match toml::from_str::<raw::RawConfig>(&remaining) {
            Ok(_) => break,
            Err(next) if next.message().starts_with("missing field") => break,
            Err(next) => {
                errors.push(toml_error(&next, text));
                error = next;
            }
        }
    }
    ConfigErrors(errors)
}

/// A TOML error as a [`ConfigError`]: where it is (line, column, and the key path when
/// the parser knows it) and what the parser says.
fn toml_error(e: &toml::de::Error, text: &str) -> ConfigError {
    let position = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        format!("line {line}, column {column}")
    });
    // The parser names the key path only when it renders without the document.
    let mut bare = e.clone();
    bare.set_input(None);
    let key_path = bare.to_string().lines().find_map(|l| {
        l.strip_prefix("in `")?
            .strip_suffix('`')
            .map(str::to_string)
    });
    // For a misspelt key the parser names its table; the key itself is the one to fix.
    let unknown_key = e
        .message()
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string());
    let key_path = match (key_path, unknown_key) {
        (Some(table), Some(name)) => Some(format!("{table}.{name}")),
        (None, Some(name)) => Some(name),
        (path, None) => path,
    };
    // The parser's path leaves out which entry of an array of tables it is in;
    // counting the `[[name]]` headers before the error gives it.
    let key_path = key_path.map(|path| match (path.split_once('.'), e.span()) {
        (Some((table, rest)), Some(span)) => {
            let header = format!("[[{table}]]");
            let entries = text[..span.start.min(text.len())]
                .lines()
                .filter(|l| l.trim() == header)
                .count();
            match entries.checked_sub(1) {
                Some(index) => format!("{table}[{index}].{rest}"),
                None => path,
            }
        }
        _ => path,
    });
    let key = match (key_path, position) {
        (Some(path), Some(at)) => format!("{path} ({at})"),
        (Some(path), None) => path,
        (None, Some(at)) => format!("({at})"),
        (None, None) => "(syntax)".into(),
    };
    ConfigError {
        key,
        problem: e.message().trim_end().replace('\n', "; "),
        fix: "correct the TOML there; every key is listed in docs/configuration.md".into(),
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub secrets: Secrets,
    pub networks: Vec<NetworkConfig>,
    pub sources: Vec<SourceConfig>,
    pub offers: Vec<Offer>,
    pub campaigns: Vec<Campaign>,
    pub postbacks: PostbackConfig,
    pub outbox: OutboxConfig,
    /// `[[destinations]]`: conversions APIs and webhooks fed from the outbox.
    pub destinations: Vec<destinations::Destination>,
    pub pixel: PixelConfig,
    /// TLS on the main listener, when configured.
    pub tls: Option<TlsConfig>,
    /// `[analytics]`: reports from a column store, when configured.
    pub analytics: Option<AnalyticsConfig>,
    /// `[traffic]`: traffic-quality signals and GeoIP.
    pub traffic: traffic::TrafficConfig,
}

/// `[analytics]`: clicks and conversions streamed to ClickHouse, and reports read
/// from there.
#[derive(Debug, Clone)]
pub struct AnalyticsConfig {
    /// `analytics.clickhouse`: where the tables live.
    pub clickhouse: ClickHouseConfig,
    /// `analytics.flush_interval`: how long an idle exporter waits before looking
    /// for new changes again (default 1s): the export lag when traffic is light.
    pub flush_interval: Duration,
    /// `analytics.batch_max`: store write transactions exported per ClickHouse
    /// insert (default 2000); under load a batch fills at once and is sent without
    /// waiting for the interval.
    pub batch_max: usize,
    /// `analytics.retry_max`: the longest pause between attempts while ClickHouse
    /// is unreachable (default 30s; doubling from 1s).
    pub retry_max: Duration,
    /// `analytics.lease`: how long a batch claimed by this node stays its own
    /// (PostgreSQL; default 1m): a node that dies mid-export gives its batch up then.
    pub lease: Duration,
}

/// `analytics.clickhouse = { url, database, user_env, password_env }`
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// `url`: the HTTP interface (`http://127.0.0.1:8123`).
    pub url: String,
    /// `database`: created if missing (default `clickstamp`).
    pub database: String,
    /// The user named by the variable `user_env` (else ClickHouse's `default`).
    pub user: Option<String>,
    /// The password in the variable `password_env`. Never logged.
    pub password: Option<String>,
    /// `timeout`: how long one request may take (default 30s).
    pub timeout: Duration,
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `[tls]`: the main listener also answers HTTPS here.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Address of the HTTPS listener (the plain `server.listen` stays).
    pub listen: SocketAddr,
    /// Certificates; the first is served when the client's SNI matches none.
    pub certificates: Vec<Certificate>,
}

/// `[[tls.certificates]]`
#[derive(Debug, Clone)]
pub struct Certificate {
    /// SNI host names this certificate serves (lowercase).
    pub hosts: Vec<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[pixel]`: browser conversions on `/px`.
#[derive(Debug, Clone)]
pub struct PixelConfig {
    /// How long a pixel-only conversion waits for its S2S twin before it is relayed.
    pub grace_period: Duration,
    /// Pixel hits allowed per client IP per minute (bursts up to the same number).
    pub rate_limit_per_minute: u32,
    /// Origins allowed to send beacons (CORS); `*` allows any.
    pub allowed_origins: Vec<String>,
}

impl PixelConfig {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    pub fn cors_origin(&self, origin: Option<&str>) -> Option<String> {
        if self.allowed_origins.iter().any(|o| o == "*") {
            return Some("*".into());
        }
        let origin = origin?;
        self.allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| origin.to_string())
    }
}

/// `[postbacks]`
#[derive(Debug, Clone)]
pub struct PostbackConfig {
    /// Largest postback body accepted; larger ones are refused with 413 (and journalled,
    /// truncated to this size).
    pub max_body_bytes: usize,
    /// Accept a postback for a click that went to an offer of another network (or,
    /// without a `/go`, whose campaign has no offer of this network). Off by default:
    /// such postbacks are refused with `network_mismatch`.
    pub allow_cross_network: bool,
}

/// `[outbox]`: delivery of conversions to traffic sources.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Timeout of one delivery attempt (connect + response).
    pub timeout: Duration,
    /// Attempts before an entry is dead-lettered.
    pub max_attempts: u32,
    /// Age after which a failing entry is dead-lettered whatever its attempts.
    pub max_age: Duration,
    /// Retry delays.
    pub backoff: crate::outbox::backoff::Backoff,
    /// How often the worker looks for due entries when nothing wakes it.
    pub poll_interval: Duration,
}

impl Config {
    /// The longest attribution window of any campaign: a click ID older than this is
    /// expired everywhere, so it can be refused from the ID alone.
    pub fn max_attribution_window(&self) -> Duration {
        self.campaigns
            .iter()
            .map(|c| c.attribution_window)
            .max()
            .unwrap_or(validate::DEFAULT_ATTRIBUTION_WINDOW)
    }

    /// Index of the offer with `id`.
    pub fn offer_index(&self, id: &str) -> Option<usize> {
        self.offers.iter().position(|o| o.id == id)
    }

    /// Index of the campaign with `id`.
    pub fn campaign_index(&self, id: &str) -> Option<usize> {
        self.campaigns.iter().position(|c| c.id == id)
    }
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Main listener (landing pages, /go, /postback, /px).
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /api).
    pub admin_listen: SocketAddr,
    /// Worker threads for the main listener.
    pub threads: usize,
    /// The public base URL networks reach us at (used to print postback URLs).
    pub public_url: String,
    /// Header holding the client address when behind a trusted load balancer.
    pub client_ip_header: Option<String>,
    /// Who may set `client_ip_header` (empty: any peer), and so who the visitor is.
    pub trust: crate::forwarding::TrustRule,
    /// Deadlines for a client's request header and body (`header_timeout`,
    /// `body_timeout`).
    pub deadlines: crate::conn::Deadlines,
    /// Open connections at most on the main listener(s) (`max_connections`).
    pub max_connections: usize,
    /// Open connections at most on the admin listener (`admin_max_connections`).
    pub admin_max_connections: usize,
    /// Prefix of the per-campaign click cookie (`<prefix><campaign id>`).
    pub cookie_prefix: String,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// `server.demo_relay_sink`: the admin listener answers `GET /demo/relay` and logs
    /// what arrives, so the demo's traffic source relays somewhere visible.
    pub demo_relay_sink: bool,
}

impl ServerConfig {
    /// The URL of the demo relay sink, when it is on.
    pub fn demo_relay_sink_url(&self) -> Option<String> {
        self.demo_relay_sink
            .then(|| format!("http://{}{}", self.admin_listen, DEMO_RELAY_SINK_PATH))
    }
}

/// Where the demo relay sink answers on the admin listener.
pub const DEMO_RELAY_SINK_PATH: &str = "/demo/relay";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The response waits for the transaction holding the click to commit.
    Commit,
    /// The response does not wait; a crash can lose the last batch.
    Async,
}

/// SQLite `synchronous` level for the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Committed data survives a process crash (kill -9); not an OS crash or power cut.
    Normal,
    /// One fsync per batch: committed data survives power loss too.
    Full,
}

/// `[store]`
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `store.backend`: the embedded SQLite file (default) or a shared PostgreSQL.
    pub backend: StoreBackend,
    /// `store.path`: the SQLite file (the embedded backend only).
    pub path: PathBuf,
    pub durability: Durability,
    pub sync: SyncMode,
    pub batch_max: usize,
    pub click_cache: usize,
    /// `store.wal_max_bytes`: past this size the write-ahead log is checkpointed in
    /// full and started over (briefly holding writes), so it stays bounded under
    /// sustained load.
    pub wal_max_bytes: u64,
    /// Every write transaction also queues what it changed for the analytics
    /// exporter (set when `[analytics]` is configured; see `store/export.rs`).
    pub analytics_queue: bool,
    /// `[store.retention]`: what the background pruner deletes (nothing by default).
    pub retention: RetentionConfig,
}

/// `[store.retention]`: which old rows the pruner deletes, and how gently. Every rule
/// is off unless its key is set: nothing is ever deleted by default. See
/// `docs/retention-and-backup.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// `store.retention.clicks_margin`: a click no conversion refers to is deleted (with
    /// its `/go` records) once it is older than the longest campaign attribution window
    /// plus this margin. Clicks with conversions are always kept.
    pub clicks_margin: Option<Duration>,
    /// `store.retention.journal_max_age`: postback journal entries older than this are
    /// deleted (they can no longer be replayed or audited).
    pub journal_max_age: Option<Duration>,
    /// `store.retention.delivered_outbox_max_age`: outbox entries delivered longer ago
    /// than this are deleted. Pending and dead entries are never pruned.
    pub delivered_outbox_max_age: Option<Duration>,
    /// `store.retention.interval`: how often the pruner runs (default 1h).
    pub interval: Duration,
    /// `store.retention.batch`: rows looked at per transaction (default 1000), so no
    /// delete holds the writer for long.
    pub batch: u32,
    /// `store.retention.pause`: the pause between two batches (default 50ms), so the
    /// request path's writes go first.
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            clicks_margin: None,
            journal_max_age: None,
            delivered_outbox_max_age: None,
            interval: Duration::from_secs(3600),
            batch: 1000,
            pause: Duration::from_millis(50),
        }
    }
}

impl RetentionConfig {
    /// Whether any rule is set (the pruner runs only then).
    pub fn is_enabled(&self) -> bool {
        self.clicks_margin.is_some()
            || self.journal_max_age.is_some()
            || self.delivered_outbox_max_age.is_some()
    }
}

/// Which database holds the store.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// One SQLite file beside the process: one node.
    Sqlite,
    /// A PostgreSQL database any number of nodes share.
    Postgres(PostgresConfig),
}

/// The `[store]` keys of `backend = "postgres"`.
#[derive(Clone)]
pub struct PostgresConfig {
    /// `store.url` or the variable `store.url_env` names: a libpq URL
    /// (`postgres://user:password@host:port/db?...`, several hosts allowed with
    /// `target_session_attrs=read-write`). May hold a password: never logged.
    pub url: String,
    /// `store.pool_size`: connections this node keeps (reads and the writer).
    pub pool_size: usize,
    /// `store.statement_timeout`: the server cancels a statement running longer.
    pub statement_timeout: Duration,
    /// `store.connect_timeout`: how long a connection attempt may take before the
    /// database counts as unreachable.
    pub connect_timeout: Duration,
    /// `store.outbox_lease`: how long an outbox entry handed to this node stays its
    /// own; a node that dies mid-delivery gives its entries up when this runs out.
    pub outbox_lease: Duration,
    /// `store.spool_path`: the node's SQLite file for clicks taken while the database
    /// is unreachable (forwarded once it answers again).
    pub spool_path: PathBuf,
    /// `store.writers`: transactions this node commits at once (each batching every
    /// write queued meanwhile).
    pub writers: usize,
    /// `store.tls_ca_file`: PEM certificates the server's is verified against (else
    /// the system's roots); TLS itself is the URL's `sslmode`.
    pub tls_ca_file: Option<PathBuf>,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("outbox_lease", &self.outbox_lease)
            .field("spool_path", &self.spool_path)
            .field("writers", &self.writers)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// `[secrets]`
#[derive(Clone)]
pub struct Secrets {
    pub click_id_key: Vec<u8>,
    pub admin_token: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { <redacted> }")
    }
}

/// `[[networks]]`
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub id: String,
    pub plugin: Arc<dyn Network>,
    /// How its postbacks are authenticated.
    pub verification: Verification,
    /// Status of a conversion whose postback names none.
    pub default_status: ConversionStatus,
}

/// `[[traffic_sources]]`
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: String,
    /// The plugin; its `postback_template()` is the configured `postback_url`.
    pub plugin: Arc<dyn TrafficSource>,
}

/// `[[offers]]`
#[derive(Debug, Clone)]
pub struct Offer {
    pub id: String,
    pub url: String,
    /// Index into [`Config::networks`].
    pub network: usize,
    /// Payout when the postback carries none.
    pub payout: Option<f64>,
    /// Currency when the postback carries none.
    pub currency: Option<String>,
    /// Whether one click may convert several times for the same event (rebills,
    /// upsells) when each postback carries its own txid.
    pub multiple_conversions: bool,
    /// Extra patterns whose links count as this offer's (`offers[].match`).
    pub match_urls: Vec<String>,
}

/// Where a campaign's landing pages come from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// An HTTP upstream.
    Upstream {
        addr: SocketAddr,
        /// Connect with TLS (an `https://` upstream).
        tls: bool,
        /// Verify the upstream's certificate and hostname (`origin.verify_tls`).
        verify_tls: bool,
        /// The `Host` header sent upstream (`host[:port]` as written in the URL).
        host_header: String,
        /// The TLS server name (the URL's host, without port).
        sni: String,
        /// Path prefix on the upstream that the campaign path maps to.
        base_path: String,
        /// Which forwarding headers the upstream gets (`origin.forwarded_headers`).
        forwarded_headers: crate::forwarding::ForwardedHeaders,
    },
    /// Static files in a local directory.
    Landers { root: PathBuf },
}

/// `[[campaigns]]`
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: String,
    /// Lowercase host the campaign answers on, or any host.
    pub host: Option<String>,
    /// Path prefix (`/summer`); `/` matches everything.
    pub path: String,
    /// Index into [`Config::sources`].
    pub source: usize,
    /// `(index into Config::offers, weight)`; weights sum to more than 0.
    pub offers: Vec<(usize, u32)>,
    pub origin: Origin,
    /// How long each read from an upstream origin may wait (`origin.timeout`); past it
    /// the visitor gets a 504.
    pub origin_timeout: Duration,
    pub attribution_window: Duration,
    /// Cost per click when the source does not report one.
    pub cost: Option<f64>,
    /// Whether `/go` may mint a click for a visitor who never saw the landing page.
    pub direct_linking: bool,
    /// How its HTML pages are rewritten (`campaigns[].rewrite`).
    pub rewrite: crate::rewrite::RewriteSettings,
    /// What a flagged click does (`campaigns[].quality`).
    pub quality: crate::traffic::QualityPolicy,
    /// Routing rules and rotation (`campaigns[].routing`); the default path is the
    /// campaign's `offers`.
    pub routing: routing::Routing,
}
