//! PopAds (and PopCash-style sources). Tokens use `[X]`: the click is identified by
//! `[IMPRESSIONID]`; `[clickid]` is accepted too. Names match case-insensitively, as
//! both spellings are seen.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// PopAds defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new(
        "popads",
        vec!["impressionid".into(), "clickid".into()],
        TokenStyle::Bracket,
    )
    .token("IMPRESSIONID", RelayField::SourceClickId)
    .token("clickid", RelayField::SourceClickId)
    .cost("cost")
    .subs(&["website", "campaign"])
    .landing("impressionid", "[IMPRESSIONID]")
    .landing("website", "[WEBSITEID]")
    .landing("campaign", "[CAMPAIGNID]")
}
