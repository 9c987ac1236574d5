//! Postback bodies: form-encoded or JSON, flattened to `(key, value)` pairs.

use clickstamp_plugins::query::parse_query;

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
}

impl BodyError {
    /// Stable reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "body_too_large",
            BodyError::BadJson(_) | BodyError::JsonNotObject => "malformed_body",
            BodyError::UnsupportedType(_) => "unsupported_body",
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
    match mime.as_str() {
        "application/json" | "text/json" => json_pairs(body),
        "application/x-www-form-urlencoded" | "text/plain" => {
            Ok(parse_query(&String::from_utf8_lossy(body)))
        }
        "" if looks_json => json_pairs(body),
        "" => Ok(parse_query(&String::from_utf8_lossy(body))),
        other => Err(BodyError::UnsupportedType(other.chars().take(64).collect())),
    }
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
}
