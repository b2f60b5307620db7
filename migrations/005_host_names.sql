-- 005_host_names: what a host may not rewrite and what it may not hide.
-- The reasoning is in docs/design/0002-storage.md ("Closed intervals are
-- immutable", "Host names", "Certificate use") and 0003-security.md (the
-- section of 2026-12-04 on history, names and stolen certificates).

-- host.boot_since: the observation (agent clock) from which boot_time is the
-- host's boot, set by the report that changed the boot. An interval that
-- ended by then belongs to an earlier boot, or to an earlier stay in this
-- one, and is never reopened. NULL: not known (the boot has not changed
-- since the first report, or since before this migration); boot_time then
-- stands in for it.
ALTER TABLE host ADD COLUMN boot_since timestamptz;

-- host_name: every name (host name and domain) a machine GUID has reported,
-- from when to when, by the collector's clock (host.last_received of the
-- call that stored it: a host cannot backdate it). until is NULL for the
-- current name. Written by the trigger below, whoever changes the host row
-- (enrollment creating it, Ingest storing new facts), so that no writer can
-- forget it. Empty names are not recorded: they end the previous one.
CREATE TABLE host_name (
    host_id  integer     NOT NULL REFERENCES host,
    hostname text        NOT NULL CHECK (hostname <> ''),
    domain   text        NOT NULL,
    since    timestamptz NOT NULL,
    until    timestamptz,
    CHECK (until IS NULL OR until >= since)
);
CREATE INDEX host_name_host ON host_name (host_id, since);
CREATE UNIQUE INDEX host_name_current ON host_name (host_id) WHERE until IS NULL;
CREATE INDEX host_name_lower ON host_name (lower(hostname));

CREATE FUNCTION host_name_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE host_name SET until = greatest(since, NEW.last_received)
        WHERE host_id = NEW.host_id AND until IS NULL;
    IF NEW.hostname <> '' THEN
        INSERT INTO host_name (host_id, hostname, domain, since)
            VALUES (NEW.host_id, NEW.hostname, NEW.domain, NEW.last_received);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER host_name_insert AFTER INSERT ON host FOR EACH ROW
    WHEN (NEW.hostname <> '')
    EXECUTE FUNCTION host_name_history();
CREATE TRIGGER host_name_update AFTER UPDATE OF hostname, domain ON host FOR EACH ROW
    WHEN (OLD.hostname IS DISTINCT FROM NEW.hostname OR OLD.domain IS DISTINCT FROM NEW.domain)
    EXECUTE FUNCTION host_name_history();

-- The names hosts have now, from when the collector first knew them.
INSERT INTO host_name (host_id, hostname, domain, since)
    SELECT host_id, hostname, domain, first_received FROM host WHERE hostname <> '';

-- agent: the use of its latest certificate and clone detection (C6).
-- cert_used_at: when the collector first accepted a call (Ingest or Renew)
-- with cert_serial; NULL while it has not been used. Once it has, a call
-- with previous_cert_serial is refused. key_reuse_at and key_reuse_serial:
-- when a call with a superseded certificate was first refused, and the
-- serial of the latest such call: the agent's key is in use twice (a copied
-- key, a cloned machine). Kept until an admin handles the agent.
ALTER TABLE agent
    ADD COLUMN cert_used_at     timestamptz,
    ADD COLUMN key_reuse_at     timestamptz,
    ADD COLUMN key_reuse_serial text;
