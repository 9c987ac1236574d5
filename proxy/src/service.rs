//! The main listener as a Pingora [`ProxyHttp`]: landing pages (proxied or served from
//! a landers directory, with click capture), `/go`, and everything else refused with a
//! reason.

use crate::config::Origin;
use crate::landers;
use crate::tracker::go::GoOutcome;
use crate::tracker::route::{label, route, Route};
use crate::tracker::visit::{forwarded_client_ip, is_page_view, Visit};
use crate::tracker::Tracker;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state. Pingora requires it to be `Send + Sync`.
#[derive(Debug)]
pub struct RequestCtx {
    started: Instant,
    route: &'static str,
    outcome: &'static str,
    set_cookie: Option<String>,
    upstream: Option<UpstreamTarget>,
}

#[derive(Debug)]
struct UpstreamTarget {
    addr: SocketAddr,
    host_header: String,
    path_and_query: String,
}

/// clickstamp's main-listener service.
pub struct MainService {
    tracker: Arc<Tracker>,
    pixel_limiter: crate::pixel::rate::RateLimiter,
}

impl MainService {
    /// The service over a shared tracker.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        let per_minute = tracker.config.pixel.rate_limit_per_minute;
        MainService {
            tracker,
            pixel_limiter: crate::pixel::rate::RateLimiter::new(per_minute, 100_000),
        }
    }
}

/// Write a complete response. HEAD gets the headers only.
pub async fn respond(
    session: &mut Session,
    status: u16,
    headers: &[(&'static str, &str)],
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (name, value) in headers {
        resp.append_header(*name, *value)?;
    }
    resp.insert_header("Content-Length", body.len().to_string())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    let no_body = body.is_empty() || head_only;
    session
        .write_response_header(Box::new(resp), no_body)
        .await?;
    if !no_body {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// A JSON error body: `{"error": "<reason>", "message": "..."}`.
pub fn json_error(reason: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": reason, "message": message }).to_string())
}

async fn respond_json_error(
    session: &mut Session,
    status: u16,
    reason: &str,
    message: &str,
) -> Result<()> {
    respond(
        session,
        status,
        &[
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ],
        json_error(reason, message),
    )
    .await
}

impl MainService {
    fn visit(&self, session: &Session) -> Visit {
        let req = session.req_header();
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let cookies = req
            .headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let forwarded = self
            .tracker
            .config
            .server
            .client_ip_header
            .as_deref()
            .and_then(&header)
            .and_then(|v| forwarded_client_ip(&v));
        let ip = forwarded.or_else(|| {
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string())
        });
        Visit::new(
            req.uri.query(),
            cookies,
            ip,
            header("user-agent"),
            header("referer"),
        )
    }

    async fn handle_go(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &str,
    ) -> Result<()> {
        let visit = self.visit(session);
        match self.tracker.go(target, &visit).await {
            Ok(GoOutcome::Redirect {
                location,
                set_cookie,
                how,
                ..
            }) => {
                ctx.outcome = if how == "direct" {
                    "redirect_direct"
                } else {
                    "redirect"
                };
                let mut headers = vec![
                    ("Location", location.as_str()),
                    ("Cache-Control", "no-store"),
                ];
                if let Some(c) = &set_cookie {
                    headers.push(("Set-Cookie", c.as_str()));
                }
                respond(session, 302, &headers, Bytes::new()).await
            }
            Ok(GoOutcome::ToLanding { location }) => {
                ctx.outcome = "to_landing";
                respond(
                    session,
                    302,
                    &[
                        ("Location", location.as_str()),
                        ("Cache-Control", "no-store"),
                    ],
                    Bytes::new(),
                )
                .await
            }
            Err(e) => {
                ctx.outcome = e.reason();
                let status = match e {
                    crate::tracker::go::GoError::Store(_) => 503,
                    crate::tracker::go::GoError::Stamp(_) => 502,
                    crate::tracker::go::GoError::UnknownTarget => 404,
                };
                tracing::warn!(route = "go", reason = e.reason(), error = %e, "go refused");
                respond_json_error(session, status, e.reason(), &e.to_string()).await
            }
        }
    }

    async fn handle_postback(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        network: &str,
    ) -> Result<()> {
        let max = self.tracker.config.postbacks.max_body_bytes;
        let mut body = Vec::new();
        let mut truncated = false;
        let mut seen = 0usize;
        // Read the whole body, keeping at most `max` bytes; stop draining at a hard cap
        // so a hostile client cannot hold the connection forever.
        while let Some(chunk) = session.read_request_body().await? {
            seen += chunk.len();
            let room = max.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if seen > max {
                truncated = true;
            }
            if seen > max.saturating_mul(4).max(1 << 20) {
                session.set_keepalive(None);
                break;
            }
        }
        let req = session.req_header();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_string(), v.to_string()))
            })
            .collect();
        let visit = self.visit(session);
        let raw = crate::postback::RawPostback {
            method: req.method.as_str().to_string(),
            raw_query: req.uri.query().unwrap_or("").to_string(),
            body,
            body_truncated: truncated,
            content_type: req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            remote_ip: visit.ip.as_deref().and_then(|ip| ip.parse().ok()),
            headers,
            received_ms: Tracker::now_ms(),
        };
        let reply = self
            .tracker
            .ingest_postback(network, raw, crate::postback::Arrival::Live)
            .await;
        ctx.outcome = reply.outcome;
        respond(
            session,
            reply.status,
            &[
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
            ],
            Bytes::from(reply.body.to_string()),
        )
        .await
    }

    async fn serve_lander(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        root: &std::path::Path,
        rest: &str,
    ) -> Result<()> {
        let path = match landers::resolve(root, rest) {
            Ok(p) => p,
            Err(e) => {
                ctx.outcome = if e == landers::LanderError::Traversal {
                    "traversal"
                } else {
                    "not_found"
                };
                return respond(
                    session,
                    404,
                    &[("Content-Type", "text/plain; charset=utf-8")],
                    Bytes::from_static(b"not found\n"),
                )
                .await;
            }
        };
        let file = match landers::read(&path).await {
            Ok(f) => f,
            Err(_) => {
                ctx.outcome = "not_found";
                return respond(
                    session,
                    404,
                    &[("Content-Type", "text/plain; charset=utf-8")],
                    Bytes::from_static(b"not found\n"),
                )
                .await;
            }
        };
        let cookie = ctx.set_cookie.take();
        let mut headers = vec![
            ("Content-Type", file.content_type),
            ("ETag", file.etag.as_str()),
        ];
        if let Some(c) = &cookie {
            headers.push(("Set-Cookie", c.as_str()));
            // A page that set a click cookie must not be served from a shared cache.
            headers.push(("Cache-Control", "private, no-cache"));
        } else {
            headers.push(("Cache-Control", "no-cache"));
        }
        let not_modified = session
            .req_header()
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| landers::etag_matches(v, &file.etag));
        if not_modified {
            ctx.outcome = "not_modified";
            let mut resp = ResponseHeader::build(304, Some(headers.len()))?;
            for (k, v) in &headers {
                if *k != "Content-Type" {
                    resp.append_header(*k, *v)?;
                }
            }
            return session.write_response_header(Box::new(resp), true).await;
        }
        ctx.outcome = "served";
        respond(session, 200, &headers, Bytes::from(file.body)).await
    }
}

fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req.uri.host().map(str::to_owned).or_else(|| {
        req.headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })?;
    let without_port = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => {
            h.to_string()
        }
        _ => raw,
    };
    Some(without_port.to_ascii_lowercase())
}

#[async_trait]
impl ProxyHttp for MainService {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            route: label::NOT_FOUND,
            outcome: "unknown",
            set_cookie: None,
            upstream: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let host = request_host(req);
        let method = req.method.as_str().to_string();
        match route(&self.tracker.config, host.as_deref(), &path) {
            Route::Go(target) => {
                ctx.route = label::GO;
                self.handle_go(session, ctx, &target).await?;
                Ok(true)
            }
            Route::Pixel => {
                ctx.route = label::PIXEL;
                let ip = self.visit(session).ip;
                ctx.outcome =
                    crate::pixel::serve::serve(session, &self.tracker, &self.pixel_limiter, ip)
                        .await?;
                Ok(true)
            }
            Route::Sdk(file) => {
                ctx.route = label::SDK;
                ctx.outcome = crate::pixel::serve::serve_sdk(session, &file).await?;
                Ok(true)
            }
            Route::Postback(network) => {
                ctx.route = label::POSTBACK;
                self.handle_postback(session, ctx, &network).await?;
                Ok(true)
            }
            Route::Landing { campaign, rest } => {
                ctx.route = label::LANDING;
                let dest = session
                    .req_header()
                    .headers
                    .get("sec-fetch-dest")
                    .and_then(|v| v.to_str().ok());
                if is_page_view(&method, &path, dest) {
                    let visit = self.visit(session);
                    match self.tracker.landing_click(campaign, &visit).await {
                        Ok(click) => ctx.set_cookie = click.set_cookie,
                        Err(e) => {
                            ctx.outcome = "store_unavailable";
                            tracing::error!(error = %e, "click not recorded");
                            respond_json_error(
                                session,
                                503,
                                "store_unavailable",
                                "the click could not be recorded; retry",
                            )
                            .await?;
                            return Ok(true);
                        }
                    }
                }
                match &self.tracker.config.campaigns[campaign].origin {
                    Origin::Landers { root } => {
                        let root = root.clone();
                        self.serve_lander(session, ctx, &root, &rest).await?;
                        Ok(true)
                    }
                    Origin::Upstream {
                        addr,
                        host_header,
                        base_path,
                    } => {
                        let query = session
                            .req_header()
                            .uri
                            .query()
                            .map(|q| format!("?{q}"))
                            .unwrap_or_default();
                        ctx.upstream = Some(UpstreamTarget {
                            addr: *addr,
                            host_header: host_header.clone(),
                            path_and_query: format!("{base_path}{rest}{query}"),
                        });
                        ctx.outcome = "proxied";
                        Ok(false)
                    }
                }
            }
            Route::NotFound => {
                ctx.outcome = "not_found";
                respond_json_error(
                    session,
                    404,
                    "not_found",
                    "no campaign, offer or endpoint at this path",
                )
                .await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        match &ctx.upstream {
            Some(t) => Ok(Box::new(HttpPeer::new(
                t.addr,
                false,
                t.host_header.clone(),
            ))),
            None => Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen for this request",
            )),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(t) = &ctx.upstream {
            let uri = t.path_and_query.parse::<http::Uri>().map_err(|e| {
                Error::explain(ErrorType::InternalError, format!("bad upstream path: {e}"))
            })?;
            upstream_request.set_uri(uri);
            upstream_request.insert_header("Host", t.host_header.as_str())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(cookie) = ctx.set_cookie.take() {
            resp.append_header("Set-Cookie", cookie)?;
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let metrics = &self.tracker.metrics;
        let outcome = if e.is_some() && ctx.outcome == "proxied" {
            "origin_error"
        } else {
            ctx.outcome
        };
        metrics
            .requests
            .with_label_values(&[ctx.route, outcome])
            .inc();
        metrics
            .request_seconds
            .with_label_values(&[ctx.route])
            .observe(ctx.started.elapsed().as_secs_f64());
        if let Some(e) = e {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            tracing::warn!(route = ctx.route, status, error = %e, "request failed");
        }
    }
}
