//! Token templates in every delimiter style seen in the wild.
//!
//! Networks and traffic sources each speak their own macro dialect: CAKE writes
//! `#s2#`, PropellerAds `${SUBID}`, ShareASale `!!afftrack!!`. One scanner finds tokens
//! of every style at once, so an ambiguous spelling always resolves the same way:
//! at each position the longest opener wins (`!!!x!!!` before `!!x!!`, `{{x}}` before
//! `{x}`, `[[x]]` before `[X]`, `${X}` before `{X}`), and a token is consumed whole, so
//! the `{X}` inside `${X}` is never seen on its own.
//!
//! A token name is 1 to [`MAX_TOKEN_NAME_LEN`] characters of `[A-Za-z0-9_.-]` holding
//! at least one ASCII letter. The letter rule keeps `#1#`, `[-]` or `<3>` from being
//! taken for macros; the character class keeps `<a href=...>` out.
//!
//! Rendering substitutes values percent-encoded exactly once with
//! [`crate::query::encode_query_value`]: the result never holds a raw space, `&`, `#`,
//! `=`, `+` or non-ASCII byte coming from a value.
//!
//! A template that is a URL is filled with [`Template::render_url`], which knows where
//! each token sits ([`UrlPart`]) and decides per position:
//!
//! - scheme, user info, host and port never take a value ([`UrlTemplateError::TokenInAuthority`]);
//! - in the path a value is encoded as (part of) one segment, so `/`, `\`, `?`, `#` and
//!   `%` are escaped, and a value that would make its segment a dot segment (`.`, `..`)
//!   or leave it empty is refused, since either changes the path the request goes to;
//! - in the query and the fragment a value is encoded as one component, so it cannot
//!   add a parameter, end the query or start a fragment.
//!
//! In every position a value keeps only RFC 3986 unreserved bytes unescaped
//! ([`URL_VALUE`]), so percent-decoding the component gives the value back.

use crate::query::{decode_query_component, encode_query_value};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;

/// Longest token name the scanner accepts; longer runs are treated as plain text.
pub const MAX_TOKEN_NAME_LEN: usize = 64;

/// A macro delimiter style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenStyle {
    /// `{x}`: TUNE, Everflow, Affise, Impact, MGID, most platforms.
    Brace,
    /// `#x#`: CAKE.
    Hash,
    /// `[X]`: RichAds, PopAds, AdCash.
    Bracket,
    /// `${X}`: PropellerAds.
    DollarBrace,
    /// `{{x}}`: Outbrain, Meta URL parameters.
    DoubleBrace,
    /// `!!x!!`: ShareASale.
    DoubleBang,
    /// `!!!x!!!`: Awin.
    TripleBang,
    /// `<x>`: some CPA networks, and vendor docs' "fill this in" placeholders.
    Angle,
    /// `[[x]]`: Prosper202.
    DoubleBracket,
    /// `%%X%%`: myTracker.
    DoublePercent,
    /// `@@X@@`: ClickerVolt.
    DoubleAt,
}

/// Every style, longest opener first: the scanner tries them in this order, which is
/// what resolves `!!!x!!!` vs `!!x!!` and `{{x}}` vs `{x}`.
pub const ALL_STYLES: [TokenStyle; 11] = [
    TokenStyle::TripleBang,
    TokenStyle::DollarBrace,
    TokenStyle::DoubleBrace,
    TokenStyle::DoubleBang,
    TokenStyle::DoubleBracket,
    TokenStyle::DoublePercent,
    TokenStyle::DoubleAt,
    TokenStyle::Brace,
    TokenStyle::Hash,
    TokenStyle::Bracket,
    TokenStyle::Angle,
];

