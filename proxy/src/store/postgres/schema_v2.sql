-- clickstamp's shared store, migration 2: the analytics export queue (store/export.rs).

-- One row per write transaction that changed a click, an outbound click or a
-- conversion, written only by nodes with [analytics] configured. A node claims rows
-- with a lease (as the outbox's) and deletes them once exported.
CREATE TABLE analytics_queue (
    id             BIGSERIAL PRIMARY KEY,
    ts_ms          BIGINT NOT NULL,             -- committed at
    click_lo       TEXT COLLATE "C",            -- key range of the clicks written
    click_hi       TEXT COLLATE "C",
    outbound       TEXT NOT NULL DEFAULT '',    -- clicks whose latest /go changed, space-separated
    conversions    TEXT NOT NULL DEFAULT '',    -- conversions created or changed, space-separated ids
    changes        BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until_ms BIGINT
);

-- Where analytics stands: one row.
CREATE TABLE analytics_cursor (
    id                        INTEGER PRIMARY KEY CHECK (id = 1),
    exported_changes          BIGINT NOT NULL DEFAULT 0,
    exported_ms               BIGINT,
    exported_through_ms       BIGINT,
    backfill_click_after      TEXT COLLATE "C",
    backfill_conversion_after BIGINT,
    backfill_done             BOOLEAN NOT NULL DEFAULT false
);
