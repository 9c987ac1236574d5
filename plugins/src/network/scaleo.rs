//! Scaleo. Our click ID goes in `click_id`; its postback carries `click_id`,
//! `goal_id`, `conv_status` and `token` (Scaleo help article 484). We read them from
//! `{click_id}`, `{goal_id}`, `{conv_status}`; the payout macro `{payout}` is an
//! unverified default. Scaleo's `token` is a shared secret: configure it through the
//! network's verification (secret parameter `token`), not here.

use super::NetworkSpec;
use crate::template::TokenStyle;

/// Scaleo defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("scaleo", "click_id", TokenStyle::Brace)
        .payout("payout")
        .status("conv_status")
        .event("goal_id")
}
