//! The config file exactly as written: every field optional where a default exists,
//! unknown keys refused. [`super::validate`] turns this into the typed [`super::Config`].

use serde::Deserialize;

/// Top level of a clickstamp TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub secrets: RawSecrets,
    #[serde(default)]
    pub networks: Vec<RawNetwork>,
    #[serde(default)]
    pub traffic_sources: Vec<RawSource>,
    #[serde(default)]
    pub offers: Vec<RawOffer>,
    #[serde(default)]
    pub campaigns: Vec<RawCampaign>,
    #[serde(default)]
    pub postbacks: RawPostbacks,
    #[serde(default)]
    pub outbox: RawOutbox,
    #[serde(default)]
    pub destinations: Vec<super::destinations::RawDestination>,
    #[serde(default)]
    pub pixel: RawPixel,
    pub tls: Option<RawTls>,
    pub analytics: Option<RawAnalytics>,
    /// `[traffic]`: traffic-quality signals (see `config::traffic`).
    #[serde(default)]
    pub traffic: super::traffic::RawTraffic,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalytics {
    pub clickhouse: Option<RawClickHouse>,
    pub flush_interval: Option<String>,
    pub batch_max: Option<usize>,
    pub retry_max: Option<String>,
    pub lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClickHouse {
    pub url: Option<String>,
    pub database: Option<String>,
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Option<String>,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPixel {
    pub grace_period: Option<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostbacks {
    pub max_body_bytes: Option<usize>,
    /// Accept a postback from a network other than the one the click was sent to.
    pub allow_cross_network: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    pub concurrency: Option<usize>,
    pub timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_age: Option<String>,
    pub backoff_base: Option<String>,
    pub backoff_max: Option<String>,
    pub poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub threads: Option<usize>,
    pub public_url: Option<String>,
    pub client_ip_header: Option<String>,
    /// Peers (IPs or CIDRs) whose `client_ip_header` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    pub cookie_prefix: Option<String>,
    pub log_format: Option<String>,
    /// Time a client has to send a request header (a duration).
    pub header_timeout: Option<String>,
    /// Time a client has to send a request body after its header (a duration).
    pub body_timeout: Option<String>,
    /// Open connections at most on the main listener(s).
    pub max_connections: Option<usize>,
    /// Open connections at most on the admin listener.
    pub admin_max_connections: Option<usize>,
    /// Answer `GET /demo/relay` on the admin listener, logging each relay it gets
    /// (a stand-in traffic source for the demo config).
    pub demo_relay_sink: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    pub path: Option<String>,
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub pool_size: Option<usize>,
    pub statement_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub outbox_lease: Option<String>,
    pub spool_path: Option<String>,
    pub writers: Option<usize>,
    pub tls_ca_file: Option<String>,
    pub durability: Option<String>,
    pub sync: Option<String>,
    pub batch_max: Option<usize>,
    pub click_cache: Option<usize>,
    pub wal_max_bytes: Option<u64>,
    pub retention: Option<RawRetention>,
}

/// `[store.retention]`: see `config::RetentionConfig` for what each key means.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub clicks_margin: Option<String>,
    pub journal_max_age: Option<String>,
    pub delivered_outbox_max_age: Option<String>,
    pub interval: Option<String>,
    pub batch: Option<u32>,
    pub pause: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub click_id_key: Option<String>,
    pub click_id_key_env: Option<String>,
    pub admin_token: Option<String>,
    pub admin_token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub id: String,
    pub kind: Option<String>,
    pub click_id_param: Option<String>,
    pub macro_style: Option<String>,
    #[serde(default)]
    pub macros: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub status_map: std::collections::BTreeMap<String, String>,
    pub default_status: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_param: Option<String>,
    pub hmac_key: Option<String>,
    pub hmac_key_env: Option<String>,
    pub hmac_signature_param: Option<String>,
    pub hmac_signature_header: Option<String>,
    pub hmac_timestamp_param: Option<String>,
    pub hmac_window: Option<String>,
    #[serde(default)]
    pub allow_ips: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub id: String,
    pub kind: Option<String>,
    #[serde(default)]
    pub click_id_params: Vec<String>,
    pub cost_param: Option<String>,
    #[serde(default)]
    pub sub_id_params: Vec<String>,
    pub token_style: Option<String>,
    #[serde(default)]
    pub tokens: std::collections::BTreeMap<String, String>,
    pub postback_url: Option<String>,
    pub relay_status_changes: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOffer {
    pub id: String,
    pub url: String,
    pub network: String,
    pub payout: Option<f64>,
    pub currency: Option<String>,
    pub multiple_conversions: Option<bool>,
    /// Extra `host/path` patterns (or URLs) whose links count as this offer's.
    #[serde(default, rename = "match")]
    pub match_urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub id: String,
    pub host: Option<String>,
    pub path: Option<String>,
    pub traffic_source: String,
    #[serde(default)]
    pub offers: Vec<RawOfferRef>,
    #[serde(default)]
    pub origin: RawOrigin,
    pub attribution_window: Option<String>,
    pub cost: Option<f64>,
    pub direct_linking: Option<bool>,
    #[serde(default)]
    pub rewrite: RawRewrite,
    /// `flag` or `exclude`: what a flagged click does (see `config::traffic`).
    pub quality: Option<String>,
    /// Routing rules, landers and rotation (see `config::routing`).
    pub routing: Option<super::routing::RawRouting>,
}

/// `campaigns[].rewrite`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub enabled: Option<bool>,
    pub links: Option<String>,
    pub inject_sdk: Option<bool>,
    pub sdk_src: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_memory_bytes: Option<usize>,
    pub recompress: Option<bool>,
    pub template_cache_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOfferRef {
    pub offer: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    pub upstream: Option<String>,
    pub landers: Option<String>,
    /// For an https upstream: verify its certificate (default true).
    pub verify_tls: Option<bool>,
    /// Which forwarding headers the upstream gets (default `x-forwarded`).
    pub forwarded_headers: Option<String>,
    /// How long each read from the upstream may wait (default 30s).
    pub timeout: Option<String>,
}
