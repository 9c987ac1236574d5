//! Per-network postback verification: shared secret, HMAC-SHA256 signature with a
//! replay window, and an IP/CIDR allowlist.
//!
//! ## Canonical form signed by HMAC
//!
//! Every query pair followed by every body pair, minus the signature parameter, each
//! rendered `enc(key)=enc(value)` with [`encode_query_bytes`] (RFC 3986 unreserved
//! characters kept, every other byte `%XX` upper-case), sorted bytewise, joined with
//! `&`. Query pairs are taken from the raw query string as sent (percent-decoded to
//! bytes, never through lossy text), so a signature covers exactly the bytes that
//! arrived: two requests whose bytes differ never share a canonical form. The shared
//! secret, signature and timestamp are read from the same bytes. The timestamp parameter is one of those pairs, so it is signed too. The
//! signature is the lowercase (or uppercase) hex HMAC-SHA256 of that string under the
//! shared key. Sorting and re-encoding make the form independent of parameter order
//! and of how the sender chose to escape.
//!
//! The timestamp is Unix seconds; a value of 10¹¹ or more is read as milliseconds
//! (10¹¹ seconds is the year 5138).

use crate::postback::{PostbackError, PostbackRequest};
use crate::query::{encode_query_bytes, parse_query_bytes};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

type HmacSha256 = Hmac<Sha256>;

/// How a network's postbacks are authenticated. Every check configured must pass;
/// an empty `Verification` accepts everything.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// Shared secret: `(parameter, secret)`.
    pub secret: Option<(String, String)>,
    /// HMAC-SHA256 signature over the canonical form.
    pub hmac: Option<HmacVerification>,
    /// Allowed client IPs; empty allows any.
    pub allowlist: IpAllowlist,
}

/// HMAC signature settings.
#[derive(Debug, Clone)]
pub struct HmacVerification {
    /// The shared key.
    pub key: Vec<u8>,
    /// Parameter holding the hex signature (excluded from the canonical form).
    pub signature_param: String,
    /// Header that may carry the signature instead of the parameter.
    pub signature_header: Option<String>,
    /// Parameter holding the Unix timestamp.
    pub timestamp_param: String,
    /// Largest accepted distance between the timestamp and now, in seconds.
    pub window_secs: u64,
}

impl HmacVerification {
    /// HMAC with the defaults: signature in `sig`, timestamp in `ts`, 300 s window.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        HmacVerification {
            key: key.into(),
            signature_param: "sig".into(),
            signature_header: None,
            timestamp_param: "ts".into(),
            window_secs: 300,
        }
    }
}

impl Verification {
    /// No verification at all.
    pub fn none() -> Self {
        Verification::default()
    }

    /// Require `secret` in parameter `param` (compared in constant time).
    pub fn with_secret(mut self, param: impl Into<String>, secret: impl Into<String>) -> Self {
        self.secret = Some((param.into(), secret.into()));
        self
    }

    /// Require an HMAC signature.
    pub fn with_hmac(mut self, hmac: HmacVerification) -> Self {
        self.hmac = Some(hmac);
        self
    }

    /// Allow only these client IPs.
    pub fn with_allowlist(mut self, allowlist: IpAllowlist) -> Self {
        self.allowlist = allowlist;
        self
    }

    /// Names of the parameters verification owns (secret, signature, timestamp): a
    /// network's field parser must not read them as data.
    pub fn owned_params(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some((p, _)) = &self.secret {
            out.push(p.as_str());
        }
        if let Some(h) = &self.hmac {
            out.push(h.signature_param.as_str());
            out.push(h.timestamp_param.as_str());
        }
        out
    }

