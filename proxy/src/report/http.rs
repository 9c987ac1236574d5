//! `GET /api/report` on the admin listener (behind the admin token, checked by the
//! caller). Parameters are those of [`ReportParams::from_query`]. Reports queue behind
//! each other (one runs at a time) so they cannot take the machine from the click path.

use super::{render, Answered, Catalog, ReportError, ReportParams, ReportSource};
use crate::analytics::Analytics;
use crate::config::Config;
use crate::store::Store;
use http::StatusCode;
use serde_json::json;
use std::sync::OnceLock;
use tokio::sync::Semaphore;

/// Reports run one at a time: a month-long report is about a second of one core, and
/// the click path must keep the rest of the machine however many reports are asked for.
pub(crate) fn one_at_a_time() -> &'static Semaphore {
    static GATE: OnceLock<Semaphore> = OnceLock::new();
    GATE.get_or_init(|| Semaphore::new(1))
}

/// Answer a report request: status, content type, body. Errors are JSON with an
/// `error` code and a `message` naming the fix.
pub async fn respond(
    config: &Config,
    store: &dyn Store,
    analytics: Option<&Analytics>,
    query: &str,
) -> (StatusCode, &'static str, Vec<u8>) {
    let result = match ReportParams::from_query(query) {
        Err(e) => Err(ReportError::from(e)),
        Ok(params) => {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = one_at_a_time().acquire().await;
            produce(config, store, analytics, &params)
                .await
                .map(|answered| render::render_answered(&answered, params.format))
        }
    };
    match result {
        Ok((content_type, body)) => (StatusCode::OK, content_type, body),
        Err(e) => {
            let (status, code) = match &e {
                ReportError::Params(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                ReportError::NoAnalytics => (StatusCode::BAD_REQUEST, "no_analytics"),
                ReportError::ClickHouse(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "clickhouse_unavailable")
                }
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

/// The report `params` asks for, read where `params.source` says.
pub async fn produce(
    config: &Config,
    store: &dyn Store,
    analytics: Option<&Analytics>,
    params: &ReportParams,
) -> Result<Answered, ReportError> {
    let catalog = Catalog::from_config(config);
    let from_store = |note: Option<String>| async {
        Ok::<_, ReportError>(Answered {
            report: store.report(&catalog, params).await?,
            source: "store",
            note,
        })
    };
    let from_clickhouse = |a: &Analytics| {
        let client = a.client.clone();
        let catalog = catalog.clone();
        async move {
            let (rows, totals) = client.report(&catalog, params).await?;
            Ok::<_, ReportError>(Answered {
                report: super::Report {
                    params: params.clone(),
                    rows,
                    totals,
                },
                source: "clickhouse",
                note: None,
            })
        }
    };
    match (params.source, analytics) {
        (ReportSource::Store, _) | (ReportSource::Auto, None) => from_store(None).await,
        (ReportSource::ClickHouse, None) => Err(ReportError::NoAnalytics),
        (ReportSource::ClickHouse, Some(a)) => from_clickhouse(a).await,
        (ReportSource::Auto, Some(a)) => match store.backfill_cursor().await {
            Ok(cursor) if cursor.done => match from_clickhouse(a).await {
                Ok(answered) => Ok(answered),
                Err(e) => {
                    a.metrics.report_fallbacks.inc();
                    tracing::warn!(error = %e, "report: ClickHouse failed; answering from the store");
                    from_store(Some(format!("read from the store: {e}"))).await
                }
            },
            Ok(_) => {
                from_store(Some(
                    "read from the store: history is not in ClickHouse yet; run `clickstamp analytics backfill`"
                        .into(),
                ))
                .await
            }
            Err(e) => Err(ReportError::from(e)),
        },
    }
}