impl TokenStyle {
    /// The opening delimiter.
    pub fn open(self) -> &'static str {
        match self {
            TokenStyle::Brace => "{",
            TokenStyle::Hash => "#",
            TokenStyle::Bracket => "[",
            TokenStyle::DollarBrace => "${",
            TokenStyle::DoubleBrace => "{{",
            TokenStyle::DoubleBang => "!!",
            TokenStyle::TripleBang => "!!!",
            TokenStyle::Angle => "<",
            TokenStyle::DoubleBracket => "[[",
            TokenStyle::DoublePercent => "%%",
            TokenStyle::DoubleAt => "@@",
        }
    }

    /// The closing delimiter.
    pub fn close(self) -> &'static str {
        match self {
            TokenStyle::Brace | TokenStyle::DollarBrace => "}",
            TokenStyle::Hash => "#",
            TokenStyle::Bracket => "]",
            TokenStyle::DoubleBrace => "}}",
            TokenStyle::DoubleBang => "!!",
            TokenStyle::TripleBang => "!!!",
            TokenStyle::Angle => ">",
            TokenStyle::DoubleBracket => "]]",
            TokenStyle::DoublePercent => "%%",
            TokenStyle::DoubleAt => "@@",
        }
    }

    /// The config name of the style (`"brace"`, `"hash"`, ...); [`TokenStyle::from_name`]
    /// accepts it back.
    pub fn name(self) -> &'static str {
        match self {
            TokenStyle::Brace => "brace",
            TokenStyle::Hash => "hash",
            TokenStyle::Bracket => "bracket",
            TokenStyle::DollarBrace => "dollar_brace",
            TokenStyle::DoubleBrace => "double_brace",
            TokenStyle::DoubleBang => "double_bang",
            TokenStyle::TripleBang => "triple_bang",
            TokenStyle::Angle => "angle",
            TokenStyle::DoubleBracket => "double_bracket",
            TokenStyle::DoublePercent => "double_percent",
            TokenStyle::DoubleAt => "double_at",
        }
    }

    /// Parse a style from its config name, or from an example such as `"{x}"`,
    /// `"#x#"` or `"${X}"` (whatever name the example holds).
    pub fn from_name(text: &str) -> Option<TokenStyle> {
        let t = text.trim();
        if let Some(s) = ALL_STYLES
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(t))
        {
            return Some(s);
        }
        match find_tokens(t).as_slice() {
            [only] if only.start == 0 && only.end == t.len() => Some(only.style),
            _ => None,
        }
    }

    /// `name` wrapped in this style's delimiters (`s2` → `#s2#`).
    pub fn wrap(self, name: &str) -> String {
        format!("{}{}{}", self.open(), name, self.close())
    }
}

impl fmt::Display for TokenStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.wrap("x"))
    }
}

/// Whether a platform matches token names case-sensitively (Impact's `{SubId1}` is not
/// `{subid1}`) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CaseRule {
    /// Names must match byte for byte.
    #[default]
    Sensitive,
    /// Names match ignoring ASCII case.
    Insensitive,
}

impl CaseRule {
    /// Whether token name `a` matches `b` under this rule.
    pub fn matches(self, a: &str, b: &str) -> bool {
        match self {
            CaseRule::Sensitive => a == b,
            CaseRule::Insensitive => a.eq_ignore_ascii_case(b),
        }
    }
}

/// One token found in a text: its style, its name and its byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    /// The delimiter style.
    pub style: TokenStyle,
    /// The name between the delimiters.
    pub name: String,
    /// Byte offset of the opening delimiter.
    pub start: usize,
    /// Byte offset just past the closing delimiter.
    pub end: usize,
}

impl TokenMatch {
    /// The token as written, delimiters included (`#s2#`).
    pub fn text(&self) -> String {
        self.style.wrap(&self.name)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Try to read a token of `style` starting exactly at byte `at`.
fn token_at(text: &str, at: usize, style: TokenStyle) -> Option<TokenMatch> {
    let bytes = text.as_bytes();
    let open = style.open().as_bytes();
    let close = style.close().as_bytes();
    if !bytes[at..].starts_with(open) {
        return None;
    }
    let name_start = at + open.len();
    let mut i = name_start;
    while i < bytes.len() && i - name_start <= MAX_TOKEN_NAME_LEN && is_name_byte(bytes[i]) {
        i += 1;
    }
    let name = &text[name_start..i];
    if name.is_empty()
        || name.len() > MAX_TOKEN_NAME_LEN
        || !name.bytes().any(|b| b.is_ascii_alphabetic())
        || !bytes[i..].starts_with(close)
    {
        return None;
    }
    Some(TokenMatch {
        style,
        name: name.to_string(),
        start: at,
        end: i + close.len(),
    })
}

/// Every token in `text`, in every style, left to right, non-overlapping.
///
/// Guarantees: spans are in order, disjoint and on char boundaries (delimiters and
/// names are ASCII); the longest opener wins at each position; never panics.
pub fn find_tokens(text: &str) -> Vec<TokenMatch> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        // Only ASCII delimiters can open a token, so skipping other bytes keeps `at`
        // on a char boundary whenever a token is tried.
        if matches!(
            bytes[at],
            b'{' | b'#' | b'[' | b'$' | b'!' | b'<' | b'%' | b'@'
        ) {
            if let Some(m) = ALL_STYLES.iter().find_map(|s| token_at(text, at, *s)) {
                at = m.end;
                out.push(m);
                continue;
            }
        }
        at += 1;
    }
    out
}