    /// Check `req` at `now_ms` (Unix milliseconds, passed in: nothing here reads a
    /// clock). Order: IP allowlist, shared secret, signature, timestamp; the first
    /// failure is returned.
    pub fn verify(&self, req: &PostbackRequest<'_>, now_ms: u64) -> Result<(), PostbackError> {
        if !self.allowlist.is_empty() && !req.remote_ip.is_some_and(|ip| self.allowlist.allows(ip))
        {
            return Err(PostbackError::IpNotAllowed { ip: req.remote_ip });
        }
        if let Some((param, secret)) = &self.secret {
            let ok =
                raw_param(req, param).is_some_and(|got| constant_time_eq(&got, secret.as_bytes()));
            if !ok {
                return Err(PostbackError::UnauthorizedSecret {
                    param: param.clone(),
                });
            }
        }
        if let Some(h) = &self.hmac {
            verify_hmac(h, req, now_ms)?;
        }
        Ok(())
    }
}

fn verify_hmac(
    h: &HmacVerification,
    req: &PostbackRequest<'_>,
    now_ms: u64,
) -> Result<(), PostbackError> {
    let sig: Cow<'_, [u8]> = match h
        .signature_header
        .as_deref()
        .and_then(|name| req.header(name))
    {
        Some(v) => Cow::Borrowed(v.as_bytes()),
        None => raw_param(req, &h.signature_param).unwrap_or_default(),
    };
    if sig.is_empty() {
        return Err(PostbackError::MissingSignature {
            param: h.signature_param.clone(),
        });
    }
    let sig_bytes = hex::decode(sig.trim_ascii()).map_err(|_| PostbackError::BadSignature)?;
    let canonical = canonical_form(req, &h.signature_param);
    let mut mac = HmacSha256::new_from_slice(&h.key).map_err(|_| PostbackError::BadSignature)?;
    mac.update(canonical.as_bytes());
    mac.verify_slice(&sig_bytes)
        .map_err(|_| PostbackError::BadSignature)?;

    let ts_ms = raw_param(req, &h.timestamp_param)
        .and_then(|t| {
            std::str::from_utf8(t.trim_ascii())
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .map(|t| {
            if t >= 100_000_000_000 {
                t
            } else {
                t.saturating_mul(1000)
            }
        })
        .ok_or_else(|| PostbackError::MissingTimestamp {
            param: h.timestamp_param.clone(),
        })?;
    let skew_secs = ts_ms.abs_diff(now_ms) / 1000;
    if skew_secs > h.window_secs {
        return Err(PostbackError::StaleTimestamp {
            skew_secs,
            window_secs: h.window_secs,
        });
    }
    Ok(())
}

/// A `(key, value)` pair as bytes, borrowed from decoded pairs or decoded from the raw
/// query.
type BytePair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The query pairs as bytes: decoded from the raw query when there is one (what was
/// sent), else the decoded pairs (a caller that built the request from pairs alone).
fn query_bytes<'a>(req: &PostbackRequest<'a>) -> Vec<BytePair<'a>> {
    if req.raw_query.is_empty() {
        req.query
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_bytes()), Cow::Borrowed(v.as_bytes())))
            .collect()
    } else {
        parse_query_bytes(req.raw_query.as_bytes())
            .into_iter()
            .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
            .collect()
    }
}

/// Every pair verification sees, as bytes: the raw query's, then the body's.
fn all_pairs_bytes<'a>(req: &PostbackRequest<'a>) -> Vec<BytePair<'a>> {
    let mut pairs = query_bytes(req);
    pairs.extend(
        req.body
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_bytes()), Cow::Borrowed(v.as_bytes()))),
    );
    pairs
}

/// The first value of `name` as sent: the raw query first, then the body.
fn raw_param<'a>(req: &PostbackRequest<'a>, name: &str) -> Option<Cow<'a, [u8]>> {
    all_pairs_bytes(req)
        .into_iter()
        .find(|(k, _)| k.as_ref() == name.as_bytes())
        .map(|(_, v)| v)
}

/// The canonical string HMAC signs (see the module docs), without `signature_param`.
pub fn canonical_form(req: &PostbackRequest<'_>, signature_param: &str) -> String {
    let mut parts: Vec<String> = all_pairs_bytes(req)
        .into_iter()
        .filter(|(k, _)| k.as_ref() != signature_param.as_bytes())
        .map(|(k, v)| format!("{}={}", encode_query_bytes(&k), encode_query_bytes(&v)))
        .collect();
    parts.sort_unstable();
    parts.join("&")
}

