//! `[[destinations]]`: where a traffic source's conversions are sent besides its
//! postback URL — an ad platform's conversions API or a signed webhook.
//!
//! The raw entry is one flat table (every kind's keys, each optional); [`validate`]
//! checks that each kind has what it needs and nothing it does not use, and resolves
//! secrets from the environment or a file. Secrets are held in [`Secret`], whose
//! `Debug` never shows them; the config file itself only ever names where they live.

pub use super::secret::Secret;
use super::secret::SecretReader;
use super::ConfigError;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// One `[[destinations]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    #[serde(default)]
    pub id: String,
    pub kind: Option<String>,
    pub source: Option<String>,
    pub endpoint: Option<String>,
    pub batch_size: Option<usize>,
    pub linger: Option<String>,
    pub concurrency: Option<usize>,
    pub rate_limit_per_second: Option<f64>,
    pub timeout: Option<String>,
    pub event_names: Option<BTreeMap<String, String>>,
    pub currency: Option<String>,
    pub api_version: Option<String>,
    pub test_event_code: Option<String>,
    pub access_token_env: Option<String>,
    pub access_token_file: Option<String>,
    // Meta
    pub pixel_id: Option<String>,
    pub action_source: Option<String>,
    // Google Ads
    pub customer_id: Option<String>,
    pub conversion_action: Option<String>,
    pub login_customer_id: Option<String>,
    pub developer_token_env: Option<String>,
    pub developer_token_file: Option<String>,
    pub client_id_env: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    pub refresh_token_env: Option<String>,
    pub refresh_token_file: Option<String>,
    pub token_endpoint: Option<String>,
    // TikTok
    pub pixel_code: Option<String>,
    // Webhook
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
}

/// A validated destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// `id`: names the destination in the outbox, its API and metrics.
    pub id: String,
    /// `source`: the traffic source whose conversions this destination receives.
    pub source: String,
    /// `endpoint`: the platform's base URL (the webhook's full URL).
    pub endpoint: String,
    /// `batch_size`: most conversions per request (default and ceiling per kind).
    pub batch_size: usize,
    /// `linger`: how long a partial batch waits for more conversions (default 1s).
    pub linger: Duration,
    /// `concurrency`: requests in flight at once to this destination (default 2).
    pub concurrency: usize,
    /// `rate_limit_per_second`: most requests started per second (default none).
    pub rate_limit_per_second: Option<f64>,
    /// `timeout`: how long one request may take (default 10s).
    pub timeout: Duration,
    /// `event_names`: our event → the platform's event name; unmapped events use
    /// the kind's defaults (see docs/destinations.md).
    pub event_names: BTreeMap<String, String>,
    /// `currency`: sent with a payout whose conversion has no currency (default USD).
    pub currency: String,
    /// The kind and its own fields.
    pub platform: PlatformConfig,
}

impl Destination {
    /// The kind as written in the config.
    pub fn kind(&self) -> &'static str {
        self.platform.kind()
    }

    /// Whether status changes (approved → rejected, chargebacks) are sent here: the
    /// webhook takes them all, Google Ads takes retractions; Meta and TikTok have no
    /// way to take a conversion back.
    pub fn takes_status_changes(&self) -> bool {
        matches!(
            self.platform,
            PlatformConfig::Webhook(_) | PlatformConfig::GoogleAds(_)
        )
    }
}

/// Per-kind settings.
#[derive(Debug, Clone, PartialEq)]
pub enum PlatformConfig {
    MetaCapi(MetaConfig),
    GoogleAds(GoogleAdsConfig),
    TikTok(TikTokConfig),
    Webhook(WebhookConfig),
}

impl PlatformConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            PlatformConfig::MetaCapi(_) => "meta_capi",
            PlatformConfig::GoogleAds(_) => "google_ads",
            PlatformConfig::TikTok(_) => "tiktok",
            PlatformConfig::Webhook(_) => "webhook",
        }
    }
}

/// `kind = "meta_capi"`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaConfig {
    /// `pixel_id`: the dataset (pixel) the events go to.
    pub pixel_id: String,
    /// `api_version`: the Graph API version in the path (default v21.0).
    pub api_version: String,
    /// `access_token_env` / `access_token_file`: the system-user token.
    pub access_token: Secret,
    /// `test_event_code`: sends to the Events Manager test view instead.
    pub test_event_code: Option<String>,
    /// `action_source`: where the conversion happened (default `website`).
    pub action_source: String,
}

