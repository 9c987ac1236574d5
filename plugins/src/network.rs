//! The `Network` extension point: an affiliate network that sends postbacks to us.

use crate::query::set_query_param;
use std::fmt;

/// Why an offer URL could not be stamped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The offer URL is not an absolute http(s) URL.
    #[error("offer URL {0:?} is not an absolute http(s) URL")]
    NotHttpUrl(String),
}

/// An affiliate network (CAKE, TUNE, Everflow, ... or one described in the config).
///
/// Implementations are pure: no I/O, no clock, no randomness. They are shared across
/// request threads, hence `Send + Sync`.
pub trait Network: Send + Sync + fmt::Debug {
    /// The plugin kind (`"cake"`, `"hasoffers"`, ... or `"custom"`). Stable: it names the
    /// plugin in configs and logs.
    fn kind(&self) -> &str;

    /// The offer-link query parameter that carries our click ID (CAKE `s2`,
    /// HasOffers `aff_sub`, Everflow `sub1`, ...).
    fn click_id_param(&self) -> &str;

    /// Return `offer_url` with `click_id` stamped where this network reads it.
    ///
    /// Guarantees: only the click-ID parameter changes (replaced if present, appended
    /// otherwise, always before any `#fragment`); every other byte of the URL is kept;
    /// the value is percent-encoded exactly once.
    fn stamp_offer_url(&self, offer_url: &str, click_id: &str) -> Result<String, StampError> {
        if !is_absolute_http_url(offer_url) {
            return Err(StampError::NotHttpUrl(offer_url.to_string()));
        }
        Ok(set_query_param(offer_url, self.click_id_param(), click_id))
    }
}

/// True for `http://host...` and `https://host...` with a non-empty host.
pub fn is_absolute_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    !host.is_empty() && !host.contains(['\\', ' ', '@'])
}

/// A network that takes our click ID in one named query parameter. The built-ins that
/// differ only in that name are instances of this; a config-defined network is too.
#[derive(Debug, Clone)]
pub struct ParamNetwork {
    kind: String,
    click_id_param: String,
}

impl ParamNetwork {
    /// A network of `kind` reading our click ID from `click_id_param`.
    pub fn new(kind: impl Into<String>, click_id_param: impl Into<String>) -> Self {
        ParamNetwork {
            kind: kind.into(),
            click_id_param: click_id_param.into(),
        }
    }
}

impl Network for ParamNetwork {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn click_id_param(&self) -> &str {
        &self.click_id_param
    }
}

/// Built-in network kinds and the offer-link parameter each reads our click ID from
/// (see `shared/reference/networks.md`).
pub const BUILTIN_NETWORKS: &[(&str, &str)] = &[
    ("cake", "s2"),
    ("hasoffers", "aff_sub"),
    ("everflow", "sub1"),
    ("affise", "sub1"),
    ("scaleo", "click_id"),
    ("impact", "subId1"),
    ("clickbank", "tid"),
    ("shareasale", "afftrack"),
    ("awin", "clickref"),
    ("monetizer", "clickID"),
];

/// The built-in network of `kind`, if there is one.
pub fn builtin_network(kind: &str) -> Option<Box<dyn Network>> {
    BUILTIN_NETWORKS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(k, p)| Box::new(ParamNetwork::new(*k, *p)) as Box<dyn Network>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cake_stamps_s2_and_keeps_the_rest() {
        let cake = builtin_network("cake").unwrap();
        assert_eq!(
            cake.stamp_offer_url("https://network.example/offer?a=1#x", "c1d")
                .unwrap(),
            "https://network.example/offer?a=1&s2=c1d#x"
        );
    }

    #[test]
    fn non_http_offer_urls_are_refused() {
        let cake = builtin_network("cake").unwrap();
        for bad in [
            "javascript:alert(1)",
            "//evil.example/",
            "ftp://x/",
            "https://",
            "http:///x",
            "https://a\\b",
        ] {
            assert!(cake.stamp_offer_url(bad, "c").is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_kind_is_none() {
        assert!(builtin_network("nope").is_none());
    }
}
