-- clickstamp's shared store, migration 4: traffic quality and visitor traits on clicks
-- (docs/traffic-rules.md). Each column has a constant default, so adding it rewrites
-- nothing on PostgreSQL 11 and later, whatever the size of the table.

ALTER TABLE clicks ADD COLUMN quality TEXT NOT NULL DEFAULT 'ok';         -- ok | flagged
ALTER TABLE clicks ADD COLUMN quality_reasons TEXT NOT NULL DEFAULT '';   -- comma-separated reason names
ALTER TABLE clicks ADD COLUMN excluded BOOLEAN NOT NULL DEFAULT false;    -- never counted in reports nor relayed
ALTER TABLE clicks ADD COLUMN excluded_reason TEXT;                       -- why (quality, ...), when excluded
ALTER TABLE clicks ADD COLUMN lander TEXT NOT NULL DEFAULT '';
ALTER TABLE clicks ADD COLUMN country TEXT NOT NULL DEFAULT '';
ALTER TABLE clicks ADD COLUMN device TEXT NOT NULL DEFAULT '';
ALTER TABLE clicks ADD COLUMN os TEXT NOT NULL DEFAULT '';
ALTER TABLE clicks ADD COLUMN browser TEXT NOT NULL DEFAULT '';
ALTER TABLE clicks ADD COLUMN route TEXT NOT NULL DEFAULT '';             -- the routing rule (or default) that picked lander and offers