/// The first macro still present in `value`, in any style, as written (`#s2#`,
/// `{aff_sub}`, `${SUBID}`, `[CLICK_ID]`, ...).
///
/// A postback value holding one means the sender never substituted it. Guarantees:
/// `None` for a value with no token per the module's name rule; never panics.
pub fn find_unreplaced_macro(value: &str) -> Option<String> {
    find_tokens(value).first().map(TokenMatch::text)
}

/// A parsed template: literal text and tokens of one style, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    style: TokenStyle,
    segments: Vec<Segment>,
}

/// One piece of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text kept as written.
    Literal(String),
    /// A token of the template's style, by name.
    Token(String),
}

/// What rendering a template produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text with every resolved token replaced by its encoded value.
    pub text: String,
    /// Names of the tokens the resolver did not know, left in place as written.
    pub unresolved: Vec<String>,
}

impl Template {
    /// Parse `text` with tokens of `style`. Tokens of other styles stay literal, as the
    /// scanner split them: `${X}` is never read as a `{X}` token.
    pub fn parse(text: &str, style: TokenStyle) -> Template {
        let mut segments = Vec::new();
        let mut last = 0;
        for m in find_tokens(text) {
            if m.style != style {
                continue;
            }
            if m.start > last {
                segments.push(Segment::Literal(text[last..m.start].to_string()));
            }
            segments.push(Segment::Token(m.name));
            last = m.end;
        }
        if last < text.len() {
            segments.push(Segment::Literal(text[last..].to_string()));
        }
        Template { style, segments }
    }

    /// The template's style.
    pub fn style(&self) -> TokenStyle {
        self.style
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Token names in order of appearance (repeats kept).
    pub fn token_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Token(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Replace each token whose name `resolve` knows by its value, percent-encoded
    /// exactly once; unknown tokens stay as written and are listed in `unresolved`.
    ///
    /// This does not know URL structure: a template that is a URL someone will request
    /// is filled with [`Template::render_url`], which also refuses values that would
    /// change the URL's host or path.
    pub fn render(&self, mut resolve: impl FnMut(&str) -> Option<String>) -> Rendered {
        let mut text = String::new();
        let mut unresolved = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => text.push_str(l),
                Segment::Token(name) => match resolve(name) {
                    Some(v) => text.push_str(&encode_query_value(&v)),
                    None => {
                        text.push_str(&self.style.wrap(name));
                        unresolved.push(name.clone());
                    }
                },
            }
        }
        Rendered { text, unresolved }
    }

