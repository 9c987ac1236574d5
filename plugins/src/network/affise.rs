//! Affise. Our click ID goes in `sub1`; postback macros `{sub1}`, `{sum}`, `{status}`,
//! `{transactionid}`, `{goal}` (Affise help center 6504668).
//!
//! Affise's `{status}` may arrive as a number. The codes mapped here (1 confirmed,
//! 2 pending, 3 declined, 5 hold) are unverified defaults: a config `status_map`
//! overrides them.

use super::NetworkSpec;
use crate::postback::ConversionStatus;
use crate::template::TokenStyle;

/// Affise defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("affise", "sub1", TokenStyle::Brace)
        .payout("sum")
        .status("status")
        .txid("transactionid")
        .event("goal")
        .status_code("1", ConversionStatus::Approved)
        .status_code("2", ConversionStatus::Pending)
        .status_code("3", ConversionStatus::Rejected)
        .status_code("5", ConversionStatus::Pending)
}