/// `kind = "google_ads"`.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleAdsConfig {
    /// `customer_id`: the account (digits; hyphens are dropped).
    pub customer_id: String,
    /// `conversion_action`: as a resource name `customers/{id}/conversionActions/{id}`.
    pub conversion_action: String,
    /// `login_customer_id`: the manager account, when access is through one.
    pub login_customer_id: Option<String>,
    /// `api_version`: the API version in the path (default v19).
    pub api_version: String,
    /// `developer_token_env` / `developer_token_file`.
    pub developer_token: Secret,
    pub auth: GoogleAuth,
}

/// How the Google Ads destination gets its OAuth access token.
#[derive(Debug, Clone, PartialEq)]
pub enum GoogleAuth {
    /// `access_token_env` / `access_token_file`: a token kept fresh by something else.
    AccessToken(Secret),
    /// `client_id_env`, `client_secret_env|_file`, `refresh_token_env|_file`: tokens
    /// fetched from `token_endpoint` and renewed before they expire.
    RefreshToken {
        token_endpoint: String,
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
    },
}

/// `kind = "tiktok"`.
#[derive(Debug, Clone, PartialEq)]
pub struct TikTokConfig {
    /// `pixel_code`: the pixel (event source id) the events go to.
    pub pixel_code: String,
    /// `access_token_env` / `access_token_file`: sent as the `Access-Token` header.
    pub access_token: Secret,
    /// `test_event_code`: sends to the Events Manager test view instead.
    pub test_event_code: Option<String>,
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// `secret_env` / `secret_file`: the HMAC-SHA256 signing key.
    pub secret: Secret,
}

/// Default endpoints per kind.
const META_ENDPOINT: &str = "https://graph.facebook.com";
const GOOGLE_ENDPOINT: &str = "https://googleads.googleapis.com";
const GOOGLE_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";
const TIKTOK_ENDPOINT: &str = "https://business-api.tiktok.com";

/// The largest batch each kind's API takes in one request.
pub fn max_batch(kind: &str) -> usize {
    match kind {
        "meta_capi" => 1000,
        "google_ads" => 2000,
        "tiktok" => 1000,
        _ => 1,
    }
}

/// The keys each kind uses beyond the common ones; any other set key is refused.
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "meta_capi" => &[
            "pixel_id",
            "api_version",
            "access_token_env",
            "access_token_file",
            "test_event_code",
            "action_source",
        ],
        "google_ads" => &[
            "customer_id",
            "conversion_action",
            "login_customer_id",
            "api_version",
            "developer_token_env",
            "developer_token_file",
            "access_token_env",
            "access_token_file",
            "client_id_env",
            "client_secret_env",
            "client_secret_file",
            "refresh_token_env",
            "refresh_token_file",
            "token_endpoint",
        ],
        "tiktok" => &[
            "pixel_code",
            "access_token_env",
            "access_token_file",
            "test_event_code",
        ],
        _ => &["secret_env", "secret_file"],
    }
}

/// The kind-specific keys set on `r`, by name.
fn set_kind_keys(r: &RawDestination) -> Vec<&'static str> {
    let fields: [(&'static str, bool); 20] = [
        ("api_version", r.api_version.is_some()),
        ("test_event_code", r.test_event_code.is_some()),
        ("access_token_env", r.access_token_env.is_some()),
        ("access_token_file", r.access_token_file.is_some()),
        ("pixel_id", r.pixel_id.is_some()),
        ("action_source", r.action_source.is_some()),
        ("customer_id", r.customer_id.is_some()),
        ("conversion_action", r.conversion_action.is_some()),
        ("login_customer_id", r.login_customer_id.is_some()),
        ("developer_token_env", r.developer_token_env.is_some()),
        ("developer_token_file", r.developer_token_file.is_some()),
        ("client_id_env", r.client_id_env.is_some()),
        ("client_secret_env", r.client_secret_env.is_some()),
        ("client_secret_file", r.client_secret_file.is_some()),
        ("refresh_token_env", r.refresh_token_env.is_some()),
        ("refresh_token_file", r.refresh_token_file.is_some()),
        ("token_endpoint", r.token_endpoint.is_some()),
        ("pixel_code", r.pixel_code.is_some()),
        ("secret_env", r.secret_env.is_some()),
        ("secret_file", r.secret_file.is_some()),
    ];
    fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| *k)
        .collect()
}

