//! The conversion dedup key, shared by the server and the WASM pixel and handed on to
//! ad platforms as their `event_id` / `order_id`.
//!
//! ## Definition (version 1, stable)
//!
//! Normalise: click ID trimmed, ASCII-lowercased, hyphens removed (so the hyphenated
//! UUID form gives the same key); event trimmed and ASCII-lowercased, empty meaning
//! [`DEFAULT_EVENT`]; txid trimmed, empty meaning absent, case kept (networks' IDs are
//! case-sensitive).
//!
//! Hash with SHA-256 the bytes `"clickstamp-dedup-v1"`, then for click ID and event a
//! 4-byte big-endian length followed by the UTF-8 bytes, then for txid either the single
//! byte `0x00` (absent) or `0x01`, its length and bytes. The length prefixes make the
//! encoding injective: no two distinct inputs hash the same bytes.
//!
//! The key is the first 16 bytes of the digest as 32 lowercase hex characters: short
//! enough for every platform's event-id field, 128 bits against collisions.

use crate::postback::DEFAULT_EVENT;
use sha2::{Digest, Sha256};

/// Domain separation, so a dedup key can never equal another SHA-256 use of ours.
const DOMAIN: &[u8] = b"clickstamp-dedup-v1";

/// Length of a dedup key in hex characters.
pub const DEDUP_KEY_LEN: usize = 32;

/// The dedup key of a conversion (see the module docs for the exact definition).
///
/// Guarantees: deterministic across platforms and versions of this crate; 32
/// lowercase hex characters; equal for inputs equal after normalisation only.
pub fn dedup_key(click_id: &str, event: &str, txid: Option<&str>) -> String {
    let click: String = click_id
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let event = normalize_event(event);
    let txid = txid.map(str::trim).filter(|t| !t.is_empty());

    let mut h = Sha256::new();
    h.update(DOMAIN);
    for field in [click.as_bytes(), event.as_bytes()] {
        h.update(len_prefix(field));
        h.update(field);
    }
    match txid {
        None => h.update([0u8]),
        Some(t) => {
            h.update([1u8]);
            h.update(len_prefix(t.as_bytes()));
            h.update(t.as_bytes());
        }
    }
    hex::encode(&h.finalize()[..DEDUP_KEY_LEN / 2])
}

/// An event name as the dedup key sees it: trimmed, ASCII-lowercased, empty meaning
/// [`DEFAULT_EVENT`]. Two events that normalise alike are one conversion, so the
/// server stores this form and looks conversions up by it.
pub fn normalize_event(event: &str) -> String {
    let event = event.trim();
    if event.is_empty() {
        DEFAULT_EVENT.to_string()
    } else {
        event.to_ascii_lowercase()
    }
}

fn len_prefix(bytes: &[u8]) -> [u8; 4] {
    // Fields are bounded far below 4 GiB by the postback parser; saturate regardless.
    u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes()
}

// The items below come after the key on purpose: the pixel SDK's .wasm embeds panic
// locations of this file, and code placed above `dedup_key` would move its lines.

/// A txid as the dedup key sees it: trimmed, empty meaning absent, case kept.
pub fn normalize_txid(txid: Option<&str>) -> Option<&str> {
    txid.map(str::trim).filter(|t| !t.is_empty())
}

