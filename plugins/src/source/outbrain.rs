//! Outbrain. Tokens use `{{x}}`: click ID `{{ob_click_id}}`. Conversions go to the
//! conversion-definition URL the operator copies from Outbrain; we fill
//! `{{ob_click_id}}` and the generic fields in `{{x}}` form.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// Outbrain defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new(
        "outbrain",
        vec!["ob_click_id".into()],
        TokenStyle::DoubleBrace,
    )
    .token("ob_click_id", RelayField::SourceClickId)
    .subs(&["section_id", "ad_id"])
    .landing("ob_click_id", "{{ob_click_id}}")
    .landing("section_id", "{{section_id}}")
    .landing("ad_id", "{{ad_id}}")
}
