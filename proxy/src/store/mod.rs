//! Durable storage for clicks, conversions, the postback journal and the outbox.
//!
//! The [`Store`] trait is the seam: the embedded [`sqlite::SqliteStore`] is the default,
//! and [`postgres::PgStore`] lets many proxy nodes share one PostgreSQL database.
//! See `LIFECYCLE.md` beside this file for how a write travels from a request to disk,
//! and what changes when several nodes write at once.

pub mod backup;
pub mod decide;
pub mod export;
pub mod postgres;
pub mod retention;
pub mod sqlite;

use async_trait::async_trait;
use clickstamp_plugins::ClickId;
use std::sync::Arc;

/// Open the store `config` names: the embedded file, or the shared database (migrated
/// on the way).
///
/// `listen` (the main listener) names this node on the shared store's outbox leases.
pub fn open(
    config: &crate::config::StoreConfig,
    listen: &str,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.backend {
        crate::config::StoreBackend::Sqlite => {
            Arc::new(sqlite::SqliteStore::open(config, metrics)?)
        }
        crate::config::StoreBackend::Postgres(pg) => {
            Arc::new(postgres::PgStore::open(config, pg, listen, metrics)?)
        }
    })
}

/// A landing or direct-link click as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickRecord {
    pub click_id: ClickId,
    pub ts_ms: u64,
    pub campaign_id: String,
    pub source_id: String,
    pub source_click_id: Option<String>,
    /// The landing parameter that carried it (`gclid`, `gbraid`, ...).
    pub source_click_param: Option<String>,
    pub cost: Option<f64>,
    /// sub1..sub5, as configured on the traffic source.
    pub sub_ids: [Option<String>; 5],
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    /// How the click arrived: `landing` or `direct` (minted by /go).
    pub entry: &'static str,
    /// Traffic quality and the visitor's traits.
    pub profile: ClickProfile,
}

/// A click's traffic quality, whether it counts, and the visitor's traits, as
/// recorded (docs/traffic-rules.md). Clicks are immutable, so the click cache holds
/// this too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClickProfile {
    /// `ok` or `flagged`.
    pub quality: String,
    /// The reasons it was flagged, comma-separated (`bot_user_agent,datacenter`).
    pub quality_reasons: String,
    /// Why the click is kept out of reports and relays (`quality`: its campaign
    /// excludes flagged clicks); `None` when it counts. The `clicks.excluded` flag is
    /// set exactly when this is.
    pub excluded: Option<String>,
    /// The lander the visitor was shown; the rest are the visitor's country (ISO
    /// code), device, OS and browser. Each empty when unknown.
    pub lander: String,
    pub country: String,
    pub device: String,
    pub os: String,
    pub browser: String,
    /// The routing path the visitor was sent down: a rule's name, or `default`
    /// (empty for a click recorded before routing existed).
    pub route: String,
}

impl Default for ClickProfile {
    fn default() -> Self {
        ClickProfile {
            quality: "ok".into(),
            quality_reasons: String::new(),
            excluded: None,
            lander: String::new(),
            country: String::new(),
            device: String::new(),
            os: String::new(),
            browser: String::new(),
            route: String::new(),
        }
    }
}

/// A visitor sent from /go to an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRecord {
    pub click_id: ClickId,
    pub ts_ms: u64,
    pub campaign_id: String,
    pub offer_id: String,
}

/// One write. A request's writes travel together and commit in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Click(Box<ClickRecord>),
    Outbound(OutboundRecord),
    /// Journal an inbound postback and apply its verdict (dedup, status, outbox).
    Postback(Box<PostbackWrite>),
    /// Record an outbox delivery attempt.
    Delivery(DeliveryResult),
    /// Put dead letters back in the queue: one (`Some(id)`) or all (`None`).
    ReplayDead {
        outbox_id: Option<i64>,
        now_ms: u64,
    },
    /// Analytics progress: exported queue rows to forget (with the changes they
    /// held and the newest one's commit time), and a backfill's position to record.
    AnalyticsProgress {
        exported: Vec<i64>,
        changes: u64,
        through_ms: Option<i64>,
        backfill: Option<export::BackfillCursor>,
        now_ms: u64,
    },
    /// One batch of retention pruning (see [`retention`]): deleted in the writer's
    /// own transaction, between the request path's batches.
    Prune(retention::PruneStep),
}

