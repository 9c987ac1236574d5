//! Which links to stamp, and how: one URL in, the stamped URL (or nothing) out.
//!
//! Pure string work, no HTML: [`super::html`] hands every link attribute it sees to
//! [`LinkStamper::stamp`].

use clickstamp_plugins::{find_tokens, Network};
use std::sync::Arc;

/// Token names (any delimiter style, any case) that mean "put the click ID here".
pub const CLICK_ID_TOKEN_NAMES: [&str; 5] = ["clickid", "click_id", "cid", "subid", "sub_id"];

/// What to do with a link that points at an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Stamp the click ID into the offer URL in the offer's network format.
    Stamp,
    /// Replace the link with `/go/{offer}?click={click id}`, so the outbound click is
    /// recorded before the visitor reaches the offer.
    Go,
}

/// Why an offer pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error("{0:?} is not a host/path pattern (write \"host/path\" or an http(s) URL)")]
    Malformed(String),
}

/// A host and a path prefix a link must have to count as an offer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPattern {
    /// Lowercase host, with `:port` only when the pattern named one.
    host: String,
    /// Path prefix; empty or `/` matches every path on the host.
    path: String,
    /// Query pairs of the offer URL: used only to prefer the most specific offer when
    /// several share a host and path.
    query: Vec<(String, String)>,
}

impl OfferPattern {
    /// Parse an http(s) URL (`https://net.example/offer?a=1`), a protocol-relative one
    /// (`//net.example/offer`) or a bare `host/path` pattern (`net.example/offer`).
    pub fn parse(text: &str) -> Result<OfferPattern, PatternError> {
        let text = text.trim();
        let rest = strip_scheme(text).unwrap_or(text);
        let (host, path, query) = split_url(rest);
        if host.is_empty() {
            return Err(PatternError::NoHost(text.to_string()));
        }
        if host.contains(['\\', ' ', '@', '"', '\'', '<', '>']) {
            return Err(PatternError::Malformed(text.to_string()));
        }
        Ok(OfferPattern {
            host: host.to_ascii_lowercase(),
            path: path.trim_end_matches('/').to_string(),
            query: query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                })
                .collect(),
        })
    }

    /// `Some(specificity)` when `host`/`path`/`query` (of an absolute link) match.
    fn score(&self, host: &str, path: &str, query: &str) -> Option<usize> {
        let host_ok = if self.host.contains(':') {
            host.eq_ignore_ascii_case(&self.host)
        } else {
            let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
            bare.eq_ignore_ascii_case(&self.host)
        };
        if !host_ok {
            return None;
        }
        // A prefix only counts on a segment boundary: `/offer` matches `/offer` and
        // `/offer/x`, not `/offers`.
        let path_ok = self.path.is_empty()
            || path == self.path
            || (path.starts_with(&self.path)
                && path.as_bytes().get(self.path.len()) == Some(&b'/'));
        if !path_ok {
            return None;
        }
        let pairs = self
            .query
            .iter()
            .filter(|(k, v)| {
                query.split('&').any(|p| match p.split_once('=') {
                    Some((pk, pv)) => pk == k && pv == v,
                    None => p == k && v.is_empty(),
                })
            })
            .count();
        Some(1 + self.path.len() + pairs * 1000)
    }
}

/// One of the campaign's offers, as the link matcher sees it.
#[derive(Debug, Clone)]
pub struct OfferTarget {
    /// The offer's configured id (used in `/go/{id}`).
    pub id: String,
    /// The network that decides where the click ID goes in this offer's links.
    pub network: Arc<dyn Network>,
    /// The offer URL's own host/path first, then any configured extra patterns.
    pub patterns: Vec<OfferPattern>,
}

/// Stamps links for one campaign.
#[derive(Debug, Clone)]
pub struct LinkStamper {
    offers: Vec<OfferTarget>,
    mode: LinkMode,
}

impl LinkStamper {
    /// A stamper over a campaign's offers.
    pub fn new(offers: Vec<OfferTarget>, mode: LinkMode) -> Self {
        LinkStamper { offers, mode }
    }

