//! Google Ads offline click conversions:
//! `POST {endpoint}/{api_version}/customers/{customer_id}:uploadClickConversions`, and
//! retractions through `:uploadConversionAdjustments`, both with `partialFailure`
//! so one bad row does not sink the rest.
//! <https://developers.google.com/google-ads/api/docs/conversions/upload-clicks>
//! <https://developers.google.com/google-ads/api/docs/conversions/upload-adjustments>

use super::platform::{click_id_from, Answer, Platform, Request, RowOutcome};
use crate::config::destinations::{Destination, GoogleAdsConfig, GoogleAuth};
use crate::store::DestinationEntry;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Google accepts click conversions up to 90 days after the click.
const MAX_CLICK_AGE_MS: u64 = 90 * 86_400_000;

/// Per-row error codes that a later attempt may clear.
const RETRYABLE_ROW_ERRORS: &[&str] = &["TOO_RECENT_CONVERSION_ACTION", "RESOURCE_EXHAUSTED"];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadClickConversionsRequest<'a> {
    pub conversions: Vec<ClickConversion<'a>>,
    pub partial_failure: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickConversion<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gclid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbraid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wbraid: Option<&'a str>,
    pub conversion_action: &'a str,
    /// `yyyy-mm-dd hh:mm:ss+00:00`.
    pub conversion_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<&'a str>,
    /// Our dedup key: Google refuses a second upload with the same order id, and a
    /// retraction names the conversion by it.
    pub order_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadConversionAdjustmentsRequest<'a> {
    pub conversion_adjustments: Vec<ConversionAdjustment<'a>>,
    pub partial_failure: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversionAdjustment<'a> {
    pub conversion_action: &'a str,
    pub adjustment_type: &'static str,
    pub order_id: &'a str,
    pub adjustment_date_time: String,
}

/// The answer of both upload methods: `partialFailureError` names failing rows by
/// their index in `fieldPathElements`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadAnswer {
    #[serde(default)]
    partial_failure_error: Option<Status>,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<FailureDetail>,
}

#[derive(Debug, Deserialize)]
struct FailureDetail {
    #[serde(default)]
    errors: Vec<AdsError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdsError {
    #[serde(default)]
    error_code: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default)]
    field_path_elements: Vec<FieldPathElement>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldPathElement {
    #[serde(default)]
    index: Option<usize>,
}

/// A whole-request error: `{"error": {"code", "message", "status"}}`.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: RpcError,
}

#[derive(Debug, Deserialize)]
struct RpcError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct GoogleAds {
    endpoint: String,
    config: GoogleAdsConfig,
    currency: String,
    /// The access token of the refresh-token flow and when to renew it.
    token: Mutex<Option<(String, Instant)>>,
}

impl GoogleAds {
    pub fn new(d: &Destination, config: &GoogleAdsConfig) -> Self {
        GoogleAds {
            endpoint: d.endpoint.clone(),
            config: config.clone(),
            currency: d.currency.clone(),
            token: Mutex::new(None),
        }
    }

