//! MGID. Click ID `{click_id}`; postback `https://a.mgid.com/postback?c={click_id}&e=<event>&r={payout}`
//! (help.mgid.com postback-setup): `<event>` is the operator's event name, written in
//! literally; we fill `{click_id}` and `{payout}`. Landing sub IDs `{widget_id}`,
//! `{teaser_id}` are defaults.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// MGID defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("mgid", vec!["click_id".into()], TokenStyle::Brace)
        .token("click_id", RelayField::SourceClickId)
        .token("payout", RelayField::Payout)
        .cost("cost")
        .subs(&["widget_id", "teaser_id"])
        .landing("click_id", "{click_id}")
        .landing("widget_id", "{widget_id}")
        .landing("teaser_id", "{teaser_id}")
}
