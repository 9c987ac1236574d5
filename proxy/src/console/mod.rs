//! The web console on the admin listener: server-rendered HTML over the same logic as
//! the admin API (`/api/...`), for operators who would rather click than curl.
//!
//! # Pages
//!
//! - `/console`: today at a glance (clicks, conversions, revenue, cost, profit, ROI
//!   since 00:00 UTC) and a bar chart of the last 24 hours, one report per hour.
//! - `/console/journal`: the postback journal, filtered by network, outcome, reason
//!   and UTC dates, each entry with a replay button (`POST /console/journal/<id>/replay`).
//! - `/console/outbox`: relays by state; dead letters with their last failure and
//!   replay buttons (one, or all of them).
//! - `/console/explain?click=<id>`: why a click ID is refused, or its click, the offers
//!   it was sent to, its conversions and their relays.
//! - `/console/report`: the profit report with its group-by and date controls, and
//!   `/console/report.csv` to download the same report as CSV.
//! - `/console/networks`: per network, the postback URL to paste (with a copy button)
//!   and "send a test postback", which runs `clickstamp postback-test`'s round trip
//!   against the main listener.
//! - `/console/config`: the running config, secrets left out.
//!
//! # Login, sessions and CSRF
//!
//! `POST /login` with the admin token (`secrets.admin_token`, compared in constant
//! time) opens a session: a random id in the `clickstamp_console` cookie, `HttpOnly`
//! and `SameSite=Strict`, `Secure` when the request came over TLS or through a proxy
//! saying `X-Forwarded-Proto: https` (the admin listener itself is plain HTTP). A
//! session ends after [`session::IDLE_TIMEOUT`] unused, [`session::MAX_LIFETIME`] after
//! login, at `POST /logout`, or when the process restarts.
//!
//! Wrong admin tokens are limited per client address ([`crate::admin_throttle`]): after
//! ten within five minutes, the login page answers 429 with `Retry-After`, even for the
//! right token, until the five minutes are up. The API's bearer token counts against
//! the same limit.
//!
//! Every POST but the login itself carries the session's CSRF token in a hidden `csrf`
//! field, compared in constant time; without it, or with another, the POST is refused
//! with 403. (The login needs no token: it is the admin token itself, which a forging
//! site does not have.) Without a session, a page redirects to `/login` and a POST is
//! refused with 403. The bearer-token API under `/api/` is unaffected.
//!
//! Every value written into a page goes through [`html::escape`]; the pages load only
//! their own stylesheet and script (embedded in the binary) under a
//! `Content-Security-Policy` that allows nothing else.

mod explain;
pub mod html;
mod journal;
mod networks;
mod overview;
mod report;
pub mod session;
mod settings;

use crate::admin::AdminApp;
use crate::admin_throttle::Standing;
use crate::config::Config;
use crate::tracker::Tracker;
use clickstamp_plugins::query::{first_value, parse_query};
use http::{Response, StatusCode};
use pingora::protocols::http::ServerSession;
use session::{Session, Sessions};
use std::sync::Arc;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Largest form body read: the forms post a few short fields.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Whether the console answers `path` (the admin listener sends it these).
pub fn serves(path: &str) -> bool {
    matches!(path, "/login" | "/logout" | "/console") || path.starts_with("/console/")
}

/// The console's state: its sessions.
#[derive(Debug, Default)]
pub struct Console {
    sessions: Sessions,
}

/// What a page handler answers.
pub struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(http::header::HeaderName, String)>,
    /// Refused for want of a session, a CSRF token or the admin token (the metric's
    /// `unauthorized` outcome; a redirect to the login page is one too).
    unauthorized: bool,
    /// Refused by the wrong-token limit (the metric's `throttled` outcome).
    throttled: bool,
}