    fn access_token(&self, agent: &ureq::Agent) -> Result<String, String> {
        let (token_endpoint, client_id, client_secret, refresh_token) = match &self.config.auth {
            GoogleAuth::AccessToken(t) => return Ok(t.expose().to_string()),
            GoogleAuth::RefreshToken {
                token_endpoint,
                client_id,
                client_secret,
                refresh_token,
            } => (token_endpoint, client_id, client_secret, refresh_token),
        };
        if let Some((token, renew_at)) = &*self.token.lock() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.expose()),
            ("refresh_token", refresh_token.expose()),
        ];
        let mut resp = agent
            .post(token_endpoint)
            .send_form(form)
            .map_err(|e| format!("token endpoint: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        if status != 200 {
            return Err(format!(
                "the token endpoint answered HTTP {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| format!("the token endpoint's answer is not a token: {e}"))?;
        // Renewed a minute early, so no request goes out with a token about to lapse.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600).saturating_sub(60));
        *self.token.lock() = Some((answer.access_token.clone(), Instant::now() + lifetime));
        Ok(answer.access_token)
    }
}

/// `yyyy-mm-dd hh:mm:ss+00:00` for Unix milliseconds.
pub fn date_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = crate::report::params::civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+00:00",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn is_retraction(e: &DestinationEntry) -> bool {
    e.outbox.kind == "status" && matches!(e.conversion.status.as_str(), "rejected" | "chargeback")
}

impl Platform for GoogleAds {
    fn precheck(&self, e: &DestinationEntry, now_ms: u64) -> Option<RowOutcome> {
        if e.outbox.kind == "status" {
            return (!is_retraction(e)).then(|| {
                RowOutcome::Skipped(format!(
                    "Google Ads takes retractions only; a change to {} is not sent",
                    e.conversion.status
                ))
            });
        }
        let Some(click) = &e.click else {
            return Some(RowOutcome::Refused("the click is no longer stored".into()));
        };
        if click_id_from(e, &["gclid", "gbraid", "wbraid"]).is_none() {
            return Some(RowOutcome::Refused(
                "the click carries no gclid, gbraid or wbraid for Google Ads to attribute to"
                    .into(),
            ));
        }
        (now_ms.saturating_sub(click.ts_ms) > MAX_CLICK_AGE_MS).then(|| {
            RowOutcome::Refused(
                "the click is older than the 90 days Google Ads accepts conversions for".into(),
            )
        })
    }

    fn group(&self, e: &DestinationEntry) -> &'static str {
        if is_retraction(e) {
            "adjustments"
        } else {
            "conversions"
        }
    }

    fn request(
        &self,
        agent: &ureq::Agent,
        group: &'static str,
        entries: &[&DestinationEntry],
        _now_ms: u64,
    ) -> Result<Request, String> {
        let action = self.config.conversion_action.as_str();
        let (method, body) = if group == "adjustments" {
            let body = UploadConversionAdjustmentsRequest {
                conversion_adjustments: entries
                    .iter()
                    .map(|e| ConversionAdjustment {
                        conversion_action: action,
                        adjustment_type: "RETRACTION",
                        order_id: &e.conversion.dedup_key,
                        adjustment_date_time: date_time(e.conversion.updated_ms),
                    })
                    .collect(),
                partial_failure: true,
            };
            ("uploadConversionAdjustments", serde_json::to_vec(&body))
        } else {
            let body = UploadClickConversionsRequest {
                conversions: entries
                    .iter()
                    .map(|e| {
                        let c = &e.conversion;
                        let (param, id) = click_id_from(e, &["gclid", "gbraid", "wbraid"])
                            .unwrap_or(("gclid", ""));
                        ClickConversion {
                            gclid: (param == "gclid").then_some(id),
                            gbraid: (param == "gbraid").then_some(id),
                            wbraid: (param == "wbraid").then_some(id),
                            conversion_action: action,
                            conversion_date_time: date_time(c.created_ms),
                            conversion_value: c.payout,
                            currency_code: c
                                .payout
                                .map(|_| c.currency.as_deref().unwrap_or(&self.currency)),
                            order_id: &c.dedup_key,
                        }
                    })
                    .collect(),
                partial_failure: true,
            };
            ("uploadClickConversions", serde_json::to_vec(&body))
        };
        let token = self.access_token(agent)?;
        let mut headers = vec![
            ("Authorization", format!("Bearer {token}")),
            (
                "developer-token",
                self.config.developer_token.expose().to_string(),
            ),
        ];
        if let Some(login) = &self.config.login_customer_id {
            headers.push(("login-customer-id", login.clone()));
        }
        Ok(Request {
            url: format!(
                "{}/{}/customers/{}:{method}",
                self.endpoint, self.config.api_version, self.config.customer_id
            ),
            headers,
            body: body.map_err(|e| e.to_string())?,
        })
    }

    fn read_answer(&self, entries: &[&DestinationEntry], answer: &Answer) -> Vec<RowOutcome> {
        let n = entries.len();
        if !(200..300).contains(&answer.status) {
            let message = match serde_json::from_slice::<ErrorAnswer>(&answer.body) {
                Ok(ErrorAnswer { error }) => {
                    format!("Google Ads {}: {}", error.status, error.message)
                }
                Err(_) => String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(300)
                    .collect(),
            };
            let message = format!("HTTP {}: {message}", answer.status);
            if answer.status == 401 {
                // A revoked or lapsed token: fetch a fresh one next time.
                *self.token.lock() = None;
            }
            let retry = matches!(answer.status, 401 | 429) || answer.status >= 500;
            let outcome = if retry {
                RowOutcome::Retry(message)
            } else {
                RowOutcome::Refused(message)
            };
            return vec![outcome; n];
        }
        let mut outcomes = vec![RowOutcome::Delivered; n];
        let Ok(parsed) = serde_json::from_slice::<UploadAnswer>(&answer.body) else {
            return outcomes;
        };
        let Some(failure) = parsed.partial_failure_error else {
            return outcomes;
        };
        let mut placed = false;
        for error in failure.details.iter().flat_map(|d| &d.errors) {
            let index = error
                .location
                .as_ref()
                .and_then(|l| l.field_path_elements.iter().find_map(|f| f.index));
            let Some(i) = index.filter(|i| *i < n) else {
                continue;
            };
            placed = true;
            let code = error
                .error_code
                .values()
                .filter_map(|v| v.as_str())
                .next()
                .unwrap_or("UNKNOWN");
            let message = format!("Google Ads {code}: {}", error.message);
            outcomes[i] = if RETRYABLE_ROW_ERRORS.contains(&code) {
                RowOutcome::Retry(message)
            } else {
                RowOutcome::Refused(message)
            };
        }
        if !placed {
            // A failure that names no row: nothing tells which went through, so all are
            // tried again (the order id keeps Google from counting one twice).
            return vec![RowOutcome::Retry(format!("Google Ads: {}", failure.message)); n];
        }
        outcomes
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.config.developer_token.expose().to_string()];
        match &self.config.auth {
            GoogleAuth::AccessToken(t) => secrets.push(t.expose().to_string()),
            GoogleAuth::RefreshToken {
                client_secret,
                refresh_token,
                ..
            } => {
                secrets.push(client_secret.expose().to_string());
                secrets.push(refresh_token.expose().to_string());
            }
        }
        if let Some((token, _)) = &*self.token.lock() {
            secrets.push(token.clone());
        }
        secrets
    }
}

#[cfg(test)]
mod tests {
    use super::date_time;

    #[test]
    fn conversion_times_carry_an_offset() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00+00:00");
        assert_eq!(date_time(1_764_607_445_000), "2025-12-01 16:44:05+00:00");
    }
}
