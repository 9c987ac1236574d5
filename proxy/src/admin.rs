//! The admin listener: `/healthz`, `/metrics`, and `/api/...` behind a bearer token
//! (and, when `server.demo_relay_sink` is on, the demo's stand-in traffic source).

use crate::admin_throttle::Standing;
use crate::postback::{Arrival, RawPostback};
use crate::store::{JournalFilter, WriteOp, WriteResult};
use crate::tracker::Tracker;
use async_trait::async_trait;
use clickstamp_plugins::query::{first_value, parse_query_strict};
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

/// The admin application.
pub struct AdminApp {
    tracker: Arc<Tracker>,
    console: crate::console::Console,
    /// Wrong admin tokens per client address, for the API and the console's login.
    pub(crate) throttle: crate::admin_throttle::AdminThrottle,
    /// `POST /api/reload`'s reloader; `None` when embedded without a config file.
    reloader: Option<Arc<crate::reload::Reloader>>,
}

impl AdminApp {
    /// An admin app over the shared tracker.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        AdminApp {
            tracker,
            console: crate::console::Console::default(),
            throttle: crate::admin_throttle::AdminThrottle::default(),
            reloader: None,
        }
    }

    /// Answer `POST /api/reload` with `reloader` (the config file `serve` was started
    /// with).
    pub fn with_reloader(mut self, reloader: Arc<crate::reload::Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    fn bearer(&self, session: &ServerSession) -> Bearer {
        let config = self.tracker.config();
        let expected = config.secrets.admin_token.as_bytes();
        let Some(header) = session.req_header().headers.get("authorization") else {
            return Bearer::Missing;
        };
        let Some(given) = header.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
            return Bearer::Wrong;
        };
        if crate::console::session::constant_time_eq(given.trim().as_bytes(), expected) {
            Bearer::Right
        } else {
            Bearer::Wrong
        }
    }

    /// Answer `method path?query` of the JSON API (the caller checked the token); the
    /// console calls it too, so both behave alike.
    pub(crate) async fn api(
        &self,
        method: &str,
        path: &str,
        query: &str,
    ) -> (StatusCode, serde_json::Value) {
        let segments: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
        let q = match ApiQuery::parse(query, allowed_params(method, &segments)) {
            Ok(q) => q,
            Err(refusal) => return refusal,
        };
        let param = |k: &str| q.text(k);
        let limit = match q.number::<u32>("limit") {
            Ok(l) => l.unwrap_or(100).clamp(1, 10_000),
            Err(refusal) => return refusal,
        };
        let store = &self.tracker.store;
        match (method, segments.as_slice()) {
            ("GET", ["clicks", id]) => self.click(id).await,
            ("GET", ["stats"]) => match (store.click_count().await, store.outbox_counts().await) {
                (Ok(clicks), Ok(outbox)) => (
                    StatusCode::OK,
                    json!({ "clicks": clicks, "outbox": outbox }),
                ),
                (Err(e), _) | (_, Err(e)) => unavailable(e),
            },
            ("GET", ["journal"]) => {
                let (since_ms, until_ms) = match (q.number("since_ms"), q.number("until_ms")) {
                    (Ok(since), Ok(until)) => (since, until),
                    (Err(refusal), _) | (_, Err(refusal)) => return refusal,
                };
                if let Err(refusal) = q.one_of("outcome", JOURNAL_OUTCOMES) {
                    return refusal;
                }
                let filter = JournalFilter {
                    network_id: param("network"),
                    outcome: param("outcome"),
                    reason: param("reason"),
                    since_ms,
                    until_ms,
                    limit,
                };
                match store.journal(&filter).await {
                    Ok(rows) => (StatusCode::OK, json!({ "entries": rows })),
                    Err(e) => unavailable(e),
                }
            }
            ("GET", ["journal", id]) => match id.parse::<i64>() {
                Ok(id) => match store.journal_entry(id).await {
                    Ok(Some(row)) => (StatusCode::OK, json!(row)),
                    Ok(None) => not_found("no journal entry with this id"),
                    Err(e) => unavailable(e),
                },
                Err(_) => bad_request("the journal id is not a number"),
            },
            ("POST", ["journal", id, "replay"]) => match id.parse::<i64>() {
                Ok(id) => self.replay_journal(id).await,
                Err(_) => bad_request("the journal id is not a number"),
            },
            ("GET", ["outbox"]) => {
                if let Err(refusal) = q.one_of("state", &["pending", "delivered", "dead"]) {
                    return refusal;
                }
                if let Some(click) = param("click") {
                    // One click's relays, however old: the explainer's question.
                    if param("state").is_some() {
                        return bad_request("pass either ?click= or ?state=, not both");
                    }
                    return match store.outbox_for_click(&click).await {
                        Ok(rows) => (StatusCode::OK, json!({ "entries": rows })),
                        Err(e) => unavailable(e),
                    };
                }
                match store.outbox(param("state").as_deref(), limit).await {
                    Ok(rows) => (StatusCode::OK, json!({ "entries": rows })),
                    Err(e) => unavailable(e),
                }
            }
            ("POST", ["outbox", "replay-dead"]) => self.replay_dead(None).await,
            ("POST", ["outbox", id, "replay"]) => match id.parse::<i64>() {
                Ok(id) => self.replay_dead(Some(id)).await,
                Err(_) => bad_request("the outbox id is not a number"),
            },
            ("GET", ["conversions"]) => match param("click") {
                Some(click) => match store.conversions_for_click(&click).await {
                    Ok(rows) => (StatusCode::OK, json!({ "conversions": rows })),
                    Err(e) => unavailable(e),
                },
                None => bad_request("pass ?click=<click id>"),
            },
            ("GET", ["rotation"]) => crate::traffic::rotation::api(&self.tracker).await,
            ("POST", ["reload"]) => match &self.reloader {
                Some(reloader) => crate::reload::api_answer(reloader).await,
                None => not_found("this instance has no config file to reload (embedded)"),
            },
            _ => not_found("no such admin endpoint (see docs/http-api.md)"),
        }
    }

    async fn replay_dead(&self, id: Option<i64>) -> (StatusCode, serde_json::Value) {
        let op = WriteOp::ReplayDead {
            outbox_id: id,
            now_ms: Tracker::now_ms(),
        };
        match self.tracker.store.write(vec![op]).await {
            Ok(results) => {
                let n = match results.first() {
                    Some(WriteResult::Replayed(n)) => *n,
                    _ => 0,
                };
                self.tracker.outbox_wake.notify_one();
                if id.is_some() && n == 0 {
                    return not_found("no dead letter with this id");
                }
                (StatusCode::OK, json!({ "requeued": n }))
            }
            Err(e) => unavailable(e),
        }
    }

    /// Run a journalled postback through the pipeline again, as of its arrival time,
    /// under the current config (a since-fixed secret, a click that has since arrived).
    async fn replay_journal(&self, id: i64) -> (StatusCode, serde_json::Value) {
        let row = match self.tracker.store.journal_entry(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return not_found("no journal entry with this id"),
            Err(e) => return unavailable(e),
        };
        if row.origin == "pixel" {
            return bad_request("pixel hits are not replayed through the postback pipeline");
        }
        // A 413 journalled before cut records existed holds only the body's start and
        // nothing saying so: its reason tells, and it is refused like a cut entry.
        if row.cut.is_some() || row.reason.as_deref() == Some("body_too_large") {
            return (
                StatusCode::CONFLICT,
                json!({ "error": "entry_cut", "message": "this entry did not authenticate on arrival and only its start was journalled: it cannot be replayed; have the network send it again" }),
            );
        }
        let raw = RawPostback {
            method: row.method.clone(),
            raw_query: row.raw_query.clone(),
            body: row.raw_body.clone(),
            body_truncated: false,
            body_seen: row.raw_body.len() as u64,
            content_type: row.content_type.clone(),
            remote_ip: row.remote_ip.as_deref().and_then(|ip| ip.parse().ok()),
            headers: Vec::new(),
            received_ms: row.ts_ms,
        };
        let reply = self
            .tracker
            .ingest_postback(&row.network_id, raw, Arrival::Replay(id))
            .await;
        (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
            json!({ "replay_of": id, "result": reply.body }),
        )
    }

    /// Explain a click ID: why it is refused, or what the store holds for it. This is
    /// the first thing to ask at 3 a.m. when a network says "your click id is wrong".
    pub(crate) async fn click(&self, id: &str) -> (StatusCode, serde_json::Value) {
        let now = Tracker::now_ms();
        match self.tracker.pin().verify(id, now) {
            Err(e) => (
                StatusCode::BAD_REQUEST,
                json!({ "valid": false, "error": e.reason(), "message": e.to_string() }),
            ),
            Ok(click_id) => match self.tracker.store.click(&click_id).await {
                Ok(Some(c)) => (
                    StatusCode::OK,
                    json!({
                        "valid": true,
                        "click_id": c.click_id,
                        "ts_ms": c.ts_ms,
                        "campaign": c.campaign_id,
                        "source": c.source_id,
                        "source_click_id": c.source_click_id,
                        "cost": c.cost,
                        "outbound_offers": c.outbound_offer_ids,
                    }),
                ),
                Ok(None) => (
                    StatusCode::NOT_FOUND,
                    json!({ "valid": true, "error": "unknown_click", "message": "the ID is genuine but no click with it is stored", "ts_ms": click_id.timestamp_ms() }),
                ),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "store_unavailable", "message": e.to_string() }),
                ),
            },
        }
    }
}

