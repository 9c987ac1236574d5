//! Click-ID shape checks, run by the server's own parser.
//!
//! The server's [`ClickIdCodec::verify`] checks, in order: length and hex digits (32,
//! or 36 with hyphens at the UUID positions), UUID version 7 and the RFC 9562 variant,
//! then the MAC, then the age. The browser has no key, so it runs the same function
//! under a throwaway key and stops caring at the MAC: an ID that fails only its MAC
//! (or, with chance 2⁻³², passes it) has exactly the server's idea of a valid shape.
//! The clock arguments are chosen so that the age checks can never fire.

use clickstamp_plugins::{ClickIdCodec, ClickIdError};

/// Not a secret: MACs computed under it are ignored (see the module docs).
const SHAPE_ONLY_KEY: &[u8] = b"clickstamp-pixel-shape-check-only";

/// Normalise `text` to the 32-lowercase-hex wire form if it has a click ID's shape.
///
/// Guarantees: `Some` exactly when the server's parser would get past the format and
/// UUIDv7 checks (surrounding whitespace is trimmed first); the returned string is 32
/// lowercase hex characters with the version nibble `7` and a variant of `8`–`b`.
pub fn normalize_click_id(text: &str) -> Option<String> {
    let text = text.trim();
    // now = u64::MAX and an unbounded window: neither "expired" nor "from the future"
    // can be returned, so the only outcomes are the shape errors, BadMac or Ok.
    match ClickIdCodec::new(SHAPE_ONLY_KEY).verify(text, u64::MAX, u64::MAX) {
        Ok(_) | Err(ClickIdError::BadMac) => Some(
            text.chars()
                .filter(|c| *c != '-')
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        ),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";
    const HYPHENATED: &str = "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";

    #[test]
    fn accepts_both_forms_and_normalises() {
        assert_eq!(normalize_click_id(HEX).as_deref(), Some(HEX));
        assert_eq!(normalize_click_id(HYPHENATED).as_deref(), Some(HEX));
        assert_eq!(
            normalize_click_id(&format!("  {HEX}\n")).as_deref(),
            Some(HEX)
        );
    }

    #[test]
    fn a_real_minted_id_with_a_valid_mac_passes_too() {
        let id = ClickIdCodec::new(b"the-servers-secret-key").mint(1_790_000_000_000, [5; 6]);
        assert_eq!(normalize_click_id(&id.to_string()), Some(id.to_string()));
    }

    #[test]
    fn rejects_wrong_length_version_variant_and_hyphen_placement() {
        for bad in [
            "",
            &HEX[..31],
            &format!("{HEX}0"),
            "0190a1b2c3d44e5f8a9b0c1d2e3f4a5b", // version 4
            "0190a1b2c3d47e5fca9b0c1d2e3f4a5b", // variant 11
            "0190a1b2c3d47e5f0a9b0c1d2e3f4a5b", // variant 0
            "0190a1b2c3d47e5f8a9b0c1d2e3f4a5g", // not hex
            "0190a1b2-c3d47-e5f-8a9b-0c1d2e3f4a5b",
            "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
            "%30190a1b2c3d47e5f8a9b0c1d2e3f4a5",
        ] {
            assert_eq!(normalize_click_id(bad), None, "{bad:?}");
        }
    }
}
