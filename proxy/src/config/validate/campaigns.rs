//! `[[campaigns]]`: origins, routing to offers, attribution, rewriting.

use super::*;

/// `campaigns[].origin.timeout`: a positive duration up to [`super::MAX_ORIGIN_TIMEOUT`],
/// for an upstream only (lander files are read locally).
pub(super) fn origin_timeout(i: usize, raw: &RawOrigin, p: &mut Problems) -> Duration {
    let key = format!("campaigns[{i}].origin.timeout");
    let timeout = duration_field(&key, &raw.timeout, super::DEFAULT_ORIGIN_TIMEOUT, p);
    if raw.timeout.is_some() && raw.upstream.is_none() {
        p.add(
            key,
            "timeout is set for a landers directory",
            "remove it: only an upstream origin is waited for",
        );
    } else if timeout > super::MAX_ORIGIN_TIMEOUT {
        p.add(
            key,
            format!("{timeout:?} is longer than the 10m limit"),
            "use a timeout like \"30s\": a visitor does not wait minutes for a landing page",
        );
        return super::MAX_ORIGIN_TIMEOUT;
    }
    timeout
}

pub(super) fn origin(
    i: usize,
    raw: &RawOrigin,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Origin> {
    match (&raw.upstream, &raw.landers) {
        (Some(up), None) => {
            let lower = up.get(..8).unwrap_or(up).to_ascii_lowercase();
            let (tls, rest) = if lower.starts_with("https://") {
                (true, &up[8..])
            } else if lower.starts_with("http://") {
                (false, &up[7..])
            } else {
                p.add(
                    format!("campaigns[{i}].origin.upstream"),
                    format!("{up:?} is not an http:// or https:// URL"),
                    "write the origin like \"http://10.0.0.5:8080\" or \"https://lp.example.com\"",
                );
                return None;
            };
            let (authority, base_path) = match rest.find('/') {
                Some(j) => (&rest[..j], rest[j..].trim_end_matches('/').to_string()),
                None => (rest, String::new()),
            };
            let has_port = authority.rsplit_once(':').is_some_and(|(h, port)| {
                !h.is_empty() && !h.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit())
            });
            let with_port = if has_port {
                authority.to_string()
            } else {
                format!("{authority}:{}", if tls { 443 } else { 80 })
            };
            let host = if has_port {
                authority.rsplit_once(':').map_or(authority, |(h, _)| h)
            } else {
                authority
            };
            let sni = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            if raw.verify_tls.is_some() && !tls {
                p.add(
                    format!("campaigns[{i}].origin.verify_tls"),
                    "verify_tls is set for a plain http:// upstream",
                    "remove it, or use an https:// upstream",
                );
            }
            let forwarded_headers = match raw.forwarded_headers.as_deref() {
                None => ForwardedHeaders::default(),
                Some(text) => ForwardedHeaders::parse(text).unwrap_or_else(|| {
                    p.add(
                        format!("campaigns[{i}].origin.forwarded_headers"),
                        format!("{text:?} is not a forwarding-header choice"),
                        format!("use {}", ForwardedHeaders::CHOICES),
                    );
                    ForwardedHeaders::default()
                }),
            };
            match with_port.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                Some(addr) => Some(Origin::Upstream {
                    forwarded_headers,
                    addr,
                    tls,
                    verify_tls: raw.verify_tls.unwrap_or(true),
                    host_header: authority.to_string(),
                    sni,
                    base_path,
                }),
                None => {
                    p.add(
                        format!("campaigns[{i}].origin.upstream"),
                        format!("cannot resolve {authority:?}"),
                        "use a resolvable host:port",
                    );
                    None
                }
            }
        }
        (None, Some(dir)) => {
            if raw.forwarded_headers.is_some() {
                p.add(
                    format!("campaigns[{i}].origin.forwarded_headers"),
                    "forwarded_headers is set for a landers directory",
                    "remove it: only an upstream origin is sent forwarding headers",
                );
            }
            let root = base_dir.join(dir);
            if !root.is_dir() {
                p.add(format!("campaigns[{i}].origin.landers"), format!("{} is not a directory", root.display()), "point it at the directory holding the landing pages (relative paths start at the config file's directory)");
                return None;
            }
            match root.canonicalize() {
                Ok(root) => Some(Origin::Landers { root }),
                Err(e) => {
                    p.add(
                        format!("campaigns[{i}].origin.landers"),
                        format!("cannot resolve {}: {e}", root.display()),
                        "check the directory's permissions",
                    );
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            p.add(
                format!("campaigns[{i}].origin"),
                "both upstream and landers are set",
                "keep one: an upstream URL or a landers directory",
            );
            None
        }
        (None, None) => {
            p.add(
                format!("campaigns[{i}].origin"),
                "no origin",
                "set origin.upstream = \"http://host:port\" or origin.landers = \"dir\"",
            );
            None
        }
    }
}

pub(super) fn campaigns(
    raw: &[RawCampaign],
    sources: &[SourceConfig],
    offers: &[Offer],
    declared: &Declared,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<Campaign> {
    let mut seen = HashSet::new();
    let mut routes = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        check_id(
            "campaign",
            &format!("campaigns[{i}].id"),
            &c.id,
            &mut seen,
            p,
        );
        let path = c.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.contains("..") {
            p.add(
                format!("campaigns[{i}].path"),
                format!("{path:?} is not a plain absolute path"),
                "write a path prefix like \"/summer\"",
            );
        }
        let path = if path.len() > 1 {
            path.trim_end_matches('/').to_string()
        } else {
            path
        };
        for reserved in ["/go", "/postback", "/px", "/sdk"] {
            if path == reserved || path.starts_with(&format!("{reserved}/")) {
                p.add(
                    format!("campaigns[{i}].path"),
                    format!("{path} is reserved for clickstamp's own routes"),
                    "choose another landing path",
                );
            }
        }
        let host = c.host.as_ref().map(|h| h.to_ascii_lowercase());
        if !routes.insert((host.clone(), path.clone())) {
            p.add(
                format!("campaigns[{i}].path"),
                format!(
                    "another campaign already answers on {}{path}",
                    host.as_deref().unwrap_or("any host ")
                ),
                "give each campaign its own host + path",
            );
        }
        let source = sources.iter().position(|s| s.id == c.traffic_source);
        if source.is_none() {
            unknown_reference(
                format!("campaigns[{i}].traffic_source"),
                "traffic source",
                "traffic_sources",
                &c.traffic_source,
                &declared.sources,
                p,
            );
        }
        let mut campaign_offers = Vec::new();
        for (j, r) in c.offers.iter().enumerate() {
            match offers.iter().position(|o| o.id == r.offer) {
                Some(o) => campaign_offers.push((o, r.weight.unwrap_or(1))),
                None => unknown_reference(
                    format!("campaigns[{i}].offers[{j}].offer"),
                    "offer",
                    "offers",
                    &r.offer,
                    &declared.offers,
                    p,
                ),
            }
        }
        if c.offers.is_empty() {
            p.add(
                format!("campaigns[{i}].offers"),
                "the campaign has no offers",
                "list at least one { offer = \"id\", weight = 1 }",
            );
        } else if c
            .offers
            .iter()
            .map(|r| r.weight.unwrap_or(1) as u64)
            .sum::<u64>()
            == 0
        {
            p.add(
                format!("campaigns[{i}].offers"),
                "offer weights sum to 0, so no offer can ever be picked",
                "give at least one offer a positive weight",
            );
        }
        let attribution_window = match &c.attribution_window {
            None => DEFAULT_ATTRIBUTION_WINDOW,
            Some(w) => parse_duration(w).unwrap_or_else(|| {
                p.add(
                    format!("campaigns[{i}].attribution_window"),
                    format!("{w:?} is not a duration"),
                    "write a positive duration like \"30d\", \"12h\", \"90m\"",
                );
                DEFAULT_ATTRIBUTION_WINDOW
            }),
        };
        if let Some(cost) = c.cost {
            if !cost.is_finite() || cost < 0.0 {
                p.add(
                    format!("campaigns[{i}].cost"),
                    format!("cost {cost} is negative or not a number"),
                    "use the cost per click, e.g. 0.02, or leave it out",
                );
            }
        }
        let origin = origin(i, &c.origin, base_dir, p);
        let origin_timeout = origin_timeout(i, &c.origin, p);
        let rewrite = rewrite_settings(i, &c.rewrite, p);
        let quality = super::traffic::quality_policy(i, c.quality.as_deref(), &mut p.0);
        let routing =
            super::routing::routing(i, c.routing.as_ref(), &campaign_offers, offers, &mut p.0);
        if let (Some(source), Some(origin)) = (source, origin) {
            out.push(Campaign {
                id: c.id.clone(),
                host,
                path,
                source,
                offers: campaign_offers,
                origin,
                origin_timeout,
                attribution_window,
                cost: c.cost,
                direct_linking: c.direct_linking.unwrap_or(true),
                rewrite,
                quality,
                routing,
            });
        }
    }
    out
}

pub(super) fn offer_match_urls(i: usize, raw: &[String], p: &mut Problems) -> Vec<String> {
    for (j, m) in raw.iter().enumerate() {
        if let Err(e) = crate::rewrite::links::OfferPattern::parse(m) {
            p.add(
                format!("offers[{i}].match[{j}]"),
                e.to_string(),
                "write a host and path prefix like \"go.network.example/offer\" or a full offer URL",
            );
        }
    }
    raw.to_vec()
}

pub(super) fn rewrite_settings(
    i: usize,
    raw: &RawRewrite,
    p: &mut Problems,
) -> crate::rewrite::RewriteSettings {
    use crate::rewrite::{LinkMode, RewriteSettings};
    let d = RewriteSettings::default();
    let links = match raw.links.as_deref() {
        None | Some("stamp") => LinkMode::Stamp,
        Some("go") => LinkMode::Go,
        Some(other) => {
            p.add(
                format!("campaigns[{i}].rewrite.links"),
                format!("unknown link mode {other:?}"),
                "use \"stamp\" (stamp the click ID into offer links) or \"go\" (send them through /go/{offer})",
            );
            LinkMode::Stamp
        }
    };
    let sdk_src = raw.sdk_src.clone().unwrap_or(d.sdk_src);
    if sdk_src.is_empty() || sdk_src.contains(['"', '<', '>', ' ', '\n']) {
        p.add(
            format!("campaigns[{i}].rewrite.sdk_src"),
            format!("{sdk_src:?} is not a usable script URL"),
            "write a path or URL without quotes, spaces or angle brackets, e.g. \"/sdk/clickstamp.js\"",
        );
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(d.max_body_bytes);
    if max_body_bytes == 0 || max_body_bytes > 256 << 20 {
        p.add(
            format!("campaigns[{i}].rewrite.max_body_bytes"),
            format!("{max_body_bytes} bytes"),
            "use 1 byte to 256 MiB (2097152 suits landing pages; larger pages pass through untouched)",
        );
    }
    let max_memory_bytes = raw.max_memory_bytes.unwrap_or(d.max_memory_bytes);
    if !(4096..=64 << 20).contains(&max_memory_bytes) {
        p.add(
            format!("campaigns[{i}].rewrite.max_memory_bytes"),
            format!("{max_memory_bytes} bytes"),
            "use 4096 bytes to 64 MiB (262144 is plenty: only one tag at a time is buffered)",
        );
    }
    let template_cache_bytes = raw.template_cache_bytes.unwrap_or(d.template_cache_bytes);
    if template_cache_bytes > 1 << 30 {
        p.add(
            format!("campaigns[{i}].rewrite.template_cache_bytes"),
            format!("{template_cache_bytes} bytes"),
            "use 0 (off) to 1 GiB (4194304 holds dozens of landing pages)",
        );
    }
    RewriteSettings {
        enabled: raw.enabled.unwrap_or(d.enabled),
        template_cache_bytes,
        links,
        inject_sdk: raw.inject_sdk.unwrap_or(d.inject_sdk),
        sdk_src,
        max_body_bytes,
        max_memory_bytes,
        recompress: raw.recompress.unwrap_or(d.recompress),
    }
}
