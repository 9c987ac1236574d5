//! `GET /api/report` on the admin listener (behind the admin token, checked by the
//! caller). Parameters are those of [`ReportParams::from_query`]. Reports queue behind
//! each other (one runs at a time) so they cannot take the machine from the click path.

use super::{render, Catalog, ReportError, ReportParams};
use crate::config::Config;
use crate::store::Store;
use http::StatusCode;
use serde_json::json;
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// Reports run one at a time: a month-long report is about a second of one core, and
/// the click path must keep the rest of the machine however many reports are asked for.
fn one_at_a_time() -> &'static Semaphore {
    static GATE: OnceLock<Semaphore> = OnceLock::new();
    GATE.get_or_init(|| Semaphore::new(1))
}

/// Answer a report request: status, content type, body. Errors are JSON with an
/// `error` code and a `message` naming the fix.
pub async fn respond(
    config: &Config,
    store: &dyn Store,
    query: &str,
) -> (StatusCode, &'static str, Vec<u8>) {
    let result = match ReportParams::from_query(query) {
        Err(e) => Err(ReportError::from(e)),
        Ok(params) => {
            let catalog = Catalog::from_config(config);
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = one_at_a_time().acquire().await;
            match store.report(&catalog, &params).await {
                Ok(report) => Ok(render::render(&report, params.format)),
                Err(e) => Err(ReportError::from(e)),
            }
        }
    };
    match result {
        Ok((content_type, body)) => (StatusCode::OK, content_type, body),
        Err(e) => {
            let (status, code) = match &e {
                ReportError::Params(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            };
            if status.is_server_error() {
                tracing::error!(error = %e, "report failed");
            }
            let body = json!({ "error": code, "message": e.to_string() });
            (status, "application/json", body.to_string().into_bytes())
        }
    }
}
