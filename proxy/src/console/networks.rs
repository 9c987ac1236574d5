//! Per network: the postback URL to paste into its dashboard (with a copy button),
//! and "send a test postback", the round trip of `clickstamp postback-test` (a click
//! minted through `/go`, then the network's postback and its duplicate sent to the
//! main listener). Per campaign: the URL to paste into its traffic source
//! (`clickstamp campaign-url`).

use super::html::{self, escape, post_button};
use super::{Ctx, Reply};
use crate::cli::ops;
use http::StatusCode;
use std::fmt::Write;

/// `GET /console/networks`, with the result of a test postback when one just ran.
pub fn page(ctx: &Ctx<'_>, result: Option<String>) -> Reply {
    let config = ctx.config();
    let mut body = result.unwrap_or_default();
    body.push_str("<p class=\"hint\">Paste a network's URL into its postback settings; it carries the network's shared secret when one is configured.</p>");
    for (i, net) in config.networks.iter().enumerate() {
        let url = match ops::postback_url(&config, &net.id) {
            Ok(u) => u,
            Err(e) => e.to_string(),
        };
        let _ = write!(
            body,
            "<section class=\"network\" id=\"network-{i}\"><h2>{}</h2>\
<div class=\"copy-row\"><input readonly class=\"postback-url\" id=\"postback-url-{i}\" value=\"{}\">\
<button type=\"button\" class=\"copy\" data-copy=\"postback-url-{i}\">Copy</button></div>{}</section>",
            escape(&net.id),
            escape(&url),
            post_button(
                &format!("/console/networks/{}/test", html::url_value(&net.id)),
                &ctx.session.csrf,
                "Send a test postback",
                "test-postback",
                &[]
            )
        );
    }
    if config.networks.is_empty() {
        body.push_str(&html::notice("ok", "No network is configured."));
    }
    body.push_str("<h2>Campaign URLs</h2><p class=\"hint\">Paste a campaign's URL into its traffic source as the ad's target: the source fills its own macros (its click ID, cost, sub IDs) on every click.</p>");
    for (i, campaign) in config.campaigns.iter().enumerate() {
        let url = match ops::campaign_url(&config, &campaign.id) {
            Ok(u) => u,
            Err(e) => e.to_string(),
        };
        let _ = write!(
            body,
            "<section class=\"campaign\" id=\"campaign-{i}\"><h3>{} <span class=\"hint\">from {}</span></h3>\
<div class=\"copy-row\"><input readonly class=\"campaign-url\" id=\"campaign-url-{i}\" value=\"{}\">\
<button type=\"button\" class=\"copy\" data-copy=\"campaign-url-{i}\">Copy</button></div></section>",
            escape(&campaign.id),
            escape(&config.sources[campaign.source].id),
            escape(&url),
        );
    }
    ctx.page("Networks", "/console/networks", &body)
}

/// `POST /console/networks/<id>/test`
pub async fn test(ctx: &Ctx<'_>, encoded_id: &str) -> Reply {
    let id = percent_encoding::percent_decode_str(encoded_id)
        .decode_utf8_lossy()
        .into_owned();
    let config = ctx.config();
    if !config.networks.iter().any(|n| n.id == id) {
        let mut reply = page(
            ctx,
            Some(html::notice(
                "error",
                &format!("No network {id:?} in the config."),
            )),
        );
        reply.status = StatusCode::NOT_FOUND;
        return reply;
    }
    // The round trip uses a blocking HTTP client against our own main listener.
    let run = tokio::task::spawn_blocking(move || ops::postback_test(&config, &id)).await;
    let result = match run {
        Ok(Ok(run)) => {
            let ok = run.first.0 == 200 && run.second.0 == 200;
            format!(
                "{}<dl id=\"test-result\"><dt>click</dt><dd><a href=\"/console/explain?click={}\">{}</a></dd>\
<dt>postback</dt><dd><code class=\"raw\">{}</code></dd>\
<dt>first answer</dt><dd>{} <code>{}</code></dd><dt>duplicate's answer</dt><dd>{} <code>{}</code></dd></dl>",
                if ok {
                    html::notice("ok", "The test postback was accepted, and its duplicate recognised. It was a test click: kept out of the reports, not relayed to the traffic source.")
                } else {
                    html::notice("error", "The test postback was not accepted: see the answers below.")
                },
                html::url_value(&run.click_id),
                escape(&run.click_id),
                escape(&run.url),
                run.first.0,
                escape(&run.first.1.to_string()),
                run.second.0,
                escape(&run.second.1.to_string()),
            )
        }
        Ok(Err(e)) => html::notice("error", &format!("The test postback failed: {e}")),
        Err(e) => html::notice("error", &format!("The test postback failed: {e}")),
    };
    page(ctx, Some(result))
}
