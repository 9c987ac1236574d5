//! `/px`: browser conversions from the pixel SDK, the image pixel and `<noscript>`.
//!
//! A pixel hit runs the same pipeline as a postback with origin `pixel`, under
//! DESIGN.md's rules: S2S is authoritative; a pixel conversion and an S2S conversion
//! for the same (click, event) are one conversion whichever comes first; a pixel-only
//! conversion is relayed only after `pixel.grace_period` passes without its S2S twin.
//! The store applies these rules (`store/sqlite/apply.rs`); this module parses,
//! validates, rate-limits and builds the candidate.

pub mod rate;
pub mod sdk;
pub mod serve;

use crate::postback::Refusal;
use crate::store::{JournalEntry, PostbackOutcome, PostbackWrite, Verdict, WriteOp, WriteResult};
use crate::tracker::Tracker;
use clickstamp_plugins::query::{first_value, parse_query};
use clickstamp_plugins::ParsedPostback;
use serde_json::json;

/// The network label pixel hits are counted and journalled under.
pub const PIXEL_NETWORK: &str = "pixel";

/// A 1×1 transparent GIF.
pub const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// A pixel hit as received.
#[derive(Debug, Clone, Default)]
pub struct PixelHit {
    pub method: String,
    pub raw_query: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub remote_ip: Option<String>,
    /// The `Cookie` header: a same-site image pixel without `cid=` falls back to the
    /// visitor's click cookie.
    pub cookies: String,
    pub received_ms: u64,
}

/// The newest click ID among the visitor's click cookies (`<prefix><campaign>`). IDs
/// are time-ordered, so the largest is the latest click.
fn click_from_cookies(cookies: &str, prefix: &str) -> Option<String> {
    cookies
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, value)| name.trim().starts_with(prefix) && value.len() == 32)
        .map(|(_, value)| value.trim().to_ascii_lowercase())
        .max()
}

/// The answer to a pixel hit.
#[derive(Debug, Clone)]
pub struct PixelReply {
    pub status: u16,
    pub body: serde_json::Value,
    pub outcome: &'static str,
}

/// The fields of a beacon, from the JSON body or the query.
#[derive(Debug, Clone, Default, PartialEq)]
struct Beacon {
    cid: String,
    event: Option<String>,
    txid: Option<String>,
    value: Option<f64>,
    currency: Option<String>,
}