/// Collects problems with their keys.
pub(super) struct Problems<'a> {
    out: &'a mut Vec<ConfigError>,
    prefix: String,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, key: &str, problem: impl Into<String>, fix: impl Into<String>) {
        self.out.push(ConfigError {
            key: if key.is_empty() {
                self.prefix.clone()
            } else {
                format!("{}.{key}", self.prefix)
            },
            problem: problem.into(),
            fix: fix.into(),
        });
    }
}

/// Validate every `[[destinations]]` entry against the declared traffic `sources`.
/// `env` looks up variables; `base_dir` anchors `*_file` paths.
pub fn validate(
    raw: &[RawDestination],
    sources: &[&str],
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<ConfigError>,
) -> Vec<Destination> {
    let mut seen = HashSet::new();
    let mut valid = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let before = out.len();
        let mut p = Problems {
            out,
            prefix: format!("destinations[{i}]"),
        };
        let d = destination(r, sources, base_dir, env, &mut seen, &mut p);
        if out.len() == before {
            valid.extend(d);
        }
    }
    valid
}

fn destination(
    r: &RawDestination,
    sources: &[&str],
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    seen: &mut HashSet<String>,
    p: &mut Problems<'_>,
) -> Option<Destination> {
    let id_ok = !r.id.is_empty()
        && r.id.len() <= 64
        && r.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        p.add(
            "id",
            format!("{:?} is not a usable destination id", r.id),
            "use 1-64 letters, digits, '-' or '_' (it names the destination in the outbox and metrics)",
        );
    } else if !seen.insert(r.id.clone()) {
        p.add(
            "id",
            format!("\"{}\" is used by another destination", r.id),
            "give each [[destinations]] entry its own id",
        );
    }
    let kind = match r.kind.as_deref() {
        Some(k @ ("meta_capi" | "google_ads" | "tiktok" | "webhook")) => k,
        Some(other) => {
            p.add(
                "kind",
                format!("unknown destination kind \"{other}\""),
                "use one of meta_capi, google_ads, tiktok, webhook",
            );
            return None;
        }
        None => {
            p.add(
                "kind",
                "no kind",
                "add kind = \"meta_capi\" (or google_ads, tiktok, webhook)",
            );
            return None;
        }
    };
    match r.source.as_deref() {
        None => p.add(
            "source",
            "no source",
            "add source = \"<id of the [[traffic_sources]] entry whose conversions go here>\"",
        ),
        Some(s) if !sources.contains(&s) => p.add(
            "source",
            format!("unknown traffic source \"{s}\""),
            format!(
                "use one of the configured traffic source ids ({})",
                sources
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(_) => {}
    }
    let allowed = kind_keys(kind);
    for key in set_kind_keys(r) {
        if !allowed.contains(&key) {
            p.add(
                key,
                format!("{key} is not used by kind = \"{kind}\""),
                format!("remove it, or use the kind it belongs to (see docs/destinations.md); {kind} takes {}", allowed.join(", ")),
            );
        }
    }
    let default_endpoint = match kind {
        "meta_capi" => Some(META_ENDPOINT),
        "google_ads" => Some(GOOGLE_ENDPOINT),
        "tiktok" => Some(TIKTOK_ENDPOINT),
        _ => None,
    };
    let endpoint = match (r.endpoint.as_deref(), default_endpoint) {
        (Some(e), _) => e.trim_end_matches('/').to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            p.add(
                "endpoint",
                "a webhook needs the URL to POST to",
                "add endpoint = \"https://your-system.example/clickstamp\"",
            );
            String::new()
        }
    };
    if !endpoint.is_empty() && !http_url(&endpoint) {
        p.add(
            "endpoint",
            format!("{endpoint:?} is not an http(s) URL"),
            "write an absolute URL such as \"https://graph.facebook.com\"",
        );
    }
    let ceiling = max_batch(kind);
    let batch_size = r.batch_size.unwrap_or(ceiling);
    if batch_size == 0 || batch_size > ceiling {
        p.add(
            "batch_size",
            format!("{batch_size} conversions per request"),
            format!("use 1 to {ceiling}, the most one {kind} request takes"),
        );
    }
    let linger = duration(p, "linger", &r.linger, Duration::from_secs(1));
    let timeout = duration(p, "timeout", &r.timeout, Duration::from_secs(10));
    if timeout.is_zero() {
        p.add(
            "timeout",
            "a zero timeout fails every request",
            "use e.g. \"10s\"",
        );
    }
    let concurrency = r.concurrency.unwrap_or(2);
    if concurrency == 0 || concurrency > 64 {
        p.add(
            "concurrency",
            format!("{concurrency} requests at once"),
            "use 1 to 64",
        );
    }
    if let Some(rate) = r.rate_limit_per_second {
        if !(rate.is_finite() && rate > 0.0) {
            p.add(
                "rate_limit_per_second",
                format!("{rate} requests a second never sends"),
                "use a positive number, or leave it out for no limit",
            );
        }
    }
    let currency = r.currency.clone().unwrap_or_else(|| "USD".into());
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        p.add(
            "currency",
            format!("{currency:?} is not an ISO 4217 code"),
            "write three capital letters, e.g. \"USD\"",
        );
    }
    let event_names: BTreeMap<String, String> = r
        .event_names
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(ours, theirs)| (clickstamp_plugins::normalize_event(&ours), theirs))
        .collect();
    let mut secrets = SecretReader { base_dir, env };
    let platform = match kind {
        "meta_capi" => {
            let pixel_id = required(
                p,
                "pixel_id",
                &r.pixel_id,
                "the dataset (pixel) id from Events Manager",
            );
            if !pixel_id.is_empty() && !pixel_id.bytes().all(|b| b.is_ascii_digit()) {
                p.add(
                    "pixel_id",
                    format!("{pixel_id:?} is not a pixel id"),
                    "write the digits Events Manager shows",
                );
            }
            let access_token =
                secrets.required(p, "access_token", &r.access_token_env, &r.access_token_file)?;
            PlatformConfig::MetaCapi(MetaConfig {
                pixel_id,
                api_version: r.api_version.clone().unwrap_or_else(|| "v21.0".into()),
                access_token,
                test_event_code: r.test_event_code.clone(),
                action_source: r.action_source.clone().unwrap_or_else(|| "website".into()),
            })
        }
        "google_ads" => {
            let customer_id: String = required(
                p,
                "customer_id",
                &r.customer_id,
                "the account's id, e.g. \"123-456-7890\"",
            )
            .chars()
            .filter(|c| *c != '-')
            .collect();
            if !customer_id.bytes().all(|b| b.is_ascii_digit()) {
                p.add(
                    "customer_id",
                    format!("{customer_id:?} is not a customer id"),
                    "write the ten digits, hyphens allowed",
                );
            }
            let action = required(
                p,
                "conversion_action",
                &r.conversion_action,
                "the conversion action's id or resource name",
            );
            let conversion_action = if action.bytes().all(|b| b.is_ascii_digit()) {
                format!("customers/{customer_id}/conversionActions/{action}")
            } else {
                action
            };
            if !conversion_action.is_empty() && !conversion_action.starts_with("customers/") {
                p.add(
                    "conversion_action",
                    format!("{conversion_action:?} is neither an id nor a resource name"),
                    "write the id (digits) or customers/{customer}/conversionActions/{id}",
                );
            }
            let login_customer_id = r
                .login_customer_id
                .as_ref()
                .map(|l| l.chars().filter(|c| *c != '-').collect());
            let developer_token = secrets.required(
                p,
                "developer_token",
                &r.developer_token_env,
                &r.developer_token_file,
            )?;
            let auth = if r.access_token_env.is_some() || r.access_token_file.is_some() {
                GoogleAuth::AccessToken(secrets.required(
                    p,
                    "access_token",
                    &r.access_token_env,
                    &r.access_token_file,
                )?)
            } else {
                let Some(client_id_env) = &r.client_id_env else {
                    p.add(
                        "access_token_env",
                        "no OAuth credentials",
                        "set access_token_env, or client_id_env + client_secret_env + refresh_token_env for the refresh-token flow",
                    );
                    return None;
                };
                let client_id =
                    secrets.required(p, "client_id", &Some(client_id_env.clone()), &None)?;
                let token_endpoint = r
                    .token_endpoint
                    .clone()
                    .unwrap_or_else(|| GOOGLE_TOKEN_ENDPOINT.into());
                if !http_url(&token_endpoint) {
                    p.add(
                        "token_endpoint",
                        format!("{token_endpoint:?} is not an http(s) URL"),
                        "leave it out for Google's",
                    );
                }
                GoogleAuth::RefreshToken {
                    token_endpoint,
                    client_id: client_id.expose().to_string(),
                    client_secret: secrets.required(
                        p,
                        "client_secret",
                        &r.client_secret_env,
                        &r.client_secret_file,
                    )?,
                    refresh_token: secrets.required(
                        p,
                        "refresh_token",
                        &r.refresh_token_env,
                        &r.refresh_token_file,
                    )?,
                }
            };
            PlatformConfig::GoogleAds(GoogleAdsConfig {
                customer_id,
                conversion_action,
                login_customer_id,
                api_version: r.api_version.clone().unwrap_or_else(|| "v19".into()),
                developer_token,
                auth,
            })
        }
        "tiktok" => PlatformConfig::TikTok(TikTokConfig {
            pixel_code: required(
                p,
                "pixel_code",
                &r.pixel_code,
                "the pixel code from TikTok Events Manager",
            ),
            access_token: secrets.required(
                p,
                "access_token",
                &r.access_token_env,
                &r.access_token_file,
            )?,
            test_event_code: r.test_event_code.clone(),
        }),
        _ => PlatformConfig::Webhook(WebhookConfig {
            secret: secrets.required(p, "secret", &r.secret_env, &r.secret_file)?,
        }),
    };
    Some(Destination {
        id: r.id.clone(),
        source: r.source.clone().unwrap_or_default(),
        endpoint,
        batch_size,
        linger,
        concurrency,
        rate_limit_per_second: r.rate_limit_per_second,
        timeout,
        event_names,
        currency,
        platform,
    })
}

