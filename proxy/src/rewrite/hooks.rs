//! clickstamp's landing-page hooks, ready to call from any Pingora `ProxyHttp`.
//!
//! | ProxyHttp phase            | call                                   |
//! |----------------------------|----------------------------------------|
//! | `request_filter`           | [`LandingHooks::on_request`]           |
//! | `upstream_request_filter`  | [`LandingHooks::upstream_request`]     |
//! | `response_filter`          | [`LandingHooks::on_response`]          |
//! | `response_body_filter`     | [`LandingHooks::on_body`]              |
//!
//! `proxy/examples/embed_landing.rs` wires them into someone else's proxy.

use super::html::PageOptions;
use super::links::{LinkStamper, OfferPattern, OfferTarget};
use super::response::{apply_headers, plan, BodyRewriter};
use super::template::{TemplateCache, TemplateSlot};
use crate::config::Config;
use crate::store::StoreError;
use crate::tracker::route::{route, Route};
use crate::tracker::visit::{forwarded_client_ip, is_page_view, Visit};
use crate::tracker::Tracker;
use arc_swap::ArcSwap;
use bytes::Bytes;
use clickstamp_plugins::ClickId;
use parking_lot::Mutex;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::ResponseCompression;
use pingora::protocols::http::compression::Algorithm;
use pingora::proxy::Session;
use std::sync::Arc;

/// Decoded bodies larger than this fail (a decompression bomb guard); far above any
/// landing page.
const MAX_DECODED_BYTES: usize = 64 << 20;

/// Compression level used when re-compressing rewritten pages.
const RECOMPRESS_LEVEL: u32 = 5;

/// A visit to a campaign's landing path, as seen on the request side.
#[derive(Debug, Clone)]
pub struct LandingVisit {
    /// The config the request started under: every later phase reads this one.
    pub config: Arc<Config>,
    /// Index into `config`'s campaigns.
    pub campaign: usize,
    /// The visitor's click (new or from the cookie), when there is one.
    pub click_id: Option<ClickId>,
    /// `Set-Cookie` to add to the response (a new click).
    pub set_cookie: Option<String>,
    /// The path below the campaign prefix.
    pub rest: String,
}

/// A response being rewritten. `Send + Sync` (the lol-html rewriter, which is only
/// `Send`, sits behind a mutex), so it can live in a Pingora per-request context.
#[derive(Debug)]
pub struct LandingPage {
    campaign_id: String,
    body: Mutex<BodyRewriter>,
}

/// What the hooks compile from one config: per campaign, its link matchers and its
/// page templates. Rebuilt when a reload brings a new config (templates start empty
/// then: a template replays the links of the config it was made under).
struct CampaignRewriters {
    config: Arc<Config>,
    /// Per campaign; `None` when its rewriting is off.
    stampers: Vec<Option<Arc<LinkStamper>>>,
    /// Per campaign; `None` when it keeps no page templates.
    templates: Vec<Option<Arc<TemplateCache>>>,
}

/// The hooks, built once per server from a [`Tracker`].
pub struct LandingHooks {
    tracker: Arc<Tracker>,
    /// Those of the live config (the newest any request asked for).
    rewriters: ArcSwap<CampaignRewriters>,
}

impl std::fmt::Debug for LandingHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LandingHooks")
            .field("campaigns", &self.rewriters.load().stampers.len())
            .finish()
    }
}

impl CampaignRewriters {
    /// Compile every campaign's link matchers. Patterns were validated with the config,
    /// so one that still fails to parse is skipped rather than refused here.
    fn build(config: Arc<Config>) -> Self {
        let stampers = config
            .campaigns
            .iter()
            .map(|c| {
                if !c.rewrite.enabled {
                    return None;
                }
                let offers = c
                    .offers
                    .iter()
                    .map(|&(o, _)| {
                        let offer = &config.offers[o];
                        OfferTarget {
                            id: offer.id.clone(),
                            network: config.networks[offer.network].plugin.clone(),
                            patterns: std::iter::once(offer.url.as_str())
                                .chain(offer.match_urls.iter().map(String::as_str))
                                .filter_map(|p| OfferPattern::parse(p).ok())
                                .collect(),
                        }
                    })
                    .collect();
                Some(Arc::new(LinkStamper::new(offers, c.rewrite.links)))
            })
            .collect();
        let templates = config
            .campaigns
            .iter()
            .map(|c| {
                (c.rewrite.enabled && c.rewrite.template_cache_bytes > 0)
                    .then(|| Arc::new(TemplateCache::new(c.rewrite.template_cache_bytes)))
            })
            .collect();
        CampaignRewriters {
            config,
            stampers,
            templates,
        }
    }

