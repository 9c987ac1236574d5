//! URL query manipulation with exactly-once encoding.
//!
//! Offer URLs come from operators and may already carry parameters, fragments or
//! tokens; we only ever touch the one parameter we own and leave every other byte as
//! the operator wrote it.

use percent_encoding::{
    percent_decode, percent_decode_str, percent_encode, utf8_percent_encode, AsciiSet,
    NON_ALPHANUMERIC,
};

/// Characters left unescaped in a query value: RFC 3986 unreserved only, so a value can
/// never leak `&`, `=`, `#`, `+` or a space into the surrounding query.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode `value` for use as one query value (or key).
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Percent-encode raw bytes for use as one query value (or key): the same alphabet as
/// [`encode_query_value`], for bytes that need not be UTF-8.
pub fn encode_query_bytes(value: &[u8]) -> String {
    percent_encode(value, QUERY_VALUE).to_string()
}

/// Decode one `application/x-www-form-urlencoded` component (`+` is a space).
/// Invalid UTF-8 is replaced rather than refused, so two different byte strings can
/// decode to the same text: never use this for values that are compared, stored or
/// verified (postbacks use [`parse_query_strict`]).
pub fn decode_query_component(raw: &str) -> String {
    let plus_as_space = raw.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// Split a query string into decoded `(key, value)` pairs, in order, keeping repeats.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (decode_query_component(k), decode_query_component(v)),
            None => (decode_query_component(part), String::new()),
        })
        .collect()
}

/// A query or form component whose bytes, once percent-decoded, are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {name:?} is not valid UTF-8 once percent-decoded: send text in UTF-8 (the request is kept in the journal as received)")]
pub struct InvalidUtf8 {
    /// The parameter's name, lossily decoded and cut to 64 characters: for messages only.
    pub name: String,
}

/// Decode one form component to bytes (`+` is a space, `%XX` a byte), whatever they are.
pub fn decode_component_bytes(raw: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_decode(&plus_as_space).collect()
}

/// Split a query string (or form body) into decoded byte pairs, in order, keeping
/// repeats: exactly the bytes the sender meant, for verification over what was sent.
pub fn parse_query_bytes(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split(|b| *b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.iter().position(|b| *b == b'=') {
            Some(i) => (
                decode_component_bytes(&part[..i]),
                decode_component_bytes(&part[i + 1..]),
            ),
            None => (decode_component_bytes(part), Vec::new()),
        })
        .collect()
}

/// Like [`parse_query`], but a key or value that is not UTF-8 once decoded is an
/// error instead of being replaced: two different byte strings never become one value.
pub fn parse_query_strict(query: &[u8]) -> Result<Vec<(String, String)>, InvalidUtf8> {
    parse_query_bytes(query)
        .into_iter()
        .map(|(k, v)| {
            let name = || InvalidUtf8 {
                name: String::from_utf8_lossy(&k).chars().take(64).collect(),
            };
            let v = String::from_utf8(v).map_err(|_| name())?;
            let k = String::from_utf8(k.clone()).map_err(|_| name())?;
            Ok((k, v))
        })
        .collect()
}

/// First value of `key` in already-parsed pairs.
pub fn first_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Set query parameter `name` to `value` in `url`: replaces the first existing
/// occurrence (dropping any repeats) or appends it, before any `#fragment`.
/// `value` is encoded here, once; `name` must be a plain parameter name.
pub fn set_query_param(url: &str, name: &str, value: &str) -> String {
    let (before_fragment, fragment) = match url.find('#') {
        Some(i) => (&url[..i], Some(&url[i..])),
        None => (url, None),
    };
    let (base, query) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], Some(&before_fragment[i + 1..])),
        None => (before_fragment, None),
    };
    let encoded = format!("{}={}", encode_query_value(name), encode_query_value(value));
    let mut parts: Vec<String> = Vec::new();
    let mut placed = false;
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let key = part.split_once('=').map_or(part, |(k, _)| k);
        if decode_query_component(key) == name {
            if !placed {
                parts.push(encoded.clone());
                placed = true;
            }
        } else {
            parts.push(part.to_string());
        }
    }
    if !placed {
        parts.push(encoded);
    }
    let mut out = String::with_capacity(url.len() + value.len() + name.len() + 2);
    out.push_str(base);
    out.push('?');
    out.push_str(&parts.join("&"));
    if let Some(f) = fragment {
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_replaces_and_keeps_fragment() {
        assert_eq!(
            set_query_param("https://n.example/o", "s2", "abc"),
            "https://n.example/o?s2=abc"
        );
        assert_eq!(
            set_query_param(
                "https://n.example/o?a=1&s2=old&b=2&s2=again#top",
                "s2",
                "abc"
            ),
            "https://n.example/o?a=1&s2=abc&b=2#top"
        );
        assert_eq!(
            set_query_param("https://n.example/o?", "s2", "x"),
            "https://n.example/o?s2=x"
        );
    }

    #[test]
    fn values_are_encoded_exactly_once() {
        let u = set_query_param("https://n.example/o?a=%20", "sub", "a b&c=d#e/é%");
        assert_eq!(
            u,
            "https://n.example/o?a=%20&sub=a%20b%26c%3Dd%23e%2F%C3%A9%25"
        );
        let q = u.split_once('?').unwrap().1;
        assert_eq!(first_value(&parse_query(q), "sub"), Some("a b&c=d#e/é%"));
    }

    #[test]
    fn strict_parsing_never_merges_different_bytes() {
        // Both decode lossily to four U+FFFD; strictly, both are refused.
        for q in ["txid=%FF%FE%C0%AF", "txid=%FE%FF%C0%AE", "%C0=x"] {
            assert!(parse_query_strict(q.as_bytes()).is_err(), "{q}");
        }
        assert_ne!(
            parse_query_bytes(b"txid=%FF%FE%C0%AF"),
            parse_query_bytes(b"txid=%FE%FF%C0%AE")
        );
        assert_eq!(
            parse_query_strict(b"a=x+y&b=%C3%A9&flag").unwrap(),
            vec![
                ("a".into(), "x y".into()),
                ("b".into(), "é".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(
            parse_query_strict("%FF=1".as_bytes()).unwrap_err().name,
            "\u{fffd}"
        );
        assert_eq!(encode_query_bytes(&[0xff, b'a']), "%FFa");
    }

    #[test]
    fn parse_query_decodes_plus_and_keeps_order() {
        let pairs = parse_query("b=2&a=x+y&flag&a=3");
        assert_eq!(
            pairs,
            vec![
                ("b".into(), "2".into()),
                ("a".into(), "x y".into()),
                ("flag".into(), "".into()),
                ("a".into(), "3".into())
            ]
        );
        assert_eq!(first_value(&pairs, "a"), Some("x y"));
    }
}
