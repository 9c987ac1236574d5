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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub threads: Option<usize>,
    pub public_url: Option<String>,
    pub client_ip_header: Option<String>,
    pub cookie_prefix: Option<String>,
    pub log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<String>,
    pub durability: Option<String>,
    pub sync: Option<String>,
    pub batch_max: Option<usize>,
    pub click_cache: Option<usize>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOffer {
    pub id: String,
    pub url: String,
    pub network: String,
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
}
