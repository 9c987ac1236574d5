//! Everflow. Our click ID goes in `sub1`; postback macros `{sub1}`, `{payout}`,
//! `{transaction_id}`, `{event_id}` (Everflow helpdesk 6173403). `{event_id}` tells
//! a base conversion from later events, so it keys the event: two events of one click
//! are two conversions, not a duplicate.

use super::NetworkSpec;
use crate::template::TokenStyle;

/// Everflow defaults.
pub fn spec() -> NetworkSpec {
    NetworkSpec::new("everflow", "sub1", TokenStyle::Brace)
        .payout("payout")
        .txid("transaction_id")
        .event("event_id")
}
