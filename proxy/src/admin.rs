//! The admin listener: `/healthz`, `/metrics`, and `/api/...` behind a bearer token.

use crate::postback::{Arrival, RawPostback};
use crate::store::{JournalFilter, WriteOp, WriteResult};
use crate::tracker::Tracker;
use async_trait::async_trait;
use clickstamp_plugins::query::{first_value, parse_query};
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;

/// The admin application.
pub struct AdminApp {
    tracker: Arc<Tracker>,
}

impl AdminApp {
    /// An admin app over the shared tracker.
    pub fn new(tracker: Arc<Tracker>) -> Self {
        AdminApp { tracker }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let expected = self.tracker.config.secrets.admin_token.as_bytes();
        let Some(given) = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let given = given.trim().as_bytes();
        // Constant-time over the expected length: the token is a secret.
        given.len() == expected.len()
            && given
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    async fn api(&self, method: &str, path: &str, query: &str) -> (StatusCode, serde_json::Value) {
        let q = parse_query(query);
        let param = |k: &str| {
            first_value(&q, k)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let limit = param("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(100)
            .clamp(1, 10_000);
        let store = &self.tracker.store;
        let segments: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
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
                let filter = JournalFilter {
                    network_id: param("network"),
                    outcome: param("outcome"),
                    reason: param("reason"),
                    since_ms: param("since_ms").and_then(|v| v.parse().ok()),
                    until_ms: param("until_ms").and_then(|v| v.parse().ok()),
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
            ("GET", ["outbox"]) => match store.outbox(param("state").as_deref(), limit).await {
                Ok(rows) => (StatusCode::OK, json!({ "entries": rows })),
                Err(e) => unavailable(e),
            },
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
            _ => not_found("no such admin endpoint (see the README's admin API section)"),
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
        let raw = RawPostback {
            method: row.method.clone(),
            raw_query: row.raw_query.clone(),
            body: row.raw_body.clone().into_bytes(),
            body_truncated: false,
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
    async fn click(&self, id: &str) -> (StatusCode, serde_json::Value) {
        let now = Tracker::now_ms();
        match self.tracker.verify(id, now) {
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
            p if p.starts_with("/api/") => {
                if !self.authorized(session) {
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
                let method = session.req_header().method.as_str().to_string();
                let query = session.req_header().uri.query().unwrap_or("").to_string();
                if method == "GET" && p == "/api/report" {
                    // Reports answer JSON or CSV, so they bypass the JSON-only `api`.
                    let (status, ctype, body) =
                        crate::report::http::respond(&self.tracker.config, &query).await;
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
                json!({ "error": "not_found", "message": "admin endpoints: /healthz, /metrics, /api/..." }),
            ),
        }
    }
}
