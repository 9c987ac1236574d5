//! The vocabulary of an inbound postback: the request as the proxy saw it, what a
//! network plugin reads from it, and why it may be refused.

use std::net::IpAddr;

/// The event name used when a postback names none (a network's single "conversion").
pub const DEFAULT_EVENT: &str = "conversion";

/// Longest value accepted for any field we read: longer values are refused rather than
/// truncated, so nothing is silently altered on its way to the store.
pub const MAX_FIELD_LEN: usize = 1024;

/// An inbound postback as the proxy received it. Borrowed: the proxy owns the bytes.
#[derive(Debug, Clone, Copy)]
pub struct PostbackRequest<'a> {
    /// HTTP method, upper case (`GET`, `POST`).
    pub method: &'a str,
    /// Decoded query pairs, in order, repeats kept.
    pub query: &'a [(String, String)],
    /// Decoded body fields (a form body, or a JSON object flattened to pairs), in order.
    pub body: &'a [(String, String)],
    /// The client IP after the proxy applied its trusted-proxy rules.
    pub remote_ip: Option<IpAddr>,
    /// Request headers, names in any case.
    pub headers: &'a [(String, String)],
    /// The query string as received, without the `?`.
    pub raw_query: &'a str,
    /// The body as received.
    pub raw_body: &'a [u8],
}

impl<'a> PostbackRequest<'a> {
    /// A bodiless GET with the given decoded query (headers and IP empty).
    pub fn get(raw_query: &'a str, query: &'a [(String, String)]) -> Self {
        PostbackRequest {
            method: "GET",
            query,
            body: &[],
            remote_ip: None,
            headers: &[],
            raw_query,
            raw_body: &[],
        }
    }

    /// The first value of `name`: the query first, then the body.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.query
            .iter()
            .chain(self.body.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query pairs followed by body pairs.
    pub fn all_pairs(&self) -> impl Iterator<Item = &'a (String, String)> {
        self.query.iter().chain(self.body.iter())
    }
}

/// Where a conversion stands in the network's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversionStatus {
    /// Recorded, not yet approved (hold, new, processing).
    Pending,
    /// Approved, confirmed, paid.
    Approved,
    /// Rejected, declined, cancelled, fraud.
    Rejected,
    /// Reversed after approval (chargeback, refund).
    Chargeback,
}

impl ConversionStatus {
    /// Stable lower-case name (`pending`, `approved`, `rejected`, `chargeback`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConversionStatus::Pending => "pending",
            ConversionStatus::Approved => "approved",
            ConversionStatus::Rejected => "rejected",
            ConversionStatus::Chargeback => "chargeback",
        }
    }

    /// Leniently read a network's status word: case, surrounding space, `-` and ` `
    /// vs `_` are ignored; `1`/`true` mean approved. `None` for anything else, so a
    /// network's own code (Affise's `2`) must be mapped in its config.
    pub fn parse_lenient(raw: &str) -> Option<ConversionStatus> {
        let word: String = raw
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        use ConversionStatus::*;
        Some(match word.as_str() {
            "1" | "true" | "yes" | "approved" | "approve" | "confirmed" | "confirm"
            | "accepted" | "accept" | "paid" | "success" | "successful" | "completed"
            | "complete" | "valid" | "locked" | "closed" | "sale" => Approved,
            "pending" | "hold" | "on_hold" | "onhold" | "held" | "waiting" | "new"
            | "processing" | "open" | "extended" | "under_review" => Pending,
            "rejected" | "reject" | "declined" | "decline" | "denied" | "deny" | "invalid"
            | "cancelled" | "canceled" | "cancel" | "void" | "voided" | "trash" | "fraud"
            | "failed" => Rejected,
            "chargeback" | "charged_back" | "chargedback" | "reversed" | "reversal" | "reverse"
            | "refund" | "refunded" | "returned" => Chargeback,
            _ => return None,
        })
    }
}

/// What a network plugin read from a postback. Values are trimmed and checked; none
/// still holds a macro.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedPostback {
    /// Our click ID as the network echoed it (not yet verified against the codec).
    pub click_id: String,
    /// Payout (may be negative for a reversal), if sent and non-empty.
    pub payout: Option<f64>,
    /// ISO 4217 code, upper-cased, if sent.
    pub currency: Option<String>,
    /// The network's transaction ID, if sent.
    pub txid: Option<String>,
    /// The conversion status, if sent.
    pub status: Option<ConversionStatus>,
    /// The event or goal name, if sent ([`DEFAULT_EVENT`] applies otherwise).
    pub event: Option<String>,
    /// Sub IDs echoed back, in the network's configured order.
    pub sub_ids: Vec<Option<String>>,
}