/// What one [`WriteOp`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    Done,
    Postback(PostbackCommit),
    /// Number of dead letters requeued.
    Replayed(u64),
    /// What one [`WriteOp::Prune`] batch deleted.
    Pruned(retention::PruneOutcome),
}

/// Outbox entries by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// What a lookup returns about a known click.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredClick {
    pub click_id: String,
    pub ts_ms: u64,
    pub campaign_id: String,
    pub source_id: String,
    pub source_click_id: Option<String>,
    pub cost: Option<f64>,
    pub source_click_param: Option<String>,
    pub sub_ids: [Option<String>; 5],
    /// The offer of the click's latest outbound click, if any.
    pub last_offer_id: Option<String>,
    /// Every offer the click was sent to by `/go`, oldest first, each once (at most
    /// [`MAX_OUTBOUND_OFFERS`]): which networks may report a conversion for it.
    pub outbound_offer_ids: Vec<String>,
    /// Quality, exclusion and traits, as recorded.
    pub profile: ClickProfile,
}

impl From<&ClickRecord> for StoredClick {
    /// A click as just recorded: no outbound offers yet.
    fn from(c: &ClickRecord) -> Self {
        StoredClick {
            click_id: c.click_id.to_hex(),
            ts_ms: c.ts_ms,
            campaign_id: c.campaign_id.clone(),
            source_id: c.source_id.clone(),
            source_click_id: c.source_click_id.clone(),
            cost: c.cost,
            source_click_param: c.source_click_param.clone(),
            sub_ids: c.sub_ids.clone(),
            last_offer_id: None,
            outbound_offer_ids: Vec::new(),
            profile: c.profile.clone(),
        }
    }
}

/// How many distinct outbound offers a [`StoredClick`] carries; a visitor does not
/// visit more offers than this, and a bound keeps a hostile click from growing it.
pub const MAX_OUTBOUND_OFFERS: usize = 32;

/// Why the store failed. Every variant is our fault, not the caller's: the request
/// that hit it is answered 503 so the client retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error.
    #[error("store: {0}")]
    Backend(String),
    /// The database cannot be reached (refused, timed out, connection lost): nothing
    /// was written, and the same write may succeed once it is back.
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    /// The database was migrated by a newer clickstamp; this one must not write to it.
    #[error("the database schema is at version {found}, newer than this binary's {supported}: upgrade clickstamp on this node (or point it at another database)")]
    SchemaTooNew { found: i32, supported: i32 },
}

/// Durable storage of clicks, conversions, the postback journal and the outbox.
///
/// `write` returns once the writes are durable to the degree the config asks
/// (`store.durability`): with `commit`, a crash of the process after `write` returned
/// never loses them. Check-then-act logic inside one operation (dedup, status
/// transitions) never races: the embedded store applies every write on one thread;
/// the shared store takes a database lock per click and event before it looks.
/// Relays one click's explanation lists at most: a click has a handful of conversions,
/// each a relay or two, so this bounds only a pathological click.
pub const MAX_RELAYS_PER_CLICK: u32 = 1000;

#[async_trait]
pub trait Store: Send + Sync {
    /// Persist `ops` atomically (all or none); one result per op, in order.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, StoreError>;

    /// The click with `id`, from the in-memory cache of recent clicks or from disk.
    async fn click(&self, id: &ClickId) -> Result<Option<StoredClick>, StoreError>;

    /// Number of rows in `clicks` (for health checks and tests).
    async fn click_count(&self) -> Result<u64, StoreError>;

