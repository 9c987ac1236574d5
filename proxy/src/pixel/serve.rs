//! `/px` over HTTP: CORS, rate limiting, body limits, GIF or JSON answers.
//!
//! A `GET /px` is an image pixel (`<img>`, `<noscript>`): every answer to it, refusals
//! included, is the 1×1 GIF with the status telling the outcome, so a page never shows
//! a broken image. A `POST /px` (the SDK's beacon) gets JSON.

use super::rate::RateLimiter;
use super::{page_origin, PixelHit, GIF};
use crate::service::respond;
use crate::tracker::{Pinned, Tracker};
use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;

/// Largest beacon body accepted.
const MAX_BEACON_BYTES: usize = 8 * 1024;

async fn send(
    session: &mut Session,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
) -> Result<()> {
    let refs: Vec<(&'static str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    respond(session, status, &refs, body).await
}

/// Send the answer to a hit: the GIF to a GET, whatever the status; the JSON to a POST.
async fn answer(
    session: &mut Session,
    is_get: bool,
    status: u16,
    mut headers: Vec<(&'static str, String)>,
    json: Bytes,
) -> Result<()> {
    let body = if is_get {
        headers.push(("Content-Type", "image/gif".into()));
        Bytes::from_static(GIF)
    } else {
        headers.push(("Content-Type", "application/json".into()));
        json
    };
    send(session, status, headers, body).await
}

/// Answer a `/px` request; returns the outcome label for metrics.
pub async fn serve(
    session: &mut Session,
    tracker: &Pinned<'_>,
    limiter: &RateLimiter,
    client_ip: Option<String>,
) -> Result<&'static str> {
    let req = session.req_header();
    let method = req.method.as_str().to_string();
    let origin = req
        .headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cors = tracker.config.pixel.cors_origin(origin.as_deref());
    let mut cors_headers: Vec<(&'static str, String)> = Vec::new();
    if let Some(allowed) = &cors {
        cors_headers.push(("Access-Control-Allow-Origin", allowed.clone()));
        cors_headers.push(("Vary", "Origin".into()));
    }
    let headers = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        let mut h = cors_headers.clone();
        h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        h.push(("Cache-Control", "no-store".into()));
        h
    };

    if method == "OPTIONS" {
        let h = headers(&[
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type"),
            ("Access-Control-Max-Age", "86400"),
        ]);
        send(
            session,
            if cors.is_some() { 204 } else { 403 },
            h,
            Bytes::new(),
        )
        .await?;
        return Ok("preflight");
    }
    if method != "GET" && method != "POST" {
        send(
            session,
            405,
            headers(&[("Allow", "GET, POST, OPTIONS")]),
            Bytes::new(),
        )
        .await?;
        return Ok("method_not_allowed");
    }
    let is_get = method == "GET";
    let now = Tracker::now_ms();
    if !limiter.allow(client_ip.as_deref().unwrap_or("unknown"), now) {
        tracker
            .metrics
            .postback_rejections
            .with_label_values(&[super::PIXEL_NETWORK, "rate_limited"])
            .inc();
        answer(session, is_get, 429, headers(&[("Retry-After", "60")]), Bytes::from_static(br#"{"status":"rejected","error":"rate_limited","message":"too many pixel hits from this address"}"#)).await?;
        return Ok("rate_limited");
    }
    let mut body = Vec::new();
    let mut too_big = false;
    if method == "POST" {
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_BEACON_BYTES {
                too_big = true;
                session.set_keepalive(None);
                break;
            }
            body.extend_from_slice(&chunk);
        }
    }
    if too_big {
        answer(session, is_get, 413, headers(&[]), Bytes::from_static(br#"{"status":"rejected","error":"body_too_large","message":"a beacon is at most 8 KiB"}"#)).await?;
        return Ok("rejected");
    }
    let req = session.req_header();
    let hit = PixelHit {
        method: method.clone(),
        raw_query: req.uri.query().unwrap_or("").to_string(),
        body,
        content_type: req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        remote_ip: client_ip,
        cookies: req
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; "),
        page_origin: page_origin(
            origin.as_deref(),
            req.headers.get("referer").and_then(|v| v.to_str().ok()),
        ),
        host: req
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri.authority().map(|a| a.to_string())),
        received_ms: now,
    };
    let reply = tracker.ingest_pixel(hit).await;
    // The status tells operators, and the journal has the reason.
    answer(
        session,
        is_get,
        reply.status,
        headers(&[]),
        Bytes::from(reply.body.to_string()),
    )
    .await?;
    Ok(reply.outcome)
}

/// Serve an embedded SDK file: cacheable for five minutes, revalidated by ETag (the
/// loader, its glue and the .wasm must match, so they are never cached for long), and
/// readable cross-origin (thank-you pages on other sites fetch the .wasm).
pub async fn serve_sdk(session: &mut Session, name: &str) -> Result<&'static str> {
    let Some(file) = super::sdk::file(name) else {
        send(
            session,
            404,
            vec![("Content-Type", "text/plain; charset=utf-8".into())],
            Bytes::from_static(b"not found\n"),
        )
        .await?;
        return Ok("not_found");
    };
    let base = vec![
        ("ETag", file.etag.clone()),
        (
            "Cache-Control",
            "public, max-age=300, must-revalidate".to_string(),
        ),
        ("Access-Control-Allow-Origin", "*".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
    ];
    let matches = session
        .req_header()
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| crate::landers::etag_matches(v, &file.etag));
    if matches {
        let mut resp = pingora::http::ResponseHeader::build(304, Some(base.len()))?;
        for (k, v) in &base {
            resp.insert_header(*k, v.as_str())?;
        }
        session.write_response_header(Box::new(resp), true).await?;
        return Ok("not_modified");
    }
    let mut headers = base;
    headers.push(("Content-Type", file.content_type.to_string()));
    send(session, 200, headers, Bytes::from_static(file.body)).await?;
    Ok("served")
}
