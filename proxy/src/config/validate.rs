//! Raw → typed config, collecting every problem.

use super::raw::*;
use super::*;
use crate::forwarding::ForwardedHeaders;
use clickstamp_plugins::network::is_absolute_http_url;
use clickstamp_plugins::{
    builtin_network_kinds, builtin_network_spec, builtin_source_kinds, builtin_source_spec,
    lint_network, lint_source_template, ClickIdCodec, FieldSpec, HmacVerification, IpAllowlist,
    NetworkSpec, Severity, SourceSpec, SourceToken, SpecNetwork, SpecSource, TokenStyle,
};
use std::collections::HashSet;
use std::net::ToSocketAddrs;

pub(super) const DEFAULT_ATTRIBUTION_WINDOW: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9091";
const DEFAULT_STORE_PATH: &str = "data/clickstamp.sqlite";
/// A browser sends its whole request header in one packet; 10 s leaves room for the
/// slowest mobile link while cutting a client that trickles it.
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Postback and beacon bodies are small; 30 s is ample for any real sender.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Comfortably above what one node serves, far below a raised file limit.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Scrapers, the CLI and an operator's browser: a few dozen at most.
const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 256;
const MIN_ADMIN_TOKEN_LEN: usize = 16;

struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

/// The ids each section declares, whether or not the entry itself is valid.
struct Declared<'a> {
    networks: Vec<&'a str>,
    sources: Vec<&'a str>,
    offers: Vec<&'a str>,
}

/// Report a reference to `id` unless it names a declared entry (one that has its own
/// problem already reported). The fix lists the ids that exist.
fn unknown_reference(
    key: String,
    what: &str,
    section: &str,
    id: &str,
    declared: &[&str],
    p: &mut Problems,
) {
    if declared.contains(&id) {
        return;
    }
    let fix = if declared.is_empty() {
        format!("add a [[{section}]] entry with id = \"{id}\"")
    } else {
        // Each id once (a duplicate has its own error), and not hundreds of them.
        const SHOWN: usize = 20;
        let mut valid: Vec<String> = Vec::new();
        for d in declared {
            let quoted = format!("\"{d}\"");
            if !valid.contains(&quoted) {
                valid.push(quoted);
            }
        }
        let more = valid.len().saturating_sub(SHOWN);
        valid.truncate(SHOWN);
        if more > 0 {
            valid.push(format!("and {more} more"));
        }
        format!(
            "use one of the configured {what} ids ({}), or add a [[{section}]] entry with id = \"{id}\"",
            valid.join(", ")
        )
    };
    p.add(key, format!("unknown {what} \"{id}\""), fix);
}

/// Validate `raw`. `env` looks up environment variables (injected so tests stay pure).
pub fn validate(
    raw: RawConfig,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut p = Problems(Vec::new());
    let server = server(&raw.server, &mut p);
    let store = store(&raw.store, base_dir, env, &mut p);
    let secrets = secrets(&raw.secrets, env, &mut p);
    let networks = networks(&raw.networks, env, &mut p);
    let sources = sources(&raw.traffic_sources, &mut p);
    // References are checked against every declared id: an entry refused for its own
    // problem still exists, so what names it gets no second, misleading error.
    let declared = Declared {
        networks: raw.networks.iter().map(|n| n.id.as_str()).collect(),
        sources: raw.traffic_sources.iter().map(|s| s.id.as_str()).collect(),
        offers: raw.offers.iter().map(|o| o.id.as_str()).collect(),
    };
    let offers = offers(&raw.offers, &networks, &declared, &mut p);
    let campaigns = campaigns(
        &raw.campaigns,
        &sources,
        &offers,
        &declared,
        base_dir,
        &mut p,
    );
    let postbacks = PostbackConfig {
        max_body_bytes: raw.postbacks.max_body_bytes.unwrap_or(64 * 1024),
        allow_cross_network: raw.postbacks.allow_cross_network.unwrap_or(false),
    };
    if postbacks.max_body_bytes == 0 || postbacks.max_body_bytes > 16 << 20 {
        p.add(
            "postbacks.max_body_bytes",
            format!("{} bytes", postbacks.max_body_bytes),
            "use 1 byte to 16 MiB (postbacks are small; 65536 is plenty)",
        );
    }
    let outbox = outbox(&raw.outbox, &mut p);
    let destinations = destinations::validate(
        &raw.destinations,
        &declared.sources,
        base_dir,
        env,
        &mut p.0,
    );
    let tls = raw.tls.as_ref().map(|t| tls(t, base_dir, &server, &mut p));
    let analytics = raw
        .analytics
        .as_ref()
        .and_then(|a| analytics(a, env, &mut p));
    let mut store = store;
    store.analytics_queue = analytics.is_some();
    let pixel = PixelConfig {
        grace_period: duration_field(
            "pixel.grace_period",
            &raw.pixel.grace_period,
            Duration::from_secs(600),
            &mut p,
        ),
        rate_limit_per_minute: raw.pixel.rate_limit_per_minute.unwrap_or(120),
        allowed_origins: raw
            .pixel
            .allowed_origins
            .clone()
            .unwrap_or_else(|| vec!["*".into()]),
    };
    if pixel.rate_limit_per_minute == 0 {
        p.add(
            "pixel.rate_limit_per_minute",
            "0 hits a minute refuses every pixel",
            "use a positive number, e.g. 120",
        );
    }
    for (i, o) in pixel.allowed_origins.iter().enumerate() {
        if o != "*" && !is_absolute_http_url(o) {
            p.add(
                format!("pixel.allowed_origins[{i}]"),
                format!("{o:?} is not an origin"),
                "write origins like \"https://shop.example\" or \"*\"",
            );
        }
    }

    let offer_ids: HashSet<&str> = offers.iter().map(|o| o.id.as_str()).collect();
    for (i, c) in campaigns.iter().enumerate() {
        if offer_ids.contains(c.id.as_str()) {
            p.add(
                format!("campaigns[{i}].id"),
                format!(
                    "\"{}\" is also an offer id, so /go/{} would be ambiguous",
                    c.id, c.id
                ),
                "give the campaign and the offer different ids",
            );
        }
    }
    let traffic = super::traffic::traffic(&raw.traffic, base_dir, &mut p.0);
    if !p.0.is_empty() {
        return Err(ConfigErrors(p.0));
    }
    Ok(Config {
        server,
        store,
        secrets: secrets.expect("checked: no problems recorded"),
        networks,
        sources,
        offers,
        campaigns,
        postbacks,
        outbox,
        destinations,
        pixel,
        tls,
        analytics,
        traffic,
    })
}