fn valid_event(e: &str) -> bool {
    (1..=64).contains(&e.len())
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parse a beacon: a JSON object body (as the SDK sends, typed `text/plain` to avoid a
/// CORS preflight) or the query string (image pixel).
fn parse_beacon(hit: &PixelHit, cookie_prefix: &str) -> Result<Beacon, Refusal> {
    let bad = |message: &str| Refusal {
        reason: "malformed_beacon",
        status: 400,
        message: message.to_string(),
        click_id: None,
    };
    let fields: Vec<(String, String)> = if !hit.body.iter().all(u8::is_ascii_whitespace) {
        let value: serde_json::Value = serde_json::from_slice(&hit.body)
            .map_err(|_| bad("the beacon body is not a JSON object"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("the beacon body is not a JSON object"))?;
        obj.iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        parse_query(&hit.raw_query)
    };
    let get = |k: &str| {
        first_value(&fields, k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let cid = get("cid")
        .or_else(|| click_from_cookies(&hit.cookies, cookie_prefix))
        .ok_or_else(|| {
            bad("no click id: send cid=<click id> (or call from a page that has the click cookie)")
        })?;
    let event = get("event");
    if let Some(e) = &event {
        if !valid_event(e) {
            return Err(bad(
                "event must be 1-64 characters of letters, digits, '_', '.', '-'",
            ));
        }
    }
    let txid = get("txid");
    if txid.as_ref().is_some_and(|t| t.len() > 128) {
        return Err(bad("txid is longer than 128 characters"));
    }
    let value = match get("value") {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad("value must be a non-negative number"))?,
        ),
    };
    let currency = match get("currency") {
        None => None,
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        Some(_) => return Err(bad("currency must be a three-letter ISO 4217 code")),
    };
    Ok(Beacon {
        cid,
        event,
        txid,
        value,
        currency,
    })
}

impl Tracker {
    /// Handle one pixel hit.
    pub async fn ingest_pixel(&self, hit: PixelHit) -> PixelReply {
        let journal = JournalEntry {
            ts_ms: hit.received_ms,
            network_id: PIXEL_NETWORK.into(),
            method: hit.method.clone(),
            remote_ip: hit.remote_ip.clone(),
            raw_query: hit.raw_query.clone(),
            raw_body: hit.body.clone(),
            content_type: hit.content_type.clone(),
            origin: "pixel",
            replay_of: None,
        };
        let decided = match parse_beacon(&hit, &self.config.server.cookie_prefix) {
            Err(r) => Err(r),
            Ok(beacon) => match self.attribute(&beacon.cid, hit.received_ms).await {
                Err(r) => Err(r),
                Ok((click, campaign)) => {
                    let parsed = ParsedPostback {
                        click_id: click.click_id.clone(),
                        payout: beacon.value,
                        currency: beacon.currency.clone(),
                        txid: beacon.txid.clone(),
                        status: None,
                        event: beacon.event.clone(),
                        sub_ids: Vec::new(),
                    };
                    let mut c =
                        self.candidate(None, campaign, &click, &parsed, "pixel", hit.received_ms);
                    let grace = self.config.pixel.grace_period.as_millis() as u64;
                    c.relay_not_before_ms = Some(hit.received_ms + grace);
                    Ok(c)
                }
            },
        };
        let (verdict, refusal, candidate) = match decided {
            Ok(c) => (Verdict::Convert(Box::new(c.clone())), None, Some(c)),
            Err(r) => (
                Verdict::Rejected {
                    reason: r.reason,
                    message: r.message.clone(),
                    click_id: r.click_id.clone(),
                },
                Some(r),
                None,
            ),
        };
        let commit = match self
            .store
            .write(vec![WriteOp::Postback(Box::new(PostbackWrite {
                journal,
                verdict,
            }))])
            .await
        {
            Ok(mut r) => match r.pop() {
                Some(WriteResult::Postback(c)) => c,
                _ => return unavailable(self),
            },
            Err(e) => {
                tracing::error!(error = %e, "pixel hit not stored");
                return unavailable(self);
            }
        };
        self.metrics
            .postbacks
            .with_label_values(&[PIXEL_NETWORK, commit.outcome.as_str()])
            .inc();
        if let Some(r) = refusal {
            self.metrics
                .postback_rejections
                .with_label_values(&[PIXEL_NETWORK, r.reason])
                .inc();
            tracing::info!(
                reason = r.reason,
                journal_id = commit.journal_id,
                click_id = r.click_id.as_deref().unwrap_or(""),
                "pixel hit refused: {}",
                r.message
            );
            return PixelReply {
                status: r.status,
                body: json!({ "status": "rejected", "error": r.reason, "message": r.message, "journal_id": commit.journal_id }),
                outcome: "rejected",
            };
        }
        let Some(c) = candidate else {
            // A converted verdict always carries its candidate; answer as a store
            // failure rather than panic if that ever stops being true.
            return unavailable(self);
        };
        if commit.outcome == PostbackOutcome::Accepted {
            self.metrics
                .conversions
                .with_label_values(&[&c.campaign_id, &c.source_id, c.status, "pixel"])
                .inc();
            if let Some(p) = c.payout.filter(|p| *p > 0.0) {
                self.metrics
                    .revenue
                    .with_label_values(&[&c.campaign_id, &c.source_id])
                    .inc_by(p);
            }
        }
        tracing::info!(click_id = %c.click_id, event = %c.event, outcome = commit.outcome.as_str(), conversion_id = commit.conversion_id.unwrap_or_default(), "pixel conversion");
        PixelReply {
            status: 200,
            body: json!({
                "status": commit.outcome.as_str(),
                "conversion_id": commit.conversion_id,
                "event": c.event,
                "event_id": clickstamp_plugins::dedup_key(&c.click_id, &c.event, c.txid.as_deref()),
            }),
            outcome: commit.outcome.as_str(),
        }
    }
}

fn unavailable(tracker: &Tracker) -> PixelReply {
    tracker
        .metrics
        .postbacks
        .with_label_values(&[PIXEL_NETWORK, "store_unavailable"])
        .inc();
    PixelReply {
        status: 503,
        body: json!({ "status": "error", "error": "store_unavailable", "message": "retry later" }),
        outcome: "store_unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(query: &str, body: &str) -> PixelHit {
        PixelHit {
            raw_query: query.into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn parse_beacon_t(h: &PixelHit) -> Result<Beacon, Refusal> {
        parse_beacon(h, "cs_")
    }

    #[test]
    fn cookie_fallback_takes_the_newest_click() {
        let mut h = hit("event=lead", "");
        h.cookies =
            "a=1; cs_old=01a20ab40ea37c84bb258336aa4cf91a; cs_new=01a20ab41b8c722bbd8af9c9c66bbced"
                .into();
        assert_eq!(
            parse_beacon_t(&h).unwrap().cid,
            "01a20ab41b8c722bbd8af9c9c66bbced"
        );
    }

    #[test]
    fn beacons_from_json_and_query() {
        let b = parse_beacon_t(&hit(
            "",
            r#"{"cid":"abc","event":"purchase","value":12.5,"currency":"usd","txid":"T"}"#,
        ))
        .unwrap();
        assert_eq!(
            (b.cid.as_str(), b.value, b.currency.as_deref()),
            ("abc", Some(12.5), Some("USD"))
        );
        let q = parse_beacon(&hit("cid=abc&event=lead", ""), "cs_").unwrap();
        assert_eq!(q.event.as_deref(), Some("lead"));
    }

    #[test]
    fn bad_beacons_are_refused() {
        for (q, b) in [
            ("", "{"),
            ("", "[1]"),
            ("event=x", ""),
            ("cid=a&value=-1", ""),
            ("cid=a&currency=dollars", ""),
            ("cid=a&event=no%20spaces", ""),
        ] {
            assert_eq!(
                parse_beacon(&hit(q, b), "cs_").unwrap_err().reason,
                "malformed_beacon",
                "{q} {b}"
            );
        }
    }
}
