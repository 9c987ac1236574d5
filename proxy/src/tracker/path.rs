//! The request path, normalised once before anything routes on it.
//!
//! Every consumer of the path — the router, the landers directory, the upstream request
//! (`{base_path}{rest}`) and the page-template cache — sees the same normalised form, so
//! no consumer can be tricked by a spelling the others read differently:
//!
//! - dot segments (`.`, `..`, and their percent-encoded spellings `%2e`, `%2E%2e`, …) are
//!   resolved as RFC 3986 §5.2.4 says, on the decoded segment;
//! - a `..` that would climb above `/` is refused: for a campaign on `/` it would leave the
//!   upstream's base path;
//! - a segment whose decoded bytes hold `/`, `\` or NUL is refused: an origin that
//!   decodes `%2F` or treats `\` as a separator (IIS, some frameworks) would otherwise see
//!   segments — and `..` — that the router never saw;
//! - everything else is kept exactly as sent (still percent-encoded), so the origin gets
//!   the bytes the visitor's browser produced.
//!
//! A browser never sends any of the refused shapes (it resolves dot segments itself), so
//! refusing them costs real visitors nothing.

use percent_encoding::percent_decode_str;

/// Why a request path is refused before routing. Each maps to a fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// A `..` segment climbs above the root.
    #[error("the path climbs above / with a \"..\" segment")]
    Escape,
    /// A segment decodes to a `/`, a `\` or NUL (`%2F`, `%5C`, `\`, `%00`).
    #[error("the path holds an encoded slash, a backslash or NUL")]
    Separator,
    /// The path does not start with `/` (`*`, or an authority-form target).
    #[error("the request target is not an absolute path")]
    NotAbsolute,
}

impl PathRefused {
    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            PathRefused::Escape => "path_escape",
            PathRefused::Separator => "path_separator",
            PathRefused::NotAbsolute => "path_not_absolute",
        }
    }
}

/// What a segment is, judged on its percent-decoded bytes.
enum Segment {
    Current,
    Parent,
    Plain,
}

fn classify(raw: &str) -> Result<Segment, PathRefused> {
    if raw.contains('\\') {
        return Err(PathRefused::Separator);
    }
    if !raw.contains('%') {
        // The common case: nothing to decode.
        return Ok(match raw {
            "." => Segment::Current,
            ".." => Segment::Parent,
            _ => Segment::Plain,
        });
    }
    let decoded: Vec<u8> = percent_decode_str(raw).collect();
    if decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
        return Err(PathRefused::Separator);
    }
    Ok(match decoded.as_slice() {
        b"." => Segment::Current,
        b".." => Segment::Parent,
        _ => Segment::Plain,
    })
}

