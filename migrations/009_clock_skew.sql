-- 009_clock_skew: each host's clock skew as last measured by a collector
-- (docs/design/0002-storage.md, "Clocks ahead of the collector").
--
-- The skew is a batch's sent_at (the host's clock) minus the collector's
-- clock when the batch arrived, network delay included: positive when the
-- host's clock is ahead. Both columns are NULL until a collector measures
-- one, and are written together. Collectors write them when the skew
-- changed by a second or more, else at most every ten minutes each, outside
-- the ingest transaction (Store.RecordClockSkew).
ALTER TABLE host
    -- Milliseconds; positive: the host's clock is ahead of the collector's.
    ADD COLUMN clock_skew_ms bigint,
    -- The collector's clock: when clock_skew_ms was measured.
    ADD COLUMN clock_skew_at timestamptz,
    ADD CHECK ((clock_skew_ms IS NULL) = (clock_skew_at IS NULL));
