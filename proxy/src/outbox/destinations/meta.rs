//! Meta Conversions API: `POST {endpoint}/{api_version}/{pixel_id}/events`.
//! <https://developers.facebook.com/docs/marketing-api/conversions-api/parameters>

use super::platform::{event_name, whole_batch, Answer, Platform, Request, RowOutcome};
use crate::config::destinations::{Destination, MetaConfig};
use crate::store::DestinationEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Meta refuses events whose `event_time` is more than 7 days before the request.
const MAX_EVENT_AGE_MS: u64 = 7 * 86_400_000;

/// Our common event names as Meta's standard events.
const STANDARD_EVENTS: &[(&str, &str)] = &[
    ("conversion", "Purchase"),
    ("purchase", "Purchase"),
    ("sale", "Purchase"),
    ("lead", "Lead"),
    ("registration", "CompleteRegistration"),
    ("signup", "CompleteRegistration"),
    ("subscribe", "Subscribe"),
    ("install", "CompleteRegistration"),
    ("deposit", "Purchase"),
];

/// The request body: `data[]` plus the token and the optional test code.
#[derive(Debug, Serialize)]
pub struct EventsRequest<'a> {
    pub data: Vec<ServerEvent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_event_code: Option<&'a str>,
    pub access_token: &'a str,
}

/// One server event, with the fields Meta documents as its main body parameters.
#[derive(Debug, Serialize)]
pub struct ServerEvent<'a> {
    pub event_name: String,
    /// Unix seconds.
    pub event_time: u64,
    /// Our dedup key: the Meta pixel sends the same `eventID`, so Meta counts one.
    pub event_id: &'a str,
    pub action_source: &'a str,
    pub user_data: UserData<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<CustomData<'a>>,
}

/// Customer information. Meta wants these unhashed (unlike e-mail or phone).
#[derive(Debug, Serialize)]
pub struct UserData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_user_agent: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct CustomData<'a> {
    pub value: f64,
    pub currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<&'a str>,
}

/// Meta's error answer: `{"error": {"message", "type", "code", ...}}`.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_user_msg: Option<String>,
    #[serde(default)]
    is_transient: Option<bool>,
}

/// Graph API error codes that mean "later": temporary failures and rate limits.
const RETRYABLE_CODES: &[i64] = &[1, 2, 4, 17, 32, 341, 613, 80004];

pub struct Meta {
    endpoint: String,
    config: MetaConfig,
    event_names: BTreeMap<String, String>,
    currency: String,
}

impl Meta {
    pub fn new(d: &Destination, config: &MetaConfig) -> Self {
        Meta {
            endpoint: d.endpoint.clone(),
            config: config.clone(),
            event_names: d.event_names.clone(),
            currency: d.currency.clone(),
        }
    }

    fn event<'a>(&'a self, e: &'a DestinationEntry) -> ServerEvent<'a> {
        let c = &e.conversion;
        let click = e.click.as_ref();
        let fbc = click.and_then(|k| {
            let id = k.source_click_id.as_deref()?;
            matches!(k.source_click_param.as_deref(), None | Some("fbclid"))
                .then(|| clickstamp_plugins::source::meta::fbc(id, k.ts_ms))
        });
        ServerEvent {
            event_name: event_name(&self.event_names, STANDARD_EVENTS, &c.event),
            event_time: c.created_ms / 1000,
            event_id: &c.dedup_key,
            action_source: &self.config.action_source,
            user_data: UserData {
                fbc,
                client_ip_address: click.and_then(|k| k.ip.as_deref()),
                client_user_agent: click.and_then(|k| k.user_agent.as_deref()),
            },
            custom_data: c.payout.map(|value| CustomData {
                value,
                currency: c.currency.as_deref().unwrap_or(&self.currency),
                order_id: c.txid.as_deref(),
            }),
        }
    }
}

impl Platform for Meta {
    fn precheck(&self, e: &DestinationEntry, now_ms: u64) -> Option<RowOutcome> {
        if e.outbox.kind == "status" {
            return Some(RowOutcome::Skipped(
                "Meta has no way to change a conversion already sent".into(),
            ));
        }
        (now_ms.saturating_sub(e.conversion.created_ms) > MAX_EVENT_AGE_MS).then(|| {
            RowOutcome::Refused(
                "the conversion is older than the 7 days Meta accepts an event_time for".into(),
            )
        })
    }

    fn request(
        &self,
        _agent: &ureq::Agent,
        _group: &'static str,
        entries: &[&DestinationEntry],
        _now_ms: u64,
    ) -> Result<Request, String> {
        let body = EventsRequest {
            data: entries.iter().map(|e| self.event(e)).collect(),
            test_event_code: self.config.test_event_code.as_deref(),
            access_token: self.config.access_token.expose(),
        };
        Ok(Request {
            url: format!(
                "{}/{}/{}/events",
                self.endpoint, self.config.api_version, self.config.pixel_id
            ),
            headers: Vec::new(),
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        })
    }

    fn read_answer(&self, entries: &[&DestinationEntry], answer: &Answer) -> Vec<RowOutcome> {
        let error = serde_json::from_slice::<ErrorAnswer>(&answer.body).ok();
        if let Some(ErrorAnswer { error }) = &error {
            if !(200..300).contains(&answer.status) {
                let message = match &error.error_user_msg {
                    Some(user) => format!("Meta error {}: {} ({user})", error.code, error.message),
                    None => format!("Meta error {}: {}", error.code, error.message),
                };
                let retry = answer.status == 429
                    || answer.status >= 500
                    || error.is_transient == Some(true)
                    || RETRYABLE_CODES.contains(&error.code);
                let outcome = if retry {
                    RowOutcome::Retry(message)
                } else {
                    RowOutcome::Refused(message)
                };
                return vec![outcome; entries.len()];
            }
        }
        whole_batch(entries.len(), answer, |body| {
            String::from_utf8_lossy(body).chars().take(300).collect()
        })
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.config.access_token.expose().to_string()]
    }
}
