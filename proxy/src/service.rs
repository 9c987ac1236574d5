//! The main listener as a Pingora [`ProxyHttp`]: landing pages (proxied or served from
//! a landers directory, with click capture), `/go`, and everything else refused with a
//! reason.

use crate::config::{Config, Origin};
use crate::forwarding::ClientAddress;
use crate::landers;
use crate::pixel::rate::ReloadableRateLimiter;
use crate::rewrite::hooks::LandingVisit;
use crate::rewrite::{LandingHooks, LandingPage};
use crate::tracker::go::GoOutcome;
use crate::tracker::path::normalise;
use crate::tracker::route::{label, route, Route};
use crate::tracker::visit::{is_page_view, Visit};
use crate::tracker::Tracker;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state. Pingora requires it to be `Send + Sync`.
#[derive(Debug)]
pub struct RequestCtx {
    /// The config this request runs under from its first phase to its last, whatever
    /// a reload swaps in meanwhile.
    config: Arc<Config>,
    started: Instant,
    route: &'static str,
    outcome: &'static str,
    set_cookie: Option<String>,
    upstream: Option<UpstreamTarget>,
    /// The landing visit of a proxied page (campaign and click), for the response side.
    landing: Option<LandingVisit>,
    /// The page being rewritten, once its response header said so.
    page: Option<LandingPage>,
}

#[derive(Debug)]
struct UpstreamTarget {
    addr: SocketAddr,
    tls: bool,
    verify_tls: bool,
    host_header: String,
    sni: String,
    path_and_query: String,
    forwarded_headers: crate::forwarding::ForwardedHeaders,
}

/// clickstamp's main-listener service.
pub struct MainService {
    tracker: Arc<Tracker>,
    hooks: LandingHooks,
    pixel_limiter: ReloadableRateLimiter,
}

impl MainService {
    /// The service over a shared tracker.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        let per_minute = tracker.config().pixel.rate_limit_per_minute;
        let hooks = LandingHooks::new(tracker.clone());
        MainService {
            tracker,
            hooks,
            pixel_limiter: ReloadableRateLimiter::new(per_minute, 100_000),
        }
    }
}

