-- 007_coverage_gaps: the stretches of time over which a host's history is
-- known to be incomplete (docs/design/0002-storage.md, "Coverage gaps"). A
-- gap is a fact the store records when it learns of it: reports an agent
-- lost before it delivered them ('spool_damage'); later, other causes (a
-- cleared event log, say) under other reasons.
--
-- Between start_time and end_time (the host's clock) sessions may be
-- missing entirely; sessions open at start_time may have ended anywhere
-- after it, and sessions that started within the gap and lasted beyond it
-- are stored only from settled_at, the first complete snapshot after the
-- gap (NULL until it arrives), which makes the host's picture whole again.
CREATE TABLE coverage_gap (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id        integer     NOT NULL REFERENCES host,
    -- The agent whose reports revealed the gap; NULL when no agent did.
    agent_id       text,
    -- Why the history is incomplete: 'spool_damage' (the agent's spool
    -- found reports damaged on disk), 'lost_reports' (an agent lost reports
    -- for a reason it did not name); later reasons are new words.
    reason         text        NOT NULL CHECK (reason ~ '^[a-z][a-z0-9_]*$'),
    -- The host's clock: its last observation the store holds before the gap,
    -- and the first after it.
    start_time     timestamptz NOT NULL,
    end_time       timestamptz NOT NULL CHECK (end_time >= start_time),
    -- The host's clock: the first complete snapshot after the gap; NULL
    -- until it arrives.
    settled_at     timestamptz,
    -- The reports lost (both included), for a gap of lost reports; NULL for
    -- other reasons.
    first_sequence bigint CHECK (first_sequence >= 1),
    last_sequence  bigint CHECK (last_sequence >= first_sequence),
    -- The collector's clock: when the gap was recorded.
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((first_sequence IS NULL) = (last_sequence IS NULL))
);
-- A host's gaps over a range (end_time > $from AND start_time < $to), and
-- the count of the hosts list.
CREATE INDEX coverage_gap_host ON coverage_gap (host_id, end_time);
-- The fleet's gaps over a range, and retention.
CREATE INDEX coverage_gap_end ON coverage_gap (end_time);
-- The gaps of a host that its next complete snapshot settles.
CREATE INDEX coverage_gap_unsettled ON coverage_gap (host_id) WHERE settled_at IS NULL;