impl Reply {
    fn html(status: StatusCode, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            headers: Vec::new(),
            unauthorized: false,
            throttled: false,
        }
    }

    fn redirect(to: &str) -> Reply {
        let mut r = Reply::html(StatusCode::SEE_OTHER, String::new());
        r.headers.push((http::header::LOCATION, to.to_string()));
        r
    }

    fn unauthorized(mut self) -> Reply {
        self.unauthorized = true;
        self
    }

    fn throttled(mut self) -> Reply {
        self.throttled = true;
        self
    }

    fn with(mut self, name: http::header::HeaderName, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response<Vec<u8>> {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        let len = resp.body().len();
        let h = resp.headers_mut();
        let fixed = [
            (http::header::CONTENT_TYPE, self.content_type),
            (http::header::CACHE_CONTROL, "no-store"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (http::header::X_FRAME_OPTIONS, "DENY"),
            (http::header::REFERRER_POLICY, "no-referrer"),
            (
                http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ];
        for (name, value) in fixed {
            h.insert(name, http::HeaderValue::from_static(value));
        }
        h.insert(http::header::CONTENT_LENGTH, len.into());
        for (name, value) in self.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
        resp
    }
}

/// What a page handler gets: the shared state and the logged-in session.
pub struct Ctx<'a> {
    pub admin: &'a AdminApp,
    pub tracker: &'a Arc<Tracker>,
    pub session: &'a Session,
}

impl Ctx<'_> {
    /// The live config (as of this call: a reload swaps it for later requests).
    pub fn config(&self) -> Arc<Config> {
        self.tracker.config()
    }

    /// A whole page with the navigation, `active` marking its section.
    fn page(&self, title: &str, active: &str, body: &str) -> Reply {
        Reply::html(
            StatusCode::OK,
            html::page(title, active, &self.session.csrf, body),
        )
    }
}

/// A request as the console sees it.
struct Request {
    method: String,
    path: String,
    query: String,
    form: Vec<(String, String)>,
    cookie: Option<String>,
    over_tls: bool,
    /// The TCP peer, for the wrong-token limit.
    peer: Option<std::net::IpAddr>,
}

impl Request {
    async fn read(session: &mut ServerSession) -> Result<Request, &'static str> {
        let header = session.req_header();
        let over_tls = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .is_some()
            || header
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        let cookie = header
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session::session_id_from)
            .map(str::to_owned);
        let mut req = Request {
            method: header.method.as_str().to_string(),
            path: header.uri.path().to_string(),
            query: header.uri.query().unwrap_or("").to_string(),
            form: Vec::new(),
            cookie,
            over_tls,
            peer: crate::admin::peer_ip(session),
        };
        if req.method == "POST" {
            let mut body = Vec::new();
            while let Some(chunk) = session
                .read_request_body()
                .await
                .map_err(|_| "the form body could not be read")?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_FORM_BYTES {
                    return Err("the form body is too large");
                }
            }
            req.form = parse_query(&String::from_utf8_lossy(&body));
        }
        Ok(req)
    }

    fn field(&self, name: &str) -> &str {
        first_value(&self.form, name).unwrap_or("")
    }
}

impl Console {
    /// Answer a console request (one [`serves`] accepted).
    pub async fn respond(
        &self,
        admin: &AdminApp,
        tracker: &Arc<Tracker>,
        server_session: &mut ServerSession,
    ) -> Response<Vec<u8>> {
        let reply = match Request::read(server_session).await {
            Ok(req) => self.route(admin, tracker, &req).await,
            Err(why) => refused(StatusCode::BAD_REQUEST, why),
        };
        let outcome = if reply.throttled {
            "throttled"
        } else if reply.unauthorized {
            "unauthorized"
        } else if reply.status.as_u16() < 400 {
            "ok"
        } else {
            "error"
        };
        tracker
            .metrics
            .requests
            .with_label_values(&["console", outcome])
            .inc();
        reply.into_response()
    }

    async fn route(&self, admin: &AdminApp, tracker: &Arc<Tracker>, req: &Request) -> Reply {
        let method = req.method.as_str();
        match (method, req.path.as_str()) {
            ("GET", "/console/assets/console.css") => asset("text/css; charset=utf-8", CSS),
            ("GET", "/console/assets/console.js") => asset("text/javascript; charset=utf-8", JS),
            ("GET", "/login") => match self.live_session(req) {
                Some(_) => Reply::redirect("/console"),
                None => Reply::html(StatusCode::OK, html::login_page(None)),
            },
            ("POST", "/login") => self.login(admin, tracker, req),
            _ => {
                let Some((id, session)) = self.live_session(req) else {
                    return if method == "GET" {
                        Reply::redirect("/login").unauthorized()
                    } else {
                        tracing::info!(path = %req.path, "console: POST without a session refused");
                        refused(
                            StatusCode::FORBIDDEN,
                            "log in first: this action needs a console session",
                        )
                        .unauthorized()
                    };
                };
                if method == "POST" && !session.csrf_matches(req.field("csrf")) {
                    tracing::warn!(path = %req.path, "console: POST with a missing or wrong CSRF token refused");
                    return refused(
                        StatusCode::FORBIDDEN,
                        "the form's CSRF token is missing or wrong: reload the page and try again",
                    )
                    .unauthorized();
                }
                let ctx = Ctx {
                    admin,
                    tracker,
                    session: &session,
                };
                self.page(&ctx, &id, req).await
            }
        }
    }

