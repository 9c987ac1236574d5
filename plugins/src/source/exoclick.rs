//! ExoClick. Its click ID is `{conversions_tracking}`; its postback is
//! `https://s.exoclick.com/tag.php?goal=<goal>&tag={conversions_tracking}` where
//! `<goal>` is the operator's goal ID (docs.exoclick.com conversion-tracking-api). We
//! also fill `{value}` with the payout (a default). A tag is accepted once per goal
//! within 24 h, so a duplicate relay is harmless there.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// ExoClick defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new(
        "exoclick",
        vec!["conversions_tracking".into()],
        TokenStyle::Brace,
    )
    .token("conversions_tracking", RelayField::SourceClickId)
    .token("value", RelayField::Payout)
    .cost("cost")
    .subs(&["zone_id", "campaign_id"])
    .landing("conversions_tracking", "{conversions_tracking}")
    .landing("zone_id", "{zoneid}")
    .landing("campaign_id", "{campaign_id}")
}
