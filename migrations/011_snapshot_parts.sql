-- 011_snapshot_parts: the parts of a snapshot an agent split in parts
-- (Snapshot.part, docs/design/0002-storage.md, "Snapshots in parts"), kept
-- until the last part arrives.
--
-- A part other than the last is acknowledged when it is written here; the
-- last part is applied with the parts kept here as one full snapshot, and
-- they are deleted in the same transaction. Parts of a set that will never
-- be complete (the agent started another snapshot) are deleted by the next
-- report applied after them.
CREATE TABLE snapshot_part (
    agent_id    text        NOT NULL REFERENCES agent (agent_id) ON DELETE CASCADE,
    -- The part's report sequence, in the agent's spool incarnation.
    sequence    bigint      NOT NULL,
    incarnation bigint      NOT NULL,
    -- The taken_at the agent stamped (before any correction of a clock
    -- ahead): every part of one snapshot has the same.
    taken_at    timestamptz NOT NULL,
    part        integer     NOT NULL CHECK (part >= 1 AND part < parts_total),
    parts_total integer     NOT NULL,
    -- The part's clean report (store.Report) as JSON.
    report      jsonb       NOT NULL,
    PRIMARY KEY (agent_id, sequence)
);