    async fn page(&self, ctx: &Ctx<'_>, session_id: &str, req: &Request) -> Reply {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("POST", ["logout"]) => {
                self.sessions.close(session_id);
                Reply::redirect("/login").with(
                    http::header::SET_COOKIE,
                    session::clear_cookie(req.over_tls),
                )
            }
            ("GET", ["console"]) => overview::page(ctx).await,
            ("GET", ["console", "journal"]) => journal::journal_page(ctx, &req.query).await,
            ("POST", ["console", "journal", id, "replay"]) => journal::replay_entry(ctx, id).await,
            ("GET", ["console", "outbox"]) => journal::outbox_page(ctx, &req.query).await,
            ("POST", ["console", "outbox", "replay-dead"]) => {
                journal::replay_dead_letter(ctx, None).await
            }
            ("POST", ["console", "outbox", id, "replay"]) => {
                journal::replay_dead_letter(ctx, Some(id)).await
            }
            ("GET", ["console", "explain"]) => explain::page(ctx, &req.query).await,
            ("GET", ["console", "report"]) => report::page(ctx, &req.query).await,
            ("GET", ["console", "report.csv"]) => report::csv(ctx, &req.query).await,
            ("GET", ["console", "networks"]) => networks::page(ctx, None),
            ("POST", ["console", "networks", id, "test"]) => networks::test(ctx, id).await,
            ("GET", ["console", "config"]) => settings::page(ctx),
            _ => refused(StatusCode::NOT_FOUND, "no such console page"),
        }
    }

    fn live_session(&self, req: &Request) -> Option<(String, Session)> {
        let id = req.cookie.as_deref()?;
        self.sessions.touch(id).map(|s| (id.to_string(), s))
    }

    fn login(&self, admin: &AdminApp, tracker: &Tracker, req: &Request) -> Reply {
        if let Standing::LockedOut { retry_after } = admin.throttle.standing(req.peer) {
            let secs = crate::admin_throttle::retry_after_secs(retry_after);
            tracing::warn!(
                retry_after_s = secs,
                "console: login refused, too many wrong admin tokens from this address"
            );
            return Reply::html(
                StatusCode::TOO_MANY_REQUESTS,
                html::login_page(Some(&format!(
                    "Too many wrong tokens from your address: try again in {secs} s."
                ))),
            )
            .with(http::header::RETRY_AFTER, secs.to_string())
            .throttled();
        }
        let config = tracker.config();
        let expected = config.secrets.admin_token.as_bytes();
        if !session::constant_time_eq(req.field("token").trim().as_bytes(), expected) {
            admin.throttle.failed(req.peer);
            tracing::warn!("console: login with a wrong admin token refused");
            return Reply::html(
                StatusCode::FORBIDDEN,
                html::login_page(Some("That is not the admin token.")),
            )
            .unauthorized();
        }
        admin.throttle.succeeded(req.peer);
        let id = self.sessions.open();
        tracing::info!("console: logged in");
        Reply::redirect("/console").with(
            http::header::SET_COOKIE,
            session::set_cookie(&id, req.over_tls),
        )
    }
}

fn asset(content_type: &'static str, text: &'static str) -> Reply {
    Reply {
        status: StatusCode::OK,
        content_type,
        body: text.as_bytes().to_vec(),
        headers: Vec::new(),
        unauthorized: false,
        throttled: false,
    }
}

/// A refusal as a small page saying why.
fn refused(status: StatusCode, why: &str) -> Reply {
    Reply::html(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title>\
<link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head><body class=\"login\"><main>\
<h1>{code}</h1><p class=\"error\" id=\"refusal\">{why}</p><p><a href=\"/console\">Back to the console</a></p>\
</main></body></html>",
            code = status.as_u16(),
            why = html::escape(why)
        ),
    )
}
