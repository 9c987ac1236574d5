//! A conversion on its way to a traffic source, and the fields its tokens draw from.

use super::spec::SourceToken;
use crate::postback::ConversionStatus;
use crate::template::UrlTemplateError;

/// Everything a traffic-source postback can be filled from.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConversion {
    /// Our click ID (32 hex).
    pub click_id: String,
    /// The source's click ID captured on landing.
    pub source_click_id: Option<String>,
    /// Which landing parameter carried it (`gclid`, `gbraid`, `wbraid`, ...).
    pub source_click_id_param: Option<String>,
    /// When the click happened, Unix ms (Meta's `fbc` needs it).
    pub click_time_ms: Option<u64>,
    /// When the conversion happened, Unix ms.
    pub conversion_time_ms: Option<u64>,
    /// Payout.
    pub payout: Option<f64>,
    /// ISO 4217 currency.
    pub currency: Option<String>,
    /// The network's transaction ID.
    pub txid: Option<String>,
    /// Current status.
    pub status: ConversionStatus,
    /// Event name.
    pub event: String,
    /// The dedup key ([`crate::dedup::dedup_key`]), handed on as the platform's event ID.
    pub event_id: String,
    /// Cost of the click as the source reported it.
    pub cost: Option<f64>,
    /// Sub IDs captured on landing, sub1..subN.
    pub sub_ids: Vec<Option<String>>,
}

impl RelayConversion {
    /// An approved conversion with only the required fields; set the rest directly.
    pub fn new(
        click_id: impl Into<String>,
        event: impl Into<String>,
        event_id: impl Into<String>,
    ) -> Self {
        RelayConversion {
            click_id: click_id.into(),
            source_click_id: None,
            source_click_id_param: None,
            click_time_ms: None,
            conversion_time_ms: None,
            payout: None,
            currency: None,
            txid: None,
            status: ConversionStatus::Approved,
            event: event.into(),
            event_id: event_id.into(),
            cost: None,
            sub_ids: Vec::new(),
        }
    }

    /// The unencoded value `field` renders to, `None` when the conversion lacks it.
    pub fn value_of(&self, field: &RelayField) -> Option<String> {
        match field {
            RelayField::SourceClickId => self.source_click_id.clone(),
            RelayField::SourceClickIdFrom(param) => {
                let from = self.source_click_id_param.as_deref();
                // A click whose carrier is unknown is assumed to be the first kind
                // (gclid) rather than dropped.
                if from.is_none_or(|p| p == param) {
                    self.source_click_id.clone()
                } else {
                    Some(String::new())
                }
            }
            RelayField::ClickId => Some(self.click_id.clone()),
            RelayField::Payout => self.payout.map(format_amount),
            RelayField::Currency => self.currency.clone(),
            RelayField::TxId => self.txid.clone(),
            RelayField::Status => Some(self.status.as_str().to_string()),
            RelayField::Event => Some(self.event.clone()),
            RelayField::EventId => Some(self.event_id.clone()),
            RelayField::Cost => self.cost.map(format_amount),
            RelayField::SubId(i) => self.sub_ids.get(*i).cloned().flatten(),
            RelayField::ConversionTime(f) => self.conversion_time_ms.map(|ms| f.format(ms)),
            RelayField::Fbc => match (&self.source_click_id, self.click_time_ms) {
                (Some(id), Some(ms)) => Some(super::meta::fbc(id, ms)),
                _ => None,
            },
        }
    }
}

/// Render an amount in the shortest decimal form that reads back to the same value
/// (`2.5`, `0.1`, `3`), never in exponent notation.
pub fn format_amount(v: f64) -> String {
    let s = format!("{v}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// How a time renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// Unix seconds.
    UnixSecs,
    /// Unix milliseconds.
    UnixMs,
    /// `2024-05-06T07:08:09Z`.
    Rfc3339,
    /// `2024-05-06 07:08:09+00:00` (Google Ads offline conversions).
    GoogleAds,
}

impl TimeFormat {
    /// Format `ms` (Unix milliseconds, UTC).
    pub fn format(self, ms: u64) -> String {
        let secs = ms / 1000;
        match self {
            TimeFormat::UnixSecs => secs.to_string(),
            TimeFormat::UnixMs => ms.to_string(),
            TimeFormat::Rfc3339 | TimeFormat::GoogleAds => {
                let (y, mo, d) = civil_from_days(secs / 86_400);
                let rem = secs % 86_400;
                let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
                if self == TimeFormat::Rfc3339 {
                    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
                } else {
                    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}+00:00")
                }
            }
        }
    }
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's days-to-civil
/// algorithm, restricted to non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// What a source postback token is filled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayField {
    /// The source's click ID.
    SourceClickId,
    /// The source's click ID only if it arrived in this landing parameter (Google's
    /// `gclid` / `gbraid` / `wbraid` go to different upload fields); empty otherwise.
    SourceClickIdFrom(String),
    /// Our click ID.
    ClickId,
    /// Payout.
    Payout,
    /// Currency.
    Currency,
    /// The network's transaction ID.
    TxId,
    /// Status word (`approved`, ...).
    Status,
    /// Event name.
    Event,
    /// The dedup key.
    EventId,
    /// Click cost.
    Cost,
    /// Landing sub ID by 0-based position.
    SubId(usize),
    /// Conversion time.
    ConversionTime(TimeFormat),
    /// Meta's `fbc` value built from the click ID and click time.
    Fbc,
}