fn tls(raw: &RawTls, base_dir: &Path, server: &ServerConfig, p: &mut Problems) -> TlsConfig {
    let listen = socket_addr(
        "tls.listen",
        raw.listen.as_deref().unwrap_or("127.0.0.1:8443"),
        p,
    );
    if listen == server.listen || listen == server.admin_listen {
        p.add(
            "tls.listen",
            "the HTTPS listener shares an address with another listener",
            "pick its own port, e.g. 443 or 8443",
        );
    }
    if raw.certificates.is_empty() {
        p.add(
            "tls.certificates",
            "no certificates",
            "add [[tls.certificates]] with hosts, cert and key",
        );
    }
    let mut certificates = Vec::new();
    let mut seen_hosts = HashSet::new();
    for (i, c) in raw.certificates.iter().enumerate() {
        let mut file = |name: &str, v: &Option<String>| -> Option<PathBuf> {
            match v {
                None => {
                    p.add(
                        format!("tls.certificates[{i}].{name}"),
                        "missing",
                        format!("set {name} to a PEM file path"),
                    );
                    None
                }
                Some(f) => {
                    let path = base_dir.join(f);
                    if !path.is_file() {
                        p.add(format!("tls.certificates[{i}].{name}"), format!("{} does not exist", path.display()), "point it at a readable PEM file (relative paths start at the config file's directory)");
                    }
                    Some(path)
                }
            }
        };
        let (cert, key) = (file("cert", &c.cert), file("key", &c.key));
        if c.hosts.is_empty() {
            p.add(
                format!("tls.certificates[{i}].hosts"),
                "no host names",
                "list the SNI names this certificate serves, e.g. [\"lp.example.com\"]",
            );
        }
        for h in &c.hosts {
            if !seen_hosts.insert(h.to_ascii_lowercase()) {
                p.add(
                    format!("tls.certificates[{i}].hosts"),
                    format!("{h} is served by another certificate too"),
                    "list each host under one certificate",
                );
            }
        }
        if let (Some(cert), Some(key)) = (cert, key) {
            certificates.push(Certificate {
                hosts: c.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                cert,
                key,
            });
        }
    }
    TlsConfig {
        listen,
        certificates,
    }
}

fn outbox(raw: &RawOutbox, p: &mut Problems) -> OutboxConfig {
    let concurrency = raw.concurrency.unwrap_or(16);
    if concurrency == 0 || concurrency > 1024 {
        p.add(
            "outbox.concurrency",
            format!("{concurrency} deliveries in flight"),
            "use 1-1024",
        );
    }
    let max_attempts = raw.max_attempts.unwrap_or(12);
    if max_attempts == 0 {
        p.add(
            "outbox.max_attempts",
            "0 attempts would dead-letter every relay unsent",
            "use at least 1 (12 spans about a day with the default backoff)",
        );
    }
    let base = duration_field(
        "outbox.backoff_base",
        &raw.backoff_base,
        Duration::from_secs(1),
        p,
    );
    let max = duration_field(
        "outbox.backoff_max",
        &raw.backoff_max,
        Duration::from_secs(3600),
        p,
    );
    OutboxConfig {
        concurrency: concurrency.clamp(1, 1024),
        timeout: duration_field("outbox.timeout", &raw.timeout, Duration::from_secs(10), p),
        max_attempts: max_attempts.max(1),
        max_age: duration_field(
            "outbox.max_age",
            &raw.max_age,
            Duration::from_secs(3 * 86_400),
            p,
        ),
        backoff: crate::outbox::backoff::Backoff::new(base, max),
        poll_interval: duration_field(
            "outbox.poll_interval",
            &raw.poll_interval,
            Duration::from_millis(250),
            p,
        ),
    }
}

/// Ids become metric labels, cookie names and URL path segments: keep them tame.
fn check_id(kind: &str, key: &str, id: &str, seen: &mut HashSet<String>, p: &mut Problems) {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        p.add(
            key,
            format!("{kind} id {id:?} is not 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"),
            "rename it: ids appear in URLs, cookie names and metric labels",
        );
    } else if !seen.insert(id.to_string()) {
        p.add(
            key,
            format!("duplicate {kind} id \"{id}\""),
            format!("give each {kind} a unique id"),
        );
    }
}

fn socket_addr(key: &str, value: &str, p: &mut Problems) -> SocketAddr {
    match value.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            p.add(
                key,
                format!("{value:?} is not an address:port"),
                "write it like \"127.0.0.1:8080\"",
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    }
}

fn server(raw: &RawServer, p: &mut Problems) -> ServerConfig {
    let listen = socket_addr(
        "server.listen",
        raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        p,
    );
    let admin_listen = socket_addr(
        "server.admin_listen",
        raw.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        p,
    );
    if listen == admin_listen && listen.port() != 0 {
        p.add(
            "server.admin_listen",
            "the admin listener uses the same address as the main listener",
            "pick another port so /metrics and /api are never exposed on the public listener",
        );
    }
    let threads = raw.threads.unwrap_or(2);
    if threads == 0 || threads > 256 {
        p.add(
            "server.threads",
            format!("{threads} worker threads"),
            "use 1-256 (the number of cores is a good start)",
        );
    }
    let public_url = raw
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{listen}"))
        .trim_end_matches('/')
        .to_string();
    if !is_absolute_http_url(&public_url) {
        p.add(
            "server.public_url",
            format!("{public_url:?} is not an http(s) URL"),
            "write the URL networks reach clickstamp at, e.g. \"https://trk.example.com\"",
        );
    }
    let cookie_prefix = raw.cookie_prefix.clone().unwrap_or_else(|| "cs_".into());
    if cookie_prefix.is_empty()
        || !cookie_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        p.add(
            "server.cookie_prefix",
            format!("{cookie_prefix:?} is not a valid cookie-name prefix"),
            "use letters, digits, '_' or '-'",
        );
    }
    let log_format = match raw.log_format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.add(
                "server.log_format",
                format!("unknown log format {other:?}"),
                "use \"text\" or \"json\"",
            );
            LogFormat::Text
        }
    };
    let mut proxies = Vec::new();
    for (j, text) in raw.trusted_proxies.iter().flatten().enumerate() {
        match text.parse::<clickstamp_plugins::Cidr>() {
            Ok(cidr) => proxies.push(cidr),
            Err(e) => p.add(
                format!("server.trusted_proxies[{j}]"),
                e.to_string(),
                "list your load balancers' IPs or CIDRs like \"10.0.0.0/8\"",
            ),
        }
    }
    if raw.trusted_proxies.is_some() && raw.client_ip_header.is_none() {
        p.add(
            "server.trusted_proxies",
            "trusted_proxies is set but server.client_ip_header is not",
            "set client_ip_header to the header your load balancer writes (e.g. \"X-Forwarded-For\"), or remove trusted_proxies",
        );
    }
    let deadlines = crate::conn::Deadlines {
        header: duration_field(
            "server.header_timeout",
            &raw.header_timeout,
            DEFAULT_HEADER_TIMEOUT,
            p,
        ),
        body: duration_field(
            "server.body_timeout",
            &raw.body_timeout,
            DEFAULT_BODY_TIMEOUT,
            p,
        ),
    };
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        p.add(
            "server.max_connections",
            "0 connections would refuse every visitor",
            "use a positive number (the default is 10000)",
        );
    }
    let admin_max_connections = raw
        .admin_max_connections
        .unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS);
    if admin_max_connections == 0 {
        p.add(
            "server.admin_max_connections",
            "0 connections would refuse every scrape and API call",
            "use a positive number (the default is 256)",
        );
    }
    let demo_relay_sink = raw.demo_relay_sink.unwrap_or(false);
    // The sink answers without the admin token (a traffic source sends none), so it
    // is only for an admin listener nobody else can reach.
    if demo_relay_sink && !admin_listen.ip().is_loopback() {
        p.add(
            "server.demo_relay_sink",
            format!(
                "the demo relay sink would answer anyone on {admin_listen}, without the admin token"
            ),
            "turn it off (it is for trying clickstamp out), or set server.admin_listen to a loopback address such as \"127.0.0.1:9091\"",
        );
    }
    ServerConfig {
        listen,
        admin_listen,
        threads,
        public_url,
        trust: crate::forwarding::TrustRule {
            header: raw.client_ip_header.clone(),
            proxies,
        },
        client_ip_header: raw.client_ip_header.clone(),
        cookie_prefix,
        log_format,
        demo_relay_sink,
        deadlines,
        max_connections: max_connections.max(1),
        admin_max_connections: admin_max_connections.max(1),
    }
}

