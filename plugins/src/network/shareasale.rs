//! ShareASale. Our click ID goes in `afftrack` (up to 255 alphanumerics, so the
//! hyphen-free hex form fits); postback macros use `!!x!!`: `!!afftrack!!`,
//! `!!transID!!`, `!!commission!!` (ShareASale custom tracking docs).

use super::NetworkSpec;
use crate::template::TokenStyle;

/// ShareASale defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("shareasale", "afftrack", TokenStyle::DoubleBang)
        .payout("commission")
        .txid("transID")
}