    /// Pending outbox entries due at `now_ms`, oldest first, skipping `in_flight`, each
    /// claimed for this node: no other node is handed an entry until this node records
    /// its delivery or its claim expires (the shared store's lease).
    async fn due_outbox(
        &self,
        now_ms: u64,
        limit: u32,
        in_flight: &[i64],
    ) -> Result<Vec<OutboxRow>, StoreError>;

    /// Entries of one destination due at `claim.now_ms`, oldest first, claimed as
    /// [`Store::due_outbox`] claims relays: a full batch (`claim.limit`) at once, a
    /// partial one only after `claim.linger_ms` (so conversions arriving together
    /// travel in one request). Relays (`destination_id` unset) are never returned.
    async fn due_destination(
        &self,
        claim: &DestinationClaim,
    ) -> Result<Vec<DestinationEntry>, StoreError>;

    /// Outbox entries, newest first, optionally only in `state`.
    async fn outbox(&self, state: Option<&str>, limit: u32) -> Result<Vec<OutboxRow>, StoreError>;

    /// Every outbox entry of `click_id`'s conversions, oldest first, at most
    /// [`MAX_RELAYS_PER_CLICK`]: the click explainer's relays, however old.
    async fn outbox_for_click(&self, click_id: &str) -> Result<Vec<OutboxRow>, StoreError>;

    /// Outbox entries by state (counting delivered ones scans them: admin use).
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// Pending and dead outbox entries only (cheap; `delivered` is 0).
    async fn outbox_backlog(&self) -> Result<OutboxCounts, StoreError>;

    /// Whether the store answers reads and its writer is running.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether clicks are still taken (spooled on the node) while [`Store::ping`] says
    /// the database is unreachable: the node then still serves landing pages.
    fn spools_clicks(&self) -> bool {
        false
    }

    /// Journal rows matching `filter`, newest first.
    async fn journal(&self, filter: &JournalFilter) -> Result<Vec<JournalRow>, StoreError>;

    /// One journal row.
    async fn journal_entry(&self, id: i64) -> Result<Option<JournalRow>, StoreError>;

    /// Conversions of a click, oldest first.
    async fn conversions_for_click(&self, click_id: &str)
        -> Result<Vec<ConversionRow>, StoreError>;

    /// The profit report `params` asks for, read from one consistent snapshot.
    async fn report(
        &self,
        catalog: &crate::report::Catalog,
        params: &crate::report::ReportParams,
    ) -> Result<crate::report::Report, StoreError>;

    /// Analytics: claim the oldest queued write transactions (at most `max_entries`,
    /// and no more than about `max_changes` changes) and read the clicks and
    /// conversions they changed, in their current state. `None` when nothing waits.
    /// Where several nodes export, the claim is this node's for `lease`.
    async fn export_claim(
        &self,
        max_entries: usize,
        max_changes: u64,
        lease: std::time::Duration,
    ) -> Result<Option<export::ExportBatch>, StoreError>;

    /// Analytics has the batch: drop its queue rows and advance the durable cursor.
    async fn export_done(&self, batch: &export::ExportBatch) -> Result<(), StoreError>;

    /// What waits to be exported.
    async fn export_backlog(&self) -> Result<export::ExportBacklog, StoreError>;

    /// Where a backfill of history stands (`done` once everything recorded before
    /// the queue started is in analytics).
    async fn backfill_cursor(&self) -> Result<export::BackfillCursor, StoreError>;

    /// The next page of history after `from`: up to `limit` clicks in key order,
    /// then conversions in id order.
    async fn backfill_page(
        &self,
        from: &export::BackfillCursor,
        limit: usize,
    ) -> Result<export::HistoryPage, StoreError>;

    /// Record a backfill's progress (after its page is in analytics).
    async fn backfill_progress(&self, cursor: &export::BackfillCursor) -> Result<(), StoreError>;

    /// Delete one batch of what `step.rule` no longer keeps (at most `step.limit` rows
    /// looked at, past `step.after`), in one short transaction; the outcome says how
    /// many went and where the next batch starts.
    async fn prune(
        &self,
        step: &retention::PruneStep,
    ) -> Result<retention::PruneOutcome, StoreError>;

