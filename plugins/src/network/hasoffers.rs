//! TUNE / HasOffers. Our click ID goes in `aff_sub`; postback macros `{aff_sub}`,
//! `{payout}`, `{transaction_id}` (TUNE support 4413247716631).

use super::NetworkSpec;
use crate::template::TokenStyle;

/// TUNE / HasOffers defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("hasoffers", "aff_sub", TokenStyle::Brace)
        .payout("payout")
        .txid("transaction_id")
}
