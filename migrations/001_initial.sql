-- 001_initial: hosts, agents, accounts, labels, session intervals, notes.
-- The reasoning is in docs/design/0002-storage.md.

-- host: one row per Windows host, identified by its machine GUID. The row is
-- also the lock that serializes every write about the host's sessions.
CREATE TABLE host (
    host_id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_guid     text        NOT NULL UNIQUE,
    hostname         text        NOT NULL DEFAULT '',
    domain           text        NOT NULL DEFAULT '',
    os_caption       text        NOT NULL DEFAULT '',
    os_version       text        NOT NULL DEFAULT '',
    os_build         text        NOT NULL DEFAULT '',
    agent_version    text        NOT NULL DEFAULT '',
    -- The agent that last reported for the host (the one enrolled for it).
    agent_id         text,
    -- LastBootUpTime of the current boot; '1970-01-01' while unknown.
    boot_time        timestamptz NOT NULL DEFAULT 'epoch',
    -- Collector clock: first and latest report received.
    first_received   timestamptz NOT NULL DEFAULT now(),
    last_received    timestamptz NOT NULL DEFAULT now(),
    -- Agent clock: the latest observation applied (never moves backwards).
    last_seen        timestamptz,
    -- Agent clock: the latest observation whose logon (server) session list
    -- was complete. It is the "last seen" of every open logon (server) session
    -- of the host, so that polling writes nothing per session.
    logon_seen_at    timestamptz,
    server_seen_at   timestamptz
);
CREATE INDEX host_hostname ON host (lower(hostname));
CREATE INDEX host_last_seen ON host (last_seen);

-- agent: delivery bookkeeping. applied_sequence is the high-water mark: every
-- report of the agent numbered at or below it is stored (or was superseded).
CREATE TABLE agent (
    agent_id         text        PRIMARY KEY,
    host_id          integer     NOT NULL REFERENCES host,
    applied_sequence bigint      NOT NULL DEFAULT 0 CHECK (applied_sequence >= 0),
    first_received   timestamptz NOT NULL DEFAULT now(),
    last_received    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_host ON agent (host_id);

-- account: DOMAIN\name as Win32_LoggedOnUser names it, matched without regard
-- to case as Windows does. The first spelling seen is kept.
CREATE TABLE account (
    account_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain     text NOT NULL,
    name       text NOT NULL,
    sid        text
);
CREATE UNIQUE INDEX account_domain_name ON account (lower(domain), lower(name));

-- label: interned strings that repeat across many intervals (authentication
-- packages, remote computer and user names, client types, transports).
CREATE TABLE label (
    label_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    value    text NOT NULL UNIQUE
);
CREATE INDEX label_lower ON label (lower(value));

-- Session intervals. A row is open while end_before = 'infinity'; then its
-- last observation is the host's logon_seen_at / server_seen_at and last_seen
-- is NULL. Closed, the session ended after last_seen and before end_before.
-- Both tables are partitioned by end_before: a monthly partition holds the
-- sessions that ended (at the latest) in that month, the _open partition the
-- sessions still open, and _default anything outside the monthly partitions
-- that exist. Retention drops monthly partitions whole; an open session is
-- never in one.
CREATE SEQUENCE logon_session_id_seq AS bigint;
CREATE TABLE logon_session (
    id              bigint      NOT NULL DEFAULT nextval('logon_session_id_seq'),
    boot_time       timestamptz NOT NULL,
    start_time      timestamptz NOT NULL,
    last_seen       timestamptz,
    end_before      timestamptz NOT NULL,
    install_date    timestamptz,
    logon_type      bigint,
    host_id         integer     NOT NULL,
    account_id      integer,
    auth_package_id integer,
    logon_id        text        NOT NULL,
    caption         text,
    description     text,
    name            text,
    status          text
) PARTITION BY RANGE (end_before);
ALTER SEQUENCE logon_session_id_seq OWNED BY logon_session.id;
CREATE INDEX logon_session_host_start ON logon_session (host_id, start_time);
CREATE INDEX logon_session_account_start ON logon_session (account_id, start_time);
CREATE TABLE logon_session_open PARTITION OF logon_session
    FOR VALUES FROM ('infinity') TO (MAXVALUE);
CREATE TABLE logon_session_default PARTITION OF logon_session DEFAULT;

CREATE SEQUENCE server_session_id_seq AS bigint;
CREATE TABLE server_session (
    id               bigint      NOT NULL DEFAULT nextval('server_session_id_seq'),
    start_time       timestamptz NOT NULL,
    last_seen        timestamptz,
    end_before       timestamptz NOT NULL,
    install_date     timestamptz,
    session_type     bigint,
    host_id          integer     NOT NULL,
    computer_label   integer     NOT NULL,
    user_label       integer     NOT NULL,
    client_type_label integer,
    transport_label  integer,
    caption          text,
    description      text,
    name             text,
    status           text
) PARTITION BY RANGE (end_before);
ALTER SEQUENCE server_session_id_seq OWNED BY server_session.id;
CREATE INDEX server_session_host_start ON server_session (host_id, start_time);
CREATE INDEX server_session_computer_start ON server_session (computer_label, start_time);
CREATE INDEX server_session_user_start ON server_session (user_label, start_time);
CREATE TABLE server_session_open PARTITION OF server_session
    FOR VALUES FROM ('infinity') TO (MAXVALUE);
CREATE TABLE server_session_default PARTITION OF server_session DEFAULT;

-- ingest_note: every value the store changed while sanitizing a report.
CREATE TABLE ingest_note (
    recorded_at timestamptz NOT NULL DEFAULT now(),
    host_id     integer,
    agent_id    text        NOT NULL,
    sequence    bigint      NOT NULL,
    field       text        NOT NULL,
    note        text        NOT NULL
);
CREATE INDEX ingest_note_recorded ON ingest_note (recorded_at);

-- assert_updated fails the transaction when an UPDATE of the ingest did not
-- touch the rows it read under the host lock: the statement pipeline that
-- ends with COMMIT then never commits a partial write.
CREATE FUNCTION assert_updated(expected integer, actual bigint, what text) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF expected <> actual THEN
        RAISE EXCEPTION 'updated % %, expected %: the stored state changed under the host lock', actual, what, expected;
    END IF;
    RETURN 0;
END
$$;
