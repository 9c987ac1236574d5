//! Click IDs: UUIDv7 with a keyed MAC in the trailing bits.
//!
//! Layout of the 16 bytes (big-endian, RFC 9562 field names):
//!
//! | bytes  | content                                             |
//! |--------|-----------------------------------------------------|
//! | 0..6   | `unix_ts_ms`: milliseconds since the Unix epoch     |
//! | 6      | version nibble `7`, then 4 random bits (`rand_a`)   |
//! | 7      | 8 random bits (`rand_a`)                            |
//! | 8      | variant bits `10`, then 6 random bits (`rand_b`)    |
//! | 9..12  | 24 random bits (`rand_b`)                           |
//! | 12..16 | MAC: the first 32 bits of HMAC-SHA256(key, 0..12)   |
//!
//! The timestamp keeps IDs time-ordered, so the store appends at the right edge and
//! old clicks expire by range. The MAC lets us reject a forged, mistyped or truncated
//! ID — and, through the timestamp, an expired one — without touching the store.
//! 42 random bits per millisecond make a collision within one millisecond a
//! birthday problem over ~4·10¹² values; the store's primary key catches the rest.
//!
//! Nothing here reads a clock or an RNG: callers pass both in, so the same code runs
//! on the server and in the WASM pixel SDK.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Length of the rendered form: 32 lowercase hex characters.
pub const CLICK_ID_HEX_LEN: usize = 32;

/// Clock skew tolerated for an ID that claims to come from the future (another node's
/// clock may run slightly ahead of ours).
pub const MAX_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;

/// A validated click ID. Only [`ClickIdCodec`] constructs one, so holding a `ClickId`
/// means its MAC was checked (or it was just minted).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClickId([u8; 16]);

impl ClickId {
    /// Milliseconds since the Unix epoch at which the ID was minted.
    pub fn timestamp_ms(&self) -> u64 {
        let b = &self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 32-character lowercase hex form used everywhere on the wire.
    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; CLICK_ID_HEX_LEN];
        // Table-driven into a fixed buffer: this runs several times per click, and the
        // iterator-based `hex::encode` costs an allocation per character pushed.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[(b >> 4) as usize];
            buf[2 * i + 1] = DIGITS[(b & 0x0f) as usize];
        }
        // Cannot fail: every byte is an ASCII hex digit.
        String::from_utf8(buf.to_vec()).unwrap_or_default()
    }
}

impl fmt::Display for ClickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; CLICK_ID_HEX_LEN];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ClickId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClickId({self})")
    }
}

/// Why a click ID was refused. Each variant is a distinct operator-facing reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClickIdError {
    /// Wrong length or not hex: truncated, padded, or not a click ID at all.
    #[error("click id is malformed: expected 32 hex characters (hyphens allowed)")]
    Malformed,
    /// Hex of the right length, but not a UUIDv7 with the RFC 9562 variant.
    #[error("click id is not a UUIDv7")]
    NotUuidV7,
    /// The MAC does not match: forged, mistyped, or minted under another key.
    #[error("click id failed its MAC check (forged, mistyped, or minted with another key)")]
    BadMac,
    /// Older than the attribution window allows.
    #[error("click id is older than the attribution window")]
    Expired,
    /// Minted further in the future than clock skew explains.
    #[error("click id is timestamped in the future")]
    FromTheFuture,
}

impl ClickIdError {
    /// A short, stable, machine-readable reason (used as a metric label and in JSON).
    pub fn reason(&self) -> &'static str {
        match self {
            ClickIdError::Malformed => "click_id_malformed",
            ClickIdError::NotUuidV7 => "click_id_not_uuidv7",
            ClickIdError::BadMac => "click_id_bad_mac",
            ClickIdError::Expired => "click_id_expired",
            ClickIdError::FromTheFuture => "click_id_from_future",
        }
    }
}

/// Mints and verifies click IDs under one secret key.
#[derive(Clone)]
pub struct ClickIdCodec {
    keyed: HmacSha256,
}

impl fmt::Debug for ClickIdCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClickIdCodec { key: <redacted> }")
    }
}

impl ClickIdCodec {
    /// Minimum key length accepted by configuration validation.
    pub const MIN_KEY_LEN: usize = 16;