fn store(
    raw: &RawStore,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> StoreConfig {
    let path = base_dir.join(raw.path.as_deref().unwrap_or(DEFAULT_STORE_PATH));
    let backend = store_backend(raw, base_dir, env, p);
    let durability = match raw.durability.as_deref().unwrap_or("commit") {
        "commit" => Durability::Commit,
        "async" => Durability::Async,
        other => {
            p.add(
                "store.durability",
                format!("unknown durability {other:?}"),
                "use \"commit\" (answer after the click is on disk) or \"async\"",
            );
            Durability::Commit
        }
    };
    let sync = match raw.sync.as_deref().unwrap_or("normal") {
        "normal" => SyncMode::Normal,
        "full" => SyncMode::Full,
        other => {
            p.add(
                "store.sync",
                format!("unknown sync mode {other:?}"),
                "use \"normal\" (survives kill -9) or \"full\" (survives power loss)",
            );
            SyncMode::Normal
        }
    };
    let batch_max = raw.batch_max.unwrap_or(1024);
    if batch_max == 0 {
        p.add(
            "store.batch_max",
            "a batch of 0 writes",
            "use a positive number, e.g. 1024",
        );
    }
    let wal_max_bytes = raw.wal_max_bytes.unwrap_or(32 << 20);
    if wal_max_bytes < 1 << 20 {
        p.add(
            "store.wal_max_bytes",
            format!("{wal_max_bytes} bytes"),
            "use at least 1 MiB (1048576); 33554432 (32 MiB) suits most loads",
        );
    }
    StoreConfig {
        backend,
        path,
        durability,
        sync,
        batch_max: batch_max.max(1),
        click_cache: raw.click_cache.unwrap_or(100_000),
        wal_max_bytes,
        analytics_queue: false,
        retention: raw
            .retention
            .as_ref()
            .map(|r| retention(r, p))
            .unwrap_or_default(),
    }
}

/// The shortest journal and outbox retention: replays and audits of the last day must
/// stay possible, and a typo like "90m" for "90d" must not empty the journal.
const MIN_RETENTION_AGE: Duration = Duration::from_secs(86_400);

/// `[store.retention]`.
fn retention(raw: &RawRetention, p: &mut Problems) -> RetentionConfig {
    let defaults = RetentionConfig::default();
    let optional = |key: &str, text: &Option<String>, p: &mut Problems| {
        text.as_ref()
            .map(|_| duration_field(key, text, Duration::ZERO, p))
            .filter(|d| !d.is_zero())
    };
    let clicks_margin = optional("store.retention.clicks_margin", &raw.clicks_margin, p);
    let journal_max_age = optional("store.retention.journal_max_age", &raw.journal_max_age, p);
    let delivered_outbox_max_age = optional(
        "store.retention.delivered_outbox_max_age",
        &raw.delivered_outbox_max_age,
        p,
    );
    for (key, age) in [
        ("store.retention.journal_max_age", journal_max_age),
        (
            "store.retention.delivered_outbox_max_age",
            delivered_outbox_max_age,
        ),
    ] {
        if age.is_some_and(|a| a < MIN_RETENTION_AGE) {
            p.add(
                key,
                "less than a day",
                "keep at least \"1d\" (e.g. \"90d\"), or remove the key to keep everything",
            );
        }
    }
    let set = raw.clicks_margin.is_some()
        || raw.journal_max_age.is_some()
        || raw.delivered_outbox_max_age.is_some();
    if !set {
        p.add(
            "store.retention",
            "the section sets no rule, so nothing would be pruned",
            "set clicks_margin, journal_max_age or delivered_outbox_max_age, or remove [store.retention]",
        );
    }
    let batch = raw.batch.unwrap_or(defaults.batch);
    if !(1..=100_000).contains(&batch) {
        p.add(
            "store.retention.batch",
            format!("{batch} rows"),
            "use 1 to 100000 rows per transaction; 1000 keeps each delete short",
        );
    }
    RetentionConfig {
        clicks_margin,
        journal_max_age,
        delivered_outbox_max_age,
        interval: duration_field(
            "store.retention.interval",
            &raw.interval,
            defaults.interval,
            p,
        ),
        batch: batch.clamp(1, 100_000),
        pause: duration_field("store.retention.pause", &raw.pause, defaults.pause, p),
    }
}

/// Upper bound of `store.pool_size`: PostgreSQL's own default `max_connections` is 100,
/// shared by every node.
const MAX_POOL_SIZE: usize = 256;

fn store_backend(
    raw: &RawStore,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> StoreBackend {
    let postgres_keys = [
        ("store.url", raw.url.is_some()),
        ("store.url_env", raw.url_env.is_some()),
        ("store.pool_size", raw.pool_size.is_some()),
        ("store.statement_timeout", raw.statement_timeout.is_some()),
        ("store.connect_timeout", raw.connect_timeout.is_some()),
        ("store.outbox_lease", raw.outbox_lease.is_some()),
        ("store.spool_path", raw.spool_path.is_some()),
        ("store.writers", raw.writers.is_some()),
        ("store.tls_ca_file", raw.tls_ca_file.is_some()),
    ];
    match raw.backend.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            for (key, set) in postgres_keys {
                if set {
                    p.add(
                        key,
                        "only the postgres backend reads it",
                        "set store.backend = \"postgres\" or remove the key",
                    );
                }
            }
            StoreBackend::Sqlite
        }
        "postgres" => {
            if raw.path.is_some() {
                p.add(
                    "store.path",
                    "the postgres backend keeps no store file",
                    "remove store.path, or use store.backend = \"sqlite\"",
                );
            }
            let url = secret("store.url", &raw.url, "store.url_env", &raw.url_env, env, p);
            if let Some(url) = &url {
                // Parsed here so `check` names a bad URL; the message never repeats
                // the URL itself (it may hold a password).
                if let Err(e) = url.parse::<tokio_postgres::Config>() {
                    p.add(
                        if raw.url.is_some() {
                            "store.url"
                        } else {
                            "store.url_env"
                        },
                        format!("not a PostgreSQL connection URL ({e})"),
                        "write postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    );
                }
            }
            let pool_size = raw.pool_size.unwrap_or(16);
            if !(2..=MAX_POOL_SIZE).contains(&pool_size) {
                p.add(
                    "store.pool_size",
                    format!("{pool_size} connections"),
                    format!(
                        "use 2 to {MAX_POOL_SIZE} (one writer plus readers); 16 suits most nodes"
                    ),
                );
            }
            let statement_timeout = duration_field(
                "store.statement_timeout",
                &raw.statement_timeout,
                Duration::from_secs(10),
                p,
            );
            let connect_timeout = duration_field(
                "store.connect_timeout",
                &raw.connect_timeout,
                Duration::from_secs(3),
                p,
            );
            let outbox_lease = duration_field(
                "store.outbox_lease",
                &raw.outbox_lease,
                Duration::from_secs(120),
                p,
            );
            if outbox_lease < Duration::from_secs(1) {
                p.add(
                    "store.outbox_lease",
                    format!("{outbox_lease:?}"),
                    "use at least \"1s\", and more than a relay may take (outbox.timeout)",
                );
            }
            let writers = raw.writers.unwrap_or(1);
            if writers == 0 || writers > pool_size / 2 {
                p.add(
                    "store.writers",
                    format!("{writers} writers with a pool of {pool_size}"),
                    "use 1 to half of store.pool_size; 1 suits a database sharing the node's cores, 2-4 one on its own machine",
                );
            }
            StoreBackend::Postgres(PostgresConfig {
                url: url.unwrap_or_default(),
                pool_size: pool_size.clamp(2, MAX_POOL_SIZE),
                statement_timeout,
                connect_timeout,
                outbox_lease,
                writers: writers.clamp(1, (pool_size / 2).max(1)),
                tls_ca_file: raw.tls_ca_file.as_deref().map(|f| {
                    let path = base_dir.join(f);
                    if !path.is_file() {
                        p.add(
                            "store.tls_ca_file",
                            format!("{} is not a file", path.display()),
                            "name the PEM file of the database server's CA (relative paths start at the config's directory)",
                        );
                    }
                    path
                }),
                spool_path: base_dir.join(raw.spool_path.as_deref().unwrap_or("data/spool.sqlite")),
            })
        }
        other => {
            p.add(
                "store.backend",
                format!("unknown backend {other:?}"),
                "use \"sqlite\" (one node, no setup) or \"postgres\" (many nodes, one database)",
            );
            StoreBackend::Sqlite
        }
    }
}

/// `[analytics]`. `None` (with problems recorded) when it cannot be used.
fn analytics(
    raw: &RawAnalytics,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<AnalyticsConfig> {
    let Some(ch) = &raw.clickhouse else {
        p.add(
            "analytics.clickhouse",
            "[analytics] names no database",
            "add clickhouse = { url = \"http://127.0.0.1:8123\", database = \"clickstamp\" }, or remove [analytics]",
        );
        return None;
    };
    let url = ch.url.clone().unwrap_or_default();
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            if !u.username().is_empty() || u.password().is_some() {
                p.add(
                    "analytics.clickhouse.url",
                    "the URL carries credentials, which would end up in logs",
                    "remove them from the URL and use user_env and password_env",
                );
            }
            if u.query().is_some() || u.path() != "/" {
                p.add(
                    "analytics.clickhouse.url",
                    format!("{url:?} has a path or query"),
                    "give the HTTP interface's root, e.g. \"http://127.0.0.1:8123\"",
                );
            }
        }
        _ => p.add(
            "analytics.clickhouse.url",
            format!("{url:?} is not an http(s) URL"),
            "give ClickHouse's HTTP interface, e.g. \"http://127.0.0.1:8123\"",
        ),
    }
    let database = ch.database.clone().unwrap_or_else(|| "clickstamp".into());
    let plain = database
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && database.len() <= 64
        && database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        p.add(
            "analytics.clickhouse.database",
            format!("{database:?} is not a plain name"),
            "use letters, digits and underscores, starting with a letter (e.g. \"clickstamp\")",
        );
    }
    let from_env = |key: &str, name: &Option<String>, p: &mut Problems| -> Option<String> {
        let name = name.as_ref()?;
        let value = env(name);
        if value.is_none() {
            p.add(
                key,
                format!("environment variable {name} is not set"),
                format!("export {name} before starting clickstamp"),
            );
        }
        value
    };
    let user = from_env("analytics.clickhouse.user_env", &ch.user_env, p);
    let password = from_env("analytics.clickhouse.password_env", &ch.password_env, p);
    let flush_interval = duration_field(
        "analytics.flush_interval",
        &raw.flush_interval,
        Duration::from_secs(1),
        p,
    );
    let retry_max = duration_field(
        "analytics.retry_max",
        &raw.retry_max,
        Duration::from_secs(30),
        p,
    );
    let lease = duration_field("analytics.lease", &raw.lease, Duration::from_secs(60), p);
    let timeout = duration_field(
        "analytics.clickhouse.timeout",
        &ch.timeout,
        Duration::from_secs(30),
        p,
    );
    let batch_max = raw.batch_max.unwrap_or(2000);
    if !(1..=100_000).contains(&batch_max) {
        p.add(
            "analytics.batch_max",
            format!("{batch_max} write transactions per insert"),
            "use 1 to 100000 (2000 is plenty: each holds a whole group commit)",
        );
    }
    if lease <= timeout {
        p.add(
            "analytics.lease",
            format!(
                "a lease of {lease:?} can run out while one ClickHouse request ({timeout:?}) is still going"
            ),
            "make analytics.lease longer than analytics.clickhouse.timeout",
        );
    }
    Some(AnalyticsConfig {
        clickhouse: ClickHouseConfig {
            url: url.trim_end_matches('/').to_string(),
            database,
            user,
            password,
            timeout,
        },
        flush_interval,
        batch_max,
        retry_max: retry_max.max(Duration::from_secs(1)),
        lease,
    })
}