impl ParsedPostback {
    /// The event name, or [`DEFAULT_EVENT`] when none was sent.
    pub fn event_or_default(&self) -> &str {
        self.event.as_deref().unwrap_or(DEFAULT_EVENT)
    }
}

/// Why a postback was refused. [`PostbackError::reason`] is a stable snake_case label
/// for metrics and the journal; the `Display` text names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostbackError {
    /// No click ID parameter, or an empty one.
    #[error("postback has no click id in `{param}`: the network's postback URL must carry {param}=<its macro for the sub id we stamp>")]
    MissingClickId {
        /// The parameter we read the click ID from.
        param: String,
    },
    /// A value still holds a macro: the sender never substituted it.
    #[error("the network did not substitute {macro_text} in `{param}`: {fix}")]
    UnreplacedMacro {
        /// The parameter holding it.
        param: String,
        /// The macro as it arrived (`#s2#`).
        macro_text: String,
        /// What the operator should check.
        fix: String,
    },
    /// The payout is not a plain decimal number, is ambiguous, beyond
    /// [`MAX_AMOUNT`], or negative without a reversal status.
    #[error("payout {value:?} in `{param}` is refused: {why}")]
    BadPayout {
        /// The parameter holding it.
        param: String,
        /// The value as received.
        value: String,
        /// What is wrong with it.
        why: BadAmount,
    },
    /// The currency is not a three-letter code.
    #[error("currency {value:?} in `{param}` is not an ISO 4217 code such as USD")]
    BadCurrency {
        /// The parameter holding it.
        param: String,
        /// The value as received.
        value: String,
    },
    /// A status word we cannot map.
    #[error("status {value:?} in `{param}` is not one we know: map it with the network's status_map (to pending, approved, rejected or chargeback)")]
    BadStatus {
        /// The parameter holding it.
        param: String,
        /// The value as received.
        value: String,
    },
    /// A value longer than [`MAX_FIELD_LEN`].
    #[error("`{param}` is longer than {max} bytes: check the postback URL for a runaway macro")]
    ValueTooLong {
        /// The parameter holding it.
        param: String,
        /// The limit.
        max: usize,
    },
    /// The shared secret is missing or wrong.
    #[error("shared secret in `{param}` is missing or wrong: copy the postback URL from `clickstamp postback-url` again")]
    UnauthorizedSecret {
        /// The parameter the secret is read from.
        param: String,
    },
    /// The signature parameter or header is missing.
    #[error("postback is not signed: the network must send an HMAC-SHA256 signature in `{param}`")]
    MissingSignature {
        /// Where the signature is read from.
        param: String,
    },
    /// The signature does not match the canonical form.
    #[error("signature does not match: check the network signs the sorted query with the configured secret")]
    BadSignature,
    /// The timestamp parameter is missing or not a number.
    #[error("timestamp `{param}` is missing or not a Unix time: signed postbacks must carry one")]
    MissingTimestamp {
        /// The timestamp parameter.
        param: String,
    },
    /// The timestamp is outside the replay window.
    #[error("timestamp is {skew_secs}s away from now, outside the {window_secs}s replay window: check the sender's clock, or this is a replay")]
    StaleTimestamp {
        /// Absolute distance from now, in seconds.
        skew_secs: u64,
        /// The configured window, in seconds.
        window_secs: u64,
    },
    /// The client IP is not on the network's allowlist.
    #[error("client IP {} is not on the network's allowlist: add the network's postback IPs, or check the trusted-proxy header", .ip.map_or_else(|| "(unknown)".to_string(), |i| i.to_string()))]
    IpNotAllowed {
        /// The client IP the proxy resolved, if any.
        ip: Option<IpAddr>,
    },
}

impl PostbackError {
    /// Stable snake_case label, safe for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            PostbackError::MissingClickId { .. } => "missing_click_id",
            PostbackError::UnreplacedMacro { .. } => "unreplaced_macro",
            PostbackError::BadPayout { .. } => "bad_payout",
            PostbackError::BadCurrency { .. } => "bad_currency",
            PostbackError::BadStatus { .. } => "bad_status",
            PostbackError::ValueTooLong { .. } => "value_too_long",
            PostbackError::UnauthorizedSecret { .. } => "unauthorized_secret",
            PostbackError::MissingSignature { .. } => "missing_signature",
            PostbackError::BadSignature => "bad_signature",
            PostbackError::MissingTimestamp { .. } => "missing_timestamp",
            PostbackError::StaleTimestamp { .. } => "stale_timestamp",
            PostbackError::IpNotAllowed { .. } => "ip_not_allowed",
        }
    }
}

