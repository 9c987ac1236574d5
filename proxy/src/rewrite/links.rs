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
        // Most links on a page are none of ours: decide that without allocating.
        let may_hold_token = url
            .bytes()
            .any(|b| matches!(b, b'{' | b'#' | b'[' | b'$' | b'!' | b'<' | b'%' | b'@'));
        if !may_hold_token && self.offer_for(url.trim()).is_none() {
            return None;
        }
        let escaped_amps = url.contains("&amp;");
        let plain: std::borrow::Cow<'_, str> = if escaped_amps {
            url.replace("&amp;", "&").into()
        } else {
            url.into()
        };
        let trimmed = plain.trim();
        let offer = self.offer_for(trimmed);
        let has_token = may_hold_token && has_click_token(trimmed);
        let out = match (offer, has_token) {
            (Some(o), _) if self.mode == LinkMode::Go => {
                format!("/go/{}?click={click_id}", o.id)
            }
            (_, true) => replace_click_tokens(trimmed, click_id),
            (Some(o), false) => match trimmed.strip_prefix("//") {
                // Protocol-relative: stamp as https, then give the scheme back to the page.
                Some(rest) => o
                    .network
                    .stamp_offer_url(&format!("https://{rest}"), click_id)
                    .ok()?
                    .split_off("https:".len()),
                None => o.network.stamp_offer_url(trimmed, click_id).ok()?,
            },
            (None, false) => return None,
        };
        if out == url {
            return None;
        }
        Some(if escaped_amps {
            out.replace('&', "&amp;")
        } else {
            out
        })
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
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") {
        url.get(8..)
    } else if lower.starts_with("http://") {
        url.get(7..)
    } else {
        url.strip_prefix("//")
    }
}

/// `(authority, path, query)` of a URL with the scheme removed.
fn split_url(rest: &str) -> (&str, &str, &str) {
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(host_end);
    let tail = tail.split('#').next().unwrap_or("");
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    (host, path, query)
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