    /// Where a page's template is kept: the campaign's cache (when templates are on)
    /// under the page's origin kind, path and content type.
    fn template_slot(
        &self,
        campaign: usize,
        kind: &str,
        path: &str,
        content_type: &str,
    ) -> Option<TemplateSlot> {
        let cache = self.templates.get(campaign)?.clone()?;
        Some(TemplateSlot {
            cache,
            key: format!("{kind}\n{path}\n{content_type}"),
        })
    }
}

impl LandingHooks {
    /// The hooks over `tracker`, compiled for its live config.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        let rewriters = CampaignRewriters::build(tracker.config());
        LandingHooks {
            tracker,
            rewriters: ArcSwap::from_pointee(rewriters),
        }
    }

    /// The rewriters compiled from `config`. After a reload the first request under
    /// the new config compiles them (and keeps them); a request still under an older
    /// config gets its own, so indices never cross configs.
    fn rewriters(&self, config: &Arc<Config>) -> Arc<CampaignRewriters> {
        let current = self.rewriters.load_full();
        if Arc::ptr_eq(&current.config, config) {
            return current;
        }
        let built = Arc::new(CampaignRewriters::build(config.clone()));
        if Arc::ptr_eq(config, &self.tracker.config()) {
            self.rewriters.store(built.clone());
        }
        built
    }

    /// The tracker behind the hooks.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Request side: when `req` is on a campaign's landing path, record the click (for
    /// a page view) or find the visitor's click in the cookie (for anything else), and
    /// return the visit. `Ok(None)`: not a landing path, nothing recorded.
    ///
    /// `peer_ip` is the TCP peer; the configured `server.client_ip_header` overrides it.
    pub async fn on_request(
        &self,
        req: &RequestHeader,
        peer_ip: Option<String>,
    ) -> Result<Option<LandingVisit>, StoreError> {
        let host = request_host(req);
        let tracker = self.tracker.pin();
        let Route::Landing { campaign, rest } =
            route(&tracker.config, host.as_deref(), req.uri.path())
        else {
            return Ok(None);
        };
        let visit = visit_from_request(&tracker.config, req, peer_ip);
        let dest = header(req, "sec-fetch-dest");
        if is_page_view(req.method.as_str(), req.uri.path(), dest.as_deref()) {
            let click = tracker.landing_click(campaign, &visit).await?;
            // The campaign's own page is the click's lander (routing).
            let rest = click.lander.filter(|_| rest == "/").unwrap_or(rest);
            return Ok(Some(LandingVisit {
                config: tracker.config.clone(),
                campaign,
                click_id: Some(click.click_id),
                set_cookie: click.set_cookie,
                rest,
            }));
        }
        Ok(Some(LandingVisit {
            click_id: self.cookie_click(&tracker.config, campaign, req),
            config: tracker.config,
            campaign,
            set_cookie: None,
            rest,
        }))
    }

    /// The visitor's click for `campaign` (of `config`, the request's) from the
    /// request's cookie, if valid.
    pub fn cookie_click(
        &self,
        config: &Arc<Config>,
        campaign: usize,
        req: &RequestHeader,
    ) -> Option<ClickId> {
        let cookies = cookies(req);
        self.tracker.pinned(config.clone()).click_from_cookie(
            &cookies,
            campaign,
            Tracker::now_ms(),
            crate::tracker::route::label::LANDING,
        )
    }

    /// Upstream side: ask the origin for an uncompressed body when the page may be
    /// rewritten (decoding is only the safety net).
    pub fn upstream_request(
        &self,
        visit: &LandingVisit,
        upstream: &mut RequestHeader,
    ) -> pingora::Result<()> {
        if self.rewrites(&visit.config, visit.campaign) {
            upstream.insert_header("Accept-Encoding", "identity")?;
        }
        Ok(())
    }

    /// Whether `campaign` (of `config`) rewrites its pages at all.
    pub fn rewrites(&self, config: &Arc<Config>, campaign: usize) -> bool {
        self.rewriters(config)
            .stampers
            .get(campaign)
            .is_some_and(Option::is_some)
    }

    /// Response side: add the click cookie; when the response is a page to rewrite,
    /// edit its headers, switch on recompression for clients that accept it, and
    /// return the page to feed [`Self::on_body`] with. Anything else passes through
    /// untouched (counted by reason).
    pub fn on_response(
        &self,
        session: &mut Session,
        visit: &mut LandingVisit,
        resp: &mut ResponseHeader,
    ) -> pingora::Result<Option<LandingPage>> {
        if let Some(cookie) = visit.set_cookie.take() {
            resp.append_header("Set-Cookie", cookie)?;
        }
        let campaign = visit.campaign;
        let rewriters = self.rewriters(&visit.config);
        let Some(Some(stamper)) = rewriters.stampers.get(campaign) else {
            return Ok(None);
        };
        let metrics = &self.tracker.metrics;
        let campaign_id = &visit.config.campaigns[campaign].id;
        let Some(click_id) = visit.click_id else {
            // No click to stamp (an asset fetched without the cookie).
            metrics
                .html_responses
                .with_label_values(&[campaign_id, "skipped_no_click"])
                .inc();
            return Ok(None);
        };
        let settings = &visit.config.campaigns[campaign].rewrite;
        let req = session.req_header();
        let planned = plan(
            &req.method,
            &req.headers,
            resp.status.as_u16(),
            &resp.headers,
            settings.max_body_bytes,
        );
        let plan = match planned {
            Ok(p) => p,
            Err(skip) => {
                metrics
                    .html_responses
                    .with_label_values(&[campaign_id, skip.label()])
                    .inc();
                return Ok(None);
            }
        };
        apply_headers(resp, &plan)?;
        if settings.recompress {
            enable_recompression(session);
        }
        metrics
            .html_responses
            .with_label_values(&[campaign_id, "rewritten"])
            .inc();
        let options = PageOptions {
            click_id: click_id.to_hex(),
            sdk_src: settings.inject_sdk.then(|| settings.sdk_src.clone()),
            max_memory: settings.max_memory_bytes,
        };
        // One template per path and content type: the query (the traffic source's
        // per-click parameters) rarely changes the page, and a page that does differ
        // is caught byte by byte anyway.
        let content_type = resp
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let slot = rewriters.template_slot(
            campaign,
            "proxied",
            session.req_header().uri.path(),
            content_type,
        );
        Ok(Some(LandingPage {
            campaign_id: campaign_id.clone(),
            body: Mutex::new(BodyRewriter::new(
                &plan,
                stamper.clone(),
                options,
                settings.max_body_bytes,
                MAX_DECODED_BYTES,
                slot,
            )),
        }))
    }

    /// Count how a finished page was served by its template, if it had one.
    fn count_template_outcome(&self, campaign_id: &str, rw: &BodyRewriter) {
        if let Some(outcome) = rw.template_outcome() {
            self.tracker
                .metrics
                .html_templates
                .with_label_values(&[campaign_id, outcome.label()])
                .inc();
        }
    }

    /// Body side: rewrite one chunk in place. A rewrite failure is counted in
    /// `clickstamp_html_rewrite_failures_total` and the page continues unmodified; only
    /// an undecodable compressed body is an error (the response is then cut short).
    pub fn on_body(
        &self,
        page: &LandingPage,
        body: &mut Option<Bytes>,
        end: bool,
    ) -> pingora::Result<()> {
        let mut rw = page.body.lock();
        let input = body.take().unwrap_or_default();
        let campaign_id = &page.campaign_id;
        let out = rw.feed(&input, end).map_err(|e| {
            self.tracker
                .metrics
                .html_rewrite_failures
                .with_label_values(&[campaign_id])
                .inc();
            tracing::warn!(campaign = %campaign_id, error = %e, "origin body could not be decoded");
            pingora::Error::explain(pingora::ErrorType::InternalError, e.to_string())
        })?;
        if let Some(reason) = rw.take_failure() {
            self.tracker
                .metrics
                .html_rewrite_failures
                .with_label_values(&[campaign_id])
                .inc();
            tracing::warn!(campaign = %campaign_id, error = %reason, "html rewriting stopped; the rest of the page passes through unmodified");
        }
        if end {
            let changed = rw.changed();
            if changed > 0 {
                self.tracker
                    .metrics
                    .links_stamped
                    .with_label_values(&[campaign_id])
                    .inc_by(changed as u64);
            }
            self.count_template_outcome(campaign_id, &rw);
        }
        *body = (!out.is_empty()).then(|| Bytes::from(out));
        Ok(())
    }
}

