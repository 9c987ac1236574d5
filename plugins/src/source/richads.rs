//! RichAds / RichPush. Tokens use `[X]`: click ID `[CLICK_ID]`; postback
//! `...?clickid=[CLICK_ID]&price=..` (richads.com blog). `[PRICE]` for the payout is a
//! default.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// RichAds defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("richads", vec!["clickid".into()], TokenStyle::Bracket)
        .case_sensitive()
        .token("CLICK_ID", RelayField::SourceClickId)
        .token("PRICE", RelayField::Payout)
        .cost("cost")
        .subs(&["publisher", "campaign"])
        .landing("clickid", "[CLICK_ID]")
        .landing("publisher", "[PUBLISHER_ID]")
        .landing("campaign", "[CAMPAIGN_ID]")
}