    /// A codec for `key`. Keys shorter than [`Self::MIN_KEY_LEN`] are accepted here
    /// (HMAC takes any length) but refused by config validation.
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| {
            <HmacSha256 as Mac>::new_from_slice(b"unreachable").expect("hmac takes any key")
        });
        ClickIdCodec { keyed }
    }

    fn mac(&self, body: &[u8]) -> [u8; 4] {
        let mut mac = self.keyed.clone();
        mac.update(body);
        let out = mac.finalize().into_bytes();
        [out[0], out[1], out[2], out[3]]
    }

    /// Mint a click ID for `now_ms` from 6 bytes of caller-supplied randomness
    /// (42 of its 48 bits are used).
    pub fn mint(&self, now_ms: u64, random: [u8; 6]) -> ClickId {
        let ts = now_ms.to_be_bytes();
        let mut b = [0u8; 16];
        b[0..6].copy_from_slice(&ts[2..8]);
        b[6] = 0x70 | (random[0] & 0x0f);
        b[7] = random[1];
        b[8] = 0x80 | (random[2] & 0x3f);
        b[9..12].copy_from_slice(&random[3..6]);
        let mac = self.mac(&b[0..12]);
        b[12..16].copy_from_slice(&mac);
        ClickId(b)
    }

    /// Parse and verify a click ID received from outside (cookie, query, postback).
    ///
    /// Accepts the 32-hex form and the hyphenated 8-4-4-4-12 form, in either case.
    /// `max_age_ms` is the attribution window; an ID older than `now_ms - max_age_ms`
    /// is [`ClickIdError::Expired`]. No store lookup happens here.
    pub fn verify(
        &self,
        text: &str,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<ClickId, ClickIdError> {
        let bytes = parse_hex16(text)?;
        if bytes[6] >> 4 != 7 || bytes[8] >> 6 != 0b10 {
            return Err(ClickIdError::NotUuidV7);
        }
        let expected = self.mac(&bytes[0..12]);
        // Constant-time comparison: the MAC is the only secret-derived thing we compare.
        let diff = expected
            .iter()
            .zip(&bytes[12..16])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(ClickIdError::BadMac);
        }
        let id = ClickId(bytes);
        let ts = id.timestamp_ms();
        if ts > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(ClickIdError::FromTheFuture);
        }
        if now_ms.saturating_sub(ts) > max_age_ms {
            return Err(ClickIdError::Expired);
        }
        Ok(id)
    }
}

