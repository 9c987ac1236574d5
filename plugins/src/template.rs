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

use crate::query::{decode_query_component, encode_query_value};
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