/// Normalise `path` (the request target's path, still percent-encoded): resolve dot
/// segments, refuse what would climb above `/` or smuggle a separator. A trailing slash
/// (or a trailing dot segment, which names a directory) is kept.
pub fn normalise(path: &str) -> Result<String, PathRefused> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathRefused::NotAbsolute);
    };
    // Fast path: no dot segment and nothing encoded or backslashed: already normal.
    if !rest.contains(['.', '%', '\\']) {
        return Ok(path.to_string());
    }
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_dir = false;
    for raw in rest.split('/') {
        trailing_dir = false;
        match classify(raw)? {
            Segment::Current => trailing_dir = true,
            Segment::Parent => {
                if out.pop().is_none() {
                    return Err(PathRefused::Escape);
                }
                trailing_dir = true;
            }
            Segment::Plain => out.push(raw),
        }
    }
    let mut normal = String::with_capacity(path.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_dir || normal.is_empty() {
        normal.push('/');
    }
    Ok(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_kept_byte_for_byte() {
        for p in [
            "/",
            "/lp",
            "/lp/",
            "/lp/index.html",
            "/lp/a%20b/c.html",
            "/lp//double",
            "/lp/.well-known/x",
            "/lp/v1.2/x..y",
            "/lp/%C3%A9t%C3%A9",
        ] {
            assert_eq!(normalise(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_resolve_inside_the_root() {
        assert_eq!(normalise("/lp/a/../b.html").as_deref(), Ok("/lp/b.html"));
        assert_eq!(normalise("/lp/./b.html").as_deref(), Ok("/lp/b.html"));
        assert_eq!(normalise("/lp/%2e/b.html").as_deref(), Ok("/lp/b.html"));
        assert_eq!(normalise("/lp/x/%2E%2e/b").as_deref(), Ok("/lp/b"));
        assert_eq!(normalise("/lp/x/..").as_deref(), Ok("/lp/"));
        assert_eq!(normalise("/lp/.").as_deref(), Ok("/lp/"));
        assert_eq!(
            normalise("/lp/../outside.html").as_deref(),
            Ok("/outside.html")
        );
        assert_eq!(normalise("/..%20/x").as_deref(), Ok("/..%20/x"));
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for p in [
            "/..",
            "/../x",
            "/%2e%2e/x",
            "/x/../../",
            "/lp/x/../../../etc/passwd",
        ] {
            assert_eq!(normalise(p), Err(PathRefused::Escape), "{p}");
        }
    }

    #[test]
    fn smuggled_separators_are_refused() {
        for p in [
            "/lp/..%2foutside.html",
            "/lp/..%2Foutside.html",
            "/lp/a%2fb",
            "/lp/..\\outside.html",
            "/lp/%5c..%5coutside",
            "/lp/a%00.html",
        ] {
            assert_eq!(normalise(p), Err(PathRefused::Separator), "{p}");
        }
    }

    #[test]
    fn only_absolute_paths() {
        assert_eq!(normalise("*"), Err(PathRefused::NotAbsolute));
        assert_eq!(normalise(""), Err(PathRefused::NotAbsolute));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Path segments an attacker would try, mixed with ordinary ones.
        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(".".to_string()),
                Just("..".to_string()),
                Just("%2e%2e".to_string()),
                Just("%2E.".to_string()),
                Just(".%2e".to_string()),
                Just("%2e".to_string()),
                Just("..%2f".to_string()),
                Just("%5c".to_string()),
                Just("a\\b".to_string()),
                Just("%00".to_string()),
                Just(String::new()),
                "[a-zA-Z0-9._~%-]{1,8}",
            ]
        }

        fn path() -> impl Strategy<Value = String> {
            proptest::collection::vec(segment(), 0..8).prop_map(|s| format!("/{}", s.join("/")))
        }

        proptest! {
            /// A normalised path is absolute, holds no dot segment in any spelling and
            /// no encoded separator, and normalising it again changes nothing: no
            /// consumer after the router can read it differently.
            #[test]
            fn a_normalised_path_has_nothing_left_to_resolve(p in path()) {
                if let Ok(normal) = normalise(&p) {
                    prop_assert!(normal.starts_with('/'));
                    for raw in normal[1..].split('/') {
                        let decoded: Vec<u8> = percent_decode_str(raw).collect();
                        prop_assert!(decoded != b"." && decoded != b"..", "{p} -> {normal}");
                        prop_assert!(!decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
                    }
                    prop_assert_eq!(normalise(&normal), Ok(normal.clone()));
                }
            }

            /// A base path joined with a normalised path stays under the base, even for
            /// an origin that decodes `%2e` and `%2f` and resolves dot segments itself.
            #[test]
            fn an_upstream_path_never_leaves_its_base(p in path()) {
                if let Ok(normal) = normalise(&p) {
                    let joined = format!("/base{normal}");
                    let decoded = String::from_utf8_lossy(
                        &percent_decode_str(&joined).collect::<Vec<u8>>(),
                    )
                    .replace('\\', "/");
                    let mut stack: Vec<&str> = Vec::new();
                    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
                        match seg {
                            "." => {}
                            ".." => { stack.pop(); }
                            other => stack.push(other),
                        }
                    }
                    prop_assert_eq!(stack.first().copied(), Some("base"), "{} -> {}", p, joined);
                }
            }

            /// Any input at all is answered (never a panic), and what is accepted is a
            /// fixed point.
            #[test]
            fn any_input_is_answered(p in "\\PC{0,64}") {
                for candidate in [p.clone(), format!("/{p}")] {
                    if let Ok(normal) = normalise(&candidate) {
                        prop_assert_eq!(normalise(&normal), Ok(normal.clone()));
                    }
                }
            }
        }
    }
}
