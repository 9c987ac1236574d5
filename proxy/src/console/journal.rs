//! The postback journal and the outbox, with their replay buttons. Both read and act
//! through the admin API's own handlers, so filters, refusals and replays behave
//! exactly as `GET /api/journal`, `POST /api/journal/<id>/replay` and the outbox
//! endpoints do.

use super::html::{self, escape, escape_or_dash, post_button, table};
use super::{Ctx, Reply};
use clickstamp_plugins::query::{first_value, parse_query};
use serde_json::Value;

/// Outcomes offered in the filter (the API refuses any other).
const OUTCOMES: &[&str] = &["accepted", "duplicate", "status_changed", "rejected"];

/// Outbox states offered in the filter.
const STATES: &[&str] = &["dead", "pending", "delivered"];

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn cell(v: &Value) -> String {
    escape_or_dash(text(v).as_deref())
}

fn time_cell(v: &Value) -> String {
    v.as_u64().map_or_else(|| "–".into(), html::utc_time)
}

/// An `<option>` list for a `<select>`, with `selected` preselected; `""` is "any".
fn options(values: &[&str], selected: &str) -> String {
    let mut out = format!(
        "<option value=\"\"{}>any</option>",
        if selected.is_empty() { " selected" } else { "" }
    );
    for v in values {
        let sel = if *v == selected { " selected" } else { "" };
        out.push_str(&format!(
            "<option value=\"{0}\"{sel}>{0}</option>",
            escape(v)
        ));
    }
    out
}

/// `GET /console/journal?network=&outcome=&reason=&from=&to=&limit=` (`from` and `to`
/// are UTC dates, `to` inclusive; the rest go to the API as they are).
pub async fn journal_page(ctx: &Ctx<'_>, query: &str) -> Reply {
    let q = parse_query(query);
    let given = |k: &str| first_value(&q, k).unwrap_or("").to_string();
    let config = ctx.config();
    let mut networks: Vec<&str> = config.networks.iter().map(|n| n.id.as_str()).collect();
    networks.sort_unstable();
    let filters = format!(
        "<form method=\"get\" action=\"/console/journal\" id=\"journal-filter\" class=\"filters\">\
<label>Network <select name=\"network\">{}</select></label>\
<label>Outcome <select name=\"outcome\">{}</select></label>\
<label>Reason <input name=\"reason\" value=\"{}\" placeholder=\"e.g. unauthorized_secret\"></label>\
<label>From (UTC) <input type=\"date\" name=\"from\" value=\"{}\"></label>\
<label>To (UTC, inclusive) <input type=\"date\" name=\"to\" value=\"{}\"></label>\
<label>Limit <input name=\"limit\" type=\"number\" min=\"1\" max=\"10000\" value=\"{}\"></label>\
<button type=\"submit\">Filter</button></form>",
        options(&networks, &given("network")),
        options(OUTCOMES, &given("outcome")),
        escape(&given("reason")),
        escape(&given("from")),
        escape(&given("to")),
        escape(&{
            let l = given("limit");
            if l.is_empty() {
                "100".to_string()
            } else {
                l
            }
        }),
    );
    let (status, answer) = match api_journal_query(&q) {
        Ok(api_query) => ctx.admin.api("GET", "/api/journal", &api_query).await,
        Err(problem) => (
            http::StatusCode::BAD_REQUEST,
            serde_json::json!({ "message": problem }),
        ),
    };
    let listing = if !status.is_success() {
        html::notice("error", &api_message(&answer))
    } else {
        let rows: Vec<Vec<String>> = answer["entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| journal_row(ctx, e))
            .collect();
        table(
            "journal",
            &[
                "#",
                "time (UTC)",
                "network",
                "origin",
                "outcome",
                "reason",
                "click",
                "request",
                "",
            ],
            &rows,
        )
    };
    ctx.page(
        "Postback journal",
        "/console/journal",
        &format!("{filters}{listing}"),
    )
}

/// The API's query for the page's: dates become `since_ms`/`until_ms`, empty fields
/// are left out, anything else is passed on (and refused there if unknown).
fn api_journal_query(pairs: &[(String, String)]) -> Result<String, String> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let (name, value) = match name.as_str() {
            "from" | "to" => {
                let day = crate::report::params::parse_date(value).ok_or_else(|| {
                    let shown: String = value.chars().take(32).collect();
                    format!("{name}: {shown:?} is not a date; write YYYY-MM-DD")
                })?;
                let day = if name == "to" { day + 1 } else { day };
                let key = if name == "to" { "until_ms" } else { "since_ms" };
                let ms = (day * crate::report::params::DAY_MS).max(0);
                (key.to_string(), ms.to_string())
            }
            _ => (name.clone(), value.to_string()),
        };
        out.push(format!(
            "{}={}",
            html::url_value(&name),
            html::url_value(&value)
        ));
    }
    Ok(out.join("&"))
}

