//! A conversion as the pixel reports it: validation, event ID, and the JSON body of
//! `POST /px`.
//!
//! The body is one JSON object with keys in this order, every key always present:
//! `{"cid":"<32 hex>","event":"purchase","txid":"T1"|null,"value":12.5|null,
//! "currency":"USD"|null,"event_id":"<32 hex>","page":"<url>"|null}`.

use crate::shape::normalize_click_id;
use clickstamp_plugins::dedup_key;
use clickstamp_plugins::postback::DEFAULT_EVENT;
use std::fmt::Write;

/// Longest event name accepted, in characters.
pub const MAX_EVENT_LEN: usize = 64;
/// Longest transaction ID accepted, in characters.
pub const MAX_TXID_LEN: usize = 128;
/// Page URLs longer than this many characters are cut (they are context, not keys).
pub const MAX_PAGE_LEN: usize = 512;

/// Why a conversion was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not 32 hex (or hyphenated) characters of a UUIDv7.
    #[error("click id is not a UUIDv7 in 32-hex or hyphenated form")]
    ClickId,
    /// Event name empty after defaulting, too long, or with characters outside
    /// `[A-Za-z0-9_.-]`.
    #[error("event must be 1 to 64 characters of A-Z a-z 0-9 _ . -")]
    Event,
    /// Transaction ID longer than [`MAX_TXID_LEN`] characters.
    #[error("txid must be at most 128 characters")]
    Txid,
    /// Value negative, NaN or infinite.
    #[error("value must be a finite number >= 0")]
    Value,
    /// Currency not three ASCII letters.
    #[error("currency must be a 3-letter code such as USD")]
    Currency,
}

/// A validated, normalised conversion ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// Click ID, 32 lowercase hex.
    pub cid: String,
    /// Event name as given (trimmed), [`DEFAULT_EVENT`] when empty.
    pub event: String,
    /// Transaction ID (trimmed), `None` when absent or empty.
    pub txid: Option<String>,
    /// Conversion value, finite and non-negative.
    pub value: Option<f64>,
    /// ISO 4217-shaped currency code, upper case.
    pub currency: Option<String>,
    /// The dedup key, identical to the server's for the same conversion.
    pub event_id: String,
    /// The page that reported the conversion, at most [`MAX_PAGE_LEN`] characters.
    pub page: Option<String>,
}

impl Conversion {
    /// Validate and normalise a conversion.
    ///
    /// Guarantees: on `Ok`, every field obeys the rules documented on [`PayloadError`]
    /// and `event_id == dedup_key(cid, event, txid)`. Empty strings count as absent
    /// for `txid`, `currency` and `page`, and as [`DEFAULT_EVENT`] for `event`.
    pub fn new(
        click_id: &str,
        event: &str,
        txid: Option<&str>,
        value: Option<f64>,
        currency: Option<&str>,
        page: Option<&str>,
    ) -> Result<Self, PayloadError> {
        let cid = normalize_click_id(click_id).ok_or(PayloadError::ClickId)?;
        let event = match event.trim() {
            "" => DEFAULT_EVENT,
            e => e,
        };
        let event_ok = event.len() <= MAX_EVENT_LEN
            && event
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !event_ok {
            return Err(PayloadError::Event);
        }
        let txid = non_empty(txid);
        if txid.is_some_and(|t| t.chars().count() > MAX_TXID_LEN) {
            return Err(PayloadError::Txid);
        }
        let value = match value {
            // `+ 0.0` turns -0 into 0, so the body never says "-0".
            Some(v) if v.is_finite() && v >= 0.0 => Some(v + 0.0),
            Some(_) => return Err(PayloadError::Value),
            None => None,
        };
        let currency = match non_empty(currency) {
            Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(c.to_ascii_uppercase())
            }
            Some(_) => return Err(PayloadError::Currency),
            None => None,
        };
        let page = non_empty(page).map(|p| p.chars().take(MAX_PAGE_LEN).collect());
        Ok(Conversion {
            event_id: dedup_key(&cid, event, txid),
            cid,
            event: event.to_string(),
            txid: txid.map(str::to_string),
            value,
            currency,
            page,
        })
    }

    /// The `POST /px` body (see the module docs for its exact shape).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160 + self.page.as_ref().map_or(0, String::len));
        out.push_str("{\"cid\":");
        json_str(&mut out, Some(&self.cid));
        out.push_str(",\"event\":");
        json_str(&mut out, Some(&self.event));
        out.push_str(",\"txid\":");
        json_str(&mut out, self.txid.as_deref());
        out.push_str(",\"value\":");
        match self.value {
            // Display prints the shortest round-tripping decimal, never an exponent or
            // NaN (excluded by validation), so it is always a JSON number.
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"currency\":");
        json_str(&mut out, self.currency.as_deref());
        out.push_str(",\"event_id\":");
        json_str(&mut out, Some(&self.event_id));
        out.push_str(",\"page\":");
        json_str(&mut out, self.page.as_deref());
        out.push('}');
        out
    }
}