/// Outcomes a journal entry can have (the `outcome` filter).
const JOURNAL_OUTCOMES: &[&str] = &["accepted", "duplicate", "status_changed", "rejected"];

/// The query parameters each endpoint reads; any other is refused, so a misspelt
/// filter (`sinse_ms`) never silently widens an answer.
fn allowed_params(method: &str, segments: &[&str]) -> &'static [&'static str] {
    match (method, segments) {
        ("GET", ["journal"]) => &[
            "network", "outcome", "reason", "since_ms", "until_ms", "limit",
        ],
        ("GET", ["outbox"]) => &["state", "limit", "click"],
        ("GET", ["conversions"]) => &["click"],
        _ => &[],
    }
}

/// An admin request's query, checked: every parameter known to the endpoint, none
/// repeated, and values parsed with a refusal that names the parameter.
struct ApiQuery {
    pairs: Vec<(String, String)>,
}

type ApiRefusal = (StatusCode, serde_json::Value);

fn bad_parameter(name: &str, message: String) -> ApiRefusal {
    (
        StatusCode::BAD_REQUEST,
        json!({ "error": "bad_parameter", "parameter": name, "message": message }),
    )
}

impl ApiQuery {
    fn parse(query: &str, allowed: &[&str]) -> Result<Self, ApiRefusal> {
        let pairs = parse_query_strict(query.as_bytes())
            .map_err(|e| bad_parameter(&e.name, e.to_string()))?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            let shown: String = k.chars().take(64).collect();
            if !allowed.contains(&k.as_str()) {
                let known = if allowed.is_empty() {
                    "this endpoint takes no parameters".to_string()
                } else {
                    format!("this endpoint takes {}", allowed.join(", "))
                };
                return Err(bad_parameter(
                    &shown,
                    format!("unknown parameter {shown:?}: {known}"),
                ));
            }
            if pairs[..i].iter().any(|(seen, _)| seen == k) {
                return Err(bad_parameter(
                    &shown,
                    format!("parameter {shown:?} is given twice: give it once"),
                ));
            }
        }
        Ok(ApiQuery { pairs })
    }

    /// The value of `name`, if given and not empty.
    fn text(&self, name: &str) -> Option<String> {
        first_value(&self.pairs, name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// `name` as an unsigned number, if given; a value that is not one is refused.
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiRefusal> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                let shown: String = v.chars().take(32).collect();
                bad_parameter(
                    name,
                    format!("{name} must be a non-negative whole number, not {shown:?}"),
                )
            }),
        }
    }

    /// Refuse `name` when given with a value outside `allowed`.
    fn one_of(&self, name: &str, allowed: &[&str]) -> Result<(), ApiRefusal> {
        match self.text(name) {
            Some(v) if !allowed.contains(&v.as_str()) => {
                let shown: String = v.chars().take(32).collect();
                Err(bad_parameter(
                    name,
                    format!(
                        "{name} must be one of {}, not {shown:?}",
                        allowed.join(", ")
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": "store_unavailable", "message": e.to_string() }),
    )
}

fn not_found(message: &str) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::NOT_FOUND,
        json!({ "error": "not_found", "message": message }),
    )
}

fn bad_request(message: &str) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({ "error": "bad_request", "message": message }),
    )
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let len = resp.body().len();
    let headers = resp.headers_mut();
    if let Ok(v) = content_type.parse() {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    headers.insert(http::header::CONTENT_LENGTH, len.into());
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// What a request's `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bearer {
    Missing,
    Wrong,
    Right,
}

/// The TCP peer's address: what the token throttle keys on (never a forwarding
/// header, which the client writes itself).
pub(crate) fn peer_ip(session: &ServerSession) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

impl AdminApp {
    /// 429 for an address that sent too many wrong tokens, whatever it sends now.
    fn locked_out(&self, retry_after: std::time::Duration) -> Response<Vec<u8>> {
        let secs = crate::admin_throttle::retry_after_secs(retry_after);
        tracing::warn!(
            retry_after_s = secs,
            "admin API: refused, too many wrong admin tokens from this address"
        );
        self.tracker
            .metrics
            .requests
            .with_label_values(&["admin_api", "throttled"])
            .inc();
        let mut resp = reply_json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "error": "too_many_attempts",
                "message": format!("too many wrong admin tokens from this address: try again in {secs} s"),
                "retry_after_s": secs,
            }),
        );
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, secs.into());
        resp
    }
}