/// Whether a pixel conversion and an S2S conversion of the same click and (normalised)
/// event can be one conversion, given the txid each carries (as sent, or `None` when
/// its offer counts one conversion per click and event and the txid is not part of
/// its [`dedup_key`]).
///
/// This is the one definition of the pixel/S2S merge; the store applies it, the docs
/// describe it:
///
/// - the same txid (after [`normalize_txid`]): one conversion;
/// - one side without a txid: it may be the other's, so they are one conversion (a
///   thank-you page that knows no order ID, a network that sends none);
/// - two different txids: two orders, never merged.
///
/// Within one origin the [`dedup_key`] alone decides (equal keys are one conversion).
/// Equal keys always satisfy this rule, so the merge never splits what the key joins.
pub fn may_be_same_conversion(pixel_txid: Option<&str>, s2s_txid: Option<&str>) -> bool {
    match (normalize_txid(pixel_txid), normalize_txid(s2s_txid)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_vector() {
        // Pinned: the pixel SDK and stored keys depend on this exact value.
        let k = dedup_key("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "purchase", Some("T1"));
        assert_eq!(k.len(), 32);
        assert_eq!(k, PINNED);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    const PINNED: &str = include_str!("../fixtures/dedup_key_v1.txt").trim_ascii();

    #[test]
    fn normalisation_and_separation() {
        let a = dedup_key(
            "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
            " Purchase ",
            Some(" T1 "),
        );
        assert_eq!(
            a,
            dedup_key("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "purchase", Some("T1"))
        );
        assert_eq!(
            dedup_key("c", "", None),
            dedup_key("c", "conversion", Some(""))
        );
        assert_ne!(dedup_key("c", "e", None), dedup_key("c", "e", Some("t")));
        assert_ne!(dedup_key("ab", "c", None), dedup_key("a", "bc", None));
        assert_ne!(
            dedup_key("c", "e", Some("T1")),
            dedup_key("c", "e", Some("t1"))
        );
    }

    #[test]
    fn the_merge_pairs_only_conversions_that_can_be_one() {
        assert!(may_be_same_conversion(Some("ORDER-1"), Some(" ORDER-1 ")));
        assert!(may_be_same_conversion(None, Some("ORDER-1")));
        assert!(may_be_same_conversion(Some("ORDER-1"), None));
        assert!(may_be_same_conversion(Some("  "), Some("ORDER-2")));
        assert!(may_be_same_conversion(None, None));
        assert!(!may_be_same_conversion(Some("ORDER-1"), Some("ORDER-2")));
        assert!(
            !may_be_same_conversion(Some("order-1"), Some("ORDER-1")),
            "txids are case-sensitive, as in the key"
        );
    }

    #[test]
    fn equal_keys_are_always_mergeable() {
        let txids = [
            None,
            Some(""),
            Some(" "),
            Some("T1"),
            Some(" T1"),
            Some("t1"),
            Some("T2"),
        ];
        for a in txids {
            for b in txids {
                if dedup_key("c", "e", a) == dedup_key("c", "e", b) {
                    assert!(may_be_same_conversion(a, b), "{a:?} {b:?}");
                    assert_eq!(normalize_txid(a), normalize_txid(b), "{a:?} {b:?}");
                }
            }
        }
    }

    /// Keys worked out by hand from the documented byte layout, not by this code:
    /// `printf 'clickstamp-dedup-v1\x00\x00\x00\x01c\x00\x00\x00\x04sale\x01\x00\x00\x00\x01T'
    /// | sha256sum | cut -c1-32` and likewise for each row.
    const HAND_COMPUTED: [(&str, &str, Option<&str>, &str); 4] = [
        ("c", "sale", Some("T"), "2e9c428282a895dc9db11025e51e52a0"),
        ("c", "conversion", None, "61da97403737a8ba3a36b1d3d52e1512"),
        ("c", "e", None, "1d31e355b9c07840b1b451e558eea821"),
        ("c", "e", Some("t"), "4790293979065d6d9ad4754f0338b3dd"),
    ];

    #[test]
    fn keys_match_the_documented_encoding() {
        for (click, event, txid, want) in HAND_COMPUTED {
            assert_eq!(
                dedup_key(click, event, txid),
                want,
                "{click} {event} {txid:?}"
            );
        }
        assert_eq!(
            dedup_key("0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "purchase", Some("T1")),
            "ee0920fdc4cdb41bc895208725129ca5"
        );
    }

    #[test]
    fn normalised_events_key_alike() {
        assert_eq!(normalize_event(" Sale "), "sale");
        assert_eq!(normalize_event("  "), DEFAULT_EVENT);
        // Every spelling of the event, click ID and txid lands on the hand-computed key.
        for raw in ["Sale", " SALE", "sale ", "\tsAlE"] {
            assert_eq!(
                dedup_key("c", raw, Some("T")),
                "2e9c428282a895dc9db11025e51e52a0",
                "{raw:?}"
            );
            assert_eq!(
                dedup_key(" C ", raw, Some(" T ")),
                "2e9c428282a895dc9db11025e51e52a0",
                "{raw:?}"
            );
        }
        for no_event in ["", "  ", "Conversion", " CONVERSION "] {
            for no_txid in [None, Some(""), Some("   ")] {
                assert_eq!(
                    dedup_key("c", no_event, no_txid),
                    "61da97403737a8ba3a36b1d3d52e1512",
                    "{no_event:?} {no_txid:?}"
                );
            }
        }
        assert_eq!(
            dedup_key(
                "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
                " Purchase ",
                Some(" T1 ")
            ),
            "ee0920fdc4cdb41bc895208725129ca5",
            "the hyphenated, upper-case click ID keys as the plain one"
        );
    }
}