fn secret(
    key: &str,
    inline: &Option<String>,
    env_key: &str,
    env_name: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<String> {
    match (inline, env_name) {
        (Some(v), None) => Some(v.clone()),
        (None, Some(name)) => match env(name) {
            Some(v) => Some(v),
            None => {
                p.add(
                    env_key,
                    format!("environment variable {name} is not set"),
                    format!("export {name} before starting clickstamp"),
                );
                None
            }
        },
        (Some(_), Some(_)) => {
            p.add(
                key,
                format!("both {key} and {env_key} are set"),
                "keep one of them",
            );
            None
        }
        (None, None) => {
            p.add(
                key,
                "missing secret",
                format!("set {key} (or {env_key} naming an environment variable)"),
            );
            None
        }
    }
}

fn secrets(
    raw: &RawSecrets,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<Secrets> {
    let key = secret(
        "secrets.click_id_key",
        &raw.click_id_key,
        "secrets.click_id_key_env",
        &raw.click_id_key_env,
        env,
        p,
    );
    let token = secret(
        "secrets.admin_token",
        &raw.admin_token,
        "secrets.admin_token_env",
        &raw.admin_token_env,
        env,
        p,
    );
    if let Some(k) = &key {
        if k.len() < ClickIdCodec::MIN_KEY_LEN {
            p.add(
                "secrets.click_id_key",
                format!("the key is {} bytes long", k.len()),
                format!(
                    "use at least {} random bytes, e.g. `openssl rand -hex 32`",
                    ClickIdCodec::MIN_KEY_LEN
                ),
            );
        }
    }
    if let Some(t) = &token {
        if t.len() < MIN_ADMIN_TOKEN_LEN {
            p.add(
                "secrets.admin_token",
                format!("the token is {} characters long", t.len()),
                format!("use at least {MIN_ADMIN_TOKEN_LEN} random characters"),
            );
        }
    }
    Some(Secrets {
        click_id_key: key?.into_bytes(),
        admin_token: token?,
    })
}

fn status_word(key: &str, word: &str, p: &mut Problems) -> Option<ConversionStatus> {
    let status = ConversionStatus::parse_lenient(word);
    if status.is_none() {
        p.add(
            key,
            format!("{word:?} is not a conversion status"),
            "use pending, approved, rejected or chargeback",
        );
    }
    status
}

fn duration_field(
    key: &str,
    raw: &Option<String>,
    default: Duration,
    p: &mut Problems,
) -> Duration {
    match raw {
        None => default,
        Some(text) => parse_duration(text).unwrap_or_else(|| {
            p.add(
                key,
                format!("{text:?} is not a duration"),
                "write a positive duration like \"500ms\", \"30s\", \"5m\", \"2h\", \"3d\"",
            );
            default
        }),
    }
}

fn network_spec(i: usize, n: &RawNetwork, kind: &str, p: &mut Problems) -> Option<NetworkSpec> {
    let builtin = builtin_network_spec(kind);
    let custom_fields = n.macro_style.is_some() || !n.macros.is_empty() || !n.status_map.is_empty();
    let mut spec = match (builtin, &n.click_id_param) {
        (Some(spec), _) => spec,
        (None, Some(param)) => {
            let style = match n.macro_style.as_deref().map(TokenStyle::from_name) {
                Some(Some(s)) => s,
                Some(None) => {
                    p.add(format!("networks[{i}].macro_style"), format!("{:?} is not a macro style", n.macro_style.as_deref().unwrap_or("")), "write an example like \"{x}\", \"#x#\", \"[X]\", \"${X}\", \"{{x}}\", \"!!x!!\" or a style name like \"hash\"");
                    return None;
                }
                None => TokenStyle::Brace,
            };
            NetworkSpec::new(kind, param.clone(), style).click_id_macro(param)
        }
        (None, None) => {
            let known: Vec<&str> = builtin_network_kinds().collect();
            p.add(
                format!("networks[{i}].kind"),
                format!("unknown network kind \"{kind}\""),
                format!("use a built-in kind ({}) or describe a custom network with click_id_param, macro_style and macros", known.join(", ")),
            );
            return None;
        }
    };
    if let (Some(param), true) = (&n.click_id_param, builtin_network_spec(kind).is_some()) {
        spec.click_id_param = param.clone();
    }
    if custom_fields && builtin_network_spec(kind).is_some() && n.macro_style.is_some() {
        if let Some(style) = n.macro_style.as_deref().and_then(TokenStyle::from_name) {
            spec.macro_style = style;
        }
    }
    for (field, macro_name) in &n.macros {
        let f = FieldSpec::new(field.clone(), macro_name.clone());
        match field.as_str() {
            "click_id" | "cid" => spec.click_id = FieldSpec::new("cid", macro_name.clone()),
            "payout" => spec.payout = Some(f),
            "currency" => spec.currency = Some(f),
            "txid" => spec.txid = Some(f),
            "status" => spec.status = Some(f),
            "event" => spec.event = Some(f),
            other => p.add(
                format!("networks[{i}].macros.{other}"),
                format!("unknown postback field \"{other}\""),
                "map one of click_id, payout, currency, txid, status, event to the network's macro name",
            ),
        }
    }
    for (word, status) in &n.status_map {
        if let Some(s) = status_word(&format!("networks[{i}].status_map.{word}"), status, p) {
            spec.status_map.push((word.clone(), s));
        }
    }
    Some(spec)
}

fn verification(
    i: usize,
    n: &RawNetwork,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Verification {
    let mut v = Verification::none();
    let optional_secret = |key: &str,
                           inline: &Option<String>,
                           env_key: &str,
                           env_name: &Option<String>,
                           p: &mut Problems| {
        match (inline, env_name) {
            (None, None) => None,
            _ => secret(key, inline, env_key, env_name, env, p),
        }
    };
    if let Some(secret) = optional_secret(
        &format!("networks[{i}].secret"),
        &n.secret,
        &format!("networks[{i}].secret_env"),
        &n.secret_env,
        p,
    ) {
        if secret.len() < 8 {
            p.add(
                format!("networks[{i}].secret"),
                "the shared secret is shorter than 8 characters",
                "use a long random value, e.g. `openssl rand -hex 16`",
            );
        }
        v = v.with_secret(
            n.secret_param.clone().unwrap_or_else(|| "secret".into()),
            secret,
        );
    }
    if let Some(key) = optional_secret(
        &format!("networks[{i}].hmac_key"),
        &n.hmac_key,
        &format!("networks[{i}].hmac_key_env"),
        &n.hmac_key_env,
        p,
    ) {
        let mut h = HmacVerification::new(key.into_bytes());
        if let Some(sp) = &n.hmac_signature_param {
            h.signature_param = sp.clone();
        }
        h.signature_header = n.hmac_signature_header.clone();
        if let Some(tp) = &n.hmac_timestamp_param {
            h.timestamp_param = tp.clone();
        }
        h.window_secs = duration_field(
            &format!("networks[{i}].hmac_window"),
            &n.hmac_window,
            Duration::from_secs(300),
            p,
        )
        .as_secs();
        v = v.with_hmac(h);
    }
    if !n.allow_ips.is_empty() {
        match IpAllowlist::parse(&n.allow_ips) {
            Ok(list) => v = v.with_allowlist(list),
            Err(e) => p.add(
                format!("networks[{i}].allow_ips"),
                e.to_string(),
                "list IPs or CIDRs like \"203.0.113.7\" or \"10.0.0.0/8\"",
            ),
        }
    }
    v
}

fn networks(
    raw: &[RawNetwork],
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Vec<NetworkConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        check_id("network", &format!("networks[{i}].id"), &n.id, &mut seen, p);
        let kind = n.kind.clone().unwrap_or_else(|| n.id.clone());
        let verification = verification(i, n, env, p);
        let default_status = match &n.default_status {
            None => ConversionStatus::Approved,
            Some(w) => status_word(&format!("networks[{i}].default_status"), w, p)
                .unwrap_or(ConversionStatus::Approved),
        };
        let Some(spec) = network_spec(i, n, &kind, p) else {
            continue;
        };
        let plugin = match SpecNetwork::new(spec) {
            Ok(plugin) => plugin,
            Err(e) => {
                p.add(
                    format!("networks[{i}]"),
                    e.to_string(),
                    "fix the network description (see docs/configuration.md, [[networks]])",
                );
                continue;
            }
        };
        for finding in lint_network(&plugin) {
            if finding.severity == Severity::Error {
                p.add(
                    format!("networks[{i}]"),
                    format!("{} ({})", finding.message, finding.code),
                    "correct the network's macros or parameters",
                );
            }
        }
        out.push(NetworkConfig {
            id: n.id.clone(),
            plugin: Arc::new(plugin),
            verification,
            default_status,
        });
    }
    out
}

fn sources(raw: &[RawSource], p: &mut Problems) -> Vec<SourceConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        check_id(
            "traffic source",
            &format!("traffic_sources[{i}].id"),
            &s.id,
            &mut seen,
            p,
        );
        let kind = s.kind.clone().unwrap_or_else(|| "custom".into());
        let mut spec = match builtin_source_spec(&kind) {
            Some(spec) => spec,
            None if kind == "custom" => SourceSpec::new("custom", Vec::new(), TokenStyle::Brace),
            None => {
                let known: Vec<&str> = builtin_source_kinds().collect();
                p.add(
                    format!("traffic_sources[{i}].kind"),
                    format!("unknown traffic source kind \"{kind}\""),
                    format!(
                        "use a built-in kind ({}) or \"custom\" with click_id_params",
                        known.join(", ")
                    ),
                );
                continue;
            }
        };
        if !s.click_id_params.is_empty() {
            spec.click_id_params = s.click_id_params.clone();
        }
        if spec.click_id_params.is_empty() {
            p.add(
                format!("traffic_sources[{i}].click_id_params"),
                "no landing-URL parameter carries the source's click id",
                "list the parameter(s) your campaign URL passes the source's click id in, e.g. [\"tsid\"]",
            );
            continue;
        }
        if let Some(c) = &s.cost_param {
            spec.cost_param = Some(c.clone());
        }
        if !s.sub_id_params.is_empty() {
            spec.sub_id_params = s.sub_id_params.clone();
        }
        if spec.sub_id_params.len() > 5 {
            p.add(
                format!("traffic_sources[{i}].sub_id_params"),
                format!("{} sub id parameters", spec.sub_id_params.len()),
                "keep at most 5 (sub1-sub5)",
            );
        }
        if let Some(style) = &s.token_style {
            match TokenStyle::from_name(style) {
                Some(st) => spec.token_style = st,
                None => p.add(
                    format!("traffic_sources[{i}].token_style"),
                    format!("{style:?} is not a token style"),
                    "write an example like \"${X}\", \"{x}\" or \"[X]\"",
                ),
            }
        }
        for (token, field) in &s.tokens {
            match SourceToken::parse(token, field) {
                Ok(t) => spec.tokens.push(t),
                Err(e) => p.add(
                    format!("traffic_sources[{i}].tokens.{token}"),
                    e.to_string(),
                    "map the token to one of the relay fields listed",
                ),
            }
        }
        if let Some(url) = &s.postback_url {
            spec.postback_template = Some(url.clone());
        }
        if let Some(r) = s.relay_status_changes {
            spec.relays_status_changes = r;
        }
        if let Some(url) = &s.postback_url {
            // A token in the scheme or host would let a relayed value pick the
            // destination: refused here, under the key the operator edits.
            if !is_absolute_http_url(url) {
                p.add(
                    format!("traffic_sources[{i}].postback_url"),
                    format!("{url:?} is not an absolute http(s) URL"),
                    "paste the source's postback URL as its dashboard shows it",
                );
                continue;
            }
            let template = clickstamp_plugins::Template::parse(url, spec.token_style);
            if let Err(e) = template.check_url() {
                p.add(
                    format!("traffic_sources[{i}].postback_url"),
                    e.to_string(),
                    "keep the scheme and host as the source's dashboard writes them; tokens belong in the path or the query",
                );
                continue;
            }
        }
        let plugin = match SpecSource::new(spec) {
            Ok(plugin) => plugin,
            Err(e) => {
                p.add(
                    format!("traffic_sources[{i}]"),
                    e.to_string(),
                    "fix the source description (see docs/configuration.md, [[traffic_sources]])",
                );
                continue;
            }
        };
        if let Some(url) = &s.postback_url {
            for finding in lint_source_template(&plugin, url) {
                if finding.severity == Severity::Error {
                    p.add(
                        format!("traffic_sources[{i}].postback_url"),
                        finding.message.clone(),
                        "use only tokens this source fills, in its own syntax (docs/plugins.md lists them per source)",
                    );
                }
            }
        }
        out.push(SourceConfig {
            id: s.id.clone(),
            plugin: Arc::new(plugin),
        });
    }
    out
}