fn journal_row(ctx: &Ctx<'_>, e: &Value) -> Vec<String> {
    let id = e["id"].as_i64().unwrap_or_default();
    let mut request = format!(
        "<code class=\"raw\">{} ?{}</code>",
        cell(&e["method"]),
        cell(&e["raw_query"])
    );
    if let Some(body) = text(&e["raw_body"]).filter(|b| !b.is_empty()) {
        request.push_str(&format!("<pre class=\"raw\">{}</pre>", escape(&body)));
    }
    if let Some(message) = text(&e["message"]) {
        request.push_str(&format!("<div class=\"why\">{}</div>", escape(&message)));
    }
    let click = match text(&e["click_id"]) {
        Some(c) => format!(
            "<a href=\"/console/explain?click={}\">{}</a>",
            html::url_value(&c),
            escape(&c)
        ),
        None => "–".into(),
    };
    let replay = if e["origin"] == "pixel" {
        String::new()
    } else {
        post_button(
            &format!("/console/journal/{id}/replay"),
            &ctx.session.csrf,
            "Replay",
            "replay",
            &[],
        )
    };
    vec![
        id.to_string(),
        time_cell(&e["ts_ms"]),
        cell(&e["network_id"]),
        cell(&e["origin"]),
        format!(
            "<span class=\"outcome {0}\">{0}</span>",
            escape(e["outcome"].as_str().unwrap_or(""))
        ),
        cell(&e["reason"]),
        click,
        request,
        replay,
    ]
}

/// `POST /console/journal/<id>/replay`: the API's replay, its answer shown.
pub async fn replay_entry(ctx: &Ctx<'_>, id: &str) -> Reply {
    let (status, answer) = ctx
        .admin
        .api("POST", &format!("/api/journal/{id}/replay"), "")
        .await;
    let body = format!(
        "{}<pre id=\"replay-result\">{}</pre><p><a href=\"/console/journal\">Back to the journal</a></p>",
        if status.is_success() {
            html::notice("ok", &format!("Journal entry {id} replayed ({status})."))
        } else {
            html::notice(
                "error",
                &format!("Replay refused ({status}): {}", api_message(&answer)),
            )
        },
        escape(&serde_json::to_string_pretty(&answer).unwrap_or_default())
    );
    let mut reply = ctx.page("Replay", "/console/journal", &body);
    reply.status = status;
    reply
}

