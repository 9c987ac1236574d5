//! `[server]`, `[tls]` and `[outbox]`: listeners, limits, trust, certificates, relay delivery.

use super::*;

pub(super) fn tls(
    raw: &RawTls,
    base_dir: &Path,
    server: &ServerConfig,
    p: &mut Problems,
) -> TlsConfig {
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

pub(super) fn outbox(raw: &RawOutbox, p: &mut Problems) -> OutboxConfig {
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
pub(super) fn check_id(
    kind: &str,
    key: &str,
    id: &str,
    seen: &mut HashSet<String>,
    p: &mut Problems,
) {
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

pub(super) fn socket_addr(key: &str, value: &str, p: &mut Problems) -> SocketAddr {
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

pub(super) fn server(raw: &RawServer, p: &mut Problems) -> ServerConfig {
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
