//! Impact. Our click ID goes in `subId1`; postback macros are case-sensitive and
//! capitalised: `{SubId1}`, `{ActionId}`, `{Payout}`, `{ActionStatus}`, `{OID}`
//! (Impact helpdesk 48001235417). `{ActionId}` is Impact's own conversion ID, unique per
//! action, so it is the txid; `{OID}` (the advertiser's order) may repeat across
//! actions.

use super::NetworkSpec;
use crate::template::TokenStyle;

/// Impact defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("impact", "subId1", TokenStyle::Brace)
        .click_id_macro("SubId1")
        .payout("Payout")
        .txid("ActionId")
        .status("ActionStatus")
}
