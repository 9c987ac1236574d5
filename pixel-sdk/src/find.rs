//! Where the visitor's click ID is: the landing URL, the proxy's first-party cookie,
//! or what the loader stored in localStorage on an earlier page.

use crate::shape::normalize_click_id;
use clickstamp_plugins::query::parse_query;

/// URL parameters that may carry the click ID, in the order they are tried: ours
/// first, then the names operators most often pass it through an offer under.
pub const CLICK_ID_PARAMS: [&str; 4] = ["cs_cid", "cid", "clickid", "click_id"];

/// Prefix of the proxy's per-campaign click cookie (`server.cookie_prefix`'s default).
pub const COOKIE_PREFIX: &str = "cs_";

/// The visitor's click ID in the 32-lowercase-hex form, if any source holds one.
///
/// `search` is `location.search` (a leading `?` is optional), `cookies` is
/// `document.cookie`, `stored` is localStorage's `clickstamp_cid`. Sources are tried
/// in this order and the first value with a click ID's shape wins:
/// 1. the parameters [`CLICK_ID_PARAMS`], each name in turn (first occurrence of it);
/// 2. cookies named `cs_*`, in document order;
/// 3. `stored`.
///
/// A malformed value is skipped, never returned: the fresher source only wins when it
/// actually holds a click ID.
pub fn find_click_id(search: &str, cookies: &str, stored: Option<&str>) -> Option<String> {
    from_search(search)
        .or_else(|| from_cookies(cookies))
        .or_else(|| stored.and_then(normalize_click_id))
}

fn from_search(search: &str) -> Option<String> {
    let pairs = parse_query(search.strip_prefix('?').unwrap_or(search));
    CLICK_ID_PARAMS.iter().find_map(|name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| normalize_click_id(v))
    })
}

fn from_cookies(cookies: &str) -> Option<String> {
    cookies.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().starts_with(COOKIE_PREFIX) {
            return None;
        }
        // RFC 6265 allows a value in double quotes; the proxy never quotes, others might.
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        normalize_click_id(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b";
    const B: &str = "0190a1b2c3d47e5f9a9b0c1d2e3f4a5c";
    const C: &str = "0190a1b2c3d47e5fab9b0c1d2e3f4a5d";
    const A_HYPH: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn url_params_are_tried_in_order_and_win_over_cookies_and_storage() {
        let search = format!("?click_id={C}&cid={B}&cs_cid={A}");
        assert_eq!(
            find_click_id(&search, &format!("cs_x={B}"), Some(C)).as_deref(),
            Some(A)
        );
        assert_eq!(
            find_click_id(&format!("clickid={C}&cid={B}"), "", None).as_deref(),
            Some(B)
        );
        assert_eq!(
            find_click_id(&format!("utm=x&click_id={C}"), "", None).as_deref(),
            Some(C)
        );
    }

    #[test]
    fn malformed_values_fall_through_to_the_next_source() {
        let search = "?cs_cid=nope&cid=12345";
        assert_eq!(
            find_click_id(search, &format!("cs_1=junk; cs_2={B}"), Some(C)).as_deref(),
            Some(B)
        );
        assert_eq!(
            find_click_id(search, "cs_1=junk", Some(A_HYPH)).as_deref(),
            Some(A)
        );
        assert_eq!(find_click_id(search, "cs_1=junk", Some("junk")), None);
        assert_eq!(find_click_id("", "", None), None);
    }

    #[test]
    fn percent_encoded_hyphenated_ids_in_the_url_are_normalised() {
        let search = "?cs_cid=0190A1B2%2DC3D4-7E5F-8A9B-0C1D2E3F4A5B";
        assert_eq!(find_click_id(search, "", None).as_deref(), Some(A));
    }

    #[test]
    fn only_cs_prefixed_cookies_count() {
        let cookies = format!("session={A}; other_cs_x={B}; cs_camp=\"{C}\"");
        assert_eq!(find_click_id("", &cookies, None).as_deref(), Some(C));
        assert_eq!(find_click_id("", &format!("sid={A}"), None), None);
    }
}
