//! Taboola. Click ID `{click_id}`; postback
//! `https://trc.taboola.com/actions-handler/log/3/s2s-action?click-id={click_id}&name=..&revenue=..&currency=..&orderid=..`
//! (developers.taboola.com the-postback-url). We fill `{click_id}` and, as defaults,
//! `{revenue}`, `{currency}`, `{order_id}` (the dedup key, unique per conversion) and
//! `{name}` (the event).

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// Taboola defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("taboola", vec!["click_id".into()], TokenStyle::Brace)
        .token("click_id", RelayField::SourceClickId)
        .token("revenue", RelayField::Payout)
        .token("order_id", RelayField::EventId)
        .token("name", RelayField::Event)
        .subs(&["site", "campaign_id"])
        .landing("click_id", "{click_id}")
        .landing("site", "{site}")
        .landing("campaign_id", "{campaign_id}")
}