/// Every reason [`PostbackError::reason`] can return, for pre-registering metrics.
pub const POSTBACK_ERROR_REASONS: &[&str] = &[
    "missing_click_id",
    "unreplaced_macro",
    "bad_payout",
    "bad_currency",
    "bad_status",
    "value_too_long",
    "unauthorized_secret",
    "missing_signature",
    "bad_signature",
    "missing_timestamp",
    "stale_timestamp",
    "ip_not_allowed",
];

/// The largest amount (payout, pixel value) accepted for one conversion, in the
/// account currency. Larger amounts are refused rather than stored: no real conversion
/// pays a million, and a runaway value would swamp every report. In micro-units
/// (1e-6, how reports sum) it is 10^12, so even 9 million conversions at the limit
/// fit an `i64`; reports sum in 128 bits regardless.
pub const MAX_AMOUNT: f64 = 1_000_000.0;

/// Why an amount (a payout or a pixel value) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadAmount {
    /// Not a plain decimal number (letters, NaN, infinities, hex, several signs...).
    #[error("not a plain decimal number such as 2.50")]
    NotANumber,
    /// A comma followed by exactly three digits (`1,500`): a thousands separator in
    /// one locale, a decimal comma in another. Refused rather than guessed.
    #[error("the comma is ambiguous (a thousands separator or a decimal comma?): send 1500 or 1.5, without thousands separators")]
    AmbiguousComma,
    /// Beyond [`MAX_AMOUNT`] in absolute value.
    #[error("beyond the limit of 1000000 per conversion")]
    TooLarge,
    /// Below zero where only a reversal may be negative.
    #[error("negative; only a rejected or chargeback conversion may carry a negative amount")]
    Negative,
}

/// Parse an amount leniently: surrounding space, a leading `$`/`€`/`£`, a sign and a
/// single decimal comma (`1,25`) are accepted; NaN, infinities, thousands separators
/// (a comma followed by exactly three digits, `1,500`, is ambiguous and refused) and
/// anything beyond ±[`MAX_AMOUNT`] are not. Negatives are returned as such: whether
/// one is allowed depends on the conversion's status (see [`check_amount_sign`]).
/// `Ok(None)` for an empty value.
pub fn parse_amount(raw: &str) -> Result<Option<f64>, BadAmount> {
    let t = raw.trim();
    let t = t
        .strip_prefix(['$', '€', '£'])
        .map(str::trim_start)
        .unwrap_or(t);
    if t.is_empty() {
        return Ok(None);
    }
    let normalised;
    let t = match t.split_once(',') {
        None => t,
        Some((int, frac)) if !t.contains('.') && !frac.contains(',') => {
            if frac.len() == 3 && frac.bytes().all(|b| b.is_ascii_digit()) && !int.is_empty() {
                return Err(BadAmount::AmbiguousComma);
            }
            normalised = format!("{int}.{frac}");
            normalised.as_str()
        }
        Some(_) => return Err(BadAmount::NotANumber),
    };
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return Err(BadAmount::NotANumber);
    }
    let v = t.parse::<f64>().map_err(|_| BadAmount::NotANumber)?;
    check_amount(v).map(Some)
}

/// Check an amount that arrived as a number (a JSON beacon value, a config default):
/// finite and within ±[`MAX_AMOUNT`]. `-0.0` reads as `0.0`.
pub fn check_amount(v: f64) -> Result<f64, BadAmount> {
    if !v.is_finite() {
        return Err(BadAmount::NotANumber);
    }
    if v.abs() > MAX_AMOUNT {
        return Err(BadAmount::TooLarge);
    }
    Ok(if v == 0.0 { 0.0 } else { v })
}

/// The sign rule: a negative amount is a reversal, so it is allowed only with a
/// `rejected` or `chargeback` status (and stored as the network sent it); everywhere
/// else it is refused.
pub fn check_amount_sign(v: f64, status: Option<ConversionStatus>) -> Result<f64, BadAmount> {
    let reversal = matches!(
        status,
        Some(ConversionStatus::Rejected | ConversionStatus::Chargeback)
    );
    if v < 0.0 && !reversal {
        return Err(BadAmount::Negative);
    }
    Ok(v)
}