    /// What the rotation bandit reads for `campaign_id`: per routing path and offer,
    /// the counted clicks since `since_ms` sent to the offer and their counted
    /// conversions (see `traffic::rotation`).
    async fn rotation_figures(
        &self,
        campaign_id: &str,
        since_ms: u64,
    ) -> Result<Vec<RotationFigure>, StoreError>;
}

/// One (path, offer) of a campaign, as [`Store::rotation_figures`] counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationFigure {
    /// `clicks.route`: a rule's name, or `default`.
    pub route: String,
    pub offer_id: String,
    /// Distinct clicks sent to the offer by `/go`.
    pub clicks: u64,
    /// Their counted conversions with this offer.
    pub conversions: u64,
}

/// The raw inbound request as journalled: everything needed to replay it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    pub ts_ms: u64,
    /// The configured network id; for an unknown network, the path segment as sent
    /// (stored as data, never used as a metric label).
    pub network_id: String,
    pub method: String,
    pub remote_ip: Option<String>,
    pub raw_query: String,
    pub raw_body: Vec<u8>,
    pub content_type: Option<String>,
    /// `s2s`, `pixel` or `replay`.
    pub origin: &'static str,
    /// The journal row this one replays.
    pub replay_of: Option<i64>,
    /// Set when the query or body was cut before journalling (an unauthenticated
    /// request may store only a prefix): what arrived, so it can still be identified.
    pub cut: Option<JournalCut>,
}

/// What an entry held before it was cut: full lengths, and SHA-256 digests of what
/// was cut (hex), so the request can be recognised without storing it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JournalCut {
    /// Bytes in the query string as received.
    pub query_len: u64,
    /// SHA-256 of the whole query string, when the query was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_sha256: Option<String>,
    /// Bytes in the body as received (as far as it was read).
    pub body_len: u64,
    /// SHA-256 of the whole body as read, when the body was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
}

/// A conversion that passed verification, parsing and attribution, ready for dedup.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionCandidate {
    pub dedup_key: String,
    pub click_id: String,
    pub campaign_id: String,
    pub source_id: String,
    pub network_id: Option<String>,
    pub offer_id: Option<String>,
    pub event: String,
    pub txid: Option<String>,
    pub payout: Option<f64>,
    pub currency: Option<String>,
    /// `pending`, `approved`, `rejected`, `chargeback`.
    pub status: &'static str,
    /// `s2s` or `pixel`.
    pub origin: &'static str,
    /// The traffic-source postback to enqueue, if the source has one.
    pub relay_url: Option<String>,
    /// Whether a status change is relayed too (the source supports it).
    pub relay_status_changes: bool,
    /// For a pixel-only conversion: hold the relay until this time (grace period for
    /// its S2S twin). `None` relays at once.
    pub relay_not_before_ms: Option<u64>,
    /// The `[[destinations]]` of the source: each gets its own outbox entry.
    pub destinations: Vec<DestinationTarget>,
}

/// A destination a conversion is enqueued for (see `crate::outbox::destinations`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationTarget {
    pub id: String,
    /// Whether status changes are enqueued for it too.
    pub status_changes: bool,
}

/// What the pipeline decided before the store: convert, or reject with a reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Convert(Box<ConversionCandidate>),
    Rejected {
        reason: &'static str,
        message: String,
        click_id: Option<String>,
    },
}

/// A postback to journal and apply in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PostbackWrite {
    pub journal: JournalEntry,
    pub verdict: Verdict,
}

/// What applying a postback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostbackOutcome {
    /// A new conversion.
    Accepted,
    /// The same conversion again: counted, not double-counted, not relayed.
    Duplicate,
    /// An existing conversion changed status (or a pixel conversion was upgraded by S2S).
    StatusChanged,
    /// Refused before dedup (the verdict's reason).
    Rejected,
}