    /// The stamped form of link `url` (an attribute value as written, entities and all),
    /// or `None` when the link is none of ours and must stay byte-identical.
    ///
    /// Guarantees: a link that neither points at a configured offer nor holds a
    /// click-ID token is never changed; the result keeps `&amp;` escaping when the
    /// input used it; never panics.
    pub fn stamp(&self, url: &str, click_id: &str) -> Option<String> {
        // Most links on a page are none of ours: decide that without allocating. A
        // click-ID token needs an opening delimiter and a name, and every click-ID
        // token name holds "id" (any case).
        let may_hold_token = may_hold_click_token(url.as_bytes());
        let raw_offer = if may_hold_token {
            None
        } else {
            match self.offer_for(url.trim()) {
                None => return None,
                some => some,
            }
        };
        let escaped_amps = contains_escaped_amp(url.as_bytes());
        let plain: std::borrow::Cow<'_, str> = if escaped_amps {
            unescape_amps(url).into()
        } else {
            url.into()
        };
        let trimmed = plain.trim();
        // Without `&amp;` the text is unchanged, so the match found above stands.
        let offer = match raw_offer {
            Some(o) if !escaped_amps => Some(o),
            _ => self.offer_for(trimmed),
        };
        let out = match offer {
            Some(o) if self.mode == LinkMode::Go => go_url(&o.id, click_id),
            _ => {
                let replaced = if may_hold_token {
                    replace_click_tokens_if_any(trimmed, click_id)
                } else {
                    None
                };
                match (replaced, offer) {
                    (Some(out), _) => out,
                    (None, Some(o)) => match trimmed.strip_prefix("//") {
                        // Protocol-relative: stamp as https, then give the scheme back to the page.
                        Some(rest) => {
                            let mut abs = String::with_capacity(rest.len() + 8);
                            abs.push_str("https://");
                            abs.push_str(rest);
                            let mut out = o.network.stamp_offer_url(&abs, click_id).ok()?;
                            if out.len() < "https:".len() || !out.is_char_boundary("https:".len()) {
                                return None;
                            }
                            out.replace_range(.."https:".len(), "");
                            out
                        }
                        None => o.network.stamp_offer_url(trimmed, click_id).ok()?,
                    },
                    (None, None) => return None,
                }
            }
        };
        if out == url {
            return None;
        }
        Some(if escaped_amps { escape_amps(&out) } else { out })
    }

    /// The most specific offer `url` points at, if any.
    fn offer_for(&self, url: &str) -> Option<&OfferTarget> {
        let rest = strip_scheme(url)?;
        let (host, path, query) = split_url(rest);
        let mut best: Option<(usize, &OfferTarget)> = None;
        for offer in &self.offers {
            for p in &offer.patterns {
                if let Some(score) = p.score(host, path, query) {
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, offer));
                    }
                }
            }
        }
        best.map(|(_, o)| o)
    }
}

/// `rest` after `http://`, `https://` or `//`; `None` for relative or other schemes.
fn strip_scheme(url: &str) -> Option<&str> {
    let b = url.as_bytes();
    if b.len() >= 8 && b[..8].eq_ignore_ascii_case(b"https://") {
        url.get(8..)
    } else if b.len() >= 7 && b[..7].eq_ignore_ascii_case(b"http://") {
        url.get(7..)
    } else {
        url.strip_prefix("//")
    }
}

/// `(authority, path, query)` of a URL with the scheme removed.
fn split_url(rest: &str) -> (&str, &str, &str) {
    // All delimiters are ASCII, so every split lands on a char boundary.
    let b = rest.as_bytes();
    let host_end = b
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(b.len());
    let tail_end = b[host_end..]
        .iter()
        .position(|&c| c == b'#')
        .map_or(b.len(), |i| host_end + i);
    let host = &rest[..host_end];
    let tail = &rest[host_end..tail_end];
    match tail.as_bytes().iter().position(|&c| c == b'?') {
        Some(q) => (host, &tail[..q], &tail[q + 1..]),
        None => (host, tail, ""),
    }
}

/// `/go/{offer}?click={click id}`.
fn go_url(offer: &str, click_id: &str) -> String {
    let mut out = String::with_capacity(offer.len() + click_id.len() + 11);
    out.push_str("/go/");
    out.push_str(offer);
    out.push_str("?click=");
    out.push_str(click_id);
    out
}