/// The lowercase hex HMAC-SHA256 a sender must attach: for senders, tests and the
/// `postback-url` tool.
pub fn sign_canonical(key: &[u8], canonical: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex HMAC-SHA256 of raw bytes under `key`: for digests of values that
/// must not be stored (a redacted secret) yet must be recognisable later.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(bytes))
}

/// Compare without an early exit, so the time taken does not reveal how many leading
/// bytes of a guessed secret were right. Only the length can leak.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part does not parse.
    #[error("{0:?} is not an IP address or CIDR (expected e.g. 203.0.113.0/24 or 2001:db8::/32)")]
    BadAddress(String),
    /// The prefix is not a number within the family's width.
    #[error("prefix in {0:?} must be 0..=32 for IPv4, 0..=128 for IPv6")]
    BadPrefix(String),
}

impl Cidr {
    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
    /// match IPv4 networks, since dual-stack listeners report IPv4 clients that way.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n`, `v6::addr/n`, or a bare address (a single host).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr_part)
            .map_err(|_| CidrError::BadAddress(s.to_string()))?
            .to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_part {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| CidrError::BadPrefix(s.to_string()))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// A set of CIDRs. Empty means "no restriction".
#[derive(Debug, Clone, Default)]
pub struct IpAllowlist {
    nets: Vec<Cidr>,
}

impl IpAllowlist {
    /// Parse every entry; the first bad one is reported.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, CidrError> {
        let nets = entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(IpAllowlist { nets })
    }

    /// True when no entry is configured.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is in any entry.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// Loopback addresses, for tests and local demos.
pub const LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_query;