    /// Recover token values from a text rendered from this template.
    ///
    /// Each token's value runs up to the first occurrence of the literal that follows
    /// it (to the end for a trailing token), then is percent-decoded. Rendered values
    /// hold only unreserved characters and `%XX`, so this is exact whenever each
    /// literal after a token starts with a reserved character such as `&`, `/` or `#`.
    /// Returns `None` if the literals do not line up.
    pub fn extract(&self, rendered: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = rendered;
        let mut segs = self.segments.iter().peekable();
        while let Some(seg) = segs.next() {
            match seg {
                Segment::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Segment::Token(name) => {
                    let end = match segs.peek() {
                        Some(Segment::Literal(next)) => rest.find(next.as_str())?,
                        Some(Segment::Token(_)) => return None,
                        None => rest.len(),
                    };
                    out.push((name.clone(), percent_decode(&rest[..end])));
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty().then_some(out)
    }

    /// Query parameters whose whole value is one token: `cid=#s2#` gives
    /// `("cid", "s2")`. This is how a postback URL ties our parameter names to the
    /// sender's macros.
    pub fn query_bindings(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut segs = self.segments.iter().peekable();
        while let Some(seg) = segs.next() {
            let Segment::Literal(l) = seg else { continue };
            let Some(Segment::Token(name)) = segs.peek() else {
                continue;
            };
            let Some(before_eq) = l.strip_suffix('=') else {
                continue;
            };
            let key_start = before_eq.rfind(['?', '&']).map_or(0, |i| i + 1);
            let key = &before_eq[key_start..];
            if key.is_empty() || key.contains(['/', '#', ' ']) {
                continue;
            }
            segs.next();
            let ends_value = match segs.peek() {
                None => true,
                Some(Segment::Literal(next)) => next.starts_with(['&', '#']),
                Some(Segment::Token(_)) => false,
            };
            if ends_value {
                out.push((decode_query_component(key), name.clone()));
            }
        }
        out
    }
}

/// Percent-decode without treating `+` as a space: rendered values encode `+` as
/// `%2B`, so a literal `+` here came from the template, not from a value.
fn percent_decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Render `template` in `style`, resolving names with `resolve`.
/// A convenience over [`Template::parse`] + [`Template::render`].
pub fn render(
    template: &str,
    style: TokenStyle,
    resolve: impl FnMut(&str) -> Option<String>,
) -> Rendered {
    Template::parse(template, style).render(resolve)
}

/// Bytes a value keeps unescaped wherever it lands in a URL: RFC 3986 unreserved only.
/// Every delimiter (`/`, `\`, `?`, `#`, `&`, `=`, `+`, `;`, `:`, `@`, space) and `%` itself
/// is escaped, so a value cannot end its path segment, open a query or fragment, add a
/// parameter, or bring an escape of its own that a server would decode.
pub const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The part of a URL a template token sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlPart {
    /// Scheme, user info, host or port: never filled from a value.
    Authority,
    /// The path: a value is (part of) one segment.
    Path,
    /// The query: a value is (part of) one key or value.
    Query,
    /// The fragment.
    Fragment,
}

/// Why a URL template could not be filled without changing where the request goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlTemplateError {
    /// A token sits in the scheme, user info, host or port.
    #[error("token {token} sits in the URL's scheme or host, so a filled-in value would choose where the request goes: write the scheme and host literally and move {token} into the path or query")]
    TokenInAuthority {
        /// The token as written.
        token: String,
    },
    /// The value would turn its path segment into `.` or `..`.
    #[error("the value of {token} would make the path segment {segment:?}, a dot segment that changes the path; the request is refused rather than sent to another path")]
    DotSegment {
        /// The token as written.
        token: String,
        /// The rendered segment (`.`, `..` or an escaped spelling of them).
        segment: String,
    },
    /// The value would leave its path segment empty.
    #[error("the value of {token} is empty, which would leave an empty path segment and change the path; the request is refused rather than sent to another path")]
    EmptySegment {
        /// The token as written.
        token: String,
    },
}

impl UrlTemplateError {
    /// Stable snake_case label, safe for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            UrlTemplateError::TokenInAuthority { .. } => "token_in_host",
            UrlTemplateError::DotSegment { .. } => "dot_segment_value",
            UrlTemplateError::EmptySegment { .. } => "empty_path_value",
        }
    }
}

/// Where a scan over a URL template's literal text is; tokens do not move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Before the `://` that ends the scheme; the count is how much of it matched.
    Scheme(u8),
    /// User info, host and port, up to the first `/`, `\`, `?` or `#`.
    Authority,
    Path,
    Query,
    Fragment,
}

impl Cursor {
    fn part(self) -> UrlPart {
        match self {
            Cursor::Scheme(_) | Cursor::Authority => UrlPart::Authority,
            Cursor::Path => UrlPart::Path,
            Cursor::Query => UrlPart::Query,
            Cursor::Fragment => UrlPart::Fragment,
        }
    }