fn offers(
    raw: &[RawOffer],
    networks: &[NetworkConfig],
    declared: &Declared,
    p: &mut Problems,
) -> Vec<Offer> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, o) in raw.iter().enumerate() {
        check_id("offer", &format!("offers[{i}].id"), &o.id, &mut seen, p);
        if !is_absolute_http_url(&o.url) {
            p.add(
                format!("offers[{i}].url"),
                format!("offer URL {:?} is not an absolute http(s) URL", o.url),
                "write the full offer link, e.g. \"https://network.example/offer?a=1\"",
            );
        }
        match networks.iter().position(|n| n.id == o.network) {
            Some(network) => {
                // Stamping a sample click id finds a click-id token the offer URL holds
                // in its host, which no click may fill.
                if let Err(e @ clickstamp_plugins::StampError::UnsafeUrl(_)) = networks[network]
                    .plugin
                    .stamp_offer_url(&o.url, "00000000000000000000000000000000")
                {
                    p.add(
                        format!("offers[{i}].url"),
                        e.to_string(),
                        "keep the scheme and host literal; put the click-id token in the path or the query",
                    );
                }
                if let Some(Err(why)) = o.payout.map(|v| {
                    clickstamp_plugins::postback::check_amount(v)
                        .and_then(|v| clickstamp_plugins::postback::check_amount_sign(v, None))
                }) {
                    p.add(
                        format!("offers[{i}].payout"),
                        format!("the default payout is refused: {why}"),
                        "use the default payout, e.g. 2.5",
                    );
                }
                let currency = o.currency.as_ref().map(|c| c.to_ascii_uppercase());
                if let Some(c) = &currency {
                    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                        p.add(
                            format!("offers[{i}].currency"),
                            format!("{c:?} is not an ISO 4217 code"),
                            "use a three-letter code such as \"USD\"",
                        );
                    }
                }
                out.push(Offer {
                    id: o.id.clone(),
                    url: o.url.clone(),
                    network,
                    payout: o.payout,
                    currency,
                    multiple_conversions: o.multiple_conversions.unwrap_or(true),
                    match_urls: offer_match_urls(i, &o.match_urls, p),
                })
            }
            None => unknown_reference(
                format!("offers[{i}].network"),
                "network",
                "networks",
                &o.network,
                &declared.networks,
                p,
            ),
        }
    }
    out
}