fn parse_hex16(text: &str) -> Result<[u8; 16], ClickIdError> {
    let raw = text.as_bytes();
    let mut compact = [0u8; CLICK_ID_HEX_LEN];
    match raw.len() {
        CLICK_ID_HEX_LEN => compact.copy_from_slice(raw),
        36 => {
            // 8-4-4-4-12 with hyphens at fixed positions.
            let mut n = 0;
            for (i, &c) in raw.iter().enumerate() {
                let hyphen_slot = matches!(i, 8 | 13 | 18 | 23);
                match (hyphen_slot, c) {
                    (true, b'-') => {}
                    (true, _) | (false, b'-') => return Err(ClickIdError::Malformed),
                    (false, c) => {
                        compact[n] = c;
                        n += 1;
                    }
                }
            }
        }
        _ => return Err(ClickIdError::Malformed),
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(compact, &mut out).map_err(|_| ClickIdError::Malformed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_790_000_000_000;
    const DAY: u64 = 86_400_000;

    fn codec() -> ClickIdCodec {
        ClickIdCodec::new(b"0123456789abcdef-test-key")
    }

    #[test]
    fn minted_ids_are_uuidv7_hex_and_verify() {
        let id = codec().mint(NOW, [1, 2, 3, 4, 5, 6]);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(text
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(&text[12..13], "7", "version nibble");
        assert!(matches!(&text[16..17], "8" | "9" | "a" | "b"), "variant");
        assert_eq!(id.timestamp_ms(), NOW);
        assert_eq!(codec().verify(&text, NOW + 1000, DAY), Ok(id));
    }

    #[test]
    fn hyphenated_and_uppercase_forms_are_accepted() {
        let id = codec().mint(NOW, [9; 6]);
        let t = id.to_string();
        let hyph = format!(
            "{}-{}-{}-{}-{}",
            &t[0..8],
            &t[8..12],
            &t[12..16],
            &t[16..20],
            &t[20..32]
        );
        assert_eq!(codec().verify(&hyph, NOW, DAY), Ok(id));
        assert_eq!(codec().verify(&t.to_uppercase(), NOW, DAY), Ok(id));
    }

    #[test]
    fn every_single_character_typo_is_rejected() {
        let t = codec().mint(NOW, [7; 6]).to_string();
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let typo = String::from_utf8(b).unwrap();
            assert!(
                codec().verify(&typo, NOW, DAY).is_err(),
                "typo at {i} accepted"
            );
        }
    }

    #[test]
    fn truncated_forged_expired_and_future_ids_are_rejected() {
        let c = codec();
        let t = c.mint(NOW, [3; 6]).to_string();
        assert_eq!(c.verify(&t[..31], NOW, DAY), Err(ClickIdError::Malformed));
        assert_eq!(c.verify("", NOW, DAY), Err(ClickIdError::Malformed));
        assert_eq!(
            c.verify(&format!("{t}0"), NOW, DAY),
            Err(ClickIdError::Malformed)
        );
        assert_eq!(
            c.verify(&"z".repeat(32), NOW, DAY),
            Err(ClickIdError::Malformed)
        );
        let other = ClickIdCodec::new(b"another-key-entirely")
            .mint(NOW, [3; 6])
            .to_string();
        assert_eq!(c.verify(&other, NOW, DAY), Err(ClickIdError::BadMac));
        assert_eq!(
            c.verify(&t, NOW + 31 * DAY, 30 * DAY),
            Err(ClickIdError::Expired)
        );
        assert_eq!(
            c.verify(&t, NOW - DAY, 30 * DAY),
            Err(ClickIdError::FromTheFuture)
        );
        // A v4 UUID of the right shape is refused before the MAC is computed.
        assert_eq!(
            c.verify("0190a1b2c3d44e5f8a0b1c2d3e4f5a6b", NOW, DAY),
            Err(ClickIdError::NotUuidV7)
        );
    }

    #[test]
    fn ids_sort_by_time() {
        let c = codec();
        let a = c.mint(NOW, [255; 6]);
        let b = c.mint(NOW + 1, [0; 6]);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn the_future_skew_and_the_window_are_exact_bounds() {
        let c = codec();
        // Five minutes ahead is another node's clock; a millisecond more is refused.
        let skew = 5 * 60 * 1000;
        let ahead = c.mint(NOW + skew, [9; 6]).to_hex();
        assert!(c.verify(&ahead, NOW, DAY).is_ok());
        let too_far = c.mint(NOW + skew + 1, [9; 6]).to_hex();
        assert_eq!(
            c.verify(&too_far, NOW, DAY),
            Err(ClickIdError::FromTheFuture)
        );
        // An ID exactly as old as the window still counts; one millisecond older not.
        let edge = c.mint(NOW - DAY, [9; 6]).to_hex();
        assert!(c.verify(&edge, NOW, DAY).is_ok());
        let past = c.mint(NOW - DAY - 1, [9; 6]).to_hex();
        assert_eq!(c.verify(&past, NOW, DAY), Err(ClickIdError::Expired));
    }

    #[test]
    fn the_bytes_are_the_rendered_id_and_debug_never_shows_the_key() {
        let c = codec();
        let id = c.mint(NOW, [1, 2, 3, 4, 5, 6]);
        let hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, id.to_hex());
        assert_eq!(format!("{id:?}"), format!("ClickId({})", id.to_hex()));
        let shown = format!("{c:?}");
        assert_eq!(shown, "ClickIdCodec { key: <redacted> }");
        assert!(!shown.contains("0123456789abcdef"));
    }

    #[test]
    fn differences_in_two_mac_bytes_never_cancel_out() {
        // The same bit flipped in two MAC bytes: a comparison that XOR-accumulated the
        // byte differences would see them cancel and accept a forged ID.
        let c = codec();
        let mut hex = c.mint(NOW, [4; 6]).to_hex().into_bytes();
        for at in [24, 26] {
            // Bytes 12 and 13 (the MAC's first two) are hex digits 24-25 and 26-27.
            let digit = (hex[at + 1] as char).to_digit(16).unwrap() ^ 1;
            hex[at + 1] = char::from_digit(digit, 16).unwrap() as u8;
        }
        let forged = String::from_utf8(hex).unwrap();
        assert_eq!(c.verify(&forged, NOW, DAY), Err(ClickIdError::BadMac));
    }
}