fn http_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn duration(p: &mut Problems<'_>, key: &str, raw: &Option<String>, default: Duration) -> Duration {
    match raw {
        None => default,
        Some(text) => super::validate::parse_duration(text).unwrap_or_else(|| {
            p.add(
                key,
                format!("{text:?} is not a duration"),
                "write e.g. \"500ms\", \"1s\", \"2m\"",
            );
            default
        }),
    }
}

fn required(p: &mut Problems<'_>, key: &str, raw: &Option<String>, what: &str) -> String {
    match raw.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => {
            p.add(
                key,
                format!("no {key}"),
                format!("add {key} = \"...\": {what}"),
            );
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str, env: &[(&str, &str)]) -> Result<Vec<Destination>, Vec<ConfigError>> {
        #[derive(Deserialize)]
        struct File {
            destinations: Vec<RawDestination>,
        }
        let file: File = toml::from_str(toml_text).expect("toml");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut out = Vec::new();
        let d = validate(
            &file.destinations,
            &["meta", "google"],
            Path::new("."),
            &lookup,
            &mut out,
        );
        if out.is_empty() {
            Ok(d)
        } else {
            Err(out)
        }
    }

    #[test]
    fn a_meta_destination_takes_its_token_from_the_environment_and_hides_it() {
        let d = check(
            "[[destinations]]\nid = \"meta-main\"\nkind = \"meta_capi\"\nsource = \"meta\"\npixel_id = \"123\"\naccess_token_env = \"T\"\n",
            &[("T", "sekrit-token")],
        )
        .unwrap();
        assert_eq!(d[0].endpoint, META_ENDPOINT);
        assert_eq!(d[0].batch_size, 1000);
        let shown = format!("{:?}", d[0]);
        assert!(!shown.contains("sekrit-token"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn problems_name_the_key_and_the_fix() {
        let errors = check(
            "[[destinations]]\nid = \"g\"\nkind = \"google_ads\"\nsource = \"nope\"\npixel_id = \"1\"\nbatch_size = 5000\n",
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert!(keys.contains(&"destinations[0].source"), "{keys:?}");
        assert!(keys.contains(&"destinations[0].pixel_id"), "{keys:?}");
        assert!(keys.contains(&"destinations[0].batch_size"), "{keys:?}");
        assert!(keys.contains(&"destinations[0].customer_id"), "{keys:?}");
        assert!(
            keys.contains(&"destinations[0].developer_token_env"),
            "{keys:?}"
        );
    }

    #[test]
    fn an_unset_variable_is_named() {
        let errors = check(
            "[[destinations]]\nid = \"w\"\nkind = \"webhook\"\nsource = \"meta\"\nendpoint = \"http://127.0.0.1:1/h\"\nsecret_env = \"HOOK_KEY\"\n",
            &[],
        )
        .unwrap_err();
        assert!(errors[0].problem.contains("HOOK_KEY"), "{errors:?}");
        assert_eq!(errors[0].key, "destinations[0].secret_env");
    }
}