    /// Move past literal character `c`. `\` ends the authority and separates path
    /// segments as `/` does, because WHATWG URL parsers (browsers, the `url` crate)
    /// read it so in http(s) URLs.
    fn step(&mut self, c: char) {
        *self = match (*self, c) {
            (Cursor::Scheme(2), '/') => Cursor::Authority,
            (Cursor::Scheme(1), '/') => Cursor::Scheme(2),
            (Cursor::Scheme(_), ':') => Cursor::Scheme(1),
            (Cursor::Scheme(_), _) => Cursor::Scheme(0),
            (Cursor::Authority, '/' | '\\') => Cursor::Path,
            (Cursor::Authority | Cursor::Path, '?') => Cursor::Query,
            (Cursor::Authority | Cursor::Path | Cursor::Query, '#') => Cursor::Fragment,
            (same, _) => same,
        }
    }
}

/// Refuse a rendered path segment that holds a value and reads as `.`, `..` or nothing.
/// WHATWG parsers also take `%2e` for a dot, so escaped spellings count (a value cannot
/// produce `%2e` itself, but a literal next to it can: `/%2e{x}/` with `x = "."`).
fn check_path_segment(segment: &str, tokens: &[String]) -> Result<(), UrlTemplateError> {
    let Some(token) = tokens.first() else {
        return Ok(());
    };
    if segment.is_empty() {
        return Err(UrlTemplateError::EmptySegment {
            token: token.clone(),
        });
    }
    let dots = segment.to_ascii_lowercase().replace("%2e", ".");
    if dots == "." || dots == ".." {
        return Err(UrlTemplateError::DotSegment {
            token: token.clone(),
            segment: segment.to_string(),
        });
    }
    Ok(())
}

impl Template {
    /// The [`UrlPart`] each token sits in, in the order of [`Template::token_names`],
    /// reading the template as a URL. A template without `://` is all authority.
    pub fn url_parts(&self) -> Vec<UrlPart> {
        let mut cursor = Cursor::Scheme(0);
        let mut out = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => l.chars().for_each(|c| cursor.step(c)),
                Segment::Token(_) => out.push(cursor.part()),
            }
        }
        out
    }

    /// Check the template can be filled as a URL: no token of its style sits in the
    /// scheme, user info, host or port. Config validation runs this, so a template that
    /// would let a value choose the destination is refused before any traffic flows.
    pub fn check_url(&self) -> Result<(), UrlTemplateError> {
        match self
            .token_names()
            .zip(self.url_parts())
            .find(|(_, part)| *part == UrlPart::Authority)
        {
            Some((name, _)) => Err(UrlTemplateError::TokenInAuthority {
                token: self.style.wrap(name),
            }),
            None => Ok(()),
        }
    }

    /// Fill the template as a URL: like [`Template::render`], but each value is encoded
    /// for the part of the URL its token sits in (see the module docs), and a fill that
    /// would change the URL's structure is refused.
    ///
    /// Guarantees: the rendered URL has the template's scheme, host, port and path
    /// segments (a value is one segment's worth of escaped text and never `.`, `..` or
    /// empty on its own); percent-decoding a value's component gives the value back;
    /// an error for a token in the authority that `resolve` fills (one it does not fill
    /// stays as written and is listed in `unresolved`); never panics.
    pub fn render_url(
        &self,
        mut resolve: impl FnMut(&str) -> Option<String>,
    ) -> Result<Rendered, UrlTemplateError> {
        let mut text = String::new();
        let mut unresolved = Vec::new();
        let mut cursor = Cursor::Scheme(0);
        // The path segment being written: where it starts in `text`, and the tokens
        // whose values it holds (only those make it worth checking).
        let mut segment_start = 0;
        let mut segment_tokens: Vec<String> = Vec::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    for c in l.chars() {
                        let before = cursor;
                        cursor.step(c);
                        let separator = matches!(c, '/' | '\\');
                        if before == Cursor::Path && (cursor != Cursor::Path || separator) {
                            check_path_segment(&text[segment_start..], &segment_tokens)?;
                            segment_tokens.clear();
                        }
                        text.push(c);
                        if cursor == Cursor::Path && (before != Cursor::Path || separator) {
                            segment_start = text.len();
                        }
                    }
                }
                Segment::Token(name) => match resolve(name) {
                    None => {
                        text.push_str(&self.style.wrap(name));
                        unresolved.push(name.clone());
                    }
                    Some(_) if cursor.part() == UrlPart::Authority => {
                        return Err(UrlTemplateError::TokenInAuthority {
                            token: self.style.wrap(name),
                        });
                    }
                    Some(value) => {
                        text.extend(utf8_percent_encode(&value, URL_VALUE));
                        if cursor == Cursor::Path {
                            segment_tokens.push(self.style.wrap(name));
                        }
                    }
                },
            }
        }
        if cursor == Cursor::Path {
            check_path_segment(&text[segment_start..], &segment_tokens)?;
        }
        Ok(Rendered { text, unresolved })
    }
}

