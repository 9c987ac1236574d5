//! What is copied: each table's columns with their PostgreSQL types, and its id sequence.

/// How a column is read from SQLite and sent to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    /// Text stored in the dedup key's form of an event (an older file may hold others).
    Event,
    Int8,
    Int4,
    Float8,
    Bytea,
    /// SQLite's 0/1 as PostgreSQL's boolean.
    Bool,
}

impl Kind {
    pub(super) fn array_type(self) -> &'static str {
        match self {
            Kind::Text | Kind::Event => "text[]",
            Kind::Int8 => "int8[]",
            Kind::Int4 => "int4[]",
            Kind::Float8 => "float8[]",
            Kind::Bytea => "bytea[]",
            Kind::Bool => "bool[]",
        }
    }

    /// What a value of the kind is, for a message about one that is not.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Kind::Text | Kind::Event => "text",
            Kind::Int8 | Kind::Int4 => "an integer",
            Kind::Float8 => "a number",
            Kind::Bytea => "bytes",
            Kind::Bool => "0 or 1",
        }
    }
}

pub(super) struct Column {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
}

pub(super) const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

/// The sequence that numbers a table's key column.
pub(super) struct Sequence {
    /// SQL naming the sequence (as text).
    pub(super) name_sql: &'static str,
    pub(super) column: &'static str,
}

/// One table of the store, as both backends hold it.
pub(super) struct Table {
    pub(super) name: &'static str,
    /// Every column copied, in one order for both sides. PostgreSQL's outbox has two
    /// more (its leases), left NULL: no node holds an imported entry.
    pub(super) columns: &'static [Column],
    /// The primary key: the copy's order and its conflict target.
    pub(super) key: &'static [&'static str],
    /// Columns a file written by an older version may lack: read as NULL.
    pub(super) added_later: &'static [&'static str],
    /// Columns no write changes after the row is created: a row already in PostgreSQL
    /// must equal the file's on these to count as already there.
    pub(super) identity: &'static [&'static str],
    pub(super) sequence: Option<Sequence>,
    /// Whether rows here mean nodes (or an import) wrote into the database, so ids taken
    /// from the file could collide with theirs. Clicks are keyed by random ids and
    /// outbound clicks by their click: neither can collide.
    pub(super) numbered: bool,
}

pub(super) use Kind::{Bool, Bytea, Event, Float8, Int4, Int8, Text};

pub(super) const TABLES: &[Table] = &[
    Table {
        name: "clicks",
        columns: &[
            col("click_id", Text),
            col("ts_ms", Int8),
            col("campaign_id", Text),
            col("source_id", Text),
            col("source_click_id", Text),
            col("source_click_param", Text),
            col("cost", Float8),
            col("sub1", Text),
            col("sub2", Text),
            col("sub3", Text),
            col("sub4", Text),
            col("sub5", Text),
            col("ip", Text),
            col("user_agent", Text),
            col("referrer", Text),
            col("entry", Text),
            col("quality", Text),
            col("quality_reasons", Text),
            col("excluded", Bool),
            col("excluded_reason", Text),
            col("lander", Text),
            col("country", Text),
            col("device", Text),
            col("os", Text),
            col("browser", Text),
            col("route", Text),
        ],
        key: &["click_id"],
        added_later: &[
            "quality",
            "quality_reasons",
            "excluded",
            "excluded_reason",
            "lander",
            "country",
            "device",
            "os",
            "browser",
            "route",
        ],
        identity: &["ts_ms", "campaign_id", "source_id"],
        sequence: None,
        numbered: false,
    },
    Table {
        name: "outbound_clicks",
        columns: &[
            col("click_id", Text),
            col("ts_ms", Int8),
            col("seq", Int8),
            col("campaign_id", Text),
            col("offer_id", Text),
        ],
        key: &["click_id", "ts_ms", "seq"],
        added_later: &[],
        identity: &["campaign_id", "offer_id"],
        sequence: Some(Sequence {
            name_sql: "'outbound_clicks_seq'",
            column: "seq",
        }),
        numbered: false,
    },
    Table {
        name: "postback_journal",
        columns: &[
            col("id", Int8),
            col("ts_ms", Int8),
            col("network_id", Text),
            col("method", Text),
            col("remote_ip", Text),
            col("raw_query", Text),
            col("raw_body", Bytea),
            col("content_type", Text),
            col("origin", Text),
            col("outcome", Text),
            col("reason", Text),
            col("message", Text),
            col("click_id", Text),
            col("conversion_id", Int8),
            col("replay_of", Int8),
            col("cut", Text),
        ],
        key: &["id"],
        added_later: &["cut"],
        identity: &["ts_ms", "network_id", "origin", "raw_query"],
        sequence: Some(Sequence {
            name_sql: "pg_get_serial_sequence('postback_journal', 'id')",
            column: "id",
        }),
        numbered: true,
    },
    Table {
        name: "conversions",
        columns: &[
            col("id", Int8),
            col("dedup_key", Text),
            col("click_id", Text),
            col("campaign_id", Text),
            col("source_id", Text),
            col("network_id", Text),
            col("offer_id", Text),
            col("event", Event),
            col("txid", Text),
            col("payout", Float8),
            col("currency", Text),
            col("status", Text),
            col("origin", Text),
            col("duplicates", Int4),
            col("created_ms", Int8),
            col("updated_ms", Int8),
        ],
        key: &["id"],
        added_later: &[],
        identity: &["dedup_key", "click_id", "created_ms"],
        sequence: Some(Sequence {
            name_sql: "pg_get_serial_sequence('conversions', 'id')",
            column: "id",
        }),
        numbered: true,
    },
    Table {
        name: "conversion_history",
        columns: &[
            col("id", Int8),
            col("conversion_id", Int8),
            col("ts_ms", Int8),
            col("status", Text),
            col("payout", Float8),
            col("origin", Text),
            col("journal_id", Int8),
        ],
        key: &["id"],
        added_later: &[],
        identity: &["conversion_id", "ts_ms", "status"],
        sequence: Some(Sequence {
            name_sql: "pg_get_serial_sequence('conversion_history', 'id')",
            column: "id",
        }),
        numbered: true,
    },
    Table {
        name: "outbox",
        columns: &[
            col("id", Int8),
            col("conversion_id", Int8),
            col("click_id", Text),
            col("source_id", Text),
            col("kind", Text),
            col("url", Text),
            col("state", Text),
            col("attempts", Int4),
            col("next_attempt_ms", Int8),
            col("created_ms", Int8),
            col("last_status", Int4),
            col("last_error", Text),
            col("delivered_ms", Int8),
            col("replayed_ms", Int8),
            col("destination_id", Text),
        ],
        key: &["id"],
        added_later: &["replayed_ms", "destination_id"],
        identity: &[
            "conversion_id",
            "click_id",
            "kind",
            "created_ms",
            "destination_id",
        ],
        sequence: Some(Sequence {
            name_sql: "pg_get_serial_sequence('outbox', 'id')",
            column: "id",
        }),
        numbered: true,
    },
];
