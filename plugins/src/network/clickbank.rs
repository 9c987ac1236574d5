//! ClickBank. Our click ID goes in the hoplink's `tid` (ClickBank support
//! 26455062697620 describes S2S postback pixels). The postback macro names below —
//! `{tid}`, `{receipt}`, `{amount}`, `{currency}` — are unverified defaults that the
//! config can override.

use super::NetworkSpec;
use crate::template::TokenStyle;

/// ClickBank defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("clickbank", "tid", TokenStyle::Brace)
        .payout("amount")
        .currency("currency")
        .txid("receipt")
}
