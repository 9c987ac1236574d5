//! Meta (Facebook / Instagram). Its click ID arrives as `fbclid`; the Conversions API
//! wants `fbc` = `fb.1.<click time in ms>.<fbclid>` (what the `_fbc` cookie holds) and an
//! `event_id` that matches the pixel's, deduplicated on `event_name` + `event_id`
//! within 48 h (developers.facebook.com conversions-api).

use super::{RelayField, SourceSpec, TimeFormat};
use crate::template::TokenStyle;

/// Meta's `fbc` / `_fbc` value for `fbclid` first seen at `click_ms` (Unix ms, passed
/// in). `fbclid` is kept byte for byte: Meta compares it exactly.
pub fn fbc(fbclid: &str, click_ms: u64) -> String {
    format!("fb.1.{click_ms}.{fbclid}")
}

/// Meta defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("meta", vec!["fbclid".into()], TokenStyle::Brace)
        .token("fbclid", RelayField::SourceClickId)
        .token("fbc", RelayField::Fbc)
        .token("event_name", RelayField::Event)
        .token("value", RelayField::Payout)
        .token(
            "event_time",
            RelayField::ConversionTime(TimeFormat::UnixSecs),
        )
        .subs(&["utm_campaign", "utm_content"])
}

#[cfg(test)]
mod tests {
    #[test]
    fn fbc_format() {
        assert_eq!(
            super::fbc("IwAR2x", 1_700_000_000_123),
            "fb.1.1700000000123.IwAR2x"
        );
    }
}
