//! Durable storage for clicks and outbound clicks.
//!
//! The [`Store`] trait is the seam: the embedded [`sqlite::SqliteStore`] is the default,
//! and a shared engine serving many proxy nodes can implement the same trait later.
//! See `LIFECYCLE.md` beside this file for how a write travels from a request to disk.

pub mod sqlite;

use async_trait::async_trait;
use clickstamp_plugins::ClickId;

/// A landing or direct-link click as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickRecord {
    pub click_id: ClickId,
    pub ts_ms: u64,
    pub campaign_id: String,
    pub source_id: String,
    pub source_click_id: Option<String>,
    pub cost: Option<f64>,
    /// sub1..sub5, as configured on the traffic source.
    pub sub_ids: [Option<String>; 5],
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    /// How the click arrived: `landing` or `direct` (minted by /go).
    pub entry: &'static str,
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
    Click(ClickRecord),
    Outbound(OutboundRecord),
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
}

/// Why the store failed. Every variant is our fault, not the caller's: the request
/// that hit it is answered 503 so the client retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

/// Durable storage of clicks.
///
/// `write` returns once the writes are durable to the degree the config asks
/// (`store.durability`): with `commit`, a crash of the process after `write` returned
/// never loses them.
#[async_trait]
pub trait Store: Send + Sync {
    /// Persist `ops` atomically: all of them or none.
    async fn write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// The click with `id`, from the in-memory cache of recent clicks or from disk.
    async fn click(&self, id: &ClickId) -> Result<Option<StoredClick>, StoreError>;

    /// Number of rows in `clicks` (for health checks and tests).
    async fn click_count(&self) -> Result<u64, StoreError>;
}
