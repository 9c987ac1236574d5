-- clickstamp's shared store, version 1. The same tables and columns as the embedded
-- SQLite store (proxy/src/store/sqlite/schema.sql), plus the outbox's leases.
-- Click ids compare in the C collation: their hex order is their time order, and a
-- report's time range is a key range only if the server compares them bytewise.

-- Every click: landing page views and direct links minted by /go.
CREATE TABLE clicks (
    click_id           TEXT COLLATE "C" PRIMARY KEY,  -- 32 hex, UUIDv7: time-ordered
    ts_ms              BIGINT NOT NULL,
    campaign_id        TEXT NOT NULL,
    source_id          TEXT NOT NULL,
    source_click_id    TEXT,
    source_click_param TEXT,
    cost               DOUBLE PRECISION,
    sub1 TEXT, sub2 TEXT, sub3 TEXT, sub4 TEXT, sub5 TEXT,
    ip                 TEXT,
    user_agent         TEXT,
    referrer           TEXT,
    entry              TEXT NOT NULL             -- landing | direct
);

-- Visitors sent from /go to an offer, keyed by click. `seq` comes from a sequence, so
-- two nodes recording the same click in the same millisecond never collide.
CREATE SEQUENCE outbound_clicks_seq;
CREATE TABLE outbound_clicks (
    click_id    TEXT COLLATE "C" NOT NULL,
    ts_ms       BIGINT NOT NULL,
    seq         BIGINT NOT NULL DEFAULT nextval('outbound_clicks_seq'),
    campaign_id TEXT NOT NULL,
    offer_id    TEXT NOT NULL,
    PRIMARY KEY (click_id, ts_ms, seq)
);

-- Every inbound postback and pixel hit, accepted or not, as received.
CREATE TABLE postback_journal (
    id            BIGSERIAL PRIMARY KEY,
    ts_ms         BIGINT NOT NULL,
    network_id    TEXT NOT NULL,
    method        TEXT NOT NULL,
    remote_ip     TEXT,
    raw_query     TEXT NOT NULL,
    raw_body      BYTEA,
    content_type  TEXT,
    origin        TEXT NOT NULL,                 -- s2s | pixel | replay
    outcome       TEXT NOT NULL,                 -- accepted | duplicate | status_changed | rejected
    reason        TEXT,
    message       TEXT,
    click_id      TEXT COLLATE "C",
    conversion_id BIGINT,
    replay_of     BIGINT,
    cut           TEXT                           -- JSON, when cut on arrival
);

-- Conversions, one per dedup key within its click.
CREATE TABLE conversions (
    id          BIGSERIAL PRIMARY KEY,
    dedup_key   TEXT NOT NULL,
    click_id    TEXT COLLATE "C" NOT NULL,
    campaign_id TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    network_id  TEXT,
    offer_id    TEXT,
    event       TEXT NOT NULL,
    txid        TEXT,
    payout      DOUBLE PRECISION,
    currency    TEXT,
    status      TEXT NOT NULL,                   -- pending | approved | rejected | chargeback
    origin      TEXT NOT NULL,                   -- s2s | pixel
    duplicates  INTEGER NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
-- Dedup, the pixel/S2S merge and reports all seek by click, as in the embedded store;
-- unique, so even a write that skipped its lock could not count a conversion twice.
CREATE UNIQUE INDEX conversions_by_click_key ON conversions (click_id, event, origin, dedup_key);

-- Every status a conversion has had.
CREATE TABLE conversion_history (
    id            BIGSERIAL PRIMARY KEY,
    conversion_id BIGINT NOT NULL,
    ts_ms         BIGINT NOT NULL,
    status        TEXT NOT NULL,
    payout        DOUBLE PRECISION,
    origin        TEXT NOT NULL,
    journal_id    BIGINT
);

-- Relays to traffic sources, written in the same transaction as their conversion.
-- A node delivering an entry holds its lease (owner, until); another node takes the
-- entry only once the lease has run out.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    conversion_id   BIGINT NOT NULL,
    click_id        TEXT COLLATE "C" NOT NULL,
    source_id       TEXT NOT NULL,
    kind            TEXT NOT NULL,               -- conversion | status
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,               -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_ms    BIGINT,
    replayed_ms     BIGINT,
    lease_owner     TEXT,
    lease_until_ms  BIGINT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_ms);
CREATE INDEX outbox_by_conversion ON outbox (conversion_id);