fn reply_json(status: StatusCode, value: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", value.to_string().into_bytes())
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => match self.tracker.store.ping().await {
                Ok(_) => reply(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    b"ok\n".to_vec(),
                ),
                // The node still serves landing pages and /go (their clicks spool), so
                // a load balancer should keep it; postbacks are answered 503 wherever
                // they land. The body and the metrics say what is wrong.
                Err(crate::store::StoreError::Unavailable(e))
                    if self.tracker.store.spools_clicks() =>
                {
                    reply(
                        StatusCode::OK,
                        "text/plain; charset=utf-8",
                        format!("degraded: the store is unreachable ({e}); clicks are spooled on this node, postbacks answered 503\n").into_bytes(),
                    )
                }
                Err(e) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!("store: {e}\n").into_bytes(),
                ),
            },
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.tracker.metrics.render().into_bytes(),
            ),
            crate::config::DEMO_RELAY_SINK_PATH if self.tracker.config().server.demo_relay_sink => {
                // A stand-in traffic source: what the outbox relays is shown in the log,
                // and the 200 marks the entry delivered.
                let query = session.req_header().uri.query().unwrap_or("");
                tracing::info!("demo relay received: {query}");
                reply(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    b"received\n".to_vec(),
                )
            }
            p if crate::console::serves(p) => {
                self.console.respond(self, &self.tracker, session).await
            }
            p if p.starts_with("/api/") => {
                let peer = peer_ip(session);
                if let Standing::LockedOut { retry_after } = self.throttle.standing(peer) {
                    return self.locked_out(retry_after);
                }
                let bearer = self.bearer(session);
                if bearer != Bearer::Right {
                    // A request with no token at all guessed nothing: only a wrong
                    // token counts towards the lock-out.
                    if bearer == Bearer::Wrong {
                        self.throttle.failed(peer);
                    }
                    self.tracker
                        .metrics
                        .requests
                        .with_label_values(&["admin_api", "unauthorized"])
                        .inc();
                    return reply_json(
                        StatusCode::UNAUTHORIZED,
                        json!({ "error": "unauthorized", "message": "send Authorization: Bearer <secrets.admin_token>" }),
                    );
                }
                self.throttle.succeeded(peer);
                let method = session.req_header().method.as_str().to_string();
                let query = session.req_header().uri.query().unwrap_or("").to_string();
                if method == "GET" && p == "/api/report" {
                    // Reports answer JSON or CSV, so they bypass the JSON-only `api`.
                    let (status, ctype, body) = crate::report::http::respond(
                        &self.tracker.config(),
                        self.tracker.store.as_ref(),
                        self.tracker.analytics.as_ref(),
                        &query,
                    )
                    .await;
                    let outcome = if status.is_success() { "ok" } else { "error" };
                    let m = &self.tracker.metrics;
                    m.requests.with_label_values(&["admin_api", outcome]).inc();
                    return reply(status, ctype, body);
                }
                let (status, body) = self.api(&method, p, &query).await;
                self.tracker
                    .metrics
                    .requests
                    .with_label_values(&[
                        "admin_api",
                        if status.is_success() { "ok" } else { "error" },
                    ])
                    .inc();
                reply_json(status, body)
            }
            _ => reply_json(
                StatusCode::NOT_FOUND,
                json!({ "error": "not_found", "message": "admin endpoints: /healthz, /metrics, /api/..., /console" }),
            ),
        }
    }
}
