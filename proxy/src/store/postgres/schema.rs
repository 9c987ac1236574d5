//! The PostgreSQL schema, as numbered migrations applied on `serve`.
//!
//! Every node runs [`migrate`] at start. It holds a session advisory lock while it
//! reads and raises the version, so nodes starting together apply each migration
//! exactly once, one after another; each migration commits with its version row, so
//! an interrupted one is redone whole. A database whose version is newer than
//! [`MIGRATIONS`] knows was migrated by a newer binary, and this one refuses it rather
//! than write rows in a layout it does not understand.

use crate::store::StoreError;
use tokio_postgres::Client;

/// The advisory lock key migrations hold ("clickstm" in ASCII): any constant works, as
/// long as every node uses the same one and nothing else in the database does.
const MIGRATION_LOCK: i64 = 0x636c_6963_6b73_746d;

/// One schema change: its version, a line for the log, and its SQL.
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: a released migration never changes.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "clicks, outbound clicks, journal, conversions, history, outbox with leases",
        sql: include_str!("schema_v1.sql"),
    },
    Migration {
        version: 2,
        description: "analytics export queue and cursor",
        sql: include_str!("schema_v2.sql"),
    },
    Migration {
        version: 3,
        description: "outbox entries for destinations",
        sql: include_str!("schema_v3.sql"),
    },
    Migration {
        version: 4,
        description: "traffic quality, exclusion and visitor traits on clicks",
        sql: include_str!("schema_v4.sql"),
    },
];

/// The version this binary writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// What [`migrate`] found and did, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: i32,
    pub to: i32,
}

/// Bring the database up to [`latest`], or refuse one that is newer.
pub async fn migrate(client: &mut Client) -> Result<Migrated, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(super::error)?;
    let result = migrate_locked(client).await;
    // Released explicitly on success and failure alike; a session lock would also end
    // with the connection.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<Migrated, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(super::error)?;
    let from: i32 = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(super::error)?
        .get(0);
    if from > latest() {
        return Err(StoreError::SchemaTooNew {
            found: from,
            supported: latest(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        tracing::info!(
            version = m.version,
            description = m.description,
            "store: applying migration"
        );
        let tx = client.transaction().await.map_err(super::error)?;
        tx.batch_execute(m.sql).await.map_err(super::error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await
        .map_err(super::error)?;
        tx.commit().await.map_err(super::error)?;
    }
    Ok(Migrated {
        from,
        to: latest().max(from),
    })
}

/// The version the database is at (0 for an empty one), without changing anything.
pub async fn current(client: &Client) -> Result<i32, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(super::error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(super::error)?
        .get(0))
}
