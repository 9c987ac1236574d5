//! TikTok Events API 1.3: `POST {endpoint}/open_api/v1.3/event/track/` with the
//! `Access-Token` header.
//! <https://business-api.tiktok.com/portal/docs?id=1771101303285761>

use super::platform::{event_name, whole_batch, Answer, Platform, Request, RowOutcome};
use crate::config::destinations::{Destination, TikTokConfig};
use crate::store::DestinationEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Our common event names as TikTok's standard events.
const STANDARD_EVENTS: &[(&str, &str)] = &[
    ("conversion", "CompletePayment"),
    ("purchase", "CompletePayment"),
    ("sale", "CompletePayment"),
    ("deposit", "CompletePayment"),
    ("lead", "SubmitForm"),
    ("registration", "CompleteRegistration"),
    ("signup", "CompleteRegistration"),
    ("subscribe", "Subscribe"),
];

#[derive(Debug, Serialize)]
pub struct TrackRequest<'a> {
    pub event_source: &'static str,
    pub event_source_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<&'a str>,
    pub data: Vec<Event<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub event: String,
    /// Unix seconds.
    pub event_time: u64,
    /// Our dedup key: the TikTok pixel's `event_id` for the same conversion.
    pub event_id: &'a str,
    pub user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Properties<'a>>,
}

#[derive(Debug, Serialize)]
pub struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Properties<'a> {
    pub value: f64,
    pub currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<&'a str>,
}

/// Every answer, success or not, is `{"code", "message", "request_id"}`; HTTP 200
/// carries errors too.
#[derive(Debug, Deserialize)]
struct TrackAnswer {
    code: i64,
    #[serde(default)]
    message: String,
}

/// TikTok's "too many requests" code; 5xxxx are its own failures.
const RATE_LIMITED: i64 = 40100;

pub struct TikTok {
    endpoint: String,
    config: TikTokConfig,
    event_names: BTreeMap<String, String>,
    currency: String,
}

impl TikTok {
    pub fn new(d: &Destination, config: &TikTokConfig) -> Self {
        TikTok {
            endpoint: d.endpoint.clone(),
            config: config.clone(),
            event_names: d.event_names.clone(),
            currency: d.currency.clone(),
        }
    }
}

impl Platform for TikTok {
    fn precheck(&self, e: &DestinationEntry, _now_ms: u64) -> Option<RowOutcome> {
        (e.outbox.kind == "status").then(|| {
            RowOutcome::Skipped("TikTok has no way to change a conversion already sent".into())
        })
    }

    fn request(
        &self,
        _agent: &ureq::Agent,
        _group: &'static str,
        entries: &[&DestinationEntry],
        _now_ms: u64,
    ) -> Result<Request, String> {
        let data = entries
            .iter()
            .map(|e| {
                let c = &e.conversion;
                let click = e.click.as_ref();
                Event {
                    event: event_name(&self.event_names, STANDARD_EVENTS, &c.event),
                    event_time: c.created_ms / 1000,
                    event_id: &c.dedup_key,
                    user: User {
                        ttclid: click.and_then(|k| {
                            matches!(k.source_click_param.as_deref(), None | Some("ttclid"))
                                .then_some(k.source_click_id.as_deref())
                                .flatten()
                        }),
                        ip: click.and_then(|k| k.ip.as_deref()),
                        user_agent: click.and_then(|k| k.user_agent.as_deref()),
                    },
                    properties: c.payout.map(|value| Properties {
                        value,
                        currency: c.currency.as_deref().unwrap_or(&self.currency),
                        order_id: c.txid.as_deref(),
                    }),
                }
            })
            .collect();
        let body = TrackRequest {
            event_source: "web",
            event_source_id: &self.config.pixel_code,
            test_event_code: self.config.test_event_code.as_deref(),
            data,
        };
        Ok(Request {
            url: format!("{}/open_api/v1.3/event/track/", self.endpoint),
            headers: vec![(
                "Access-Token",
                self.config.access_token.expose().to_string(),
            )],
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        })
    }

    fn read_answer(&self, entries: &[&DestinationEntry], answer: &Answer) -> Vec<RowOutcome> {
        let parsed = serde_json::from_slice::<TrackAnswer>(&answer.body).ok();
        match parsed {
            Some(a) if (200..300).contains(&answer.status) => {
                let message = format!("TikTok code {}: {}", a.code, a.message);
                let outcome = match a.code {
                    0 => RowOutcome::Delivered,
                    RATE_LIMITED => RowOutcome::Retry(message),
                    c if c >= 50000 => RowOutcome::Retry(message),
                    _ => RowOutcome::Refused(message),
                };
                vec![outcome; entries.len()]
            }
            _ => whole_batch(entries.len(), answer, |body| {
                String::from_utf8_lossy(body).chars().take(300).collect()
            }),
        }
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.config.access_token.expose().to_string()]
    }
}
