//! PropellerAds. Tokens use `${X}` in upper case: `${SUBID}` is its click ID (in our
//! campaign URL and in its postback), `${PAYOUT}` the payout. Its postback looks like
//! `http://ad.propellerads.com/conversion.php?aid=..&pid=&tid=..&visitor_id=${SUBID}&payout=${PAYOUT}`
//! (vendor page not retrieved: treat as a default). `${ZONEID}` and `${CAMPAIGNID}`
//! as landing sub IDs are defaults too.

use super::{RelayField, SourceSpec};
use crate::template::TokenStyle;

/// PropellerAds defaults.
pub fn spec() -> SourceSpec {
    SourceSpec::new(
        "propellerads",
        vec!["subid".into()],
        TokenStyle::DollarBrace,
    )
    .case_sensitive()
    .token("SUBID", RelayField::SourceClickId)
    .token("PAYOUT", RelayField::Payout)
    .cost("cost")
    .subs(&["zoneid", "campaignid"])
    .landing("subid", "${SUBID}")
    .landing("zoneid", "${ZONEID}")
    .landing("campaignid", "${CAMPAIGNID}")
}
