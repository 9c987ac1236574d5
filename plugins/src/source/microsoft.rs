//! Microsoft Ads. Auto-tagging appends `msclkid`; offline conversions carry the
//! Microsoft click ID, conversion name, time, value and currency
//! (learn.microsoft.com bingads offlineconversion).

use super::{RelayField, SourceSpec, TimeFormat};
use crate::template::TokenStyle;

/// Microsoft Ads defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("microsoft", vec!["msclkid".into()], TokenStyle::Brace)
        .token("msclkid", RelayField::SourceClickId)
        .token("conversion_name", RelayField::Event)
        .token("conversion_value", RelayField::Payout)
        .token("conversion_currency", RelayField::Currency)
        .token(
            "conversion_time",
            RelayField::ConversionTime(TimeFormat::Rfc3339),
        )
        .subs(&["utm_campaign", "utm_content"])
}