/// [`parse_amount`] under its former name.
pub fn parse_payout(raw: &str) -> Result<Option<f64>, BadAmount> {
    parse_amount(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        use ConversionStatus::*;
        for (w, s) in [
            ("1", Approved),
            ("Approved", Approved),
            ("confirmed", Approved),
            (" PENDING ", Pending),
            ("on-hold", Pending),
            ("declined", Rejected),
            ("chargeback", Chargeback),
            ("REVERSED", Chargeback),
        ] {
            assert_eq!(ConversionStatus::parse_lenient(w), Some(s), "{w}");
        }
        assert_eq!(ConversionStatus::parse_lenient("2"), None);
    }

    #[test]
    fn payouts() {
        assert_eq!(parse_amount("2.50"), Ok(Some(2.5)));
        assert_eq!(parse_amount(" $3 "), Ok(Some(3.0)));
        assert_eq!(parse_amount("1,25"), Ok(Some(1.25)));
        assert_eq!(parse_amount("1,2345"), Ok(Some(1.2345)));
        assert_eq!(parse_amount("-4"), Ok(Some(-4.0)));
        assert_eq!(parse_amount("1000000"), Ok(Some(MAX_AMOUNT)));
        assert_eq!(parse_amount(""), Ok(None));
        for bad in [
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "abc",
            "1,000.5.2",
            "0x10",
            "1,2,3",
        ] {
            assert_eq!(parse_amount(bad), Err(BadAmount::NotANumber), "{bad}");
        }
        for big in ["1e308", "1e23", "1000000.01", "-1000001"] {
            assert_eq!(parse_amount(big), Err(BadAmount::TooLarge), "{big}");
        }
        for ambiguous in ["1,500", "$2,000", "-1,250"] {
            assert_eq!(
                parse_amount(ambiguous),
                Err(BadAmount::AmbiguousComma),
                "{ambiguous}"
            );
        }
    }

    #[test]
    fn a_european_amount_with_a_dot_is_not_a_number_rather_than_an_ambiguous_comma() {
        // "1.000,500": thousands dots and a decimal comma. Not ours to guess: refused
        // as not a number, never mistaken for the `1,500` thousands question.
        assert_eq!(parse_amount("1.000,500"), Err(BadAmount::NotANumber));
        assert_eq!(parse_amount("2.5,1"), Err(BadAmount::NotANumber));
        assert_eq!(parse_amount("1,500"), Err(BadAmount::AmbiguousComma));
        assert_eq!(parse_payout("1,25"), Ok(Some(1.25)));
        assert_eq!(parse_payout(" $3 "), Ok(Some(3.0)));
        assert_eq!(parse_payout(""), Ok(None));
    }

    #[test]
    fn headers_match_any_case_and_pairs_come_query_first() {
        let query = vec![("a".to_string(), "1".to_string())];
        let body = vec![("b".to_string(), "2".to_string())];
        let headers = vec![
            ("X-Signature".to_string(), "first".to_string()),
            ("x-signature".to_string(), "second".to_string()),
        ];
        let req = PostbackRequest {
            headers: &headers,
            body: &body,
            ..PostbackRequest::get("a=1", &query)
        };
        assert_eq!(req.header("x-SIGNATURE"), Some("first"));
        assert_eq!(req.header("x-missing"), None);
        let pairs: Vec<_> = req
            .all_pairs()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "1"), ("b", "2")]);
    }

    #[test]
    fn an_unnamed_event_is_the_default_one() {
        let mut parsed = ParsedPostback::default();
        assert_eq!(parsed.event_or_default(), DEFAULT_EVENT);
        parsed.event = Some("lead".into());
        assert_eq!(parsed.event_or_default(), "lead");
    }

    #[test]
    fn negative_amounts_only_reverse() {
        use ConversionStatus::*;
        assert_eq!(check_amount_sign(-1000.0, None), Err(BadAmount::Negative));
        assert_eq!(
            check_amount_sign(-1.0, Some(Approved)),
            Err(BadAmount::Negative)
        );
        assert_eq!(check_amount_sign(-2.5, Some(Chargeback)), Ok(-2.5));
        assert_eq!(check_amount_sign(-2.5, Some(Rejected)), Ok(-2.5));
        assert_eq!(check_amount_sign(0.0, Some(Pending)), Ok(0.0));
        assert_eq!(check_amount(-0.0), Ok(0.0));
        assert!(check_amount(f64::NAN).is_err() && check_amount(f64::INFINITY).is_err());
    }

    #[test]
    fn reasons_are_listed() {
        let e = PostbackError::BadSignature;
        assert!(POSTBACK_ERROR_REASONS.contains(&e.reason()));
    }
}
