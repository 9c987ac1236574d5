//! Awin. Our click ID goes in `clickref` (`clickref2`..`clickref6` stay free for the
//! operator); Awin writes macros as `!!!x!!!` (advertiser side `!!!awc!!!`, Awin wiki
//! Publisher_Click_Ref). The publisher-postback macro names `!!!clickref!!!`,
//! `!!!commission!!!`, `!!!transactionId!!!` are unverified defaults.

use super::NetworkSpec;
use crate::template::TokenStyle;

/// Awin defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("awin", "clickref", TokenStyle::TripleBang)
        .payout("commission")
        .txid("transactionId")
}