    #[test]
    fn cidrs() {
        let l = IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32", "10.1.2.3"]).unwrap();
        for ok in [
            "203.0.113.9",
            "::ffff:203.0.113.200",
            "2001:db8:1::5",
            "10.1.2.3",
        ] {
            assert!(l.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["203.0.114.1", "2001:db9::1", "10.1.2.4", "::1"] {
            assert!(!l.allows(no.parse().unwrap()), "{no}");
        }
        assert!("1.2.3.4/33".parse::<Cidr>().is_err());
        assert!("x/3".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/9"
            .parse::<Cidr>()
            .unwrap()
            .contains("10.127.0.1".parse().unwrap()));
        assert!(!"10.0.0.0/9"
            .parse::<Cidr>()
            .unwrap()
            .contains("10.128.0.1".parse().unwrap()));
    }

    #[test]
    fn hmac_and_window() {
        let key = b"k3y";
        let now_ms = 1_700_000_000_000u64;
        let unsigned = "cid=abc&payout=2.5&ts=1700000000";
        let pairs = parse_query(unsigned);
        let canon = canonical_form(&PostbackRequest::get(unsigned, &pairs), "sig");
        assert_eq!(canon, "cid=abc&payout=2.5&ts=1700000000");
        let sig = sign_canonical(key, &canon);
        let v = Verification::none().with_hmac(HmacVerification::new(key.to_vec()));

        let signed = format!("ts=1700000000&sig={sig}&payout=2.5&cid=abc");
        let p = parse_query(&signed);
        assert_eq!(v.verify(&PostbackRequest::get(&signed, &p), now_ms), Ok(()));
        assert_eq!(
            v.verify(&PostbackRequest::get(&signed, &p), now_ms + 301_000)
                .unwrap_err()
                .reason(),
            "stale_timestamp"
        );
        let tampered = signed.replace("2.5", "25");
        let p = parse_query(&tampered);
        assert_eq!(
            v.verify(&PostbackRequest::get(&tampered, &p), now_ms)
                .unwrap_err()
                .reason(),
            "bad_signature"
        );
        let p = parse_query(unsigned);
        assert_eq!(
            v.verify(&PostbackRequest::get(unsigned, &p), now_ms)
                .unwrap_err()
                .reason(),
            "missing_signature"
        );
    }

    #[test]
    fn the_window_counts_whole_seconds_either_way_and_includes_its_edge() {
        let key = b"k3y";
        let v = Verification::none().with_hmac(HmacVerification::new(key.to_vec()));
        let signed_at = |ts: u64| {
            let unsigned = format!("cid=abc&ts={ts}");
            let pairs = parse_query(&unsigned);
            let sig = sign_canonical(
                key,
                &canonical_form(&PostbackRequest::get(&unsigned, &pairs), "sig"),
            );
            format!("{unsigned}&sig={sig}")
        };
        let sent = 1_700_000_000u64;
        let at_sent_ms = sent * 1000;
        let check = |now_ms: u64| {
            let signed = signed_at(sent);
            let p = parse_query(&signed);
            v.verify(&PostbackRequest::get(&signed, &p), now_ms)
        };
        // Two seconds of clock skew, either way, is well inside a 300 s window.
        assert_eq!(check(at_sent_ms + 2_000), Ok(()));
        assert_eq!(check(at_sent_ms - 2_000), Ok(()));
        // The window's own edge is inside; one second past it is not.
        assert_eq!(check(at_sent_ms + 300_000), Ok(()));
        assert_eq!(
            check(at_sent_ms + 300_999),
            Ok(()),
            "skew counts whole seconds"
        );
        assert_eq!(
            check(at_sent_ms + 301_000).unwrap_err().reason(),
            "stale_timestamp"
        );
    }

    #[test]
    fn verification_owns_the_secret_signature_and_timestamp_parameters() {
        assert!(Verification::none().owned_params().is_empty());
        let hmac = HmacVerification {
            signature_param: "signature".into(),
            timestamp_param: "time".into(),
            ..HmacVerification::new(b"k".to_vec())
        };
        let v = Verification::none()
            .with_secret("token", "s3cret")
            .with_hmac(hmac);
        assert_eq!(v.owned_params(), ["token", "signature", "time"]);
    }

    #[test]
    fn digests_are_the_standard_ones() {
        // FIPS 180-2 "abc" and RFC 4231 test case 2.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn differences_in_several_bytes_never_cancel_out() {
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"\x01\x01", b"\x00\x00"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }

    #[test]
    fn signatures_cover_the_bytes_sent_not_their_lossy_text() {
        let key = b"k3y";
        let now_ms = 1_700_000_000_000u64;
        let v = Verification::none().with_hmac(HmacVerification::new(key.to_vec()));
        // Signed over the bytes FF FE C0 AF; the other request carries FE FF C0 AE,
        // which lossy decoding would turn into the same four U+FFFD.
        let signed_over = "cid=abc&ts=1700000000&txid=%FF%FE%C0%AF";
        let pairs = parse_query(signed_over);
        let canon = canonical_form(&PostbackRequest::get(signed_over, &pairs), "sig");
        assert_eq!(canon, "cid=abc&ts=1700000000&txid=%FF%FE%C0%AF");
        let sig = sign_canonical(key, &canon);
        let genuine = format!("{signed_over}&sig={sig}");
        let p = parse_query(&genuine);
        assert_eq!(
            v.verify(&PostbackRequest::get(&genuine, &p), now_ms),
            Ok(())
        );
        let forged = format!("cid=abc&ts=1700000000&txid=%FE%FF%C0%AE&sig={sig}");
        let p = parse_query(&forged);
        assert_eq!(
            v.verify(&PostbackRequest::get(&forged, &p), now_ms),
            Err(PostbackError::BadSignature)
        );
    }

    #[test]
    fn secret_and_ip() {
        let v = Verification::none()
            .with_secret("secret", "s3")
            .with_allowlist(IpAllowlist::parse(&["127.0.0.1"]).unwrap());
        let p = parse_query("secret=s3");
        let mut req = PostbackRequest::get("secret=s3", &p);
        assert_eq!(v.verify(&req, 0).unwrap_err().reason(), "ip_not_allowed");
        req.remote_ip = Some(LOOPBACK[0]);
        assert_eq!(v.verify(&req, 0), Ok(()));
        let p = parse_query("secret=s4");
        req.query = &p;
        req.raw_query = "secret=s4";
        assert_eq!(
            v.verify(&req, 0).unwrap_err().reason(),
            "unauthorized_secret"
        );
    }
}
