//! The profit report with its group-by and date controls, and its CSV download. The
//! page reads the report with [`crate::report::http::produce`]; the download is
//! answered by [`crate::report::http::respond`], the very code behind
//! `GET /api/report?format=csv`, so both give the same bytes.

use super::html::{self, escape, table};
use super::{Ctx, Reply};
use crate::report::params::format_offset;
use crate::report::render::{format_cents, FIGURE_COLUMNS};
use crate::report::{Figures, ReportParams};
use clickstamp_plugins::query::{first_value, parse_query};
use http::StatusCode;

/// The figure cells of a row, formatted as the CSV writes them.
pub fn figure_cells(f: &Figures) -> Vec<String> {
    let opt = |v: Option<f64>, d: usize| v.map_or_else(|| "–".into(), |x| format!("{x:.d$}"));
    vec![
        f.clicks.to_string(),
        f.unique_clicks.to_string(),
        f.conversions.to_string(),
        opt(f.cr_percent(), 2),
        format_cents(f.revenue_cents()),
        format_cents(f.cost_cents()),
        format_cents(f.profit_cents()),
        opt(f.roi_percent(), 2),
        opt(f.epc(), 4),
    ]
}

/// `GET /console/report?group_by=&from=&to=&tz=`
pub async fn page(ctx: &Ctx<'_>, query: &str) -> Reply {
    let q = parse_query(query);
    let given = |k: &str| first_value(&q, k).unwrap_or("").to_string();
    let group_by = if query.is_empty() {
        "campaign".to_string()
    } else {
        given("group_by")
    };
    let form = format!(
        "<form method=\"get\" action=\"/console/report\" id=\"report-form\" class=\"filters\">\
<label>Group by <input name=\"group_by\" id=\"group_by\" value=\"{}\" placeholder=\"campaign,day\" list=\"dimensions\"></label>\
<datalist id=\"dimensions\">{}</datalist>\
<label>From <input type=\"date\" name=\"from\" value=\"{}\"></label>\
<label>To (inclusive) <input type=\"date\" name=\"to\" value=\"{}\"></label>\
<label>Time zone <input name=\"tz\" size=\"7\" value=\"{}\" placeholder=\"+00:00\"></label>\
<button type=\"submit\">Show</button></form><p class=\"hint\">Group by any of {}, comma-separated.</p>",
        escape(&group_by),
        crate::report::Dimension::ALL
            .iter()
            .map(|d| format!("<option value=\"{d}\">"))
            .collect::<String>(),
        escape(&given("from")),
        escape(&given("to")),
        escape(&given("tz")),
        escape(&crate::report::Dimension::ALL.join(", ")),
    );
    let report_query = format!(
        "group_by={}&from={}&to={}&tz={}",
        html::url_value(&group_by),
        html::url_value(&given("from")),
        html::url_value(&given("to")),
        html::url_value(&given("tz"))
    );
    let params = match ReportParams::from_query(&report_query) {
        Ok(p) => p,
        Err(e) => {
            let body = format!("{form}{}", html::notice("error", &e.to_string()));
            let mut reply = ctx.page("Report", "/console/report", &body);
            reply.status = StatusCode::BAD_REQUEST;
            return reply;
        }
    };
    let config = ctx.config();
    // Queued behind any other report, as the API's are (the gate is never closed).
    let _permit = crate::report::http::one_at_a_time().acquire().await;
    let answered = crate::report::http::produce(
        &config,
        ctx.tracker.store.as_ref(),
        ctx.tracker.analytics.as_ref(),
        &params,
    )
    .await;
    let answered = match answered {
        Ok(a) => a,
        Err(e) => {
            let body = format!("{form}{}", html::notice("error", &e.to_string()));
            let mut reply = ctx.page("Report", "/console/report", &body);
            reply.status = StatusCode::SERVICE_UNAVAILABLE;
            return reply;
        }
    };
    let report = &answered.report;
    let headers: Vec<&str> = report
        .params
        .group_by
        .iter()
        .map(|d| d.name())
        .chain(FIGURE_COLUMNS)
        .collect();
    let mut rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            r.keys
                .iter()
                .map(|k| html::escape_or_dash(k.as_deref()))
                .chain(figure_cells(&r.figures))
                .collect()
        })
        .collect();
    if !rows.is_empty() {
        let mut total: Vec<String> = report
            .params
            .group_by
            .iter()
            .map(|_| String::new())
            .collect();
        if let Some(first) = total.first_mut() {
            *first = "<b>total</b>".into();
        }
        total.extend(figure_cells(&report.totals));
        rows.push(total);
    }
    let note = answered
        .note
        .as_deref()
        .map_or_else(String::new, |n| html::notice("ok", n));
    let body = format!(
        "{form}<p><a href=\"/console/report.csv?{}\" id=\"csv-download\" download>Download CSV</a> \
· read from {} · days cut at {}</p>{note}{}",
        escape(&report_query),
        escape(answered.source),
        escape(&format_offset(params.tz_offset_min)),
        table("report", &headers, &rows)
    );
    ctx.page("Report", "/console/report", &body)
}

/// `GET /console/report.csv?...`: the report as CSV, as an attachment.
pub async fn csv(ctx: &Ctx<'_>, query: &str) -> Reply {
    let kept: Vec<String> = parse_query(query)
        .into_iter()
        .filter(|(k, _)| k != "format")
        .map(|(k, v)| format!("{}={}", html::url_value(&k), html::url_value(&v)))
        .chain(["format=csv".to_string()])
        .collect();
    let config = ctx.config();
    let (status, content_type, body) = crate::report::http::respond(
        &config,
        ctx.tracker.store.as_ref(),
        ctx.tracker.analytics.as_ref(),
        &kept.join("&"),
    )
    .await;
    let mut reply = Reply {
        status,
        content_type,
        body,
        headers: Vec::new(),
        unauthorized: false,
        throttled: false,
    };
    if status.is_success() {
        reply = reply.with(
            http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"clickstamp-report.csv\"".into(),
        );
    }
    reply
}
