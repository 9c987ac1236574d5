//! What of a postback goes into the journal: secrets replaced by a keyed marker, and,
//! for a request that did not authenticate, only a bounded prefix.
//!
//! ## Secrets
//!
//! The value of every configured secret parameter (`networks[].secret_param`, in the
//! query, a form body or a JSON body) is journalled as
//! `redacted~<32 hex>`: the first 128 bits of an HMAC-SHA256 of the value sent, keyed
//! with `secrets.click_id_key`. The secret itself is never stored, the marker tells
//! one sent value from another, and a replay can check a marker against the secret
//! configured *now* ([`restore_secret`]), so replay keeps working — also after the
//! operator changed the configured secret to the one a network actually sends.
//!
//! ## Cut entries
//!
//! A request that did not pass verification (or names no configured network) may store
//! at most [`UNAUTHENTICATED_JOURNAL_BYTES`] of its query and of its body; the entry
//! records both full lengths and a SHA-256 of what was cut ([`JournalCut`]).

use crate::store::JournalCut;
use clickstamp_plugins::query::{decode_component_bytes, encode_query_value};
use clickstamp_plugins::verify::{hmac_sha256_hex, sha256_hex};

/// How much of its query and of its body an unauthenticated request may journal.
pub const UNAUTHENTICATED_JOURNAL_BYTES: usize = 1024;

/// Unauthenticated journal entries accepted per client IP and minute (bursts up to as
/// many); beyond it a request is answered 429 and only counted.
pub const UNAUTHENTICATED_JOURNAL_PER_MINUTE: u32 = 60;

/// Client IPs the unauthenticated-journal rate limiter tracks at once.
pub const RATE_LIMITED_CLIENTS: usize = 100_000;

/// Marker prefix of a redacted secret value.
const MARKER_PREFIX: &str = "redacted~";

/// The marker stored for a sent secret value `sent` (see the module docs).
pub fn secret_marker(key: &[u8], sent: &[u8]) -> String {
    let mut message = b"clickstamp journal secret\0".to_vec();
    message.extend_from_slice(sent);
    let digest = hmac_sha256_hex(key, &message);
    format!("{MARKER_PREFIX}{}", &digest[..32])
}

/// Given the value a parameter holds, its replacement (or `None` to keep it).
type Replacer<'a> = dyn Fn(&[u8]) -> Option<String> + 'a;

/// Replace the values of `params` in a query string (or form body), keeping every
/// other byte as it was. Returns `None` when nothing was replaced.
fn replace_pairs(raw: &[u8], params: &[&str], replace: &Replacer<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut changed = false;
    for (i, part) in raw.split(|b| *b == b'&').enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        let (key, value) = match part.iter().position(|b| *b == b'=') {
            Some(at) => (&part[..at], &part[at + 1..]),
            None => (part, &b""[..]),
        };
        let name = decode_component_bytes(key);
        let new_value = params
            .iter()
            .any(|p| p.as_bytes() == name.as_slice())
            .then(|| replace(&decode_component_bytes(value)))
            .flatten();
        match new_value {
            Some(v) => {
                changed = true;
                out.extend_from_slice(key);
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(part),
        }
    }
    changed.then_some(out)
}

/// Replace string values of `params` in a JSON object body. `None` when the body is
/// not a JSON object or holds none of them.
fn replace_json(body: &[u8], params: &[&str], replace: &Replacer<'_>) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object_mut()?;
    let mut changed = false;
    for (k, v) in obj.iter_mut() {
        if !params.contains(&k.as_str()) {
            continue;
        }
        let sent = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if let Some(new) = replace(sent.as_bytes()) {
            *v = serde_json::Value::String(new);
            changed = true;
        }
    }
    changed.then(|| serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec()))
}

