//! Raw → typed config, collecting every problem.

use super::raw::*;
use super::*;
use clickstamp_plugins::network::is_absolute_http_url;
use clickstamp_plugins::{builtin_network, ClickIdCodec, ParamNetwork, ParamSource};
use std::collections::HashSet;
use std::net::ToSocketAddrs;

pub(super) const DEFAULT_ATTRIBUTION_WINDOW: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9091";
const DEFAULT_STORE_PATH: &str = "data/clickstamp.sqlite";
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

/// Validate `raw`. `env` looks up environment variables (injected so tests stay pure).
pub fn validate(
    raw: RawConfig,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut p = Problems(Vec::new());
    let server = server(&raw.server, &mut p);
    let store = store(&raw.store, base_dir, &mut p);
    let secrets = secrets(&raw.secrets, env, &mut p);
    let networks = networks(&raw.networks, &mut p);
    let sources = sources(&raw.traffic_sources, &mut p);
    let offers = offers(&raw.offers, &networks, &mut p);
    let campaigns = campaigns(&raw.campaigns, &sources, &offers, base_dir, &mut p);

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
    })
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
    ServerConfig {
        listen,
        admin_listen,
        threads,
        public_url,
        client_ip_header: raw.client_ip_header.clone(),
        cookie_prefix,
        log_format,
    }
}

fn store(raw: &RawStore, base_dir: &Path, p: &mut Problems) -> StoreConfig {
    let path = base_dir.join(raw.path.as_deref().unwrap_or(DEFAULT_STORE_PATH));
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
    StoreConfig {
        path,
        durability,
        sync,
        batch_max: batch_max.max(1),
        click_cache: raw.click_cache.unwrap_or(100_000),
    }
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

fn networks(raw: &[RawNetwork], p: &mut Problems) -> Vec<NetworkConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        check_id("network", &format!("networks[{i}].id"), &n.id, &mut seen, p);
        let kind = n.kind.clone().unwrap_or_else(|| n.id.clone());
        let plugin: Arc<dyn Network> = match (builtin_network(&kind), &n.click_id_param) {
            (_, Some(param)) => Arc::new(ParamNetwork::new(kind.clone(), param.clone())),
            (Some(b), None) => Arc::from(b),
            (None, None) => {
                let known: Vec<&str> = clickstamp_plugins::network::BUILTIN_NETWORKS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect();
                p.add(
                    format!("networks[{i}].kind"),
                    format!("unknown network kind \"{kind}\""),
                    format!("use a built-in kind ({}) or set click_id_param to describe a custom network", known.join(", ")),
                );
                continue;
            }
        };
        out.push(NetworkConfig {
            id: n.id.clone(),
            plugin,
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
        if s.click_id_params.is_empty() {
            p.add(
                format!("traffic_sources[{i}].click_id_params"),
                "no landing-URL parameter carries the source's click id",
                "list the parameter(s) your campaign URL passes the source's click id in, e.g. [\"tsid\"]",
            );
            continue;
        }
        let plugin = ParamSource::new(
            kind,
            s.click_id_params.clone(),
            s.cost_param.clone(),
            s.sub_id_params.clone(),
        );
        if s.sub_id_params.len() > 5 {
            p.add(
                format!("traffic_sources[{i}].sub_id_params"),
                format!("{} sub id parameters", s.sub_id_params.len()),
                "keep at most 5 (sub1-sub5)",
            );
        }
        out.push(SourceConfig {
            id: s.id.clone(),
            plugin: Arc::new(plugin),
        });
    }
    out
}

fn offers(raw: &[RawOffer], networks: &[NetworkConfig], p: &mut Problems) -> Vec<Offer> {
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
            Some(network) => out.push(Offer {
                id: o.id.clone(),
                url: o.url.clone(),
                network,
            }),
            None => p.add(
                format!("offers[{i}].network"),
                format!("unknown network \"{}\"", o.network),
                "add a [[networks]] entry with that id, or use one of the configured network ids",
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
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn origin(i: usize, raw: &RawOrigin, base_dir: &Path, p: &mut Problems) -> Option<Origin> {
    match (&raw.upstream, &raw.landers) {
        (Some(up), None) => {
            let rest = match up.strip_prefix("http://") {
                Some(r) => r,
                None => {
                    p.add(format!("campaigns[{i}].origin.upstream"), format!("{up:?} is not an http:// URL"), "use http://host:port (TLS to the origin is not supported yet; put the origin on a private network)");
                    return None;
                }
            };
            let (authority, base_path) = match rest.find('/') {
                Some(j) => (&rest[..j], rest[j..].trim_end_matches('/').to_string()),
                None => (rest, String::new()),
            };
            let with_port = if authority.contains(':') {
                authority.to_string()
            } else {
                format!("{authority}:80")
            };
            match with_port.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                Some(addr) => Some(Origin::Upstream {
                    addr,
                    host_header: authority.to_string(),
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
            p.add(
                format!("campaigns[{i}].traffic_source"),
                format!("unknown traffic source \"{}\"", c.traffic_source),
                "add a [[traffic_sources]] entry with that id",
            );
        }
        let mut campaign_offers = Vec::new();
        for (j, r) in c.offers.iter().enumerate() {
            match offers.iter().position(|o| o.id == r.offer) {
                Some(o) => campaign_offers.push((o, r.weight.unwrap_or(1))),
                None => p.add(
                    format!("campaigns[{i}].offers[{j}].offer"),
                    format!("unknown offer \"{}\"", r.offer),
                    "add an [[offers]] entry with that id",
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
        if let (Some(source), Some(origin)) = (source, origin) {
            out.push(Campaign {
                id: c.id.clone(),
                host,
                path,
                source,
                offers: campaign_offers,
                origin,
                attribution_window,
                cost: c.cost,
                direct_linking: c.direct_linking.unwrap_or(true),
            });
        }
    }
    out
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
