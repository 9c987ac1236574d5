//! Zeropark. Click ID `{cid}`, cost `{visit_cost}`; its postback carries `cid={cid}`
//! (exact path unverified). We also fill `{payout}`.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// Zeropark defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("zeropark", vec!["cid".into()], TokenStyle::Brace)
        .token("cid", RelayField::SourceClickId)
        .cost("cost")
        .subs(&["target", "campaign_id"])
        .landing("cid", "{cid}")
        .landing("cost", "{visit_cost}")
        .landing("target", "{target}")
        .landing("campaign_id", "{campaign_id}")
}
