//! The running config, secrets left out. Built field by field rather than from the
//! config's `Debug` form, so a secret added to the config later is not shown until
//! someone decides it may be.

use super::html::{escape, table};
use super::{Ctx, Reply};
use crate::config::{Origin, StoreBackend};

/// What is shown in place of a secret.
const HIDDEN: &str = "‹hidden›";

/// A URL with its query values, user info and fragment hidden: a source's postback
/// template often carries its API key. `{macro}` values stay: they are not secrets.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{HIDDEN}@{host}{path}"),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let Some(query) = query else { return base };
    let query = query.split('#').next().unwrap_or("");
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if v.starts_with('{') && v.ends_with('}') => format!("{k}={v}"),
            Some((k, _)) => format!("{k}={HIDDEN}"),
            None => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// `GET /console/config`
pub fn page(ctx: &Ctx<'_>) -> Reply {
    let c = ctx.config();
    let s = &c.server;
    let mut general = vec![
        ("server.listen", s.listen.to_string()),
        ("server.admin_listen", s.admin_listen.to_string()),
        ("server.public_url", s.public_url.clone()),
        ("server.threads", s.threads.to_string()),
        (
            "server.client_ip_header",
            s.client_ip_header.clone().unwrap_or_else(|| "–".into()),
        ),
        ("server.max_connections", s.max_connections.to_string()),
        ("server.cookie_prefix", s.cookie_prefix.clone()),
        (
            "store.backend",
            match &c.store.backend {
                StoreBackend::Sqlite => format!("sqlite ({})", c.store.path.display()),
                StoreBackend::Postgres(pg) => {
                    format!("postgres (url {HIDDEN}, pool_size {})", pg.pool_size)
                }
            },
        ),
        ("store.durability", format!("{:?}", c.store.durability)),
        ("secrets.admin_token", HIDDEN.into()),
        ("secrets.click_id_key", HIDDEN.into()),
        ("outbox.max_attempts", c.outbox.max_attempts.to_string()),
        ("outbox.max_age", format!("{:?}", c.outbox.max_age)),
        ("outbox.timeout", format!("{:?}", c.outbox.timeout)),
        (
            "postbacks.max_body_bytes",
            c.postbacks.max_body_bytes.to_string(),
        ),
        (
            "postbacks.allow_cross_network",
            c.postbacks.allow_cross_network.to_string(),
        ),
        ("pixel.grace_period", format!("{:?}", c.pixel.grace_period)),
        ("pixel.allowed_origins", c.pixel.allowed_origins.join(", ")),
        (
            "tls.listen",
            c.tls
                .as_ref()
                .map_or_else(|| "–".into(), |t| t.listen.to_string()),
        ),
    ];
    if let Some(a) = &c.analytics {
        general.push((
            "analytics.clickhouse",
            format!(
                "{} database {} (password {HIDDEN})",
                redact_url(&a.clickhouse.url),
                a.clickhouse.database
            ),
        ));
    }
    let general: Vec<Vec<String>> = general
        .into_iter()
        .map(|(k, v)| vec![format!("<code>{}</code>", escape(k)), escape(&v)])
        .collect();
    let networks: Vec<Vec<String>> = c
        .networks
        .iter()
        .map(|n| {
            let v = &n.verification;
            let mut auth = Vec::new();
            if let Some((param, _)) = &v.secret {
                auth.push(format!("shared secret in {param} = {HIDDEN}"));
            }
            if let Some(h) = &v.hmac {
                auth.push(format!("HMAC in {} (key {HIDDEN})", h.signature_param));
            }
            if auth.is_empty() {
                auth.push("none".into());
            }
            vec![
                escape(&n.id),
                escape(n.plugin.click_id_param()),
                escape(&auth.join("; ")),
            ]
        })
        .collect();
    let sources: Vec<Vec<String>> = c
        .sources
        .iter()
        .map(|src| {
            vec![
                escape(&src.id),
                format!(
                    "<code class=\"raw\">{}</code>",
                    escape(
                        &src.plugin
                            .postback_template()
                            .map_or_else(|| "–".into(), redact_url)
                    )
                ),
            ]
        })
        .collect();
    let offers: Vec<Vec<String>> = c
        .offers
        .iter()
        .map(|o| {
            vec![
                escape(&o.id),
                escape(&c.networks[o.network].id),
                format!("<code class=\"raw\">{}</code>", escape(&redact_url(&o.url))),
                o.payout.map_or_else(|| "–".into(), |p| p.to_string()),
            ]
        })
        .collect();
    let campaigns: Vec<Vec<String>> = c
        .campaigns
        .iter()
        .map(|camp| {
            let offers: Vec<&str> = camp
                .offers
                .iter()
                .map(|(i, _)| c.offers[*i].id.as_str())
                .collect();
            let origin = match &camp.origin {
                Origin::Upstream { host_header, .. } => format!("upstream {host_header}"),
                Origin::Landers { root } => format!("landers {}", root.display()),
            };
            vec![
                escape(&camp.id),
                escape(&format!(
                    "{}{}",
                    camp.host.as_deref().unwrap_or("*"),
                    camp.path
                )),
                escape(&c.sources[camp.source].id),
                escape(&offers.join(", ")),
                escape(&origin),
                escape(&format!("{:?}", camp.attribution_window)),
                camp.direct_linking.to_string(),
            ]
        })
        .collect();
    let body = format!(
        "<p class=\"hint\">The config this process runs, secrets hidden (query values of URLs too).</p>{}\
<h2>Networks</h2>{}<h2>Traffic sources</h2>{}<h2>Offers</h2>{}<h2>Campaigns</h2>{}",
        table("config-general", &["key", "value"], &general),
        table(
            "config-networks",
            &["id", "click id parameter", "authentication"],
            &networks
        ),
        table("config-sources", &["id", "postback URL"], &sources),
        table(
            "config-offers",
            &["id", "network", "url", "payout"],
            &offers
        ),
        table(
            "config-campaigns",
            &[
                "id",
                "host and path",
                "source",
                "offers",
                "origin",
                "attribution window",
                "direct linking"
            ],
            &campaigns
        ),
    );
    ctx.page("Running config", "/console/config", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets_but_keep_their_macros() {
        assert_eq!(
            redact_url("https://src.example/conv?key=abc123&cid={source_click_id}"),
            format!("https://src.example/conv?key={HIDDEN}&cid={{source_click_id}}")
        );
        assert_eq!(
            redact_url("http://user:pw@ch.example:8123/"),
            format!("http://{HIDDEN}@ch.example:8123/")
        );
        assert_eq!(redact_url("http://a.example/x"), "http://a.example/x");
    }
}
