//! What a visitor's request tells us: query, cookies, address, user agent, referrer.

use clickstamp_plugins::query::parse_query_bytes;

/// The parts of a request the tracker reads, framework-independent.
#[derive(Debug, Clone, Default)]
pub struct Visit {
    /// Decoded query pairs, in order (only those whose key and value are UTF-8).
    pub query: Vec<(String, String)>,
    /// Query pairs left out because, once percent-decoded, they are not UTF-8: such a
    /// value is never replaced by look-alike text (two different source click ids
    /// would become one), so the source never sees it and the click is recorded
    /// without it.
    pub dropped_params: usize,
    /// The raw `Cookie` header(s), joined with `; `.
    pub cookies: String,
    /// Client address (after trusted-proxy resolution).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    /// Accept-Language and Client Hints, for traffic quality and routing.
    pub signals: crate::traffic::HeaderSignals,
    /// The [`crate::tracker::test_click::HEADER`] value, if sent: a test click's mark,
    /// checked against the admin token when the click is recorded.
    pub test_click_marker: Option<String>,
}

impl Visit {
    /// The same visit with its Accept-Language and Client Hints read through `header`.
    pub fn with_signals(mut self, header: impl Fn(&str) -> Option<String>) -> Self {
        self.signals = crate::traffic::HeaderSignals::from_headers(header);
        self
    }

    /// The same visit with the test-click header's value (see
    /// [`crate::tracker::test_click`]).
    pub fn with_test_marker(mut self, marker: Option<String>) -> Self {
        self.test_click_marker = marker;
        self
    }

    /// A visit from a raw query string and headers.
    pub fn new(
        raw_query: Option<&str>,
        cookies: String,
        ip: Option<String>,
        user_agent: Option<String>,
        referrer: Option<String>,
    ) -> Self {
        let mut query = Vec::new();
        let mut dropped_params = 0;
        for (key, value) in parse_query_bytes(raw_query.unwrap_or("").as_bytes()) {
            match (String::from_utf8(key), String::from_utf8(value)) {
                (Ok(key), Ok(value)) => query.push((key, value)),
                _ => dropped_params += 1,
            }
        }
        Visit {
            query,
            dropped_params,
            cookies,
            ip,
            user_agent,
            referrer,
            signals: Default::default(),
            test_click_marker: None,
        }
    }
}

/// Every value of cookie `name` in a `Cookie` header, in the order sent.
///
/// A name can come more than once (the same cookie set for several paths or domains,
/// or one injected by a sibling subdomain), and the browser sends them all. Callers
/// must not trust the first: they take the first one that verifies
/// ([`crate::tracker::Tracker::click_from_cookie`]), so a forged cookie placed in front
/// cannot push the real click aside.
pub fn cookie_values<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header.split(';').filter_map(move |pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The client address from a trusted forwarding header: the last hop, which is the one
/// our own load balancer appended (earlier entries are client-controlled).
pub fn forwarded_client_ip(header_value: &str) -> Option<String> {
    let last = header_value.rsplit(',').next()?.trim();
    last.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// Whether a request is a page view (which records a click) rather than an asset.
/// Browsers say so in `Sec-Fetch-Dest`; without it, a path without a file extension or
/// ending in `.html`/`.htm` counts as a page.
pub fn is_page_view(method: &str, path: &str, sec_fetch_dest: Option<&str>) -> bool {
    if method != "GET" {
        return false;
    }
    if let Some(dest) = sec_fetch_dest {
        return dest.eq_ignore_ascii_case("document");
    }
    let last = path.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        None => true,
        Some((_, ext)) => ext.eq_ignore_ascii_case("html") || ext.eq_ignore_ascii_case("htm"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        let h = "a=1; cs_demo=abc ; other=\"x\"";
        let first = |h, name| cookie_values(h, name).next();
        assert_eq!(first(h, "cs_demo"), Some("abc"));
        assert_eq!(first(h, "other"), Some("x"));
        assert_eq!(first(h, "cs_dem"), None);
        assert_eq!(first("", "a"), None);
    }

    #[test]
    fn every_cookie_of_a_name_in_order() {
        let h = "cs_demo=forged; a=1;cs_demo=real ; cs_demo_x=other";
        assert_eq!(
            cookie_values(h, "cs_demo").collect::<Vec<_>>(),
            ["forged", "real"]
        );
    }

    #[test]
    fn forwarded_takes_last_hop() {
        assert_eq!(
            forwarded_client_ip("1.1.1.1, 10.0.0.2"),
            Some("10.0.0.2".into())
        );
        assert_eq!(forwarded_client_ip("nonsense"), None);
    }

    #[test]
    fn page_views() {
        assert!(is_page_view("GET", "/demo", None));
        assert!(is_page_view("GET", "/demo/index.html", None));
        assert!(!is_page_view("GET", "/demo/style.css", None));
        assert!(!is_page_view("GET", "/demo", Some("image")));
        assert!(is_page_view("GET", "/demo/app.js", Some("document")));
        assert!(!is_page_view("POST", "/demo", None));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every value of a cookie name comes back, in order, whatever other
            /// cookies (and hostile bytes) surround it.
            #[test]
            fn every_cookie_of_a_name_comes_back_in_order(
                values in proptest::collection::vec("[A-Za-z0-9]{0,40}", 0..4),
                noise in proptest::collection::vec(("[a-z_]{1,6}", "[^;\\x00-\\x1f]{0,20}"), 0..4),
            ) {
                let mut parts: Vec<String> = noise
                    .iter()
                    .filter(|(k, _)| k != "cs_x")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                for (i, v) in values.iter().enumerate() {
                    parts.insert(i.min(parts.len()), format!("cs_x={v}"));
                }
                let header = parts.join("; ");
                let got: Vec<&str> = cookie_values(&header, "cs_x").collect();
                let expected: Vec<&str> = values.iter().map(String::as_str).collect();
                prop_assert_eq!(got, expected);
            }

            /// A query that is not UTF-8 anywhere never yields a pair it did not hold,
            /// and every pair left out is counted.
            #[test]
            fn a_visit_keeps_exactly_the_utf8_pairs(
                pairs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 1..6), proptest::collection::vec(any::<u8>(), 0..6)), 0..6),
            ) {
                let raw = pairs
                    .iter()
                    .map(|(k, v)| format!(
                        "{}={}",
                        clickstamp_plugins::query::encode_query_bytes(k),
                        clickstamp_plugins::query::encode_query_bytes(v)
                    ))
                    .collect::<Vec<_>>()
                    .join("&");
                let visit = Visit::new(Some(&raw), String::new(), None, None, None);
                let kept: Vec<(String, String)> = pairs
                    .iter()
                    .filter_map(|(k, v)| Some((String::from_utf8(k.clone()).ok()?, String::from_utf8(v.clone()).ok()?)))
                    .collect();
                prop_assert_eq!(visit.dropped_params, pairs.len() - kept.len());
                prop_assert_eq!(visit.query, kept);
            }
        }
    }
}
