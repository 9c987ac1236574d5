-- clickstamp's shared store, migration 3: outbox entries for [[destinations]].

-- The destination an entry goes to (conversions APIs, webhooks); NULL for the
-- traffic source's postback URL, which `url` then holds.
ALTER TABLE outbox ADD COLUMN destination_id TEXT;

-- What a destination's claim seeks; relays are not in it, so they pay nothing for it.
CREATE INDEX outbox_due_by_destination ON outbox (destination_id, next_attempt_ms)
    WHERE state = 'pending' AND destination_id IS NOT NULL;
