-- A generation number for the record, bumped by each reset (`WhosOnline::reset_record`).
-- Instances compare it to tell a repaired record from a stale one; rows from
-- before it start at generation 0.
ALTER TABLE whos_online_record
    ADD COLUMN IF NOT EXISTS generation BIGINT NOT NULL DEFAULT 0 CHECK (generation >= 0);