/// `GET /console/outbox?state=`: dead letters first, with the reason of their last
/// failure.
pub async fn outbox_page(ctx: &Ctx<'_>, query: &str) -> Reply {
    let q = parse_query(query);
    let state = first_value(&q, "state").unwrap_or("dead").to_string();
    let api_query = if state.is_empty() {
        "limit=500".to_string()
    } else {
        format!("state={}&limit=500", html::url_value(&state))
    };
    let counts = match ctx.admin.api("GET", "/api/stats", "").await {
        (s, v) if s.is_success() => format!(
            "<p class=\"counts\" id=\"outbox-counts\">pending <b>{}</b> · delivered <b>{}</b> · dead <b>{}</b></p>",
            cell(&v["outbox"]["pending"]),
            cell(&v["outbox"]["delivered"]),
            cell(&v["outbox"]["dead"])
        ),
        (_, v) => html::notice("error", &api_message(&v)),
    };
    let filters = format!(
        "<form method=\"get\" action=\"/console/outbox\" id=\"outbox-filter\" class=\"filters\">\
<label>State <select name=\"state\">{}</select></label><button type=\"submit\">Show</button></form>{}",
        options(STATES, &state),
        post_button(
            "/console/outbox/replay-dead",
            &ctx.session.csrf,
            "Replay every dead letter",
            "replay-all",
            &[]
        )
    );
    let (status, answer) = ctx.admin.api("GET", "/api/outbox", &api_query).await;
    let listing = if !status.is_success() {
        html::notice("error", &api_message(&answer))
    } else {
        let rows: Vec<Vec<String>> = answer["entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| outbox_row(ctx, e))
            .collect();
        table(
            "outbox",
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
        )
    };
    ctx.page(
        "Outbox",
        "/console/outbox",
        &format!("{counts}{filters}{listing}"),
    )
}

/// An outbox row's cells; shared with the click explainer's relay list.
pub fn outbox_row(ctx: &Ctx<'_>, e: &Value) -> Vec<String> {
    let id = e["id"].as_i64().unwrap_or_default();
    let failure = match (text(&e["last_status"]), text(&e["last_error"])) {
        (None, None) => "–".to_string(),
        (status, error) => escape(
            &[status.map(|s| format!("HTTP {s}")), error]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        ),
    };
    let replay = if e["state"] == "dead" {
        post_button(
            &format!("/console/outbox/{id}/replay"),
            &ctx.session.csrf,
            "Replay",
            "replay",
            &[],
        )
    } else {
        String::new()
    };
    let click = e["click_id"].as_str().unwrap_or("");
    vec![
        id.to_string(),
        time_cell(&e["created_ms"]),
        cell(&e["source_id"]),
        format!(
            "<a href=\"/console/explain?click={}\">{}</a>",
            html::url_value(click),
            escape(click)
        ),
        format!(
            "<span class=\"state {0}\">{0}</span>",
            escape(e["state"].as_str().unwrap_or(""))
        ),
        cell(&e["attempts"]),
        if e["state"] == "delivered" {
            failure
        } else {
            format!("<span class=\"failure\">{failure}</span>")
        },
        // A destination's entry has no URL of its own: its request is built when sent.
        match e["destination_id"].as_str() {
            Some(d) => format!("destination <code>{}</code>", escape(d)),
            None => format!("<code class=\"raw\">{}</code>", cell(&e["url"])),
        },
        replay,
    ]
}

/// `POST /console/outbox/<id>/replay` and `/console/outbox/replay-dead`: requeue, then
/// back to the outbox with what happened.
pub async fn replay_dead_letter(ctx: &Ctx<'_>, id: Option<&str>) -> Reply {
    let path = match id {
        Some(id) => format!("/api/outbox/{id}/replay"),
        None => "/api/outbox/replay-dead".to_string(),
    };
    let (status, answer) = ctx.admin.api("POST", &path, "").await;
    let notice = if status.is_success() {
        html::notice(
            "ok",
            &format!(
                "{} dead letter(s) requeued: the outbox delivers them now.",
                cell(&answer["requeued"])
            ),
        )
    } else {
        html::notice(
            "error",
            &format!("Replay refused ({status}): {}", api_message(&answer)),
        )
    };
    let body = format!(
        "{notice}<p><a href=\"/console/outbox?state=pending\" id=\"see-pending\">See pending relays</a> · \
<a href=\"/console/outbox?state=delivered\">delivered</a> · <a href=\"/console/outbox\">dead</a></p>"
    );
    let mut reply = ctx.page("Outbox replay", "/console/outbox", &body);
    reply.status = status;
    reply
}

/// The `message` of an API error answer.
pub fn api_message(answer: &Value) -> String {
    answer["message"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        parse_query(query)
    }

    #[test]
    fn journal_dates_become_the_apis_millisecond_bounds() {
        assert_eq!(
            api_journal_query(&pairs(
                "network=cake&outcome=&from=1970-01-02&to=1970-01-02&limit=5"
            ))
            .unwrap(),
            "network=cake&since_ms=86400000&until_ms=172800000&limit=5"
        );
        let refused = api_journal_query(&pairs("from=yesterday")).unwrap_err();
        assert!(
            refused.contains("from") && refused.contains("YYYY-MM-DD"),
            "{refused}"
        );
        assert_eq!(api_journal_query(&pairs("")).unwrap(), "");
    }
}