/// The event ID of a conversion: exactly [`clickstamp_plugins::dedup_key`], which
/// treats an empty event as [`DEFAULT_EVENT`] and an empty txid as absent.
pub fn event_id(click_id: &str, event: &str, txid: Option<&str>) -> String {
    dedup_key(click_id, event, txid)
}

/// Validate a conversion and render its `POST /px` body, event ID included.
///
/// Guarantees: the same inputs always give the same bytes; an error means nothing
/// should be sent (see [`PayloadError`] for the rules).
pub fn build_payload(
    click_id: &str,
    event: &str,
    txid: Option<&str>,
    value: Option<f64>,
    currency: Option<&str>,
    page: Option<&str>,
) -> Result<String, PayloadError> {
    Conversion::new(click_id, event, txid, value, currency, page).map(|c| c.to_json())
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Append `s` as a JSON string literal, or `null`.
fn json_str(out: &mut String, s: Option<&str>) {
    let Some(s) = s else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Other control characters, and U+2028/U+2029 which some JS parsers refuse
            // in string literals.
            c if c < ' ' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";
    const CID_HYPH: &str = "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";
    const PINNED_KEY: &str = "ee0920fdc4cdb41bc895208725129ca5";

    #[test]
    fn full_payload_has_the_exact_documented_shape() {
        let body = build_payload(
            CID_HYPH,
            "purchase",
            Some("T1"),
            Some(12.5),
            Some("usd"),
            Some("https://shop.example/thanks?o=1"),
        )
        .unwrap();
        assert_eq!(
            body,
            format!(
                "{{\"cid\":\"{CID}\",\"event\":\"purchase\",\"txid\":\"T1\",\"value\":12.5,\
                 \"currency\":\"USD\",\"event_id\":\"{PINNED_KEY}\",\
                 \"page\":\"https://shop.example/thanks?o=1\"}}"
            )
        );
    }

    #[test]
    fn absent_fields_are_null_and_empty_event_is_conversion() {
        let body = build_payload(CID, " ", Some(""), None, Some(" "), None).unwrap();
        let key = dedup_key(CID, "conversion", None);
        assert_eq!(
            body,
            format!(
                "{{\"cid\":\"{CID}\",\"event\":\"conversion\",\"txid\":null,\"value\":null,\
                 \"currency\":null,\"event_id\":\"{key}\",\"page\":null}}"
            )
        );
    }

    #[test]
    fn each_rule_has_its_own_error() {
        let ok = |e: &str, t: Option<&str>, v: Option<f64>, c: Option<&str>| {
            Conversion::new(CID, e, t, v, c, None).map(|_| ())
        };
        assert_eq!(
            Conversion::new("nope", "e", None, None, None, None).map(|_| ()),
            Err(PayloadError::ClickId)
        );
        assert_eq!(ok(&"e".repeat(64), None, None, None), Ok(()));
        assert_eq!(
            ok(&"e".repeat(65), None, None, None),
            Err(PayloadError::Event)
        );
        assert_eq!(
            ok("add to cart", None, None, None),
            Err(PayloadError::Event)
        );
        assert_eq!(ok("lead{x}", None, None, None), Err(PayloadError::Event));
        assert_eq!(ok("Sign_Up.v2-b", None, None, None), Ok(()));
        assert_eq!(ok("e", Some(&"é".repeat(128)), None, None), Ok(()));
        assert_eq!(
            ok("e", Some(&"t".repeat(129)), None, None),
            Err(PayloadError::Txid)
        );
        for bad in [-0.01, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(ok("e", None, Some(bad), None), Err(PayloadError::Value));
        }
        for bad in ["US", "USDT", "U$D", "€UR"] {
            assert_eq!(ok("e", None, None, Some(bad)), Err(PayloadError::Currency));
        }
    }

    #[test]
    fn numbers_render_as_json_numbers() {
        let render = |v: f64| {
            Conversion::new(CID, "e", None, Some(v), None, None)
                .unwrap()
                .to_json()
        };
        assert!(render(-0.0).contains("\"value\":0,"));
        assert!(render(0.1).contains("\"value\":0.1,"));
        assert!(render(1e21).contains("\"value\":1000000000000000000000,"));
        assert!(render(3.0).contains("\"value\":3,"));
    }

    #[test]
    fn strings_are_escaped_and_pages_cut() {
        let c = Conversion::new(
            CID,
            "e",
            Some("a\"b\\c\n\u{1}\u{2028}ü"),
            None,
            None,
            Some(&"p".repeat(600)),
        )
        .unwrap();
        let json = c.to_json();
        assert!(
            json.contains(r#""txid":"a\"b\\c\n\u0001\u2028ü""#),
            "{json}"
        );
        assert_eq!(c.page.as_deref().map(str::len), Some(MAX_PAGE_LEN));
    }

    #[test]
    fn event_id_is_the_servers_dedup_key() {
        assert_eq!(event_id(CID, "purchase", Some("T1")), PINNED_KEY);
        let c = Conversion::new(CID_HYPH, "Purchase", Some(" T1 "), None, None, None).unwrap();
        assert_eq!(c.event_id, PINNED_KEY);
    }
}