impl LandingHooks {
    /// Stamp a whole HTML document held in memory (a lander file): `None` when the
    /// campaign does not rewrite, the type is not HTML or nothing changed. A rewrite
    /// failure is counted and the original is kept.
    ///
    /// `file` names the lander (its resolved path): like a proxied page, a file is
    /// rewritten by lol-html once and then replayed from its template, compared byte
    /// for byte, so an edited file is simply rewritten afresh.
    pub fn rewrite_static(
        &self,
        config: &Arc<Config>,
        campaign: usize,
        click_id: &ClickId,
        file: &std::path::Path,
        content_type: &str,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        let rewriters = self.rewriters(config);
        let stamper = rewriters.stampers.get(campaign)?.as_ref()?;
        let settings = &config.campaigns[campaign].rewrite;
        if !super::charset::is_html(content_type) || body.len() > settings.max_body_bytes {
            return None;
        }
        let plan = super::response::Plan {
            charset: super::charset::from_content_type(content_type).ok()?,
            decode: None,
        };
        let options = PageOptions {
            click_id: click_id.to_hex(),
            sdk_src: settings.inject_sdk.then(|| settings.sdk_src.clone()),
            max_memory: settings.max_memory_bytes,
        };
        let mut rw = BodyRewriter::new(
            &plan,
            stamper.clone(),
            options,
            settings.max_body_bytes,
            MAX_DECODED_BYTES,
            rewriters.template_slot(campaign, "lander", &file.to_string_lossy(), content_type),
        );
        let out = rw.feed(body, true).ok()?;
        let campaign_id = &config.campaigns[campaign].id;
        self.count_template_outcome(campaign_id, &rw);
        if rw.take_failure().is_some() {
            self.tracker
                .metrics
                .html_rewrite_failures
                .with_label_values(&[campaign_id])
                .inc();
            return None;
        }
        let changed = rw.changed();
        if changed > 0 {
            self.tracker
                .metrics
                .links_stamped
                .with_label_values(&[campaign_id])
                .inc_by(changed as u64);
        }
        (out != body).then_some(out)
    }
}

