//! Monetizer. Its offer links carry a `{clickID}` placeholder for the tracker's click
//! ID; when the placeholder is missing we set `clickID=`. Postback macros `{clickID}`,
//! `{amount}`, `{transactionID}` (tracker integration docs for Monetizer).

use super::NetworkSpec;
use crate::template::TokenStyle;

/// Monetizer defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("monetizer", "clickID", TokenStyle::Brace)
        .offer_token("{clickID}")
        .payout("amount")
        .txid("transactionID")
}
