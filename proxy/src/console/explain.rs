//! The click explainer: paste a click ID, see why it is refused or everything the
//! store holds for it (the click, the offers `/go` sent it to, its conversions and
//! their relays). The verdict is the admin API's own (`GET /api/clicks/<id>`).

use super::html::{self, escape, escape_or_dash, table};
use super::journal::{api_message, outbox_row};
use super::{Ctx, Reply};
use clickstamp_plugins::query::{first_value, parse_query};
use serde_json::Value;

/// `GET /console/explain?click=<id>`
pub async fn page(ctx: &Ctx<'_>, query: &str) -> Reply {
    let q = parse_query(query);
    let click = first_value(&q, "click").unwrap_or("").trim().to_string();
    let form = format!(
        "<form method=\"get\" action=\"/console/explain\" id=\"explain-form\" class=\"filters\">\
<label>Click ID <input name=\"click\" id=\"click\" size=\"48\" value=\"{}\" placeholder=\"paste a click ID\"></label>\
<button type=\"submit\">Explain</button></form>",
        escape(&click)
    );
    if click.is_empty() {
        return ctx.page("Explain a click", "/console/explain", &form);
    }
    let (_, verdict) = ctx.admin.click(&click).await;
    let mut body = form;
    if verdict["valid"] == Value::Bool(false) {
        body.push_str(&format!(
            "<section id=\"verdict\" class=\"refused\"><h2>Refused: <code>{}</code></h2><p>{}</p></section>",
            escape_or_dash(verdict["error"].as_str()),
            escape_or_dash(verdict["message"].as_str())
        ));
        return ctx.page("Explain a click", "/console/explain", &body);
    }
    if verdict.get("click_id").is_none() {
        body.push_str(&format!(
            "<section id=\"verdict\" class=\"refused\"><h2>{}</h2><p>{}</p></section>",
            escape_or_dash(verdict["error"].as_str()),
            escape(&api_message(&verdict))
        ));
        return ctx.page("Explain a click", "/console/explain", &body);
    }
    let field = |k: &str| match &verdict[k] {
        Value::Null => "–".to_string(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    };
    let offers: Vec<String> = verdict["outbound_offers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(escape)
        .collect();
    body.push_str(&format!(
        "<section id=\"verdict\" class=\"valid\"><h2>A genuine, stored click</h2><dl>\
<dt>click ID</dt><dd><code>{}</code></dd><dt>time (UTC)</dt><dd>{}</dd>\
<dt>campaign</dt><dd>{}</dd><dt>traffic source</dt><dd>{}</dd><dt>source's click ID</dt><dd>{}</dd>\
<dt>cost</dt><dd>{}</dd><dt>sent to offers (outbound clicks)</dt><dd id=\"outbound\">{}</dd></dl></section>",
        field("click_id"),
        verdict["ts_ms"]
            .as_u64()
            .map_or_else(|| "–".into(), html::utc_time),
        field("campaign"),
        field("source"),
        field("source_click_id"),
        field("cost"),
        if offers.is_empty() {
            "none (no /go yet)".to_string()
        } else {
            offers.join(", ")
        }
    ));
    let click_id = verdict["click_id"].as_str().unwrap_or(&click).to_string();
    let store = &ctx.tracker.store;
    match store.conversions_for_click(&click_id).await {
        Ok(conversions) => {
            let rows: Vec<Vec<String>> = conversions
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        html::utc_time(c.created_ms),
                        escape_or_dash(c.network_id.as_deref()),
                        escape_or_dash(c.offer_id.as_deref()),
                        escape(&c.event),
                        escape_or_dash(c.txid.as_deref()),
                        c.payout.map_or_else(|| "–".into(), |p| p.to_string()),
                        escape_or_dash(c.currency.as_deref()),
                        escape(&c.status),
                        escape(&c.origin),
                        c.duplicates.to_string(),
                    ]
                })
                .collect();
            body.push_str("<h2>Conversions</h2>");
            body.push_str(&table(
                "conversions",
                &[
                    "#",
                    "time (UTC)",
                    "network",
                    "offer",
                    "event",
                    "txid",
                    "payout",
                    "currency",
                    "status",
                    "origin",
                    "duplicates",
                ],
                &rows,
            ));
        }
        Err(e) => body.push_str(&html::notice("error", &format!("conversions: {e}"))),
    }
    match store.outbox_for_click(&click_id).await {
        Ok(entries) => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .filter_map(|e| serde_json::to_value(e).ok())
                .map(|e| outbox_row(ctx, &e))
                .collect();
            body.push_str("<h2>Relays</h2>");
            body.push_str(&table(
                "relays",
                &[
                    "#",
                    "created (UTC)",
                    "source",
                    "click",
                    "state",
                    "attempts",
                    "last attempt",
                    "url",
                    "",
                ],
                &rows,
            ));
        }
        Err(e) => body.push_str(&html::notice("error", &format!("relays: {e}"))),
    }
    ctx.page("Explain a click", "/console/explain", &body)
}
