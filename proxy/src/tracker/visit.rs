//! What a visitor's request tells us: query, cookies, address, user agent, referrer.

use clickstamp_plugins::query::parse_query;

/// The parts of a request the tracker reads, framework-independent.
#[derive(Debug, Clone, Default)]
pub struct Visit {
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The raw `Cookie` header(s), joined with `; `.
    pub cookies: String,
    /// Client address (after trusted-proxy resolution).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
}

impl Visit {
    /// A visit from a raw query string and headers.
    pub fn new(
        raw_query: Option<&str>,
        cookies: String,
        ip: Option<String>,
        user_agent: Option<String>,
        referrer: Option<String>,
    ) -> Self {
        Visit {
            query: raw_query.map(parse_query).unwrap_or_default(),
            cookies,
            ip,
            user_agent,
            referrer,
        }
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
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
        assert_eq!(cookie_value(h, "cs_demo"), Some("abc"));
        assert_eq!(cookie_value(h, "other"), Some("x"));
        assert_eq!(cookie_value(h, "cs_dem"), None);
        assert_eq!(cookie_value("", "a"), None);
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
}