fn is_json(content_type: Option<&str>, body: &[u8]) -> bool {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    matches!(mime.as_str(), "application/json" | "text/json")
        || (mime.is_empty() && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

/// The query and body with every value of `params` replaced by its marker.
pub fn redact_secrets(
    key: &[u8],
    params: &[&str],
    raw_query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (String, Vec<u8>) {
    if params.is_empty() {
        return (raw_query.to_string(), body.to_vec());
    }
    let marker = |sent: &[u8]| Some(secret_marker(key, sent));
    let query = replace_pairs(raw_query.as_bytes(), params, &marker)
        // Only ASCII was added to an ASCII-or-UTF-8 string: still UTF-8.
        .map(|q| String::from_utf8_lossy(&q).into_owned())
        .unwrap_or_else(|| raw_query.to_string());
    let body = if is_json(content_type, body) {
        replace_json(body, params, &marker)
    } else {
        replace_pairs(body, params, &marker)
    }
    .unwrap_or_else(|| body.to_vec());
    (query, body)
}

/// For a replay: put `secret` back where the journal holds the marker of exactly that
/// secret (so the request verifies as it did on arrival). A marker of any other value
/// stays, and fails verification as the original value would have.
pub fn restore_secret(
    key: &[u8],
    param: &str,
    secret: &str,
    raw_query: &mut String,
    content_type: Option<&str>,
    body: &mut Vec<u8>,
) {
    let want = secret_marker(key, secret.as_bytes());
    let restore = |stored: &[u8]| (stored == want.as_bytes()).then(|| encode_query_value(secret));
    if let Some(q) = replace_pairs(raw_query.as_bytes(), &[param], &restore) {
        *raw_query = String::from_utf8_lossy(&q).into_owned();
    }
    let restored = if is_json(content_type, body) {
        let restore_json = |stored: &[u8]| (stored == want.as_bytes()).then(|| secret.to_string());
        replace_json(body, &[param], &restore_json)
    } else {
        replace_pairs(body, &[param], &restore)
    };
    if let Some(b) = restored {
        *body = b;
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cut `raw_query` and `body` to [`UNAUTHENTICATED_JOURNAL_BYTES`] each. Returns the
/// cut record and the bytes left out of query and body, or `None` when both fit.
pub fn cut(
    raw_query: &mut String,
    body: &mut Vec<u8>,
    body_len: u64,
) -> Option<(JournalCut, usize, usize)> {
    let max = UNAUTHENTICATED_JOURNAL_BYTES;
    let body_cut = body.len() > max || body_len > body.len() as u64;
    if raw_query.len() <= max && !body_cut {
        return None;
    }
    let record = JournalCut {
        query_len: raw_query.len() as u64,
        query_sha256: (raw_query.len() > max).then(|| sha256_hex(raw_query.as_bytes())),
        body_len,
        body_sha256: body_cut.then(|| sha256_hex(body)),
    };
    let query_left_out = raw_query.len() - prefix(raw_query, max).len();
    raw_query.truncate(raw_query.len() - query_left_out);
    let body_left_out = (body_len as usize).saturating_sub(body.len().min(max));
    body.truncate(max);
    Some((record, query_left_out, body_left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"journal-test-key";

    #[test]
    fn secrets_are_redacted_in_query_form_and_json_and_restored_for_replay() {
        let (q, b) = redact_secrets(
            KEY,
            &["secret"],
            "cid=abc&secret=s3cr3t-value&payout=1",
            Some("application/x-www-form-urlencoded"),
            b"txid=T&secret=s3cr3t-value",
        );
        assert!(!q.contains("s3cr3t") && !String::from_utf8_lossy(&b).contains("s3cr3t"));
        let marker = secret_marker(KEY, b"s3cr3t-value");
        assert_eq!(q, format!("cid=abc&secret={marker}&payout=1"));
        let (mut q2, mut b2) = (q.clone(), b.clone());
        restore_secret(
            KEY,
            "secret",
            "s3cr3t-value",
            &mut q2,
            Some("application/x-www-form-urlencoded"),
            &mut b2,
        );
        assert_eq!(q2, "cid=abc&secret=s3cr3t-value&payout=1");
        assert_eq!(b2, b"txid=T&secret=s3cr3t-value");
        // Another configured secret does not match the marker: nothing is restored.
        let mut q3 = q.clone();
        restore_secret(KEY, "secret", "other", &mut q3, None, &mut Vec::new());
        assert_eq!(q3, q);

        let (_, json) = redact_secrets(
            KEY,
            &["secret"],
            "",
            Some("application/json"),
            br#"{"cid":"abc","secret":"s3cr3t-value"}"#,
        );
        assert!(!String::from_utf8_lossy(&json).contains("s3cr3t"));
        let mut json2 = json.clone();
        restore_secret(
            KEY,
            "secret",
            "s3cr3t-value",
            &mut String::new(),
            Some("application/json"),
            &mut json2,
        );
        assert!(String::from_utf8_lossy(&json2).contains("\"secret\":\"s3cr3t-value\""));
    }

    #[test]
    fn an_encoded_secret_name_is_redacted_too() {
        let (q, _) = redact_secrets(KEY, &["secret"], "s%65cret=abc&x=1", None, b"");
        assert!(!q.contains("abc"), "{q}");
    }

    #[test]
    fn long_unauthenticated_entries_keep_a_prefix_their_length_and_digest() {
        let mut q = "a".repeat(3000);
        let mut body = vec![b'x'; 65_536];
        let (record, q_out, b_out) = cut(&mut q, &mut body, 65_536).unwrap();
        assert_eq!((q.len(), body.len()), (1024, 1024));
        assert_eq!((q_out, b_out), (3000 - 1024, 65_536 - 1024));
        assert_eq!((record.query_len, record.body_len), (3000, 65_536));
        assert_eq!(
            record.body_sha256.as_deref(),
            Some(sha256_hex(&vec![b'x'; 65_536]).as_str())
        );
        let (mut small_q, mut small_b) = ("cid=1".to_string(), b"x".to_vec());
        assert!(cut(&mut small_q, &mut small_b, 1).is_none());
        // A cut never splits a character.
        let mut wide = "é".repeat(600);
        cut(&mut wide, &mut Vec::new(), 0).unwrap();
        assert_eq!(wide.len(), 1024);
    }
}