impl PostbackOutcome {
    /// Stable label for metrics, JSON and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            PostbackOutcome::Accepted => "accepted",
            PostbackOutcome::Duplicate => "duplicate",
            PostbackOutcome::StatusChanged => "status_changed",
            PostbackOutcome::Rejected => "rejected",
        }
    }
}

/// The committed result of a [`PostbackWrite`].
#[derive(Debug, Clone, PartialEq)]
pub struct PostbackCommit {
    pub journal_id: i64,
    pub outcome: PostbackOutcome,
    pub conversion_id: Option<i64>,
    /// Current status of the conversion after this postback.
    pub status: Option<String>,
    /// An outbox entry was enqueued.
    pub relayed: bool,
}

/// The result of a delivery attempt, recorded by the outbox worker.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryResult {
    pub outbox_id: i64,
    pub ts_ms: u64,
    /// Delivered (2xx), or not.
    pub delivered: bool,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// When to try again; `None` with `delivered == false` means dead-lettered.
    pub next_attempt_ms: Option<u64>,
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub conversion_id: i64,
    pub click_id: String,
    pub source_id: String,
    pub kind: String,
    pub url: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub created_ms: u64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_ms: Option<u64>,
    /// When it was last requeued from the dead letters: `outbox.max_age` counts from
    /// here rather than from `created_ms`, so a replay is a fresh lease on life.
    pub replayed_ms: Option<u64>,
    /// The `[[destinations]]` id this entry goes to; `None` for the source's postback
    /// URL (`url`), which is then what is sent.
    pub destination_id: Option<String>,
}

/// Which entries of one destination to claim (see [`Store::due_destination`]).
#[derive(Debug, Clone)]
pub struct DestinationClaim {
    pub destination_id: String,
    pub now_ms: u64,
    /// A full batch: claimed at once.
    pub limit: u32,
    /// A partial batch is claimed only once its oldest entry has been due this long.
    pub linger_ms: u64,
    pub in_flight: Vec<i64>,
}

/// An outbox entry of a destination with what its request is built from: the
/// conversion as it is now, and the click it came from (gone once retention pruned it).
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationEntry {
    pub outbox: OutboxRow,
    pub conversion: ConversionRow,
    pub click: Option<DestinationClick>,
}

/// What a destination needs of the click.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationClick {
    pub ts_ms: u64,
    pub source_click_id: Option<String>,
    /// The landing parameter that carried it (`gclid`, `gbraid`, `fbclid`, ...).
    pub source_click_param: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub sub_ids: [Option<String>; 5],
}

/// A row of the postback journal.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JournalRow {
    pub id: i64,
    pub ts_ms: u64,
    pub network_id: String,
    pub method: String,
    pub remote_ip: Option<String>,
    pub raw_query: String,
    /// The body as stored, bytes exactly (a replay needs them; signatures cover them).
    /// Shown in JSON as text, lossily; see `raw_body_hex` for a body that is not UTF-8.
    #[serde(serialize_with = "lossy_text")]
    pub raw_body: Vec<u8>,
    /// The body in hex, only when it is not valid UTF-8 (so the API shows its bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_body_hex: Option<String>,
    pub content_type: Option<String>,
    pub origin: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub click_id: Option<String>,
    pub conversion_id: Option<i64>,
    pub replay_of: Option<i64>,
    /// Set when the entry was cut on arrival (see [`JournalCut`]); such an entry cannot
    /// be replayed.
    pub cut: Option<JournalCut>,
}

fn lossy_text<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Filter for listing the journal. Every field narrows; `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    pub network_id: Option<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub limit: u32,
}

/// A conversion as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConversionRow {
    pub id: i64,
    pub dedup_key: String,
    pub click_id: String,
    pub campaign_id: String,
    pub source_id: String,
    pub network_id: Option<String>,
    pub offer_id: Option<String>,
    pub event: String,
    pub txid: Option<String>,
    pub payout: Option<f64>,
    pub currency: Option<String>,
    pub status: String,
    pub origin: String,
    pub duplicates: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
}