impl RelayField {
    /// True for fields that carry the source's click ID: without it a relay is useless.
    pub fn is_source_click_id(&self) -> bool {
        matches!(
            self,
            RelayField::SourceClickId | RelayField::SourceClickIdFrom(_)
        )
    }

    /// True for fields from which the source can attribute a relay: its click ID, or
    /// Meta's `fbc`, which embeds it. The linter wants one in every template.
    pub fn carries_source_click_id(&self) -> bool {
        self.is_source_click_id() || matches!(self, RelayField::Fbc)
    }

    /// Parse a field name as used in the config: `source_click_id`, `click_id`,
    /// `payout`, `currency`, `txid`, `status`, `event`, `event_id`, `cost`, `sub1`..,
    /// `timestamp`, `timestamp_ms`, `time_rfc3339`, `fbc`.
    pub fn from_name(name: &str) -> Option<RelayField> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "source_click_id" => RelayField::SourceClickId,
            "click_id" => RelayField::ClickId,
            "payout" => RelayField::Payout,
            "currency" => RelayField::Currency,
            "txid" => RelayField::TxId,
            "status" => RelayField::Status,
            "event" => RelayField::Event,
            "event_id" => RelayField::EventId,
            "cost" => RelayField::Cost,
            "timestamp" => RelayField::ConversionTime(TimeFormat::UnixSecs),
            "timestamp_ms" => RelayField::ConversionTime(TimeFormat::UnixMs),
            "time_rfc3339" => RelayField::ConversionTime(TimeFormat::Rfc3339),
            "fbc" => RelayField::Fbc,
            other => {
                let n: usize = other.strip_prefix("sub")?.parse().ok()?;
                RelayField::SubId(n.checked_sub(1)?)
            }
        })
    }

    /// The names [`RelayField::from_name`] accepts, for error messages.
    pub const NAMES: &'static str = "source_click_id, click_id, payout, currency, txid, status, event, event_id, cost, sub1..subN, timestamp, timestamp_ms, time_rfc3339, fbc";

    /// clickstamp's generic vocabulary: each field under its own name
    /// (`{source_click_id}`, `{payout}`, ..., `{sub1}`..`{sub5}`).
    pub fn generic_tokens() -> Vec<SourceToken> {
        let mut out: Vec<SourceToken> = [
            "source_click_id",
            "click_id",
            "payout",
            "currency",
            "txid",
            "status",
            "event",
            "event_id",
            "cost",
            "timestamp",
            "timestamp_ms",
            "time_rfc3339",
        ]
        .iter()
        .filter_map(|n| RelayField::from_name(n).map(|f| SourceToken::new(*n, f)))
        .collect();
        out.extend((0..5).map(|i| SourceToken::new(format!("sub{}", i + 1), RelayField::SubId(i))));
        out
    }
}

/// Why a source postback could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template holds a token of the source's style that the source cannot fill.
    #[error("template holds {token}, which this source cannot fill: use one of {known}, or replace it with a literal value")]
    UnknownToken {
        /// The token as written.
        token: String,
        /// The tokens the source fills.
        known: String,
    },
    /// The click has no source click ID, so the source cannot attribute a relay.
    #[error("no source click id for {token}: the landing URL did not carry the source's click-id parameter (check the campaign URL in the source's dashboard)")]
    MissingSourceClickId {
        /// The token that needed it.
        token: String,
    },
    /// The template is not an absolute http(s) URL.
    #[error("postback template {0:?} is not an absolute http(s) URL")]
    NotHttpUrl(String),
    /// Filling the template would let a value change the relay's host or path (a token
    /// in the host, or a path value that is `.`, `..` or empty): refused, never sent.
    #[error("relay refused: {0}")]
    UnsafeUrl(#[from] UrlTemplateError),
}

impl RenderError {
    /// Stable snake_case label, safe for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::UnknownToken { .. } => "unknown_token",
            RenderError::MissingSourceClickId { .. } => "missing_source_click_id",
            RenderError::NotHttpUrl(_) => "not_http_url",
            RenderError::UnsafeUrl(e) => e.reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_amounts() {
        assert_eq!(TimeFormat::Rfc3339.format(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            TimeFormat::Rfc3339.format(1_709_251_199_000),
            "2024-02-29T23:59:59Z"
        );
        assert_eq!(
            TimeFormat::GoogleAds.format(951_782_400_000),
            "2000-02-29 00:00:00+00:00"
        );
        assert_eq!(format_amount(2.5), "2.5");
        assert_eq!(format_amount(3.0), "3");
        assert_eq!(format_amount(-0.0), "0");
        assert_eq!(format_amount(1e21), "1000000000000000000000");
    }

    #[test]
    fn days_become_dates_across_leap_years_and_centuries() {
        for (days, date) in [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (10_956, (1999, 12, 31)),
            (10_957, (2000, 1, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (47_540, (2100, 2, 28)),
            (47_541, (2100, 3, 1)),
            (130_953, (2328, 7, 16)),
        ] {
            assert_eq!(civil_from_days(days), date, "day {days}");
        }
    }

    #[test]
    fn field_names() {
        assert_eq!(RelayField::from_name("sub3"), Some(RelayField::SubId(2)));
        assert_eq!(RelayField::from_name("sub0"), None);
        assert_eq!(RelayField::from_name("PAYOUT"), Some(RelayField::Payout));
    }
}