/// Parse `30d`, `12h`, `90m`, `45s`.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let millis = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// `campaigns[].origin.timeout`: a positive duration up to [`super::MAX_ORIGIN_TIMEOUT`],
/// for an upstream only (lander files are read locally).
fn origin_timeout(i: usize, raw: &RawOrigin, p: &mut Problems) -> Duration {
    let key = format!("campaigns[{i}].origin.timeout");
    let timeout = duration_field(&key, &raw.timeout, super::DEFAULT_ORIGIN_TIMEOUT, p);
    if raw.timeout.is_some() && raw.upstream.is_none() {
        p.add(
            key,
            "timeout is set for a landers directory",
            "remove it: only an upstream origin is waited for",
        );
    } else if timeout > super::MAX_ORIGIN_TIMEOUT {
        p.add(
            key,
            format!("{timeout:?} is longer than the 10m limit"),
            "use a timeout like \"30s\": a visitor does not wait minutes for a landing page",
        );
        return super::MAX_ORIGIN_TIMEOUT;
    }
    timeout
}

fn origin(i: usize, raw: &RawOrigin, base_dir: &Path, p: &mut Problems) -> Option<Origin> {
    match (&raw.upstream, &raw.landers) {
        (Some(up), None) => {
            let lower = up.get(..8).unwrap_or(up).to_ascii_lowercase();
            let (tls, rest) = if lower.starts_with("https://") {
                (true, &up[8..])
            } else if lower.starts_with("http://") {
                (false, &up[7..])
            } else {
                p.add(
                    format!("campaigns[{i}].origin.upstream"),
                    format!("{up:?} is not an http:// or https:// URL"),
                    "write the origin like \"http://10.0.0.5:8080\" or \"https://lp.example.com\"",
                );
                return None;
            };
            let (authority, base_path) = match rest.find('/') {
                Some(j) => (&rest[..j], rest[j..].trim_end_matches('/').to_string()),
                None => (rest, String::new()),
            };
            let has_port = authority.rsplit_once(':').is_some_and(|(h, port)| {
                !h.is_empty() && !h.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit())
            });
            let with_port = if has_port {
                authority.to_string()
            } else {
                format!("{authority}:{}", if tls { 443 } else { 80 })
            };
            let host = if has_port {
                authority.rsplit_once(':').map_or(authority, |(h, _)| h)
            } else {
                authority
            };
            let sni = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if raw.verify_tls.is_some() && !tls {
                p.add(
                    format!("campaigns[{i}].origin.verify_tls"),
                    "verify_tls is set for a plain http:// upstream",
                    "remove it, or use an https:// upstream",
                );
            }
            let forwarded_headers = match raw.forwarded_headers.as_deref() {
                None => ForwardedHeaders::default(),
                Some(text) => ForwardedHeaders::parse(text).unwrap_or_else(|| {
                    p.add(
                        format!("campaigns[{i}].origin.forwarded_headers"),
                        format!("{text:?} is not a forwarding-header choice"),
                        format!("use {}", ForwardedHeaders::CHOICES),
                    );
                    ForwardedHeaders::default()
                }),
            };
            match with_port.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                Some(addr) => Some(Origin::Upstream {
                    forwarded_headers,
                    addr,
                    tls,
                    verify_tls: raw.verify_tls.unwrap_or(true),
                    host_header: authority.to_string(),
                    sni,
                    base_path,
                }),
                None => {
                    p.add(
                        format!("campaigns[{i}].origin.upstream"),
                        format!("cannot resolve {authority:?}"),
                        "use a resolvable host:port",
                    );
                    None
                }
            }
        }
        (None, Some(dir)) => {
            if raw.forwarded_headers.is_some() {
                p.add(
                    format!("campaigns[{i}].origin.forwarded_headers"),
                    "forwarded_headers is set for a landers directory",
                    "remove it: only an upstream origin is sent forwarding headers",
                );
            }
            let root = base_dir.join(dir);
            if !root.is_dir() {
                p.add(format!("campaigns[{i}].origin.landers"), format!("{} is not a directory", root.display()), "point it at the directory holding the landing pages (relative paths start at the config file's directory)");
                return None;
            }
            match root.canonicalize() {
                Ok(root) => Some(Origin::Landers { root }),
                Err(e) => {
                    p.add(
                        format!("campaigns[{i}].origin.landers"),
                        format!("cannot resolve {}: {e}", root.display()),
                        "check the directory's permissions",
                    );
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            p.add(
                format!("campaigns[{i}].origin"),
                "both upstream and landers are set",
                "keep one: an upstream URL or a landers directory",
            );
            None
        }
        (None, None) => {
            p.add(
                format!("campaigns[{i}].origin"),
                "no origin",
                "set origin.upstream = \"http://host:port\" or origin.landers = \"dir\"",
            );
            None
        }
    }
}

