//! Operator commands that talk to a running instance: journal, outbox, replays,
//! postback URLs and the postback self-test.

use crate::config::Config;
use clickstamp_plugins::query::{encode_query_value, first_value, parse_query};
use clickstamp_plugins::verify::{canonical_form, sign_canonical};
use clickstamp_plugins::{
    postback_url_with_secret, ConversionStatus, PostbackField, PostbackRequest,
};
use serde_json::Value;
use std::time::Duration;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("no network with id {0:?} in the config")]
    UnknownNetwork(String),
    #[error("no campaign with id {id:?} in the config (campaigns: {known})")]
    UnknownCampaign { id: String, known: String },
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach clickstamp at {url}: {reason} (is `clickstamp serve` running with this config?)")]
    Unreachable { url: String, reason: String },
    #[error("clickstamp answered {status}: {body}")]
    Refused { status: u16, body: String },
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// Call the admin API of the instance `config` describes.
pub fn admin(config: &Config, method: &str, path_and_query: &str) -> Result<Value, OpsError> {
    let url = format!("http://{}{}", config.server.admin_listen, path_and_query);
    let auth = format!("Bearer {}", config.secrets.admin_token);
    let agent = agent();
    let result = match method {
        "POST" => agent.post(&url).header("Authorization", &auth).send_empty(),
        _ => agent.get(&url).header("Authorization", &auth).call(),
    };
    let mut resp = result.map_err(|e| OpsError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
    if status >= 400 {
        return Err(OpsError::Refused { status, body });
    }
    Ok(value)
}

/// The URL to paste into campaign `campaign_id`'s traffic source as the ad's target:
/// the campaign's landing URL (its `host` if it has one, else `server.public_url`,
/// then its path) with the source's own landing macros appended, so the source fills
/// its click ID, cost and sub IDs on every click.
pub fn campaign_url(config: &Config, campaign_id: &str) -> Result<String, OpsError> {
    let campaign = config
        .campaigns
        .iter()
        .find(|c| c.id == campaign_id)
        .ok_or_else(|| OpsError::UnknownCampaign {
            id: campaign_id.into(),
            known: config
                .campaigns
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let public = config.server.public_url.trim_end_matches('/');
    let base = match &campaign.host {
        Some(host) => {
            let scheme = public.split_once("://").map_or("https", |(s, _)| s);
            format!("{scheme}://{host}")
        }
        None => public.to_string(),
    };
    let landing = format!("{base}{}", campaign.path);
    Ok(config.sources[campaign.source]
        .plugin
        .campaign_url(&landing))
}

/// The URL to paste into network `network_id`'s dashboard.
pub fn postback_url(config: &Config, network_id: &str) -> Result<String, OpsError> {
    let net = config
        .networks
        .iter()
        .find(|n| n.id == network_id)
        .ok_or_else(|| OpsError::UnknownNetwork(network_id.into()))?;
    Ok(postback_url_with_secret(
        &*net.plugin,
        &config.server.public_url,
        &net.id,
        &net.verification,
    ))
}

/// What `postback-test` saw.
#[derive(Debug)]
pub struct TestRun {
    pub click_id: String,
    pub url: String,
    pub first: (u16, Value),
    pub second: (u16, Value),
}

/// Fire a realistic postback for network `network_id` at the running instance, then
/// its duplicate: mint a test click through `/go` on an offer of that network (marked
/// so that it and its conversion stay out of reports and relays), fill the network's
/// postback macros as the network would, sign it if the network is configured with a
/// secret or HMAC, and send it twice.
pub fn postback_test(config: &Config, network_id: &str) -> Result<TestRun, OpsError> {
    let n = config
        .networks
        .iter()
        .position(|n| n.id == network_id)
        .ok_or_else(|| OpsError::UnknownNetwork(network_id.into()))?;
    let net = &config.networks[n];
    let offer = config
        .offers
        .iter()
        .find(|o| o.network == n && config.campaigns.iter().any(|c| c.direct_linking && c.offers.iter().any(|(i, _)| config.offers[*i].id == o.id)))
        .ok_or_else(|| OpsError::Setup(format!("no direct-linking campaign has an offer on network {network_id:?}: postback-test needs one to mint a click")))?;
    let main = format!("http://{}", config.server.listen);
    let agent = agent();
    let go = format!("{main}/go/{}?tsid=postback-test", offer.id);
    // Marked as a test click: its conversion stays out of reports and relays.
    let marker = crate::tracker::test_click::marker(&config.secrets.admin_token);
    let resp = agent
        .get(&go)
        .header(crate::tracker::test_click::HEADER, &marker)
        .call()
        .map_err(|e| OpsError::Unreachable {
            url: go.clone(),
            reason: e.to_string(),
        })?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| OpsError::Refused {
            status: resp.status().as_u16(),
            body: "no redirect from /go".into(),
        })?
        .to_string();
    let query = location
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    let click_id = first_value(&parse_query(query), net.plugin.click_id_param())
        .ok_or_else(|| {
            OpsError::Setup(format!(
                "the offer link {location} carries no {}",
                net.plugin.click_id_param()
            ))
        })?
        .to_string();

    let now = crate::tracker::Tracker::now_ms();
    let approved_word = net
        .plugin
        .status_map()
        .iter()
        .find(|(_, s)| *s == ConversionStatus::Approved)
        .map_or("approved".to_string(), |(w, _)| w.clone());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for m in net.plugin.postback_macros() {
        let value = match m.field {
            PostbackField::ClickId => click_id.clone(),
            PostbackField::Payout => "1.23".into(),
            PostbackField::Currency => "USD".into(),
            PostbackField::TxId => format!("pbtest-{now}"),
            PostbackField::Status => approved_word.clone(),
            PostbackField::Event | PostbackField::SubId(_) => continue,
        };
        pairs.push((m.param.clone(), value));
    }
    if let Some((param, secret)) = &net.verification.secret {
        pairs.push((param.clone(), secret.clone()));
    }
    if let Some(h) = &net.verification.hmac {
        pairs.push((h.timestamp_param.clone(), (now / 1000).to_string()));
        let raw: String = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query_value(k), encode_query_value(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = PostbackRequest::get(&raw, &pairs);
        let sig = sign_canonical(&h.key, &canonical_form(&req, &h.signature_param));
        pairs.push((h.signature_param.clone(), sig));
    }
    let raw: String = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_query_value(k), encode_query_value(v)))
        .collect::<Vec<_>>()
        .join("&");
    let url = format!("{main}/postback/{}?{raw}", encode_query_value(&net.id));
    let fire = || -> Result<(u16, Value), OpsError> {
        let mut resp = agent.get(&url).call().map_err(|e| OpsError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        ))
    };
    let first = fire()?;
    let second = fire()?;
    Ok(TestRun {
        click_id,
        url,
        first,
        second,
    })
}
