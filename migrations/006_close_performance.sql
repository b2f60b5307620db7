-- 006_close_performance: a batch the store keeps failing to ingest no longer
-- blocks its host for good. The reasoning is in docs/design/0002-storage.md
-- and 0004-collector.md (the sections of 2026-12-04 on quarantined
-- batches).
--
-- The number was given to the work on slow closes (a quadratic close made
-- the same batch time out forever). The closes needed no schema change: the
-- store now updates a row by the ctid it read it at, under the host lock
-- (store/ingest.go). What they did need is what this file adds: a way out
-- for any batch that fails again and again, whatever the cause.

-- ingest_failure: the batch an agent is stuck on, one row per agent. The
-- collector keeps no state between calls, so it counts here: every store
-- failure of a call (an error or the ingest timeout, not a pushback before
-- the store) adds one when the call starts at the same report (the agent
-- resends from its oldest unacknowledged report; the batch may grow behind
-- it) of the same spool incarnation, and starts the count again at 1 for
-- any other. A call that succeeds leaves the row; the agent's next stuck
-- batch, at another sequence, starts over, and a quarantine deletes it.
CREATE TABLE ingest_failure (
    agent_id        text        PRIMARY KEY REFERENCES agent ON DELETE CASCADE,
    incarnation     bigint,
    first_sequence  bigint      NOT NULL CHECK (first_sequence > 0),
    last_sequence   bigint      NOT NULL CHECK (last_sequence >= first_sequence),
    failures        integer     NOT NULL CHECK (failures > 0),
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    last_error      text        NOT NULL
);

-- quarantined_batch: reports acknowledged without being applied, after
-- their batch failed failures times from first_failed_at on. batch is what
-- the agent sent, re-encoded: a sessionaudit.v1.Batch in protobuf holding
-- the quarantined reports (first_sequence..last_sequence), for an operator
-- to inspect or replay. The host's coverage gap for them is in
-- coverage_gap (reason 'quarantined'). Rows are kept until deleted.
CREATE TABLE quarantined_batch (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id         integer     NOT NULL REFERENCES host,
    agent_id        text        NOT NULL,
    incarnation     bigint,
    first_sequence  bigint      NOT NULL CHECK (first_sequence > 0),
    last_sequence   bigint      NOT NULL CHECK (last_sequence >= first_sequence),
    reports         integer     NOT NULL CHECK (reports > 0),
    first_taken_at  timestamptz NOT NULL,
    last_taken_at   timestamptz NOT NULL,
    failures        integer     NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_error      text        NOT NULL,
    batch           bytea       NOT NULL,
    quarantined_at  timestamptz NOT NULL
);
CREATE INDEX quarantined_batch_host ON quarantined_batch (host_id, quarantined_at);