fn campaigns(
    raw: &[RawCampaign],
    sources: &[SourceConfig],
    offers: &[Offer],
    declared: &Declared,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<Campaign> {
    let mut seen = HashSet::new();
    let mut routes = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        check_id(
            "campaign",
            &format!("campaigns[{i}].id"),
            &c.id,
            &mut seen,
            p,
        );
        let path = c.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.contains("..") {
            p.add(
                format!("campaigns[{i}].path"),
                format!("{path:?} is not a plain absolute path"),
                "write a path prefix like \"/summer\"",
            );
        }
        let path = if path.len() > 1 {
            path.trim_end_matches('/').to_string()
        } else {
            path
        };
        for reserved in ["/go", "/postback", "/px", "/sdk"] {
            if path == reserved || path.starts_with(&format!("{reserved}/")) {
                p.add(
                    format!("campaigns[{i}].path"),
                    format!("{path} is reserved for clickstamp's own routes"),
                    "choose another landing path",
                );
            }
        }
        let host = c.host.as_ref().map(|h| h.to_ascii_lowercase());
        if !routes.insert((host.clone(), path.clone())) {
            p.add(
                format!("campaigns[{i}].path"),
                format!(
                    "another campaign already answers on {}{path}",
                    host.as_deref().unwrap_or("any host ")
                ),
                "give each campaign its own host + path",
            );
        }
        let source = sources.iter().position(|s| s.id == c.traffic_source);
        if source.is_none() {
            unknown_reference(
                format!("campaigns[{i}].traffic_source"),
                "traffic source",
                "traffic_sources",
                &c.traffic_source,
                &declared.sources,
                p,
            );
        }
        let mut campaign_offers = Vec::new();
        for (j, r) in c.offers.iter().enumerate() {
            match offers.iter().position(|o| o.id == r.offer) {
                Some(o) => campaign_offers.push((o, r.weight.unwrap_or(1))),
                None => unknown_reference(
                    format!("campaigns[{i}].offers[{j}].offer"),
                    "offer",
                    "offers",
                    &r.offer,
                    &declared.offers,
                    p,
                ),
            }
        }
        if c.offers.is_empty() {
            p.add(
                format!("campaigns[{i}].offers"),
                "the campaign has no offers",
                "list at least one { offer = \"id\", weight = 1 }",
            );
        } else if c
            .offers
            .iter()
            .map(|r| r.weight.unwrap_or(1) as u64)
            .sum::<u64>()
            == 0
        {
            p.add(
                format!("campaigns[{i}].offers"),
                "offer weights sum to 0, so no offer can ever be picked",
                "give at least one offer a positive weight",
            );
        }
        let attribution_window = match &c.attribution_window {
            None => DEFAULT_ATTRIBUTION_WINDOW,
            Some(w) => parse_duration(w).unwrap_or_else(|| {
                p.add(
                    format!("campaigns[{i}].attribution_window"),
                    format!("{w:?} is not a duration"),
                    "write a positive duration like \"30d\", \"12h\", \"90m\"",
                );
                DEFAULT_ATTRIBUTION_WINDOW
            }),
        };
        if let Some(cost) = c.cost {
            if !cost.is_finite() || cost < 0.0 {
                p.add(
                    format!("campaigns[{i}].cost"),
                    format!("cost {cost} is negative or not a number"),
                    "use the cost per click, e.g. 0.02, or leave it out",
                );
            }
        }
        let origin = origin(i, &c.origin, base_dir, p);
        let origin_timeout = origin_timeout(i, &c.origin, p);
        let rewrite = rewrite_settings(i, &c.rewrite, p);
        let quality = super::traffic::quality_policy(i, c.quality.as_deref(), &mut p.0);
        let routing =
            super::routing::routing(i, c.routing.as_ref(), &campaign_offers, offers, &mut p.0);
        if let (Some(source), Some(origin)) = (source, origin) {
            out.push(Campaign {
                id: c.id.clone(),
                host,
                path,
                source,
                offers: campaign_offers,
                origin,
                origin_timeout,
                attribution_window,
                cost: c.cost,
                direct_linking: c.direct_linking.unwrap_or(true),
                rewrite,
                quality,
                routing,
            });
        }
    }
    out
}

