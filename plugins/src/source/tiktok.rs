//! TikTok. Its click ID arrives as `ttclid`; the Events API deduplicates pixel and
//! server events on `event` + `event_id` within 48 h (ads.tiktok.com
//! event-deduplication), so `{event_id}` is the dedup key the pixel also sends.

use super::{RelayField, SourceSpec, TimeFormat};
use crate::template::TokenStyle;

/// TikTok defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("tiktok", vec!["ttclid".into()], TokenStyle::Brace)
        .token("ttclid", RelayField::SourceClickId)
        .token("value", RelayField::Payout)
        .token(
            "event_time",
            RelayField::ConversionTime(TimeFormat::UnixSecs),
        )
        .subs(&["utm_campaign", "utm_content"])
}