/// A cheap necessary condition for [`has_click_token`]: an opening delimiter of some
/// style, and "id" in any case (every name in [`CLICK_ID_TOKEN_NAMES`] holds it).
fn may_hold_click_token(b: &[u8]) -> bool {
    b.iter()
        .any(|c| matches!(c, b'{' | b'#' | b'[' | b'$' | b'!' | b'<' | b'%' | b'@'))
        && b.windows(2).any(|w| w.eq_ignore_ascii_case(b"id"))
}

fn contains_escaped_amp(b: &[u8]) -> bool {
    b.windows(5).any(|w| w == b"&amp;")
}

/// `text` with every `&amp;` read as `&` (what `str::replace("&amp;", "&")` gives).
fn unescape_amps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("&amp;") {
        out.push_str(&rest[..i + 1]);
        rest = &rest[i + 5..];
    }
    out.push_str(rest);
    out
}

/// `text` with every `&` written `&amp;`.
fn escape_amps(text: &str) -> String {
    let extra = text.bytes().filter(|&b| b == b'&').count() * 4;
    let mut out = String::with_capacity(text.len() + extra);
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        out.push_str("&amp;");
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

/// `text` with its click-ID tokens replaced, or `None` when it holds none (one scan).
fn replace_click_tokens_if_any(text: &str, click_id: &str) -> Option<String> {
    let tokens = find_tokens(text);
    if !tokens.iter().any(|t| is_click_token_name(&t.name)) {
        return None;
    }
    let mut out = String::with_capacity(text.len() + click_id.len());
    let mut at = 0;
    for t in &tokens {
        if is_click_token_name(&t.name) {
            out.push_str(&text[at..t.start]);
            out.push_str(click_id);
            at = t.end;
        }
    }
    out.push_str(&text[at..]);
    Some(out)
}

fn is_click_token_name(name: &str) -> bool {
    CLICK_ID_TOKEN_NAMES
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether `text` holds a click-ID token in any delimiter style.
pub fn has_click_token(text: &str) -> bool {
    find_tokens(text)
        .iter()
        .any(|t| is_click_token_name(&t.name))
}

/// `text` with every click-ID token replaced by `click_id`; other tokens untouched.
pub fn replace_click_tokens(text: &str, click_id: &str) -> String {
    let mut out = String::with_capacity(text.len() + click_id.len());
    let mut at = 0;
    for t in find_tokens(text) {
        if is_click_token_name(&t.name) {
            out.push_str(&text[at..t.start]);
            out.push_str(click_id);
            at = t.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

/// The URL inside a `<meta http-equiv="refresh" content="5; url=...">` value, as
/// `(prefix, url, suffix)` so the rest of the value can be kept exactly.
pub fn split_meta_refresh(content: &str) -> Option<(&str, &str, &str)> {
    let lower = content.to_ascii_lowercase();
    let key = lower.find("url")?;
    let after = content[key + 3..].trim_start();
    let after = after.strip_prefix('=')?.trim_start();
    let start = content.len() - after.len();
    let (quote, body_start) = match after.as_bytes().first() {
        Some(b'\'') | Some(b'"') => (Some(after.as_bytes()[0] as char), start + 1),
        _ => (None, start),
    };
    let end = match quote {
        Some(q) => content[body_start..]
            .find(q)
            .map_or(content.len(), |i| body_start + i),
        None => content.trim_end().len(),
    };
    if end < body_start {
        return None;
    }
    Some((
        &content[..body_start],
        &content[body_start..end],
        &content[end..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickstamp_plugins::builtin_network;

    fn stamper(mode: LinkMode) -> LinkStamper {
        let cake: Arc<dyn Network> = Arc::from(builtin_network("cake").unwrap());
        let ho: Arc<dyn Network> = Arc::from(builtin_network("hasoffers").unwrap());
        LinkStamper::new(
            vec![
                OfferTarget {
                    id: "a".into(),
                    network: cake.clone(),
                    patterns: vec![
                        OfferPattern::parse("https://net.example/offer?a=1").unwrap(),
                        OfferPattern::parse("go.net.example/").unwrap(),
                    ],
                },
                OfferTarget {
                    id: "b".into(),
                    network: ho,
                    patterns: vec![OfferPattern::parse("https://net.example/offer?a=2").unwrap()],
                },
            ],
            mode,
        )
    }

    const CID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn offer_links_are_stamped_in_the_network_format() {
        let s = stamper(LinkMode::Stamp);
        assert_eq!(
            s.stamp("https://net.example/offer?a=1", CID).unwrap(),
            format!("https://net.example/offer?a=1&s2={CID}")
        );
        assert_eq!(
            s.stamp("https://NET.example:443/offer/x?a=2&amp;b=3", CID)
                .unwrap(),
            format!("https://NET.example:443/offer/x?a=2&amp;b=3&amp;aff_sub={CID}")
        );
        assert_eq!(
            s.stamp("//go.net.example/anything", CID).unwrap(),
            format!("//go.net.example/anything?s2={CID}")
        );
        assert_eq!(s.stamp("https://net.example/offers", CID), None);
        assert_eq!(s.stamp("https://other.example/offer", CID), None);
        assert_eq!(s.stamp("/local/page", CID), None);
        assert_eq!(s.stamp("mailto:x@net.example", CID), None);
        assert_eq!(s.stamp("", CID), None);
    }

    #[test]
    fn tokens_in_any_style_are_replaced() {
        let s = stamper(LinkMode::Stamp);
        for link in [
            "https://x.example/?s={clickid}",
            "https://x.example/?s=#CLICK_ID#",
            "https://x.example/?s=[CID]",
            "https://x.example/?s={{click_id}}",
            "https://x.example/?s=${SUBID}",
            "https://x.example/?s=!!!subid!!!",
            "/go/a?click=%%clickid%%",
        ] {
            let out = s.stamp(link, CID).unwrap();
            assert!(out.ends_with(CID), "{link} -> {out}");
        }
        assert_eq!(s.stamp("https://x.example/?s={other}", CID), None);
        assert_eq!(
            s.stamp("https://net.example/offer?a=1&s2=#s2#&x={cid}", CID)
                .unwrap(),
            format!("https://net.example/offer?a=1&s2=#s2#&x={CID}")
        );
    }

    #[test]
    fn go_mode_sends_offer_links_through_go() {
        let s = stamper(LinkMode::Go);
        assert_eq!(
            s.stamp("https://net.example/offer?a=2&z=1", CID).unwrap(),
            format!("/go/b?click={CID}")
        );
        assert_eq!(s.stamp("https://other.example/", CID), None);
    }

    #[test]
    fn byte_helpers_agree_with_the_string_methods() {
        for text in [
            "",
            "&",
            "&amp;",
            "&amp;amp;",
            "a&amp;b&c&amp",
            "x&amp;&amp;y",
            "é&amp;ü&",
            "https://h/p?q=1&amp;r=2#f&amp;",
        ] {
            assert_eq!(unescape_amps(text), text.replace("&amp;", "&"), "{text}");
            assert_eq!(escape_amps(text), text.replace('&', "&amp;"), "{text}");
            assert_eq!(
                contains_escaped_amp(text.as_bytes()),
                text.contains("&amp;")
            );
        }
        assert_eq!(strip_scheme("HTTPS://a/b"), Some("a/b"));
        assert_eq!(strip_scheme("hTTp://a/b"), Some("a/b"));
        assert_eq!(strip_scheme("http://é"), Some("é"));
        assert_eq!(strip_scheme("//a"), Some("a"));
        assert_eq!(strip_scheme("https:/a"), None);
        assert_eq!(strip_scheme("ftp://a"), None);
        assert_eq!(split_url("h:1/p/q?x=1#f?g"), ("h:1", "/p/q", "x=1"));
        assert_eq!(split_url("h#f/x?y"), ("h", "", ""));
        assert_eq!(split_url("h?a/b"), ("h", "", "a/b"));
        assert!(may_hold_click_token(b"/x?c={CLICKID}"));
        assert!(!may_hold_click_token(b"/x?c={other}"));
        assert!(!may_hold_click_token(b"/x?id=1"));
    }

    #[test]
    fn meta_refresh_urls_are_found() {
        assert_eq!(
            split_meta_refresh("5; url=https://a.example/x"),
            Some(("5; url=", "https://a.example/x", ""))
        );
        assert_eq!(
            split_meta_refresh("0;URL='https://a.example/x' "),
            Some(("0;URL='", "https://a.example/x", "' "))
        );
        assert_eq!(split_meta_refresh("5"), None);
        assert_eq!(split_meta_refresh("url"), None);
    }
}