fn offer_match_urls(i: usize, raw: &[String], p: &mut Problems) -> Vec<String> {
    for (j, m) in raw.iter().enumerate() {
        if let Err(e) = crate::rewrite::links::OfferPattern::parse(m) {
            p.add(
                format!("offers[{i}].match[{j}]"),
                e.to_string(),
                "write a host and path prefix like \"go.network.example/offer\" or a full offer URL",
            );
        }
    }
    raw.to_vec()
}

fn rewrite_settings(
    i: usize,
    raw: &RawRewrite,
    p: &mut Problems,
) -> crate::rewrite::RewriteSettings {
    use crate::rewrite::{LinkMode, RewriteSettings};
    let d = RewriteSettings::default();
    let links = match raw.links.as_deref() {
        None | Some("stamp") => LinkMode::Stamp,
        Some("go") => LinkMode::Go,
        Some(other) => {
            p.add(
                format!("campaigns[{i}].rewrite.links"),
                format!("unknown link mode {other:?}"),
                "use \"stamp\" (stamp the click ID into offer links) or \"go\" (send them through /go/{offer})",
            );
            LinkMode::Stamp
        }
    };
    let sdk_src = raw.sdk_src.clone().unwrap_or(d.sdk_src);
    if sdk_src.is_empty() || sdk_src.contains(['"', '<', '>', ' ', '\n']) {
        p.add(
            format!("campaigns[{i}].rewrite.sdk_src"),
            format!("{sdk_src:?} is not a usable script URL"),
            "write a path or URL without quotes, spaces or angle brackets, e.g. \"/sdk/clickstamp.js\"",
        );
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(d.max_body_bytes);
    if max_body_bytes == 0 || max_body_bytes > 256 << 20 {
        p.add(
            format!("campaigns[{i}].rewrite.max_body_bytes"),
            format!("{max_body_bytes} bytes"),
            "use 1 byte to 256 MiB (2097152 suits landing pages; larger pages pass through untouched)",
        );
    }
    let max_memory_bytes = raw.max_memory_bytes.unwrap_or(d.max_memory_bytes);
    if !(4096..=64 << 20).contains(&max_memory_bytes) {
        p.add(
            format!("campaigns[{i}].rewrite.max_memory_bytes"),
            format!("{max_memory_bytes} bytes"),
            "use 4096 bytes to 64 MiB (262144 is plenty: only one tag at a time is buffered)",
        );
    }
    let template_cache_bytes = raw.template_cache_bytes.unwrap_or(d.template_cache_bytes);
    if template_cache_bytes > 1 << 30 {
        p.add(
            format!("campaigns[{i}].rewrite.template_cache_bytes"),
            format!("{template_cache_bytes} bytes"),
            "use 0 (off) to 1 GiB (4194304 holds dozens of landing pages)",
        );
    }
    RewriteSettings {
        enabled: raw.enabled.unwrap_or(d.enabled),
        template_cache_bytes,
        links,
        inject_sdk: raw.inject_sdk.unwrap_or(d.inject_sdk),
        sdk_src,
        max_body_bytes,
        max_memory_bytes,
        recompress: raw.recompress.unwrap_or(d.recompress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0d"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("10w"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
    }
}
