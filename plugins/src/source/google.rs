//! Google Ads. Auto-tagging appends `gclid`, or `gbraid` / `wbraid` for iOS app and web
//! traffic; the first present is the click ID and [`crate::LandingParams`] records
//! which. Conversions go back by offline upload (gclid, action, time, value, currency,
//! order_id); a template here feeds that uploader or a webhook. `{gclid}`, `{gbraid}`,
//! `{wbraid}` render only the matching kind (empty otherwise), `{conversion_time}` in
//! Google's `yyyy-mm-dd hh:mm:ss+00:00`, `{order_id}` the dedup key.

use super::{RelayField, SourceSpec, TimeFormat};
use crate::template::TokenStyle;

/// Google Ads defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new(
        "google",
        vec!["gclid".into(), "gbraid".into(), "wbraid".into()],
        TokenStyle::Brace,
    )
    .token("gclid", RelayField::SourceClickIdFrom("gclid".into()))
    .token("gbraid", RelayField::SourceClickIdFrom("gbraid".into()))
    .token("wbraid", RelayField::SourceClickIdFrom("wbraid".into()))
    .token("conversion_action", RelayField::Event)
    .token("conversion_value", RelayField::Payout)
    .token("currency_code", RelayField::Currency)
    .token("order_id", RelayField::EventId)
    .token(
        "conversion_time",
        RelayField::ConversionTime(TimeFormat::GoogleAds),
    )
    .subs(&["utm_campaign", "utm_content"])
}
