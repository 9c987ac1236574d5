//! Today at a glance: the day's figures since 00:00 UTC and a bar chart of clicks and
//! conversions over the last 24 hours, drawn server-side as inline SVG. The hourly
//! figures are 24 one-hour reports (the report code has no hour dimension).

use super::html::{self, escape};
use super::{Ctx, Reply};
use crate::report::params::DAY_MS;
use crate::report::render::format_cents;
use crate::report::{Figures, ReportError, ReportParams, ReportSource};
use crate::tracker::Tracker;
use std::fmt::Write;

const HOUR_MS: i64 = 3_600_000;

/// The totals of clicks in `[from_ms, to_ms)`.
async fn figures(ctx: &Ctx<'_>, from_ms: i64, to_ms: i64) -> Result<Figures, ReportError> {
    let params = ReportParams {
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        source: ReportSource::Auto,
        ..Default::default()
    };
    let config = ctx.config();
    let answered = crate::report::http::produce(
        &config,
        ctx.tracker.store.as_ref(),
        ctx.tracker.analytics.as_ref(),
        &params,
    )
    .await?;
    Ok(answered.report.totals)
}

/// `GET /console`
pub async fn page(ctx: &Ctx<'_>) -> Reply {
    // The 25 small reports queue as one behind any other report, as the API's do (the
    // gate is never closed).
    let _permit = crate::report::http::one_at_a_time().acquire().await;
    let now = Tracker::now_ms() as i64;
    let today = now - now.rem_euclid(DAY_MS);
    let mut body = String::new();
    match figures(ctx, today, today + DAY_MS).await {
        Ok(f) => {
            let roi = f
                .roi_percent()
                .map_or_else(|| "–".into(), |r| format!("{r:.2} %"));
            let tiles = [
                ("clicks", f.clicks.to_string()),
                ("conversions", f.conversions.to_string()),
                ("revenue", format_cents(f.revenue_cents())),
                ("cost", format_cents(f.cost_cents())),
                ("profit", format_cents(f.profit_cents())),
                ("roi", roi),
            ];
            body.push_str("<section class=\"tiles\" id=\"today\">");
            for (name, value) in tiles {
                let _ = write!(
                    body,
                    "<div class=\"tile\" id=\"today-{name}\"><span class=\"label\">{name}</span><span class=\"value\">{}</span></div>",
                    escape(&value)
                );
            }
            body.push_str("</section><p class=\"hint\">Clicks since 00:00 UTC and their conversions, whenever these arrived.</p>");
        }
        Err(e) => body.push_str(&html::notice("error", &e.to_string())),
    }
    let first_hour = now - now.rem_euclid(HOUR_MS) - 23 * HOUR_MS;
    let mut hours = Vec::with_capacity(24);
    for h in 0..24 {
        let from = first_hour + h * HOUR_MS;
        match figures(ctx, from, from + HOUR_MS).await {
            Ok(f) => hours.push((from, f)),
            Err(e) => {
                body.push_str(&html::notice("error", &e.to_string()));
                break;
            }
        }
    }
    if hours.len() == 24 {
        body.push_str("<h2>Last 24 hours</h2>");
        body.push_str(&chart(&hours));
    }
    ctx.page("Today", "/console", &body)
}

/// Bars of clicks (and, inside them, conversions) per hour.
fn chart(hours: &[(i64, Figures)]) -> String {
    const WIDTH: i64 = 720;
    const HEIGHT: i64 = 160;
    let bar = WIDTH / hours.len().max(1) as i64;
    let peak = hours
        .iter()
        .map(|(_, f)| f.clicks)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: u64| (n as i64 * (HEIGHT - 20)) / peak as i64;
    let mut svg = format!(
        "<svg id=\"chart\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
aria-label=\"clicks and conversions per hour, last 24 hours\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for (i, (from, f)) in hours.iter().enumerate() {
        let x = i as i64 * bar;
        let (hc, hv) = (scale(f.clicks), scale(f.conversions));
        let label = format!(
            "{} UTC: {} clicks, {} conversions",
            &html::utc_time(*from as u64)[11..16],
            f.clicks,
            f.conversions
        );
        let _ = write!(
            svg,
            "<g><title>{}</title><rect class=\"clicks\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{hc}\"/>\
<rect class=\"conversions\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{hv}\"/></g>",
            escape(&label),
            x + 2,
            HEIGHT - 16 - hc,
            bar - 4,
            x + 2 + bar / 4,
            HEIGHT - 16 - hv,
            (bar - 4) / 2
        );
        if i % 3 == 0 {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" class=\"axis\">{}</text>",
                x + 2,
                HEIGHT - 3,
                escape(&html::utc_time(*from as u64)[11..13])
            );
        }
    }
    svg.push_str("</svg><p class=\"legend\"><span class=\"key clicks\"></span> clicks <span class=\"key conversions\"></span> conversions (hours in UTC)</p>");
    svg
}
