//! The admin listener: `/healthz`, `/metrics`, and `/api/...` behind a bearer token.

use crate::tracker::Tracker;
use async_trait::async_trait;
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

    async fn api(&self, path: &str) -> (StatusCode, serde_json::Value) {
        if let Some(id) = path.strip_prefix("/api/clicks/") {
            return self.click(id).await;
        }
        if path == "/api/stats" {
            return match self.tracker.store.click_count().await {
                Ok(n) => (StatusCode::OK, json!({ "clicks": n })),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "store_unavailable", "message": e.to_string() }),
                ),
            };
        }
        (
            StatusCode::NOT_FOUND,
            json!({ "error": "not_found", "message": "no such admin endpoint" }),
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
            "/healthz" => match self.tracker.store.click_count().await {
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
                let (status, body) = self.api(p).await;
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
