//! Add clickstamp's landing-page hooks to someone else's Pingora proxy.
//!
//! `ExistingProxy` is a plain reverse proxy to one origin — the kind of `ProxyHttp` a
//! site already runs. Four calls make it a clickstamp edge for the campaigns in a
//! clickstamp config: landing page views record a click and get the cookie, offer links
//! in the HTML get the visitor's click ID, and everything else is proxied as before.
//!
//! ```sh
//! cargo run -p clickstamp --example embed_landing -- config/demo.toml 127.0.0.1:8081 127.0.0.1:9000
//! #                                                  clickstamp config  listen         the site's origin
//! ```
//!
//! The clickstamp routes (`/go`, `/postback`, `/px`) are not served here: run the
//! `clickstamp` binary for those, or route them to it.

use async_trait::async_trait;
use bytes::Bytes;
use clickstamp::metrics::Metrics;
use clickstamp::rewrite::hooks::LandingVisit;
use clickstamp::rewrite::{LandingHooks, LandingPage};
use clickstamp::store::sqlite::SqliteStore;
use clickstamp::tracker::Tracker;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::Server;
use pingora::Result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The site's existing proxy, plus one field: clickstamp's hooks.
struct ExistingProxy {
    origin: SocketAddr,
    clickstamp: LandingHooks,
}

/// The site's per-request state, plus clickstamp's two fields (both `Send + Sync`).
#[derive(Default)]
struct Ctx {
    landing: Option<LandingVisit>,
    page: Option<LandingPage>,
}

#[async_trait]
impl ProxyHttp for ExistingProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // 1. A landing page view records the click before the origin is asked.
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        match self.clickstamp.on_request(session.req_header(), peer).await {
            Ok(visit) => ctx.landing = visit,
            // The store is down: serve the page anyway, untracked (this site's choice).
            Err(e) => eprintln!("clickstamp: click not recorded: {e}"),
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.origin, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // 2. Ask the origin for an uncompressed page when it may be rewritten.
        if let Some(visit) = &ctx.landing {
            self.clickstamp.upstream_request(visit, upstream)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // 3. Cookie, and (for HTML) the header edits and a body rewriter.
        if let Some(visit) = ctx.landing.as_mut() {
            ctx.page = self.clickstamp.on_response(session, visit, resp)?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        // 4. Stream the page through the stamper.
        if let Some(page) = &ctx.page {
            self.clickstamp.on_body(page, body, end_of_stream)?;
        }
        Ok(None)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let config_path = args.next().unwrap_or_else(|| "config/demo.toml".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let origin: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .expect("origin address as ip:port");

    let config = match clickstamp::config::load(config_path.as_ref()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprint!("{config_path}: {e}");
            std::process::exit(2);
        }
    };
    let metrics = Arc::new(Metrics::new());
    let store =
        Arc::new(SqliteStore::open(&config.store, metrics.clone()).expect("open the store"));
    let tracker = Arc::new(Tracker::new(config, store, metrics));

    let mut server = Server::new(None).expect("server");
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        ExistingProxy {
            origin,
            clickstamp: LandingHooks::new(tracker),
        },
    );
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