/// Render URL `template` in `style`, resolving names with `resolve`.
/// A convenience over [`Template::parse`] + [`Template::render_url`].
pub fn render_url(
    template: &str,
    style: TokenStyle,
    resolve: impl FnMut(&str) -> Option<String>,
) -> Result<Rendered, UrlTemplateError> {
    Template::parse(template, style).render_url(resolve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_style_is_named_by_its_name_or_by_one_whole_example() {
        assert_eq!(TokenStyle::from_name("{x}"), Some(TokenStyle::Brace));
        assert_eq!(TokenStyle::from_name("#x#"), Some(TokenStyle::Hash));
        // An example with anything around the token, or two tokens, names no style.
        assert_eq!(TokenStyle::from_name("a{x}"), None);
        assert_eq!(TokenStyle::from_name("{x}b"), None);
        assert_eq!(TokenStyle::from_name("{x}{y}"), None);
        assert_eq!(TokenStyle::Hash.to_string(), "#x#");
        assert_eq!(TokenStyle::DollarBrace.to_string(), "${x}");
    }

    #[test]
    fn token_names_are_bounded_and_never_empty() {
        let longest = "a".repeat(MAX_TOKEN_NAME_LEN);
        let text = format!("{{{longest}}}");
        assert_eq!(
            find_tokens(&text).len(),
            1,
            "a name of exactly the limit is a token"
        );
        let too_long = format!("{{{longest}b}}");
        assert!(find_tokens(&too_long).is_empty(), "one byte more is not");
        assert!(find_tokens("{}").is_empty(), "an empty name is not a token");
        assert!(find_tokens("{12}").is_empty(), "a name needs a letter");
    }

    #[test]
    fn segments_hold_no_empty_literals_and_names_come_in_order() {
        let t = Template::parse("{a}{b}/x{a}", TokenStyle::Brace);
        assert_eq!(
            t.segments(),
            [
                Segment::Token("a".into()),
                Segment::Token("b".into()),
                Segment::Literal("/x".into()),
                Segment::Token("a".into()),
            ]
        );
        assert_eq!(t.token_names().collect::<Vec<_>>(), ["a", "b", "a"]);
    }

    #[test]
    fn a_query_binding_needs_a_plain_key() {
        let bindings = |url: &str| Template::parse(url, TokenStyle::Brace).query_bindings();
        assert_eq!(
            bindings("https://n.example/pb?cid={clickid}&p={payout}"),
            [
                ("cid".to_string(), "clickid".to_string()),
                ("p".into(), "payout".into())
            ]
        );
        // No key, or a "key" that is really part of the path, binds nothing.
        assert!(bindings("https://n.example/pb?={clickid}").is_empty());
        assert!(bindings("https://n.example/a b={clickid}").is_empty());
        assert!(bindings("https://n.example/x/y={clickid}").is_empty());
    }

    fn styles_and_names(text: &str) -> Vec<(TokenStyle, String)> {
        find_tokens(text)
            .into_iter()
            .map(|m| (m.style, m.name))
            .collect()
    }

    #[test]
    fn every_style_is_found() {
        for style in ALL_STYLES {
            let text = format!("a=1&b={}&c=2", style.wrap("Sub_1.x-y"));
            assert_eq!(
                styles_and_names(&text),
                vec![(style, "Sub_1.x-y".to_string())],
                "{style:?}"
            );
        }
    }

    #[test]
    fn ambiguous_spellings_resolve_to_the_longest_opener() {
        use TokenStyle::*;
        let cases = [
            ("{{x}}", DoubleBrace, "x"),
            ("!!!x!!!", TripleBang, "x"),
            ("!!x!!", DoubleBang, "x"),
            ("${X}", DollarBrace, "X"),
            ("[[x]]", DoubleBracket, "x"),
            ("[X]", Bracket, "X"),
            ("{x}", Brace, "x"),
        ];
        for (text, style, name) in cases {
            assert_eq!(
                styles_and_names(text),
                vec![(style, name.to_string())],
                "{text}"
            );
        }
    }

    #[test]
    fn html_and_digits_are_not_tokens() {
        assert!(find_tokens("<a href=\"x\">").is_empty());
        assert!(find_tokens("#1# [-] <3> {} %%%% !!!!").is_empty());
        assert!(find_tokens("https://x.example/p#frag").is_empty());
        assert_eq!(find_unreplaced_macro("abc"), None);
        assert_eq!(find_unreplaced_macro("x#s2#").as_deref(), Some("#s2#"));
    }

    #[test]
    fn render_encodes_once_and_leaves_other_styles() {
        let t = Template::parse(
            "https://t.example/p?v=${SUBID}&w={SUBID}&p=${PAYOUT}",
            TokenStyle::DollarBrace,
        );
        let r = t.render(|n| match n {
            "SUBID" => Some("a b&c=d#é%20".to_string()),
            _ => None,
        });
        assert_eq!(
            r.text,
            "https://t.example/p?v=a%20b%26c%3Dd%23%C3%A9%2520&w={SUBID}&p=${PAYOUT}"
        );
        assert_eq!(r.unresolved, vec!["PAYOUT".to_string()]);
    }

    #[test]
    fn extract_and_bindings_round_trip() {
        let t = Template::parse(
            "https://t.example/pb/cake?cid=#s2#&payout=#price#",
            TokenStyle::Hash,
        );
        assert_eq!(
            t.query_bindings(),
            vec![
                ("cid".into(), "s2".into()),
                ("payout".into(), "price".into())
            ]
        );
        let r = t.render(|n| Some(format!("{n} &+")));
        assert_eq!(
            t.extract(&r.text).unwrap(),
            vec![
                ("s2".into(), "s2 &+".into()),
                ("price".into(), "price &+".into())
            ]
        );
    }

    #[test]
    fn style_from_name_or_example() {
        assert_eq!(TokenStyle::from_name("hash"), Some(TokenStyle::Hash));
        assert_eq!(TokenStyle::from_name("${X}"), Some(TokenStyle::DollarBrace));
        assert_eq!(
            TokenStyle::from_name("!!!x!!!"),
            Some(TokenStyle::TripleBang)
        );
        assert_eq!(TokenStyle::from_name("nope"), None);
    }

    /// Values an attacker would put in a source click id to steer a relay.
    const HOSTILE: &[&str] = &[
        "..",
        ".",
        "a/b",
        "%2e%2e",
        "%2E%2e",
        ".%2e",
        "a\\b",
        "?x",
        "#y",
        "&z=1",
        "a=b",
        "%",
        "%2F",
        "../../admin",
        "..\\..",
        "x y+z",
        "@evil.example",
        ":8080",
        "//evil",
        "é漢",
        ";p",
        "\r\n",
        "",
    ];

    fn fill(template: &str, value: &str) -> Result<Rendered, UrlTemplateError> {
        Template::parse(template, TokenStyle::Brace)
            .render_url(|n| (n == "v").then(|| value.to_string()))
    }

    #[test]
    fn path_values_are_one_escaped_segment_or_refused() {
        let cases = [
            ("a/b", Ok("https://s.example/pb/a%2Fb/x")),
            ("a\\b", Ok("https://s.example/pb/a%5Cb/x")),
            ("?x", Ok("https://s.example/pb/%3Fx/x")),
            ("#y", Ok("https://s.example/pb/%23y/x")),
            ("%2e%2e", Ok("https://s.example/pb/%252e%252e/x")),
            ("...", Ok("https://s.example/pb/.../x")),
            ("..", Err("dot_segment_value")),
            (".", Err("dot_segment_value")),
            ("", Err("empty_path_value")),
        ];
        for (value, want) in cases {
            let got = fill("https://s.example/pb/{v}/x", value);
            let got = got
                .as_ref()
                .map(|r| r.text.as_str())
                .map_err(|e| e.reason());
            assert_eq!(got, want, "{value:?}");
        }
        // A trailing segment and one shared with literal text.
        assert_eq!(
            fill("https://s.example/pb/{v}", "..").unwrap_err().reason(),
            "dot_segment_value"
        );
        assert_eq!(
            fill("https://s.example/pb/{v}", "").unwrap_err().reason(),
            "empty_path_value"
        );
        assert_eq!(
            fill("https://s.example/pb/id-{v}.json", "..").unwrap().text,
            "https://s.example/pb/id-...json"
        );
        assert_eq!(
            fill("https://s.example/pb/id-{v}", "").unwrap().text,
            "https://s.example/pb/id-"
        );
        // A literal escaped dot next to the value still makes a dot segment.
        assert_eq!(
            fill("https://s.example/pb/%2E{v}/x", ".")
                .unwrap_err()
                .reason(),
            "dot_segment_value"
        );
        // Two tokens that together spell `..`.
        let t = Template::parse("https://s.example/{a}{b}/x", TokenStyle::Brace);
        let err = t.render_url(|_| Some(".".into())).unwrap_err();
        assert_eq!(
            err,
            UrlTemplateError::DotSegment {
                token: "{a}".into(),
                segment: "..".into()
            }
        );
        assert!(err.to_string().contains("{a}"), "{err}");
    }

    #[test]
    fn query_and_fragment_values_are_one_component() {
        for value in HOSTILE {
            let r = fill("https://s.example/pb?c={v}&k=1#f={v}", value).unwrap();
            let (before_fragment, fragment) = r.text.split_once('#').unwrap();
            let (path, query) = before_fragment.split_once('?').unwrap();
            assert_eq!(path, "https://s.example/pb", "{value:?}");
            let pairs = crate::query::parse_query(query);
            assert_eq!(pairs.len(), 2, "{value:?}: {query}");
            assert_eq!(pairs[0], ("c".to_string(), value.to_string()));
            assert_eq!(pairs[1], ("k".to_string(), "1".to_string()));
            let f = fragment.strip_prefix("f=").unwrap();
            assert!(!f.contains(['#', '?', '/', '&', '=']), "{value:?}: {f}");
            assert_eq!(percent_decode(f), *value);
        }
        // Dots and empty values are harmless outside the path.
        assert_eq!(
            fill("https://s.example/pb?c={v}", "..").unwrap().text,
            "https://s.example/pb?c=.."
        );
        assert_eq!(
            fill("https://s.example/pb?c={v}", "").unwrap().text,
            "https://s.example/pb?c="
        );
        assert_eq!(
            fill("https://s.example/pb#{v}", "").unwrap().text,
            "https://s.example/pb#"
        );
    }

    #[test]
    fn tokens_in_scheme_or_host_are_refused() {
        for template in [
            "{v}://s.example/pb",
            "https://{v}/pb",
            "https://{v}.s.example/pb",
            "https://s.example:{v}/pb",
            "https://{v}@s.example/pb",
            "https://s.example{v}/pb",
            "https://s.example{v}",
        ] {
            let t = Template::parse(template, TokenStyle::Brace);
            assert_eq!(
                t.check_url().unwrap_err().reason(),
                "token_in_host",
                "{template}"
            );
            assert_eq!(t.url_parts(), vec![UrlPart::Authority], "{template}");
            for value in HOSTILE {
                assert_eq!(
                    fill(template, value).unwrap_err().reason(),
                    "token_in_host",
                    "{template} {value:?}"
                );
            }
        }
        // A token the resolver does not fill stays as written, even in the host.
        let t = Template::parse("https://{host}/pb/{v}", TokenStyle::Brace);
        let r = t
            .render_url(|n| (n == "v").then(|| "a".to_string()))
            .unwrap();
        assert_eq!(r.text, "https://{host}/pb/a");
        assert_eq!(r.unresolved, vec!["host".to_string()]);
    }

    #[test]
    fn url_parts_follow_the_first_delimiters() {
        let t = Template::parse(
            "https://s.example/{a}/x?b={b}&{c}=1#{d}?{e}/",
            TokenStyle::Brace,
        );
        use UrlPart::*;
        assert_eq!(t.url_parts(), vec![Path, Query, Query, Fragment, Fragment]);
        assert!(t.check_url().is_ok());
        // `\` ends the host as `/` does; a `#` in a Hash-style token is not a fragment.
        let t = Template::parse("https://s.example\\#s2#/x?c=#s3##frag", TokenStyle::Hash);
        assert_eq!(t.url_parts(), vec![Path, Query]);
    }
}
