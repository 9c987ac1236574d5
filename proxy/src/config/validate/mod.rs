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

mod campaigns;
mod plugins;
mod server;
mod store;
use campaigns::*;
use plugins::*;
use server::*;
use store::*;

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
