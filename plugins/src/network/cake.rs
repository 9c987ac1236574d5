//! CAKE. Our click ID goes in `s2` (s1 holds at most 50 characters, s2-s5 up to 100,
//! and a click ID is 32). Postback macros use `#x#`: `#s2#` echoes it, `#price#` is the
//! payout, `#tid#` the transaction ID (CAKE support articles 5000545788, 13000103758).

use super::NetworkSpec;
use crate::template::TokenStyle;

/// CAKE's defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("cake", "s2", TokenStyle::Hash)
        .payout("price")
        .txid("tid")
}
