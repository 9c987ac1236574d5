//! The document's character encoding, from `Content-Type`.
//!
//! lol-html must know the encoding to find tags and attributes; it can only parse
//! ASCII-compatible encodings. Without a `charset` parameter the rewriter starts in
//! UTF-8 and lets a `<meta charset>` in the page switch it (lol-html's
//! `adjust_charset_on_meta_tag`).

use lol_html::AsciiCompatibleEncoding;

/// The outcome of reading a `Content-Type`.
#[derive(Debug, Clone, Copy)]
pub enum Charset {
    /// The header named an encoding lol-html can parse.
    Declared(AsciiCompatibleEncoding),
    /// No charset: UTF-8 until a `<meta charset>` says otherwise.
    Sniff,
}

/// Why a page's encoding rules out rewriting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    #[error("unknown charset {0:?}")]
    Unknown(String),
    #[error("charset {0:?} is not ASCII-compatible (UTF-16 and the like cannot be rewritten)")]
    NotAsciiCompatible(String),
}

/// The encoding named by a `Content-Type` value.
pub fn from_content_type(content_type: &str) -> Result<Charset, CharsetError> {
    let Some(label) = content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').trim())
    }) else {
        return Ok(Charset::Sniff);
    };
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes())
        .ok_or_else(|| CharsetError::Unknown(label.to_string()))?;
    AsciiCompatibleEncoding::new(encoding)
        .map(Charset::Declared)
        .ok_or_else(|| CharsetError::NotAsciiCompatible(label.to_string()))
}

/// Whether a `Content-Type` is an HTML document.
pub fn is_html(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("text/html") || mime.eq_ignore_ascii_case("application/xhtml+xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets() {
        assert!(matches!(from_content_type("text/html"), Ok(Charset::Sniff)));
        match from_content_type("text/html; Charset=\"windows-1251\"") {
            Ok(Charset::Declared(e)) => {
                assert_eq!(<&encoding_rs::Encoding>::from(e).name(), "windows-1251")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            from_content_type("text/html; charset=utf-16le"),
            Err(CharsetError::NotAsciiCompatible(_))
        ));
        assert!(matches!(
            from_content_type("text/html; charset=klingon"),
            Err(CharsetError::Unknown(_))
        ));
        assert!(is_html("TEXT/HTML; charset=utf-8"));
        assert!(!is_html("text/plain"));
    }
}