/// Switch on Pingora's downstream compression module for this response: it then
/// gzips/brotlis the rewritten body when the client's Accept-Encoding allows.
pub fn enable_recompression(session: &mut Session) {
    // Disjoint fields: the request header is read while the module context is changed.
    let req = session.downstream_session.req_header();
    if !req.headers.contains_key(http::header::ACCEPT_ENCODING) {
        // Nothing to negotiate: the module would only pass every chunk through.
        return;
    }
    if let Some(c) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        if c.is_header_phase() {
            c.adjust_level(RECOMPRESS_LEVEL);
            // Pingora 0.9's brotli encoder only flushes at the end of the body and never
            // writes brotli's last block: a client would get a stream that does not end.
            // A br-only client gets the page as identity instead.
            c.adjust_algorithm_level(Algorithm::Brotli, 0);
            // The module skipped the request while disabled; let it read Accept-Encoding now.
            c.request_filter(req);
        }
    }
}

fn header(req: &RequestHeader, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn cookies(req: &RequestHeader) -> String {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The request's host, lowercase, without port.
pub fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req
        .uri
        .host()
        .map(str::to_owned)
        .or_else(|| header(req, "host"))?;
    let without_port = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => {
            h.to_string()
        }
        _ => raw,
    };
    Some(without_port.to_ascii_lowercase())
}

/// What the tracker needs from a request, with the client address taken from the
/// configured trusted header when present.
pub fn visit_from_request(config: &Config, req: &RequestHeader, peer_ip: Option<String>) -> Visit {
    let forwarded = config
        .server
        .client_ip_header
        .as_deref()
        .and_then(|h| header(req, h))
        .and_then(|v| forwarded_client_ip(&v));
    Visit::new(
        req.uri.query(),
        cookies(req),
        forwarded.or(peer_ip),
        header(req, "user-agent"),
        header(req, "referer"),
    )
    .with_signals(|name| header(req, name))
}
