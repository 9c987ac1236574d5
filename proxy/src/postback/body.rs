//! Postback bodies: form-encoded or JSON, flattened to `(key, value)` pairs.

use clickstamp_plugins::query::{parse_query_strict, InvalidUtf8};

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
    #[error("the JSON body is not an object of fields")]
    JsonNotObject,
    #[error("unsupported content type {0:?}: send the postback as a query string, a form body or a JSON object")]
    UnsupportedType(String),
    /// The body, or a form field once percent-decoded, is not UTF-8. Refused rather
    /// than decoded lossily, which would make different values equal.
    #[error("the body is not valid UTF-8: send it in UTF-8 (the request is kept in the journal as received)")]
    NotUtf8,
    #[error("{0}")]
    FieldNotUtf8(InvalidUtf8),
}

impl BodyError {
    /// Stable reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "body_too_large",
            BodyError::BadJson(_) | BodyError::JsonNotObject => "malformed_body",
            BodyError::UnsupportedType(_) => "unsupported_body",
            BodyError::NotUtf8 | BodyError::FieldNotUtf8(_) => "invalid_utf8",
        }
    }

    /// HTTP status for the refusal.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            BodyError::UnsupportedType(_) => 415,
            _ => 400,
        }
    }
}

/// Decode `body` by its `content_type` into pairs. An empty body is no pairs whatever
/// the type. JSON objects are flattened one level deep: strings, numbers and booleans
/// become values; nested objects and arrays are skipped (no network nests its fields).
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let form = |body: &[u8]| parse_query_strict(body).map_err(BodyError::FieldNotUtf8);
    let kind = match mime.as_str() {
        "application/json" | "text/json" => Kind::Json,
        "application/x-www-form-urlencoded" | "text/plain" => Kind::Form,
        "" if looks_json => Kind::Json,
        "" => Kind::Form,
        other => return Err(BodyError::UnsupportedType(other.chars().take(64).collect())),
    };
    if std::str::from_utf8(body).is_err() {
        return Err(BodyError::NotUtf8);
    }
    match kind {
        Kind::Json => json_pairs(body),
        Kind::Form => form(body),
    }
}

enum Kind {
    Json,
    Form,
}

fn json_pairs(body: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::BadJson(e.to_string().chars().take(120).collect()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(BodyError::JsonNotObject);
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k, v))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_json_and_empty() {
        assert_eq!(
            decode(
                Some("application/x-www-form-urlencoded"),
                b"cid=a&payout=1.5"
            )
            .unwrap()
            .len(),
            2
        );
        let j = decode(
            Some("application/json; charset=utf-8"),
            br#"{"cid":"a","payout":1.5,"ok":true,"n":null,"x":{}}"#,
        )
        .unwrap();
        assert_eq!(
            j,
            vec![
                ("cid".into(), "a".into()),
                ("ok".into(), "true".into()),
                ("payout".into(), "1.5".into())
            ]
        );
        assert!(decode(None, b"  ").unwrap().is_empty());
        assert_eq!(decode(None, br#"{"cid":"z"}"#).unwrap()[0].1, "z");
    }

    #[test]
    fn invalid_utf8_is_refused_never_merged() {
        for (ctype, body) in [
            (
                Some("application/x-www-form-urlencoded"),
                &b"cid=a&txid=%FF%FE%C0%AF"[..],
            ),
            (
                Some("application/x-www-form-urlencoded"),
                &b"cid=a&txid=\xff\xfe"[..],
            ),
            (None, &b"cid=a&txid=%FE%FF%C0%AE"[..]),
            (Some("application/json"), &b"{\"cid\":\"\xff\xfe\"}"[..]),
        ] {
            assert_eq!(
                decode(ctype, body).unwrap_err().reason(),
                "invalid_utf8",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            decode(None, "txid=%C3%A9".as_bytes()).unwrap(),
            vec![("txid".into(), "é".into())]
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            decode(Some("application/json"), b"{nope")
                .unwrap_err()
                .reason(),
            "malformed_body"
        );
        assert_eq!(
            decode(Some("application/json"), b"[1]")
                .unwrap_err()
                .reason(),
            "malformed_body"
        );
        assert_eq!(
            decode(Some("application/xml"), b"<a/>")
                .unwrap_err()
                .status(),
            415
        );
    }

    mod properties {
        use super::super::*;
        use clickstamp_plugins::query::encode_query_value;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes under any content type are pairs or a refusal with a known
            /// reason and status: never a panic, never a 5xx.
            #[test]
            fn any_body_is_pairs_or_a_reasoned_refusal(
                body in proptest::collection::vec(any::<u8>(), 0..256),
                kind in prop_oneof![
                    Just(None),
                    Just(Some("application/x-www-form-urlencoded")),
                    Just(Some("application/json")),
                    Just(Some("text/plain")),
                    Just(Some("multipart/form-data; boundary=x")),
                ],
            ) {
                match decode(kind, &body) {
                    // What is read is exactly what a strict reader of that type reads.
                    Ok(pairs) => match kind {
                        Some("application/json") if !body.iter().all(u8::is_ascii_whitespace) => {
                            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            prop_assert!(value.is_object());
                        }
                        Some("application/x-www-form-urlencoded") => {
                            prop_assert_eq!(Ok(pairs), parse_query_strict(&body));
                        }
                        None if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => {
                            prop_assert_eq!(Ok(pairs), parse_query_strict(&body));
                        }
                        _ => {}
                    },
                    Err(e) => {
                        prop_assert!(["body_too_large", "malformed_body", "unsupported_body", "invalid_utf8"].contains(&e.reason()));
                        prop_assert!((400..500).contains(&e.status()));
                    }
                }
            }

            /// A form body round-trips: what was encoded is what is read, in order.
            #[test]
            fn form_fields_round_trip(fields in proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,16}"), 1..6)) {
                let body = fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode_query_value(k), encode_query_value(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let got = decode(Some("application/x-www-form-urlencoded"), body.as_bytes());
                prop_assert_eq!(got, Ok(fields.clone()));
            }

            /// A JSON object of strings round-trips the same way.
            #[test]
            fn json_fields_round_trip(fields in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,16}", 1..6)) {
                let body = serde_json::to_vec(&fields).unwrap();
                let mut got = decode(Some("application/json"), &body).unwrap();
                got.sort();
                let expected: Vec<(String, String)> = fields.into_iter().collect();
                prop_assert_eq!(got, expected);
            }
        }
    }
}
