//! Signed webhook: one `POST` of a conversion as JSON per request, for receivers that
//! feed their own systems. The signature (docs/destinations.md says how to check it)
//! is HMAC-SHA256 under the destination's secret over `"{timestamp}.{body}"`.

use super::platform::{Platform, Request};
use crate::config::destinations::{Destination, WebhookConfig};
use crate::store::DestinationEntry;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// Unix seconds at signing; receivers refuse a timestamp far from their clock.
pub const TIMESTAMP_HEADER: &str = "X-Clickstamp-Timestamp";
/// `v1=<64 hex>`: HMAC-SHA256 of `"{timestamp}.{body}"`.
pub const SIGNATURE_HEADER: &str = "X-Clickstamp-Signature";

/// The conversion as the webhook sends it.
#[derive(Debug, Serialize)]
pub struct WebhookConversion<'a> {
    /// `conversion` for a new conversion, `status` for a change of status.
    pub kind: &'a str,
    /// Our dedup key: stable across retries, so receivers dedup by it.
    pub event_id: &'a str,
    pub destination: &'a str,
    pub conversion_id: i64,
    pub click_id: &'a str,
    pub campaign_id: &'a str,
    pub source_id: &'a str,
    pub offer_id: Option<&'a str>,
    pub network_id: Option<&'a str>,
    pub event: &'a str,
    pub status: &'a str,
    pub payout: Option<f64>,
    pub currency: Option<&'a str>,
    pub txid: Option<&'a str>,
    /// `s2s` or `pixel`.
    pub origin: &'a str,
    pub source_click_id: Option<&'a str>,
    pub click_time_ms: Option<u64>,
    pub conversion_time_ms: u64,
    pub updated_time_ms: u64,
    pub sub_ids: [Option<&'a str>; 5],
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Webhook {
    id: String,
    url: String,
    config: WebhookConfig,
}

impl Webhook {
    pub fn new(d: &Destination, config: &WebhookConfig) -> Self {
        Webhook {
            id: d.id.clone(),
            url: d.endpoint.clone(),
            config: config.clone(),
        }
    }
}

impl Platform for Webhook {
    fn request(
        &self,
        _agent: &ureq::Agent,
        _group: &'static str,
        entries: &[&DestinationEntry],
        now_ms: u64,
    ) -> Result<Request, String> {
        // The batch size of a webhook is 1 (config validation caps it).
        let e = entries.first().ok_or("an empty batch")?;
        let c = &e.conversion;
        let click = e.click.as_ref();
        let sub = |i: usize| click.and_then(|k| k.sub_ids[i].as_deref());
        let body = serde_json::to_vec(&WebhookConversion {
            kind: &e.outbox.kind,
            event_id: &c.dedup_key,
            destination: &self.id,
            conversion_id: c.id,
            click_id: &c.click_id,
            campaign_id: &c.campaign_id,
            source_id: &c.source_id,
            offer_id: c.offer_id.as_deref(),
            network_id: c.network_id.as_deref(),
            event: &c.event,
            status: &c.status,
            payout: c.payout,
            currency: c.currency.as_deref(),
            txid: c.txid.as_deref(),
            origin: &c.origin,
            source_click_id: click.and_then(|k| k.source_click_id.as_deref()),
            click_time_ms: click.map(|k| k.ts_ms),
            conversion_time_ms: c.created_ms,
            updated_time_ms: c.updated_ms,
            sub_ids: [sub(0), sub(1), sub(2), sub(3), sub(4)],
        })
        .map_err(|e| e.to_string())?;
        let timestamp = now_ms / 1000;
        Ok(Request {
            url: self.url.clone(),
            headers: vec![
                (TIMESTAMP_HEADER, timestamp.to_string()),
                (
                    SIGNATURE_HEADER,
                    signature(self.config.secret.expose().as_bytes(), timestamp, &body),
                ),
            ],
            body,
        })
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.config.secret.expose().to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature(b"k", 1, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature(b"k", 2, b"{}"));
        assert_ne!(a, signature(b"k", 1, b"{ }"));
        assert_ne!(a, signature(b"j", 1, b"{}"));
    }
}
