//! Prometheus metrics, all named `clickstamp_*`.
//!
//! Label values come only from configured ids (campaign, source, offer, network) or
//! from fixed sets defined in this crate (route, outcome, reason) — never from request
//! input, so a hostile client cannot blow up the series count.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 50µs to ~1.6s: most of our work is sub-millisecond.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 16).expect("static bucket layout is valid")
}

/// Every metric the service exports, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and outcome.
    pub requests: IntCounterVec,
    /// Request latency by route.
    pub request_seconds: HistogramVec,
    /// Clicks recorded, by campaign and traffic source.
    pub clicks: IntCounterVec,
    /// Cost of recorded clicks, by campaign and traffic source.
    pub click_cost: prometheus::CounterVec,
    /// Outbound clicks (/go → offer), by campaign and offer.
    pub outbound_clicks: IntCounterVec,
    /// Click IDs refused, by route and reason.
    pub click_ids_rejected: IntCounterVec,
    /// Seconds per store commit (one batch).
    pub store_commit_seconds: Histogram,
    /// Operations per committed batch.
    pub store_batch_ops: Histogram,
    /// Writes that failed to commit.
    pub store_errors: IntCounter,
    /// Store operations refused because the database could not be reached (the
    /// shared store's outage), each answered 503.
    pub store_unavailable: IntCounter,
    /// Clicks and outbound clicks written to the node's spool while the shared store
    /// was unreachable.
    pub store_spooled: IntCounter,
    /// Writes waiting in the spool to be forwarded to the shared store.
    pub store_spool_depth: prometheus::IntGauge,
    /// Times the WAL grew past `store.wal_max_bytes` and was checkpointed in full and
    /// started over.
    pub store_wal_restarts: IntCounter,
    /// Postbacks (and pixel hits) received, by network and outcome.
    pub postbacks: IntCounterVec,
    /// Postbacks refused, by network and reason.
    pub postback_rejections: IntCounterVec,
    /// Bytes of unauthenticated postbacks not journalled (only a prefix, the length and
    /// a digest are kept), by part (`query`, `body`).
    pub journal_bytes_cut: IntCounterVec,
    /// New conversions and status changes, by campaign, source, status and origin.
    pub conversions: IntCounterVec,
    /// Status changes of existing conversions (incl. S2S upgrading a pixel
    /// conversion), by campaign, source and new status.
    pub status_changes: IntCounterVec,
    /// Payouts of new conversions, by campaign and source.
    pub revenue: prometheus::CounterVec,
    /// Outbox entries by state (`pending`, `in_flight`, `dead`).
    pub outbox_entries: prometheus::IntGaugeVec,
    /// Delivery attempts by source and outcome.
    pub deliveries: IntCounterVec,
    /// Seconds per delivery attempt, by source.
    pub delivery_seconds: HistogramVec,
    /// Conversions settled by `[[destinations]]`, by destination id and outcome
    /// (`delivered`, `skipped`, `retry`, `dead_refused`, `dead_exhausted`).
    pub destination_deliveries: IntCounterVec,
    /// Requests to destinations, by destination id and result (`ok`, `partial`,
    /// `retry`, `refused`).
    pub destination_requests: IntCounterVec,
    /// Seconds per destination request, by destination id.
    pub destination_request_seconds: HistogramVec,
    /// Relays that could not be rendered (the conversion is kept), by source and reason.
    pub relay_render_failures: IntCounterVec,
    /// Landing values (source click id, sub ids) over the length limit, stored as NULL
    /// rather than cut, by campaign and field.
    pub landing_values_refused: IntCounterVec,
    /// Landing pages whose HTML rewriting stopped early (the rest passed through), by campaign.
    pub html_rewrite_failures: IntCounterVec,
    /// Proxied landing responses by campaign and action (`rewritten` or `skipped_*`).
    pub html_responses: IntCounterVec,
    /// Link attributes stamped, by campaign.
    pub links_stamped: IntCounterVec,
    /// Rewritten pages by campaign and how a page template served them (`replayed`,
    /// `diverged`, `recorded`, `not_recorded`).
    pub html_templates: IntCounterVec,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let requests = counter_vec(
            "clickstamp_requests_total",
            "Requests by route and outcome.",
            &["route", "outcome"],
        );
        let clicks = counter_vec(
            "clickstamp_clicks_total",
            "Clicks recorded.",
            &["campaign", "source"],
        );
        let outbound_clicks = counter_vec(
            "clickstamp_outbound_clicks_total",
            "Visitors sent to an offer by /go.",
            &["campaign", "offer"],
        );
        let click_ids_rejected = counter_vec(
            "clickstamp_click_ids_rejected_total",
            "Click IDs refused from the ID alone (malformed, bad MAC, expired).",
            &["route", "reason"],
        );
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "clickstamp_request_duration_seconds",
                "Request latency by route.",
            )
            .buckets(latency_buckets()),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(request_seconds.clone()))
            .expect("unique metric");
        let click_cost = prometheus::CounterVec::new(
            Opts::new(
                "clickstamp_click_cost_total",
                "Cost of recorded clicks, in the account currency.",
            ),
            &["campaign", "source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(click_cost.clone()))
            .expect("unique metric");
        let store_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "clickstamp_store_commit_duration_seconds",
                "Seconds per store commit (one batch).",
            )
            .buckets(latency_buckets()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_commit_seconds.clone()))
            .expect("unique metric");
        let store_batch_ops = Histogram::with_opts(
            HistogramOpts::new(
                "clickstamp_store_batch_operations",
                "Write operations per committed batch.",
            )
            .buckets(exponential_buckets(1.0, 2.0, 12).expect("static bucket layout is valid")),
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_batch_ops.clone()))
            .expect("unique metric");
        let store_wal_restarts = IntCounter::new(
            "clickstamp_store_wal_restarts_total",
            "Times the write-ahead log outgrew store.wal_max_bytes and was checkpointed in full and started over (writes wait meanwhile).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_wal_restarts.clone()))
            .expect("register once");
        let store_errors = IntCounter::new(
            "clickstamp_store_errors_total",
            "Writes that failed to commit.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_errors.clone()))
            .expect("unique metric");
        let store_unavailable = IntCounter::new(
            "clickstamp_store_unavailable_total",
            "Store operations refused because the database could not be reached (each request answered 503).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_unavailable.clone()))
            .expect("unique metric");
        let store_spooled = IntCounter::new(
            "clickstamp_store_spooled_total",
            "Clicks and outbound clicks spooled on this node while the shared store was unreachable.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_spooled.clone()))
            .expect("unique metric");
        let store_spool_depth = prometheus::IntGauge::new(
            "clickstamp_store_spool_depth",
            "Spooled writes waiting to be forwarded to the shared store.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_spool_depth.clone()))
            .expect("unique metric");
        let postbacks = counter_vec(
            "clickstamp_postbacks_total",
            "Postbacks and pixel hits received, by outcome.",
            &["network", "outcome"],
        );
        let postback_rejections = counter_vec(
            "clickstamp_postback_rejections_total",
            "Postbacks refused, by reason.",
            &["network", "reason"],
        );
        let journal_bytes_cut = counter_vec(
            "clickstamp_journal_bytes_cut_total",
            "Bytes of unauthenticated or unknown-network postbacks left out of the journal (a prefix, the full length and a SHA-256 are kept), by part.",
            &["part"],
        );
        for part in ["query", "body"] {
            journal_bytes_cut.with_label_values(&[part]);
        }
        let conversions = counter_vec(
            "clickstamp_conversions_total",
            "New conversions and status changes.",
            &["campaign", "source", "status", "origin"],
        );
        let status_changes = counter_vec(
            "clickstamp_conversion_status_changes_total",
            "Status changes of existing conversions, by new status.",
            &["campaign", "source", "status"],
        );
        let revenue = prometheus::CounterVec::new(
            Opts::new(
                "clickstamp_revenue_total",
                "Payouts of new conversions, in the account currency.",
            ),
            &["campaign", "source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(revenue.clone()))
            .expect("unique metric");
        let outbox_entries = prometheus::IntGaugeVec::new(
            Opts::new("clickstamp_outbox_entries", "Outbox entries by state."),
            &["state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(outbox_entries.clone()))
            .expect("unique metric");
        let deliveries = counter_vec(
            "clickstamp_outbox_deliveries_total",
            "Relay delivery attempts by outcome.",
            &["source", "outcome"],
        );
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(
                "clickstamp_outbox_delivery_duration_seconds",
                "Seconds per relay delivery attempt.",
            )
            .buckets(latency_buckets()),
            &["source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_seconds.clone()))
            .expect("unique metric");
        let destination_deliveries = counter_vec(
            "clickstamp_destination_deliveries_total",
            "Conversions settled by a destination, by outcome.",
            &["destination", "outcome"],
        );
        let destination_requests = counter_vec(
            "clickstamp_destination_requests_total",
            "Requests to destinations (one per batch), by result.",
            &["destination", "result"],
        );
        let destination_request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "clickstamp_destination_request_duration_seconds",
                "Seconds per destination request.",
            )
            .buckets(latency_buckets()),
            &["destination"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(destination_request_seconds.clone()))
            .expect("unique metric");
        let relay_render_failures = counter_vec(
            "clickstamp_relay_render_failures_total",
            "Conversions whose relay could not be rendered (kept, not relayed), by reason.",
            &["source", "reason"],
        );
        let landing_values_refused = counter_vec(
            "clickstamp_landing_values_refused_total",
            "Landing-URL values (source click id, sub ids) longer than the limit: the click is recorded with the value NULL instead of a cut one.",
            &["campaign", "field"],
        );
        let html_rewrite_failures = counter_vec(
            "clickstamp_html_rewrite_failures_total",
            "Landing pages whose rewriting stopped early; the rest of the page passed through unmodified.",
            &["campaign"],
        );
        let html_responses = counter_vec(
            "clickstamp_html_responses_total",
            "Proxied landing responses by action (rewritten, or skipped and why).",
            &["campaign", "action"],
        );
        let links_stamped = counter_vec(
            "clickstamp_links_stamped_total",
            "Link attributes given the visitor's click ID.",
            &["campaign"],
        );
        let html_templates = counter_vec(
            "clickstamp_html_templates_total",
            "Rewritten pages by how a page template served them: replayed (matched a recorded page), diverged (lol-html took over at the first difference), recorded, not_recorded.",
            &["campaign", "outcome"],
        );
        Metrics {
            html_templates,
            html_rewrite_failures,
            html_responses,
            links_stamped,
            registry,
            postbacks,
            postback_rejections,
            journal_bytes_cut,
            conversions,
            status_changes,
            revenue,
            outbox_entries,
            deliveries,
            delivery_seconds,
            destination_deliveries,
            destination_requests,
            destination_request_seconds,
            relay_render_failures,
            landing_values_refused,
            requests,
            request_seconds,
            clicks,
            click_cost,
            outbound_clicks,
            click_ids_rejected,
            store_commit_seconds,
            store_batch_ops,
            store_errors,
            store_unavailable,
            store_spooled,
            store_spool_depth,
            store_wal_restarts,
        }
    }

    /// The registry, for parts that register metrics of their own (the connection
    /// guard: [`crate::conn::ConnectionMetrics`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