/// The page a visitor sees when the landing page's origin cannot be reached. Their
/// click is already recorded (and their cookie is set with this page).
const ORIGIN_DOWN_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>Temporarily unavailable</title></head><body>\
<h1>This page is temporarily unavailable</h1>\
<p>The site behind this link did not answer. Please try again in a moment.</p>\
</body></html>\n";

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
    fn visit(&self, config: &Config, session: &Session) -> Visit {
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
        let ip = client_address(config, session)
            .visitor
            .map(|ip| ip.to_string());
        Visit::new(
            req.uri.query(),
            cookies,
            ip,
            header("user-agent"),
            header("referer"),
        )
        .with_signals(header)
        .with_test_marker(header(crate::tracker::test_click::HEADER))
    }

    async fn handle_go(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        target: &str,
    ) -> Result<()> {
        let visit = self.visit(&ctx.config, session);
        let tracker = self.tracker.pinned(ctx.config.clone());
        match tracker.go(target, &visit).await {
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
        let max = ctx.config.postbacks.max_body_bytes;
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
        let visit = self.visit(&ctx.config, session);
        let raw = crate::postback::RawPostback {
            method: req.method.as_str().to_string(),
            raw_query: req.uri.query().unwrap_or("").to_string(),
            body,
            body_truncated: truncated,
            body_seen: seen as u64,
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
            .pinned(ctx.config.clone())
            .ingest_postback(network, raw, crate::postback::Arrival::Live)
            .await;
        ctx.outcome = reply.outcome;
        let mut headers: Vec<(&'static str, &str)> = vec![
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ];
        headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
        respond(
            session,
            reply.status,
            &headers,
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
        stamp: Option<(usize, clickstamp_plugins::ClickId)>,
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
        let file = match landers::stat(&path).await {
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
        let is_head = session.req_header().method == http::Method::HEAD;
        // Only an HTML page within the campaign's size limit is read whole (to stamp
        // it); anything else streams, so memory does not grow with file size times
        // concurrent visitors.
        let stamp = stamp.filter(|(campaign, _)| {
            crate::rewrite::charset::is_html(file.content_type)
                && file.len <= ctx.config.campaigns[*campaign].rewrite.max_body_bytes as u64
        });
        let mut headers = vec![("Content-Type", file.content_type)];
        if let Some(lm) = &file.last_modified {
            headers.push(("Last-Modified", lm.as_str()));
        }
        if let Some(c) = &cookie {
            headers.push(("Set-Cookie", c.as_str()));
            // A page that set a click cookie must not be served from a shared cache.
            headers.push(("Cache-Control", "private, no-cache"));
        } else {
            headers.push(("Cache-Control", "no-cache"));
        }
        let req_headers = &session.req_header().headers;
        let if_none_match = req_headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok());
        // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
        let not_modified = match if_none_match {
            Some(v) => landers::etag_matches(v, &file.etag),
            None => req_headers
                .get("if-modified-since")
                .and_then(|v| v.to_str().ok())
                .zip(file.last_modified.as_deref())
                .is_some_and(|(since, lm)| landers::not_modified_since(since, lm)),
        };
        // HEAD and 304 are answered from the file's metadata alone, before any read.
        if not_modified || is_head {
            let weak = format!("W/{}", file.etag);
            let etag = if stamp.is_some() && !is_head {
                weak.as_str()
            } else {
                file.etag.as_str()
            };
            let status = if not_modified { 304 } else { 200 };
            ctx.outcome = if not_modified {
                "not_modified"
            } else {
                "served"
            };
            let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
            for (k, v) in &headers {
                if !(not_modified && *k == "Content-Type") {
                    resp.append_header(*k, *v)?;
                }
            }
            resp.append_header("ETag", etag)?;
            if !not_modified {
                // HEAD: the headers a GET would get, Content-Length included, no body.
                resp.insert_header("Content-Length", file.len.to_string())?;
            }
            return session.write_response_header(Box::new(resp), true).await;
        }
        ctx.outcome = "served";
        if let Some((campaign, click_id)) = stamp {
            let body = tokio::fs::read(&path)
                .await
                .map_err(|e| Error::because(ErrorType::FileReadError, "reading a lander", e))?;
            let (body, etag) = match self.hooks.rewrite_static(
                &ctx.config,
                campaign,
                &click_id,
                &path,
                file.content_type,
                &body,
            ) {
                Some(stamped) => (stamped, format!("W/{}", file.etag)),
                None => (body, file.etag.clone()),
            };
            headers.push(("ETag", etag.as_str()));
            return respond(session, 200, &headers, Bytes::from(body)).await;
        }
        headers.push(("ETag", file.etag.as_str()));
        self.stream_lander(session, &path, file.len, &headers).await
    }

    /// Send a lander file as it is read, [`landers::STREAM_CHUNK_BYTES`] at a time.
    async fn stream_lander(
        &self,
        session: &mut Session,
        path: &std::path::Path,
        len: u64,
        headers: &[(&'static str, &str)],
    ) -> Result<()> {
        use tokio::io::AsyncReadExt;
        let read_error = |e| Error::because(ErrorType::FileReadError, "reading a lander", e);
        let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let mut resp = ResponseHeader::build(200, Some(headers.len() + 1))?;
        for (name, value) in headers {
            resp.append_header(*name, *value)?;
        }
        resp.insert_header("Content-Length", len.to_string())?;
        session
            .write_response_header(Box::new(resp), len == 0)
            .await?;
        let mut left = len;
        while left > 0 {
            let want = (left as usize).min(landers::STREAM_CHUNK_BYTES);
            let mut chunk = vec![0u8; want];
            // The Content-Length is promised: a file cut short while it is sent ends
            // the response with an error (the connection closes) rather than a lie.
            file.read_exact(&mut chunk).await.map_err(read_error)?;
            left -= want as u64;
            session
                .write_response_body(Some(Bytes::from(chunk)), left == 0)
                .await?;
        }
        Ok(())
    }
}

/// Who sent `session`'s request, by the configured trust rule (`server.client_ip_header`,
/// `server.trusted_proxies`): the one answer the click row, the postback allowlist, the
/// pixel's rate limit and the origin's forwarding headers all use.
fn client_address(config: &Config, session: &Session) -> ClientAddress {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    config
        .server
        .trust
        .resolve(peer, &session.req_header().headers)
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
            config: self.tracker.config(),
            started: Instant::now(),
            route: label::NOT_FOUND,
            outcome: "unknown",
            set_cookie: None,
            upstream: None,
            landing: None,
            page: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let req = session.req_header();
        // One normal form for the router, the landers directory and the upstream path:
        // nothing downstream can read a dot segment or an encoded slash differently.
        let path = match normalise(req.uri.path()) {
            Ok(path) => path,
            Err(refused) => {
                ctx.outcome = refused.label();
                tracing::info!(reason = refused.label(), "request path refused");
                respond_json_error(session, 404, refused.label(), &refused.to_string()).await?;
                return Ok(true);
            }
        };
        let host = request_host(req);
        let method = req.method.as_str().to_string();
        let config = ctx.config.clone();
        match route(&config, host.as_deref(), &path) {
            Route::Go(target) => {
                ctx.route = label::GO;
                self.handle_go(session, ctx, &target).await?;
                Ok(true)
            }
            Route::Pixel => {
                ctx.route = label::PIXEL;
                let ip = self.visit(&config, session).ip;
                let limiter = self
                    .pixel_limiter
                    .at_rate(config.pixel.rate_limit_per_minute);
                let tracker = self.tracker.pinned(config);
                ctx.outcome = crate::pixel::serve::serve(session, &tracker, &limiter, ip).await?;
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
            Route::Landing { campaign, mut rest } => {
                ctx.route = label::LANDING;
                let dest = session
                    .req_header()
                    .headers
                    .get("sec-fetch-dest")
                    .and_then(|v| v.to_str().ok());
                let mut click_id = None;
                if is_page_view(&method, &path, dest) {
                    let visit = self.visit(&config, session);
                    let tracker = self.tracker.pinned(config.clone());
                    match tracker.landing_click(campaign, &visit).await {
                        Ok(click) => {
                            ctx.set_cookie = click.set_cookie;
                            click_id = Some(click.click_id);
                            // The campaign's own page is the click's lander (routing).
                            if let Some(lander) = click.lander.filter(|_| rest == "/") {
                                rest = lander;
                            }
                        }
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
                match &config.campaigns[campaign].origin {
                    Origin::Landers { root } => {
                        let root = root.clone();
                        let click_id = click_id.or_else(|| {
                            self.hooks
                                .cookie_click(&config, campaign, session.req_header())
                        });
                        let stamp = click_id.map(|c| (campaign, c));
                        self.serve_lander(session, ctx, &root, &rest, stamp).await?;
                        Ok(true)
                    }
                    Origin::Upstream {
                        addr,
                        tls,
                        verify_tls,
                        host_header,
                        sni,
                        base_path,
                        forwarded_headers,
                    } => {
                        if click_id.is_none() {
                            // An asset or sub-request: stamp with the visitor's existing click.
                            click_id =
                                self.hooks
                                    .cookie_click(&config, campaign, session.req_header());
                        }
                        ctx.landing = Some(LandingVisit {
                            config: config.clone(),
                            campaign,
                            click_id,
                            set_cookie: ctx.set_cookie.take(),
                            rest: rest.clone(),
                        });
                        let query = session
                            .req_header()
                            .uri
                            .query()
                            .map(|q| format!("?{q}"))
                            .unwrap_or_default();
                        ctx.upstream = Some(UpstreamTarget {
                            addr: *addr,
                            tls: *tls,
                            verify_tls: *verify_tls,
                            host_header: host_header.clone(),
                            sni: sni.clone(),
                            path_and_query: format!("{base_path}{rest}{query}"),
                            forwarded_headers: *forwarded_headers,
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
            Some(t) => {
                // Peers are pooled by address + TLS + SNI: keep-alive connections to the
                // origin are reused across visitors.
                let mut peer = HttpPeer::new(t.addr, t.tls, t.sni.clone());
                peer.options.verify_cert = t.verify_tls;
                peer.options.verify_hostname = t.verify_tls;
                peer.options.connection_timeout = Some(std::time::Duration::from_secs(5));
                // The campaign's `origin.timeout`: an origin that accepts and never
                // answers costs the visitor this long, then a 504.
                peer.options.read_timeout = Some(
                    ctx.landing
                        .as_ref()
                        .and_then(|visit| ctx.config.campaigns.get(visit.campaign))
                        .map_or(crate::config::DEFAULT_ORIGIN_TIMEOUT, |c| c.origin_timeout),
                );
                Ok(Box::new(peer))
            }
            None => Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen for this request",
            )),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(t) = &ctx.upstream {
            let uri = t.path_and_query.parse::<http::Uri>().map_err(|e| {
                Error::explain(ErrorType::InternalError, format!("bad upstream path: {e}"))
            })?;
            upstream_request.set_uri(uri);
            let visitor_host = session
                .req_header()
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            upstream_request.insert_header("Host", t.host_header.as_str())?;
            let hop = crate::forwarding::request::Hop {
                proto: if session
                    .digest()
                    .and_then(|d| d.ssl_digest.as_ref())
                    .is_some()
                {
                    "https"
                } else {
                    "http"
                },
                host: visitor_host.as_deref(),
            };
            let client = client_address(&ctx.config, session);
            crate::forwarding::request::apply(upstream_request, t.forwarded_headers, &client, hop)?;
        }
        if let Some(visit) = &ctx.landing {
            self.hooks.upstream_request(visit, upstream_request)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(cookie) = ctx.set_cookie.take() {
            resp.append_header("Set-Cookie", cookie)?;
        }
        if let Some(visit) = ctx.landing.as_mut() {
            ctx.page = self.hooks.on_response(session, visit, resp)?;
        }
        // Last, once the rewriter has chosen the framing: only our own hop reaches the
        // visitor, in a form their HTTP version reads.
        crate::forwarding::response::for_visitor(resp, session.req_header().version);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(page) = &ctx.page {
            self.hooks.on_body(page, body, end_of_stream)?;
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        // Once the response has started, nothing more can be said to the client; and a
        // client that hung up is not told anything (nor is its origin blamed).
        if session.response_written().is_some() || ctx.upstream.is_none() || client_went_away(e) {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let cookie = ctx
            .landing
            .as_mut()
            .and_then(|v| v.set_cookie.take())
            .or_else(|| ctx.set_cookie.take());
        let mut headers = vec![
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Retry-After", "5"),
        ];
        if let Some(c) = &cookie {
            headers.push(("Set-Cookie", c.as_str()));
        }
        ctx.outcome = "origin_error";
        tracing::warn!(route = ctx.route, error = %e, "landing origin unreachable");
        let status = match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
            _ => 502,
        };
        let _ = respond(
            session,
            status,
            &headers,
            Bytes::from_static(ORIGIN_DOWN_PAGE.as_bytes()),
        )
        .await;
        FailToProxy {
            error_code: status,
            // The request body (if any) was never read: do not reuse the connection.
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let metrics = &self.tracker.metrics;
        let outcome = match e {
            Some(e) if client_went_away(e) => "client_closed",
            Some(_) if ctx.outcome == "proxied" => "origin_error",
            _ => ctx.outcome,
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
            if outcome == "client_closed" {
                // Visitors close tabs mid-page all the time: worth a count, not a warning.
                tracing::debug!(route = ctx.route, status, error = %e, "client closed the connection");
            } else {
                tracing::warn!(route = ctx.route, status, error = %e, "request failed");
            }
        }
    }
}

/// The visitor's side ended the exchange (closed, reset, or stopped reading): Pingora
/// marks such errors as coming from downstream. Nothing is wrong with the origin then.
fn client_went_away(e: &Error) -> bool {
    matches!(e.esource(), pingora::ErrorSource::Downstream)
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed | ErrorType::WriteError | ErrorType::ReadError
        )
}
