//! TrafficStars. Click ID `{click_id}`, cost `{cost}` (support.trafficstars.com). Its
//! postback format is not documented here; we fill `{click_id}` and the generic fields.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// TrafficStars defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new("trafficstars", vec!["click_id".into()], TokenStyle::Brace)
        .token("click_id", RelayField::SourceClickId)
        .cost("cost")
        .subs(&["site_id"])
        .landing("click_id", "{click_id}")
        .landing("cost", "{cost}")
        .landing("site_id", "{site_id}")
}
