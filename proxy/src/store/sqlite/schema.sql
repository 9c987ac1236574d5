-- clickstamp's embedded store. Open it with `sqlite3 data/clickstamp.sqlite`.

-- Every click: landing page views and direct links minted by /go.
CREATE TABLE IF NOT EXISTS clicks (
    click_id        TEXT PRIMARY KEY,      -- 32 hex, UUIDv7: time-ordered
    ts_ms           INTEGER NOT NULL,
    campaign_id     TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    source_click_id TEXT,                  -- the traffic source's own click id
    source_click_param TEXT,               -- the landing parameter it came in (gclid, gbraid, ...)
    cost            REAL,
    sub1 TEXT, sub2 TEXT, sub3 TEXT, sub4 TEXT, sub5 TEXT,
    ip              TEXT,
    user_agent      TEXT,
    referrer        TEXT,
    entry           TEXT NOT NULL,         -- landing | direct
    -- Traffic quality (docs/traffic-rules.md) and the visitor's traits; '' = unknown.
    quality         TEXT NOT NULL DEFAULT 'ok',  -- ok | flagged
    quality_reasons TEXT NOT NULL DEFAULT '',    -- comma-separated reason names
    excluded        INTEGER NOT NULL DEFAULT 0,  -- 1: never counted in reports nor relayed
    excluded_reason TEXT,                        -- why (quality, ...), when excluded
    lander          TEXT NOT NULL DEFAULT '',
    country         TEXT NOT NULL DEFAULT '',
    device          TEXT NOT NULL DEFAULT '',
    os              TEXT NOT NULL DEFAULT '',
    browser         TEXT NOT NULL DEFAULT '',
    route           TEXT NOT NULL DEFAULT ''     -- the routing rule (or default) that picked lander and offers
) WITHOUT ROWID;
-- No secondary index on clicks: the key is time-ordered, so a time range is a key
-- range, and every index would add pages to each click's commit.

-- Visitors sent from /go to an offer. Keyed by click, so "the offer this click went
-- to" is a key lookup without a second index.
CREATE TABLE IF NOT EXISTS outbound_clicks (
    click_id    TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,          -- orders outbound clicks of one click within a millisecond
    campaign_id TEXT NOT NULL,
    offer_id    TEXT NOT NULL,
    PRIMARY KEY (click_id, ts_ms, seq)
) WITHOUT ROWID;

-- Every inbound postback and pixel hit, accepted or not, as received.
CREATE TABLE IF NOT EXISTS postback_journal (
    id            INTEGER PRIMARY KEY,
    ts_ms         INTEGER NOT NULL,
    network_id    TEXT NOT NULL,
    method        TEXT NOT NULL,
    remote_ip     TEXT,
    raw_query     TEXT NOT NULL,
    raw_body      BLOB,
    content_type  TEXT,
    origin        TEXT NOT NULL,           -- s2s | pixel | replay
    outcome       TEXT NOT NULL,           -- accepted | duplicate | status_changed | rejected
    reason        TEXT,                    -- why, for rejected ones
    message       TEXT,
    click_id      TEXT,
    conversion_id INTEGER,
    replay_of     INTEGER,
    cut           TEXT                     -- JSON {query_len, query_sha256, body_len, body_sha256} when cut on arrival
);
-- No index on ts_ms: ids grow with time, so the newest entries are the highest ids.

-- Conversions, one per dedup key: (click, event) plus txid when the network sends one.
CREATE TABLE IF NOT EXISTS conversions (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT NOT NULL,             -- unique with its click: see conversions_by_click_key
    click_id    TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    network_id  TEXT,
    offer_id    TEXT,
    event       TEXT NOT NULL,             -- normalised as the dedup key does: trimmed, lowercase
    txid        TEXT,
    payout      REAL,
    currency    TEXT,
    status      TEXT NOT NULL,             -- pending | approved | rejected | chargeback
    origin      TEXT NOT NULL,             -- s2s | pixel (s2s wins)
    duplicates  INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
-- The one index on conversions. Dedup (the key), the pixel/S2S merge (click, event,
-- origin) and reports (a click range) all seek it by click. Click ids are time-ordered,
-- so its writes gather on recent clicks; an index on the hashed key alone would put
-- each postback on a random page, and each index is another page to write per postback.
CREATE UNIQUE INDEX IF NOT EXISTS conversions_by_click_key ON conversions (click_id, event, origin, dedup_key);

-- Every status a conversion has had.
CREATE TABLE IF NOT EXISTS conversion_history (
    id            INTEGER PRIMARY KEY,
    conversion_id INTEGER NOT NULL,
    ts_ms         INTEGER NOT NULL,
    status        TEXT NOT NULL,
    payout        REAL,
    origin        TEXT NOT NULL,
    journal_id    INTEGER
);
-- Read rarely (an operator auditing one conversion): no index, nothing extra per write.

-- Relays to traffic sources, written in the same transaction as their conversion.
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY,
    conversion_id   INTEGER NOT NULL,
    click_id        TEXT NOT NULL,         -- joins logs of the click, its postbacks and this relay
    source_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,         -- conversion | status
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,         -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_ms    INTEGER,
    replayed_ms     INTEGER,               -- last requeued from the dead letters: max_age counts from here
    destination_id  TEXT                   -- the [[destinations]] id; NULL for the source's postback URL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms);
-- A click's relays, for the click explainer: one small entry per relay written.
CREATE INDEX IF NOT EXISTS outbox_by_conversion ON outbox (conversion_id);

-- Indexes earlier versions created and this one no longer keeps.
DROP INDEX IF EXISTS journal_by_time;
DROP INDEX IF EXISTS conversions_by_campaign_time;
DROP INDEX IF EXISTS history_by_conversion;
DROP INDEX IF EXISTS conversions_by_click;
DROP INDEX IF EXISTS conversions_by_click_event;

-- What analytics has not exported yet: one row per write transaction that changed a
-- click, an outbound click or a conversion, written only while [analytics] is
-- configured (see store/export.rs). Rows are deleted once exported.
CREATE TABLE IF NOT EXISTS analytics_queue (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,          -- committed at
    click_lo    TEXT,                      -- key range of the clicks written
    click_hi    TEXT,
    outbound    TEXT NOT NULL DEFAULT '',  -- clicks whose latest /go changed, space-separated
    conversions TEXT NOT NULL DEFAULT '',  -- conversions created or changed, space-separated ids
    changes     INTEGER NOT NULL
);

-- Where analytics stands: one row.
CREATE TABLE IF NOT EXISTS analytics_cursor (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    exported_changes    INTEGER NOT NULL DEFAULT 0,  -- changes exported, ever
    exported_ms         INTEGER,                     -- when the last export was acknowledged
    exported_through_ms INTEGER,                     -- commit time of the newest change exported
    backfill_click_after TEXT,                       -- a backfill's last click sent
    backfill_conversion_after INTEGER,               -- and last conversion
    backfill_done       INTEGER NOT NULL DEFAULT 0   -- history is all in analytics
);
