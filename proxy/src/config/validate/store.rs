//! `[store]` (SQLite or PostgreSQL), `[store.retention]` and `[analytics]`.

use super::*;

pub(super) fn store(
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
pub(super) const MIN_RETENTION_AGE: Duration = Duration::from_secs(86_400);

/// `[store.retention]`.
pub(super) fn retention(raw: &RawRetention, p: &mut Problems) -> RetentionConfig {
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
pub(super) const MAX_POOL_SIZE: usize = 256;

pub(super) fn store_backend(
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
pub(super) fn analytics(
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
