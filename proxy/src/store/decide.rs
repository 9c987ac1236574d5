//! What a converted postback does to the conversions it meets: the dedup, status and
//! pixel/S2S-merge rules of `LIFECYCLE.md`, free of any database. Each backend looks
//! the candidate's possible matches up in its own way, under its own lock, and asks
//! these functions what to do with them, so the rules have one definition.

use crate::store::ConversionCandidate;
use clickstamp_plugins::dedup::{dedup_key, may_be_same_conversion, normalize_txid};

/// Status precedence: a postback may move a conversion forward, never back to pending,
/// and nothing moves a chargeback (it is final).
pub fn transition_allowed(from: &str, to: &str) -> bool {
    from != to && from != "chargeback" && to != "pending"
}

/// A stored conversion a candidate may be.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub id: i64,
    pub status: String,
    pub origin: String,
    /// The stored txid: after a merge, the txid either side brought (S2S first).
    pub txid: Option<String>,
}

/// The txid that is part of the candidate's identity: its own, unless its offer counts
/// one conversion per click and event (`multiple_conversions = false`), in which case
/// its dedup key was computed without it and any txid may be its twin's.
pub fn keyed_txid(c: &ConversionCandidate) -> Option<&str> {
    let txid = normalize_txid(c.txid.as_deref())?;
    (dedup_key(&c.click_id, &c.event, Some(txid)) == c.dedup_key).then_some(txid)
}

/// The origin whose conversions may be the candidate's twin.
pub fn twin_origin(c: &ConversionCandidate) -> &'static str {
    if c.origin == "s2s" {
        "pixel"
    } else {
        "s2s"
    }
}

/// Among conversions of the other origin (oldest first), the one the candidate merges
/// with under [`may_be_same_conversion`]: one with the very same txid (or, for a
/// candidate without one, one without one too) if there is one, so each order finds its
/// own twin; else the oldest that may be it.
pub fn pick_twin<E>(
    rows: impl Iterator<Item = Result<Existing, E>>,
    c: &ConversionCandidate,
) -> Result<Option<Existing>, E> {
    let txid = keyed_txid(c);
    let mut first_possible = None;
    for row in rows {
        let row = row?;
        let row_txid = normalize_txid(row.txid.as_deref());
        let possible = if c.origin == "pixel" {
            may_be_same_conversion(txid, row_txid)
        } else {
            may_be_same_conversion(row_txid, txid)
        };
        if !possible {
            continue;
        }
        if row_txid == txid {
            return Ok(Some(row));
        }
        first_possible.get_or_insert(row);
    }
    Ok(first_possible)
}

/// What a converted postback does to the conversions table.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    New,
    UpgradePixel(Existing),
    Transition(Existing),
    Duplicate(Existing),
}

impl Action {
    /// The action for candidate `c` meeting `existing` (its own key's conversion, else
    /// its twin), as the lifecycle rules say.
    pub fn decide(c: &ConversionCandidate, existing: Option<Existing>) -> Action {
        match existing {
            None => Action::New,
            Some(e) if c.origin == "s2s" && e.origin == "pixel" => Action::UpgradePixel(e),
            Some(e) if c.origin == "s2s" && transition_allowed(&e.status, c.status) => {
                Action::Transition(e)
            }
            Some(e) => Action::Duplicate(e),
        }
    }

    /// For a duplicate: the txid a pixel order gives an S2S twin that has none. The
    /// twin is now that order's, and another order's pixel is a conversion of its own
    /// (as it would be had the pixels come first).
    pub fn claimed_txid<'c>(c: &'c ConversionCandidate, e: &Existing) -> Option<&'c str> {
        (c.origin == "pixel" && e.origin == "s2s")
            .then(|| keyed_txid(c))
            .flatten()
    }
}

/// A conversion that starts out rejected (or charged back) is never announced to the
/// source.
pub fn relays_new(c: &ConversionCandidate) -> bool {
    c.status != "rejected" && c.status != "chargeback"
}

#[cfg(test)]
mod tests {
    use super::transition_allowed;

    #[test]
    fn transitions() {
        assert!(transition_allowed("pending", "approved"));
        assert!(transition_allowed("approved", "chargeback"));
        assert!(transition_allowed("approved", "rejected"));
        assert!(transition_allowed("rejected", "approved"));
        assert!(!transition_allowed("approved", "approved"));
        assert!(!transition_allowed("approved", "pending"));
        assert!(!transition_allowed("chargeback", "approved"));
    }
}
